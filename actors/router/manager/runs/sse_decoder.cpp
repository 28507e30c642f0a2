#include "actors/router/manager/runs/sse_decoder.hpp"

#include <nlohmann/json.hpp>

#include "protocol/bounded_json.hpp"

namespace er::actors {

bool sse_decoder::feed(std::string_view bytes, std::vector<agent_line>& out) {
  bool ok = true;
  bool within_limit = lines_.feed(bytes, [&](std::string line) {
    ok = ok && on_line(std::move(line), out);
  });
  if (!within_limit)
    error_ = "the agent sent a line longer than " + std::to_string(lines_.max_line()) + " bytes";
  return ok && within_limit;
}

bool sse_decoder::finish(std::vector<agent_line>& out) {
  bool ok = true;
  lines_.finish([&](std::string line) { ok = ok && on_line(std::move(line), out); });
  if (ok && (!type_.empty() || has_data_))
    return dispatch(out); // the last event had no blank line after it
  return ok;
}

bool sse_decoder::on_line(std::string line, std::vector<agent_line>& out) {
  if (!line.empty() && line.back() == '\r')
    line.pop_back();
  if (line.empty())
    return (type_.empty() && !has_data_) || dispatch(out);
  if (line.front() == ':')
    return true; // a comment (keep-alive)
  auto colon = line.find(':');
  std::string_view field{line.data(), colon == std::string::npos ? line.size() : colon};
  std::string_view value;
  if (colon != std::string::npos) {
    value = std::string_view{line}.substr(colon + 1);
    if (!value.empty() && value.front() == ' ')
      value.remove_prefix(1);
  }
  if (field == "event") {
    type_ = std::string{value};
  } else if (field == "data") {
    if (data_.size() + value.size() + 1 > lines_.max_line()) {
      error_ = "the agent sent an event whose data is longer than "
               + std::to_string(lines_.max_line()) + " bytes";
      return false;
    }
    if (has_data_)
      data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  } // id, retry and unknown fields are ignored, as the format says
  return true;
}

bool sse_decoder::dispatch(std::vector<agent_line>& out) {
  auto data = has_data_ ? protocol::parse_json(data_).doc : nlohmann::json::object();
  auto event = data.is_discarded() ? std::nullopt : agent_event_of(type_, std::move(data));
  type_.clear();
  data_.clear();
  has_data_ = false;
  if (!event) {
    error_ = "the agent sent an event that is not an agent event with JSON object data";
    return false;
  }
  out.push_back(std::move(*event));
  return true;
}

} // namespace er::actors
