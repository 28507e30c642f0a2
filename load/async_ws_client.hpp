#pragma once
// An asynchronous WebSocket client on an asio io_context, for load generation: one object per
// connection, many per thread. It connects (optionally from a chosen source address), upgrades,
// then reads until the connection ends, reporting to one client_sink; writes are queued.
// The io_context it is made on must be run by one thread. All members are thread-safe (they
// post to that thread) and idempotent once the connection has ended. Beast stays in the .cpp.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

namespace er::load {

/// How a connection ended.
struct close_info {
  std::uint16_t code = 1006; ///< the close code; 1006 when none was exchanged
  bool clean = false;        ///< a close frame was exchanged (not a reset or a timeout)
};

struct async_client_options {
  std::string host = "127.0.0.1";  ///< an IP address (no name resolution)
  unsigned short port = 8080;
  std::string target = "/ws";
  std::string subprotocols;         ///< Sec-WebSocket-Protocol, e.g. "router.v1, jwt.<token>"
  std::string bind_address;         ///< local source address (127.0.0.x), empty for any
  /// Connect plus upgrade must finish within; also bounds a close handshake.
  std::chrono::milliseconds handshake_timeout{10000};
};

/// How the connect and upgrade ended.
struct open_result {
  bool upgraded = false;
  unsigned status = 0;  ///< the HTTP status of the answer; 0 when none came (TCP error, timeout)
  std::string error;    ///< why it failed, for humans; empty when upgraded
};

/// Receives one connection's events, in order, on the connection's io thread.
class client_sink {
public:
  virtual ~client_sink() = default;
  /// Called once. When `result.upgraded` is false nothing follows.
  virtual void on_open(open_result result) = 0;
  /// The text messages of one socket read, in order (at least one).
  virtual void on_texts(std::vector<std::string> frames) = 0;
  virtual void on_binary(std::size_t bytes) = 0;
  /// Called once after a successful open; nothing is delivered after it. A close we
  /// started and the peer answered is clean with our code; a reset is 1006, not clean.
  virtual void on_closed(close_info info) = 0;
};

class async_ws_client {
public:
  /// An empty handle: every member is a no-op.
  async_ws_client() = default;

  /// Starts connecting at once; the sink is released after its last call.
  static async_ws_client open(boost::asio::io_context& io, const async_client_options& options,
                              std::shared_ptr<client_sink> sink);

  /// Queues one text frame; frames are written in order, one at a time.
  void send(std::string text) const;
  /// Writes what is queued, then the close handshake with `code`. Before the upgrade
  /// completes it waits for it; a peer that does not answer in time gets a reset.
  void close(std::uint16_t code = 1000) const;
  /// Abrupt end: TCP RST (SO_LINGER 0), no close frame.
  void reset() const;

  explicit operator bool() const { return impl_ != nullptr; }

  struct impl;

private:
  explicit async_ws_client(std::shared_ptr<impl> i) : impl_(std::move(i)) {
  }
  std::shared_ptr<impl> impl_;
};

} // namespace er::load
