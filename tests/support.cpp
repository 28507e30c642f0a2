#include "tests/support.hpp"

#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include <doctest/doctest.h>
#include <fcntl.h>
#include <malloc.h>
#include <jwt/jwt.hpp>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace er::test {

app::router_settings test_settings() {
  app::router_settings s;
  s.host = "127.0.0.1";
  s.port = 0;
  s.jwt_secret = test_secret;
  s.api_key = "test-api-key";
  s.store_path = ":memory:";
  s.server_id = "test-node";
  s.handshake_timeout_ms = 2000;
  s.resume_window_ms = 0; // dropped connections end at once unless a test enables resume
  s.messages_per_second = 1000000; // load tests pipeline; the rate-limit test sets its own
  s.messages_burst = 1000000;
  return s;
}

test_router::test_router(app::router_settings settings)
  : settings_(std::move(settings)),
    server_(std::make_unique<app::router_server>(settings_)) {
}

context::jwt_settings test_router::jwt() const {
  return app::jwt_settings_of(settings_);
}

std::string token_for(const test_router& router, const std::string& user,
                      std::chrono::seconds ttl) {
  return context::mint_token(router.jwt(), user, ttl);
}

std::string sign_claims(const json& claims, const std::string& key, const std::string& alg) {
  using namespace jwt::params;
  jwt::jwt_object obj{algorithm(alg), secret(key)};
  for (auto& [name, value] : claims.items())
    obj.add_claim(name, value);
  return obj.signature();
}

client::client_options options_for(const test_router& router) {
  client::client_options o;
  o.port = router.port();
  return o;
}

connection connect_user(const test_router& router, const std::string& user,
                        const std::string& bind_address) {
  auto o = options_for(router);
  o.subprotocols = "router.v1, jwt." + token_for(router, user);
  o.bind_address = bind_address;
  auto [client, handshake] = client::ws_client::connect(o);
  REQUIRE_MESSAGE(handshake.upgraded, "status " << handshake.status << " " << handshake.body);
  auto greeting = next_json(*client);
  REQUIRE(greeting["type"] == "connection_established");
  return {std::move(client), std::move(greeting)};
}

json next_json(client::ws_client& client, std::chrono::milliseconds timeout) {
  auto f = client.read(timeout);
  REQUIRE_MESSAGE(f.what == client::frame::kind::text,
                  "expected a text frame, got kind " << static_cast<int>(f.what) << " code "
                                                     << f.close_code);
  return json::parse(f.data);
}

void expect_close(client::ws_client& client, std::uint16_t code,
                  std::chrono::milliseconds timeout) {
  auto f = client.read(timeout);
  CHECK_MESSAGE(f.what == client::frame::kind::closed,
                "expected the close " << code << ", got frame kind " << static_cast<int>(f.what));
  CHECK(f.close_code == code);
}

void expect_close_after_text(client::ws_client& client, std::uint16_t code,
                             const std::function<void(const json&)>& on_text,
                             std::chrono::milliseconds timeout) {
  for (;;) {
    auto f = client.read(timeout);
    if (f.what != client::frame::kind::text) {
      CHECK_MESSAGE(f.what == client::frame::kind::closed,
                    "expected the close " << code << ", got frame kind "
                                          << static_cast<int>(f.what));
      CHECK(f.close_code == code);
      return;
    }
    if (on_text)
      on_text(json::parse(f.data));
  }
}


client::http_response publish(const test_router& router, const json& body,
                              const std::string& auth) {
  return client::http_request("127.0.0.1", router.port(), "POST", "/api/v1/publish", auth,
                              body.dump());
}

json publish_body(const std::string& user, const std::string& type, json data) {
  return {{"user_id", user}, {"event", {{"type", type}, {"data", std::move(data)}}}};
}

double metric(const std::string& text, const std::string& series) {
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    if (line.rfind(series + " ", 0) == 0)
      return std::stod(line.substr(series.size() + 1));
  return 0;
}

double metric(const test_router& router, const std::string& series) {
  return metric(client::http_request("127.0.0.1", router.port(), "GET", "/metrics").body, series);
}

long rss_kib() {
  std::ifstream status{"/proc/self/status"};
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  return -1;
}

long heap_in_use_kib() {
  auto info = mallinfo2();
  return static_cast<long>((info.uordblks + info.hblkhd) / 1024);
}

// -- child_process ------------------------------------------------------------

