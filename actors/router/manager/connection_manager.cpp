#include "actors/router/manager/connection_manager.hpp"

#include <algorithm>
#include <cassert>
#include <utility>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/local_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <boost/asio/defer.hpp>
#include <boost/asio/io_context.hpp>

#include "actors/runtime/io_scheduler.hpp"
#include "actors/router/manager/manager_state.hpp"
#include "context/ids.hpp"
#include "protocol/close_codes.hpp"
#include "protocol/error_codes.hpp"
#include "protocol/message_types.hpp"

namespace er::actors {

namespace {

using json = nlohmann::json;

/// How long an offered session waits for the adopting node to take it before it ends.
constexpr auto handover_accept_timeout = std::chrono::seconds{10};

/// Forwards what the socket reads into the manager's mailbox. Its close carries the
/// generation of the attachment it belongs to, so that the close of a socket the session has
/// been moved away from (a resume that took it over) is not taken for the current one's.
class manager_sink final : public net::session_sink {
public:
  manager_sink(manager_actor manager, std::uint64_t generation)
    : manager_(std::move(manager)), generation_(generation) {
  }

  void on_text(std::string frame) override {
    caf::anon_send(manager_, frame_atom::value, std::move(frame));
  }

  void on_binary(std::size_t bytes) override {
    caf::anon_send(manager_, binary_atom::value, static_cast<std::uint64_t>(bytes));
  }

  void on_closed(net::close_info info) override {
    caf::anon_send(manager_, closed_atom::value, info.code, info.clean, info.by_peer, generation_);
  }

