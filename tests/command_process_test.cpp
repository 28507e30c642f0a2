#include "actors/router/manager/runs/command_process.hpp"

#include <doctest/doctest.h>

#include "tests/eventually.hpp"
#include "tests/process_probe.hpp"

#include <boost/asio/io_context.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using er::actors::command_callbacks;
using er::actors::command_process;
using er::actors::command_spec;
using er::actors::process_exit;
using namespace std::chrono_literals;
using er::test::eventually;
using er::test::group_of;
using er::test::is_running;
using er::test::open_fd_count;
using er::test::reaped;
using er::test::running_members_of_group;

namespace {

command_spec shell(std::string script) {
  command_spec spec;
  spec.executable = "/bin/sh";
  spec.args = {"-c", std::move(script)};
  return spec;
}

// Collects callbacks; the io_context runs in the test thread, always bounded.
struct recorder {
  std::vector<std::string> events; // "line:...", "bad:...", "exit" in call order
  std::vector<std::string> lines;
  std::vector<std::string> bad_output;
  std::optional<process_exit> exit;
  int exit_calls = 0;

  command_callbacks callbacks() {
    command_callbacks cb;
    cb.on_line = [this](std::string line) {
      events.push_back("line:" + line);
      lines.push_back(std::move(line));
    };
    cb.on_bad_output = [this](std::string reason) {
      events.push_back("bad:" + reason);
      bad_output.push_back(std::move(reason));
    };
    cb.on_exit = [this](process_exit e) {
      events.push_back("exit");
      exit = e;
      ++exit_calls;
    };
    return cb;
  }
};

template <class Pred>
bool run_until(boost::asio::io_context& io, Pred pred, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    if (io.stopped())
      io.restart();
    io.run_for(10ms);
  }
  return true;
}

// Gives every test a warmed-up io_context (the reactor opens its own fds on
// first use) and the fd count to come back to.
struct fixture {
  boost::asio::io_context io;
  recorder rec;
  int fds_before = 0;

  fixture() {
    recorder warmup;
    auto p = command_process::start(io, shell("true"), warmup.callbacks());
    REQUIRE(run_until(io, [&] { return warmup.exit.has_value(); }));
    p.reset();
    io.poll();
    fds_before = open_fd_count();
  }

  std::shared_ptr<command_process> start(command_spec spec) {
    return command_process::start(io, spec, rec.callbacks());
  }

  bool wait_exit(std::chrono::milliseconds timeout = 10s) {
    return run_until(io, [&] { return rec.exit.has_value(); }, timeout);
  }

  bool wait_lines(std::size_t n) {
    return run_until(io, [&] { return rec.lines.size() >= n; });
  }

  // Lets late handlers run, so the counts below see the final state.
  void settle(std::shared_ptr<command_process>& p) {
    p.reset();
    io.poll();
  }
};

std::string example_agent_path() {
#ifdef ER_EXAMPLE_AGENT
  return ER_EXAMPLE_AGENT;
#else
  std::string here = __FILE__;
  auto slash = here.rfind("/tests/");
  return (slash == std::string::npos ? std::string(".") : here.substr(0, slash)) +
         "/agents/example-agent";
#endif
}

} // namespace

TEST_CASE_FIXTURE(fixture, "a process that prints lines delivers each line in order, then its exit status") {
  auto p = start(shell("printf 'one\\ntwo\\n\\nthree'"));
  REQUIRE(wait_exit());
  CHECK(rec.lines == std::vector<std::string>{"one", "two", "", "three"});
  CHECK(rec.events.back() == "exit");
  CHECK_FALSE(rec.exit->signaled);
  CHECK(rec.exit->code == 0);
  CHECK(rec.exit_calls == 1);
}

TEST_CASE_FIXTURE(fixture, "a line written to stdin reaches the process") {
  auto p = start(shell("read line; echo \"got:$line\""));
  p->write_line("hello world");
  REQUIRE(wait_exit());
  CHECK(rec.lines == std::vector<std::string>{"got:hello world"});
}

