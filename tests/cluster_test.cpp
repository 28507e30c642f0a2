// The cluster (DESIGN §11) with real processes: redis-server instances on free ports and
// several event-router processes, started and stopped by each test.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <future>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <doctest/doctest.h>
#include <sqlite3.h>

#include "tests/raw_socket.hpp"
#include "tests/support.hpp"
#include "tests/tcp_proxy.hpp"
#include "tests/temp_dir.hpp"

using namespace er::test;

namespace {

const std::string api_key = "cluster-test-key";

unsigned short free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// One inline Redis command; the raw reply.
std::string redis_command(unsigned short port, const std::string& command) {
  try {
    raw_socket s{port};
    s.send(command + "\r\n");
    return s.read_until("\r\n", 2s);
  } catch (const std::exception&) {
    return {};
  }
}

/// The id of the connection to Redis named `name` (CLIENT LIST), or empty: none is. `auth`:
/// AUTH's arguments first (user and password), when Redis asks for them.
std::string redis_client_id(unsigned short port, const std::string& name,
                            const std::string& auth = {}) {
  raw_socket s{port};
  if (!auth.empty())
    s.send("AUTH " + auth + "\r\n");
  s.send("CLIENT LIST\r\nPING\r\n"); // the list's end is where PING's answer begins
  auto text = s.read_until("+PONG\r\n", 2s);
  std::istringstream lines{text};
  for (std::string line; std::getline(lines, line);)
    if (line.find(" name=" + name + " ") != std::string::npos && line.rfind("id=", 0) == 0)
      return line.substr(3, line.find(' ') - 3);
  return {};
}

/// A redis-server without persistence on a free port, stopped with the test.
class redis_server {
public:
  explicit redis_server(unsigned short port = free_port()) : port_(port) {
    start();
  }
  /// With more of redis-server's options (e.g. an ACL user that asks for a password).
  explicit redis_server(std::vector<std::string> options)
    : port_(free_port()), options_(std::move(options)) {
    start();
  }
  ~redis_server() {
    stop();
  }
  void start() {
    std::vector<std::string> argv{"/usr/bin/redis-server", "--port", std::to_string(port_),
                                  "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                  "--dir", dir_.path().string()};
    argv.insert(argv.end(), options_.begin(), options_.end());
    process_ = std::make_unique<child_process>(argv);
    REQUIRE(eventually([&] { // up: PONG, or an answer that asks for a password first
      auto answer = redis_command(port_, "PING");
      return answer.rfind("+PONG", 0) == 0 || answer.rfind("-NOAUTH", 0) == 0;
    }, 10s));
  }
  /// SIGSTOP: Redis keeps its connections and its port and answers nothing.
  void pause() {
    process_->pause();
  }
  void resume() {
    process_->resume();
  }
  void stop() {
    if (!process_)
      return;
    process_->signal(SIGCONT); // a stopped process would not act on the SIGTERM
    process_->signal(SIGTERM);
    process_->wait();
    process_.reset();
  }
  unsigned short port() const {
    return port_;
  }
  std::string address() const {
    return "127.0.0.1:" + std::to_string(port_);
  }

private:
  temp_dir dir_;
  unsigned short port_;
  std::vector<std::string> options_;
  std::unique_ptr<child_process> process_;
};

/// An event-router process in the cluster.
class node {
public:
  /// Started, and (unless `wait_for_redis` is false) with its links to Redis up: they come up
  /// after the node listens, and a publish before that is refused with 503.
  node(const std::string& redis, const std::string& id, std::vector<std::string> extra = {},
       bool wait_for_redis = true)
    : id_(id) {
    std::vector<std::string> argv{ER_ROUTER_BINARY, "--router.port=0", "--router.store-path=:memory:",
                                  std::string{"--router.jwt-secret="} + test_secret,
                                  "--router.api-key=" + api_key, "--router.server-id=" + id,
                                  "--cluster.redis=" + redis, "--cluster.node-ttl-ms=1000"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process_ = std::make_unique<child_process>(argv);
    static const std::regex listen_line{R"(listening on ws://127\.0\.0\.1:(\d+)/ws)"};
    for (int i = 0; i < 5 && port_ == 0; ++i) {
      auto line = process_->read_line();
      std::smatch m;
      if (std::regex_search(line, m, listen_line))
        port_ = static_cast<unsigned short>(std::stoi(m[1]));
    }
    REQUIRE_MESSAGE(port_ != 0, "node " << id << " did not start: " << process_->read_all_stderr(1s));
    if (wait_for_redis)
      REQUIRE(eventually([&] { return health()["cluster"]["redis"] == "up"; }, 10s));
  }
  ~node() {
    if (process_) {
      process_->signal(SIGKILL);
      process_->wait();
    }
  }
  /// SIGTERM: the node drains (its runs may finish within router.drain-timeout-ms), then exits.
  void terminate() {
    process_->signal(SIGTERM);
  }
  /// terminate(), then its exit status once it has exited (-1: not within `timeout`).
  int stop(std::chrono::milliseconds timeout = 15s) {
    terminate();
    auto status = process_->wait(timeout);
    if (status >= 0)
      process_.reset();
    return status;
  }
  void kill_now() {
    process_->signal(SIGKILL);
    process_->wait();
    process_.reset();
  }
  unsigned short port() const {
    return port_;
  }
  const std::string& id() const {
    return id_;
  }
  /// The node answers nothing, while Redis still takes it for alive until its liveness key
  /// expires (child_process::pause).
  void pause() {
    process_->pause();
  }
  void resume() {
    process_->resume();
  }
  json health() const {
    return json::parse(er::client::http_request("127.0.0.1", port_, "GET", "/healthz").body);
  }
  er::client::http_response publish(const std::string& user, json data,
                                    std::chrono::milliseconds timeout = 5s) const {
    return er::client::http_request("127.0.0.1", port_, "POST", "/api/v1/publish",
                                    "Bearer " + api_key,
                                    json{{"user_id", user}, {"event", {{"type", "news"}, {"data", data}}}}.dump(),
                                    timeout);
  }
  er::client::http_response disconnect(const std::string& user) const {
    return er::client::http_request("127.0.0.1", port_, "POST",
                                    "/api/v1/users/" + user + "/disconnect", "Bearer " + api_key);
  }
  /// A series of the node's /metrics.
  double metric_value(const std::string& series) const {
    return metric(er::client::http_request("127.0.0.1", port_, "GET", "/metrics").body, series);
  }
  /// A connection of `user`, its greeting read.
  std::unique_ptr<er::client::ws_client> connect(const std::string& user) const {
    auto c = try_connect(user);
    CHECK(next_json(*c)["type"] == "connection_established");
    return c;
  }
  /// `via`: the port of a proxy in front of this node (0: none).
  std::unique_ptr<er::client::ws_client> try_connect(const std::string& user,
                                                     const std::string& target = "/ws",
                                                     unsigned short via = 0) const {
    er::client::client_options o;
    o.port = via != 0 ? via : port_;
    o.target = target;
    o.subprotocols = "router.v1, jwt." + sign_claims(
      {{"sub", user}, {"exp", std::time(nullptr) + 3600}}, test_secret);
    auto [c, h] = er::client::ws_client::connect(o);
    REQUIRE(h.upgraded);
    return std::move(c);
  }

private:
  std::string id_;
  std::unique_ptr<child_process> process_;
  unsigned short port_ = 0;
};

/// Reads `count` published events on `c`: their data.n, in arrival order; every frame must be
/// `user`'s.
std::vector<int> read_published(er::client::ws_client& c, const std::string& user, int count) {
  std::vector<int> seen;
  while (static_cast<int>(seen.size()) < count) {
    auto f = next_json(c, 10s);
    CHECK(f["user_id"] == user);
    if (f["type"] == "news")
      seen.push_back(f["data"]["n"].get<int>());
  }
  return seen;
}

/// 0, 1, ..., count - 1.
std::vector<int> upto(int count) {
  std::vector<int> v;
  for (int i = 0; i < count; ++i)
    v.push_back(i);
  return v;
}

/// The target of a resume of the session `greeting` began (or last resumed), after
/// `last_event_id`.
std::string resume_target(const json& greeting, std::uint64_t last_event_id) {
  return "/ws?resume=" + greeting["data"]["resume_token"].get<std::string>()
         + "&last_event_id=" + std::to_string(last_event_id);
}

/// A resume on `at`; its greeting.
std::pair<std::unique_ptr<er::client::ws_client>, json>
resume_on(const node& at, const std::string& user, const json& greeting,
          std::uint64_t last_event_id) {
  auto c = at.try_connect(user, resume_target(greeting, last_event_id));
  auto hello = next_json(*c);
  REQUIRE(hello["type"] == "connection_established");
  return {std::move(c), hello};
}

/// A resume on `at` made on another thread: the node answers the upgrade once the hand-over is
/// settled, which a test holds up meanwhile.
std::future<std::unique_ptr<er::client::ws_client>>
resume_later(const node& at, const std::string& user, const json& greeting,
             std::uint64_t last_event_id) {
  return std::async(std::launch::async, [&at, user, target = resume_target(greeting, last_event_id)] {
    return at.try_connect(user, target);
  });
}

/// A node's options for a test that holds Redis's answers or the node's writes in a proxy for
/// a while: its links wait 20 s for an answer, its liveness lasts `node_ttl_ms`.
std::vector<std::string> patient_links(int node_ttl_ms = 5000) {
  return {"--cluster.redis-timeout-ms=20000", "--cluster.node-ttl-ms=" + std::to_string(node_ttl_ms)};
}

/// A test's Redis and two nodes that reach it through proxies: n1, a session's owner, whose
/// writes to Redis the test can hold in `owner_out`, and n2, the node the session moves to,
/// whose answers from Redis it can hold in `adopter_in`. Both wait for held answers
/// (patient_links).
struct proxied_pair {
  explicit proxied_pair(int adopter_ttl_ms = 5000)
    : n1{owner_out.address(), "n1", patient_links()},
      n2{adopter_in.address(), "n2", patient_links(adopter_ttl_ms)} {
  }
  redis_server redis;
  tcp_proxy owner_out{redis.port()};
  tcp_proxy adopter_in{redis.port()};
  node n1;
  node n2;
};

/// proxied_pair whose n2 ticks, and so reconnects a lost link, every 0.5 s.
struct proxied_pair_quick_adopter : proxied_pair {
  proxied_pair_quick_adopter() : proxied_pair{1500} {
  }
};

/// A resume on `adopter` of the session `greeting` began (on `owner`), started once the
/// owner's writes to Redis are held in `owner_out`, and returned once the owner has made its
/// offer, which waits there: the owner marked the user's stream when it heard the request.
std::future<std::unique_ptr<er::client::ws_client>>
resume_offer_held(tcp_proxy& owner_out, const node& owner, const node& adopter,
                  const std::string& user, const json& greeting, std::uint64_t last_event_id) {
  const std::string out = "router_cluster_bus_messages_out_total";
  auto sent = owner.metric_value(out);
  owner_out.hold_sends();
  auto moving = resume_later(adopter, user, greeting, last_event_id);
  REQUIRE(eventually([&] { return owner.metric_value(out) > sent; }, 5s));
  return moving;
}

/// The next frame on `c`, the published event with data.n `n`: its event_id.
std::uint64_t news_event_id(er::client::ws_client& c, int n) {
  auto f = next_json(c, 10s);
  REQUIRE(f["type"] == "news");
  CHECK(f["data"]["n"] == n);
  return f["event_id"].get<std::uint64_t>();
}

/// A session of `user` on `owner`, left waiting there for a resume (its socket lost) after a
/// first publish (data.n 0) through `publisher`, which `follower`, a connection of the user on
/// another node, gets too. The session's greeting, and the event_id the publish had there.
std::pair<json, std::uint64_t> session_left_waiting(const node& owner, const node& publisher,
                                                    er::client::ws_client& follower,
                                                    const std::string& user) {
  auto c = owner.try_connect(user);
  auto greeting = next_json(*c);
  REQUIRE(publisher.publish(user, {{"n", 0}}).status == 202);
  auto last_event_id = news_event_id(*c, 0);
  CHECK(read_published(follower, user, 1) == upto(1));
  c->reset();
  std::this_thread::sleep_for(100ms); // the owner has seen the socket go
  return {greeting, last_event_id};
}

/// The greeting of a session moved to `c`'s node: the session recovered there.
void expect_moved(er::client::ws_client& c) {
  auto hello = next_json(c, 10s);
  REQUIRE(hello["type"] == "connection_established");
  CHECK(hello["data"]["recovered"] == true);
}

/// Each of `clients`, `user`'s, gets the publishes `expected` (their data.n), in this order,
/// and nothing more.
void expect_each_once(std::initializer_list<er::client::ws_client*> clients,
                      const std::string& user, const std::vector<int>& expected) {
  for (auto* c : clients)
    CHECK(read_published(*c, user, static_cast<int>(expected.size())) == expected);
  for (auto* c : clients)
    CHECK(c->read(300ms).what == er::client::frame::kind::timeout);
}

/// The user's connections that Redis counts (on every node), as Redis answers: ":N\r\n".
std::string counted_connections(unsigned short redis_port, const std::string& user) {
  return redis_command(redis_port, "EVAL \"local t = 0 for _, v in ipairs(redis.call('HVALS', "
                                   "KEYS[1])) do t = t + tonumber(v) end return t\" 1 er:u:"
                                   + user + ":conns");
}

/// Reads `c`'s frames up to the final event of `run`, checking the stream's promises on each:
/// `user`'s, event ids consecutive from `next_id` (updated), the run's events in the demo
/// agent's order. Returns the run's event types.
std::vector<std::string> read_run(er::client::ws_client& c, const std::string& user,
                                  const std::string& run, std::uint64_t& next_id,
                                  int frames_before_drop = -1) {
  std::vector<std::string> types;
  for (int n = 0; n != frames_before_drop; ++n) {
    auto f = next_json(c, 10s);
    REQUIRE(f.contains("event_id"));
    CHECK(f["user_id"] == user);
    CHECK(f["event_id"].get<std::uint64_t>() == next_id);
    next_id = f["event_id"].get<std::uint64_t>() + 1;
    if (f["run_id"] != run)
      continue;
    types.push_back(f["type"].get<std::string>());
    if (types.back() == "agent_completed" || types.back() == "agent_error"
        || types.back() == "agent_stopped")
      break;
  }
  return types;
}

} // namespace

TEST_CASE("a publish on any node reaches every connection of the user on every node once, in "
          "order, and no other user") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"}, n3{redis.address(), "n3"};
  auto a1 = n1.connect("alice");
  auto a2 = n2.connect("alice");
  auto a3 = n3.connect("alice");
  auto b2 = n2.connect("bob");
  CHECK(eventually([&] { return n1.health()["cluster"]["nodes"] == 3; }, 5s));
  const node* nodes[] = {&n1, &n2, &n3};
  for (int i = 0; i < 30; ++i) {
    auto r = nodes[i % 3]->publish("alice", {{"n", i}});
    REQUIRE(r.status == 202);
    CHECK(json::parse(r.body)["delivered"] == 3);
  }
  CHECK(json::parse(n3.publish("bob", {{"n", 0}}).body)["delivered"] == 1);
  for (auto* c : {a1.get(), a2.get(), a3.get()})
    CHECK(read_published(*c, "alice", 30) == upto(30));
  CHECK(read_published(*b2, "bob", 1) == upto(1));
  CHECK(b2->read(300ms).what == er::client::frame::kind::timeout); // nothing of alice's
  CHECK(json::parse(n1.publish("nobody", {{"n", 0}}).body)["delivered"] == 0);
}

TEST_CASE("the disconnect API on any node closes the user's connections on every node") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"};
  auto a1 = n1.connect("alice");
  auto a2 = n2.connect("alice");
  auto b1 = n1.connect("bob");
  auto r = n2.disconnect("alice");
  REQUIRE(r.status == 200);
  CHECK(json::parse(r.body)["disconnected"] == 2);
  expect_close(*a1, 4511);
  expect_close(*a2, 4511);
  b1->send_text(R"({"type":"ping","id":"still"})");
  CHECK(next_json(*b1)["reply_to"] == "still");
}

