// The HTTP API (DESIGN §7) and the connection limits, against a real router.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <thread>
#include <tuple>

#include <doctest/doctest.h>

#include "protocol/bounded_json.hpp"
#include "tests/raw_socket.hpp"
#include "tests/support.hpp"
#include "tests/temp_dir.hpp"

using namespace er::test;

namespace {

const std::string key = "Bearer test-api-key";

} // namespace

TEST_CASE("1000 users, publishes to random users: every publish reaches every connection of "
          "its user and nobody else") {
  constexpr int users = 1000, publishes = 3000, readers = 20;
  test_router router;
  // Users with an even index hold two connections, the others one.
  struct conn {
    int user;
    std::unique_ptr<er::client::ws_client> client;
    std::vector<json> frames;
  };
  std::vector<conn> conns;
  for (int u = 0; u < users; ++u)
    for (int k = 0; k < (u % 2 == 0 ? 2 : 1); ++k) {
      auto c = connect_user(router, "pub-user-" + std::to_string(u),
                            "127.0.0." + std::to_string(2 + (u % 8)));
      conns.push_back({u, std::move(c.client), {}});
    }
  std::mt19937 rng{42};
  std::map<int, std::vector<int>> expected; // user -> sequence numbers published to it
  for (int p = 0; p < publishes; ++p) {
    int u = static_cast<int>(rng() % users);
    auto r = publish(router, publish_body("pub-user-" + std::to_string(u), "news", {{"seq", p}}));
    REQUIRE(r.status == 202);
    CHECK(json::parse(r.body)["delivered"] == (u % 2 == 0 ? 2 : 1));
    expected[u].push_back(p);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < readers; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < conns.size(); i += readers) {
        auto& c = conns[i];
        auto want = expected.count(c.user) ? expected.at(c.user).size() : 0;
        while (c.frames.size() < want) {
          auto f = c.client->read(10s);
          if (f.what != er::client::frame::kind::text)
            break;
          c.frames.push_back(json::parse(f.data));
        }
        auto extra = c.client->read(20ms);
        if (extra.what == er::client::frame::kind::text)
          c.frames.push_back(json::parse(extra.data));
      }
    });
  for (auto& t : threads)
    t.join();
  int checked = 0;
  for (auto& c : conns) {
    auto user = "pub-user-" + std::to_string(c.user);
    std::vector<int> seqs;
    for (auto& f : c.frames) {
      CHECK(f["user_id"] == user);
      CHECK(f["type"] == "news");
      seqs.push_back(f["data"]["seq"]);
    }
    auto want = expected.count(c.user) ? expected.at(c.user) : std::vector<int>{};
    CHECK(seqs == want); // every one, in publish order, nothing else
    checked += static_cast<int>(seqs.size());
  }
  CHECK(checked > publishes);
}

TEST_CASE("publishing needs the API key and a well-formed body with an unreserved type") {
  test_router router;
  auto alice = connect_user(router, "alice");
  CHECK(publish(router, publish_body("alice", "news"), "").status == 401);
  CHECK(publish(router, publish_body("alice", "news"), "Bearer wrong-key").status == 401);
  CHECK(publish(router, publish_body("alice", "news"), "test-api-key").status == 401);
  for (auto reserved : {"pong", "error", "connection_established", "agent_started",
                        "agent_completed", "agent_error", "agent_stopped", "tool_executing",
                        "thread_history"}) {
    auto r = publish(router, publish_body("alice", reserved));
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"].get<std::string>().find("reserved") != std::string::npos);
  }
  auto bad = [&](const std::string& body) {
    auto r = er::client::http_request("127.0.0.1", router.port(), "POST", "/api/v1/publish", key, body);
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"].is_string());
  };
  bad("not json");
  bad("[1]");
  bad(R"({"event":{"type":"news"}})");
  bad(R"({"user_id":"alice"})");
  bad(R"({"user_id":"alice","event":{"type":"has space"}})");
  bad(R"({"user_id":"alice","event":{"type":"news","data":[1]}})");
  bad(R"({"user_id":"anonymous","event":{"type":"news"}})");
  // data nested past the limit (the body is level 1, event 2, data 3), up to what 1 MiB holds
  for (auto levels : {er::protocol::max_json_depth - 2, std::size_t{500000}}) {
    auto r = er::client::http_request(
      "127.0.0.1", router.port(), "POST", "/api/v1/publish", key,
      R"({"user_id":"alice","event":{"type":"news","data":{"a":)" + std::string(levels, '[')
        + std::string(levels, ']') + "}}}");
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"]
          == "the body nests deeper than " + std::to_string(er::protocol::max_json_depth) + " levels");
  }
  CHECK(er::client::http_request("127.0.0.1", router.port(), "GET", "/api/v1/publish", key).status == 405);
  // Nothing of that reached alice; a valid publish does, stamped with her id.
  CHECK(json::parse(publish(router, publish_body("alice", "news", {{"n", 1}})).body)["delivered"] == 1);
  auto f = next_json(*alice.client);
  CHECK(f["type"] == "news");
  CHECK(f["data"]["n"] == 1);
  CHECK(f["user_id"] == "alice");
  CHECK(f["event_id"] == 1);
  CHECK(json::parse(publish(router, publish_body("nobody-here", "news")).body)["delivered"] == 0);
}

