#include "load/load_check.hpp"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iomanip>
#include <limits>
#include <random>
#include <sstream>

namespace er::load {

using json = nlohmann::json;

// -- latency_histogram ----------------------------------------------------------

namespace {

constexpr int sub_bits = 7; // values below 128 are exact; above, 64 buckets per octave
constexpr std::uint64_t linear = std::uint64_t{1} << sub_bits;
constexpr std::uint64_t half = linear / 2;

std::size_t bucket_of(std::uint64_t v) {
  if (v < linear)
    return static_cast<std::size_t>(v);
  int msb = 63 - __builtin_clzll(v);
  int shift = msb - (sub_bits - 1);
  auto top = v >> shift; // in [half, linear)
  return static_cast<std::size_t>(linear + static_cast<std::uint64_t>(msb - sub_bits) * half
                                  + (top - half));
}

std::uint64_t upper_bound_of(std::size_t bucket) {
  if (bucket < linear)
    return bucket;
  auto rest = bucket - linear;
  auto octave = rest / half;
  auto top = half + rest % half;
  auto shift = octave + 1;
  return ((top + 1) << shift) - 1;
}

} // namespace

void latency_histogram::record(std::uint64_t micros) {
  auto b = bucket_of(micros);
  if (b >= buckets_.size())
    buckets_.resize(b + 1);
  ++buckets_[b];
  ++count_;
  max_ = std::max(max_, micros);
  sum_ += static_cast<double>(micros);
}

void latency_histogram::merge(const latency_histogram& other) {
  if (other.buckets_.size() > buckets_.size())
    buckets_.resize(other.buckets_.size());
  for (std::size_t i = 0; i < other.buckets_.size(); ++i)
    buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void latency_histogram::clear() {
  buckets_.clear();
  count_ = 0;
  max_ = 0;
  sum_ = 0;
}

double latency_histogram::mean() const {
  return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_);
}

std::uint64_t latency_histogram::percentile(double q) const {
  if (count_ == 0)
    return 0;
  auto rank = static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * count_));
  rank = std::max<std::uint64_t>(rank, 1);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank)
      return std::min(upper_bound_of(i), max_);
  }
  return max_;
}

// -- frame_checker --------------------------------------------------------------

frame_checker::frame_checker(std::string user_id, std::string prefix, int demo_steps)
  : user_id_(std::move(user_id)), prefix_(std::move(prefix)), demo_steps_(demo_steps) {
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
  return R"({"type":"start_agent","id":")" + prefix_ + "r" + std::to_string(n)
         + R"(","payload":{"agent":"demo","input":"load"}})";
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
    return finished_runs_.count(run_id) != 0
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
  finished_runs_.insert(it->run_id);
  runs_.erase(it);
  return out;
}

// -- load_counters ----------------------------------------------------------------

void load_counters::add(const load_counters& o) {
  sent += o.sent;
  received += o.received;
  completed += o.completed;
  completed_in_window += o.completed_in_window;
  established += o.established;
  connect_failures += o.connect_failures;
  open += o.open;
  leaks += o.leaks;
  missing += o.missing;
  publishes += o.publishes;
  publishes_skipped += o.publishes_skipped;
  publish_delivered += o.publish_delivered;
  publish_expected += o.publish_expected;
  for (auto& [kind, n] : o.leak_kinds)
    leak_kinds[kind] += n;
  for (auto& [kind, n] : o.errors)
    errors[kind] += n;
}

void load_counters::tally(const frame_outcome& outcome) {
  ++received;
  missing += outcome.skipped_events;
  if (outcome.verdict == frame_verdict::leak) {
    ++leaks;
    ++leak_kinds[outcome.kind];
  } else if (outcome.verdict == frame_verdict::error_reply
             || outcome.verdict == frame_verdict::unexpected) {
    error(outcome.kind);
  }
}

void load_counters::error(const std::string& kind, std::uint64_t n) {
  errors[kind] += n;
}

std::uint64_t load_counters::error_count() const {
  std::uint64_t n = 0;
  for (auto& [kind, count] : errors)
    n += count;
  return n;
}

// -- load_report ------------------------------------------------------------------

