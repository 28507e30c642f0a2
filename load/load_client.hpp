#pragma once
// router-load's actors. Every simulated connection is a load_client actor that owns its
// WebSocket (async_ws_client, whose callbacks send into the actor's mailbox) and a
// frame_checker that knows what the router owes it. The collector spawns the clients, lets a
// bounded number connect at a time, opens and closes the measured window, merges what the
// clients report, prints a progress line each second and hands over the final load_report.
//
// Scenarios:
//  - ping:   closed loop, `inflight` pings per connection; latency ping -> pong;
//  - agents: each connection starts demo runs at `agent_rate` per second (never more than
//            `max_runs` at once) and checks every event's order and owner; latency
//            start_agent -> agent_completed;
//  - churn:  every client connects, waits for connection_established and disconnects
//            (alternately a close handshake and a TCP reset), again and again;
//            latency connect -> connection_established;
//  - idle:   hold the connections for the duration (memory measurements);
//  - publish: a publisher actor (load_publisher.cpp) publishes `publish_rate` events per second
//            through the router's HTTP API (POST /api/v1/publish, keep-alive connections of
//            http_client_pool, never blocking an actor) to random users; it announces
//            each event to the clients of its user first, and every connection checks that
//            it gets each of its user's events exactly once; latency publish -> receipt.
//            The collector stops the publisher before the clients, so that no announcement
//            reaches a client after its stop.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/local_actor.hpp>
#include <caf/typed_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/runtime/socket_messages.hpp"
#include "load/load_report.hpp"
#include "context/jwt_auth.hpp"

namespace er::actors {
class io_scheduler;
}

namespace boost::asio {
class io_context;
}

