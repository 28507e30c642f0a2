#pragma once
// Hands the heap's idle memory back to the system. glibc keeps what is freed in its arenas: after
// a burst (a reconnect storm, detached sessions whose window passes together) the process would
// stay at its peak RSS with a few MiB of heap in use. Every interval a thread of its own compares
// RSS with the heap in use and, when the difference passes both the threshold and the heap in use,
// calls malloc_trim(0), which returns the free pages inside every arena, not only at their tops.
// Not on an io thread: trimming 100 MiB takes about 15 ms (each arena is locked while its turn
// lasts). The check itself is one mallinfo2 and one read of /proc/self/statm.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>

namespace er::actors {
class router_metrics;
}

namespace er::app {

class heap_trimmer {
public:
  /// Starts checking every `interval`; `threshold`: the least idle memory worth a trim.
  heap_trimmer(std::chrono::milliseconds interval, std::size_t threshold,
               std::shared_ptr<actors::router_metrics> metrics);
  heap_trimmer(const heap_trimmer&) = delete;
  heap_trimmer& operator=(const heap_trimmer&) = delete;
  ~heap_trimmer(); ///< stops the thread and joins it

  /// Resident memory beyond the heap in use (what a trim could return, and also the binary,
  /// the stacks and the heap's free chunks), and whether that calls for a trim.
  static bool worth_trimming(std::size_t rss, std::size_t heap_in_use, std::size_t threshold);

private:
  void run();

  std::chrono::milliseconds interval_;
  std::size_t threshold_;
  std::shared_ptr<actors::router_metrics> metrics_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_; // last: started once the members it uses are
};

} // namespace er::app
