// router-load: each scenario briefly against a real router over loopback, the
// report's sanity, and the checks that turn a leaking router into a failed run.

#include "tests/load_support.hpp"

#include <algorithm>
#include <array>

using namespace er::test;

TEST_CASE("router-load ping against a real router establishes every connection, counts every "
          "round trip and finds no leak, no missing event and no error") {
  test_router router{load_settings()};
  auto actors_before = router.server().running_actors();
  auto o = options_against(router, scenario::ping);
  o.inflight = 4;
  auto r = run(o);
  check_clean(r);
  auto j = r.to_json();
  CHECK(j["connections"]["established"] == 12);
  CHECK(j["connections"]["peak_open"] == 12);
  CHECK(j["messages"]["round_trips"].get<std::uint64_t>() > 0);
  CHECK(j["messages"]["round_trips_in_window"].get<std::uint64_t>() > 0);
  // every ping sent got its pong, and every frame was a greeting or a pong
  CHECK(j["messages"]["sent"] == j["messages"]["round_trips"]);
  CHECK(j["messages"]["received"].get<std::uint64_t>() == r.totals.sent + 12);
  CHECK(j["latency_us"]["count"] == j["messages"]["round_trips"]);
  CHECK(j["throughput_per_s"].get<double>() > 0);
  CHECK(back_to_baseline(router, actors_before));
}

TEST_CASE("router-load agents runs demo agents for several users and checks every event of "
          "every run: all complete in order, none is missing, none reaches another connection") {
  test_router router{load_settings()};
  auto o = options_against(router, scenario::agents);
  o.agent_rate = 20;
  auto r = run(o);
  check_clean(r);
  // 3 thinking steps: agent_started + 3 + tool_executing + tool_completed + agent_completed
  CHECK(r.totals.completed > 12);
  CHECK(r.totals.completed == r.totals.sent);
  CHECK(r.totals.received == 12 + r.totals.completed * 7);
  CHECK(r.latency.count() == r.totals.completed);
}

TEST_CASE("router-load churn connects and disconnects over and over and leaves no connection "
          "behind in the router") {
  test_router router{load_settings()};
  auto actors_before = router.server().running_actors();
  auto o = options_against(router, scenario::churn);
  o.connections = 6;
  o.users = 6; // a reset connection may count for its user until the router notices it
  auto r = run(o);
  check_clean(r);
  CHECK(r.totals.completed > 6); // cycles: every client went round more than once
  CHECK(r.totals.established == r.totals.completed);
  CHECK(r.to_json()["connections"]["connect_rate_per_s"].get<double>() > 0);
  CHECK(back_to_baseline(router, actors_before));
}

TEST_CASE("router-load idle holds every connection open for the duration, then closes them "
          "all cleanly") {
  test_router router{load_settings()};
  auto o = options_against(router, scenario::idle);
  o.connections = 60;
  o.users = 15;
  o.connect_window = 16;
  auto r = run(o);
  check_clean(r);
  CHECK(r.totals.established == 60);
  CHECK(r.peak_open == 60);
  CHECK(r.totals.sent == 0);
  CHECK(eventually([&] { return router.server().stats().connections == 0; }));
}

TEST_CASE("a router that refuses the token fails the run: connections not established are "
          "errors, not silence") {
  test_router router{load_settings()};
  auto o = options_against(router, scenario::ping);
  o.connections = 3;
  o.jwt.secret = "not-the-router-secret";
  auto r = run(o);
  CHECK(er::load::exit_status(r) == 1);
  CHECK(r.totals.established == 0);
  CHECK(r.totals.errors.at("upgrade_refused:http_401") == 3);
}

// -- the checker alone: what a leaking or broken router would send -------------------

