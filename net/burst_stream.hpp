#pragma once
// burst_stream: the layer between Beast's WebSocket stream and the TCP socket that lets a burst
// of frames (an agent's events, queued pongs) leave with one write instead of one system call,
// one TCP segment and one wake-up of the peer per frame.
//
// Beast frames every message itself and writes it with async_write_some on this layer. Normally
// the layer passes that straight to the socket. After gather(), writes are appended to a buffer
// in memory and complete at once, until async_flush() has sent the buffer: then the layer passes
// writes through again. Beast serialises its own writes, and the session gathers only frames it
// has queued itself, so at most one socket write is in flight: a write that arrives while a
// flush is in flight (a pong or ping Beast sends by itself) is gathered and sent by that flush,
// after what it was sending.

#include <memory>
#include <string>
#include <utility>

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
      socket_.async_write_some(buffers, std::forward<Handler>(handler));
      return;
    }
    auto& out = burst_->gathered;
    auto n = boost::asio::buffer_size(buffers);
    auto at = out.size();
    out.resize(at + n);
    boost::asio::buffer_copy(boost::asio::buffer(&out[at], n), buffers);
    // Never inline: a completion handler must not run inside its initiating function.
    boost::asio::post(socket_.get_executor(),
                      boost::beast::bind_front_handler(std::forward<Handler>(handler),
                                                       boost::system::error_code{}, n));
  }

  /// Writes from now on are gathered in memory until async_flush() has sent them.
  void gather() {
    if (!burst_)
      burst_ = std::make_unique<burst>();
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
      burst_.reset();
      boost::asio::post(socket_.get_executor(),
                        boost::beast::bind_front_handler(std::move(handler),
                                                         boost::system::error_code{}));
      return;
    }
    send_gathered(std::move(handler));
  }

private:
  struct burst {
    std::string gathered; ///< appended to while gathering
    std::string sending;  ///< in flight
  };

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
          burst_.reset(); // a burst's memory is not kept by an idle connection
          handler(ec);
          return;
        }
        send_gathered(std::move(handler));
      }));
  }

  Socket socket_;
  std::unique_ptr<burst> burst_;
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
