#pragma once
// Server-minted identifiers: 128 bits from the OS's CSPRNG, never sequential, so an id
// reveals nothing about other users' ids or how many exist.

#include <string>
#include <string_view>

namespace er::context {

/// `prefix` followed by 32 lower-case hex digits (128 random bits), e.g. "c-7f3a...".
std::string random_id(std::string_view prefix);

/// Prefixes name the kind of an id in logs and payloads.
namespace id_prefix {
inline constexpr std::string_view connection = "c-";
inline constexpr std::string_view session = "s-";
inline constexpr std::string_view request = "q-";
inline constexpr std::string_view run = "r-";
inline constexpr std::string_view thread = "t-";
inline constexpr std::string_view resume = "rt-";
inline constexpr std::string_view handover = "h-"; ///< a session moving between nodes
} // namespace id_prefix

} // namespace er::context
