#pragma once
// The handler of the thread messages (create_thread, list_threads, get_thread_history):
// a child of one connection manager, spawned on first use. It validates the request,
// asks its manager for the data (the manager scopes every query by its own user_id) and
// sends the reply event back through the manager. It holds no handle but its manager's.

#include <caf/local_actor.hpp>
#include <caf/typed_actor.hpp>

#include "actors/router/manager/parent_handles.hpp"

namespace er::actors {

using handle_atom = caf::atom_constant<caf::atom("handle")>; ///< manager -> handler: a request

using thread_handler_actor =
  caf::typed_actor<caf::reacts_to<handle_atom, protocol::inbound_message>>;

bool is_thread_message(const std::string& type);

/// Spawned as a child of `spawner` (the manager), linked to it; it answers through `parent`.
/// A history page holds at most `page_bytes` of messages (a quarter of the connection's
/// outbound queue: a page never ends the connection with 4008). With `test_faults`, a
/// `test_fault` message makes it throw (fault-isolation tests).
thread_handler_actor spawn_thread_handler(caf::local_actor* spawner, handler_parent parent,
                                          std::size_t page_bytes, bool test_faults = false);

} // namespace er::actors
