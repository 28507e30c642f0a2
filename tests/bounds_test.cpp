// What one user, or many, can make the router hold (DESIGN §8): detached sessions per user,
// replay frames by age, and all replay buffers together, over real connections.

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "app/heap_trimmer.hpp"
#include "tests/support.hpp"

using namespace er::test;

namespace {

er::app::router_settings bounded_settings() {
  auto s = agent_settings();
  s.resume_window_ms = 20000;
  s.resume_buffer_events = 1000;
  s.resume_buffer_bytes = 1 << 20;
  s.messages_per_second = 100000;
  s.messages_burst = 100000;
  return s;
}

std::string resume_target(const json& greeting, std::int64_t last_event_id) {
  return "/ws?resume=" + greeting["data"]["resume_token"].get<std::string>()
         + "&last_event_id=" + std::to_string(last_event_id);
}

/// Reconnects as `user` to `target`; the greeting.
json reconnect(test_router& router, const std::string& user, const std::string& target,
               std::unique_ptr<er::client::ws_client>& client) {
  auto o = options_for(router);
  o.subprotocols = "router.v1, jwt." + token_for(router, user);
  o.target = target;
  auto [c, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  client = std::move(c);
  return next_json(*client);
}

/// Publishes `count` events of `bytes` each to `user` and reads them on `c`.
void fill(test_router& router, connection& c, const std::string& user, int count,
          std::size_t bytes) {
  for (int i = 0; i < count; ++i) {
    REQUIRE(publish(router, publish_body(user, "blob", {{"pad", std::string(bytes, 'p')}})).status == 202);
    CHECK(next_json(*c.client)["type"] == "blob");
  }
}

std::size_t replay_bytes(test_router& router) {
  auto health = er::client::http_request("127.0.0.1", router.port(), "GET", "/healthz");
  return json::parse(health.body)["replay"]["bytes"].get<std::size_t>();
}

} // namespace

TEST_CASE("past router.max-detached-per-user the user's oldest detached session ends: a resume "
          "of it is not recovered, memory stays bounded, other users are untouched") {
  auto settings = bounded_settings();
  settings.max_detached_per_user = 3;
  // Bob's session must wait for its resume to the end: under ThreadSanitizer on a busy host the
  // test has taken over 30 s.
  settings.resume_window_ms = 300000;
  test_router router{settings};
  auto bystander = connect_user(router, "bob");
  bystander.client->reset();
  REQUIRE(eventually([&] { return router.server().stats().detached == 1; }));
  [[maybe_unused]] auto heap_before = heap_in_use_kib(); // unused under sanitizers
  std::vector<json> greetings;
  for (int i = 0; i < 30; ++i) { // the attack: fill a buffer, drop the TCP connection, again
    auto c = connect_user(router, "mallory");
    fill(router, c, "mallory", 2, 400 * 1000);
    greetings.push_back(c.established);
    c.client->reset();
    CHECK(eventually([&] { return router.server().stats().detached <= 4; }));
  }
  // The last session detaches once the router notices its dropped connection: until then the
  // count of detached sessions is already 4, so the evictions are what to wait for.
  CHECK(eventually([&] {
    return metric(router, "router_detached_evictions_total{reason=\"per_user_limit\"}") == 27;
  }));
  CHECK(eventually([&] { return router.server().stats().detached == 4; })); // 3 + bob's
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  // 30 sessions of 800 KB would be 24 MB. The heap in use, not the RSS: glibc's per-thread
  // arenas keep freed blocks of the publishes and reads, which put the RSS 12.06 MB up once.
  CHECK(heap_in_use_kib() - heap_before < 8 * 1024); // 3.5 MB here
#endif
  std::unique_ptr<er::client::ws_client> client;
  CHECK(reconnect(router, "mallory", resume_target(greetings.front(), 0), client)["data"]["recovered"] == false);
  CHECK(reconnect(router, "mallory", resume_target(greetings.back(), 2), client)["data"]["recovered"] == true);
  CHECK(reconnect(router, "bob", resume_target(bystander.established, 0), client)["data"]["recovered"] == true);
}

TEST_CASE("frames older than router.resume-window-ms are not replayed: a resume that needs "
          "them is not recovered, never served with a gap") {
  auto settings = bounded_settings();
  // Long enough for a detach and a resume under ThreadSanitizer on a busy host (700 ms was not).
  settings.resume_window_ms = 2000;
  test_router router{settings};
  auto c = connect_user(router, "alice");
  fill(router, c, "alice", 1, 10); // event 1
  std::this_thread::sleep_for(2200ms);
  fill(router, c, "alice", 1, 10); // event 2: event 1 is older than the window now
  c.client->reset();
  REQUIRE(eventually([&] { return router.server().stats().detached == 1; }));
  // First what must happen within the window: event 2 is replayed to a resume after event 1.
  std::unique_ptr<er::client::ws_client> client;
  auto resumed = reconnect(router, "alice", resume_target(c.established, 1), client);
  CHECK(resumed["data"]["recovered"] == true);
  CHECK(next_json(*client)["event_id"] == 2);
  // Detached again, the session is there for a whole window: a resume that needs event 1 is
  // refused for its age, and nothing is replayed.
  client->reset();
  REQUIRE(eventually([&] { return router.server().stats().detached == 1; }));
  auto refused = reconnect(router, "alice", resume_target(resumed, 0), client);
  CHECK(refused["data"]["recovered"] == false);
  CHECK(client->read(200ms).what == er::client::frame::kind::timeout); // nothing replayed
}

TEST_CASE("past router.replay-budget-bytes detached sessions end oldest first, then connected "
          "sessions' buffers drop their oldest frames, the total comes back under the budget") {
  auto settings = bounded_settings();
  settings.replay_budget_bytes = 3 << 20; // 3 MiB for the whole process
  test_router router{settings};
  std::vector<json> detached;
  for (int u = 0; u < 3; ++u) { // three users leave ~800 KB each behind
    auto user = "d" + std::to_string(u);
    auto c = connect_user(router, user);
    fill(router, c, user, 2, 400 * 1000);
    detached.push_back(c.established);
    c.client->reset();
  }
  REQUIRE(eventually([&] { return router.server().stats().detached == 3; }));
  auto live = connect_user(router, "live");
  fill(router, live, "live", 4, 200 * 1000); // 800 KB more: over 3 MiB
  CHECK(eventually([&] { return router.server().stats().detached < 3; }));
  CHECK(eventually([&] { return replay_bytes(router) <= static_cast<std::size_t>(settings.replay_budget_bytes); }));
  CHECK(metric(router, "router_detached_evictions_total{reason=\"replay_budget\"}") >= 1);
  std::unique_ptr<er::client::ws_client> client;
  // The oldest went first.
  CHECK(reconnect(router, "d0", resume_target(detached[0], 2), client)["data"]["recovered"] == false);
  SUBCASE("no detached session left: the connected buffers are capped") {
    std::vector<connection> others; // four connected sessions of 1 MiB each: over 3 MiB
    for (int u = 2; u <= 4; ++u)
      others.push_back(connect_user(router, "live" + std::to_string(u)));
    fill(router, live, "live", 4, 300 * 1000);
    for (int u = 2; u <= 4; ++u)
      fill(router, others[static_cast<std::size_t>(u - 2)], "live" + std::to_string(u), 4, 300 * 1000);
    CHECK(eventually([&] { return replay_bytes(router) <= static_cast<std::size_t>(settings.replay_budget_bytes); }));
    CHECK(metric(router, "router_replay_caps_total") >= 1);
    // live's oldest frames are gone: a resume from the start is refused, a recent one is not.
    live.client->reset();
    REQUIRE(eventually([&] { return router.server().stats().detached >= 1; }));
    CHECK(reconnect(router, "live", resume_target(live.established, 0), client)["data"]["recovered"] == false);
  }
}

TEST_CASE("a replay budget too small for what its connected sessions keep is met all the same "
          "(their buffers capped down to nothing), and the router stops trimming") {
  auto settings = bounded_settings();
  settings.replay_budget_bytes = 64 * 1024;
  test_router router{settings};
  // Eight connections, each keeping more than its share of 64 KiB in frames of 3 KB: every
  // buffer is busy (its chunks hold some of the last frames, whatever the cap).
  std::vector<connection> clients;
  for (int u = 0; u < 8; ++u) {
    auto user = "busy" + std::to_string(u);
    clients.push_back(connect_user(router, user));
    fill(router, clients.back(), user, 12, 3000);
  }
  CHECK(eventually([&] {
    return replay_bytes(router) <= static_cast<std::size_t>(settings.replay_budget_bytes);
  }, 10s));
  CHECK(metric(router, "router_replay_caps_total") >= 1);
  // Met: the rounds have ended (each round counts a cap).
  auto caps = metric(router, "router_replay_caps_total");
  std::this_thread::sleep_for(500ms);
  CHECK(metric(router, "router_replay_caps_total") == caps);
  // The connections go on (replay lost, never the live stream).
  for (int u = 0; u < 8; ++u)
    fill(router, clients[static_cast<std::size_t>(u)], "busy" + std::to_string(u), 1, 3000);
}

TEST_CASE("the trimmer asks for a trim only when idle memory passes both the threshold and the "
          "heap in use") {
  using er::app::heap_trimmer;
  constexpr std::size_t mib = 1 << 20;
  CHECK(heap_trimmer::worth_trimming(200 * mib, 1 * mib, 64 * mib));
  CHECK_FALSE(heap_trimmer::worth_trimming(50 * mib, 1 * mib, 64 * mib));    // under the threshold
  CHECK_FALSE(heap_trimmer::worth_trimming(200 * mib, 120 * mib, 16 * mib)); // a busy heap's slack
  CHECK_FALSE(heap_trimmer::worth_trimming(10 * mib, 20 * mib, 0));          // RSS under the heap
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) // their allocators are not glibc's
TEST_CASE("heap freed after a burst goes back to the system, though a live block sits above it") {
  auto settings = test_settings();
  settings.heap_trim_interval_ms = 100;
  settings.heap_trim_threshold_bytes = 16 << 20;
  test_router router{settings};
  // 96 MiB in small blocks (no mmap), then one block above them that stays: glibc frees only the
  // top of an arena by itself, so what is below stays resident until a trim.
  std::vector<std::unique_ptr<char[]>> burst;
  for (int i = 0; i < 96 * 1024; ++i) {
    burst.emplace_back(new char[1000]);
    std::fill_n(burst.back().get(), 1000, 'x');
  }
  auto pin = std::make_unique<char[]>(1000);
  auto peak = rss_kib();
  burst.clear();
  CHECK(eventually([&] { return rss_kib() < peak - 64 * 1024; }, 10s));
  // Counted once malloc_trim returns; the RSS falls while it runs.
  CHECK(eventually([&] { return metric(router, "router_heap_trims_total") >= 1; }, 5s));
  pin.reset();
}
#endif
