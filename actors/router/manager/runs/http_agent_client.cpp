#include "actors/router/manager/runs/http_agent_client.hpp"

#include <array>
#include <atomic>
#include <deque>
#include <limits>
#include <mutex>
#include <stdexcept>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "actors/router/manager/runs/read_window.hpp"

namespace er::actors {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using strand_type = asio::strand<asio::io_context::executor_type>;

constexpr std::size_t read_chunk_bytes = 16384;

/// One connection to the agent, plain or TLS, on a strand of its own.
class agent_connection {
public:
  agent_connection(asio::io_context& io, ssl::context* tls) : strand_(asio::make_strand(io)) {
    if (tls)
      tls_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(strand_, *tls);
    else
      plain_ = std::make_unique<beast::tcp_stream>(strand_);
  }

  /// Calls `f` with the stream a request is written to and read from.
  template <class F>
  void with_stream(F&& f) {
    if (tls_)
      f(*tls_);
    else
      f(*plain_);
  }

  beast::tcp_stream& tcp() {
    return tls_ ? beast::get_lowest_layer(*tls_) : *plain_;
  }
  beast::ssl_stream<beast::tcp_stream>* tls() {
    return tls_.get();
  }
  const strand_type& strand() const {
    return strand_;
  }
  void close() {
    error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
  }

  bool connected = false;

private:
  strand_type strand_;
  std::unique_ptr<beast::tcp_stream> plain_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls_;
};

using connection_ptr = std::shared_ptr<agent_connection>;

class pool_impl;

/// One request and its response, from the connect (if needed) to the end of the body.
class exchange final : public agent_request, public std::enable_shared_from_this<exchange> {
public:
  exchange(std::shared_ptr<pool_impl> pool, std::string request_id, std::string body,
           agent_response_callbacks cb, std::size_t body_window, std::size_t line_weight)
    : pool_(std::move(pool)), request_id_(std::move(request_id)), body_(std::move(body)),
      cb_(std::move(cb)), body_window_(body_window, line_weight) {
  }

  /// Runs on `connection` (its strand); `reused`: it served an earlier request.
  void begin(connection_ptr connection);
  void abort() override;
  void consumed(std::size_t bytes) override;
  /// No slot freed in time (called by the pool, which has dropped it from its queue).
  void fail_unavailable(std::string message);

private:
  void resolve();
  void connect(const tcp::resolver::results_type& endpoints);
  void handshake();
  void write();
  void read_head();
  void read_body();
  void on_read(error_code ec);
  bool deliver_body();
  void succeed();
  /// Ends it with on_error; a connection that served an earlier request and failed before
  /// any response is retried once on a fresh one (the agent closed it while it was idle).
  void fail(const std::string& what, error_code ec);
  void release(bool reusable);

  std::shared_ptr<pool_impl> pool_;
  std::string request_id_;
  std::string body_;
  agent_response_callbacks cb_;
  read_window body_window_; ///< body bytes delivered, not yet consumed() (strand)
  connection_ptr connection_;
  std::unique_ptr<tcp::resolver> resolver_;
  http::request<http::string_body> request_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  beast::flat_buffer buffer_;
  std::array<char, read_chunk_bytes> chunk_;
  /// The last read's body bytes in chunk_ that the window has not admitted yet. Empty unless
  /// the window is full: no read is made before they are delivered.
  std::string_view body_kept_;
  bool reused_ = false;
  bool head_seen_ = false;
  /// on_end or on_error was called, or it was aborted. Atomic: an abort runs on the strand of
  /// the connection it found, which a retry may have replaced meanwhile.
  std::atomic<bool> finished_{false};
  /// The slot went back to the pool: once only, whichever of an abort and the hand-over of
  /// the slot (begin) comes first.
  std::atomic<bool> released_{false};
  /// Guards the hand-over from the pool's queue to a connection against abort().
  std::mutex start_mutex_;
  bool aborted_before_start_ = false;
};

class pool_impl final : public http_agent_pool, public std::enable_shared_from_this<pool_impl> {
public:
  pool_impl(asio::io_context& io, http_agent_options options)
    : io_(io), options_(std::move(options)) {
    if (!options_.url.tls)
      return;
    tls_ = std::make_unique<ssl::context>(ssl::context::tls_client);
    tls_->set_default_verify_paths();
    if (!options_.ca_file.empty()) {
      error_code ec;
      tls_->load_verify_file(options_.ca_file, ec);
      if (ec)
        throw std::runtime_error("cannot read ca-file " + options_.ca_file + ": " + ec.message());
    }
    tls_->set_verify_mode(ssl::verify_peer);
  }

