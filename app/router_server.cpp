#include "app/router_server.hpp"

#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "actors/runtime/io_scheduler.hpp"
#include "actors/router/router.hpp"
#include "actors/router/manager/runs/http_agent_client.hpp"
#include "app/cluster_join.hpp"
#include "app/config.hpp"
#include "app/heap_trimmer.hpp"
#include "app/http_api.hpp"
#include "context/ids.hpp"
#include "context/jwt_auth.hpp"
#include "context/token_source.hpp"
#include "net/listener.hpp"
#include "protocol/close_codes.hpp"

namespace er::app {

namespace asio = boost::asio;

namespace {

net::session_limits session_limits_of(const router_settings& s) {
  net::session_limits limits;
  limits.max_message_bytes = static_cast<std::size_t>(s.max_message_bytes);
  limits.outbound_queue_bytes = static_cast<std::size_t>(s.outbound_queue_bytes);
  limits.handshake_timeout = std::chrono::milliseconds{s.handshake_timeout_ms};
  limits.heartbeat_interval = std::chrono::milliseconds{s.heartbeat_interval_ms};
  limits.heartbeat_timeout = std::chrono::milliseconds{s.heartbeat_timeout_ms};
  return limits;
}

std::shared_ptr<const actors::agent_catalog> catalog_of(const router_settings& s,
                                                       asio::io_context& io) {
  auto catalog = std::make_shared<actors::agent_catalog>();
  catalog->default_agent = s.default_agent;
  catalog->demo_steps = static_cast<int>(s.demo_steps);
  catalog->demo_step_delay = std::chrono::milliseconds{s.demo_step_delay_ms};
  catalog->io = &io;
  auto add = [&](std::string name, actors::agent_kind kind, std::int64_t timeout_ms) {
    actors::agent_definition def;
    def.name = name;
    def.kind = kind;
    def.timeout = std::chrono::milliseconds{timeout_ms};
    return &(catalog->agents[name] = std::move(def));
  };
  add("echo", actors::agent_kind::echo, s.run_timeout_ms);
  add("demo", actors::agent_kind::demo, s.run_timeout_ms);
  if (s.test_agents != 0) {
    add("test-throw", actors::agent_kind::test_throw, s.run_timeout_ms);
    add("test-hang", actors::agent_kind::test_hang, s.run_timeout_ms);
  }
  for (auto& c : s.command_agents) {
    auto def = add(c.name, actors::agent_kind::command, c.timeout_ms);
    def->command.executable = c.executable;
    def->command.args = c.args;
  }
  for (auto& h : s.http_agents) {
    actors::http_agent_options options;
    std::string why;
    auto url = actors::parse_agent_url(h.url, why);
    if (!url)
      throw std::runtime_error("[agents." + h.name + "] url " + why);
    options.url = *url;
    options.bearer = h.bearer;
    options.connect_timeout = std::chrono::milliseconds{h.connect_timeout_ms};
    options.max_in_flight = static_cast<std::size_t>(h.max_in_flight);
    options.queue_timeout = std::chrono::milliseconds{h.queue_timeout_ms};
    options.ca_file = h.ca_file;
    add(h.name, actors::agent_kind::http, h.timeout_ms)->http =
      actors::http_agent_pool::create(io, std::move(options));
  }
  if (!catalog->find(s.default_agent))
    throw config_error("agents.default = \"" + s.default_agent + "\" names no agent");
  return catalog;
}

/// `?resume=&last_event_id=` of an upgrade request, when both are present and well-formed.
std::optional<actors::resume_request> resume_of(std::string_view target) {
  auto token = context::query_parameter(target, "resume");
  auto last = context::query_parameter(target, "last_event_id");
  if (!token || token->empty() || !last)
    return std::nullopt;
  actors::resume_request r;
  r.token = std::move(*token);
  try {
    std::size_t used = 0;
    r.last_event_id = std::stoull(*last, &used);
    if (used != last->size() || last->front() == '-')
      return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return r;
}

/// The cluster's settings, after claiming this node's id; null without cluster.redis.
std::shared_ptr<const actors::cluster_settings>
cluster_of(const router_settings& s, asio::io_context& io,
           std::shared_ptr<actors::router_metrics> metrics) {
  auto shards = redis_shards(s);
  if (shards.empty())
    return nullptr;
  auto cluster = std::make_shared<actors::cluster_settings>();
  cluster->shards = std::move(shards);
  cluster->password = s.cluster_redis_password;
  cluster->prefix = s.cluster_prefix;
  cluster->node_ttl = std::chrono::milliseconds{s.cluster_node_ttl_ms};
  cluster->redis_timeout = std::chrono::milliseconds{s.cluster_redis_timeout_ms};
  cluster->history_size = static_cast<std::size_t>(s.cluster_history_size);
  cluster->history_ttl = std::chrono::milliseconds{s.cluster_history_ttl_ms};
  cluster->node_id = s.server_id;
  cluster->incarnation = context::random_id(context::id_prefix::session);
  cluster->io = &io;
  cluster->metrics = std::move(metrics);
  claim_node_id(*cluster);
  return cluster;
}

// The io threads run the sockets and the actors alike (actors/io_scheduler.hpp).
std::unique_ptr<caf::actor_system_config> with_io_scheduler(
  std::unique_ptr<caf::actor_system_config> cfg, const router_settings& s) {
  if (!cfg)
    cfg = std::make_unique<caf::actor_system_config>();
  actors::use_io_scheduler(*cfg, effective_io_threads(s));
  return cfg;
}

} // namespace

struct router_server::impl {
  impl(const router_settings& s, std::unique_ptr<caf::actor_system_config> cfg)
    : settings(s),
      verifier(jwt_settings_of(s)),
      caf_config(with_io_scheduler(std::move(cfg), s)),
      system(*caf_config),
      io(actors::io_scheduler_of(system).io_context()) {
    metrics->set_server_id(s.server_id);
    auto manager_cfg = std::make_shared<actors::manager_settings>();
    manager_cfg->server_id = s.server_id;
    manager_cfg->session = session_limits_of(s);
    manager_cfg->max_runs_per_connection = static_cast<std::size_t>(s.max_runs_per_connection);
    manager_cfg->max_connections_per_user = static_cast<std::size_t>(s.max_connections_per_user);
    manager_cfg->resume_window = std::chrono::milliseconds{s.resume_window_ms};
    manager_cfg->resume_buffer_events = static_cast<std::size_t>(s.resume_buffer_events);
    manager_cfg->resume_buffer_bytes = static_cast<std::size_t>(s.resume_buffer_bytes);
    manager_cfg->max_detached_per_user = static_cast<std::size_t>(s.max_detached_per_user);
    manager_cfg->resume_answer_timeout = std::chrono::milliseconds{s.resume_answer_timeout_ms};
    auto replay_budget = std::make_shared<actors::replay_budget>(effective_replay_budget(s));
    manager_cfg->budget = replay_budget;
    manager_cfg->messages_per_second = static_cast<std::size_t>(s.messages_per_second);
    manager_cfg->messages_burst = static_cast<std::size_t>(s.messages_burst);
    manager_cfg->agents = catalog_of(s, io);
    manager_cfg->metrics = metrics;
    manager_cfg->test_faults = s.test_agents != 0;
    store = actors::spawn_thread_store(
      system, s.store_path,
      actors::store_quotas{static_cast<std::uint64_t>(s.max_threads_per_user),
                           static_cast<std::uint64_t>(s.max_user_store_bytes)});
    manager_cfg->store = store;
    cluster = cluster_of(s, io, metrics);
    if (cluster) // resume tokens name this node, for a resume that reaches another one
      manager_cfg->resume_token_suffix = actors::resume_token_suffix(cluster->node_id);
    router = actors::spawn_router(system, std::move(manager_cfg), cluster);
    std::optional<context::jwt_settings> dev_tokens;
    if (dev_tokens_allowed(s))
      dev_tokens = jwt_settings_of(s);
    api = std::make_unique<http_api>(http_api{system, router, metrics, s.api_key, s.server_id,
                                              std::move(dev_tokens),
                                              std::chrono::seconds{s.demo_token_ttl_s},
                                              s.console_dir, std::move(replay_budget)});
    net::listener_hooks hooks;
    hooks.on_upgrade = [r = router](net::upgrade up) {
      caf::anon_send(r, actors::attach_atom::value,
                     actors::attach_request{std::move(up.connection), std::move(up.ctx),
                                            resume_of(up.target)});
    };
    hooks.on_request = [a = api.get()](const net::http_request_view& req,
                                       std::function<void(net::http_reply)> respond) {
      a->handle(req, std::move(respond));
    };
    hooks.on_auth_failure = [m = metrics](context::auth_failure f) {
      m->auth_failure(context::to_string(f));
    };
    hooks.on_accept_paused = [m = metrics] { m->accept_paused(); };
    hooks.connection_context = [sched = &actors::io_scheduler_of(system)]() -> asio::io_context& {
      return sched->next_io_context();
    };
    auto budget = std::make_shared<net::connection_budget>(
      static_cast<std::size_t>(s.max_connections));
    try {
      listener = std::make_unique<net::listener>(
        io, s.host, static_cast<unsigned short>(s.port), verifier, session_limits_of(s),
        std::move(budget), std::move(hooks), s.reuse_port,
        static_cast<std::size_t>(s.max_http_connections));
    } catch (...) {
      // A port taken, an address not here: the actors already run, and the router and the
      // cluster bus hold each other, so the system's destructor (which waits for every actor)
      // never returned and the process hung without a word. They are ended first, and the
      // node id is released only once the bus is gone: a liveness refresh still on its way
      // registered the id again (SET NX) after the release.
      caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(store, caf::exit_reason::user_shutdown);
      system.await_all_actors_done();
      actors::io_scheduler_of(system).stop_io_threads();
      if (cluster)
        release_node_id(*cluster);
      throw;
    }
    listener->start();
    if (s.heap_trim_interval_ms > 0)
      trimmer = std::make_unique<heap_trimmer>(
        std::chrono::milliseconds{s.heap_trim_interval_ms},
        static_cast<std::size_t>(s.heap_trim_threshold_bytes), metrics);
  }

