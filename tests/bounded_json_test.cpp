// JSON from outside the router is parsed with a nesting limit (protocol/bounded_json.hpp):
// at the limit a text is read whole, one level past it is refused, and every reader of
// outside JSON (the agent line protocol, server-sent events, the publish API: api_test)
// refuses it like any text that is not what it expects.

#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "actors/router/manager/runs/agent_line.hpp"
#include "actors/router/manager/runs/sse_decoder.hpp"
#include "protocol/bounded_json.hpp"

namespace {

using er::protocol::max_json_depth;
using er::protocol::parse_json;

/// `levels` levels: objects {"a": ...} and arrays alternating from the outside in.
std::string nested(std::size_t levels) {
  std::string open, close;
  for (std::size_t i = 0; i < levels; ++i) {
    open += i % 2 ? "[" : R"({"a":)";
    close.insert(0, i % 2 ? "]" : "}");
  }
  return open + "true" + close;
}

/// The levels of a text nested(n) reads back as; an empty object or array counts 1.
std::size_t depth_of(const nlohmann::json& doc) {
  std::size_t depth = 0;
  for (const auto* at = &doc; at->is_structured(); ++depth) {
    if (at->empty())
      return depth + 1;
    at = at->is_object() ? &at->at("a") : &at->at(0);
  }
  return depth;
}

} // namespace

TEST_CASE("parse_json reads a text nested up to the limit and refuses one level more") {
  auto at_limit = parse_json(nested(max_json_depth));
  REQUIRE(at_limit.ok());
  CHECK_FALSE(at_limit.too_deep);
  CHECK(depth_of(at_limit.doc) == max_json_depth);
  for (auto levels : {max_json_depth + 1, std::size_t{300000}}) {
    auto past = parse_json(nested(levels));
    CHECK_FALSE(past.ok());
    CHECK(past.too_deep);
  }
  // scalars and empty containers count as they are
  CHECK(parse_json("1").doc == 1);
  CHECK(depth_of(parse_json("[]").doc) == 1);
}

TEST_CASE("parse_json refuses what is not one JSON value, and says it is not about depth") {
  for (const char* text : {"", "{", "{\"a\":1} trailing", "[1,]", "nul", "{\"a\" 1}"}) {
    auto parsed = parse_json(text);
    CHECK_MESSAGE(!parsed.ok(), text);
    CHECK_FALSE(parsed.too_deep);
  }
  // broken after the limit: refused for the depth, where parsing stopped
  CHECK(parse_json(std::string(max_json_depth + 1, '[')).too_deep);
  CHECK_FALSE(parse_json(std::string(max_json_depth, '[')).too_deep);
  CHECK(parse_json(R"({"a":[1,2,{"b":null}],"c":"\u00e9"})").doc
        == nlohmann::json{{"a", {1, 2, {{"b", nullptr}}}}, {"c", "\xc3\xa9"}});
}

TEST_CASE("an agent's event nested past the limit is not an agent event") {
  // the line's object is level 1, its data 2: the data may nest max_json_depth - 1 levels
  auto line = [](std::size_t data_levels) {
    return R"({"type":"agent_progress","data":)" + nested(data_levels) + "}";
  };
  auto fits = er::actors::parse_agent_line(line(max_json_depth - 1));
  REQUIRE(fits);
  CHECK(depth_of(fits->data) == max_json_depth - 1);
  CHECK_FALSE(er::actors::parse_agent_line(line(max_json_depth)));
  CHECK_FALSE(er::actors::parse_agent_line(line(30000)));

  std::vector<er::actors::agent_line> events;
  er::actors::sse_decoder fine{1 << 20};
  CHECK(fine.feed("event: agent_progress\ndata: " + nested(max_json_depth) + "\n\n", events));
  REQUIRE(events.size() == 1);
  CHECK(depth_of(events[0].data) == max_json_depth);
  er::actors::sse_decoder deep{1 << 20};
  CHECK_FALSE(deep.feed("event: agent_progress\ndata: " + nested(max_json_depth + 1) + "\n\n",
                        events));
  CHECK(deep.error().find("not an agent event with JSON object data") != std::string::npos);
  CHECK(events.size() == 1);
}
