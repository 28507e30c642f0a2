#pragma once
// HS256 JWT verification and minting (cpp-jwt underneath). Verification never throws: a bad
// token is an ordinary outcome, reported as one auth_failure whose name is the HTTP 401 body.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace er::context {

struct jwt_settings {
  std::string secret;
  std::string issuer;   ///< checked when non-empty
  std::string audience; ///< checked when non-empty
  std::chrono::seconds leeway{30};
};

enum class auth_failure {
  missing_token,
  malformed_token,
  unsupported_algorithm,
  invalid_signature,
  token_expired,
  token_not_yet_valid,
  invalid_issuer,
  invalid_audience,
  missing_claim,
  invalid_subject,
};

/// Stable snake_case name, used as `{"error": name}` and as a metrics label.
std::string_view to_string(auth_failure failure) noexcept;

struct verified_token {
  std::string user_id;
  std::int64_t expires_at; ///< seconds since the epoch
};

using verification_result = std::variant<verified_token, auth_failure>;

class jwt_verifier {
public:
  explicit jwt_verifier(jwt_settings settings);

  verification_result verify(std::string_view token) const;

  /// The clock skew allowed on exp and nbf: a connection opened with a token stays open
  /// until exp plus this.
  std::chrono::seconds leeway() const noexcept {
    return settings_.leeway;
  }

private:
  jwt_settings settings_;
};

/// Mints a token for `user_id` valid for `ttl` (demo tokens, tests, load clients).
std::string mint_token(const jwt_settings& settings, std::string_view user_id,
                       std::chrono::seconds ttl);

} // namespace er::context
