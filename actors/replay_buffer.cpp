#include "actors/replay_buffer.hpp"

#include <algorithm>
#include <cstring>

namespace er::actors {

namespace {

constexpr std::size_t min_capacity = 4096;

} // namespace

replay_buffer::replay_buffer(std::size_t max_frames, std::size_t max_bytes)
  : max_frames_(max_frames), max_bytes_(max_bytes) {
}

void replay_buffer::push(std::uint64_t id, std::string_view frame) {
  if (max_frames_ == 0 || frame.size() > max_bytes_) {
    // Kept frames followed by a gap could not serve a resume: none is better.
    slots_.clear();
    begin_ = end_;
    return;
  }
  while (!slots_.empty() && (slots_.size() >= max_frames_ || bytes() + frame.size() > max_bytes_))
    drop_oldest();
  if (bytes() + frame.size() > ring_.size())
    grow(bytes() + frame.size());
  write_at(end_, frame);
  slots_.push_back(slot{id, end_, frame.size()});
  end_ += frame.size();
}

std::optional<std::uint64_t> replay_buffer::first_id() const {
  if (slots_.empty())
    return std::nullopt;
  return slots_.front().id;
}

void replay_buffer::drop_oldest() {
  slots_.pop_front();
  begin_ = slots_.empty() ? end_ : slots_.front().start;
}

void replay_buffer::grow(std::size_t needed) {
  auto capacity = std::max(ring_.size(), min_capacity);
  while (capacity < needed)
    capacity *= 2;
  capacity = std::min(capacity, max_bytes_); // needed <= max_bytes_: push dropped enough
  std::vector<char> old(capacity);
  old.swap(ring_);
  // Positions keep their meaning; only where they live changes.
  for (auto& s : slots_) {
    if (s.length == 0)
      continue;
    auto at = static_cast<std::size_t>(s.start % old.size());
    auto first = std::min(s.length, old.size() - at);
    write_at(s.start, {old.data() + at, first});
    write_at(s.start + first, {old.data(), s.length - first});
  }
}

std::string replay_buffer::read(const slot& s) const {
  std::string out(s.length, '\0');
  if (s.length == 0)
    return out;
  auto at = static_cast<std::size_t>(s.start % ring_.size());
  auto first = std::min(s.length, ring_.size() - at);
  std::memcpy(out.data(), ring_.data() + at, first);
  std::memcpy(out.data() + first, ring_.data(), s.length - first);
  return out;
}

void replay_buffer::write_at(std::uint64_t pos, std::string_view bytes) {
  if (bytes.empty())
    return;
  auto at = static_cast<std::size_t>(pos % ring_.size());
  auto first = std::min(bytes.size(), ring_.size() - at);
  std::memcpy(ring_.data() + at, bytes.data(), first);
  std::memcpy(ring_.data(), bytes.data() + first, bytes.size() - first);
}

} // namespace er::actors
