#pragma once
// Atoms and message types shared by the router, its managers and their children.
// The interfaces of the actors themselves are declared next to their spawn functions.

#include <cstdint>
#include <memory>
#include <string>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/typed_actor.hpp>

#include "actors/protocol.hpp"
#include "context/user_execution_context.hpp"
#include "net/connection.hpp"
#include "net/listener.hpp"

namespace er::actors {

using attach_atom = caf::atom_constant<caf::atom("attach")>;     ///< net -> router
using stats_atom = caf::atom_constant<caf::atom("stats")>;       ///< anyone -> router
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>; ///< router -> managers
using frame_atom = caf::atom_constant<caf::atom("frame")>;       ///< socket -> manager
using binary_atom = caf::atom_constant<caf::atom("binary")>;     ///< socket -> manager
using closed_atom = caf::atom_constant<caf::atom("closed")>;     ///< socket -> manager
using emit_atom = caf::atom_constant<caf::atom("emit")>;         ///< child -> manager
using handle_atom = caf::atom_constant<caf::atom("handle")>;     ///< manager -> handler
using run_event_atom = caf::atom_constant<caf::atom("run_event")>; ///< run -> manager
using deadline_atom = caf::atom_constant<caf::atom("deadline")>; ///< manager -> itself
using publish_atom = caf::atom_constant<caf::atom("publish")>;   ///< API -> router -> managers
using disconnect_atom = caf::atom_constant<caf::atom("disconnect")>; ///< API -> router
using session_atom = caf::atom_constant<caf::atom("session")>;   ///< manager -> router
using resume_atom = caf::atom_constant<caf::atom("resume")>;     ///< router -> manager
using expire_atom = caf::atom_constant<caf::atom("expire")>;     ///< manager -> itself
using drain_atom = caf::atom_constant<caf::atom("drain")>;       ///< router -> managers
using flush_atom = caf::atom_constant<caf::atom("flush")>;       ///< manager -> itself

using connection_ptr = std::shared_ptr<net::ws_connection>;

/// Counts the router answers to stats_atom (tests, /healthz).
struct router_stats {
  std::uint64_t connections = 0; ///< attached managers (open WebSocket connections)
  std::uint64_t users = 0;       ///< users with at least one open connection
  std::uint64_t detached = 0;    ///< managers waiting for a resume
};

/// The part of the router's interface its managers use: their session state and resume
/// token, so that the router can find a detached session and count open connections. The
/// router keeps the token: a manager sends a new one when it attaches a connection and an
/// empty one (keep it) when it detaches.
using router_feedback = caf::typed_actor<caf::reacts_to<session_atom, bool /* attached */,
                                                        std::string /* resume token */>>;

} // namespace er::actors

// Local-only types: they never cross a process boundary (sockets, identities).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::connection_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::context::user_execution_context)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::outbound_event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::inbound_message)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::router_stats)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::net::upgrade)