TEST_CASE("the disconnect API closes exactly that user's connections with 4511") {
  test_router router;
  auto a1 = connect_user(router, "alice");
  auto a2 = connect_user(router, "alice");
  auto b = connect_user(router, "bob");
  CHECK(er::client::http_request("127.0.0.1", router.port(), "POST", "/api/v1/users/alice/disconnect").status == 401);
  auto r = er::client::http_request("127.0.0.1", router.port(), "POST", "/api/v1/users/alice/disconnect", key);
  CHECK(r.status == 200);
  CHECK(json::parse(r.body)["disconnected"] == 2);
  for (auto* c : {&a1, &a2}) {
    expect_close(*c->client, 4511);
  }
  b.client->send_text(R"({"type":"ping","id":"b"})");
  CHECK(next_json(*b.client)["reply_to"] == "b");
  CHECK(eventually([&] { return router.server().stats().connections == 1; }));
}

TEST_CASE("the disconnect API reads its path as a path: a plus stays a plus, %XX is decoded, "
          "an id no token could carry is 400") {
  test_router router;
  auto disconnect = [&](const std::string& path_user) {
    return er::client::http_request("127.0.0.1", router.port(), "POST",
                                    "/api/v1/users/" + path_user + "/disconnect", key);
  };
  auto answered_ping = [](connection& c) {
    c.client->send_text(R"({"type":"ping","id":"p"})");
    return next_json(*c.client)["reply_to"] == "p";
  };
  // E-mail addresses are common user ids; URI builders leave their `+` unescaped in a path.
  auto plus = connect_user(router, "ann+test@example.com");
  auto space = connect_user(router, "ann test@example.com");
  auto r = disconnect("ann+test@example.com");
  CHECK(r.status == 200);
  CHECK(json::parse(r.body)["disconnected"] == 1);
  // Closing, not yet gone: a second disconnect finds nobody left to close (it counted the
  // closing connection again, and a new connection of the user made it 2).
  CHECK(json::parse(disconnect("ann+test@example.com").body)["disconnected"] == 0);
  expect_close(*plus.client, 4511);
  CHECK(answered_ping(space)); // the user whose id has a space instead is not touched

  auto plus_again = connect_user(router, "ann+test@example.com");
  r = disconnect("ann%2Btest%40example.com");
  CHECK(json::parse(r.body)["disconnected"] == 1);
  expect_close(*plus_again.client, 4511);
  CHECK(answered_ping(space));
  r = disconnect("ann%20test%40example.com");
  CHECK(json::parse(r.body)["disconnected"] == 1);
  expect_close(*space.client, 4511);

  for (std::string bad : {"anonymous", "%00", "a%0Ab"}) {
    CAPTURE(bad);
    r = disconnect(bad);
    CHECK(r.status == 400);
    CHECK(json::parse(r.body) == json{{"error", "the path must name a user's id"}});
  }
}

TEST_CASE("healthz reports connections, users, runs and uptime") {
  test_router router{agent_settings()};
  auto a = connect_user(router, "alice");
  auto b = connect_user(router, "bob");
  a.client->send_text(R"({"type":"start_agent","payload":{"agent":"test-hang"}})");
  next_json(*a.client);
  auto r = er::client::http_request("127.0.0.1", router.port(), "GET", "/healthz");
  REQUIRE(r.status == 200);
  auto h = json::parse(r.body);
  CHECK(h["status"] == "ok");
  CHECK(h["server_id"] == "test-node");
  CHECK(h["connections"] == 2);
  CHECK(h["users"] == 2);
  CHECK(h["runs"] == 1);
  CHECK(h["uptime_s"].is_number_integer());
}

