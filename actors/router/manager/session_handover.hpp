#pragma once
// A session moving to a connection on another node of a cluster (DESIGN §11.5), as the
// managers on both ends see it. The node holding the detached session (the "owner") offers it:
// the frames the client missed, the next event id, the session id and the runs still going on
// there. The node the client reconnected to adopts it: a new manager sends those frames,
// counts on from that id and lists those runs as remote. From then on the owner's manager
// only hosts its runs: it forwards their events to the adopter, unstamped (the adopter stamps
// them as its own), takes their stop_agent requests from it, and ends when they have ended
// or the adopted session ends. The routers carry these steps through the cluster bus.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>

#include "protocol/envelope.hpp"

namespace er::actors {

/// A run that stays on the owner's node: what the adopter needs to answer for it (an
/// agent_error with these ids if that node ends it without a final event, or sends none by
/// the run's deadline: a node that died says nothing).
struct offered_run {
  std::string run_id;
  std::optional<std::string> thread_id;
  std::optional<std::string> reply_to;
  /// When the run times out on the node running it, on this process's steady clock (a note
  /// carries the time left); max(): not known.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

struct session_offer {
  bool ok = false; ///< false: no such session to offer (then nothing else is set)
  /// The frames after the resumer's last_event_id, rendered, with their event ids, in order.
  std::vector<std::pair<std::uint64_t, std::string>> frames;
  std::uint64_t next_event_id = 1;
  std::string session_id;
  std::vector<offered_run> runs; ///< runs still active on the owner's side
  /// The owner may still start runs or answer requests for the session, hosted like `runs`
  /// (the adopter keeps its link to the owner for them): the client's socket there was still
  /// open (what it sent before its close is still handled), or a request was still in
  /// progress there when the offer stopped waiting for it.
  bool owner_busy = false;
  /// Filled by the adopting node, never sent: events published to the user that it handed on
  /// to its other sessions of the user after the owner's stream mark, before the offer came.
  /// The new manager sends them after the frames, stamped as its own.
  std::vector<protocol::outbound_event> published;
};

} // namespace er::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::session_offer)
