#pragma once
// The run actor of each agent kind, spawned by spawn_agent_run (agent_run.hpp) as a linked
// child of the manager; each reports to its run_parent only.

#include <chrono>

#include <caf/actor.hpp>
#include <caf/local_actor.hpp>

#include "actors/router/manager/runs/agent_run.hpp"

namespace er::actors {

caf::actor spawn_echo_run(caf::local_actor* spawner, run_parent parent, run_spec spec);
caf::actor spawn_demo_run(caf::local_actor* spawner, run_parent parent, run_spec spec,
                          int steps, std::chrono::milliseconds delay);
/// agent_kind::test_throw or agent_kind::test_hang.
caf::actor spawn_test_run(caf::local_actor* spawner, run_parent parent, agent_kind kind);
caf::actor spawn_command_run(caf::local_actor* spawner, run_parent parent, run_spec spec,
                             const agent_definition& agent, boost::asio::io_context& io);
caf::actor spawn_http_run(caf::local_actor* spawner, run_parent parent, run_spec spec,
                          const agent_definition& agent);

} // namespace er::actors