TEST_CASE_FIXTURE(fixture, "close_stdin ends the input after every queued line was written") {
  auto p = start(command_spec{"cat", {}});
  p->write_line("first");
  p->write_line("second");
  p->close_stdin();
  p->write_line("ignored after close");
  REQUIRE(wait_exit());
  CHECK(rec.lines == std::vector<std::string>{"first", "second"});
  CHECK(rec.exit->code == 0);
}

TEST_CASE_FIXTURE(fixture, "a line longer than the pipe buffer is written completely") {
  auto p = start(shell("wc -c"));
  p->write_line(std::string(300000, 'x'));
  p->close_stdin();
  REQUIRE(wait_exit());
  REQUIRE(rec.lines.size() == 1);
  CHECK(std::stoi(rec.lines[0]) == 300001);
}

TEST_CASE_FIXTURE(fixture, "writing to a process that closed its stdin neither fails nor raises SIGPIPE") {
  auto p = start(shell("exec 0<&-; echo ready; sleep 0.3"));
  REQUIRE(wait_lines(1));
  for (int i = 0; i < 20; ++i)
    p->write_line("nobody reads this");
  REQUIRE(wait_exit());
  CHECK_FALSE(rec.exit->signaled);
  CHECK(rec.exit->code == 0);
}

TEST_CASE_FIXTURE(fixture, "a non-zero exit code is reported") {
  auto p = start(shell("echo before; exit 3"));
  REQUIRE(wait_exit());
  CHECK(rec.lines == std::vector<std::string>{"before"});
  CHECK_FALSE(rec.exit->signaled);
  CHECK(rec.exit->code == 3);
}

TEST_CASE_FIXTURE(fixture, "a crash is reported as the signal that killed the process") {
  auto p = start(shell("ulimit -c 0; kill -SEGV $$"));
  REQUIRE(wait_exit());
  CHECK(rec.exit->signaled);
  CHECK(rec.exit->code == SIGSEGV);
}

TEST_CASE_FIXTURE(fixture, "terminate() ends a hanging process and everything in its process group") {
  auto p = start(shell("sleep 30 & echo $!; sleep 30"));
  REQUIRE(wait_lines(1));
  pid_t leader = p->pid();
  pid_t grandchild = std::stoi(rec.lines[0]);
  REQUIRE(group_of(grandchild));
  CHECK(*group_of(grandchild) == leader);
  CHECK(group_of(leader) == leader);

  p->terminate();
  p->terminate(); // idempotent
  REQUIRE(wait_exit(5s));
  CHECK(rec.exit->signaled);
  CHECK(rec.exit->code == SIGTERM);
  CHECK(eventually([&] { return !is_running(grandchild); }));
  CHECK(eventually([&] { return running_members_of_group(leader) == 0; }));
  p->terminate(); // after the end: no effect, no second on_exit
  io.poll();
  CHECK(rec.exit_calls == 1);
  CHECK(reaped(leader));
  settle(p);
  CHECK(open_fd_count() == fds_before);
}

TEST_CASE_FIXTURE(fixture, "a process that ignores SIGTERM is killed with SIGKILL once the grace period is over") {
  auto p = start(shell("trap '' TERM; echo ready; sleep 30"));
  REQUIRE(wait_lines(1));
  auto asked = std::chrono::steady_clock::now();
  p->terminate(300ms);
  REQUIRE(wait_exit(5s));
  auto took = std::chrono::steady_clock::now() - asked;
  CHECK(rec.exit->signaled);
  CHECK(rec.exit->code == SIGKILL);
  CHECK(took >= 290ms);
  CHECK(took < 3s);
  CHECK(eventually([&] { return running_members_of_group(p->pid()) == 0; }));
}

