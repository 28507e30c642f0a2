// The protocol core (DESIGN §4) over real connections: greeting, envelope, ping/pong, and
// how malformed input is answered without closing the connection.

#include <fstream>
#include <iterator>
#include <regex>
#include <vector>

#include <doctest/doctest.h>

#include "protocol/bounded_json.hpp"
#include "protocol/close_codes.hpp"
#include "protocol/envelope.hpp"
#include "protocol/message_types.hpp"
#include "tests/support.hpp"

using namespace er::test;
namespace protocol = er::protocol;

namespace {

const std::regex hex_id{"^[cs]-[0-9a-f]{32}$"};
const std::regex rfc3339_utc{R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$)"};

json roundtrip(er::client::ws_client& c, const std::string& text) {
  c.send_text(text);
  return next_json(c);
}

void expect_error(er::client::ws_client& c, const std::string& text, const std::string& code,
                  const json& reply_to = nullptr) {
  auto reply = roundtrip(c, text);
  CHECK(reply["type"] == "error");
  CHECK(reply["data"]["code"] == code);
  CHECK(reply["data"]["message"].is_string());
  CHECK(reply["reply_to"] == reply_to);
}

} // namespace

TEST_CASE("connection_established comes first, with event_id 0, random ids and the limits") {
  test_router router;
  auto a = connect_user(router, "alice");
  auto b = connect_user(router, "alice");
  auto& g = a.established;
  CHECK(g["event_id"] == 0);
  CHECK(g["user_id"] == "alice");
  CHECK(g["data"]["server_id"] == "test-node");
  CHECK(g["data"]["recovered"] == false);
  CHECK(std::regex_match(g["data"]["connection_id"].get<std::string>(), hex_id));
  CHECK(std::regex_match(g["data"]["session_id"].get<std::string>(), hex_id));
  CHECK(g["data"]["connection_id"] != b.established["data"]["connection_id"]);
  CHECK(g["data"]["limits"]["max_message_bytes"] == 65536);
  CHECK(std::regex_match(g["timestamp"].get<std::string>(), rfc3339_utc));
}

TEST_CASE("ping gets pong with reply_to, and event ids count up from 1 per connection") {
  test_router router;
  auto c = connect_user(router, "alice");
  for (int i = 1; i <= 3; ++i) {
    auto pong = roundtrip(*c.client, json{{"type", "ping"}, {"id", "p" + std::to_string(i)}}.dump());
    CHECK(pong["type"] == "pong");
    CHECK(pong["reply_to"] == "p" + std::to_string(i));
    CHECK(pong["event_id"] == i);
    CHECK(pong["user_id"] == "alice");
    CHECK(std::regex_match(pong["timestamp"].get<std::string>(), rfc3339_utc));
  }
  auto other = connect_user(router, "alice");
  CHECK(roundtrip(*other.client, R"({"type":"ping"})")["event_id"] == 1);
}

TEST_CASE("malformed messages get the documented error code and the connection stays open") {
  test_router router;
  auto c = connect_user(router, "alice");
  auto& client = *c.client;
  expect_error(client, "{not json", "invalid_json");
  expect_error(client, "", "invalid_json");
  expect_error(client, "[1,2,3]", "invalid_message");
  expect_error(client, "\"ping\"", "invalid_message");
  expect_error(client, R"({"id":"m1"})", "invalid_message", "m1");
  expect_error(client, R"({"type":42,"id":"m2"})", "invalid_message", "m2");
  expect_error(client, R"({"type":"ping","id":7})", "invalid_message");
  expect_error(client, R"({"type":"ping","id":"m3","payload":"text"})", "invalid_message", "m3");
  expect_error(client, R"({"type":"ping","id":"m4","thread_id":5})", "invalid_message", "m4");
  expect_error(client, R"({"type":"teleport","id":"m5"})", "unknown_type", "m5");
  client.send_binary("\x01\x02\x03");
  auto binary = next_json(client);
  CHECK(binary["type"] == "error");
  CHECK(binary["data"]["code"] == "invalid_message");
  auto pong = roundtrip(client, R"({"type":"ping","id":"still-here"})");
  CHECK(pong["type"] == "pong");
  CHECK(pong["reply_to"] == "still-here");
}

