#include "actors/router/router.hpp"

#include <algorithm>
#include <map>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "protocol/close_codes.hpp"

namespace er::actors {

namespace {

constexpr auto resume_timeout = std::chrono::seconds{5};
/// Longer than the bus's own wait for an offer (cluster_bus.cpp), which answers first.
constexpr auto adopt_request_timeout = std::chrono::seconds{8};
constexpr auto evict_timeout = std::chrono::seconds{5};
/// Under the replay budget a connected session's buffer is capped tighter each round it is
/// not enough; below this the cap is zero (no replay), so that even a budget too small for
/// the connections' frames is met, and the rounds end.
constexpr std::size_t min_buffer_cap = 512;
/// How long trimmed buffers get before the budget is looked at again.
constexpr auto budget_settle_time = std::chrono::milliseconds{100};

// The strings live once, as keys of `users` and `manager_by_token` (whose nodes stay put),
// and a record points at them: an index entry per connection, not three copies of its ids.
/// The other end of a session that moved between nodes (manager/session_handover.hpp).
struct peer_link {
  std::string node;
  std::string handover; ///< the hand-over's id, the same on both nodes
};

/// A manager's part in hand-overs: the node hosting runs of its session (upstream), the node
/// its session moved to (downstream). Null for a session that never moved.
struct record_peers {
  std::optional<peer_link> upstream;
  std::optional<peer_link> downstream;
  std::string user_id; ///< a host's user: it has left the index that held the string
};

struct manager_record {
  manager_actor handle;
  const std::string* user_id;                ///< the key of its entry in `users` (a host: peers->user_id)
  const std::string* resume_token = nullptr; ///< the key in `manager_by_token`; null: none
  bool attached = true;
  /// Its session moved to another node and it only hosts runs for it: out of the user's
  /// index (no publish, disconnect or resume reaches it), counted nowhere.
  bool hosting = false;
  bool closing = false; ///< told to close by to_user (a disconnect): ending, not counted
  std::uint64_t detached_at = 0; ///< its key in `detached_order` while detached; 0: none
  std::unique_ptr<record_peers> peers;
  /// A resume with a place the limit script reserved is under way (resume_here): while true,
  /// the session's attach settles the place with its count (count), and sets it false.
  std::shared_ptr<bool> place_on_attach;
};

struct user_entry {
  std::vector<caf::actor_addr> managers;
  std::uint64_t attached = 0;
};

struct router_state {
  std::shared_ptr<const manager_settings> settings;
  std::unordered_map<caf::actor_addr, manager_record> managers;
  std::unordered_map<std::string, user_entry> users;
  std::unordered_map<std::string, caf::actor_addr> manager_by_token;
  /// Detached sessions, oldest first, for ending them early: per user past
  /// max-detached-per-user, and all of them first when the replay budget is exceeded.
  std::map<std::uint64_t, caf::actor_addr> detached_order;
  std::uint64_t detach_count = 0;
  router_stats counts; ///< kept up to date on every change: no walk over all connections
  cluster_bus_actor bus; ///< null on a single node
  std::string node_id;   ///< in a cluster: this node's id
  /// Managers at one end of a hand-over, by its id: routes the other node's notes to them.
  std::unordered_map<std::string, caf::actor_addr> by_handover;
  /// Resumes of detached sessions under way, by user: each holds a place within
  /// max-connections-per-user until its session is attached again (or a fresh one is made).
  std::unordered_map<std::string, std::uint32_t> resuming;
  bool shutting_down = false;

