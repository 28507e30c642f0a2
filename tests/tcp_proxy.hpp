#pragma once
// A TCP proxy on loopback, for partitions: every connection to it is forwarded to a target
// port, both ways, until the test freezes the connections open at that moment. A frozen
// connection forwards nothing more and stays open, as a connection across a partition looks
// to both of its ends (no FIN, no RST); connections made afterwards forward again. Or the test
// holds what the clients send, on every connection, until it releases it: a client whose
// writes are late while it still hears the server. Or it holds what the server sends on the
// connections whose client sent a given text (a connection's name): one connection late; or
// from the moment a client sends a given text (a command), from its answer on. A connection
// held stays held, also when the test holds another one's replies next, until it is released.

#include <algorithm>
#include <array>
#include <atomic>
#include <future>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

namespace er::test {

class tcp_proxy {
public:
  /// `server_receive_buffer`: SO_RCVBUF of the proxy's sockets to the server (0: the
  /// system's), small to make the server's writes block soon while replies are held.
  explicit tcp_proxy(unsigned short target_port, int server_receive_buffer = 0)
    : server_receive_buffer_(server_receive_buffer),
      target_{boost::asio::ip::make_address("127.0.0.1"), target_port},
      acceptor_{io_, {boost::asio::ip::make_address("127.0.0.1"), 0}} {
    accept();
    thread_ = std::thread{[this] { io_.run(); }};
  }
  ~tcp_proxy() {
    io_.stop();
    thread_.join();
  }
  tcp_proxy(const tcp_proxy&) = delete;
  tcp_proxy& operator=(const tcp_proxy&) = delete;

  unsigned short port() const {
    return acceptor_.local_endpoint().port();
  }
  /// "127.0.0.1:<port>", for cluster.redis.
  std::string address() const {
    return "127.0.0.1:" + std::to_string(port());
  }
  /// Connections accepted so far.
  int accepted() const {
    return accepted_;
  }
  /// The connections open now forward nothing from here on and are never closed.
  void freeze_open_connections() {
    on_io([this] {
      for (auto& p : pipes_)
        p->frozen = true;
    });
  }

  /// What the clients send from here on waits in the proxy, in order, until release_sends();
  /// the server's side still flows.
  void hold_sends() {
    on_io([this] { holding_ = true; });
  }
  void release_sends() {
    on_io([this] {
      holding_ = false;
      for (auto& p : pipes_)
        if (auto n = std::exchange(p->held, 0))
          forward(p, true, n);
    });
  }
  /// What the server sends from here on, on connections whose client has sent `marker` (in
  /// its first 4 KiB), waits in the proxy until release_replies().
  void hold_replies_to(std::string marker) {
    on_io([this, marker = std::move(marker)] { replies_marker_ = marker; });
  }
  /// From here on, a connection whose client sends `text` (within one read of what it sends:
  /// one command) has all the server sends it from then on held, until release_replies(): the
  /// answer to that command and to those after it wait, earlier answers do not.
  void hold_replies_after(std::string text) {
    on_io([this, text = std::move(text)] { replies_after_ = text; });
  }
  /// Bytes held for the clients (hold_replies_to, hold_replies_after) now.
  std::size_t replies_held() {
    std::size_t n = 0;
    on_io([&] {
      for (auto& p : pipes_)
        n += p->held_down;
    });
    return n;
  }
  void release_replies() {
    on_io([this] {
      replies_marker_.reset();
      replies_after_.reset();
      for (auto& p : pipes_) {
        p->holding_down = false;
        if (auto n = std::exchange(p->held_down, 0))
          forward(p, false, n);
      }
    });
  }
  /// Lets through what waits on the connections whose client sent `marker`, and what the
  /// server sends them from here on (until one sends hold_replies_after's text); other
  /// connections held stay held.
  void release_replies_to(std::string marker) {
    on_io([this, marker = std::move(marker)] {
      if (replies_marker_ == marker)
        replies_marker_.reset();
      for (auto& p : pipes_)
        if (p->sent.find(marker) != std::string::npos) {
          p->holding_down = false;
          if (auto n = std::exchange(p->held_down, 0))
            forward(p, false, n);
        }
    });
  }

private:
  using tcp = boost::asio::ip::tcp;

