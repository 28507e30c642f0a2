#pragma once
// router-load's counters (what a client reports to the collector, and the totals) and the
// final report of a run with its verdict.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "load/latency_histogram.hpp"
#include "load/load_check.hpp"

namespace er::load {

/// Additive counters: what one client reports to the collector and the collector's totals.
struct load_counters {
  std::uint64_t sent = 0;                ///< requests sent
  std::uint64_t received = 0;            ///< frames received
  std::uint64_t completed = 0;           ///< round trips: pongs, finished runs, churn cycles
  std::uint64_t completed_in_window = 0; ///< of those, inside the measured window
  std::uint64_t established = 0;         ///< connection_established greetings
  std::uint64_t connect_failures = 0;
  std::int64_t open = 0;                 ///< connections open (+1 when opened, -1 when closed)
  std::uint64_t leaks = 0;
  std::uint64_t missing = 0;             ///< events owed and never received
  std::map<std::string, std::uint64_t> leak_kinds;
  std::map<std::string, std::uint64_t> errors; ///< unexpected outcomes by kind
  // publish: counted by the publisher (deliveries are `completed` of the clients)
  std::uint64_t publishes = 0;            ///< publishes the router accepted (202); all are
                                          ///< sent inside the measured window
  std::uint64_t publishes_skipped = 0;    ///< not sent: too many requests were outstanding
  std::uint64_t publish_delivered = 0;    ///< the router's `delivered` answers, summed
  std::uint64_t publish_expected = 0;     ///< connections of the target users, summed

  void add(const load_counters& other);
  /// Counts one checked frame (received, leaks, errors, skipped events).
  void tally(const frame_outcome& outcome);
  void error(const std::string& kind, std::uint64_t n = 1);
  std::uint64_t error_count() const;
};

/// The outcome of one router-load run.
struct load_report {
  std::string scenario;
  std::string latency_of;     ///< what one latency sample measures
  nlohmann::json options;     ///< the run's parameters, echoed
  std::uint64_t target_connections = 0;
  bool needs_round_trips = true; ///< false for idle: holding connections is the work
  std::int64_t peak_open = 0;
  double ramp_seconds = 0;    ///< until every connection had its first connect attempt done
  double window_seconds = 0;  ///< the measured window
  load_counters totals;
  latency_histogram latency;

  /// Every reason this run failed; empty when it passed.
  std::vector<std::string> failures() const;
  nlohmann::json to_json() const;
  std::string summary() const;
};

/// The publish section of a report (load_publish_check.cpp).
nlohmann::json publish_json(const load_report& report);
std::string publish_summary(const load_report& report);

/// 0 when the report passed, 1 otherwise (router-load's exit status).
int exit_status(const load_report& report);

} // namespace er::load
