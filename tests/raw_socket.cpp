#include "tests/raw_socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

namespace er::test {

raw_socket::raw_socket(unsigned short port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error("raw_socket: cannot connect");
}

raw_socket::~raw_socket() {
  if (fd_ >= 0)
    ::close(fd_);
}

bool raw_socket::send(std::string_view bytes) {
  while (!bytes.empty()) {
    auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool raw_socket::read_once(std::chrono::milliseconds timeout, bool& closed) {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0)
    return false;
  char buf[4096];
  auto n = ::recv(fd_, buf, sizeof buf, 0);
  if (n <= 0) {
    closed = true;
    return false;
  }
  received_.append(buf, static_cast<std::size_t>(n));
  return true;
}

std::string raw_socket::read_until(std::string_view until, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool closed = false;
  while (received_.find(until) == std::string::npos && !closed) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !read_once(left, closed))
      break;
  }
  return received_;
}

bool raw_socket::read_to_end(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool closed = false;
  while (!closed) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || (!read_once(left, closed) && !closed))
      return closed;
  }
  return true;
}

std::string upgrade_request(const std::string& token) {
  return "GET /ws?token=" + token
         + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

std::string masked_text_frame(std::string_view payload) {
  return masked_frame(0x1, payload);
}

std::string masked_frame(unsigned opcode, std::string_view payload) {
  std::string out;
  out.push_back(static_cast<char>(0x80 | opcode));
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(0x80 | payload.size()));
  } else {
    out.push_back(static_cast<char>(0x80 | 126));
    out.push_back(static_cast<char>(payload.size() >> 8));
    out.push_back(static_cast<char>(payload.size() & 0xff));
  }
  const char key[4] = {0x11, 0x22, 0x33, 0x44};
  out.append(key, 4);
  for (std::size_t i = 0; i < payload.size(); ++i)
    out.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
  return out;
}

} // namespace er::test
