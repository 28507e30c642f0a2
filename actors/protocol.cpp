#include "actors/protocol.hpp"

#include <ctime>

#include "net/protocol_codes.hpp"

namespace er::actors {

namespace {

using json = nlohmann::json;

protocol_error invalid(std::string message, std::optional<std::string> reply_to) {
  return {error_code::invalid_message, std::move(message), std::move(reply_to)};
}

} // namespace

std::variant<inbound_message, protocol_error> parse_inbound(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded())
    return protocol_error{error_code::invalid_json, "the message is not valid JSON", {}};
  if (!doc.is_object())
    return invalid("the message must be a JSON object", {});
  inbound_message msg;
  if (auto id = doc.find("id"); id != doc.end() && !id->is_null()) {
    if (!id->is_string())
      return invalid("\"id\" must be a string", {});
    msg.id = id->get<std::string>();
  }
  auto type = doc.find("type");
  if (type == doc.end() || type->is_null())
    return invalid("\"type\" is required", msg.id);
  if (!type->is_string())
    return invalid("\"type\" must be a string", msg.id);
  msg.type = type->get<std::string>();
  if (auto thread = doc.find("thread_id"); thread != doc.end() && !thread->is_null()) {
    if (!thread->is_string())
      return invalid("\"thread_id\" must be a string", msg.id);
    msg.thread_id = thread->get<std::string>();
  }
  if (auto payload = doc.find("payload"); payload != doc.end() && !payload->is_null()) {
    if (!payload->is_object())
      return invalid("\"payload\" must be an object", msg.id);
    msg.payload = std::move(*payload);
  } else {
    msg.payload = json::object();
  }
  return msg;
}

namespace {

void assign_string(json& slot, const std::string& value) {
  if (slot.is_string())
    slot.get_ref<std::string&>() = value; // reuses the string's buffer
  else
    slot = value;
}

void assign_optional(json& slot, const std::optional<std::string>& value) {
  if (value)
    assign_string(slot, *value);
  else
    slot = nullptr;
}

std::int64_t millis_of(std::chrono::system_clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
}

} // namespace

event_renderer::event_renderer(std::string user_id) {
  envelope_ = json::object();
  auto slot = [this](const char* key) { return &(envelope_[key] = nullptr); };
  envelope_["user_id"] = std::move(user_id);
  type_ = slot("type");
  event_id_ = slot("event_id");
  thread_id_ = slot("thread_id");
  run_id_ = slot("run_id");
  reply_to_ = slot("reply_to");
  timestamp_ = slot("timestamp");
  data_ = slot("data");
}

void event_renderer::stamp(const outbound_event& event, std::uint64_t event_id,
                           std::chrono::system_clock::time_point at) {
  assign_string(*type_, event.type);
  *event_id_ = event_id;
  assign_optional(*thread_id_, event.thread_id);
  assign_optional(*run_id_, event.run_id);
  assign_optional(*reply_to_, event.reply_to);
  if (auto ms = millis_of(at); ms != stamped_ms_) {
    assign_string(*timestamp_, rfc3339(at));
    stamped_ms_ = ms;
  }
}

std::string event_renderer::render(const outbound_event& event, std::uint64_t event_id,
                                   std::chrono::system_clock::time_point at) {
  stamp(event, event_id, at);
  *data_ = event.data;
  return envelope_.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string event_renderer::render(outbound_event&& event, std::uint64_t event_id,
                                   std::chrono::system_clock::time_point at) {
  stamp(event, event_id, at);
  *data_ = std::move(event.data);
  return envelope_.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string render_event(const outbound_event& event, std::uint64_t event_id,
                         const std::string& user_id,
                         std::chrono::system_clock::time_point at) {
  return event_renderer{user_id}.render(event, event_id, at);
}

outbound_event make_error(const protocol_error& error) {
  outbound_event ev;
  ev.type = "error";
  ev.reply_to = error.reply_to;
  ev.data = json{{"code", error.code}, {"message", error.message}};
  return ev;
}

std::string rfc3339(std::chrono::system_clock::time_point at) {
  auto ms = millis_of(at);
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

} // namespace er::actors
