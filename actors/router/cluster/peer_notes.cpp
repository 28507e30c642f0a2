#include "actors/router/cluster/peer_notes.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace er::actors {

namespace {

using json = nlohmann::json;

constexpr std::array<std::string_view, 8> kind_names{"request", "offer", "accept", "decline",
                                                     "event",   "stop",  "ended",  "gone"};

std::optional<peer_note::kind> kind_of(std::string_view name) {
  for (std::size_t i = 0; i < kind_names.size(); ++i)
    if (kind_names[i] == name)
      return static_cast<peer_note::kind>(i);
  return std::nullopt;
}

json optional_text(const std::optional<std::string>& text) {
  return text ? json(*text) : json(nullptr);
}

std::optional<std::string> text_of(const json& doc, const char* key) {
  auto it = doc.find(key);
  if (it == doc.end() || !it->is_string())
    return std::nullopt;
  return it->get<std::string>();
}

json encode_event(const protocol::outbound_event& ev) {
  json data = ev.data_text            ? json::parse(*ev.data_text, nullptr, false)
              : ev.data.is_null()    ? json::object()
                                     : ev.data;
  return {{"type", ev.type},
          {"published", ev.published},
          {"thread_id", optional_text(ev.thread_id)},
          {"run_id", optional_text(ev.run_id)},
          {"reply_to", optional_text(ev.reply_to)},
          {"data", std::move(data)}};
}

protocol::outbound_event decode_event(const json& doc) {
  protocol::outbound_event ev;
  ev.type = doc.value("type", std::string{});
  ev.published = doc.value("published", false);
  ev.thread_id = text_of(doc, "thread_id");
  ev.run_id = text_of(doc, "run_id");
  ev.reply_to = text_of(doc, "reply_to");
  if (auto data = doc.find("data"); data != doc.end() && data->is_object())
    ev.data = *data;
  ev.created = std::chrono::steady_clock::now();
  return ev;
}

json encode_request(const protocol::inbound_message& msg) {
  return {{"type", msg.type},
          {"id", optional_text(msg.id)},
          {"thread_id", optional_text(msg.thread_id)},
          {"payload", msg.payload.is_null() ? json::object() : msg.payload}};
}

protocol::inbound_message decode_request(const json& doc) {
  protocol::inbound_message msg;
  msg.type = doc.value("type", std::string{});
  msg.id = text_of(doc, "id");
  msg.thread_id = text_of(doc, "thread_id");
  msg.payload = doc.value("payload", json::object());
  return msg;
}

json encode_offer(const session_offer& offer) {
  json frames = json::array();
  for (auto& [id, frame] : offer.frames)
    frames.push_back(json::array({id, frame}));
  json runs = json::array();
  auto now = std::chrono::steady_clock::now();
  for (auto& run : offer.runs) {
    json entry{{"run_id", run.run_id},
               {"thread_id", optional_text(run.thread_id)},
               {"reply_to", optional_text(run.reply_to)}};
    if (run.deadline != std::chrono::steady_clock::time_point::max()) // steady clocks differ
      entry["left_ms"] = std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(run.deadline - now).count());
    runs.push_back(std::move(entry));
  }
  json doc{{"ok", offer.ok},
           {"frames", std::move(frames)},
           {"next_event_id", offer.next_event_id},
           {"session_id", offer.session_id},
           {"runs", std::move(runs)}};
  if (offer.owner_busy)
    doc["owner_busy"] = true;
  return doc;
}

constexpr std::int64_t week_ms = 7LL * 24 * 3600 * 1000;

