#pragma once
// burst_stream: the layer between Beast's WebSocket stream and the TCP socket that lets a burst
// of frames (an agent's events, queued pongs) leave with one write instead of one system call,
// one TCP segment and one wake-up of the peer per frame.
//
// Beast frames every message itself and writes it on this layer. The session writes its queued
// messages with Beast's synchronous write: on this layer a synchronous write never touches the
// socket, it appends to a burst buffer in memory (and so does any asynchronous write while a
// burst exists); async_flush() then sends the buffer with one socket write and passes writes
// through again. Beast's own control frames (a ping the session sends, a pong or close Beast
// answers by itself) are asynchronous writes: outside a burst they go straight to the socket,
// whole, and a flush started while one of them is still in flight waits for it, so that at
// most one socket write is in flight and frames never interleave. A write that arrives while a
// flush is in flight is gathered and sent by that flush, after what it was sending, and
// completes when that flush has sent it: a peer that does not read holds up Beast's writes
// (and so its reads) as a full socket would.
//
// A burst's buffers are recycled per thread: the next burst on this thread (any connection's)
// reuses their capacity: a fresh buffer of a few KiB for every burst would make glibc
// consolidate its fast bins each time. An idle connection holds no burst.

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include "net/drained_read.hpp"
#include "net/handler_memory.hpp"

namespace er::net {

namespace detail {

struct drain_buffer {
  static constexpr std::size_t drain_limit = 4 << 20; ///< past it, the peer gets a reset
  std::array<char, 4096> bytes;
  std::size_t drained = 0;
};

template <class Socket, class Handler>
void drain_then_close(Socket& socket, std::shared_ptr<drain_buffer> buffer, Handler handler) {
  auto& bytes = buffer->bytes;
  socket.async_read_some(
    boost::asio::buffer(bytes),
    recycled([&socket, buffer = std::move(buffer), handler = std::move(handler)](
               boost::system::error_code ec, std::size_t n) mutable {
      buffer->drained += n;
      if (!ec && buffer->drained < drain_buffer::drain_limit)
        return drain_then_close(socket, std::move(buffer), std::move(handler));
      boost::system::error_code ignored;
      socket.close(ignored);
      handler(ec == boost::asio::error::eof ? boost::system::error_code{} : ec);
    }));
}

} // namespace detail

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
    if (read_hook_)
      read_hook_(read_hook_context_);
    if (!unread_)
      return async_read_drained(socket_, buffers, std::forward<Handler>(handler));
    auto n = take_unread(buffers);
    boost::asio::post(socket_.get_executor(),
                      boost::beast::bind_front_handler(std::forward<Handler>(handler),
                                                       boost::system::error_code{}, n));
  }

  /// The next close frame written through this layer leaves with `code` instead of the one
  /// Beast put in it (Beast echoes a peer's close code it should have refused). A server's
  /// close frame is unmasked with the code in its first two payload bytes.
  void replace_close_code(std::uint16_t code) {
    close_code_patch_ = code;
  }

  /// Close frames written through this layer with a code and no reason (the ones Beast sends
  /// by itself: 1002, 1007, 1009) leave with `reason_of(code)` as their reason, when it names
  /// one (at most 123 bytes, a close frame's limit).
  void fill_close_reasons(std::string_view (*reason_of)(std::uint16_t)) {
    close_reason_of_ = reason_of;
  }

  /// `hook(context)` runs each time the layer above asks for bytes, before they are read:
  /// the WebSocket above has decoded everything the previous reads brought.
  void on_read_request(void (*hook)(void*), void* context) noexcept {
    read_hook_ = hook;
    read_hook_context_ = context;
  }

  /// Bytes read from the socket before this layer took it over (a client's frames pipelined
  /// right behind its upgrade request): the next reads return them first.
  void set_unread(std::string bytes) {
    if (!bytes.empty())
      unread_ = std::make_unique<std::string>(std::move(bytes));
  }

  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (!burst_ && rewrites_close_frames() && is_close_frame(buffers)) {
      // Rare: the close frame leaves rewritten (replace_close_code, fill_close_reasons), in
      // one write; the caller learns that its own bytes were written.
      auto size = boost::asio::buffer_size(buffers);
      auto copy = std::make_shared<std::string>(size, '\0');
      boost::asio::buffer_copy(boost::asio::buffer(*copy), buffers);
      rewrite_close_frame(*copy, 0);
      ++direct_writes_;
      auto executor = boost::asio::get_associated_executor(handler, socket_.get_executor());
      return boost::asio::async_write(
        socket_, boost::asio::buffer(*copy),
        boost::asio::bind_executor(
          executor, [this, copy, size, handler = std::forward<Handler>(handler)](
                      boost::system::error_code ec, std::size_t) mutable {
            on_direct_write_done();
            handler(ec, ec ? std::size_t{0} : size);
          }));
    }
    if (!burst_)
      return write_direct(buffers, std::forward<Handler>(handler));
    auto n = append(buffers);
    if (flushing_) {
      // Completes when the flush that carries these bytes has sent them, as a socket write
      // would: Beast's read loop, which answers each ping with a pong, waits for it meanwhile
      // and stops reading. Completed at once, a peer that sends pings and reads nothing would
      // grow the burst without end while the flush cannot progress.
      burst_->held.push_back(std::make_unique<held_write<std::decay_t<Handler>>>(
        std::forward<Handler>(handler), n));
      return;
    }
    // Never inline: a completion handler must not run inside its initiating function.
    boost::asio::post(socket_.get_executor(),
                      boost::beast::bind_front_handler(std::forward<Handler>(handler),
                                                       boost::system::error_code{}, n));
  }

  // Straight to the socket, all of it (a frame cut by a short write must not have a burst
  // sent between its parts); counted, so that a flush never overtakes it. The completion
  // keeps the handler's executor.
  template <class ConstBuffers, class Handler>
  void write_direct(const ConstBuffers& buffers, Handler&& handler) {
    ++direct_writes_;
    auto executor = boost::asio::get_associated_executor(handler, socket_.get_executor());
    boost::asio::async_write(
      socket_, buffers,
      boost::asio::bind_executor(executor, [this, handler = std::forward<Handler>(handler)](
                                             boost::system::error_code ec, std::size_t n) mutable {
        on_direct_write_done();
        handler(ec, n);
      }));
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
    if (unread_) {
      ec = {};
      return take_unread(buffers);
    }
    return socket_.read_some(buffers, ec);
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    boost::system::error_code ec;
    auto n = read_some(buffers, ec);
    if (ec)
      throw boost::system::system_error(ec);
    return n;
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
      complete_held({});
      release_burst();
      boost::asio::post(socket_.get_executor(),
                        boost::beast::bind_front_handler(std::move(handler),
                                                         boost::system::error_code{}));
      return;
    }
    flushing_ = true;
    if (direct_writes_ > 0) { // after the control frame already on its way (rare: a copy)
      burst_->waiting_flush = std::function<void(boost::system::error_code)>(std::move(handler));
      return;
    }
    send_gathered(std::move(handler));
  }

