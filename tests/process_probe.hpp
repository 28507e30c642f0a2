#pragma once
// What /proc says about processes and descriptors, for tests of the agents' processes.

#include <sys/types.h>

#include <optional>

namespace er::test {

/// Whether `pid` exists and is not a zombie (zombies count as gone: in a container nobody
/// may be reaping orphans).
bool is_running(pid_t pid);

/// The process group of `pid`; none when there is no such process.
std::optional<pid_t> group_of(pid_t pid);

/// Processes of group `pgid` that exist and are not zombies.
int running_members_of_group(pid_t pgid);

/// Whether every thread of `pid` is stopped. SIGSTOP stops a multi-threaded process one thread
/// at a time, each as it next runs: on a busy host its threads can go on for milliseconds
/// after kill() has returned, and answer what reaches them meanwhile.
bool is_stopped(pid_t pid);

/// Descriptors this process has open.
int open_fd_count();

/// Whether our child `pid` has been reaped (waitpid knows it no more).
bool reaped(pid_t pid);

} // namespace er::test