TEST_CASE("router.max-connections-per-user holds across nodes, and a killed node's connections "
          "stop counting once its liveness expires") {
  redis_server redis;
  auto limit = std::vector<std::string>{"--router.max-connections-per-user=2"};
  node n1{redis.address(), "n1", limit}, n2{redis.address(), "n2", limit},
    n3{redis.address(), "n3", limit};
  auto a1 = n1.connect("alice");
  auto a2 = n2.connect("alice");
  auto refused = n3.try_connect("alice");
  expect_close(*refused, 4503);
  CHECK(eventually([&] { return n3.health()["cluster"]["nodes"] == 3; }, 5s));
  n1.kill_now();
  CHECK(eventually([&] { return n3.health()["cluster"]["nodes"] == 2; }, 5s));
  auto again = n3.connect("alice"); // n1's connection no longer counts
  again->send_text(R"({"type":"ping","id":"p"})");
  CHECK(next_json(*again)["reply_to"] == "p");
}

/// A session of `user` on `n`, its socket lost without a close: detached there, waiting for a
/// resume (the node's only one). Its greeting.
json left_detached(const node& n, const std::string& user) {
  auto c = n.try_connect(user);
  auto greeting = next_json(*c);
  c->reset();
  CHECK(eventually([&] { return n.health()["detached"] == 1; }, 5s));
  return greeting;
}

TEST_CASE("a resume that would take the user past max-connections-per-user on the node it "
          "reaches is closed with 4503, and the session waits on at its owner") {
  // The adopting node holds the limit's connection itself here; the cluster's count is
  // checked in Redis either way.
  redis_server redis;
  auto limit = std::vector<std::string>{"--router.max-connections-per-user=1"};
  node n1{redis.address(), "n1", limit}, n2{redis.address(), "n2", limit};
  auto greeting = left_detached(n1, "alice");
  auto a2 = n2.connect("alice"); // the detached session does not count
  // Before, n2 adopted the session: two connections of a user limited to one.
  auto refused = n2.try_connect("alice", resume_target(greeting, 0));
  expect_close(*refused, 4503);
  CHECK(n2.health()["connections"] == 1);
  CHECK(n1.health()["detached"] == 1);
  a2->close();
  CHECK(eventually([&] { return n2.health()["connections"] == 0; }, 5s));
  auto [moved, hello] = resume_on(n2, "alice", greeting, 0);
  CHECK(hello["data"]["recovered"] == true);
  CHECK(hello["data"]["session_id"] == greeting["data"]["session_id"]);
}

TEST_CASE("a resume of a detached session on its own node is held to the cluster's count: past "
          "max-connections-per-user with connections elsewhere it is closed with 4503") {
  redis_server redis;
  auto limit = std::vector<std::string>{"--router.max-connections-per-user=2"};
  node n1{redis.address(), "n1", limit}, n2{redis.address(), "n2", limit};
  auto greeting = left_detached(n1, "alice");
  auto a2 = n2.connect("alice"); // the detached session does not count
  auto b2 = n2.connect("alice");
  // n1 holds none of alice's connections: before, its own count let the resume in, and alice
  // had three connections at a limit of two.
  auto refused = n1.try_connect("alice", resume_target(greeting, 0));
  expect_close(*refused, 4503);
  CHECK(n1.health()["detached"] == 1);
  b2->close();
  CHECK(eventually([&] { return counted_connections(redis.port(), "alice") == ":1\r\n"; }, 5s));
  auto [back, hello] = resume_on(n1, "alice", greeting, 0);
  CHECK(hello["data"]["recovered"] == true);
  // Its place is settled with the attach's count, in one write: never counted twice (3).
  CHECK(counted_connections(redis.port(), "alice") == ":2\r\n");
  // A resume the session refuses (it claims events never sent) gives its place back first:
  // the fresh session it gets instead fits (with the place still held it was refused, 4503).
  back->reset();
  CHECK(eventually([&] { return n1.health()["detached"] == 1; }, 5s));
  CHECK(eventually([&] { return counted_connections(redis.port(), "alice") == ":1\r\n"; }, 5s));
  auto [fresh, fh] = resume_on(n1, "alice", hello, 1000);
  CHECK(fh["data"]["recovered"] == false);
  CHECK(eventually([&] { return counted_connections(redis.port(), "alice") == ":2\r\n"; }, 5s));
}

TEST_CASE("a place the limit script granted counts in Redis until it is a connection: another "
          "connection of the user closing meanwhile does not free it for a third node") {
  // Before, the node wrote its count of the user (HSET, HDEL at zero) without the places the
  // script had granted it and the router had not yet turned into connections: here the place
  // of a resume waiting for its owner's offer. The other connection's close took it away in
  // Redis, and n3 admitted two connections of a user limited to two, three with the resume.
  redis_server redis;
  auto limit = std::vector<std::string>{"--router.max-connections-per-user=2"};
  node n1{redis.address(), "n1", limit}, n2{redis.address(), "n2", limit},
    n3{redis.address(), "n3", limit};
  auto greeting = left_detached(n1, "alice");
  auto a = n2.connect("alice");
  // The place and the connection it became are one write: never counted twice (2).
  CHECK(counted_connections(redis.port(), "alice") == ":1\r\n");
  n1.pause(); // the owner: the resume waits for its offer (up to 3 s), its place held on n2
  auto moving = resume_later(n2, "alice", greeting, 0);
  CHECK(eventually([&] { return counted_connections(redis.port(), "alice") == ":2\r\n"; }, 2s));
  a->close();
  CHECK(eventually([&] { return n2.health()["connections"] == 0; }, 2s));
  CHECK(eventually([&] { return counted_connections(redis.port(), "alice") != ":2\r\n"; }, 2s));
  CHECK(counted_connections(redis.port(), "alice") == ":1\r\n"); // the resume's place
  auto b = n3.connect("alice");
  auto refused = n3.try_connect("alice");
  expect_close(*refused, 4503);
  n1.resume();
  auto resumed = moving.get();
  CHECK(next_json(*resumed, 10s)["type"] == "connection_established");
  CHECK(eventually([&] { return counted_connections(redis.port(), "alice") == ":2\r\n"; }, 5s));
  CHECK(n2.health()["connections"] == 1);
  CHECK(n3.health()["connections"] == 1);
}

TEST_CASE("a place the limit script granted and the connection it becomes are one count in the "
          "node's writes to Redis: a new connection and a resume are never counted twice") {
  // Before, the router settled the place in a message of its own after the presence count:
  // the node wrote the count with both (one too high, refusing a connection that fit), then
  // again without the place.
  redis_server redis;
  node n1{redis.address(), "n1", {"--router.max-connections-per-user=3"}};
  raw_socket monitor{redis.port()};
  monitor.send("MONITOR\r\n");
  REQUIRE(monitor.read_until("+OK\r\n", 2s).find("+OK\r\n") != std::string::npos);
  auto a = n1.connect("alice");                    // 1
  auto greeting = left_detached(n1, "alice");      // 2, then 1 once detached
  auto [back, hello] = resume_on(n1, "alice", greeting, 0); // 2
  CHECK(hello["data"]["recovered"] == true);
  auto written = [&] { // the node's HSETs of its count of alice, in order: "1 2 ..."
    std::string values;
    auto& log = monitor.received();
    std::regex hset{R"re("HSET" "er:u:alice:conns" "[^"]*" "(\d+)")re"};
    for (std::sregex_iterator m{log.begin(), log.end(), hset}, end; m != end; ++m)
      values += (values.empty() ? "" : " ") + (*m)[1].str();
    return values;
  };
  CHECK(eventually([&] { // the last one may follow the greeting
    monitor.read_until("\n-never-\n", 50ms);
    return written().size() >= 7; // four values
  }, 5s));
  REQUIRE(redis_command(redis.port(), "ECHO end-of-writes") == "$13\r\nend-of-writes\r\n");
  monitor.read_until("\"end-of-writes\"", 5s); // and none after it
  CHECK(written() == "1 2 1 2");
}

TEST_CASE("a limit script that gets no answer from Redis (here: an ACL without EVAL) admits "
          "connections by the node's own count instead of refusing them") {
  redis_server redis{{"--user", "default", "on", "nopass", "~*", "&*", "+@all", "-eval"}};
  node n1{redis.address(), "n1", {"--router.max-connections-per-user=2"}};
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "up"; }, 10s));
  auto a = n1.connect("alice"); // admitted: an error is not a refusal
  auto b = n1.connect("alice");
  a->send_text(R"({"type":"ping","id":"p"})");
  CHECK(next_json(*a)["reply_to"] == "p");
  auto refused = n1.try_connect("alice"); // the node's own count still holds the limit
  expect_close(*refused, 4503);
}

