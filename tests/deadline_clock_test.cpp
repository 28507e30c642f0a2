// deadline_clock (net/deadline_clock.hpp): one timer per io_context for the deadlines of all
// its sessions. Real io_context and steady clock; deadlines a few milliseconds out.

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/deadline_clock.hpp"

namespace {

using namespace std::chrono_literals;
using er::net::deadline_clock;
using clock_type = std::chrono::steady_clock;

/// Records when it is told, with the generation it was told.
class probe final : public deadline_clock::entry {
public:
  probe(deadline_clock& clock, int name, std::vector<std::pair<int, std::uint64_t>>& log)
    : clock_(clock), name_(name), log_(log) {
  }
  ~probe() {
    clock_.cancel(*this);
  }
  std::uint64_t schedule(clock_type::duration in) {
    return clock_.schedule(*this, clock_type::now() + in);
  }
  using entry::generation;

private:
  void on_deadline(std::uint64_t generation) override {
    log_.emplace_back(name_, generation);
  }
  deadline_clock& clock_;
  int name_;
  std::vector<std::pair<int, std::uint64_t>>& log_;
};

/// Runs `io` until `done()` or two seconds passed.
template <class F>
void run_until(boost::asio::io_context& io, F done) {
  auto give_up = clock_type::now() + 2s;
  while (!done() && clock_type::now() < give_up) {
    io.run_for(5ms);
    io.restart();
  }
}

} // namespace

TEST_CASE("deadline_clock tells each entry once, in deadline order, with its generation") {
  boost::asio::io_context io;
  auto& clock = deadline_clock::of(io);
  CHECK(&clock == &deadline_clock::of(io)); // one per io_context
  std::vector<std::pair<int, std::uint64_t>> log;
  probe a{clock, 1, log}, b{clock, 2, log}, c{clock, 3, log};
  auto gc = c.schedule(30ms);
  auto ga = a.schedule(10ms);
  auto gb = b.schedule(20ms);
  CHECK(clock.size() == 3);
  run_until(io, [&] { return log.size() == 3; });
  REQUIRE(log.size() == 3);
  CHECK(log[0] == std::pair<int, std::uint64_t>{1, ga});
  CHECK(log[1] == std::pair<int, std::uint64_t>{2, gb});
  CHECK(log[2] == std::pair<int, std::uint64_t>{3, gc});
  CHECK(clock.size() == 0);
  io.run_for(30ms); // nothing more
  CHECK(log.size() == 3);
}

TEST_CASE("deadline_clock: an earlier deadline scheduled while a later one is armed comes "
          "first, a replaced deadline is not told, a cancelled entry never") {
  boost::asio::io_context io;
  auto& clock = deadline_clock::of(io);
  std::vector<std::pair<int, std::uint64_t>> log;
  probe late{clock, 1, log}, early{clock, 2, log}, gone{clock, 3, log}, moved{clock, 4, log};
  late.schedule(400ms); // the timer waits for this one
  early.schedule(10ms);
  gone.schedule(15ms);
  clock.cancel(gone);
  auto first = moved.schedule(20ms);
  auto second = moved.schedule(30ms); // replaces the 20 ms deadline
  CHECK(second != first);
  run_until(io, [&] { return log.size() == 2; });
  REQUIRE(log.size() == 2);
  CHECK(log[0].first == 2);
  CHECK(log[1] == std::pair<int, std::uint64_t>{4, second}); // not after the late one
  CHECK(clock.size() == 1);
  clock.cancel(late);
  CHECK(clock.size() == 0);
}

TEST_CASE("deadline_clock: a deadline replaced after it fired is recognisable by its generation") {
  boost::asio::io_context io;
  auto& clock = deadline_clock::of(io);
  std::vector<std::pair<int, std::uint64_t>> log;
  probe p{clock, 1, log};
  auto fired = p.schedule(5ms);
  run_until(io, [&] { return !log.empty(); });
  REQUIRE(log.size() == 1);
  CHECK(log[0].second == fired);
  CHECK(p.generation() == fired); // still current: the receiver acts on it
  p.schedule(1h);                 // what a session does before a posted event reaches it
  CHECK(p.generation() != fired); // now the posted event is stale
  clock.cancel(p);
  CHECK(p.generation() != fired);
}

TEST_CASE("deadline_clock: entries scheduled and cancelled from other threads while the "
          "io_context runs") {
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::thread runner{[&] { io.run(); }};
  auto& clock = deadline_clock::of(io);
  std::vector<std::pair<int, std::uint64_t>> log; // written by the io thread only
  std::vector<std::unique_ptr<probe>> probes;
  for (int i = 0; i < 200; ++i)
    probes.push_back(std::make_unique<probe>(clock, i, log));
  std::thread other{[&] {
    for (int i = 0; i < 200; ++i)
      probes[i]->schedule(std::chrono::milliseconds{1 + i % 20});
  }};
  other.join();
  for (int i = 0; i < 200; i += 2)
    clock.cancel(*probes[i]); // may race with the deadline: told or not, never twice
  auto give_up = clock_type::now() + 2s;
  while (clock.size() != 0 && clock_type::now() < give_up)
    std::this_thread::sleep_for(2ms);
  CHECK(clock.size() == 0);
  work.reset();
  io.stop();
  runner.join();
  std::vector<int> times(200);
  for (auto& [name, generation] : log)
    ++times[name];
  for (int i = 1; i < 200; i += 2)
    CHECK(times[i] == 1); // never cancelled: told exactly once
  for (int i = 0; i < 200; i += 2)
    CHECK(times[i] <= 1);
}

TEST_CASE("deadline_clock: an io_context destroyed with deadlines pending ends cleanly") {
  std::vector<std::pair<int, std::uint64_t>> log;
  {
    boost::asio::io_context io;
    auto& clock = deadline_clock::of(io);
    auto p = std::make_unique<probe>(clock, 1, log);
    p->schedule(1h);
    io.run_for(5ms);
    p.reset(); // a session goes before its io_context, as in the router
  }
  CHECK(log.empty());
}
