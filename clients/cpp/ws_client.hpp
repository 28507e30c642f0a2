#pragma once
// A small WebSocket client on Boost.Beast, used by the tests, router-client and router-load.
// Blocking calls with deadlines: each client runs its own io_context only inside a call, so
// a test can drive many clients from one thread or one client per thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace er::client {

struct client_options {
  std::string host = "127.0.0.1";
  unsigned short port = 8080;
  std::string target = "/ws";
  std::string subprotocols;  ///< Sec-WebSocket-Protocol, e.g. "router.v1, jwt.<token>"
  std::string authorization; ///< Authorization header value, e.g. "Bearer <token>"
  std::string bind_address;  ///< local source address (127.0.0.x), empty for any
  std::chrono::milliseconds timeout{5000};
};

/// The answer to the upgrade request.
struct handshake_result {
  bool upgraded = false;
  unsigned status = 0;
  std::string body;              ///< the response body when the upgrade was refused
  std::string selected_protocol; ///< Sec-WebSocket-Protocol of a 101
};

struct frame {
  enum class kind { text, binary, closed, timeout } what = kind::timeout;
  std::string data;
  std::uint16_t close_code = 0; ///< with kind::closed: the server's code, 1006 when none
  std::string close_reason;     ///< with kind::closed: the reason in the server's close frame
};

class ws_client {
public:
  /// Throws boost::system::system_error (a std::runtime_error) when the TCP connection cannot be made.
  static std::pair<std::unique_ptr<ws_client>, handshake_result>
  connect(const client_options& options);

  ~ws_client();

  void send_text(std::string_view text);
  void send_binary(std::string_view data);
  /// Next frame, `closed` once the server closed, `timeout` when nothing came in time.
  frame read(std::chrono::milliseconds timeout);
  /// Close handshake with `code`; waits for the server's close frame up to the timeout.
  void close(std::uint16_t code = 1000);
  /// Abrupt end: TCP RST (SO_LINGER 0), no close frame.
  void reset();
  /// Sends raw bytes on the TCP stream (protocol conformance and abuse tests).
  void send_raw(std::string_view bytes);
  /// Payload of the last pong received (read() processes control frames).
  std::string last_pong() const;

  struct impl;

private:
  explicit ws_client(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

/// One plain HTTP request to the router (HTTP API tests, health checks).
struct http_response {
  unsigned status = 0;
  std::string body;
  std::string content_type;
  std::string content_security_policy;
};
http_response http_request(const std::string& host, unsigned short port, std::string_view method,
                           std::string_view target, std::string_view authorization = {},
                           std::string_view body = {},
                           std::chrono::milliseconds timeout = std::chrono::seconds{5});

} // namespace er::client
