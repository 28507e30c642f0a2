#include "actors/io_scheduler.hpp"

#include <optional>
#include <utility>

#include <boost/asio/defer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <caf/detail/set_thread_name.hpp>
#include <caf/execution_unit.hpp>
#include <caf/resumable.hpp>
#include <caf/settings.hpp>

namespace er::actors {

namespace asio = boost::asio;

struct io_work {
  asio::executor_work_guard<asio::io_context::executor_type> guard;
};

/// The execution unit of one io thread: what an actor resumed there sees as its context.
class io_scheduler::worker final : public caf::execution_unit {
public:
  explicit worker(io_scheduler& parent) : caf::execution_unit(&parent.system()), parent_(parent) {
  }

  void exec_later(caf::resumable* job) override {
    parent_.schedule(job, true);
  }

  const io_scheduler& parent() const {
    return parent_;
  }

private:
  io_scheduler& parent_;
};

namespace {

thread_local io_scheduler::worker* current_worker = nullptr;

/// A scheduled resumable as an asio handler; it owns the reference its enqueuer took, and
/// gives it back through CAF's cleanup when the io_context is destroyed before running it.
class job_handler {
public:
  job_handler(io_scheduler& owner, caf::resumable* job, void (*run)(io_scheduler&, caf::resumable*))
    : owner_(&owner), job_(job), run_(run) {
  }
  job_handler(job_handler&& other) noexcept
    : owner_(other.owner_), job_(std::exchange(other.job_, nullptr)), run_(other.run_) {
  }
  job_handler(const job_handler&) = delete;
  job_handler& operator=(const job_handler&) = delete;
  job_handler& operator=(job_handler&&) = delete;
  ~job_handler() {
    if (job_ != nullptr)
      caf::scheduler::abstract_coordinator::cleanup_and_release(job_);
  }

  void operator()() {
    run_(*owner_, std::exchange(job_, nullptr));
  }

private:
  io_scheduler* owner_;
  caf::resumable* job_;
  void (*run_)(io_scheduler&, caf::resumable*);
};

} // namespace

io_scheduler::io_scheduler(caf::actor_system& sys) : abstract_coordinator(sys) {
}

io_scheduler::~io_scheduler() = default;

caf::actor_system::module* io_scheduler::make(caf::actor_system& sys) {
  return new io_scheduler(sys);
}

void io_scheduler::init(caf::actor_system_config& cfg) {
  abstract_coordinator::init(cfg);
  io_ = std::make_unique<asio::io_context>(static_cast<int>(num_workers()));
  work_ = std::make_unique<io_work>(io_work{asio::make_work_guard(*io_)});
}

void io_scheduler::start() {
  for (std::size_t i = 0; i < num_workers(); ++i) {
    threads_.emplace_back([this] {
      caf::detail::set_thread_name("er.io");
      system().thread_started();
      worker self{*this};
      current_worker = &self;
      io_->run();
      current_worker = nullptr;
      system().thread_terminates();
    });
  }
  clock_thread_ = std::thread{[this] {
    caf::detail::set_thread_name("caf.clock");
    system().thread_started();
    clock_.run_dispatch_loop();
    system().thread_terminates();
  }};
  abstract_coordinator::start(); // spawns the utility actors (detached)
}

void io_scheduler::stop() {
  // The actor system awaited its actors before calling this.
  stop_actors();
  stop_io_threads();
  // Destroys what was still queued (sockets' handlers, jobs) while the system is alive.
  io_.reset();
  clock_.cancel_dispatch_loop();
  clock_thread_.join();
}

void io_scheduler::stop_io_threads() {
  work_.reset();
  io_->stop();
  for (auto& t : threads_)
    t.join();
  threads_.clear();
}

void io_scheduler::enqueue(caf::resumable* job) {
  schedule(job, current_worker != nullptr && &current_worker->parent() == this);
}

void io_scheduler::schedule(caf::resumable* job, bool same_thread) {
  job_handler handler{*this, job, [](io_scheduler& self, caf::resumable* j) { self.run(j); }};
  // defer: a continuation of the running handler, kept on this thread's private queue.
  if (same_thread)
    asio::defer(*io_, std::move(handler));
  else
    asio::post(*io_, std::move(handler));
}

void io_scheduler::run(caf::resumable* job) {
  switch (job->resume(current_worker, max_throughput())) {
    case caf::resumable::resume_later:
      schedule(job, true); // keeps the reference
      break;
    case caf::resumable::done:
    case caf::resumable::awaiting_message:
      caf::intrusive_ptr_release(job);
      break;
    case caf::resumable::shutdown_execution_unit:
      break; // only CAF's own scheduler shutdown helper asks for this
  }
}

void use_io_scheduler(caf::actor_system_config& cfg, std::size_t threads) {
  cfg.set("scheduler.max-threads", static_cast<int64_t>(threads));
  if (caf::get_if(&caf::content(cfg), "scheduler.max-throughput") == nullptr)
    cfg.set("scheduler.max-throughput", 100);
  cfg.module_factories.push_back(&io_scheduler::make);
}

asio::io_context& io_context_of(caf::actor_system& sys) {
  return static_cast<io_scheduler&>(sys.scheduler()).io_context();
}

void stop_io_threads(caf::actor_system& sys) {
  static_cast<io_scheduler&>(sys.scheduler()).stop_io_threads();
}

} // namespace er::actors
