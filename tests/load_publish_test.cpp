// router-load's publish scenario: against a real router over loopback, the checker's
// accounting of published events, the publish report, and the binary.

#include "tests/load_support.hpp"

using namespace er::test;

TEST_CASE("router-load publish: every event published through the HTTP API reaches every "
          "connection of its user exactly once, none reaches another user, none is missing") {
  test_router router{load_settings()};
  auto actors_before = router.server().running_actors();
  auto o = options_against(router, scenario::publish);
  o.api_key = "test-api-key"; // test_router's router.api-key
  o.publish_rate = 300;
  o.publish_connections = 2;
  auto r = run(o);
  check_clean(r);
  auto& t = r.totals;
  CHECK(t.publishes > 0);
  CHECK(t.sent == t.publishes); // every publish was accepted
  CHECK(t.completed > 0);       // deliveries
  // 12 connections over 4 users: the router answers 3 per publish, and each arrives 3 times
  CHECK(t.publish_expected == 3 * t.publishes);
  CHECK(t.publish_delivered == t.publish_expected);
  CHECK(t.completed == t.publish_delivered);
  CHECK(t.received == 12 + t.completed); // greetings and published events, nothing else
  CHECK(r.latency.count() == t.completed);
  auto j = r.to_json();
  CHECK(j["publish"]["published"] == t.publishes);
  CHECK(j["publish"]["delivered_sum"] == t.publish_delivered);
  CHECK(j["publish"]["publishes_per_s"].get<double>() > 0);
  CHECK(j["publish"]["deliveries_per_s"].get<double>() > 0);
  CHECK(r.summary().find("deliveries") != std::string::npos);
  CHECK(back_to_baseline(router, actors_before));
}

TEST_CASE("router-load publish with a wrong API key fails the run with the refusals counted, and "
          "the refused events are not awaited as missing") {
  test_router router{load_settings()};
  auto o = options_against(router, scenario::publish);
  o.connections = 4;
  o.users = 2;
  o.duration = 300ms;
  o.api_key = "not-the-key";
  o.publish_rate = 50;
  auto r = run(o);
  INFO(r.summary());
  CHECK(er::load::exit_status(r) == 1);
  CHECK(r.totals.publishes == 0);
  CHECK(r.totals.errors.at("publish_refused:http_401") == r.totals.sent);
  CHECK(r.totals.missing == 0);
  CHECK(r.totals.leaks == 0);
}

TEST_CASE("a connection remembers its last 64 publishes done with, not all of them: a repeat of "
          "one of those is a duplicate, of an older one unannounced") {
  auto checker = greeted_checker("alice");
  auto t0 = steady::now();
  std::int64_t id = 1;
  auto published = [&](std::uint64_t seq) {
    auto e = envelope(er::load::publish_event_type, id++, "alice");
    e["data"] = json{{"seq", seq}, {"user", "alice"}};
    return checker.check(frame(e), t0 + 1ms);
  };
  for (std::uint64_t seq = 1; seq <= 100; ++seq) {
    checker.expect_publish(seq, t0);
    REQUIRE(published(seq).verdict == frame_verdict::completed);
  }
  CHECK(checker.publishes_received() == 100);
  CHECK(checker.owed_events() == 0);
  // 37 to 100 are remembered, the older ones are not.
  CHECK(published(100).kind == "duplicate_publish");
  CHECK(published(37).kind == "duplicate_publish");
  CHECK(published(36).kind == "unannounced_publish");
}

