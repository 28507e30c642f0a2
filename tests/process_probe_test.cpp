// The tests' process probes (tests/process_probe.hpp) read /proc while the processes they ask
// about end and are reaped: a process that goes away during a read is "not running", never an
// error of the test.

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <exception>
#include <thread>

#include <doctest/doctest.h>

#include "tests/process_probe.hpp"

TEST_CASE("is_running and group_of answer 'no such process' while the process is being reaped") {
  // Each round forks a child that exits at once and reaps it on another thread while this one
  // asks about it. A read of /proc/PID/stat opened before the reaping and made after it fails
  // with ESRCH, which a std::ifstream turns into an exception: with a stream, about one round
  // in five throws here.
  int threw = 0;
  int answered_gone = 0;
  for (int round = 0; round < 300; ++round) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
      ::_exit(0);
    std::atomic<bool> reaped_yet{false};
    std::thread reaper([&] {
      ::waitpid(pid, nullptr, 0);
      reaped_yet = true;
    });
    bool gone = false;
    for (int probe = 0; probe < 10000 && !gone; ++probe) {
      try {
        bool running = er::test::is_running(pid);
        (void)er::test::group_of(pid);
        gone = !running && reaped_yet;
      } catch (const std::exception&) {
        ++threw;
        break;
      }
    }
    reaper.join();
    answered_gone += gone ? 1 : 0;
  }
  CHECK(threw == 0);
  CHECK(answered_gone == 300); // after the reaping, every probe said so
}
