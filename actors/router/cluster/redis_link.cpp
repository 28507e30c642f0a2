#include "actors/router/cluster/redis_link.hpp"

#include <cstring>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
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
            std::string client_name, events cb)
    : strand_(asio::make_strand(io)), address_(std::move(address)),
      password_(std::move(password)), client_name_(std::move(client_name)), cb_(std::move(cb)) {
    for (auto& c : client_name_)
      if (c < '!' || c > '~')
        c = '_';
  }

  ~link_impl() override {
    closed_ = true;
    if (ac_) // close() was not called: free without telling anybody
      redisAsyncFree(std::exchange(ac_, nullptr));
  }

  void connect() override {
    asio::post(strand_, [self = shared_from_this()] { self->open(); });
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
      if (self->ac_)
        redisAsyncFree(std::exchange(self->ac_, nullptr));
    });
  }

private:
  // -- hiredis ----------------------------------------------------------------

  void open() {
    if (ac_ || closed_)
      return;
    ac_ = redisAsyncConnect(address_.host.c_str(), address_.port);
    if (!ac_ || ac_->err) {
      std::string why = ac_ ? ac_->errstr : "out of memory";
      if (ac_)
        redisAsyncFree(std::exchange(ac_, nullptr));
      return lost("cannot connect to redis " + address_.text() + ": " + why);
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

  void on_connect(std::string error) {
    if (!error.empty()) { // hiredis frees the context after this callback
      ac_ = nullptr;
      return lost("cannot connect to redis " + address_.text() + ": " + error);
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
        if (r->type != REDIS_REPLY_ERROR)
          return self->name_self();
        // Redis keeps a connection that failed AUTH open: it is ended here, so that the next
        // connect() starts anew (a password changed back, or rotated in the configuration).
        self->refusal_ = "redis " + self->address_.text() + " refused AUTH: "
                         + std::string{r->str, r->len};
        redisAsyncDisconnect(ac); // after this callback; on_disconnect reports the refusal
      },
      nullptr, 2, args, lengths);
  }

  /// CLIENT SETNAME, then up. A refusal (an ACL without CLIENT) leaves the link unnamed and up;
  /// no reply at all means the connection went first, which on_disconnect reports.
  void name_self() {
    if (client_name_.empty())
      return ready();
    const char* args[] = {"CLIENT", "SETNAME", client_name_.c_str()};
    std::size_t lengths[] = {6, 7, client_name_.size()};
    redisAsyncCommandArgv(
      ac_,
      [](redisAsyncContext* ac, void* reply, void*) {
        if (reply != nullptr)
          static_cast<link_impl*>(ac->data)->ready();
      },
      nullptr, 3, args, lengths);
  }

  void ready() {
    up_ = true;
    if (cb_.on_up)
      cb_.on_up();
  }

  void on_disconnect(const char* why) {
    ac_ = nullptr; // freed by hiredis after this callback
    if (!refusal_.empty())
      return lost(std::exchange(refusal_, {}));
    lost("lost redis " + address_.text() + (why && *why ? std::string{": "} + why : ""));
  }

  void lost(std::string why) {
    up_ = false;
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
      [](redisAsyncContext*, void* r, void* privdata) {
        std::unique_ptr<reply_fn> fn{static_cast<reply_fn*>(privdata)};
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
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
      return;
    std::string kind{reply->element[0]->str, reply->element[0]->len};
    auto* self = static_cast<link_impl*>(privdata);
    if (kind == "message" && self->cb_.on_message)
      self->cb_.on_message({reply->element[1]->str, reply->element[1]->len},
                           {reply->element[2]->str, reply->element[2]->len});
    else if (kind == "subscribe" && self->cb_.on_subscribed && reply->element[1]->str)
      self->cb_.on_subscribed({reply->element[1]->str, reply->element[1]->len});
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
  std::string refusal_; ///< why Redis refused AUTH, reported as the link goes down
  events cb_;
  redisAsyncContext* ac_ = nullptr;
  std::unique_ptr<asio::posix::stream_descriptor> socket_;
  bool wanted_[2] = {false, false};
  bool waiting_[2] = {false, false};
  bool up_ = false;
  bool closed_ = false;
};

} // namespace

std::shared_ptr<redis_link> redis_link::create(asio::io_context& io, redis_address address,
                                               std::string password, std::string client_name,
                                               events callbacks) {
  return std::make_shared<link_impl>(io, std::move(address), std::move(password),
                                     std::move(client_name), std::move(callbacks));
}

} // namespace er::actors