child_process::child_process(const std::vector<std::string>& argv, bool piped_stdin) {
  int in[2] = {-1, -1}, out[2], err[2];
  if (piped_stdin)
    REQUIRE(pipe2(in, O_CLOEXEC) == 0);
  REQUIRE(pipe2(out, O_CLOEXEC) == 0);
  REQUIRE(pipe2(err, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (piped_stdin)
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int rc = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (piped_stdin) {
    close(in[0]);
    in_ = in[1];
  }
  close(out[1]);
  close(err[1]);
  out_ = out[0];
  err_ = err[0];
  REQUIRE_MESSAGE(rc == 0, "cannot start " << argv[0]);
}

child_process::~child_process() {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  close_stdin();
  close(out_);
  close(err_);
}

void child_process::write_stdin(std::string_view text) {
  REQUIRE(in_ >= 0);
  // A child gone already makes the write fail with EPIPE; the SIGPIPE it raises is kept
  // blocked on this thread and taken back, so that it never ends the test binary.
  sigset_t pipe_only, old_mask;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old_mask);
  bool broken = false;
  while (!text.empty() && !broken) {
    auto n = ::write(in_, text.data(), text.size());
    if (n < 0 && errno == EINTR)
      continue;
    broken = n <= 0;
    if (!broken)
      text.remove_prefix(static_cast<std::size_t>(n));
  }
  if (broken) {
    timespec none{0, 0};
    sigtimedwait(&pipe_only, nullptr, &none);
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  CHECK_MESSAGE(!broken, "the child's standard input is closed");
}

void child_process::close_stdin() {
  if (in_ >= 0)
    close(std::exchange(in_, -1));
}

std::string child_process::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = out_buffer_.find('\n'); nl != std::string::npos) {
      auto line = out_buffer_.substr(0, nl);
      out_buffer_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return {};
    pollfd p{out_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return {};
    char buf[4096];
    auto n = ::read(out_, buf, sizeof(buf));
    if (n <= 0)
      return {};
    out_buffer_.append(buf, static_cast<size_t>(n));
  }
}

std::string child_process::read_all_stderr(std::chrono::milliseconds timeout) {
  std::string all;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    pollfd p{err_, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return all;
    char buf[4096];
    auto n = ::read(err_, buf, sizeof(buf));
    if (n <= 0)
      return all;
    all.append(buf, static_cast<size_t>(n));
  }
}

void child_process::signal(int sig) {
  if (!reaped_)
    kill(pid_, sig);
}

void child_process::pause() {
  signal(SIGSTOP);
  REQUIRE(eventually([&] { return is_stopped(pid_); }, 5s));
}

int child_process::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(10ms);
  }
  return -1;
}

} // namespace er::test

namespace er::test {

app::router_settings agent_settings() {
  auto s = test_settings();
  s.demo_steps = 3;
  s.demo_step_delay_ms = 5;
  s.test_agents = 1;
  s.max_runs_per_connection = 5;
  auto sh = [](std::string name, std::string script, std::int64_t timeout_ms) {
    app::command_agent_settings c;
    c.name = std::move(name);
    c.executable = "/bin/sh";
    c.args = {"-c", std::move(script)};
    c.timeout_ms = timeout_ms;
    return c;
  };
  s.command_agents = {
    sh("well-behaved",
       "read line; echo '{\"type\":\"agent_thinking\",\"data\":{\"text\":\"hm\"}}';"
       " echo \"stderr secret $line\" >&2;"
       " printf '{\"type\":\"agent_completed\",\"data\":{\"request\":%s}}\\n' \"$line\"",
       5000),
    sh("crasher", "read line; echo '{\"type\":\"agent_thinking\"}'; kill -SEGV $$", 5000),
    sh("garbage", "read line; echo 'this is not json'; sleep 30", 5000),
    // agent_completed whose data nests 30,000 levels: past the limit of outside JSON
    sh("too-deep",
       "read line; o=$(head -c 30000 /dev/zero | tr '\\0' '['); c=$(echo \"$o\" | tr '[' ']');"
       " echo \"{\\\"type\\\":\\\"agent_completed\\\",\\\"data\\\":{\\\"a\\\":$o$c}}\"; sleep 30",
       5000),
    sh("hanger", "read line; echo '{\"type\":\"agent_progress\",\"data\":{\"pid\":'$$'}}'; sleep 30",
       700),
    sh("quitter", "read line; exit 3", 5000),
    // prints agent events as fast as a pipe takes them, for ever
    sh("flood", "read line; exec yes '{\"type\":\"agent_progress\",\"data\":{\"n\":1}}'", 60000),
    // the same with the shortest line an agent event can have: 630 lines in a 16 KiB read
    sh("flood-short", "read line; exec yes '{\"type\":\"agent_progress\"}'", 60000),
    sh("sleeper",
       "read line; sleep 30 & echo '{\"type\":\"agent_progress\",\"data\":{\"pid\":'$$',\"child\":'$!'}}'; wait",
       30000),
  };
  s.command_agents.push_back(
    {"example", ER_SOURCE_DIR "/agents/example-agent", {}, 10000});
  return s;
}

std::vector<json> read_until(client::ws_client& client, const std::function<bool(const json&)>& done,
                             std::chrono::milliseconds timeout) {
  std::vector<json> frames;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    REQUIRE_MESSAGE(left.count() > 0, "timed out after " << frames.size() << " frames");
    auto f = client.read(left);
    REQUIRE_MESSAGE(f.what == client::frame::kind::text,
                    "connection ended or timed out after " << frames.size() << " frames");
    frames.push_back(json::parse(f.data));
    if (done(frames.back()))
      return frames;
  }
}

