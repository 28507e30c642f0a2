#include "clients/cpp/ws_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

namespace er::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

// Runs `io` until `done` or the deadline, without cancelling anything.
bool run_for(asio::io_context& io, const bool& done, std::chrono::milliseconds limit) {
  io.restart();
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done && std::chrono::steady_clock::now() < deadline)
    io.run_one_until(deadline);
  return done;
}

// Like run_for, but on timeout cancels the socket's operations and lets them complete, so no
// handler outlives the call.
template <class Socket>
bool run_until(asio::io_context& io, Socket& socket, const bool& done,
               std::chrono::milliseconds timeout) {
  if (run_for(io, done, timeout))
    return true;
  beast::error_code ignored;
  socket.cancel(ignored);
  io.restart();
  while (!done)
    io.run_one();
  return false;
}

tcp::socket open_socket(asio::io_context& io, const std::string& host, unsigned short port,
                        const std::string& bind_address) {
  tcp::endpoint remote{asio::ip::make_address(host), port};
  tcp::socket socket{io};
  socket.open(remote.protocol());
  if (!bind_address.empty())
    socket.bind(tcp::endpoint{asio::ip::make_address(bind_address), 0});
  socket.connect(remote);
  socket.set_option(tcp::no_delay{true});
  return socket;
}

} // namespace

struct ws_client::impl {
  asio::io_context io{1};
  websocket::stream<tcp::socket> ws{io};
  beast::flat_buffer buffer;
  std::chrono::milliseconds timeout{5000};
  // A read outlives a timed-out read() call: Beast's stream stays usable that way.
  bool read_pending = false;
  bool read_done = false;
  beast::error_code read_ec;
  bool closed = false;
  std::string last_pong;

  void start_read() {
    if (read_pending)
      return;
    read_pending = true;
    read_done = false;
    ws.async_read(buffer, [this](beast::error_code ec, std::size_t) {
      read_ec = ec;
      read_done = true;
    });
  }

  // Runs until `done` or the deadline, without cancelling anything.
  bool run_for(const bool& done, std::chrono::milliseconds limit) {
    return client::run_for(io, done, limit);
  }

  void write(std::string_view data, bool text) {
    if (closed)
      throw boost::system::system_error(make_error_code(asio::error::not_connected), "websocket write");
    beast::error_code ec;
    bool done = false;
    ws.text(text);
    ws.async_write(asio::buffer(data.data(), data.size()), [&](beast::error_code e, std::size_t) {
      ec = e;
      done = true;
    });
    if (!run_for(done, timeout)) {
      hard_close();
      run_for(done, timeout);
      throw boost::system::system_error(make_error_code(asio::error::timed_out), "websocket write");
    }
    if (ec)
      throw boost::system::system_error(ec, "websocket write");
  }

  void hard_close() {
    beast::error_code ignored;
    ws.next_layer().close(ignored);
    closed = true;
  }
};

ws_client::ws_client(std::unique_ptr<impl> i) : impl_(std::move(i)) {
}

ws_client::~ws_client() {
  impl_->hard_close();
  // Let pending handlers (which reference impl) finish before impl goes away.
  impl_->io.restart();
  impl_->io.run_for(std::chrono::milliseconds{100});
}