TEST_CASE("a publish right after a user's first connection on a node reaches it, even before that "
          "node's subscription to the user does") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"};
  auto a1 = n1.connect("alice");
  REQUIRE(n1.publish("alice", {{"n", 0}}).status == 202); // the user's channel has a history
  CHECK(read_published(*a1, "alice", 1) == upto(1));
  // The nodes' subscriber links are cut: n2 subscribes to bob's channel only once its link is
  // back (its next tick, up to a third of node-ttl later), and bob's connection there is
  // counted (and greeted) before that.
  CHECK(redis_command(redis.port(), "CLIENT KILL TYPE pubsub").rfind(":", 0) == 0);
  auto b2 = n2.connect("bob");
  for (int i = 0; i < 3; ++i) {
    auto r = n1.publish("bob", {{"n", i}});
    REQUIRE(r.status == 202);
    CHECK(json::parse(r.body)["delivered"] == 1); // counted: so it must arrive
  }
  CHECK(read_published(*b2, "bob", 3) == upto(3));
  REQUIRE(n1.publish("bob", {{"n", 3}}).status == 202); // and the channel goes on from there
  CHECK(read_published(*b2, "bob", 1) == std::vector<int>{3});
  CHECK(b2->read(300ms).what == er::client::frame::kind::timeout); // each once
}

TEST_CASE("a publish after a node died with connections of the user drops the dead node's count") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"};
  auto a1 = n1.connect("alice");
  auto a2 = n2.connect("alice");
  auto r = n2.publish("alice", {{"n", 0}});
  REQUIRE(r.status == 202);
  CHECK(json::parse(r.body)["delivered"] == 2);
  CHECK(read_published(*a2, "alice", 1) == upto(1));
  n1.kill_now();
  CHECK(eventually([&] { return n2.health()["cluster"]["nodes"] == 1; }, 10s));
  r = n2.publish("alice", {{"n", 1}});
  REQUIRE(r.status == 202);
  CHECK(json::parse(r.body)["delivered"] == 1);
  CHECK(read_published(*a2, "alice", 1) == std::vector<int>{1});
  CHECK(redis_command(redis.port(), "HLEN er:u:alice:conns").rfind(":1\r\n", 0) == 0);
}

TEST_CASE("a node that stalled past node-ttl (taken for dead, its counts dropped) counts its "
          "connections again once it goes on, and they miss nothing") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"};
  auto a1 = n1.connect("alice");
  auto a2 = n2.connect("alice");
  int published = 0;
  auto publish_on_n2 = [&] {
    auto r = n2.publish("alice", {{"n", published++}});
    REQUIRE(r.status == 202);
    return json::parse(r.body)["delivered"].get<int>();
  };
  CHECK(publish_on_n2() == 2);
  n1.pause(); // its liveness key expires: to the others it is dead
  CHECK(eventually([&] { return n2.health()["cluster"]["nodes"] == 1; }, 10s));
  CHECK(publish_on_n2() == 1); // which drops n1's count from the user's hash
  CHECK(redis_command(redis.port(), "HLEN er:u:alice:conns").rfind(":1\r\n", 0) == 0);
  n1.resume();
  // Registered again at its next tick, n1 writes its count again: publishes count a1 again
  // (without that, its connections would stay uncounted until alice's next change there).
  CHECK(eventually([&] { return publish_on_n2() == 2; }, 10s));
  CHECK(redis_command(redis.port(), "HLEN er:u:alice:conns").rfind(":2\r\n", 0) == 0);
  // What was published while n1 stood still reaches a1 too, each once, in order.
  CHECK(read_published(*a1, "alice", published) == upto(published));
  CHECK(read_published(*a2, "alice", published) == upto(published));
  CHECK(a1->read(300ms).what == er::client::frame::kind::timeout);
}

TEST_CASE("while Redis is down local traffic goes on and publish answers 503, when it returns "
          "the nodes rejoin by themselves and every publish after the return is delivered") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"};
  auto a2 = n2.connect("alice");
  REQUIRE(n1.publish("alice", {{"n", 0}}).status == 202);
  CHECK(read_published(*a2, "alice", 1) == upto(1));
  redis.stop();
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "down"; }, 5s));
  auto down = n1.publish("alice", {{"n", 1}});
  CHECK(down.status == 503);
  CHECK(json::parse(down.body) == json{{"error", "cluster_unavailable"}});
  // Only accepted publishes are counted (the refused one was, before).
  CHECK(n1.metric_value("router_publishes_total") == 1);
  a2->send_text(R"({"type":"ping","id":"local"})");
  CHECK(next_json(*a2)["reply_to"] == "local");
  redis.start(); // empty: no persistence
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "up"; }, 10s));
  CHECK(eventually([&] { return n2.health()["cluster"]["redis"] == "up"; }, 10s));
  CHECK(eventually([&] { return n1.publish("alice", {{"n", 1}}).status == 202; }, 5s));
  REQUIRE(n1.publish("alice", {{"n", 2}}).status == 202);
  CHECK(read_published(*a2, "alice", 2) == std::vector<int>{1, 2}); // the same connection
}

TEST_CASE("after Redis comes back empty, what was published before a node's subscription was "
          "back reaches that node's connections, from the new history") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"};
  auto a1 = n1.connect("alice");
  REQUIRE(n2.publish("alice", {{"n", 0}}).status == 202); // n1 follows alice's first epoch
  CHECK(read_published(*a1, "alice", 1) == upto(1));
  redis.stop();
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "down"; }, 5s));
  redis.start(); // empty: a new epoch, offsets from 1 again
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "up"; }, 10s));
  CHECK(eventually([&] { return n2.health()["cluster"]["redis"] == "up"; }, 10s));
  // n1's subscriber link is cut again: the new epoch's first publishes happen without it.
  auto n1_pubsub = redis_client_id(redis.port(), "er:node:n1:pubsub");
  REQUIRE(!n1_pubsub.empty());
  CHECK(redis_command(redis.port(), "CLIENT KILL ID " + n1_pubsub) == ":1\r\n");
  for (int i = 1; i <= 3; ++i)
    REQUIRE(n2.publish("alice", {{"n", i}}).status == 202);
  CHECK(read_published(*a1, "alice", 3) == std::vector<int>{1, 2, 3});
  REQUIRE(n2.publish("alice", {{"n", 4}}).status == 202);
  CHECK(read_published(*a1, "alice", 1) == std::vector<int>{4});
  CHECK(a1->read(300ms).what == er::client::frame::kind::timeout); // each once
}

namespace {

/// alice's one connection on n1 (of two nodes at max-connections-per-user=1) ends by `end_it`
/// while n1's command link is down, and `ended` tells when n1 has seen it: once the link is
/// back, her count in Redis is gone, and her next connection on n2 is within the limit.
void count_gone_after_link_returns(const std::function<void(er::client::ws_client&)>& end_it,
                                   const std::function<bool(node&)>& ended) {
  redis_server redis;
  auto limit = std::vector<std::string>{"--router.max-connections-per-user=1"};
  node n1{redis.address(), "n1", limit}, n2{redis.address(), "n2", limit};
  auto a1 = n1.connect("alice");
  CHECK(redis_command(redis.port(), "HLEN er:u:alice:conns") == ":1\r\n");
  auto commands = redis_client_id(redis.port(), "er:node:n1:commands");
  REQUIRE(!commands.empty());
  CHECK(redis_command(redis.port(), "CLIENT KILL ID " + commands) == ":1\r\n");
  end_it(*a1); // while n1 cannot write its count
  CHECK(eventually([&] { return ended(n1); }, 5s));
  CHECK(eventually([&] { return redis_command(redis.port(), "HLEN er:u:alice:conns") == ":0\r\n"; },
                   10s));
  auto again = n2.connect("alice"); // within the limit of one: the old count is gone
  again->send_text(R"({"type":"ping","id":"p"})");
  CHECK(next_json(*again)["reply_to"] == "p");
}

} // namespace

TEST_CASE("a user's count written while a node's command link was down reaches Redis once it "
          "is back: a connection that closed meanwhile no longer counts against the limit") {
  count_gone_after_link_returns([](er::client::ws_client& c) { c.close(1000); },
                                [](node& n1) { return n1.health()["connections"] == 0; });
}

TEST_CASE("a connection dropped while its node's command link was down no longer counts once "
          "the link is back, though its session waits for a resume") {
  // Before, only users with an open connection, and users gone altogether, were written when
  // the link came back: alice's count of 1 stayed for the whole resume window, and her next
  // connection on any node was refused with 4503.
  count_gone_after_link_returns([](er::client::ws_client& c) { c.reset(); }, // no close frame
                                [](node& n1) { return n1.health()["detached"] == 1; });
}

TEST_CASE("what a node missed while its subscription was cut is filled from the user's history") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"};
  auto a1 = n1.connect("alice");
  auto a2 = n2.connect("alice");
  // Each node names its two links to Redis, so CLIENT LIST says whose each one is.
  for (auto name : {"er:node:n1:commands", "er:node:n1:pubsub", "er:node:n2:commands"})
    CHECK_MESSAGE(!redis_client_id(redis.port(), name).empty(), name);
  auto n2_pubsub = redis_client_id(redis.port(), "er:node:n2:pubsub");
  REQUIRE(!n2_pubsub.empty());
  REQUIRE(n1.publish("alice", {{"n", 0}}).status == 202);
  CHECK(read_published(*a1, "alice", 1) == upto(1));
  CHECK(read_published(*a2, "alice", 1) == upto(1));
  // Only n2's subscriber link is cut: n1 goes on receiving, n2 learns of what it missed from
  // the user's sequence once its link is back, and reads it from the history.
  CHECK(redis_command(redis.port(), "CLIENT KILL ID " + n2_pubsub) == ":1\r\n");
  for (int i = 1; i < 6; ++i) // published while n2 is not subscribed
    REQUIRE(n1.publish("alice", {{"n", i}}).status == 202);
  CHECK(read_published(*a1, "alice", 5) == std::vector<int>{1, 2, 3, 4, 5});
  CHECK(read_published(*a2, "alice", 5) == std::vector<int>{1, 2, 3, 4, 5});
  CHECK(eventually([&] { return !redis_client_id(redis.port(), "er:node:n2:pubsub").empty(); },
                   5s)); // named again on the new connection
  CHECK(n2.metric_value("router_cluster_gaps_filled_total") >= 1);
  CHECK(n1.metric_value("router_cluster_gaps_filled_total") == 0); // n1 missed nothing
  CHECK(a1->read(200ms).what == er::client::frame::kind::timeout); // each once
  CHECK(a2->read(200ms).what == er::client::frame::kind::timeout);
}

TEST_CASE("a node whose links to Redis go silent behind a partition (no FIN and no RST) notices "
          "within cluster.redis-timeout-ms and connects anew and fills in what it missed") {
  redis_server redis;
  tcp_proxy partition{redis.port()}; // n1 reaches Redis only through it
  node n1{partition.address(), "n1", {"--cluster.redis-timeout-ms=500"}};
  node n2{redis.address(), "n2"};
  auto a1 = n1.connect("alice");
  REQUIRE(n2.publish("alice", {{"n", 0}}).status == 202);
  CHECK(read_published(*a1, "alice", 1) == upto(1));
  int before = partition.accepted();
  // Both of n1's links now lead nowhere and look open: the subscriber link, which never
  // writes, would wait on its socket forever.
  partition.freeze_open_connections();
  for (int i = 1; i < 4; ++i)
    REQUIRE(n2.publish("alice", {{"n", i}}).status == 202);
  // Noticed by its probes within 1.5 x 500 ms, connected anew (two new links), and the
  // publishes made meanwhile come from the user's history, each once, in order.
  CHECK(read_published(*a1, "alice", 3) == std::vector<int>{1, 2, 3});
  CHECK(partition.accepted() >= before + 2);
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "up"; }, 5s));
  REQUIRE(n2.publish("alice", {{"n", 4}}).status == 202);
  CHECK(read_published(*a1, "alice", 1) == std::vector<int>{4});
  CHECK(a1->read(200ms).what == er::client::frame::kind::timeout);
}

