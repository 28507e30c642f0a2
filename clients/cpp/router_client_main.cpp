// router-client: connect to a router, send messages, print every frame received.
//   router-client --url=ws://127.0.0.1:8080/ws --token=TOKEN ['{"type":"ping"}' ...]
// Without messages on the command line it sends each line of standard input. It prints frames
// until none arrives for --idle-ms (default 1500), then closes normally.

#include <iostream>
#include <string>
#include <vector>

#include "clients/cpp/ws_client.hpp"

namespace {

struct client_args {
  std::string url = "ws://127.0.0.1:8080/ws";
  std::string token;
  long idle_ms = 1500;
  std::vector<std::string> messages;
};

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
  out.port = static_cast<unsigned short>(std::stoi(authority.substr(colon + 1)));
  return true;
}

} // namespace

int main(int argc, char** argv) {
  client_args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--url=", 0) == 0)
      args.url = a.substr(6);
    else if (a.rfind("--token=", 0) == 0)
      args.token = a.substr(8);
    else if (a.rfind("--idle-ms=", 0) == 0)
      args.idle_ms = std::stol(a.substr(10));
    else
      args.messages.push_back(a);
  }
  er::client::client_options options;
  if (!parse_url(args.url, options)) {
    std::cerr << "router-client: --url must look like ws://HOST:PORT/ws" << std::endl;
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
    if (args.messages.empty())
      for (std::string line; std::getline(std::cin, line);)
        if (!line.empty())
          args.messages.push_back(line);
    for (auto& m : args.messages)
      client->send_text(m);
    for (;;) {
      auto f = client->read(std::chrono::milliseconds{args.idle_ms});
      if (f.what == er::client::frame::kind::timeout)
        break;
      if (f.what == er::client::frame::kind::closed) {
        std::cout << "closed with code " << f.close_code << std::endl;
        return 0;
      }
      std::cout << f.data << std::endl;
    }
    client->close();
  } catch (const std::exception& e) {
    std::cerr << "router-client: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