  template <class F>
  void on_io(F f) {
    std::promise<void> done;
    boost::asio::post(io_, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  struct pipe {
    explicit pipe(boost::asio::io_context& io) : client{io}, server{io} {
    }
    tcp::socket client;
    tcp::socket server;
    std::array<char, 16384> up{};   ///< client -> server
    std::array<char, 16384> down{}; ///< server -> client
    bool frozen = false;
    std::size_t held = 0;      ///< bytes in `up` held back (hold_sends)
    std::size_t held_down = 0; ///< bytes in `down` held back (hold_replies_to, _after)
    bool holding_down = false; ///< the client sent hold_replies_after's text
    std::string sent;          ///< the client's first bytes, for hold_replies_to
  };

  void accept() {
    auto p = std::make_shared<pipe>(io_);
    acceptor_.async_accept(p->client, [this, p](boost::system::error_code ec) {
      if (ec)
        return;
      ++accepted_;
      boost::system::error_code connect_error;
      p->server.open(target_.protocol(), connect_error);
      if (server_receive_buffer_ > 0 && !connect_error) // before connect: it sets the window
        p->server.set_option(boost::asio::socket_base::receive_buffer_size{server_receive_buffer_},
                             connect_error);
      if (!connect_error)
        p->server.connect(target_, connect_error);
      if (!connect_error) {
        pipes_.push_back(p);
        pump(p, true);
        pump(p, false);
      }
      accept();
    });
  }

  /// Forwards what one side reads (`upward`: the client) to the other, until either closes or
  /// the pipe is frozen (what was read then is dropped, as a partition drops it). While sends
  /// are held, what the client sent waits in the buffer and the client is not read further.
  void pump(std::shared_ptr<pipe> p, bool upward) {
    auto& from = upward ? p->client : p->server;
    auto& buffer = upward ? p->up : p->down;
    from.async_read_some(boost::asio::buffer(buffer), [this, p, upward](boost::system::error_code ec,
                                                                        std::size_t n) {
      if (p->frozen)
        return;
      if (ec) {
        boost::system::error_code ignored;
        (upward ? p->server : p->client).shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      if (upward && p->sent.size() < 4096)
        p->sent.append(p->up.data(), std::min(n, 4096 - p->sent.size()));
      if (upward && replies_after_
          && std::string_view{p->up.data(), n}.find(*replies_after_) != std::string_view::npos)
        p->holding_down = true; // before the command goes on, so its answer is held
      if (upward && holding_) {
        p->held = n;
        return;
      }
      if (!upward
          && (p->holding_down
              || (replies_marker_ && p->sent.find(*replies_marker_) != std::string::npos))) {
        p->held_down = n;
        return;
      }
      forward(p, upward, n);
    });
  }

  void forward(std::shared_ptr<pipe> p, bool upward, std::size_t n) {
    auto& to = upward ? p->server : p->client;
    auto& buffer = upward ? p->up : p->down;
    boost::asio::async_write(to, boost::asio::buffer(buffer.data(), n),
                             [this, p, upward](boost::system::error_code ec, std::size_t) {
                               if (!ec && !p->frozen)
                                 pump(p, upward);
                             });
  }

  int server_receive_buffer_;
  boost::asio::io_context io_;
  tcp::endpoint target_;
  tcp::acceptor acceptor_;
  std::list<std::shared_ptr<pipe>> pipes_; ///< every connection, kept open to the end
  bool holding_ = false;                   ///< hold_sends() (on the io thread)
  std::optional<std::string> replies_marker_; ///< hold_replies_to() (on the io thread)
  std::optional<std::string> replies_after_;  ///< hold_replies_after() (on the io thread)
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

} // namespace er::test
