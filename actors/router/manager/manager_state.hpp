#pragma once
// Internal to the connection manager: its state, shared by connection_manager.cpp (socket,
// protocol, dispatch) and manager_runs.cpp (agent runs).

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caf/typed_response_promise.hpp>

#include "actors/router/manager/connection_manager.hpp"
#include "actors/router/manager/replay_buffer.hpp"
#include "actors/router/manager/handlers/thread_handler.hpp"
#include "actors/router/manager/token_bucket.hpp"
#include "net/deadline_clock.hpp"
#include "net/frame_batch.hpp"
#include "protocol/close_codes.hpp"

namespace er::actors {

struct run_entry {
  std::string run_id;
  std::optional<std::string> thread_id;
  std::optional<std::string> reply_to; ///< the id of the request that started the run
  caf::actor actor;
  std::chrono::steady_clock::time_point deadline; ///< the agent's timeout from its start
  /// running: its events are forwarded; storing_result: its agent_completed waits for the
  /// thread store (the run says nothing more and can no longer be stopped); finished: its
  /// one final event has been sent.
  enum class phase { running, storing_result, finished } state = phase::running;
  bool exited = false; ///< its actor ended while its result was being stored

  bool active() const noexcept {
    return state != phase::finished;
  }
};

/// Wakes a manager with deadline_atom when its earliest run deadline passes. An entry of a
/// net::deadline_clock, so that it goes away with the run table: a CAF delayed message cannot
/// be cancelled, and one per table (a table lives from a connection's first concurrent run to
/// its last) piled up for a whole run timeout under sustained load (a clock entry and a
/// mailbox element per run), each holding its manager alive after the connection closed.
class run_deadline_timer final : public net::deadline_clock::entry {
public:
  run_deadline_timer(net::deadline_clock& clock, manager_actor manager)
    : clock_(clock), manager_(std::move(manager)) {
  }
  ~run_deadline_timer() {
    clock_.cancel(*this); // after this, on_deadline is neither running nor coming
  }
  void arm(std::chrono::steady_clock::time_point at) {
    clock_.schedule(*this, at);
  }

private:
  void on_deadline(std::uint64_t) override; // on the clock's thread, under its lock

  net::deadline_clock& clock_;
  manager_actor manager_; ///< a cycle through the manager's state, broken with the table
};

/// The connection's agent runs. Allocated with the first run and freed when the last one has
/// ended: an idle connection does not carry two empty hash tables.
struct run_table {
  run_table(net::deadline_clock& clock, manager_actor manager)
    : deadline_timer(clock, std::move(manager)) {
  }
  std::unordered_map<caf::actor_addr, run_entry> by_actor;
  std::unordered_map<std::string, caf::actor_addr> by_id;
  std::size_t starting = 0; ///< accepted, waiting for the thread store
  /// When the deadline check is due; max(): none armed. One timer covers every run's timeout.
  std::chrono::steady_clock::time_point deadline_check = std::chrono::steady_clock::time_point::max();
  run_deadline_timer deadline_timer;
  /// run_sync answers held while the socket is congested (its reader is slower than the runs),
  /// oldest first: they go when it is writable again or when the socket goes, so that a slow
  /// reader slows its runs instead of filling its queue to the 4008 bound.
  std::vector<caf::typed_response_promise<bool>> held_syncs;
};

/// This session's part in a move between nodes (session_handover.hpp). Null for a session
/// that never moved: an idle connection carries one pointer for it.
struct session_moves {
  /// The owner's side. offered: another node is adopting the session, and the events of the
  /// runs left here wait in `held` until it has taken the offer; hosting: it has, and they go
  /// to it (forward_atom). none: this manager has not given its session away.
  enum class away { none, offered, hosting } state = away::none;
  std::vector<protocol::outbound_event> held;
  /// The adopter's side: the runs still going on the node the session came from.
  std::vector<offered_run> remote_runs;
  /// The owner's side, before its offer: another node asked for the session while a start
  /// (waiting for the thread store) or a thread request was still in progress here. The
  /// offer waits for it, so that it lists that run and carries that reply.
  struct waiting_offer {
    caf::typed_response_promise<session_offer> promise;
    std::uint64_t last_event_id = 0;
    std::chrono::steady_clock::time_point until;
  };
  std::optional<waiting_offer> offer_waiting;
  /// The owner's side: the attachment generation of the socket the offer took the session
  /// from, while that socket is still open. What the client sent on it before it saw the
  /// move is still handled here (its answers and runs go to the adopter), so the manager stays
  /// until that socket has closed.
  std::optional<std::uint64_t> old_socket;
};

struct manager_state {
  connection_ptr connection; ///< null while detached
  /// Frames emitted while the manager works through the messages waiting in its mailbox,
  /// sent as one batch when none is left (manager_impl::consume): a run's burst of events
  /// leaves with one dispatch to the socket's strand and one write. Empty, without storage,
  /// between batches. At most max_outbox_frames: a mailbox that never empties (an agent that
  /// floods) must not keep its frames here, past the socket's queue bound (4008).
  net::frame_batch outbox;
  static constexpr std::size_t max_outbox_frames = 64;
  router_feedback router;
  bool shutting_down = false; ///< closing: nothing more is processed
  bool draining = false;      ///< the server stops: no new runs, close once runs ended
  /// A run started in this turn: the outbox waits for its first events (manager_impl).
  bool hold_outbox = false;
  std::uint64_t generation = 0;          ///< counts attach/detach, to match expire timers
  std::unique_ptr<replay_buffer> replay; ///< allocated on first event: idle costs nothing
  std::unique_ptr<protocol::event_renderer> renderer; ///< likewise
  std::unique_ptr<const context::user_execution_context> ctx;
  std::shared_ptr<const manager_settings> settings;
  std::uint64_t next_event_id = 1;
  thread_handler_actor threads; ///< spawned on first use
  /// Ids sent to it, not yet answered, oldest first. A vector: few entries, and libstdc++'s
  /// std::deque allocates its first block even when empty.
  std::vector<std::optional<std::string>> handler_pending;
  std::unique_ptr<run_table> runs; ///< null while no run is starting or running
  token_bucket bucket{0}; ///< filled to messages-burst when the manager starts
  std::size_t refused_in_row = 0;
  std::unique_ptr<session_moves> moves; ///< see session_moves; null: never moved

