// replay_buffer against a model (a deque of strings with the same two bounds): random frame
// sizes span chunks and evict by count and by bytes.

#include <algorithm>
#include <deque>
#include <random>
#include <string>
#include <utility>

#include <doctest/doctest.h>

#include "actors/router/manager/replay_budget.hpp"
#include "actors/router/manager/replay_buffer.hpp"

using er::actors::replay_buffer;

namespace {

using frame_list = std::vector<std::pair<std::uint64_t, std::string>>;

struct model {
  std::size_t max_frames;
  std::size_t max_bytes;
  std::deque<std::pair<std::uint64_t, std::string>> frames;
  std::size_t bytes = 0;

  void push(std::uint64_t id, const std::string& frame) {
    if (frame.size() > max_bytes) {
      frames.clear();
      bytes = 0;
      return;
    }
    while (!frames.empty() && (frames.size() >= max_frames || bytes + frame.size() > max_bytes)) {
      bytes -= frames.front().second.size();
      frames.pop_front();
    }
    frames.emplace_back(id, frame);
    bytes += frame.size();
  }
};

frame_list after(const replay_buffer& b, std::uint64_t id) {
  frame_list out;
  b.for_each_after(id, [&](std::uint64_t i, std::string f) { out.emplace_back(i, std::move(f)); });
  return out;
}

} // namespace

TEST_CASE("replay_buffer keeps exactly what a deque bounded by frames and bytes keeps") {
  for (auto [max_frames, max_bytes] : {std::pair<std::size_t, std::size_t>{1000, 1u << 20},
                                       {50, 1u << 20}, {1000, 3000}, {7, 5000}, {1, 100}}) {
    CAPTURE(max_frames);
    CAPTURE(max_bytes);
    replay_buffer buffer{max_frames, max_bytes};
    model m{max_frames, max_bytes, {}, 0};
    std::mt19937 rng{static_cast<unsigned>(max_frames * 31 + max_bytes)};
    std::uniform_int_distribution<int> size{1, 700};
    for (std::uint64_t id = 1; id <= 3000; ++id) {
      std::string frame(static_cast<std::size_t>(size(rng)), '\0');
      for (auto& ch : frame)
        ch = static_cast<char>('a' + rng() % 26);
      buffer.push(id, frame);
      m.push(id, frame);
      REQUIRE(buffer.size() == m.frames.size());
      REQUIRE(buffer.bytes() == m.bytes);
      // The frames' bytes plus at most two partly used chunks.
      REQUIRE(buffer.capacity() <= m.bytes + 2 * replay_buffer::max_chunk);
      if (id % 97 == 0 || id == 3000) {
        auto from = m.frames.empty() ? id : m.frames.front().first + m.frames.size() / 2;
        auto got = after(buffer, from - 1);
        frame_list want;
        for (auto& f : m.frames)
          if (f.first >= from)
            want.push_back(f);
        REQUIRE(got == want);
        CHECK(buffer.first_id() == (m.frames.empty() ? std::nullopt
                                                     : std::optional{m.frames.front().first}));
      }
    }
  }
}

TEST_CASE("a frame larger than the byte bound empties the buffer: no replay with a gap") {
  replay_buffer buffer{100, 1000};
  buffer.push(1, std::string(400, 'a'));
  buffer.push(2, std::string(400, 'b'));
  buffer.push(3, std::string(1001, 'c'));
  CHECK(buffer.size() == 0);
  CHECK(buffer.first_id() == std::nullopt);
  buffer.push(4, std::string(10, 'd'));
  CHECK(buffer.first_id() == std::uint64_t{4});
  CHECK(after(buffer, 0) == frame_list{{4, std::string(10, 'd')}});
}

