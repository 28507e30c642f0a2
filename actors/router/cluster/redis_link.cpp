#include "actors/router/cluster/redis_link.hpp"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string_view>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

extern "C" {
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
}

namespace er::actors {

namespace {

namespace asio = boost::asio;
using strand_type = asio::strand<asio::io_context::executor_type>;
using reply_fn = std::function<void(redis_reply)>;
using clock_type = std::chrono::steady_clock;

redis_reply convert(const redisReply* r) {
  redis_reply out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out.type = redis_reply::kind::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      out.type = r->type == REDIS_REPLY_STRING   ? redis_reply::kind::string
                 : r->type == REDIS_REPLY_STATUS ? redis_reply::kind::status
                                                 : redis_reply::kind::error;
      out.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = redis_reply::kind::array;
      for (std::size_t i = 0; i < r->elements; ++i)
        out.elements.push_back(convert(r->element[i]));
      break;
    default:
      break; // nil
  }
  return out;
}

class link_impl final : public redis_link, public std::enable_shared_from_this<link_impl> {
public:
  link_impl(asio::io_context& io, redis_address address, std::string password,
            std::string client_name, std::chrono::milliseconds timeout, events cb)
    : strand_(asio::make_strand(io)), address_(std::move(address)),
      password_(std::move(password)), client_name_(std::move(client_name)), cb_(std::move(cb)),
      timeout_(std::max(timeout, std::chrono::milliseconds{1})), timer_(strand_),
      resolver_(strand_) {
    for (auto& c : client_name_)
      if (c < '!' || c > '~')
        c = '_';
    probe_channel_ = (client_name_.empty() ? std::string{"redis-link"} : client_name_) + ":probe";
  }

  ~link_impl() override {
    closed_ = true;
    if (ac_) // close() was not called: free without telling anybody
      redisAsyncFree(std::exchange(ac_, nullptr));
  }

  void connect() override {
    asio::post(strand_, [self = shared_from_this()] {
      self->open();
      if (!self->ticking_) {
        self->ticking_ = true;
        self->tick();
      }
    });
  }

  void command(std::vector<std::string> argv, reply_fn done) override {
    asio::dispatch(strand_, [self = shared_from_this(), argv = std::move(argv),
                             done = std::move(done)]() mutable {
      if (!self->up_)
        return done(redis_reply::failure("redis " + self->address_.text() + " is down"));
      self->send(argv, std::move(done));
    });
  }

  void subscribe(std::string channel) override {
    pubsub("SUBSCRIBE", std::move(channel));
  }

  void unsubscribe(std::string channel) override {
    pubsub("UNSUBSCRIBE", std::move(channel));
  }

  void close() override {
    asio::post(strand_, [self = shared_from_this()] {
      self->closed_ = true;
      self->timer_.cancel();
      self->resolver_.cancel();
      if (self->ac_)
        redisAsyncFree(std::exchange(self->ac_, nullptr));
    });
  }

private:
  // -- hiredis ----------------------------------------------------------------

  /// Connects to the next of the host's addresses, resolved first when it is a name. hiredis
  /// would resolve a name itself, with getaddrinfo on this io thread: a slow DNS server (each
  /// reconnect while Redis is away asks again) would hold every connection served there. asio's
  /// resolver asks on a thread of its own. The addresses are tried in turn while they fail, and
  /// resolved anew once the link was up (Redis may have moved to another address since).
  void open() {
    if (ac_ || resolving_ || closed_)
      return;
    connect_started_ = clock_type::now();
    loading_ = false;
    if (next_address_ < addresses_.size())
      return open_at(addresses_[next_address_++]);
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(address_.host, ec);
    if (!ec)
      return open_at(ip.to_string());
    resolving_ = true;
    resolver_.async_resolve(
      address_.host, std::to_string(address_.port),
      [self = shared_from_this(), attempt = ++resolve_attempt_](
        const boost::system::error_code& ec, asio::ip::tcp::resolver::results_type found) {
        if (attempt != self->resolve_attempt_ || self->closed_)
          return; // given up on (tick), or closed
        self->resolving_ = false;
        self->addresses_.clear();
        self->next_address_ = 0;
        for (auto& entry : found)
          self->addresses_.push_back(entry.endpoint().address().to_string());
        if (ec || self->addresses_.empty())
          return self->lost("cannot resolve the redis host " + self->address_.text() + ": "
                            + (ec ? ec.message() : std::string{"no address"}));
        self->open();
      });
  }