  std::shared_ptr<agent_request> start(std::string request_id, std::string body,
                                       agent_response_callbacks callbacks,
                                       std::size_t body_window,
                                       std::size_t line_weight) override {
    auto ex = std::make_shared<exchange>(shared_from_this(), std::move(request_id),
                                         std::move(body), std::move(callbacks), body_window,
                                         line_weight);
    std::unique_lock lock{mutex_};
    if (in_flight_ < options_.max_in_flight) {
      ++in_flight_;
      auto connection = take_connection();
      lock.unlock();
      ex->begin(std::move(connection));
      return ex;
    }
    queue_.push_back(waiter{ex, std::make_unique<asio::steady_timer>(io_)});
    queue_.back().timer->expires_after(options_.queue_timeout);
    queue_.back().timer->async_wait([weak = weak_from_this(), raw = ex.get()](error_code ec) {
      if (auto self = weak.lock(); self && !ec)
        self->drop_waiter(raw, true);
    });
    return ex;
  }

  std::size_t idle_connections() const override {
    std::lock_guard lock{mutex_};
    return idle_.size();
  }

  /// A request is over: its slot goes to the next waiter, its connection back to the idle
  /// ones when it may be reused.
  void release(connection_ptr connection, bool reusable) {
    std::unique_lock lock{mutex_};
    if (connection && reusable && idle_.size() < options_.max_in_flight)
      idle_.push_back(std::move(connection));
    else if (connection)
      asio::dispatch(connection->strand(), [connection] { connection->close(); });
    if (queue_.empty()) {
      --in_flight_;
      return;
    }
    auto next = std::move(queue_.front());
    queue_.pop_front();
    next.timer->cancel();
    auto fresh = take_connection();
    lock.unlock();
    next.ex->begin(std::move(fresh));
  }

  /// Takes a waiting request out of the queue: it timed out, or it was aborted.
  void drop_waiter(exchange* ex, bool timed_out) {
    std::unique_lock lock{mutex_};
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (it->ex.get() != ex)
        continue;
      auto dropped = std::move(*it);
      queue_.erase(it);
      lock.unlock();
      dropped.timer->cancel();
      if (timed_out)
        dropped.ex->fail_unavailable(
          "the agent is busy: " + std::to_string(options_.max_in_flight)
          + " requests are in flight and none ended within queue-timeout-ms ("
          + std::to_string(options_.queue_timeout.count()) + " ms)");
      return;
    }
  }

  /// A fresh connection for a request that failed on a reused one (its slot stays held).
  connection_ptr fresh_connection() {
    return std::make_shared<agent_connection>(io_, tls_.get());
  }

  const http_agent_options& options() const {
    return options_;
  }

private:
  struct waiter {
    std::shared_ptr<exchange> ex;
    std::unique_ptr<asio::steady_timer> timer;
  };

  connection_ptr take_connection() { // with mutex_ held
    if (idle_.empty())
      return fresh_connection();
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    return connection;
  }

  asio::io_context& io_;
  http_agent_options options_;
  std::unique_ptr<ssl::context> tls_;
  mutable std::mutex mutex_;
  std::size_t in_flight_ = 0;
  std::deque<connection_ptr> idle_;
  std::deque<waiter> queue_;
};

// -- exchange -----------------------------------------------------------------

void exchange::begin(connection_ptr connection) {
  bool aborted = false;
  {
    std::lock_guard lock{start_mutex_};
    connection_ = std::move(connection);
    aborted = aborted_before_start_;
  }
  asio::dispatch(connection_->strand(), [self = shared_from_this(), aborted] {
    if (aborted || self->finished_) { // aborted while waiting for the slot
      self->finished_ = true;
      return self->release(false);
    }
    self->reused_ = self->connection_->connected;
    if (self->reused_)
      return self->write();
    self->resolve();
  });
}

void exchange::abort() {
  auto self = shared_from_this();
  std::unique_lock lock{start_mutex_};
  if (!connection_) { // still waiting for a slot (or being handed one: begin() sees the flag)
    aborted_before_start_ = true;
    lock.unlock();
    pool_->drop_waiter(this, false);
    return;
  }
  auto connection = connection_;
  lock.unlock();
  asio::dispatch(connection->strand(), [self, connection] {
    if (self->finished_.exchange(true))
      return;
    connection->close(); // the pending operation ends with an error, unreported
    self->release(false);
  });
}

