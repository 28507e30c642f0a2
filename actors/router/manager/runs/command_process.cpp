#include "actors/router/manager/runs/command_process.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
// glibc 2.36's <sys/pidfd.h> lacks the extern "C" block; nesting one is harmless
// once a fixed glibc provides it.
extern "C" {
#include <sys/pidfd.h>
}

#include <array>
#include <cerrno>
#include <deque>
#include <mutex>
#include <system_error>
#include <utility>

#include "actors/router/manager/runs/line_splitter.hpp"
#include "actors/router/manager/runs/process_spawn.hpp"
#include "actors/router/manager/runs/read_window.hpp"

namespace er::actors {

namespace {

namespace asio = boost::asio;
using error_code = boost::system::error_code;
using strand_type = asio::strand<asio::io_context::executor_type>;

constexpr std::size_t stderr_tail_bytes = 4096;
constexpr std::size_t read_chunk_bytes = 16384;
constexpr std::chrono::milliseconds bad_output_grace{500};

using chunk = std::array<char, read_chunk_bytes>;

process_exit decode_exit(siginfo_t info) { // by value: GCC 12 warns falsely on a reference
  bool signaled = info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED;
  return {signaled, info.si_status};
}

void adopt(asio::posix::stream_descriptor& d, unique_fd fd) {
  error_code ec;
  d.assign(fd.get(), ec);
  if (ec)
    throw std::system_error(ec.value(), std::generic_category(), "registering a pipe with asio");
  fd.release();
}

/// One of the child's output pipes (stdout, stderr), read until EOF.
struct output_pipe {
  explicit output_pipe(const strand_type& strand) : stream(strand) {
  }
  asio::posix::stream_descriptor stream;
  // Shared with the pending read, so a read can never outlive its buffer.
  std::shared_ptr<chunk> buffer = std::make_shared<chunk>();
  bool done = false; ///< EOF or an error; closed
};

/// The child's stdin: lines queued and written one at a time, then closed.
enum class input_state {
  open,    ///< idle: a line is written at once
  writing, ///< a write is in flight; more lines wait in the queue
  closing, ///< a write is in flight; stdin closes once the queue has been written
  closed,
};

/// The child process itself.
enum class process_state {
  running,
  exited,   ///< the leader exited (a zombie until reaped); its pipes may still be open
  finished, ///< exited, both pipes at EOF, reaped, on_exit called
};

} // namespace

class command_process::impl {
public:
  impl(asio::io_context& io, const command_spec& spec, command_callbacks cb)
    : strand_(asio::make_strand(io)),
      lines_(spec.max_line_bytes),
      output_(spec.output_window, spec.output_line_weight),
      orphan_grace_(spec.orphan_grace),
      cb_(std::move(cb)),
      stdin_(strand_),
      stdout_(strand_),
      stderr_(strand_),
      pidfd_(strand_),
      kill_timer_(strand_),
      orphan_timer_(strand_) {}

  ~impl();

  void launch(const command_spec& spec);
  void begin();
  void queue_line(std::string line);
  void request_stdin_close();
  void terminate(std::chrono::milliseconds grace);
  void release_output(std::size_t bytes);
  std::string tail() const;

  template <class F>
  void run_on_strand(F f) {
    asio::dispatch(strand_, guard(std::move(f)));
  }

  command_process* owner_ = nullptr;
  pid_t pid_ = -1;

private:
  // Handlers keep only a weak reference: the owner's handle alone decides how
  // long the process lives, and a handler arriving after that does nothing.
  template <class F>
  auto guard(F f) {
    return [w = owner_->weak_from_this(), f = std::move(f)](auto&&... args) mutable {
      if (auto self = w.lock())
        f(*self->impl_, std::forward<decltype(args)>(args)...);
    };
  }

  using pipe_member = output_pipe impl::*;

