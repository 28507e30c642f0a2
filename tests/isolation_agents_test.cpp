// The isolation suite (DESIGN §9): many users running agents concurrently, cross-user
// attempts, races, disconnects and churn. Real router, real loopback connections.

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include <doctest/doctest.h>

#include "tests/support.hpp"

using namespace er::test;

namespace {

const std::vector<std::string> demo_sequence{"agent_started",  "agent_thinking", "agent_thinking",
                                             "agent_thinking", "tool_executing", "tool_completed",
                                             "agent_completed"};

json stop(const json& run_id, const std::string& id) {
  return {{"type", "stop_agent"}, {"id", id}, {"payload", {{"run_id", run_id}}}};
}

/// What one connection saw, checked against what it asked for.
struct connection_audit {
  std::string user;
  std::set<std::string> request_ids;
  std::map<std::string, std::vector<std::string>> runs; ///< run_id -> event types in order
  std::set<std::string> threads;                        ///< thread ids its runs were given
  int foreign = 0;  ///< frames of another user, or naming a run/thread it did not start
  std::string failure;

  void see(const json& f) {
    if (f["user_id"] != user)
      ++foreign;
    auto type = f["type"].get<std::string>();
    if (type == "agent_started") {
      if (!f["reply_to"].is_string() || request_ids.count(f["reply_to"]) == 0)
        ++foreign;
      if (f["thread_id"].is_string())
        threads.insert(f["thread_id"].get<std::string>());
    }
    if (f["run_id"].is_string()) {
      auto& events = runs[f["run_id"].get<std::string>()];
      if (events.empty() && type != "agent_started")
        ++foreign; // a run this connection never saw start
      events.push_back(type);
    }
    if (f["thread_id"].is_string() && threads.count(f["thread_id"].get<std::string>()) == 0)
      ++foreign;
  }
};

} // namespace

TEST_CASE("100 users with 2 connections each running 5 demo agents concurrently see only "
          "their own frames, and every run's full sequence in order, exactly once") {
  constexpr int users = 100, per_user = 2, runs_per_connection = 5, workers = 20;
  auto settings = agent_settings();
  settings.demo_step_delay_ms = 20;
  test_router router{settings};
  auto baseline = router.server().running_actors();
  std::vector<connection_audit> audits(users * per_user);
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      std::vector<std::unique_ptr<er::client::ws_client>> clients;
      std::vector<connection_audit*> mine;
      try {
        for (size_t i = static_cast<size_t>(w); i < audits.size(); i += workers) {
          auto& a = audits[i];
          a.user = "user-" + std::to_string(i / per_user);
          auto o = options_for(router);
          o.subprotocols = "router.v1, jwt." + token_for(router, a.user);
          o.bind_address = "127.0.0." + std::to_string(2 + i % 8);
          o.timeout = 20s;
          auto [client, h] = er::client::ws_client::connect(o);
          if (!h.upgraded)
            throw std::runtime_error("refused");
          client->read(10s); // greeting
          for (int r = 0; r < runs_per_connection; ++r) {
            auto id = "req-" + std::to_string(i) + "-" + std::to_string(r);
            a.request_ids.insert(id);
            // Two of the five run on a fresh thread through user_message.
            json msg = r < 3 ? json{{"type", "start_agent"}, {"id", id}, {"payload", {{"agent", "demo"}, {"input", id}}}}
                             : json{{"type", "user_message"}, {"id", id}, {"payload", {{"text", id}}}};
            client->send_text(msg.dump());
          }
          clients.push_back(std::move(client));
          mine.push_back(&a);
        }
        // Read every connection until each of its runs ended.
        auto deadline = std::chrono::steady_clock::now() + 60s;
        for (size_t k = 0; k < clients.size(); ++k) {
          auto& a = *mine[k];
          auto finished = [&] {
            int n = 0;
            for (auto& [run, events] : a.runs)
              n += !events.empty() && (events.back() == "agent_completed" || events.back() == "agent_error");
            return n;
          };
          while (finished() < runs_per_connection) {
            if (std::chrono::steady_clock::now() > deadline)
              throw std::runtime_error("runs did not finish");
            auto f = clients[k]->read(10s);
            if (f.what != er::client::frame::kind::text)
              throw std::runtime_error("connection ended early");
            a.see(json::parse(f.data));
          }
        }
        for (size_t k = 0; k < clients.size(); ++k) {
          if (clients[k]->read(50ms).what != er::client::frame::kind::timeout)
            ++mine[k]->foreign; // nothing may follow the last final event
          clients[k]->close();
        }
      } catch (const std::exception& e) {
        for (auto* a : mine)
          a->failure = e.what();
      }
    });
  }
  for (auto& t : threads)
    t.join();
  for (auto& a : audits) {
    INFO(a.user << ": " << a.failure);
    CHECK(a.failure.empty());
    CHECK(a.foreign == 0);
    CHECK(a.runs.size() == runs_per_connection);
    CHECK(a.threads.size() == 2);
    for (auto& [run, events] : a.runs)
      CHECK(events == demo_sequence);
  }
  CHECK(back_to_baseline(router, baseline));
}

