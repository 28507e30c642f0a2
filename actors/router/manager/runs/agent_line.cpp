#include "actors/router/manager/runs/agent_line.hpp"

#include "protocol/bounded_json.hpp"
#include "protocol/message_types.hpp"

namespace er::actors {

std::optional<agent_line> agent_event_of(std::string type, nlohmann::json data) {
  if (!protocol::is_run_event(type) || type == "agent_stopped")
    return std::nullopt;
  if (data.is_null())
    data = nlohmann::json::object();
  if (!data.is_object())
    return std::nullopt;
  // Every agent_error says why, even when the agent did not.
  if (type == "agent_error" && !data.value("message", nlohmann::json{}).is_string())
    data["message"] = "the agent reported an error";
  return agent_line{std::move(type), std::move(data)};
}

std::optional<agent_line> parse_agent_line(std::string_view line) {
  auto doc = protocol::parse_json(line).doc; // refused past max_json_depth
  if (!doc.is_object())
    return std::nullopt;
  auto type = doc.find("type");
  if (type == doc.end() || !type->is_string())
    return std::nullopt;
  auto data = doc.find("data");
  if (data != doc.end() && !data->is_object())
    return std::nullopt;
  return agent_event_of(type->get<std::string>(),
                        data == doc.end() ? nlohmann::json::object() : std::move(*data));
}

} // namespace er::actors
