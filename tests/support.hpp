#pragma once
// Test support: a real router in-process on an ephemeral loopback port, real WebSocket
// clients, token crafting, and a child-process helper for the binary tests.

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/router_server.hpp"
#include "context/jwt_auth.hpp"
#include "clients/cpp/ws_client.hpp"
#include "tests/eventually.hpp"
#include "tests/process_probe.hpp"

namespace er::test {

using json = nlohmann::json;
using namespace std::chrono_literals;

inline constexpr const char* test_secret = "test-secret-for-the-suite";

app::router_settings test_settings();

/// A router on 127.0.0.1 with an ephemeral port.
class test_router {
public:
  explicit test_router(app::router_settings settings = test_settings());
  unsigned short port() const { return server_->port(); }
  app::router_server& server() { return *server_; }
  context::jwt_settings jwt() const;

private:
  app::router_settings settings_;
  std::unique_ptr<app::router_server> server_;
};

std::string token_for(const test_router& router, const std::string& user,
                      std::chrono::seconds ttl = 3600s);

/// Claims signed with HS256 and `key`, exactly as given (for malformed-claim tests).
std::string sign_claims(const json& claims, const std::string& key,
                        const std::string& alg = "HS256");

struct connection {
  std::unique_ptr<client::ws_client> client;
  json established; ///< the connection_established frame
};

client::client_options options_for(const test_router& router);

/// Connects as `user` with the subprotocol carrier; requires the upgrade and the greeting.
connection connect_user(const test_router& router, const std::string& user,
                        const std::string& bind_address = {});

/// Reads the next text frame as JSON; fails the test on timeout or close.
json next_json(client::ws_client& client, std::chrono::milliseconds timeout = 5s);

/// Checks that the next frame is the server's close with `code`.
void expect_close(client::ws_client& client, std::uint16_t code,
                  std::chrono::milliseconds timeout = 5s);

/// Reads text frames, handing each to `on_text`, until the connection closes; checks that it
/// closed with `code`.
void expect_close_after_text(client::ws_client& client, std::uint16_t code,
                             const std::function<void(const json&)>& on_text = {},
                             std::chrono::milliseconds timeout = 10s);


/// POST /api/v1/publish with `auth` (default: the suite's API key).
client::http_response publish(const test_router& router, const json& body,
                              const std::string& auth = "Bearer test-api-key");

/// A publish body: `type` with `data` for `user`.
json publish_body(const std::string& user, const std::string& type, json data = json::object());

/// A metric's value in the text exposition `text`, 0 when absent.
double metric(const std::string& text, const std::string& series);

/// A metric's value from the router's GET /metrics, 0 when absent.
double metric(const test_router& router, const std::string& series);

/// `start` (a start_agent) runs an agent that streams events for ever, `runs` times at once,
/// for alice, who reads nothing for three seconds: the heap stays within 64 MiB of where it was
/// (the sanitizers' allocators aside), bob's connection is answered, alice's is not closed, and
/// the runs are held back. Then she reads: every event once and in order, and far more than
/// her socket held, so the agents went on at her pace; she stops the runs, and her connection
/// is still answered.
void expect_flood_held_back(const test_router& router, const json& start, int runs = 1);

/// Resident set size of this process in KiB.
long rss_kib();
/// What this process's heap holds allocated, in KiB (glibc's mallinfo2 over every arena): unlike
/// the RSS, not what the allocator keeps of freed memory in its arenas.
long heap_in_use_kib();

/// A child process with its stdout and stderr captured; with `piped_stdin`, its standard input
/// is a pipe the test writes (write_stdin) and closes (close_stdin), else the test's own.
class child_process {
public:
  explicit child_process(const std::vector<std::string>& argv, bool piped_stdin = false);
  ~child_process();
  /// Writes all of `text` to the child's standard input (piped_stdin only).
  void write_stdin(std::string_view text);
  /// The child reads the end of its standard input (piped_stdin only; idempotent).
  void close_stdin();
  /// Next stdout line, empty on EOF or timeout.
  std::string read_line(std::chrono::milliseconds timeout = 10s);
  std::string read_all_stderr(std::chrono::milliseconds timeout = 10s);
  void signal(int sig);
  /// SIGSTOP, returning once every thread has stopped (see is_stopped): from then on the
  /// process answers nothing, its sockets and port still open.
  void pause();
  void resume() { signal(SIGCONT); }
  /// Exit status, or -1 when it did not exit within `timeout`.
  int wait(std::chrono::milliseconds timeout = 15s);
  pid_t pid() const { return pid_; }

private:
  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  int err_ = -1;
  std::string out_buffer_;
  bool reaped_ = false;
};

} // namespace er::test

namespace er::test {

/// Settings for agent tests: fast demo agent, fault-injection agents, shell command agents.
app::router_settings agent_settings();

/// Reads frames until `done(frame)` holds (that frame included); fails on timeout or close.
std::vector<json> read_until(client::ws_client& client, const std::function<bool(const json&)>& done,
                             std::chrono::milliseconds timeout = 10s);

/// Sends `request` and reads until the run it starts has its final event; returns the run's
/// frames (agent_started first).
std::vector<json> run_to_end(client::ws_client& client, const json& request,
                             std::chrono::milliseconds timeout = 10s);

bool is_final(const json& frame);

/// Actor and connection counts back to `actors` and 0.
bool back_to_baseline(test_router& router, std::size_t actors);


} // namespace er::test
