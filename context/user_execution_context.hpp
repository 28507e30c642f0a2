#pragma once
// The identity of one WebSocket connection, created once from a verified token and never
// mutated: per-message and per-operation ids live in derived copies (with_request, with_run,
// with_thread). The user id comes only from the token, never from a client's payload.

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace er::context {

/// True for user ids that name nobody in particular ("", "default", "anonymous", "null", ...):
/// accepting them would put unrelated clients into one shared user.
bool is_placeholder_user_id(std::string_view user_id);

/// A token's `sub` that may become a user id: 1-256 bytes of valid UTF-8 without control
/// characters (C0, DEL, C1), and not a placeholder. Anything else is `invalid_subject`.
bool is_valid_subject(std::string_view sub);

class invalid_user_id : public std::invalid_argument {
public:
  using std::invalid_argument::invalid_argument;
};

class user_execution_context {
public:
  using time_point = std::chrono::system_clock::time_point;

  /// Mints fresh connection and session ids. Throws invalid_user_id for an id that is not a
  /// valid subject (see is_valid_subject).
  static user_execution_context for_connection(std::string user_id, std::string client_address,
                                               time_point token_expires_at = time_point::max());

  const std::string& user_id() const noexcept { return user_id_; }
  const std::string& connection_id() const noexcept { return connection_id_; }
  const std::string& session_id() const noexcept { return session_id_; }
  const std::string& request_id() const noexcept { return scope_ ? scope_->request_id : none(); }
  const std::string& thread_id() const noexcept { return scope_ ? scope_->thread_id : none(); }
  const std::string& run_id() const noexcept { return scope_ ? scope_->run_id : none(); }
  const std::string& client_address() const noexcept { return client_address_; }
  time_point created_at() const noexcept { return created_at_; }
  /// When the token this connection was opened with expires (close 4501 then).
  time_point token_expires_at() const noexcept { return token_expires_at_; }

  user_execution_context with_request(std::string request_id) const;
  user_execution_context with_thread(std::string thread_id) const;
  user_execution_context with_run(std::string run_id) const;
  /// This connection continuing a session that began on another connection (a resume that
  /// reached another node of a cluster): the same user and connection, that session's id.
  user_execution_context in_session(std::string session_id) const;

private:
  /// The ids of a request, thread or run: only derived contexts have them, so the context a
  /// connection manager keeps for its whole life carries a null pointer, not three strings.
  struct scope_ids {
    std::string request_id;
    std::string thread_id;
    std::string run_id;
  };

  user_execution_context() = default;
  static const std::string& none() noexcept;
  scope_ids& own_scope(); ///< this copy's scope, unshared

  std::string user_id_;
  std::string connection_id_;
  std::string session_id_;
  std::string client_address_;
  time_point created_at_;
  time_point token_expires_at_ = time_point::max();
  std::shared_ptr<const scope_ids> scope_;
};

} // namespace er::context
