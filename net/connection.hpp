#pragma once
// The seam between the net layer and the actors: a connection_manager owns one ws_connection
// and is its only writer; the connection reports what it reads to one session_sink.
// This header stays free of Beast so that actor code compiles quickly.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/close_codes.hpp"

namespace er::net {

/// Per-socket limits, read from configuration in one place (see README, "Configuration").
struct session_limits {
  std::size_t max_message_bytes = 65536;       ///< inbound frame limit, past it close 1009
  std::size_t outbound_queue_bytes = 1 << 20;  ///< queued outbound bytes, past it close 4008
  std::chrono::milliseconds handshake_timeout{5000};
  std::chrono::milliseconds heartbeat_interval{25000}; ///< a WebSocket ping this often
  std::chrono::milliseconds heartbeat_timeout{20000};  ///< no pong within: close 4009
};

struct close_info {
  std::uint16_t code = 1006; ///< the peer's or our close code; 1006 when none was exchanged
  bool clean = false;        ///< a close frame was exchanged (not a reset or a timeout)
  bool by_peer = false;      ///< `code` is the peer's own: its close frame came before ours
};

/// Receives what a connection reads, in order, on the connection's io thread.
class session_sink {
public:
  virtual ~session_sink() = default;
  virtual void on_text(std::string frame) = 0;
  virtual void on_binary(std::size_t bytes) = 0;
  /// Called once; nothing else is delivered after it.
  virtual void on_closed(close_info info) = 0;
  /// The connection is no longer congested, asked for with ws_connection::notify_writable.
  virtual void on_writable() {
  }
};

/// Caps open WebSocket connections process-wide (router.max-connections): a slot is taken
/// before an upgrade is answered and given back when the connection object goes away.
class connection_budget {
public:
  explicit connection_budget(std::size_t max) : max_(max) {
  }
  bool try_acquire() {
    auto used = used_.load();
    do {
      if (used >= max_)
        return false;
    } while (!used_.compare_exchange_weak(used, used + 1));
    return true;
  }
  void release() {
    used_.fetch_sub(1);
  }
  std::size_t in_use() const {
    return used_.load();
  }

private:
  std::atomic<std::size_t> used_{0};
  std::size_t max_;
};

/// A WebSocket connection whose upgrade request was authenticated but not yet answered.
/// All members are thread-safe; calls after the connection closed are ignored.
class ws_connection {
public:
  virtual ~ws_connection() = default;
  /// Makes the caller the connection's one owner: true for the first call, false for every
  /// later one. Only the owner may start the connection. Two actors may hold the same
  /// connection (a resume the router gave up waiting for, then gave to a fresh manager): the
  /// claim decides which of them gets it.
  virtual bool claim() = 0;
  /// Completes the upgrade (101) and starts reading into `sink`. At `token_expires_at` (the
  /// end of the token the connection was opened with; time_point::max(): never) the
  /// connection closes itself with 4501.
  virtual void start(std::shared_ptr<session_sink> sink,
                     std::chrono::system_clock::time_point token_expires_at) = 0;
  /// Queues one text frame. Past session_limits::outbound_queue_bytes the connection
  /// drops its queue and closes with 4008 (slow consumer).
  virtual void send(std::string frame) = 0;
  /// Queues several text frames in order, as one batch: they leave with one write when the
  /// connection is not busy (the same limits as send).
  virtual void send_all(std::vector<std::string> frames) = 0;
  /// Sends what is queued, then the close frame; idempotent.
  virtual void close(const close_reason& why) = 0;
  /// Whether the frames waiting behind the write in flight (the peer reads slower than they
  /// come) hold a quarter of session_limits::outbound_queue_bytes or more. Any thread; the
  /// answer may be a moment old: notify_writable settles it on the connection's own thread.
  virtual bool congested() const = 0;
  /// The sink's on_writable, once, as soon as the connection is not congested: at once when it
  /// is not now. Never after on_closed (the sink hears of the close instead).
  virtual void notify_writable() = 0;
};

} // namespace er::net
