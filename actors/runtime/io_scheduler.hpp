#pragma once
// A CAF 0.17 scheduler that runs actors on the router's io threads.
//
// Under CAF's default work-stealing scheduler every frame would cross threads twice: the io
// thread that read it enqueues the manager on a CAF worker, and the worker's write is posted
// back to the socket's thread. Here the io threads are the workers. Each io thread runs its own
// io_context (one epoll set, no thread hand-offs inside it) and new connections are spread
// over them. An actor made runnable on an io thread is deferred onto that same thread
// (asio's per-thread queue: no lock hand-off, no wake-up), so a manager woken by its socket
// runs where the socket lives and writes to it inline. Actors made runnable elsewhere
// (detached actors, other threads) are posted to the io threads in turn. Timeouts and delayed
// messages run on an asio timer of the first io thread (io_clock) instead of CAF's clock
// thread, which every request's timeout would otherwise wake. (Sessions' heartbeats and token
// expiry are not actor timeouts: net::deadline_clock.) Detached actors keep their own threads.

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/detail/simple_actor_clock.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

namespace boost::asio {
class io_context;
}

namespace er::actors {

/// CAF's timeouts and delayed messages on one asio timer, armed for the earliest of them.
/// Thread-safe: actors on any thread set and cancel timeouts.
class io_clock final : public caf::detail::simple_actor_clock {
public:
  io_clock();
  ~io_clock() override;

  /// Starts timing on `io`; until then (and after stop) entries are only recorded.
  void start(boost::asio::io_context& io);
  /// Drops the timer; call before `io` goes away.
  void stop();
  /// Timeouts and delayed messages waiting (tests).
  std::size_t pending();

  void set_ordinary_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                            uint64_t id) override;
  void set_multi_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                         uint64_t id) override;
  void set_request_timeout(time_point t, caf::abstract_actor* self, caf::message_id id) override;
  void cancel_ordinary_timeout(caf::abstract_actor* self, caf::atom_value type) override;
  void cancel_request_timeout(caf::abstract_actor* self, caf::message_id id) override;
  void cancel_timeouts(caf::abstract_actor* self) override;
  void schedule_message(time_point t, caf::strong_actor_ptr receiver,
                        caf::mailbox_element_ptr content) override;
  void schedule_message(time_point t, caf::group target, caf::strong_actor_ptr sender,
                        caf::message content) override;
  void cancel_all() override;

private:
  void rearm(); // with mutex_ held
  void on_timer(std::uint64_t generation);

  struct timer;
  std::mutex mutex_;
  std::unique_ptr<timer> timer_;
  bool armed_ = false;
  time_point armed_for_;
  std::uint64_t generation_ = 0;
};

class io_scheduler final : public caf::scheduler::abstract_coordinator {
public:
  explicit io_scheduler(caf::actor_system& sys);
  ~io_scheduler() override;

  /// The module factory CAF calls; see use_io_scheduler.
  static caf::actor_system::module* make(caf::actor_system& sys);

  /// The io_context of the first io thread (acceptors, timers of shared services).
  boost::asio::io_context& io_context() noexcept;

  /// The io_contexts in turn, for spreading connections over the io threads.
  boost::asio::io_context& next_io_context() noexcept;

  /// Stops and joins the io threads; for owners that must stop them before the system ends
  /// and that know no actor is left to run. Idempotent; stop() calls it as well.
  void stop_io_threads();

  void enqueue(caf::resumable* job) override;
  caf::actor_clock& clock() noexcept override {
    return clock_;
  }

  class worker;
  struct io_thread;

protected:
  void init(caf::actor_system_config& cfg) override;
  void start() override;
  void stop() override;

private:
  void schedule(caf::resumable* job, worker* here);
  void run(caf::resumable* job);

  std::vector<std::unique_ptr<io_thread>> threads_;
  std::atomic<std::size_t> next_{0};
  io_clock clock_;
};

/// Makes `cfg`'s actor system run its actors on `threads` io threads (see io_scheduler). A
/// scheduler.max-throughput left unset becomes 100 so that a flooded actor yields to the
/// sockets sharing its thread.
void use_io_scheduler(caf::actor_system_config& cfg, std::size_t threads);

/// The scheduler of a system configured by use_io_scheduler.
io_scheduler& io_scheduler_of(caf::actor_system& sys);

/// The io_context of the calling io thread; null on any other thread. A handler deferred to
/// it runs after the actors this thread has made runnable so far.
boost::asio::io_context* current_io_context() noexcept;

} // namespace er::actors
