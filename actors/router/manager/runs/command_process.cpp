#include "actors/router/manager/runs/command_process.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
// glibc 2.36's <sys/pidfd.h> lacks the extern "C" block; nesting one is harmless
// once a fixed glibc provides it.
extern "C" {
#include <sys/pidfd.h>
}

#include <algorithm>
#include <array>
#include <cerrno>
#include <deque>
#include <mutex>
#include <system_error>
#include <utility>

extern char** environ;

namespace er::actors {

namespace {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

constexpr std::size_t stderr_tail_bytes = 4096;
constexpr std::size_t read_chunk_bytes = 16384;
constexpr std::chrono::milliseconds bad_output_grace{500};

using chunk = std::array<char, read_chunk_bytes>;

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

class unique_fd {
public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  ~unique_fd() { reset(); }

  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = fd;
  }

private:
  int fd_ = -1;
};

// If the host closed one of its fds 0..2, a new pipe end may land there, and
// the child's dup2 onto 0..2 would then clobber it before it is used.
unique_fd above_stdio(unique_fd fd) {
  if (fd.get() > STDERR_FILENO)
    return fd;
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  if (moved < 0)
    throw_errno(errno, "fcntl(F_DUPFD_CLOEXEC)");
  return unique_fd(moved);
}

struct pipe_ends {
  unique_fd read;
  unique_fd write;
};

// O_CLOEXEC: other children the host spawns concurrently must not inherit
// these ends, or our pipes would never see EOF.
pipe_ends make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw_errno(errno, "pipe2");
  pipe_ends p{unique_fd(fds[0]), unique_fd(fds[1])};
  p.read = above_stdio(std::move(p.read));
  p.write = above_stdio(std::move(p.write));
  return p;
}

void check_spawn_setup(int rc, const char* what) {
  if (rc != 0)
    throw_errno(rc, what);
}

struct spawn_setup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;

  spawn_setup() {
    check_spawn_setup(posix_spawnattr_init(&attr), "posix_spawnattr_init");
    if (int rc = posix_spawn_file_actions_init(&actions); rc != 0) {
      posix_spawnattr_destroy(&attr);
      throw_errno(rc, "posix_spawn_file_actions_init");
    }
  }
  ~spawn_setup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  spawn_setup(const spawn_setup&) = delete;
  spawn_setup& operator=(const spawn_setup&) = delete;
};

void configure_spawn(spawn_setup& s, int in, int out, int err) {
  // A session of its own: terminate() reaches everything the agent starts,
  // and signals aimed at the host's terminal group never reach the agent.
  // The host may ignore or block signals (SIGPIPE, SIGTERM, ...); the agent
  // must start from the defaults or terminate() might not work on it.
  sigset_t all;
  sigset_t none;
  sigfillset(&all);
  sigemptyset(&none);
  short flags = POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  check_spawn_setup(posix_spawnattr_setflags(&s.attr, flags), "posix_spawnattr_setflags");
  check_spawn_setup(posix_spawnattr_setsigdefault(&s.attr, &all), "posix_spawnattr_setsigdefault");
  check_spawn_setup(posix_spawnattr_setsigmask(&s.attr, &none), "posix_spawnattr_setsigmask");
  check_spawn_setup(posix_spawn_file_actions_adddup2(&s.actions, in, STDIN_FILENO), "adddup2");
  check_spawn_setup(posix_spawn_file_actions_adddup2(&s.actions, out, STDOUT_FILENO), "adddup2");
  check_spawn_setup(posix_spawn_file_actions_adddup2(&s.actions, err, STDERR_FILENO), "adddup2");
  // Descriptors the host opened without O_CLOEXEC must not leak into agents.
  check_spawn_setup(posix_spawn_file_actions_addclosefrom_np(&s.actions, STDERR_FILENO + 1),
                    "addclosefrom");
}

