// A command agent's run: starts its process (command_process.hpp), writes the run's request
// line to its stdin and reports each line it prints as an event (agent_line.hpp).

#include "actors/router/manager/runs/run_kinds.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/router/manager/runs/agent_line.hpp"
#include "actors/router/manager/runs/run_flow.hpp"
#include "actors/router/manager/runs/run_reporter.hpp"
#include "protocol/message_types.hpp"

namespace er::actors {

namespace {

using json = nlohmann::json;
using line_atom = caf::atom_constant<caf::atom("line")>;
using exited_atom = caf::atom_constant<caf::atom("exited")>;
using bad_out_atom = caf::atom_constant<caf::atom("bad_out")>;
using reap_atom = caf::atom_constant<caf::atom("reap")>;

struct command_state {
  std::shared_ptr<command_process> process;
  run_parent parent;
  run_flow flow; ///< stdout is read on as the manager handles its lines' events
  bool finished = false; ///< its one final event has been reported
  void release_source(std::size_t weight) {
    process->consumed(weight);
  }
  static inline const char* name = "command_run";
};

using command_pointer = caf::stateful_actor<command_state>*;

void fail(command_pointer self, const run_reporter& out, const std::string& message) {
  if (std::exchange(self->state.finished, true))
    return;
  out.fail(message);
}

// One line of the agent's stdout: {"type": <agent event>, "data": {...}}.
void on_agent_line(command_pointer self, const run_reporter& out, const std::string& line) {
  if (self->state.finished)
    return;
  auto event = parse_agent_line(line);
  if (!event) {
    fail(self, out, "the agent printed a line that is not a JSON agent event");
    self->state.process->terminate();
    return;
  }
  bool final = protocol::is_final_agent_event(event->type);
  out.report(std::move(event->type), std::move(event->data));
  if (final) {
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

/// The process's callbacks run on its io strand: they only post into the run's mailbox.
command_callbacks mailbox_callbacks(command_pointer self) {
  auto me = caf::actor_cast<caf::actor>(self);
  command_callbacks cb;
  cb.on_line = [me](std::string line) { caf::anon_send(me, line_atom::value, std::move(line)); };
  cb.on_bad_output = [me](std::string why) {
    caf::anon_send(me, bad_out_atom::value, std::move(why));
  };
  cb.on_exit = [me](process_exit e) {
    caf::anon_send(me, exited_atom::value, e.signaled, e.code);
  };
  return cb;
}

caf::behavior command_run(command_pointer self, run_parent parent, run_spec spec,
                          agent_definition agent, boost::asio::io_context* io) {
  self->state.parent = parent;
  run_reporter out{self, std::move(parent)};
  auto command = agent.command;
  command.output_window = run_flow::window;
  command.output_line_weight = run_flow::line_weight;
  try {
    self->state.process = command_process::start(*io, command, mailbox_callbacks(self));
  } catch (const std::exception& e) {
    fail(self, out, std::string{"the agent could not be started: "} + e.what());
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
    [=](line_atom, const std::string& line) {
      on_agent_line(self, out, line);
      // after its event: a run_sync asked now covers it
      flow_handled(self, read_window::line_weight_of(line.size(), run_flow::line_weight));
    },
    [=](bad_out_atom, const std::string& why) {
      fail(self, out, "the agent printed invalid output: " + why);
    },
    [=](exited_atom, bool signaled, int code) {
      fail(self, out, exit_message(signaled, code));
      self->quit();
    },
    [=](reap_atom) { self->quit(); }, // the process group dies with the state
  };
}

} // namespace

caf::actor spawn_command_run(caf::local_actor* spawner, run_parent parent, run_spec spec,
                             const agent_definition& agent, boost::asio::io_context& io) {
  return spawner->spawn<caf::linked>(command_run, std::move(parent), std::move(spec), agent, &io);
}

} // namespace er::actors
