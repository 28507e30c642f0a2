// The publish scenario's publisher: see actors/load_client.hpp. It publishes through the
// router's HTTP API on http_client_pool (asio, io threads); answers come back as
// messages, so no actor ever waits for HTTP.

#include "load/load_client.hpp"

#include <algorithm>
#include <random>
#include <unordered_map>
#include <utility>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/runtime/io_scheduler.hpp"
#include "load/async_http_client.hpp"

namespace er::load {

namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

constexpr auto flush_interval = 250ms;
constexpr const char* publish_target = "/api/v1/publish";
constexpr std::size_t outstanding_per_connection = 4; ///< beyond: a due publish is skipped

/// Closes the pool when the publisher's state goes away, however the publisher ended.
struct owned_pool {
  http_client_pool pool;
  owned_pool() = default;
  owned_pool(const owned_pool&) = delete;
  owned_pool& operator=(const owned_pool&) = delete;
  ~owned_pool() { pool.close(); }
};

struct publisher_state {
  setup_ptr setup;
  collector_actor collector;
  std::vector<std::vector<load_client_actor>> clients_of; ///< by user index
  owned_pool owned;
  std::string authorization;
  std::unordered_map<std::uint64_t, std::size_t> outstanding; ///< seq -> user index
  std::size_t max_outstanding = 0;
  std::uint64_t next_seq = 0;
  std::uint64_t due_done = 0; ///< publishes due so far, sent or skipped
  clock::time_point started;
  bool running = false;
  bool stopping = false;
  bool flush_scheduled = false;
  client_delta pending;
  std::minstd_rand random{0x5eed};

  static inline const char* name = "load_publisher";
};

using publisher_pointer = load_publisher_actor::stateful_pointer<publisher_state>;

void schedule_flush(publisher_pointer self) {
  if (std::exchange(self->state.flush_scheduled, true))
    return;
  self->delayed_send(self, flush_interval, flush_atom::value);
}

/// A tick per publish at low rates; at high rates, what is due every 10 ms.
std::chrono::microseconds tick_interval(double rate) {
  auto us = static_cast<std::int64_t>(1e6 / rate);
  return std::chrono::microseconds{std::clamp<std::int64_t>(us, 1000, 10000)};
}

void publish_one(publisher_pointer self, clock::time_point now) {
  auto& st = self->state;
  auto& o = st.setup->options;
  auto user = std::uniform_int_distribution<std::size_t>{0, st.clients_of.size() - 1}(st.random);
  auto seq = st.next_seq++;
  auto user_id = o.user_prefix + std::to_string(user);
  // Announce first: each client has the expectation in its mailbox before the router can
  // even receive the publish, so the event never arrives unannounced.
  auto sent_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch());
  for (auto& client : st.clients_of[user])
    self->send(client, expect_atom::value, seq, static_cast<std::int64_t>(sent_ns.count()));
  json body{{"user_id", user_id},
            {"event", {{"type", publish_event_type}, {"data", {{"seq", seq}, {"user", user_id}}}}}};
  st.outstanding.emplace(seq, user);
  ++st.pending.counters.sent;
  auto me = caf::actor_cast<load_publisher_actor>(self);
  st.owned.pool.request(
    http_request_spec{"POST", publish_target, st.authorization, body.dump()},
    [me, seq](http_result r) { // on an io thread
      std::int64_t delivered = -1;
      if (r.status == 202) {
        auto answer = json::parse(r.body, nullptr, false);
        if (answer.is_object() && answer.contains("delivered")
            && answer["delivered"].is_number_unsigned())
          delivered = answer["delivered"].get<std::int64_t>();
      }
      caf::anon_send(me, answer_atom::value, seq, static_cast<std::uint32_t>(r.status), delivered,
                     std::move(r.error));
    });
}

void on_tick(publisher_pointer self) {
  auto& st = self->state;
  if (!st.running)
    return;
  auto& o = st.setup->options;
  auto now = clock::now();
  auto due = static_cast<std::uint64_t>(o.publish_rate
                                        * std::chrono::duration<double>(now - st.started).count());
  for (; st.due_done < due; ++st.due_done) {
    if (st.outstanding.size() >= st.max_outstanding)
      ++st.pending.counters.publishes_skipped; // the router (or the pool) does not keep up
    else
      publish_one(self, now);
  }
  schedule_flush(self);
  self->delayed_send(self, tick_interval(o.publish_rate), tick_atom::value);
}

