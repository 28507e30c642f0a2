#include "load/load_report.hpp"

#include <cmath>
#include <iomanip>
#include <sstream>

namespace er::load {

using json = nlohmann::json;

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

} // namespace er::load