  manager_state() = default;
  manager_state(const manager_state&) = delete;
  manager_state& operator=(const manager_state&) = delete;
  /// The state dies with the actor, whatever ended it. Every orderly end has closed the
  /// socket already (or is closing it); a socket still here means the manager failed.
  ~manager_state() {
    if (connection) {
      close_connection(close_code::internal_error);
      // Its closed message will find no manager: the close is counted here.
      if (settings && settings->metrics) {
        settings->metrics->closed(close_code::internal_error.code);
        settings->metrics->connection_closed();
      }
    }
    // Runs still active end with the session (their actors are linked): counted as stopped.
    if (runs && settings && settings->metrics)
      for (auto& [addr, entry] : runs->by_actor)
        if (entry.active())
          settings->metrics->run_ended("stopped");
  }

  /// Adds a frame to this turn's outbox (the first one takes a recycled batch).
  void to_outbox(std::string frame) {
    if (outbox.capacity() == 0)
      outbox = net::take_frame_batch();
    outbox.push_back(std::move(frame));
  }

  /// Hands the outbox to the connection (dropped when there is none).
  void flush_outbox() {
    if (!outbox.empty() && connection)
      return connection->send_all(std::exchange(outbox, net::frame_batch{}));
    net::recycle_frame_batch(outbox);
  }

  /// Sends what this turn emitted, then closes the socket.
  void close_connection(const close_reason& why) {
    flush_outbox();
    connection->close(why);
  }

  /// Answers the run_syncs held for a congested socket: it is writable again, or gone (a
  /// detached session's events go to its replay buffer, bounded by the replay budget).
  void release_held_syncs() {
    if (runs)
      for (auto& sync : std::exchange(runs->held_syncs, {}))
        sync.deliver(true);
  }

  static inline const char* name = "connection_manager";
};

using manager_pointer = manager_actor::stateful_pointer<manager_state>;

/// Stamps `event` with this connection's user_id and next event_id, renders it and queues
/// the frame in the outbox (sent when the mailbox batch ends).
void emit(manager_pointer self, const protocol::outbound_event& event);
void reply_error(manager_pointer self, std::string_view code, std::string message,
                 std::optional<std::string> reply_to);

// manager_runs.cpp
bool is_agent_message(const std::string& type);
/// Runs active on this connection: starting, running, storing their result, or remote.
std::size_t active_runs(manager_pointer self);
void on_agent_message(manager_pointer self, protocol::inbound_message& msg);
void on_run_event(manager_pointer self, protocol::outbound_event& event);
/// A run asks whether every event it sent before has been handled: yes at once, unless the
/// socket is congested; then the answer waits until it is not (run_table::held_syncs).
caf::result<bool> on_run_sync(manager_pointer self);
/// Handles the exit of one of this manager's runs; false when `source` is not a run.
bool on_run_exit(manager_pointer self, const caf::actor_addr& source, const caf::error& reason);
/// Ends the runs past their deadline and arms the check for the next one.
void on_run_deadlines(manager_pointer self);
/// While draining: closes with 1001 once no run is active or starting.
void finish_drain_if_idle(manager_pointer self);
/// Hosting runs for a session that moved to another node: ends once none is left.
void finish_hosting_if_idle(manager_pointer self);
/// A waiting offer (session_moves::offer_waiting) goes once nothing it waits for is in
/// progress, or its time is up.
void offer_when_ready(manager_pointer self);
/// Arms a deadline check for the earliest remote run's deadline (plus a grace for its final
/// event to arrive): a node that died sends none.
void arm_remote_run_check(manager_pointer self);
/// A remote run's one final event when the node running it cannot send it: agent_error with
/// the run's ids and `message`.
void emit_lost_run(manager_pointer self, const offered_run& run, std::string message);

// connection_manager.cpp
void on_shutdown(manager_pointer self, std::uint16_t code);

} // namespace er::actors
