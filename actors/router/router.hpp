#pragma once
// The router: a supervisor of connection managers and the one index from users to their
// managers (and from resume tokens to detached sessions). It holds no payloads and no
// per-user business state; it is not on the path of a connection's own traffic.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/typed_actor.hpp>

#include "actors/router/cluster/cluster_bus.hpp"
#include "actors/router/manager/connection_manager.hpp"

namespace er::actors {

using attach_atom = caf::atom_constant<caf::atom("attach")>;         ///< an authenticated socket
using stats_atom = caf::atom_constant<caf::atom("stats")>;           ///< the router's counts
using disconnect_atom = caf::atom_constant<caf::atom("disconnect")>; ///< the disconnect API

/// `?resume=<token>&last_event_id=N` of an upgrade request (DESIGN §8).
struct resume_request {
  std::string token;
  std::uint64_t last_event_id = 0;
};

/// An authenticated connection, not yet upgraded, for the router to place.
struct attach_request {
  connection_ptr connection;
  context::user_execution_context ctx;
  std::optional<resume_request> resume;
};

/// The router's counts (tests, /healthz).
struct router_stats {
  std::uint64_t connections = 0; ///< attached managers (open WebSocket connections)
  std::uint64_t users = 0;       ///< users with at least one open connection
  std::uint64_t detached = 0;    ///< managers waiting for a resume
  bool clustered = false;        ///< cluster.redis is set
  cluster_status cluster;        ///< with clustered: the bus's last report
};

using router_actor = caf::typed_actor<
  // an authenticated connection: spawn its manager, or hand it to a detached session
  caf::reacts_to<attach_atom, attach_request>,
  caf::replies_to<stats_atom>::with<router_stats>,
  // close every connection with this code and refuse new ones
  caf::reacts_to<shutdown_atom, std::uint16_t>,
  // refuse new connections and runs; close each connection with 1001 once its runs ended
  caf::reacts_to<drain_atom>,
  // the publish API: deliver to every session of a user (on every node); answers the open
  // connections reached, or that the cluster is unavailable
  caf::replies_to<publish_atom, std::string, protocol::outbound_event>::with<cluster_result>,
  // the disconnect API: close every session of a user with 4511; answers the connections
  caf::replies_to<disconnect_atom, std::string>::with<cluster_result>>
  // what its managers and its cluster bus tell it
  ::extend_with<router_feedback>::extend_with<cluster_feedback>;

/// `cluster` null: a single node.
router_actor spawn_router(caf::actor_system& system,
                          std::shared_ptr<const manager_settings> settings,
                          std::shared_ptr<const cluster_settings> cluster = nullptr);

} // namespace er::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::attach_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::router_stats)
