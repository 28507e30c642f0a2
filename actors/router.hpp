#pragma once
// The router: a supervisor of connection managers and the one index from users to their
// managers (and from resume tokens to detached sessions). It holds no payloads and no
// per-user business state; it is not on the path of a connection's own traffic.

#include <memory>

#include <caf/actor_system.hpp>
#include <caf/typed_actor.hpp>

#include "actors/connection_manager.hpp"
#include "actors/messages.hpp"

namespace er::actors {

using router_actor = caf::typed_actor<
  // an authenticated connection: spawn its manager, or hand it to a detached session
  caf::reacts_to<attach_atom, net::upgrade>,
  caf::replies_to<stats_atom>::with<router_stats>,
  // close every connection with this code and refuse new ones
  caf::reacts_to<shutdown_atom, std::uint16_t>,
  // refuse new connections and runs; close each connection with 1001 once its runs ended
  caf::reacts_to<drain_atom>,
  // the publish API: deliver to every session of a user; answers the open connections
  caf::replies_to<publish_atom, std::string, outbound_event>::with<std::uint64_t>,
  // the disconnect API: close every session of a user with 4511; answers the connections
  caf::replies_to<disconnect_atom, std::string>::with<std::uint64_t>,
  // from a manager: attached or detached, and its new resume token (empty: unchanged)
  caf::reacts_to<session_atom, bool, std::string>>;

router_actor spawn_router(caf::actor_system& system,
                          std::shared_ptr<const manager_settings> settings);

} // namespace er::actors
