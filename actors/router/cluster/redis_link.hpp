#pragma once
// One connection to a Redis server on hiredis's asynchronous API, driven by the router's own
// io threads: hiredis's event hooks become waits on the socket (no thread of its own, no
// blocking call). Commands may be issued from any thread; everything that touches hiredis runs
// on the link's strand, and every callback runs there too. A link in subscriber mode delivers
// the messages of the channels it subscribed to.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace er::actors {

/// A reply, converted from hiredis's.
struct redis_reply {
  enum class kind { nil, integer, string, status, error, array } type = kind::nil;
  long long integer = 0;
  std::string text;                 ///< string, status and error replies
  std::vector<redis_reply> elements; ///< array replies

  bool is_error() const noexcept {
    return type == kind::error;
  }
  static redis_reply failure(std::string why) {
    redis_reply r;
    r.type = kind::error;
    r.text = std::move(why);
    return r;
  }
};

struct redis_address {
  std::string host;
  int port = 6379;
  std::string text() const {
    return host + ":" + std::to_string(port);
  }
};

class redis_link {
public:
  struct events {
    /// Connected (and authenticated); the server's run_id (INFO server), new with every start
    /// of Redis, or empty when Redis does not tell (an ACL without INFO).
    std::function<void(std::string run_id)> on_up;
    std::function<void(std::string why)> on_down;  ///< a connect failed or the link broke
    /// Subscriber links: a message on a subscribed channel.
    std::function<void(std::string channel, std::string message)> on_message;
    /// Subscriber links: Redis confirmed a subscription; messages published from now on come.
    std::function<void(std::string channel)> on_subscribed;
  };

  /// `password` empty: no AUTH. `client_name` (empty: none) is what Redis's CLIENT LIST shows
  /// for the connection, set after every connect; characters Redis does not take in a name
  /// (spaces, controls, non-ASCII) become '_'; a Redis that refuses CLIENT SETNAME (an ACL
  /// without it) leaves the link unnamed and up.
  ///
  /// `timeout`: a connect that is not up within it, or a Redis that answers nothing for it
  /// while asked, ends the connection (on_down). A link that heard nothing from Redis for half
  /// of it asks: PING on a command link, on a subscriber link (where hiredis cannot match a
  /// PING's answer) a SUBSCRIBE of its own probe channel. So a partition, a stopped Redis or a
  /// connection lost without a FIN is noticed within one and a half times `timeout`, even on a
  /// subscriber link that never writes.
  static std::shared_ptr<redis_link> create(boost::asio::io_context& io, redis_address address,
                                            std::string password, std::string client_name,
                                            std::chrono::milliseconds timeout, events callbacks);
  virtual ~redis_link() = default;

  /// Connects; on_up or on_down follows. Again after on_down to reconnect.
  virtual void connect() = 0;
  /// Sends a command; `done` gets its reply, or an error reply when the link is down or breaks
  /// first. Thread-safe.
  virtual void command(std::vector<std::string> argv, std::function<void(redis_reply)> done) = 0;
  /// Subscriber mode: (un)subscribes a channel; its messages go to on_message. Thread-safe.
  virtual void subscribe(std::string channel) = 0;
  virtual void unsubscribe(std::string channel) = 0;
  /// Closes the link for good; nothing is called afterwards.
  virtual void close() = 0;
};

} // namespace er::actors
