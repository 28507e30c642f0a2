// Invariant 1 of DESIGN §9 under concurrency: a frame sent to a user's connection carries
// that user's id and answers only that connection's own requests.

#include <atomic>
#include <thread>

#include <doctest/doctest.h>

#include "tests/support.hpp"

using namespace er::test;

TEST_CASE("two users with 50 connections each and 200 concurrent pings per connection receive "
          "exactly their own replies, in order, and nothing else") {
  constexpr int per_user = 50;
  constexpr int pings = 200;
  auto settings = test_settings();
  settings.max_connections_per_user = per_user;
  test_router router{settings};
  struct result {
    std::string user;
    int connection = 0;
    int pongs_in_order = 0;
    int wrong_user = 0;
    int foreign_or_out_of_order = 0;
    int extra_frames = 0;
    std::string failure;
  };
  std::vector<result> results(2 * per_user);
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int i = 0; i < 2 * per_user; ++i) {
    threads.emplace_back([&, i] {
      auto& r = results[static_cast<size_t>(i)];
      r.user = i % 2 == 0 ? "alice" : "bob";
      r.connection = i;
      try {
        auto o = options_for(router);
        o.subprotocols = "router.v1, jwt." + token_for(router, r.user);
        o.timeout = 20s;
        auto [client, h] = er::client::ws_client::connect(o);
        if (!h.upgraded)
          throw std::runtime_error("refused " + std::to_string(h.status));
        client->read(10s); // connection_established
        ++ready;
        while (ready < 2 * per_user)
          std::this_thread::yield();
        auto prefix = r.user + "-" + std::to_string(i) + "-";
        for (int n = 0; n < pings; ++n)
          client->send_text(json{{"type", "ping"}, {"id", prefix + std::to_string(n)}}.dump());
        for (int n = 0; n < pings; ++n) {
          auto f = client->read(20s);
          if (f.what != er::client::frame::kind::text)
            throw std::runtime_error("frame " + std::to_string(n) + " missing");
          auto frame = json::parse(f.data);
          if (frame["user_id"] != r.user)
            ++r.wrong_user;
          if (frame["type"] == "pong" && frame["reply_to"] == prefix + std::to_string(n)
              && frame["event_id"] == n + 1)
            ++r.pongs_in_order;
          else
            ++r.foreign_or_out_of_order;
        }
        if (client->read(300ms).what != er::client::frame::kind::timeout)
          ++r.extra_frames;
        client->close();
      } catch (const std::exception& e) {
        r.failure = e.what();
        ++ready;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  for (auto& r : results) {
    INFO("connection " << r.connection << " of " << r.user << ": " << r.failure);
    CHECK(r.failure.empty());
    CHECK(r.pongs_in_order == pings);
    CHECK(r.wrong_user == 0);
    CHECK(r.foreign_or_out_of_order == 0);
    CHECK(r.extra_frames == 0);
  }
  CHECK(eventually([&] { return router.server().stats().connections == 0; }));
}

TEST_CASE("the router indexes connections by user and forgets them when they end") {
  test_router router;
  auto a1 = connect_user(router, "alice");
  auto a2 = connect_user(router, "alice");
  auto b1 = connect_user(router, "bob");
  CHECK(eventually([&] {
    auto s = router.server().stats();
    return s.connections == 3 && s.users == 2;
  }));
  b1.client->close();
  CHECK(eventually([&] {
    auto s = router.server().stats();
    return s.connections == 2 && s.users == 1;
  }));
}
