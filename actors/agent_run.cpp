#include "actors/agent_run.hpp"

#include <string>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/connection_manager.hpp"

namespace er::actors {

namespace {

using json = nlohmann::json;
using step_atom = caf::atom_constant<caf::atom("step")>;
using line_atom = caf::atom_constant<caf::atom("line")>;
using exited_atom = caf::atom_constant<caf::atom("exited")>;
using bad_out_atom = caf::atom_constant<caf::atom("bad_out")>;
using reap_atom = caf::atom_constant<caf::atom("reap")>;

// The manager learns which run reports from the sender: a run cannot speak for another.
void send_event(caf::scheduled_actor* self, const manager_actor& manager, outbound_event ev) {
  caf::send_as(caf::actor_cast<caf::actor>(self), manager, run_event_atom::value,
               std::move(ev));
}

void report(caf::scheduled_actor* self, const manager_actor& manager, std::string type,
            json data) {
  outbound_event ev;
  ev.type = std::move(type);
  ev.data = std::move(data);
  send_event(self, manager, std::move(ev));
}

/// report() with data already serialized (outbound_event::data_text).
void report_text(caf::scheduled_actor* self, const manager_actor& manager, std::string type,
                 const std::string& data_text) {
  outbound_event ev;
  ev.type = std::move(type);
  ev.data_text = data_text;
  send_event(self, manager, std::move(ev));
}

json input_of(const run_spec& spec) {
  if (auto it = spec.payload.find("input"); it != spec.payload.end())
    return *it;
  if (auto it = spec.payload.find("text"); it != spec.payload.end())
    return *it;
  return nullptr;
}

// -- echo -------------------------------------------------------------------

caf::behavior echo_run(caf::event_based_actor* self, manager_actor manager, run_spec spec) {
  report(self, manager, "agent_completed", json{{"output", input_of(spec)}});
  self->quit();
  return {};
}

// -- demo -------------------------------------------------------------------

struct demo_state {
  int step = 0;
  static inline const char* name = "demo_run";
};

/// The data of the demo's events that are the same in every run with `steps` steps (the
/// thinking steps and the tool's result), serialized once per thread: such an event then
/// costs a copy of its text, where a document built member by member, sent, dumped by the
/// renderer and destroyed cost a fifth of the router's work per run. Per-thread scratch,
/// rebuilt when the step count changes.
struct demo_texts {
  int steps = -1;
  std::vector<std::string> thinking; ///< by step
  std::string tool_completed;
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
    texts.thinking.push_back(data.dump());
  }
  auto tool = json::object();
  tool["tool"] = "lookup";
  tool["output"] = "42";
  texts.tool_completed = tool.dump();
  return texts;
}

// thinking x steps, one tool call, its result, completion: steps + 3 events.
caf::behavior demo_run(caf::stateful_actor<demo_state>* self, manager_actor manager,
                       run_spec spec, int steps, std::chrono::milliseconds delay) {
  // Without a pause the next step is an ordinary message, not a timer entry.
  auto next_step = [self, delay] {
    if (delay.count() > 0)
      self->delayed_send(self, delay, step_atom::value);
    else
      self->send(self, step_atom::value);
  };
  next_step();
  return {
    [=](step_atom) {
      auto i = self->state.step++;
      // Events with the run's input are documents, built member by member: an initializer
      // list builds a [key, value] array per member first, four times the allocations.
      if (i < steps) {
        report_text(self, manager, "agent_thinking",
                    demo_texts_for(steps).thinking[static_cast<std::size_t>(i)]);
      } else if (i == steps) {
        auto data = json::object();
        data["tool"] = "lookup";
        data["input"] = input_of(spec);
        report(self, manager, "tool_executing", std::move(data));
      } else if (i == steps + 1) {
        report_text(self, manager, "tool_completed", demo_texts_for(steps).tool_completed);
      } else {
        auto data = json::object();
        data["output"] = "demo answer";
        data["input"] = input_of(spec);
        data["steps"] = steps;
        report(self, manager, "agent_completed", std::move(data));
        return self->quit();
      }
      next_step();
    },
  };
}

// -- command ----------------------------------------------------------------

struct command_state {
  std::shared_ptr<command_process> process;
  bool finished = false;
  static inline const char* name = "command_run";
};

using command_pointer = caf::stateful_actor<command_state>*;

void fail(command_pointer self, const manager_actor& manager, const std::string& message) {
  if (self->state.finished)
    return;
  self->state.finished = true;
  report(self, manager, "agent_error", json{{"message", message}});
}

// One line of the agent's stdout: {"type": <agent event>, "data": {...}}.
void on_agent_line(command_pointer self, const manager_actor& manager, const std::string& line) {
  if (self->state.finished)
    return;
  auto doc = json::parse(line, nullptr, false);
  auto type = doc.is_object() ? doc.find("type") : doc.end();
  bool valid = doc.is_object() && type != doc.end() && type->is_string()
               && is_agent_event(type->get<std::string>())
               && type->get<std::string>() != "agent_stopped"
               && (!doc.contains("data") || doc["data"].is_object());
  if (!valid) {
    fail(self, manager, "the agent printed a line that is not a JSON agent event");
    self->state.process->terminate();
    return;
  }
  auto t = type->get<std::string>();
  report(self, manager, t, doc.value("data", json::object()));
  if (is_final_agent_event(t)) {
    self->state.finished = true;
    // Give a well-behaved agent a moment to exit by itself before its group is killed.
    self->delayed_send(self, std::chrono::seconds{1}, reap_atom::value);
  }
}

std::string exit_message(bool signaled, int code) {
  if (signaled)
    return "the agent was killed by signal " + std::to_string(code);
  if (code != 0)
    return "the agent exited with status " + std::to_string(code);
  return "the agent exited without completing";
}

caf::behavior command_run(command_pointer self, manager_actor manager, run_spec spec,
                          agent_definition agent, boost::asio::io_context* io) {
  auto me = caf::actor_cast<caf::actor>(self);
  command_callbacks cb;
  cb.on_line = [me](std::string line) { caf::anon_send(me, line_atom::value, std::move(line)); };
  cb.on_bad_output = [me](std::string why) { caf::anon_send(me, bad_out_atom::value, std::move(why)); };
  cb.on_exit = [me](process_exit e) { caf::anon_send(me, exited_atom::value, e.signaled, e.code); };
  try {
    self->state.process = command_process::start(*io, agent.command, std::move(cb));
  } catch (const std::exception& e) {
    fail(self, manager, std::string{"the agent could not be started: "} + e.what());
    self->quit();
    return {};
  }
  self->state.process->write_line(json{{"run_id", spec.run_id},
                                       {"thread_id", spec.thread_id.empty() ? json(nullptr)
                                                                            : json(spec.thread_id)},
                                       {"agent", agent.name},
                                       {"payload", spec.payload}}
                                    .dump());
  self->state.process->close_stdin();
  return {
    [=](line_atom, const std::string& line) { on_agent_line(self, manager, line); },
    [=](bad_out_atom, const std::string& why) {
      fail(self, manager, "the agent printed invalid output: " + why);
    },
    [=](exited_atom, bool signaled, int code) {
      fail(self, manager, exit_message(signaled, code));
      self->quit();
    },
    [=](reap_atom) { self->quit(); }, // the process group dies with the state
  };
}

// -- test-only agents (agents.test-agents=1) ----------------------------------

caf::behavior throwing_run(caf::event_based_actor* self, manager_actor manager) {
  report(self, manager, "agent_thinking", json{{"text", "about to fail"}});
  self->send(self, step_atom::value);
  return {
    [](step_atom) -> void { throw std::runtime_error("injected failure in an agent run"); },
  };
}

caf::behavior hanging_run(caf::event_based_actor*, manager_actor) {
  return {
    [](step_atom) {},
  };
}

} // namespace