TEST_CASE("another user's run and thread ids answer exactly like made-up ids, and the owner's "
          "run carries on unaffected") {
  auto settings = agent_settings();
  settings.demo_step_delay_ms = 60;
  test_router router{settings};
  auto alice = connect_user(router, "alice");
  auto bob = connect_user(router, "bob");
  alice.client->send_text(json{{"type", "user_message"}, {"id", "a1"}, {"payload", {{"text", "secret plans"}}}}.dump());
  auto started = next_json(*alice.client);
  REQUIRE(started["type"] == "agent_started");
  auto run_id = started["run_id"];
  auto thread_id = started["thread_id"];
  auto made_up_run = "r-" + std::string(32, '0');
  auto made_up_thread = "t-" + std::string(32, '0');
  auto answer = [&](const json& msg) {
    bob.client->send_text(msg.dump());
    auto reply = next_json(*bob.client);
    reply.erase("event_id");
    reply.erase("timestamp");
    return reply;
  };
  auto same = [&](const json& for_real, const json& for_made_up) {
    auto a = answer(for_real), b = answer(for_made_up);
    CHECK(a == b);
    CHECK(a["data"]["code"] == "not_found");
    CHECK(a.dump().find("alice") == std::string::npos);
  };
  same(stop(run_id, "x"), stop(made_up_run, "x"));
  same({{"type", "get_thread_history"}, {"id", "x"}, {"thread_id", thread_id}},
       {{"type", "get_thread_history"}, {"id", "x"}, {"thread_id", made_up_thread}});
  same({{"type", "user_message"}, {"id", "x"}, {"thread_id", thread_id}, {"payload", {{"text", "hi"}}}},
       {{"type", "user_message"}, {"id", "x"}, {"thread_id", made_up_thread}, {"payload", {{"text", "hi"}}}});
  same({{"type", "start_agent"}, {"id", "x"}, {"thread_id", thread_id}, {"payload", {{"agent", "echo"}}}},
       {{"type", "start_agent"}, {"id", "x"}, {"thread_id", made_up_thread}, {"payload", {{"agent", "echo"}}}});
  auto list = answer({{"type", "list_threads"}, {"id", "l"}});
  CHECK(list["data"]["threads"].empty());
  // Alice's own second connection cannot stop it either: runs belong to their connection.
  auto alice2 = connect_user(router, "alice");
  alice2.client->send_text(stop(run_id, "y").dump());
  CHECK(next_json(*alice2.client)["data"]["code"] == "not_found");
  auto rest = read_until(*alice.client, [](const json& f) { return is_final(f); });
  CHECK(rest.back()["type"] == "agent_completed");
  CHECK(rest.back()["run_id"] == run_id);
  alice.client->send_text(json{{"type", "get_thread_history"}, {"id", "h"}, {"thread_id", thread_id}}.dump());
  auto history = next_json(*alice.client);
  CHECK(history["data"]["messages"].size() == 2); // bob's user_message was not appended
}

