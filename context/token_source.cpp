#include "context/token_source.hpp"

#include <cctype>

namespace er::context {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size())
    return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i]))
        != std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  return true;
}

std::string decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]);
      int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

} // namespace

std::string percent_decode(std::string_view s) {
  return decode(s, false);
}

std::string form_decode(std::string_view s) {
  return decode(s, true);
}

std::string_view target_path(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::optional<std::string> query_parameter(std::string_view target, std::string_view name) {
  auto q = target.find('?');
  if (q == std::string_view::npos)
    return std::nullopt;
  auto query = target.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == name)
      return eq == std::string_view::npos ? std::string{} : form_decode(pair.substr(eq + 1));
    if (amp == std::string_view::npos)
      break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

extracted_token extract_token(const token_request& request) {
  extracted_token result;
  std::string_view from_protocol;
  auto list = request.subprotocols;
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = trim(list.substr(0, comma));
    if (item == protocol_name)
      result.offers_protocol = true;
    else if (item.substr(0, 4) == "jwt." && from_protocol.empty())
      from_protocol = item.substr(4);
    if (comma == std::string_view::npos)
      break;
    list.remove_prefix(comma + 1);
  }
  if (!from_protocol.empty()) {
    result.token = std::string{from_protocol};
    result.carrier = token_carrier::subprotocol;
    return result;
  }
  auto auth = trim(request.authorization);
  if (iequals_prefix(auth, "Bearer ")) {
    auto token = trim(auth.substr(7));
    if (!token.empty()) {
      result.token = std::string{token};
      result.carrier = token_carrier::authorization_header;
      return result;
    }
  }
  if (auto token = query_parameter(request.target, "token"); token && !token->empty()) {
    result.token = std::move(*token);
    result.carrier = token_carrier::query;
  }
  return result;
}

} // namespace er::context