TEST_CASE_FIXTURE(fixture, "an over-long stdout line is reported as bad output and the process is terminated") {
  command_spec spec = shell("echo short; head -c 5000 /dev/zero | tr '\\000' a; echo; echo after; sleep 30");
  spec.max_line_bytes = 1000;
  auto p = start(spec);
  REQUIRE(wait_exit(5s));
  CHECK(rec.lines == std::vector<std::string>{"short"});
  REQUIRE(rec.bad_output.size() == 1);
  CHECK(rec.bad_output[0].find("1000") != std::string::npos);
  CHECK(rec.exit->signaled);
  CHECK(rec.exit->code == SIGTERM);
}

TEST_CASE_FIXTURE(fixture, "a line of exactly max_line_bytes is still accepted") {
  command_spec spec = shell("head -c 1000 /dev/zero | tr '\\000' a; echo");
  spec.max_line_bytes = 1000;
  auto p = start(spec);
  REQUIRE(wait_exit());
  CHECK(rec.bad_output.empty());
  REQUIRE(rec.lines.size() == 1);
  CHECK(rec.lines[0] == std::string(1000, 'a'));
}

TEST_CASE_FIXTURE(fixture, "starting a missing executable throws system_error naming it and leaves nothing behind") {
  CHECK_THROWS_AS(start(command_spec{"/nonexistent/agent", {}}), std::system_error);
  CHECK_THROWS_AS(start(command_spec{"no-such-agent-in-path", {}}), std::system_error);
  CHECK_THROWS_AS(start(command_spec{"", {}}), std::system_error);
  try {
    start(command_spec{"/nonexistent/agent", {}});
    FAIL("no exception");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("/nonexistent/agent") != std::string::npos);
    CHECK(e.code().value() == ENOENT);
  }
  io.poll();
  CHECK(rec.exit_calls == 0);
  CHECK(open_fd_count() == fds_before);
}

TEST_CASE_FIXTURE(fixture, "starting a file without execute permission throws instead of exiting with 127") {
  char path[] = "/tmp/command_process_test_XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  const char script[] = "#!/bin/sh\necho should not run\n";
  CHECK(::write(fd, script, sizeof script - 1) == static_cast<ssize_t>(sizeof script - 1));
  ::close(fd);
  ::chmod(path, 0644);
  try {
    start(command_spec{path, {}});
    FAIL("no exception");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EACCES);
  }
  ::unlink(path);
  io.poll();
  CHECK(rec.exit_calls == 0);
  CHECK(open_fd_count() == fds_before);
}

TEST_CASE_FIXTURE(fixture, "descriptors of the host are not inherited by the process") {
  int leaky = ::open("/dev/null", O_RDONLY); // deliberately without O_CLOEXEC
  REQUIRE(leaky > 2);
  auto p = start(shell("[ -e /proc/$$/fd/" + std::to_string(leaky) + " ] && echo leaked; "
                       "[ -e /proc/$$/fd/0 ] && [ -e /proc/$$/fd/1 ] && [ -e /proc/$$/fd/2 ] && echo stdio"));
  REQUIRE(wait_exit());
  ::close(leaky);
  CHECK(rec.lines == std::vector<std::string>{"stdio"});
}

namespace {
// Restores the host's signal setup even when a REQUIRE fails.
struct hostile_signal_setup {
  struct sigaction old_pipe {}, old_term {};
  sigset_t old_mask{};
  hostile_signal_setup() {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old_pipe);
    ::sigaction(SIGTERM, &ignore, &old_term);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  }
  ~hostile_signal_setup() {
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
  }
};
} // namespace

TEST_CASE_FIXTURE(fixture, "the process starts with default signal handling whatever the host ignores or blocks") {
  hostile_signal_setup hostile;
  auto p = start(command_spec{"grep", {"-E", "^Sig(Ign|Blk):", "/proc/self/status"}});
  REQUIRE(wait_exit());
  REQUIRE(rec.lines.size() == 2);
  // Only signals 1..31: glibc's posix_spawn always leaves its internal
  // signals 32 and 33 ignored, which no agent relies on.
  for (const auto& line : rec.lines) {
    auto mask = std::stoull(line.substr(line.find('\t') + 1), nullptr, 16);
    CHECK_MESSAGE((mask & 0x7fffffffULL) == 0, line);
  }
  CHECK(rec.lines[0] == "SigBlk:\t0000000000000000");
}

