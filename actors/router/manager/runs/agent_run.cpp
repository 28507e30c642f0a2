#include "actors/router/manager/runs/agent_run.hpp"

#include <stdexcept>

#include "actors/router/manager/runs/run_kinds.hpp"

namespace er::actors {

caf::actor spawn_agent_run(caf::local_actor* spawner, run_parent parent,
                           const agent_definition& agent, const agent_catalog& catalog,
                           run_spec spec) {
  switch (agent.kind) {
    case agent_kind::echo:
      return spawn_echo_run(spawner, std::move(parent), std::move(spec));
    case agent_kind::demo:
      return spawn_demo_run(spawner, std::move(parent), std::move(spec), catalog.demo_steps,
                            catalog.demo_step_delay);
    case agent_kind::command:
      return spawn_command_run(spawner, std::move(parent), std::move(spec), agent, *catalog.io);
    case agent_kind::http:
      return spawn_http_run(spawner, std::move(parent), std::move(spec), agent);
    case agent_kind::test_throw:
    case agent_kind::test_hang:
      return spawn_test_run(spawner, std::move(parent), agent.kind);
  }
  throw std::logic_error("unknown agent kind");
}

} // namespace er::actors
