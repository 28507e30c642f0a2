// router-client: connect to a router, send messages, print every frame received.
//   router-client --url=ws://127.0.0.1:8080/ws --token=TOKEN ['{"type":"ping"}' ...]
// With messages on the command line it sends them, prints frames until none arrives for
// --idle-ms (default 1500), then closes normally. Without, it is interactive: each line of
// standard input is sent as it is typed while frames are printed as they come (the server's
// pings answered meanwhile), and once standard input ends it waits --idle-ms the same way.

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "clients/cpp/ws_client.hpp"

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

struct client_args {
  std::string url = "ws://127.0.0.1:8080/ws";
  std::string token;
  long idle_ms = 1500;
  std::vector<std::string> messages;
};

/// A whole decimal number in [low, high], or throws std::invalid_argument naming `what`.
long number_in(const std::string& text, long low, long high, const char* what) {
  std::size_t used = 0;
  long value = 0;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < low || value > high)
    throw std::invalid_argument(std::string{what} + " must be a number from " + std::to_string(low)
                                + " to " + std::to_string(high) + ", not \"" + text + "\"");
  return value;
}

bool parse_url(const std::string& url, er::client::client_options& out) {
  const std::string scheme = "ws://";
  if (url.rfind(scheme, 0) != 0)
    return false;
  auto rest = url.substr(scheme.size());
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  out.target = slash == std::string::npos ? "/ws" : rest.substr(slash);
  auto colon = authority.rfind(':');
  if (colon == std::string::npos)
    return false;
  out.host = authority.substr(0, colon);
  out.port = static_cast<unsigned short>(number_in(authority.substr(colon + 1), 1, 65535, "the port"));
  return true;
}

/// True when standard input has bytes (or its end) to read without waiting.
bool stdin_ready() {
  pollfd p{STDIN_FILENO, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

/// Prints frames until the connection closes (its code printed: true) or, once `input_done`
/// returns true, until no frame has come for `idle`. `on_idle` runs between reads.
template <class InputDone, class OnIdle>
bool print_frames(er::client::ws_client& client, milliseconds idle, InputDone input_done,
                  OnIdle on_idle) {
  auto last = steady_clock::now();
  for (;;) {
    on_idle();
    bool waiting_for_input = !input_done();
    auto f = client.read(waiting_for_input ? milliseconds{50} : idle);
    if (f.what == er::client::frame::kind::timeout) {
      if (!waiting_for_input && steady_clock::now() - last >= idle)
        return false;
      continue;
    }
    if (f.what == er::client::frame::kind::closed) {
      std::cout << "closed with code " << f.close_code << std::endl;
      return true;
    }
    std::cout << f.data << std::endl;
    last = steady_clock::now();
  }
}

} // namespace

int main(int argc, char** argv) {
  client_args args;
  er::client::client_options options;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--url=", 0) == 0)
        args.url = a.substr(6);
      else if (a.rfind("--token=", 0) == 0)
        args.token = a.substr(8);
      else if (a.rfind("--idle-ms=", 0) == 0)
        args.idle_ms = number_in(a.substr(10), 0, 3'600'000, "--idle-ms");
      else
        args.messages.push_back(a);
    }
    if (!parse_url(args.url, options))
      throw std::invalid_argument("--url must look like ws://HOST:PORT/ws");
  } catch (const std::invalid_argument& e) {
    std::cerr << "router-client: " << e.what() << std::endl;
    return 2;
  }
  options.subprotocols = "router.v1, jwt." + args.token;
  try {
    auto [client, handshake] = er::client::ws_client::connect(options);
    if (!handshake.upgraded) {
      std::cerr << "router-client: refused with HTTP " << handshake.status << " "
                << handshake.body << std::endl;
      return 1;
    }
    bool interactive = args.messages.empty();
    for (auto& m : args.messages)
      client->send_text(m);
    bool input_ended = !interactive;
    std::string typed; // read from standard input, not yet a whole line
    auto send_line = [&](std::string line) {
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      if (!line.empty())
        client->send_text(line);
    };
    // Straight from the descriptor: what a buffered stream had read ahead, poll would not see.
    auto send_typed_lines = [&] {
      while (!input_ended && stdin_ready()) {
        char chunk[4096];
        auto n = ::read(STDIN_FILENO, chunk, sizeof chunk);
        if (n <= 0) { // the end (or an error): a last line without its newline goes too
          input_ended = true;
          send_line(std::exchange(typed, {}));
          return;
        }
        typed.append(chunk, static_cast<std::size_t>(n));
        for (auto nl = typed.find('\n'); nl != std::string::npos; nl = typed.find('\n')) {
          send_line(typed.substr(0, nl));
          typed.erase(0, nl + 1);
        }
      }
    };
    if (print_frames(*client, milliseconds{args.idle_ms}, [&] { return input_ended; },
                     send_typed_lines))
      return 0;
    client->close();
  } catch (const std::exception& e) {
    std::cerr << "router-client: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
