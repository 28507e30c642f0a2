// The publish scenario's part of router-load's bookkeeping (see actors/load_check.hpp): what
// one connection is owed by the publisher, and the publish section of the report.

#include <cmath>
#include <sstream>

#include "load/load_report.hpp"

namespace er::load {

using json = nlohmann::json;

const std::pair<std::uint64_t, bool>* frame_checker::done_publish(std::uint64_t seq) const {
  return publishes_done_.find_if([seq](auto& done) { return done.first == seq; });
}

void frame_checker::expect_publish(std::uint64_t seq, clock::time_point sent_at) {
  if (done_publish(seq) || !publishes_.emplace(seq, sent_at).second)
    return; // announced twice: still owed once
  ++publishes_expected_;
}

bool frame_checker::cancel_publish(std::uint64_t seq) {
  auto it = publishes_.find(seq);
  if (it == publishes_.end())
    return false;
  publishes_.erase(it);
  publishes_done_.remember({seq, false});
  return true;
}

frame_outcome frame_checker::on_published(const envelope_fields& frame, clock::time_point now) {
  if (!frame.data_is_object || !frame.data_user || !frame.data_seq)
    return {frame_verdict::unexpected, "malformed_publish"};
  // Stamped with this user's id by the router, but published for someone else.
  if (*frame.data_user != user_id_)
    return {frame_verdict::leak, "foreign_publish"};
  auto n = *frame.data_seq;
  auto it = publishes_.find(n);
  if (it == publishes_.end()) {
    auto done = done_publish(n);
    if (!done)
      return {frame_verdict::unexpected, "unannounced_publish"};
    return {frame_verdict::unexpected, done->second ? "duplicate_publish" : "publish_after_failure"};
  }
  frame_outcome out{frame_verdict::completed, {}};
  out.round_trip = std::chrono::duration_cast<std::chrono::microseconds>(now - it->second);
  publishes_.erase(it);
  publishes_done_.remember({n, true});
  ++publishes_received_;
  return out;
}

namespace {

double rate(std::uint64_t n, double seconds) {
  return seconds > 0 ? std::round(10.0 * static_cast<double>(n) / seconds) / 10.0 : 0.0;
}

} // namespace

json publish_json(const load_report& r) {
  auto& t = r.totals;
  return json{
    {"published", t.publishes},
    {"publishes_per_s", rate(t.publishes, r.window_seconds)},
    {"skipped", t.publishes_skipped},
    {"deliveries", t.completed},
    {"deliveries_in_window", t.completed_in_window},
    {"deliveries_per_s", rate(t.completed_in_window, r.window_seconds)},
    {"delivered_sum", t.publish_delivered},
    {"expected_deliveries", t.publish_expected},
  };
}

std::string publish_summary(const load_report& r) {
  auto j = publish_json(r);
  std::ostringstream out;
  out << "  publish      " << r.totals.publishes << " published = "
      << j["publishes_per_s"].get<double>() << "/s, " << r.totals.completed_in_window
      << " deliveries = " << j["deliveries_per_s"].get<double>() << "/s; router's delivered "
      << r.totals.publish_delivered << " (connections of the targets " << r.totals.publish_expected
      << ", received " << r.totals.completed << ")";
  if (r.totals.publishes_skipped > 0)
    out << ", " << r.totals.publishes_skipped << " skipped (backlog)";
  out << "\n";
  return out.str();
}

} // namespace er::load