TEST_CASE_FIXTURE(fixture, "a finished process leaves no zombie and no open descriptor") {
  auto p = start(shell("read x; echo out; echo err >&2"));
  pid_t pid = p->pid();
  p->write_line("go");
  REQUIRE(wait_exit());
  CHECK(reaped(pid));
  settle(p);
  CHECK(open_fd_count() == fds_before);
}

TEST_CASE_FIXTURE(fixture, "destroying a running process kills its group, reaps it and closes its descriptors") {
  auto p = start(shell("sleep 30 & echo $!; sleep 30"));
  REQUIRE(wait_lines(1));
  pid_t leader = p->pid();
  pid_t grandchild = std::stoi(rec.lines[0]);
  settle(p);
  CHECK(reaped(leader));
  // SIGKILL is delivered asynchronously: dying takes each member a moment.
  CHECK(eventually([&] { return !is_running(grandchild); }));
  CHECK(eventually([&] { return running_members_of_group(leader) == 0; }));
  CHECK(rec.exit_calls == 0);
  CHECK(open_fd_count() == fds_before);
}

TEST_CASE_FIXTURE(fixture, "stderr output never arrives as a line but its tail is kept for diagnostics") {
  auto p = start(shell("echo out; echo 'err line' >&2; head -c 20000 /dev/zero | tr '\\000' e >&2; "
                       "echo ' last words' >&2; echo out2"));
  REQUIRE(wait_exit());
  CHECK(rec.lines == std::vector<std::string>{"out", "out2"});
  std::string tail = p->stderr_tail();
  CHECK(tail.size() <= 4096);
  CHECK(tail.size() > 100);
  CHECK(tail.find(" last words\n") != std::string::npos);
}

TEST_CASE_FIXTURE(fixture, "a background process holding stdout after the process exited is killed after orphan_grace") {
  command_spec spec = shell("sleep 30 & echo $!; echo done; exit 4");
  spec.orphan_grace = 200ms;
  auto p = start(spec);
  REQUIRE(wait_exit(5s));
  CHECK(rec.lines.size() == 2);
  CHECK_FALSE(rec.exit->signaled);
  CHECK(rec.exit->code == 4);
  pid_t orphan = std::stoi(rec.lines[0]);
  CHECK(eventually([&] { return !is_running(orphan); }));
  CHECK(reaped(p->pid()));
}

TEST_CASE_FIXTURE(fixture, "callbacks are serialized when the io_context runs on several threads") {
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  int lines = 0; // deliberately not atomic: the strand must protect it
  std::atomic<bool> done{false};
  command_callbacks cb;
  cb.on_line = [&](std::string) {
    if (inside.fetch_add(1) != 0)
      overlapped = true;
    ++lines;
    inside.fetch_sub(1);
  };
  cb.on_exit = [&](process_exit) { done = true; };
  auto p = command_process::start(io, shell("i=0; while [ $i -lt 2000 ]; do echo $i; i=$((i+1)); done"),
                                  std::move(cb));
  io.restart(); // the fixture's warm-up left it stopped
  auto work = [&] {
    while (!done && !io.stopped())
      io.run_for(10ms);
  };
  std::thread other(work);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done && std::chrono::steady_clock::now() < deadline)
    io.run_for(10ms);
  other.join();
  REQUIRE(done);
  CHECK_FALSE(overlapped);
  CHECK(lines == 2000);
}

