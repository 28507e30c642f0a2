#pragma once
// Flow control of a run whose source can outpace its manager: a command agent's stdout, an
// HTTP agent's response body. The source stops reading once what it delivered and the run has
// not released weighs a window; the run releases it once the manager has handled the events it
// became. It asks the manager (run_sync) after every sync_every of weight it handled: the
// answer comes once every event sent before the question has been handled (one sender's
// messages keep their order), and releases what was handled before it was asked. So neither
// the run's nor the manager's mailbox holds more than about a window of a run's events.
//
// The manager holds its answer while the client's socket is congested (its reader is slower
// than the runs: manager_state's run_table::held_syncs), so an agent that prints faster than
// its client reads fills its own pipe or socket, neither the router's memory nor the socket's
// queue up to its 4008 bound. The window is weighed per line (read_window.hpp), so that it
// bounds the frames its events become, and a source delivers a read's lines only up to the one
// that fills it: each run can add at most a window and one line behind a congested socket,
// which the defaults (4 runs per connection, a congestion mark at a quarter of the 1 MiB bound)
// keep within the bound.

#include <cstddef>
#include <utility>

#include <caf/fwd.hpp>

#include "actors/router/manager/parent_handles.hpp"
#include "actors/router/manager/runs/read_window.hpp"

namespace er::actors {

struct run_flow {
  /// Over a line's weight at its limit (64 KiB): a whole line always fits, so a source never
  /// waits on a line that cannot be completed.
  static constexpr std::size_t window = 128 * 1024;
  static constexpr std::size_t sync_every = 32 * 1024;
  /// What a line weighs beyond its bytes: about what its event's envelope (type, ids, event_id,
  /// timestamp) adds to the data the agent printed.
  static constexpr std::size_t line_weight = 256;

  std::size_t unsynced = 0; ///< weight handled since the last run_sync was asked
  bool syncing = false;     ///< a run_sync awaits its answer
};

/// `weight` of the run's source (read_window) was handled: its events sent to the manager (or
/// dropped). `self->state` has `flow` (run_flow), `parent` (run_parent) and
/// `release_source(weight)`, which tells the source it may read on.
template <class Pointer>
void flow_handled(Pointer self, std::size_t weight) {
  auto& f = self->state.flow;
  f.unsynced += weight;
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
