#include "context/user_execution_context.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

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

namespace {

constexpr std::size_t max_subject_bytes = 256;

/// The code point starting at `s[i]` and its length in bytes; a length of 0 when the bytes
/// there are not valid UTF-8 (a bad lead or continuation byte, an overlong form, a
/// surrogate, or a value past U+10FFFF).
std::pair<char32_t, std::size_t> decode_utf8(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char lead = byte(i);
  if (lead < 0x80)
    return {lead, 1};
  std::size_t length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0;
  if (length == 0 || lead > 0xF4 || i + length > s.size())
    return {0, 0};
  char32_t cp = lead & (0x7F >> length);
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80)
      return {0, 0};
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr char32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < smallest[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return {0, 0};
  return {cp, length};
}

bool is_control(char32_t cp) {
  return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

} // namespace

bool is_valid_subject(std::string_view sub) {
  if (sub.empty() || sub.size() > max_subject_bytes || is_placeholder_user_id(sub))
    return false;
  for (std::size_t i = 0; i < sub.size();) {
    auto [cp, length] = decode_utf8(sub, i);
    if (length == 0 || is_control(cp))
      return false;
    i += length;
  }
  return true;
}

user_execution_context
user_execution_context::for_connection(std::string user_id, std::string client_address,
                                       time_point token_expires_at) {
  if (!is_valid_subject(user_id))
    throw invalid_user_id("not a valid user id");
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

user_execution_context user_execution_context::in_session(std::string session_id) const {
  auto copy = *this;
  copy.session_id_ = std::move(session_id);
  return copy;
}

user_execution_context user_execution_context::with_run(std::string run_id) const {
  auto copy = *this;
  copy.own_scope().run_id = std::move(run_id);
  return copy;
}

} // namespace er::context
