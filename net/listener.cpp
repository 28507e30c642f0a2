#include "net/listener.hpp"

#include <atomic>
#include <iostream>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <nlohmann/json.hpp>

#include "context/token_source.hpp"
#include "net/ws_session.hpp"

namespace er::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string json_error(std::string_view reason) {
  return nlohmann::json{{"error", reason}}.dump();
}

namespace {

/// The message of the exception being handled.
std::string what_of_current() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception of unknown type";
  }
}

constexpr std::size_t max_request_body_bytes = 1 << 20;
constexpr std::size_t max_request_head_bytes = 16 * 1024;
/// What a request may leave unparsed in the read buffer: its head (which the parser caps at
/// max_request_head_bytes) or a chunked body's metadata, a chunk-size line with its extensions
/// or the trailer fields, which Beast 1.74 leaves unbounded; bodies pass through in pieces.
constexpr std::size_t max_buffered_request_bytes = 2 * max_request_head_bytes;
constexpr std::string_view websocket_path = "/ws";

struct shared_settings {
  shared_settings(const context::jwt_verifier& v, session_limits l,
                  std::shared_ptr<connection_budget> b, listener_hooks h, std::size_t max_http)
    : verifier(v), limits(l), budget(std::move(b)), hooks(std::move(h)),
      max_http_connections(max_http) {
  }

  const context::jwt_verifier& verifier;
  session_limits limits;
  std::shared_ptr<connection_budget> budget;
  listener_hooks hooks;
  std::size_t max_http_connections;
  mutable std::atomic<std::size_t> http_connections{0}; ///< http_session objects alive
};

/// When a connection opened with a token that expires at `exp` closes with 4501: exp plus
/// the leeway the token was accepted with (a token accepted within the leeway is not closed
/// at once). Past what system_clock can hold (exp may be 2^53 s): never.
std::chrono::system_clock::time_point expiry_of(std::int64_t exp, std::chrono::seconds leeway) {
  using clock = std::chrono::system_clock;
  auto max_seconds = std::chrono::duration_cast<std::chrono::seconds>(clock::duration::max());
  if (exp >= max_seconds.count() - leeway.count())
    return clock::time_point::max();
  return clock::time_point{std::chrono::seconds{exp} + leeway};
}

/// One HTTP exchange at a time on one TCP connection, until it upgrades or closes.
class http_session : public std::enable_shared_from_this<http_session> {
public:
  /// Counted in settings->http_connections (taken by the listener before) until destroyed,
  /// which is when the connection closes or has become a WebSocket session.
  http_session(tcp::socket socket, std::shared_ptr<const shared_settings> settings)
    : stream_(std::move(socket)), settings_(std::move(settings)) {
  }

  ~http_session() {
    settings_->http_connections.fetch_sub(1);
  }

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }

