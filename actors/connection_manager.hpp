#pragma once
// One connection_manager per WebSocket connection. It owns the socket (the only writer) and
// the connection's UserExecutionContext, stamps every outbound frame with its own user_id and
// the next event_id, answers `ping` itself, and spawns the handlers and agent runs that serve
// its connection. Its children get its handle and nothing else: the thread store is reached
// only through the manager, which puts its own user_id into every query.

#include <memory>
#include <string>

#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/agent_run.hpp"
#include "actors/messages.hpp"
#include "actors/metrics.hpp"
#include "actors/thread_store.hpp"

namespace er::actors {

struct manager_settings {
  std::string server_id;
  net::session_limits session;   ///< reported to clients in connection_established
  std::size_t max_runs_per_connection = 4;
  std::size_t max_connections_per_user = 8;
  std::chrono::milliseconds resume_window{0}; ///< 0: no resume, a dropped connection ends
  std::size_t resume_buffer_events = 1000;
  std::size_t resume_buffer_bytes = 1048576;
  std::size_t messages_per_second = 50; ///< the token bucket of each connection
  std::size_t messages_burst = 100;
  thread_store_actor store;
  std::shared_ptr<const agent_catalog> agents;
  std::shared_ptr<router_metrics> metrics; ///< may be null (unit tests)
  bool test_faults = false; ///< agents.test-agents: `test_fault` messages throw (tests only)
};

using manager_actor = caf::typed_actor<
  caf::reacts_to<frame_atom, std::string>,               // an inbound text frame
  caf::reacts_to<binary_atom, std::uint64_t>,            // an inbound binary frame (refused)
  caf::reacts_to<closed_atom, std::uint16_t, bool>,      // the socket closed: code, clean
  caf::reacts_to<shutdown_atom, std::uint16_t>,          // close the socket with this code
  caf::reacts_to<drain_atom>,                            // close with 1001 once runs ended
  caf::reacts_to<emit_atom, outbound_event>,             // a handler's reply, stamped and sent
  caf::reacts_to<run_event_atom, outbound_event>,        // a run's event, stamped and sent
  caf::replies_to<store_atom, thread_query>::with<thread_reply>, // a handler's store query
  caf::reacts_to<deadline_atom>,                         // time to check runs' deadlines
  caf::reacts_to<flush_atom>,                            // the held outbox may leave now
  caf::reacts_to<publish_atom, outbound_event>,          // a backend's event for this user
  // a new socket for this detached session: resumes after last_event_id, or answers false
  caf::replies_to<resume_atom, connection_ptr, std::uint64_t, context::user_execution_context>::with<bool>,
  caf::reacts_to<expire_atom, std::uint64_t>>;           // the resume window passed

/// Spawned by the router, linked to it (see router.hpp); `connection` is not started yet.
/// The manager reports its session state and resume token to `router`.
manager_actor spawn_connection_manager(caf::local_actor* parent, router_feedback router,
                                       connection_ptr connection,
                                       context::user_execution_context ctx,
                                       std::shared_ptr<const manager_settings> settings);

} // namespace er::actors