namespace er::load {

enum class scenario { ping, agents, churn, idle, publish };

std::optional<scenario> scenario_from(std::string_view name);
std::string to_string(scenario s);

struct load_options {
  scenario kind = scenario::ping;
  std::string host = "127.0.0.1";
  unsigned short port = 8080;
  std::size_t connections = 100;
  std::size_t users = 25;          ///< connection i belongs to user i % users
  std::string user_prefix = "load-user-";
  std::size_t inflight = 1;        ///< ping: requests in flight per connection
  std::chrono::milliseconds duration{10000}; ///< the measured window
  std::size_t sources = 0;         ///< bind connection i to 127.0.0.(2 + i % sources); 0: don't
  double agent_rate = 1.0;         ///< agents: runs started per second per connection
  std::size_t max_runs = 4;        ///< agents: the router's max-runs-per-connection
  int demo_steps = 3;              ///< agents: the router's agents.demo-steps
  std::string agent = "demo";      ///< agents: the agent runs start (its events: the demo's shape)
  std::size_t connect_window = 64; ///< connection attempts in progress at once while ramping
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds drain_timeout{5000}; ///< after the window: wait for owed replies
  std::size_t io_threads = 1;
  double publish_rate = 100.0;     ///< publish: events per second, all users together
  std::size_t publish_connections = 4; ///< publish: HTTP connections (requests in flight)
  std::string api_key;             ///< publish: router.api-key
  context::jwt_settings jwt;       ///< mints one token per user
  std::ostream* progress = nullptr; ///< a line per second; null: silent
};

/// The options as reported in load_report::options (without the secret).
nlohmann::json to_json(const load_options& options);

/// Runs one scenario to its end in an actor system of its own (configured by `caf_config`)
/// and `options.io_threads` asio threads; returns when every client has ended.
load_report run_load(const load_options& options, caf::actor_system_config& caf_config);

// -- the actors (load_client.cpp, load_collector.cpp) ------------------------------

using connect_atom = caf::atom_constant<caf::atom("connect")>;
using go_atom = caf::atom_constant<caf::atom("go")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using opened_atom = caf::atom_constant<caf::atom("opened")>;
using actors::binary_atom; // what the socket says (actors/runtime/socket_messages.hpp)
using actors::closed_atom;
/// (frames, texts): the text frames one socket read brought, in order. A run's events leave
/// the router in one write: one mailbox element for all of them, not one each.
using frames_atom = caf::atom_constant<caf::atom("frames")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;
using ready_atom = caf::atom_constant<caf::atom("ready")>;
using delta_atom = caf::atom_constant<caf::atom("delta")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using report_atom = caf::atom_constant<caf::atom("report")>;
using expect_atom = caf::atom_constant<caf::atom("expect")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using answer_atom = caf::atom_constant<caf::atom("answer")>;
using halted_atom = caf::atom_constant<caf::atom("halted")>;
using ended_atom = caf::atom_constant<caf::atom("ended")>;

/// What a client counted since its previous report.
struct client_delta {
  load_counters counters;
  std::vector<std::uint32_t> latencies_us;
};

using load_client_actor = caf::typed_actor<
  caf::reacts_to<connect_atom>,                                   // collector: connect now
  caf::reacts_to<go_atom>,                                        // collector: window opens
  caf::reacts_to<stop_atom>,                                      // collector: window closed
  caf::reacts_to<opened_atom, bool, std::uint32_t, std::string>,  // socket: upgraded, status, why
  caf::reacts_to<frames_atom, std::vector<std::string>>,          // socket: text frames
  caf::reacts_to<binary_atom, std::uint64_t>,                     // socket: a binary frame
  caf::reacts_to<closed_atom, std::uint16_t, bool>,               // socket: code, clean
  caf::reacts_to<tick_atom>,                                      // itself: start a run
  caf::reacts_to<flush_atom>,                                     // itself: report counters
  caf::reacts_to<deadline_atom>,                                  // itself: drain time is up
  caf::reacts_to<expect_atom, std::uint64_t, std::int64_t>,       // publisher: seq, sent (ns)
  caf::reacts_to<cancel_atom, std::uint64_t>>;                    // publisher: seq failed

using collector_actor = caf::typed_actor<
  caf::reacts_to<ready_atom, bool>,          // a client's first connect attempt ended (ok)
  caf::reacts_to<delta_atom, client_delta>,  // a client's counters since its last report
  caf::reacts_to<done_atom, client_delta>,   // a client's last report: it has ended
  caf::reacts_to<tick_atom>,                 // itself, each second: the progress line
  caf::reacts_to<stop_atom>,                 // itself: the window is over
  caf::reacts_to<deadline_atom>,             // itself: stop waiting for clients
  caf::reacts_to<halted_atom>,               // the publisher sends no more: stop the clients
  caf::reacts_to<ended_atom, client_delta>>; // the publisher's last report: it has ended

using load_publisher_actor = caf::typed_actor<
  caf::reacts_to<go_atom>,       // collector: window opens, start publishing
  caf::reacts_to<stop_atom>,     // collector: window closed, stop publishing
  caf::reacts_to<tick_atom>,     // itself: publish what is due
  caf::reacts_to<flush_atom>,    // itself: report counters
  caf::reacts_to<deadline_atom>, // itself: stop waiting for answers
  caf::reacts_to<answer_atom, std::uint64_t, std::uint32_t, std::int64_t, std::string>>;
  // the HTTP pool: seq, status (0: none), `delivered` (-1: unreadable), error

/// What every actor of one run shares; immutable once the run starts.
struct run_setup {
  load_options options;
  actors::io_scheduler* io = nullptr; ///< runs the clients and their sockets
  std::vector<std::string> tokens;       ///< one per user
};

using setup_ptr = std::shared_ptr<const run_setup>;

/// Client `index` of the run, linked to `collector` (a collector_actor), which starts it
/// with connect_atom and to which it reports.
load_client_actor spawn_load_client(caf::local_actor* collector, setup_ptr setup,
                                    std::size_t index);

/// The publish scenario's publisher, linked to `collector`; `clients` are all the clients of
/// the run, client i belonging to user i % setup->tokens.size().
load_publisher_actor spawn_load_publisher(caf::local_actor* collector, setup_ptr setup,
                                          const std::vector<load_client_actor>& clients);

} // namespace er::load

// Local-only message types: they never leave the process.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::load::client_delta)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::load::load_report)
