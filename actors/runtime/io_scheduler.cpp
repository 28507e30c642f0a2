#include "actors/runtime/io_scheduler.hpp"

#include <optional>
#include <utility>

#include <boost/asio/defer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <caf/detail/set_thread_name.hpp>
#include <caf/execution_unit.hpp>
#include <caf/resumable.hpp>
#include <caf/settings.hpp>

namespace er::actors {

namespace asio = boost::asio;

/// The execution unit of one io thread: what an actor resumed there sees as its context.
class io_scheduler::worker final : public caf::execution_unit {
public:
  worker(io_scheduler& parent, asio::io_context& io)
    : caf::execution_unit(&parent.system()), parent_(parent), io_(io) {
  }

  void exec_later(caf::resumable* job) override {
    parent_.schedule(job, this);
  }

  const io_scheduler& parent() const {
    return parent_;
  }

  asio::io_context& io() {
    return io_;
  }

private:
  io_scheduler& parent_;
  asio::io_context& io_;
};

struct io_scheduler::io_thread {
  // Concurrency hint 1: one thread runs it (others may still post to it).
  std::unique_ptr<asio::io_context> io = std::make_unique<asio::io_context>(1);
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{
    asio::make_work_guard(*io)};
  std::thread thread;
};

namespace {

thread_local io_scheduler::worker* current_worker = nullptr;

/// A scheduled resumable as an asio handler; it owns the reference its enqueuer took, and
/// gives it back through CAF's cleanup when the io_context is destroyed before running it.
class job_handler {
public:
  using run_fn = void (*)(io_scheduler&, caf::resumable*);

  job_handler(io_scheduler& owner, caf::resumable* job, run_fn run)
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
  run_fn run_;
};

} // namespace

// -- io_clock -------------------------------------------------------------------

struct io_clock::timer {
  explicit timer(asio::io_context& io) : wait(io) {
  }
  asio::steady_timer wait;
};

io_clock::io_clock() = default;

io_clock::~io_clock() = default;

void io_clock::start(asio::io_context& io) {
  std::lock_guard<std::mutex> guard{mutex_};
  timer_ = std::make_unique<timer>(io);
  armed_ = false;
  rearm();
}

void io_clock::stop() {
  std::lock_guard<std::mutex> guard{mutex_};
  timer_.reset(); // a pending wait is cancelled; its handler is dropped with the io_context
  armed_ = false;
  ++generation_;
}

std::size_t io_clock::pending() {
  std::lock_guard<std::mutex> guard{mutex_};
  return schedule().size();
}

void io_clock::rearm() {
  if (!timer_ || schedule().empty())
    return;
  auto next = schedule().begin()->first;
  if (armed_ && armed_for_ <= next)
    return; // the pending wait comes first and re-arms for the rest
  armed_ = true;
  armed_for_ = next;
  auto generation = ++generation_; // a replaced wait's handler finds it outdated
  timer_->wait.expires_at(next);
  timer_->wait.async_wait([this, generation](boost::system::error_code) { on_timer(generation); });
}

void io_clock::on_timer(std::uint64_t generation) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (generation != generation_)
    return;
  armed_ = false;
  trigger_expired_timeouts(); // enqueues into mailboxes only: actors run later, not here
  rearm();
}

#define ER_IO_CLOCK_FORWARD(call)                                                               \
  std::lock_guard<std::mutex> guard{mutex_};                                                    \
  simple_actor_clock::call;                                                                     \
  rearm();

void io_clock::set_ordinary_timeout(time_point t, caf::abstract_actor* self,
                                    caf::atom_value type, uint64_t id) {
  ER_IO_CLOCK_FORWARD(set_ordinary_timeout(t, self, type, id))
}

void io_clock::set_multi_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                                 uint64_t id) {
  ER_IO_CLOCK_FORWARD(set_multi_timeout(t, self, type, id))
}

void io_clock::set_request_timeout(time_point t, caf::abstract_actor* self, caf::message_id id) {
  ER_IO_CLOCK_FORWARD(set_request_timeout(t, self, id))
}

