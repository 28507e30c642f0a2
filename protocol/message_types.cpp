#include "protocol/message_types.hpp"

#include <algorithm>

namespace er::protocol {

namespace {

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& types, std::string_view type) {
  return std::find(types.begin(), types.end(), type) != types.end();
}

} // namespace

bool is_run_event(std::string_view type) {
  return type != "agent_started" && contains(agent_event_types, type);
}

bool is_final_agent_event(std::string_view type) {
  return type == "agent_completed" || type == "agent_error" || type == "agent_stopped";
}

bool is_reserved_type(std::string_view type) {
  return contains(agent_event_types, type) || contains(reply_types, type)
         || contains(client_message_types, type);
}

} // namespace er::protocol
