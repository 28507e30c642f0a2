#pragma once
// Starting an agent's process with posix_spawn: its own session, default signal dispositions,
// stdin/stdout/stderr on pipes and no other descriptor of the host (command_process.hpp).

#include <sys/types.h>

#include <string>
#include <utility>

#include "actors/router/manager/runs/command_process.hpp"

namespace er::actors {

/// Owns one file descriptor.
class unique_fd {
public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {
  }
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {
  }
  unique_fd& operator=(unique_fd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  ~unique_fd() {
    reset();
  }

  int get() const {
    return fd_;
  }
  int release() {
    return std::exchange(fd_, -1);
  }
  void reset(int fd = -1);

private:
  int fd_ = -1;
};

struct pipe_ends {
  unique_fd read;
  unique_fd write;
};

/// A close-on-exec pipe whose ends lie above the standard descriptors.
pipe_ends make_pipe();

/// Starts `spec` with the given descriptors as its stdin, stdout and stderr; returns its pid.
/// Throws std::system_error when it cannot start, including when exec fails.
pid_t spawn_child(const command_spec& spec, int in, int out, int err);

[[noreturn]] void throw_errno(int err, const std::string& what);

} // namespace er::actors
