#include "context/jwt_auth.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>

#include <jwt/jwt.hpp>
#include <openssl/crypto.h>

#include "context/user_execution_context.hpp"

namespace er::context {

namespace {

constexpr const char* accepted_algorithm = "HS256";

std::int64_t seconds_since_epoch() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
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

// cpp-jwt's own check (HMACSign::verify) compares the encoded signatures with ==, which stops
// at the first differing byte: the time a refusal takes would tell a forger how much of its
// signature is right, one byte after another. cpp-jwt computes the HMAC here; the comparison
// is OpenSSL's constant-time one, over the same canonical base64url encodings cpp-jwt compares
// (a signature written with other unused trailing bits is refused).
bool signature_valid(std::string_view token, const std::string& secret) {
  auto last_dot = token.rfind('.');
  auto presented = token.substr(last_dot + 1);
  auto signed_part = jwt::string_view{token.data(), last_dot};
  auto [mac, ec] = jwt::HMACSign<jwt::algo::HS256>::sign(secret, signed_part);
  if (ec || mac.empty())
    return false;
  auto expected = jwt::base64_encode(mac.data(), mac.size());
  expected.resize(jwt::base64_uri_encode(expected.data(), expected.size()));
  // The length of an HS256 signature is public (43 characters); only the bytes are secret.
  return expected.size() == presented.size()
         && CRYPTO_memcmp(expected.data(), presented.data(), expected.size()) == 0;
}

/// The largest time claim accepted: 2^53, where JSON numbers stop being exact in most clients.
constexpr std::uint64_t max_time_claim = std::uint64_t{1} << 53;

/// A time claim's value when it is an integer in [0, 2^53]; nullopt otherwise (cpp-jwt would
/// convert a negative one to uint64_t, and a float out of range is undefined behaviour).
std::optional<std::int64_t> time_claim(const json_t& value) {
  if (value.is_number_unsigned()) {
    auto v = value.get<std::uint64_t>();
    return v <= max_time_claim ? std::optional<std::int64_t>{static_cast<std::int64_t>(v)}
                               : std::nullopt;
  }
  if (value.is_number_integer()) {
    auto v = value.get<std::int64_t>();
    return v >= 0 ? std::optional<std::int64_t>{v} : std::nullopt;
  }
  return std::nullopt;
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

/// exp, nbf and iat, each an integer in [0, 2^53] when present; exp within the leeway of now
/// or later, nbf within the leeway of now or earlier. `exp` holds exp's value afterwards.
std::optional<auth_failure> check_times(const json_t& claims, const jwt_settings& settings,
                                        std::int64_t& exp) {
  std::optional<std::int64_t> values[3];
  const char* names[3] = {"exp", "nbf", "iat"};
  for (int i = 0; i < 3; ++i) {
    auto it = claims.find(names[i]);
    if (it == claims.end())
      continue;
    values[i] = time_claim(*it);
    if (!values[i])
      return auth_failure::malformed_token;
  }
  auto now = seconds_since_epoch();
  auto leeway = static_cast<std::int64_t>(settings.leeway.count());
  exp = *values[0];
  if (exp + leeway < now)
    return auth_failure::token_expired;
  if (values[1] && *values[1] - leeway > now)
    return auth_failure::token_not_yet_valid;
  return std::nullopt;
}

verification_result check_claims(const json_t& claims, const jwt_settings& settings) {
  auto sub = claims.find("sub");
  if (sub == claims.end() || !claims.contains("exp"))
    return auth_failure::missing_claim;
  std::int64_t exp = 0;
  if (auto failure = check_times(claims, settings, exp))
    return *failure;
  if (!sub->is_string())
    return auth_failure::malformed_token;
  if (!is_valid_subject(sub->get_ref<const std::string&>()))
    return auth_failure::invalid_subject;
  if (!settings.issuer.empty()) {
    auto iss = claims.find("iss");
    if (iss == claims.end() || !iss->is_string() || iss->get<std::string>() != settings.issuer)
      return auth_failure::invalid_issuer;
  }
  if (!settings.audience.empty() && !audience_matches(claims, settings.audience))
    return auth_failure::invalid_audience;
  return verified_token{sub->get<std::string>(), exp};
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
    // The signature is good: cpp-jwt has done its part. The claims are checked here, where
    // their types and ranges are under control (see time_claim).
    auto claims = json_t::parse(decode_part(token.substr(first_dot + 1, last_dot - first_dot - 1)),
                                nullptr, false);
    if (!claims.is_object())
      return auth_failure::malformed_token;
    return check_claims(claims, settings_);
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