  void on_writable() override {
    caf::anon_send(manager_, writable_atom::value, generation_);
  }

private:
  manager_actor manager_;
  std::uint64_t generation_;
};

router_metrics* metrics_of(manager_pointer self) {
  return self->state.settings->metrics.get();
}

/// Starts `connection` as this session's socket, greets the client and tells the router.
void attach_connection(manager_pointer self, connection_ptr connection, bool recovered,
                       std::chrono::system_clock::time_point token_expires_at) {
  auto& st = self->state;
  st.connection = std::move(connection);
  ++st.generation;
  // A fresh resume token every time; the router keeps it, the manager does not need it again.
  auto resume_token =
    context::random_id(context::id_prefix::resume) + st.settings->resume_token_suffix;
  // The session closes itself with 4501 when the token expires.
  st.connection->start(
    std::make_shared<manager_sink>(caf::actor_cast<manager_actor>(self), st.generation),
    token_expires_at);
  if (auto m = metrics_of(self))
    m->connection_opened();
  auto& limits = st.settings->session;
  protocol::outbound_event ev;
  ev.type = "connection_established";
  ev.data = json{{"connection_id", st.ctx->connection_id()},
                 {"session_id", st.ctx->session_id()},
                 {"resume_token", resume_token},
                 {"server_id", st.settings->server_id},
                 {"recovered", recovered},
                 {"limits",
                  {{"max_message_bytes", limits.max_message_bytes},
                   {"outbound_queue_bytes", limits.outbound_queue_bytes},
                   {"max_runs_per_connection", st.settings->max_runs_per_connection},
                   {"resume_window_ms", st.settings->resume_window.count()}}}};
  // event_id 0: the greeting is never part of the resumable stream.
  st.to_outbox(protocol::render_event(ev, 0, st.ctx->user_id(), std::chrono::system_clock::now()));
  if (auto m = metrics_of(self))
    m->event_out(ev.type, -1);
  self->send(st.router, session_atom::value, true, std::move(resume_token));
}

/// Whether every event after `last_event_id` is still in the replay buffer.
bool can_replay(const manager_state& st, std::uint64_t last_event_id) {
  if (last_event_id >= st.next_event_id)
    return false; // the client claims events that were never sent
  if (last_event_id + 1 == st.next_event_id)
    return true; // nothing missed
  auto first = st.replay ? st.replay->first_id() : std::nullopt;
  return first && *first <= last_event_id + 1;
}

/// A resume of a session whose socket still looks open (a network switch is noticed by the
/// client long before the heartbeat notices it here): the new socket takes over, and the old
/// one is closed with 4512.
void move_away_from_connection(manager_pointer self) {
  auto& st = self->state;
  if (auto m = metrics_of(self)) {
    m->closed(close_code::session_moved.code);
    m->connection_closed();
  }
  st.close_connection(close_code::session_moved);
  st.connection = nullptr;
  st.release_held_syncs();
}

bool on_resume(manager_pointer self, connection_ptr& connection, std::uint64_t last_event_id,
               const context::user_execution_context& new_ctx) {
  auto& st = self->state;
  if (st.replay)
    st.replay->expire(replay_buffer::clock::now()); // what the window no longer covers
  if (st.shutting_down || !can_replay(st, last_event_id))
    return false;
  // The router gives up waiting after settings.resume_answer_timeout and gives the connection
  // to a fresh manager: then this session stays as it was.
  if (!connection->claim())
    return false;
  if (st.connection)
    move_away_from_connection(self);
  attach_connection(self, std::move(connection), true, new_ctx.token_expires_at());
  if (st.replay)
    st.replay->for_each_after(last_event_id, [&](std::uint64_t, std::string frame) {
      st.to_outbox(std::move(frame));
    });
  return true;
}

/// Requests in progress here whose outcome the client is owed: a start waiting for the
/// thread store, a request the thread handler has not answered.
bool busy_with_requests(const manager_state& st) {
  return (st.runs && st.runs->starting > 0) || !st.handler_pending.empty();
}

/// Another node adopts this session (session_handover.hpp): what the client missed after
/// `last_event_id`, the ids to go on with and the runs that stay here. From now on this
/// manager only hosts those runs, and those that the requests still in progress here or
/// still read from the old socket start: its events are held until the adopter takes the
/// offer, and it ends if that does not happen within handover_accept_timeout.
session_offer on_offer(manager_pointer self, std::uint64_t last_event_id) {
  auto& st = self->state;
  if (st.replay)
    st.replay->expire(replay_buffer::clock::now());
  if (st.shutting_down || (st.moves && st.moves->state != session_moves::away::none)
      || !can_replay(st, last_event_id))
    return {};
  if (!st.moves)
    st.moves = std::make_unique<session_moves>();
  if (st.connection) {
    st.moves->old_socket = st.generation;
    move_away_from_connection(self);
  }
  session_offer offer;
  offer.ok = true;
  offer.owner_busy = st.moves->old_socket.has_value() || busy_with_requests(st);
  if (st.replay)
    st.replay->for_each_after(last_event_id, [&](std::uint64_t id, std::string frame) {
      offer.frames.emplace_back(id, std::move(frame));
    });
  offer.next_event_id = st.next_event_id;
  offer.session_id = st.ctx->session_id();
  if (st.runs)
    for (auto& [addr, entry] : st.runs->by_actor)
      if (entry.active())
        offer.runs.push_back(
          offered_run{entry.run_id, entry.thread_id, entry.reply_to, entry.deadline});
  for (auto& remote : st.moves->remote_runs) // hosted for us elsewhere: the adopter's now
    offer.runs.push_back(remote);
  st.moves->state = session_moves::away::offered;
  st.replay.reset(); // the adopter keeps the frames from here on
  ++st.generation;   // the resume window's timer is not for a host
  self->delayed_send(self, handover_accept_timeout, handover_atom::value, false);
  return offer;
}

/// How long an offer may wait for the requests in progress (the adopter waits 3 s for it).
constexpr auto offer_wait_limit = std::chrono::milliseconds{1000};

/// Another node asks for this session: the offer at once, or once the requests in progress
/// here have their outcome (a run started, a reply emitted), so that they go with it (the
/// run listed with its deadline, the reply among the frames). One that outlasts the wait is
/// answered from here all the same (owner_busy).
caf::result<session_offer> ask_offer(manager_pointer self, std::uint64_t last_event_id) {
  auto& st = self->state;
  if (st.moves && st.moves->offer_waiting)
    return session_offer{}; // asked twice at once: the first one goes on
  if (!busy_with_requests(st) || st.shutting_down)
    return on_offer(self, last_event_id);
  if (!st.moves)
    st.moves = std::make_unique<session_moves>();
  auto promise = self->make_response_promise<session_offer>();
  st.moves->offer_waiting = session_moves::waiting_offer{
    promise, last_event_id, std::chrono::steady_clock::now() + offer_wait_limit};
  self->delayed_send(self, offer_wait_limit, deadline_atom::value); // offer_when_ready then
  return promise;
}

} // namespace

void offer_when_ready(manager_pointer self) {
  auto& st = self->state;
  if (!st.moves || !st.moves->offer_waiting)
    return;
  if (busy_with_requests(st) && std::chrono::steady_clock::now() < st.moves->offer_waiting->until
      && !st.shutting_down)
    return;
  auto waiting = std::move(*st.moves->offer_waiting);
  st.moves->offer_waiting.reset();
  waiting.promise.deliver(on_offer(self, waiting.last_event_id));
}

namespace {

/// The adopter took the offer (its events flow to it from now on), or did not (the session
/// ends here: never two live copies of it).
void on_handover(manager_pointer self, bool accepted) {
  auto& st = self->state;
  if (!st.moves || st.moves->state != session_moves::away::offered)
    return; // taken already: a late timeout
  if (!accepted)
    return self->quit(caf::exit_reason::user_shutdown);
  st.moves->state = session_moves::away::hosting;
  for (auto& event : std::exchange(st.moves->held, {}))
    self->send(st.router, forward_atom::value, std::move(event));
  finish_hosting_if_idle(self);
}

/// An event of a run that stayed on the node this session came from: stamped here like any
/// other; a final one ends that remote run.
void on_upstream_event(manager_pointer self, protocol::outbound_event& event) {
  auto& st = self->state;
  auto same = [&](const offered_run& r) { return r.run_id == *event.run_id; };
  if (event.run_id && protocol::is_final_agent_event(event.type) && st.moves) {
    auto& remote = st.moves->remote_runs;
    remote.erase(std::remove_if(remote.begin(), remote.end(), same), remote.end());
  } else if (event.run_id && event.type == "agent_started") {
    // Started there after the offer (by a request the offer stopped waiting for, or one the
    // old socket still brought): this session answers for it as for the runs the offer
    // listed (a stop goes there; that node's end ends it), its deadline unknown here.
    if (!st.moves)
      st.moves = std::make_unique<session_moves>();
    auto& remote = st.moves->remote_runs;
    if (std::none_of(remote.begin(), remote.end(), same))
      remote.push_back(offered_run{*event.run_id, event.thread_id, event.reply_to});
  }
  emit(self, event);
  finish_drain_if_idle(self);
  finish_hosting_if_idle(self);
}

/// The node hosting this session's remote runs ended them without their final events (it
/// stopped, or the hand-over broke): each gets its one final event here.
void on_upstream_gone(manager_pointer self) {
  auto& st = self->state;
  if (!st.moves)
    return;
  for (auto& run : std::exchange(st.moves->remote_runs, {}))
    emit_lost_run(self, run, "the run was lost: the node running it ended it");
  finish_drain_if_idle(self);
  finish_hosting_if_idle(self);
}

/// Whether a session whose socket closed this way waits for a resume (DESIGN §8): a
/// connection lost without a close frame, or one the router closed because the heartbeat found
/// it lost (a peer whose network went away silently: 4009) or its token expired (the client
/// comes back with a fresh token: 4501). A client that sends those codes itself closes as with
/// any other code: its session ends (else a client could keep a detached session, and its runs,
/// at will).
bool resumable(const manager_state& st, std::uint16_t code, bool clean, bool by_peer) {
  if (st.shutting_down || st.settings->resume_window.count() == 0)
    return false;
  return (!clean && code == 1006)
         || (!by_peer
             && (code == close_code::heartbeat_timeout.code
                 || code == close_code::token_expired.code));
}

void on_closed(manager_pointer self, std::uint16_t code, bool clean, bool by_peer,
               std::uint64_t generation) {
  auto& st = self->state;
  if (generation != st.generation) { // a socket this session has moved away from
    if (st.moves && st.moves->old_socket == generation) { // to another node
      st.moves->old_socket.reset();
      finish_hosting_if_idle(self);
    }
    return;
  }
  if (auto m = metrics_of(self)) {
    m->closed(code);
    m->connection_closed();
  }
  st.connection = nullptr;
  st.flush_outbox(); // no connection: drops what was for the closed socket (the replay has it)
  st.release_held_syncs();
  if (!resumable(st, code, clean, by_peer))
    return self->quit(caf::exit_reason::user_shutdown); // not normal: children must end too
  ++st.generation;
  self->send(st.router, session_atom::value, false, std::string{}); // the token stays valid
  self->delayed_send(self, st.settings->resume_window, expire_atom::value, st.generation);
}

} // namespace

void on_shutdown(manager_pointer self, std::uint16_t code) {
  auto& st = self->state;
  st.shutting_down = true;
  if (!st.connection)
    return self->quit(caf::exit_reason::user_shutdown);
  st.close_connection(close_reason_of(code));
}

namespace {

void on_message(manager_pointer self, protocol::inbound_message& msg) {
  if (msg.type == "ping") {
    protocol::outbound_event pong;
    pong.type = "pong";
    pong.reply_to = std::move(msg.id);
    return emit(self, std::move(pong));
  }
  bool fault = msg.type == "test_fault" && self->state.settings->test_faults;
  if (fault && msg.payload.value("where", nlohmann::json{}) != "handler")
    throw std::runtime_error("fault injected into a connection manager");
  if (is_thread_message(msg.type) || fault) {
    auto& st = self->state;
    if (!st.threads)
      st.threads = spawn_thread_handler(self, caf::actor_cast<handler_parent>(self),
                                        st.settings->session.outbound_queue_bytes / 4,
                                        st.settings->test_faults);
    st.handler_pending.push_back(msg.id);
    return self->send(st.threads, handle_atom::value, std::move(msg));
  }
  if (is_agent_message(msg.type))
    return on_agent_message(self, msg);
  reply_error(self, error_code::unknown_type, "unknown message type " + protocol::quote_excerpt(msg.type),
              std::move(msg.id));
}

/// The connection's token bucket (router.messages-per-second / -burst). False: the message
/// is refused; after messages-burst refusals in a row the connection closes with 4029.
bool admit(manager_pointer self, const std::optional<std::string>& reply_to) {
  auto& st = self->state;
  auto& limits = *st.settings;
  if (st.bucket.take(static_cast<double>(limits.messages_per_second),
                     static_cast<double>(limits.messages_burst))) {
    st.refused_in_row = 0;
    return true;
  }
  if (++st.refused_in_row >= limits.messages_burst) {
    if (st.connection && !st.shutting_down) {
      st.shutting_down = true;
      st.close_connection(close_code::rate_limited);
    }
    return false;
  }
  reply_error(self, error_code::rate_limited, "too many messages: slow down", reply_to);
  return false;
}

void on_frame(manager_pointer self, const std::string& text) {
  if (self->state.shutting_down)
    return; // closing: nothing more is processed
  auto parsed = protocol::parse_inbound(text);
  if (!admit(self, std::holds_alternative<protocol::inbound_message>(parsed)
                     ? std::get<protocol::inbound_message>(parsed).id
                     : std::get<protocol::protocol_error>(parsed).reply_to))
    return;
  if (auto* error = std::get_if<protocol::protocol_error>(&parsed)) {
    if (auto m = metrics_of(self))
      m->message_in("other");
    return emit(self, protocol::make_error(*error));
  }
  auto& msg = std::get<protocol::inbound_message>(parsed);
  if (auto m = metrics_of(self))
    m->message_in(msg.type);
  on_message(self, msg);
}

/// Children are linked: a run's or handler's end arrives here; anything else (the router
/// going down) ends the manager.
void on_exit_msg(manager_pointer self, caf::exit_msg& msg) {
  if (on_run_exit(self, msg.source, msg.reason))
    return;
  auto& st = self->state;
  if (st.threads && msg.source == st.threads.address()) {
    st.threads = nullptr; // respawned on next use
    // Every request it had not answered still gets its one outcome.
    for (auto& id : st.handler_pending)
      reply_error(self, error_code::internal, "the request failed", id);
    st.handler_pending.clear();
    finish_drain_if_idle(self);
    return finish_hosting_if_idle(self);
  }
  self->quit(msg.reason);
}

/// The router ends this session if it is detached (its runs stop, its buffer is freed, a
/// resume of it gets recovered: false); answers the replay bytes that frees.
std::uint64_t on_evict(manager_pointer self) {
  auto& st = self->state;
  if (st.connection || st.shutting_down)
    return 0; // resumed meanwhile, or ending anyway
  std::uint64_t freed = st.replay ? st.replay->capacity() : 0;
  st.replay.reset(); // freed now, before the router counts again
  st.shutting_down = true;
  self->quit(caf::exit_reason::user_shutdown);
  return freed;
}

/// The one place that knows which manager is handling a message on this thread: set by
/// manager_impl::resume for as long as it runs, restored afterwards (an actor resumed inline
/// by another one's send nests).
thread_local manager_pointer running = nullptr;

manager_pointer running_manager() {
  assert(running != nullptr && "a manager handler runs only inside manager_impl::resume");
  return running;
}

/// Every manager runs this same behavior object: its handlers hold no pointer to their
/// manager and find it with running_manager(), so an idle connection does not carry a copy
/// of every handler with its own captured `self`.
manager_actor::behavior_type shared_behavior() {
  static const manager_actor::behavior_type behavior{
    [](frame_atom, const std::string& text) { on_frame(running_manager(), text); },
    [](binary_atom, std::uint64_t) {
      auto self = running_manager();
      if (!self->state.shutting_down && admit(self, std::nullopt))
        reply_error(self, error_code::invalid_message,
                    "binary frames are not supported: send JSON text frames", std::nullopt);
    },
    [](closed_atom, std::uint16_t code, bool clean, bool by_peer, std::uint64_t generation) {
      on_closed(running_manager(), code, clean, by_peer, generation);
    },
    [](shutdown_atom, std::uint16_t code) { on_shutdown(running_manager(), code); },
    [](drain_atom) {
      auto self = running_manager();
      self->state.draining = true;
      finish_drain_if_idle(self);
    },
    [](emit_atom, protocol::outbound_event& event) {
      auto self = running_manager();
      // The handler answers its requests in order, one event each.
      auto& pending = self->state.handler_pending;
      if (!pending.empty())
        pending.erase(pending.begin());
      emit(self, std::move(event));
      finish_drain_if_idle(self);   // a drain may have waited only for this answer,
      finish_hosting_if_idle(self); // and a host may have kept on for it
    },
    [](run_event_atom, protocol::outbound_event& event) { on_run_event(running_manager(), event); },
    [](run_sync_atom) { return on_run_sync(running_manager()); },
    [](writable_atom, std::uint64_t generation) {
      auto self = running_manager();
      if (generation == self->state.generation)
        self->state.release_held_syncs();
    },
    [](store_atom, thread_query& q) {
      auto self = running_manager();
      // The one place a handler's query gets its user_id: this connection's own.
      return self->delegate(self->state.settings->store, store_atom::value,
                            self->state.ctx->user_id(), std::move(q));
    },
    [](deadline_atom) { on_run_deadlines(running_manager()); },
    [](flush_atom) {}, // manager_impl::consume sends the outbox once the mailbox is empty
    [](publish_atom, const protocol::outbound_event& event) {
      auto self = running_manager();
      // Asked for its offer, the session is moving: what is published from now on comes after
      // the owner's stream mark, which the adopting node delivers itself (cluster_bus).
      if (auto& moves = self->state.moves;
          moves && (moves->offer_waiting || moves->state != session_moves::away::none))
        return;
      emit(self, event);
    },
    [](resume_atom, connection_ptr& c, std::uint64_t last,
       const context::user_execution_context& ctx) {
      return on_resume(running_manager(), c, last, ctx);
    },
    [](expire_atom, std::uint64_t generation) {
      auto self = running_manager();
      if (!self->state.connection && generation == self->state.generation)
        self->quit(caf::exit_reason::user_shutdown); // nobody came back in time
    },
    [](evict_atom) -> std::uint64_t { return on_evict(running_manager()); },
    [](trim_atom) {
      auto& st = running_manager()->state;
      if (st.replay && st.settings->budget)
        st.replay->shrink_to(st.settings->budget->buffer_cap());
    },
    [](offer_atom, std::uint64_t last) { return ask_offer(running_manager(), last); },
    [](handover_atom, bool accepted) { on_handover(running_manager(), accepted); },
    [](remotereq_atom, protocol::inbound_message& msg) {
      if (msg.type == "stop_agent") // the adopter asks only this of the runs hosted here
        on_agent_message(running_manager(), msg);
    },
    [](upstream_atom, protocol::outbound_event& event) {
      on_upstream_event(running_manager(), event);
    },
    [](upgone_atom) { on_upstream_gone(running_manager()); },
  };
  return behavior;
}

void keep_for_replay(manager_pointer self, std::uint64_t id, const std::string& frame);
bool keeps_replay(const manager_settings& settings);

class manager_impl final : public caf::stateful_actor<manager_state, manager_actor::base> {
public:
  using super = caf::stateful_actor<manager_state, manager_actor::base>;

