#pragma once
// The router's Prometheus metrics (prometheus-cpp core). One instance per router process,
// owned by router_server and shared read-only with the actors; every metric is thread-safe.
// Label values come from closed sets (known message types, close codes, reasons), never from
// client input, so the number of series stays bounded.

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace er::actors {

/// The allocator's own account of the heap (glibc's mallinfo2, which walks every arena).
/// Elsewhere than glibc both are 0.
struct heap_account {
  std::size_t in_use = 0; ///< allocated and not freed: arenas and mmapped blocks
  std::size_t free = 0;   ///< free chunks in the arenas, their pages resident or not
};
heap_account read_heap();

class router_metrics {
public:
  router_metrics();

  void message_in(std::string_view type);
  void event_out(std::string_view type, double latency_seconds);
  void run_started();
  void run_ended(std::string_view outcome); ///< completed, error, stopped
  void auth_failure(std::string_view reason);
  void accept_paused(); ///< the listener waits: router.max-http-connections are open
  void closed(std::uint16_t code);
  void published();
  void connection_opened();
  void connection_closed();
  void set_users(double users);
  void set_detached(double sessions);
  void detached_evicted(std::string_view reason); ///< per_user_limit, replay_budget
  void replay_capped();
  void set_replay(double bytes, double budget);
  // the cluster bus
  void set_cluster(bool redis_up, double nodes);
  void cluster_message_in();
  void cluster_message_out();
  void cluster_gap_filled();
  void cluster_gap_lost();

  double active_runs() const;

  /// router_info{server_id="<id>"} 1: which node these metrics are from (DESIGN §10). Once.
  void set_server_id(const std::string& server_id);
  /// Reads read_heap() into the heap gauges (once per scrape). In use against RSS tells a leak
  /// from memory the allocator keeps.
  void sample_heap();
  void heap_trimmed(); ///< app::heap_trimmer handed free pages back to the system

  /// The text exposition format of every metric.
  std::string render() const;

private:
  using counter_map = std::unordered_map<std::string, prometheus::Counter*>;
  /// The counter of a known label value, else the "other" one.
  static prometheus::Counter& pick(const counter_map& cache, std::string_view value);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& messages_in_;
  prometheus::Family<prometheus::Counter>& events_out_;
  prometheus::Family<prometheus::Counter>& runs_total_;
  prometheus::Family<prometheus::Counter>& auth_failures_;
  prometheus::Family<prometheus::Counter>& closes_;
  prometheus::Counter& publishes_;
  prometheus::Counter& slow_consumers_;
  prometheus::Counter& accept_pauses_;
  prometheus::Gauge& connections_;
  prometheus::Gauge& users_;
  prometheus::Gauge& detached_;
  prometheus::Gauge& heap_in_use_;
  prometheus::Gauge& heap_free_;
  prometheus::Counter& heap_trims_;
  prometheus::Gauge& runs_active_;
  prometheus::Family<prometheus::Counter>& evictions_;
  prometheus::Counter& replay_caps_;
  prometheus::Gauge& replay_bytes_;
  prometheus::Gauge& replay_budget_;
  prometheus::Gauge& cluster_redis_up_;
  prometheus::Gauge& cluster_nodes_;
  prometheus::Counter& cluster_in_;
  prometheus::Counter& cluster_out_;
  prometheus::Counter& cluster_gaps_filled_;
  prometheus::Counter& cluster_gaps_lost_;
  prometheus::Histogram& delivery_latency_;
  // Filled once in the constructor, read-only afterwards: lookups need no lock.
  counter_map in_by_type_, out_by_type_, runs_by_outcome_, auth_by_reason_, closes_by_code_,
    evictions_by_reason_;
};

} // namespace er::actors
