// shared-manager-bench: the design this project replaces, for measurement only.
//
// One actor serves every connection (the "global WebSocket manager"), instead of one manager
// actor per connection. Everything else is the router's: the same listener (JWT checked
// before the upgrade), the same sessions, the same io threads running the actor
// (actors::io_scheduler), and the same work per ping as a connection_manager does: parse and
// validate, the connection's token bucket, the metrics, the envelope stamped with the
// connection's user and next event id, the replay buffer copy, the write. bench/run.sh runs
// the ping load against it and against event-router to price the per-connection actors.
// It is not a product: no agents, threads, resume, publish API or limits beyond the above.
//
//   shared-manager-bench --port=P --secret=S [--io-threads=N]

#include <algorithm>
#include <chrono>
#include <csignal>
#include <deque>
#include <iostream>
#include <memory>
#include <string>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/message_types.hpp"
#include "actors/metrics.hpp"
#include "actors/router/manager/connection_manager.hpp"
#include "actors/router/manager/token_bucket.hpp"
#include "actors/router/router.hpp"
#include "actors/runtime/io_scheduler.hpp"
#include "actors/runtime/socket_messages.hpp"
#include "context/ids.hpp"
#include "context/jwt_auth.hpp"
#include "net/listener.hpp"
#include "protocol/envelope.hpp"

namespace {

using namespace er;
using actors::attach_atom;
using actors::closed_atom;
using actors::frame_atom;

constexpr double messages_per_second = 1e6; // as bench/run.sh configures the router
constexpr double messages_burst = 1e6;
constexpr std::size_t replay_events = 1000;

struct connection_entry {
  std::shared_ptr<net::ws_connection> socket;
  std::string user_id;
  std::unique_ptr<protocol::event_renderer> renderer;
  std::uint64_t next_event_id = 1;
  actors::token_bucket bucket{messages_burst};
  std::deque<std::pair<std::uint64_t, std::string>> replay;
};

struct shared_state {
  std::unordered_map<std::uint64_t, connection_entry> connections;
  std::uint64_t next_key = 1;
  std::shared_ptr<actors::router_metrics> metrics;
};

class shared_sink final : public net::session_sink {
public:
  shared_sink(caf::actor manager, std::uint64_t key) : manager_(std::move(manager)), key_(key) {
  }
  void on_text(std::string frame) override {
    caf::anon_send(manager_, frame_atom::value, key_, std::move(frame));
  }
  void on_binary(std::size_t) override {
  }
  void on_closed(net::close_info) override {
    caf::anon_send(manager_, closed_atom::value, key_);
  }

private:
  caf::actor manager_;
  std::uint64_t key_;
};

void emit(shared_state& st, connection_entry& c, const protocol::outbound_event& ev) {
  auto id = c.next_event_id++;
  auto frame = c.renderer->render(ev, id, std::chrono::system_clock::now());
  st.metrics->event_out(ev.type, -1);
  c.replay.emplace_back(id, frame);
  if (c.replay.size() > replay_events)
    c.replay.pop_front();
  c.socket->send(std::move(frame));
}

void on_frame(shared_state& st, connection_entry& c, const std::string& text) {
  if (!c.bucket.take(messages_per_second, messages_burst))
    return;
  auto parsed = protocol::parse_inbound(text);
  protocol::outbound_event ev;
  if (auto* error = std::get_if<protocol::protocol_error>(&parsed)) {
    st.metrics->message_in("other");
    ev = protocol::make_error(*error);
  } else {
    auto& msg = std::get<protocol::inbound_message>(parsed);
    st.metrics->message_in(msg.type);
    if (msg.type != "ping")
      ev = protocol::make_error({"unknown_type", "this variant answers ping only", msg.id});
    else {
      ev.type = "pong";
      ev.reply_to = msg.id;
    }
  }
  emit(st, c, ev);
}

caf::behavior shared_manager(caf::stateful_actor<shared_state>* self,
                             std::shared_ptr<actors::router_metrics> metrics) {
  self->state.metrics = std::move(metrics);
  return {
    [=](attach_atom, std::shared_ptr<net::ws_connection>& socket, const std::string& user) {
      auto& st = self->state;
      auto key = st.next_key++;
      auto& c = st.connections[key];
      c.socket = std::move(socket);
      c.user_id = user;
      c.renderer = std::make_unique<protocol::event_renderer>(user);
      c.socket->start(std::make_shared<shared_sink>(caf::actor_cast<caf::actor>(self), key),
                      std::chrono::system_clock::time_point::max()); // the bench's tokens outlive it
      protocol::outbound_event hello;
      hello.type = "connection_established";
      hello.data = {{"connection_id", context::random_id(context::id_prefix::connection)}};
      c.socket->send(protocol::render_event(hello, 0, user, std::chrono::system_clock::now()));
    },
    [=](frame_atom, std::uint64_t key, const std::string& text) {
      auto& st = self->state;
      if (auto it = st.connections.find(key); it != st.connections.end())
        on_frame(st, it->second, text);
    },
    [=](closed_atom, std::uint64_t key) { self->state.connections.erase(key); },
  };
}

std::string option(int argc, char** argv, const std::string& name, std::string fallback) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--" + name + "=", 0) == 0)
      return arg.substr(name.size() + 3);
  }
  return fallback;
}

} // namespace

int main(int argc, char** argv) {
  auto port = std::stoi(option(argc, argv, "port", "0"));
  auto secret = option(argc, argv, "secret", "");
  auto threads = std::stoul(option(argc, argv, "io-threads", "0"));
  if (secret.empty()) {
    std::cerr << "usage: shared-manager-bench --port=P --secret=S [--io-threads=N]\n";
    return 2;
  }
  if (threads == 0)
    threads = std::max(1u, std::thread::hardware_concurrency());
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  caf::actor_system_config cfg;
  actors::use_io_scheduler(cfg, threads);
  caf::actor_system system{cfg};
  auto& sched = actors::io_scheduler_of(system);
  context::jwt_verifier verifier{context::jwt_settings{secret, {}, {}, std::chrono::seconds{30}}};
  auto manager = system.spawn(shared_manager, std::make_shared<actors::router_metrics>());
  net::listener_hooks hooks;
  hooks.on_upgrade = [manager](net::upgrade up) {
    caf::anon_send(manager, attach_atom::value, std::move(up.connection),
                   std::string{up.ctx.user_id()});
  };
  hooks.connection_context = [&sched]() -> boost::asio::io_context& {
    return sched.next_io_context();
  };
  auto budget = std::make_shared<net::connection_budget>(20000);
  net::listener listener{sched.io_context(), "127.0.0.1", static_cast<unsigned short>(port),
                         verifier, net::session_limits{}, budget, std::move(hooks)};
  listener.start();
  std::cout << "shared-manager-bench: listening on 127.0.0.1:" << listener.port() << std::endl;
  int signal = 0;
  sigwait(&stop_signals, &signal);
  listener.stop();
  caf::anon_send_exit(manager, caf::exit_reason::user_shutdown);
  system.await_all_actors_done();
  sched.stop_io_threads();
  return 0;
}
