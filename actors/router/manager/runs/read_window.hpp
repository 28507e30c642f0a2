#pragma once
// The source side of a run's flow control (run_flow.hpp): a reader that stops delivering once
// what it delivered and its receiver has not released weighs the window, and goes on once it is
// released below it. Used on the reader's own strand only.
//
// A read can bring many lines (a 16 KiB read of the shortest agent events is 630 of them, 177 KiB
// of weight): the reader hands on only the part of it that take() admits, whole lines while the
// window is not full, and keeps the rest for when the window is released. So what is delivered
// and not released never passes the window by more than one line.
//
// An agent's output is a stream of lines, each of which becomes one event: a line weighs its
// bytes plus a fixed `line_weight` (what an event's envelope adds), so that a window bounds the
// frames its events become, however short the lines are. Both sides weigh the same bytes with
// the same functions: the reader what it delivers, the receiver what it releases.

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace er::actors {

class read_window {
public:
  /// size 0: no window, the reader never waits.
  explicit read_window(std::size_t size, std::size_t line_weight = 0)
    : size_(size), line_weight_(line_weight) {
  }

  /// What `bytes` of a stream of lines weigh: their size, plus `line_weight` for each line
  /// they end ('\n').
  static std::size_t weight(std::string_view bytes, std::size_t line_weight) {
    auto lines = static_cast<std::size_t>(std::count(bytes.begin(), bytes.end(), '\n'));
    return bytes.size() + lines * line_weight;
  }

  /// What one line of `line_bytes` (its '\n' not included) weighs: as weight() counts it.
  static std::size_t line_weight_of(std::size_t line_bytes, std::size_t line_weight) {
    return line_bytes + 1 + line_weight;
  }

  /// How many of `bytes` (read, not yet delivered) to deliver now, counted as delivered: up to
  /// and including the line that fills the window (a line begun below it is delivered whole),
  /// or all of them when they do not fill it. The reader keeps the rest for after a release.
  std::size_t take(std::string_view bytes) {
    if (size_ == 0) // no window: nothing to count
      return bytes.size();
    std::size_t at = 0;
    while (at < bytes.size() && unreleased_ < size_) {
      auto newline = bytes.find('\n', at);
      if (newline == std::string_view::npos) { // a line's beginning: its end comes later
        unreleased_ += bytes.size() - at;
        return bytes.size();
      }
      unreleased_ += newline + 1 - at + line_weight_;
      at = newline + 1;
    }
    return at;
  }

  /// After a delivery: whether the reader stops here (the window is full), keeping what take()
  /// did not admit. release() then says when to go on.
  bool park_if_full() {
    parked_ = size_ != 0 && unreleased_ >= size_;
    return parked_;
  }

  /// The receiver is done with `weight`: true when the reader was stopped and goes on now
  /// (first with what it kept, then reading).
  bool release(std::size_t weight) {
    unreleased_ -= std::min(weight, unreleased_);
    if (!parked_ || unreleased_ >= size_)
      return false;
    parked_ = false;
    return true;
  }

private:
  std::size_t size_;
  std::size_t line_weight_;
  std::size_t unreleased_ = 0; ///< weight delivered, not yet released
  bool parked_ = false;        ///< stopped by the full window: no read is pending
};

} // namespace er::actors
