#pragma once
// A CAF 0.17 scheduler that runs actors on the threads of one asio io_context.
//
// With CAF's default work-stealing scheduler every frame crossed threads twice: the io thread
// that read it enqueued the manager on a CAF worker, and the worker's write was posted back to
// the socket's strand. Here the io threads are the workers: an actor made runnable from an io
// thread is deferred onto that same thread (asio's per-thread queue: no lock hand-off, no
// wake-up), and its writes reach the socket inline. Timeouts and delayed messages keep CAF's
// clock thread; detached actors keep their own threads.

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

  /// Runs the actors and everything else posted to it; valid until the actor system is gone.
  boost::asio::io_context& io_context() noexcept {
    return *io_;
  }

  void enqueue(caf::resumable* job) override;
  caf::actor_clock& clock() noexcept override {
    return clock_;
  }

  /// Stops and joins the io threads; for owners that must stop them before the system ends
  /// and that know no actor is left to run. Idempotent; stop() calls it as well.
  void stop_io_threads();

  class worker;

protected:
  void init(caf::actor_system_config& cfg) override;
  void start() override;
  void stop() override;

private:
  void schedule(caf::resumable* job, bool same_thread);
  void run(caf::resumable* job);

  std::unique_ptr<boost::asio::io_context> io_;
  std::unique_ptr<struct io_work> work_;
  std::vector<std::thread> threads_;
  caf::detail::thread_safe_actor_clock clock_;
  std::thread clock_thread_;
};

/// Makes `cfg`'s actor system run its actors on `threads` threads that also run the
/// io_context returned by io_context_of. A scheduler.max-throughput left unset becomes 100 so
/// that a flooded actor yields to the sockets sharing its thread.
void use_io_scheduler(caf::actor_system_config& cfg, std::size_t threads);

/// The io_context of a system configured by use_io_scheduler.
boost::asio::io_context& io_context_of(caf::actor_system& sys);

/// io_scheduler::stop_io_threads of a system configured by use_io_scheduler.
void stop_io_threads(caf::actor_system& sys);

} // namespace er::actors
