#pragma once
// Splits a byte stream into lines of at most `max_line` bytes (without their '\n'), for the
// agents' line protocol: a command's stdout and an HTTP agent's NDJSON stream. Memory stays
// bounded: a line is refused as soon as it grows past the limit, before its end arrives.

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace er::actors {

class line_splitter {
public:
  explicit line_splitter(std::size_t max_line) : max_line_(max_line) {
  }

  /// Calls `on_line(std::string)` for every line completed by `data`. False once a line has
  /// overflowed: the stream is then refused, and later input is ignored.
  template <class OnLine>
  bool feed(std::string_view data, OnLine&& on_line) {
    while (!overflowed_ && !data.empty()) {
      auto newline = data.find('\n');
      auto piece = data.substr(0, newline);
      partial_.append(piece);
      if (partial_.size() > max_line_) {
        overflowed_ = true;
        std::string{}.swap(partial_);
        break;
      }
      if (newline == std::string_view::npos)
        break;
      on_line(std::exchange(partial_, std::string{}));
      data.remove_prefix(newline + 1);
    }
    return !overflowed_;
  }

  /// At the end of the stream: the last line when it had no '\n'.
  template <class OnLine>
  void finish(OnLine&& on_line) {
    if (!overflowed_ && !partial_.empty())
      on_line(std::exchange(partial_, std::string{}));
  }

  bool overflowed() const noexcept {
    return overflowed_;
  }
  std::size_t max_line() const noexcept {
    return max_line_;
  }

private:
  std::size_t max_line_;
  std::string partial_;
  bool overflowed_ = false;
};

} // namespace er::actors
