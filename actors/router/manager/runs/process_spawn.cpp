#include "actors/router/manager/runs/process_spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <system_error>
#include <vector>

extern char** environ;

namespace er::actors {

void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

void unique_fd::reset(int fd) {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = fd;
}

namespace {

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

} // namespace

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

} // namespace er::actors
