#pragma once
// One connection_manager per WebSocket connection. It owns the socket (the only writer) and
// the connection's UserExecutionContext, stamps every outbound frame with its own user_id and
// the next event_id, answers `ping` itself, and spawns the handlers and agent runs that serve
// its connection. Its children hold a parent handle (parent_handles.hpp) and nothing else:
// the thread store is reached only through the manager, which puts its own user_id into
// every query.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/local_actor.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/message_types.hpp"
#include "actors/metrics.hpp"
#include "actors/router/manager/parent_handles.hpp"
#include "actors/router/manager/replay_budget.hpp"
#include "actors/router/manager/session_handover.hpp"
#include "actors/router/manager/runs/agent_run.hpp"
#include "actors/runtime/socket_messages.hpp"
#include "actors/store/thread_store.hpp"
#include "net/connection.hpp"

namespace er::actors {

using connection_ptr = std::shared_ptr<net::ws_connection>;

using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>; ///< close with this code
using drain_atom = caf::atom_constant<caf::atom("drain")>;       ///< close once runs ended
using publish_atom = caf::atom_constant<caf::atom("publish")>;   ///< a backend's event
using resume_atom = caf::atom_constant<caf::atom("resume")>;     ///< a new socket, same session
using session_atom = caf::atom_constant<caf::atom("session")>;   ///< manager -> router
using deadline_atom = caf::atom_constant<caf::atom("deadline")>; ///< manager -> itself
using expire_atom = caf::atom_constant<caf::atom("expire")>;     ///< manager -> itself
using flush_atom = caf::atom_constant<caf::atom("flush")>;       ///< manager -> itself
using evict_atom = caf::atom_constant<caf::atom("evict")>;       ///< router: end if detached
using trim_atom = caf::atom_constant<caf::atom("trim")>;         ///< router: obey the budget cap
using budget_atom = caf::atom_constant<caf::atom("budget")>;     ///< manager -> router
// Moving a session between nodes (session_handover.hpp)
using offer_atom = caf::atom_constant<caf::atom("offer")>;       ///< router: offer the session
using handover_atom = caf::atom_constant<caf::atom("handover")>; ///< router: offer taken or not
using upstream_atom = caf::atom_constant<caf::atom("upstream")>; ///< router: a remote run's event
using upgone_atom = caf::atom_constant<caf::atom("upgone")>;     ///< router: remote runs lost
using remotereq_atom = caf::atom_constant<caf::atom("remotereq")>; ///< router: the adopter's stop
using forward_atom = caf::atom_constant<caf::atom("forward")>;   ///< host -> router: an event
using upreq_atom = caf::atom_constant<caf::atom("upreq")>;       ///< adopter -> router: a stop

/// What a manager tells the router: attached or detached, and a new resume token (empty: keep
/// the old one), so that the router can find a detached session and count open connections;
/// that the replay buffers went over their budget; and, for a session that moved between
/// nodes, what goes to the other end: a hosted run's event (from the node the session left),
/// a stop_agent for a run hosted there (from the node that adopted it).
using router_feedback = caf::typed_actor<
  caf::reacts_to<session_atom, bool /* attached */, std::string /* resume token */>,
  caf::reacts_to<budget_atom>,
  caf::reacts_to<forward_atom, protocol::outbound_event>,
  caf::reacts_to<upreq_atom, protocol::inbound_message>>;

struct manager_settings {
  std::string server_id;
  net::session_limits session;   ///< reported to clients in connection_established
  std::size_t max_runs_per_connection = 4;
  std::size_t max_connections_per_user = 8;
  std::chrono::milliseconds resume_window{0}; ///< 0: no resume, a dropped connection ends
  std::size_t resume_buffer_events = 1000;
  std::size_t resume_buffer_bytes = 1048576;
  std::size_t max_detached_per_user = 8;
  /// How long the router waits for a detached session's manager to take a resume before it
  /// gives the connection to a fresh one (not configurable: tests shorten it).
  std::chrono::milliseconds resume_answer_timeout{5000};
  std::shared_ptr<replay_budget> budget; ///< all replay buffers together; may be null
  /// Appended to every resume token: in a cluster it names this node (cluster_bus.hpp), so
  /// that another node can find the session; empty on a single node.
  std::string resume_token_suffix;
  std::size_t messages_per_second = 50; ///< the token bucket of each connection
  std::size_t messages_burst = 100;
  thread_store_actor store;
  std::shared_ptr<const agent_catalog> agents;
  std::shared_ptr<router_metrics> metrics; ///< may be null (unit tests)
  bool test_faults = false; ///< agents.test-agents: `test_fault` messages throw (tests only)
};

/// Its children's views of it (parent_handles.hpp) and what the socket and the router say.
using manager_actor = handler_parent::extend_with<run_parent>::extend<
  caf::reacts_to<frame_atom, std::string>,          // an inbound text frame
  caf::reacts_to<binary_atom, std::uint64_t>,       // an inbound binary frame (refused)
  // the socket closed: code, clean, by_peer (the code is the client's), and the generation of
  // the attachment it belonged to
  caf::reacts_to<closed_atom, std::uint16_t, bool, bool, std::uint64_t>,
  // the socket of this attachment generation is no longer congested (held run_syncs go)
  caf::reacts_to<writable_atom, std::uint64_t>,
  caf::reacts_to<shutdown_atom, std::uint16_t>,     // close the socket with this code
  caf::reacts_to<drain_atom>,                       // close with 1001 once runs ended
  caf::reacts_to<deadline_atom>,                    // time to check runs' deadlines
  caf::reacts_to<flush_atom>,                       // the held outbox may leave now
  caf::reacts_to<publish_atom, protocol::outbound_event>, // a backend's event for this user
  // a new socket for this detached session: resumes after last_event_id, or answers false
  caf::replies_to<resume_atom, connection_ptr, std::uint64_t,
                  context::user_execution_context>::with<bool>,
  caf::reacts_to<expire_atom, std::uint64_t>,       // the resume window passed
  // the router ends a detached session (per-user bound, replay budget): the bytes it freed;
  // an attached one stays and answers 0
  caf::replies_to<evict_atom>::with<std::uint64_t>,
  caf::reacts_to<trim_atom>,                        // shrink the replay buffer to the cap
  // another node adopts this session: what it needs, or ok=false; the manager then hosts
  // its runs for that node only (session_handover.hpp)
  caf::replies_to<offer_atom, std::uint64_t>::with<session_offer>,
  caf::reacts_to<handover_atom, bool>,              // the offer was taken (or not: end)
  caf::reacts_to<remotereq_atom, protocol::inbound_message>, // the adopter's stop_agent
  caf::reacts_to<upstream_atom, protocol::outbound_event>,   // an event of a remote run
  caf::reacts_to<upgone_atom>>;                     // the node hosting remote runs ended them

/// Spawned by the router, linked to it (see router.hpp); `connection` is not started yet.
/// The manager reports its session state and resume token to `router`. With an `adopted`
/// offer (ok) it continues that session, offered by another node, instead of a new one.
manager_actor spawn_connection_manager(caf::local_actor* parent, router_feedback router,
                                       connection_ptr connection,
                                       context::user_execution_context ctx,
                                       std::shared_ptr<const manager_settings> settings,
                                       session_offer adopted = {});

} // namespace er::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::connection_ptr)