  void read_output(pipe_member pipe);
  void end_output(pipe_member pipe);
  bool deliver_stdout();
  void on_stdout(const char* data, std::size_t n);
  void keep_tail(const char* data, std::size_t n);
  void deliver_line(std::string line);
  void write_next();
  void close_stdin_now();
  void watch_exit();
  void check_exit();
  void on_leader_exit();
  void on_orphans_overdue();
  void maybe_finish();
  void reap();
  void signal_group(int sig);

  strand_type strand_;
  line_splitter lines_; ///< stdout, split into lines of at most max_line_bytes
  read_window output_; ///< stdout's lines delivered, not yet consumed() (output_window)
  /// stdout's last read, in its pipe's buffer: what the window has not admitted yet. Empty
  /// unless the window is full: no read is made before it is delivered.
  std::string_view stdout_kept_;
  std::chrono::milliseconds orphan_grace_;
  command_callbacks cb_;

  asio::posix::stream_descriptor stdin_;
  output_pipe stdout_;
  output_pipe stderr_;
  asio::posix::stream_descriptor pidfd_;
  asio::steady_timer kill_timer_;
  asio::steady_timer orphan_timer_;
  // Our own read end of the stdin pipe: a write after the agent exited then
  // just fills the pipe buffer instead of raising SIGPIPE in the host.
  unique_fd stdin_reader_;

  std::deque<std::string> writes_;
  input_state input_ = input_state::open;
  process_state state_ = process_state::running;
  bool terminating_ = false; ///< terminate() was called: SIGTERM sent, SIGKILL armed
  bool reaped_ = false;      ///< the pid is gone: the group must not be signalled any more
  process_exit status_{false, -1};

