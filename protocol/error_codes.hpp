#pragma once
// Every `data.code` of an `error` frame (DESIGN §4). An error answers one request and never
// closes the connection by itself.

#include <string_view>

namespace er::error_code {
inline constexpr std::string_view invalid_json = "invalid_json";
inline constexpr std::string_view invalid_message = "invalid_message";
inline constexpr std::string_view unknown_type = "unknown_type";
inline constexpr std::string_view unknown_agent = "unknown_agent";
inline constexpr std::string_view not_found = "not_found";
inline constexpr std::string_view rate_limited = "rate_limited";
inline constexpr std::string_view too_many_runs = "too_many_runs";
inline constexpr std::string_view payload_too_large = "payload_too_large";
inline constexpr std::string_view unavailable = "unavailable";
inline constexpr std::string_view internal = "internal";
inline constexpr std::string_view quota_exceeded = "quota_exceeded"; ///< a per-user storage quota
} // namespace er::error_code
