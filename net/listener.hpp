#pragma once
// The router's TCP front door: accepts, reads one HTTP request per exchange, answers plain
// HTTP through `on_request`, and for `GET /ws` authenticates the upgrade *before* answering
// it: a bad token gets 401 and never becomes a WebSocket.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "context/jwt_auth.hpp"
#include "context/user_execution_context.hpp"
#include "net/connection.hpp"

namespace er::net {

struct http_request_view {
  std::string_view method;
  std::string_view target;
  std::string_view authorization;
  std::string_view body;
};

struct http_reply {
  http_reply() = default;
  http_reply(unsigned status, std::string body, std::string content_type = "application/json")
    : status(status), body(std::move(body)), content_type(std::move(content_type)) {
  }

  unsigned status = 200;
  std::string body; ///< JSON, unless content_type says otherwise
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers; ///< more header fields
};

/// An authenticated upgrade request, not yet answered.
struct upgrade {
  std::shared_ptr<ws_connection> connection;
  context::user_execution_context ctx;
  /// The request target (path and query). It may carry the token (`?token=`): read what
  /// you need from it and drop it, never log it.
  std::string target;
};

struct listener_hooks {
  /// An authenticated upgrade request: the callee owns the connection and must start() it.
  std::function<void(upgrade)> on_upgrade;
  /// Plain HTTP other than /ws. `respond` may be called from any thread, once (later calls
  /// are ignored). An exception out of the hook answers 500 {"error": "internal error"}
  /// unless the request was answered already. Without this hook every such request gets 404.
  std::function<void(const http_request_view&, std::function<void(http_reply)> respond)>
    on_request;
  /// Called for every refused upgrade (metrics); never given the token.
  std::function<void(context::auth_failure)> on_auth_failure;
  /// Called each time the listener stops accepting because max_http_connections are open.
  std::function<void()> on_accept_paused;
  /// The io_context each accepted connection lives on (e.g. the io threads in turn); without
  /// this hook, the listener's own. Each must be run by exactly one thread: a connection's
  /// handlers rely on that to run one at a time (there is no strand).
  std::function<boost::asio::io_context&()> connection_context;
};

class listener {
public:
  /// Binds and listens; throws boost::system::system_error (a std::runtime_error) naming the
  /// address on failure. Past `budget`'s capacity, upgrade requests get 503 before anything
  /// else happens. `reuse_port`: SO_REUSEPORT, so that processes can share the port.
  /// `max_http_connections`: connections not (yet) WebSocket ones, i.e. plain HTTP requests
  /// (keep-alive included) and upgrades being read or answered; at the bound the listener
  /// stops accepting until one of them ends, so that silent or slow clients cannot take every
  /// file descriptor (each lasts at most the handshake timeout per request).
  listener(boost::asio::io_context& io, const std::string& host, unsigned short port,
           const context::jwt_verifier& verifier, session_limits limits,
           std::shared_ptr<connection_budget> budget, listener_hooks hooks,
           bool reuse_port = false, std::size_t max_http_connections = 1000);
  ~listener();

  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  void start();
  /// Stops accepting; connections already accepted are not affected. Thread-safe.
  void stop();
  unsigned short port() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

/// `{"error": reason}` as a JSON text.
std::string json_error(std::string_view reason);

} // namespace er::net
