#include "actors/router/cluster/cluster_bus.hpp"

#include <deque>
#include <functional>
#include <optional>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/router/cluster/cluster_scripts.hpp"
#include "context/ids.hpp"
#include "protocol/close_codes.hpp"

namespace er::actors {

namespace {

using json = nlohmann::json;
using reply_handler = std::function<void(redis_reply&)>;

struct shard {
  std::shared_ptr<redis_link> commands;
  std::shared_ptr<redis_link> pubsub;
  bool commands_up = false;
  bool pubsub_up = false;
  bool commands_connecting = false;
  bool pubsub_connecting = false;
};

/// A message of a user's channel, waiting while an earlier gap is filled.
struct channel_message {
  std::string epoch;
  std::uint64_t offset = 0;
  std::string event; ///< JSON {"type", "data"}
};

/// How a history read ended: every offset asked for was there, or not all of them were; or
/// its answer came after the user's state it was made for had been dropped here (the user's
/// last session here ended). Then it says nothing about the state there is now, if any: what
/// the read was for is settled again against that.
enum class read_end { complete, incomplete, superseded };

/// What a history read brought (the events when complete).
using history_done = std::function<void(read_end end, std::vector<std::string> events)>;

/// Offsets `from`..`to` of a user's stream in `epoch`. `fresh`: the epoch is new here (Redis
/// started anew), so it began somewhere in the history at an offset not known here; what the
/// history holds of earlier epochs before that is not for the sessions.
struct history_span {
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  std::string epoch;
  bool fresh = false;
  /// Fresh spans: where the stream began in the epoch (the user's `began` key) was read, and
  /// no publish in the epoch had written it (else the span is no longer fresh).
  bool began_read = false;
};

/// A history read Redis did not answer (the link went, an error reply), made again while the
/// user's channel waits, until `give_up_at`.
struct failed_read {
  history_span span;
  history_done done;
  std::chrono::steady_clock::time_point give_up_at;
};

struct user_state {
  /// Tells this state from one made for the user after it was dropped (a read's answer can
  /// arrive after both).
  std::uint64_t generation = 0;
  std::int64_t local = 0; ///< this node's open connections of the user
  /// `last` holds: from the node's first admitted connection of the user (its baseline) or,
  /// without one, from the first message seen.
  bool known = false;
  std::string epoch;      ///< of `last`; empty: nothing was published when the baseline was read
  std::uint64_t last = 0; ///< the last offset handed to the router, or the baseline's
  bool filling = false;   ///< a history read is under way: messages wait in `waiting`
  std::deque<channel_message> waiting;
  /// Work that needs the stream at rest (an adopted session catching up), run before the
  /// messages that wait once the read in progress ends.
  std::deque<std::function<void()>> deferred;
  std::optional<failed_read> retry; ///< made again on the next tick with the shard's link up
};

/// Where a user's channel starts for this node: the offset published last before the node's
/// connection of the user was counted (acquire). Every later publish counts that connection
/// in its `delivered`, so it must reach it, including those that come before the node's
/// subscription to the channel does (they are read from the history once it does).
struct baseline {
  std::string epoch;
  std::uint64_t seq = 0;
  std::chrono::steady_clock::time_point at;
};

/// How long a baseline waits for its connection to attach (admission to attach takes
/// milliseconds; one that never attached must not date a later connection's start back).
constexpr std::chrono::seconds baseline_life{5};

/// Where a user's stream stood here when another node asked for a session of the user (a
/// request): every event up to `offset` had been handed to the router before the request, so
/// the session's manager has them when it builds its offer; the adopter takes the rest from
/// the user's history. Kept until the router answers with the offer.
struct stream_mark {
  std::string epoch;
  std::uint64_t offset = 0;
  std::chrono::steady_clock::time_point at;
};

/// Drops the entries of `map` (baselines, stream marks) older than baseline_life.
template <class Map>
void erase_expired(Map& map, std::chrono::steady_clock::time_point now) {
  for (auto it = map.begin(); it != map.end();)
    it = now - it->second.at > baseline_life ? map.erase(it) : std::next(it);
}

/// A resume waiting for the owner's offer (adopt), or an offer the router has not confirmed.
struct adoption {
  std::optional<caf::typed_response_promise<peer_note>> promise; ///< while waiting for the offer
  std::string node;
  std::string user;
  /// The end of the wait under way: for the offer, then, from its arrival, for the router's
  /// acceptance. The wait for the offer's timeout message comes too and finds it not yet due.
  std::chrono::steady_clock::time_point until;
};

struct bus_state {
  std::shared_ptr<const cluster_settings> settings;
  cluster_feedback router;
  std::vector<shard> shards;
  std::unordered_map<std::string, user_state> users;
  std::unordered_map<std::string, baseline> baselines; ///< admitted, not yet attached
  std::unordered_map<std::string, adoption> adoptions; ///< by hand-over id
  std::unordered_map<std::string, stream_mark> marks;  ///< by hand-over id: requests answered here
  std::unordered_map<std::uint64_t, reply_handler> pending;
  /// Users whose count on this node Redis may not have (written while the shard's commands
  /// link was down, or the write failed): written again once it is up. A user who left
  /// meanwhile gets an HDEL; without it the old count would hold the user's limit for good.
  std::unordered_set<std::string> unsynced;
  /// Places the limit script was asked for or granted here (acquire, reserve) and the router
  /// has not settled yet (settle_atom): the node's count of the user written to Redis includes
  /// them. Else a count written meanwhile (another of the user's connections here closing or
  /// opening) would take a granted place away before it became a connection, and another node
  /// could admit one connection past the limit in that moment.
  struct held_places {
    std::uint32_t held = 0;
    bool written = false; ///< a count that includes them was written
  };
  std::unordered_map<std::string, held_places> places;
  std::uint64_t next_request = 0;
  std::uint64_t user_generations = 0; ///< user_state::generation, the last one given
  cluster_status status;
  static inline const char* name = "cluster_bus";
};

using bus_pointer = cluster_bus_actor::stateful_pointer<bus_state>;

const cluster_settings& settings_of(bus_pointer self) {
  return *self->state.settings;
}

std::string user_key(bus_pointer self, const std::string& user, const char* suffix) {
  return settings_of(self).prefix + "u:" + user + suffix;
}

std::string channel_of(bus_pointer self, const std::string& user) {
  return settings_of(self).prefix + "u:" + user;
}

std::string node_field(bus_pointer self) {
  return settings_of(self).node_id + "|" + settings_of(self).incarnation;
}

std::size_t shard_for(bus_pointer self, const std::string& user) {
  return shard_of(user, self->state.shards.size());
}

/// The channel where other nodes reach `node` (on every shard).
std::string node_channel(bus_pointer self, const std::string& node) {
  return settings_of(self).prefix + "n:" + node;
}

/// Sends a command to a shard; `then` runs in the actor with the reply.
void call(bus_pointer self, std::size_t shard_index, std::vector<std::string> argv,
          reply_handler then) {
  auto id = ++self->state.next_request;
  self->state.pending.emplace(id, std::move(then));
  auto me = caf::actor_cast<cluster_bus_actor>(self);
  self->state.shards[shard_index].commands->command(std::move(argv), [me, id](redis_reply r) {
    caf::anon_send(me, reply_atom::value, id, std::move(r));
  });
}

std::string random_epoch() {
  std::random_device random;
  return std::to_string(random()) + std::to_string(random());
}

void count_metric(bus_pointer self, void (router_metrics::*what)()) {
  if (auto& m = settings_of(self).metrics)
    ((*m).*what)();
}

// -- delivering a user's channel in offset order -------------------------------------------

/// A published event as the history and the channel carry it ({"type", "data"}); nullopt when
/// it is not one.
std::optional<protocol::outbound_event> published_event(const std::string& event_json) {
  auto doc = json::parse(event_json, nullptr, false);
  if (!doc.is_object())
    return std::nullopt;
  protocol::outbound_event ev;
  ev.type = doc.value("type", std::string{});
  ev.published = true;
  ev.created = std::chrono::steady_clock::now();
  if (auto data = doc.find("data"); data != doc.end() && data->is_object())
    ev.data = std::move(*data);
  return ev;
}

/// A disconnect's entry in a user's stream (channel and history), where events are JSON.
constexpr std::string_view disconnect_entry = "disconnect";

/// An entry of the user's stream for the user's sessions here: an event, or a disconnect
/// (closes them with 4511).
void deliver(bus_pointer self, const std::string& user, const std::string& event_json) {
  if (event_json == disconnect_entry) {
    self->send(self->state.router, lost_atom::value, user,
               close_code::disconnected_by_backend.code);
    return;
  }
  if (auto ev = published_event(event_json))
    self->send(self->state.router, remote_atom::value, user, std::move(*ev));
}

void process(bus_pointer self, const std::string& user, channel_message msg);

/// The published events among a history read's entries, up to the first disconnect; true
/// when a disconnect ended them.
bool events_before_disconnect(const std::vector<std::string>& entries,
                              std::vector<protocol::outbound_event>& out) {
  for (auto& entry : entries) {
    if (entry == disconnect_entry)
      return true;
    if (auto ev = published_event(entry))
      out.push_back(std::move(*ev));
  }
  return false;
}

/// The user's channel after a history read: the deferred work, then the messages that waited,
/// in order, until one of them begins another read.
void go_on(bus_pointer self, const std::string& user) {
  for (;;) {
    auto it = self->state.users.find(user);
    if (it == self->state.users.end())
      return;
    auto& u = it->second;
    u.filling = false;
    if (!u.deferred.empty()) {
      auto next = std::move(u.deferred.front());
      u.deferred.pop_front();
      next();
    } else if (!u.waiting.empty()) {
      auto next = std::move(u.waiting.front());
      u.waiting.pop_front();
      process(self, user, std::move(next));
    } else {
      return;
    }
    it = self->state.users.find(user);
    if (it == self->state.users.end() || it->second.filling)
      return; // gone, or reading again: that read goes on when it ends
  }
}

/// How long a history read Redis does not answer is made again before its offsets count as
/// lost (4010): five times cluster.redis-timeout-ms, time for a lost link to come back.
std::chrono::steady_clock::time_point read_deadline(bus_pointer self) {
  return std::chrono::steady_clock::now() + 5 * settings_of(self).redis_timeout;
}

/// One entry of a user's history: its offset, the epoch it was published in (empty: by a
/// node from before entries had one), the event or disconnect_entry.
struct history_entry {
  std::uint64_t offset = 0;
  std::string epoch;
  std::string entry;
};

std::vector<history_entry> entries_of(redis_reply& r) {
  std::vector<history_entry> out;
  for (auto& item : r.elements) {
    if (item.elements.size() != 2)
      continue;
    history_entry e;
    e.offset = std::strtoull(item.elements[0].text.c_str(), nullptr, 10);
    auto& fields = item.elements[1].elements;
    for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
      if (fields[i].text == "e")
        e.entry = std::move(fields[i + 1].text);
      else if (fields[i].text == "p")
        e.epoch = std::move(fields[i + 1].text);
    }
    out.push_back(std::move(e));
  }
  return out;
}

/// The entries of `span` among `entries` (the history's, from span.from to span.to), or
/// nullopt when the history no longer holds all of them. In a fresh epoch they are those
/// after the last entry of an earlier epoch (from span.from when there is none), which must
/// follow it without a gap up to span.to.
std::optional<std::vector<std::string>> span_entries(std::vector<history_entry>& entries,
                                                     const history_span& span) {
  // No publish in the epoch wrote where the stream began (read_began), so it has none by a
  // node that writes it: an empty history owes nothing. It had expired before Redis restarted
  // from its snapshot, and every user not published to lately lost its sessions (4010).
  if (span.fresh && span.began_read && entries.empty())
    return std::vector<std::string>{};
  std::size_t first = 0;
  std::uint64_t start = span.from;
  if (span.fresh) {
    first = entries.size();
    while (first > 0 && entries[first - 1].epoch == span.epoch)
      --first;
    if (first > 0)
      start = entries[first - 1].offset + 1;
  }
  if (span.to + 1 < start || entries.size() - first != span.to + 1 - start)
    return std::nullopt;
  std::vector<std::string> out;
  for (auto i = first; i < entries.size(); ++i) {
    auto& e = entries[i];
    if (e.offset != start + (i - first)) // a gap
      return std::nullopt;
    // Another epoch's offsets. An empty epoch on either side says nothing: an entry from a
    // node before entries had one, or a node whose baseline was read before any publish.
    if (!span.fresh && !e.epoch.empty() && !span.epoch.empty() && e.epoch != span.epoch)
      return std::nullopt;
    out.push_back(std::move(e.entry));
  }
  return out;
}

/// Reads the span of the user's history while the user's channel (its state here, which must
/// exist) waits; `done` gets the entries, then the channel goes on. When that state was dropped
/// meanwhile, `done` is told superseded instead, and nothing goes on: a state made for the user
/// since then does not wait for this read. A read Redis fails (the link went, an error reply)
/// is made again each tick until `give_up_at`, then counts as incomplete.
void read_history(bus_pointer self, const std::string& user, history_span span,
                  history_done done, std::chrono::steady_clock::time_point give_up_at);

/// One command of a history read for `user`: `answered` gets Redis's reply, unless the read
/// was superseded meanwhile (the user's state here ended or was made anew: `done` is told so)
/// or Redis failed the command (the link went, an error reply): then the read is made again
/// from `span` at each tick until `give_up_at`, and after that counts as incomplete.
template <class Answered>
void read_step(bus_pointer self, const std::string& user, std::vector<std::string> command,
               history_span span, history_done done,
               std::chrono::steady_clock::time_point give_up_at, Answered answered) {
  call(self, shard_for(self, user), std::move(command),
       [self, user, span, done, give_up_at, answered,
        generation = self->state.users.at(user).generation](redis_reply& r) mutable {
         auto it = self->state.users.find(user);
         if (it == self->state.users.end() || it->second.generation != generation)
           return done(read_end::superseded, {});
         if (r.is_error()) {
           if (std::chrono::steady_clock::now() < give_up_at) {
             it->second.retry = failed_read{span, done, give_up_at};
             return; // the channel waits on
           }
           done(read_end::incomplete, {});
           return go_on(self, user);
         }
         answered(r);
       });
}

/// A fresh span first reads where the user's stream began in its epoch (publish_lua writes it
/// with the epoch's first publish): from there on it is a span of that epoch like any other.
/// The history alone cannot say: the snapshot's entries may have expired.
void read_began(bus_pointer self, const std::string& user, history_span span,
                history_done done, std::chrono::steady_clock::time_point give_up_at) {
  read_step(self, user, {"GET", user_key(self, user, ":began")}, span, done, give_up_at,
            [self, user, span, done, give_up_at](redis_reply& r) mutable {
              auto prefix = span.epoch + " ";
              if (r.type == redis_reply::kind::string && r.text.rfind(prefix, 0) == 0) {
                std::uint64_t base = std::strtoull(r.text.c_str() + prefix.size(), nullptr, 10);
                span.from = std::min(std::max(span.from, base + 1), span.to + 1);
                span.fresh = false;
              }
              span.began_read = true;
              read_history(self, user, std::move(span), std::move(done), give_up_at);
            });
}

void read_history(bus_pointer self, const std::string& user, history_span span,
                  history_done done, std::chrono::steady_clock::time_point give_up_at) {
  self->state.users.at(user).filling = true;
  if (span.fresh && !span.began_read)
    return read_began(self, user, std::move(span), std::move(done), give_up_at);
  std::vector<std::string> command{"XRANGE", user_key(self, user, ":hist"),
                                   std::to_string(span.from) + "-0",
                                   std::to_string(span.to) + "-0"};
  read_step(self, user, std::move(command), span, done, give_up_at,
            [self, user, span, done](redis_reply& r) {
              auto entries = entries_of(r);
              auto events = span_entries(entries, span);
              done(events ? read_end::complete : read_end::incomplete,
                   events ? std::move(*events) : std::vector<std::string>{});
              go_on(self, user);
            });
}

/// read_history with the deadline of a first read.
void read_history(bus_pointer self, const std::string& user, history_span span,
                  history_done done) {
  read_history(self, user, std::move(span), std::move(done), read_deadline(self));
}

/// What a history read brought for the user's sessions here (up to `to`), or, if the history
/// no longer held all of it, their lost state (4010). The read was not superseded.
void hand_on_history(bus_pointer self, const std::string& user, std::uint64_t to, bool complete,
                     const std::vector<std::string>& events) {
  if (complete) {
    for (auto& event : events)
      deliver(self, user, event);
    count_metric(self, &router_metrics::cluster_gap_filled);
  } else {
    self->send(self->state.router, lost_atom::value, user, close_code::state_lost.code);
    count_metric(self, &router_metrics::cluster_gap_lost);
  }
  self->state.users.at(user).last = to;
}

/// The span is missing here: fetched from the user's history, or the user's sessions here
/// lose their state (4010). `then` goes on with the channel (not when the user's state went
/// meanwhile: the gap was that state's).
void fill_gap(bus_pointer self, const std::string& user, history_span span,
              std::function<void()> then) {
  auto to = span.to;
  read_history(self, user, std::move(span),
               [self, user, to, then](read_end end, std::vector<std::string> events) {
                 if (end == read_end::superseded)
                   return;
                 hand_on_history(self, user, to, end == read_end::complete, events);
                 then();
               });
}

/// The history reads Redis failed, made again where the shard's command link is up.
void retry_reads(bus_pointer self) {
  std::vector<std::pair<std::string, failed_read>> due;
  for (auto& [user, u] : self->state.users)
    if (u.retry && self->state.shards[shard_for(self, user)].commands_up)
      due.emplace_back(user, *std::exchange(u.retry, std::nullopt));
  for (auto& [user, read] : due)
    read_history(self, user, std::move(read.span), std::move(read.done), read.give_up_at);
}

void process(bus_pointer self, const std::string& user, channel_message msg) {
  auto& u = self->state.users[user];
  if (u.filling)
    return u.waiting.push_back(std::move(msg));
  if (!u.known) { // the first one here without a baseline: the user's stream starts here
    u.known = true;
    u.epoch = msg.epoch;
    u.last = msg.offset;
    return deliver(self, user, msg.event);
  }
  // Redis started anew: what its new epoch has before this one is owed here too.
  bool fresh = !u.epoch.empty() && msg.epoch != u.epoch;
  if (fresh)
    u.last = 0;
  u.epoch = msg.epoch; // the same, or none yet: a baseline read before the first publish
  if (msg.offset <= u.last)
    return; // seen already (a gap fill delivered it)
  if (msg.offset == u.last + 1) {
    u.last = msg.offset;
    return deliver(self, user, msg.event);
  }
  fill_gap(self, user, history_span{u.last + 1, msg.offset - 1, u.epoch, fresh},
           [self, user, msg] {
             auto& v = self->state.users[user];
             v.last = msg.offset;
             deliver(self, user, msg.event);
           });
}

/// "<epoch> <offset> <event JSON>" or "<epoch> <offset> disconnect" on a user's channel.
void on_node_message(bus_pointer self, const std::string& payload);

void note_baseline(bus_pointer self, const std::string& user, std::string epoch,
                   std::uint64_t seq);

void on_message(bus_pointer self, const std::string& channel, const std::string& payload) {
  if (channel == node_channel(self, settings_of(self).node_id))
    return on_node_message(self, payload);
  auto prefix = settings_of(self).prefix + "u:";
  if (channel.rfind(prefix, 0) != 0)
    return;
  auto user = channel.substr(prefix.size());
  if (self->state.users.count(user) == 0)
    return; // unsubscribed meanwhile
  count_metric(self, &router_metrics::cluster_message_in);
  auto first = payload.find(' ');
  auto second = first == std::string::npos ? first : payload.find(' ', first + 1);
  if (second == std::string::npos)
    return;
  auto offset = std::strtoull(payload.c_str() + first + 1, nullptr, 10);
  auto rest = payload.substr(second + 1);
  if (offset == 0) { // a node before disconnects were in the stream
    if (rest == disconnect_entry)
      deliver(self, user, rest);
    return;
  }
  process(self, user, channel_message{payload.substr(0, first), offset, std::move(rest)});
}

/// Once Redis confirmed the user's channel (subscribed anew, or again after a lost link): what
/// was published since `last` and before the subscription is fetched.
void recover(bus_pointer self, const std::string& user) {
  call(self, shard_for(self, user),
       {"MGET", user_key(self, user, ":seq"), settings_of(self).prefix + "epoch"},
       [self, user](redis_reply& r) {
         auto it = self->state.users.find(user);
         if (it == self->state.users.end() || r.is_error() || r.elements.size() != 2)
           return;
         auto& u = it->second;
         if (u.filling) // a read in progress (or waiting to be made again) covers an older
           return u.deferred.push_back([self, user] { recover(self, user); }); // span only
         auto seq = std::strtoull(r.elements[0].text.c_str(), nullptr, 10);
         auto& epoch = r.elements[1].text;
         if (!u.known || epoch.empty())
           return; // no start yet (the next message sets it), or nothing published when read
         bool fresh = !u.epoch.empty() && epoch != u.epoch; // Redis started anew
         if (fresh)
           u.last = 0;
         u.epoch = epoch; // the same, or none yet
         if (seq > u.last)
           fill_gap(self, user, history_span{u.last + 1, seq, u.epoch, fresh}, [] {});
       });
}

// -- counts, liveness, links -----------------------------------------------------------

void sync_count(bus_pointer self, const std::string& user) {
  auto& st = self->state;
  auto index = shard_for(self, user);
  if (!st.shards[index].commands_up) {
    st.unsynced.insert(user); // written when the shard is back
    return;
  }
  st.unsynced.erase(user);
  auto it = st.users.find(user);
  auto count = it == st.users.end() ? 0 : it->second.local;
  if (auto p = st.places.find(user); p != st.places.end()) {
    count += p->second.held;
    p->second.written = true;
  }
  auto key = user_key(self, user, ":conns");
  auto retry = [self, user](redis_reply& r) {
    if (r.is_error()) // the link broke first: again once it is back
      self->state.unsynced.insert(user);
  };
  if (count > 0)
    call(self, index, {"HSET", key, node_field(self), std::to_string(count)}, retry);
  else
    call(self, index, {"HDEL", key, node_field(self)}, retry);
}

/// One place of `user` fewer (bus_state::places). Whether a count that included it was
/// written: then the count must be written anew.
bool release_place(bus_pointer self, const std::string& user) {
  auto& places = self->state.places;
  auto it = places.find(user);
  if (it == places.end())
    return false;
  bool written = it->second.written;
  if (--it->second.held == 0)
    places.erase(it);
  return written;
}

/// A place counted in Redis that is settled: the node's count is written without it (with the
/// connection it became, if it became one).
void settle_place(bus_pointer self, const std::string& user) {
  release_place(self, user);
  sync_count(self, user);
}

/// Writes this node's count of every user of shard `index`, and drops the counts of users who
/// left while they could not be written.
void sync_counts(bus_pointer self, std::size_t index) {
  auto& st = self->state;
  std::vector<std::string> to_sync;
  for (auto& [user, u] : st.users)
    if (shard_for(self, user) == index && u.local > 0)
      to_sync.push_back(user);
  for (auto& [user, held] : st.places) {
    auto it = st.users.find(user);
    if (shard_for(self, user) == index && (it == st.users.end() || it->second.local == 0))
      to_sync.push_back(user); // its places alone
  }
  for (auto& user : st.unsynced) {
    auto it = st.users.find(user);
    // Left meanwhile, or only detached sessions left (they do not count): its count goes.
    if (shard_for(self, user) == index && (it == st.users.end() || it->second.local == 0))
      to_sync.push_back(user);
  }
  for (auto& user : to_sync)
    sync_count(self, user);
}

void refresh_liveness(bus_pointer self, std::size_t index) {
  auto& s = settings_of(self);
  auto key = s.prefix + "node:" + s.node_id;
  auto ttl = std::to_string(s.node_ttl.count());
  call(self, index, {"SET", key, s.incarnation, "PX", ttl, "XX"},
       [self, index, key, ttl](redis_reply& r) {
         if (r.type != redis_reply::kind::nil)
           return;
         // Expired meanwhile (this node stalled for longer than node-ttl), or Redis started
         // anew. Other nodes took this node for dead and dropped its counts (live_count_lua):
         // registered again, it writes them again, or its connections would stop counting
         // for publish and for the per-user limit until their users' next change here.
         call(self, index, {"SET", key, settings_of(self).incarnation, "PX", ttl, "NX"},
              [self, index](redis_reply& again) {
                if (again.type == redis_reply::kind::status)
                  sync_counts(self, index);
              });
       });
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
  call(self, index, {"ZADD", s.prefix + "nodes", std::to_string(now + s.node_ttl.count()),
                     s.node_id},
       [](redis_reply&) {});
  if (index != 0)
    return;
  call(self, 0, {"ZREMRANGEBYSCORE", s.prefix + "nodes", "-inf", std::to_string(now)},
       [](redis_reply&) {});
  call(self, 0, {"ZCARD", s.prefix + "nodes"}, [self](redis_reply& r) {
    if (!r.is_error())
      self->state.status.nodes = static_cast<std::uint64_t>(r.integer);
  });
}

void publish_status(bus_pointer self) {
  auto& st = self->state;
  bool up = true;
  for (auto& sh : st.shards)
    up = up && sh.commands_up && sh.pubsub_up;
  st.status.redis_up = up;
  if (auto& m = settings_of(self).metrics)
    m->set_cluster(up, static_cast<double>(st.status.nodes));
  self->send(st.router, status_atom::value, st.status);
}

void on_link(bus_pointer self, std::uint64_t index, bool pubsub, bool up,
             const std::string& run_id) {
  auto& sh = self->state.shards[index];
  (pubsub ? sh.pubsub_connecting : sh.commands_connecting) = false;
  (pubsub ? sh.pubsub_up : sh.commands_up) = up;
  if (up && !pubsub) {
    // First on the link, so before anything this node publishes or reads there: a Redis
    // started anew gets a new epoch, also when it loaded its keys from a snapshot.
    if (!run_id.empty()) {
      auto& s = settings_of(self);
      call(self, index,
           {"EVAL", cluster_scripts::renew_epoch_lua, "2", s.prefix + "run_id",
            s.prefix + "epoch", run_id, random_epoch()},
           [](redis_reply&) {});
    }
    // Registered again, with this node's counts.
    refresh_liveness(self, index);
    sync_counts(self, index);
    auto& st = self->state;
    // A subscription confirmed while this link was down could not read what it missed.
    for (auto& [user, u] : st.users)
      if (shard_for(self, user) == index && sh.pubsub_up)
        recover(self, user);
  }
  if (up && pubsub)
    sh.pubsub->subscribe(node_channel(self, settings_of(self).node_id));
  if (up && pubsub)
    for (auto& [user, u] : self->state.users)
      if (shard_for(self, user) == index)
        sh.pubsub->subscribe(channel_of(self, user)); // recovered once confirmed
  publish_status(self);
}

void connect_links(bus_pointer self) {
  for (auto& sh : self->state.shards) {
    if (!sh.commands_up && !sh.commands_connecting) {
      sh.commands_connecting = true;
      sh.commands->connect();
    }
    if (!sh.pubsub_up && !sh.pubsub_connecting) {
      sh.pubsub_connecting = true;
      sh.pubsub->connect();
    }
  }
}

void make_links(bus_pointer self) {
  auto& s = settings_of(self);
  auto me = caf::actor_cast<cluster_bus_actor>(self);
  for (std::uint64_t i = 0; i < s.shards.size(); ++i) {
    auto events_for = [me, i](bool pubsub) {
      redis_link::events ev;
      ev.on_up = [me, i, pubsub](std::string run_id) {
        caf::anon_send(me, link_atom::value, i, pubsub, true, std::move(run_id));
      };
      ev.on_down = [me, i, pubsub](std::string) {
        caf::anon_send(me, link_atom::value, i, pubsub, false, std::string{});
      };
      if (pubsub) {
        ev.on_message = [me, i](std::string channel, std::string message) {
          caf::anon_send(me, message_atom::value, i, std::move(channel), std::move(message));
        };
        ev.on_subscribed = [me, i](std::string channel) {
          caf::anon_send(me, subscribed_atom::value, i, std::move(channel));
        };
      }
      return ev;
    };
    shard sh;
    // Named for CLIENT LIST: which node each connection is, and which of its two links.
    auto name = s.prefix + "node:" + s.node_id;
    sh.commands = redis_link::create(*s.io, s.shards[i], s.password, name + ":commands",
                                     s.redis_timeout, events_for(false));
    sh.pubsub = redis_link::create(*s.io, s.shards[i], s.password, name + ":pubsub",
                                   s.redis_timeout, events_for(true));
    self->state.shards.push_back(std::move(sh));
  }
}

// -- sessions moving between nodes (peer_notes.hpp) -----------------------------------------

/// How long a resume waits for the owner's offer, and an offer for the router's confirmation.
constexpr auto adoption_timeout = std::chrono::seconds{3};

/// Publishes `note` on its recipient's channel, on the shard of its user; lost while that
/// shard is down (every step has a timeout or an end of its own on the other side).
void send_note(bus_pointer self, const peer_note& note) {
  auto index = shard_for(self, note.user);
  if (!self->state.shards[index].commands_up)
    return;
  call(self, index,
       {"PUBLISH", node_channel(self, note.node), encode_peer_note(note, settings_of(self).node_id)},
       [](redis_reply&) {});
  count_metric(self, &router_metrics::cluster_message_out);
}

peer_note no_offer() {
  peer_note note;
  note.what = peer_note::kind::offer;
  return note; // offer.ok is false
}

void decline(bus_pointer self, const std::string& handover, const std::string& node,
             const std::string& user) {
  peer_note note;
  note.what = peer_note::kind::decline;
  note.handover = handover;
  note.node = node;
  note.user = user;
  send_note(self, note);
}

/// Asks `node` for the session of `token`, if that node is alive.
void adopt(bus_pointer self, std::string node, std::string user, std::string token,
           std::uint64_t last_event_id, caf::typed_response_promise<peer_note> rp) {
  auto index = shard_for(self, user);
  if (!self->state.shards[index].commands_up) {
    rp.deliver(no_offer());
    return;
  }
  auto liveness = settings_of(self).prefix + "node:" + node;
  call(self, index, {"GET", liveness},
       [self, node, user, token, last_event_id, rp](redis_reply& alive) mutable {
         if (alive.type != redis_reply::kind::string) { // dead (or Redis failed): nobody to ask
           rp.deliver(no_offer());
           return;
         }
         peer_note ask;
         ask.what = peer_note::kind::request;
         ask.handover = context::random_id(context::id_prefix::handover);
         ask.node = node;
         ask.user = user;
         ask.token = token;
         ask.last_event_id = last_event_id;
         self->state.adoptions.emplace(
           ask.handover,
           adoption{rp, node, user, std::chrono::steady_clock::now() + adoption_timeout});
         send_note(self, ask);
         self->delayed_send(self, adoption_timeout, hotimeout_atom::value, ask.handover);
       });
}

/// Hands the router an ok offer, unless the hand-over was given up meanwhile (timed out and
/// declined while the stream caught up): then the resume goes on as a fresh session.
void hand_offer(bus_pointer self, peer_note note, caf::typed_response_promise<peer_note> rp) {
  if (self->state.adoptions.count(note.handover) == 0)
    rp.deliver(no_offer());
  else
    rp.deliver(std::move(note));
}

/// Ends a hand-over that the stream rules out: the owner ends the session, the resume goes on
/// as a fresh session (recovered: false).
void end_handover(bus_pointer self, const peer_note& note,
                  caf::typed_response_promise<peer_note>& rp) {
  if (self->state.adoptions.erase(note.handover) > 0)
    decline(self, note.handover, note.node, note.user);
  rp.deliver(no_offer());
}

/// An adopted session's stream goes on from the owner's mark. When the session is the user's
/// first here, the mark is the node's baseline for the user: what was published after it comes
/// from the history once this node's subscription is confirmed (on_presence, recover), as for
/// a new connection. When the node already follows the user's stream for another session, it
/// usually stands ahead of the mark (the offer comes on the shard's subscriber link after every
/// publish the mark counts): what it handed on since the mark is owed to the adopted session
/// alone, and goes with the offer (`published`), which the router takes before anything newer
/// from here. Behind the mark (messages missed while the link was down, not yet recovered), it
/// reads up to the mark from the history and hands that on to its other sessions first (the
/// adopted one has it in its frames). Either way the user's channel waits meanwhile. Two things
/// end the hand-over (the client gets a fresh session, recovered: false): a history that no
/// longer holds what the session is owed, and a disconnect among it. The backend ended the
/// user's sessions after the owner's mark, this one with them, as a session waiting for its
/// resume ends on a single node; the owner did not see it in time (it offered first).
void catch_up(bus_pointer self, peer_note note, caf::typed_response_promise<peer_note> rp) {
  auto it = self->state.users.find(note.user);
  if (it == self->state.users.end()) {
    note_baseline(self, note.user, note.stream_epoch, note.stream_offset);
    return hand_offer(self, std::move(note), std::move(rp));
  }
  auto& u = it->second;
  if (u.filling) // a read under way: the node's position is known once it ends
    return u.deferred.push_back([self, note = std::move(note), rp]() mutable {
      catch_up(self, std::move(note), std::move(rp));
    });
  if (!u.known) { // subscribed, nothing handed on yet: the mark is as good a start as any
    u.known = true;
    u.epoch = note.stream_epoch;
    u.last = note.stream_offset;
    return hand_offer(self, std::move(note), std::move(rp));
  }
  bool same_epoch = u.epoch == note.stream_epoch || u.epoch.empty() || note.stream_epoch.empty();
  auto mark = note.stream_offset;
  if (!same_epoch || mark == u.last) // level, or Redis started anew between them: this node leads
    return hand_offer(self, std::move(note), std::move(rp));
  auto user = note.user;
  // A read that outlives the user's state here settles the hand-over again against the state
  // there is then: none (the mark is the start), or one made since, at another offset.
  if (mark > u.last)
    return read_history(self, user, history_span{u.last + 1, mark, u.epoch, false},
                        [self, note = std::move(note), rp](read_end end,
                                                            std::vector<std::string> events) mutable {
                          if (end == read_end::superseded)
                            return catch_up(self, std::move(note), std::move(rp));
                          hand_on_history(self, note.user, note.stream_offset,
                                          end == read_end::complete, events);
                          hand_offer(self, std::move(note), std::move(rp));
                        });
  read_history(self, user, history_span{mark + 1, u.last, u.epoch, false},
               [self, note = std::move(note), rp](read_end end,
                                                   std::vector<std::string> events) mutable {
                 if (end == read_end::superseded)
                   return catch_up(self, std::move(note), std::move(rp));
                 if (end == read_end::incomplete) {
                   count_metric(self, &router_metrics::cluster_gap_lost);
                   return end_handover(self, note, rp);
                 }
                 if (events_before_disconnect(events, note.offer.published))
                   return end_handover(self, note, rp);
                 count_metric(self, &router_metrics::cluster_gap_filled);
                 hand_offer(self, std::move(note), std::move(rp));
               });
}

/// The owner's answer to a resume asked from here: to the router, which confirms an ok one.
void on_offer(bus_pointer self, peer_note& note) {
  auto& adoptions = self->state.adoptions;
  auto it = adoptions.find(note.handover);
  if (it == adoptions.end() || !it->second.promise || it->second.node != note.node) {
    if (note.offer.ok) // too late: the resume went on as a fresh session
      decline(self, note.handover, note.node, note.user);
    return;
  }
  auto rp = std::move(*it->second.promise);
  if (!note.offer.ok) {
    adoptions.erase(it);
  } else {
    it->second.promise.reset(); // now waiting for the router's accept
    it->second.until = std::chrono::steady_clock::now() + adoption_timeout;
    self->delayed_send(self, adoption_timeout, hotimeout_atom::value, note.handover);
    if (note.stream_known)
      return catch_up(self, std::move(note), std::move(rp));
  }
  rp.deliver(std::move(note));
}

/// A hand-over that took too long: a resume still waiting gets no offer, an offer the router
/// did not confirm is declined (so that the owner ends the session instead of keeping it).
void on_adoption_timeout(bus_pointer self, const std::string& handover) {
  auto& adoptions = self->state.adoptions;
  auto it = adoptions.find(handover);
  if (it == adoptions.end() || std::chrono::steady_clock::now() < it->second.until)
    return; // settled, or the offer came since: the wait for the acceptance has its own
  auto a = std::move(it->second);
  adoptions.erase(it);
  if (a.promise)
    a.promise->deliver(no_offer());
  decline(self, handover, a.node, a.user);
}

void on_node_message(bus_pointer self, const std::string& payload) {
  count_metric(self, &router_metrics::cluster_message_in);
  auto note = decode_peer_note(payload);
  if (!note)
    return;
  if (note->what == peer_note::kind::offer)
    return on_offer(self, *note);
  if (note->what == peer_note::kind::request) {
    auto u = self->state.users.find(note->user);
    if (u != self->state.users.end() && u->second.known)
      self->state.marks[note->handover] =
        stream_mark{u->second.epoch, u->second.last, std::chrono::steady_clock::now()};
  }
  self->send(self->state.router, peer_atom::value, std::move(*note));
}

// -- the router's requests ------------------------------------------------------------------

void on_presence(bus_pointer self, const std::string& user, std::int64_t local, bool settles) {
  auto& st = self->state;
  if (settles)
    release_place(self, user); // the count written below has it as a connection instead
  auto index = shard_for(self, user);
  auto it = st.users.find(user);
  if (local < 0) {
    if (it == st.users.end())
      return;
    it->second.local = 0;
    sync_count(self, user);
    auto deferred = std::move(it->second.deferred); // adoptions: now the user's first session
    auto retry = std::move(it->second.retry);
    st.users.erase(it);
    if (st.shards[index].pubsub_up)
      st.shards[index].pubsub->unsubscribe(channel_of(self, user));
    if (retry) // told, as a read in flight is once it ends
      retry->done(read_end::superseded, {});
    for (auto& work : deferred)
      work();
    return;
  }
  bool first = it == st.users.end();
  auto& u = st.users[user];
  if (first)
    u.generation = ++st.user_generations;
  u.local = local;
  if (auto b = st.baselines.find(user); b != st.baselines.end()) {
    if (first && std::chrono::steady_clock::now() - b->second.at <= baseline_life) {
      u.known = true;
      u.epoch = b->second.epoch;
      u.last = b->second.seq;
    }
    st.baselines.erase(b);
  }
  if (first && st.shards[index].pubsub_up)
    st.shards[index].pubsub->subscribe(channel_of(self, user)); // recovered once confirmed
  sync_count(self, user);
}

/// An admitted connection's baseline, or an adopted session's (the owner's stream mark), kept
/// until it attaches (on_presence). Connections admitted together keep the earliest.
void note_baseline(bus_pointer self, const std::string& user, std::string epoch,
                   std::uint64_t seq) {
  auto now = std::chrono::steady_clock::now();
  auto [it, added] = self->state.baselines.try_emplace(user, baseline{epoch, seq, now});
  auto& b = it->second;
  if (added)
    return;
  if (now - b.at > baseline_life || b.epoch != epoch)
    b = baseline{std::move(epoch), seq, now};
  else
    b.seq = std::min(b.seq, seq);
}

/// An admitted connection (acquire counted it from offset `seq` of `epoch` on): when the user's
/// stream here already stands past `seq`, what was handed on since is read from the history,
/// while the channel waits, and goes with the admission (see admission). A connection that is
/// the user's first here starts from its baseline instead (on_presence, recover).
void admit(bus_pointer self, const std::string& user, std::string epoch, std::uint64_t seq,
           caf::typed_response_promise<admission> rp) {
  admission a;
  a.admitted = true;
  auto it = self->state.users.find(user);
  if (it == self->state.users.end() || !it->second.known) {
    rp.deliver(std::move(a));
    return;
  }
  auto& u = it->second;
  if (u.filling) // where the stream stands is known once the read in progress ends
    return u.deferred.push_back([self, user, epoch = std::move(epoch), seq, rp]() mutable {
      admit(self, user, std::move(epoch), seq, std::move(rp));
    });
  bool same_epoch = u.epoch == epoch || u.epoch.empty() || epoch.empty();
  if (!same_epoch || u.last <= seq) {
    rp.deliver(std::move(a));
    return;
  }
  // A read that outlives the user's state here admits the connection again against the state
  // there is then.
  read_history(self, user, history_span{seq + 1, u.last, u.epoch, false},
               [self, user, epoch, seq, a, rp](read_end end,
                                               std::vector<std::string> events) mutable {
                 if (end == read_end::superseded)
                   return admit(self, user, std::move(epoch), seq, std::move(rp));
                 if (end == read_end::incomplete) {
                   count_metric(self, &router_metrics::cluster_gap_lost);
                   a.lost = true;
                   rp.deliver(std::move(a));
                   return;
                 }
                 a.disconnected = events_before_disconnect(events, a.owed);
                 count_metric(self, &router_metrics::cluster_gap_filled);
                 rp.deliver(std::move(a));
               });
}

void on_subscribed(bus_pointer self, const std::string& channel) {
  auto prefix = settings_of(self).prefix + "u:";
  if (channel.rfind(prefix, 0) != 0)
    return;
  auto user = channel.substr(prefix.size());
  if (self->state.users.count(user) != 0)
    recover(self, user);
}

/// A publish (`entry` the event's JSON) or a disconnect (`entry` disconnect_entry) into the
/// user's stream (cluster_scripts::publish_lua): `rp` gets the user's connections on live
/// nodes, or unavailable when the shard's command link is down or the script fails.
void append_to_stream(bus_pointer self, const std::string& user, std::string entry,
                      caf::typed_response_promise<cluster_result> rp) {
  auto index = shard_for(self, user);
  if (!self->state.shards[index].commands_up) {
    rp.deliver(cluster_result{false, 0});
    return;
  }
  auto& s = settings_of(self);
  call(self, index,
       {"EVAL",
        std::string{"local CONNS = KEYS[3]\n"} + cluster_scripts::live_count_lua
          + cluster_scripts::publish_lua + "return {offset, total}",
        "5", user_key(self, user, ":seq"), user_key(self, user, ":hist"),
        user_key(self, user, ":conns"), s.prefix + "epoch", user_key(self, user, ":began"),
        s.prefix, channel_of(self, user),
        std::move(entry), std::to_string(s.history_size), random_epoch(),
        std::to_string(s.history_ttl.count())},
       [self, rp](redis_reply& r) mutable {
         count_metric(self, &router_metrics::cluster_message_out);
         bool ok = !r.is_error() && r.elements.size() == 2;
         rp.deliver(cluster_result{ok, ok ? static_cast<std::uint64_t>(r.elements[1].integer) : 0});
       });
}

/// The limit script (acquire_lua): one more connection of `user` on this node, counted at once
/// if the user's connections on live nodes are fewer than `limit`. `then` gets the script's
/// answer; `rp` an error when there is none (the shard unreachable, Redis loading, out of
/// memory, an ACL), which is not a refusal: the router falls back to this node's own count.
template <class Promise, class Then>
void count_within_limit(bus_pointer self, const std::string& user, std::uint64_t limit,
                        Promise rp, Then then) {
  if (!self->state.shards[shard_for(self, user)].commands_up) {
    rp.deliver(caf::make_error(caf::sec::request_receiver_down));
    return;
  }
  std::string lua = std::string{"local CONNS = KEYS[1]\n"} + cluster_scripts::live_count_lua
                    + cluster_scripts::acquire_lua;
  auto& s = settings_of(self);
  ++self->state.places[user].held; // from here on: a count written before the answer has it
  call(self, shard_for(self, user),
       {"EVAL", std::move(lua), "3", user_key(self, user, ":conns"),
        user_key(self, user, ":seq"), s.prefix + "epoch", s.prefix, node_field(self),
        std::to_string(limit)},
       [self, rp, then, user](redis_reply& r) mutable {
         count_metric(self, &router_metrics::cluster_message_out);
         bool granted = !r.is_error() && !r.elements.empty() && r.elements[0].integer == 1;
         if (!granted && release_place(self, user))
           sync_count(self, user); // a count written meanwhile had it
         if (r.is_error() || r.elements.empty()) {
           rp.deliver(caf::make_error(caf::sec::runtime_error,
                                      "the limit script failed: " + r.text));
           return;
         }
         then(r);
       });
}

} // namespace