TEST_CASE("a disconnect a node missed while its links were silent reaches its sessions from the "
          "history once they are back: in order with the publishes around it") {
  redis_server redis;
  tcp_proxy partition{redis.port()};
  node n1{redis.address(), "n1"};
  node n2{partition.address(), "n2", {"--cluster.redis-timeout-ms=500"}};
  auto a1 = n1.connect("alice");
  auto a2 = n2.connect("alice");
  auto b2 = n2.connect("bob");
  REQUIRE(n1.publish("alice", {{"n", 0}}).status == 202);
  CHECK(read_published(*a2, "alice", 1) == upto(1));
  partition.freeze_open_connections(); // n2 hears nothing of what follows, for now
  REQUIRE(n1.publish("alice", {{"n", 1}}).status == 202);
  auto r = n1.disconnect("alice");
  REQUIRE(r.status == 200);
  CHECK(json::parse(r.body)["disconnected"] >= 1);
  CHECK(read_published(*a1, "alice", 2) == upto(2));
  expect_close(*a1, 4511);
  // n2 connects anew and reads the gap: the publish before the disconnect, then the close.
  CHECK(read_published(*a2, "alice", 1) == std::vector<int>{1});
  expect_close(*a2, 4511);
  b2->send_text(R"({"type":"ping","id":"still"})"); // another user's session is untouched
  CHECK(next_json(*b2, 10s)["reply_to"] == "still");
}

TEST_CASE("a user's history in Redis expires cluster.history-ttl-ms after the last publish, "
          "and the user's offsets go on after it") {
  redis_server redis;
  node n1{redis.address(), "n1", {"--cluster.history-ttl-ms=1000"}};
  auto a1 = n1.connect("alice");
  for (int i = 0; i < 3; ++i)
    REQUIRE(n1.publish("alice", {{"n", i}}).status == 202);
  CHECK(read_published(*a1, "alice", 3) == upto(3));
  auto ms = [&](const std::string& key) {
    auto answer = redis_command(redis.port(), "PTTL " + key); // ":<ms>", -1 never, -2 gone
    REQUIRE(answer.rfind(":", 0) == 0);
    return std::stol(answer.substr(1));
  };
  auto ttl = ms("er:u:alice:hist");
  CHECK(ttl > 0);
  CHECK(ttl <= 1000);
  CHECK(ms("er:u:alice:seq") == -1); // the offset stays
  CHECK(eventually([&] { return ms("er:u:alice:hist") == -2; }, 5s));
  CHECK(redis_command(redis.port(), "INCRBY er:u:alice:seq 0") == ":3\r\n"); // read as a number
  // The next publish is offset 4, in order for the node that stood at 3: delivered, no gap.
  REQUIRE(n1.publish("alice", {{"n", 3}}).status == 202);
  CHECK(read_published(*a1, "alice", 1) == std::vector<int>{3});
  CHECK(ms("er:u:alice:hist") > 0); // a new history, with its expiry
  CHECK(n1.metric_value("router_cluster_gaps_lost_total") == 0);
}

/// Three publishes to alice through `n`, `redis` saved to its snapshot (offset 3), three more:
/// `a`, her connection on `n`, got all six.
void snapshot_between_publishes(redis_server& redis, const node& n, er::client::ws_client& a) {
  for (int i = 0; i < 3; ++i)
    REQUIRE(n.publish("alice", {{"n", i}}).status == 202);
  CHECK(read_published(a, "alice", 3) == upto(3));
  REQUIRE(redis_command(redis.port(), "SAVE") == "+OK\r\n");
  for (int i = 3; i < 6; ++i)
    REQUIRE(n.publish("alice", {{"n", i}}).status == 202);
  CHECK(read_published(a, "alice", 3) == std::vector<int>{3, 4, 5});
}

TEST_CASE("a Redis that restarts from a snapshot starts a new epoch: its users get the "
          "publishes made after the restart once and nothing from before it again") {
  redis_server redis;
  node n1{redis.address(), "n1"};
  auto a1 = n1.connect("alice");
  snapshot_between_publishes(redis, n1, *a1);
  // Redis restarts and loads the snapshot: the user's offset is 3 again, where n1 stood at 6.
  redis.stop();
  redis.start();
  REQUIRE(eventually([&] { return n1.publish("alice", {{"n", 6}}).status == 202; }, 10s));
  for (int i = 7; i < 9; ++i)
    REQUIRE(n1.publish("alice", {{"n", i}}).status == 202);
  // Offsets 4 to 6 once more, in a new epoch: delivered, not taken for the old ones.
  CHECK(read_published(*a1, "alice", 3) == std::vector<int>{6, 7, 8});
  CHECK(a1->read(300ms).what == er::client::frame::kind::timeout); // nothing twice
  CHECK(n1.metric_value("router_cluster_gaps_lost_total") == 0);
}

TEST_CASE("after a restart from a snapshot whose histories had expired, a user's sessions stay, "
          "and get what the new epoch has for them once their node's links are back") {
  redis_server redis;
  std::vector<std::string> opts{"--cluster.history-ttl-ms=1000"};
  node n1{redis.address(), "n1", opts}, n2{redis.address(), "n2", opts};
  auto alice = n1.connect("alice");
  auto bob = n1.connect("bob");
  for (int i = 0; i < 3; ++i) {
    REQUIRE(n1.publish("alice", {{"n", i}}).status == 202);
    REQUIRE(n1.publish("bob", {{"n", i}}).status == 202);
  }
  CHECK(read_published(*alice, "alice", 3) == upto(3));
  CHECK(read_published(*bob, "bob", 3) == upto(3));
  REQUIRE(eventually([&] {
    return redis_command(redis.port(), "EXISTS er:u:alice:hist er:u:bob:hist") == ":0\r\n";
  }, 5s));
  REQUIRE(redis_command(redis.port(), "SAVE") == "+OK\r\n"); // offsets 3, no history
  // n1 sleeps through the restart, and n2 publishes to bob in the new epoch meanwhile.
  n1.pause();
  redis.stop();
  redis.start();
  REQUIRE(eventually([&] { return n2.publish("bob", {{"n", 3}}).status == 202; }, 10s));
  REQUIRE(n2.publish("bob", {{"n", 4}}).status == 202);
  n1.resume();
  // Back, n1 reads what it missed. Before, the history could not say where the new epoch
  // began for either user: bob's sessions lost their state (4010) though offsets 4 and 5
  // were there, and alice's too though nothing was owed, as for every user not published to
  // within the history's time to live before the restart.
  CHECK(read_published(*bob, "bob", 2) == std::vector<int>{3, 4});
  CHECK(alice->read(1500ms).what == er::client::frame::kind::timeout);
  REQUIRE(n2.publish("alice", {{"n", 3}}).status == 202);
  CHECK(read_published(*alice, "alice", 1) == std::vector<int>{3});
  CHECK(bob->read(300ms).what == er::client::frame::kind::timeout); // nothing twice
  CHECK(n1.metric_value("router_cluster_gaps_lost_total") == 0);
  CHECK(redis_command(redis.port(), "GET er:u:bob:began").find(" 3\r\n") != std::string::npos);
}

TEST_CASE("a Redis still loading its snapshot when the links come back is waited for: the new "
          "epoch is taken once it has loaded, and its users get what is published after") {
  // 2,000 keys at a millisecond each: about two seconds of loading, during which Redis accepts
  // connections and answers nearly every command with -LOADING.
  redis_server redis{{"--key-load-delay", "1000", "--loading-process-events-interval-bytes",
                      "1024"}};
  REQUIRE(redis_command(redis.port(),
                        R"(EVAL "for i=1,2000 do redis.call('SET','pad:'..i,i) end" 0)")
          == "$-1\r\n");
  node n1{redis.address(), "n1"};
  auto a1 = n1.connect("alice");
  snapshot_between_publishes(redis, n1, *a1);
  redis.stop();
  redis.start(); // returns once Redis answers PING: loaded; the node's links came back before
  // Before, the link was up while Redis loaded: the new epoch's EVAL was refused with
  // -LOADING and dropped, so the node kept the old epoch and took the publishes after the
  // restart (offsets 4 to 6 once more) for ones its users already had.
  REQUIRE(eventually([&] { return n1.publish("alice", {{"n", 6}}).status == 202; }, 10s));
  for (int i = 7; i < 9; ++i)
    REQUIRE(n1.publish("alice", {{"n", i}}).status == 202);
  CHECK(read_published(*a1, "alice", 3) == std::vector<int>{6, 7, 8});
  CHECK(a1->read(300ms).what == er::client::frame::kind::timeout);
  CHECK(n1.metric_value("router_cluster_gaps_lost_total") == 0);
}

TEST_CASE("a Redis named by a host name is reached at what the name resolves to, and again "
          "after Redis restarts") {
  // The links resolve the name with asio's resolver, off the io threads (hiredis would call
  // getaddrinfo on them), and hand hiredis the address.
  redis_server redis;
  node n1{"localhost:" + std::to_string(redis.port()), "n1"};
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "up"; }, 10s));
  auto a = n1.connect("alice");
  REQUIRE(n1.publish("alice", {{"n", 0}}).status == 202);
  CHECK(read_published(*a, "alice", 1) == upto(1));
  redis.stop();
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "down"; }, 10s));
  redis.start();
  CHECK(eventually([&] { return n1.publish("alice", {{"n", 1}}).status == 202; }, 10s));
  CHECK(read_published(*a, "alice", 1) == std::vector<int>{1});
  CHECK(!redis_client_id(redis.port(), "er:node:n1:commands").empty());
  CHECK(!redis_client_id(redis.port(), "er:node:n1:pubsub").empty());
}

TEST_CASE("a node reports Redis down while Redis is stopped with SIGSTOP and up once it goes on, and "
          "a node started while Redis is stopped starts and joins once it answers") {
  redis_server redis;
  node n1{redis.address(), "n1", {"--cluster.redis-timeout-ms=300"}};
  auto a1 = n1.connect("alice");
  REQUIRE(eventually([&] { return n1.health()["cluster"]["redis"] == "up"; }, 5s));
  redis.pause();
  // The links' probes go unanswered: /healthz says so instead of "up" on a Redis that
  // answers nothing.
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "down"; }, 5s));
  // The blocking start-up claim of the node id waits for Redis no longer than the timeout.
  node n2{redis.address(), "n2", {"--cluster.redis-timeout-ms=300"}, false};
  CHECK(n2.health()["cluster"]["redis"] == "down");
  redis.resume();
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "up"; }, 10s));
  CHECK(eventually([&] { return n2.health()["cluster"]["nodes"] == 2; }, 10s));
  REQUIRE(eventually([&] { return n2.publish("alice", {{"n", 0}}).status == 202; }, 5s));
  CHECK(read_published(*a1, "alice", 1) == upto(1));
}

TEST_CASE("a history read Redis fails is made again until Redis answers it: the gap is filled "
          "instead of closing the user's sessions with 4010") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"};
  auto a1 = n1.connect("alice");
  auto a2 = n2.connect("alice");
  auto n2_pubsub = redis_client_id(redis.port(), "er:node:n2:pubsub");
  REQUIRE(!n2_pubsub.empty());
  REQUIRE(n1.publish("alice", {{"n", 0}}).status == 202);
  CHECK(read_published(*a2, "alice", 1) == upto(1));
  // The nodes' user may no longer read streams: n2's read of what it missed gets an error,
  // as it does when its command link is lost under it.
  REQUIRE(redis_command(redis.port(), "ACL SETUSER default -xrange") == "+OK\r\n");
  CHECK(redis_command(redis.port(), "CLIENT KILL ID " + n2_pubsub) == ":1\r\n");
  for (int i = 1; i < 6; ++i) // published while n2 is not subscribed
    REQUIRE(n1.publish("alice", {{"n", i}}).status == 202);
  CHECK(read_published(*a1, "alice", 6) == upto(6));
  CHECK(eventually([&] { return !redis_client_id(redis.port(), "er:node:n2:pubsub").empty(); },
                   5s)); // subscribed again: the gap is known, its read refused
  std::this_thread::sleep_for(1500ms); // reads refused at each tick
  CHECK(a2->read(100ms).what == er::client::frame::kind::timeout); // waiting, not closed
  REQUIRE(redis_command(redis.port(), "ACL SETUSER default +xrange") == "+OK\r\n");
  CHECK(read_published(*a2, "alice", 5) == std::vector<int>{1, 2, 3, 4, 5});
  auto metrics = er::client::http_request("127.0.0.1", n2.port(), "GET", "/metrics").body;
  CHECK(metric(metrics, "router_cluster_gaps_filled_total") >= 1);
  CHECK(metric(metrics, "router_cluster_gaps_lost_total") == 0);
}

