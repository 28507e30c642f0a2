#pragma once
// Recycled memory for the state of asynchronous operations.
//
// Every WebSocket read and write allocates its operation state (Beast's composed operation
// wrapped around asio's reactor operation); a write's is over 1 KiB. Boost 1.74 recycles one
// block of at most 1020 bytes per thread, so each frame would go to malloc with a "large"
// request, which glibc answers by consolidating its fast bins first (docs/performance.md has
// the measurement). Handlers wrapped by `recycled` allocate from per-thread free lists
// instead (bounded, sized in 16-byte classes), and asio and Beast pass that allocator down to
// every operation they compose.

#include <cstddef>
#include <type_traits>
#include <utility>

namespace er::net {

/// A block of at least `size` bytes from this thread's free lists (or operator new).
void* recycled_allocate(std::size_t size);
/// Gives a block back to this thread's free lists (or operator delete when they are full).
void recycled_deallocate(void* block, std::size_t size) noexcept;

template <class T>
class recycling_allocator {
public:
  using value_type = T;

  recycling_allocator() noexcept = default;
  template <class U>
  recycling_allocator(const recycling_allocator<U>&) noexcept {
  }

  T* allocate(std::size_t n) {
    return static_cast<T*>(recycled_allocate(n * sizeof(T)));
  }
  void deallocate(T* block, std::size_t n) noexcept {
    recycled_deallocate(block, n * sizeof(T));
  }

  template <class U>
  bool operator==(const recycling_allocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const recycling_allocator<U>&) const noexcept {
    return false;
  }
};

/// A completion handler whose associated allocator is recycling_allocator.
template <class Handler>
class recycled_handler {
public:
  using allocator_type = recycling_allocator<void>;

  explicit recycled_handler(Handler handler) : handler_(std::move(handler)) {
  }

  allocator_type get_allocator() const noexcept {
    return {};
  }

  template <class... Args>
  void operator()(Args&&... args) {
    handler_(std::forward<Args>(args)...);
  }

private:
  Handler handler_;
};

template <class Handler>
recycled_handler<std::decay_t<Handler>> recycled(Handler&& handler) {
  return recycled_handler<std::decay_t<Handler>>(std::forward<Handler>(handler));
}

} // namespace er::net
