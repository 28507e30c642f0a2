// protocol::parse_inbound reads a client message in one streaming pass, building a document
// for `payload` only. These cases pin down what it answers, and every one of them, plus a
// few thousand generated variants, is also checked against the obvious implementation on
// nlohmann's full document (tests/inbound_reference.hpp).

#include <random>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "protocol/bounded_json.hpp"
#include "protocol/envelope.hpp"
#include "protocol/error_codes.hpp"
#include "tests/inbound_reference.hpp"

namespace {

using er::protocol::inbound_message;
using er::protocol::parse_inbound;
using er::protocol::protocol_error;

inbound_message expect_message(const std::string& text) {
  auto parsed = parse_inbound(text);
  CHECK(er::testing::same_parse(parsed, er::testing::reference_parse_inbound(text)));
  auto* msg = std::get_if<inbound_message>(&parsed);
  REQUIRE_MESSAGE(msg, text);
  return std::move(*msg); // a copy of a deep payload would recurse once per level
}

protocol_error expect_error(const std::string& text, std::string_view code) {
  auto parsed = parse_inbound(text);
  CHECK(er::testing::same_parse(parsed, er::testing::reference_parse_inbound(text)));
  auto* error = std::get_if<protocol_error>(&parsed);
  REQUIRE_MESSAGE(error, text);
  CHECK_MESSAGE(error->code == code, text);
  return *error;
}

/// `levels` arrays, one inside the other, around `leaf`.
std::string nested_arrays(std::size_t levels, const std::string& leaf = "1") {
  return std::string(levels, '[') + leaf + std::string(levels, ']');
}

} // namespace

TEST_CASE("parse_inbound takes the envelope's members and keeps the payload as a document") {
  auto ping = expect_message(R"({"type":"ping","id":"p-1"})");
  CHECK(ping.type == "ping");
  CHECK(ping.id == "p-1");
  CHECK_FALSE(ping.thread_id);
  CHECK(ping.payload == nlohmann::json::object());

  auto run = expect_message(
      R"({"payload":{"agent":"demo","input":{"steps":[1,2.5,"x",null,true,{"k":[]}]}},)"
      R"("thread_id":"t \"1\"\u00e9","type":"start_agent","extra":{"id":5,"type":[1]}})");
  CHECK(run.type == "start_agent");
  CHECK(run.thread_id == "t \"1\"\u00e9");
  CHECK(run.payload["agent"] == "demo");
  CHECK(run.payload["input"]["steps"]
        == nlohmann::json::parse(R"([1,2.5,"x",null,true,{"k":[]}])"));

  auto nulls = expect_message(R"({"type":"ping","id":null,"thread_id":null,"payload":null})");
  CHECK_FALSE(nulls.id);
  CHECK_FALSE(nulls.thread_id);
  CHECK(nulls.payload == nlohmann::json::object());
}

TEST_CASE("parse_inbound: a repeated key counts with its last value, as in a JSON document") {
  CHECK(expect_message(R"({"type":5,"type":"ping"})").type == "ping");
  CHECK(expect_message(R"({"type":"a","payload":7,"payload":{"x":1}})").payload["x"] == 1);
  expect_error(R"({"type":"a","payload":{"x":1},"payload":[1]})", er::error_code::invalid_message);
  CHECK_FALSE(expect_message(R"({"type":"a","id":"1","id":null})").id);
}

TEST_CASE("parse_inbound names the member that is wrong and echoes a readable id") {
  CHECK(expect_error(R"({"id":"r1"})", er::error_code::invalid_message).reply_to == "r1");
  auto type = expect_error(R"({"id":"r2","type":{"a":1}})", er::error_code::invalid_message);
  CHECK(type.message == "\"type\" must be a string");
  CHECK(type.reply_to == "r2");
  CHECK(expect_error(R"({"id":7,"type":"ping"})", er::error_code::invalid_message).message
        == "\"id\" must be a string");
  CHECK(expect_error(R"({"type":"ping","thread_id":[]})", er::error_code::invalid_message).message
        == "\"thread_id\" must be a string");
  CHECK(expect_error(R"({"type":"ping","payload":"x"})", er::error_code::invalid_message).message
        == "\"payload\" must be an object");
  for (auto text : {"[]", "[{\"type\":\"ping\"}]", "\"ping\"", "5", "null", "true"})
    CHECK(expect_error(text, er::error_code::invalid_message).message
          == "the message must be a JSON object");
}

TEST_CASE("parse_inbound: text that is not JSON is invalid_json, whatever came before the fault") {
  for (auto text : {"", "{", "{not json", R"({"id":5,"type":)", R"({"type":"ping"} x)",
                    R"({"type":"ping",})", "{\"type\":\"\xff\"}", R"({"type":"a","payload":{"x":})"})
    expect_error(text, er::error_code::invalid_json);
  expect_error(std::string(30000, '['), er::error_code::invalid_json);
}

TEST_CASE("parse_inbound keeps a payload nested up to the limit whole") {
  using er::protocol::max_json_depth;
  // The envelope is level 1, the payload 2, its member's arrays the levels after them.
  auto arrays = max_json_depth - 2;
  auto msg = expect_message(R"({"type":"x","payload":{"a":)" + nested_arrays(arrays) + "}}");
  CHECK(msg.type == "x");
  const nlohmann::json* at = &msg.payload["a"];
  std::size_t depth = 0;
  while (at->is_array()) {
    at = &(*at)[0];
    ++depth;
  }
  CHECK(depth == arrays);
  CHECK(*at == 1);
}