  static inline const char* name = "router";
};

using router_pointer = router_actor::stateful_pointer<router_state>;

/// Connections past the per-user limit are upgraded and closed at once, so that clients
/// read the close code (4503) instead of a failed handshake.
class refusing_sink final : public net::session_sink {
  void on_text(std::string) override {}
  void on_binary(std::size_t) override {}
  void on_closed(net::close_info) override {}
};

/// The user's connections here for max-connections-per-user: those attached, and the
/// resumes of detached sessions under way (a detached session does not count until then).
std::size_t attached_of(router_pointer self, const std::string& user_id) {
  auto& st = self->state;
  auto it = st.users.find(user_id);
  auto r = st.resuming.find(user_id);
  return (it == st.users.end() ? 0 : it->second.attached)
         + (r == st.resuming.end() ? 0 : r->second);
}

void end_resuming(router_state& st, const std::string& user_id) {
  if (auto r = st.resuming.find(user_id); r != st.resuming.end() && --r->second == 0)
    st.resuming.erase(r);
}

void add(std::uint64_t& n, int delta) {
  n = delta < 0 ? n - static_cast<std::uint64_t>(-delta) : n + static_cast<std::uint64_t>(delta);
}

/// A place the limit script was asked for (acquire, reserve) is settled: the bus stops adding
/// it to this node's count of the user and writes the count anew (cluster_bus_actor).
void settle_place(router_pointer self, const std::string& user) {
  self->send(self->state.bus, settle_atom::value, user);
}

/// Moves one manager of `user` between attached and detached (or in and out), keeping the
/// counts and the users metric current. `settles`: the connection counted here is a place the
/// limit script granted, settled with this count (settle_place) in one write of it to Redis.
void count(router_pointer self, const std::string& user, int attached_delta, int detached_delta,
           bool settles = false) {
  auto& st = self->state;
  auto& entry = st.users[user];
  bool had_connection = entry.attached > 0;
  add(entry.attached, attached_delta);
  add(st.counts.connections, attached_delta);
  add(st.counts.detached, detached_delta);
  if (had_connection != (entry.attached > 0))
    add(st.counts.users, entry.attached > 0 ? 1 : -1);
  if (auto& m = st.settings->metrics) {
    m->set_users(static_cast<double>(st.counts.users));
    m->set_detached(static_cast<double>(st.counts.detached));
  }
  if (st.bus && attached_delta != 0) // this node's count of the user, for the cluster's limit
    self->send(st.bus, presence_atom::value, user, static_cast<std::int64_t>(entry.attached),
               settles);
}

/// Past max-connections-per-user the connection is upgraded and closed at once with 4503,
/// so that the client reads the close code instead of a failed handshake.
void refuse_over_limit(router_pointer self, const connection_ptr& connection,
                       const context::user_execution_context& ctx) {
  if (!connection->claim()) // a manager resumed with it after all (see attach)
    return;
  connection->start(std::make_shared<refusing_sink>(), ctx.token_expires_at()); // closed next
  connection->close(close_code::too_many_connections);
  if (auto& m = self->state.settings->metrics)
    m->closed(close_code::too_many_connections.code);
}

/// Whether one connection more of the user fits within max-connections-per-user by this node's
/// own count (no cluster, or Redis unreachable); if not, the connection is refused (4503).
bool fits_own_count(router_pointer self, const connection_ptr& connection,
                    const context::user_execution_context& ctx) {
  if (attached_of(self, ctx.user_id()) < self->state.settings->max_connections_per_user)
    return true;
  refuse_over_limit(self, connection, ctx);
  return false;
}

/// Spawns the manager of a new session, or of one adopted from another node (`adopted`: its
/// owner's note with an ok offer). `settles`: its connection is a place the limit script
/// granted (count).
manager_record& spawn_admitted(router_pointer self, connection_ptr connection,
                               context::user_execution_context ctx, peer_note adopted = {},
                               bool settles = false) {
  auto& st = self->state;
  auto& user = *st.users.try_emplace(ctx.user_id()).first;
  auto manager = spawn_connection_manager(self, caf::actor_cast<router_feedback>(self),
                                          std::move(connection), std::move(ctx), st.settings,
                                          std::move(adopted.offer));
  user.second.managers.push_back(manager.address());
  manager_record rec;
  rec.handle = manager;
  rec.user_id = &user.first;
  auto& placed = st.managers.emplace(manager.address(), std::move(rec)).first->second;
  count(self, user.first, +1, 0, settles);
  return placed;
}

/// A manager admitted after the drain was sent to the others (its admission or a failed resume
/// was still being answered) is drained as well, after what its admission owes it; else it
/// would stay open for the drain's whole time.
void drain_if_late(router_pointer self, const manager_actor& manager) {
  if (self->state.shutting_down)
    self->send(manager, drain_atom::value);
}

/// The limit script was asked for a place and no answer came: one that timed out here may
/// still have been counted in Redis, so it is settled; after any other error nothing is
/// counted (no script was sent, or the bus dropped the place its script did not grant).
void settle_unanswered(router_pointer self, const caf::error& err, const std::string& user) {
  if (err == caf::sec::request_timeout)
    settle_place(self, user);
}

/// A new session, within router.max-connections-per-user: across the cluster when there is
/// one (counted there at once), this node's own count while Redis is unreachable.
void spawn_manager(router_pointer self, connection_ptr connection,
                   context::user_execution_context ctx) {
  auto& st = self->state;
  auto by_own_count = [=]() mutable {
    if (fits_own_count(self, connection, ctx))
      drain_if_late(self, spawn_admitted(self, std::move(connection), std::move(ctx)).handle);
  };
  if (!st.bus)
    return by_own_count();
  auto limit = static_cast<std::uint64_t>(st.settings->max_connections_per_user);
  self->request(st.bus, resume_timeout, acquire_atom::value, ctx.user_id(), limit)
    .then(
      [=](admission& a) mutable {
        if (!a.admitted)
          return refuse_over_limit(self, connection, ctx);
        auto manager = spawn_admitted(self, std::move(connection), std::move(ctx), {}, true).handle;
        for (auto& event : a.owed) // before anything newer from the bus, which comes after
          self->send(manager, publish_atom::value, std::move(event));
        if (a.disconnected || a.lost)
          self->send(manager, shutdown_atom::value,
                     a.disconnected ? close_code::disconnected_by_backend.code
                                    : close_code::state_lost.code);
        drain_if_late(self, manager);
      },
      [=](caf::error& err) mutable { // Redis is unreachable
        settle_unanswered(self, err, ctx.user_id());
        by_own_count();
      });
}

/// A resume that attaches a detached session is a connection more: `go(reserved)` runs once it
/// fits within router.max-connections-per-user, else the client gets 4503 and the session waits
/// on. In a cluster the place is counted at once across the nodes (`reserved`: by the limit
/// script, as for a new connection); while Redis is unreachable, by this node's own count. The
/// place is held here (`resuming`) until resume_settled.
template <class Go>
void admit_resume(router_pointer self, connection_ptr connection,
                  context::user_execution_context ctx, Go go) {
  auto& st = self->state;
  auto by_own_count = [=]() mutable {
    if (!fits_own_count(self, connection, ctx))
      return;
    ++self->state.resuming[ctx.user_id()];
    go(false);
  };
  if (!st.bus)
    return by_own_count();
  auto limit = static_cast<std::uint64_t>(st.settings->max_connections_per_user);
  self->request(st.bus, resume_timeout, reserve_atom::value, ctx.user_id(), limit)
    .then(
      [=](bool admitted) mutable {
        if (!admitted)
          return refuse_over_limit(self, connection, ctx);
        ++self->state.resuming[ctx.user_id()];
        go(true);
      },
      [=](caf::error& err) mutable {
        settle_unanswered(self, err, ctx.user_id());
        by_own_count();
      });
}

/// The end of a resume admit_resume let in, attached or not. `reserved`: it holds a place the
/// limit script reserved that no attach settled (count), settled now (attached, the session is
/// in the presence count already, the manager having said so first; otherwise the place is
/// given back), before anything else is asked of the bus.
void resume_settled(router_pointer self, const std::string& user, bool reserved) {
  end_resuming(self->state, user);
  if (reserved)
    settle_place(self, user);
}

/// Sends the other node a step without content of its own.
void tell_peer(router_pointer self, peer_note::kind what, const std::string& node,
               const std::string& handover, const std::string& user) {
  peer_note note;
  note.what = what;
  note.node = node;
  note.handover = handover;
  note.user = user;
  self->send(self->state.bus, peer_atom::value, std::move(note));
}

/// A resume of a session that another node holds (DESIGN §11.5): that node offers it through
/// the bus, a manager here adopts it and the bus confirms; no offer means a fresh session.
void adopt_admitted(router_pointer self, const std::string& owner, connection_ptr connection,
                    context::user_execution_context ctx, resume_request resume, bool reserved) {
  self->request(self->state.bus, adopt_request_timeout, adopt_atom::value, owner, ctx.user_id(),
                resume.token, resume.last_event_id)
    .then(
      [=](peer_note& offer) mutable {
        if (!offer.offer.ok || self->state.shutting_down) {
          resume_settled(self, ctx.user_id(), reserved);
          if (offer.offer.ok)
            tell_peer(self, peer_note::kind::decline, offer.node, offer.handover, ctx.user_id());
          return spawn_manager(self, connection, ctx);
        }
        auto upstream = peer_link{offer.node, offer.handover};
        bool hosts_runs = !offer.offer.runs.empty() || offer.offer.owner_busy;
        // Counted here, and a place it reserved settled with that count.
        auto& rec = spawn_admitted(self, connection, ctx, std::move(offer), reserved);
        end_resuming(self->state, ctx.user_id());
        if (hosts_runs) {
          rec.peers = std::make_unique<record_peers>();
          rec.peers->upstream = upstream;
          self->state.by_handover[upstream.handover] = rec.handle.address();
        }
        tell_peer(self, peer_note::kind::accept, upstream.node, upstream.handover, ctx.user_id());
      },
      [=](caf::error&) mutable {
        resume_settled(self, ctx.user_id(), reserved);
        spawn_manager(self, connection, ctx);
      });
}

/// The adopted session is a connection more here (admit_resume): past the limit the client
/// gets 4503, and the session waits on at its owner.
void adopt_from(router_pointer self, const std::string& owner, attach_request& up) {
  auto resume = *up.resume;
  admit_resume(self, up.connection, up.ctx,
               [self, owner, connection = up.connection, ctx = up.ctx, resume](bool reserved) {
                 adopt_admitted(self, owner, connection, ctx, resume, reserved);
               });
}

/// A resume of a session held here, once admitted (`counted`: admit_resume held a place for
/// it). The session is looked up anew: it may have ended while the limit was asked.
void resume_here(router_pointer self, connection_ptr connection,
                 context::user_execution_context ctx, resume_request resume, bool counted,
                 bool reserved) {
  auto& st = self->state;
  auto place = std::make_shared<bool>(reserved); // unless the attach settles it (on_session)
  auto settle = [=] {
    if (counted)
      resume_settled(self, ctx.user_id(), std::exchange(*place, false));
  };
  auto it = st.manager_by_token.find(resume.token);
  auto rec = it == st.manager_by_token.end() ? st.managers.end() : st.managers.find(it->second);
  if (rec == st.managers.end() || *rec->second.user_id != ctx.user_id()) {
    settle();
    return spawn_manager(self, connection, ctx);
  }
  if (reserved)
    rec->second.place_on_attach = place;
  // Past the timeout the manager may still take the connection: whichever of it and the
  // fresh manager claims the connection first owns it (ws_connection::claim).
  self->request(rec->second.handle, st.settings->resume_answer_timeout, resume_atom::value,
                connection, resume.last_event_id, ctx)
    .then(
      [=](bool resumed) {
        settle(); // attached again now if resumed: the manager said so first
        if (!resumed)
          spawn_manager(self, connection, ctx);
      },
      [=](caf::error&) {
        settle();
        spawn_manager(self, connection, ctx);
      });
}

void attach(router_pointer self, attach_request& up) {
  auto& st = self->state;
  if (st.shutting_down) {
    if (!up.connection->claim())
      return;
    up.connection->start(std::make_shared<refusing_sink>(), up.ctx.token_expires_at()); // closed next
    up.connection->close(close_code::going_away);
    return;
  }
  if (up.resume) {
    auto it = st.manager_by_token.find(up.resume->token);
    auto rec = it == st.manager_by_token.end() ? st.managers.end() : st.managers.find(it->second);
    // Another user's token behaves exactly like an unknown one: a fresh session.
    if (rec != st.managers.end() && *rec->second.user_id == up.ctx.user_id()) {
      // A session whose socket still looks open moves to the new one: no more connections
      // than before. A detached one attached again is one more (admit_resume).
      if (rec->second.attached)
        return resume_here(self, up.connection, up.ctx, *up.resume, false, false);
      auto resume = *up.resume;
      return admit_resume(self, up.connection, up.ctx,
                          [self, connection = up.connection, ctx = up.ctx, resume](bool reserved) {
                            resume_here(self, connection, ctx, resume, true, reserved);
                          });
    }
    if (auto owner = st.bus ? resume_token_node(up.resume->token) : std::nullopt;
        owner && *owner != st.node_id && rec == st.managers.end())
      return adopt_from(self, *owner, up);
  }
  spawn_manager(self, std::move(up.connection), std::move(up.ctx));
}

void forget_token(router_state& st, manager_record& rec) {
  if (!rec.resume_token)
    return;
  if (auto it = st.manager_by_token.find(*rec.resume_token); it != st.manager_by_token.end())
    st.manager_by_token.erase(it);
  rec.resume_token = nullptr;
}

/// Takes a manager out of the detached order (it resumed, ends, or is being ended).
void unlist_detached(router_state& st, manager_record& rec) {
  if (rec.detached_at != 0)
    st.detached_order.erase(rec.detached_at);
  rec.detached_at = 0;
}

/// Ends a detached session early; `then` runs once it has gone (or did not answer).
template <class F>
void evict(router_pointer self, manager_record& rec, std::string_view reason, F then) {
  unlist_detached(self->state, rec);
  if (auto& m = self->state.settings->metrics)
    m->detached_evicted(reason);
  self->request(rec.handle, evict_timeout, evict_atom::value)
    .then([then](std::uint64_t) mutable { then(); }, [then](caf::error&) mutable { then(); });
}

/// Past router.max-detached-per-user, the user's oldest detached session ends.
void bound_detached(router_pointer self, const std::string& user_id) {
  auto& st = self->state;
  std::size_t detached = 0; // not counting those already being ended
  manager_record* oldest = nullptr;
  for (auto& addr : st.users.at(user_id).managers) {
    auto& rec = st.managers.at(addr);
    if (rec.detached_at == 0)
      continue;
    ++detached;
    if (!oldest || rec.detached_at < oldest->detached_at)
      oldest = &rec;
  }
  if (detached > st.settings->max_detached_per_user)
    evict(self, *oldest, "per_user_limit", [] {});
}

void on_session(router_pointer self, bool attached, const std::string& token) {
  auto& st = self->state;
  auto rec = st.managers.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
  if (rec == st.managers.end())
    return;
  if (!token.empty()) {
    forget_token(st, rec->second);
    rec->second.resume_token = &st.manager_by_token.insert_or_assign(token, rec->first).first->first;
  }
  if (rec->second.attached == attached)
    return;
  rec->second.attached = attached;
  bool settles = false;
  if (attached && rec->second.place_on_attach)
    settles = std::exchange(*rec->second.place_on_attach, false);
  rec->second.place_on_attach.reset();
  count(self, *rec->second.user_id, attached ? +1 : -1, attached ? -1 : +1, settles);
  if (attached)
    return unlist_detached(st, rec->second);
  rec->second.detached_at = ++st.detach_count;
  st.detached_order.emplace(rec->second.detached_at, rec->first);
  bound_detached(self, *rec->second.user_id);
}

/// The replay buffers hold more than router.replay-budget-bytes: detached sessions end,
/// oldest first, one at a time until the buffers are back under 90% of the budget; when no
/// detached session is left, every connected session's buffer is capped at an equal share
/// (tighter each round that is not enough), so that the largest drop their oldest frames.
/// The router keeps the turn (no manager asks again) until the buffers are under the target.
void enforce_budget(router_pointer self) {
  auto& st = self->state;
  auto& budget = *st.settings->budget;
  auto target = budget.limit() / 10 * 9;
  if (budget.used() <= target || st.shutting_down)
    return budget.enforcement_done();
  if (!st.detached_order.empty()) {
    auto& rec = st.managers.at(st.detached_order.begin()->second);
    return evict(self, rec, "replay_budget", [self] { enforce_budget(self); });
  }
  auto share = target / std::max<std::uint64_t>(1, st.counts.connections);
  auto cap = std::min(budget.buffer_cap(), static_cast<std::size_t>(share));
  if (cap == budget.buffer_cap()) // this cap has been tried: tighten it
    cap = cap / 4 * 3;
  budget.set_buffer_cap(cap < min_buffer_cap ? 0 : cap);
  for (auto& [addr, rec] : st.managers)
    if (rec.attached)
      self->send(rec.handle, trim_atom::value);
  if (auto& m = st.settings->metrics)
    m->replay_capped();
  self->delayed_send(self, budget_settle_time, budget_atom::value); // then look again
}

/// Takes a manager out of the user's index and the counts: it ended, or its session moved
/// to another node. `user_id` stays valid: the caller holds its own copy.
void unindex(router_pointer self, const caf::actor_addr& manager, manager_record& rec,
             const std::string& user_id) {
  auto& st = self->state;
  count(self, user_id, rec.attached ? -1 : 0, rec.attached ? 0 : -1);
  auto user = st.users.find(user_id);
  auto& list = user->second.managers;
  list.erase(std::remove(list.begin(), list.end(), manager), list.end());
  if (list.empty()) {
    st.users.erase(user);
    if (st.bus) // no session of the user left here: the bus unsubscribes
      self->send(st.bus, presence_atom::value, user_id, std::int64_t{-1}, false);
  }
  forget_token(st, rec);
  unlist_detached(st, rec);
}

/// A manager at an end of a hand-over ended: the other node learns it (the session's end
/// stops the runs hosted for it; a host's end makes its unfinished runs lost).
void leave_peers(router_pointer self, manager_record& rec, const std::string& user_id) {
  auto& st = self->state;
  if (!rec.peers)
    return;
  if (auto& up = rec.peers->upstream) {
    tell_peer(self, peer_note::kind::ended, up->node, up->handover, user_id);
    st.by_handover.erase(up->handover);
  }
  if (auto& down = rec.peers->downstream) {
    tell_peer(self, peer_note::kind::gone, down->node, down->handover, user_id);
    st.by_handover.erase(down->handover);
  }
}

void forget(router_pointer self, const caf::actor_addr& manager) {
  auto& st = self->state;
  auto rec = st.managers.find(manager);
  if (rec == st.managers.end())
    return;
  std::string user_id = *rec->second.user_id; // a copy: the entry may go below
  if (!rec->second.hosting)
    unindex(self, manager, rec->second, user_id);
  leave_peers(self, rec->second, user_id);
  st.managers.erase(rec);
}

/// Another node asks for a session held here (a resume that reached it): the manager offers
/// it and becomes the host of its runs, out of the user's index; the answer goes back either
/// way.
void on_peer_request(router_pointer self, peer_note& ask) {
  auto& st = self->state;
  auto answer = [self, ask](session_offer offer) {
    peer_note note;
    note.what = peer_note::kind::offer;
    note.node = ask.node;
    note.handover = ask.handover;
    note.user = ask.user;
    note.offer = std::move(offer);
    self->send(self->state.bus, peer_atom::value, std::move(note));
  };
  auto it = st.manager_by_token.find(ask.token);
  auto rec = it == st.manager_by_token.end() ? st.managers.end() : st.managers.find(it->second);
  if (rec == st.managers.end() || *rec->second.user_id != ask.user || st.shutting_down)
    return answer({}); // another user's token is an unknown one
  auto addr = rec->first;
  self->request(rec->second.handle, resume_timeout, offer_atom::value, ask.last_event_id)
    .then(
      [=](session_offer& offer) mutable {
        auto& st = self->state;
        auto r = st.managers.find(addr);
        if (offer.ok && r != st.managers.end() && !r->second.hosting) {
          std::string user_id = *r->second.user_id;
          unindex(self, addr, r->second, user_id);
          r->second.hosting = true;
          if (!r->second.peers)
            r->second.peers = std::make_unique<record_peers>();
          r->second.peers->user_id = std::move(user_id);
          r->second.user_id = &r->second.peers->user_id;
          r->second.peers->downstream = peer_link{ask.node, ask.handover};
          st.by_handover[ask.handover] = addr;
        }
        answer(std::move(offer));
      },
      [=](caf::error&) mutable { answer({}); });
}

/// A step from the other end of a hand-over, for the manager at this end.
void on_peer_note(router_pointer self, peer_note& note) {
  auto& st = self->state;
  if (note.what == peer_note::kind::request)
    return on_peer_request(self, note);
  auto it = st.by_handover.find(note.handover);
  auto rec = it == st.by_handover.end() ? st.managers.end() : st.managers.find(it->second);
  if (rec == st.managers.end() || *rec->second.user_id != note.user) {
    if (note.what == peer_note::kind::event) // nobody here for it: the host stops its runs
      tell_peer(self, peer_note::kind::ended, note.node, note.handover, note.user);
    return;
  }
  auto& manager = rec->second.handle;
  switch (note.what) {
    case peer_note::kind::accept:
    case peer_note::kind::decline:
      return self->send(manager, handover_atom::value, note.what == peer_note::kind::accept);
    case peer_note::kind::event:
      return self->send(manager, upstream_atom::value, std::move(note.event));
    case peer_note::kind::stop:
      return self->send(manager, remotereq_atom::value, std::move(note.request));
    case peer_note::kind::ended:
      return self->send(manager, shutdown_atom::value, close_code::normal.code);
    case peer_note::kind::gone:
      return self->send(manager, upgone_atom::value);
    default:
      return;
  }
}

/// A manager's message for the other end of its hand-over (forward_atom: a hosted run's event
/// downstream; upreq_atom: a stop_agent upstream).
template <class Fill>
void to_peer(router_pointer self, bool downstream, peer_note::kind what, Fill fill) {
  auto& st = self->state;
  auto rec = st.managers.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
  if (rec == st.managers.end() || !rec->second.peers)
    return;
  auto& link = downstream ? rec->second.peers->downstream : rec->second.peers->upstream;
  if (!link)
    return;
  peer_note note;
  note.what = what;
  note.node = link->node;
  note.handover = link->handover;
  note.user = *rec->second.user_id;
  fill(note);
  self->send(st.bus, peer_atom::value, std::move(note));
}

/// Sends `msg` to every manager of `user_id`; answers how many are attached. A manager told to
/// close (shutdown_atom) stays in the index until it has ended, closing: nothing more is sent
/// to it or counted for it (a second disconnect in the meantime answers 0, not 1).
template <class Atom, class... Ts>
std::uint64_t to_user(router_pointer self, const std::string& user_id, Atom atom,
                      const Ts&... msg) {
  auto& st = self->state;
  auto it = st.users.find(user_id);
  if (it == st.users.end())
    return 0;
  std::uint64_t attached = 0;
  for (auto& addr : it->second.managers) {
    auto& rec = st.managers.at(addr);
    if (rec.closing)
      continue;
    self->send(rec.handle, atom, msg...);
    attached += rec.attached ? 1 : 0;
    if constexpr (std::is_same_v<Atom, shutdown_atom>)
      rec.closing = true;
  }
  return attached;
}

router_actor::behavior_type router_behavior(router_pointer self,
                                            std::shared_ptr<const manager_settings> settings,
                                            std::shared_ptr<const cluster_settings> cluster) {
  self->state.settings = std::move(settings);
  // Managers are linked: the router outlives their crashes, and they die with the router.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    if (self->state.managers.count(msg.source) > 0)
      forget(self, msg.source);
    else
      self->quit(msg.reason);
  });
  if (cluster) {
    self->state.counts.clustered = true;
    self->state.counts.cluster.node_id = cluster->node_id;
    self->state.node_id = cluster->node_id;
    self->state.bus = spawn_cluster_bus(self, caf::actor_cast<cluster_feedback>(self),
                                        std::move(cluster));
  }
  return {
    [=](attach_atom, attach_request& up) { attach(self, up); },
    [=](stats_atom) { return self->state.counts; },
    [=](drain_atom) {
      self->state.shutting_down = true;
      for (auto& [addr, rec] : self->state.managers)
        self->send(rec.handle, drain_atom::value);
    },
    [=](shutdown_atom, std::uint16_t code) {
      self->state.shutting_down = true;
      for (auto& [addr, rec] : self->state.managers)
        self->send(rec.handle, shutdown_atom::value, code);
    },
    [=](publish_atom, const std::string& user_id,
        const protocol::outbound_event& event) -> caf::result<cluster_result> {
      if (self->state.bus) // reaches this node's sessions through the user's channel too
        return self->delegate(self->state.bus, cpublish_atom::value, user_id, event);
      return cluster_result{true, to_user(self, user_id, publish_atom::value, event)};
    },
    [=](disconnect_atom, const std::string& user_id) -> caf::result<cluster_result> {
      if (self->state.bus)
        return self->delegate(self->state.bus, cdisconn_atom::value, user_id);
      return cluster_result{true, to_user(self, user_id, shutdown_atom::value,
                                          close_code::disconnected_by_backend.code)};
    },
    [=](remote_atom, const std::string& user_id, const protocol::outbound_event& event) {
      to_user(self, user_id, publish_atom::value, event);
    },
    [=](lost_atom, const std::string& user_id, std::uint16_t code) {
      to_user(self, user_id, shutdown_atom::value, code);
    },
    [=](status_atom, const cluster_status& status) { self->state.counts.cluster = status; },
    [=](session_atom, bool attached, const std::string& token) {
      on_session(self, attached, token);
    },
    [=](budget_atom) {
      if (self->state.settings->budget)
        enforce_budget(self);
    },
    [=](peer_atom, peer_note& note) { on_peer_note(self, note); },
    [=](forward_atom, protocol::outbound_event& event) {
      to_peer(self, true, peer_note::kind::event,
              [&](peer_note& note) { note.event = std::move(event); });
    },
    [=](upreq_atom, protocol::inbound_message& request) {
      to_peer(self, false, peer_note::kind::stop,
              [&](peer_note& note) { note.request = std::move(request); });
    },
  };
}

} // namespace

router_actor spawn_router(caf::actor_system& system,
                          std::shared_ptr<const manager_settings> settings,
                          std::shared_ptr<const cluster_settings> cluster) {
  return system.spawn(router_behavior, std::move(settings), std::move(cluster));
}

} // namespace er::actors
