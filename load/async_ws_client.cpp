#include "load/async_ws_client.hpp"

#include <deque>
#include <utility>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include "net/drained_read.hpp"

namespace er::load {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

// The socket's and the timer's executor is their io_context's own, of the concrete type, not
// asio's type-erased executor: every operation copies it, and router-load runs thousands of
// these clients. No strand: the io_context a client is made on must be run by one thread (as
// router-load's io threads and the tests run theirs), which already runs the client's handlers
// one at a time; a strand would add a lock and a queue around each.
using client_executor = asio::io_context::executor_type;
using client_socket = asio::basic_stream_socket<tcp, client_executor>;
using client_timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                                asio::wait_traits<std::chrono::steady_clock>,
                                                client_executor>;

// The socket under the WebSocket stream, told when Beast asks it for bytes: by then Beast has
// decoded every message the bytes read so far held. A client hands the messages of one socket
// read (a run's events leave the router in one write) to its sink together, as one batch.
// Its reads end asio's speculative read once they drain the socket (net/drained_read.hpp).
template <class Socket>
class read_hook_layer {
public:
  using next_layer_type = Socket;
  using executor_type = typename Socket::executor_type;

  template <class... Args>
  explicit read_hook_layer(Args&&... args) : socket_(std::forward<Args>(args)...) {
  }

  executor_type get_executor() noexcept {
    return socket_.get_executor();
  }
  Socket& next_layer() noexcept {
    return socket_;
  }

  /// `hook(context)` runs each time the layer above asks for bytes, before they are read.
  void on_read_request(void (*hook)(void*), void* context) noexcept {
    hook_ = hook;
    hook_context_ = context;
  }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (hook_)
      hook_(hook_context_);
    net::async_read_drained(socket_, buffers, std::forward<Handler>(handler));
  }
  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    socket_.async_write_some(buffers, std::forward<Handler>(handler));
  }

private:
  Socket socket_;
  void (*hook_)(void*) = nullptr;
  void* hook_context_ = nullptr;
};

template <class Socket>
void teardown(beast::role_type role, read_hook_layer<Socket>& layer, beast::error_code& ec) {
  using websocket::teardown;
  teardown(role, layer.next_layer(), ec);
}

template <class Socket, class Handler>
void async_teardown(beast::role_type role, read_hook_layer<Socket>& layer, Handler&& handler) {
  using websocket::async_teardown;
  async_teardown(role, layer.next_layer(), std::forward<Handler>(handler));
}

// Every member below runs on `executor`'s thread.
struct async_ws_client::impl : std::enable_shared_from_this<impl> {
  enum class phase { connecting, open, closing, done };

  impl(asio::io_context& io, const async_client_options& o, std::shared_ptr<client_sink> s)
    : executor(io.get_executor()), ws(executor), timer(executor), options(o),
      sink(std::move(s)) {
    ws.next_layer().on_read_request([](void* self) { static_cast<impl*>(self)->hand_on_texts(); },
                                    this); // the layer lives in `ws`, a member: never dangles
  }

  client_socket& socket() noexcept {
    return ws.next_layer().next_layer();
  }

  client_executor executor;
  websocket::stream<read_hook_layer<client_socket>> ws;
  client_timer timer;
  async_client_options options;
  std::shared_ptr<client_sink> sink;
  websocket::response_type response;
  beast::flat_buffer buffer;
  std::vector<std::string> texts; ///< text messages decoded, not yet handed to the sink
  std::deque<std::string> queue;
  phase state = phase::connecting;
  unsigned timer_generation = 0; ///< a stale expiry (armed for an earlier phase) is ignored
  bool writing = false;
  bool close_requested = false;
  bool close_sent = false;
  bool timed_out = false;
  std::uint16_t close_code = 1000;

  template <class F>
  void post(F f) {
    asio::post(executor, [self = shared_from_this(), f = std::move(f)]() mutable { f(*self); });
  }

  // -- connect and upgrade ----------------------------------------------------

  void do_connect() {
    beast::error_code ec;
    auto address = asio::ip::make_address(options.host, ec);
    if (ec)
      return fail_open(0, "bad host address " + options.host);
    tcp::endpoint remote{address, options.port};
    auto& socket = this->socket();
    socket.open(remote.protocol(), ec);
    if (!ec && !options.bind_address.empty())
      bind_source(ec);
    if (ec)
      return fail_open(0, "socket: " + ec.message());
    arm_timer();
    socket.async_connect(remote, [self = shared_from_this()](beast::error_code e) {
      self->on_connect(e);
    });
  }

  // The port is chosen at connect time (IP_BIND_ADDRESS_NO_PORT), so one source address can
  // carry connections to several servers without exhausting its ephemeral ports at bind().
  void bind_source(beast::error_code& ec) {
    auto& socket = this->socket();
#ifdef IP_BIND_ADDRESS_NO_PORT
    int one = 1;
    ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    auto source = asio::ip::make_address(options.bind_address, ec);
    if (!ec)
      socket.bind(tcp::endpoint{source, 0}, ec);
  }

  void on_connect(beast::error_code ec) {
    if (ec)
      return fail_open(0, timed_out ? "connect timed out" : "connect: " + ec.message());
    beast::error_code ignored;
    socket().set_option(tcp::no_delay{true}, ignored);
    ws.secure_prng(false); // masking keys of a load client need not be unpredictable
    ws.read_message_max(16 << 20);
    ws.set_option(websocket::stream_base::decorator(
      [protocols = options.subprotocols](websocket::request_type& req) {
        if (!protocols.empty())
          req.set(http::field::sec_websocket_protocol, protocols);
      }));
    auto host = options.host + ":" + std::to_string(options.port);
    ws.async_handshake(response, host, options.target,
                       [self = shared_from_this()](beast::error_code e) { self->on_handshake(e); });
  }

