// Resume after a dropped connection (DESIGN §8).

#include <doctest/doctest.h>

#include <thread>

#include "tests/raw_socket.hpp"
#include "tests/support.hpp"

using namespace er::test;

namespace {

er::app::router_settings resume_settings() {
  auto s = agent_settings();
  s.resume_window_ms = 1500;
  s.resume_buffer_events = 100;
  s.demo_steps = 10;
  s.demo_step_delay_ms = 40;
  return s;
}

std::pair<std::unique_ptr<er::client::ws_client>, json>
reconnect(test_router& router, const std::string& user, const std::string& target) {
  auto o = options_for(router);
  o.subprotocols = "router.v1, jwt." + token_for(router, user);
  o.target = target;
  auto [client, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  auto greeting = next_json(*client);
  REQUIRE(greeting["type"] == "connection_established");
  return {std::move(client), greeting};
}

std::string resume_target(const json& greeting, std::int64_t last_event_id) {
  return "/ws?resume=" + greeting["data"]["resume_token"].get<std::string>()
         + "&last_event_id=" + std::to_string(last_event_id);
}

} // namespace

TEST_CASE("a connection the heartbeat finds gone (4009) waits for its resume like a dropped one") {
  auto settings = resume_settings();
  settings.resume_window_ms = 10000;
  settings.heartbeat_interval_ms = 200;
  settings.heartbeat_timeout_ms = 300;
  settings.handshake_timeout_ms = 1000; // the close frame's answer is not waited for long
  test_router router{settings};
  // A client whose network went away silently: it answers no ping (it never reads) and sends
  // no close frame. Before, its session ended with the 4009, and the client, back on another
  // network, got a fresh one with recovered: false.
  auto c = connect_user(router, "alice");
  CHECK(eventually([&] { return router.server().stats().detached == 1; }, 10s));
  auto [client, greeting] = reconnect(router, "alice", resume_target(c.established, 0));
  CHECK(greeting["data"]["recovered"] == true);
  CHECK(greeting["data"]["session_id"] == c.established["data"]["session_id"]);
  client->send_text(R"({"type":"ping","id":"back"})");
  CHECK(next_json(*client)["reply_to"] == "back");
}

TEST_CASE("a resume answered after the router gave up waiting starts the connection once") {
  // The router waits settings.resume_answer_timeout for the detached session to take the
  // connection, then gives it to a fresh manager. A session answering late (a long mailbox)
  // started the same socket as well: two upgrades, two greetings, two writers. At 0 ms the
  // router gives up at once, while the session takes the connection as quickly as ever: the
  // two race on every resume here, and the connection's one claim decides.
  auto settings = resume_settings();
  settings.resume_answer_timeout_ms = 0;
  settings.resume_window_ms = 30000;
  test_router router{settings};
  int recovered = 0;
  for (int i = 0; i < 20; ++i) {
    auto user = "racer-" + std::to_string(i);
    auto c = connect_user(router, user);
    c.client->reset();
    CHECK(eventually([&] { return router.server().stats().connections == 0; }));
    auto [client, greeting] = reconnect(router, user, resume_target(c.established, 0));
    recovered += greeting["data"]["recovered"] == true ? 1 : 0;
    client->send_text(R"({"type":"ping","id":"once"})");
    int greetings = 1, pongs = 0, others = 0;
    for (;;) {
      auto f = client->read(300ms);
      if (f.what != er::client::frame::kind::text)
        break;
      auto j = json::parse(f.data);
      if (j["type"] == "connection_established")
        ++greetings;
      else if (j["reply_to"] == "once")
        ++pongs;
      else
        ++others;
    }
    CHECK(greetings == 1);
    CHECK(pongs == 1);
    CHECK(others == 0);
    CHECK(router.server().stats().connections == 1);
    client->close();
  }
  MESSAGE(recovered << " of 20 resumes were taken by the detached session");
}

TEST_CASE("resuming in the middle of a running demo agent loses and duplicates nothing") {
  test_router router{resume_settings()};
  auto c = connect_user(router, "alice");
  auto first_greeting = c.established;
  c.client->send_text(R"({"type":"start_agent","id":"long","payload":{"agent":"demo"}})");
  std::vector<json> seen = read_until(*c.client, [](const json& f) { return f["event_id"] == 3; });
  c.client->reset(); // dropped without a close frame
  CHECK(eventually([&] { return router.server().stats().detached == 1; }));
  auto [client, greeting] = reconnect(router, "alice", resume_target(first_greeting, 3));
  CHECK(greeting["data"]["recovered"] == true);
  CHECK(greeting["data"]["session_id"] == first_greeting["data"]["session_id"]);
  CHECK(greeting["data"]["resume_token"] != first_greeting["data"]["resume_token"]);
  auto rest = read_until(*client, [](const json& f) { return is_final(f); });
  seen.insert(seen.end(), rest.begin(), rest.end());
  std::vector<std::string> types;
  for (size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i]["event_id"] == i + 1); // consecutive: nothing lost, nothing twice
    CHECK(seen[i]["user_id"] == "alice");
    types.push_back(seen[i]["type"]);
  }
  CHECK(types.front() == "agent_started");
  CHECK(std::count(types.begin(), types.end(), "agent_thinking") == 10);
  CHECK(types.back() == "agent_completed");
  CHECK(router.server().stats().detached == 0);
}