void exchange::fail_unavailable(std::string message) {
  if (cb_.on_error)
    cb_.on_error(std::move(message), true);
}

void exchange::resolve() {
  resolver_ = std::make_unique<tcp::resolver>(connection_->strand());
  auto& url = pool_->options().url;
  connection_->tcp().expires_after(pool_->options().connect_timeout);
  resolver_->async_resolve(url.host, url.port, [self = shared_from_this()](
                                                 error_code ec, tcp::resolver::results_type r) {
    if (ec)
      return self->fail("cannot resolve the agent's host", ec);
    self->connect(r);
  });
}

void exchange::connect(const tcp::resolver::results_type& endpoints) {
  connection_->tcp().async_connect(
    endpoints, [self = shared_from_this()](error_code ec, const tcp::endpoint&) {
      if (ec)
        return self->fail("cannot connect to the agent", ec);
      self->connection_->tcp().socket().set_option(tcp::no_delay{true}, ec);
      if (self->connection_->tls())
        return self->handshake();
      self->connection_->connected = true;
      self->write();
    });
}

void exchange::handshake() {
  auto& stream = *connection_->tls();
  auto& host = pool_->options().url.host;
  // SNI, and the certificate must name the host (or its address).
  SSL_set_tlsext_host_name(stream.native_handle(), host.c_str());
  stream.set_verify_callback(ssl::host_name_verification(host));
  stream.async_handshake(ssl::stream_base::client, [self = shared_from_this()](error_code ec) {
    if (ec)
      return self->fail("TLS handshake with the agent failed", ec);
    self->connection_->connected = true;
    self->write();
  });
}

void exchange::write() {
  if (finished_)
    return;
  auto& options = pool_->options();
  request_ = {http::verb::post, options.url.target, 11};
  request_.set(http::field::host, options.url.host);
  request_.set(http::field::user_agent, "event-router");
  request_.set(http::field::content_type, "application/json");
  request_.set(http::field::accept, "application/x-ndjson, text/event-stream");
  request_.set("X-Request-Id", request_id_);
  if (!options.bearer.empty())
    request_.set(http::field::authorization, "Bearer " + options.bearer);
  request_.keep_alive(true);
  request_.body() = body_;
  request_.prepare_payload();
  connection_->tcp().expires_after(options.connect_timeout);
  connection_->with_stream([&](auto& stream) {
    http::async_write(stream, request_, [self = shared_from_this()](error_code ec, std::size_t) {
      if (ec)
        return self->fail("cannot send the request to the agent", ec);
      self->read_head();
    });
  });
}

void exchange::read_head() {
  parser_.emplace();
  // A stream, as long as the run lasts. Not boost::none: Beast 1.74 compares a Content-Length
  // against an empty limit as if it were exceeded.
  parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
  connection_->with_stream([&](auto& stream) {
    http::async_read_header(stream, buffer_, *parser_,
                            [self = shared_from_this()](error_code ec, std::size_t) {
                              if (ec)
                                return self->fail("the agent did not answer", ec);
                              // Beast reads a 1xx head as a whole message without a body:
                              // the final response is still to come on this connection, so
                              // an interim one is skipped (a connection given back to the pool
                              // here would hand this run's response to the next run).
                              auto& res = self->parser_->get();
                              self->head_seen_ = true; // the agent has the request: no retry
                              if (res.result_int() / 100 == 1 && res.result_int() != 101) {
                                // An agent that says it is working has another
                                // connect-timeout-ms for its final head.
                                self->connection_->tcp().expires_after(
                                  self->pool_->options().connect_timeout);
                                return self->read_head();
                              }
                              self->connection_->tcp().expires_never(); // the run's timeout
                              if (self->cb_.on_head)
                                self->cb_.on_head(res.result_int(),
                                                  std::string{res[http::field::content_type]});
                              self->read_body();
                            });
  });
}

void exchange::read_body() {
  if (finished_)
    return;
  if (parser_->is_done())
    return succeed();
  auto& body = parser_->get().body();
  body.data = chunk_.data();
  body.size = chunk_.size();
  connection_->with_stream([&](auto& stream) {
    http::async_read_some(stream, buffer_, *parser_,
                          [self = shared_from_this()](error_code ec, std::size_t) {
                            self->on_read(ec);
                          });
  });
}

