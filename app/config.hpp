#pragma once
// Reads caf-application.conf (INI, as CAF 0.17 parses it) and `--section.key=value`
// overrides into router_settings, and refuses what CAF alone would silently ignore: unknown
// keys in [router]/[agents], values of the wrong type, values out of range.

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "actors/router/cluster/redis_link.hpp"
#include "app/settings.hpp"

namespace er::app {

class config_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct loaded_config {
  router_settings settings;
  std::string config_file;           ///< the file that was read; empty when none
  std::vector<std::string> caf_args; ///< arguments left for CAF itself (e.g. --scheduler.*)
  std::optional<std::string> mint_token_for;
  bool help = false;
};

inline constexpr const char* default_config_file = "caf-application.conf";

/// Throws config_error with a message naming the key, the value's source and the expectation.
loaded_config load_config(const std::vector<std::string>& args);

/// router.replay-budget-bytes, with 0 resolved to a quarter of the memory this process may
/// use: the machine's, or its cgroup's limit when that is lower.
std::size_t effective_replay_budget(const router_settings& settings);

/// cluster.redis as addresses (empty: a single node); throws std::invalid_argument.
std::vector<actors::redis_address> redis_shards(const router_settings& settings);

/// The options table for --help.
std::string options_help();

/// Human-readable effective settings (secrets masked), for the start-up banner.
std::string describe(const router_settings& settings);

} // namespace er::app