  /// hiredis connects to `ip` (numeric: it resolves nothing).
  void open_at(const std::string& ip) {
    ac_ = redisAsyncConnect(ip.c_str(), address_.port);
    if (!ac_ || ac_->err) {
      std::string why = ac_ ? ac_->errstr : "out of memory";
      if (ac_)
        redisAsyncFree(std::exchange(ac_, nullptr));
      return failed_to_connect(why);
    }
    ac_->data = this;
    ac_->ev.data = this;
    ac_->ev.addRead = [](void* p) { static_cast<link_impl*>(p)->watch(reading_flag, true); };
    ac_->ev.delRead = [](void* p) { static_cast<link_impl*>(p)->watch(reading_flag, false); };
    ac_->ev.addWrite = [](void* p) { static_cast<link_impl*>(p)->watch(writing_flag, true); };
    ac_->ev.delWrite = [](void* p) { static_cast<link_impl*>(p)->watch(writing_flag, false); };
    ac_->ev.cleanup = [](void* p) { static_cast<link_impl*>(p)->forget_socket(); };
    socket_ = std::make_unique<asio::posix::stream_descriptor>(strand_, ac_->c.fd);
    redisAsyncSetConnectCallback(ac_, [](const redisAsyncContext* ac, int status) {
      static_cast<link_impl*>(ac->data)->on_connect(status == REDIS_OK ? "" : ac->errstr);
    });
    redisAsyncSetDisconnectCallback(ac_, [](const redisAsyncContext* ac, int) {
      static_cast<link_impl*>(ac->data)->on_disconnect(ac->errstr);
    });
  }

  /// A connect that failed: the host's next address at once, if it has one; else down.
  void failed_to_connect(const std::string& why) {
    if (next_address_ < addresses_.size()) // after hiredis's callback, if in one
      return asio::post(strand_, [self = shared_from_this()] { self->open(); });
    addresses_.clear();
    next_address_ = 0;
    lost("cannot connect to redis " + address_.text() + ": " + why);
  }

  void on_connect(std::string error) {
    if (!error.empty()) { // hiredis frees the context after this callback
      ac_ = nullptr;
      return failed_to_connect(error);
    }
    if (password_.empty())
      return name_self();
    const char* args[] = {"AUTH", password_.c_str()};
    std::size_t lengths[] = {4, password_.size()};
    redisAsyncCommandArgv(
      ac_,
      [](redisAsyncContext* ac, void* reply, void*) {
        if (reply == nullptr)
          return; // the connection went first: on_disconnect says so
        auto* self = static_cast<link_impl*>(ac->data);
        auto* r = static_cast<redisReply*>(reply);
        self->heard();
        if (r->type != REDIS_REPLY_ERROR)
          return self->name_self();
        // Redis keeps a connection that failed AUTH open: it is ended here, so that the next
        // connect() starts anew (a password changed back, or rotated in the configuration).
        self->down_reason_ = "redis " + self->address_.text() + " refused AUTH: "
                         + std::string{r->str, r->len};
        redisAsyncDisconnect(ac); // after this callback; on_disconnect reports the refusal
      },
      nullptr, 2, args, lengths);
  }

  /// CLIENT SETNAME, then the run_id. A refusal (an ACL without CLIENT) leaves the link unnamed
  /// and up; no reply at all means the connection went first, which on_disconnect reports.
  void name_self() {
    if (client_name_.empty())
      return ask_run_id();
    const char* args[] = {"CLIENT", "SETNAME", client_name_.c_str()};
    std::size_t lengths[] = {6, 7, client_name_.size()};
    redisAsyncCommandArgv(
      ac_,
      [](redisAsyncContext* ac, void* reply, void*) {
        if (reply != nullptr)
          static_cast<link_impl*>(ac->data)->ask_run_id();
      },
      nullptr, 3, args, lengths);
  }

  /// INFO server's run_id (empty when Redis refuses INFO), then up once Redis has loaded.
  void ask_run_id() {
    const char* args[] = {"INFO", "server"};
    std::size_t lengths[] = {4, 6};
    redisAsyncCommandArgv(
      ac_,
      [](redisAsyncContext* ac, void* reply, void*) {
        if (reply == nullptr)
          return;
        auto* r = static_cast<redisReply*>(reply);
        std::string run_id;
        if (r->type == REDIS_REPLY_STRING) {
          std::string_view info{r->str, r->len};
          constexpr std::string_view key = "run_id:";
          if (auto at = info.find(key); at != std::string_view::npos) {
            auto value = info.substr(at + key.size());
            run_id = std::string{value.substr(0, value.find_first_of("\r\n"))};
          }
        }
        auto* self = static_cast<link_impl*>(ac->data);
        self->run_id_ = std::move(run_id);
        self->await_loaded();
      },
      nullptr, 2, args, lengths);
  }