private:
  /// An asynchronous write gathered during a flush, waiting for it (move-only handlers).
  struct held_completion {
    virtual ~held_completion() = default;
    virtual void complete(executor_type executor, boost::system::error_code ec) = 0;
  };
  template <class Handler>
  struct held_write final : held_completion {
    held_write(Handler h, std::size_t n) : handler(std::move(h)), bytes(n) {
    }
    void complete(executor_type executor, boost::system::error_code ec) override {
      boost::asio::post(executor, boost::beast::bind_front_handler(std::move(handler), ec,
                                                                   ec ? std::size_t{0} : bytes));
    }
    Handler handler;
    std::size_t bytes;
  };

  struct burst {
    std::string gathered; ///< appended to while gathering
    std::string sending;  ///< in flight
    std::function<void(boost::system::error_code)> waiting_flush; ///< for direct writes to end
    std::vector<std::unique_ptr<held_completion>> held; ///< gathered during the flush
  };

  /// The writes held by the flush complete (posted) with its outcome.
  void complete_held(boost::system::error_code ec) {
    if (!burst_ || burst_->held.empty())
      return;
    auto held = std::move(burst_->held);
    burst_->held.clear();
    for (auto& write : held)
      write->complete(socket_.get_executor(), ec);
  }

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

  template <class MutableBuffers>
  std::size_t take_unread(const MutableBuffers& buffers) {
    auto n = boost::asio::buffer_copy(buffers, boost::asio::buffer(*unread_));
    unread_->erase(0, n);
    if (unread_->empty())
      unread_.reset();
    return n;
  }

  template <class ConstBuffers>
  std::size_t append(const ConstBuffers& buffers) {
    auto& out = burst_->gathered;
    auto n = boost::asio::buffer_size(buffers);
    auto at = out.size();
    out.resize(at + n);
    boost::asio::buffer_copy(boost::asio::buffer(&out[at], n), buffers);
    if (rewrites_close_frames())
      rewrite_close_frame(out, at);
    return n;
  }

  // A server's close frame: FIN + opcode 8, unmasked, a payload of 2..125 bytes.
  static bool is_close_frame(unsigned char first, unsigned char second) {
    return first == 0x88 && (second & 0x80) == 0 && (second & 0x7f) >= 2;
  }

  template <class ConstBuffers>
  static bool is_close_frame(const ConstBuffers& buffers) {
    unsigned char head[2] = {0, 0};
    boost::asio::buffer_copy(boost::asio::buffer(head), buffers);
    return is_close_frame(head[0], head[1]);
  }

  bool rewrites_close_frames() const {
    return close_code_patch_ != 0 || close_reason_of_ != nullptr;
  }

  // Rewrites the close frame starting at `at`, if one does: its code replaced
  // (replace_close_code), a reason added to a frame that has none (fill_close_reasons).
  void rewrite_close_frame(std::string& out, std::size_t at) {
    if (out.size() < at + 4
        || !is_close_frame(static_cast<unsigned char>(out[at]),
                           static_cast<unsigned char>(out[at + 1])))
      return;
    if (close_code_patch_ != 0) {
      out[at + 2] = static_cast<char>(close_code_patch_ >> 8);
      out[at + 3] = static_cast<char>(close_code_patch_ & 0xff);
      close_code_patch_ = 0;
    }
    auto payload = static_cast<std::size_t>(static_cast<unsigned char>(out[at + 1]) & 0x7f);
    if (close_reason_of_ == nullptr || payload != 2 || out.size() != at + 4)
      return;
    auto code = static_cast<std::uint16_t>((static_cast<unsigned char>(out[at + 2]) << 8)
                                           | static_cast<unsigned char>(out[at + 3]));
    auto reason = close_reason_of_(code);
    if (reason.empty() || reason.size() > 123)
      return;
    out[at + 1] = static_cast<char>(2 + reason.size());
    out.append(reason);
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
          flushing_ = false;
          complete_held(ec);
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
  bool flushing_ = false;         ///< async_flush() called, its handler not yet
  std::unique_ptr<std::string> unread_; ///< see set_unread; null when none is left
  std::uint16_t close_code_patch_ = 0;  ///< see replace_close_code; 0: none
  std::string_view (*close_reason_of_)(std::uint16_t) = nullptr; ///< see fill_close_reasons
  void (*read_hook_)(void*) = nullptr; ///< see on_read_request
  void* read_hook_context_ = nullptr;
};

