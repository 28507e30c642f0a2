#pragma once
// Every option of caf-application.conf (DESIGN §10) with its embedded default. The shipped
// caf-application.conf repeats these defaults; README "Configuration" documents each key.

#include <cstdint>
#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "context/jwt_auth.hpp"

namespace er::app {

/// A `[agents.NAME]` section: an external process speaking the line protocol (README).
struct command_agent_settings {
  std::string name;
  std::string executable; ///< relative paths are resolved against the config file's folder
  std::vector<std::string> args;
  std::int64_t timeout_ms = 60000;
};

/// A `[agents.NAME]` section with a `url`: a service the router POSTs each run to, streaming
/// its events back (README, "HTTP agents").
struct http_agent_settings {
  std::string name;
  std::string url;
  std::string bearer;                 ///< sent as Authorization: Bearer; never logged
  std::int64_t timeout_ms = 300000;   ///< the whole run
  std::int64_t connect_timeout_ms = 5000;
  std::int64_t max_in_flight = 16;    ///< requests to this agent at once, per process
  std::int64_t queue_timeout_ms = 10000;
  std::string ca_file;                ///< more trusted CA certificates (PEM) for https
};

inline constexpr const char* dev_jwt_secret = "dev-only-jwt-secret-change-me";
inline constexpr const char* dev_api_key = "dev-only-api-key-change-me";

struct router_settings {
  // [router]
  std::string host = "127.0.0.1";
  std::int64_t port = 8080;
  std::int64_t io_threads = 0; ///< 0: one per core (see effective_io_threads)
  bool reuse_port = false; ///< SO_REUSEPORT: several processes share router.port
  std::string server_id; ///< empty: the host name
  std::string jwt_secret = dev_jwt_secret;
  std::string jwt_issuer;
  std::string jwt_audience;
  std::int64_t jwt_leeway_s = 30;
  std::string api_key = dev_api_key;
  std::string store_path = "router.db";
  std::int64_t max_connections = 18000;
  std::int64_t max_connections_per_user = 8;
  std::int64_t max_http_connections = 1000;
  std::int64_t max_message_bytes = 65536;
  std::int64_t outbound_queue_bytes = 1048576;
  std::int64_t messages_per_second = 50;
  std::int64_t messages_burst = 100;
  std::int64_t heartbeat_interval_ms = 25000;
  std::int64_t heartbeat_timeout_ms = 20000;
  std::int64_t handshake_timeout_ms = 5000;
  std::int64_t resume_window_ms = 30000;
  std::int64_t resume_buffer_events = 1000;
  std::int64_t resume_buffer_bytes = 1048576;
  std::int64_t max_detached_per_user = 8;
  /// How long the router waits for a detached session to take a resume (not a config key:
  /// tests shorten it to show that a late answer cannot start the connection twice).
  std::int64_t resume_answer_timeout_ms = 5000;
  std::int64_t replay_budget_bytes = 0; ///< 0: a quarter of the machine's memory
  std::int64_t max_threads_per_user = 1000;
  std::int64_t max_user_store_bytes = 64 << 20;
  std::int64_t max_runs_per_connection = 4;
  std::int64_t drain_timeout_ms = 10000;
  std::int64_t demo_token_ttl_s = 86400;
  std::int64_t heap_trim_interval_ms = 10000; ///< 0: idle heap memory is never handed back
  std::int64_t heap_trim_threshold_bytes = 64 << 20;
  std::string console_dir; ///< serve the console from this clients/ folder (development)
  // [agents]
  std::int64_t demo_steps = 3;
  std::int64_t demo_step_delay_ms = 100;
  std::string default_agent = "demo";
  std::int64_t run_timeout_ms = 300000; ///< built-in agents; command agents have their own
  std::int64_t test_agents = 0;         ///< 1: add the fault-injection agents (tests only)
  std::vector<command_agent_settings> command_agents;
  std::vector<http_agent_settings> http_agents;
  // [cluster]
  std::string cluster_redis; ///< "host:port[,host:port...]"; empty: a single node
  std::string cluster_redis_password;
  std::string cluster_prefix = "er:";
  std::int64_t cluster_node_ttl_ms = 5000;
  std::int64_t cluster_redis_timeout_ms = 2000;
  std::int64_t cluster_history_size = 1000;
  std::int64_t cluster_history_ttl_ms = 600000;
};

inline bool is_loopback_host(const std::string& host) {
  return host.rfind("127.", 0) == 0 || host == "::1";
}

/// The console may mint demo tokens only for a development setup: the shipped (public) JWT
/// secret on a loopback address. Never when a real secret is configured.
inline bool dev_tokens_allowed(const router_settings& s) {
  return s.jwt_secret == dev_jwt_secret && is_loopback_host(s.host);
}

/// The JWT part of the settings, for verifying and for minting tokens alike.
inline context::jwt_settings jwt_settings_of(const router_settings& s) {
  return {s.jwt_secret, s.jwt_issuer, s.jwt_audience, std::chrono::seconds{s.jwt_leeway_s}};
}

/// router.io-threads with 0 resolved to the number of cores.
inline std::size_t effective_io_threads(const router_settings& s) {
  if (s.io_threads > 0)
    return static_cast<std::size_t>(s.io_threads);
  return std::max(1u, std::thread::hardware_concurrency());
}

} // namespace er::app