/// Throws (nlohmann's type errors) on a malformed offer: decode_peer_note refuses the note.
session_offer decode_offer(const json& doc) {
  session_offer offer;
  offer.ok = doc.at("ok").get<bool>();
  if (!offer.ok)
    return offer;
  for (auto& frame : doc.at("frames"))
    offer.frames.emplace_back(frame.at(0).get<std::uint64_t>(), frame.at(1).get<std::string>());
  offer.next_event_id = doc.at("next_event_id").get<std::uint64_t>();
  offer.session_id = doc.at("session_id").get<std::string>();
  auto now = std::chrono::steady_clock::now();
  for (auto& run : doc.at("runs")) {
    offered_run r{run.at("run_id").get<std::string>(), text_of(run, "thread_id"),
                  text_of(run, "reply_to")};
    if (auto left = run.find("left_ms"); left != run.end()) // within a week: no overflow
      r.deadline = now + std::chrono::milliseconds{
                           std::clamp<std::int64_t>(left->get<std::int64_t>(), 0, week_ms)};
    offer.runs.push_back(std::move(r));
  }
  offer.owner_busy = doc.value("owner_busy", false); // absent from older nodes
  return offer;
}

} // namespace

std::string encode_peer_note(const peer_note& note, const std::string& from) {
  json doc{{"kind", kind_names[static_cast<std::size_t>(note.what)]},
           {"handover", note.handover},
           {"from", from},
           {"user", note.user}};
  switch (note.what) {
    case peer_note::kind::request:
      doc["token"] = note.token;
      doc["last_event_id"] = note.last_event_id;
      break;
    case peer_note::kind::offer:
      doc["offer"] = encode_offer(note.offer);
      if (note.stream_known)
        doc["stream"] = {{"epoch", note.stream_epoch}, {"offset", note.stream_offset}};
      break;
    case peer_note::kind::event:
      doc["event"] = encode_event(note.event);
      break;
    case peer_note::kind::stop:
      doc["request"] = encode_request(note.request);
      break;
    default:
      break;
  }
  // Never throws: bytes that are not UTF-8 (an agent's, quoted in an event) become U+FFFD.
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<peer_note> decode_peer_note(const std::string& text) {
  auto doc = json::parse(text, nullptr, false);
  if (!doc.is_object())
    return std::nullopt;
  auto what = kind_of(doc.value("kind", std::string{}));
  auto handover = text_of(doc, "handover");
  auto from = text_of(doc, "from");
  auto user = text_of(doc, "user");
  if (!what || !handover || !from || !user)
    return std::nullopt;
  peer_note note;
  note.what = *what;
  note.handover = std::move(*handover);
  note.node = std::move(*from);
  note.user = std::move(*user);
  try {
    switch (note.what) {
      case peer_note::kind::request:
        note.token = doc.at("token").get<std::string>();
        note.last_event_id = doc.at("last_event_id").get<std::uint64_t>();
        break;
      case peer_note::kind::offer:
        note.offer = decode_offer(doc.at("offer"));
        if (auto stream = doc.find("stream"); stream != doc.end()) {
          auto& offset = stream->at("offset");
          if (!offset.is_number_unsigned()) // nlohmann would read -1 as 2^64 - 1
            return std::nullopt;
          note.stream_known = true;
          note.stream_epoch = stream->at("epoch").get<std::string>();
          note.stream_offset = offset.get<std::uint64_t>();
        }
        break;
      case peer_note::kind::event:
        note.event = decode_event(doc.at("event"));
        break;
      case peer_note::kind::stop:
        note.request = decode_request(doc.at("request"));
        break;
      default:
        break;
    }
  } catch (const json::exception&) {
    return std::nullopt;
  }
  return note;
}

std::string resume_token_suffix(const std::string& node_id) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string suffix = ".";
  for (unsigned char c : node_id) {
    suffix += hex[c >> 4];
    suffix += hex[c & 0xf];
  }
  return suffix;
}

std::optional<std::string> resume_token_node(const std::string& token) {
  auto dot = token.rfind('.');
  if (dot == std::string::npos || (token.size() - dot - 1) % 2 != 0 || dot + 1 == token.size())
    return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    return -1;
  };
  std::string node;
  for (auto i = dot + 1; i < token.size(); i += 2) {
    int high = nibble(token[i]), low = nibble(token[i + 1]);
    if (high < 0 || low < 0)
      return std::nullopt;
    node += static_cast<char>(high << 4 | low);
  }
  return node;
}

} // namespace er::actors