TEST_CASE("what a node missed while its subscription was cut again, during a history read Redis "
          "refused, is read as well once Redis answers") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"};
  auto a1 = n1.connect("alice");
  auto a2 = n2.connect("alice");
  auto cut = [&] {
    auto pubsub = redis_client_id(redis.port(), "er:node:n2:pubsub");
    REQUIRE(!pubsub.empty());
    CHECK(redis_command(redis.port(), "CLIENT KILL ID " + pubsub) == ":1\r\n");
  };
  auto subscribed = [&] {
    return eventually([&] { return !redis_client_id(redis.port(), "er:node:n2:pubsub").empty(); },
                      5s);
  };
  REQUIRE(n1.publish("alice", {{"n", 0}}).status == 202);
  CHECK(read_published(*a2, "alice", 1) == upto(1));
  REQUIRE(redis_command(redis.port(), "ACL SETUSER default -xrange") == "+OK\r\n");
  cut();
  REQUIRE(n1.publish("alice", {{"n", 1}}).status == 202);
  CHECK(subscribed()); // the read of 1 is refused, and made again at each tick
  std::this_thread::sleep_for(300ms);
  cut();
  REQUIRE(n1.publish("alice", {{"n", 2}}).status == 202);
  CHECK(subscribed()); // before: with a read waiting, what this cut missed was not looked for
  std::this_thread::sleep_for(300ms);
  CHECK(read_published(*a1, "alice", 3) == upto(3));
  REQUIRE(redis_command(redis.port(), "ACL SETUSER default +xrange") == "+OK\r\n");
  CHECK(read_published(*a2, "alice", 2) == std::vector<int>{1, 2});
}

TEST_CASE("nodes authenticate with cluster.redis-password, one with a wrong password refuses to "
          "start, and an ACL that refuses CLIENT SETNAME leaves the links unnamed and working") {
  // The default user asks for a password and may not use CLIENT (the links name themselves
  // with CLIENT SETNAME: refused here, which must not keep them down); the test looks on as
  // another user.
  redis_server redis{{"--user", "default", "on", ">cluster-pass", "~*", "&*", "+@all", "-client",
                      "--user", "admin", "on", ">admin-pass", "~*", "&*", "+@all"}};
  REQUIRE(redis_command(redis.port(), "PING").rfind("-NOAUTH", 0) == 0);
  node n1{redis.address(), "n1", {"--cluster.redis-password=cluster-pass"}};
  node n2{redis.address(), "n2", {"--cluster.redis-password=cluster-pass"}};
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "up"; }, 10s));
  CHECK(eventually([&] { return n2.health()["cluster"]["redis"] == "up"; }, 10s));
  CHECK(eventually([&] { return n2.health()["cluster"]["nodes"] == 2; }, 10s));
  auto a2 = n2.connect("alice");
  REQUIRE(eventually([&] { return n1.publish("alice", {{"n", 0}}).status == 202; }, 5s));
  CHECK(read_published(*a2, "alice", 1) == upto(1));
  CHECK(a2->read(300ms).what == er::client::frame::kind::timeout); // once
  // Unnamed: no node's link is in CLIENT LIST by its name, while the test's own is.
  CHECK(redis_client_id(redis.port(), "er:node:n1:pubsub", "admin admin-pass").empty());
  CHECK(redis_client_id(redis.port(), "er:node:n2:commands", "admin admin-pass").empty());
  CHECK(!redis_client_id(redis.port(), "", "admin admin-pass").empty());
  // A node with the wrong password says so and does not start.
  child_process wrong{{ER_ROUTER_BINARY, "--router.port=0", "--router.store-path=:memory:",
                       "--router.server-id=n3", "--cluster.redis=" + redis.address(),
                       "--cluster.redis-password=not-it"}};
  CHECK(wrong.wait(10s) == 2);
  CHECK(wrong.read_all_stderr().find("refused AUTH") != std::string::npos);
}

TEST_CASE("a node whose password Redis refuses after a restart of its links keeps trying, and "
          "is back once the password is again the one it has") {
  redis_server redis{{"--user", "default", "on", ">pass-1", "~*", "&*", "+@all"}};
  auto as_admin = [&](const std::string& command) { // AUTH, then the command: its answer
    raw_socket s{redis.port()};
    s.send("AUTH pass-1\r\n" + command + "\r\nPING\r\n");
    return s.read_until("+PONG\r\n", 2s);
  };
  node n1{redis.address(), "n1", {"--cluster.redis-password=pass-1"}};
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "up"; }, 10s));
  // The password changes and the node's links are cut: they reconnect, and are refused.
  CHECK(as_admin("ACL SETUSER admin on >admin-pass ~* &* +@all").find("+OK") != std::string::npos);
  {
    raw_socket s{redis.port()};
    s.send("AUTH admin admin-pass\r\nACL SETUSER default resetpass >pass-2\r\n"
           "CLIENT KILL USER default\r\nPING\r\n");
    CHECK(s.read_until("+PONG\r\n", 2s).find("+OK") != std::string::npos);
  }
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "down"; }, 10s));
  CHECK(n1.publish("alice", {{"n", 0}}).status == 503);
  // Redis logs each refused AUTH: the node has tried again, with its password, and failed.
  CHECK(eventually([&] {
    raw_socket s{redis.port()};
    s.send("AUTH admin admin-pass\r\nACL LOG\r\nPING\r\n");
    return s.read_until("+PONG\r\n", 2s).find("auth") != std::string::npos;
  }, 10s));
  std::this_thread::sleep_for(1s); // and again, maybe: each attempt must be able to end
  // Back to the node's password: it reconnects by itself.
  {
    raw_socket s{redis.port()};
    s.send("AUTH admin admin-pass\r\nACL SETUSER default resetpass >pass-1\r\nPING\r\n");
    CHECK(s.read_until("+PONG\r\n", 2s).find("+OK") != std::string::npos);
  }
  CHECK(eventually([&] { return n1.health()["cluster"]["redis"] == "up"; }, 10s));
  auto a1 = n1.connect("alice");
  CHECK(eventually([&] { return n1.publish("alice", {{"n", 1}}).status == 202; }, 5s));
  CHECK(read_published(*a1, "alice", 1) == std::vector<int>{1});
}

TEST_CASE("users are spread over two Redis shards, and each publish reaches its user") {
  redis_server s1, s2;
  auto shards = s1.address() + "," + s2.address();
  node n1{shards, "n1"}, n2{shards, "n2"};
  std::vector<std::unique_ptr<er::client::ws_client>> clients;
  for (int u = 0; u < 12; ++u)
    clients.push_back((u % 2 ? n1 : n2).connect("user-" + std::to_string(u)));
  for (int u = 0; u < 12; ++u) {
    auto r = (u % 2 ? n2 : n1).publish("user-" + std::to_string(u), {{"n", u}});
    REQUIRE(r.status == 202);
    CHECK(json::parse(r.body)["delivered"] == 1);
  }
  for (int u = 0; u < 12; ++u)
    CHECK(read_published(*clients[static_cast<std::size_t>(u)], "user-" + std::to_string(u), 1)
          == std::vector<int>{u});
  for (auto* shard : {&s1, &s2}) // both shards hold some users' history
    CHECK(redis_command(shard->port(), "EVAL \"return #redis.call('KEYS', 'er:u:*:hist')\" 0")
          .rfind(":0", 0) != 0);
}

TEST_CASE("a second live node with the same router.server-id refuses to start") {
  redis_server redis;
  // n1 refreshes its key every second for 5 s: the twin's retries (its own TTL, 1 s) never see
  // it expire, however long a tick of n1 is delayed on a loaded host.
  node n1{redis.address(), "twin", {"--cluster.node-ttl-ms=5000"}};
  child_process twin{{ER_ROUTER_BINARY, "--router.port=0", "--router.store-path=:memory:",
                      "--router.server-id=twin", "--cluster.redis=" + redis.address(),
                      "--cluster.node-ttl-ms=1000"}};
  // It waits for the key to expire (a node that just ended), which a live node never lets it.
  CHECK(twin.wait(10s) == 2);
  CHECK(twin.read_all_stderr().find("router.server-id \"twin\" is the id of a live node")
        != std::string::npos);
}

TEST_CASE("a node started again with its id at once starts: a clean stop releases the id, and "
          "after a crash the id is waited for until it expires") {
  redis_server redis;
  auto held = [&] { return redis_command(redis.port(), "EXISTS er:node:phoenix") == ":1\r\n"; };
  const std::vector<std::string> ttl{"--cluster.node-ttl-ms=3000"};
  auto n = std::make_unique<node>(redis.address(), "phoenix", ttl);
  CHECK(held());
  // systemctl restart: before, the id stayed taken for node-ttl-ms after the clean stop, and
  // the new process exited 2, which the packaged unit does not restart.
  CHECK(n->stop() == 0);
  CHECK_FALSE(held());
  n = std::make_unique<node>(redis.address(), "phoenix", ttl);
  CHECK(n->health()["cluster"]["node_id"] == "phoenix");
  // A crash leaves the key until it expires (3 s here): the next process waits for it.
  n->kill_now();
  CHECK(held());
  n = std::make_unique<node>(redis.address(), "phoenix", ttl);
  CHECK(n->health()["cluster"]["node_id"] == "phoenix");
  auto c = n->connect("alice");
  c->send_text(R"({"type":"ping","id":"p"})");
  CHECK(next_json(*c)["reply_to"] == "p");
}

TEST_CASE("a node that cannot listen (its port taken) exits 1 saying so, and releases its id") {
  redis_server redis;
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor taken{io, {boost::asio::ip::make_address("127.0.0.1"), 0}};
  auto port = taken.local_endpoint().port();
  // Before, the router and the cluster bus, already running, held each other: the process
  // waited for them forever, without a word, and did not end on SIGTERM either.
  child_process n{{ER_ROUTER_BINARY, "--router.port=" + std::to_string(port),
                   "--router.store-path=:memory:", "--router.server-id=blocked",
                   "--cluster.redis=" + redis.address(), "--cluster.node-ttl-ms=5000"}};
  CHECK(n.wait(10s) == 1);
  CHECK(n.read_all_stderr().find("cannot listen on 127.0.0.1:" + std::to_string(port))
        != std::string::npos);
  CHECK(redis_command(redis.port(), "EXISTS er:node:blocked") == ":0\r\n");
}

TEST_CASE("a node that crashed with a longer node-ttl-ms than the new one's is waited for until "
          "its key expires") {
  redis_server redis;
  // The key a crashed node that ran with node-ttl-ms 4000 leaves behind. The new process (the
  // helper's 1000) waited its own TTL only, then exited 2 as if a live node held the id.
  REQUIRE(redis_command(redis.port(), "SET er:node:longer crashed-incarnation PX 4000")
            .rfind("+OK", 0) == 0);
  node n{redis.address(), "longer"};
  CHECK(n.health()["cluster"]["node_id"] == "longer");
  CHECK(redis_command(redis.port(), "GET er:node:longer").find("crashed-incarnation")
        == std::string::npos);
}

