#pragma once
// Every close code and error code of the router.v1 protocol (DESIGN §4), in one place.

#include <cstdint>
#include <string_view>

namespace er::close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;       ///< server shutdown: reconnect
inline constexpr std::uint16_t too_big = 1009;          ///< inbound frame over the limit
inline constexpr std::uint16_t internal_error = 1011;   ///< reconnect
// 4000-4499: reconnect allowed
inline constexpr std::uint16_t slow_consumer = 4008;
inline constexpr std::uint16_t heartbeat_timeout = 4009;
inline constexpr std::uint16_t rate_limited = 4029;     ///< back off, then reconnect
// 4500-4999: do not reconnect as is
inline constexpr std::uint16_t token_expired = 4501;
inline constexpr std::uint16_t too_many_connections = 4503;
inline constexpr std::uint16_t protocol_abuse = 4510;
inline constexpr std::uint16_t disconnected_by_backend = 4511;
} // namespace er::close_code

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
} // namespace er::error_code