TEST_CASE("resuming with another user's token fails and reveals nothing of that session") {
  test_router router{resume_settings()};
  auto alice = connect_user(router, "alice");
  alice.client->send_text(R"({"type":"ping","id":"a"})");
  next_json(*alice.client);
  alice.client->reset();
  CHECK(eventually([&] { return router.server().stats().detached == 1; }));
  auto [client, greeting] = reconnect(router, "mallory", resume_target(alice.established, 0));
  CHECK(greeting["data"]["recovered"] == false);
  CHECK(greeting["user_id"] == "mallory");
  CHECK(greeting["data"]["session_id"] != alice.established["data"]["session_id"]);
  CHECK(client->read(300ms).what == er::client::frame::kind::timeout); // no replay of alice's pong
  // Alice can still come back.
  auto [back, again] = reconnect(router, "alice", resume_target(alice.established, 1));
  CHECK(again["data"]["recovered"] == true);
}

TEST_CASE("a used resume token and an unknown one give a fresh session") {
  test_router router{resume_settings()};
  auto c = connect_user(router, "alice");
  c.client->reset();
  CHECK(eventually([&] { return router.server().stats().detached == 1; }));
  auto [first, g1] = reconnect(router, "alice", resume_target(c.established, 0));
  CHECK(g1["data"]["recovered"] == true);
  auto [second, g2] = reconnect(router, "alice", resume_target(c.established, 0));
  CHECK(g2["data"]["recovered"] == false);
  auto [third, g3] = reconnect(router, "alice", "/ws?resume=rt-unknown&last_event_id=0");
  CHECK(g3["data"]["recovered"] == false);
}

TEST_CASE("a client close ends the session at once, whatever its code: nothing to resume") {
  // 4009 and 4501 leave a session detached when the router closes with them; sent by a client
  // they did too, so that a client could keep its session and its runs going at will.
  for (std::uint16_t code : {1000, 1001, 4009, 4501}) {
    CAPTURE(code);
    test_router router{resume_settings()};
    auto c = connect_user(router, "alice");
    c.client->close(code);
    CHECK(eventually([&] { return router.server().stats().connections == 0; }));
    CHECK(router.server().stats().detached == 0);
    CHECK(metric(router, "router_closes_total{code=\"" + std::to_string(code) + "\"}") == 1);
    auto [client, g] = reconnect(router, "alice", resume_target(c.established, 0));
    CHECK(g["data"]["recovered"] == false);
  }
}

