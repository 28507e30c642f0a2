#include "actors/connection_manager.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/local_actor.hpp>
#include <caf/send.hpp>

#include "actors/manager_state.hpp"

#include "net/protocol_codes.hpp"

namespace er::actors {

namespace {

using json = nlohmann::json;

/// Forwards what the socket reads into the manager's mailbox.
class manager_sink final : public net::session_sink {
public:
  explicit manager_sink(manager_actor manager) : manager_(std::move(manager)) {
  }

  void on_text(std::string frame) override {
    caf::anon_send(manager_, frame_atom::value, std::move(frame));
  }

  void on_binary(std::size_t bytes) override {
    caf::anon_send(manager_, binary_atom::value, static_cast<std::uint64_t>(bytes));
  }

  void on_closed(net::close_info info) override {
    caf::anon_send(manager_, closed_atom::value, info.code, info.clean);
  }

private:
  manager_actor manager_;
};

void send_established(manager_pointer self) {
  auto& st = self->state;
  auto& limits = st.settings->session;
  outbound_event ev;
  ev.type = "connection_established";
  ev.data = json{{"connection_id", st.ctx->connection_id()},
                 {"session_id", st.ctx->session_id()},
                 {"server_id", st.settings->server_id},
                 {"recovered", false},
                 {"limits",
                  {{"max_message_bytes", limits.max_message_bytes},
                   {"outbound_queue_bytes", limits.outbound_queue_bytes}}}};
  // event_id 0: the greeting is never part of the resumable stream.
  st.connection->send(render_event(ev, 0, st.ctx->user_id(), std::chrono::system_clock::now()));
}

void on_message(manager_pointer self, inbound_message& msg) {
  if (msg.type == "ping") {
    outbound_event pong;
    pong.type = "pong";
    pong.reply_to = std::move(msg.id);
    return emit(self, pong);
  }
  if (is_thread_message(msg.type)) {
    auto& threads = self->state.threads;
    if (!threads)
      threads = spawn_thread_handler(self);
    return self->send(threads, handle_atom::value, std::move(msg));
  }
  if (is_agent_message(msg.type))
    return on_agent_message(self, msg);
  reply_error(self, error_code::unknown_type, "unknown message type \"" + msg.type + "\"",
              std::move(msg.id));
}

/// Children are linked: a run's or handler's end arrives here; anything else (the router
/// going down) ends the manager.
void on_exit_msg(manager_pointer self, caf::exit_msg& msg) {
  if (on_run_exit(self, msg.source, msg.reason))
    return;
  if (self->state.threads && msg.source == self->state.threads.address()) {
    self->state.threads = nullptr; // respawned on next use
    return;
  }
  self->quit(msg.reason);
}

void on_frame(manager_pointer self, const std::string& text) {
  auto parsed = parse_inbound(text);
  if (auto* error = std::get_if<protocol_error>(&parsed))
    return emit(self, make_error(*error));
  on_message(self, std::get<inbound_message>(parsed));
}

manager_actor::behavior_type manager_behavior(manager_pointer self, connection_ptr connection,
                                              context::user_execution_context ctx,
                                              std::shared_ptr<const manager_settings> settings) {
  auto& st = self->state;
  st.connection = connection;
  st.ctx = std::make_unique<const context::user_execution_context>(std::move(ctx));
  st.settings = std::move(settings);
  // Whatever ends this actor also ends its socket; after a normal close this is a no-op.
  self->attach_functor([connection](const caf::error& reason) {
    bool failed = reason && reason != caf::exit_reason::user_shutdown;
    connection->close(failed ? close_code::internal_error : close_code::normal,
                      failed ? "internal error" : "");
  });
  self->set_exit_handler([self](caf::exit_msg& msg) { on_exit_msg(self, msg); });
  connection->start(std::make_shared<manager_sink>(caf::actor_cast<manager_actor>(self)));
  send_established(self);
  return {
    [=](frame_atom, const std::string& text) { on_frame(self, text); },
    [=](binary_atom, std::uint64_t) {
      reply_error(self, error_code::invalid_message,
                  "binary frames are not supported: send JSON text frames", std::nullopt);
    },
    // Not a normal exit: linked children ignore those, and every run and handler must end.
    [=](closed_atom, std::uint16_t, bool) { self->quit(caf::exit_reason::user_shutdown); },
    [=](shutdown_atom, std::uint16_t code) {
      self->state.connection->close(code, "server going away");
    },
    [=](emit_atom, const outbound_event& event) { emit(self, event); },
    [=](run_event_atom, outbound_event& event) { on_run_event(self, event); },
    [=](store_atom, thread_query& q) {
      // The one place a handler's query gets its user_id: this connection's own.
      return self->delegate(self->state.settings->store, store_atom::value,
                            self->state.ctx->user_id(), std::move(q));
    },
    [=](deadline_atom, const std::string& run_id) { on_run_deadline(self, run_id); },
  };
}

} // namespace

void emit(manager_pointer self, const outbound_event& event) {
  auto& st = self->state;
  st.connection->send(render_event(event, st.next_event_id++, st.ctx->user_id(),
                                   std::chrono::system_clock::now()));
}

void reply_error(manager_pointer self, std::string_view code, std::string message,
                 std::optional<std::string> reply_to) {
  emit(self, make_error(protocol_error{code, std::move(message), std::move(reply_to)}));
}

manager_actor spawn_connection_manager(caf::local_actor* parent, connection_ptr connection,
                                       context::user_execution_context ctx,
                                       std::shared_ptr<const manager_settings> settings) {
  return parent->spawn<caf::linked>(manager_behavior, std::move(connection), std::move(ctx),
                       std::move(settings));
}

} // namespace er::actors
