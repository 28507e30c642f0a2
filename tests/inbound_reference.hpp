#pragma once
// The test oracle for protocol::parse_inbound: the same rules judged on nlohmann's full
// document, the obvious way (parse everything, then look the members up). parse_inbound
// reads the envelope in one streaming pass instead; the two must agree on every input
// (tests/inbound_parse_test.cpp, tests/fuzz/fuzz_inbound.cpp).

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/bounded_json.hpp"
#include "protocol/envelope.hpp"
#include "protocol/error_codes.hpp"

namespace er::testing {

/// A parser callback that keeps every value and notes in `deepest` how many levels of objects
/// and arrays the text nests, values that a repeated key replaces included (the limit is on
/// the text). nlohmann gives each object and array the number of values enclosing it.
inline nlohmann::json::parser_callback_t depth_noter(std::size_t& deepest) {
  using json = nlohmann::json;
  return [&deepest](int enclosing, json::parse_event_t event, json&) {
    if (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start)
      deepest = std::max(deepest, static_cast<std::size_t>(enclosing) + 1);
    return true;
  };
}

inline std::variant<protocol::inbound_message, protocol::protocol_error>
reference_parse_inbound(std::string_view text) {
  using json = nlohmann::json;
  auto invalid = [](const char* message, std::optional<std::string> reply_to) {
    return protocol::protocol_error{error_code::invalid_message, message, std::move(reply_to)};
  };
  std::size_t depth = 0;
  json doc = json::parse(text.begin(), text.end(), depth_noter(depth), false);
  if (doc.is_discarded())
    return protocol::protocol_error{error_code::invalid_json, "the message is not valid JSON", {}};
  if (!doc.is_object())
    return invalid("the message must be a JSON object", {});
  protocol::inbound_message msg;
  auto given = [&](const char* key) {
    auto it = doc.find(key);
    return it != doc.end() && !it->is_null() ? &*it : nullptr;
  };
  if (auto* id = given("id")) {
    if (!id->is_string())
      return invalid("\"id\" must be a string", {});
    msg.id = id->get<std::string>();
  }
  if (depth > protocol::max_json_depth)
    return protocol::protocol_error{
      error_code::invalid_message,
      "the message nests deeper than " + std::to_string(protocol::max_json_depth) + " levels",
      msg.id};
  auto* type = given("type");
  if (!type)
    return invalid("\"type\" is required", msg.id);
  if (!type->is_string())
    return invalid("\"type\" must be a string", msg.id);
  msg.type = type->get<std::string>();
  if (auto* thread = given("thread_id")) {
    if (!thread->is_string())
      return invalid("\"thread_id\" must be a string", msg.id);
    msg.thread_id = thread->get<std::string>();
  }
  auto* payload = given("payload");
  if (payload && !payload->is_object())
    return invalid("\"payload\" must be an object", msg.id);
  msg.payload = payload ? std::move(*payload) : json::object();
  return msg;
}

/// Whether two documents are equal, compared with an explicit stack: nlohmann's operator==
/// recurses once per level, and a payload may be nested thousands deep.
inline bool same_document(const nlohmann::json& a, const nlohmann::json& b) {
  std::vector<std::pair<const nlohmann::json*, const nlohmann::json*>> todo{{&a, &b}};
  while (!todo.empty()) {
    auto [x, y] = todo.back();
    todo.pop_back();
    if (x->type() != y->type() || x->size() != y->size())
      return false;
    if (x->is_object()) {
      for (auto it = x->begin(); it != x->end(); ++it) {
        auto other = y->find(it.key());
        if (other == y->end())
          return false;
        todo.emplace_back(&*it, &*other);
      }
    } else if (x->is_array()) {
      for (std::size_t i = 0; i < x->size(); ++i)
        todo.emplace_back(&(*x)[i], &(*y)[i]);
    } else if (*x != *y) {
      return false;
    }
  }
  return true;
}

/// Whether two parse results are the same message or the same error.
inline bool same_parse(const std::variant<protocol::inbound_message, protocol::protocol_error>& a,
                       const std::variant<protocol::inbound_message, protocol::protocol_error>& b) {
  if (a.index() != b.index())
    return false;
  if (auto* x = std::get_if<protocol::inbound_message>(&a)) {
    auto& y = std::get<protocol::inbound_message>(b);
    return x->type == y.type && x->id == y.id && x->thread_id == y.thread_id
           && same_document(x->payload, y.payload);
  }
  auto& x = std::get<protocol::protocol_error>(a);
  auto& y = std::get<protocol::protocol_error>(b);
  return x.code == y.code && x.message == y.message && x.reply_to == y.reply_to;
}

} // namespace er::testing
