// The collector of router-load and run_load: see actors/load_client.hpp.

#include "load/load_client.hpp"

#include <algorithm>
#include <iomanip>
#include <sstream>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/runtime/io_scheduler.hpp"

namespace er::load {

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

constexpr auto token_ttl = std::chrono::hours{24};

struct collector_state {
  setup_ptr setup;
  caf::actor listener; ///< receives (report_atom, load_report) at the end
  std::vector<load_client_actor> clients;
  load_publisher_actor publisher; ///< publish only
  bool publisher_done = true;     ///< false while a publisher runs
  std::size_t next_to_connect = 0;
  std::size_t ready = 0;
  std::size_t done = 0;
  load_report report;
  latency_histogram last_second;
  std::uint64_t received_at_tick = 0;
  std::uint64_t completed_at_tick = 0;
  clock::time_point started;
  clock::time_point window_opened;
  clock::time_point window_closed;
  bool window_open = false;
  bool stopped = false;
  bool finished = false;
  int seconds = 0;

  static inline const char* name = "load_collector";
};

using collector_pointer = collector_actor::stateful_pointer<collector_state>;

template <class Atom>
void broadcast(collector_pointer self, Atom atom) {
  for (auto& c : self->state.clients)
    self->send(c, atom);
}

void open_window(collector_pointer self) {
  auto& st = self->state;
  st.window_open = true;
  st.window_opened = clock::now();
  broadcast(self, go_atom::value);
  if (st.publisher)
    self->send(st.publisher, go_atom::value);
  self->delayed_send(self, st.setup->options.duration, stop_atom::value);
}

void merge(collector_pointer self, client_delta& d) {
  auto& st = self->state;
  st.report.totals.add(d.counters);
  st.report.peak_open = std::max(st.report.peak_open, st.report.totals.open);
  for (auto us : d.latencies_us) {
    st.report.latency.record(us);
    st.last_second.record(us);
  }
}

bool all_done(collector_pointer self) {
  auto& st = self->state;
  return st.done == st.clients.size() && st.publisher_done;
}

void finish_run(collector_pointer self) {
  auto& st = self->state;
  if (std::exchange(st.finished, true))
    return;
  auto end = st.stopped ? st.window_closed : clock::now();
  if (st.window_open)
    st.report.window_seconds = std::chrono::duration<double>(end - st.window_opened).count();
  caf::anon_send(st.listener, report_atom::value, std::move(st.report));
  self->quit(caf::exit_reason::user_shutdown); // takes any client still running with it
}

std::string milliseconds(std::uint64_t micros) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3) << static_cast<double>(micros) / 1000.0 << " ms";
  return out.str();
}

void print_progress(collector_pointer self) {
  auto& st = self->state;
  auto& out = *st.setup->options.progress;
  auto& t = st.report.totals;
  auto phase = st.stopped ? "drain" : st.window_open ? "run" : "ramp";
  out << "[" << std::setw(4) << ++st.seconds << "s " << std::setw(5) << phase << "] "
      << to_string(st.setup->options.kind) << "  open " << t.open << "/" << st.clients.size()
      << "  established " << t.established << "  round-trips/s "
      << (t.completed - st.completed_at_tick) << "  frames/s " << (t.received - st.received_at_tick)
      << "  p99 " << milliseconds(st.last_second.percentile(0.99)) << "  leaks " << t.leaks
      << "  missing " << t.missing << "  errors " << t.error_count() << std::endl;
  st.completed_at_tick = t.completed;
  st.received_at_tick = t.received;
  st.last_second.clear();
}

std::string latency_of(scenario s) {
  switch (s) {
    case scenario::ping:
      return "ping -> pong";
    case scenario::agents:
      return "start_agent -> agent_completed";
    case scenario::publish:
      return "publish -> event received";
    default:
      return "connect -> connection_established";
  }
}

void start_clients(collector_pointer self) {
  auto& st = self->state;
  auto& o = st.setup->options;
  for (std::size_t i = 0; i < o.connections; ++i)
    st.clients.push_back(spawn_load_client(self, st.setup, i));
  if (o.kind == scenario::publish) {
    st.publisher = spawn_load_publisher(self, st.setup, st.clients);
    st.publisher_done = false;
  }
  if (o.kind == scenario::churn) { // every client cycles on its own, from the start
    st.next_to_connect = st.clients.size();
    broadcast(self, connect_atom::value);
    return open_window(self);
  }
  auto first = std::min(o.connect_window, st.clients.size());
  for (; st.next_to_connect < first; ++st.next_to_connect)
    self->send(st.clients[st.next_to_connect], connect_atom::value);
}

/// A client that crashes never sends `done`: count it here. Normal exits are ignored.
void on_exit_msg(collector_pointer self, const caf::exit_msg& msg) {
  auto& s = self->state;
  if (!msg.reason || msg.reason == caf::exit_reason::normal)
    return;
  if (s.publisher && msg.source == s.publisher.address()) {
    s.report.totals.error("publisher_crashed");
    s.publisher_done = true;
    if (s.stopped) // it never halted: stop the clients now
      broadcast(self, stop_atom::value);
  } else {
    s.report.totals.error("client_crashed");
    ++s.done;
  }
  if (all_done(self))
    finish_run(self);
}