bool is_agent_event(const std::string& type) {
  return type == "agent_thinking" || type == "tool_executing" || type == "tool_completed"
         || type == "agent_progress" || is_final_agent_event(type);
}

bool is_final_agent_event(const std::string& type) {
  return type == "agent_completed" || type == "agent_error" || type == "agent_stopped";
}

caf::actor spawn_agent_run(caf::local_actor* manager, const agent_definition& agent,
                           const agent_catalog& catalog, run_spec spec) {
  auto handle = caf::actor_cast<manager_actor>(manager);
  switch (agent.kind) {
    case agent_kind::echo:
      return manager->spawn<caf::linked>(echo_run, handle, std::move(spec));
    case agent_kind::demo:
      return manager->spawn<caf::linked>(demo_run, handle, std::move(spec), catalog.demo_steps,
                                         catalog.demo_step_delay);
    case agent_kind::command:
      return manager->spawn<caf::linked>(command_run, handle, std::move(spec), agent,
                                         catalog.io);
    case agent_kind::test_throw:
      return manager->spawn<caf::linked>(throwing_run, handle);
    case agent_kind::test_hang:
      // Every spawn passes an argument: CAF 0.17 binds a null reference for an empty one.
      return manager->spawn<caf::linked>(hanging_run, handle);
  }
  throw std::logic_error("unknown agent kind");
}

} // namespace er::actors