void exchange::on_read(error_code ec) {
  if (finished_)
    return;
  if (ec == http::error::need_buffer)
    ec = {};
  auto received = chunk_.size() - parser_->get().body().size;
  if (ec) {
    if (received > 0 && cb_.on_body) // what came before the break, window or not
      cb_.on_body(std::string{chunk_.data(), received});
    return fail("the connection to the agent broke", ec);
  }
  body_kept_ = {chunk_.data(), received};
  if (deliver_body())
    read_body();
  // else consumed() goes on
}

/// Hands on what the last read kept, as far as the window admits it. False: the window is
/// full, and what it did not admit stays kept.
bool exchange::deliver_body() {
  auto admitted = body_window_.take(body_kept_);
  if (admitted > 0 && cb_.on_body)
    cb_.on_body(std::string{body_kept_.substr(0, admitted)});
  body_kept_.remove_prefix(admitted);
  return !body_window_.park_if_full();
}

void exchange::consumed(std::size_t bytes) {
  connection_ptr connection;
  {
    std::lock_guard lock{start_mutex_};
    connection = connection_;
  }
  if (!connection) // body bytes come after the start: nothing to release yet
    return;
  asio::dispatch(connection->strand(), [self = shared_from_this(), bytes] {
    if (self->body_window_.release(bytes) && !self->finished_ && self->deliver_body())
      self->read_body();
  });
}

void exchange::succeed() {
  finished_ = true;
  // Not reused after a 101 (the connection speaks another protocol now), nor when bytes
  // follow the response's end: they belong to no request this client made.
  bool reusable = parser_->keep_alive() && parser_->get().result_int() != 101
                  && buffer_.size() == 0;
  if (cb_.on_end)
    cb_.on_end();
  release(reusable);
}

void exchange::fail(const std::string& what, error_code ec) {
  if (finished_)
    return;
  if (reused_ && !head_seen_) {
    reused_ = false; // one retry, on a fresh connection
    connection_->close();
    buffer_.clear();
    return begin(pool_->fresh_connection());
  }
  finished_ = true;
  auto message = what + " at " + pool_->options().url.text() + ": " + ec.message();
  connection_->close();
  if (cb_.on_error)
    cb_.on_error(std::move(message), false);
  release(false);
}

void exchange::release(bool reusable) {
  if (released_.exchange(true))
    return; // an abort and the hand-over of the slot raced: the first one gave it back
  connection_ptr connection;
  {
    std::lock_guard lock{start_mutex_};
    connection = connection_; // stays set: abort() must still find the strand, not the queue
  }
  pool_->release(std::move(connection), reusable);
}

} // namespace

std::string agent_url::text() const {
  return (tls ? "https://" : "http://") + host + ":" + port + target;
}

std::optional<agent_url> parse_agent_url(std::string_view url, std::string& why) {
  agent_url out;
  if (url.rfind("http://", 0) == 0) {
    url.remove_prefix(7);
  } else if (url.rfind("https://", 0) == 0) {
    url.remove_prefix(8);
    out.tls = true;
  } else {
    why = "must start with http:// or https://";
    return std::nullopt;
  }
  auto slash = url.find('/');
  auto authority = url.substr(0, slash);
  out.target = slash == std::string_view::npos ? "/" : std::string{url.substr(slash)};
  if (authority.find('@') != std::string_view::npos) {
    why = "must not carry credentials (use bearer=)";
    return std::nullopt;
  }
  auto colon = authority.rfind(':');
  bool bracketed = !authority.empty() && authority.front() == '[';
  if (colon != std::string_view::npos && (!bracketed || colon > authority.find(']'))) {
    out.port = std::string{authority.substr(colon + 1)};
    authority = authority.substr(0, colon);
    if (out.port.empty() || out.port.size() > 5
        || out.port.find_first_not_of("0123456789") != std::string::npos
        || std::stoi(out.port) == 0 || std::stoi(out.port) > 65535) {
      why = "has an invalid port";
      return std::nullopt;
    }
  } else {
    out.port = out.tls ? "443" : "80";
  }
  if (bracketed && authority.size() > 2 && authority.back() == ']')
    authority = authority.substr(1, authority.size() - 2);
  out.host = std::string{authority};
  if (out.host.empty() || out.host.find_first_of(" \t\r\n") != std::string::npos) {
    why = "has no host";
    return std::nullopt;
  }
  if (out.target.find_first_of(" \t\r\n#") != std::string::npos) {
    why = "has a path with spaces, control characters or a fragment";
    return std::nullopt;
  }
  return out;
}

std::shared_ptr<http_agent_pool> http_agent_pool::create(asio::io_context& io,
                                                         http_agent_options options) {
  return std::make_shared<pool_impl>(io, std::move(options));
}

} // namespace er::actors
