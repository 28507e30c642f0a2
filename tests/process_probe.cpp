#include "tests/process_probe.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

namespace er::test {

namespace {

struct proc_stat {
  char state;
  pid_t pgid;
};

// /proc/<pid>/stat (or a thread's, /proc/<pid>/task/<tid>/stat): "pid (comm) state ppid pgrp
// ...", comm may contain spaces. Read with open/read, not a stream: when the process is reaped between the open and the read,
// the read fails with ESRCH, which libstdc++'s filebuf turns into an exception. Here it means
// what a missing file means: no such process.
std::optional<proc_stat> read_stat_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return std::nullopt;
  std::string text;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0)
      break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  auto close_paren = text.rfind(')');
  if (close_paren == std::string::npos)
    return std::nullopt;
  std::istringstream rest(text.substr(close_paren + 1));
  proc_stat st{};
  pid_t ppid = 0;
  if (!(rest >> st.state >> ppid >> st.pgid))
    return std::nullopt;
  return st;
}

std::optional<proc_stat> read_stat(pid_t pid) {
  return read_stat_file("/proc/" + std::to_string(pid) + "/stat");
}

bool alive(const std::optional<proc_stat>& st) {
  return st && st->state != 'Z' && st->state != 'X';
}

/// Calls `f(entry name)` for each entry of `path`.
template <class F>
void each_entry(const char* path, F f) {
  DIR* dir = ::opendir(path);
  if (dir == nullptr)
    throw std::runtime_error(std::string{"cannot read "} + path);
  while (dirent* entry = ::readdir(dir))
    f(entry->d_name);
  ::closedir(dir);
}

} // namespace

bool is_running(pid_t pid) {
  return alive(read_stat(pid));
}

std::optional<pid_t> group_of(pid_t pid) {
  auto st = read_stat(pid);
  if (!st)
    return std::nullopt;
  return st->pgid;
}

int running_members_of_group(pid_t pgid) {
  int n = 0;
  each_entry("/proc", [&](const char* name) {
    char* end = nullptr;
    long pid = std::strtol(name, &end, 10);
    if (pid <= 0 || *end != '\0')
      return;
    auto st = read_stat(static_cast<pid_t>(pid));
    if (alive(st) && st->pgid == pgid)
      ++n;
  });
  return n;
}

bool is_stopped(pid_t pid) {
  auto tasks = "/proc/" + std::to_string(pid) + "/task";
  bool any = false;
  bool all = true;
  try {
    each_entry(tasks.c_str(), [&](const char* name) {
      if (name[0] == '.')
        return;
      auto st = read_stat_file(tasks + "/" + name + "/stat");
      if (!st)
        return; // the thread ended meanwhile
      any = true;
      all = all && (st->state == 'T' || st->state == 't');
    });
  } catch (const std::runtime_error&) {
    return false; // no such process
  }
  return any && all;
}

int open_fd_count() {
  int n = 0;
  each_entry("/proc/self/fd", [&](const char* name) { n += name[0] != '.' ? 1 : 0; });
  return n;
}

bool reaped(pid_t pid) {
  return ::waitpid(pid, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

} // namespace er::test