TEST_CASE("a resume on another node in the middle of a running agent gets the session with "
          "consecutive event ids, twice over, and the run goes on reporting to it") {
  redis_server redis;
  auto slow_demo = std::vector<std::string>{"--agents.demo-steps=20", "--agents.demo-step-delay-ms=60"};
  node n1{redis.address(), "n1", slow_demo}, n2{redis.address(), "n2", slow_demo},
    n3{redis.address(), "n3", slow_demo};
  auto bob = n1.connect("bob"); // on the node the session leaves: sees nothing of alice's
  auto c = n1.try_connect("alice");
  auto greeting = next_json(*c);
  c->send_text(R"({"type":"start_agent","id":"go","payload":{"agent":"demo"}})");
  auto started = next_json(*c);
  REQUIRE(started["type"] == "agent_started");
  auto run = started["run_id"].get<std::string>();
  std::uint64_t next_id = started["event_id"].get<std::uint64_t>() + 1;
  std::vector<std::string> types{"agent_started"};
  auto add = [&](const std::vector<std::string>& more) {
    types.insert(types.end(), more.begin(), more.end());
  };
  add(read_run(*c, "alice", run, next_id, 2));
  c->reset(); // dropped without a close frame, the run going on on n1
  std::this_thread::sleep_for(200ms);

  auto [on2, g2] = resume_on(n2, "alice", greeting, next_id - 1);
  CHECK(g2["data"]["recovered"] == true);
  CHECK(g2["data"]["session_id"] == greeting["data"]["session_id"]);
  CHECK(g2["data"]["server_id"] == "n2");
  add(read_run(*on2, "alice", run, next_id, 4));
  on2->reset();
  std::this_thread::sleep_for(200ms);

  auto [on3, g3] = resume_on(n3, "alice", g2, next_id - 1);
  CHECK(g3["data"]["recovered"] == true);
  CHECK(g3["data"]["session_id"] == greeting["data"]["session_id"]);
  add(read_run(*on3, "alice", run, next_id));
  std::vector<std::string> expected{"agent_started"};
  expected.insert(expected.end(), 20, "agent_thinking");
  expected.insert(expected.end(), {"tool_executing", "tool_completed", "agent_completed"});
  CHECK(types == expected); // every event once, in order, across three nodes

  on3->send_text(R"({"type":"ping","id":"after"})");
  auto pong = next_json(*on3);
  CHECK(pong["reply_to"] == "after");
  CHECK(pong["event_id"] == next_id);
  CHECK(bob->read(200ms).what == er::client::frame::kind::timeout);
  // The hosts end with the run: nothing of the session stays on n1 or n2.
  CHECK(eventually([&] { return n1.health()["runs"] == 0 && n2.health()["runs"] == 0; }, 5s));
  CHECK(n1.health()["detached"] == 0);
  CHECK(n2.health()["detached"] == 0);
}

/// A backend publishing {"n": 0, 1, 2, ...} to `user` through `via` without pause, on a
/// thread of its own, until stopped or destroyed (a failed check never leaves it running).
/// A publish not answered (a timeout) counts as refused: whether it was published is unknown.
class publisher {
public:
  publisher(const node& via, std::string user)
    : thread_([this, &via, user = std::move(user)] { run(via, user); }) {
  }
  ~publisher() {
    stop();
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable())
      thread_.join();
  }
  int published() const {
    return published_;
  }
  int refused() const {
    return refused_;
  }

private:
  void run(const node& via, const std::string& user) {
    try { // a long timeout: a busy node under the sanitizers may take seconds to answer
      while (!stop_) {
        if (via.publish(user, {{"n", published_.load()}}, 60s).status == 202)
          ++published_;
        else
          ++refused_;
      }
    } catch (const std::exception&) {
      ++refused_;
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> published_{0};
  std::atomic<int> refused_{0};
  std::thread thread_; ///< last: it starts once the counters exist
};

/// A backend publishes to alice without pause through `via` while her session, begun on
/// `path[0]`, moves along the rest of `path` (a dropped socket, then a resume on the next
/// node): some publishes reach the node a session leaves after the next one asked for it and
/// before that one's stream has caught up. Each is counted for her session, so each must reach
/// it, once, in order, with the session's own event ids consecutive across the moves.
/// Returns how many were published.
int move_while_publishing(const node& via, const std::vector<const node*>& path) {
  auto c = path.front()->try_connect("alice");
  auto greeting = next_json(*c);
  publisher backend{via, "alice"};
  std::vector<int> seen;
  std::uint64_t last_id = 0;
  auto read_on = [&](er::client::ws_client& on, std::size_t until) {
    while (seen.size() < until) {
      auto f = next_json(on, 10s);
      REQUIRE(f["type"] == "news");
      CHECK(f["user_id"] == "alice");
      if (last_id != 0)
        CHECK(f["event_id"] == last_id + 1);
      last_id = f["event_id"].get<std::uint64_t>();
      seen.push_back(f["data"]["n"].get<int>());
    }
  };
  for (std::size_t hop = 1; hop < path.size(); ++hop) {
    read_on(*c, seen.size() + 20);
    c->reset(); // dropped without a close frame: the session waits for a resume
    std::this_thread::sleep_for(50ms);
    auto [moved, hello] = resume_on(*path[hop], "alice", greeting, last_id);
    CHECK(hello["data"]["recovered"] == true);
    CHECK(hello["data"]["session_id"] == greeting["data"]["session_id"]);
    CHECK(hello["data"]["server_id"] == path[hop]->id());
    c = std::move(moved);
    greeting = hello; // its resume token is the next one
  }
  int moved_at = backend.published();
  CHECK(eventually([&] { return backend.published() >= moved_at + 100; }, 20s));
  backend.stop();
  CHECK(backend.refused() == 0);
  int total = backend.published();
  read_on(*c, static_cast<std::size_t>(total));
  CHECK(seen == upto(total)); // every publish once, in order
  CHECK(c->read(300ms).what == er::client::frame::kind::timeout);
  return total;
}

TEST_CASE("a session moved to another node misses no publish made while it moved, and gets "
          "none twice") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"};
  move_while_publishing(n1, {&n1, &n2});
}

TEST_CASE("a session moved to a node that holds another session of its user misses no "
          "publish and gets none twice") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"};
  // The adopting node already follows the user's stream, usually ahead of where the session's
  // old node stood when asked (what it handed on since is owed to the session alone), at times
  // level with it. Three moves between two nodes that both hold a session of alice, then two
  // more, publishing through either.
  auto other1 = n1.connect("alice");
  auto other2 = n2.connect("alice");
  int first = move_while_publishing(n1, {&n1, &n2, &n1, &n2});
  int second = move_while_publishing(n2, {&n2, &n1});
  // The sessions that stayed put got every publish of both rounds once, in order.
  auto expected = upto(first);
  for (int n : upto(second))
    expected.push_back(n);
  CHECK(read_published(*other1, "alice", first + second) == expected);
  CHECK(read_published(*other2, "alice", first + second) == expected);
}

TEST_CASE("a disconnect published after the owner's mark but before its offer reaches the "
          "adopting node ends the moving session there too: the resume gets a fresh session") {
  redis_server redis;
  tcp_proxy late{redis.port()}; // n1's writes to Redis can be held back while it still hears
  node n1{late.address(), "n1", {"--cluster.redis-timeout-ms=20000"}};
  node n2{redis.address(), "n2"};
  auto a2 = n2.connect("alice"); // n2 follows alice's stream
  auto [greeting, last_event_id] = session_left_waiting(n1, n2, *a2, "alice"); // to move to n2
  // n1 hears n2's request, marks alice's stream at offset 1 and offers the session; the offer
  // waits in the proxy.
  auto resumed = resume_offer_held(late, n1, n2, "alice", greeting, last_event_id);
  // Meanwhile the backend disconnects alice (offset 2): her session on n2 closes, and a new one
  // there follows the stream past it (offset 3) when the offer arrives.
  REQUIRE(n2.disconnect("alice").status == 200);
  expect_close(*a2, 4511);
  auto a3 = n2.connect("alice");
  REQUIRE(n2.publish("alice", {{"n", 1}}).status == 202);
  CHECK(read_published(*a3, "alice", 1) == std::vector<int>{1});
  late.release_sends();
  auto moved = resumed.get();
  // The session was ended by that disconnect, as a waiting session is on a single node.
  auto hello = next_json(*moved, 10s);

  REQUIRE(hello["type"] == "connection_established");
  CHECK(hello["data"]["recovered"] == false);
  CHECK(hello["data"]["session_id"] != greeting["data"]["session_id"]);
  REQUIRE(n2.publish("alice", {{"n", 2}}).status == 202);
  CHECK(read_published(*moved, "alice", 1) == std::vector<int>{2}); // nothing from before it
  CHECK(read_published(*a3, "alice", 1) == std::vector<int>{2});
}

TEST_CASE_FIXTURE(proxied_pair_quick_adopter,
                  "a node adopting a session while it stands behind the owner's mark (its "
                  "subscription cut, what it missed not yet recovered) hands the missed publish "
                  "to its other session first, and each session gets every publish once") {
  auto a = n2.connect("alice"); // n2 follows alice's stream for it
  auto [greeting, last_event_id] = session_left_waiting(n1, n1, *a, "alice"); // to move to n2
  // n2's subscriber link is cut, and the new one does not come up: Redis's answers to it wait
  // in the proxy. A publish meanwhile reaches n1 (offset 2), not n2.
  auto n2_pubsub = redis_client_id(redis.port(), "er:node:n2:pubsub");
  REQUIRE(!n2_pubsub.empty());
  adopter_in.hold_replies_to("er:node:n2:pubsub");
  REQUIRE(redis_command(redis.port(), "CLIENT KILL ID " + n2_pubsub) == ":1\r\n");
  REQUIRE(n1.publish("alice", {{"n", 1}}).status == 202);
  // The resume on n2: n1 marks alice's stream at offset 2 and offers; the offer waits in the
  // proxy until n2 hears its node channel again.
  auto moving = resume_offer_held(owner_out, n1, n2, "alice", greeting, last_event_id);
  // n2's subscriber link comes up and subscribes again, but the read of what it missed waits:
  // Redis's answers to n2's commands are held from here on.
  adopter_in.hold_replies_to("er:node:n2:commands");
  adopter_in.release_replies_to("er:node:n2:pubsub");
  auto subscribers = [&](const std::string& channel) {
    return redis_command(redis.port(), "EVAL \"return redis.call('PUBSUB', 'NUMSUB', KEYS[1])[2]\" "
                                       "1 " + channel);
  };
  REQUIRE(eventually([&] {
    return subscribers("er:n:n2") == ":1\r\n" && subscribers("er:u:alice") == ":2\r\n";
  }, 10s));
  CHECK(a->read(100ms).what == er::client::frame::kind::timeout); // n2 stands behind the mark
  // The offer reaches n2, which reads up to the mark (its answer waits too).
  const std::string in = "router_cluster_bus_messages_in_total";
  auto heard = n2.metric_value(in);
  owner_out.release_sends();
  REQUIRE(eventually([&] { return n2.metric_value(in) > heard; }, 5s));
  adopter_in.release_replies();
  auto moved = moving.get();
  expect_moved(*moved);
  REQUIRE(n1.publish("alice", {{"n", 2}}).status == 202);
  // The moved session has offset 2 from its owner's frames, the other session from n2's read.
  expect_each_once({moved.get(), a.get()}, "alice", {1, 2});
  CHECK(n2.metric_value("router_cluster_gaps_filled_total") >= 1);
}

TEST_CASE_FIXTURE(proxied_pair,
                  "a hand-over whose history read outlives the user's state on the adopting node "
                  "is settled against the state there now: the moved session gets each publish "
                  "once") {
  // Two sessions of alice on n1, to move to n2; n2 follows alice's stream for a third.
  auto c1 = n1.try_connect("alice");
  auto g1 = next_json(*c1);
  auto c2 = n1.try_connect("alice");
  auto g2 = next_json(*c2);
  auto a = n2.connect("alice");
  REQUIRE(n2.publish("alice", {{"n", 0}}).status == 202);
  auto last1 = news_event_id(*c1, 0);
  auto last2 = news_event_id(*c2, 0);
  CHECK(read_published(*a, "alice", 1) == upto(1));
  c1->reset(); // both sessions wait on n1 for a resume
  c2->reset();
  std::this_thread::sleep_for(100ms);
  // n1 hears both requests, marks alice's stream at offset 1 for each and offers the sessions
  // in that order; the offers wait in the proxy.
  auto moving1 = resume_offer_held(owner_out, n1, n2, "alice", g1, last1);
  auto moving2 = resume_offer_held(owner_out, n1, n2, "alice", g2, last2);
  // n2 hands on a publish after the marks (offset 2): the first offer has to read it from the
  // history, for the moving session alone.
  REQUIRE(n2.publish("alice", {{"n", 1}}).status == 202);
  CHECK(read_published(*a, "alice", 1) == std::vector<int>{1});
  const std::string in = "router_cluster_bus_messages_in_total";
  auto heard = n2.metric_value(in);
  adopter_in.hold_replies_to("er:node:n2:commands");
  owner_out.release_sends();
  // Both offers reach n2. The first one's read waits in the proxy, the second one for that read.
  REQUIRE(eventually([&] { return n2.metric_value(in) >= heard + 2; }, 5s));
  // alice's last session on n2 ends, and n2 drops her state. The second offer then finds none:
  // its session starts a new state from its mark (offset 1), which owes it offset 2.
  a->close();
  auto s2 = moving2.get();
  expect_moved(*s2);
  // The first read's answer is for the dropped state. Settled against the new state, which
  // stands at the mark, the first offer carries nothing: offset 2 reaches both sessions once
  // the new state reads it.
  adopter_in.release_replies();
  auto s1 = moving1.get();
  expect_moved(*s1);
  REQUIRE(n1.publish("alice", {{"n", 2}}).status == 202);
  expect_each_once({s1.get(), s2.get()}, "alice", {1, 2});
}