TEST_CASE("a detached session, its runs and buffers are gone after the resume window") {
  test_router router{resume_settings()};
  auto baseline = router.server().running_actors();
  auto c = connect_user(router, "alice");
  c.client->send_text(R"({"type":"start_agent","payload":{"agent":"test-hang"}})");
  next_json(*c.client);
  c.client->reset();
  CHECK(eventually([&] { return router.server().stats().detached == 1; }));
  CHECK(metric(router, "router_detached_sessions") == 1);
  CHECK(eventually([&] {
    return router.server().stats().detached == 0 && router.server().running_actors() == baseline;
  }, 5s));
  CHECK(metric(router, "router_detached_sessions") == 0);
  auto [client, g] = reconnect(router, "alice", resume_target(c.established, 1));
  CHECK(g["data"]["recovered"] == false);
  // The run that ended with its session is counted as ended: no gauge drifts upward.
  CHECK(metric(router, "router_agent_runs_active") == 0);
  CHECK(metric(router, "router_agent_runs_total{outcome=\"stopped\"}") == 1);
}

TEST_CASE("events published while detached are replayed on resume, in order") {
  test_router router{resume_settings()};
  auto c = connect_user(router, "alice");
  c.client->reset();
  CHECK(eventually([&] { return router.server().stats().detached == 1; }));
  for (int i = 0; i < 3; ++i) {
    auto r = er::client::http_request("127.0.0.1", router.port(), "POST", "/api/v1/publish",
                                   "Bearer test-api-key",
                                   json{{"user_id", "alice"}, {"event", {{"type", "news"}, {"data", {{"n", i}}}}}}.dump());
    CHECK(json::parse(r.body)["delivered"] == 0); // no open connection, but buffered
  }
  auto [client, g] = reconnect(router, "alice", resume_target(c.established, 0));
  CHECK(g["data"]["recovered"] == true);
  for (int i = 0; i < 3; ++i) {
    auto f = next_json(*client);
    CHECK(f["event_id"] == i + 1);
    CHECK(f["data"]["n"] == i);
  }
}

TEST_CASE("a resume that asks for events older than the buffer gives a fresh session") {
  auto settings = resume_settings();
  settings.resume_buffer_events = 2;
  test_router router{settings};
  auto c = connect_user(router, "alice");
  for (int i = 0; i < 5; ++i) {
    c.client->send_text(R"({"type":"ping"})");
    next_json(*c.client);
  }
  c.client->reset();
  CHECK(eventually([&] { return router.server().stats().detached == 1; }));
  auto [client, g] = reconnect(router, "alice", resume_target(c.established, 1));
  CHECK(g["data"]["recovered"] == false);
}

TEST_CASE("the replay buffer keeps at most router.resume-buffer-bytes of frames, newest first") {
  auto settings = resume_settings();
  settings.resume_buffer_bytes = 2048;
  test_router router{settings};
  auto c = connect_user(router, "alice");
  std::size_t last_bytes = 0;
  for (int i = 0; i < 30; ++i) { // about 200 bytes each: the buffer holds the last ten or so
    c.client->send_text(R"({"type":"ping","id":"p)" + std::to_string(i) + R"("})");
    last_bytes = next_json(*c.client).dump().size();
  }
  REQUIRE(last_bytes * 4 < 2048);
  c.client->reset();
  CHECK(eventually([&] { return router.server().stats().detached == 1; }));
  // The first pongs are gone: no resume from there (the session stays detached)...
  auto [fresh, g1] = reconnect(router, "alice", resume_target(c.established, 0));
  CHECK(g1["data"]["recovered"] == false);
  // ...the last ones are kept, and come back in order.
  auto [client, g2] = reconnect(router, "alice", resume_target(c.established, 26));
  CHECK(g2["data"]["recovered"] == true);
  for (int id = 27; id <= 30; ++id) {
    auto f = next_json(*client);
    CHECK(f["event_id"] == id);
    CHECK(f["reply_to"] == "p" + std::to_string(id - 1));
  }
}

