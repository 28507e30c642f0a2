#pragma once
// A small pool of keep-alive HTTP/1.1 client connections on an asio io_context, for a load
// generator's backend requests (router-load's publisher). At most `connections` requests are
// in flight, one per connection; further requests wait in FIFO order. Connections open
// lazily, are reused while the server keeps them alive, and reconnect when it does not; a
// request that fails on a reused connection before any answer byte arrived is retried once on
// a fresh connection (the server closed an idle connection). Nothing blocks: callbacks run on
// the io threads. Beast stays in the .cpp.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

namespace er::load {

struct http_pool_options {
  std::string host = "127.0.0.1"; ///< an IP address (no name resolution)
  unsigned short port = 8080;
  std::size_t connections = 4;      ///< requests in flight at most
  std::chrono::milliseconds timeout{10000}; ///< connect, write and read of one request
};

struct http_request_spec {
  std::string method = "POST";
  std::string target;
  std::string authorization; ///< the Authorization header's value; empty: none
  std::string body;          ///< sent as application/json
};

/// How one request ended.
struct http_result {
  unsigned status = 0; ///< 0 when no answer came (connect error, reset, timeout)
  std::string body;
  std::string error;   ///< why no answer came, for humans
};

class http_client_pool {
public:
  using callback = std::function<void(http_result)>;

  /// An empty handle: every member is a no-op.
  http_client_pool() = default;

  static http_client_pool open(boost::asio::io_context& io, const http_pool_options& options);

  /// Queues one request; `done` is called exactly once, on an io thread, unless the pool is
  /// closed first (requests still queued then are dropped without a call).
  void request(http_request_spec spec, callback done) const;

  /// Drops the queued requests and closes every connection (requests in flight end with an
  /// error). Idempotent.
  void close() const;

  explicit operator bool() const { return impl_ != nullptr; }

  struct impl;

private:
  explicit http_client_pool(std::shared_ptr<impl> i) : impl_(std::move(i)) {
  }
  std::shared_ptr<impl> impl_;
};

} // namespace er::load
