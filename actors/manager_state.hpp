#pragma once
// Internal to the connection manager: its state, shared by connection_manager.cpp (socket,
// protocol, dispatch) and manager_runs.cpp (agent runs).

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "actors/connection_manager.hpp"
#include "actors/thread_handler.hpp"

namespace er::actors {

struct run_entry {
  std::string run_id;
  std::optional<std::string> thread_id;
  std::optional<std::string> reply_to; ///< the id of the request that started the run
  caf::actor actor;
  bool finished = false; ///< its one final event has been sent
};

struct manager_state {
  connection_ptr connection;
  std::unique_ptr<const context::user_execution_context> ctx;
  std::shared_ptr<const manager_settings> settings;
  std::uint64_t next_event_id = 1;
  thread_handler_actor threads; ///< spawned on first use
  std::unordered_map<caf::actor_addr, run_entry> runs;
  std::unordered_map<std::string, caf::actor_addr> run_ids;
  std::size_t starting_runs = 0; ///< accepted, waiting for the thread store

  static inline const char* name = "connection_manager";
};

using manager_pointer = manager_actor::stateful_pointer<manager_state>;

/// Stamps `event` with this connection's user_id and next event_id, then sends it.
void emit(manager_pointer self, const outbound_event& event);
void reply_error(manager_pointer self, std::string_view code, std::string message,
                 std::optional<std::string> reply_to);

// manager_runs.cpp
bool is_agent_message(const std::string& type);
void on_agent_message(manager_pointer self, inbound_message& msg);
void on_run_event(manager_pointer self, outbound_event& event);
/// Handles the exit of one of this manager's runs; false when `source` is not a run.
bool on_run_exit(manager_pointer self, const caf::actor_addr& source, const caf::error& reason);
void on_run_deadline(manager_pointer self, const std::string& run_id);

} // namespace er::actors
