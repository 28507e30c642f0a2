#pragma once
// The thread store: one actor in front of the SQLite thread_db, on its own thread (SQLite
// blocks). Its only clients are connection managers, which put their own context's user_id
// into every query: handlers ask their manager, never the store.

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/typed_actor.hpp>

#include "actors/message_types.hpp"
#include "actors/store/thread_db.hpp"

namespace er::actors {

using store_atom = caf::atom_constant<caf::atom("store")>;

/// create_with_message: a new thread and its first message (role, content) in one
/// transaction, neither stored when either would pass a quota.
enum class thread_op { create, create_with_message, list, history, append, exists };

struct thread_query {
  thread_op op = thread_op::exists;
  std::string thread_id;
  std::string title;   ///< create, create_with_message
  std::string role;    ///< append: "user" or "agent"
  std::string run_id;  ///< append
  std::string content; ///< append: JSON text
  std::size_t limit = 100;
  std::int64_t before_seq = 0; ///< history: only older messages; 0: from the newest
  std::optional<list_bounds::position> after; ///< list: only threads listed after this one
  std::size_t max_bytes = std::numeric_limits<std::size_t>::max(); ///< list, history: a page's bytes
};

struct thread_reply {
  bool found = true;      ///< false: no such thread for this user (or a failure, see error)
  bool quota_exceeded = false; ///< the user's storage quota refused the write
  std::string error;      ///< non-empty when the store itself failed
  thread_info thread{};   ///< create
  std::vector<thread_info> threads;
  std::vector<thread_message> messages;
  bool has_more = false;  ///< list, history: threads after the page's last, messages older
                          ///< than its first remain
};

using thread_store_actor = caf::typed_actor<
  caf::replies_to<store_atom, std::string /* user_id */, thread_query>::with<thread_reply>>;

/// Opens the database first, so that a bad path fails the start-up with thread_db_error.
thread_store_actor spawn_thread_store(caf::actor_system& system, const std::string& path,
                                      store_quotas quotas = {});

} // namespace er::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::thread_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::thread_reply)