std::vector<std::string> load_report::failures() const {
  std::vector<std::string> out;
  if (totals.leaks > 0)
    out.push_back(std::to_string(totals.leaks) + " leaked frames (frames of another user or connection)");
  if (totals.missing > 0)
    out.push_back(std::to_string(totals.missing) + " missing events");
  if (auto n = totals.error_count(); n > 0)
    out.push_back(std::to_string(n) + " unexpected errors");
  if (scenario != "churn" && totals.established < target_connections)
    out.push_back("only " + std::to_string(totals.established) + " of "
                  + std::to_string(target_connections) + " connections were established");
  if (needs_round_trips && totals.completed == 0)
    out.push_back(scenario == "publish" ? "no published event was delivered"
                                        : "no round trip completed");
  if (scenario == "publish" && totals.publishes == 0)
    out.push_back("the router accepted no publish");
  return out;
}

namespace {

double per_second(std::uint64_t n, double seconds) {
  return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}

double rounded(double v, int digits = 1) {
  auto f = std::pow(10.0, digits);
  return std::round(v * f) / f;
}

} // namespace

json load_report::to_json() const {
  auto fails = failures();
  bool churn = scenario == "churn";
  auto connect_rate = churn ? per_second(totals.established, window_seconds)
                            : per_second(totals.established, ramp_seconds);
  auto j = json{
    {"scenario", scenario},
    {"verdict", fails.empty() ? "pass" : "fail"},
    {"failures", fails},
    {"options", options},
    {"connections",
     {{"target", target_connections},
      {"established", totals.established},
      {"failed", totals.connect_failures},
      {"peak_open", peak_open},
      {"ramp_s", rounded(ramp_seconds, 3)},
      {"connect_rate_per_s", rounded(connect_rate)}}},
    {"window_s", rounded(window_seconds, 3)},
    {"messages",
     {{"sent", totals.sent},
      {"received", totals.received},
      {"round_trips", totals.completed},
      {"round_trips_in_window", totals.completed_in_window}}},
    {"throughput_per_s", rounded(per_second(totals.completed_in_window, window_seconds))},
    {"latency_us",
     {{"of", latency_of},
      {"count", latency.count()},
      {"mean", rounded(latency.mean())},
      {"p50", latency.percentile(0.50)},
      {"p90", latency.percentile(0.90)},
      {"p99", latency.percentile(0.99)},
      {"p99_9", latency.percentile(0.999)},
      {"max", latency.max()}}},
    {"leaks", totals.leaks},
    {"leak_kinds", totals.leak_kinds},
    {"missing_events", totals.missing},
    {"errors", totals.errors},
  };
  if (scenario == "publish")
    j["publish"] = publish_json(*this);
  return j;
}

std::string load_report::summary() const {
  auto j = to_json();
  auto ms = [](std::uint64_t us) {
    std::ostringstream o;
    o << std::fixed << std::setprecision(us < 10000 ? 3 : 1) << static_cast<double>(us) / 1000.0
      << " ms";
    return o.str();
  };
  std::ostringstream out;
  out << "router-load " << scenario << ": " << j["verdict"].get<std::string>() << "\n"
      << "  connections  " << totals.established
      << (scenario == "churn" ? " established by " : " established of ") << target_connections
      << (scenario == "churn" ? " clients" : "") << " (peak open " << peak_open << ", "
      << totals.connect_failures << " failed), "
      << j["connections"]["connect_rate_per_s"].get<double>() << " connects/s\n"
      << "  window       " << j["window_s"].get<double>() << " s, " << totals.completed_in_window
      << " round trips = " << j["throughput_per_s"].get<double>() << "/s (" << totals.sent
      << " sent, " << totals.received << " frames received)\n"
      << "  latency      " << latency_of << ": p50 " << ms(latency.percentile(0.5)) << ", p90 "
      << ms(latency.percentile(0.9)) << ", p99 " << ms(latency.percentile(0.99)) << ", p99.9 "
      << ms(latency.percentile(0.999)) << ", max " << ms(latency.max()) << " ("
      << latency.count() << " samples)\n"
      << "  leaks        " << totals.leaks << ", missing events " << totals.missing
      << ", errors " << totals.error_count() << "\n";
  if (scenario == "publish")
    out << publish_summary(*this);
  for (auto& [kind, n] : totals.leak_kinds)
    out << "    leak  " << kind << ": " << n << "\n";
  for (auto& [kind, n] : totals.errors)
    out << "    error " << kind << ": " << n << "\n";
  for (auto& f : failures())
    out << "  FAIL: " << f << "\n";
  return out.str();
}

int exit_status(const load_report& report) {
  return report.failures().empty() ? 0 : 1;
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