TEST_CASE_FIXTURE(fixture, "the example agent answers a request with a stream of events ending in agent_completed") {
  std::string agent = example_agent_path();
  REQUIRE_MESSAGE(::access(agent.c_str(), X_OK) == 0, "example agent not found at " << agent);
  auto p = start(command_spec{agent, {}});
  p->write_line(R"({"run_id":"run-7","thread_id":"thread-1","agent":"example","payload":{"text":"ping pong"}})");
  p->close_stdin();
  REQUIRE(wait_exit());
  CHECK_FALSE(rec.exit->signaled);
  CHECK(rec.exit->code == 0);
  REQUIRE(rec.lines.size() >= 2);
  for (const auto& line : rec.lines) {
    CHECK(line.front() == '{');
    CHECK(line.back() == '}');
    CHECK(line.find("\"data\":") != std::string::npos);
  }
  CHECK(rec.lines.front().find("\"type\":\"agent_thinking\"") != std::string::npos);
  const std::string& last = rec.lines.back();
  CHECK(last.find("\"type\":\"agent_completed\"") != std::string::npos);
  CHECK(last.find("\"echo\":\"ping pong\"") != std::string::npos);
  CHECK(last.find("\"run_id\":\"run-7\"") != std::string::npos);
}

TEST_CASE_FIXTURE(fixture, "the example agent reports unusable input as agent_error") {
  std::string agent = example_agent_path();
  REQUIRE_MESSAGE(::access(agent.c_str(), X_OK) == 0, "example agent not found at " << agent);
  auto p = start(command_spec{agent, {}});
  p->write_line("this is not json");
  REQUIRE(wait_exit());
  REQUIRE(rec.lines.size() == 1);
  CHECK(rec.lines[0].find("\"type\":\"agent_error\"") != std::string::npos);
  CHECK(rec.exit->code == 2);
  CHECK(p->stderr_tail().find("not valid JSON") != std::string::npos);
}

TEST_CASE_FIXTURE(fixture, "with an output window stdout's lines are delivered only while the lines "
                           "delivered and not consumed hold less than the window: consumed() goes "
                           "on") {
  auto spec = shell("exec yes 0123456789"); // 11 bytes a line, for ever
  spec.output_window = 64 * 1024;
  auto p = start(spec);
  REQUIRE(wait_lines(1));
  run_until(io, [] { return false; }, 500ms); // the process had time to fill far more
  // Whole lines up to the one that filled the window (or the read ended within a line that
  // did): the rest of the read that filled it waits, where a read of up to 16 KiB used to be
  // delivered whole.
  auto held = rec.lines.size();
  CHECK(held * 11 + 11 > spec.output_window);
  CHECK(held * 11 < spec.output_window + 11);
  run_until(io, [] { return false; }, 300ms);
  CHECK(rec.lines.size() == held); // parked: nothing more is read
  p->consumed(held * 11);
  CHECK(run_until(io, [&] { return rec.lines.size() >= held + spec.output_window / 11; }));
  p->terminate();
  CHECK(wait_exit());
  settle(p);
}

TEST_CASE_FIXTURE(fixture, "with an output line weight each line weighs its bytes, its newline "
                           "and the weight: a window of short lines holds that many fewer") {
  auto spec = shell("exec yes 0123456789"); // 11 bytes a line, for ever
  spec.output_window = 64 * 1024;
  spec.output_line_weight = 100; // 111 a line
  auto p = start(spec);
  REQUIRE(wait_lines(1));
  run_until(io, [] { return false; }, 500ms);
  auto held = rec.lines.size();
  // Weighed by their bytes alone the window would hold 5,958 lines; a read of up to 16 KiB
  // brings 1,489 of them, far past the window: the lines past it wait.
  CHECK(held * 111 + 111 > spec.output_window);
  CHECK(held * 111 < spec.output_window + 111);
  run_until(io, [] { return false; }, 300ms);
  CHECK(rec.lines.size() == held);
  p->consumed(held * 111);
  CHECK(run_until(io, [&] { return rec.lines.size() >= held + spec.output_window / 111; }));
  p->terminate();
  CHECK(wait_exit());
  settle(p);
}