TEST_CASE("the envelope reader validates the whole frame and takes the checked fields") {
  using er::load::envelope_fields;
  auto e = envelope_fields::read(
    R"({"data":{"code":"not_found","user":"u-1","seq":42,"nested":{"code":"inner"}},)"
    R"("event_id":7,"reply_to":"c1.0.r3","run_id":"r-1","thread_id":null,)"
    R"("timestamp":"2026-11-26T04:00:00.000Z","type":"agent_thinking","user_id":"u-1"})");
  REQUIRE(e.valid);
  CHECK(e.user_id == std::optional<std::string>{"u-1"});
  CHECK(e.type == "agent_thinking");
  CHECK(e.event_id == 7);
  CHECK(e.run_id == std::optional<std::string>{"r-1"});
  CHECK(e.reply_to == std::optional<std::string>{"c1.0.r3"});
  CHECK(e.data_is_object);
  CHECK(e.data_code == std::optional<std::string>{"not_found"}); // not the nested one
  CHECK(e.data_user == std::optional<std::string>{"u-1"});
  CHECK(e.data_seq == std::optional<std::uint64_t>{42});

  // Absent, null and mistyped fields.
  auto bare = envelope_fields::read(R"({"type":"pong","reply_to":null,"run_id":5,"data":[1]})");
  REQUIRE(bare.valid);
  CHECK_FALSE(bare.user_id);
  CHECK(bare.event_id == -1);
  CHECK_FALSE(bare.reply_to);
  CHECK_FALSE(bare.run_id);
  CHECK_FALSE(bare.data_is_object);
  // A reply_to that is not a string can match no request id.
  CHECK(envelope_fields::read(R"({"reply_to":{"id":"c1.0.p1"}})").reply_to == std::optional<std::string>{""});
  // Only JSON objects are envelopes.
  CHECK_FALSE(envelope_fields::read("[1,2]").valid);
  CHECK_FALSE(envelope_fields::read("\"text\"").valid);
  CHECK_FALSE(envelope_fields::read(R"({"type":"pong")").valid);
  CHECK_FALSE(envelope_fields::read("").valid);
  CHECK_FALSE(envelope_fields::read(R"({"type":"pong"} trailing)").valid);
  // The whole frame is validated, also the parts no check reads: a broken number, a bad
  // escape or invalid UTF-8 deep inside data makes it no envelope.
  CHECK_FALSE(envelope_fields::read(R"({"data":{"x":[1,2.]},"type":"pong"})").valid);
  CHECK_FALSE(envelope_fields::read(R"({"data":{"x":"\q"},"type":"pong"})").valid);
  CHECK_FALSE(envelope_fields::read("{\"data\":{\"x\":\"\xff\"},\"type\":\"pong\"}").valid);
  CHECK(envelope_fields::read(R"({"data":{"x":"\u00e9"},"type":"pong"})").valid);
  // An event_id past int64 is no event id.
  CHECK(envelope_fields::read(R"({"event_id":18446744073709551615})").event_id == -1);
  CHECK(envelope_fields::read(R"({"data":{"seq":-3}})").data_seq == std::nullopt);
}

TEST_CASE("a frame stamped with another user's user_id is a leak, and any leak fails the "
          "verdict and the exit status") {
  auto checker = greeted_checker("alice");
  auto ping = checker.ping(steady::now());
  auto pong = envelope("pong", 1, "bob");
  pong["reply_to"] = request_id(ping);
  auto outcome = checker.check(frame(pong), steady::now());
  CHECK(outcome.verdict == frame_verdict::leak);
  CHECK(outcome.kind == "wrong_user");

  load_report r;
  r.scenario = "ping";
  r.target_connections = 1;
  r.totals.established = 1;
  r.totals.completed = 10;
  r.totals.tally(outcome);
  CHECK(r.totals.leaks == 1);
  CHECK(er::load::exit_status(r) == 1);
  CHECK(r.to_json()["verdict"] == "fail");
  CHECK(r.to_json()["leak_kinds"]["wrong_user"] == 1);
}

TEST_CASE("a pong answering a ping of another connection of the same user is a leak") {
  auto mine = greeted_checker("alice", "c1.0.");
  auto other = greeted_checker("alice", "c2.0.");
  mine.ping(steady::now());
  auto pong = envelope("pong", 1, "alice");
  pong["reply_to"] = request_id(other.ping(steady::now()));
  auto outcome = mine.check(frame(pong), steady::now());
  CHECK(outcome.verdict == frame_verdict::leak);
  CHECK(outcome.kind == "foreign_reply");
  CHECK(mine.pending_pings() == 1);
}