private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(max_request_head_bytes);
    parser_->body_limit(max_request_body_bytes);
    stream_.expires_after(settings_->limits.handshake_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::body_limit)
      return reply(http_reply{413, json_error("request body too large")}, false);
    if (ec == http::error::header_limit)
      return reply(http_reply{431, json_error("request header fields too large")}, false);
    if (ec == http::error::buffer_overflow) // see max_buffered_request_bytes
      return reply(http_reply{431, json_error("chunk extensions or trailer fields too large")},
                   false);
    if (ec && ec.category() == http::make_error_code(http::error::bad_target).category()
        && ec != http::error::end_of_stream && ec != http::error::partial_message)
      return reply(http_reply{400, json_error("malformed request")}, false);
    if (ec) // the peer went away, or the handshake timeout passed
      return close();
    auto& req = parser_->get();
    auto path = context::target_path(req.target());
    if (path == websocket_path) {
      if (beast::websocket::is_upgrade(req))
        return authenticate_upgrade();
      return reply(http_reply{426, json_error("websocket upgrade required")}, false);
    }
    if (!settings_->hooks.on_request)
      return reply(http_reply{404, json_error("not found")}, req.keep_alive());
    forward_request();
  }

  void forward_request() {
    auto& req = parser_->get();
    http_request_view view{std::string_view{req.method_string()}, std::string_view{req.target()},
                           std::string_view{req[http::field::authorization]},
                           std::string_view{req.body()}};
    bool keep_alive = req.keep_alive();
    auto answered = std::make_shared<std::atomic<bool>>(false);
    auto respond = [self = shared_from_this(), keep_alive, answered](http_reply r) {
      if (answered->exchange(true))
        return; // a handler that threw after answering: its answer stands
      asio::post(self->stream_.get_executor(), [self, keep_alive, r = std::move(r)]() mutable {
        self->reply(std::move(r), keep_alive);
      });
    };
    // A handler's exception must not leave the io thread (it would end the process): the
    // request gets 500 unless it was answered already, and the connection goes on. The path
    // is logged without its query, which may hold a token.
    try {
      settings_->hooks.on_request(view, respond);
    } catch (...) {
      std::cerr << "event-router: the handler of " << view.method << ' '
                << context::target_path(view.target) << " failed: " << what_of_current()
                << std::endl;
      respond(http_reply{500, json_error("internal error")});
    }
  }

  void authenticate_upgrade() {
    auto& req = parser_->get();
    auto subprotocols = std::string_view{req[http::field::sec_websocket_protocol]};
    auto extracted = context::extract_token(
      {subprotocols, std::string_view{req[http::field::authorization]},
       std::string_view{req.target()}});
    if (!subprotocols.empty() && !extracted.offers_protocol)
      return reply(http_reply{400, json_error("subprotocol router.v1 required")}, false);
    auto verdict = settings_->verifier.verify(extracted.token);
    if (auto* failure = std::get_if<context::auth_failure>(&verdict))
      return refuse(*failure);
    auto& token = std::get<context::verified_token>(verdict);
    if (!settings_->budget->try_acquire())
      return reply(http_reply{503, json_error("too many connections")}, false);
    auto ctx = context::user_execution_context::for_connection(
      std::move(token.user_id), remote_address(),
      expiry_of(token.expires_at, settings_->verifier.leeway()));
    std::string target{req.target()};
    stream_.expires_never(); // the WebSocket's own timeouts take over
    auto connection = make_ws_session(std::move(stream_), parser_->release(),
                                      beast::buffers_to_string(buffer_.data()), settings_->limits,
                                      extracted.offers_protocol, settings_->budget);
    settings_->hooks.on_upgrade(upgrade{std::move(connection), std::move(ctx), std::move(target)});
  }

  void refuse(context::auth_failure failure) {
    if (settings_->hooks.on_auth_failure)
      settings_->hooks.on_auth_failure(failure);
    reply(http_reply{401, json_error(context::to_string(failure))}, false);
  }

  std::string remote_address() {
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    return ec ? std::string{} : ep.address().to_string();
  }

  void reply(http_reply r, bool keep_alive) {
    auto res = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(r.status), 11);
    res->set(http::field::server, "event-router");
    res->set(http::field::content_type, r.content_type);
    if (r.status == 401)
      res->set(http::field::www_authenticate, "Bearer");
    for (auto& [name, value] : r.headers)
      res->set(name, value);
    res->keep_alive(keep_alive);
    res->body() = std::move(r.body);
    res->prepare_payload();
    stream_.expires_after(settings_->limits.handshake_timeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep_alive](beast::error_code ec,
                                                                  std::size_t) {
                        if (ec)
                          return self->close();
                        if (!keep_alive)
                          return self->linger_close();
                        self->do_read();
                      });
  }

  // After a refusal the client may still be sending (the rest of an oversized head, a
  // body): closing with unread bytes would reset the connection and could destroy the
  // answer before the client reads it. So: shut down our side, read and drop what still
  // comes until the client closes or the handshake timeout passes, then close.
  void linger_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(settings_->limits.handshake_timeout);
    drain();
  }

  void drain() {
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec)
                                return self->close();
                              self->drain();
                            });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{max_buffered_request_bytes};
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<const shared_settings> settings_;
};

} // namespace