void end_publisher(publisher_pointer self) {
  auto& st = self->state;
  self->send(st.collector, ended_atom::value, std::exchange(st.pending, {}));
  st.owned.pool.close();
  self->quit();
}

void take_back(publisher_pointer self, std::uint64_t seq, std::size_t user) {
  for (auto& client : self->state.clients_of[user])
    self->send(client, cancel_atom::value, seq);
}

void on_answer(publisher_pointer self, std::uint64_t seq, std::uint32_t status,
               std::int64_t delivered, const std::string& error) {
  auto& st = self->state;
  auto it = st.outstanding.find(seq);
  if (it == st.outstanding.end()) // answered after the deadline: already counted
    return;
  auto user = it->second;
  st.outstanding.erase(it);
  auto& c = st.pending.counters;
  auto connections = static_cast<std::int64_t>(st.clients_of[user].size());
  if (status == 202 && delivered >= 0) {
    ++c.publishes;
    c.publish_delivered += static_cast<std::uint64_t>(delivered);
    c.publish_expected += static_cast<std::uint64_t>(connections);
    if (delivered != connections)
      c.error("publish_delivered_mismatch");
  } else {
    c.error(status == 202   ? std::string{"publish_unreadable_answer"}
            : status != 0 ? "publish_refused:http_" + std::to_string(status)
                          : "publish_failed:" + error);
    take_back(self, seq, user);
  }
  schedule_flush(self);
  if (st.stopping && st.outstanding.empty())
    end_publisher(self);
}

load_publisher_actor::behavior_type publisher_behavior(publisher_pointer self, setup_ptr setup,
                                                       std::vector<load_client_actor> clients,
                                                       collector_actor collector) {
  auto& st = self->state;
  auto& o = setup->options;
  st.clients_of.resize(std::max<std::size_t>(1, setup->tokens.size()));
  for (std::size_t i = 0; i < clients.size(); ++i)
    st.clients_of[i % st.clients_of.size()].push_back(std::move(clients[i]));
  http_pool_options pool;
  pool.host = o.host;
  pool.port = o.port;
  pool.connections = o.publish_connections;
  pool.timeout = o.handshake_timeout;
  st.owned.pool = http_client_pool::open(setup->io->next_io_context(), pool);
  st.authorization = "Bearer " + o.api_key;
  st.max_outstanding = std::max<std::size_t>(1, o.publish_connections) * outstanding_per_connection;
  st.setup = std::move(setup);
  st.collector = std::move(collector);
  return {
    [=](go_atom) {
      auto& s = self->state;
      s.running = true;
      s.started = clock::now();
      self->send(self, tick_atom::value);
    },
    [=](stop_atom) {
      auto& s = self->state;
      s.running = false;
      s.stopping = true;
      // Every announcement is sent: the clients may be told to stop.
      self->send(s.collector, halted_atom::value);
      if (s.outstanding.empty())
        return end_publisher(self);
      auto& opts = s.setup->options;
      self->delayed_send(self, opts.drain_timeout + opts.handshake_timeout, deadline_atom::value);
    },
    [=](tick_atom) { on_tick(self); },
    [=](flush_atom) {
      self->state.flush_scheduled = false;
      self->send(self->state.collector, delta_atom::value, std::exchange(self->state.pending, {}));
    },
    [=](deadline_atom) {
      auto& s = self->state;
      for (auto& [seq, user] : s.outstanding) {
        s.pending.counters.error("publish_unanswered");
        take_back(self, seq, user);
      }
      s.outstanding.clear();
      end_publisher(self);
    },
    [=](answer_atom, std::uint64_t seq, std::uint32_t status, std::int64_t delivered,
        const std::string& error) { on_answer(self, seq, status, delivered, error); },
  };
}

} // namespace

load_publisher_actor spawn_load_publisher(caf::local_actor* collector, setup_ptr setup,
                                          const std::vector<load_client_actor>& clients) {
  return collector->spawn<caf::linked>(publisher_behavior, std::move(setup), clients,
                                       caf::actor_cast<collector_actor>(collector));
}

} // namespace er::load