/// A client is connected: the next one may connect; the last one opens the window.
void on_ready(collector_pointer self) {
  auto& s = self->state;
  if (s.next_to_connect < s.clients.size())
    self->send(s.clients[s.next_to_connect++], connect_atom::value);
  if (++s.ready == s.clients.size() && !s.window_open) {
    s.report.ramp_seconds = std::chrono::duration<double>(clock::now() - s.started).count();
    open_window(self);
  }
}

/// The measured window is over: stop the load, and give the clients until the deadline.
void on_stop(collector_pointer self) {
  auto& s = self->state;
  s.stopped = true;
  s.window_closed = clock::now();
  // publish: the publisher first; its `halted` stops the clients after its last
  // announcement, so that none reaches a client that has already finished
  if (s.publisher && !s.publisher_done)
    self->send(s.publisher, stop_atom::value);
  else
    broadcast(self, stop_atom::value);
  auto& opts = s.setup->options;
  self->delayed_send(self, opts.drain_timeout + opts.handshake_timeout + 2s,
                     deadline_atom::value);
}

/// Whoever has not finished by the deadline counts as an error.
void on_deadline(collector_pointer self) {
  auto& s = self->state;
  if (s.clients.size() > s.done)
    s.report.totals.error("client_did_not_finish", s.clients.size() - s.done);
  if (!s.publisher_done)
    s.report.totals.error("publisher_did_not_finish");
  finish_run(self);
}

void init_report(collector_pointer self) {
  auto& st = self->state;
  auto& o = st.setup->options;
  st.report.scenario = to_string(o.kind);
  st.report.latency_of = latency_of(o.kind);
  st.report.options = to_json(o);
  st.report.target_connections = o.connections;
  st.report.needs_round_trips = o.kind != scenario::idle;
}

collector_actor::behavior_type collector_behavior(collector_pointer self, setup_ptr setup,
                                                  caf::actor listener) {
  auto& st = self->state;
  st.setup = std::move(setup);
  st.listener = std::move(listener);
  st.started = clock::now();
  init_report(self);
  self->set_exit_handler([self](caf::exit_msg& msg) { on_exit_msg(self, msg); });
  start_clients(self);
  self->delayed_send(self, 1s, tick_atom::value);
  return {
    [=](ready_atom, bool) { on_ready(self); },
    [=](delta_atom, client_delta& d) { merge(self, d); },
    [=](done_atom, client_delta& d) {
      merge(self, d);
      ++self->state.done;
      if (all_done(self))
        finish_run(self);
    },
    [=](halted_atom) { broadcast(self, stop_atom::value); },
    [=](ended_atom, client_delta& d) {
      merge(self, d);
      self->state.publisher_done = true;
      if (all_done(self))
        finish_run(self);
    },
    [=](tick_atom) {
      if (self->state.setup->options.progress)
        print_progress(self);
      self->delayed_send(self, 1s, tick_atom::value);
    },
    [=](stop_atom) { on_stop(self); },
    [=](deadline_atom) { on_deadline(self); },
  };
}

} // namespace

std::optional<scenario> scenario_from(std::string_view name) {
  for (auto s : {scenario::ping, scenario::agents, scenario::churn, scenario::idle,
                 scenario::publish})
    if (name == to_string(s))
      return s;
  return std::nullopt;
}

std::string to_string(scenario s) {
  switch (s) {
    case scenario::ping:
      return "ping";
    case scenario::agents:
      return "agents";
    case scenario::churn:
      return "churn";
    case scenario::idle:
      return "idle";
    case scenario::publish:
      return "publish";
  }
  return "?";
}

nlohmann::json to_json(const load_options& o) {
  return {
    {"scenario", to_string(o.kind)},
    {"host", o.host},
    {"port", o.port},
    {"connections", o.connections},
    {"users", o.users},
    {"inflight", o.inflight},
    {"duration_s", std::chrono::duration<double>(o.duration).count()},
    {"sources", o.sources},
    {"agent_rate_per_s", o.agent_rate},
    {"max_runs", o.max_runs},
    {"demo_steps", o.demo_steps},
    {"agent", o.agent},
    {"connect_window", o.connect_window},
    {"drain_timeout_ms", o.drain_timeout.count()},
    {"io_threads", o.io_threads},
    {"publish_rate_per_s", o.publish_rate},
    {"publish_connections", o.publish_connections},
  };
}

load_report run_load(const load_options& options, caf::actor_system_config& caf_config) {
  if (options.connections == 0 || options.users == 0 || options.inflight == 0
      || options.connect_window == 0 || options.io_threads == 0 || !(options.agent_rate > 0)
      || !(options.publish_rate > 0) || options.publish_connections == 0)
    throw std::invalid_argument("connections, users, inflight, connect window, io threads, "
                                "agent rate, publish rate and publish connections must be "
                                "positive");
  auto setup = std::make_shared<run_setup>();
  setup->options = options;
  for (std::size_t u = 0; u < std::min(options.users, options.connections); ++u)
    setup->tokens.push_back(
      context::mint_token(options.jwt, options.user_prefix + std::to_string(u), token_ttl));
  actors::use_io_scheduler(caf_config, options.io_threads);
  caf::actor_system system{caf_config};
  setup->io = &actors::io_scheduler_of(system);
  load_report report;
  {
    caf::scoped_actor self{system};
    system.spawn(collector_behavior, setup_ptr{setup}, caf::actor_cast<caf::actor>(self));
    self->receive([&](report_atom, load_report& r) { report = std::move(r); });
  }
  system.await_all_actors_done();
  return report; // the system's end stops the io threads and drops what is left on them
}

} // namespace er::load

