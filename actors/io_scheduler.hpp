#pragma once
// A CAF 0.17 scheduler that runs actors on the router's io threads.
//
// With CAF's default work-stealing scheduler every frame crossed threads twice: the io thread
// that read it enqueued the manager on a CAF worker, and the worker's write was posted back to
// the socket's strand. Here the io threads are the workers. Each io thread runs its own
// io_context (one epoll set, no thread hand-offs inside it) and new connections are spread
// over them. An actor made runnable on an io thread is deferred onto that same thread
// (asio's per-thread queue: no lock hand-off, no wake-up), so a manager woken by its socket
// runs where the socket lives and writes to it inline. Actors made runnable elsewhere (the
// clock, detached actors, other threads) are posted to the io threads in turn. Timeouts and
// delayed messages keep CAF's clock thread; detached actors keep their own threads.

#include <atomic>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/detail/thread_safe_actor_clock.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

namespace boost::asio {
class io_context;
}

namespace er::actors {

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
  caf::detail::thread_safe_actor_clock clock_;
  std::thread clock_thread_;
};

/// Makes `cfg`'s actor system run its actors on `threads` io threads (see io_scheduler). A
/// scheduler.max-throughput left unset becomes 100 so that a flooded actor yields to the
/// sockets sharing its thread.
void use_io_scheduler(caf::actor_system_config& cfg, std::size_t threads);

/// The scheduler of a system configured by use_io_scheduler.
io_scheduler& io_scheduler_of(caf::actor_system& sys);

} // namespace er::actors
