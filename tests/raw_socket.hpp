#pragma once
// A plain TCP connection for tests that must send bytes no well-behaved client would: broken
// HTTP, oversized heads, frames pipelined behind an upgrade request.

#include <chrono>
#include <string>
#include <string_view>

namespace er::test {

class raw_socket {
public:
  /// Connects to 127.0.0.1:port; throws on failure.
  explicit raw_socket(unsigned short port);
  ~raw_socket();
  raw_socket(const raw_socket&) = delete;
  raw_socket& operator=(const raw_socket&) = delete;

  /// Sends every byte (blocking); false when the peer has gone.
  bool send(std::string_view bytes);
  /// Reads until `until` appears in what was read, the peer closes, or `timeout` passes;
  /// returns everything read so far (earlier calls' leftovers included).
  std::string read_until(std::string_view until, std::chrono::milliseconds timeout);
  /// Reads until the peer closes or `timeout` passes; true when it closed (EOF or reset).
  bool read_to_end(std::chrono::milliseconds timeout);
  /// Everything read so far.
  const std::string& received() const {
    return received_;
  }

private:
  /// One read of at most a few KiB, waiting up to `timeout`; false on EOF, error or timeout.
  bool read_once(std::chrono::milliseconds timeout, bool& closed);

  int fd_ = -1;
  std::string received_;
};

/// An HTTP/1.1 WebSocket upgrade request for GET /ws?token=<token>.
std::string upgrade_request(const std::string& token);

/// A client text frame (masked), as RFC 6455 requires.
std::string masked_text_frame(std::string_view payload);

/// A whole client frame (FIN set, masked) of `opcode` (0x1 text, 0x2 binary, 0x8 close, ...).
std::string masked_frame(unsigned opcode, std::string_view payload);

} // namespace er::test