  /// Up once Redis has loaded its dataset. While it loads one (a restart from a snapshot) it
  /// accepts connections and answers nearly every command with -LOADING: the owner's first
  /// commands on a link it took for up (the new epoch, the liveness key, the counts) were
  /// refused and not made again. PING is refused too until the load is done; it is asked again
  /// each tick. Any other answer, a refusal by an ACL included, means loaded.
  void await_loaded() {
    const char* args[] = {"PING"};
    std::size_t lengths[] = {4};
    redisAsyncCommandArgv(
      ac_,
      [](redisAsyncContext* ac, void* reply, void*) {
        if (reply == nullptr)
          return; // the connection went first: on_disconnect says so
        auto* self = static_cast<link_impl*>(ac->data);
        auto* r = static_cast<redisReply*>(reply);
        self->heard();
        if (r->type == REDIS_REPLY_ERROR
            && std::string_view{r->str, r->len}.rfind("LOADING", 0) == 0) {
          self->loading_ = true;
          // Redis answers: not a connect that hangs, however long the load takes.
          self->connect_started_ = clock_type::now();
          return;
        }
        self->ready(std::exchange(self->run_id_, {}));
      },
      nullptr, 1, args, lengths);
  }

  void ready(std::string run_id) {
    up_ = true;
    addresses_.clear(); // a reconnect resolves the host anew
    next_address_ = 0;
    heard();
    if (cb_.on_up)
      cb_.on_up(std::move(run_id));
  }

  void on_disconnect(const char* why) {
    ac_ = nullptr; // freed by hiredis after this callback
    if (!down_reason_.empty())
      return lost(std::exchange(down_reason_, {}));
    lost("lost redis " + address_.text() + (why && *why ? std::string{": "} + why : ""));
  }

  void lost(std::string why) {
    up_ = false;
    probe_sent_.reset();
    if (!closed_ && cb_.on_down)
      cb_.on_down(std::move(why));
  }

  void send(const std::vector<std::string>& argv, reply_fn done) {
    std::vector<const char*> args;
    std::vector<std::size_t> lengths;
    for (auto& a : argv) {
      args.push_back(a.data());
      lengths.push_back(a.size());
    }
    auto* fn = new reply_fn(std::move(done));
    auto sent = redisAsyncCommandArgv(
      ac_,
      [](redisAsyncContext* ac, void* r, void* privdata) {
        std::unique_ptr<reply_fn> fn{static_cast<reply_fn*>(privdata)};
        if (r)
          static_cast<link_impl*>(ac->data)->heard();
        (*fn)(r ? convert(static_cast<redisReply*>(r))
                : redis_reply::failure("the redis connection was lost"));
      },
      fn, static_cast<int>(args.size()), args.data(), lengths.data());
    if (sent != REDIS_OK) {
      std::unique_ptr<reply_fn> owned{fn};
      (*owned)(redis_reply::failure("redis rejected the command"));
    }
  }

  void pubsub(const char* verb, std::string channel) {
    asio::dispatch(strand_, [self = shared_from_this(), verb, channel = std::move(channel)] {
      if (!self->up_)
        return;
      const char* args[] = {verb, channel.data()};
      std::size_t lengths[] = {std::strlen(verb), channel.size()};
      redisAsyncCommandArgv(self->ac_, &link_impl::on_pubsub_reply, self.get(), 2, args,
                            lengths);
    });
  }

  static void on_pubsub_reply(redisAsyncContext*, void* r, void* privdata) {
    auto* reply = static_cast<redisReply*>(r);
    if (!reply)
      return;
    auto* self = static_cast<link_impl*>(privdata);
    self->heard();
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
      return;
    std::string kind{reply->element[0]->str, reply->element[0]->len};
    if (reply->element[1]->str
        && std::string_view{reply->element[1]->str, reply->element[1]->len} == self->probe_channel_)
      return; // the answer to a probe: nothing for the owner
    if (kind == "message" && self->cb_.on_message)
      self->cb_.on_message({reply->element[1]->str, reply->element[1]->len},
                           {reply->element[2]->str, reply->element[2]->len});
    else if (kind == "subscribe" && self->cb_.on_subscribed && reply->element[1]->str)
      self->cb_.on_subscribed({reply->element[1]->str, reply->element[1]->len});
  }

  // -- the deadline ------------------------------------------------------------

  /// Redis answered something: the link is alive, no probe is owed.
  void heard() {
    last_heard_ = clock_type::now();
    probe_sent_.reset();
  }

