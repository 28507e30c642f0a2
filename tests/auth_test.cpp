// JWT authentication of the upgrade request, over real loopback connections (DESIGN §3).

#include <doctest/doctest.h>
#include <jwt/algorithm.hpp>
#include <jwt/base64.hpp>

#include <limits>

#include "tests/support.hpp"

using namespace er::test;

namespace {

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

std::string b64url(const std::string& s) {
  auto encoded = jwt::base64_encode(s.data(), s.size());
  encoded.resize(jwt::base64_uri_encode(encoded.data(), encoded.size()));
  return encoded;
}

er::client::handshake_result offer(const test_router& router, const std::string& token) {
  auto o = options_for(router);
  o.subprotocols = "router.v1, jwt." + token;
  return er::client::ws_client::connect(o).second;
}

void expect_refused(const er::client::handshake_result& h, const std::string& reason) {
  CHECK_FALSE(h.upgraded);
  CHECK(h.status == 401);
  CHECK(json::parse(h.body) == json{{"error", reason}});
}

} // namespace

TEST_CASE("a valid token in the subprotocol list upgrades and the server selects router.v1") {
  test_router router;
  auto token = token_for(router, "alice");
  auto h = offer(router, token);
  CHECK(h.upgraded);
  CHECK(h.status == 101);
  CHECK(h.selected_protocol == "router.v1");
  CHECK(h.selected_protocol.find(token) == std::string::npos);
}