  manager_impl(caf::actor_config& cfg, router_feedback router, connection_ptr connection,
               context::user_execution_context ctx,
               std::shared_ptr<const manager_settings> settings, session_offer adopted)
    : super(cfg),
      adopted_(adopted.ok ? std::make_unique<session_offer>(std::move(adopted)) : nullptr) {
    state.router = std::move(router);
    state.ctx = std::make_unique<const context::user_execution_context>(
      adopted_ ? ctx.in_session(adopted_->session_id) : std::move(ctx));
    state.settings = std::move(settings);
    state.bucket = token_bucket{static_cast<double>(state.settings->messages_burst)};
    state.connection = std::move(connection); // started by make_behavior, on the manager's turn
  }

  resume_result resume(caf::execution_unit* unit, std::size_t max_throughput) override {
    auto outer = std::exchange(running, this);
    auto result = super::resume(unit, max_throughput);
    running = outer;
    return result;
  }

  // Every message passes here, whichever handler takes it (behavior, exit handler, response
  // handlers). The frames emitted so far leave once no other message is waiting; otherwise
  // the next handlers add theirs and the last one of the turn sends them all.
  caf::invoke_message_result consume(caf::mailbox_element& x) override {
    auto result = super::consume(x);
    if (state.moves && state.moves->offer_waiting) // after the message that ended the wait
      offer_when_ready(this);
    if (mailbox().empty() ? !(std::exchange(state.hold_outbox, false) && hold_for_children())
                          : state.outbox.size() >= manager_state::max_outbox_frames)
      state.flush_outbox();
    return result;
  }

private:
  // A run started in this turn: its actor runs next on this thread, and a demo run's events
  // (all of an echo run's) arrive before anything else happens here. A flush message deferred
  // behind it lets agent_started leave with them in one write instead of alone before them.
  bool hold_for_children() {
    auto* io = current_io_context();
    if (io == nullptr || state.outbox.empty())
      return false;
    boost::asio::defer(*io, [self = caf::actor_cast<manager_actor>(this)] {
      caf::anon_send(self, flush_atom::value);
    });
    return true;
  }

protected:
  behavior_type make_behavior() override {
    set_exit_handler([this](caf::exit_msg& msg) { on_exit_msg(this, msg); });
    auto connection = std::move(state.connection);
    if (!connection->claim()) {
      // The detached session this connection asked to resume took it after the router had
      // given up waiting for its answer: this manager never had a connection.
      quit(caf::exit_reason::normal);
      return shared_behavior();
    }
    if (adopted_)
      state.next_event_id = adopted_->next_event_id;
    attach_connection(this, std::move(connection), adopted_ != nullptr,
                      state.ctx->token_expires_at());
    if (auto offer = std::move(adopted_))
      adopt(std::move(*offer));
    state.flush_outbox(); // the greeting leaves now: no message may be waiting to end this turn
    return shared_behavior();
  }

private:
  /// Goes on with a session another node offered: what the client missed, kept for a later
  /// resume like any frame, and the runs that stayed there.
  void adopt(session_offer offer) {
    for (auto& [id, frame] : offer.frames) {
      if (keeps_replay(*state.settings))
        keep_for_replay(this, id, frame);
      state.to_outbox(std::move(frame));
    }
    for (auto& event : offer.published)
      emit(this, event);
    if (offer.runs.empty())
      return;
    state.moves = std::make_unique<session_moves>();
    state.moves->remote_runs = std::move(offer.runs);
    arm_remote_run_check(this);
  }

