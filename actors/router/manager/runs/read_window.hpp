#pragma once
// The source side of a run's flow control (run_flow.hpp): a reader that stops reading once the
// bytes it delivered and its receiver has not released hold the window, and reads on once they
// are released below it. Used on the reader's own strand only.

#include <algorithm>
#include <cstddef>

namespace er::actors {

class read_window {
public:
  /// 0: no window, the reader never waits.
  explicit read_window(std::size_t size) : size_(size) {
  }

  void delivered(std::size_t bytes) {
    unreleased_ += bytes;
  }

  /// After a read: whether the reader stops here (the window is full). release() then says
  /// when to read on.
  bool park_if_full() {
    parked_ = size_ != 0 && unreleased_ >= size_;
    return parked_;
  }

  /// The receiver is done with `bytes`: true when the reader was stopped and reads on now.
  bool release(std::size_t bytes) {
    unreleased_ -= std::min(bytes, unreleased_);
    if (!parked_ || unreleased_ >= size_)
      return false;
    parked_ = false;
    return true;
  }

private:
  std::size_t size_;
  std::size_t unreleased_ = 0; ///< bytes delivered, not yet released
  bool parked_ = false;        ///< stopped by the full window: no read is pending
};

} // namespace er::actors
