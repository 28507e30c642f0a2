#include "actors/router.hpp"

#include <unordered_map>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "net/protocol_codes.hpp"

namespace er::actors {

namespace {

struct router_state {
  std::shared_ptr<const manager_settings> settings;
  std::unordered_map<std::string, std::vector<manager_actor>> managers_by_user;
  std::unordered_map<caf::actor_addr, std::string> user_by_manager;
  bool shutting_down = false;

  static inline const char* name = "router";
};

using router_pointer = router_actor::stateful_pointer<router_state>;

void attach(router_pointer self, connection_ptr connection, context::user_execution_context ctx) {
  auto& st = self->state;
  if (st.shutting_down) {
    connection->close(close_code::going_away, "server going away");
    return;
  }
  auto user_id = ctx.user_id();
  auto manager = spawn_connection_manager(self, std::move(connection), std::move(ctx),
                                          st.settings);
  st.user_by_manager.emplace(manager.address(), user_id);
  st.managers_by_user[user_id].push_back(std::move(manager));
}

void forget(router_pointer self, const caf::actor_addr& manager) {
  auto& st = self->state;
  auto it = st.user_by_manager.find(manager);
  if (it == st.user_by_manager.end())
    return;
  auto user = st.managers_by_user.find(it->second);
  auto& list = user->second;
  list.erase(std::remove_if(list.begin(), list.end(),
                            [&](const manager_actor& m) { return m.address() == manager; }),
             list.end());
  if (list.empty())
    st.managers_by_user.erase(user);
  st.user_by_manager.erase(it);
}

router_actor::behavior_type router_behavior(router_pointer self,
                                            std::shared_ptr<const manager_settings> settings) {
  self->state.settings = std::move(settings);
  // Managers are linked: the router outlives their crashes, and they die with the router.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    if (self->state.user_by_manager.count(msg.source) > 0)
      forget(self, msg.source);
    else
      self->quit(msg.reason);
  });
  return {
    [=](attach_atom, connection_ptr& connection, context::user_execution_context& ctx) {
      attach(self, std::move(connection), std::move(ctx));
    },
    [=](stats_atom) {
      auto& st = self->state;
      return router_stats{st.user_by_manager.size(), st.managers_by_user.size()};
    },
    [=](shutdown_atom, std::uint16_t code) {
      self->state.shutting_down = true;
      for (auto& [user, managers] : self->state.managers_by_user)
        for (auto& manager : managers)
          self->send(manager, shutdown_atom::value, code);
    },
  };
}

} // namespace

router_actor spawn_router(caf::actor_system& system,
                          std::shared_ptr<const manager_settings> settings) {
  return system.spawn(router_behavior, std::move(settings));
}

} // namespace er::actors
