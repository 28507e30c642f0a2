#pragma once
// Flow control of a run whose source can outpace its manager: a command agent's stdout, an
// HTTP agent's response body. The source stops reading once the bytes it delivered and the
// run has not released hold a window; the run releases bytes once the manager has handled the
// events they became. It asks the manager (run_sync) after every sync_every bytes it handled:
// the answer comes once every event sent before the question has been handled (one sender's
// messages keep their order), and releases the bytes handled before it was asked. So neither
// the run's nor the manager's mailbox holds more than about a window of a run's events, and
// an agent that prints faster than its client reads fills its own pipe or socket, not the
// router's memory.

#include <cstddef>
#include <utility>

#include <caf/fwd.hpp>

#include "actors/router/manager/parent_handles.hpp"

namespace er::actors {

struct run_flow {
  /// Over a line's limit (64 KiB): a whole line always fits, so a source never waits on a
  /// line that cannot be completed.
  static constexpr std::size_t window = 256 * 1024;
  static constexpr std::size_t sync_every = 64 * 1024;

  std::size_t unsynced = 0; ///< bytes handled since the last run_sync was asked
  bool syncing = false;     ///< a run_sync awaits its answer
};

/// `bytes` of the run's source were handled: their events sent to the manager (or dropped).
/// `self->state` has `flow` (run_flow), `parent` (run_parent) and `release_source(bytes)`,
/// which tells the source it may read on.
template <class Pointer>
void flow_handled(Pointer self, std::size_t bytes) {
  auto& f = self->state.flow;
  f.unsynced += bytes;
  if (f.syncing || f.unsynced < run_flow::sync_every)
    return;
  f.syncing = true;
  auto asked = std::exchange(f.unsynced, 0);
  self->request(self->state.parent, caf::infinite, run_sync_atom::value)
    .then([self, asked](bool) {
      self->state.flow.syncing = false;
      self->state.release_source(asked);
      flow_handled(self, 0); // what was handled meanwhile
    });
}

} // namespace er::actors
