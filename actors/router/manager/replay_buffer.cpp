#include "actors/router/manager/replay_buffer.hpp"

#include "actors/router/manager/replay_budget.hpp"

#include <algorithm>
#include <cstring>

namespace er::actors {

namespace {

constexpr std::size_t first_chunk = 2048;
constexpr std::size_t smallest_chunk = 256;

} // namespace

replay_buffer::replay_buffer(std::size_t max_frames, std::size_t max_bytes,
                             std::chrono::milliseconds max_age, replay_budget* budget)
  : max_frames_(max_frames), max_bytes_(max_bytes), max_age_(max_age), budget_(budget) {
}

replay_buffer::~replay_buffer() {
  if (budget_)
    budget_->freed(capacity());
}

void replay_buffer::clear() {
  slots_.clear();
  begin_ = end_;
  release_all_if_empty();
}

void replay_buffer::release_all_if_empty() {
  if (!slots_.empty())
    return;
  if (budget_)
    budget_->freed(capacity());
  chunks_.clear(); // the next frame begins a fresh chain at end_
}

void replay_buffer::push(std::uint64_t id, std::string_view frame, clock::time_point now) {
  auto limit = budget_ ? std::min(max_bytes_, budget_->buffer_cap()) : max_bytes_;
  if (max_frames_ == 0 || frame.size() > limit)
    return clear(); // kept frames followed by a gap could not serve a resume: none is better
  expire(now);
  while (!slots_.empty() && (slots_.size() >= max_frames_ || bytes() + frame.size() > limit))
    drop_oldest();
  release_chunks();
  slots_.push_back(slot{id, end_, frame.size(), now});
  while (!frame.empty()) {
    if (chunks_.empty() || end_ == chunks_.back().start + chunks_.back().size) {
      auto size = chunks_.empty() ? first_chunk : std::min(chunks_.back().size * 2, max_chunk);
      // A buffer capped by the budget keeps its chunks near the cap: a 16 KiB chunk holding a
      // 4 KiB cap's frames would hold the rest of it in the budget for nothing.
      size = std::min(size, std::max(limit, smallest_chunk));
      chunks_.push_back(chunk{end_, size, std::unique_ptr<char[]>(new char[size])});
      if (budget_)
        budget_->allocated(size);
    }
    auto& back = chunks_.back();
    auto at = static_cast<std::size_t>(end_ - back.start);
    auto n = std::min(frame.size(), back.size - at);
    std::memcpy(back.bytes.get() + at, frame.data(), n);
    frame.remove_prefix(n);
    end_ += n;
  }
}

std::size_t replay_buffer::capacity() const noexcept {
  std::size_t bytes = 0;
  for (auto& c : chunks_)
    bytes += c.size;
  return bytes;
}

std::optional<std::uint64_t> replay_buffer::first_id() const {
  if (slots_.empty())
    return std::nullopt;
  return slots_.front().id;
}

void replay_buffer::expire(clock::time_point now) {
  if (max_age_.count() == 0)
    return;
  auto oldest_kept = now - max_age_;
  while (!slots_.empty() && slots_.front().at < oldest_kept)
    drop_oldest();
  release_chunks();
  release_all_if_empty();
}

void replay_buffer::shrink_to(std::size_t bytes_kept) {
  while (!slots_.empty() && bytes() > bytes_kept)
    drop_oldest();
  release_chunks();
  release_all_if_empty();
}

void replay_buffer::drop_oldest() {
  slots_.pop_front();
  begin_ = slots_.empty() ? end_ : slots_.front().start;
}

void replay_buffer::release_chunks() {
  // A chunk with room is the last one and holds end_ >= begin_: it stays.
  while (!chunks_.empty() && chunks_.front().start + chunks_.front().size <= begin_) {
    if (budget_)
      budget_->freed(chunks_.front().size);
    chunks_.pop_front();
  }
}

std::string replay_buffer::read(const slot& s) const {
  std::string out;
  out.reserve(s.length);
  auto pos = s.start;
  auto c = chunks_.begin();
  while (out.size() < s.length) {
    while (pos >= c->start + c->size)
      ++c;
    auto at = static_cast<std::size_t>(pos - c->start);
    auto n = std::min(s.length - out.size(), c->size - at);
    out.append(c->bytes.get() + at, n);
    pos += n;
  }
  return out;
}

} // namespace er::actors