TEST_CASE("parse_inbound refuses a message nested past the limit, with its id, wherever it is") {
  using er::protocol::max_json_depth;
  auto why = "the message nests deeper than " + std::to_string(max_json_depth) + " levels";
  auto one_too_many = max_json_depth - 1; // arrays below the payload: one level too many
  // in the payload, the id before it or after it; 30,000 levels fit in one 64 KiB frame
  for (auto levels : {one_too_many, std::size_t{30000}}) {
    auto error = expect_error(R"({"id":"r1","type":"x","payload":{"a":)" + nested_arrays(levels) + "}}",
                              er::error_code::invalid_message);
    CHECK(error.message == why);
    CHECK(error.reply_to == std::optional<std::string>{"r1"});
    error = expect_error(R"({"type":"x","payload":{"a":)" + nested_arrays(levels) + R"(},"id":"r2"})",
                         er::error_code::invalid_message);
    CHECK(error.message == why);
    CHECK(error.reply_to == std::optional<std::string>{"r2"});
  }
  // in a member the router does not read
  auto error = expect_error(R"({"type":"x","extra":)" + nested_arrays(max_json_depth) + "}",
                            er::error_code::invalid_message);
  CHECK(error.message == why);
  CHECK_FALSE(error.reply_to);
  // still invalid JSON when the text breaks after the limit
  expect_error(R"({"type":"x","payload":{"a":)" + std::string(30000, '[') + "}",
               er::error_code::invalid_json);
  // an id that is no string is named first, as for any message
  CHECK(expect_error(R"({"id":1,"type":"x","payload":{"a":)" + nested_arrays(one_too_many) + "}}",
                     er::error_code::invalid_message).message == "\"id\" must be a string");
}

TEST_CASE("the reference comparison tells documents apart at any depth") {
  using er::testing::same_document;
  auto nested = [](int depth, const char* leaf) {
    return nlohmann::json::parse(std::string(depth, '[') + leaf + std::string(depth, ']'));
  };
  CHECK(same_document(nested(10000, "1"), nested(10000, "1")));
  CHECK_FALSE(same_document(nested(10000, "1"), nested(10000, "2")));
  CHECK_FALSE(same_document(nested(10000, "1"), nested(9999, "1")));
  CHECK(same_document(nlohmann::json::parse(R"({"a":[1,{"b":null}],"c":"x"})"),
                      nlohmann::json::parse(R"({"c":"x","a":[1,{"b":null}]})")));
  CHECK_FALSE(same_document(nlohmann::json::parse(R"({"a":1})"), nlohmann::json::parse(R"({"b":1})")));
  CHECK_FALSE(same_document(nlohmann::json::parse(R"([1,2])"), nlohmann::json::parse(R"([2,1])")));
  CHECK_FALSE(same_document(nlohmann::json::parse(R"({})"), nlohmann::json::parse(R"([])")));
}

TEST_CASE("parse_inbound agrees with the full-document reading on generated messages") {
  // Members drawn from values of every JSON kind, for the envelope's keys and others, in
  // random order with repeats; then each text also cut short at a random point.
  const std::vector<std::string> keys = {"type", "id", "thread_id", "payload", "extra", "TYPE"};
  const std::vector<std::string> values = {
      R"("ping")", R"("")", "null", "true", "0", "-1.5e3", "[]", R"([1,{"type":"x"}])", "{}",
      R"({"type":"inner","payload":{"id":1}})", R"("\u00e9\n")", R"({"a":[[],{}]})",
      // at the nesting limit and one past it, as a member and inside an object (a payload)
      nested_arrays(er::protocol::max_json_depth - 1), nested_arrays(er::protocol::max_json_depth),
      R"({"a":)" + nested_arrays(er::protocol::max_json_depth - 2) + "}",
      R"({"a":)" + nested_arrays(er::protocol::max_json_depth - 1) + "}"};
  std::mt19937 random{20261129};
  auto pick = [&](const std::vector<std::string>& from) {
    return from[std::uniform_int_distribution<std::size_t>{0, from.size() - 1}(random)];
  };
  int messages = 0, errors = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string text = i % 2 ? "{" : R"({"type":"run")"; // every other one starts well
    auto members = std::uniform_int_distribution<int>{0, 5}(random);
    for (int m = 0; m < members; ++m)
      text += (text.size() > 1 ? "," : "") + ("\"" + pick(keys) + "\":") + pick(values);
    text += "}";
    auto cut = std::uniform_int_distribution<std::size_t>{0, text.size()}(random);
    for (const auto& candidate : {text, text.substr(0, cut)}) {
      auto parsed = parse_inbound(candidate);
      CHECK_MESSAGE(er::testing::same_parse(parsed, er::testing::reference_parse_inbound(candidate)),
                    candidate);
      ++(parsed.index() == 0 ? messages : errors);
    }
  }
  // the generator reaches both outcomes often, so the agreement is about something
  CHECK(messages > 800);
  CHECK(errors > 5000);
}
