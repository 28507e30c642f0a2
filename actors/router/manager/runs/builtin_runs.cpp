// The built-in agents: echo, demo, and the fault-injection agents of the tests.

#include "actors/router/manager/runs/run_kinds.hpp"

#include <memory>
#include <string>
#include <vector>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/router/manager/runs/run_reporter.hpp"

namespace er::actors {

namespace {

using json = nlohmann::json;
using step_atom = caf::atom_constant<caf::atom("step")>;

json input_of(const run_spec& spec) {
  if (auto it = spec.payload.find("input"); it != spec.payload.end())
    return *it;
  if (auto it = spec.payload.find("text"); it != spec.payload.end())
    return *it;
  return nullptr;
}

// -- echo -------------------------------------------------------------------

caf::behavior echo_run(caf::event_based_actor* self, run_parent parent, run_spec spec) {
  run_reporter{self, std::move(parent)}.report("agent_completed",
                                               json{{"output", input_of(spec)}});
  self->quit();
  return {};
}

// -- demo -------------------------------------------------------------------

struct demo_state {
  int step = 0;
  static inline const char* name = "demo_run";
};

/// The data of the demo's events that are the same in every run with `steps` steps (the
/// thinking steps and the tool's result), serialized once per thread and rebuilt when the
/// step count changes: such an event shares its text instead of a document built, sent,
/// dumped and destroyed per run. Per-thread scratch, not shared state (the texts are
/// immutable: events in flight keep theirs alive when the step count changes).
struct demo_texts {
  int steps = -1;
  std::vector<protocol::shared_text> thinking; ///< by step
  protocol::shared_text tool_completed;
};

const demo_texts& demo_texts_for(int steps) {
  static thread_local demo_texts texts;
  if (texts.steps == steps)
    return texts;
  texts.steps = steps;
  texts.thinking.clear();
  for (int i = 0; i < steps; ++i) {
    auto data = json::object();
    data["step"] = i + 1;
    data["of"] = steps;
    data["text"] = "thinking, step " + std::to_string(i + 1);
    texts.thinking.push_back(std::make_shared<const std::string>(data.dump()));
  }
  auto tool = json::object();
  tool["tool"] = "lookup";
  tool["output"] = "42";
  texts.tool_completed = std::make_shared<const std::string>(tool.dump());
  return texts;
}

/// The demo's event number `i` (thinking x steps, one tool call, its result, completion);
/// false after the last one. Documents with the run's input are built member by member: an
/// initializer list builds a [key, value] array per member first.
bool demo_step(const run_reporter& out, const run_spec& spec, int steps, int i) {
  if (i < steps) {
    out.report_text("agent_thinking", demo_texts_for(steps).thinking[static_cast<std::size_t>(i)]);
  } else if (i == steps) {
    auto data = json::object();
    data["tool"] = "lookup";
    data["input"] = input_of(spec);
    out.report("tool_executing", std::move(data));
  } else if (i == steps + 1) {
    out.report_text("tool_completed", demo_texts_for(steps).tool_completed);
  } else {
    auto data = json::object();
    data["output"] = "demo answer";
    data["input"] = input_of(spec);
    data["steps"] = steps;
    out.report("agent_completed", std::move(data));
    return false;
  }
  return true;
}

caf::behavior demo_run(caf::stateful_actor<demo_state>* self, run_parent parent, run_spec spec,
                       int steps, std::chrono::milliseconds delay) {
  // Without a pause the next step is an ordinary message, not a timer entry.
  auto next_step = [self, delay] {
    if (delay.count() > 0)
      self->delayed_send(self, delay, step_atom::value);
    else
      self->send(self, step_atom::value);
  };
  next_step();
  return {
    [=, out = run_reporter{self, parent}](step_atom) {
      if (!demo_step(out, spec, steps, self->state.step++))
        return self->quit();
      next_step();
    },
  };
}

// -- test-only agents (agents.test-agents=1) ----------------------------------

caf::behavior throwing_run(caf::event_based_actor* self, run_parent parent) {
  run_reporter{self, std::move(parent)}.report("agent_thinking",
                                               json{{"text", "about to fail"}});
  self->send(self, step_atom::value);
  return {
    [](step_atom) -> void { throw std::runtime_error("injected failure in an agent run"); },
  };
}

caf::behavior hanging_run(caf::event_based_actor*, run_parent) {
  return {
    [](step_atom) {},
  };
}

} // namespace

caf::actor spawn_echo_run(caf::local_actor* spawner, run_parent parent, run_spec spec) {
  return spawner->spawn<caf::linked>(echo_run, std::move(parent), std::move(spec));
}

caf::actor spawn_demo_run(caf::local_actor* spawner, run_parent parent, run_spec spec,
                          int steps, std::chrono::milliseconds delay) {
  return spawner->spawn<caf::linked>(demo_run, std::move(parent), std::move(spec), steps, delay);
}

caf::actor spawn_test_run(caf::local_actor* spawner, run_parent parent, agent_kind kind) {
  // Every spawn passes an argument: CAF 0.17 binds a null reference for an empty one.
  if (kind == agent_kind::test_throw)
    return spawner->spawn<caf::linked>(throwing_run, std::move(parent));
  return spawner->spawn<caf::linked>(hanging_run, std::move(parent));
}

} // namespace er::actors