  // Declared before the system: the io threads it runs may use them until it is gone.
  router_settings settings;
  context::jwt_verifier verifier;
  std::shared_ptr<actors::router_metrics> metrics = std::make_shared<actors::router_metrics>();
  std::unique_ptr<caf::actor_system_config> caf_config;
  caf::actor_system system;
  asio::io_context& io;
  actors::thread_store_actor store;
  actors::router_actor router;
  std::shared_ptr<const actors::cluster_settings> cluster; ///< null without cluster.redis
  std::unique_ptr<http_api> api;
  std::unique_ptr<net::listener> listener;
  std::unique_ptr<heap_trimmer> trimmer;
  bool stopped = false;
};

router_server::router_server(const router_settings& settings,
                             std::unique_ptr<caf::actor_system_config> caf_config)
  : impl_(std::make_unique<impl>(settings, std::move(caf_config))) {
}

router_server::~router_server() {
  shutdown(std::chrono::milliseconds{0}); // no drain: whoever wanted one called shutdown()
}

unsigned short router_server::port() const {
  return impl_->listener->port();
}

const router_settings& router_server::settings() const {
  return impl_->settings;
}

actors::router_stats router_server::stats() {
  caf::scoped_actor self{impl_->system};
  actors::router_stats result;
  self->request(impl_->router, std::chrono::seconds{10}, actors::stats_atom::value)
    .receive([&](const actors::router_stats& s) { result = s; },
             [&](const caf::error& err) {
               throw std::runtime_error("router stats: " + impl_->system.render(err));
             });
  return result;
}

std::size_t router_server::running_actors() {
  return impl_->system.registry().running();
}

std::size_t router_server::pending_timers() {
  return static_cast<actors::io_clock&>(actors::io_scheduler_of(impl_->system).clock()).pending();
}

void router_server::shutdown(std::chrono::milliseconds drain) {
  auto& i = *impl_;
  if (i.stopped)
    return;
  i.stopped = true;
  i.listener->stop();
  // In-flight runs may finish within `drain`; each connection closes with 1001 when its
  // runs are done. Then whatever is left is closed, with a close handshake's time to finish.
  caf::anon_send(i.router, actors::drain_atom::value);
  auto wait_for_connections = [this](std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      try {
        if (stats().connections == 0)
          return;
      } catch (const std::exception&) {
        // A router too busy to answer in time: keep waiting until the deadline.
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
  };
  wait_for_connections(drain);
  caf::anon_send(i.router, actors::shutdown_atom::value, close_code::going_away.code);
  wait_for_connections(std::chrono::milliseconds{i.settings.handshake_timeout_ms});
  // Managers still alive after the drain die with the router (they are linked to it).
  caf::anon_send_exit(i.router, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(i.store, caf::exit_reason::user_shutdown);
  i.system.await_all_actors_done();
  // No actor is left to run: stop the io threads so that nothing calls into the members
  // (listener, api) destroyed before the system.
  actors::io_scheduler_of(i.system).stop_io_threads();
  i.listener.reset();
  // The cluster bus, which kept this node's liveness key alive, is gone: the key goes too, so
  // that a restart (systemctl restart, an upgrade) claims the id at once.
  if (i.cluster)
    release_node_id(*i.cluster);
}

} // namespace er::app
