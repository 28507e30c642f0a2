#pragma once
// Where a client's JWT comes from, in the order of DESIGN §3: the WebSocket subprotocol list
// (`router.v1, jwt.<token>`, for browsers), `Authorization: Bearer`, then `?token=`.

#include <optional>
#include <string>
#include <string_view>

namespace er::context {

inline constexpr std::string_view protocol_name = "router.v1";

enum class token_carrier { subprotocol, authorization_header, query };

struct token_request {
  std::string_view subprotocols;  ///< Sec-WebSocket-Protocol value, may be empty
  std::string_view authorization; ///< Authorization value, may be empty
  std::string_view target;        ///< request target, path and query
};

struct extracted_token {
  std::string token; ///< empty when no carrier holds one
  std::optional<token_carrier> carrier;
  bool offers_protocol = false; ///< the client listed router.v1 among its subprotocols
};

extracted_token extract_token(const token_request& request);

/// Value of query parameter `name` in `target`, percent-decoded; nullopt when absent.
std::optional<std::string> query_parameter(std::string_view target, std::string_view name);

/// A path segment (RFC 3986): `%XX` sequences decoded; `+` stays a plus.
std::string percent_decode(std::string_view s);

/// A query component (application/x-www-form-urlencoded): `%XX` sequences decoded, `+` read
/// as a space.
std::string form_decode(std::string_view s);

/// The path part of `target`, without the query.
std::string_view target_path(std::string_view target);

} // namespace er::context
