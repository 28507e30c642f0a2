#include "actors/metrics.hpp"

#include <array>

#include <prometheus/text_serializer.h>

#include "context/jwt_auth.hpp"

namespace er::actors {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

constexpr std::array<const char*, 8> inbound_types{
  "ping", "create_thread", "list_threads", "get_thread_history",
  "user_message", "start_agent", "stop_agent", "other"};

constexpr std::array<const char*, 16> outbound_types{
  "connection_established", "pong", "error", "thread_created", "thread_list",
  "thread_history", "agent_started", "agent_thinking", "tool_executing", "tool_completed",
  "agent_progress", "agent_completed", "agent_error", "agent_stopped", "published", "other"};

constexpr std::array<const char*, 3> outcomes{"completed", "error", "stopped"};

constexpr std::array<std::uint16_t, 14> close_codes{1000, 1001, 1006, 1009, 1011, 4008, 4009,
                                                    4029, 4501, 4503, 4510, 4511, 1002, 1007};

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
    connections_(BuildGauge().Name("router_connections").Help("Open WebSocket connections")
                   .Register(*registry_).Add({})),
    users_(BuildGauge().Name("router_users").Help("Users with at least one connection")
             .Register(*registry_).Add({})),
    runs_active_(BuildGauge().Name("router_agent_runs_active").Help("Agent runs in progress")
                   .Register(*registry_).Add({})),
    delivery_latency_(BuildHistogram().Name("router_event_delivery_latency_seconds")
                        .Help("From an event's creation to its hand-off to the socket")
                        .Register(*registry_)
                        .Add({}, prometheus::Histogram::BucketBoundaries{
                                   0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                   0.025, 0.05, 0.1, 0.25, 1})) {
  for (auto t : inbound_types)
    in_by_type_.emplace(t, &messages_in_.Add({{"type", t}}));
  for (auto t : outbound_types)
    out_by_type_.emplace(t, &events_out_.Add({{"type", t}}));
  for (auto o : outcomes)
    runs_by_outcome_.emplace(o, &runs_total_.Add({{"outcome", o}}));
  for (int r = static_cast<int>(context::auth_failure::missing_token);
       r <= static_cast<int>(context::auth_failure::invalid_subject); ++r) {
    auto reason = std::string{context::to_string(static_cast<context::auth_failure>(r))};
    auth_by_reason_.emplace(reason, &auth_failures_.Add({{"reason", reason}}));
  }
  auth_by_reason_.emplace("other", &auth_failures_.Add({{"reason", "other"}}));
  for (auto c : close_codes)
    closes_by_code_.emplace(std::to_string(c), &closes_.Add({{"code", std::to_string(c)}}));
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

void router_metrics::auth_failure(std::string_view reason) {
  pick(auth_by_reason_, reason).Increment();
}

void router_metrics::closed(std::uint16_t code) {
  pick(closes_by_code_, std::to_string(code)).Increment();
  if (code == 4008)
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

double router_metrics::active_runs() const {
  return runs_active_.Value();
}

std::string router_metrics::render() const {
  return prometheus::TextSerializer{}.Serialize(registry_->Collect());
}

} // namespace er::actors
