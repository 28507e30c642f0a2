#pragma once
// The HTTP API on the WebSocket port (DESIGN §7): backend publish and disconnect (Bearer
// router.api-key), /healthz and /metrics. Answers are produced by short-lived actors that
// ask the router, so no io thread ever blocks on an actor.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <caf/actor_system.hpp>

#include "actors/metrics.hpp"
#include "actors/router/router.hpp"
#include "context/jwt_auth.hpp"
#include "net/listener.hpp"

namespace er::app {

struct http_api {
  caf::actor_system& system;
  actors::router_actor router;
  std::shared_ptr<actors::router_metrics> metrics;
  std::string api_key;
  std::string server_id;
  /// Set on a development setup only (dev_tokens_allowed): POST /api/v1/dev/token mints demo
  /// tokens with these settings, valid for dev_token_ttl.
  std::optional<context::jwt_settings> dev_tokens;
  std::chrono::seconds dev_token_ttl{86400};
  /// router.console-dir: the clients/ folder to serve the console from (empty: compiled in).
  std::string console_dir;
  std::shared_ptr<const actors::replay_budget> replay_budget; ///< reported by healthz, metrics
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  void handle(const net::http_request_view& request,
              std::function<void(net::http_reply)> respond) const;
};

} // namespace er::app