TEST_CASE_FIXTURE(proxied_pair,
                  "an admission whose history read outlives the user's state on the node is "
                  "settled against the state there now: the new connection gets each publish "
                  "once") {
  node n3{redis.address(), "n3"}; // publishes
  auto a = n2.connect("alice"); // n2 follows alice's stream for it
  auto [greeting, last_event_id] = session_left_waiting(n1, n3, *a, "alice"); // to move to n2
  // The resume on n2: n1 marks alice's stream at offset 1 and offers; the offer waits in the
  // proxy.
  auto moving = resume_offer_held(owner_out, n1, n2, "alice", greeting, last_event_id);
  // A new connection of alice on n2: Redis counts it from offset 1 (the third place: a, and the
  // one the resume holds), and its answer waits while a publish (offset 2) reaches n2, which
  // then stands past the connection's start.
  adopter_in.hold_replies_to("er:node:n2:commands");
  auto connecting = std::async(std::launch::async, [&] { return n2.try_connect("alice"); });
  REQUIRE(eventually([&] { return counted_connections(redis.port(), "alice") == ":3\r\n"; }, 5s));
  REQUIRE(n3.publish("alice", {{"n", 1}}).status == 202);
  CHECK(read_published(*a, "alice", 1) == std::vector<int>{1});
  // The admission reads offset 2 from the history, for the new connection; that answer waits.
  adopter_in.hold_replies_after("XRANGE");
  adopter_in.release_replies_to("er:node:n2:commands");
  REQUIRE(eventually([&] { return adopter_in.replies_held() > 0; }, 5s));
  // alice's only session on n2 ends (the new connection is not one yet), and n2 drops her
  // state. The offer then finds none: the moved session starts a new state from its mark
  // (offset 1), which owes it offset 2.
  a->close();
  std::this_thread::sleep_for(100ms);
  owner_out.release_sends();
  auto moved = moving.get();
  expect_moved(*moved);
  // The read's answer is for the dropped state. Admitted against the new state, which stands at
  // the connection's start, the connection is owed nothing: offset 2 reaches it, and the moved
  // session, once the new state reads it.
  adopter_in.release_replies();
  auto b = connecting.get();
  CHECK(next_json(*b)["type"] == "connection_established");
  REQUIRE(n3.publish("alice", {{"n", 2}}).status == 202);
  expect_each_once({b.get(), moved.get()}, "alice", {1, 2});
}

TEST_CASE_FIXTURE(proxied_pair,
                  "an offer that reaches the adopter late in its wait for it has the whole wait "
                  "for the acceptance: a history read past the request's 3 s still moves the "
                  "session") {
  node n3{redis.address(), "n3"}; // publishes
  auto a = n2.connect("alice"); // n2 follows alice's stream for it
  auto [greeting, last_event_id] = session_left_waiting(n1, n3, *a, "alice"); // to move to n2
  auto moving = resume_offer_held(owner_out, n1, n2, "alice", greeting, last_event_id);
  // n2 hands on a publish after n1's mark (offset 2): the offer has to read it from the history.
  REQUIRE(n3.publish("alice", {{"n", 1}}).status == 202);
  CHECK(read_published(*a, "alice", 1) == std::vector<int>{1});
  // The offer reaches n2 two seconds into n2's 3 s wait for it, and its read's answer waits
  // past the end of that wait.
  std::this_thread::sleep_for(2s);
  adopter_in.hold_replies_after("XRANGE");
  owner_out.release_sends();
  REQUIRE(eventually([&] { return adopter_in.replies_held() > 0; }, 5s));
  std::this_thread::sleep_for(1500ms);
  adopter_in.release_replies();
  // Before, the request's wait ended the hand-over too: declined, and a fresh session here.
  auto moved = moving.get();
  expect_moved(*moved);
  CHECK(read_published(*moved, "alice", 1) == std::vector<int>{1});
  REQUIRE(n3.publish("alice", {{"n", 2}}).status == 202);
  expect_each_once({a.get(), moved.get()}, "alice", {2});
  CHECK(eventually([&] { return n1.health()["detached"] == 0; }, 5s));
}

TEST_CASE("a new connection of a user its node already follows gets every publish counted for "
          "it, also one whose message reaches the node before the node's admission does") {
  redis_server redis;
  tcp_proxy late{redis.port()}; // what Redis answers n1's commands can be held back
  node n1{late.address(), "n1", {"--cluster.redis-timeout-ms=20000"}};
  node n2{redis.address(), "n2"};
  auto a1 = n1.connect("alice"); // n1 follows alice's stream
  REQUIRE(n2.publish("alice", {{"n", 0}}).status == 202);
  CHECK(read_published(*a1, "alice", 1) == upto(1));
  // A second connection of alice on n1: Redis counts it, but its answer waits in the proxy.
  late.hold_replies_to("er:node:n1:commands");
  auto connecting = std::async(std::launch::async, [&] { return n1.try_connect("alice"); });
  REQUIRE(eventually([&] { return counted_connections(redis.port(), "alice") == ":2\r\n"; }, 5s));
  // A publish now counts it, and reaches n1 on its subscriber link, which is not held.
  auto r = n2.publish("alice", {{"n", 1}});
  REQUIRE(r.status == 202);
  CHECK(json::parse(r.body)["delivered"] == 2);
  CHECK(read_published(*a1, "alice", 1) == std::vector<int>{1});
  late.release_replies();
  auto a2 = connecting.get();
  CHECK(next_json(*a2)["type"] == "connection_established");
  REQUIRE(n2.publish("alice", {{"n", 2}}).status == 202);
  // The publish counted for it first, then the next: each once, in order.
  CHECK(read_published(*a2, "alice", 2) == std::vector<int>{1, 2});
  CHECK(read_published(*a1, "alice", 1) == std::vector<int>{2});
  CHECK(a2->read(300ms).what == er::client::frame::kind::timeout);
}

TEST_CASE("a run left on a node that dies after its session moved away ends with one "
          "agent_error on the session's new node, by the run's deadline") {
  redis_server redis;
  // Ten seconds of demo steps, a three-second run timeout: had n1 lived, it would have timed
  // the run out itself and sent "the agent timed out" on.
  auto slow_demo = std::vector<std::string>{"--agents.demo-steps=100",
                                            "--agents.demo-step-delay-ms=100",
                                            "--agents.run-timeout-ms=3000"};
  node n1{redis.address(), "n1", slow_demo}, n2{redis.address(), "n2", slow_demo};
  auto c = n1.try_connect("alice");
  auto greeting = next_json(*c);
  c->send_text(R"({"type":"start_agent","id":"go","payload":{"agent":"demo"}})");
  auto started = next_json(*c);
  REQUIRE(started["type"] == "agent_started");
  auto run = started["run_id"].get<std::string>();
  std::uint64_t next_id = started["event_id"].get<std::uint64_t>() + 1;
  read_run(*c, "alice", run, next_id, 2);
  c->reset();
  std::this_thread::sleep_for(200ms);
  auto [on2, g2] = resume_on(n2, "alice", greeting, next_id - 1);
  REQUIRE(g2["data"]["recovered"] == true);
  read_run(*on2, "alice", run, next_id, 2); // the run goes on reporting from n1
  n1.kill_now(); // no final event, no note: n1 is gone
  json final;
  while (final.is_null()) { // what n1 sent before it died, then the one final event
    auto f = next_json(*on2, 15s);
    CHECK(f["event_id"] == next_id++);
    if (is_final(f))
      final = f;
    else
      CHECK(f["type"] == "agent_thinking");
  }
  CHECK(final["type"] == "agent_error");
  CHECK(final["run_id"] == run);
  CHECK(final["reply_to"] == "go");
  CHECK(final["data"]["message"].get<std::string>().find("the run was lost") == 0);
  // The session is idle again and goes on: nothing more of that run, a new run starts here.
  CHECK(on2->read(300ms).what == er::client::frame::kind::timeout);
  on2->send_text(R"({"type":"start_agent","id":"again","payload":{"agent":"echo","input":"x"}})");
  auto again = next_json(*on2);
  CHECK(again["type"] == "agent_started");
  CHECK(again["event_id"] == next_id);
}

TEST_CASE("a session moved while its user_message waits for the old node's thread store gets "
          "that run on the new node: the offer waits for the start") {
  redis_server redis;
  auto busy_store = std::vector<std::string>{"--router.messages-per-second=100000",
                                             "--router.messages-burst=100000",
                                             "--router.max-threads-per-user=100000",
                                             // the publishes made while the offer waits (up to
                                             // 1 s) all stay in the session's replay buffer
                                             "--router.resume-buffer-events=1000000",
                                             "--router.resume-buffer-bytes=268435456"};
  node n1{redis.address(), "n1", busy_store}, n2{redis.address(), "n2", busy_store};
  // Bob keeps n1's thread store busy: alice's append waits behind his thread creations while
  // her session moves to n2.
  auto bob = n1.connect("bob");
  // A backlog usually under the offer's 1 s wait (one that takes longer, as under TSan on a
  // busy host, has the offer go without the run, which still reaches n2: the next case).
  constexpr int backlog = 300;
  for (int i = 0; i < backlog; ++i)
    bob->send_text(R"({"type":"create_thread","id":"t)" + std::to_string(i) + R"(","payload":{}})");
  CHECK(next_json(*bob, 10s)["type"] == "thread_created"); // the store is at it
  auto c = n1.try_connect("alice");
  auto greeting = next_json(*c);
  // A backend publishes to alice without pause meanwhile: what n1 gets after its stream mark
  // (while its offer waits) is n2's to deliver, not n1's as well.
  publisher backend{n1, "alice"};
  c->send_text(R"({"type":"user_message","id":"hello","payload":{"text":"hi"}})");
  c->reset(); // at once: the append is still queued on n1
  auto [on2, g2] = resume_on(n2, "alice", greeting, 0);
  REQUIRE(g2["data"]["recovered"] == true);
  // The run started on n1 once the store answered; its events reach alice on n2, each once,
  // in order, the first one answering her message; every publish reaches her once, in order.
  std::vector<std::string> types;
  std::vector<int> news;
  std::uint64_t next_id = 1;
  auto read_one = [&] {
    auto f = next_json(*on2, 15s);
    CHECK(f["user_id"] == "alice");
    CHECK(f["event_id"] == next_id++);
    if (f["type"] == "news")
      return news.push_back(f["data"]["n"].get<int>());
    if (types.empty())
      CHECK(f["reply_to"] == "hello");
    types.push_back(f["type"].get<std::string>());
  };
  // Publishes keep arriving: the run's end is waited for with a deadline of its own.
  auto until = std::chrono::steady_clock::now() + 60s;
  while ((types.empty() || types.back() != "agent_completed")
         && std::chrono::steady_clock::now() < until)
    read_one();
  REQUIRE(!types.empty());
  CHECK(types.back() == "agent_completed");
  CHECK(eventually([&] { return backend.published() >= 20 || backend.refused() > 0; }, 60s));
  backend.stop();
  REQUIRE(backend.refused() == 0);
  while (static_cast<int>(news.size()) < backend.published())
    read_one();
  CHECK(types.front() == "agent_started");
  CHECK(news == upto(backend.published()));
  CHECK(on2->read(300ms).what == er::client::frame::kind::timeout); // nothing twice
}