struct listener::impl : std::enable_shared_from_this<listener::impl> {
  impl(asio::io_context& io, std::shared_ptr<const shared_settings> s)
    : io(io), acceptor(asio::make_strand(io)), backoff(acceptor.get_executor()),
      settings(std::move(s)) {
  }

  void accept_next() {
    if (!acceptor.is_open())
      return;
    // Only this strand adds to the count, so the check cannot be raced past. At the bound,
    // connections wait in the kernel's accept queue (and past it, their SYNs are retried), as
    // a burst of clients would wait for a busy server: nobody is refused, and silent clients
    // cannot take every file descriptor. The slots come back as their sessions end.
    if (settings->http_connections.load() >= settings->max_http_connections) {
      if (!paused) {
        paused = true;
        if (settings->hooks.on_accept_paused)
          settings->hooks.on_accept_paused();
      }
      backoff.expires_after(std::chrono::milliseconds(10));
      backoff.async_wait([self = shared_from_this()](beast::error_code) { self->accept_next(); });
      return;
    }
    paused = false;
    auto& home = settings->hooks.connection_context ? settings->hooks.connection_context() : io;
    // The connection's socket runs on its io_context's own executor: one thread runs that
    // io_context, so its handlers already run one at a time (net/ws_session.cpp).
    acceptor.async_accept(home.get_executor(),
                          [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
                            self->on_accept(ec, std::move(socket));
                          });
  }

  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (!acceptor.is_open())
      return;
    if (ec) {
      // EMFILE and friends: pause instead of spinning; fds may be free again soon.
      backoff.expires_after(std::chrono::milliseconds(50));
      backoff.async_wait([self = shared_from_this()](beast::error_code) { self->accept_next(); });
      return;
    }
    settings->http_connections.fetch_add(1);
    socket.set_option(tcp::no_delay{true}, ec);
    std::make_shared<http_session>(std::move(socket), settings)->start();
    accept_next();
  }

  asio::io_context& io;
  tcp::acceptor acceptor;
  asio::steady_timer backoff;
  std::shared_ptr<const shared_settings> settings;
  bool paused = false; ///< waiting for one of max_http_connections to end
  unsigned short bound_port = 0;
};

listener::listener(asio::io_context& io, const std::string& host, unsigned short port,
                   const context::jwt_verifier& verifier, session_limits limits,
                   std::shared_ptr<connection_budget> budget, listener_hooks hooks,
                   bool reuse_port, std::size_t max_http_connections) {
  auto settings = std::make_shared<const shared_settings>(verifier, limits, std::move(budget),
                                                          std::move(hooks), max_http_connections);
  impl_ = std::make_shared<impl>(io, std::move(settings));
  auto where = host + ":" + std::to_string(port);
  beast::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec)
    throw boost::system::system_error(ec, "invalid listen address " + host);
  tcp::endpoint endpoint{address, port};
  auto& acc = impl_->acceptor;
  acc.open(endpoint.protocol(), ec);
  if (!ec)
    acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && reuse_port) // several processes share the port; the kernel spreads connections
    acc.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true), ec);
  if (!ec)
    acc.bind(endpoint, ec);
  if (!ec)
    acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw boost::system::system_error(ec, "cannot listen on " + where);
  impl_->bound_port = acc.local_endpoint().port();
}

listener::~listener() {
  stop();
}

void listener::start() {
  asio::dispatch(impl_->acceptor.get_executor(), [i = impl_] { i->accept_next(); });
}

void listener::stop() {
  asio::dispatch(impl_->acceptor.get_executor(), [i = impl_] {
    beast::error_code ignored;
    i->acceptor.close(ignored);
    i->backoff.cancel();
  });
}

unsigned short listener::port() const {
  return impl_->bound_port;
}

} // namespace er::net
