#include "app/config.hpp"

#include <array>
#include <cstring>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <variant>

#include <boost/asio/ip/address.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/config_option_set.hpp>
#include <caf/config_value.hpp>
#include <caf/settings.hpp>

#include "actors/router/manager/runs/http_agent_client.hpp"
#include <unistd.h>

namespace er::app {

namespace {

using int_member = std::int64_t router_settings::*;
using string_member = std::string router_settings::*;
using bool_member = bool router_settings::*;

struct option_spec {
  const char* key; ///< "section.name"
  std::variant<int_member, string_member, bool_member> member;
  std::int64_t min;
  std::int64_t max;
  const char* help;
};

constexpr std::int64_t big = std::int64_t{1} << 40;

// One table: what the file and the command line may set, and within which bounds.
const option_spec options[] = {
  {"router.host", &router_settings::host, 0, 0, "listen address"},
  {"router.port", &router_settings::port, 0, 65535, "listen port (0: any free port)"},
  {"router.io-threads", &router_settings::io_threads, 0, 64,
   "threads running the sockets and the actors (0: one per core)"},
  {"router.reuse-port", &router_settings::reuse_port, 0, 0,
   "true: SO_REUSEPORT, several router processes share router.port"},
  {"router.server-id", &router_settings::server_id, 0, 0, "node id (default: host name)"},
  {"router.jwt-secret", &router_settings::jwt_secret, 0, 0, "HS256 secret"},
  {"router.jwt-issuer", &router_settings::jwt_issuer, 0, 0, "required iss, when set"},
  {"router.jwt-audience", &router_settings::jwt_audience, 0, 0, "required aud, when set"},
  {"router.jwt-leeway-s", &router_settings::jwt_leeway_s, 0, 300,
   "clock skew allowed on exp and nbf; a connection closes 4501 this long after exp"},
  {"router.api-key", &router_settings::api_key, 0, 0, "Bearer key of the HTTP API"},
  {"router.store-path", &router_settings::store_path, 0, 0, "SQLite file (or :memory:)"},
  {"router.max-connections", &router_settings::max_connections, 1, 10000000,
   "total connections, past it 503"},
  {"router.max-http-connections", &router_settings::max_http_connections, 1, 10000000,
   "plain HTTP connections and upgrades in progress; at it, accepting waits"},
  {"router.max-connections-per-user", &router_settings::max_connections_per_user, 1, 100000,
   "per user, past it close 4503"},
  {"router.max-message-bytes", &router_settings::max_message_bytes, 64, 64 << 20,
   "inbound frame limit, past it close 1009"},
  {"router.outbound-queue-bytes", &router_settings::outbound_queue_bytes, 1024, big,
   "queued outbound bytes per connection, past it close 4008"},
  {"router.messages-per-second", &router_settings::messages_per_second, 1, 1000000,
   "token bucket rate per connection"},
  {"router.messages-burst", &router_settings::messages_burst, 1, 1000000,
   "token bucket size per connection"},
  {"router.heartbeat-interval-ms", &router_settings::heartbeat_interval_ms, 100, big,
   "server ping interval"},
  {"router.heartbeat-timeout-ms", &router_settings::heartbeat_timeout_ms, 100, big,
   "close 4009 without a pong within"},
  {"router.handshake-timeout-ms", &router_settings::handshake_timeout_ms, 100, big,
   "the upgrade (and a close handshake) must finish within"},
  {"router.resume-window-ms", &router_settings::resume_window_ms, 0, big,
   "detached session lifetime"},
  {"router.resume-buffer-events", &router_settings::resume_buffer_events, 0, 1000000,
   "events buffered for a detached session"},
  {"router.resume-buffer-bytes", &router_settings::resume_buffer_bytes, 1024, big,
   "bytes of those events buffered per connection"},
  {"router.max-detached-per-user", &router_settings::max_detached_per_user, 0, 100000,
   "detached sessions per user, past it the oldest ends"},
  {"router.replay-budget-bytes", &router_settings::replay_budget_bytes, 0, big,
   "all replay buffers together (0: a quarter of the machine's memory)"},
  {"router.max-threads-per-user", &router_settings::max_threads_per_user, 1, 100000000,
   "stored threads per user, past it quota_exceeded"},
  {"router.max-user-store-bytes", &router_settings::max_user_store_bytes, 1024, big,
   "stored titles and messages per user, past it quota_exceeded"},
  {"router.max-runs-per-connection", &router_settings::max_runs_per_connection, 1, 10000,
   "concurrent agent runs per connection"},
  {"router.drain-timeout-ms", &router_settings::drain_timeout_ms, 0, big,
   "on SIGTERM: how long in-flight work may finish"},
  {"router.demo-token-ttl-s", &router_settings::demo_token_ttl_s, 1, big,
   "lifetime of minted demo tokens"},
  {"router.heap-trim-interval-ms", &router_settings::heap_trim_interval_ms, 0, big,
   "how often idle heap memory is considered for return to the system (0: never)"},
  {"router.heap-trim-threshold-bytes", &router_settings::heap_trim_threshold_bytes, 0, big,
   "idle memory (RSS beyond the heap in use) worth a trim, if it also exceeds the heap in use"},
  {"router.console-dir", &router_settings::console_dir, 0, 0,
   "serve the browser console from this clients/ folder instead of the binary (development)"},
  {"cluster.redis", &router_settings::cluster_redis, 0, 0,
   "host:port of Redis, or several separated by commas (shards); empty: a single node"},
  {"cluster.redis-password", &router_settings::cluster_redis_password, 0, 0, "Redis AUTH password"},
  {"cluster.prefix", &router_settings::cluster_prefix, 0, 0, "prefix of the cluster's Redis keys"},
  {"cluster.node-ttl-ms", &router_settings::cluster_node_ttl_ms, 300, 600000,
   "a node that has not refreshed its liveness within this is dead"},
  {"cluster.redis-timeout-ms", &router_settings::cluster_redis_timeout_ms, 50, 600000,
   "a Redis connection that is not up, or does not answer, within this is ended and made anew"},
  {"cluster.history-size", &router_settings::cluster_history_size, 1, 10000000,
   "publishes kept per user for gap recovery"},
  {"cluster.history-ttl-ms", &router_settings::cluster_history_ttl_ms, 1000, 604800000,
   "a user's history is dropped this long after the user's last publish"},
  {"agents.demo-steps", &router_settings::demo_steps, 0, 1000, "demo agent thinking steps"},
  {"agents.demo-step-delay-ms", &router_settings::demo_step_delay_ms, 0, 600000,
   "demo agent pause between events"},
  {"agents.default", &router_settings::default_agent, 0, 0, "agent of user_message"},
  {"agents.run-timeout-ms", &router_settings::run_timeout_ms, 1, big,
   "built-in agents' run timeout"},
  {"agents.test-agents", &router_settings::test_agents, 0, 1,
   "1: fault-injection agents test-throw, test-hang (tests only)"},
  // CAF's own keys are checked for their type, then left to CAF.
  {"scheduler.max-throughput", static_cast<int_member>(nullptr), 1, big,
   "messages an actor handles before yielding"},
};

// CAF keys that would be silently ignored: the router brings its own scheduler.
void refuse_replaced_key(std::string_view key, const std::string& origin) {
  if (key == "scheduler.max-threads" || key == "scheduler.policy")
    throw config_error(origin + ": " + std::string{key}
                       + " does not apply: the router runs its actors on its io threads;"
                         " set router.io-threads (router-load: --io-threads) instead");
}

const option_spec* find_option(std::string_view key) {
  for (auto& opt : options)
    if (key == opt.key)
      return &opt;
  return nullptr;
}

bool section_is_ours(std::string_view key) {
  return key.rfind("router.", 0) == 0 || key.rfind("agents.", 0) == 0
         || key.rfind("cluster.", 0) == 0;
}

void assign_int(const option_spec& opt, std::int64_t value, router_settings& out,
                const std::string& origin) {
  if (value < opt.min || value > opt.max)
    throw config_error(origin + ": " + opt.key + " = " + std::to_string(value)
                       + " is out of range [" + std::to_string(opt.min) + ", "
                       + std::to_string(opt.max) + "]");
  if (auto member = std::get<int_member>(opt.member))
    out.*member = value;
}

void assign_from_text(const option_spec& opt, std::string_view text, router_settings& out,
                      const std::string& origin) {
  if (auto member = std::get_if<bool_member>(&opt.member)) {
    if (text != "true" && text != "false")
      throw config_error(origin + ": " + opt.key + " expects true or false, got '"
                         + std::string{text} + "'");
    out.**member = text == "true";
    return;
  }
  if (auto member = std::get_if<string_member>(&opt.member)) {
    if (text.size() >= 2 && text.front() == '"' && text.back() == '"')
      text = text.substr(1, text.size() - 2);
    out.**member = std::string{text};
    return;
  }
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size())
    throw config_error(origin + ": " + opt.key + " expects an integer, got '"
                       + std::string{text} + "'");
  assign_int(opt, value, out, origin);
}

void assign_from_value(const option_spec& opt, const caf::config_value& value,
                       router_settings& out, const std::string& origin) {
  if (auto member = std::get_if<bool_member>(&opt.member)) {
    auto flag = caf::get_if<bool>(&value);
    if (!flag)
      throw config_error(origin + ": " + opt.key + " expects true or false, got "
                         + caf::to_string(value));
    out.**member = *flag;
    return;
  }
  if (auto member = std::get_if<string_member>(&opt.member)) {
    auto str = caf::get_if<std::string>(&value);
    if (!str)
      throw config_error(origin + ": " + opt.key + " expects a quoted string, got "
                         + caf::to_string(value));
    out.**member = *str;
    return;
  }
  auto integer = caf::get_if<caf::config_value::integer>(&value);
  if (!integer)
    throw config_error(origin + ": " + opt.key + " expects an integer, got "
                       + caf::to_string(value));
  assign_int(opt, *integer, out, origin);
}

std::string resolve_against(const std::string& file, const std::string& path) {
  if (path.empty() || path.front() == '/' || path.find('/') == std::string::npos)
    return path; // absolute, or a bare name looked up in PATH
  auto slash = file.rfind('/');
  return slash == std::string::npos ? path : file.substr(0, slash + 1) + path;
}

/// A positive integer of an agent's section, within [min, max].
std::int64_t agent_integer(const std::string& where, const std::string& key,
                           const caf::config_value& value, std::int64_t min, std::int64_t max) {
  auto integer = caf::get_if<caf::config_value::integer>(&value);
  if (!integer || *integer < min || *integer > max)
    throw config_error(where + ": " + key + " = " + caf::to_string(value) + " is not an integer in ["
                       + std::to_string(min) + ", " + std::to_string(max) + "]");
  return *integer;
}

command_agent_settings command_agent(const std::string& file, const std::string& name,
                                     const caf::config_value::dictionary& entries) {
  auto where = file + ": [agents." + name + "]";
  command_agent_settings agent;
  agent.name = name;
  for (auto& [key, value] : entries) {
    if (key == "executable" && caf::holds_alternative<std::string>(value)) {
      agent.executable = resolve_against(file, caf::get<std::string>(value));
    } else if (key == "timeout-ms") { // bounded like every timeout: a deadline must not overflow
      agent.timeout_ms = agent_integer(where, key, value, 1, big);
    } else if (key == "args" && caf::holds_alternative<caf::config_value::list>(value)) {
      for (auto& arg : caf::get<caf::config_value::list>(value)) {
        if (!caf::holds_alternative<std::string>(arg))
          throw config_error(where + ": args must be a list of quoted strings");
        agent.args.push_back(caf::get<std::string>(arg));
      }
    } else {
      throw config_error(where + ": unexpected " + key + " = " + caf::to_string(value)
                         + " (expected executable=\"...\", args=[\"...\"], timeout-ms=N)");
    }
  }
  if (agent.executable.empty())
    throw config_error(where + ": executable (a command agent) or url (an HTTP agent) is required");
  return agent;
}

std::string agent_string(const std::string& where, const std::string& key,
                         const caf::config_value& value) {
  auto text = caf::get_if<std::string>(&value);
  if (!text)
    throw config_error(where + ": " + key + " expects a quoted string, got " + caf::to_string(value));
  return *text;
}

http_agent_settings http_agent(const std::string& file, const std::string& name,
                               const caf::config_value::dictionary& entries) {
  auto where = file + ": [agents." + name + "]";
  http_agent_settings agent;
  agent.name = name;
  for (auto& [key, value] : entries) {
    if (key == "url")
      agent.url = agent_string(where, key, value);
    else if (key == "bearer")
      agent.bearer = agent_string(where, key, value);
    else if (key == "ca-file")
      agent.ca_file = resolve_against(file, agent_string(where, key, value));
    else if (key == "timeout-ms")
      agent.timeout_ms = agent_integer(where, key, value, 1, big);
    else if (key == "connect-timeout-ms")
      agent.connect_timeout_ms = agent_integer(where, key, value, 1, big);
    else if (key == "max-in-flight")
      agent.max_in_flight = agent_integer(where, key, value, 1, 100000);
    else if (key == "queue-timeout-ms")
      agent.queue_timeout_ms = agent_integer(where, key, value, 0, big);
    else
      throw config_error(where + ": unexpected " + key + " (an HTTP agent takes url, bearer, "
                         "timeout-ms, connect-timeout-ms, max-in-flight, queue-timeout-ms, ca-file)");
  }
  std::string why;
  if (!actors::parse_agent_url(agent.url, why))
    throw config_error(where + ": url = \"" + agent.url + "\" " + why);
  return agent;
}

/// An `[agents.NAME]` section: an HTTP agent when it has a url, else a command agent.
void add_agent(const std::string& file, const std::string& name,
               const caf::config_value::dictionary& entries, router_settings& out) {
  if (name == "echo" || name == "demo" || name.rfind("test-", 0) == 0)
    throw config_error(file + ": [agents." + name + "]: the name is taken by a built-in agent");
  if (entries.count("url") == 0 && entries.count("executable") == 0)
    throw config_error(file + ": [agents." + name
                       + "]: executable (a command agent) or url (an HTTP agent) is required");
  if (entries.count("url") > 0)
    out.http_agents.push_back(http_agent(file, name, entries));
  else
    out.command_agents.push_back(command_agent(file, name, entries));
}

/// CAF's own options (scheduler.*, logger.*, middleman.*, ...). CAF checks them on the command
/// line, but keeps a file's unknown keys and sections without a word: `[rotuer]` or
/// `max-treads` would be ignored, and the router would run on defaults nobody chose.
const caf::config_option_set& caf_options() {
  struct exposed : caf::actor_system_config {
    const caf::config_option_set& options() const {
      return custom_options_;
    }
  };
  static const exposed config;
  return config.options();
}

bool is_caf_section(const std::string& section) {
  for (auto& opt : caf_options())
    if (opt.category() == caf::string_view{section})
      return true;
  return false;
}

void apply_file(const std::string& path, router_settings& out) {
  auto parsed = caf::actor_system_config::parse_config_file(path.c_str());
  if (!parsed)
    throw config_error(path + ": cannot parse: "
                       + caf::actor_system_config::render(parsed.error())
                       + " (INI syntax: [section], key=value, ';' comments, quoted strings)");
  for (auto& [section, entries] : *parsed) {
    auto dict = caf::get_if<caf::config_value::dictionary>(&entries);
    if (!dict)
      continue;
    bool ours = section_is_ours(section + ".");
    if (!ours && !is_caf_section(section))
      throw config_error(path + ": unknown section [" + section
                         + "] (the router reads [router], [cluster], [agents.NAME] and CAF's "
                           "own sections such as [scheduler] and [logger]; see README, "
                           "Configuration)");
    for (auto& [name, value] : *dict) {
      auto key = section + "." + name;
      refuse_replaced_key(key, path);
      if (auto agent = caf::get_if<caf::config_value::dictionary>(&value);
          agent && section == "agents")
        add_agent(path, name, *agent, out);
      else if (auto opt = find_option(key))
        assign_from_value(*opt, value, out, path);
      else if (ours)
        throw config_error(path + ": unknown option " + key + " (see README, Configuration)");
      else if (!caf_options().qualified_name_lookup(section, name))
        throw config_error(path + ": unknown option " + key + " (not one of CAF's options)");
    }
  }
}

std::string host_name() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0')
    return "event-router";
  return buf.data();
}

