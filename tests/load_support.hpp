#pragma once
// Helpers shared by the router-load tests (tests/load_test.cpp, tests/load_publish_test.cpp).

#include <doctest/doctest.h>

#include <caf/actor_system_config.hpp>

#include "load/load_client.hpp"
#include "tests/support.hpp"

namespace er::test {

using steady = std::chrono::steady_clock;
using er::load::frame_checker;
using er::load::frame_verdict;
using er::load::load_options;
using er::load::load_report;
using er::load::scenario;

/// A router that does not rate-limit the load (the limits are not what these tests measure).
inline er::app::router_settings load_settings() {
  auto s = agent_settings();
  s.messages_per_second = 1000000;
  s.messages_burst = 1000000;
  return s;
}

inline load_options options_against(test_router& router, scenario kind) {
  load_options o;
  o.kind = kind;
  o.port = router.port();
  o.jwt = router.jwt();
  o.connections = 12;
  o.users = 4;
  o.sources = 2;
  o.duration = 800ms;
  o.drain_timeout = 3s;
  o.demo_steps = static_cast<int>(router.server().settings().demo_steps);
  o.max_runs = 5;
  return o;
}

inline load_report run(const load_options& o) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  return er::load::run_load(o, cfg);
}

inline void check_clean(const load_report& r) {
  auto j = r.to_json();
  INFO(r.summary());
  CHECK(j["verdict"] == "pass");
  CHECK(j["leaks"] == 0);
  CHECK(j["missing_events"] == 0);
  CHECK(j["errors"].empty());
  CHECK(j["failures"].empty());
  CHECK(er::load::exit_status(r) == 0);
}

inline std::string frame(const json& j) {
  return j.dump();
}

inline json envelope(const std::string& type, std::int64_t event_id, const std::string& user) {
  return json{{"type", type},       {"event_id", event_id}, {"user_id", user},
              {"thread_id", nullptr}, {"run_id", nullptr},  {"reply_to", nullptr},
              {"timestamp", "2026-01-01T00:00:00.000Z"},    {"data", json::object()}};
}

/// A checker for `user` that has seen its greeting.
inline frame_checker greeted_checker(const std::string& user, const std::string& prefix = "c0.0.") {
  frame_checker checker{user, prefix, 3};
  auto greeting = checker.check(frame(envelope("connection_established", 0, user)), steady::now());
  REQUIRE(greeting.verdict == frame_verdict::greeting);
  return checker;
}

inline std::string request_id(const std::string& request_frame) {
  return json::parse(request_frame)["id"].get<std::string>();
}

} // namespace er::test
