#pragma once
// The HTTP side of HTTP agents (DESIGN §5): one http_agent_pool per configured agent, owned
// by the router's composition (router_server, through the agent catalog) and shared by the
// runs of every connection. A run posts one request and gets the response streamed back as
// it arrives; the pool keeps at most `max_in_flight` requests going to its agent (the rest
// wait in order, each at most `queue_timeout`), reuses keep-alive connections between runs,
// and never reuses one whose response did not end cleanly. https verifies the agent's
// certificate against the system store (plus `ca_file`) and its host name.
//
// Threading: start() and abort() may be called from any thread; callbacks run on the
// connection's strand, one at a time, and must not block. After on_end or on_error nothing
// more is delivered.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace boost::asio {
class io_context;
}

namespace er::actors {

/// An agent's URL, http or https.
struct agent_url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target; ///< path and query, at least "/"

  std::string text() const;
};

/// The URL when it is one the router can use; otherwise nullopt and `why` says what is wrong.
std::optional<agent_url> parse_agent_url(std::string_view url, std::string& why);

struct http_agent_options {
  agent_url url;
  std::string bearer;                           ///< sent as Authorization: Bearer; never logged
  std::chrono::milliseconds connect_timeout{5000}; ///< connect, TLS handshake, response head
  std::size_t max_in_flight = 16;
  std::chrono::milliseconds queue_timeout{10000};
  std::string ca_file; ///< more trusted certificates (PEM), for agents behind a private CA
};

/// What one request reports while its response streams in.
struct agent_response_callbacks {
  /// The response head: its status and Content-Type.
  std::function<void(unsigned status, std::string content_type)> on_head;
  /// Body bytes as they arrive (chunked or close-delimited alike).
  std::function<void(std::string bytes)> on_body;
  /// The response ended.
  std::function<void()> on_end;
  /// It failed before its end: `unavailable` when no slot freed within queue_timeout.
  std::function<void(std::string message, bool unavailable)> on_error;
};

/// One request under way; abort() drops it at once: the agent sees its client go away.
class agent_request {
public:
  virtual ~agent_request() = default;
  virtual void abort() = 0;
  /// The receiver is done with this `weight` of the body delivered (see http_agent_pool::start).
  virtual void consumed(std::size_t weight) = 0;
};

class http_agent_pool {
public:
  /// Throws std::runtime_error when the TLS setup fails (an unreadable ca_file).
  static std::shared_ptr<http_agent_pool> create(boost::asio::io_context& io,
                                                 http_agent_options options);
  virtual ~http_agent_pool() = default;

  /// POSTs `body` (JSON) with X-Request-Id: `request_id` once a slot is free. With a
  /// `body_window`, the response's body is delivered only while the bytes delivered and not
  /// yet released with consumed() weigh less (each line its bytes and `line_weight`:
  /// read_window.hpp), so never more than one line past it: a read's further lines wait in its
  /// buffer, and the body is read on once they are delivered. An agent that streams faster
  /// than its events are handled waits on TCP's flow control. 0: read as fast as it comes.
  virtual std::shared_ptr<agent_request> start(std::string request_id, std::string body,
                                               agent_response_callbacks callbacks,
                                               std::size_t body_window = 0,
                                               std::size_t line_weight = 0) = 0;

  /// Connections kept open between requests (tests).
  virtual std::size_t idle_connections() const = 0;
};

} // namespace er::actors
