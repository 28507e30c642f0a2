#pragma once
// The message types of router.v1 (DESIGN §4), in one place: what a client may send, what the
// router sends, and which of those are a run's events. docs/asyncapi.yaml documents each one;
// a test holds the two together.

#include <array>
#include <string_view>

namespace er::protocol {

/// Types a client sends.
inline constexpr std::array<std::string_view, 7> client_message_types{
  "ping",       "create_thread", "list_threads", "get_thread_history",
  "user_message", "start_agent", "stop_agent"};

/// Types of a run's events, in the order they may come; the last three end a run.
inline constexpr std::array<std::string_view, 8> agent_event_types{
  "agent_started", "agent_thinking",  "tool_executing", "tool_completed",
  "agent_progress", "agent_completed", "agent_error",   "agent_stopped"};

/// Types the router sends besides the agent events. A backend's publish carries its own type.
inline constexpr std::array<std::string_view, 6> reply_types{
  "connection_established", "pong", "error", "thread_created", "thread_list", "thread_history"};

/// An event a run may report about itself (agent_started is the manager's own).
bool is_run_event(std::string_view type);
/// agent_completed, agent_error or agent_stopped: the one event that ends a run.
bool is_final_agent_event(std::string_view type);
/// A type of the router's own protocol (either direction), which a backend may not publish.
bool is_reserved_type(std::string_view type);

} // namespace er::protocol
