#pragma once
// replay_budget: what all replay buffers of a process may hold together
// (router.replay-budget-bytes). Each buffer reports the chunks it allocates and frees; the
// first manager to see the total over the limit tells the router, which ends detached
// sessions oldest first and, if that is not enough, caps the buffers of connected sessions
// so that the largest drop their oldest frames. Thread-safe: managers on every io thread
// share it; each push reads two atomics, each chunk allocated or freed writes one.

#include <atomic>
#include <cstddef>
#include <limits>

namespace er::actors {

class replay_budget {
public:
  explicit replay_budget(std::size_t limit) : limit_(limit) {
  }

  std::size_t limit() const noexcept {
    return limit_;
  }
  std::size_t used() const noexcept {
    return used_.load(std::memory_order_relaxed);
  }
  void allocated(std::size_t bytes) noexcept {
    used_.fetch_add(bytes, std::memory_order_relaxed);
  }
  void freed(std::size_t bytes) noexcept {
    used_.fetch_sub(bytes, std::memory_order_relaxed);
  }
  bool over() const noexcept {
    return used() > limit_;
  }

  /// True for one caller until enforcement_done(): the one that asks the router to enforce
  /// the budget. The router ends the turn once the buffers are back under the budget.
  bool claim_enforcement() noexcept {
    return !enforcing_.load(std::memory_order_relaxed) && !enforcing_.exchange(true);
  }
  void enforcement_done() noexcept {
    enforcing_.store(false);
  }

  /// The most bytes one connected session's buffer may keep while the budget is tight.
  std::size_t buffer_cap() const noexcept {
    return cap_.load(std::memory_order_relaxed);
  }
  void set_buffer_cap(std::size_t bytes) noexcept {
    cap_.store(bytes, std::memory_order_relaxed);
  }
  /// Lifts the cap once the buffers hold less than half the limit again.
  void relax_cap_if_low() noexcept {
    if (used() < limit_ / 2 && buffer_cap() != no_cap)
      set_buffer_cap(no_cap);
  }

  static constexpr std::size_t no_cap = std::numeric_limits<std::size_t>::max();

private:
  std::size_t limit_;
  std::atomic<std::size_t> used_{0};
  std::atomic<std::size_t> cap_{no_cap};
  std::atomic<bool> enforcing_{false};
};

} // namespace er::actors