TEST_CASE("pongs answered in order complete their pings with a round trip, and out of order they "
          "are an error") {
  auto checker = greeted_checker("alice");
  auto first = request_id(checker.ping(steady::now()));
  auto second = request_id(checker.ping(steady::now()));
  auto pong = envelope("pong", 1, "alice");
  pong["reply_to"] = second;
  CHECK(checker.check(frame(pong), steady::now()).kind == "pong_out_of_order");
  pong["event_id"] = 2;
  pong["reply_to"] = first;
  auto outcome = checker.check(frame(pong), steady::now());
  CHECK(outcome.verdict == frame_verdict::completed);
  CHECK(checker.owed_events() == 0);
}

TEST_CASE("a demo run's events are checked for order and owner: a foreign run is a leak, a "
          "skipped step is an error, a gap in event_id counts as missing events") {
  auto checker = greeted_checker("alice");
  auto start = request_id(checker.start_demo_run(steady::now()));
  CHECK(checker.owed_events() == 7);
  auto event = [&](const std::string& type, std::int64_t id, const std::string& run) {
    auto e = envelope(type, id, "alice");
    e["run_id"] = run;
    e["reply_to"] = start;
    return checker.check(frame(e), steady::now());
  };
  CHECK(event("agent_started", 1, "r-1").verdict == frame_verdict::progress);
  CHECK(event("agent_thinking", 2, "r-1").verdict == frame_verdict::progress);
  CHECK(event("agent_thinking", 3, "r-someone-else").verdict == frame_verdict::leak);
  auto skipped = event("tool_executing", 4, "r-1"); // two thinking steps missing
  CHECK(skipped.verdict == frame_verdict::unexpected);
  CHECK(skipped.kind == "out_of_order:tool_executing");
  auto gap = event("tool_completed", 7, "r-1"); // event ids 5 and 6 never came
  CHECK(gap.skipped_events == 2);
  CHECK(event("agent_completed", 8, "r-1").verdict == frame_verdict::progress); // not in order
  CHECK(checker.pending_runs() == 0);
  CHECK(event("agent_thinking", 9, "r-1").kind == "event_after_final:agent_thinking");
}

TEST_CASE("a run in order completes with its round trip, and a run cut short leaves its remaining "
          "events owed") {
  auto checker = greeted_checker("alice");
  auto start = request_id(checker.start_demo_run(steady::now()));
  std::int64_t id = 1;
  auto event = [&](const std::string& type) {
    auto e = envelope(type, id++, "alice");
    e["run_id"] = "r-1";
    e["reply_to"] = start;
    return checker.check(frame(e), steady::now());
  };
  for (auto type : {"agent_started", "agent_thinking", "agent_thinking", "agent_thinking",
                    "tool_executing", "tool_completed"})
    CHECK(event(type).verdict == frame_verdict::progress);
  CHECK(event("agent_completed").verdict == frame_verdict::completed);

  auto cut = request_id(checker.start_demo_run(steady::now()));
  auto e = envelope("agent_started", id++, "alice");
  e["run_id"] = "r-2";
  e["reply_to"] = cut;
  CHECK(checker.check(frame(e), steady::now()).verdict == frame_verdict::progress);
  CHECK(checker.owed_events() == 6);
}

TEST_CASE("a connection remembers its last 64 finished runs, not all of them: a late event of one "
          "of those is an event after the final one, of an older run a foreign run") {
  auto checker = greeted_checker("alice");
  std::int64_t id = 1;
  auto event = [&](const std::string& type, const std::string& run, const std::string& start) {
    auto e = envelope(type, id++, "alice");
    e["run_id"] = run;
    e["reply_to"] = start;
    return checker.check(frame(e), steady::now());
  };
  constexpr int runs = 100; // more than it keeps: memory stays flat over a long load run
  std::vector<std::string> starts;
  for (int r = 0; r < runs; ++r) {
    auto start = request_id(checker.start_demo_run(steady::now()));
    starts.push_back(start);
    auto run = "r-" + std::to_string(r);
    for (auto type : {"agent_started", "agent_thinking", "agent_thinking", "agent_thinking",
                      "tool_executing", "tool_completed"})
      REQUIRE(event(type, run, start).verdict == frame_verdict::progress);
    REQUIRE(event("agent_completed", run, start).verdict == frame_verdict::completed);
  }
  CHECK(checker.pending_runs() == 0);
  // The last 64 runs (36 to 99) are remembered, the older ones are not.
  CHECK(event("agent_thinking", "r-99", starts[99]).kind == "event_after_final:agent_thinking");
  CHECK(event("agent_thinking", "r-36", starts[36]).kind == "event_after_final:agent_thinking");
  auto forgotten = event("agent_thinking", "r-35", starts[35]);
  CHECK(forgotten.verdict == frame_verdict::leak);
  CHECK(forgotten.kind == "foreign_run");
}

