// The steps of a session moving between nodes, as they travel through Redis (peer_notes.hpp):
// what one node writes, the other reads back whole; anything else is refused, not guessed at.

#include <doctest/doctest.h>

#include "actors/router/cluster/peer_notes.hpp"

using er::actors::peer_note;
using json = nlohmann::json;

namespace {

peer_note note_of(peer_note::kind what) {
  peer_note n;
  n.what = what;
  n.handover = "h-1";
  n.node = "n2"; // the recipient
  n.user = "alice";
  return n;
}

peer_note round_trip(const peer_note& n) {
  auto back = er::actors::decode_peer_note(er::actors::encode_peer_note(n, "n1"));
  REQUIRE(back);
  CHECK(back->what == n.what);
  CHECK(back->handover == n.handover);
  CHECK(back->node == "n1"); // read back: the sender
  CHECK(back->user == n.user);
  return *back;
}

} // namespace

TEST_CASE("every kind of peer note reads back as it was written") {
  auto request = note_of(peer_note::kind::request);
  request.token = "rt-abc.6e31";
  request.last_event_id = 41;
  auto r = round_trip(request);
  CHECK(r.token == "rt-abc.6e31");
  CHECK(r.last_event_id == 41);

  auto offer = note_of(peer_note::kind::offer);
  offer.offer.ok = true;
  offer.offer.frames = {{42, R"({"event_id":42})"}, {43, "{\"x\":\"\\u00e9\"}"}};
  offer.offer.next_event_id = 44;
  offer.offer.session_id = "s-1";
  // r-1 times out in a minute on the owner's clock; r-2's deadline is not known.
  auto in_a_minute = std::chrono::steady_clock::now() + std::chrono::minutes{1};
  offer.offer.runs = {{"r-1", std::string{"t-1"}, std::string{"go"}, in_a_minute},
                      {"r-2", std::nullopt, std::nullopt}};
  offer.stream_known = true;
  offer.stream_epoch = "1764460000123-42";
  offer.stream_offset = 1234;
  auto written_at = std::chrono::steady_clock::now();
  auto read_back = round_trip(offer);
  auto round_trip_took = std::chrono::steady_clock::now() - written_at;
  CHECK(read_back.stream_known);
  CHECK(read_back.stream_epoch == "1764460000123-42");
  CHECK(read_back.stream_offset == 1234);
  auto o = read_back.offer;
  CHECK(o.ok);
  CHECK(o.frames == offer.offer.frames);
  CHECK(o.next_event_id == 44);
  CHECK(o.session_id == "s-1");
  REQUIRE(o.runs.size() == 2);
  CHECK(o.runs[0].run_id == "r-1");
  CHECK(o.runs[0].thread_id == std::optional<std::string>{"t-1"});
  CHECK(o.runs[0].reply_to == std::optional<std::string>{"go"});
  CHECK_FALSE(o.runs[1].thread_id);
  CHECK_FALSE(o.runs[1].reply_to);
  // The time left travels (steady clocks differ between processes), not the time point: read
  // back, it counts from the reading, so it can lie later by as long as the round trip took.
  CHECK(o.runs[0].deadline <= in_a_minute + round_trip_took);
  CHECK(o.runs[0].deadline > in_a_minute - std::chrono::seconds{5});
  CHECK(o.runs[1].deadline == std::chrono::steady_clock::time_point::max());
  CHECK_FALSE(o.owner_busy);
  offer.offer.owner_busy = true;
  CHECK(round_trip(offer).offer.owner_busy);
  auto refusal = round_trip(note_of(peer_note::kind::offer));
  CHECK_FALSE(refusal.offer.ok);
  CHECK_FALSE(refusal.stream_known); // the owner did not know where the stream stood

  auto event = note_of(peer_note::kind::event);
  event.event.type = "agent_thinking";
  event.event.run_id = "r-1";
  event.event.reply_to = "go";
  event.event.data_text = std::make_shared<const std::string>(R"({"step":1})"); // a built-in agent's pre-serialized data
  auto e = round_trip(event).event;
  CHECK(e.type == "agent_thinking");
  CHECK(e.run_id == std::optional<std::string>{"r-1"});
  CHECK_FALSE(e.thread_id);
  CHECK(e.reply_to == std::optional<std::string>{"go"});
  CHECK(e.data == json{{"step", 1}});
  CHECK_FALSE(e.published);

  auto stop = note_of(peer_note::kind::stop);
  stop.request.type = "stop_agent";
  stop.request.id = "halt";
  stop.request.payload = json{{"run_id", "r-1"}};
  auto q = round_trip(stop).request;
  CHECK(q.type == "stop_agent");
  CHECK(q.id == std::optional<std::string>{"halt"});
  CHECK(q.payload == json{{"run_id", "r-1"}});

  for (auto k : {peer_note::kind::accept, peer_note::kind::decline, peer_note::kind::ended,
                 peer_note::kind::gone})
    round_trip(note_of(k));
}

TEST_CASE("an event whose data holds bytes that are not UTF-8 is written with U+FFFD, "
          "never refused by the writer") {
  // An agent's bytes quoted in its event (a response body cut inside a character, a stray
  // 0xFF): nlohmann's strict writer threw here, which ended the cluster bus, and the router
  // with it, while the session's runs were hosted for another node.
  auto event = note_of(peer_note::kind::event);
  event.event.type = "agent_error";
  event.event.run_id = "r-1";
  event.event.data = json{{"message", "HTTP 500: \xff and a cut \xe2\x82"}};
  std::string written;
  REQUIRE_NOTHROW(written = er::actors::encode_peer_note(event, "n1"));
  auto back = er::actors::decode_peer_note(written);
  REQUIRE(back);
  CHECK(back->event.data["message"] == "HTTP 500: \xef\xbf\xbd and a cut \xef\xbf\xbd");
}

TEST_CASE("a malformed peer note is refused") {
  using er::actors::decode_peer_note;
  CHECK_FALSE(decode_peer_note("not json"));
  CHECK_FALSE(decode_peer_note("[]"));
  CHECK_FALSE(decode_peer_note(R"({"kind":"shout","handover":"h","from":"n","user":"u"})"));
  CHECK_FALSE(decode_peer_note(R"({"kind":"accept","from":"n","user":"u"})"));
  CHECK_FALSE(decode_peer_note(R"({"kind":"request","handover":"h","from":"n","user":"u"})"));
  CHECK_FALSE(decode_peer_note(
    R"({"kind":"offer","handover":"h","from":"n","user":"u","offer":{"ok":true,"frames":[[1]]}})"));
  CHECK_FALSE(decode_peer_note(R"({"kind":"offer","handover":"h","from":"n","user":"u",)"
                               R"("offer":{"ok":false},"stream":{"epoch":"e","offset":-1}})"));
  CHECK(decode_peer_note(R"({"kind":"accept","handover":"h","from":"n","user":"u"})"));
}

TEST_CASE("a resume token names its node in its suffix, and only a well-formed suffix does") {
  using er::actors::resume_token_node;
  auto token = "rt-0123456789abcdef0123456789abcdef" + er::actors::resume_token_suffix("node-7.eu");
  CHECK(resume_token_node(token) == std::optional<std::string>{"node-7.eu"});
  CHECK_FALSE(resume_token_node("rt-0123456789abcdef0123456789abcdef"));
  CHECK_FALSE(resume_token_node("rt-abc."));
  CHECK_FALSE(resume_token_node("rt-abc.6e3"));
  CHECK_FALSE(resume_token_node("rt-abc.zz"));
  CHECK_FALSE(resume_token_node("rt-abc.6E31")); // minted lower case only
}
