// The event-router binary itself: starts from the shipped caf-application.conf, serves,
// refuses bad configuration clearly, and stops cleanly on SIGTERM.

#include <csignal>
#include <regex>

#include <doctest/doctest.h>

#include "tests/support.hpp"

using namespace er::test;

namespace {

const std::string conf = ER_SOURCE_DIR "/caf-application.conf";

/// Reads the banner up to the listen line and returns the port.
unsigned short listening_port(child_process& router) {
  static const std::regex listen_line{R"(listening on ws://127\.0\.0\.1:(\d+)/ws)"};
  for (int i = 0; i < 5; ++i) {
    auto line = router.read_line();
    std::smatch m;
    if (std::regex_search(line, m, listen_line))
      return static_cast<unsigned short>(std::stoi(m[1]));
  }
  FAIL("no listen line in the banner");
  return 0;
}

std::string banner_token(child_process& router) {
  for (int i = 0; i < 5; ++i) {
    auto line = router.read_line();
    if (line.rfind("  eyJ", 0) == 0)
      return line.substr(2);
  }
  return {};
}

} // namespace

TEST_CASE("the binary starts from the shipped config, accepts its demo token, and exits 0 on "
          "SIGTERM after closing connections with 1001") {
  child_process router{{ER_ROUTER_BINARY, "--config-file=" + conf, "--router.port=0",
                        "--router.store-path=:memory:"}};
  auto port = listening_port(router);
  auto token = banner_token(router);
  REQUIRE_FALSE(token.empty());
  er::client::client_options o;
  o.port = port;
  o.subprotocols = "router.v1, jwt." + token;
  auto [client, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  CHECK(next_json(*client)["user_id"] == "demo-user");
  client->send_text(R"({"type":"ping","id":"bin"})");
  CHECK(next_json(*client)["reply_to"] == "bin");
  router.signal(SIGTERM);
  expect_close(*client, 1001, 10s);
  CHECK(router.wait() == 0);
}

TEST_CASE("with a real secret the banner prints no token (it would reach the logs), only how "
          "to mint one") {
  child_process router{{ER_ROUTER_BINARY, "--config-file=" + conf, "--router.port=0",
                        "--router.store-path=:memory:",
                        "--router.jwt-secret=a-real-secret-of-this-deployment-0123456789"}};
  listening_port(router);
  std::string banner;
  for (std::string line; (line = router.read_line(5s)).rfind("stop with", 0) != 0;) {
    REQUIRE_FALSE(line.empty()); // the banner ends with "stop with ..."
    banner += line + "\n";
  }
  CHECK(banner.find("eyJ") == std::string::npos); // no JWT (a token's header starts so)
  CHECK(banner.find("--mint-token=USER") != std::string::npos);
  router.signal(SIGTERM);
  CHECK(router.wait() == 0);
}

TEST_CASE("the binary exits 0 on SIGINT") {
  child_process router{{ER_ROUTER_BINARY, "--config-file=" + conf, "--router.port=0",
                        "--router.store-path=:memory:"}};
  listening_port(router);
  router.signal(SIGINT);
  CHECK(router.wait() == 0);
}

TEST_CASE("the binary refuses a bad config value with a clear message and status 2") {
  child_process router{{ER_ROUTER_BINARY, "--config-file=" + conf, "--router.port=not-a-port"}};
  CHECK(router.wait() == 2);
  auto err = router.read_all_stderr(2s);
  CHECK(err.find("router.port") != std::string::npos);
  CHECK(err.find("expects an integer") != std::string::npos);
}

TEST_CASE("agents.default naming no agent is a configuration error: status 2, the key named") {
  // Found only once the agents are built; it ended the process with status 1, which the
  // packaged unit restarts (status 2 it does not).
  child_process router{{ER_ROUTER_BINARY, "--config-file=" + conf, "--router.port=0",
                        "--router.store-path=:memory:", "--agents.default=nobody"}};
  CHECK(router.wait() == 2);
  CHECK(router.read_all_stderr(2s).find("configuration error: agents.default = \"nobody\" names "
                                        "no agent")
        != std::string::npos);
}

TEST_CASE("--mint-token prints a token the router accepts for that user") {
  child_process mint{{ER_ROUTER_BINARY, "--config-file=" + conf, "--mint-token=carol"}};
  auto token = mint.read_line();
  CHECK(mint.wait() == 0);
  child_process router{{ER_ROUTER_BINARY, "--config-file=" + conf, "--router.port=0",
                        "--router.store-path=:memory:"}};
  er::client::client_options o;
  o.port = listening_port(router);
  o.authorization = "Bearer " + token;
  auto [client, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  CHECK(next_json(*client)["user_id"] == "carol");
  router.signal(SIGTERM);
  expect_close(*client, 1001, 10s); // answering the close lets the router finish
  CHECK(router.wait() == 0);
}

TEST_CASE("on SIGTERM the binary lets a running agent finish, then closes with 1001 and exits 0") {
  child_process router{{ER_ROUTER_BINARY, "--config-file=" + conf, "--router.port=0",
                        "--router.store-path=:memory:", "--agents.demo-steps=5"}};
  er::client::client_options o;
  o.port = listening_port(router);
  o.subprotocols = "router.v1, jwt." + banner_token(router);
  auto [client, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  next_json(*client);
  client->send_text(R"({"type":"start_agent","id":"run","payload":{"agent":"demo"}})");
  CHECK(next_json(*client)["type"] == "agent_started");
  router.signal(SIGTERM);
  std::string last;
  expect_close_after_text(*client, 1001, [&](const json& f) { last = f["type"]; });
  CHECK(last == "agent_completed");
  CHECK(router.wait() == 0);
}

TEST_CASE("with router.reuse-port=true several processes serve one port, without it the port "
          "is refused") {
  child_process first{{ER_ROUTER_BINARY, "--config-file=" + conf, "--router.port=0",
                       "--router.store-path=:memory:", "--router.reuse-port=true"}};
  auto port = std::to_string(listening_port(first));
  child_process second{{ER_ROUTER_BINARY, "--config-file=" + conf, "--router.port=" + port,
                        "--router.store-path=:memory:", "--router.reuse-port=true"}};
  CHECK(listening_port(second) == std::stoi(port));
  child_process refused{{ER_ROUTER_BINARY, "--config-file=" + conf, "--router.port=" + port,
                         "--router.store-path=:memory:"}};
  CHECK(refused.wait(10s) == 1);
  CHECK(refused.read_all_stderr().find("cannot listen on 127.0.0.1:" + port) != std::string::npos);
  child_process wrong{{ER_ROUTER_BINARY, "--router.reuse-port=yes"}};
  CHECK(wrong.wait(10s) == 2);
  CHECK(wrong.read_all_stderr().find("router.reuse-port expects true or false") != std::string::npos);
  for (auto* p : {&first, &second}) {
    p->signal(SIGTERM);
    CHECK(p->wait() == 0);
  }
}