TEST_CASE("frames spanning chunks read back intact, chunks are freed with their last frame") {
  replay_buffer buffer{3, 1u << 20};
  std::vector<std::string> frames;
  for (int i = 0; i < 12; ++i) // 2, 4, 8, 16 KiB chunks, then 16 KiB ones: most frames span
    frames.push_back(std::string(5000 + static_cast<std::size_t>(i), static_cast<char>('a' + i)));
  for (std::size_t i = 0; i < frames.size(); ++i)
    buffer.push(i + 1, frames[i]);
  CHECK(after(buffer, 0) == frame_list{
                              {10, frames[9]}, {11, frames[10]}, {12, frames[11]}});
  // 15,030 bytes kept, within two or three 16 KiB chunks: the older ones are gone.
  CHECK(buffer.capacity() <= 3 * replay_buffer::max_chunk);
  buffer.push(13, std::string(2u << 20, 'x')); // over the byte bound: everything goes
  CHECK(buffer.size() == 0);
  CHECK(buffer.capacity() <= replay_buffer::max_chunk);
}

TEST_CASE("frames older than max_age are dropped, at a push and by expire") {
  using clock = replay_buffer::clock;
  replay_buffer b{100, 1 << 20, std::chrono::milliseconds{1000}};
  auto t0 = clock::now();
  b.push(1, "one", t0);
  b.push(2, "two", t0 + std::chrono::milliseconds{600});
  b.push(3, "three", t0 + std::chrono::milliseconds{1200}); // "one" is now 1.2 s old
  CHECK(b.first_id() == 2u);
  b.expire(t0 + std::chrono::milliseconds{1700});
  CHECK(b.first_id() == 3u);
  b.expire(t0 + std::chrono::milliseconds{2300});
  CHECK_FALSE(b.first_id());
  CHECK(b.bytes() == 0);
}

TEST_CASE("shrink_to drops the oldest frames until the bytes fit") {
  replay_buffer b{100, 1 << 20};
  for (std::uint64_t id = 1; id <= 10; ++id)
    b.push(id, std::string(100, 'a'));
  b.shrink_to(350);
  CHECK(b.size() == 3);
  CHECK(b.first_id() == 8u);
  CHECK(after(b, 0).front().first == 8);
}

TEST_CASE("a replay_budget counts every chunk a buffer holds, and caps what it keeps") {
  er::actors::replay_budget budget{1 << 20};
  {
    replay_buffer b{10000, 1 << 20, {}, &budget};
    for (std::uint64_t id = 1; id <= 500; ++id)
      b.push(id, std::string(300, 'x'));
    CHECK(budget.used() == b.capacity());
    CHECK(budget.used() >= b.bytes());
    budget.set_buffer_cap(10000);
    b.push(501, std::string(300, 'y')); // the cap applies from the next push
    CHECK(b.bytes() <= 10000);
    CHECK(budget.used() == b.capacity());
    CHECK(after(b, 0).back().first == 501);
  }
  CHECK(budget.used() == 0); // a destroyed buffer gives everything back
}

TEST_CASE("a buffer trimmed to nothing holds no chunk, and under a budget cap its chunks stay "
          "near the cap") {
  er::actors::replay_budget budget{1 << 30};
  replay_buffer b{10000, 1 << 20, {}, &budget};
  for (std::uint64_t id = 1; id <= 200; ++id) // grows to 16 KiB chunks
    b.push(id, std::string(300, 'x'));
  b.shrink_to(0);
  CHECK(b.size() == 0);
  CHECK(b.capacity() == 0);
  CHECK(budget.used() == 0);
  budget.set_buffer_cap(4096);
  std::size_t most = 0;
  for (std::uint64_t id = 201; id <= 1200; ++id) {
    b.push(id, std::string(300, 'y'));
    most = std::max(most, b.capacity());
    CHECK(b.bytes() <= 4096);
  }
  CHECK(most <= 2 * 4096); // the frames' bytes plus one partly used chunk, each at most the cap
  CHECK(budget.used() == b.capacity());
  budget.set_buffer_cap(0); // no replay at all
  b.push(1201, "z");
  CHECK(b.size() == 0);
  CHECK(b.capacity() == 0);
  CHECK(budget.used() == 0);
}