// glibc's posix_spawn runs the child with CLONE_VFORK and returns exec's errno,
// so a missing or non-executable file fails here rather than as exit code 127.
pid_t spawn_child(const command_spec& spec, int in, int out, int err) {
  if (spec.executable.empty())
    throw_errno(ENOENT, "cannot start command: no executable given");
  spawn_setup setup;
  configure_spawn(setup, in, out, err);
  std::vector<char*> argv;
  argv.reserve(spec.args.size() + 2);
  argv.push_back(const_cast<char*>(spec.executable.c_str()));
  for (const auto& arg : spec.args)
    argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, spec.executable.c_str(), &setup.actions, &setup.attr,
                        argv.data(), environ);
  if (rc != 0)
    throw_errno(rc, "cannot start '" + spec.executable + "'");
  return pid;
}

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

} // namespace

class command_process::impl {
public:
  impl(asio::io_context& io, const command_spec& spec, command_callbacks cb)
    : strand_(asio::make_strand(io)),
      max_line_(spec.max_line_bytes),
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

  void read_stdout();
  void on_stdout(const error_code& ec, const char* data, std::size_t n);
  void split_lines(const char* data, std::size_t n);
  void deliver_line(std::string line);
  void reject_output();
  void end_stdout();
  void read_stderr();
  void on_stderr(const error_code& ec, const char* data, std::size_t n);
  void keep_tail(const char* data, std::size_t n);
  void end_stderr();
  void write_next();
  void close_stdin_now();
  void watch_exit();
  void check_exit();
  void on_leader_exit();
  void on_orphans_overdue();
  void maybe_finish();
  void reap();
  void signal_group(int sig);

  asio::strand<asio::io_context::executor_type> strand_;
  std::size_t max_line_;
  std::chrono::milliseconds orphan_grace_;
  command_callbacks cb_;

  asio::posix::stream_descriptor stdin_;
  asio::posix::stream_descriptor stdout_;
  asio::posix::stream_descriptor stderr_;
  asio::posix::stream_descriptor pidfd_;
  asio::steady_timer kill_timer_;
  asio::steady_timer orphan_timer_;
  // Our own read end of the stdin pipe: a write after the agent exited then
  // just fills the pipe buffer instead of raising SIGPIPE in the host.
  unique_fd stdin_reader_;

  // Shared with pending reads so a read can never outlive its buffer.
  std::shared_ptr<chunk> stdout_buf_ = std::make_shared<chunk>();
  std::shared_ptr<chunk> stderr_buf_ = std::make_shared<chunk>();
  std::string partial_;
  bool overflowed_ = false;

  std::deque<std::string> writes_;
  bool writing_ = false;
  bool stdin_close_requested_ = false;
  bool stdin_closed_ = false;

  bool stdout_done_ = false;
  bool stderr_done_ = false;
  bool exited_ = false;
  bool reaped_ = false;
  bool terminating_ = false;
  bool finished_ = false;
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
  adopt(stdout_, std::move(out.read));
  adopt(stderr_, std::move(err.read));
  stdin_reader_ = std::move(in.read);
  // The child's ends of stdout/stderr close when `out`/`err` go out of scope;
  // holding them would keep us from ever seeing EOF.
}

void command_process::impl::begin() {
  read_stdout();
  read_stderr();
  watch_exit();
}

// --- stdout -----------------------------------------------------------------

void command_process::impl::read_stdout() {
  auto buf = stdout_buf_;
  stdout_.async_read_some(asio::buffer(*buf),
                          guard([buf](impl& s, const error_code& ec, std::size_t n) {
                            s.on_stdout(ec, buf->data(), n);
                          }));
}

void command_process::impl::on_stdout(const error_code& ec, const char* data, std::size_t n) {
  if (stdout_done_)
    return;
  if (ec) { // EOF, or an error that ends the stream just the same
    end_stdout();
    return;
  }
  split_lines(data, n);
  read_stdout();
}

void command_process::impl::split_lines(const char* data, std::size_t n) {
  if (overflowed_)
    return; // keep draining so the agent cannot block on a full pipe
  const char* end = data + n;
  while (data != end) {
    const char* newline = std::find(data, end, '\n');
    partial_.append(data, newline);
    // Checked before the newline arrives, so memory stays bounded.
    if (partial_.size() > max_line_) {
      reject_output();
      return;
    }
    if (newline == end)
      return;
    deliver_line(std::exchange(partial_, std::string()));
    data = newline + 1;
  }
}