TEST_CASE("a start that outlasts the offer's wait for the old node's thread store runs there "
          "all the same, for the session on its new node") {
  redis_server redis;
  temp_dir dir;
  const auto store = dir.file("n1.db");
  node n1{redis.address(), "n1", {"--router.store-path=" + store}}, n2{redis.address(), "n2"};
  REQUIRE(std::filesystem::exists(store));
  auto c = n1.try_connect("alice");
  auto greeting = next_json(*c);
  // Another connection holds the store's write lock: alice's message waits for it (the
  // store's busy timeout is 5 s) longer than an offer waits for a start (1 s).
  sqlite3* lock = nullptr;
  REQUIRE(sqlite3_open(store.c_str(), &lock) == SQLITE_OK);
  REQUIRE(sqlite3_exec(lock, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  c->send_text(R"({"type":"user_message","id":"hello","payload":{"text":"hi"}})");
  c->send_text(R"({"type":"ping","id":"p"})");
  auto pong = next_json(*c); // n1 has the message: a connection's messages are handled in order
  REQUIRE(pong["type"] == "pong");
  c->reset();
  auto next_id = pong["event_id"].get<std::uint64_t>() + 1;
  auto [on2, g2] = resume_on(n2, "alice", greeting, next_id - 1);
  REQUIRE(g2["data"]["recovered"] == true);
  CHECK(sqlite3_exec(lock, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(lock);
  // The offer went without that run; it starts on n1 now and reaches alice on n2, to its end.
  auto started = next_json(*on2, 10s);
  REQUIRE(started["type"] == "agent_started");
  CHECK(started["reply_to"] == "hello");
  CHECK(started["event_id"] == next_id++);
  auto types = read_run(*on2, "alice", started["run_id"].get<std::string>(), next_id);
  REQUIRE(!types.empty());
  CHECK(types.back() == "agent_completed");
  CHECK(on2->read(300ms).what == er::client::frame::kind::timeout); // nothing twice
  CHECK(eventually([&] { return n1.health()["runs"] == 0; }, 5s));
}

/// Sends stop_agent for `run` (a demo run going on) on `c` and reads the run's events up to
/// its agent_stopped, which answers the stop; event ids go on from `next_id`. Nothing of the
/// run comes after it.
void stop_on(er::client::ws_client& c, const std::string& run, std::uint64_t next_id) {
  c.send_text(json{{"type", "stop_agent"}, {"id", "halt"}, {"payload", {{"run_id", run}}}}.dump());
  json stopped;
  for (;; ++next_id) {
    stopped = next_json(c, 5s);
    INFO(stopped.dump());
    REQUIRE(stopped["run_id"] == run);
    CHECK(stopped["event_id"] == next_id);
    if (stopped["type"] != "agent_thinking" && stopped["type"] != "tool_executing"
        && stopped["type"] != "tool_completed")
      break;
  }
  CHECK(stopped["type"] == "agent_stopped");
  CHECK(stopped["reply_to"] == "halt");
  CHECK(c.read(400ms).what == er::client::frame::kind::timeout);
}

TEST_CASE("a request the old socket brings after its session was offered to another node, "
          "before the close frame left, is handled on the old node: its run's events reach the "
          "new one, and a stop from there ends that run") {
  redis_server redis;
  auto opts = std::vector<std::string>{"--agents.demo-steps=50", "--agents.demo-step-delay-ms=100",
                                       "--router.outbound-queue-bytes=33554432",
                                       "--router.resume-buffer-bytes=33554432"};
  node n1{redis.address(), "n1", opts}, n2{redis.address(), "n2", opts};
  tcp_proxy to_n1{n1.port(), 4096}; // alice's first socket reaches n1 only through it
  auto c = n1.try_connect("alice", "/ws", to_n1.port());
  auto greeting = next_json(*c);
  REQUIRE(greeting["type"] == "connection_established");
  // What n1 writes to that socket stops reaching the client, and n1's writes block once the
  // buffers between are full: a close frame n1 sends from now on waits behind them.
  to_n1.hold_replies_to("GET /ws");
  const std::string filler(512 * 1024, 'x');
  constexpr int fillers = 8;
  for (int i = 0; i < fillers; ++i)
    REQUIRE(n1.publish("alice", {{"pad", filler}}).status == 202);
  CHECK(eventually([&] {
    return n1.health()["replay"]["bytes"].get<std::size_t>() >= fillers * filler.size();
  }, 20s));
  to_n1.hold_sends();
  c->send_text(R"({"type":"user_message","id":"late","payload":{"text":"hi"}})");
  // n1 still sees that socket open when n2 asks for the session: it gives the session away
  // and asks that socket to close with 4512, and only then reads what the client sent on it.
  auto [on2, g2] = resume_on(n2, "alice", greeting, fillers);
  REQUIRE(g2["data"]["recovered"] == true);
  to_n1.release_sends();
  auto started = next_json(*on2, 10s);
  REQUIRE(started["type"] == "agent_started");
  CHECK(started["user_id"] == "alice");
  CHECK(started["reply_to"] == "late");
  CHECK(started["event_id"] == fillers + 1);
  auto run = started["run_id"].get<std::string>();
  CHECK(n1.health()["runs"] == 1); // it runs where the request was read
  CHECK(n2.health()["runs"] == 0);
  // n2 learned of that run from its agent_started: a stop sent there reaches it.
  stop_on(*on2, run, fillers + 2);
  CHECK(eventually([&] { return n1.health()["runs"] == 0; }, 5s));
}

TEST_CASE("stop_agent on the node a session moved to stops the run left on the old node") {
  redis_server redis;
  auto slow_demo = std::vector<std::string>{"--agents.demo-steps=50", "--agents.demo-step-delay-ms=100"};
  node n1{redis.address(), "n1", slow_demo}, n2{redis.address(), "n2", slow_demo};
  auto c = n1.try_connect("alice");
  auto greeting = next_json(*c);
  c->send_text(R"({"type":"start_agent","id":"go","payload":{"agent":"demo"}})");
  auto started = next_json(*c);
  auto run = started["run_id"].get<std::string>();
  c->reset();
  std::this_thread::sleep_for(150ms);
  auto [on2, g2] = resume_on(n2, "alice", greeting, started["event_id"].get<std::uint64_t>());
  REQUIRE(g2["data"]["recovered"] == true);
  stop_on(*on2, run, started["event_id"].get<std::uint64_t>() + 1);
  on2->send_text(json{{"type", "stop_agent"}, {"id", "again"}, {"payload", {{"run_id", run}}}}.dump());
  auto again = next_json(*on2);
  CHECK(again["type"] == "error");
  CHECK(again["data"]["code"] == "not_found");
  CHECK(eventually([&] { return n1.health()["runs"] == 0; }, 5s));
}

TEST_CASE("a resume for a session on a dead node, or with another user's token, gets a fresh "
          "session, and the owner keeps a session nobody took") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"}, n3{redis.address(), "n3"};
  auto c = n1.try_connect("alice");
  auto greeting = next_json(*c);
  c->reset();
  CHECK(eventually([&] { return n1.health()["detached"] == 1; }, 5s));

  auto [thief, tg] = resume_on(n2, "mallory", greeting, 0);
  CHECK(tg["data"]["recovered"] == false);
  CHECK(tg["data"]["session_id"] != greeting["data"]["session_id"]);
  CHECK(n1.health()["detached"] == 1); // still alice's to resume

  auto other = n3.try_connect("carol");
  auto carol = next_json(*other);
  other->reset();
  CHECK(eventually([&] { return n3.health()["detached"] == 1; }, 5s));
  n3.kill_now();
  CHECK(eventually([&] { return n2.health()["cluster"]["nodes"] == 2; }, 5s));
  auto [late, lg] = resume_on(n2, "carol", carol, 0);
  CHECK(lg["data"]["recovered"] == false);

  auto [back, bg] = resume_on(n2, "alice", greeting, 0);
  CHECK(bg["data"]["recovered"] == true);
  CHECK(bg["data"]["session_id"] == greeting["data"]["session_id"]);
  CHECK(eventually([&] { return n1.health()["detached"] == 0; }, 5s));
}

TEST_CASE("a hand-over the owner answers too late ends as a fresh session there and no session "
          "on the owner: never two live copies") {
  redis_server redis;
  auto slow_demo = std::vector<std::string>{"--agents.demo-steps=100", "--agents.demo-step-delay-ms=100"};
  node n1{redis.address(), "n1", slow_demo}, n2{redis.address(), "n2"};
  auto c = n1.try_connect("alice");
  auto greeting = next_json(*c);
  c->send_text(R"({"type":"start_agent","id":"go","payload":{"agent":"demo"}})");
  CHECK(next_json(*c)["type"] == "agent_started");
  c->reset();
  CHECK(eventually([&] { return n1.health()["detached"] == 1; }, 5s));
  n1.pause(); // alive in Redis for a while yet, but answering nothing
  auto [on2, g2] = resume_on(n2, "alice", greeting, 0);
  CHECK(g2["data"]["recovered"] == false); // after the bus's wait for an offer
  n1.resume(); // now it reads the request, offers, and learns the offer was declined
  // The session ends there, its run with it: long before the run's own end (10 s of steps)
  // or the owner's wait for an acceptance (10 s).
  CHECK(eventually([&] { return n1.health()["runs"] == 0; }, 4s));
  CHECK(n1.health()["detached"] == 0);
  auto [again, ga] = resume_on(n1, "alice", greeting, 0);
  CHECK(ga["data"]["recovered"] == false);
  on2->send_text(R"({"type":"ping","id":"p"})");
  CHECK(next_json(*on2)["reply_to"] == "p");
}

TEST_CASE("a connection whose admission Redis answers after its node began to drain is drained "
          "too: 1001 at once, not left open for the drain's whole time") {
  redis_server redis;
  tcp_proxy in{redis.port()};
  auto options = patient_links();
  options.insert(options.end(), {"--router.drain-timeout-ms=30000", "--agents.demo-steps=200",
                                 "--agents.demo-step-delay-ms=100"});
  node n1{in.address(), "n1", options};
  // bob's long run keeps the drain going.
  auto bob = n1.connect("bob");
  bob->send_text(R"({"type":"start_agent","id":"long","payload":{"agent":"demo"}})");
  CHECK(next_json(*bob)["type"] == "agent_started");
  // alice's admission: Redis counts her connection, and its answer waits in the proxy.
  in.hold_replies_after("er:u:alice:conns");
  auto connecting = std::async(std::launch::async, [&] { return n1.try_connect("alice"); });
  REQUIRE(eventually([&] { return counted_connections(redis.port(), "alice") == ":1\r\n"; }, 5s));
  n1.terminate();
  // The listener stops before the drain goes out: once it refuses, the drain is on its way.
  auto accepting = [&] {
    try {
      er::client::http_request("127.0.0.1", n1.port(), "GET", "/healthz", {}, {}, 1s);
      return true;
    } catch (const std::exception&) {
      return false;
    }
  };
  REQUIRE(eventually([&] { return !accepting(); }, 10s));
  std::this_thread::sleep_for(300ms); // it has reached the router and bob's manager
  in.release_replies();
  auto alice = connecting.get();
  CHECK(next_json(*alice)["type"] == "connection_established");
  // Before, her manager, made after the drain had been sent to the others, never got it: her
  // connection stayed open until the drain timed out.
  expect_close(*alice, 1001);
}

TEST_CASE("isolation across processes: 30 users on three nodes, publishes from any node and "
          "agent runs, and every frame on every connection is its own user's") {
  redis_server redis;
  node n1{redis.address(), "n1"}, n2{redis.address(), "n2"}, n3{redis.address(), "n3"};
  const node* nodes[] = {&n1, &n2, &n3};
  struct conn {
    std::string user;
    std::unique_ptr<er::client::ws_client> client;
  };
  std::vector<conn> conns;
  for (int u = 0; u < 30; ++u)
    for (int k = 0; k < 2; ++k) { // each user on two nodes
      auto user = "user-" + std::to_string(u);
      conns.push_back({user, nodes[(u + k) % 3]->connect(user)});
    }
  std::map<std::string, int> owed; // publishes per user
  std::mt19937 random{7};
  for (int i = 0; i < 300; ++i) {
    auto user = "user-" + std::to_string(random() % 30);
    auto r = nodes[random() % 3]->publish(user, {{"n", i}, {"for", user}});
    REQUIRE(r.status == 202);
    CHECK(json::parse(r.body)["delivered"] == 2);
    ++owed[user];
  }
  for (auto& c : conns)
    c.client->send_text(R"({"type":"start_agent","id":"e","payload":{"agent":"echo","input":1}})");
  for (auto& c : conns) {
    int news = 0;
    bool completed = false;
    while (news < owed[c.user] || !completed) {
      auto f = next_json(*c.client, 10s);
      REQUIRE(f["user_id"] == c.user);
      if (f["type"] == "news") {
        CHECK(f["data"]["for"] == c.user);
        ++news;
      }
      completed = completed || f["type"] == "agent_completed";
    }
    CHECK(c.client->read(50ms).what == er::client::frame::kind::timeout); // nothing more
  }
}
