#pragma once
// What a connection manager's children may say to it, as typed handles: a child holds one of
// these, never the manager's full interface, so it cannot name the socket's input, a
// shutdown, a resume or another manager. The manager stamps whatever they send with its own
// user_id, event_id and, for runs, the run's ids from its own records.

#include <caf/atom.hpp>
#include <caf/typed_actor.hpp>

#include "actors/message_types.hpp"
#include "actors/store/thread_store.hpp"

namespace er::actors {

using emit_atom = caf::atom_constant<caf::atom("emit")>;           ///< a handler's reply
using run_event_atom = caf::atom_constant<caf::atom("run_event")>; ///< a run's event
using run_sync_atom = caf::atom_constant<caf::atom("run_sync")>;   ///< a run's flow control

/// A handler's manager: replies to the requests it was given, and thread store queries that
/// the manager scopes by its own user_id.
using handler_parent = caf::typed_actor<
  caf::reacts_to<emit_atom, protocol::outbound_event>,
  caf::replies_to<store_atom, thread_query>::with<thread_reply>>;

/// A run's manager: the run's events, nothing else. The manager knows the run by the sender.
/// run_sync is answered once every event the run sent before it has been handled (a mailbox
/// keeps one sender's order): a run whose source can outpace the manager (a command agent's
/// stdout) waits for it, so that its events cannot pile up in the manager's mailbox.
using run_parent = caf::typed_actor<caf::reacts_to<run_event_atom, protocol::outbound_event>,
                                    caf::replies_to<run_sync_atom>::with<bool>>;

} // namespace er::actors