  void on_handshake(beast::error_code ec) {
    if (ec)
      return fail_open(response.result_int(),
                       timed_out ? "upgrade timed out" : "upgrade: " + ec.message());
    ++timer_generation;
    timer.cancel();
    state = phase::open;
    response = {};
    sink->on_open(open_result{true, 101, {}});
    do_read();
    if (close_requested)
      begin_close();
    else
      write_next();
  }

  void fail_open(unsigned status, std::string why) {
    state = phase::done;
    ++timer_generation;
    timer.cancel();
    beast::error_code ignored;
    socket().close(ignored);
    if (auto s = std::move(sink))
      s->on_open(open_result{false, status, std::move(why)});
  }

  // -- read -------------------------------------------------------------------

  void do_read() {
    ws.async_read(buffer, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (ec == asio::error::operation_aborted && close_sent)
      return; // the close handshake finishes the connection (send_close)
    if (ec)
      return finish(ec == websocket::error::closed
                      ? close_info{static_cast<std::uint16_t>(ws.reason().code), true}
                      : close_info{});
    if (ws.got_text()) {
      if (texts.empty())
        texts.reserve(8);
      texts.push_back(beast::buffers_to_string(buffer.data()));
    } else {
      hand_on_texts(); // in order
      sink->on_binary(buffer.size());
    }
    buffer.consume(buffer.size());
    do_read();
  }

  // A text message waits in `texts` until Beast asks the socket for more bytes (or the
  // connection ends): one message alone is handed on as the read after it begins.
  void hand_on_texts() {
    if (!texts.empty() && sink)
      sink->on_texts(std::exchange(texts, {}));
  }

  // -- write queue ------------------------------------------------------------

  void enqueue(std::string text) {
    if (state == phase::done || close_requested)
      return;
    queue.push_back(std::move(text));
    write_next();
  }

  void write_next() {
    if (state == phase::connecting || state == phase::done || writing)
      return;
    if (queue.empty()) {
      if (state == phase::closing && !close_sent)
        send_close();
      return;
    }
    writing = true;
    ws.text(true);
    ws.async_write(asio::buffer(queue.front()),
                   [self = shared_from_this()](beast::error_code ec, std::size_t) {
                     self->on_write(ec);
                   });
  }

  void on_write(beast::error_code ec) {
    writing = false;
    queue.pop_front();
    if (ec)
      return abort_transport(); // the pending read fails and finishes the connection
    write_next();
  }

  // -- close and reset --------------------------------------------------------

  void request_close(std::uint16_t code) {
    if (state == phase::done || close_requested)
      return;
    close_requested = true;
    close_code = code;
    if (state == phase::open)
      begin_close();
    // while connecting: on_handshake begins the close
  }

  void begin_close() {
    state = phase::closing;
    arm_timer();
    write_next();
  }

  void send_close() {
    close_sent = true;
    // Beast 1.74 completes the pending read with operation_aborted when our close frame goes
    // out first; the close handshake's own outcome is reported here.
    ws.async_close(websocket::close_reason{close_code},
                   [self = shared_from_this()](beast::error_code ec) {
                     if (ec)
                       return self->finish(close_info{});
                     self->finish(close_info{static_cast<std::uint16_t>(self->ws.reason().code), true});
                   });
  }

  void do_reset() {
    if (state == phase::done)
      return;
    beast::error_code ignored;
    socket().set_option(asio::socket_base::linger{true, 0}, ignored);
    abort_transport();
  }

  void arm_timer() {
    auto generation = ++timer_generation;
    timer.expires_after(options.handshake_timeout);
    timer.async_wait([self = shared_from_this(), generation](beast::error_code ec) {
      if (ec || generation != self->timer_generation)
        return;
      self->timed_out = true;
      self->abort_transport();
    });
  }

  // Pending operations complete with an error and end the connection from their handlers.
  void abort_transport() {
    beast::error_code ignored;
    socket().close(ignored);
  }

  void finish(close_info info) {
    if (state == phase::done)
      return;
    state = phase::done;
    ++timer_generation;
    timer.cancel();
    while (queue.size() > (writing ? 1u : 0u)) // a write in progress still reads its frame
      queue.pop_back();
    abort_transport();
    hand_on_texts(); // what came before the end, in order
    if (auto s = std::move(sink))
      s->on_closed(info);
  }
};

async_ws_client async_ws_client::open(asio::io_context& io, const async_client_options& options,
                                      std::shared_ptr<client_sink> sink) {
  auto i = std::make_shared<impl>(io, options, std::move(sink));
  i->post([](impl& self) { self.do_connect(); });
  return async_ws_client{std::move(i)};
}

void async_ws_client::send(std::string text) const {
  if (impl_)
    impl_->post([t = std::move(text)](impl& self) mutable { self.enqueue(std::move(t)); });
}

void async_ws_client::close(std::uint16_t code) const {
  if (impl_)
    impl_->post([code](impl& self) { self.request_close(code); });
}

void async_ws_client::reset() const {
  if (impl_)
    impl_->post([](impl& self) { self.do_reset(); });
}

} // namespace er::load
