#pragma once
// The bookkeeping of router-load, free of actors and sockets so that it is testable alone:
// what one connection is owed and whether each frame it receives is its own and in order
// (frame_checker). Latency percentiles: latency_histogram.hpp; counters and the final report
// with its verdict: load_report.hpp. A "leak" is a frame a connection receives that is not its own:
// another user's user_id, or a reply or run event for a request this connection never made.
// Published events (the publish scenario) are owed to every connection of their user exactly
// once: the publisher announces each to the checkers of that user's connections before it
// publishes (expect_publish), and a publish that failed is taken back (cancel_publish).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>


namespace er::load {

using clock = std::chrono::steady_clock;

/// What a frame means to the connection that received it.
enum class frame_verdict {
  greeting,    ///< connection_established, first and with event_id 0
  progress,    ///< an expected event of a run still going
  completed,   ///< the last frame a request was owed (a pong, a run's agent_completed)
  leak,        ///< not this connection's: see the header comment
  error_reply, ///< an `error` frame or a failed run (agent_error, agent_stopped)
  unexpected,  ///< out of order, duplicated, of an unknown type, or not JSON
};

struct frame_outcome {
  frame_verdict verdict = frame_verdict::unexpected;
  std::string kind;                       ///< for leaks and errors: what exactly
  std::chrono::microseconds round_trip{}; ///< with `completed`: since the request was sent
  std::uint64_t skipped_events = 0;       ///< a gap in event_id before this frame
};

/// The last `N` values remembered, the oldest forgotten first: a connection's memory of what it
/// is done with stays flat however long the load runs.
template <class T, std::size_t N>
class recent_ring {
public:
  void remember(T value) {
    if (items_.size() < N)
      return items_.push_back(std::move(value));
    items_[oldest_] = std::move(value);
    oldest_ = (oldest_ + 1) % N;
  }
  /// The newest remembered value that satisfies `pred`, or null.
  template <class Pred>
  const T* find_if(Pred pred) const {
    for (std::size_t i = items_.size(); i-- > 0;) {
      auto& item = items_[(oldest_ + i) % items_.size()];
      if (pred(item))
        return &item;
    }
    return nullptr;
  }

private:
  std::vector<T> items_;
  std::size_t oldest_ = 0; ///< once full, the next one overwritten
};

/// The fields of a server envelope the checks read, taken from the frame by simdjson's
/// validating parser (router-load reads every frame of every connection: nlohmann's parser
/// took half of its CPU). `valid` is false when the frame is not valid JSON or not an
/// object; absent fields stay empty.
struct envelope_fields {
  bool valid = false;
  std::optional<std::string> user_id;
  std::string type;
  std::int64_t event_id = -1;
  std::optional<std::string> run_id;   ///< only when a string
  std::optional<std::string> reply_to; ///< only when a string
  bool data_is_object = false;
  std::optional<std::string> data_code; ///< error frames: data.code
  std::optional<std::string> data_user; ///< published frames: data.user
  std::optional<std::uint64_t> data_seq; ///< published frames: data.seq

  static envelope_fields read(std::string_view text);
};

/// One connection's expectations: the pings and demo runs it started, in order.
/// Request ids are `<prefix>p<n>` and `<prefix>r<n>`: unique across connections when each
/// connection has its own prefix, so a reply to anyone else's request is recognised.
class frame_checker {
public:
  /// `agent`: the agent its runs start; its events must have the demo's shape.
  frame_checker(std::string user_id, std::string prefix, int demo_steps,
                std::string agent = "demo");

  /// The next ping frame to send; its pong is owed.
  std::string ping(clock::time_point now);
  /// The next start_agent frame (the demo agent); agent_started, demo_steps x agent_thinking,
  /// tool_executing, tool_completed and agent_completed are owed, in that order.
  std::string start_demo_run(clock::time_point now);

  /// Publish: event `seq` was published to this connection's user at `sent_at` (before the
  /// router can deliver it); it is owed exactly once.
  void expect_publish(std::uint64_t seq, clock::time_point sent_at);
  /// Publish: the publish of `seq` failed; whether it was still owed.
  bool cancel_publish(std::uint64_t seq);

  frame_outcome check(std::string_view text, clock::time_point now);

  bool greeted() const { return greeted_; }
  std::size_t pending_pings() const { return pings_.size(); }
  std::size_t pending_runs() const { return runs_.size(); }
  std::size_t pending_publishes() const { return publishes_.size(); }
  /// Published events announced to this connection, and of those received (once each).
  std::uint64_t publishes_expected() const { return publishes_expected_; }
  std::uint64_t publishes_received() const { return publishes_received_; }
  /// Events still owed to this connection by its pending pings and runs.
  std::uint64_t owed_events() const;

private:
  struct run {
    std::uint64_t request = 0;
    std::string run_id; ///< empty until agent_started
    int received = 0;   ///< events received, agent_started included
    bool out_of_order = false;
    clock::time_point sent_at;
  };

  /// The request number of an id this connection made with `tag` ('p' or 'r'), or -1.
  std::int64_t own_request(const std::optional<std::string>& reply_to, char tag) const;
  frame_outcome on_pong(const envelope_fields& frame, clock::time_point now);
  frame_outcome on_error(const envelope_fields& frame);
  frame_outcome on_agent_started(const envelope_fields& frame);
  frame_outcome on_run_event(const envelope_fields& frame, clock::time_point now);
  frame_outcome on_published(const envelope_fields& frame, clock::time_point now);
  const std::pair<std::uint64_t, bool>* done_publish(std::uint64_t seq) const;
  std::string expected_type(int received) const;
  int events_per_run() const { return demo_steps_ + 4; }

  std::string user_id_;
  std::string prefix_;
  int demo_steps_;
  std::string start_suffix_; ///< the end of every start_agent frame: the agent and its input
  bool greeted_ = false;
  std::uint64_t next_event_id_ = 1;
  std::uint64_t next_request_ = 0;
  std::deque<std::pair<std::uint64_t, clock::time_point>> pings_;
  std::vector<run> runs_;
  /// The last 64 runs finished (their ids' hashes), to tell a late event of one of them (the
  /// router's fault: event_after_final) from an event of a run that is not this connection's
  /// (a leak); an event of a run finished earlier than those counts as foreign.
  recent_ring<std::size_t, 64> finished_runs_;
  std::unordered_map<std::uint64_t, clock::time_point> publishes_; ///< owed: seq -> published at
  /// The last 64 publishes no longer owed: seq, and true when received, false when taken back.
  /// A publish done before those and received again counts as unannounced.
  recent_ring<std::pair<std::uint64_t, bool>, 64> publishes_done_;
  std::uint64_t publishes_expected_ = 0;
  std::uint64_t publishes_received_ = 0;
};

/// The `type` of the events the publish scenario publishes; their data is
/// {"seq": <unique number>, "user": <the target user>}.
inline constexpr const char* publish_event_type = "load.publish";

/// When connection `index` starts its first run, in [0, interval]: spread evenly over the
/// interval by a generator seeded per connection, so that connections do not run in step.
std::chrono::microseconds first_start_offset(std::size_t index, std::chrono::microseconds interval);


} // namespace er::load
