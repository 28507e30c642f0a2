#pragma once
// burst_stream: the layer between Beast's WebSocket stream and the TCP socket that lets a burst
// of frames (an agent's events, queued pongs) leave with one write instead of one system call,
// one TCP segment and one wake-up of the peer per frame.
//
// Beast frames every message itself and writes it on this layer. The session writes its queued
// messages with Beast's synchronous write: on this layer a synchronous write never touches the
// socket, it appends to a burst buffer in memory (and so does any asynchronous write while a
// burst exists, completing at once); async_flush() then sends the buffer with one socket write
// and passes writes through again. Beast's own control frames (a ping the session sends, a pong
// or close Beast answers by itself) are asynchronous writes: outside a burst they go straight to
// the socket, and a flush started while one of them is still in flight waits for it, so that at
// most one socket write is in flight and frames never interleave. A write that arrives while a
// flush is in flight is gathered and sent by that flush, after what it was sending.
//
// A burst's buffers are recycled per thread: the next burst on this thread (any connection's)
// reuses their capacity: a fresh buffer of a few KiB for every burst would make glibc
// consolidate its fast bins each time. An idle connection holds no burst.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <boost/system/error_code.hpp>

#include "net/handler_memory.hpp"

namespace er::net {

template <class Socket>
class burst_stream {
public:
  using next_layer_type = Socket;
  using executor_type = typename Socket::executor_type;

  template <class... Args>
  explicit burst_stream(Args&&... args) : socket_(std::forward<Args>(args)...) {
  }

  executor_type get_executor() noexcept {
    return socket_.get_executor();
  }
  Socket& next_layer() noexcept {
    return socket_;
  }
  const Socket& next_layer() const noexcept {
    return socket_;
  }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    socket_.async_read_some(buffers, std::forward<Handler>(handler));
  }

  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (!burst_) {
      // Straight to the socket; counted, so that a flush never overtakes it. The completion
      // keeps the handler's executor.
      ++direct_writes_;
      auto executor = boost::asio::get_associated_executor(handler, socket_.get_executor());
      socket_.async_write_some(
        buffers, boost::asio::bind_executor(
                   executor, [this, handler = std::forward<Handler>(handler)](
                               boost::system::error_code ec, std::size_t n) mutable {
                     on_direct_write_done();
                     handler(ec, n);
                   }));
      return;
    }
    auto n = append(buffers);
    // Never inline: a completion handler must not run inside its initiating function.
    boost::asio::post(socket_.get_executor(),
                      boost::beast::bind_front_handler(std::forward<Handler>(handler),
                                                       boost::system::error_code{}, n));
  }

  /// SyncWriteStream: gathers (starting a burst if none is open) and never blocks; the bytes
  /// leave with the next async_flush().
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, boost::system::error_code& ec) {
    ec = {};
    gather();
    return append(buffers);
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers) {
    boost::system::error_code never_set;
    return write_some(buffers, never_set);
  }

  /// SyncReadStream, which Beast's synchronous calls require of the layer; the router only
  /// reads asynchronously.
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, boost::system::error_code& ec) {
    return socket_.read_some(buffers, ec);
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    return socket_.read_some(buffers);
  }

  /// Writes from now on are gathered in memory until async_flush() has sent them.
  void gather() {
    if (burst_)
      return;
    auto& spare = spare_bursts();
    if (spare.empty()) {
      burst_ = std::make_unique<burst>();
    } else {
      burst_ = std::move(spare.back());
      spare.pop_back();
    }
  }

  /// gather(), with room for `bytes` more in the burst buffer (the session knows how much it
  /// is about to write: one allocation instead of one per doubling).
  void gather(std::size_t bytes) {
    gather();
    burst_->gathered.reserve(burst_->gathered.size() + bytes);
  }

  bool gathering() const noexcept {
    return burst_ != nullptr;
  }

  /// Sends what was gathered, and what is gathered meanwhile, then passes writes through
  /// again; `handler(error_code)` runs once that is done or the socket failed. Call it once per
  /// gather(), never while a flush is in flight.
  template <class Handler>
  void async_flush(Handler handler) {
    if (!burst_ || burst_->gathered.empty()) {
      release_burst();
      boost::asio::post(socket_.get_executor(),
                        boost::beast::bind_front_handler(std::move(handler),
                                                         boost::system::error_code{}));
      return;
    }
    if (direct_writes_ > 0) { // after the control frame already on its way (rare: a copy)
      burst_->waiting_flush = std::function<void(boost::system::error_code)>(std::move(handler));
      return;
    }
    send_gathered(std::move(handler));
  }

private:
  struct burst {
    std::string gathered; ///< appended to while gathering
    std::string sending;  ///< in flight
    std::function<void(boost::system::error_code)> waiting_flush; ///< for direct writes to end
  };

  static constexpr std::size_t max_spare_bursts = 16;       ///< per thread
  static constexpr std::size_t max_spare_capacity = 65536;  ///< per burst

  static std::vector<std::unique_ptr<burst>>& spare_bursts() {
    static thread_local std::vector<std::unique_ptr<burst>> spare;
    return spare;
  }

  void release_burst() {
    if (!burst_)
      return;
    auto b = std::move(burst_);
    auto& spare = spare_bursts();
    if (spare.size() >= max_spare_bursts || b->waiting_flush
        || b->gathered.capacity() + b->sending.capacity() > max_spare_capacity)
      return;
    b->gathered.clear();
    b->sending.clear();
    spare.push_back(std::move(b));
  }

  template <class ConstBuffers>
  std::size_t append(const ConstBuffers& buffers) {
    auto& out = burst_->gathered;
    auto n = boost::asio::buffer_size(buffers);
    auto at = out.size();
    out.resize(at + n);
    boost::asio::buffer_copy(boost::asio::buffer(&out[at], n), buffers);
    return n;
  }

  void on_direct_write_done() {
    if (--direct_writes_ == 0 && burst_ && burst_->waiting_flush) {
      auto flush = std::move(burst_->waiting_flush);
      burst_->waiting_flush = nullptr;
      send_gathered(std::move(flush));
    }
  }

  template <class Handler>
  void send_gathered(Handler handler) {
    auto& b = *burst_;
    b.sending.swap(b.gathered);
    b.gathered.clear();
    boost::asio::async_write(
      socket_, boost::asio::buffer(b.sending),
      recycled([this, handler = std::move(handler)](boost::system::error_code ec,
                                                    std::size_t) mutable {
        if (ec || burst_->gathered.empty()) {
          release_burst(); // a burst's memory is not kept by an idle connection
          handler(ec);
          return;
        }
        send_gathered(std::move(handler));
      }));
  }

  Socket socket_;
  std::unique_ptr<burst> burst_;
  std::size_t direct_writes_ = 0; ///< asynchronous writes passed through, not yet complete
};

// Beast tears the TCP connection down through these (argument-dependent lookup).
template <class Socket>
void teardown(boost::beast::role_type role, burst_stream<Socket>& stream,
              boost::system::error_code& ec) {
  using boost::beast::websocket::teardown;
  teardown(role, stream.next_layer(), ec);
}

template <class Socket, class Handler>
void async_teardown(boost::beast::role_type role, burst_stream<Socket>& stream,
                    Handler&& handler) {
  using boost::beast::websocket::async_teardown;
  async_teardown(role, stream.next_layer(), std::forward<Handler>(handler));
}

} // namespace er::net