TEST_CASE("published events are owed to each connection of their user exactly once: the checker "
          "counts what it expected and what it got, and tells leaks, duplicates, unannounced and "
          "taken-back events apart") {
  auto checker = greeted_checker("alice");
  auto t0 = steady::now();
  for (std::uint64_t seq : {7, 8, 9, 7}) // 7 announced twice: still owed once
    checker.expect_publish(seq, t0);
  CHECK(checker.publishes_expected() == 3);
  CHECK(checker.owed_events() == 3);
  auto published = [&](const std::string& stamped, std::int64_t id, std::uint64_t seq,
                       const std::string& target) {
    auto e = envelope(er::load::publish_event_type, id, stamped);
    e["data"] = json{{"seq", seq}, {"user", target}};
    return checker.check(frame(e), t0 + 3ms);
  };
  auto got = published("alice", 1, 7, "alice");
  CHECK(got.verdict == frame_verdict::completed);
  CHECK(got.round_trip == std::chrono::microseconds{3000}); // publish -> receipt
  CHECK(published("alice", 2, 7, "alice").kind == "duplicate_publish");
  auto foreign = published("alice", 3, 42, "bob"); // bob's event stamped with alice's id
  CHECK(foreign.verdict == frame_verdict::leak);
  CHECK(foreign.kind == "foreign_publish");
  CHECK(published("bob", 4, 8, "alice").kind == "wrong_user"); // 8 is still owed
  CHECK(published("alice", 4, 43, "alice").kind == "unannounced_publish");
  CHECK(checker.cancel_publish(9)); // its publish failed
  CHECK_FALSE(checker.cancel_publish(9));
  CHECK_FALSE(checker.cancel_publish(7)); // already received
  CHECK(published("alice", 5, 9, "alice").kind == "publish_after_failure");
  CHECK(checker.publishes_received() == 1);
  CHECK(checker.pending_publishes() == 1);
  CHECK(checker.owed_events() == 1); // 8: missing if the drain ends now

  er::load::load_counters c;
  for (auto& o : {got, foreign})
    c.tally(o);
  CHECK(c.received == 2);
  CHECK(c.leaks == 1);
  CHECK(c.leak_kinds.at("foreign_publish") == 1);
  auto gap = published("alice", 8, 8, "alice"); // event ids 6 and 7 never came
  CHECK(gap.verdict == frame_verdict::completed);
  CHECK(gap.skipped_events == 2);
  CHECK(checker.owed_events() == 0);
}

TEST_CASE("a publish report shows publishes/s, deliveries/s and the delivered sum, and fails when "
          "the router accepted no publish") {
  load_report r;
  r.scenario = "publish";
  r.target_connections = 4;
  r.window_seconds = 2;
  r.totals.established = 4;
  r.totals.publishes = 100;
  r.totals.publish_delivered = 200;
  r.totals.publish_expected = 200;
  r.totals.completed = 200;
  r.totals.completed_in_window = 180;
  auto j = r.to_json();
  CHECK(j["verdict"] == "pass");
  CHECK(j["publish"]["publishes_per_s"] == 50.0);
  CHECK(j["publish"]["deliveries_per_s"] == 90.0);
  CHECK(j["publish"]["delivered_sum"] == 200);
  CHECK(j["throughput_per_s"] == 90.0);
  r.totals.publishes = 0;
  CHECK(er::load::exit_status(r) == 1);
}

TEST_CASE("the router-load binary runs the publish scenario with the router's API key from "
          "--api-key and reports publishes and deliveries") {
  test_router router{load_settings()};
  child_process load{{ER_ROUTER_LOAD_BINARY, "--scenario=publish", "--connections=8",
                      "--duration=0.5", "--publish-rate=100", "--quiet", "--json",
                      "--config-file=/dev/null", "--api-key=test-api-key",
                      "--router.jwt-secret=" + std::string{test_secret},
                      "--port=" + std::to_string(router.port())}};
  std::string out;
  for (auto line = load.read_line(20s); !line.empty(); line = load.read_line(20s))
    out += line + "\n";
  CHECK(load.wait(20s) == 0);
  auto report = json::parse(out);
  CHECK(report["verdict"] == "pass");
  CHECK(report["publish"]["published"].get<std::uint64_t>() > 0);
  CHECK(report["publish"]["deliveries"] == report["publish"]["delivered_sum"]);
  CHECK(report["leaks"] == 0);
  CHECK(report["missing_events"] == 0);
}
