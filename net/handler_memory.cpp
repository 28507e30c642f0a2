#include "net/handler_memory.hpp"

#include <array>
#include <new>
#include <utility>

namespace er::net {

namespace {

// 16-byte classes: an idle connection keeps its pending read in such a block, and a coarser
// rounding would be paid by every one of them.
constexpr std::size_t granule = 16;
constexpr std::size_t classes = 256;                  // blocks up to 4 KiB are recycled
constexpr std::size_t max_cached_bytes = 512 * 1024;  // per thread

struct free_block {
  free_block* next;
};

class block_cache {
public:
  block_cache() = default;
  block_cache(const block_cache&) = delete;
  block_cache& operator=(const block_cache&) = delete;

  ~block_cache() {
    destroyed = true; // blocks freed later on this thread (thread exit) bypass the cache
    for (auto head : heads_)
      while (head != nullptr)
        ::operator delete(std::exchange(head, head->next));
  }

  void* take(std::size_t cls) {
    auto head = heads_[cls];
    if (head == nullptr)
      return nullptr;
    heads_[cls] = head->next;
    cached_ -= (cls + 1) * granule;
    return head;
  }

  bool give(std::size_t cls, void* block) {
    auto bytes = (cls + 1) * granule;
    if (cached_ + bytes > max_cached_bytes)
      return false;
    heads_[cls] = new (block) free_block{heads_[cls]};
    cached_ += bytes;
    return true;
  }

  static thread_local bool destroyed; // trivially destructible: readable until the end

private:
  std::array<free_block*, classes> heads_{};
  std::size_t cached_ = 0;
};

thread_local bool block_cache::destroyed = false;
thread_local block_cache cache;

// Size class of a request: blocks are (class + 1) * granule bytes.
std::size_t class_of(std::size_t size) {
  return size == 0 ? 0 : (size - 1) / granule;
}

} // namespace

void* recycled_allocate(std::size_t size) {
  auto cls = class_of(size);
  if (cls >= classes || block_cache::destroyed)
    return ::operator new(size);
  if (auto block = cache.take(cls))
    return block;
  return ::operator new((cls + 1) * granule);
}

void recycled_deallocate(void* block, std::size_t size) noexcept {
  if (block == nullptr)
    return;
  auto cls = class_of(size);
  if (cls >= classes || block_cache::destroyed || !cache.give(cls, block))
    ::operator delete(block);
}

} // namespace er::net
