#include "actors/router/manager/runs/agent_line.hpp"

#include "protocol/message_types.hpp"

namespace er::actors {

std::optional<agent_line> parse_agent_line(std::string_view line) {
  auto doc = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
  if (!doc.is_object())
    return std::nullopt;
  auto type = doc.find("type");
  if (type == doc.end() || !type->is_string())
    return std::nullopt;
  auto name = type->get<std::string>();
  if (!protocol::is_run_event(name) || name == "agent_stopped")
    return std::nullopt;
  auto data = doc.find("data");
  if (data != doc.end() && !data->is_object())
    return std::nullopt;
  agent_line event{std::move(name), data == doc.end() ? nlohmann::json::object() : std::move(*data)};
  // Every agent_error says why, even when the agent did not.
  if (event.type == "agent_error" && !event.data.value("message", nlohmann::json{}).is_string())
    event.data["message"] = "the agent reported an error";
  return event;
}

} // namespace er::actors
