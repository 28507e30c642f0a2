#include "context/user_execution_context.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include "context/ids.hpp"

namespace er::context {

bool is_placeholder_user_id(std::string_view user_id) {
  static constexpr std::array<std::string_view, 11> placeholders{
    "default", "anonymous", "anon",  "null",    "none", "undefined",
    "nil",     "guest",     "unknown", "0",     "-"};
  auto first = std::find_if_not(user_id.begin(), user_id.end(),
                                [](unsigned char c) { return std::isspace(c); });
  auto last = std::find_if_not(user_id.rbegin(), user_id.rend(),
                               [](unsigned char c) { return std::isspace(c); })
                .base();
  if (first >= last)
    return true;
  std::string lowered(first, last);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::find(placeholders.begin(), placeholders.end(), lowered)
         != placeholders.end();
}

user_execution_context
user_execution_context::for_connection(std::string user_id, std::string client_address,
                                       time_point token_expires_at) {
  if (is_placeholder_user_id(user_id))
    throw invalid_user_id("placeholder user id refused");
  user_execution_context ctx;
  ctx.user_id_ = std::move(user_id);
  ctx.connection_id_ = random_id(id_prefix::connection);
  ctx.session_id_ = random_id(id_prefix::session);
  ctx.client_address_ = std::move(client_address);
  ctx.created_at_ = std::chrono::system_clock::now();
  ctx.token_expires_at_ = token_expires_at;
  return ctx;
}

const std::string& user_execution_context::none() noexcept {
  static const std::string empty;
  return empty;
}

user_execution_context::scope_ids& user_execution_context::own_scope() {
  auto copy = scope_ ? std::make_shared<scope_ids>(*scope_) : std::make_shared<scope_ids>();
  auto& ids = *copy;
  scope_ = std::move(copy);
  return ids;
}

user_execution_context user_execution_context::with_request(std::string request_id) const {
  auto copy = *this;
  copy.own_scope().request_id = std::move(request_id);
  return copy;
}

user_execution_context user_execution_context::with_thread(std::string thread_id) const {
  auto copy = *this;
  copy.own_scope().thread_id = std::move(thread_id);
  return copy;
}

user_execution_context user_execution_context::with_run(std::string run_id) const {
  auto copy = *this;
  copy.own_scope().run_id = std::move(run_id);
  return copy;
}

} // namespace er::context