std::pair<std::unique_ptr<ws_client>, handshake_result>
ws_client::connect(const client_options& options) {
  auto i = std::make_unique<impl>();
  i->timeout = options.timeout;
  i->ws.next_layer() = open_socket(i->io, options.host, options.port, options.bind_address);
  i->ws.set_option(websocket::stream_base::decorator([&options](websocket::request_type& req) {
    if (!options.subprotocols.empty())
      req.set(http::field::sec_websocket_protocol, options.subprotocols);
    if (!options.authorization.empty())
      req.set(http::field::authorization, options.authorization);
  }));
  i->ws.read_message_max(64 << 20);
  i->ws.control_callback([raw = i.get()](websocket::frame_type kind, std::string_view payload) {
    if (kind == websocket::frame_type::pong)
      raw->last_pong = std::string{payload};
  });
  websocket::response_type res;
  beast::error_code ec;
  bool done = false;
  auto host = options.host + ":" + std::to_string(options.port);
  i->ws.async_handshake(res, host, options.target, [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  if (!run_until(i->io, i->ws.next_layer(), done, options.timeout))
    throw boost::system::system_error(make_error_code(asio::error::timed_out), "websocket handshake");
  handshake_result result;
  result.status = res.result_int();
  result.body = res.body();
  result.selected_protocol = std::string{res[http::field::sec_websocket_protocol]};
  result.upgraded = !ec;
  if (!result.upgraded && result.status == 0)
    throw boost::system::system_error(ec, "websocket handshake");
  if (!result.upgraded)
    i->closed = true;
  return {std::unique_ptr<ws_client>(new ws_client(std::move(i))), std::move(result)};
}

void ws_client::send_text(std::string_view text) {
  impl_->write(text, true);
}

void ws_client::send_binary(std::string_view data) {
  impl_->write(data, false);
}

std::string ws_client::last_pong() const {
  return impl_->last_pong;
}

void ws_client::send_raw(std::string_view bytes) {
  asio::write(impl_->ws.next_layer(), asio::buffer(bytes.data(), bytes.size()));
}

frame ws_client::read(std::chrono::milliseconds timeout) {
  frame result;
  if (impl_->closed) {
    result.what = frame::kind::closed;
    result.close_code = 1006;
    return result;
  }
  impl_->start_read();
  if (!impl_->run_for(impl_->read_done, timeout))
    return result; // still pending: the next read() picks it up
  impl_->read_pending = false;
  if (impl_->read_ec) {
    impl_->closed = true;
    result.what = frame::kind::closed;
    bool clean = impl_->read_ec == websocket::error::closed;
    result.close_code = clean ? static_cast<std::uint16_t>(impl_->ws.reason().code)
                              : std::uint16_t{1006};
    if (clean)
      result.close_reason = std::string{impl_->ws.reason().reason.c_str()};
    return result;
  }
  result.what = impl_->ws.got_text() ? frame::kind::text : frame::kind::binary;
  result.data = beast::buffers_to_string(impl_->buffer.data());
  impl_->buffer.consume(impl_->buffer.size());
  return result;
}

void ws_client::close(std::uint16_t code) {
  if (impl_->closed)
    return;
  bool done = false;
  impl_->ws.async_close(websocket::close_reason{code}, [&](beast::error_code) { done = true; });
  impl_->run_for(done, impl_->timeout);
  // The server's close frame ends the pending read.
  auto deadline = std::chrono::steady_clock::now() + impl_->timeout;
  while (!impl_->closed && std::chrono::steady_clock::now() < deadline)
    read(impl_->timeout);
  if (!done || !impl_->closed) {
    impl_->hard_close();
    impl_->run_for(done, impl_->timeout);
  }
  impl_->closed = true;
}

void ws_client::reset() {
  beast::error_code ignored;
  auto& socket = impl_->ws.next_layer();
  socket.set_option(asio::socket_base::linger{true, 0}, ignored);
  impl_->hard_close();
}

http_response http_request(const std::string& host, unsigned short port, std::string_view method,
                           std::string_view target, std::string_view authorization,
                           std::string_view body, std::chrono::milliseconds timeout) {
  asio::io_context io{1};
  auto socket = open_socket(io, host, port, {});
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, host);
  if (!authorization.empty())
    req.set(http::field::authorization, authorization);
  if (!body.empty())
    req.set(http::field::content_type, "application/json");
  req.body() = std::string{body};
  req.prepare_payload();
  req.keep_alive(false);
  http::write(socket, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  beast::error_code ec;
  bool done = false;
  http::async_read(socket, buffer, res, [&](beast::error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  if (!run_until(io, socket, done, timeout))
    throw boost::system::system_error(make_error_code(asio::error::timed_out), "http request");
  if (ec)
    throw boost::system::system_error(ec, "http request");
  return {res.result_int(), res.body(), std::string{res[http::field::content_type]},
          std::string{res["Content-Security-Policy"]}};
}

} // namespace er::client
