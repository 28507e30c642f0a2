#include "actors/metrics.hpp"

#include <array>

#include <malloc.h>

#include <prometheus/text_serializer.h>

#include "context/jwt_auth.hpp"
#include "protocol/close_codes.hpp"
#include "protocol/message_types.hpp"

namespace er::actors {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

constexpr std::array<const char*, 3> outcomes{"completed", "error", "stopped"};
constexpr std::array<const char*, 2> eviction_reasons{"per_user_limit", "replay_budget"};

} // namespace

router_metrics::router_metrics()
  : registry_(std::make_shared<prometheus::Registry>()),
    messages_in_(BuildCounter().Name("router_messages_in_total")
                   .Help("Client messages received, by type").Register(*registry_)),
    events_out_(BuildCounter().Name("router_events_out_total")
                  .Help("Events sent to clients, by type").Register(*registry_)),
    runs_total_(BuildCounter().Name("router_agent_runs_total")
                  .Help("Agent runs ended, by outcome").Register(*registry_)),
    auth_failures_(BuildCounter().Name("router_auth_failures_total")
                     .Help("Refused upgrade requests, by reason").Register(*registry_)),
    closes_(BuildCounter().Name("router_closes_total")
              .Help("Closed WebSocket connections, by close code").Register(*registry_)),
    publishes_(BuildCounter().Name("router_publishes_total")
                 .Help("Events accepted by the publish API").Register(*registry_).Add({})),
    slow_consumers_(BuildCounter().Name("router_slow_consumer_disconnects_total")
                      .Help("Connections closed with 4008 (outbound queue full)")
                      .Register(*registry_).Add({})),
    accept_pauses_(BuildCounter().Name("router_accept_pauses_total")
                     .Help("Times accepting waited: router.max-http-connections were open")
                     .Register(*registry_).Add({})),
    connections_(BuildGauge().Name("router_connections").Help("Open WebSocket connections")
                   .Register(*registry_).Add({})),
    users_(BuildGauge().Name("router_users").Help("Users with at least one connection")
             .Register(*registry_).Add({})),
    detached_(BuildGauge().Name("router_detached_sessions")
                .Help("Sessions without a connection, waiting for a resume")
                .Register(*registry_).Add({})),
    heap_in_use_(BuildGauge().Name("router_heap_in_use_bytes")
                   .Help("Heap memory allocated and not freed (the allocator's account)")
                   .Register(*registry_).Add({})),
    heap_free_(BuildGauge().Name("router_heap_free_bytes")
                 .Help("Free heap memory in the allocator's arenas (a trim returns its pages)")
                 .Register(*registry_).Add({})),
    heap_trims_(BuildCounter().Name("router_heap_trims_total")
                  .Help("Times the idle heap's pages were returned to the system")
                  .Register(*registry_).Add({})),
    runs_active_(BuildGauge().Name("router_agent_runs_active").Help("Agent runs in progress")
                   .Register(*registry_).Add({})),
    evictions_(BuildCounter().Name("router_detached_evictions_total")
                 .Help("Detached sessions ended early, by reason").Register(*registry_)),
    replay_caps_(BuildCounter().Name("router_replay_caps_total")
                   .Help("Times the replay budget capped the buffers of connected sessions")
                   .Register(*registry_).Add({})),
    replay_bytes_(BuildGauge().Name("router_replay_buffer_bytes")
                    .Help("Memory held by all replay buffers").Register(*registry_).Add({})),
    replay_budget_(BuildGauge().Name("router_replay_budget_bytes")
                     .Help("router.replay-budget-bytes in effect").Register(*registry_).Add({})),
    cluster_redis_up_(BuildGauge().Name("router_cluster_redis_up")
                        .Help("1 when every Redis shard answers (cluster.redis set)")
                        .Register(*registry_).Add({})),
    cluster_nodes_(BuildGauge().Name("router_cluster_nodes").Help("Live nodes of the cluster")
                     .Register(*registry_).Add({})),
    cluster_in_(BuildCounter().Name("router_cluster_bus_messages_in_total")
                  .Help("Messages received from the cluster's channels").Register(*registry_).Add({})),
    cluster_out_(BuildCounter().Name("router_cluster_bus_messages_out_total")
                   .Help("Publishes and disconnects sent through the cluster")
                   .Register(*registry_).Add({})),
    cluster_gaps_filled_(BuildCounter().Name("router_cluster_gaps_filled_total")
                           .Help("Gaps in a user's offsets filled from the history")
                           .Register(*registry_).Add({})),
    cluster_gaps_lost_(BuildCounter().Name("router_cluster_gaps_lost_total")
                         .Help("Gaps that could not be filled: sessions closed with 4010")
                         .Register(*registry_).Add({})),
    delivery_latency_(BuildHistogram().Name("router_event_delivery_latency_seconds")
                        .Help("From an event's creation to its hand-off to the socket")
                        .Register(*registry_)
                        .Add({}, prometheus::Histogram::BucketBoundaries{
                                   0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                   0.025, 0.05, 0.1, 0.25, 1})) {
  auto add_types = [](counter_map& map, prometheus::Family<prometheus::Counter>& family,
                      auto&& types) {
    for (auto t : types)
      map.emplace(std::string{t}, &family.Add({{"type", std::string{t}}}));
  };
  add_types(in_by_type_, messages_in_, protocol::client_message_types);
  add_types(out_by_type_, events_out_, protocol::reply_types);
  add_types(out_by_type_, events_out_, protocol::agent_event_types);
  add_types(out_by_type_, events_out_, std::array<const char*, 1>{"published"});
  in_by_type_.emplace("other", &messages_in_.Add({{"type", "other"}}));
  out_by_type_.emplace("other", &events_out_.Add({{"type", "other"}}));
  for (auto r : eviction_reasons)
    evictions_by_reason_.emplace(r, &evictions_.Add({{"reason", r}}));
  for (auto o : outcomes)
    runs_by_outcome_.emplace(o, &runs_total_.Add({{"outcome", o}}));
  for (int r = static_cast<int>(context::auth_failure::missing_token);
       r <= static_cast<int>(context::auth_failure::invalid_subject); ++r) {
    auto reason = std::string{context::to_string(static_cast<context::auth_failure>(r))};
    auth_by_reason_.emplace(reason, &auth_failures_.Add({{"reason", reason}}));
  }
  auth_by_reason_.emplace("other", &auth_failures_.Add({{"reason", "other"}}));
  auto add_code = [this](std::uint16_t c) {
    closes_by_code_.emplace(std::to_string(c), &closes_.Add({{"code", std::to_string(c)}}));
  };
  for (const auto& c : close_code::all)
    add_code(c.code);
  add_code(1006); // no close frame: a reset or a lost connection
  closes_by_code_.emplace("other", &closes_.Add({{"code", "other"}}));
}