bool is_final(const json& frame) {
  auto t = frame.value("type", "");
  return t == "agent_completed" || t == "agent_error" || t == "agent_stopped";
}

std::vector<json> run_to_end(client::ws_client& client, const json& request,
                             std::chrono::milliseconds timeout) {
  client.send_text(request.dump());
  auto frames = read_until(
    client, [](const json& f) { return is_final(f) || f["type"] == "error"; }, timeout);
  return frames;
}

bool back_to_baseline(test_router& router, std::size_t actors) {
  return eventually([&] {
    return router.server().stats().connections == 0
           && router.server().running_actors() == actors;
  });
}

} // namespace er::test

namespace er::test {

void expect_flood_held_back(const test_router& router, const json& start, int runs) {
  auto bystander = connect_user(router, "bob");
  auto c = connect_user(router, "alice");
  [[maybe_unused]] auto before = heap_in_use_kib(); // unused under the sanitizers
  for (int i = 0; i < runs; ++i) {
    auto each = start;
    each["id"] = start["id"].get<std::string>() + std::to_string(i);
    c.client->send_text(each.dump());
  }
  for (int i = 0; i < 30; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) // their allocators are not glibc's
    CHECK(heap_in_use_kib() - before < 64 * 1024);
#endif
  }
  bystander.client->send_text(R"({"type":"ping","id":"p"})");
  CHECK(next_json(*bystander.client)["reply_to"] == "p");
  // Held back, not closed: before, alice's queue passed its bound within a second (4008).
  CHECK(metric(router, "router_slow_consumer_disconnects_total") == 0);
  auto emitted = [&] { return metric(router, R"(router_events_out_total{type="agent_progress"})"); };
  auto held_at = emitted();
  std::this_thread::sleep_for(std::chrono::milliseconds{500});
  // At most a run's window, and the read that filled it, after the socket congested.
  CHECK(emitted() - held_at < 2500.0 * runs);

  // alice reads now: what her socket and queue hold, then the agent goes on at her pace. Every
  // event arrives, once, in order.
  std::uint64_t last_id = 0;
  std::vector<std::string> run_ids;
  std::size_t progress = 0;
  auto next_event = [&] {
    auto f = c.client->read(std::chrono::seconds{10});
    REQUIRE(f.what == client::frame::kind::text);
    auto event = json::parse(f.data);
    auto id = event["event_id"].get<std::uint64_t>();
    if (last_id != 0)
      CHECK(id == last_id + 1);
    last_id = id;
    if (event["type"] == "agent_started")
      run_ids.push_back(event["run_id"].get<std::string>());
    if (event["type"] == "agent_progress")
      ++progress;
    return event;
  };
  // The agent goes on while she reads: far more than a window's worth is emitted (when she has
  // read what her socket's buffers held, a few MB on loopback).
  auto reading_ends = std::chrono::steady_clock::now() + std::chrono::seconds{120};
  while (emitted() < held_at + 20000) {
    REQUIRE(std::chrono::steady_clock::now() < reading_ends);
    for (int i = 0; i < 2000; ++i)
      next_event();
  }
  REQUIRE(run_ids.size() == static_cast<std::size_t>(runs));
  for (auto& run_id : run_ids)
    c.client->send_text(
      json{{"type", "stop_agent"}, {"id", "s"}, {"payload", {{"run_id", run_id}}}}.dump());
  for (int stopped = 0; stopped < runs;) {
    auto event = next_event();
    if (event["type"] == "agent_stopped")
      ++stopped;
    else
      REQUIRE(event["type"] == "agent_progress");
  }
  CHECK(progress >= 20000);
  CHECK(metric(router, "router_slow_consumer_disconnects_total") == 0);
  CHECK(eventually([&] { return metric(router, "router_agent_runs_active") == 0; }));
  c.client->send_text(R"({"type":"ping","id":"after"})");
  CHECK(next_json(*c.client)["reply_to"] == "after");
}

} // namespace er::test
