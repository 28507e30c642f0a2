#include "net/frame_batch.hpp"

#include <utility>

namespace er::net {

namespace {

constexpr std::size_t max_spares = 8;            ///< per thread
constexpr std::size_t max_kept_capacity = 256;   ///< frames; a larger batch is freed

std::vector<frame_batch>& spares() {
  thread_local std::vector<frame_batch> batches;
  return batches;
}

} // namespace

frame_batch take_frame_batch() {
  auto& pool = spares();
  if (pool.empty())
    return {};
  auto batch = std::move(pool.back());
  pool.pop_back();
  return batch;
}

void recycle_frame_batch(frame_batch& batch) {
  auto& pool = spares();
  if (batch.capacity() > 0 && batch.capacity() <= max_kept_capacity && pool.size() < max_spares) {
    batch.clear();
    pool.push_back(std::move(batch));
  }
  frame_batch{}.swap(batch);
}

} // namespace er::net