TEST_CASE("stop_agent racing completion yields exactly one final event and one answer to the "
          "stop") {
  auto settings = agent_settings();
  settings.demo_steps = 0;
  settings.demo_step_delay_ms = 1;
  test_router router{settings};
  auto c = connect_user(router, "alice");
  int stopped = 0, completed = 0;
  for (int i = 0; i < 60; ++i) {
    auto id = "run" + std::to_string(i);
    // echo usually completes before the stop arrives, demo usually does not: both orders occur.
    auto agent = i % 2 == 0 ? "echo" : "demo";
    c.client->send_text(json{{"type", "start_agent"}, {"id", id}, {"payload", {{"agent", agent}}}}.dump());
    auto started = next_json(*c.client);
    REQUIRE(started["type"] == "agent_started");
    c.client->send_text(stop(started["run_id"], "stop" + std::to_string(i)).dump());
    int finals = 0, stop_answers = 0;
    while (stop_answers == 0 || finals == 0) {
      auto f = next_json(*c.client);
      if (is_final(f) && f["run_id"] == started["run_id"])
        ++finals;
      if (f["reply_to"] == "stop" + std::to_string(i)) {
        ++stop_answers;
        CHECK((f["type"] == "agent_stopped" || f["data"]["code"] == "not_found"));
        stopped += f["type"] == "agent_stopped";
      }
      if (f["type"] == "agent_completed")
        ++completed;
    }
    CHECK(finals == 1);
    CHECK(stop_answers == 1);
  }
  CHECK(c.client->read(200ms).what == er::client::frame::kind::timeout);
  MESSAGE("stopped " << stopped << ", completed first " << completed);
}

TEST_CASE("disconnecting in the middle of runs ends them: no actor, timer or process stays") {
  test_router router{agent_settings()};
  auto baseline = router.server().running_actors();
  std::vector<pid_t> pids;
  for (int i = 0; i < 5; ++i) {
    auto c = connect_user(router, "user-" + std::to_string(i));
    c.client->send_text(json{{"type", "start_agent"}, {"id", "d"}, {"payload", {{"agent", "demo"}}}}.dump());
    c.client->send_text(json{{"type", "start_agent"}, {"id", "h"}, {"payload", {{"agent", "test-hang"}}}}.dump());
    c.client->send_text(json{{"type", "start_agent"}, {"id", "s"}, {"payload", {{"agent", "sleeper"}}}}.dump());
    auto frames = read_until(*c.client, [](const json& f) { return f["type"] == "agent_progress"; });
    pids.push_back(frames.back()["data"]["pid"]);
    pids.push_back(frames.back()["data"]["child"]);
    if (i % 2 == 0)
      c.client->reset();
    else
      c.client->close();
  }
  CHECK(back_to_baseline(router, baseline));
  CHECK(eventually([&] {
    return std::none_of(pids.begin(), pids.end(), [](pid_t p) { return is_running(p); });
  }));
}

TEST_CASE("500 connections opening and closing while agents run disturb none of the runs") {
  auto settings = agent_settings();
  settings.demo_step_delay_ms = 30;
  test_router router{settings};
  auto baseline = router.server().running_actors();
  std::atomic<bool> churn_failed{false};
  std::thread churn{[&] {
    try {
      for (int i = 0; i < 500; ++i) {
        auto o = options_for(router);
        o.subprotocols = "router.v1, jwt." + token_for(router, "churn-" + std::to_string(i % 50));
        o.bind_address = "127.0.0." + std::to_string(10 + i % 5);
        auto [client, h] = er::client::ws_client::connect(o);
        if (!h.upgraded)
          churn_failed = true;
        if (i % 3 == 0)
          client->send_text(R"({"type":"start_agent","payload":{"agent":"demo"}})");
        if (i % 2 == 0)
          client->reset();
        else
          client->close();
      }
    } catch (const std::exception&) {
      churn_failed = true;
    }
  }};
  std::vector<connection> workers;
  for (int i = 0; i < 10; ++i)
    workers.push_back(connect_user(router, "worker-" + std::to_string(i)));
  for (int round = 0; round < 3; ++round) {
    for (auto& w : workers)
      w.client->send_text(json{{"type", "start_agent"}, {"id", "r" + std::to_string(round)},
                               {"payload", {{"agent", "demo"}}}}.dump());
    for (auto& w : workers) {
      auto frames = read_until(*w.client, [](const json& f) { return is_final(f); });
      std::vector<std::string> types;
      for (auto& f : frames)
        types.push_back(f["type"]);
      CHECK(types == demo_sequence);
    }
  }
  churn.join();
  CHECK_FALSE(churn_failed);
  for (auto& w : workers)
    w.client->close();
  CHECK(back_to_baseline(router, baseline));
}