void command_process::impl::deliver_line(std::string line) {
  if (cb_.on_line)
    cb_.on_line(std::move(line));
}

void command_process::impl::reject_output() {
  overflowed_ = true;
  std::string().swap(partial_);
  if (cb_.on_bad_output)
    cb_.on_bad_output("stdout line longer than " + std::to_string(max_line_) + " bytes");
  terminate(bad_output_grace);
}

void command_process::impl::end_stdout() {
  if (stdout_done_)
    return;
  stdout_done_ = true;
  error_code ignored;
  stdout_.close(ignored);
  if (!overflowed_ && !partial_.empty())
    deliver_line(std::exchange(partial_, std::string()));
  maybe_finish();
}

// --- stderr -----------------------------------------------------------------

void command_process::impl::read_stderr() {
  auto buf = stderr_buf_;
  stderr_.async_read_some(asio::buffer(*buf),
                          guard([buf](impl& s, const error_code& ec, std::size_t n) {
                            s.on_stderr(ec, buf->data(), n);
                          }));
}

void command_process::impl::on_stderr(const error_code& ec, const char* data, std::size_t n) {
  if (stderr_done_)
    return;
  if (ec) {
    end_stderr();
    return;
  }
  keep_tail(data, n);
  read_stderr();
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

void command_process::impl::end_stderr() {
  if (stderr_done_)
    return;
  stderr_done_ = true;
  error_code ignored;
  stderr_.close(ignored);
  maybe_finish();
}

// --- stdin ------------------------------------------------------------------

void command_process::impl::queue_line(std::string line) {
  if (finished_ || stdin_close_requested_ || stdin_closed_)
    return;
  line.push_back('\n');
  writes_.push_back(std::move(line));
  if (!writing_)
    write_next();
}

void command_process::impl::write_next() {
  if (writes_.empty() || stdin_closed_) {
    writing_ = false;
    if (stdin_close_requested_)
      close_stdin_now();
    return;
  }
  writing_ = true;
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
  if (stdin_close_requested_)
    return;
  stdin_close_requested_ = true;
  if (!writing_)
    close_stdin_now();
}

void command_process::impl::close_stdin_now() {
  stdin_closed_ = true;
  error_code ignored;
  stdin_.close(ignored);
  stdin_reader_.reset();
}

// --- exit and termination ---------------------------------------------------

void command_process::impl::watch_exit() {
  pidfd_.async_wait(asio::posix::stream_descriptor::wait_read,
                    guard([](impl& s, const error_code& ec) {
                      if (!ec && !s.exited_)
                        s.watch_exit();
                    }));
  // Asio's epoll reactor is edge-triggered and drops readiness that arrives
  // while no wait is queued, so look once more now that one is.
  check_exit();
}

void command_process::impl::check_exit() {
  if (exited_)
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
  exited_ = true;
  on_leader_exit();
}

void command_process::impl::on_leader_exit() {
  error_code ignored;
  pidfd_.close(ignored);
  if (!stdout_done_ || !stderr_done_) {
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
  if (finished_)
    return;
  signal_group(SIGKILL);
  end_stdout();
  end_stderr();
}

void command_process::impl::terminate(std::chrono::milliseconds grace) {
  if (finished_ || terminating_)
    return;
  terminating_ = true;
  signal_group(SIGTERM);
  // A stopped process would not act on SIGTERM before the grace runs out.
  signal_group(SIGCONT);
  kill_timer_.expires_after(grace);
  kill_timer_.async_wait(guard([](impl& s, const error_code& ec) {
    if (!ec && !s.finished_)
      s.signal_group(SIGKILL);
  }));
}

void command_process::impl::signal_group(int sig) {
  if (pid_ > 0 && !reaped_)
    ::kill(-pid_, sig);
}

void command_process::impl::maybe_finish() {
  if (finished_ || !exited_ || !stdout_done_ || !stderr_done_)
    return;
  finished_ = true;
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