std::size_t shard_of(const std::string& user_id, std::size_t shards) {
  // Jump consistent hash (Lamping and Veach) of the FNV-1a hash of the id.
  std::uint64_t key = 14695981039346656037ull;
  for (unsigned char c : user_id)
    key = (key ^ c) * 1099511628211ull;
  std::int64_t b = -1, j = 0;
  while (j < static_cast<std::int64_t>(shards)) {
    b = j;
    key = key * 2862933555777941757ull + 1;
    j = static_cast<std::int64_t>((b + 1) * (double(1ll << 31) / double((key >> 33) + 1)));
  }
  return static_cast<std::size_t>(b < 0 ? 0 : b);
}

cluster_bus_actor spawn_cluster_bus(caf::local_actor* router, cluster_feedback feedback,
                                    std::shared_ptr<const cluster_settings> settings) {
  return router->spawn<caf::linked>(
    [](bus_pointer self, cluster_feedback fb,
       std::shared_ptr<const cluster_settings> s) -> cluster_bus_actor::behavior_type {
      self->state.settings = std::move(s);
      self->state.router = std::move(fb);
      self->state.status.node_id = settings_of(self).node_id;
      make_links(self);
      connect_links(self);
      auto tick = std::min(std::chrono::milliseconds{1000}, settings_of(self).node_ttl / 3);
      self->send(self, tick_atom::value);
      self->attach_functor([shards = self->state.shards] {
        for (auto& sh : shards) {
          sh.commands->close();
          sh.pubsub->close();
        }
      });
      return {
        [=](presence_atom, const std::string& user, std::int64_t local, bool settles) {
          on_presence(self, user, local, settles);
        },
        [=](acquire_atom, const std::string& user, std::uint64_t limit) {
          auto rp = self->make_response_promise<admission>();
          count_within_limit(self, user, limit, rp, [self, user, rp](redis_reply& r) mutable {
            if (r.elements[0].integer != 1 || r.elements.size() != 3) {
              if (r.elements[0].integer == 1) // counted, but not answered as the script does
                settle_place(self, user);
              rp.deliver(admission{});
              return;
            }
            auto seq = std::strtoull(r.elements[1].text.c_str(), nullptr, 10);
            note_baseline(self, user, r.elements[2].text, seq);
            admit(self, user, r.elements[2].text, seq, rp);
          });
          return rp;
        },
        [=](reserve_atom, const std::string& user, std::uint64_t limit) {
          auto rp = self->make_response_promise<bool>();
          count_within_limit(self, user, limit, rp, [rp](redis_reply& r) mutable {
            rp.deliver(r.elements[0].integer == 1);
          });
          return rp;
        },
        [=](settle_atom, const std::string& user) { settle_place(self, user); },
        [=](cpublish_atom, const std::string& user, const protocol::outbound_event& ev) {
          auto rp = self->make_response_promise<cluster_result>();
          append_to_stream(self, user, json{{"type", ev.type}, {"data", ev.data}}.dump(), rp);
          return rp;
        },
        [=](cdisconn_atom, const std::string& user) {
          auto rp = self->make_response_promise<cluster_result>();
          append_to_stream(self, user, std::string{disconnect_entry}, rp);
          return rp;
        },
        [=](adopt_atom, std::string& node, std::string& user, std::string& token,
            std::uint64_t last_event_id) {
          auto rp = self->make_response_promise<peer_note>();
          adopt(self, std::move(node), std::move(user), std::move(token), last_event_id, rp);
          return rp;
        },
        [=](peer_atom, peer_note& note) {
          if (note.what == peer_note::kind::accept || note.what == peer_note::kind::decline)
            self->state.adoptions.erase(note.handover); // confirmed: no timeout
          if (note.what == peer_note::kind::offer) {
            auto& marks = self->state.marks;
            if (auto m = marks.find(note.handover); m != marks.end()) {
              if (note.offer.ok) {
                note.stream_known = true;
                note.stream_epoch = std::move(m->second.epoch);
                note.stream_offset = m->second.offset;
              }
              marks.erase(m);
            }
          }
          send_note(self, note);
        },
        [=](hotimeout_atom, const std::string& handover) { on_adoption_timeout(self, handover); },
        [=](link_atom, std::uint64_t index, bool pubsub, bool up, const std::string& run_id) {
          on_link(self, index, pubsub, up, run_id);
        },
        [=](message_atom, std::uint64_t, const std::string& channel, const std::string& payload) {
          on_message(self, channel, payload);
        },
        [=](subscribed_atom, std::uint64_t, const std::string& channel) {
          on_subscribed(self, channel);
        },
        [=](reply_atom, std::uint64_t id, redis_reply& reply) {
          auto it = self->state.pending.find(id);
          if (it == self->state.pending.end())
            return;
          auto then = std::move(it->second);
          self->state.pending.erase(it);
          then(reply);
        },
        [=](tick_atom) {
          auto now = std::chrono::steady_clock::now();
          erase_expired(self->state.baselines, now);
          erase_expired(self->state.marks, now);
          connect_links(self);
          for (std::size_t i = 0; i < self->state.shards.size(); ++i)
            if (self->state.shards[i].commands_up)
              refresh_liveness(self, i);
          retry_reads(self);
          publish_status(self);
          self->delayed_send(self, tick, tick_atom::value);
        },
      };
    },
    std::move(feedback), std::move(settings));
}

} // namespace er::actors
