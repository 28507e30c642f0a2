#pragma once

// Runs one external "command agent" process and turns its stdout into lines.
//
// Contract:
//  - The process runs in its own session/process group with default signal
//    dispositions and an empty signal mask; stdin and stdout are pipes, stderr
//    is drained and discarded (only a short tail is kept for diagnostics), no
//    other descriptor of the host is inherited.
//  - Callbacks run on the io_context, serialized on a strand. They must not
//    throw. on_line is never called after on_bad_output or on_exit.
//  - on_exit is called exactly once, after stdout and stderr reached EOF and
//    the process was reaped. Afterwards all callbacks are released.
//  - When the process exits while other members of its group still hold
//    stdout/stderr open, they get `orphan_grace` to finish, then the group is
//    killed. When the run ends, whatever is left of its group is killed, so
//    nothing the agent started outlives it (unless it left the group).
//  - The object owns the process: destroying it kills the group and reaps the
//    process (blocking briefly), and on_exit is then not called. Destroy it
//    before its io_context.
//  - write_line/close_stdin/terminate/consumed may be called from any thread;
//    they are no-ops once the process has finished.
//  - With an output_window, stdout's lines are delivered only while the lines
//    delivered and not yet released with consumed() weigh less than the
//    window (each line its bytes, its '\n' and output_line_weight:
//    read_window.hpp), so never more than one line past it; a read's further
//    lines wait in its buffer, and the pipe is read again once they are
//    delivered. An agent that prints faster than its events are handled waits
//    on a full pipe instead of filling the host's memory.
//
// Linux only (pidfd). No SIGCHLD handler is installed and SIGPIPE is never
// raised by writes to the process, whatever the host's signal setup is.

#include <sys/types.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace er::actors {

struct command_spec {
  std::string executable;         // searched in PATH if it contains no '/'
  std::vector<std::string> args;  // argv[1..]; argv[0] is `executable`
  std::size_t max_line_bytes = 65536;
  std::size_t output_window = 0;  // 0: stdout is read as fast as it comes
  std::size_t output_line_weight = 0; // what each line weighs in the window beyond its bytes
  std::chrono::milliseconds orphan_grace{1000};
};

struct process_exit {
  bool signaled;  // true: killed by signal `code`; false: exited with status `code`
  int code;       // -1 if the status was lost (someone else reaped the process)
};

struct command_callbacks {
  std::function<void(std::string line)> on_line;          // without the '\n'
  std::function<void(std::string reason)> on_bad_output;  // process is then terminated
  std::function<void(process_exit)> on_exit;
};

class command_process : public std::enable_shared_from_this<command_process> {
public:
  // Throws std::system_error if the process cannot be started, including when
  // the executable is missing or not executable (exec failure is synchronous).
  static std::shared_ptr<command_process> start(boost::asio::io_context& io,
                                                const command_spec& spec,
                                                command_callbacks cb);

  // Queues `line` + '\n'. Lines written after the process stopped reading are
  // dropped silently.
  void write_line(std::string line);

  // Closes stdin once the queued lines are written.
  void close_stdin();

  // The receiver is done with this `weight` of the lines delivered (see
  // output_window).
  void consumed(std::size_t weight);

  // SIGTERM to the process group, SIGKILL to it after `grace`. Idempotent.
  void terminate(std::chrono::milliseconds grace = std::chrono::milliseconds(500));

  // Valid as a process id until on_exit has been called.
  pid_t pid() const;

  // The last few KB the process wrote to stderr.
  std::string stderr_tail() const;

  command_process(const command_process&) = delete;
  command_process& operator=(const command_process&) = delete;
  ~command_process();

private:
  class impl;
  explicit command_process(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace er::actors