  /// Every quarter of the timeout: a connect or a probe past the timeout ends the connection;
  /// a link silent for half of it sends a probe.
  void tick() {
    auto now = clock_type::now();
    if (resolving_ && now - connect_started_ >= timeout_) {
      resolving_ = false;
      ++resolve_attempt_; // its answer, when it comes, is not used
      resolver_.cancel();
      lost("the redis host " + address_.text() + " did not resolve within "
           + std::to_string(timeout_.count()) + " ms");
    } else if (ac_ && !up_ && now - connect_started_ >= timeout_)
      drop("redis " + address_.text() + " did not accept the link within "
           + std::to_string(timeout_.count()) + " ms");
    else if (up_ && probe_sent_ && now - *probe_sent_ >= timeout_)
      drop("redis " + address_.text() + " did not answer for "
           + std::to_string(timeout_.count()) + " ms");
    else if (up_ && !probe_sent_ && now - last_heard_ >= timeout_ / 2)
      probe();
    else if (ac_ && !up_ && std::exchange(loading_, false))
      await_loaded();
    timer_.expires_after(std::max(timeout_ / 4, std::chrono::milliseconds{1}));
    timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (!ec && self && !self->closed_)
        self->tick();
    });
  }

  void probe() {
    probe_sent_ = clock_type::now();
    if (cb_.on_message) // a subscriber link: its probe channel's confirmation is the answer
      return pubsub("SUBSCRIBE", probe_channel_);
    send({"PING"}, [](redis_reply) {}); // its answer counts as heard
  }

  /// Ends the connection without waiting for Redis; on_down says `why`.
  void drop(std::string why) {
    down_reason_ = std::move(why);
    // hiredis fails the pending callbacks, then calls on_disconnect (which reports down_reason_)
    // if the connection was made; before that it calls nothing.
    redisAsyncFree(ac_);
    if (ac_) {
      ac_ = nullptr;
      lost(std::exchange(down_reason_, {}));
    }
  }

  // -- the socket under hiredis -------------------------------------------------

  static constexpr int reading_flag = 0;
  static constexpr int writing_flag = 1;

  /// hiredis wants (or no longer wants) to be told when the socket is readable / writable.
  void watch(int which, bool wanted) {
    wanted_[which] = wanted;
    arm(which);
  }

  void arm(int which) {
    if (!socket_ || !wanted_[which] || waiting_[which])
      return;
    waiting_[which] = true;
    auto kind = which == reading_flag ? asio::posix::stream_descriptor::wait_read
                                      : asio::posix::stream_descriptor::wait_write;
    socket_->async_wait(kind, [self = shared_from_this(), which](boost::system::error_code ec) {
      self->waiting_[which] = false;
      if (ec || !self->ac_ || !self->wanted_[which])
        return;
      if (which == reading_flag)
        redisAsyncHandleRead(self->ac_);
      else
        redisAsyncHandleWrite(self->ac_);
      self->arm(which);
    });
  }

  /// hiredis frees its context: the descriptor is its to close, not asio's.
  void forget_socket() {
    if (socket_)
      socket_->release();
    socket_.reset();
    wanted_[0] = wanted_[1] = false;
  }

  strand_type strand_;
  redis_address address_;
  std::string password_;
  std::string client_name_;
  std::string down_reason_; ///< why the link goes down (AUTH refused, no answer), reported then
  std::string probe_channel_; ///< subscriber links: SUBSCRIBEd to as a probe
  events cb_;
  std::chrono::milliseconds timeout_;
  asio::steady_timer timer_;
  asio::ip::tcp::resolver resolver_;
  bool resolving_ = false;
  std::uint64_t resolve_attempt_ = 0;
  std::vector<std::string> addresses_; ///< the host's, while they are tried in turn
  std::size_t next_address_ = 0;
  bool ticking_ = false;
  clock_type::time_point connect_started_{};
  clock_type::time_point last_heard_{};
  std::optional<clock_type::time_point> probe_sent_; ///< a probe awaits its answer
  redisAsyncContext* ac_ = nullptr;
  std::unique_ptr<asio::posix::stream_descriptor> socket_;
  bool wanted_[2] = {false, false};
  bool waiting_[2] = {false, false};
  bool up_ = false;
  bool closed_ = false;
  /// Connected, and Redis answered the last PING with -LOADING: asked again on the next tick.
  bool loading_ = false;
  std::string run_id_; ///< INFO's answer, kept until Redis has loaded
};

} // namespace

std::shared_ptr<redis_link> redis_link::create(asio::io_context& io, redis_address address,
                                               std::string password, std::string client_name,
                                               std::chrono::milliseconds timeout,
                                               events callbacks) {
  return std::make_shared<link_impl>(io, std::move(address), std::move(password),
                                     std::move(client_name), timeout, std::move(callbacks));
}

} // namespace er::actors