  /// Until make_behavior: the session this manager continues, if any (a pointer: a manager
  /// keeps its actor's size for life, and most never continue one).
  std::unique_ptr<session_offer> adopted_;
};

/// Keeps a frame for a resume; past the process's replay budget, asks the router to enforce
/// it (whoever notices first, unless the router is at it already).
void keep_for_replay(manager_pointer self, std::uint64_t id, const std::string& frame) {
  auto& st = self->state;
  auto* budget = st.settings->budget.get();
  if (!st.replay)
    st.replay = std::make_unique<replay_buffer>(st.settings->resume_buffer_events,
                                                st.settings->resume_buffer_bytes,
                                                st.settings->resume_window, budget);
  st.replay->push(id, frame, replay_buffer::clock::now());
  if (budget == nullptr)
    return;
  budget->relax_cap_if_low();
  if (budget->over() && budget->claim_enforcement())
    self->send(st.router, budget_atom::value);
}

bool keeps_replay(const manager_settings& settings) {
  return settings.resume_window.count() > 0 && settings.resume_buffer_events > 0;
}

/// A hosted run's event, for the node that adopted this session: it stamps it.
void hand_to_adopter(manager_pointer self, const protocol::outbound_event& event) {
  auto& moves = *self->state.moves;
  if (moves.state == session_moves::away::offered)
    moves.held.push_back(event);
  else
    self->send(self->state.router, forward_atom::value, event);
}

std::string_view metric_type(const protocol::outbound_event& event) {
  return event.published ? std::string_view{"published"} : std::string_view{event.type};
}

} // namespace

void emit(manager_pointer self, const protocol::outbound_event& event) {
  auto& st = self->state;
  if (st.moves && st.moves->state != session_moves::away::none)
    return hand_to_adopter(self, event);
  auto id = st.next_event_id++;
  if (auto m = metrics_of(self)) {
    double latency = -1;
    if (event.created != std::chrono::steady_clock::time_point{})
      latency = std::chrono::duration<double>(std::chrono::steady_clock::now() - event.created)
                  .count();
    m->event_out(metric_type(event), latency);
  }
  if (!st.renderer)
    st.renderer = std::make_unique<protocol::event_renderer>(st.ctx->user_id());
  auto frame = st.renderer->render(event, id, std::chrono::system_clock::now());
  if (keeps_replay(*st.settings))
    keep_for_replay(self, id, frame);
  if (st.connection)
    st.to_outbox(std::move(frame)); // sent when this turn ends
}

void reply_error(manager_pointer self, std::string_view code, std::string message,
                 std::optional<std::string> reply_to) {
  emit(self, protocol::make_error(protocol::protocol_error{code, std::move(message), std::move(reply_to)}));
}

manager_actor spawn_connection_manager(caf::local_actor* parent, router_feedback router,
                                       connection_ptr connection,
                                       context::user_execution_context ctx,
                                       std::shared_ptr<const manager_settings> settings,
                                       session_offer adopted) {
  return parent->spawn<manager_impl, caf::linked>(std::move(router), std::move(connection),
                                                  std::move(ctx), std::move(settings),
                                                  std::move(adopted));
}

} // namespace er::actors
