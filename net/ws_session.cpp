#include "net/ws_session.hpp"

#include <atomic>
#include <stdexcept>
#include <typeinfo>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include "context/token_source.hpp"
#include "net/burst_stream.hpp"
#include "net/deadline_clock.hpp"
#include "net/frame_batch.hpp"
#include "net/handler_memory.hpp"
#include "protocol/close_codes.hpp"

namespace er::net {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

// The socket under the WebSocket runs on its io_context's own executor. Each io_context is run
// by exactly one thread (actors/io_scheduler.hpp), which already runs the session's handlers one
// at a time: a strand would add a lock and a queue to every handler and order nothing more.
// The concrete type, so that every operation's executor is copied and dispatched without type
// erasure (any_io_executor's allocation and indirect calls per operation); the WebSocket keeps
// its own timeouts.
using session_executor = asio::io_context::executor_type;
using session_socket = asio::basic_stream_socket<asio::ip::tcp, session_executor>;

class ws_session final : public ws_connection,
                         public deadline_clock::entry,
                         public std::enable_shared_from_this<ws_session> {
  /// The session's life; it only moves forward.
  enum class phase {
    created,   ///< waiting for its manager to start it
    accepting, ///< the upgrade's answer (101) is being written
    open,      ///< frames flow both ways
    finished,  ///< the socket is closed and on_closed has been reported
  };
  /// Our close handshake, beside the phase: a close may be asked for while accepting.
  enum class closing { no, requested, sent };
  /// The heartbeat step: a ping goes out, then its pong (or any data) is due.
  enum class heartbeat { idle, awaiting_pong, answered };

public:
  ws_session(session_socket socket, upgrade_request request, const session_limits& limits,
             bool select_protocol, std::shared_ptr<connection_budget> budget)
    : ws_(std::move(socket)),
      request_(std::make_unique<upgrade_request>(std::move(request))),
      limits_(limits),
      select_protocol_(select_protocol),
      clock_(deadline_clock::of(ws_.get_executor().context())),
      budget_(std::move(budget)) {
  }

  void set_unread(std::string bytes) {
    ws_.next_layer().set_unread(std::move(bytes));
  }

  ~ws_session() override {
    ws_.next_layer().on_read_request(nullptr, nullptr); // Beast's state may outlive us
    clock_.cancel(*this);
    if (budget_)
      budget_->release();
  }

  bool claim() override {
    return !claimed_.exchange(true);
  }

  void start(std::shared_ptr<session_sink> sink,
             std::chrono::system_clock::time_point token_expires_at) override {
    asio::dispatch(ws_.get_executor(),
                   [self = shared_from_this(), sink = std::move(sink), token_expires_at]() mutable {
                     self->token_deadline_ = steady_deadline(token_expires_at);
                     self->do_accept(std::move(sink));
                   });
  }

  // dispatch: a manager running on the session's io thread (actors/io_scheduler.hpp) writes
  // inline, instead of handing the frame to another turn of the event loop; from another
  // thread the frame is posted to that one.
  void send(std::string frame) override {
    asio::dispatch(ws_.get_executor(), [self = shared_from_this(), f = std::move(frame)]() mutable {
      self->enqueue(std::move(f));
    });
  }

  void send_all(std::vector<std::string> frames) override {
    asio::dispatch(ws_.get_executor(), [self = shared_from_this(), fs = std::move(frames)]() mutable {
      bool queued = self->queue_batch(fs);
      recycle_frame_batch(fs);
      if (queued)
        self->write_next();
    });
  }

  void close(const close_reason& why) override {
    asio::post(ws_.get_executor(), [self = shared_from_this(), why] {
      self->begin_close(why, false);
    });
  }

  bool congested() const override {
    return congested_.load(std::memory_order_relaxed);
  }

  void notify_writable() override {
    asio::dispatch(ws_.get_executor(), [self = shared_from_this()] {
      self->writable_wanted_ = true;
      self->report_writable();
    });
  }

private:
  // -- accept and read ------------------------------------------------------

  void do_accept(std::shared_ptr<session_sink> sink) {
    sink_ = std::move(sink);
    if (phase_ == phase::finished) // closed before the manager started it
      return report_closed();
    auto timeouts = websocket::stream_base::timeout{limits_.handshake_timeout,
                                                    websocket::stream_base::none(), false};
    ws_.set_option(timeouts);
    // Beast checks each frame header against the limit: a frame announcing more gets 1009
    // before any of its payload is read, and Beast drains the rest until the peer closes.
    ws_.read_message_max(limits_.max_message_bytes);
    // Beast's own close frames (1002, 1007, 1009) carry a code only: ours get the table's words.
    ws_.next_layer().fill_close_reasons(
      [](std::uint16_t code) { return close_reason_of(code).reason; });
    // Messages are handed on when Beast has decoded all that one read of the socket brought
    // (see deliver); the destructor removes the hook.
    ws_.next_layer().on_read_request(
      [](void* session) { static_cast<ws_session*>(session)->hand_on_decoded(); }, this);
    ws_.auto_fragment(false);
    bool select = select_protocol_;
    ws_.set_option(websocket::stream_base::decorator([select](websocket::response_type& res) {
      res.set(beast::http::field::server, "event-router");
      if (select)
        res.set(beast::http::field::sec_websocket_protocol, context::protocol_name);
    }));
    phase_ = phase::accepting;
    reading_ = true; // the accept, then the reads
    ws_.async_accept(*request_, recycled([self = shared_from_this()](beast::error_code ec) {
                       self->on_accept(ec);
                     }));
  }

  void on_accept(beast::error_code ec) {
    reading_ = false;
    request_.reset(); // not needed any more
    if (ec)
      return abort_transport();
    phase_ = phase::open; // a close requested meanwhile is sent by write_next
    ws_.control_callback([this](websocket::frame_type kind, std::string_view) {
      if (kind == websocket::frame_type::pong)
        return peer_alive();
      if (kind != websocket::frame_type::close)
        return;
      if (!valid_close_code(ws_.reason().code))
        ws_.next_layer().replace_close_code(close_code::protocol_error.code);
      on_peer_close();
    });
    schedule_heartbeat(limits_.heartbeat_interval);
    do_read();
    write_next();
  }

  // -- heartbeat and token expiry -------------------------------------------

  static std::chrono::steady_clock::time_point steady_deadline(
    std::chrono::system_clock::time_point at) {
    if (at == std::chrono::system_clock::time_point::max())
      return std::chrono::steady_clock::time_point::max();
    auto left = std::max(std::chrono::system_clock::duration{0},
                         at - std::chrono::system_clock::now());
    return std::chrono::steady_clock::now()
           + std::chrono::duration_cast<std::chrono::steady_clock::duration>(left);
  }

  // The session has one deadline at a time on its io_context's clock: the next heartbeat
  // step or the token's expiry, whichever comes first, then the close handshake's end.
  void schedule_heartbeat(std::chrono::milliseconds after) {
    clock_.schedule(*this, std::min(std::chrono::steady_clock::now() + after, token_deadline_));
  }

  // On the clock's thread, under its lock: hands the event to the session's thread, nothing more.
  void on_deadline(std::uint64_t generation) override {
    if (auto self = weak_from_this().lock())
      asio::post(ws_.get_executor(), recycled([self = std::move(self), generation] {
                   if (generation == self->generation()) // not replaced since it fired
                     self->on_timer();
                 }));
  }

  void on_timer() {
    if (phase_ == phase::finished)
      return;
    // A peer that never reads keeps our last write pending; one that sent its close frame
    // and never ends the connection keeps Beast's teardown reading.
    if (closing_ != closing::no || peer_closed_)
      return abort_transport();
    on_heartbeat();
  }

  // Alternates: send a ping, then check for its pong after heartbeat_timeout.
  void on_heartbeat() {
    if (std::chrono::steady_clock::now() >= token_deadline_)
      return begin_close(close_code::token_expired, false);
    switch (heartbeat_) {
      case heartbeat::awaiting_pong:
        return begin_close(close_code::heartbeat_timeout, true);
      case heartbeat::answered:
        heartbeat_ = heartbeat::idle;
        return schedule_heartbeat(std::max(std::chrono::milliseconds{0},
                                           limits_.heartbeat_interval - limits_.heartbeat_timeout));
      case heartbeat::idle:
        heartbeat_ = heartbeat::awaiting_pong;
        ws_.async_ping({}, recycled([self = shared_from_this()](beast::error_code) {}));
        return schedule_heartbeat(limits_.heartbeat_timeout);
    }
  }

  // Beast refuses the close codes RFC 6455 reserves below 5000, but echoes 5000 and above,
  // which no specification defines: those are answered with 1002 as well.
  static bool valid_close_code(std::uint16_t code) {
    return code < 5000;
  }

  // The peer's close frame has been read: Beast answers it (after what is being flushed) and
  // tears the connection down. Nothing is sent after that answer (RFC 6455 §5.5.1), and the
  // teardown has the close handshake's time, as our own close has.
  void on_peer_close() {
    if (peer_closed_)
      return;
    peer_closed_ = true;
    drop_queued();
    if (closing_ == closing::no)
      clock_.schedule(*this, std::chrono::steady_clock::now() + limits_.handshake_timeout);
  }

  // The close code the peer's close frame carried, or 1002 for one Beast answered so.
  std::uint16_t peer_close_code() {
    auto code = static_cast<std::uint16_t>(ws_.reason().code);
    return valid_close_code(code) ? code : close_code::protocol_error.code;
  }

  // A pong, or any data: proves the peer alive.
  void peer_alive() {
    if (heartbeat_ == heartbeat::awaiting_pong)
      heartbeat_ = heartbeat::answered;
  }

  // A pending read holds its buffer for as long as the peer stays silent: a new message is
  // read into a small one (most client messages fit), raised to the frame limit only when
  // the message turns out longer. An idle connection holds first_read_bytes, not a buffer
  // sized for the frame limit.
  static constexpr std::size_t first_read_bytes = 128;
  static constexpr std::size_t kept_buffer_bytes = 4096; // larger ones are freed after use

  void do_read() {
    reading_ = true;
    // What this read may add: one byte past the frame limit tells a message too big.
    auto allowance = limits_.max_message_bytes + 1 - buffer_.size();
    if (buffer_.size() == 0)
      allowance = std::min(allowance, first_read_bytes);
    buffer_.max_size(buffer_.size() + allowance);
    // Into buffers prepared here rather than through Beast's dynamic-buffer overload: that
    // one wraps the pending read in one more operation, which an idle connection keeps.
    ws_.async_read_some(buffer_.prepare(allowance),
                        recycled([self = shared_from_this()](beast::error_code ec, std::size_t n) {
                          self->buffer_.commit(n);
                          self->on_read(ec);
                        }));
  }

  void on_read(beast::error_code ec) {
    reading_ = false;
    if (ec) {
      hand_on_decoded(); // what came before the close or the fault, in order
      return on_read_error(ec);
    }
    peer_alive();
    if (ws_.is_message_done())
      deliver();
    do_read();
  }

  // A text message waits in `decoded_` until Beast asks the socket for more bytes: the
  // messages that one read brought (a client's pipelined requests) reach the manager together,
  // as consecutive mailbox elements that it works through in one turn, and their replies
  // leave in one write. One message alone is handed on just as soon: Beast asks for more bytes
  // as the read after it begins.
  void deliver() {
    if (sink_) {
      if (!ws_.got_text()) {
        hand_on_decoded(); // in order
        sink_->on_binary(buffer_.size());
      } else {
        if (decoded_.capacity() == 0)
          decoded_ = take_frame_batch();
        decoded_.push_back(beast::buffers_to_string(buffer_.data()));
      }
    }
    buffer_.consume(buffer_.size());
    if (buffer_.capacity() > kept_buffer_bytes)
      buffer_.shrink_to_fit();
  }

  void hand_on_decoded() {
    if (decoded_.empty())
      return;
    if (sink_) // gone once on_closed has been reported: nothing is delivered after it
      for (auto& text : decoded_)
        sink_->on_text(std::move(text));
    recycle_frame_batch(decoded_);
  }

  void on_read_error(beast::error_code ec) {
    close_info info;
    if (ec == websocket::error::closed) {
      info.clean = true;
      info.by_peer = closing_ != closing::sent;
      info.code = info.by_peer ? peer_close_code() : close_.code;
    } else if (ec == websocket::error::message_too_big) {
      info.code = close_code::too_big.code; // Beast sent the close frame and drained the rest
    } else if (ec == websocket::condition::protocol_violation && closing_ != closing::sent) {
      // Beast failed the connection with its own close frame (ours had not gone out): 1007
      // for text that is not UTF-8, 1002 for any other violation. Not a dropped connection:
      // the session ends, it does not wait for a resume.
      info.code = ec == websocket::error::bad_frame_payload ? close_code::invalid_payload.code
                                                            : close_code::protocol_error.code;
    } else if (peer_closed_ && closing_ != closing::sent) {
      // The peer closed with a close frame; the teardown after Beast's answer failed (a reset,
      // or the peer took too long to end the connection): its close all the same.
      info.clean = true;
      info.by_peer = true;
      info.code = peer_close_code();
    } else if (closing_ != closing::no) {
      // Our close: Beast ends the pending read with operation_aborted once it is sent.
      info.code = close_.code;
      info.clean = closing_ == closing::sent && ec == boost::asio::error::operation_aborted;
    }
    finish(info);
  }

  // -- write queue ----------------------------------------------------------

  void enqueue(std::string frame) {
    if (queue_frame(std::move(frame)))
      write_next();
  }

  /// Adds `frame` to the queue; false when nothing more can be sent (closing, closed, or
  /// this frame overflowed the queue and began the 4008 close).
  bool queue_frame(std::string frame) {
    if (closing_ != closing::no || peer_closed_ || phase_ == phase::finished)
      return false;
    queued_bytes_ += frame.size();
    if (queue_.capacity() == 0)
      queue_ = take_frame_batch();
    queue_.push_back(std::move(frame));
    return within_queue_limit();
  }

  /// queue_frame() for a manager's batch of frames; an empty queue takes the batch whole
  /// (what is left in `frames` afterwards is for the caller to recycle).
  bool queue_batch(frame_batch& frames) {
    if (closing_ != closing::no || peer_closed_ || phase_ == phase::finished)
      return false;
    for (auto& frame : frames)
      queued_bytes_ += frame.size();
    if (queue_.empty())
      queue_.swap(frames);
    else
      for (auto& frame : frames)
        queue_.push_back(std::move(frame));
    return within_queue_limit();
  }

  /// False once the frames queued behind the oldest one waiting hold more than the limit: the
  /// 4008 close has begun and the queue is dropped (a slow consumer loses what it did not read,
  /// never a frame in the middle). The oldest is not counted: a frame over the limit (a large
  /// event or reply) is sent, and a slow consumer is one whose frames pile up behind it.
  bool within_queue_limit() {
    congested_.store(queued_bytes_ >= limits_.outbound_queue_bytes / 4, std::memory_order_relaxed);
    if (queue_.empty() || queued_bytes_ - queue_.front().size() <= limits_.outbound_queue_bytes)
      return true;
    begin_close(close_code::slow_consumer, true);
    return false;
  }

  static constexpr std::size_t max_frame_header_bytes = 10; // a server frame is not masked

  void write_next() {
    if (phase_ != phase::open || writing_)
      return;
    auto& stream = ws_.next_layer();
    if (queue_.empty()) {
      if (stream.gathering())
        return flush();
      if (closing_ == closing::requested && !peer_closed_) // else Beast has answered already
        send_close();
      return;
    }
    // Beast frames every queued message with its synchronous write, which on burst_stream only
    // appends to the burst buffer (it never blocks), and the burst leaves with one write: the
    // events of an agent that arrive together cost one system call, one segment and one
    // wake-up of the peer, and no asynchronous operation per frame.
    ws_.text(true);
    stream.gather(queued_bytes_ + queue_.size() * max_frame_header_bytes);
    beast::error_code ec;
    for (auto& frame : queue_) {
      ws_.write(asio::buffer(frame), ec);
      if (ec)
        return abort_transport();
    }
    drop_queued(); // all of it is in the burst now
    flush();
    report_writable();
  }

  /// The sink's on_writable, when it asked for it and the queue is below the congestion mark.
  /// The burst in flight is not counted: what a run sends on now waits behind it, within the
  /// queue's bound (docs/internals.md, "A slow reader slows its runs").
  void report_writable() {
    if (!writable_wanted_ || congested_.load(std::memory_order_relaxed) || !sink_)
      return;
    writable_wanted_ = false;
    sink_->on_writable();
  }

  void flush() {
    writing_ = true;
    ws_.next_layer().async_flush(recycled([self = shared_from_this()](beast::error_code ec) {
      self->writing_ = false;
      if (ec)
        return self->abort_transport();
      self->write_next();
    }));
  }

  // -- closing --------------------------------------------------------------

  // `discard` drops what is queued (slow consumer); otherwise the queue is flushed first.
  void begin_close(const close_reason& why, bool discard) {
    if (closing_ != closing::no || phase_ == phase::finished)
      return;
    closing_ = closing::requested;
    close_ = why;
    if (discard)
      drop_queued();
    if (phase_ == phase::created) // never started: no WebSocket to close, only TCP
      return abort_transport();
    // A peer that never reads would keep the last write (and the close) pending forever.
    clock_.schedule(*this, std::chrono::steady_clock::now() + limits_.handshake_timeout);
    write_next();
  }

  void send_close() {
    closing_ = closing::sent;
    websocket::close_reason cr{static_cast<websocket::close_code>(close_.code),
                               std::string{close_.reason}};
    ws_.async_close(cr, recycled([self = shared_from_this()](beast::error_code ec) {
      if (ec)
        self->abort_transport();
      // On success the pending read completes with error::closed and finishes the session.
    }));
  }

  // Empties the queue and frees its storage (an idle connection keeps none). A burst being
  // flushed is not in the queue any more.
  void drop_queued() {
    recycle_frame_batch(queue_);
    queued_bytes_ = 0;
    congested_.store(false, std::memory_order_relaxed);
  }

  void abort_transport() {
    beast::error_code ignored;
    auto& socket = ws_.next_layer().next_layer();
    socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
    // A pending accept or read completes with an error and finishes the session itself.
    if (!reading_)
      finish(close_info{closing_ != closing::no ? close_.code : std::uint16_t{1006}, false});
  }

  void finish(close_info info) {
    if (phase_ == phase::finished)
      return;
    phase_ = phase::finished;
    closed_info_ = info;
    clock_.cancel(*this);
    drop_queued();
    beast::error_code ignored;
    ws_.next_layer().next_layer().close(ignored); // a pending write fails and ends
    report_closed();
  }

  void report_closed() {
    if (auto sink = std::move(sink_))
      sink->on_closed(closed_info_); // also breaks the session <-> manager cycle
  }

  websocket::stream<burst_stream<session_socket>, false> ws_; // no permessage-deflate
  std::unique_ptr<upgrade_request> request_; ///< until the upgrade is answered
  session_limits limits_;
  bool select_protocol_;
  deadline_clock& clock_; ///< of the io_context the session runs on
  std::chrono::steady_clock::time_point token_deadline_ = std::chrono::steady_clock::time_point::max();
  beast::flat_buffer buffer_;
  frame_batch decoded_; ///< text messages read, not yet handed to the sink (see deliver)
  std::shared_ptr<session_sink> sink_;
  frame_batch queue_; ///< outbound frames, oldest first, not yet in a burst
  std::size_t queued_bytes_ = 0;
  close_info closed_info_;
  phase phase_ = phase::created;
  closing closing_ = closing::no;
  heartbeat heartbeat_ = heartbeat::idle;
  close_reason close_ = close_code::normal; ///< ours, once closing_ is not `no`
  bool reading_ = false;    ///< an accept or a read is in flight: it will finish the session
  bool writing_ = false;    ///< a burst is being flushed
  bool peer_closed_ = false; ///< the peer's close frame was read (see on_peer_close)
  std::atomic<bool> claimed_{false}; ///< see claim(); any thread
  /// queued_bytes_ at a quarter of the bound or more (see congested()); read by any thread
  std::atomic<bool> congested_{false};
  bool writable_wanted_ = false; ///< notify_writable was called, on_writable not yet
  std::shared_ptr<connection_budget> budget_;
};

} // namespace

std::shared_ptr<ws_connection> make_ws_session(beast::tcp_stream stream, upgrade_request request,
                                               std::string unread, const session_limits& limits,
                                               bool select_protocol,
                                               std::shared_ptr<connection_budget> budget) {
  // asio 1.74's any_executor::target() casts without checking the type, and points into the
  // executor it is called on: the type is checked here, on a copy that outlives the pointer.
  auto erased = stream.get_executor();
  if (erased.target_type() != typeid(session_executor))
    throw std::logic_error("make_ws_session: the stream must run on an io_context's executor");
  session_socket socket{*erased.target<session_executor>()};
  // Re-homes the descriptor. A peer gone meanwhile leaves `socket` closed: the accept then
  // fails and the session reports itself closed like any other dead connection.
  auto plain = stream.release_socket();
  beast::error_code ec;
  auto local = plain.local_endpoint(ec);
  if (!ec) {
    auto fd = plain.release(ec);
    if (!ec)
      socket.assign(local.protocol(), fd, ec);
  }
  auto session = std::make_shared<ws_session>(std::move(socket), std::move(request), limits,
                                              select_protocol, std::move(budget));
  session->set_unread(std::move(unread));
  return session;
}

} // namespace er::net
