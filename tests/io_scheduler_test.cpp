// The scheduler that runs actors on the io threads (actors/io_scheduler.hpp), in a real
// actor system with real asio io_contexts.

#include <doctest/doctest.h>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "actors/runtime/io_scheduler.hpp"

namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

std::string thread_name() {
  char name[32] = {};
  pthread_getname_np(pthread_self(), name, sizeof(name));
  return name;
}

// Spawns a function actor through a wrapper that takes one argument: CAF 0.17 dereferences a
// null argument tuple when a function actor takes none (UBSan reports it in CAF's header).
template <class F>
caf::actor spawn_fn(caf::actor_system& system, F f) {
  return system.spawn(
    [f](caf::event_based_actor* self, int) -> caf::behavior { return f(self); }, 0);
}

caf::actor_system_config io_config(std::size_t threads) {
  caf::actor_system_config cfg;
  er::actors::use_io_scheduler(cfg, threads);
  return cfg;
}

std::size_t thread_id() {
  return std::hash<std::thread::id>{}(std::this_thread::get_id());
}

// Answers every integer with the name of the thread that handled it and the id of the thread
// that started the actor.
caf::behavior reporter(caf::event_based_actor*) {
  auto started_on = thread_id();
  return {[started_on](int n) { return caf::make_message(n, thread_name(), started_on); }};
}

} // namespace

TEST_CASE("actors run on the io threads, and every io thread runs actors") {
  auto cfg = io_config(2);
  caf::actor_system system{cfg};
  auto& sched = er::actors::io_scheduler_of(system);
  CHECK(&sched.next_io_context() != &sched.next_io_context()); // two contexts, in turn
  // Spawned one after the other from a thread that is not an io thread: their starts are
  // posted to the io threads in turn (nothing else is posted meanwhile).
  std::vector<caf::actor> actors;
  for (int i = 0; i < 200; ++i)
    actors.push_back(spawn_fn(system, reporter));
  caf::scoped_actor self{system};
  std::set<std::size_t> threads;
  for (int i = 0; i < 200; ++i) {
    self->request(actors[i], 5s, i).receive(
      [&](int n, const std::string& name, std::size_t thread) {
        CHECK(n == i);
        CHECK(name == "er.io");
        threads.insert(thread);
      },
      [&](const caf::error& err) { FAIL("no answer: " << system.render(err)); });
  }
  for (auto& a : actors)
    self->send_exit(a, caf::exit_reason::user_shutdown);
  CHECK(threads.size() == 2);
}

TEST_CASE("messages between actors on the io threads arrive complete and in order") {
  auto cfg = io_config(2);
  caf::actor_system system{cfg};
  constexpr int count = 20000;
  std::atomic<int> received{0};
  std::atomic<bool> ordered{true};
  auto sink = spawn_fn(system, [&](caf::event_based_actor*) -> caf::behavior {
    return {[&, next = 0](int n) mutable {
      if (n != next++)
        ordered = false;
      ++received;
    }};
  });
  // The source runs on an io thread and sends from there (exec_later's path).
  auto source = spawn_fn(system, [sink](caf::event_based_actor* self) -> caf::behavior {
    return {[=](caf::ok_atom) {
      for (int i = 0; i < count; ++i)
        self->send(sink, i);
    }};
  });
  caf::anon_send(source, caf::ok_atom::value);
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (received < count && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  CHECK(received == count);
  CHECK(ordered);
  caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(source, caf::exit_reason::user_shutdown);
}

TEST_CASE("delayed messages arrive in deadline order, an earlier one scheduled last first") {
  auto cfg = io_config(2);
  caf::actor_system system{cfg};
  caf::scoped_actor self{system};
  // Scheduled latest-first: every new one is due before the timer's armed deadline, so the
  // io clock re-arms each time and must not lose the later ones.
  for (int i = 9; i >= 0; --i)
    self->delayed_send(self, std::chrono::milliseconds{20 + 15 * i}, i);
  std::vector<int> order;
  for (int i = 0; i < 10; ++i)
    self->receive([&](int n) { order.push_back(n); },
                  caf::after(std::chrono::seconds{5}) >> [&] { order.push_back(-1); });
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("delayed messages and request timeouts run on the io clock") {
  auto cfg = io_config(1);
  caf::actor_system system{cfg};
  caf::scoped_actor self{system};
  auto start = std::chrono::steady_clock::now();
  self->delayed_send(self, 50ms, 7);
  self->receive([](int n) { CHECK(n == 7); });
  CHECK(std::chrono::steady_clock::now() - start >= 50ms);
  auto silent = spawn_fn(system, [](caf::event_based_actor*) -> caf::behavior {
    return {[](int) { return caf::skip(); }};
  });
  bool timed_out = false;
  self->request(silent, 50ms, 1).receive([](int) {},
                                          [&](const caf::error&) { timed_out = true; });
  CHECK(timed_out);
  self->send_exit(silent, caf::exit_reason::user_shutdown);
}

TEST_CASE("a flooded actor yields its thread: another actor on it still gets through") {
  auto cfg = io_config(1); // one thread: both actors share it
  caf::actor_system system{cfg};
  std::atomic<bool> stop{false};
  std::atomic<long> spins{0};
  // Keeps its own mailbox non-empty forever: with unbounded throughput it would never yield.
  auto spinner = spawn_fn(system, [&](caf::event_based_actor* self) -> caf::behavior {
    return {[&, self](int) {
      ++spins;
      if (!stop)
        self->send(self, 0);
    }};
  });
  caf::anon_send(spinner, 0);
  caf::scoped_actor self{system};
  auto other = spawn_fn(system, reporter);
  bool answered = false;
  self->request(other, 5s, 1).receive([&](int, const std::string&, std::size_t) { answered = true; },
                                      [](const caf::error&) {});
  CHECK(answered);
  CHECK(spins > 0);
  stop = true;
  self->send_exit(spinner, caf::exit_reason::user_shutdown);
  self->send_exit(other, caf::exit_reason::user_shutdown);
}

TEST_CASE("the system ends while sockets still wait on the io threads") {
  auto cfg = io_config(2);
  std::atomic<bool> handler_ran{false};
  {
    caf::actor_system system{cfg};
    auto& io = er::actors::io_scheduler_of(system).io_context();
    asio::ip::tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
    acceptor.async_accept([&](boost::system::error_code, asio::ip::tcp::socket) {
      handler_ran = true;
    });
    // Work posted to an io thread runs while the system lives.
    std::atomic<bool> posted{false};
    asio::post(io, [&] { posted = true; });
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!posted && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
    CHECK(posted);
    er::actors::io_scheduler_of(system).stop_io_threads();
  } // the pending accept is dropped without running: nothing waits for a client
  CHECK_FALSE(handler_ran);
}
