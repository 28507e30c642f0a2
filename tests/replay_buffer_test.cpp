// replay_buffer against a model (a deque of strings with the same two bounds): random frame
// sizes make the ring wrap, grow and evict by count and by bytes.

#include <deque>
#include <random>
#include <string>
#include <utility>

#include <doctest/doctest.h>

#include "actors/replay_buffer.hpp"

using er::actors::replay_buffer;

namespace {

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

std::vector<std::pair<std::uint64_t, std::string>> after(const replay_buffer& b, std::uint64_t id) {
  std::vector<std::pair<std::uint64_t, std::string>> out;
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
      REQUIRE(buffer.capacity() <= max_bytes);
      if (id % 97 == 0 || id == 3000) {
        auto from = m.frames.empty() ? id : m.frames.front().first + m.frames.size() / 2;
        auto got = after(buffer, from - 1);
        std::vector<std::pair<std::uint64_t, std::string>> want;
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
  CHECK(after(buffer, 0) == std::vector<std::pair<std::uint64_t, std::string>>{{4, std::string(10, 'd')}});
}

TEST_CASE("a frame that wrapped around the ring survives the ring's growth") {
  replay_buffer buffer{2, 1u << 20};
  buffer.push(1, std::string(1500, 'a'));
  buffer.push(2, std::string(1500, 'b'));
  std::string wrapped = std::string(1000, 'c') + std::string(500, 'C'); // crosses 4096
  buffer.push(3, wrapped);
  REQUIRE(buffer.capacity() == 4096);
  buffer.push(4, std::string(3000, 'd')); // 4,500 bytes kept: the ring doubles
  CHECK(buffer.capacity() == 8192);
  CHECK(after(buffer, 0) == std::vector<std::pair<std::uint64_t, std::string>>{
                              {3, wrapped}, {4, std::string(3000, 'd')}});
}
