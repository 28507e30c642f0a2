#pragma once
// Frame batches: the frames a manager emits in one mailbox turn (its outbox) and the frames a
// session queues for one burst. A batch lives for one turn or one burst, so each would cost an
// allocation (and a few more as it grows); instead a finished batch is cleared and kept on the
// thread that finished it, for the next one to take. An idle connection holds no batch.

#include <string>
#include <vector>

namespace er::net {

using frame_batch = std::vector<std::string>;

/// An empty batch, with the capacity of one finished on this thread when there is one.
frame_batch take_frame_batch();

/// Clears `batch` and keeps it for take_frame_batch() on this thread (a few per thread; a
/// batch grown past a few hundred frames is freed instead). `batch` is left empty, without
/// storage.
void recycle_frame_batch(frame_batch& batch);

} // namespace er::net
