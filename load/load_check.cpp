#include "load/load_check.hpp"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <random>

#include <nlohmann/json.hpp>

namespace er::load {


// -- frame_checker --------------------------------------------------------------

frame_checker::frame_checker(std::string user_id, std::string prefix, int demo_steps,
                             std::string agent)
  : user_id_(std::move(user_id)), prefix_(std::move(prefix)), demo_steps_(demo_steps),
    start_suffix_(R"(","payload":{"agent":)" + nlohmann::json(agent).dump()
                  + R"(,"input":"load"}})") {
}

std::string frame_checker::ping(clock::time_point now) {
  auto n = next_request_++;
  pings_.emplace_back(n, now);
  return R"({"type":"ping","id":")" + prefix_ + "p" + std::to_string(n) + "\"}";
}

std::string frame_checker::start_demo_run(clock::time_point now) {
  auto n = next_request_++;
  run r;
  r.request = n;
  r.sent_at = now;
  runs_.push_back(std::move(r));
  return R"({"type":"start_agent","id":")" + prefix_ + "r" + std::to_string(n) + start_suffix_;
}

std::uint64_t frame_checker::owed_events() const {
  std::uint64_t owed = pings_.size() + publishes_.size();
  for (auto& r : runs_)
    owed += static_cast<std::uint64_t>(std::max(0, events_per_run() - r.received));
  return owed;
}

// -- envelope_fields --------------------------------------------------------------

namespace {

std::optional<std::string> string_of(simdjson::dom::element value) {
  std::string_view text;
  if (value.get_string().get(text) != simdjson::SUCCESS)
    return std::nullopt;
  return std::string{text};
}

/// A non-negative integer, as nlohmann reads one into number_unsigned.
std::optional<std::uint64_t> unsigned_of(simdjson::dom::element value) {
  if (value.type() == simdjson::dom::element_type::UINT64)
    return value.get_uint64().value_unsafe();
  if (value.type() == simdjson::dom::element_type::INT64 && value.get_int64().value_unsafe() >= 0)
    return static_cast<std::uint64_t>(value.get_int64().value_unsafe());
  return std::nullopt;
}

void read_data(simdjson::dom::object data, envelope_fields& out) {
  for (auto [key, value] : data) {
    if (key == "code")
      out.data_code = string_of(value);
    else if (key == "user")
      out.data_user = string_of(value);
    else if (key == "seq")
      out.data_seq = unsigned_of(value);
  }
}

} // namespace

envelope_fields envelope_fields::read(std::string_view text) {
  envelope_fields out;
  // simdjson's DOM parser validates the whole frame (structure, numbers, UTF-8), so a frame
  // that is not valid JSON is caught wherever the fault is, data included; then only the
  // checked members are read. One parser per thread: it keeps its buffers between frames.
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::object envelope;
  if (parser.parse(text.data(), text.size()).get(doc) != simdjson::SUCCESS
      || doc.get_object().get(envelope) != simdjson::SUCCESS)
    return out; // not JSON, or not an object: not an envelope
  out.valid = true;
  for (auto [key, value] : envelope) {
    if (key == "user_id") {
      out.user_id = string_of(value);
    } else if (key == "type") {
      out.type = string_of(value).value_or(std::string{});
    } else if (key == "event_id") {
      if (value.type() == simdjson::dom::element_type::INT64)
        out.event_id = value.get_int64().value_unsafe();
      else if (value.type() == simdjson::dom::element_type::UINT64)
        out.event_id = -1; // past int64: no event id this checker would accept
    } else if (key == "run_id") {
      out.run_id = string_of(value);
    } else if (key == "reply_to") {
      // A reply_to that is neither a string nor null becomes an id no connection makes.
      if (value.is_null())
        out.reply_to.reset();
      else
        out.reply_to = string_of(value).value_or(std::string{});
    } else if (key == "data") {
      simdjson::dom::object data;
      out.data_is_object = value.get_object().get(data) == simdjson::SUCCESS;
      if (out.data_is_object)
        read_data(data, out);
    }
  }
  return out;
}

std::int64_t frame_checker::own_request(const std::optional<std::string>& reply_to,
                                        char tag) const {
  if (!reply_to)
    return -1;
  auto& id = *reply_to;
  if (id.size() <= prefix_.size() + 1 || id.compare(0, prefix_.size(), prefix_) != 0
      || id[prefix_.size()] != tag)
    return -1;
  std::uint64_t n = 0;
  auto first = id.data() + prefix_.size() + 1;
  auto last = id.data() + id.size();
  auto [end, ec] = std::from_chars(first, last, n);
  if (ec != std::errc{} || end != last)
    return -1;
  return static_cast<std::int64_t>(n);
}

frame_outcome frame_checker::check(std::string_view text, clock::time_point now) {
  auto frame = envelope_fields::read(text);
  if (!frame.valid)
    return {frame_verdict::unexpected, "malformed_frame"};
  if (frame.user_id != user_id_)
    return {frame_verdict::leak, "wrong_user"};
  auto& type = frame.type;
  auto event_id = frame.event_id;
  if (type == "connection_established") {
    if (greeted_ || event_id != 0)
      return {frame_verdict::unexpected, "extra_connection_established"};
    greeted_ = true;
    return {frame_verdict::greeting, {}};
  }
  if (!greeted_)
    return {frame_verdict::unexpected, "frame_before_connection_established"};
  if (event_id < static_cast<std::int64_t>(next_event_id_))
    return {frame_verdict::unexpected, "event_id_not_increasing"};
  auto skipped = static_cast<std::uint64_t>(event_id) - next_event_id_;
  next_event_id_ = static_cast<std::uint64_t>(event_id) + 1;
  frame_outcome out;
  if (type == "pong")
    out = on_pong(frame, now);
  else if (type == "error")
    out = on_error(frame);
  else if (type == "agent_started")
    out = on_agent_started(frame);
  else if (type == publish_event_type)
    out = on_published(frame, now);
  else if (frame.run_id)
    out = on_run_event(frame, now);
  else
    out = {frame_verdict::unexpected, "unexpected_type:" + type};
  out.skipped_events = skipped;
  return out;
}