// Beast tears the TCP connection down through these (argument-dependent lookup).
template <class Socket>
void teardown(boost::beast::role_type role, burst_stream<Socket>& stream,
              boost::system::error_code& ec) {
  using boost::beast::websocket::teardown;
  teardown(role, stream.next_layer(), ec);
}

// Asynchronous teardown as the server: shut down our sending side, read and drop what the
// peer still sends until it closes (at most drain_limit bytes), then close. Beast 1.74's own
// TCP teardown stops after its first read, so a peer whose frame was refused while its
// payload was still arriving (1009) would get a reset that can destroy our close frame.
template <class Socket, class Handler>
void async_teardown(boost::beast::role_type role, burst_stream<Socket>& stream,
                    Handler&& handler) {
  auto& socket = stream.next_layer();
  if (role != boost::beast::role_type::server) {
    using boost::beast::websocket::async_teardown;
    return async_teardown(role, socket, std::forward<Handler>(handler));
  }
  boost::system::error_code ec;
  socket.shutdown(boost::asio::socket_base::shutdown_send, ec);
  auto executor = boost::asio::get_associated_executor(handler, socket.get_executor());
  detail::drain_then_close(socket, std::make_shared<detail::drain_buffer>(),
                           boost::asio::bind_executor(executor, std::forward<Handler>(handler)));
}

} // namespace er::net