TEST_CASE("deeply nested JSON is an ordinary error, not a crash") {
  test_router router;
  auto c = connect_user(router, "alice");
  expect_error(*c.client, std::string(30000, '[') + std::string(30000, ']'), "invalid_message");
  expect_error(*c.client, std::string(30000, '['), "invalid_json");
  // Nested past the limit (the envelope is level 1, the payload 2): refused with the request's
  // id, up to 30,000 levels (what a 64 KiB frame holds); at the limit: served.
  auto arrays = [](std::size_t levels) {
    return std::string(levels, '[') + std::string(levels, ']');
  };
  auto limit = er::protocol::max_json_depth;
  for (auto levels : {limit - 1, std::size_t{30000}}) {
    c.client->send_text(R"({"type":"start_agent","id":"deep","payload":{"agent":"demo","input":)"
                        + arrays(levels) + "}}");
    auto error = next_json(*c.client);
    CHECK(error["type"] == "error");
    CHECK(error["reply_to"] == "deep");
    CHECK(error["data"]["code"] == "invalid_message");
    CHECK(error["data"]["message"]
          == "the message nests deeper than " + std::to_string(limit) + " levels");
  }
  auto pong = roundtrip(*c.client, R"({"type":"ping","id":"at-limit","payload":{"a":)"
                                     + arrays(limit - 2) + "}}");
  CHECK(pong["type"] == "pong");
  CHECK(pong["reply_to"] == "at-limit");
}

TEST_CASE("a user_id smuggled into a message never changes the stamped user_id") {
  test_router router;
  auto c = connect_user(router, "alice");
  auto pong = roundtrip(*c.client,
                        R"({"type":"ping","id":"x","user_id":"bob","payload":{"user_id":"bob"}})");
  CHECK(pong["user_id"] == "alice");
}

TEST_CASE("a frame over max-message-bytes closes only that connection with 1009") {
  auto settings = test_settings();
  settings.max_message_bytes = 1024;
  test_router router{settings};
  auto victim = connect_user(router, "alice");
  auto bystander = connect_user(router, "alice");
  victim.client->send_text(std::string(2000, 'x'));
  expect_close(*victim.client, 1009);
  bystander.client->send_text(R"({"type":"ping","id":"b"})");
  CHECK(next_json(*bystander.client)["reply_to"] == "b");
  CHECK(eventually([&] { return router.server().stats().connections == 1; }));
}

TEST_CASE("a frame at exactly max-message-bytes is accepted") {
  auto settings = test_settings();
  settings.max_message_bytes = 1024;
  test_router router{settings};
  auto c = connect_user(router, "alice");
  std::string msg = R"({"type":"ping","id":"edge","pad":")";
  msg += std::string(1024 - msg.size() - 2, 'p') + "\"}";
  REQUIRE(msg.size() == 1024);
  CHECK(roundtrip(*c.client, msg)["reply_to"] == "edge");
}