/// router.host is where the listener binds: an IP address (a name would need resolving, and
/// "localhost" may mean either family).
void check_host(const router_settings& s) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(s.host, ec);
  if (ec)
    throw config_error("router.host " + s.host
                       + " is not an IP address (127.0.0.1 for this machine only, 0.0.0.0 or :: "
                         "for every interface)");
}

// The shipped development secrets are public: fine on loopback, never on a reachable port.
void check_secrets(const router_settings& s) {
  if (s.jwt_secret.empty())
    throw config_error("router.jwt-secret must not be empty");
  if (s.api_key.empty())
    throw config_error("router.api-key must not be empty");
  if (is_loopback_host(s.host))
    return;
  if (s.jwt_secret == dev_jwt_secret)
    throw config_error("router.host " + s.host
                       + " is not a loopback address: set router.jwt-secret to a secret of your own");
  if (s.api_key == dev_api_key)
    throw config_error("router.host " + s.host
                       + " is not a loopback address: set router.api-key to a key of your own");
}

/// The cgroup (v2) memory limit of this process, when one is set.
std::optional<std::size_t> cgroup_memory_limit() {
  std::ifstream in{"/sys/fs/cgroup/memory.max"};
  std::string value;
  if (!(in >> value) || value == "max")
    return std::nullopt;
  try {
    return static_cast<std::size_t>(std::stoull(value));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

} // namespace

std::vector<actors::redis_address> redis_shards(const router_settings& s) {
  std::vector<actors::redis_address> shards;
  std::string_view list = s.cluster_redis;
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ')
      item.remove_suffix(1);
    auto colon = item.rfind(':');
    if (item.empty() || colon == std::string_view::npos || colon == 0)
      throw std::invalid_argument("each address must be host:port");
    int port = 0;
    auto digits = item.substr(colon + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc{} || end != digits.data() + digits.size() || port < 1 || port > 65535)
      throw std::invalid_argument("\"" + std::string{item} + "\" has no valid port");
    shards.push_back({std::string{item.substr(0, colon)}, port});
  }
  return shards;
}