TEST_CASE("a resume while the old socket still looks open takes the session over, the old "
          "socket is closed with 4512") {
  test_router router{resume_settings()};
  auto c = connect_user(router, "alice");
  c.client->send_text(R"({"type":"start_agent","id":"long","payload":{"agent":"demo"}})");
  auto seen = read_until(*c.client, [](const json& f) { return f["event_id"] == 3; });
  // The client switched networks: it gives up on the old socket without the router noticing.
  auto [client, greeting] = reconnect(router, "alice", resume_target(c.established, 3));
  CHECK(greeting["data"]["recovered"] == true);
  CHECK(greeting["data"]["session_id"] == c.established["data"]["session_id"]);
  expect_close_after_text(*c.client, 4512);
  auto rest = read_until(*client, [](const json& f) { return is_final(f); });
  std::int64_t expected = 4;
  for (auto& f : rest)
    CHECK(f["event_id"] == expected++); // consecutive across the takeover
  CHECK(rest.back()["type"] == "agent_completed");
  CHECK(router.server().stats().connections == 1);
  CHECK(router.server().stats().detached == 0);
  client->send_text(R"({"type":"ping","id":"after"})");
  CHECK(next_json(*client)["reply_to"] == "after"); // the old socket's close did not detach it
}

TEST_CASE("a resume of a detached session past max-connections-per-user is closed with 4503, "
          "and the session waits on for a resume once there is room") {
  auto settings = resume_settings();
  settings.max_connections_per_user = 2;
  settings.resume_window_ms = 10000;
  test_router router{settings};
  auto first = connect_user(router, "alice");
  first.client->reset(); // detached: it does not count against the limit
  CHECK(eventually([&] { return router.server().stats().detached == 1; }));
  auto second = connect_user(router, "alice");
  auto third = connect_user(router, "alice");
  // Before, the resume was let in: three connections of a user limited to two.
  auto o = options_for(router);
  o.subprotocols = "router.v1, jwt." + token_for(router, "alice");
  o.target = resume_target(first.established, 0);
  auto [refused, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  expect_close(*refused, 4503);
  CHECK(router.server().stats().connections == 2);
  CHECK(router.server().stats().detached == 1);
  third.client->close();
  CHECK(eventually([&] { return router.server().stats().connections == 1; }));
  auto [client, greeting] = reconnect(router, "alice", resume_target(first.established, 0));
  CHECK(greeting["data"]["recovered"] == true);
  CHECK(greeting["data"]["session_id"] == first.established["data"]["session_id"]);
  // A resume whose session still has its socket moves it: no connection more, not refused.
  auto [moved, mg] = reconnect(router, "alice", resume_target(greeting, 0));
  CHECK(mg["data"]["recovered"] == true);
  expect_close_after_text(*client, 4512);
  CHECK(router.server().stats().connections == 2);
  moved->send_text(R"({"type":"ping","id":"in"})");
  CHECK(next_json(*moved)["reply_to"] == "in");
}

TEST_CASE("a session closed with 4501 (token expired) can be resumed with a fresh token") {
  auto settings = resume_settings();
  settings.jwt_leeway_s = 0;
  settings.resume_window_ms = 5000;
  test_router router{settings};
  auto exp = std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch()).count() + 2;
  auto o = options_for(router);
  o.subprotocols = "router.v1, jwt." + sign_claims({{"sub", "alice"}, {"exp", exp}}, test_secret);
  auto [old, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  auto first = next_json(*old);
  old->send_text(R"({"type":"ping","id":"p"})");
  CHECK(next_json(*old)["event_id"] == 1);
  expect_close(*old, 4501, 5s);
  CHECK(eventually([&] { return router.server().stats().detached == 1; }));
  auto [client, greeting] = reconnect(router, "alice", resume_target(first, 1));
  CHECK(greeting["data"]["recovered"] == true);
  CHECK(greeting["data"]["session_id"] == first["data"]["session_id"]);
}

TEST_CASE("a token accepted within the leeway is not closed at once: it lasts until exp plus "
          "the leeway") {
  test_router router{resume_settings()};
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
  auto o = options_for(router);
  o.subprotocols = "router.v1, jwt." + sign_claims({{"sub", "alice"}, {"exp", now - 5}}, test_secret);
  auto [client, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  CHECK(next_json(*client)["type"] == "connection_established");
  CHECK(client->read(500ms).what == er::client::frame::kind::timeout); // not closed with 4501
  client->send_text(R"({"type":"ping","id":"still"})");
  CHECK(next_json(*client)["reply_to"] == "still");
}

namespace {

/// The opcodes of the server frames in `bytes` (after the HTTP response), in order; -1 last
/// when the bytes end inside a frame.
std::vector<int> frame_opcodes(const std::string& bytes) {
  std::vector<int> out;
  auto at = bytes.find("\r\n\r\n");
  if (at == std::string::npos)
    return out;
  at += 4;
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(bytes[i]); };
  while (at < bytes.size()) {
    if (at + 2 > bytes.size())
      return out.push_back(-1), out;
    std::uint64_t length = byte(at + 1) & 0x7f;
    std::size_t head = 2;
    if (length >= 126) {
      std::size_t n = length == 126 ? 2 : 8;
      if (at + 2 + n > bytes.size())
        return out.push_back(-1), out;
      length = 0;
      for (std::size_t i = 0; i < n; ++i)
        length = length << 8 | byte(at + 2 + i);
      head += n;
    }
    if (at + head + length > bytes.size())
      return out.push_back(-1), out;
    out.push_back(byte(at) & 0x0f);
    at += head + length;
  }
  return out;
}

} // namespace

TEST_CASE("a client close while a run keeps sending is answered, nothing follows the answer, and "
          "the session ends: nothing to resume") {
  auto s = resume_settings();
  s.demo_steps = 1000;
  s.demo_step_delay_ms = 1;
  test_router router{s};
  for (int round = 0; round < 3; ++round) {
    {
      raw_socket c{router.port()};
      c.send(upgrade_request(token_for(router, "alice"))
             + masked_text_frame(R"({"type":"start_agent","id":"long","payload":{"agent":"demo"}})"));
      c.read_until("agent_thinking", 5s);
      c.send(masked_frame(8, std::string{"\x03\xe8", 2})); // close, 1000
      // The client keeps its end open: the run goes on meanwhile. The server answers, sends
      // nothing after its close frame, and ends the TCP connection.
      CHECK(c.read_to_end(5s));
      auto opcodes = frame_opcodes(c.received());
      REQUIRE(!opcodes.empty());
      CHECK(opcodes.back() == 8);
      CHECK(std::count(opcodes.begin(), opcodes.end(), 8) == 1);
      std::this_thread::sleep_for(100ms); // and only then closes its end: the run goes on
    }
    CHECK(eventually([&] { return router.server().stats().connections == 0; }));
    CHECK(router.server().stats().detached == 0);
  }
  CHECK(metric(router, "router_closes_total{code=\"1000\"}") == 3);
}

TEST_CASE("a client that sends its close frame and then keeps the connection open, still sending, "
          "is cut off after the close handshake's time, its close counted as clean") {
  auto s = resume_settings();
  s.handshake_timeout_ms = 400;
  test_router router{s};
  raw_socket c{router.port()};
  c.send(upgrade_request(token_for(router, "alice")));
  c.read_until("connection_established", 5s);
  c.send(masked_frame(8, std::string{"\x03\xe8", 2})); // close, 1000
  // Beast answers and waits for the end of the connection, reading what still comes.
  bool cut = false;
  auto until = std::chrono::steady_clock::now() + 5s;
  while (!cut && std::chrono::steady_clock::now() < until) {
    cut = !c.send(std::string(64, 'x'));
    std::this_thread::sleep_for(50ms);
  }
  CHECK(cut);
  CHECK(eventually([&] { return router.server().stats().connections == 0; }));
  CHECK(router.server().stats().detached == 0);
  CHECK(metric(router, "router_closes_total{code=\"1000\"}") == 1);
}
