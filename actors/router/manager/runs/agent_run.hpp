#pragma once
// Agent runs: one child actor of a connection manager per agent execution. A run knows only
// its manager's run_parent handle and its own spec; it reports (run_event_atom,
// outbound_event) and the manager stamps run_id, thread_id, user_id and event_id from its
// own records. The manager emits agent_started and enforces exactly one final event per run.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <caf/actor.hpp>
#include <caf/local_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/router/manager/parent_handles.hpp"
#include "actors/router/manager/runs/command_process.hpp"

namespace er::actors {

enum class agent_kind { echo, demo, command, http, test_throw, test_hang };

class http_agent_pool;

struct agent_definition {
  std::string name;
  agent_kind kind = agent_kind::echo;
  command_spec command;               ///< for agent_kind::command
  std::shared_ptr<http_agent_pool> http; ///< for agent_kind::http: shared by all its runs
  std::chrono::milliseconds timeout{300000};
};

/// Every agent a client may name, from configuration. Immutable once built.
struct agent_catalog {
  std::map<std::string, agent_definition> agents;
  std::string default_agent = "demo";
  int demo_steps = 3;
  std::chrono::milliseconds demo_step_delay{100};
  boost::asio::io_context* io = nullptr; ///< runs command agents' pipes

  const agent_definition* find(const std::string& name) const {
    auto it = agents.find(name);
    return it == agents.end() ? nullptr : &it->second;
  }
};

/// What a run is asked to do; `payload` is the client's payload object.
struct run_spec {
  std::string run_id;
  std::string thread_id; ///< empty when the run belongs to no thread
  std::string user_id;   ///< the connection's verified user (HTTP agents are told it)
  nlohmann::json payload;
};

/// Spawns the run as a child of `spawner` (the manager, which traps its exit), linked to it;
/// the run reports to `parent`.
caf::actor spawn_agent_run(caf::local_actor* spawner, run_parent parent,
                           const agent_definition& agent, const agent_catalog& catalog,
                           run_spec spec);

} // namespace er::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::run_spec)