frame_outcome frame_checker::on_pong(const envelope_fields& frame, clock::time_point now) {
  auto n = own_request(frame.reply_to, 'p');
  if (n < 0)
    return {frame_verdict::leak, "foreign_reply"};
  auto it = std::find_if(pings_.begin(), pings_.end(),
                         [&](auto& p) { return p.first == static_cast<std::uint64_t>(n); });
  if (it == pings_.end())
    return {frame_verdict::unexpected, "duplicate_pong"};
  bool in_order = it == pings_.begin();
  auto sent = it->second;
  pings_.erase(it);
  if (!in_order)
    return {frame_verdict::unexpected, "pong_out_of_order"};
  frame_outcome out{frame_verdict::completed, {}};
  out.round_trip = std::chrono::duration_cast<std::chrono::microseconds>(now - sent);
  return out;
}

frame_outcome frame_checker::on_error(const envelope_fields& frame) {
  auto code = frame.data_code.value_or("?");
  if (!frame.reply_to)
    return {frame_verdict::error_reply, "error:" + code};
  if (auto n = own_request(frame.reply_to, 'p'); n >= 0) {
    pings_.erase(std::remove_if(pings_.begin(), pings_.end(),
                                [&](auto& p) { return p.first == static_cast<std::uint64_t>(n); }),
                 pings_.end());
  } else if (auto r = own_request(frame.reply_to, 'r'); r >= 0) {
    runs_.erase(std::remove_if(runs_.begin(), runs_.end(),
                               [&](auto& x) { return x.request == static_cast<std::uint64_t>(r); }),
                runs_.end());
  } else {
    return {frame_verdict::leak, "foreign_reply"};
  }
  return {frame_verdict::error_reply, "error:" + code};
}

frame_outcome frame_checker::on_agent_started(const envelope_fields& frame) {
  auto n = own_request(frame.reply_to, 'r');
  if (n < 0)
    return {frame_verdict::leak, "foreign_reply"};
  auto it = std::find_if(runs_.begin(), runs_.end(),
                         [&](auto& r) { return r.request == static_cast<std::uint64_t>(n); });
  if (it == runs_.end() || !it->run_id.empty() || !frame.run_id || frame.run_id->empty())
    return {frame_verdict::unexpected, "extra_agent_started"};
  it->run_id = *frame.run_id;
  it->received = 1;
  return {frame_verdict::progress, {}};
}

std::string frame_checker::expected_type(int received) const {
  if (received <= demo_steps_)
    return "agent_thinking";
  if (received == demo_steps_ + 1)
    return "tool_executing";
  if (received == demo_steps_ + 2)
    return "tool_completed";
  return "agent_completed";
}

frame_outcome frame_checker::on_run_event(const envelope_fields& frame, clock::time_point now) {
  auto& type = frame.type;
  auto& run_id = *frame.run_id;
  auto it = std::find_if(runs_.begin(), runs_.end(), [&](auto& r) { return r.run_id == run_id; });
  if (it == runs_.end())
    return finished_runs_.find_if([h = std::hash<std::string>{}(run_id)](auto x) { return x == h; })
             ? frame_outcome{frame_verdict::unexpected, "event_after_final:" + type}
             : frame_outcome{frame_verdict::leak, "foreign_run"};
  if (own_request(frame.reply_to, 'r') != static_cast<std::int64_t>(it->request))
    return {frame_verdict::unexpected, "wrong_reply_to:" + type};
  bool final = type == "agent_completed" || type == "agent_error" || type == "agent_stopped";
  frame_outcome out{frame_verdict::progress, {}};
  if (type != expected_type(it->received) && !it->out_of_order) {
    it->out_of_order = true; // one error per run: its later events cannot be in order either
    out = {frame_verdict::unexpected, "out_of_order:" + type};
  }
  ++it->received;
  if (!final)
    return out;
  if (type != "agent_completed") {
    out = {frame_verdict::error_reply, type};
  } else if (!it->out_of_order) {
    out.verdict = frame_verdict::completed;
    out.round_trip = std::chrono::duration_cast<std::chrono::microseconds>(now - it->sent_at);
  }
  finished_runs_.remember(std::hash<std::string>{}(it->run_id));
  runs_.erase(it);
  return out;
}

std::chrono::microseconds first_start_offset(std::size_t index, std::chrono::microseconds interval) {
  // Through a seed_seq: minstd_rand seeded directly with 1, 2, 3... starts with 48271, 96542,
  // ..., which put a thousand connections' first runs into the first 2% of the interval.
  auto wide = static_cast<std::uint64_t>(index);
  std::seed_seq seeds{static_cast<std::uint32_t>(wide), static_cast<std::uint32_t>(wide >> 32),
                      0x10adu};
  std::minstd_rand random{seeds};
  return std::chrono::microseconds{
    std::uniform_int_distribution<std::int64_t>{0, interval.count()}(random)};
}

} // namespace er::load
