#include "load/load_client.hpp"

#include <algorithm>
#include <limits>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <boost/asio/steady_timer.hpp>

#include "actors/runtime/io_scheduler.hpp"
#include "load/async_ws_client.hpp"
#include "protocol/close_codes.hpp"

namespace er::load {

namespace {

using namespace std::chrono_literals;

constexpr auto churn_retry_pause = 100ms;

/// Forwards what a socket reads into its client's mailbox.
class client_socket_sink final : public client_sink {
public:
  explicit client_socket_sink(load_client_actor client) : client_(std::move(client)) {
  }
  void on_open(open_result r) override {
    caf::anon_send(client_, opened_atom::value, r.upgraded, static_cast<std::uint32_t>(r.status),
                   std::move(r.error));
  }
  void on_texts(std::vector<std::string> frames) override {
    caf::anon_send(client_, frames_atom::value, std::move(frames));
  }
  void on_binary(std::size_t bytes) override {
    caf::anon_send(client_, binary_atom::value, static_cast<std::uint64_t>(bytes));
  }
  void on_closed(close_info info) override {
    caf::anon_send(client_, closed_atom::value, info.code, info.clean);
  }

private:
  load_client_actor client_;
};

// -- load_client ------------------------------------------------------------------

/// Resets the socket when the client's state goes away, however the client ended.
struct owned_socket {
  async_ws_client socket;
  owned_socket() = default;
  owned_socket(const owned_socket&) = delete;
  owned_socket& operator=(const owned_socket&) = delete;
  ~owned_socket() { socket.reset(); }
};

struct client_state {
  setup_ptr setup;
  collector_actor collector;
  std::size_t index = 0;
  std::string user;
  owned_socket owned;
  boost::asio::io_context* io = nullptr; ///< the socket's
  std::unique_ptr<boost::asio::steady_timer> tick_timer; ///< on `io`, made with the first tick
  std::optional<frame_checker> checker; ///< the current connection's; reset once accounted
  client_delta pending;                 ///< not yet reported to the collector
  std::uint64_t cycle = 0;
  clock::time_point connect_started;
  bool flush_scheduled = false;
  bool reported_ready = false;
  bool in_window = false;
  bool stopping = false;
  bool closing = false;   ///< we ended the connection (close or reset)
  bool resetting = false; ///< ... with a reset
  bool ended = false;     ///< reported done and quit: nothing more is counted

