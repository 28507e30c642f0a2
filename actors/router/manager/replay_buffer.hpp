#pragma once
// replay_buffer: the last frames sent on a connection, kept so that a resumed session can
// replay what the client missed (DESIGN §8). Bounded three times: at most `max_frames`
// frames and `max_bytes` bytes (router.resume-buffer-events / router.resume-buffer-bytes),
// none older than `max_age` (router.resume-window-ms), oldest out first; a frame larger than
// `max_bytes` empties it, since what follows could no longer be replayed without a gap. The
// chunks it holds are counted in the process's replay_budget, which may cap it further
// (shrink_to). Whatever is dropped, a resume that needs it is refused, never served a gap.
//
// The frames lie back to back in a chain of byte chunks (2 KiB, doubling up to 16 KiB, then
// 16 KiB each); a frame may span chunks, and a chunk is freed once every frame in it is gone.
// Keeping a frame is a copy into memory already owned: no allocation per frame, and no late
// free of memory nobody has touched since. Chunks rather than one growing ring, which would
// regrow by copying itself (past glibc's mmap threshold an mmap, page faults and an munmap
// per growth, in step on every busy connection). Memory: the frames' bytes plus at most two
// partly used chunks, none larger than the budget's cap when one applies, and none at all
// once trimmed or expired to empty.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace er::actors {

class replay_budget;

class replay_buffer {
public:
  using clock = std::chrono::steady_clock;

  /// `max_age` zero: no age bound. `budget` (may be null) is told of every chunk.
  replay_buffer(std::size_t max_frames, std::size_t max_bytes,
                std::chrono::milliseconds max_age = {}, replay_budget* budget = nullptr);
  ~replay_buffer();
  replay_buffer(const replay_buffer&) = delete;
  replay_buffer& operator=(const replay_buffer&) = delete;

  /// Keeps `frame` as event `id` (ids increase) sent at `now`, dropping the oldest frames as
  /// the bounds require.
  void push(std::uint64_t id, std::string_view frame, clock::time_point now = clock::now());

  /// Drops the frames older than max_age.
  void expire(clock::time_point now);

  /// Drops the oldest frames until at most `bytes` are kept.
  void shrink_to(std::size_t bytes);

  /// The id of the oldest frame kept; none when empty.
  std::optional<std::uint64_t> first_id() const;

  /// Calls `f(id, frame)` for every frame after event `after`, oldest first.
  template <class F>
  void for_each_after(std::uint64_t after, F&& f) const {
    for (auto& s : slots_)
      if (s.id > after)
        f(s.id, read(s));
  }

  std::size_t size() const noexcept {
    return slots_.size();
  }
  /// Bytes of the frames kept.
  std::size_t bytes() const noexcept {
    return static_cast<std::size_t>(end_ - begin_);
  }
  /// Bytes allocated for them.
  std::size_t capacity() const noexcept;

  /// The largest chunk.
  static constexpr std::size_t max_chunk = 16384;

private:
  struct slot {
    std::uint64_t id;
    std::uint64_t start; ///< position in the stream of every byte ever pushed
    std::size_t length;
    clock::time_point at; ///< when it was sent
  };
  struct chunk {
    std::uint64_t start; ///< stream position of its first byte
    std::size_t size;
    std::unique_ptr<char[]> bytes;
  };

  void drop_oldest();
  void clear();
  void release_chunks(); // frees the chunks before begin_
  /// An empty buffer holds no chunk either (after a trim or expiry; not within a push, where
  /// the frame goes into the chunk kept).
  void release_all_if_empty();
  std::string read(const slot& s) const;

  std::size_t max_frames_;
  std::size_t max_bytes_;
  std::chrono::milliseconds max_age_;
  replay_budget* budget_;
  std::deque<chunk> chunks_; ///< cover [chunks_.front().start, end_) and maybe some room
  std::deque<slot> slots_;
  std::uint64_t begin_ = 0; ///< stream position of the oldest byte kept
  std::uint64_t end_ = 0;   ///< and one past the newest
};

} // namespace er::actors
