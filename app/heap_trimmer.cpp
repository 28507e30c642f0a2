#include "app/heap_trimmer.hpp"

#include <fstream>
#include <utility>

#include <malloc.h>
#include <unistd.h>

#include "actors/metrics.hpp"

namespace er::app {

namespace {

/// Resident bytes of this process (/proc/self/statm), 0 when unreadable.
std::size_t resident_bytes() {
  std::ifstream statm{"/proc/self/statm"};
  std::size_t pages = 0, resident = 0;
  if (!(statm >> pages >> resident))
    return 0;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

} // namespace

heap_trimmer::heap_trimmer(std::chrono::milliseconds interval, std::size_t threshold,
                           std::shared_ptr<actors::router_metrics> metrics)
  : interval_(interval), threshold_(threshold), metrics_(std::move(metrics)),
    thread_([this] { run(); }) {
}

heap_trimmer::~heap_trimmer() {
  {
    std::lock_guard<std::mutex> lock{mutex_};
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

bool heap_trimmer::worth_trimming(std::size_t rss, std::size_t heap_in_use,
                                  std::size_t threshold) {
  // Idle memory up to the heap in use is what a busy process reuses within seconds: handing
  // it back would only cost page faults to take it again.
  auto idle = rss > heap_in_use ? rss - heap_in_use : 0;
  return idle > threshold && idle > heap_in_use;
}

void heap_trimmer::run() {
  std::unique_lock<std::mutex> lock{mutex_};
  while (!wake_.wait_for(lock, interval_, [this] { return stopping_; })) {
    auto heap = actors::read_heap();
    if (heap.in_use == 0 || !worth_trimming(resident_bytes(), heap.in_use, threshold_))
      continue; // no account of the heap (not glibc), or nothing worth returning
    ::malloc_trim(0);
    if (metrics_)
      metrics_->heap_trimmed();
  }
}

} // namespace er::app