  static inline const char* name = "load_client";
};

using client_pointer = load_client_actor::stateful_pointer<client_state>;

const load_options& options_of(client_pointer self) {
  return self->state.setup->options;
}

/// How often a client reports its counters while they change: every 250 ms up to 1,000
/// connections, less often past that (once a second from 4,000), so that the collector gets
/// about 4,000 reports a second up to 4,000 connections and one per connection a second beyond:
/// each is a delayed message, a vector of latencies and a turn of the one collector, paid from
/// the CPU the router is measured on. The counts are exact either way: a client's last report
/// comes with its end.
std::chrono::milliseconds flush_interval(const load_options& o) {
  auto scaled = 250ms * std::max<std::size_t>(1, o.connections / 1000);
  return std::min<std::chrono::milliseconds>(scaled, 1s);
}

void schedule_flush(client_pointer self) {
  if (std::exchange(self->state.flush_scheduled, true))
    return;
  self->delayed_send(self, flush_interval(options_of(self)), flush_atom::value);
}

/// Sends the client its next tick_atom after `delay`, timed on its socket's io thread: the
/// client then runs there and its frame goes straight to the socket. CAF's clock (one timer
/// on the first io thread) would run every client's ticks on that one thread and post half
/// the frames across to the other.
void schedule_tick(client_pointer self, std::chrono::microseconds delay) {
  auto& st = self->state;
  if (st.io == nullptr)
    return; // never connected
  if (!st.tick_timer)
    st.tick_timer = std::make_unique<boost::asio::steady_timer>(*st.io);
  st.tick_timer->expires_after(delay);
  st.tick_timer->async_wait(
    [client = caf::actor_cast<load_client_actor>(self)](const boost::system::error_code& ec) {
      if (!ec)
        caf::anon_send(client, tick_atom::value);
    });
}

void report_ready(client_pointer self, bool ok) {
  if (!std::exchange(self->state.reported_ready, true))
    self->send(self->state.collector, ready_atom::value, ok);
}

void end_client(client_pointer self) {
  report_ready(self, false);
  self->send(self->state.collector, done_atom::value, std::exchange(self->state.pending, {}));
  self->state.ended = true;
  self->quit();
}

void open_connection(client_pointer self) {
  auto& st = self->state;
  auto& o = options_of(self);
  async_client_options c;
  c.host = o.host;
  c.port = o.port;
  c.subprotocols = "router.v1, jwt." + st.setup->tokens[st.index % st.setup->tokens.size()];
  if (o.sources > 0)
    c.bind_address = "127.0.0." + std::to_string(2 + st.index % o.sources);
  c.handshake_timeout = o.handshake_timeout;
  auto prefix = "c" + std::to_string(st.index) + "." + std::to_string(st.cycle++) + ".";
  st.checker.emplace(st.user, std::move(prefix), o.demo_steps, o.agent);
  st.closing = false;
  st.connect_started = clock::now();
  auto sink = std::make_shared<client_socket_sink>(caf::actor_cast<load_client_actor>(self));
  st.io = &st.setup->io->next_io_context();
  st.owned.socket = async_ws_client::open(*st.io, c, std::move(sink));
}

/// Ends the connection with a close handshake; on_closed then ends the client.
void finish(client_pointer self) {
  auto& st = self->state;
  if (!st.owned.socket)
    return end_client(self);
  if (std::exchange(st.closing, true))
    return;
  st.resetting = false;
  st.owned.socket.close(close_code::normal.code);
}

void record_round_trip(client_pointer self, std::chrono::microseconds rtt) {
  auto& st = self->state;
  auto& c = st.pending.counters;
  ++c.completed;
  if (st.in_window)
    ++c.completed_in_window;
  auto us = std::clamp<std::int64_t>(rtt.count(), 0, std::numeric_limits<std::uint32_t>::max());
  st.pending.latencies_us.push_back(static_cast<std::uint32_t>(us));
}

void send_frame(client_pointer self, std::string frame) {
  ++self->state.pending.counters.sent;
  self->state.owned.socket.send(std::move(frame));
}

void top_up_pings(client_pointer self) {
  auto& st = self->state;
  if (!st.in_window || st.stopping || !st.checker || st.closing)
    return;
  auto now = clock::now();
  while (st.checker->pending_pings() < options_of(self).inflight)
    send_frame(self, st.checker->ping(now));
}

/// Agents: start a run when the connection has room for one, then wait for the next start.
void on_run_tick(client_pointer self) {
  auto& st = self->state;
  auto& o = options_of(self);
  if (st.stopping || !st.checker || st.closing)
    return;
  if (st.checker->pending_runs() < o.max_runs)
    send_frame(self, st.checker->start_demo_run(clock::now()));
  schedule_tick(self, std::chrono::microseconds{static_cast<std::int64_t>(1e6 / o.agent_rate)});
}

void on_go(client_pointer self) {
  auto& st = self->state;
  st.in_window = true;
  auto& o = options_of(self);
  if (o.kind == scenario::ping) {
    top_up_pings(self);
  } else if (o.kind == scenario::agents) {
    // Spread the first starts over one interval, so that connections do not start in step.
    auto interval = std::chrono::microseconds{static_cast<std::int64_t>(1e6 / o.agent_rate)};
    schedule_tick(self, first_start_offset(st.index, interval));
  }
  schedule_flush(self);
}

void on_greeting(client_pointer self, clock::time_point now) {
  auto& st = self->state;
  ++st.pending.counters.established;
  report_ready(self, true);
  auto kind = options_of(self).kind;
  if (kind != scenario::churn && kind != scenario::idle)
    return;
  record_round_trip(self,
                    std::chrono::duration_cast<std::chrono::microseconds>(now - st.connect_started));
  if (kind == scenario::churn) {
    st.closing = true;
    st.resetting = st.cycle % 2 == 0; // every other cycle ends with a TCP reset
    if (st.resetting)
      st.owned.socket.reset();
    else
      st.owned.socket.close(close_code::normal.code);
  }
}

void on_frame(client_pointer self, const std::string& text) {
  auto& st = self->state;
  schedule_flush(self);
  if (!st.checker) { // the drain deadline already counted what was missing
    ++st.pending.counters.received;
    return;
  }
  auto now = clock::now();
  auto outcome = st.checker->check(text, now);
  st.pending.counters.tally(outcome);
  if (outcome.verdict == frame_verdict::greeting)
    on_greeting(self, now);
  else if (outcome.verdict == frame_verdict::completed)
    record_round_trip(self, outcome.round_trip);
  if (options_of(self).kind == scenario::ping)
    top_up_pings(self);
  if (st.stopping && st.checker->owed_events() == 0)
    finish(self);
}

void on_opened(client_pointer self, bool upgraded, std::uint32_t status, const std::string& why) {
  auto& st = self->state;
  schedule_flush(self);
  if (upgraded) {
    ++st.pending.counters.open;
    return;
  }
  st.owned.socket = {};
  st.checker.reset();
  ++st.pending.counters.connect_failures;
  st.pending.counters.error(status != 0 ? "upgrade_refused:http_" + std::to_string(status)
                                        : "connect_failed:" + why);
  report_ready(self, false);
  if (options_of(self).kind == scenario::churn && !st.stopping)
    return self->delayed_send(self, churn_retry_pause, connect_atom::value);
  end_client(self);
}

void on_closed(client_pointer self, std::uint16_t code, bool clean) {
  auto& st = self->state;
  schedule_flush(self);
  --st.pending.counters.open;
  st.owned.socket = {};
  bool expected = st.closing && (st.resetting ? !clean : clean && code == close_code::normal.code);
  if (!expected)
    st.pending.counters.error((st.closing ? "close_failed:" : "closed_by_server:")
                              + std::to_string(code));
  if (st.checker) {
    st.pending.counters.missing += st.checker->owed_events();
    st.checker.reset();
  }
  if (options_of(self).kind == scenario::churn && !st.stopping)
    return open_connection(self);
  end_client(self);
}

void on_stop(client_pointer self) {
  auto& st = self->state;
  st.in_window = false;
  st.stopping = true;
  if (!st.owned.socket) // churn, between a refused attempt and the next
    return end_client(self);
  auto& o = options_of(self);
  if (o.kind != scenario::churn && (!st.checker || st.checker->owed_events() == 0))
    return finish(self);
  // churn: the cycle in progress ends the client; otherwise the owed replies do
  self->delayed_send(self, o.drain_timeout, deadline_atom::value);
}

void on_drain_deadline(client_pointer self) {
  auto& st = self->state;
  if (st.checker) {
    st.pending.counters.missing += st.checker->owed_events();
    st.checker.reset();
  }
  finish(self);
}

/// Publish: the publisher announces an event for this client's user before publishing it.
void on_expect(client_pointer self, std::uint64_t seq, std::int64_t sent_ns) {
  auto& st = self->state;
  if (!st.checker) // the connection is gone; its loss is already counted
    return;
  auto sent = clock::time_point{std::chrono::duration_cast<clock::duration>(
    std::chrono::nanoseconds{sent_ns})};
  st.checker->expect_publish(seq, sent);
}

/// Publish: the publish of `seq` failed (the publisher counted it); it is no longer owed.
void on_cancel(client_pointer self, std::uint64_t seq) {
  auto& st = self->state;
  if (st.checker && st.checker->cancel_publish(seq) && st.stopping
      && st.checker->owed_events() == 0)
    finish(self);
}

load_client_actor::behavior_type client_behavior(client_pointer self, setup_ptr setup,
                                                 std::size_t index, collector_actor collector) {
  auto& st = self->state;
  st.index = index;
  st.user = setup->options.user_prefix
            + std::to_string(index % std::max<std::size_t>(1, setup->tokens.size()));
  st.setup = std::move(setup);
  st.collector = std::move(collector);
  return {
    [=](connect_atom) {
      if (self->state.stopping)
        return end_client(self);
      open_connection(self);
    },
    [=](go_atom) { on_go(self); },
    [=](stop_atom) { on_stop(self); },
    [=](opened_atom, bool upgraded, std::uint32_t status, const std::string& why) {
      on_opened(self, upgraded, status, why);
    },
    [=](frames_atom, const std::vector<std::string>& texts) {
      for (const auto& text : texts) {
        if (self->state.ended) // as a message after quit() would be: dropped, not counted
          break;
        on_frame(self, text);
      }
    },
    [=](binary_atom, std::uint64_t) {
      ++self->state.pending.counters.received;
      self->state.pending.counters.error("binary_frame");
      schedule_flush(self);
    },
    [=](closed_atom, std::uint16_t code, bool clean) { on_closed(self, code, clean); },
    [=](tick_atom) { on_run_tick(self); },
    [=](flush_atom) {
      self->state.flush_scheduled = false;
      self->send(self->state.collector, delta_atom::value, std::exchange(self->state.pending, {}));
    },
    [=](deadline_atom) { on_drain_deadline(self); },
    [=](expect_atom, std::uint64_t seq, std::int64_t sent_ns) { on_expect(self, seq, sent_ns); },
    [=](cancel_atom, std::uint64_t seq) { on_cancel(self, seq); },
  };
}

} // namespace

load_client_actor spawn_load_client(caf::local_actor* collector, setup_ptr setup,
                                    std::size_t index) {
  return collector->spawn<caf::linked>(client_behavior, std::move(setup), index,
                                       caf::actor_cast<collector_actor>(collector));
}

} // namespace er::load