TEST_CASE("every line of /metrics is Prometheus text and the counters move with the traffic") {
  test_router router{agent_settings()};
  auto scrape = [&] {
    auto r = er::client::http_request("127.0.0.1", router.port(), "GET", "/metrics");
    REQUIRE(r.status == 200);
    CHECK(r.content_type.find("text/plain") == 0);
    return r.body;
  };
  const std::regex comment{R"(^# (HELP|TYPE) router_[a-z_]+ .+$)"};
  const std::regex sample{R"(^router_[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$|^router_[a-z_]+(\{.*\})? (\+Inf|NaN)$)"};
  auto before = scrape();
  {
    auto c = connect_user(router, "alice");
    c.client->send_text(R"({"type":"ping"})");
    next_json(*c.client);
    run_to_end(*c.client, {{"type", "start_agent"}, {"payload", {{"agent", "echo"}}}});
    publish(router, publish_body("alice", "news"));
    next_json(*c.client);
    auto o = options_for(router);
    o.subprotocols = "router.v1, jwt." + sign_claims({{"sub", "mallory"}, {"exp", 4102444800}}, "not-the-secret");
    CHECK_FALSE(er::client::ws_client::connect(o).second.upgraded);
    c.client->close();
  }
  CHECK(eventually([&] { return router.server().stats().connections == 0; }));
  auto after = scrape();
  std::istringstream lines{after};
  int samples = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty())
      continue;
    INFO(line);
    CHECK((std::regex_match(line, comment) || std::regex_match(line, sample)));
    ++samples;
  }
  CHECK(samples > 50);
  auto moved = [&](const std::string& series, double by) {
    INFO(series);
    CHECK(metric(after, series) - metric(before, series) == by);
  };
  moved(R"(router_messages_in_total{type="ping"})", 1);
  moved(R"(router_messages_in_total{type="start_agent"})", 1);
  moved(R"(router_events_out_total{type="pong"})", 1);
  moved(R"(router_events_out_total{type="published"})", 1);
  moved(R"(router_events_out_total{type="agent_completed"})", 1);
  moved(R"(router_agent_runs_total{outcome="completed"})", 1);
  moved(R"(router_auth_failures_total{reason="invalid_signature"})", 1);
  moved(R"(router_closes_total{code="1000"})", 1);
  moved("router_publishes_total", 1);
  CHECK(metric(after, "router_connections") == 0);
  CHECK(metric(after, "router_agent_runs_active") == 0);
  // Which node these are from (router.server-id, as in connection_established).
  CHECK(metric(after, "router_info{server_id=\"" + router.server().settings().server_id + "\"}") == 1);
  CHECK(metric(after, "router_event_delivery_latency_seconds_count")
        > metric(before, "router_event_delivery_latency_seconds_count"));
}

TEST_CASE("/metrics reports the heap as the allocator accounts for it") {
  test_router router{test_settings()};
  auto text = er::client::http_request("127.0.0.1", router.port(), "GET", "/metrics").body;
  CHECK(text.find("\nrouter_heap_in_use_bytes ") != std::string::npos);
  CHECK(text.find("\nrouter_heap_free_bytes ") != std::string::npos);
  CHECK(text.find("\nrouter_detached_sessions 0") != std::string::npos);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) // their allocators are not glibc's
  auto in_use = [&] { return metric(router, "router_heap_in_use_bytes"); };
  auto before = in_use();
  CHECK(before > 0);
  CHECK(metric(text, "router_heap_free_bytes") >= 0);
  constexpr std::size_t block = 64 << 20;
  auto held = std::make_unique<char[]>(block); // the router shares this process's heap
  std::fill_n(held.get(), block, 'x');
  CHECK(in_use() >= before + block);
  held.reset();
  CHECK(in_use() < before + block);
#endif
}