  mutable std::mutex tail_mutex_;
  std::string tail_;
};

command_process::impl::~impl() {
  if (pid_ <= 0 || reaped_)
    return;
  signal_group(SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

void command_process::impl::launch(const command_spec& spec) {
  pipe_ends in = make_pipe();
  pipe_ends out = make_pipe();
  pipe_ends err = make_pipe();
  pid_ = spawn_child(spec, in.read.get(), out.write.get(), err.write.get());
  // From here on ~impl kills and reaps the child if anything below throws.
  int pidfd = ::pidfd_open(pid_, 0);
  if (pidfd < 0)
    throw_errno(errno, "pidfd_open");
  adopt(pidfd_, unique_fd(pidfd));
  adopt(stdin_, std::move(in.write));
  adopt(stdout_.stream, std::move(out.read));
  adopt(stderr_.stream, std::move(err.read));
  stdin_reader_ = std::move(in.read);
  // The child's ends of stdout/stderr close when `out`/`err` go out of scope;
  // holding them would keep us from ever seeing EOF.
}

void command_process::impl::begin() {
  read_output(&impl::stdout_);
  read_output(&impl::stderr_);
  watch_exit();
}

// --- stdout and stderr ------------------------------------------------------

void command_process::impl::read_output(pipe_member pipe) {
  auto buf = (this->*pipe).buffer;
  (this->*pipe).stream.async_read_some(
    asio::buffer(*buf), guard([buf, pipe](impl& s, const error_code& ec, std::size_t n) {
      if ((s.*pipe).done)
        return;
      if (ec) // EOF, or an error that ends the stream just the same
        return s.end_output(pipe);
      if (pipe == &impl::stderr_) {
        s.keep_tail(buf->data(), n);
      } else {
        s.stdout_kept_ = {buf->data(), n};
        if (!s.deliver_stdout())
          return; // release_output() goes on
      }
      s.read_output(pipe);
    }));
}

/// Hands what stdout's last read kept to the line splitter, as far as the window admits it.
/// False: the window is full, and what it did not admit stays kept.
bool command_process::impl::deliver_stdout() {
  if (lines_.overflowed()) { // drained unweighed: the process is being ended
    stdout_kept_ = {};
    return true;
  }
  auto admitted = output_.take(stdout_kept_);
  on_stdout(stdout_kept_.data(), admitted);
  stdout_kept_.remove_prefix(admitted);
  return !output_.park_if_full();
}

void command_process::impl::release_output(std::size_t bytes) {
  if (output_.release(bytes) && !stdout_.done && deliver_stdout())
    read_output(&impl::stdout_);
}

void command_process::impl::end_output(pipe_member pipe) {
  auto& p = this->*pipe;
  if (p.done)
    return;
  p.done = true;
  error_code ignored;
  p.stream.close(ignored);
  if (pipe == &impl::stdout_)
    lines_.finish([this](std::string line) { deliver_line(std::move(line)); });
  maybe_finish();
}

void command_process::impl::on_stdout(const char* data, std::size_t n) {
  if (lines_.overflowed())
    return; // keep draining so the agent cannot block on a full pipe
  if (lines_.feed({data, n}, [this](std::string line) { deliver_line(std::move(line)); }))
    return;
  if (cb_.on_bad_output)
    cb_.on_bad_output("stdout line longer than " + std::to_string(lines_.max_line()) + " bytes");
  terminate(bad_output_grace);
}

void command_process::impl::deliver_line(std::string line) {
  if (cb_.on_line)
    cb_.on_line(std::move(line));
}

void command_process::impl::keep_tail(const char* data, std::size_t n) {
  std::lock_guard<std::mutex> lock(tail_mutex_);
  if (n >= stderr_tail_bytes) {
    tail_.assign(data + (n - stderr_tail_bytes), stderr_tail_bytes);
    return;
  }
  tail_.append(data, n);
  if (tail_.size() > stderr_tail_bytes)
    tail_.erase(0, tail_.size() - stderr_tail_bytes);
}

std::string command_process::impl::tail() const {
  std::lock_guard<std::mutex> lock(tail_mutex_);
  return tail_;
}

// --- stdin ------------------------------------------------------------------

void command_process::impl::queue_line(std::string line) {
  if (state_ == process_state::finished
      || (input_ != input_state::open && input_ != input_state::writing))
    return;
  line.push_back('\n');
  writes_.push_back(std::move(line));
  if (input_ == input_state::open)
    write_next();
}

void command_process::impl::write_next() {
  if (input_ == input_state::closed)
    return;
  if (writes_.empty()) {
    if (input_ == input_state::closing)
      return close_stdin_now();
    input_ = input_state::open;
    return;
  }
  if (input_ == input_state::open)
    input_ = input_state::writing;
  auto msg = std::make_shared<std::string>(std::move(writes_.front()));
  writes_.pop_front();
  asio::async_write(stdin_, asio::buffer(*msg),
                    guard([msg](impl& s, const error_code& ec, std::size_t) {
                      if (ec) { // the agent stopped reading; the rest has nowhere to go
                        s.writes_.clear();
                        s.close_stdin_now();
                      }
                      s.write_next();
                    }));
}

void command_process::impl::request_stdin_close() {
  if (input_ == input_state::open)
    close_stdin_now();
  else if (input_ == input_state::writing)
    input_ = input_state::closing;
}

void command_process::impl::close_stdin_now() {
  input_ = input_state::closed;
  error_code ignored;
  stdin_.close(ignored);
  stdin_reader_.reset();
}

// --- exit and termination ---------------------------------------------------

void command_process::impl::watch_exit() {
  pidfd_.async_wait(asio::posix::stream_descriptor::wait_read,
                    guard([](impl& s, const error_code& ec) {
                      if (!ec && s.state_ == process_state::running)
                        s.watch_exit();
                    }));
  // Asio's epoll reactor is edge-triggered and drops readiness that arrives
  // while no wait is queued, so look once more now that one is.
  check_exit();
}

void command_process::impl::check_exit() {
  if (state_ != process_state::running)
    return;
  siginfo_t info{};
  // WNOWAIT leaves the zombie in place: it keeps the process group id
  // reserved, so signalling the group stays safe until the final reap.
  int rc;
  do {
    rc = ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    // Reaped behind our back (e.g. the host set SIGCHLD to SIG_IGN).
    reaped_ = true;
    status_ = {false, -1};
  } else if (info.si_pid == 0) {
    return;
  } else {
    status_ = decode_exit(info);
  }
  state_ = process_state::exited;
  on_leader_exit();
}

void command_process::impl::on_leader_exit() {
  error_code ignored;
  pidfd_.close(ignored);
  if (!stdout_.done || !stderr_.done) {
    orphan_timer_.expires_after(orphan_grace_);
    orphan_timer_.async_wait(guard([](impl& s, const error_code& ec) {
      if (!ec)
        s.on_orphans_overdue();
    }));
  }
  maybe_finish();
}

// Something the agent started still holds stdout/stderr after the agent itself
// exited; the run must still end.
void command_process::impl::on_orphans_overdue() {
  if (state_ == process_state::finished)
    return;
  signal_group(SIGKILL);
  end_output(&impl::stdout_);
  end_output(&impl::stderr_);
}

void command_process::impl::terminate(std::chrono::milliseconds grace) {
  if (state_ == process_state::finished || terminating_)
    return;
  terminating_ = true;
  signal_group(SIGTERM);
  // A stopped process would not act on SIGTERM before the grace runs out.
  signal_group(SIGCONT);
  kill_timer_.expires_after(grace);
  kill_timer_.async_wait(guard([](impl& s, const error_code& ec) {
    if (!ec && s.state_ != process_state::finished)
      s.signal_group(SIGKILL);
  }));
}

void command_process::impl::signal_group(int sig) {
  if (pid_ > 0 && !reaped_)
    ::kill(-pid_, sig);
}

void command_process::impl::maybe_finish() {
  if (state_ != process_state::exited || !stdout_.done || !stderr_.done)
    return;
  state_ = process_state::finished;
  kill_timer_.cancel();
  orphan_timer_.cancel();
  writes_.clear();
  close_stdin_now();
  reap();
  // Released before the call so captures cannot keep anything alive, and so
  // on_exit may safely drop its own handle to us.
  command_callbacks cb = std::exchange(cb_, command_callbacks{});
  if (cb.on_exit)
    cb.on_exit(status_);
}

void command_process::impl::reap() {
  if (reaped_)
    return;
  signal_group(SIGKILL); // whatever the agent left behind in its group
  siginfo_t info{};
  // The leader is a zombie by now, so this does not block.
  while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG) != 0 && errno == EINTR) {
  }
  reaped_ = true;
}

// --- public interface -------------------------------------------------------

command_process::command_process(std::unique_ptr<impl> p) : impl_(std::move(p)) {
  impl_->owner_ = this;
}

command_process::~command_process() = default;

std::shared_ptr<command_process> command_process::start(boost::asio::io_context& io,
                                                        const command_spec& spec,
                                                        command_callbacks cb) {
  auto p = std::make_unique<impl>(io, spec, std::move(cb));
  p->launch(spec);
  std::shared_ptr<command_process> self(new command_process(std::move(p)));
  // Everything that touches the state runs on the strand, even the first reads.
  self->impl_->run_on_strand([](impl& s) { s.begin(); });
  return self;
}

void command_process::write_line(std::string line) {
  impl_->run_on_strand([line = std::move(line)](impl& s) mutable { s.queue_line(std::move(line)); });
}

void command_process::close_stdin() {
  impl_->run_on_strand([](impl& s) { s.request_stdin_close(); });
}

void command_process::consumed(std::size_t bytes) {
  impl_->run_on_strand([bytes](impl& s) { s.release_output(bytes); });
}

void command_process::terminate(std::chrono::milliseconds grace) {
  impl_->run_on_strand([grace](impl& s) { s.terminate(grace); });
}

pid_t command_process::pid() const {
  return impl_->pid_;
}

std::string command_process::stderr_tail() const {
  return impl_->tail();
}

} // namespace er::actors