TEST_CASE("agents: the connections' first runs are spread over the whole interval, not in step") {
  // A thousand connections, as in the 1,000-user benchmark: each tenth of the interval gets
  // about a tenth of the first starts (a generator seeded with the bare index put them all
  // into the first 2%, and every run of the benchmark into the same burst).
  constexpr std::size_t connections = 1000;
  const std::chrono::microseconds interval{138888};
  std::array<std::size_t, 10> per_tenth{};
  for (std::size_t i = 0; i < connections; ++i) {
    auto offset = er::load::first_start_offset(i, interval);
    REQUIRE(offset.count() >= 0);
    REQUIRE(offset <= interval);
    ++per_tenth[std::min<std::size_t>(9, static_cast<std::size_t>(offset * 10 / interval))];
  }
  for (auto n : per_tenth) {
    CHECK(n >= connections / 20);
    CHECK(n <= connections * 3 / 20);
  }
  // Deterministic: the same connection starts at the same offset in every run.
  CHECK(er::load::first_start_offset(7, interval) == er::load::first_start_offset(7, interval));
}

TEST_CASE("latency percentiles are within the histogram's precision") {
  er::load::latency_histogram h;
  for (std::uint64_t v = 1; v <= 10000; ++v)
    h.record(v);
  CHECK(h.count() == 10000);
  CHECK(h.max() == 10000);
  CHECK(h.percentile(0.5) >= 5000);
  CHECK(h.percentile(0.5) <= 5000 * 1.02);
  CHECK(h.percentile(0.99) >= 9900);
  CHECK(h.percentile(0.99) <= 9900 * 1.02);
  CHECK(h.percentile(1.0) == 10000);
  CHECK(h.mean() == doctest::Approx(5000.5));
}

TEST_CASE("the router-load binary mints tokens from the router's configuration, prints a "
          "passing JSON report and exits 0, and a bad option exits 2") {
  test_router router{load_settings()};
  child_process load{{ER_ROUTER_LOAD_BINARY, "--scenario=ping", "--connections=8",
                      "--duration=0.5", "--quiet", "--json", "--config-file=/dev/null",
                      "--router.jwt-secret=" + std::string{test_secret},
                      "--port=" + std::to_string(router.port())}};
  std::string out;
  for (auto line = load.read_line(20s); !line.empty(); line = load.read_line(20s))
    out += line + "\n";
  CHECK(load.wait(20s) == 0);
  auto report = json::parse(out);
  CHECK(report["verdict"] == "pass");
  CHECK(report["connections"]["established"] == 8);
  CHECK(report["options"]["users"] == 2);

  child_process bad{{ER_ROUTER_LOAD_BINARY, "--scenario=nope", "--config-file=/dev/null"}};
  CHECK(bad.wait(10s) == 2);
  CHECK(bad.read_all_stderr(2s).find("unknown scenario") != std::string::npos);
  // "inf" (which from_chars reads) overflowed into a negative duration, and 0.0001 s into an
  // empty window: both ran nothing and still reported pass.
  for (std::string d : {"inf", "0.0001", "nan", "1e300"}) {
    CAPTURE(d);
    child_process odd{{ER_ROUTER_LOAD_BINARY, "--scenario=ping", "--duration=" + d,
                       "--config-file=/dev/null", "--port=" + std::to_string(router.port())}};
    CHECK(odd.wait(10s) == 2);
    CHECK(odd.read_all_stderr(2s).find("--duration") != std::string::npos);
  }
}
