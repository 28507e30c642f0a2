// router-load: the load-test client. It reads the router's own configuration (caf-application.conf,
// --config-file, --router.* / --agents.* overrides) to mint tokens with the same secret and to
// know the agents' settings, runs one scenario (actors/load_client.hpp) and reports.
// Exit status: 0 pass; 1 a leak, a missing event, an unexpected error or too few connections;
// 2 bad usage.

#include <charconv>
#include <cmath>
#include <type_traits>
#include <iostream>
#include <string>
#include <vector>

#include <sys/resource.h>

#include <caf/actor_system_config.hpp>

#include "load/load_client.hpp"
#include "app/config.hpp"

namespace {

using er::load::load_options;
using er::load::scenario;

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr const char* usage = R"(usage: router-load [--scenario=NAME] [options] [--config-file=PATH] [--router.KEY=VALUE ...]

Scenarios:
  ping     closed loop: --inflight pings per connection, latency ping -> pong (default)
  agents   every connection starts demo runs at --rate per second and checks each event's
           order (agent_started, agent_thinking x agents.demo-steps, tool_executing,
           tool_completed, agent_completed) and owner; latency start_agent -> agent_completed
  churn    connect, wait for connection_established, disconnect (alternately a close
           handshake and a TCP reset), as fast as possible; --connections clients at once
  idle     hold --connections connections for --duration (memory per connection)
  publish  a backend publishes --publish-rate events per second through the HTTP API
           (POST /api/v1/publish, router.api-key) to random users; every connection checks
           that it gets each event of its user exactly once; latency publish -> receipt

Options:
  --connections=N          simultaneous connections (default 100)
  --users=U                distinct users; connection i belongs to user i % U
                           (default: a quarter of the connections, at least 1; churn: one
                           user per connection)
  --inflight=K             ping: requests in flight per connection (default 1)
  --rate=R                 agents: runs started per second per connection (default 1)
  --agent=NAME             agents: the agent to start (default demo); its events must have
                           the demo's shape (an HTTP agent behind bench/http-agent-server.mjs)
  --duration=S             the measured window in seconds, after every connection is up
                           (default 10; fractions allowed)
  --host=ADDR --port=P     the router (default: router.host and router.port of the configuration)
  --sources=N              bind connections to 127.0.0.2 .. 127.0.0.(N+1), past the ephemeral
                           port range of one address (default 4 for a loopback host, else 0)
  --connect-window=N       connection attempts in progress at once while ramping up (default 64)
  --drain-ms=MS            after the window, how long to wait for owed replies (default 5000)
  --handshake-timeout-ms=MS  connect plus upgrade, and a close handshake (default 10000)
  --publish-rate=R         publish: events per second, all users together (default 100)
  --publish-connections=N  publish: keep-alive HTTP connections, requests in flight (default 4)
  --api-key=KEY            publish: the Bearer key (default router.api-key of the configuration)
  --io-threads=N           threads running the clients and their sockets (default 1)
  --user-prefix=TEXT       user ids are TEXT<n> (default load-user-)
  --json                   the report as JSON on stdout; progress and summary go to stderr
  --quiet                  no progress lines
  --scheduler.max-throughput=N, --logger.*   CAF's own options
  --config-file=PATH, --router.*, --agents.*   the router's configuration (see event-router --help):
                           router.jwt-secret (and issuer, audience) sign the tokens;
                           agents.demo-steps and router.max-runs-per-connection shape `agents`;
                           router.api-key (or --api-key) authorises `publish`

A run fails (exit status 1) on any leaked frame (another user's, or a reply to a request the
connection never made), any missing event, any unexpected error or close, or when not every
connection could be established.
)";

template <class T>
T number(const std::string& name, const std::string& text) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size())
    throw usage_error(name + " expects a number, got '" + text + "'");
  return value;
}

template <class T>
T positive(const std::string& name, const std::string& text) {
  auto value = number<T>(name, text);
  if (!(value > 0))
    throw usage_error(name + " must be positive, got '" + text + "'");
  if constexpr (std::is_floating_point_v<T>)
    if (!std::isfinite(value)) // from_chars reads "inf"
      throw usage_error(name + " must be a finite number, got '" + text + "'");
  return value;
}

/// Seconds, at least a millisecond and at most a week (a window of 0 ms measured nothing and
/// still passed; "inf" overflowed into a negative duration).
std::chrono::milliseconds seconds_option(const std::string& name, const std::string& text) {
  auto seconds = positive<double>(name, text);
  if (seconds < 0.001 || seconds > 7 * 86400.0)
    throw usage_error(name + " must be between 0.001 and 604800 seconds, got '" + text + "'");
  return std::chrono::milliseconds{static_cast<std::int64_t>(seconds * 1000)};
}

struct cli {
  load_options options;
  bool users_given = false;
  bool sources_given = false;
  bool json = false;
  bool quiet = false;
  std::vector<std::string> caf_args;
};

