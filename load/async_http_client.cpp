#include "load/async_http_client.hpp"

#include <algorithm>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

namespace er::load {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace http_pool_detail {

struct job {
  http::request<http::string_body> request;
  http_client_pool::callback done;
  bool retried = false;
};

class connection;

} // namespace http_pool_detail

using http_pool_detail::job;
using pooled = std::shared_ptr<http_pool_detail::connection>;

struct http_client_pool::impl : std::enable_shared_from_this<impl> {
  impl(asio::io_context& context, http_pool_options o, tcp::endpoint r)
    : io(context), options(std::move(o)), remote(r) {
  }

  asio::io_context& io;
  const http_pool_options options;
  const tcp::endpoint remote;
  std::mutex mutex; // guards the members below
  std::deque<job> queue;
  std::vector<pooled> idle;
  std::vector<pooled> all;
  bool closed = false;

  void submit(job j);
  /// A connection finished its request: its next job, or it joins the idle ones.
  std::optional<job> next_for(const pooled& c);
  bool is_closed() {
    std::lock_guard lock{mutex};
    return closed;
  }
  void close();
};

namespace http_pool_detail {

/// One keep-alive connection; every member below runs on its strand. It holds the pool
/// until the pool is closed (the pool holds it in `all`): close() breaks that cycle.
class connection : public std::enable_shared_from_this<connection> {
public:
  explicit connection(std::shared_ptr<http_client_pool::impl> pool)
    : pool_(std::move(pool)), stream_(asio::make_strand(pool_->io)) {
  }

  /// From any thread: runs `j` on this connection.
  void start(job j) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), j = std::move(j)]() mutable {
      self->run(std::move(j));
    });
  }

  /// From any thread: ends the socket; a request in flight fails.
  void shut() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->drop_socket(); });
  }

private:
  void run(job j) {
    current_ = std::move(j);
    if (connected_)
      return write();
    connect();
  }

  void connect() {
    drop_socket();
    reused_ = false;
    stream_.expires_after(pool_->options.timeout);
    stream_.async_connect(pool_->remote, [self = shared_from_this()](beast::error_code ec) {
      self->on_connect(ec);
    });
  }

  void on_connect(beast::error_code ec) {
    if (ec)
      return fail("connect: " + ec.message(), false);
    beast::error_code ignored;
    stream_.socket().set_option(tcp::no_delay{true}, ignored);
    connected_ = true;
    write();
  }

  void write() {
    stream_.expires_after(pool_->options.timeout);
    http::async_write(stream_, current_->request,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        self->on_write(ec);
                      });
  }

  void on_write(beast::error_code ec) {
    if (ec)
      return fail("write: " + ec.message(), reused_ && stale(ec));
    response_ = {};
    http::async_read(stream_, buffer_, response_,
                     [self = shared_from_this()](beast::error_code e, std::size_t n) {
                       self->on_read(e, n);
                     });
  }

  void on_read(beast::error_code ec, std::size_t bytes) {
    if (ec)
      return fail("read: " + ec.message(), reused_ && bytes == 0 && stale(ec));
    stream_.expires_never();
    http_result r{response_.result_int(), std::move(response_.body()), {}};
    if (!response_.keep_alive())
      drop_socket();
    reused_ = true;
    finish(std::move(r));
  }

  /// Errors of a connection the server had closed while it was idle in the pool.
  static bool stale(beast::error_code ec) {
    return ec == http::error::end_of_stream || ec == asio::error::eof
           || ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
  }

  void fail(std::string why, bool retry) {
    drop_socket();
    if (retry && !current_->retried && !pool_->is_closed()) {
      current_->retried = true;
      return connect();
    }
    finish(http_result{0, {}, std::move(why)});
  }

  void finish(http_result r) {
    auto done = std::move(current_->done);
    current_.reset();
    if (done)
      done(std::move(r));
    if (auto next = pool_->next_for(shared_from_this()))
      run(std::move(*next));
  }

  void drop_socket() {
    beast::error_code ignored;
    if (stream_.socket().is_open()) {
      stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream_.close();
    }
    connected_ = false;
    buffer_.clear();
  }

  std::shared_ptr<http_client_pool::impl> pool_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::response<http::string_body> response_;
  std::optional<job> current_;
  bool connected_ = false;
  bool reused_ = false; ///< the connection already carried a request
};

} // namespace http_pool_detail

void http_client_pool::impl::submit(job j) {
  pooled c;
  {
    std::lock_guard lock{mutex};
    if (closed)
      return;
    if (!idle.empty()) {
      c = std::move(idle.back());
      idle.pop_back();
    } else if (all.size() < std::max<std::size_t>(1, options.connections)) {
      c = std::make_shared<http_pool_detail::connection>(shared_from_this());
      all.push_back(c);
    } else {
      queue.push_back(std::move(j));
      return;
    }
  }
  c->start(std::move(j));
}

std::optional<job> http_client_pool::impl::next_for(const pooled& c) {
  std::lock_guard lock{mutex};
  if (closed)
    return std::nullopt;
  if (!queue.empty()) {
    auto j = std::move(queue.front());
    queue.pop_front();
    return j;
  }
  idle.push_back(c);
  return std::nullopt;
}

void http_client_pool::impl::close() {
  std::vector<pooled> connections;
  std::deque<job> dropped; // destroyed outside the lock
  {
    std::lock_guard lock{mutex};
    if (std::exchange(closed, true))
      return;
    connections.swap(all);
    idle.clear();
    dropped.swap(queue);
  }
  for (auto& c : connections)
    c->shut();
}

http_client_pool http_client_pool::open(asio::io_context& io, const http_pool_options& options) {
  beast::error_code ec;
  auto address = asio::ip::make_address(options.host, ec);
  if (ec)
    throw std::invalid_argument("bad host address " + options.host);
  return http_client_pool{
    std::make_shared<impl>(io, options, tcp::endpoint{address, options.port})};
}

void http_client_pool::request(http_request_spec spec, callback done) const {
  if (!impl_)
    return;
  auto verb = http::string_to_verb(spec.method);
  job j;
  j.request = http::request<http::string_body>{verb == http::verb::unknown ? http::verb::post : verb,
                                               spec.target, 11};
  j.request.set(http::field::host,
                impl_->options.host + ":" + std::to_string(impl_->options.port));
  j.request.set(http::field::user_agent, "router-load");
  if (!spec.authorization.empty())
    j.request.set(http::field::authorization, spec.authorization);
  j.request.set(http::field::content_type, "application/json");
  j.request.keep_alive(true);
  j.request.body() = std::move(spec.body);
  j.request.prepare_payload();
  j.done = std::move(done);
  impl_->submit(std::move(j));
}

void http_client_pool::close() const {
  if (impl_)
    impl_->close();
}

} // namespace er::load
