// The edges of the HTTP exchange before an upgrade (DESIGN §7): every refusal has a status
// line and a JSON body, and nothing a client sends right behind its upgrade is lost.

#include <stdexcept>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

#include "net/listener.hpp"
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

TEST_CASE("chunk metadata without an end (extensions, trailer fields) is answered 431 once "
          "past 32 KiB, not buffered") {
  test_router router;
  const std::string chunked = "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  // Beast 1.74's parser bounds neither: before the read buffer had a bound, all of these bytes
  // were kept until the handshake timeout, which then closed the connection without an answer.
  for (std::string head : {chunked + "1;ext=", chunked + "0\r\nX-Trailer: "}) {
    CAPTURE(head);
    raw_socket s{router.port()};
    s.send(head + std::string(4 << 20, 'a')); // drained after the answer, never buffered
    CHECK(s.read_to_end(5s));
    auto [status, body] = answer_of(s.received());
    CHECK(status == 431);
    CHECK(body == json{{"error", "chunk extensions or trailer fields too large"}});
  }
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

TEST_CASE("requests that arrive in one segment are each answered, in order, binary ones too") {
  // The session hands the messages of one read to the manager together (ws_session.cpp):
  // 40 pings, a binary frame between them and a start_agent, all in one write.
  test_router router;
  auto c = connect_user(router, "alice");
  raw_socket s{router.port()};
  s.send(upgrade_request(token_for(router, "bob")));
  REQUIRE(s.read_until("connection_established", 5s).find("connection_established")
          != std::string::npos);
  std::string burst;
  for (int i = 0; i < 40; ++i) {
    burst += masked_text_frame(R"({"type":"ping","id":"p)" + std::to_string(i) + "\"}");
    if (i == 19)
      burst += masked_frame(0x2, "\x01\x02");
  }
  burst += masked_text_frame(R"({"type":"start_agent","id":"run","payload":{"agent":"demo"}})");
  REQUIRE(s.send(burst));
  auto raw = s.read_until("agent_completed", 10s);
  std::size_t at = raw.find("connection_established");
  for (int i = 0; i < 40; ++i) {
    auto next = raw.find(R"("reply_to":"p)" + std::to_string(i) + "\"", at);
    REQUIRE_MESSAGE(next != std::string::npos, i);
    CHECK_MESSAGE(next > at, i);
    at = next;
    if (i == 19) { // the binary frame's error comes between p19 and p20
      auto error = raw.find(R"("code":"invalid_message")", at);
      CHECK(error < raw.find(R"("reply_to":"p20")"));
    }
  }
  CHECK(raw.find("agent_started", at) != std::string::npos);
  CHECK(raw.find("agent_completed", at) != std::string::npos);
  CHECK(raw.find("\"user_id\":\"bob\"") != std::string::npos);
  CHECK(raw.find("\"user_id\":\"alice\"") == std::string::npos);
  // alice, on her own connection, saw none of it
  c.client->send_text(R"({"type":"ping","id":"alice"})");
  CHECK(next_json(*c.client)["reply_to"] == "alice");
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

TEST_CASE("an exception out of an HTTP handler answers 500 and the listener and the connection "
          "go on") {
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  er::context::jwt_settings jwt;
  jwt.secret = test_secret;
  er::context::jwt_verifier verifier{jwt};
  er::net::listener_hooks hooks;
  hooks.on_request = [](const er::net::http_request_view& req, auto respond) {
    if (req.target == "/boom")
      throw std::runtime_error("a handler bug");
    if (req.target == "/answered-then-boom") {
      respond(er::net::http_reply{202, R"({"first":true})"});
      throw 42; // not even a std::exception
    }
    respond(er::net::http_reply{200, R"({"ok":true})"});
  };
  er::net::listener front{io, "127.0.0.1", 0, verifier, {},
                          std::make_shared<er::net::connection_budget>(16), hooks};
  front.start();
  std::thread runner{[&] { io.run(); }};
  {
    // One keep-alive connection: 500, then the answer already given, then a plain answer.
    raw_socket s{front.port()};
    s.send("GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /answered-then-boom HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /fine HTTP/1.1\r\nHost: x\r\n\r\n");
    auto text = s.read_until(R"({"ok":true})", 5s);
    auto first = text.find("HTTP/1.1 500");
    auto second = text.find("HTTP/1.1 202");
    auto third = text.find("HTTP/1.1 200");
    CHECK(first != std::string::npos);
    CHECK(text.find(R"({"error":"internal error"})") != std::string::npos);
    CHECK(second != std::string::npos);
    CHECK(third != std::string::npos);
    CHECK(first < second);
    CHECK(second < third);
    CHECK(text.find("HTTP/1.1", second + 1) == third); // one answer to the second request
  }
  // The listener still accepts.
  CHECK(er::client::http_request("127.0.0.1", front.port(), "GET", "/again").status == 200);
  front.stop();
  work.reset();
  io.stop();
  runner.join();
}
