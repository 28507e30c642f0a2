// The edges of the HTTP exchange before an upgrade (DESIGN §7): every refusal has a status
// line and a JSON body, and nothing a client sends right behind its upgrade is lost.

#include <doctest/doctest.h>

#include "tests/raw_socket.hpp"
#include "tests/support.hpp"

using namespace er::test;

namespace {

/// The status code and JSON body of the answer `raw` received.
std::pair<int, json> answer_of(const std::string& raw) {
  auto space = raw.find(' ');
  REQUIRE_MESSAGE(raw.rfind("HTTP/1.1 ", 0) == 0, "no status line in: " << raw.substr(0, 80));
  int status = std::stoi(raw.substr(space + 1, 3));
  auto body = raw.find("\r\n\r\n");
  REQUIRE(body != std::string::npos);
  return {status, json::parse(raw.substr(body + 4), nullptr, false)};
}

} // namespace

TEST_CASE("a request head over 16 KiB is answered 431 with a JSON error, then closed") {
  test_router router;
  raw_socket s{router.port()};
  // A 20 KB token in a header, as a misconfigured client would send it.
  s.send("GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(20000, 'a')
         + "\r\n\r\n");
  CHECK(s.read_to_end(5s));
  auto [status, body] = answer_of(s.received());
  CHECK(status == 431);
  CHECK(body == json{{"error", "request header fields too large"}});
}

TEST_CASE("a head just under 16 KiB is still read") {
  test_router router;
  raw_socket s{router.port()};
  s.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(15000, 'a') + "\r\n\r\n");
  auto [status, body] = answer_of(s.read_until("}", 5s));
  CHECK(status == 200);
  CHECK(body["status"] == "ok");
}

TEST_CASE("a malformed request is answered 400 with a JSON error, then closed") {
  test_router router;
  for (std::string bad : {"GARBAGE\r\n\r\n", "GET /ws HTTP/9.9\r\nHost: x\r\n\r\n",
                          "GET /ws HTTP/1.1\r\nBad Header Line\r\n\r\n",
                          "POST /api/v1/publish HTTP/1.1\r\nContent-Length: -5\r\n\r\n"}) {
    CAPTURE(bad);
    raw_socket s{router.port()};
    s.send(bad);
    CHECK(s.read_to_end(5s));
    auto [status, body] = answer_of(s.received());
    CHECK(status == 400);
    CHECK(body == json{{"error", "malformed request"}});
  }
}

TEST_CASE("frames a client pipelines right behind its upgrade request are not lost") {
  test_router router;
  raw_socket s{router.port()};
  s.send(upgrade_request(token_for(router, "alice"))
         + masked_text_frame(R"({"type":"ping","id":"early-1"})")
         + masked_text_frame(R"({"type":"ping","id":"early-2"})"));
  auto raw = s.read_until("early-2", 5s);
  CHECK(raw.rfind("HTTP/1.1 101", 0) == 0);
  auto greeting = raw.find("connection_established");
  auto first = raw.find("early-1");
  auto second = raw.find("early-2");
  REQUIRE(greeting != std::string::npos);
  REQUIRE(first != std::string::npos);
  REQUIRE(second != std::string::npos);
  CHECK(greeting < first);
  CHECK(first < second);
}
