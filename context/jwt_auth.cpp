#include "context/jwt_auth.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include <jwt/jwt.hpp>

namespace er::context {

namespace {

constexpr const char* accepted_algorithm = "HS256";

std::int64_t seconds_since_epoch() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

auth_failure map_decode_error(const std::error_code& ec) {
  if (ec == jwt::VerificationErrc::InvalidAlgorithm || ec == jwt::AlgorithmErrc::NoneAlgorithmUsed)
    return auth_failure::unsupported_algorithm;
  if (ec == jwt::VerificationErrc::TokenExpired)
    return auth_failure::token_expired;
  if (ec == jwt::VerificationErrc::ImmatureSignature)
    return auth_failure::token_not_yet_valid;
  if (ec == jwt::VerificationErrc::InvalidSignature || ec == jwt::AlgorithmErrc::VerificationErr)
    return auth_failure::invalid_signature;
  return auth_failure::malformed_token;
}

std::string decode_part(std::string_view part) {
  return jwt::base64_uri_decode(part.data(), part.size());
}

/// The header's `alg`, exactly as written (RFC 7515: case-sensitive); empty when unreadable.
std::string header_algorithm(std::string_view header_part) {
  auto header = json_t::parse(decode_part(header_part), nullptr, false);
  if (!header.is_object() || !header.contains("alg") || !header["alg"].is_string())
    return {};
  return header["alg"].get<std::string>();
}

bool signature_valid(std::string_view token, const std::string& secret) {
  auto first_dot = token.find('.');
  auto last_dot = token.rfind('.');
  jwt::jwt_header header;
  std::error_code ec;
  header.decode(jwt::string_view{token.data(), first_dot}, ec);
  if (ec)
    return false;
  jwt::jwt_signature signature{secret};
  auto signed_part = jwt::string_view{token.data(), last_dot};
  auto sig = jwt::string_view{token.data() + last_dot + 1, token.size() - last_dot - 1};
  auto result = signature.verify(header, signed_part, sig);
  return !result.second && result.first;
}

/// Time claims must be integers: cpp-jwt converts them to uint64_t unchecked, and a float out
/// of range is undefined behaviour (found by fuzz_token).
bool time_claims_are_integers(std::string_view payload_part) {
  auto claims = json_t::parse(decode_part(payload_part), nullptr, false);
  if (!claims.is_object())
    return false;
  for (auto name : {"exp", "nbf", "iat"})
    if (claims.contains(name) && !claims[name].is_number_integer())
      return false;
  return true;
}

// Three non-empty base64url parts. Checked before cpp-jwt sees the token: its base64 decoder
// shifts a negative value on characters outside the alphabet (undefined behaviour, found by
// fuzz_token).
bool well_formed(std::string_view token) {
  auto base64url = [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_'; };
  if (std::count(token.begin(), token.end(), '.') != 2)
    return false;
  if (!std::all_of(token.begin(), token.end(),
                   [&](unsigned char c) { return c == '.' || base64url(c); }))
    return false;
  auto first_dot = token.find('.');
  auto last_dot = token.rfind('.');
  return first_dot > 0 && last_dot > first_dot + 1 && last_dot + 1 < token.size();
}

bool audience_matches(const json_t& claims, const std::string& audience) {
  auto it = claims.find("aud");
  if (it == claims.end())
    return false;
  if (it->is_string())
    return it->get<std::string>() == audience;
  if (it->is_array())
    return std::any_of(it->begin(), it->end(), [&](const json_t& entry) {
      return entry.is_string() && entry.get<std::string>() == audience;
    });
  return false;
}

verification_result check_claims(const json_t& claims, const jwt_settings& settings) {
  auto sub = claims.find("sub");
  auto exp = claims.find("exp");
  if (sub == claims.end() || exp == claims.end())
    return auth_failure::missing_claim;
  if (!sub->is_string() || !exp->is_number_integer())
    return auth_failure::malformed_token;
  if (!settings.issuer.empty()) {
    auto iss = claims.find("iss");
    if (iss == claims.end() || !iss->is_string() || iss->get<std::string>() != settings.issuer)
      return auth_failure::invalid_issuer;
  }
  if (!settings.audience.empty() && !audience_matches(claims, settings.audience))
    return auth_failure::invalid_audience;
  return verified_token{sub->get<std::string>(), exp->get<std::int64_t>()};
}

} // namespace

std::string_view to_string(auth_failure failure) noexcept {
  switch (failure) {
    case auth_failure::missing_token: return "missing_token";
    case auth_failure::malformed_token: return "malformed_token";
    case auth_failure::unsupported_algorithm: return "unsupported_algorithm";
    case auth_failure::invalid_signature: return "invalid_signature";
    case auth_failure::token_expired: return "token_expired";
    case auth_failure::token_not_yet_valid: return "token_not_yet_valid";
    case auth_failure::invalid_issuer: return "invalid_issuer";
    case auth_failure::invalid_audience: return "invalid_audience";
    case auth_failure::missing_claim: return "missing_claim";
    case auth_failure::invalid_subject: return "invalid_subject";
  }
  return "unknown";
}

jwt_verifier::jwt_verifier(jwt_settings settings) : settings_(std::move(settings)) {
  // Empty secret would make every HMAC trivially forgeable by anyone who guesses it.
  if (settings_.secret.empty())
    throw std::invalid_argument("the JWT secret must not be empty");
}

// The order matters: nothing but the algorithm is looked at before the signature is known
// good, so a forged token learns only "invalid_signature" and never reaches cpp-jwt's claim
// checks with values of its choosing.
verification_result jwt_verifier::verify(std::string_view token) const {
  if (token.empty())
    return auth_failure::missing_token;
  if (!well_formed(token))
    return auth_failure::malformed_token;
  auto first_dot = token.find('.');
  auto last_dot = token.rfind('.');
  try {
    auto alg = header_algorithm(token.substr(0, first_dot));
    if (alg.empty())
      return auth_failure::malformed_token;
    if (alg != accepted_algorithm)
      return auth_failure::unsupported_algorithm;
    if (!signature_valid(token, settings_.secret))
      return auth_failure::invalid_signature;
    if (!time_claims_are_integers(token.substr(first_dot + 1, last_dot - first_dot - 1)))
      return auth_failure::malformed_token;
    std::error_code ec;
    using namespace jwt::params;
    auto leeway_s = static_cast<uint32_t>(settings_.leeway.count());
    auto decoded = jwt::decode(jwt::string_view{token.data(), token.size()},
                               algorithms({accepted_algorithm}), ec, secret(settings_.secret),
                               leeway(leeway_s));
    if (ec)
      return map_decode_error(ec);
    return check_claims(decoded.payload().create_json_obj(), settings_);
  } catch (const std::exception&) {
    // cpp-jwt throws on some malformed inputs despite the error_code overload.
    return auth_failure::malformed_token;
  }
}

std::string mint_token(const jwt_settings& settings, std::string_view user_id,
                       std::chrono::seconds ttl) {
  using namespace jwt::params;
  auto now = seconds_since_epoch();
  jwt::jwt_object obj{algorithm(accepted_algorithm), secret(settings.secret)};
  obj.add_claim("sub", std::string{user_id});
  obj.add_claim("iat", now);
  obj.add_claim("exp", now + ttl.count());
  if (!settings.issuer.empty())
    obj.add_claim("iss", settings.issuer);
  if (!settings.audience.empty())
    obj.add_claim("aud", settings.audience);
  return obj.signature();
}

} // namespace er::context
