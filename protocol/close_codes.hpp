#pragma once
// Every WebSocket close code the router sends (DESIGN §4), one line each: the code, the
// reason sent in the close frame, and what a client should do next. Clients (clients/js,
// clients/python) implement the same table; docs/asyncapi.yaml documents it.

#include <array>
#include <cstdint>
#include <string_view>

namespace er {

/// What a client should do after a close.
enum class after_close {
  done,          ///< nothing: the close was asked for
  reconnect,     ///< reconnect with backoff (and resume)
  back_off,      ///< reconnect, but only after a long backoff
  refresh_token, ///< reconnect with a fresh token
  stop,          ///< do not reconnect as is
};

struct close_reason {
  std::uint16_t code;
  std::string_view reason;
  after_close advice;
};

namespace close_code {
inline constexpr close_reason normal{1000, "normal", after_close::done};
inline constexpr close_reason going_away{1001, "server going away", after_close::reconnect};
inline constexpr close_reason protocol_error{1002, "protocol error", after_close::stop};
inline constexpr close_reason invalid_payload{1007, "invalid UTF-8", after_close::stop};
inline constexpr close_reason too_big{1009, "message too big", after_close::stop};
inline constexpr close_reason internal_error{1011, "internal error", after_close::reconnect};
// 4000-4499: reconnect allowed
inline constexpr close_reason slow_consumer{4008, "slow consumer", after_close::reconnect};
inline constexpr close_reason heartbeat_timeout{4009, "heartbeat timeout", after_close::reconnect};
inline constexpr close_reason state_lost{4010, "state lost", after_close::reconnect};
inline constexpr close_reason rate_limited{4029, "rate limited", after_close::back_off};
// 4500-4999: do not reconnect as is
inline constexpr close_reason token_expired{4501, "token expired", after_close::refresh_token};
inline constexpr close_reason too_many_connections{4503, "too many connections for this user",
                                                   after_close::stop};
inline constexpr close_reason protocol_abuse{4510, "protocol abuse", after_close::stop};
inline constexpr close_reason disconnected_by_backend{4511, "disconnected", after_close::stop};
inline constexpr close_reason session_moved{4512, "session resumed on another connection",
                                            after_close::stop};

inline constexpr std::array all{normal,        going_away,        protocol_error,    invalid_payload,
                                too_big,
                                internal_error, slow_consumer,     heartbeat_timeout,
                                state_lost,     rate_limited,      token_expired,
                                too_many_connections, protocol_abuse, disconnected_by_backend,
                                session_moved};
} // namespace close_code

/// The table's entry for `code`; codes the router never sends get an empty reason.
constexpr close_reason close_reason_of(std::uint16_t code) {
  for (const auto& r : close_code::all)
    if (r.code == code)
      return r;
  return {code, "", after_close::reconnect};
}

} // namespace er