std::size_t effective_replay_budget(const router_settings& s) {
  if (s.replay_budget_bytes > 0)
    return static_cast<std::size_t>(s.replay_budget_bytes);
  auto memory = static_cast<std::size_t>(sysconf(_SC_PHYS_PAGES))
                * static_cast<std::size_t>(sysconf(_SC_PAGE_SIZE));
  if (auto limit = cgroup_memory_limit())
    memory = std::min(memory, *limit);
  return memory / 4;
}

loaded_config load_config(const std::vector<std::string>& args) {
  loaded_config result;
  std::string file = default_config_file;
  bool file_required = false;
  std::vector<std::pair<std::string, std::string>> overrides;
  for (auto& arg : args) {
    auto eq = arg.find('=');
    auto name = arg.substr(0, eq);
    auto value = eq == std::string::npos ? std::string{} : arg.substr(eq + 1);
    if (name.rfind("--", 0) == 0)
      refuse_replaced_key(name.substr(2), "command line");
    if (name == "--help" || name == "-h") {
      result.help = true;
    } else if (name == "--config-file") {
      file = value;
      file_required = true;
    } else if (name == "--mint-token") {
      if (value.empty())
        throw config_error("--mint-token needs a user id: --mint-token=alice");
      result.mint_token_for = value;
    } else if (name.rfind("--", 0) == 0 && find_option(name.substr(2))) {
      if (eq == std::string::npos)
        throw config_error(name + " needs a value: " + name + "=VALUE");
      overrides.emplace_back(name.substr(2), value);
      if (!section_is_ours(name.substr(2)))
        result.caf_args.push_back(arg);
    } else if (name.rfind("--", 0) == 0 && section_is_ours(name.substr(2))) {
      throw config_error("unknown option " + name + " (see --help)");
    } else {
      result.caf_args.push_back(arg);
    }
  }
  // The default file may be absent (the embedded defaults apply), but one that is there and
  // cannot be read (a dangling link, no permission) is an error like an explicit one.
  std::error_code ec;
  bool present = std::filesystem::symlink_status(file, ec).type()
                 != std::filesystem::file_type::not_found;
  if (std::ifstream probe{file}; probe.good()) {
    apply_file(file, result.settings);
    result.config_file = file;
  } else if (file_required || (present && !ec)) {
    throw config_error("cannot read config file " + file
                       + (file_required ? "" : " (the default one: remove it or fix it)"));
  }
  for (auto& [key, value] : overrides)
    assign_from_text(*find_option(key), value, result.settings, "command line");
  if (result.settings.server_id.empty())
    result.settings.server_id = host_name();
  check_host(result.settings);
  check_secrets(result.settings);
  try {
    redis_shards(result.settings);
  } catch (const std::invalid_argument& e) {
    throw config_error(std::string{"cluster.redis = \""} + result.settings.cluster_redis + "\": "
                       + e.what());
  }
  return result;
}

std::string options_help() {
  std::ostringstream out;
  out << "Options (caf-application.conf keys; each also as --key=value):\n";
  for (auto& opt : options)
    out << "  --" << opt.key << std::string(34 - std::min<size_t>(33, strlen(opt.key)), ' ')
        << opt.help << "\n";
  out << "  --config-file=PATH                  read PATH instead of ./caf-application.conf\n"
      << "  --mint-token=USER                   print a token for USER and exit\n"
      << "Other --scheduler.* / --logger.* options go to CAF (not scheduler.max-threads or\n"
      << "scheduler.policy: the actors run on the io threads).\n";
  return out.str();
}

std::string describe(const router_settings& s) {
  std::ostringstream out;
  out << "listen " << s.host << ":" << s.port << ", io-threads " << effective_io_threads(s)
      << ", server-id " << s.server_id << ", max-message-bytes " << s.max_message_bytes
      << ", outbound-queue-bytes " << s.outbound_queue_bytes;
  return out.str();
}

} // namespace er::app