namespace {

// The envelope as a DOM would render it: what protocol::event_renderer's text must equal byte for byte.
std::string dom_envelope(const er::protocol::outbound_event& e, std::uint64_t id,
                         const std::string& user, std::chrono::system_clock::time_point at) {
  auto optional = [](const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); };
  json doc = {{"type", e.type},
              {"event_id", id},
              {"user_id", user},
              {"thread_id", optional(e.thread_id)},
              {"run_id", optional(e.run_id)},
              {"reply_to", optional(e.reply_to)},
              {"timestamp", er::protocol::rfc3339(at)},
              {"data", e.data_text          ? json::parse(*e.data_text)
                       : e.data.is_null()    ? json::object()
                                             : e.data}};
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

TEST_CASE("the envelope renderer writes what a JSON document of the envelope dumps") {
  using er::protocol::outbound_event;
  const std::string user = "user \"quoted\" \\ \xc3\xa9 \x01"; // escapes and UTF-8 in the user id
  er::protocol::event_renderer renderer{user};
  auto t0 = std::chrono::system_clock::time_point{std::chrono::milliseconds{1764000000123}};

  std::vector<protocol::outbound_event> events(7);
  events[0].type = "agent_started";
  events[0].run_id = "r-1";
  events[0].thread_id = "t-\n1";
  events[0].reply_to = "q-\"7\"";
  events[1] = events[0]; // the same run and thread: cached members are reused
  events[1].type = "agent_step";
  events[1].reply_to.reset();
  events[1].data = json{{"step", 1}, {"text", "line\nbreak \xe2\x82\xac"}, {"list", {1, 2.5, nullptr}}};
  events[2] = events[1];
  events[2].run_id = "r-2"; // a changed run id is serialized again
  events[2].thread_id.reset();
  events[3].type = "pong";  // no run, thread or reply
  events[4].type = "bad \xff utf-8"; // invalid UTF-8 is replaced, as in every frame
  events[4].data = json{{"x", "\xfe"}};
  events[5].type = "pong";
  events[5].run_id = "r-2";
  events[5].reply_to = "p-\\1"; // after events without one
  events[6] = events[5]; // data serialized beforehand (a built-in agent's): sent as it is;
                         // the same reply_to again, as in every event of a run
  events[6].data_text =
    std::make_shared<const std::string>(json{{"step", 2}, {"text", "\u00e9 \"q\""}}.dump());

  for (std::size_t i = 0; i < events.size(); ++i) {
    auto at = t0 + std::chrono::milliseconds{i / 2}; // a timestamp kept for two events, then renewed
    auto text = renderer.render(events[i], i + 1, at);
    CHECK(text == dom_envelope(events[i], i + 1, user, at));
    CHECK(json::accept(text));
  }
  // An event without data (its data left null) carries an empty object.
  CHECK(events[3].data.is_null());
  CHECK(er::protocol::render_event(events[3], 9, user, t0).rfind(R"({"data":{},"event_id":9,)", 0) == 0);
  // The one-off rendering agrees as well.
  CHECK(er::protocol::render_event(events[2], 42, user, t0)
        == dom_envelope(events[2], 42, user, t0));
}

TEST_CASE("ids that nlohmann writes as they are are copied, every other one goes through it: the "
          "envelope is the same byte for byte") {
  using er::protocol::outbound_event;
  const std::string user = "u1";
  er::protocol::event_renderer renderer{user};
  auto at = std::chrono::system_clock::time_point{std::chrono::milliseconds{1764000000123}};
  // Printable ASCII but the quote and the backslash (copied); the edges of that range, control
  // characters, UTF-8 and bytes that are not UTF-8 (through nlohmann).
  const std::vector<std::string> ids = {
    "", "p-1", " ~{}[]:,/'`$", "q-\x7f", "\x1f", "\x20\x7e", "tab\t", "\xc3\xa9t\xc3\xa9",
    "\xff", "say \"hi\"", "back\\slash", "r-0123456789abcdef0123456789abcdef", "\x7f"};
  std::uint64_t id = 1;
  for (const auto& value : ids) {
    outbound_event e;
    e.type = "pong";
    e.reply_to = value;
    e.run_id = value;
    e.thread_id = value;
    auto text = renderer.render(e, id, at);
    CHECK_MESSAGE(text == dom_envelope(e, id, user, at), "id: " << json(value).dump(-1, ' ', true,
                                                                  json::error_handler_t::replace));
    CHECK(json::accept(text));
    // The next event's timestamp is another millisecond's: written anew each time.
    at += std::chrono::milliseconds{1};
    ++id;
  }
  // event_id at its widest
  outbound_event e;
  e.type = "pong";
  CHECK(renderer.render(e, UINT64_MAX, at) == dom_envelope(e, UINT64_MAX, user, at));
}

TEST_CASE("timestamps are RFC 3339 UTC with milliseconds, across second and day boundaries") {
  auto at = [](std::int64_t ms) {
    return std::chrono::system_clock::time_point{std::chrono::milliseconds{ms}};
  };
  // Within one second, into the next, and back to an earlier day: the per-thread text up to
  // the second must follow.
  CHECK(er::protocol::rfc3339(at(1764000000123)) == "2025-11-24T16:00:00.123Z");
  CHECK(er::protocol::rfc3339(at(1764000000999)) == "2025-11-24T16:00:00.999Z");
  CHECK(er::protocol::rfc3339(at(1764000001000)) == "2025-11-24T16:00:01.000Z");
  CHECK(er::protocol::rfc3339(at(951782400007)) == "2000-02-29T00:00:00.007Z");
  CHECK(er::protocol::rfc3339(at(1764000000123)) == "2025-11-24T16:00:00.123Z");
}

TEST_CASE("an unknown type is echoed in its error as at most 64 bytes, cut between characters") {
  test_router router;
  auto c = connect_user(router, "alice");
  std::string type = std::string(63, 'a') + "\xc3\xa9" + std::string(10000, 'b'); // é at 63-64
  c.client->send_text(json{{"type", type}, {"id", "long"}}.dump());
  auto reply = next_json(*c.client);
  CHECK(reply["data"]["code"] == "unknown_type");
  CHECK(reply["data"]["message"] == "unknown message type \"" + std::string(63, 'a') + "...\"");
  CHECK(protocol::quote_excerpt("short") == "\"short\"");
  CHECK(protocol::quote_excerpt(std::string(64, 'z')) == "\"" + std::string(64, 'z') + "\"");
}

TEST_CASE("valid_utf8 keeps valid text as it is and replaces each stray byte with U+FFFD") {
  CHECK(protocol::valid_utf8("plain, \xc3\xa9, \xe2\x82\xac") == "plain, \xc3\xa9, \xe2\x82\xac");
  CHECK(protocol::valid_utf8("a\xff" "b") == "a\xef\xbf\xbd" "b");
  CHECK(protocol::valid_utf8("cut \xe2\x82") == "cut \xef\xbf\xbd"); // a character cut short
  CHECK(protocol::valid_utf8("") == "");
}

TEST_CASE("docs/asyncapi.yaml documents every message type and close code the router knows") {
  std::ifstream in{std::string{ER_SOURCE_DIR} + "/docs/asyncapi.yaml"};
  std::string doc{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  REQUIRE(!doc.empty());
  auto pinned = [&](std::string_view type) {
    return doc.find("const: " + std::string{type} + "\n") != std::string::npos
           || doc.find("const: \"" + std::string{type} + "\"") != std::string::npos;
  };
  for (auto types : {std::vector<std::string_view>(protocol::client_message_types.begin(),
                                                   protocol::client_message_types.end()),
                     std::vector<std::string_view>(protocol::reply_types.begin(),
                                                   protocol::reply_types.end()),
                     std::vector<std::string_view>(protocol::agent_event_types.begin(),
                                                   protocol::agent_event_types.end())})
    for (auto type : types) {
      CAPTURE(type);
      CHECK(pinned(type));
    }
  auto codes = doc.substr(doc.find("x-close-codes:"));
  for (const auto& c : er::close_code::all) {
    CAPTURE(c.code);
    CHECK(codes.find("- code: " + std::to_string(c.code) + "\n    reason: " + std::string{c.reason})
          != std::string::npos);
  }
}

TEST_CASE("router-client: messages typed on standard input are sent as they come, the frames "
          "printed meanwhile, and it ends once the input has and the frames stop") {
  test_router router;
  auto token = token_for(router, "alice");
  child_process client{{ER_ROUTER_CLIENT_BINARY,
                        "--url=ws://127.0.0.1:" + std::to_string(router.port()) + "/ws",
                        "--token=" + token, "--idle-ms=300"},
                       true};
  // Before, it read all of its input before it sent or printed anything: typed requests got
  // no answer, and the server's pings none either.
  auto greeting = json::parse(client.read_line(), nullptr, false);
  CHECK(greeting["type"] == "connection_established");
  client.write_stdin("{\"type\":\"ping\",\"id\":\"typed-1\"}\n");
  CHECK(json::parse(client.read_line(), nullptr, false)["reply_to"] == "typed-1");
  client.write_stdin("{\"type\":\"ping\",\"id\":\"typed-2\"}\r\n\n{\"type\":\"ping\",");
  client.write_stdin("\"id\":\"typed-3\"}"); // the last line without its newline
  CHECK(json::parse(client.read_line(), nullptr, false)["reply_to"] == "typed-2");
  client.close_stdin();
  CHECK(json::parse(client.read_line(), nullptr, false)["reply_to"] == "typed-3");
  CHECK(client.wait(5s) == 0);
}

TEST_CASE("router-client: a malformed --url or --idle-ms is refused with exit status 2") {
  for (std::string bad : {"--url=ws://127.0.0.1:x/ws", "--url=ws://127.0.0.1:70000/ws",
                          "--idle-ms=soon", "--url=http://127.0.0.1:1/ws"}) {
    CAPTURE(bad);
    child_process client{{ER_ROUTER_CLIENT_BINARY, bad}};
    CHECK(client.wait(5s) == 2);
    CHECK(client.read_all_stderr().rfind("router-client: ", 0) == 0);
  }
}
