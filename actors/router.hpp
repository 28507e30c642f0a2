#pragma once
// The router: a supervisor of connection managers and the one index from users to their
// managers. It holds no payloads and no per-user business state; it is not on the path of a
// connection's own traffic.

#include <memory>

#include <caf/actor_system.hpp>
#include <caf/typed_actor.hpp>

#include "actors/connection_manager.hpp"
#include "actors/messages.hpp"

namespace er::actors {

using router_actor = caf::typed_actor<
  // an authenticated connection: spawn its manager
  caf::reacts_to<attach_atom, connection_ptr, context::user_execution_context>,
  caf::replies_to<stats_atom>::with<router_stats>,
  // close every connection with this code and refuse new ones
  caf::reacts_to<shutdown_atom, std::uint16_t>>;

router_actor spawn_router(caf::actor_system& system,
                          std::shared_ptr<const manager_settings> settings);

} // namespace er::actors
