// HTTP agents (DESIGN §5) against a real HTTP server over loopback (tests/agents/
// http_agent_server.py, a child process of each test): both formats, chunked and
// close-delimited, events forwarded while the response is still open, every failure as one
// agent_error, aborts the server observes, pooled keep-alive connections, max-in-flight.

#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

#include "actors/router/manager/runs/http_agent_client.hpp"

#include "tests/support.hpp"
#include "tests/temp_dir.hpp"

using namespace er::test;

namespace {

/// The test HTTP server, on a free port, stopped with the test.
class agent_server {
public:
  explicit agent_server(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{"/usr/bin/python3",
                                  std::string{ER_SOURCE_DIR} + "/tests/agents/http_agent_server.py",
                                  "--port", "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process_ = std::make_unique<child_process>(argv);
    auto line = process_->read_line();
    REQUIRE_MESSAGE(line.rfind("listening ", 0) == 0, "the server said: " << line);
    port_ = static_cast<unsigned short>(std::stoi(line.substr(10)));
  }
  ~agent_server() {
    process_->signal(SIGTERM);
    process_->wait();
  }

  std::string url(const std::string& path, bool tls = false) const {
    return std::string{tls ? "https" : "http"} + "://127.0.0.1:" + std::to_string(port_) + path;
  }
  json stats() const {
    auto r = er::client::http_request("127.0.0.1", port_, "GET", "/_stats");
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  void release(const std::string& run_id = {}) const {
    auto target = run_id.empty() ? std::string{"/_release"} : "/_release?run_id=" + run_id;
    CHECK(er::client::http_request("127.0.0.1", port_, "POST", target).status == 200);
  }
  unsigned short port() const {
    return port_;
  }
  bool saw_disconnect(const std::string& run_id) const {
    auto d = stats()["disconnects"];
    return std::find(d.begin(), d.end(), run_id) != d.end();
  }

private:
  std::unique_ptr<child_process> process_;
  unsigned short port_ = 0;
};

er::app::http_agent_settings http_agent(std::string name, std::string url) {
  er::app::http_agent_settings a;
  a.name = std::move(name);
  a.url = std::move(url);
  a.connect_timeout_ms = 2000;
  a.timeout_ms = 20000;
  return a;
}

er::app::router_settings settings_with(std::vector<er::app::http_agent_settings> agents) {
  auto s = agent_settings();
  s.http_agents = std::move(agents);
  s.max_runs_per_connection = 10;
  s.messages_per_second = 100000;
  s.messages_burst = 100000;
  return s;
}

json start(const std::string& agent, const std::string& id, json input = "hello") {
  return {{"type", "start_agent"}, {"id", id}, {"payload", {{"agent", agent}, {"input", input}}}};
}

/// Runs `agent` to its end; the final event (exactly one).
json run_final(connection& c, const std::string& agent, const std::string& id = "r") {
  auto frames = run_to_end(*c.client, start(agent, id), 20s);
  REQUIRE(frames.size() >= 2);
  CHECK(frames.front()["type"] == "agent_started");
  CHECK(std::count_if(frames.begin(), frames.end(), [](const json& f) { return is_final(f); })
        == 1);
  return frames.back();
}

/// The run's agent_error message, checked to be the one final event.
std::string error_of(connection& c, const std::string& agent) {
  auto last = run_final(c, agent);
  CHECK(last["type"] == "agent_error");
  return last["data"]["message"].get<std::string>();
}

} // namespace

TEST_CASE("an HTTP agent streams NDJSON and SSE, chunked and close-delimited, and learns the "
          "verified user, the run id and its bearer from the router") {
  agent_server server;
  auto ndjson = http_agent("nd", server.url("/ndjson?n=4"));
  ndjson.bearer = "s3cret-bearer";
  test_router router{settings_with({ndjson, http_agent("sse", server.url("/sse?n=4")),
                                    http_agent("nd-close", server.url("/ndjson-close?n=3")),
                                    http_agent("sse-close", server.url("/sse-close?n=3&eol=crlf")),
                                    http_agent("split", server.url("/ndjson?n=3&chunk=7"))})};
  auto c = connect_user(router, "alice");
  for (std::string agent : {"nd", "sse", "nd-close", "sse-close", "split"}) {
    CAPTURE(agent);
    auto frames = run_to_end(*c.client, start(agent, agent, json{{"q", 1}}), 20s);
    REQUIRE(frames.back()["type"] == "agent_completed");
    auto run_id = frames.front()["run_id"];
    for (auto& f : frames) {
      CHECK(f["run_id"] == run_id);
      CHECK(f["user_id"] == "alice");
    }
    auto echo = frames.back()["data"];
    CHECK(echo["user_id"] == "alice");
    CHECK(echo["run_id"] == run_id);
    CHECK(echo["x_request_id"] == run_id);
    CHECK(echo["agent"] == agent);
    CHECK(echo["payload"]["input"] == json{{"q", 1}});
    CHECK(echo["content_type"] == "application/json");
    CHECK(echo["method"] == "POST");
    CHECK(frames.size() == static_cast<std::size_t>(echo["events"].get<int>() + 1));
    if (agent == "nd")
      CHECK(echo["authorization"] == "Bearer s3cret-bearer");
    else
      CHECK(echo["authorization"].is_null());
  }
}

TEST_CASE("an HTTP agent's events reach the client while its response is still open") {
  agent_server server;
  test_router router{settings_with({http_agent("gate", server.url("/gate"))})};
  auto c = connect_user(router, "alice");
  c.client->send_text(start("gate", "g").dump());
  auto started = next_json(*c.client);
  REQUIRE(started["type"] == "agent_started");
  CHECK(next_json(*c.client)["type"] == "agent_thinking"); // before the backend has finished
  CHECK(server.stats()["gates_waiting"] == 1);
  server.release(started["run_id"]);
  CHECK(next_json(*c.client)["type"] == "agent_completed");
}

TEST_CASE("an HTTP agent that streams as fast as it can waits for its events to be handled and "
          "for its client to read them: memory stays bounded, a client that stops reading is "
          "not closed as a slow consumer and gets every event once it reads on") {
  agent_server server;
  test_router router{settings_with({http_agent("flood", server.url("/flood"))})};
  // Before, the body was read as fast as it came, its events piling up in the mailboxes; then
  // they filled the socket's queue to its bound (4008).
  expect_flood_held_back(router, start("flood", "f"));
  CHECK(eventually([&] { return server.stats()["in_flight"] == 0; }, 10s)); // the request ended
}

TEST_CASE("every failure of an HTTP agent is exactly one agent_error with a clear message") {
  agent_server server;
  auto guarded = http_agent("denied", server.url("/status/500"));
  guarded.bearer = "never-in-messages";
  auto slow = http_agent("slow", server.url("/slow-headers"));
  slow.connect_timeout_ms = 300;
  test_router router{settings_with(
    {guarded, http_agent("notfound", server.url("/status/404")),
     http_agent("bad-type", server.url("/bad-type")),
     http_agent("malformed", server.url("/malformed")),
     http_agent("long-line", server.url("/long-line")),
     http_agent("no-final", server.url("/no-final")), slow,
     http_agent("refused", "http://127.0.0.1:1/agent"),
     http_agent("tls", server.url("/ndjson", true))})};
  auto c = connect_user(router, "alice");
  auto denied = error_of(c, "denied");
  CHECK(denied.find("HTTP 500") != std::string::npos);
  CHECK(denied.find("backend says no") != std::string::npos);
  CHECK(denied.find("never-in-messages") == std::string::npos);
  CHECK(error_of(c, "notfound").find("HTTP 404") != std::string::npos);
  CHECK(error_of(c, "bad-type").find("Content-Type \"text/plain") != std::string::npos);
  CHECK(error_of(c, "malformed").find("not a JSON agent event") != std::string::npos);
  CHECK(error_of(c, "long-line").find("longer than 65536 bytes") != std::string::npos);
  CHECK(error_of(c, "no-final").find("ended without agent_completed") != std::string::npos);
  CHECK(error_of(c, "slow").find("did not answer") != std::string::npos);
  CHECK(error_of(c, "refused").find("cannot connect to the agent at http://127.0.0.1:1/agent")
        != std::string::npos);
  // The server speaks plain HTTP: the TLS handshake fails.
  CHECK(error_of(c, "tls").find("TLS handshake with the agent failed") != std::string::npos);
  c.client->send_text(R"({"type":"ping","id":"after"})");
  CHECK(next_json(*c.client)["reply_to"] == "after"); // the connection is fine
}

TEST_CASE("https: the agent's certificate is verified (a private CA may be added with ca-file)") {
  temp_dir dir;
  auto cert = dir.file("cert.pem"), key = dir.file("key.pem");
  auto cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
             " -addext subjectAltName=IP:127.0.0.1 -keyout " + key + " -out " + cert
             + " 2>/dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  agent_server server{{"--tls", cert, key}};
  auto trusted = http_agent("trusted", server.url("/ndjson?n=2", true));
  trusted.ca_file = cert;
  test_router router{settings_with({trusted, http_agent("untrusted", server.url("/ndjson", true))})};
  auto c = connect_user(router, "alice");
  CHECK(run_final(c, "trusted")["type"] == "agent_completed");
  auto refused = error_of(c, "untrusted");
  CHECK(refused.find("TLS handshake with the agent failed") != std::string::npos);
  CHECK(refused.find("certificate verify failed") != std::string::npos);
}

TEST_CASE("stop_agent, the run timeout and a closing connection abort the request at once, "
          "and the server sees its client go away") {
  agent_server server;
  auto timed = http_agent("hang-timeout", server.url("/hang"));
  timed.timeout_ms = 500;
  test_router router{settings_with({http_agent("hang", server.url("/hang")), timed})};
  auto c = connect_user(router, "alice");
  SUBCASE("stop") {
    c.client->send_text(start("hang", "h").dump());
    auto run_id = next_json(*c.client)["run_id"].get<std::string>();
    CHECK(next_json(*c.client)["type"] == "agent_thinking");
    c.client->send_text(json{{"type", "stop_agent"}, {"id", "s"}, {"payload", {{"run_id", run_id}}}}.dump());
    CHECK(next_json(*c.client)["type"] == "agent_stopped");
    CHECK(eventually([&] { return server.saw_disconnect(run_id); }, 5s));
  }
  SUBCASE("timeout") {
    auto frames = run_to_end(*c.client, start("hang-timeout", "t"), 10s);
    CHECK(frames.back()["data"]["message"] == "the agent timed out");
    CHECK(eventually([&] { return server.saw_disconnect(frames.front()["run_id"]); }, 5s));
  }
  SUBCASE("the client's connection closes") {
    c.client->send_text(start("hang", "h").dump());
    auto run_id = next_json(*c.client)["run_id"].get<std::string>();
    CHECK(next_json(*c.client)["type"] == "agent_thinking");
    c.client->close(1000);
    CHECK(eventually([&] { return server.saw_disconnect(run_id); }, 5s));
  }
}

TEST_CASE("keep-alive connections are reused between runs, a broken one never is") {
  agent_server server;
  test_router router{settings_with({http_agent("count", server.url("/count?n=2")),
                                    http_agent("dropping", server.url("/count?n=2&close=1"))})};
  auto c = connect_user(router, "alice");
  for (int i = 0; i < 5; ++i)
    CHECK(run_final(c, "count")["type"] == "agent_completed");
  // A run's agent_completed is forwarded as soon as its line arrives, before the router has
  // read the end of the response and put the connection back: the next run may find it still
  // busy and open another one (a second one usually, on a busy host now and then a third).
  auto opened = server.stats()["connections_accepted"].get<int>();
  CHECK(opened < 5);
  CHECK(server.stats()["requests"] == 5);
  // Once the responses' ends are read, a run takes an idle connection and opens none.
  std::this_thread::sleep_for(300ms);
  CHECK(run_final(c, "count")["type"] == "agent_completed");
  CHECK(server.stats()["connections_accepted"] == opened);
  // The server drops each connection after answering, without saying so: the next run's
  // request fails on the dead connection and is retried on a fresh one, unseen by the client.
  for (int i = 0; i < 3; ++i)
    CHECK(run_final(c, "dropping")["type"] == "agent_completed");
  CHECK(server.stats()["requests"] == 9);
}

TEST_CASE("200 concurrent runs share a pool of at most max-in-flight connections") {
  agent_server server;
  auto pooled = http_agent("pooled", server.url("/ndjson?n=3&delay_ms=20"));
  pooled.max_in_flight = 8;
  test_router router{settings_with({pooled})};
  std::vector<connection> clients;
  for (int i = 0; i < 20; ++i)
    clients.push_back(connect_user(router, "user-" + std::to_string(i % 5)));
  for (auto& c : clients)
    for (int r = 0; r < 10; ++r)
      c.client->send_text(start("pooled", "p" + std::to_string(r)).dump());
  for (std::size_t i = 0; i < clients.size(); ++i) {
    int completed = 0;
    read_until(*clients[i].client, [&](const json& f) {
      CHECK(f["user_id"] == "user-" + std::to_string(i % 5));
      if (f["type"] == "agent_completed")
        CHECK(f["data"]["user_id"] == f["user_id"]);
      completed += f["type"] == "agent_completed" ? 1 : 0;
      return completed == 10;
    }, 60s);
  }
  auto stats = server.stats();
  CHECK(stats["requests"] == 200);
  CHECK(stats["max_in_flight"].get<int>() <= 8);
  CHECK(stats["connections_accepted"].get<int>() <= 8);
}

TEST_CASE("past max-in-flight runs wait in order, and past queue-timeout-ms get unavailable") {
  agent_server server;
  auto gated = http_agent("gate", server.url("/gate"));
  gated.max_in_flight = 2;
  gated.queue_timeout_ms = 30000;
  auto single = http_agent("single", server.url("/hang"));
  single.max_in_flight = 1;
  single.queue_timeout_ms = 300;
  test_router router{settings_with({gated, single})};
  auto c = connect_user(router, "alice");
  SUBCASE("waiting") {
    for (int i = 0; i < 4; ++i)
      c.client->send_text(start("gate", "g" + std::to_string(i)).dump());
    CHECK(eventually([&] { return server.stats()["gates_waiting"] == 2; }, 5s));
    std::this_thread::sleep_for(200ms);
    CHECK(server.stats()["in_flight"] == 2); // the other two wait in the router
    server.release();
    CHECK(eventually([&] { return server.stats()["gates_waiting"] == 2; }, 5s));
    server.release();
    int completed = 0;
    read_until(*c.client, [&](const json& f) {
      completed += f["type"] == "agent_completed" ? 1 : 0;
      return completed == 4;
    }, 20s);
    CHECK(server.stats()["max_in_flight"] == 2);
  }
  SUBCASE("unavailable") {
    c.client->send_text(start("single", "first").dump());
    CHECK(next_json(*c.client)["type"] == "agent_started");
    CHECK(next_json(*c.client)["type"] == "agent_thinking");
    auto frames = run_to_end(*c.client, start("single", "second"), 5s);
    CHECK(frames.back()["type"] == "agent_error");
    CHECK(frames.back()["data"]["code"] == "unavailable");
    CHECK(frames.back()["data"]["message"].get<std::string>().find("busy") != std::string::npos);
  }
}

TEST_CASE("runs stopped while they wait for the one slot, or just as they get it, give it back "
          "once each: the pool keeps serving") {
  agent_server server;
  auto single = http_agent("single", server.url("/ndjson?n=2&delay_ms=2"));
  single.max_in_flight = 1;
  single.queue_timeout_ms = 3000;
  test_router router{settings_with({single})};
  auto c = connect_user(router, "alice");
  // Waves of runs, each stopped as soon as it is announced: most are still queued, some are
  // being handed the slot as their stop arrives, a few are running.
  for (int wave = 0; wave < 25; ++wave) {
    for (int i = 0; i < 8; ++i)
      c.client->send_text(start("single", "w" + std::to_string(wave) + "-" + std::to_string(i)).dump());
    int finals = 0;
    read_until(*c.client, [&](const json& f) {
      if (f["type"] == "agent_started")
        c.client->send_text(json{{"type", "stop_agent"},
                                 {"id", "stop"},
                                 {"payload", {{"run_id", f["run_id"]}}}}.dump());
      finals += is_final(f) ? 1 : 0;
      return finals == 8;
    }, 20s);
  }
  // The aborted requests end on the agent's side too; then its count starts afresh.
  CHECK(eventually([&] { return server.stats()["in_flight"] == 0; }, 5s));
  REQUIRE(er::client::http_request("127.0.0.1", server.port(), "POST", "/_reset").status == 200);
  // One slot, neither leaked nor given back twice: four runs at once all complete (none
  // refused for want of a slot), one request at a time (no second slot appeared).
  for (int i = 0; i < 4; ++i)
    c.client->send_text(start("single", "after-" + std::to_string(i)).dump());
  int completed = 0;
  read_until(*c.client, [&](const json& f) {
    CHECK(f["type"] != "agent_error");
    completed += f["type"] == "agent_completed" ? 1 : 0;
    return completed == 4;
  }, 20s);
  CHECK(server.stats()["max_in_flight"] == 1);
  CHECK(server.stats()["requests"] == 4);
}

TEST_CASE("two users' HTTP agent runs at once: each frame and each backend request is its "
          "user's own") {
  agent_server server;
  test_router router{settings_with({http_agent("nd", server.url("/ndjson?n=5&delay_ms=5")),
                                    http_agent("sse", server.url("/sse?n=5&delay_ms=5"))})};
  auto alice = connect_user(router, "alice");
  auto bob = connect_user(router, "bob");
  for (int r = 0; r < 5; ++r) {
    alice.client->send_text(start(r % 2 ? "nd" : "sse", "a" + std::to_string(r)).dump());
    bob.client->send_text(start(r % 2 ? "sse" : "nd", "b" + std::to_string(r)).dump());
  }
  for (auto [c, user] : {std::pair{&alice, "alice"}, std::pair{&bob, "bob"}}) {
    std::set<std::string> runs;
    int completed = 0;
    read_until(*c->client, [&, user = std::string{user}](const json& f) {
      CHECK(f["user_id"] == user);
      if (f["type"] == "agent_started")
        runs.insert(f["run_id"]);
      CHECK(runs.count(f["run_id"]) == 1); // only runs this connection started
      if (f["type"] == "agent_completed") {
        CHECK(f["data"]["user_id"] == user); // the backend was told the right user
        ++completed;
      }
      return completed == 5;
    }, 20s);
  }
}

TEST_CASE("interim responses (1xx) are read past: the run gets its final response, and the "
          "next run on the pooled connection its own") {
  // Beast reads a 1xx head as a whole message. Before, the run failed with "HTTP 102" and its
  // connection went back to the pool with the real response still coming: the next run,
  // another user's, then forwarded that response as its own.
  agent_server server;
  test_router router{settings_with({http_agent("interim", server.url("/interim?n=3&delay_ms=50"))})};
  auto alice = connect_user(router, "alice");
  auto bob = connect_user(router, "bob");
  for (auto [c, user] : {std::pair{&alice, "alice"}, std::pair{&bob, "bob"}, std::pair{&alice, "alice"}}) {
    CAPTURE(user);
    auto frames = run_to_end(*c->client, start("interim", "i"), 20s);
    REQUIRE(frames.size() == 4); // agent_started, two events, agent_completed
    auto& last = frames.back();
    REQUIRE(last["type"] == "agent_completed");
    CHECK(last["data"]["user_id"] == user);
    CHECK(last["data"]["run_id"] == frames.front()["run_id"]); // its own request's response
  }
  std::this_thread::sleep_for(200ms); // the last response's end read, its connection idle
  CHECK(server.stats()["requests"] == 3);
  CHECK(server.stats()["connections_accepted"].get<int>() < 3); // the connection was reused
}

TEST_CASE("the response's media type is matched without regard to case") {
  agent_server server;
  test_router router{settings_with(
    {http_agent("upper", server.url("/ndjson?n=2&content_type=Application/X-NDJSON;%20charset=UTF-8")),
     http_agent("sse-upper", server.url("/sse?n=2&content_type=Text/Event-Stream"))})};
  auto c = connect_user(router, "alice");
  CHECK(run_final(c, "upper")["type"] == "agent_completed");
  CHECK(run_final(c, "sse-upper")["type"] == "agent_completed");
}

TEST_CASE("agents/http-agent-example.py works as an HTTP agent, in both formats") {
  child_process example{{"/usr/bin/python3", std::string{ER_SOURCE_DIR} + "/agents/http-agent-example.py",
                         "--port", "0", "--delay-ms", "1"}};
  auto line = example.read_line();
  auto at = line.find("http://");
  REQUIRE(at != std::string::npos);
  auto url = line.substr(at);
  test_router router{settings_with({http_agent("llm", url), http_agent("llm-sse", url + "/sse")})};
  auto c = connect_user(router, "alice");
  for (std::string agent : {"llm", "llm-sse"}) {
    CAPTURE(agent);
    auto frames = run_to_end(*c.client, start(agent, agent, "two words"), 20s);
    CHECK(frames.back()["type"] == "agent_completed");
    auto tokens = std::count_if(frames.begin(), frames.end(),
                                [](const json& f) { return f["type"] == "agent_progress"; });
    CHECK(tokens >= 2);
    std::string streamed;
    for (auto& f : frames)
      if (f["type"] == "agent_progress")
        streamed += f["data"]["delta"].get<std::string>();
    CHECK(streamed == frames.back()["data"]["output"]); // the tokens make up the answer
  }
  example.signal(SIGTERM);
  example.wait();
}

TEST_CASE("with a body window a response's body is delivered only while the bytes delivered and "
          "not consumed are fewer: consumed() goes on") {
  agent_server server;
  boost::asio::io_context io;
  std::string why;
  er::actors::http_agent_options options;
  options.url = *er::actors::parse_agent_url(server.url("/flood"), why);
  auto pool = er::actors::http_agent_pool::create(io, options);
  std::size_t received = 0;
  er::actors::agent_response_callbacks cb;
  cb.on_body = [&](std::string bytes) { received += bytes.size(); };
  constexpr std::size_t window = 64 * 1024;
  auto request = pool->start("r-window", R"({"run_id":"r-window"})", cb, window);
  auto run_for = [&](std::chrono::milliseconds d) {
    io.restart();
    io.run_for(d);
  };
  run_for(500ms); // the server had time to send far more
  auto held = received;
  CHECK(held >= window);
  // Up to the line that filled the window (the flood's lines are 45 bytes): the rest of the
  // read that filled it waits, where a read of up to 16 KiB used to be delivered whole.
  CHECK(held < window + 45);
  run_for(300ms);
  CHECK(received == held); // parked: nothing more is read
  request->consumed(held);
  run_for(500ms);
  CHECK(received >= held + window);
  request->abort();
  run_for(100ms);
  CHECK(eventually([&] { return server.saw_disconnect("r-window"); }, 10s));
}