TEST_CASE("a valid token in the Authorization header upgrades") {
  test_router router;
  auto o = options_for(router);
  o.authorization = "Bearer " + token_for(router, "alice");
  auto [client, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  CHECK(h.selected_protocol.empty()); // nothing was offered, nothing is selected
  CHECK(next_json(*client)["user_id"] == "alice");
}

TEST_CASE("a valid token in the query string upgrades") {
  test_router router;
  auto o = options_for(router);
  o.target = "/ws?token=" + token_for(router, "alice");
  auto [client, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  CHECK(next_json(*client)["user_id"] == "alice");
}

TEST_CASE("the subprotocol carrier wins over the header, and the header over the query") {
  test_router router;
  auto good_a = token_for(router, "alice");
  auto good_b = token_for(router, "bob");
  auto o = options_for(router);
  o.subprotocols = "router.v1, jwt." + good_a;
  o.authorization = "Bearer " + good_b;
  o.target = "/ws?token=" + good_b;
  auto [client, h] = er::client::ws_client::connect(o);
  REQUIRE(h.upgraded);
  CHECK(next_json(*client)["user_id"] == "alice");

  auto o2 = options_for(router);
  o2.authorization = "Bearer not-a-token";
  o2.target = "/ws?token=" + good_b;
  expect_refused(er::client::ws_client::connect(o2).second, "malformed_token");
}

TEST_CASE("an upgrade without any token is refused with 401 missing_token") {
  test_router router;
  auto o = options_for(router);
  o.subprotocols = "router.v1";
  expect_refused(er::client::ws_client::connect(o).second, "missing_token");
}

TEST_CASE("a subprotocol list without router.v1 is refused before authentication") {
  test_router router;
  auto o = options_for(router);
  o.subprotocols = "chat, jwt." + token_for(router, "alice");
  auto h = er::client::ws_client::connect(o).second;
  CHECK_FALSE(h.upgraded);
  CHECK(h.status == 400);
}

TEST_CASE("only the exact signature is accepted: every near miss is invalid_signature") {
  test_router router;
  auto token = token_for(router, "alice");
  auto dot = token.rfind('.');
  auto head = token.substr(0, dot + 1);
  auto sig = token.substr(dot + 1);
  REQUIRE(sig.size() == 43); // 32 bytes of HMAC-SHA256, unpadded base64url
  REQUIRE(offer(router, token).upgraded);
  auto flip = [](char c) { return c == 'A' ? 'B' : 'A'; };
  SUBCASE("one character changed, first, middle or last") {
    for (std::size_t at : {std::size_t{0}, std::size_t{21}, std::size_t{42}}) {
      auto changed = sig;
      changed[at] = flip(changed[at]);
      CAPTURE(at);
      expect_refused(offer(router, head + changed), "invalid_signature");
    }
  }
  SUBCASE("a prefix of the signature, or the signature with more after it") {
    expect_refused(offer(router, head + sig.substr(0, 42)), "invalid_signature");
    expect_refused(offer(router, head + sig.substr(0, 1)), "invalid_signature");
    expect_refused(offer(router, head + sig + "A"), "invalid_signature");
    expect_refused(offer(router, head + sig + sig), "invalid_signature");
  }
  SUBCASE("the same bytes written with other unused trailing bits") {
    // 43 characters carry 258 bits for 256: the last character's low two bits are unused,
    // and a decoder ignores them. Only the canonical encoding is the signature.
    static const std::string alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    auto value = alphabet.find(sig.back());
    REQUIRE(value != std::string::npos);
    REQUIRE(value % 4 == 0);
    for (std::size_t low = 1; low < 4; ++low) {
      auto variant = sig;
      variant.back() = alphabet[value + low];
      REQUIRE(jwt::base64_uri_decode(variant.data(), variant.size())
              == jwt::base64_uri_decode(sig.data(), sig.size()));
      expect_refused(offer(router, head + variant), "invalid_signature");
    }
  }
}

TEST_CASE("every kind of bad token is refused with its own reason") {
  test_router router;
  auto exp = now_s() + 600;
  SUBCASE("malformed") {
    expect_refused(offer(router, "abc.def"), "malformed_token");
    expect_refused(offer(router, "a.b.c"), "malformed_token");
    expect_refused(offer(router, "....."), "malformed_token");
  }
  SUBCASE("wrong signature") {
    expect_refused(offer(router, sign_claims({{"sub", "alice"}, {"exp", exp}}, "other-secret")),
                   "invalid_signature");
  }
  SUBCASE("alg none") {
    auto header = b64url(R"({"alg":"none","typ":"JWT"})");
    auto payload = b64url(json{{"sub", "alice"}, {"exp", exp}}.dump());
    expect_refused(offer(router, header + "." + payload + "."), "malformed_token");
    expect_refused(offer(router, header + "." + payload + ".c2ln"), "unsupported_algorithm");
  }
  SUBCASE("another HMAC algorithm") {
    expect_refused(offer(router, sign_claims({{"sub", "alice"}, {"exp", exp}}, test_secret, "HS512")),
                   "unsupported_algorithm");
  }
  SUBCASE("expired, beyond the 30 s leeway") {
    expect_refused(offer(router, sign_claims({{"sub", "alice"}, {"exp", now_s() - 120}}, test_secret)),
                   "token_expired");
  }
  SUBCASE("expired within the leeway is still accepted") {
    CHECK(offer(router, sign_claims({{"sub", "alice"}, {"exp", now_s() - 5}}, test_secret)).upgraded);
  }
  SUBCASE("an expired token with a bad signature reveals only the bad signature") {
    expect_refused(offer(router, sign_claims({{"sub", "a"}, {"exp", now_s() - 120}}, "x")),
                   "invalid_signature");
  }
  SUBCASE("not yet valid") {
    expect_refused(
      offer(router, sign_claims({{"sub", "alice"}, {"exp", exp}, {"nbf", now_s() + 600}}, test_secret)),
      "token_not_yet_valid");
  }
  SUBCASE("missing sub or exp") {
    expect_refused(offer(router, sign_claims({{"exp", exp}}, test_secret)), "missing_claim");
    expect_refused(offer(router, sign_claims({{"sub", "alice"}}, test_secret)), "missing_claim");
  }
  SUBCASE("a sub that is not a string") {
    expect_refused(offer(router, sign_claims({{"sub", 42}, {"exp", exp}}, test_secret)),
                   "malformed_token");
  }
  SUBCASE("placeholder user ids") {
    for (auto sub : {"anonymous", "default", "null", " ", "Guest"})
      expect_refused(offer(router, sign_claims({{"sub", sub}, {"exp", exp}}, test_secret)),
                     "invalid_subject");
  }
}

TEST_CASE("issuer and audience are checked when configured") {
  auto settings = test_settings();
  settings.jwt_issuer = "https://issuer.test";
  settings.jwt_audience = "router";
  test_router router{settings};
  auto exp = now_s() + 600;
  CHECK(offer(router, token_for(router, "alice")).upgraded); // minted with iss and aud
  expect_refused(offer(router, sign_claims({{"sub", "a"}, {"exp", exp}, {"aud", "router"}}, test_secret)),
                 "invalid_issuer");
  expect_refused(offer(router, sign_claims({{"sub", "a"},
                                            {"exp", exp},
                                            {"iss", "https://evil.test"},
                                            {"aud", "router"}},
                                           test_secret)),
                 "invalid_issuer");
  expect_refused(
    offer(router, sign_claims({{"sub", "a"}, {"exp", exp}, {"iss", "https://issuer.test"}}, test_secret)),
    "invalid_audience");
  CHECK(offer(router, sign_claims({{"sub", "a"},
                                   {"exp", exp},
                                   {"iss", "https://issuer.test"},
                                   {"aud", json::array({"other", "router"})}},
                                  test_secret))
          .upgraded);
}

TEST_CASE("plain HTTP: /ws without an upgrade is 426, unknown paths are 404") {
  test_router router;
  CHECK(er::client::http_request("127.0.0.1", router.port(), "GET", "/ws").status == 426);
  auto r = er::client::http_request("127.0.0.1", router.port(), "GET", "/nowhere");
  CHECK(r.status == 404);
  CHECK(r.content_type == "application/json");
}

TEST_CASE("time claims are integers in [0, 2^53]: anything else is malformed_token") {
  test_router router;
  auto exp = now_s() + 600;
  std::int64_t two_53 = std::int64_t{1} << 53;
  for (auto name : {"exp", "nbf", "iat"}) {
    CAPTURE(name);
    for (json bad : {json(-1), json(std::numeric_limits<std::int64_t>::min()),
                     json(-(std::int64_t{1} << 62)), json(two_53 + 1),
                     json(std::numeric_limits<std::uint64_t>::max()), json(1.5), json("123"),
                     json(nullptr), json::array()}) {
      CAPTURE(bad.dump());
      json claims{{"sub", "alice"}, {"exp", exp}};
      claims[name] = bad;
      expect_refused(offer(router, sign_claims(claims, test_secret)), "malformed_token");
    }
  }
}

TEST_CASE("time claims at their boundaries: nbf and iat of 0 are valid, exp of 2^53 never expires") {
  test_router router;
  auto exp = now_s() + 600;
  std::int64_t two_53 = std::int64_t{1} << 53;
  CHECK(offer(router, sign_claims({{"sub", "alice"}, {"exp", exp}, {"nbf", 0}}, test_secret)).upgraded);
  CHECK(offer(router, sign_claims({{"sub", "alice"}, {"exp", exp}, {"nbf", 1}}, test_secret)).upgraded);
  CHECK(offer(router, sign_claims({{"sub", "alice"}, {"exp", exp}, {"iat", 0}}, test_secret)).upgraded);
  CHECK(offer(router, sign_claims({{"sub", "alice"}, {"exp", exp}, {"iat", two_53}}, test_secret)).upgraded);
  expect_refused(offer(router, sign_claims({{"sub", "alice"}, {"exp", 0}}, test_secret)),
                 "token_expired");
  expect_refused(offer(router, sign_claims({{"sub", "alice"}, {"exp", exp}, {"nbf", two_53}}, test_secret)),
                 "token_not_yet_valid");
  SUBCASE("a connection opened with exp = 2^53 is not closed as expired") {
    auto o = options_for(router);
    o.subprotocols = "router.v1, jwt." + sign_claims({{"sub", "alice"}, {"exp", two_53}}, test_secret);
    auto [client, h] = er::client::ws_client::connect(o);
    REQUIRE(h.upgraded);
    CHECK(next_json(*client)["type"] == "connection_established");
    client->send_text(R"({"type":"ping","id":"p"})");
    CHECK(next_json(*client)["reply_to"] == "p");
  }
}

TEST_CASE("a sub must be 1-256 bytes of UTF-8 without control characters, else invalid_subject") {
  test_router router;
  auto exp = now_s() + 600;
  auto sub_refused = [&](const std::string& sub) {
    CAPTURE(json(sub).dump());
    expect_refused(offer(router, sign_claims({{"sub", sub}, {"exp", exp}}, test_secret)),
                   "invalid_subject");
  };
  sub_refused(std::string{"al\0ice\r\nX: y", 12});
  sub_refused("");
  sub_refused(std::string(257, 'a'));
  sub_refused("tab\there");
  sub_refused("del\x7f");
  sub_refused("c1\xc2\x85");  // U+0085, a C1 control
  auto accepted = [&](const std::string& sub) {
    CAPTURE(sub);
    auto o = options_for(router);
    o.subprotocols = "router.v1, jwt." + sign_claims({{"sub", sub}, {"exp", exp}}, test_secret);
    auto [client, h] = er::client::ws_client::connect(o);
    REQUIRE(h.upgraded);
    CHECK(next_json(*client)["user_id"] == sub);
  };
  accepted(std::string(256, 'a'));
  accepted("zoë@example.com");
  accepted("用户-42 🙂");
  SUBCASE("bytes that are not UTF-8 make the claims malformed JSON") {
    auto signed_part = b64url(R"({"alg":"HS256","typ":"JWT"})") + "."
                       + b64url("{\"sub\":\"a\xff\",\"exp\":" + std::to_string(exp) + "}");
    auto signature = jwt::HMACSign<jwt::algo::HS256>::sign(test_secret, signed_part).first;
    expect_refused(offer(router, signed_part + "." + b64url(signature)), "malformed_token");
  }
}