void io_clock::cancel_ordinary_timeout(caf::abstract_actor* self, caf::atom_value type) {
  ER_IO_CLOCK_FORWARD(cancel_ordinary_timeout(self, type))
}

void io_clock::cancel_request_timeout(caf::abstract_actor* self, caf::message_id id) {
  ER_IO_CLOCK_FORWARD(cancel_request_timeout(self, id))
}

void io_clock::cancel_timeouts(caf::abstract_actor* self) {
  ER_IO_CLOCK_FORWARD(cancel_timeouts(self))
}

void io_clock::schedule_message(time_point t, caf::strong_actor_ptr receiver,
                                caf::mailbox_element_ptr content) {
  ER_IO_CLOCK_FORWARD(schedule_message(t, std::move(receiver), std::move(content)))
}

void io_clock::schedule_message(time_point t, caf::group target, caf::strong_actor_ptr sender,
                                caf::message content) {
  ER_IO_CLOCK_FORWARD(schedule_message(t, std::move(target), std::move(sender), std::move(content)))
}

void io_clock::cancel_all() {
  ER_IO_CLOCK_FORWARD(cancel_all())
}

#undef ER_IO_CLOCK_FORWARD

// -- io_scheduler -------------------------------------------------------------------

io_scheduler::io_scheduler(caf::actor_system& sys) : abstract_coordinator(sys) {
}

io_scheduler::~io_scheduler() = default;

caf::actor_system::module* io_scheduler::make(caf::actor_system& sys) {
  return new io_scheduler(sys);
}

asio::io_context& io_scheduler::io_context() noexcept {
  return *threads_.front()->io;
}

asio::io_context& io_scheduler::next_io_context() noexcept {
  return *threads_[next_.fetch_add(1, std::memory_order_relaxed) % threads_.size()]->io;
}

void io_scheduler::init(caf::actor_system_config& cfg) {
  abstract_coordinator::init(cfg);
  for (std::size_t i = 0; i < std::max<std::size_t>(num_workers(), 1); ++i)
    threads_.push_back(std::make_unique<io_thread>());
}

void io_scheduler::start() {
  for (auto& t : threads_) {
    t->thread = std::thread{[this, io = t->io.get()] {
      caf::detail::set_thread_name("er.io");
      system().thread_started();
      worker self{*this, *io};
      current_worker = &self;
      io->run();
      current_worker = nullptr;
      system().thread_terminates();
    }};
  }
  clock_.start(io_context());
  abstract_coordinator::start(); // spawns the utility actors (detached)
}

void io_scheduler::stop_io_threads() {
  for (auto& t : threads_) {
    t->work.reset();
    t->io->stop();
  }
  for (auto& t : threads_)
    if (t->thread.joinable())
      t->thread.join();
}

void io_scheduler::stop() {
  // The actor system awaited its actors before calling this.
  stop_actors();
  stop_io_threads();
  clock_.stop();
  // Destroys what was still queued (sockets' handlers, jobs) while the system is alive.
  for (auto& t : threads_)
    t->io.reset();
}

void io_scheduler::enqueue(caf::resumable* job) {
  auto here = current_worker;
  schedule(job, here != nullptr && &here->parent() == this ? here : nullptr);
}

void io_scheduler::schedule(caf::resumable* job, worker* here) {
  job_handler handler{*this, job, [](io_scheduler& self, caf::resumable* j) { self.run(j); }};
  // defer: a continuation of the running handler, kept on this thread's private queue.
  if (here != nullptr)
    asio::defer(here->io(), std::move(handler));
  else
    asio::post(next_io_context(), std::move(handler));
}

void io_scheduler::run(caf::resumable* job) {
  switch (job->resume(current_worker, max_throughput())) {
    case caf::resumable::resume_later:
      schedule(job, current_worker); // keeps the reference
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

asio::io_context* current_io_context() noexcept {
  return current_worker != nullptr ? &current_worker->io() : nullptr;
}

io_scheduler& io_scheduler_of(caf::actor_system& sys) {
  return static_cast<io_scheduler&>(sys.scheduler());
}

} // namespace er::actors
