#pragma once
// The line protocol that command agents print and HTTP agents stream as NDJSON (README,
// "Agents"): one JSON object per line, {"type": T, "data": {...}}, T an event a run may
// report (not agent_started, which the manager sends, nor agent_stopped, which only a stop
// causes). HTTP agents streaming SSE name T in `event:` and send the data in `data:`.

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace er::actors {

struct agent_line {
  std::string type;
  nlohmann::json data; ///< an object; empty when the line had none
};

/// The event on `line`; nullopt when the line is not such an event.
std::optional<agent_line> parse_agent_line(std::string_view line);

/// The event of this type and data (null: none); nullopt when it is not one a run may report.
std::optional<agent_line> agent_event_of(std::string type, nlohmann::json data);

} // namespace er::actors
