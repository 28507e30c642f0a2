// net::frame_batch: a finished batch is kept, cleared, for the next one on the same thread;
// the pool stays small and never keeps a batch that grew large.

#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "net/frame_batch.hpp"

namespace {

using er::net::frame_batch;
using er::net::recycle_frame_batch;
using er::net::take_frame_batch;

void empty_the_pool() {
  for (int i = 0; i < 64; ++i)
    (void)take_frame_batch();
}

} // namespace

TEST_CASE("a recycled frame batch comes back empty with its storage, and leaves its owner without") {
  empty_the_pool();
  frame_batch batch;
  batch.reserve(8);
  batch.push_back(std::string(100, 'x'));
  const auto* storage = batch.data();
  recycle_frame_batch(batch);
  CHECK(batch.empty());
  CHECK(batch.capacity() == 0); // the caller keeps nothing: an idle connection holds no batch
  auto next = take_frame_batch();
  CHECK(next.empty());
  CHECK(next.capacity() == 8);
  CHECK(next.data() == storage);
  CHECK(take_frame_batch().capacity() == 0); // only one was kept
}

TEST_CASE("the frame batch pool keeps a few batches per thread and never a large one") {
  empty_the_pool();
  for (int i = 0; i < 20; ++i) {
    frame_batch batch;
    batch.reserve(4);
    recycle_frame_batch(batch);
  }
  int kept = 0;
  while (take_frame_batch().capacity() > 0)
    ++kept;
  CHECK(kept == 8);

  frame_batch large;
  large.reserve(100000);
  recycle_frame_batch(large);
  CHECK(large.capacity() == 0);
  CHECK(take_frame_batch().capacity() == 0); // freed, not kept

  frame_batch unused; // no storage: nothing to keep
  recycle_frame_batch(unused);
  CHECK(take_frame_batch().capacity() == 0);
}

TEST_CASE("frame batches recycled on one thread are not taken on another") {
  empty_the_pool();
  frame_batch batch;
  batch.reserve(16);
  recycle_frame_batch(batch);
  std::size_t elsewhere = 1;
  std::thread other{[&] { elsewhere = take_frame_batch().capacity(); }};
  other.join();
  CHECK(elsewhere == 0);
  CHECK(take_frame_batch().capacity() == 16);
}