TEST_CASE("past max-connections-per-user the newest connection is closed with 4503") {
  auto settings = test_settings();
  settings.max_connections_per_user = 2;
  test_router router{settings};
  auto a1 = connect_user(router, "alice");
  auto a2 = connect_user(router, "alice");
  auto o = options_for(router);
  o.subprotocols = "router.v1, jwt." + token_for(router, "alice");
  auto [third, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  expect_close(*third, 4503);
  auto bob = connect_user(router, "bob"); // other users are not affected
  a1.client->send_text(R"({"type":"ping","id":"still"})");
  CHECK(next_json(*a1.client)["reply_to"] == "still");
}

TEST_CASE("past max-connections an upgrade gets 503 before it happens") {
  auto settings = test_settings();
  settings.max_connections = 3;
  test_router router{settings};
  std::vector<connection> held;
  for (int i = 0; i < 3; ++i)
    held.push_back(connect_user(router, "user-" + std::to_string(i)));
  auto o = options_for(router);
  o.subprotocols = "router.v1, jwt." + token_for(router, "late");
  auto h = er::client::ws_client::connect(o).second;
  CHECK_FALSE(h.upgraded);
  CHECK(h.status == 503);
  held.back().client->close();
  CHECK(eventually([&] {
    auto again = er::client::ws_client::connect(o);
    return again.second.upgraded;
  }));
}

namespace {

std::string source_file(const std::string& relative) {
  std::ifstream in{std::string{ER_SOURCE_DIR} + "/" + relative, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

} // namespace

TEST_CASE("GET / serves the browser console from the binary, with a Content-Security-Policy "
          "that allows no inline script") {
  test_router router;
  for (auto [path, file, type] :
       {std::tuple{"/", "clients/console/index.html", "text/html"},
        std::tuple{"/console.js", "clients/console/console.js", "text/javascript"},
        std::tuple{"/console.css", "clients/console/console.css", "text/css"},
        std::tuple{"/router-client.js", "clients/js/router-client.js", "text/javascript"}}) {
    CAPTURE(path);
    auto r = er::client::http_request("127.0.0.1", router.port(), "GET", path);
    CHECK(r.status == 200);
    CHECK(r.content_type.rfind(type, 0) == 0);
    CHECK(r.body == source_file(file));
    CHECK(r.content_security_policy.find("script-src 'self'") != std::string::npos);
    CHECK(r.content_security_policy.find("unsafe-inline") == std::string::npos);
    CHECK(r.content_security_policy.find("default-src 'none'") != std::string::npos);
  }
  CHECK(er::client::http_request("127.0.0.1", router.port(), "GET", "/nothing.js").status == 404);
}

TEST_CASE("with router.console-dir the console is read from disk on every request, files added "
          "since the build included, and nothing but plain .html .css .js names") {
  temp_dir clients;
  std::filesystem::create_directories(clients.path() / "console");
  std::filesystem::create_directories(clients.path() / "js");
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream{clients.file(name), std::ios::binary} << text;
  };
  write("console/index.html", "<p>first</p>");
  write("js/router-client.js", "export const v = 1;");
  write("secret.js", "outside the two folders");
  write("console/notes.txt", "not a console file");
  auto settings = test_settings();
  settings.console_dir = clients.path().string();
  test_router router{settings};
  auto get = [&](const std::string& path) {
    return er::client::http_request("127.0.0.1", router.port(), "GET", path);
  };

  CHECK(get("/").body == "<p>first</p>");
  CHECK(get("/router-client.js").body == "export const v = 1;");
  write("console/index.html", "<p>second</p>"); // edited: served as it is now
  CHECK(get("/").body == "<p>second</p>");
  write("console/new-module.js", "export const added = true;"); // added after the build
  auto added = get("/new-module.js");
  CHECK(added.status == 200);
  CHECK(added.content_type.rfind("text/javascript", 0) == 0);
  CHECK(added.body == "export const added = true;");
  CHECK(added.content_security_policy.find("default-src 'none'") != std::string::npos);

  for (auto path : {"/notes.txt", "/../secret.js", "/console/../../secret.js", "/%2e%2e/secret.js",
                    "/.hidden.js", "/missing.js", "/js/router-client.js"}) {
    CAPTURE(path);
    CHECK(get(path).status == 404);
  }
}

TEST_CASE("with router.console-dir a request target without a path (\"?x\") is answered 404, and "
          "the router goes on") {
  temp_dir clients;
  std::filesystem::create_directories(clients.path() / "console");
  std::ofstream{clients.file("console/index.html"), std::ios::binary} << "<p>up</p>";
  auto settings = test_settings();
  settings.console_dir = clients.path().string();
  test_router router{settings};
  {
    raw_socket s{router.port()};
    s.send("GET ?x HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(s.read_until("\r\n\r\n", 5s).rfind("HTTP/1.1 404", 0) == 0);
  }
  CHECK(er::client::http_request("127.0.0.1", router.port(), "GET", "/").body == "<p>up</p>");
}

TEST_CASE("the console's demo tokens are minted only with the dev secret on loopback") {
  SUBCASE("a real secret: 404") {
    test_router router; // the suite's own secret
    auto r = er::client::http_request("127.0.0.1", router.port(), "POST", "/api/v1/dev/token", {},
                                      R"({"user_id":"alice"})");
    CHECK(r.status == 404);
  }
  SUBCASE("the dev secret on 127.0.0.1: a token that connects as that user") {
    auto settings = test_settings();
    settings.jwt_secret = er::app::dev_jwt_secret;
    test_router router{settings};
    auto r = er::client::http_request("127.0.0.1", router.port(), "POST", "/api/v1/dev/token", {},
                                      R"({"user_id":"carol"})");
    REQUIRE(r.status == 200);
    auto token = json::parse(r.body)["token"].get<std::string>();
    auto o = options_for(router);
    o.subprotocols = "router.v1, jwt." + token;
    auto [client, h] = er::client::ws_client::connect(o);
    REQUIRE(h.upgraded);
    CHECK(next_json(*client)["user_id"] == "carol");
    auto bad = er::client::http_request("127.0.0.1", router.port(), "POST", "/api/v1/dev/token",
                                        {}, R"({"user_id":"anonymous"})");
    CHECK(bad.status == 400);
  }
}
