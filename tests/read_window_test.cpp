// actors::read_window, the source side of a run's flow control: what a read brings is delivered
// only as far as the window admits it, whole lines, never more than one line past the window,
// and weighed as the receiver weighs what it releases.

#include <cstddef>
#include <string>
#include <string_view>

#include <doctest/doctest.h>

#include "actors/router/manager/runs/read_window.hpp"

namespace {

using er::actors::read_window;

/// `n` lines of `line` (its '\n' added).
std::string lines(std::string_view line, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i)
    out.append(line).push_back('\n');
  return out;
}

} // namespace

TEST_CASE("a read of many short lines is admitted up to the line that fills the window") {
  read_window window{1000, 256}; // a line of 9 bytes and its '\n' weighs 266
  auto read = lines("123456789", 100);
  auto admitted = window.take(read);
  // 3 lines weigh 798, below the window: the 4th begins below it and is admitted whole (1064).
  CHECK(admitted == 40);
  CHECK(window.park_if_full());
  // Released below the window, the reader goes on with what it kept: 4 more lines.
  CHECK(window.release(1064));
  std::string_view kept{read};
  kept.remove_prefix(admitted);
  CHECK(window.take(kept) == 40);
  CHECK(window.park_if_full());
}

TEST_CASE("a window admits a line begun below it whole, however long") {
  read_window window{100, 0};
  CHECK(window.take("short\n") == 6);
  auto long_line = lines(std::string(5000, 'x'), 2);
  CHECK(window.take(long_line) == 5001); // one line past the window, not two
  CHECK(window.park_if_full());
  CHECK_FALSE(window.release(4000)); // 1007 still unreleased: stays parked
  CHECK(window.release(1007));
}

TEST_CASE("a line's beginning at the end of a read is admitted and weighed by its bytes, and "
          "its end brings its newline and line weight") {
  read_window window{10000, 100};
  CHECK(window.take("abc") == 3);
  CHECK(window.take("de\nfg") == 5);
  // What was admitted weighs what the receiver releases for the same bytes: the line "abcde"
  // (5 bytes, its '\n', 100) and the 2 bytes of the next one.
  CHECK(read_window::line_weight_of(5, 100) + 2
        == read_window::weight("abcde\nfg", 100));
  CHECK_FALSE(window.park_if_full());
  CHECK_FALSE(window.release(108)); // not parked: nothing to go on with
}

TEST_CASE("a full window admits nothing more, and parks until released below it") {
  read_window window{50, 0};
  auto read = lines("0123456789", 10);
  CHECK(window.take(read) == 55);
  CHECK(window.take(std::string_view{read}.substr(55)) == 0);
  CHECK(window.park_if_full());
  CHECK_FALSE(window.release(5)); // exactly at the window: still full
  CHECK(window.release(1));
  CHECK_FALSE(window.release(1)); // once per park
}

TEST_CASE("without a window everything is admitted and the reader never parks") {
  read_window window{0, 256};
  auto read = lines("x", 10000);
  CHECK(window.take(read) == read.size());
  CHECK_FALSE(window.park_if_full());
}
