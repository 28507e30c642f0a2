#pragma once
// One router process in a box: the CAF actor system, the asio io threads, the Beast
// listener and the router actor, wired together and torn down in the right order.
// Used by the event-router binary and, in-process, by the tests.

#include <chrono>
#include <memory>

#include "actors/router/router.hpp"
#include "app/settings.hpp"

#include <caf/actor_system_config.hpp>

namespace er::app {

class router_server {
public:
  /// Binds and starts serving; throws a std::runtime_error when the address is unavailable.
  /// `caf_config` carries CAF's own options (scheduler...); a default one is used when null.
  explicit router_server(const router_settings& settings,
                         std::unique_ptr<caf::actor_system_config> caf_config = nullptr);
  ~router_server();

  router_server(const router_server&) = delete;
  router_server& operator=(const router_server&) = delete;

  unsigned short port() const;
  const router_settings& settings() const;

  /// The router's own counts (blocking request).
  actors::router_stats stats();
  /// Actors alive in the system (the router included).
  std::size_t running_actors();
  /// Timeouts and delayed messages waiting on the actors' clock.
  std::size_t pending_timers();

  /// Stops accepting, closes every connection with 1001, waits up to `drain` for them to
  /// finish, then stops the io threads. Idempotent; the destructor calls it.
  void shutdown(std::chrono::milliseconds drain);

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace er::app
