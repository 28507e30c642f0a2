// The connection manager's agent runs: start_agent, user_message, stop_agent, the events of
// its runs, their deadlines and their exits. Every event of a run is stamped here from the
// manager's own run_entry, whatever the run itself claims.

#include <algorithm>
#include <iterator>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include "actors/runtime/io_scheduler.hpp"
#include "actors/router/manager/manager_state.hpp"
#include "context/ids.hpp"
#include "protocol/close_codes.hpp"
#include "protocol/error_codes.hpp"
#include "protocol/message_types.hpp"

namespace er::actors {

namespace {

using json = nlohmann::json;
constexpr std::size_t thread_title_bytes = 60;
constexpr auto store_timeout = std::chrono::seconds{10};

/// Marks the run's one final event as sent.
void finish(manager_pointer self, run_entry& entry, std::string_view outcome) {
  entry.state = run_entry::phase::finished;
  if (auto& m = self->state.settings->metrics)
    m->run_ended(outcome);
}

/// Sends the run's final event on the manager's own authority (stop, timeout, crash).
void end_run(manager_pointer self, run_entry& entry, std::string_view outcome, std::string type,
             std::optional<std::string> reply_to, json data) {
  finish(self, entry, outcome);
  protocol::outbound_event ev;
  ev.type = std::move(type);
  ev.run_id = entry.run_id;
  ev.thread_id = entry.thread_id;
  ev.reply_to = std::move(reply_to);
  ev.data = std::move(data);
  emit(self, std::move(ev));
}

run_table& runs_of(manager_pointer self) {
  auto& runs = self->state.runs;
  if (!runs) // deadlines on the first io thread's clock: they are rare, and only checked
    runs = std::make_unique<run_table>(
      net::deadline_clock::of(io_scheduler_of(self->home_system()).io_context()),
      caf::actor_cast<manager_actor>(self));
  return *runs;
}

/// Frees the run table once nothing is starting or running any more.
void release_runs_if_idle(manager_pointer self) {
  auto& runs = self->state.runs;
  if (runs && runs->starting == 0 && runs->by_actor.empty())
    runs.reset();
}

/// One start waiting for the thread store is over (started or refused).
void done_starting(manager_pointer self) {
  --runs_of(self).starting;
  release_runs_if_idle(self);
}

/// A start the store refused: a drain (or a session hosting runs for another node) that only
/// waited for it ends now, not at its deadline.
void start_refused(manager_pointer self) {
  finish_drain_if_idle(self);
  finish_hosting_if_idle(self);
}

/// Makes sure a deadline check happens no later than `deadline`.
void arm_deadline_check(manager_pointer self, std::chrono::steady_clock::time_point deadline) {
  auto& runs = runs_of(self);
  if (deadline >= runs.deadline_check)
    return; // the pending check comes first and re-arms for the rest
  runs.deadline_check = deadline;
  runs.deadline_timer.arm(deadline);
}

void start_run(manager_pointer self, const agent_definition& agent,
               std::optional<std::string> thread_id, json payload,
               std::optional<std::string> reply_to) {
  auto& st = self->state;
  run_entry entry;
  entry.run_id = context::random_id(context::id_prefix::run);
  entry.thread_id = std::move(thread_id);
  entry.reply_to = std::move(reply_to);
  protocol::outbound_event started;
  started.type = "agent_started";
  started.run_id = entry.run_id;
  started.thread_id = entry.thread_id;
  started.reply_to = entry.reply_to;
  started.data = json::object();
  started.data["agent"] = agent.name;
  emit(self, std::move(started));
  if (auto& m = st.settings->metrics)
    m->run_started();
  st.hold_outbox = true;
  entry.actor = spawn_agent_run(self, caf::actor_cast<run_parent>(self), agent,
                                *st.settings->agents,
                                run_spec{entry.run_id, entry.thread_id.value_or(""),
                                         st.ctx->user_id(), std::move(payload)});
  entry.deadline = std::chrono::steady_clock::now() + agent.timeout;
  arm_deadline_check(self, entry.deadline);
  auto& runs = runs_of(self);
  runs.by_id.emplace(entry.run_id, entry.actor.address());
  runs.by_actor.emplace(entry.actor.address(), std::move(entry));
}

/// Asks the store with this manager's own user_id. `then` always runs, once: with the
/// store's reply, or with `error` set when the store failed or did not answer.
template <class F>
void ask_store(manager_pointer self, thread_query q, F then) {
  auto& st = self->state;
  self->request(st.settings->store, store_timeout, store_atom::value, st.ctx->user_id(), std::move(q))
    .then([=](thread_reply& r) mutable { then(r); },
          [=](caf::error&) mutable {
            thread_reply r;
            r.found = false;
            r.error = "the thread store did not answer";
            then(r);
          });
}

/// Answers a failed or negative store reply; true when it did (the request is over).
bool refused(manager_pointer self, const thread_reply& r, const std::optional<std::string>& reply_to) {
  if (!r.error.empty())
    reply_error(self, error_code::unavailable, "the thread store is unavailable", reply_to);
  else if (!r.found)
    reply_error(self, error_code::not_found, "no such thread", reply_to);
  else if (r.quota_exceeded)
    reply_error(self, error_code::quota_exceeded,
                "this user's storage quota is used up: the message was not stored", reply_to);
  return !r.error.empty() || !r.found || r.quota_exceeded;
}

/// Runs `start` once the thread exists for this user; not_found otherwise. The run slot is
/// reserved meanwhile, so concurrent requests cannot exceed max-runs-per-connection.
template <class F>
void on_users_thread(manager_pointer self, const std::string& thread_id,
                     std::optional<std::string> reply_to, F start) {
  thread_query q;
  q.op = thread_op::exists;
  q.thread_id = thread_id;
  ++runs_of(self).starting;
  ask_store(self, q, [=](thread_reply& r) {
    done_starting(self);
    if (refused(self, r, reply_to))
      return start_refused(self);
    start();
  });
}

bool refuse_over_limit(manager_pointer self, const protocol::inbound_message& msg) {
  if (self->state.draining) {
    reply_error(self, error_code::unavailable, "the server is shutting down", msg.id);
    return true;
  }
  if (active_runs(self) < self->state.settings->max_runs_per_connection)
    return false;
  reply_error(self, error_code::too_many_runs,
              "at most " + std::to_string(self->state.settings->max_runs_per_connection)
                + " concurrent runs per connection",
              msg.id);
  return true;
}

void on_start_agent(manager_pointer self, protocol::inbound_message& msg) {
  auto name = msg.payload.find("agent");
  if (name == msg.payload.end() || !name->is_string())
    return reply_error(self, error_code::invalid_message, "payload.agent must be a string", msg.id);
  auto agent = self->state.settings->agents->find(name->get<std::string>());
  if (!agent)
    return reply_error(self, error_code::unknown_agent,
                       "no agent named " + protocol::quote_excerpt(name->get_ref<const std::string&>()), msg.id);
  if (refuse_over_limit(self, msg))
    return;
  if (!msg.thread_id)
    return start_run(self, *agent, std::nullopt, std::move(msg.payload), msg.id);
  on_users_thread(self, *msg.thread_id, msg.id,
                  [=, payload = msg.payload] { start_run(self, *agent, msg.thread_id, payload, msg.id); });
}

void on_user_message(manager_pointer self, protocol::inbound_message& msg) {
  auto text = msg.payload.find("text");
  if (text == msg.payload.end() || !text->is_string() || text->get<std::string>().empty())
    return reply_error(self, error_code::invalid_message,
                       "payload.text must be a non-empty string", msg.id);
  auto agent = self->state.settings->agents->find(self->state.settings->agents->default_agent);
  if (!agent)
    return reply_error(self, error_code::unavailable, "no default agent configured", msg.id);
  if (refuse_over_limit(self, msg))
    return;
  thread_query q;
  q.thread_id = msg.thread_id.value_or(context::random_id(context::id_prefix::thread));
  q.role = "user";
  q.content = json{{"text", *text}}.dump();
  if (msg.thread_id) {
    q.op = thread_op::append; // appending to an existing thread is also its ownership check
  } else { // a new thread, titled by the text, and the text in it: both or neither
    q.op = thread_op::create_with_message;
    q.title = std::string{protocol::utf8_prefix(text->get_ref<const std::string&>(),
                                                thread_title_bytes)};
  }
  ++runs_of(self).starting;
  ask_store(self, q, [=](thread_reply& stored) {
    done_starting(self);
    if (refused(self, stored, msg.id))
      return start_refused(self);
    start_run(self, *agent, q.thread_id, msg.payload, msg.id);
  });
}

/// A stop_agent for a run still going on the node this session came from goes there; its
/// answer comes back as that run's events (agent_stopped, or not_found if it ended meanwhile).
bool forward_stop_upstream(manager_pointer self, const protocol::inbound_message& msg,
                           const std::string& run_id) {
  auto& moves = self->state.moves;
  if (!moves)
    return false;
  auto& remote = moves->remote_runs;
  if (std::none_of(remote.begin(), remote.end(),
                   [&](const offered_run& r) { return r.run_id == run_id; }))
    return false;
  self->send(self->state.router, upreq_atom::value, msg);
  return true;
}

void on_stop_agent(manager_pointer self, protocol::inbound_message& msg) {
  auto id = msg.payload.find("run_id");
  if (id == msg.payload.end() || !id->is_string())
    return reply_error(self, error_code::invalid_message, "payload.run_id must be a string", msg.id);
  auto* runs = self->state.runs.get();
  run_entry* found = nullptr;
  if (runs) {
    if (auto addr = runs->by_id.find(id->get<std::string>()); addr != runs->by_id.end())
      if (auto run = runs->by_actor.find(addr->second); run != runs->by_actor.end())
        found = &run->second;
  }
  if (!found && forward_stop_upstream(self, msg, id->get<std::string>()))
    return;
  if (!found || found->state != run_entry::phase::running)
    return reply_error(self, error_code::not_found, "no such run", msg.id);
  auto& entry = *found;
  end_run(self, entry, "stopped", "agent_stopped", msg.id,
          json{{"reason", "stopped by the client"}});
  self->send_exit(entry.actor, caf::exit_reason::user_shutdown);
}

/// Drops the record of a run that has ended and whose actor is gone.
void forget_run(manager_pointer self, std::unordered_map<caf::actor_addr, run_entry>::iterator run) {
  auto& runs = *self->state.runs;
  runs.by_id.erase(run->second.run_id);
  runs.by_actor.erase(run);
  release_runs_if_idle(self);
  finish_drain_if_idle(self);
  finish_hosting_if_idle(self);
}

/// A run's agent_completed on a thread: the result is appended first, so that a history
/// request after the event already sees it, and the event says `"stored": false` when the
/// store refused it (the user's quota) or failed. The run is over either way.
void store_result(manager_pointer self, run_entry& entry, protocol::outbound_event event) {
  entry.state = run_entry::phase::storing_result;
  if (event.data_text) // the data is amended below: as a document
    event.data = json::parse(*std::exchange(event.data_text, nullptr));
  thread_query q;
  q.op = thread_op::append;
  q.thread_id = *entry.thread_id;
  q.role = "agent";
  q.run_id = entry.run_id;
  q.content = event.data.is_null() ? "{}" : event.data.dump();
  auto run = entry.actor.address();
  ask_store(self, std::move(q), [self, run, event = std::move(event)](thread_reply& r) mutable {
    auto* runs = self->state.runs.get(); // not null: this run is in it until forgotten here
    auto it = runs->by_actor.find(run);
    if (!r.error.empty() || !r.found || r.quota_exceeded)
      event.data["stored"] = false;
    finish(self, it->second, "completed");
    emit(self, event);
    if (it->second.exited)
      forget_run(self, it);
  });
}

/// Ends an active run with agent_error (timeouts, crashes).
void fail_run(manager_pointer self, run_entry& entry, std::string message) {
  end_run(self, entry, "error", "agent_error", entry.reply_to,
          json{{"message", std::move(message)}});
}

} // namespace

std::size_t active_runs(manager_pointer self) {
  auto& st = self->state;
  std::size_t n = st.moves ? st.moves->remote_runs.size() : 0;
  if (!st.runs)
    return n;
  n += st.runs->starting;
  for (auto& [addr, entry] : st.runs->by_actor)
    n += entry.active() ? 1 : 0;
  return n;
}

void run_deadline_timer::on_deadline(std::uint64_t) {
  caf::anon_send(manager_, deadline_atom::value); // only enqueues: never calls the clock
}

bool is_agent_message(const std::string& type) {
  return type == "start_agent" || type == "user_message" || type == "stop_agent";
}

void on_agent_message(manager_pointer self, protocol::inbound_message& msg) {
  if (msg.type == "start_agent")
    on_start_agent(self, msg);
  else if (msg.type == "user_message")
    on_user_message(self, msg);
  else
    on_stop_agent(self, msg);
}

void on_run_event(manager_pointer self, protocol::outbound_event& event) {
  auto& st = self->state;
  if (!st.runs)
    return; // a late event of a run that has ended, or not a run at all
  auto run = st.runs->by_actor.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
  if (run == st.runs->by_actor.end() || run->second.state != run_entry::phase::running
      || !protocol::is_run_event(event.type))
    return; // a late event of an ended run, or not a run at all
  auto& entry = run->second;
  event.run_id = entry.run_id;
  event.thread_id = entry.thread_id;
  event.reply_to = entry.reply_to;
  if (event.type == "agent_completed" && entry.thread_id)
    return store_result(self, entry, std::move(event));
  if (protocol::is_final_agent_event(event.type))
    finish(self, entry, event.type == "agent_completed" ? "completed" : "error");
  emit(self, std::move(event));
}

caf::result<bool> on_run_sync(manager_pointer self) {
  auto& st = self->state;
  if (!st.runs || !st.connection)
    return true;
  auto& held = st.runs->held_syncs;
  if (held.empty()) {
    if (!st.connection->congested())
      return true;
    st.connection->notify_writable(); // writable_atom, with this attachment's generation
  }
  held.push_back(self->make_response_promise<bool>());
  return held.back();
}

bool on_run_exit(manager_pointer self, const caf::actor_addr& source, const caf::error& reason) {
  auto* runs = self->state.runs.get();
  if (!runs)
    return false;
  auto run = runs->by_actor.find(source);
  if (run == runs->by_actor.end())
    return false;
  auto& entry = run->second;
  if (entry.state == run_entry::phase::storing_result) {
    entry.exited = true; // forgotten once the store has answered (store_result)
    return true;
  }
  if (entry.state == run_entry::phase::running)
    fail_run(self, entry,
             reason && reason != caf::exit_reason::normal ? "the agent failed"
                                                          : "the agent ended without completing");
  forget_run(self, run);
  return true;
}

void finish_drain_if_idle(manager_pointer self) {
  auto& st = self->state;
  if (st.draining && !st.shutting_down && active_runs(self) == 0
      && (!st.runs || st.runs->by_actor.empty()) && st.handler_pending.empty())
    on_shutdown(self, close_code::going_away.code);
}

void finish_hosting_if_idle(manager_pointer self) {
  auto& st = self->state;
  if (st.moves && st.moves->state == session_moves::away::hosting && active_runs(self) == 0
      && (!st.runs || st.runs->by_actor.empty()) && !st.moves->old_socket
      && st.handler_pending.empty())
    self->quit(caf::exit_reason::user_shutdown);
}

void emit_lost_run(manager_pointer self, const offered_run& run, std::string message) {
  protocol::outbound_event ev;
  ev.type = "agent_error";
  ev.run_id = run.run_id;
  ev.thread_id = run.thread_id;
  ev.reply_to = run.reply_to;
  ev.data = json{{"message", std::move(message)}};
  emit(self, std::move(ev));
}

/// How long past a remote run's deadline its final event may still be on its way.
constexpr auto remote_run_grace = std::chrono::seconds{2};

void arm_remote_run_check(manager_pointer self) {
  auto& st = self->state;
  if (!st.moves || st.moves->remote_runs.empty())
    return;
  auto next = std::chrono::steady_clock::time_point::max();
  for (auto& run : st.moves->remote_runs)
    next = std::min(next, run.deadline);
  if (next == std::chrono::steady_clock::time_point::max())
    return; // no deadline known (an older node): only a final event or a gone note ends them
  auto now = std::chrono::steady_clock::now();
  auto wait = std::max<std::chrono::steady_clock::duration>(next + remote_run_grace - now,
                                                            std::chrono::steady_clock::duration::zero());
  self->delayed_send(self, wait, deadline_atom::value);
}

namespace {

/// Remote runs past their deadline and the grace: the node running them would have timed
/// them out and sent the final event; it did not (it died, or the note was lost). The session
/// held here answers for them; a session given away to another node only forgets them (that
/// node has them too, and answers).
void expire_remote_runs(manager_pointer self) {
  auto& st = self->state;
  if (!st.moves || st.moves->remote_runs.empty())
    return;
  auto now = std::chrono::steady_clock::now();
  auto& remote = st.moves->remote_runs;
  auto expired = std::stable_partition(remote.begin(), remote.end(), [&](const offered_run& r) {
    return r.deadline == std::chrono::steady_clock::time_point::max()
           || now < r.deadline + remote_run_grace;
  });
  if (expired == remote.end())
    return;
  std::vector<offered_run> lost(std::make_move_iterator(expired),
                                std::make_move_iterator(remote.end()));
  remote.erase(expired, remote.end());
  if (st.moves->state == session_moves::away::none)
    for (auto& run : lost)
      emit_lost_run(self, run, "the run was lost: the node running it sent no final event by "
                               "the run's deadline");
  finish_drain_if_idle(self);
  finish_hosting_if_idle(self);
}

} // namespace

void on_run_deadlines(manager_pointer self) {
  expire_remote_runs(self);
  auto* runs = self->state.runs.get();
  if (!runs)
    return; // every run ended before its deadline
  auto now = std::chrono::steady_clock::now();
  if (now < runs->deadline_check)
    return; // an older check, superseded by an earlier one that is still pending
  runs->deadline_check = std::chrono::steady_clock::time_point::max();
  auto next = std::chrono::steady_clock::time_point::max();
  for (auto& [addr, entry] : runs->by_actor) {
    if (entry.state != run_entry::phase::running)
      continue;
    if (entry.deadline <= now) {
      fail_run(self, entry, "the agent timed out");
      self->send_exit(entry.actor, caf::exit_reason::user_shutdown);
    } else {
      next = std::min(next, entry.deadline);
    }
  }
  if (next != std::chrono::steady_clock::time_point::max())
    arm_deadline_check(self, next);
}

} // namespace er::actors