prometheus::Counter& router_metrics::pick(const counter_map& cache, std::string_view value) {
  auto it = cache.find(std::string{value});
  return it != cache.end() ? *it->second : *cache.at("other");
}

void router_metrics::message_in(std::string_view type) {
  pick(in_by_type_, type).Increment();
}

void router_metrics::event_out(std::string_view type, double latency_seconds) {
  pick(out_by_type_, type).Increment();
  if (latency_seconds >= 0)
    delivery_latency_.Observe(latency_seconds);
}

void router_metrics::run_started() {
  runs_active_.Increment();
}

void router_metrics::run_ended(std::string_view outcome) {
  runs_active_.Decrement();
  runs_by_outcome_.at(std::string{outcome})->Increment();
}

void router_metrics::accept_paused() {
  accept_pauses_.Increment();
}

void router_metrics::auth_failure(std::string_view reason) {
  pick(auth_by_reason_, reason).Increment();
}

void router_metrics::closed(std::uint16_t code) {
  pick(closes_by_code_, std::to_string(code)).Increment();
  if (code == close_code::slow_consumer.code)
    slow_consumers_.Increment();
}

void router_metrics::published() {
  publishes_.Increment();
}

void router_metrics::connection_opened() {
  connections_.Increment();
}

void router_metrics::connection_closed() {
  connections_.Decrement();
}

void router_metrics::set_users(double users) {
  users_.Set(users);
}

void router_metrics::detached_evicted(std::string_view reason) {
  evictions_by_reason_.at(std::string{reason})->Increment();
}

void router_metrics::replay_capped() {
  replay_caps_.Increment();
}

void router_metrics::set_replay(double bytes, double budget) {
  replay_bytes_.Set(bytes);
  replay_budget_.Set(budget);
}

void router_metrics::set_cluster(bool redis_up, double nodes) {
  cluster_redis_up_.Set(redis_up ? 1 : 0);
  cluster_nodes_.Set(nodes);
}

void router_metrics::cluster_message_in() {
  cluster_in_.Increment();
}

void router_metrics::cluster_message_out() {
  cluster_out_.Increment();
}

void router_metrics::cluster_gap_filled() {
  cluster_gaps_filled_.Increment();
}

void router_metrics::cluster_gap_lost() {
  cluster_gaps_lost_.Increment();
}

void router_metrics::set_detached(double sessions) {
  detached_.Set(sessions);
}

heap_account read_heap() {
  heap_account heap;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  auto info = mallinfo2();
  heap.in_use = info.uordblks + info.hblkhd;
  heap.free = info.fordblks;
#endif
  return heap;
}

void router_metrics::set_server_id(const std::string& server_id) {
  BuildGauge()
    .Name("router_info")
    .Help("Always 1; its server_id label is this node's router.server-id")
    .Register(*registry_)
    .Add({{"server_id", server_id}})
    .Set(1);
}

void router_metrics::sample_heap() {
  auto heap = read_heap();
  heap_in_use_.Set(static_cast<double>(heap.in_use));
  heap_free_.Set(static_cast<double>(heap.free));
}

void router_metrics::heap_trimmed() {
  heap_trims_.Increment();
}

double router_metrics::active_runs() const {
  return runs_active_.Value();
}

std::string router_metrics::render() const {
  return prometheus::TextSerializer{}.Serialize(registry_->Collect());
}

} // namespace er::actors