void apply(cli& c, const std::string& name, const std::string& value) {
  auto& o = c.options;
  if (name == "--scenario") {
    auto s = er::load::scenario_from(value);
    if (!s)
      throw usage_error("unknown scenario '" + value + "' (ping, agents, churn, idle, publish)");
    o.kind = *s;
  } else if (name == "--connections") {
    o.connections = positive<std::size_t>(name, value);
  } else if (name == "--users") {
    o.users = positive<std::size_t>(name, value);
    c.users_given = true;
  } else if (name == "--inflight") {
    o.inflight = positive<std::size_t>(name, value);
  } else if (name == "--agent") {
    if (value.empty())
      throw std::invalid_argument("--agent needs an agent's name");
    o.agent = value;
  } else if (name == "--rate") {
    o.agent_rate = positive<double>(name, value);
  } else if (name == "--duration") {
    o.duration = seconds_option(name, value);
  } else if (name == "--host") {
    o.host = value;
  } else if (name == "--port") {
    o.port = positive<unsigned short>(name, value);
  } else if (name == "--sources") {
    o.sources = number<std::size_t>(name, value);
    if (o.sources > 250)
      throw usage_error("--sources is at most 250 (127.0.0.2 .. 127.0.0.251)");
    c.sources_given = true;
  } else if (name == "--connect-window") {
    o.connect_window = positive<std::size_t>(name, value);
  } else if (name == "--drain-ms") {
    o.drain_timeout = std::chrono::milliseconds{number<std::int64_t>(name, value)};
  } else if (name == "--handshake-timeout-ms") {
    o.handshake_timeout = std::chrono::milliseconds{positive<std::int64_t>(name, value)};
  } else if (name == "--publish-rate") {
    o.publish_rate = positive<double>(name, value);
  } else if (name == "--publish-connections") {
    o.publish_connections = positive<std::size_t>(name, value);
  } else if (name == "--api-key") {
    if (value.empty())
      throw usage_error("--api-key must not be empty");
    o.api_key = value;
  } else if (name == "--io-threads") {
    o.io_threads = positive<std::size_t>(name, value);
  } else if (name == "--user-prefix") {
    o.user_prefix = value;
  } else {
    throw usage_error("unknown option " + name + " (see --help)");
  }
}

cli parse_cli(const er::app::loaded_config& cfg) {
  cli c;
  auto& s = cfg.settings;
  c.options.host = s.host == "0.0.0.0" ? "127.0.0.1" : s.host;
  c.options.port = static_cast<unsigned short>(s.port);
  c.options.jwt = er::app::jwt_settings_of(s);
  c.options.demo_steps = static_cast<int>(s.demo_steps);
  c.options.max_runs = static_cast<std::size_t>(s.max_runs_per_connection);
  c.options.api_key = s.api_key;
  for (auto& arg : cfg.caf_args) {
    auto eq = arg.find('=');
    auto name = arg.substr(0, eq);
    if (name == "--json")
      c.json = true;
    else if (name == "--quiet")
      c.quiet = true;
    else if (name.rfind("--scheduler.", 0) == 0 || name.rfind("--logger.", 0) == 0)
      c.caf_args.push_back(arg);
    else if (eq == std::string::npos)
      throw usage_error(name.rfind("--", 0) == 0 ? name + " needs a value: " + name + "=VALUE"
                                                 : "unexpected argument '" + arg + "'");
    else
      apply(c, name, arg.substr(eq + 1));
  }
  auto& o = c.options;
  bool loopback = o.host.rfind("127.", 0) == 0;
  if (!c.sources_given)
    o.sources = loopback ? 4 : 0;
  if (o.sources > 0 && !loopback)
    throw usage_error("--sources needs a loopback --host (127.x.x.x)");
  // churn: one connection per user, so that connections the router has not yet seen end
  // cannot push a user past router.max-connections-per-user
  if (!c.users_given)
    o.users = o.kind == scenario::churn ? o.connections : std::max<std::size_t>(1, o.connections / 4);
  auto per_user = (o.connections + o.users - 1) / o.users;
  if (per_user > static_cast<std::size_t>(s.max_connections_per_user))
    throw usage_error(std::to_string(o.connections) + " connections over " + std::to_string(o.users)
                      + " users is " + std::to_string(per_user)
                      + " per user, more than router.max-connections-per-user = "
                      + std::to_string(s.max_connections_per_user) + ": raise --users");
  return c;
}

/// One descriptor per connection, plus a margin: raise the soft limit as far as allowed.
void ensure_open_files(std::size_t connections) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
    return;
  auto needed = static_cast<rlim_t>(connections + 64);
  if (limit.rlim_cur < needed && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = std::min(limit.rlim_max, std::max(needed, limit.rlim_cur));
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < needed)
    throw usage_error(std::to_string(connections) + " connections need about "
                      + std::to_string(needed) + " open files; this process may open "
                      + std::to_string(limit.rlim_cur));
}

} // namespace

int main(int argc, char** argv) {
  cli c;
  caf::actor_system_config caf_config;
  try {
    auto cfg = er::app::load_config(std::vector<std::string>(argv + 1, argv + argc));
    if (cfg.help) {
      std::cout << usage;
      return 0;
    }
    c = parse_cli(cfg);
    ensure_open_files(c.options.connections);
    if (auto err = caf_config.parse(c.caf_args, "/dev/null"))
      throw usage_error(caf::actor_system_config::render(err));
  } catch (const std::exception& e) {
    std::cerr << "router-load: " << e.what() << std::endl;
    return 2;
  }
  auto& human = c.json ? std::cerr : std::cout;
  c.options.progress = c.quiet ? nullptr : &std::cerr;
  try {
    auto report = er::load::run_load(c.options, caf_config);
    human << report.summary() << std::flush;
    if (c.json)
      std::cout << report.to_json().dump(2) << std::endl;
    return er::load::exit_status(report);
  } catch (const std::exception& e) {
    std::cerr << "router-load: " << e.what() << std::endl;
    return 2;
  }
}
