// burst_stream (net/burst_stream.hpp): gathered writes leave with one socket write, in order,
// writes during a flush follow it, and Beast's WebSocket stream works on top of it (frames,
// close handshake, teardown). Real TCP connections over loopback; the socket under the layer
// counts the writes that reach it.

#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <thread>
#include <chrono>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include "net/burst_stream.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

/// A TCP socket that counts the writes started on it.
struct counting_socket {
  using executor_type = tcp::socket::executor_type;

  counting_socket(asio::io_context& io, std::size_t& n) : socket(io), writes(&n) {
  }

  executor_type get_executor() {
    return socket.get_executor();
  }
  template <class Buffers, class Handler>
  void async_read_some(const Buffers& b, Handler&& h) {
    socket.async_read_some(b, std::forward<Handler>(h));
  }
  template <class Buffers, class Handler>
  void async_write_some(const Buffers& b, Handler&& h) {
    ++*writes;
    socket.async_write_some(b, std::forward<Handler>(h));
  }

  void shutdown(asio::socket_base::shutdown_type what, error_code& ec) {
    socket.shutdown(what, ec);
  }
  void close(error_code& ec) {
    socket.close(ec);
  }

  tcp::socket socket;
  std::size_t* writes;
};

void beast_close_socket(counting_socket& s) { // Beast's timeouts close the lowest layer
  error_code ignored;
  s.socket.close(ignored);
}

template <class Handler>
void async_teardown(boost::beast::role_type role, counting_socket& s, Handler&& h) {
  websocket::async_teardown(role, s.socket, std::forward<Handler>(h));
}

/// A loopback connection: `client` connected to the server socket of `stream`.
struct connected_pair {
  asio::io_context io;
  std::size_t writes = 0; ///< socket writes of the server side
  er::net::burst_stream<counting_socket> stream{io, writes};
  tcp::socket client{io};

  connected_pair() {
    tcp::acceptor acceptor{io, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    client.connect(acceptor.local_endpoint());
    acceptor.accept(stream.next_layer().socket);
  }
};

/// A WebSocket connection over loopback after its handshake: `server` runs on burst_stream.
struct websocket_pair {
  asio::io_context io;
  std::size_t writes = 0; ///< socket writes of the server side
  websocket::stream<er::net::burst_stream<counting_socket>, false> server{io, writes};
  websocket::stream<tcp::socket> client{io};

  websocket_pair() {
    tcp::acceptor acceptor{io, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    acceptor.async_accept(server.next_layer().next_layer().socket, [&](error_code ec) {
      REQUIRE_FALSE(ec);
      server.async_accept([](error_code e) { REQUIRE_FALSE(e); });
    });
    client.next_layer().async_connect(acceptor.local_endpoint(), [&](error_code ec) {
      REQUIRE_FALSE(ec);
      client.async_handshake("127.0.0.1", "/", [](error_code e) { REQUIRE_FALSE(e); });
    });
    io.run();
    io.restart();
  }
};

std::string read_exactly(tcp::socket& s, std::size_t n) {
  std::string out(n, '\0');
  asio::read(s, asio::buffer(out));
  return out;
}

} // namespace

TEST_CASE("burst_stream: without gather() each write goes to the socket, gathered writes "
          "complete at once and leave with one socket write, in order") {
  connected_pair pair;
  auto& stream = pair.stream;
  auto& writes = pair.writes;

  std::vector<std::string> completed;
  auto write = [&](std::string text) {
    auto data = std::make_shared<std::string>(std::move(text));
    stream.async_write_some(asio::buffer(*data), [&, data](error_code ec, std::size_t n) {
      REQUIRE_FALSE(ec);
      CHECK(n == data->size());
      completed.push_back(*data);
    });
  };

  write("one;");
  pair.io.run();
  pair.io.restart();
  CHECK(writes == 1);
  CHECK(read_exactly(pair.client, 4) == "one;");

  stream.gather();
  CHECK(stream.gathering());
  write("two;");
  write("three;");
  write("four;");
  pair.io.run(); // the gathered writes complete without touching the socket
  pair.io.restart();
  CHECK(writes == 1);
  CHECK(completed == std::vector<std::string>{"one;", "two;", "three;", "four;"});

  bool flushed = false;
  stream.async_flush([&](error_code ec) {
    CHECK_FALSE(ec);
    flushed = true;
  });
  CHECK_FALSE(flushed); // never inside the initiating call
  pair.io.run();
  pair.io.restart();
  CHECK(flushed);
  CHECK(writes == 2);
  CHECK_FALSE(stream.gathering()); // the burst's buffers are released
  CHECK(read_exactly(pair.client, 15) == "two;three;four;");

  write("five;"); // passes through again
  pair.io.run();
  CHECK(writes == 3);
  CHECK(read_exactly(pair.client, 5) == "five;");
}

TEST_CASE("burst_stream: a write that arrives while a flush is in flight is gathered and sent "
          "after it, before the flush completes") {
  connected_pair pair;
  auto& stream = pair.stream;
  auto& writes = pair.writes;
  std::string first = "first;", late = "late;";

  stream.gather();
  stream.async_write_some(asio::buffer(first), [](error_code, std::size_t) {});
  pair.io.run();
  pair.io.restart();
  bool flushed = false;
  stream.async_flush([&](error_code ec) {
    CHECK_FALSE(ec);
    flushed = true;
  });
  // Like a pong Beast answers by itself while the session's burst is being sent.
  bool late_done = false;
  stream.async_write_some(asio::buffer(late), [&](error_code ec, std::size_t) {
    CHECK_FALSE(ec);
    late_done = true;
  });
  pair.io.run();
  CHECK(flushed);
  CHECK(late_done);
  CHECK(writes == 2); // the burst, then what came during it
  CHECK(read_exactly(pair.client, 11) == "first;late;");
}

TEST_CASE("burst_stream: a write gathered during a flush that the peer does not take completes "
          "only once the flush has sent it") {
  connected_pair pair;
  auto& stream = pair.stream;
  // Small socket buffers: the burst below cannot leave until the client reads.
  stream.next_layer().socket.set_option(asio::socket_base::send_buffer_size(16384));
  pair.client.set_option(asio::socket_base::receive_buffer_size(16384));
  const std::string big(4 << 20, 'b');
  std::string late = "late;";
  error_code ec;
  stream.write_some(asio::buffer(big), ec);
  REQUIRE_FALSE(ec);
  bool flushed = false;
  stream.async_flush([&](error_code e) {
    CHECK_FALSE(e);
    flushed = true;
  });
  bool late_done = false;
  std::size_t late_bytes = 0;
  // Like the pong Beast answers a ping with, while the session's burst is stuck.
  stream.async_write_some(asio::buffer(late), [&](error_code e, std::size_t n) {
    CHECK_FALSE(e);
    CHECK(flushed); // after the flush that carried it
    late_done = true;
    late_bytes = n;
  });
  pair.io.run_for(300ms);
  CHECK_FALSE(flushed); // the client reads nothing: the flush cannot end...
  CHECK_FALSE(late_done); // ...nor may the write it carries
  std::string received;
  std::thread reader([&] { received = read_exactly(pair.client, big.size() + late.size()); });
  pair.io.restart();
  pair.io.run();
  reader.join();
  CHECK(flushed);
  CHECK(late_done);
  CHECK(late_bytes == late.size());
  CHECK(received.compare(0, big.size(), big) == 0);
  CHECK(received.compare(big.size(), late.size(), late) == 0);
}

TEST_CASE("burst_stream under Beast's WebSocket stream: while a flush the peer does not take is "
          "stuck, the pong Beast answers a ping with waits for it, and no further ping is read") {
  websocket_pair pair;
  auto& server = pair.server;
  auto& client = pair.client;
  for (auto* socket : {&server.next_layer().next_layer().socket, &client.next_layer()}) {
    socket->set_option(asio::socket_base::send_buffer_size(16384));
    socket->set_option(asio::socket_base::receive_buffer_size(16384));
  }
  // A message larger than the socket buffers, flushed while the client reads nothing.
  const std::string big(4 << 20, 'm');
  server.text(true);
  error_code ec;
  server.write(asio::buffer(big), ec);
  REQUIRE_FALSE(ec);
  bool flushed = false;
  server.next_layer().async_flush([&](error_code e) { flushed = !e; });
  // The server reads (Beast answers pings inside its read); the client sends pings of the
  // largest size as fast as its socket takes them, and reads nothing.
  boost::beast::flat_buffer server_buffer;
  server.async_read(server_buffer, [](error_code, std::size_t) {});
  std::size_t pings = 0;
  const websocket::ping_data payload(125, 'p');
  std::function<void()> ping = [&] {
    client.async_ping(payload, [&](error_code e) {
      if (!e) {
        ++pings;
        ping();
      }
    });
  };
  ping();
  pair.io.run_for(500ms);
  CHECK_FALSE(flushed);
  // Pings stop at what the sockets' buffers hold (a few hundred); were each pong gathered and
  // completed at once, the server would read them without end, its burst growing with them.
  CHECK(pings < 5000);
  // Once the client reads, the message arrives whole, the flush ends, and pings flow again.
  boost::beast::flat_buffer client_buffer;
  bool got_message = false;
  client.async_read(client_buffer, [&](error_code e, std::size_t) { got_message = !e; });
  auto stuck_at = pings;
  // Until all three have happened: under ThreadSanitizer on a busy host 2 s were not enough.
  for (auto until = std::chrono::steady_clock::now() + 30s;
       !(got_message && flushed && pings > stuck_at) && std::chrono::steady_clock::now() < until;) {
    pair.io.restart();
    pair.io.run_for(50ms);
  }
  CHECK(got_message);
  CHECK(boost::beast::buffers_to_string(client_buffer.data()) == big);
  CHECK(flushed);
  CHECK(pings > stuck_at);
}

TEST_CASE("burst_stream: a flush to a connection that is gone reports the error") {
  connected_pair pair;
  auto& stream = pair.stream;
  stream.next_layer().socket.close();
  std::string data = "lost";
  stream.gather();
  stream.async_write_some(asio::buffer(data), [](error_code, std::size_t) {});
  error_code result;
  bool called = false;
  stream.async_flush([&](error_code ec) {
    result = ec;
    called = true;
  });
  pair.io.run();
  CHECK(called);
  CHECK(result);
  CHECK_FALSE(stream.gathering());
}

TEST_CASE("burst_stream under Beast's WebSocket stream: a gathered burst of messages is one "
          "socket write, each message arrives whole and in order, and the close handshake "
          "tears the connection down through the layer") {
  websocket_pair pair;
  auto& io = pair.io;
  auto& writes = pair.writes;
  auto& server = pair.server;
  auto& client = pair.client;
  auto after_handshake = writes;

  const std::vector<std::string> messages{"alpha", std::string(3000, 'b'), "gamma", "delta"};
  std::size_t next = 0;
  std::function<void()> write_next = [&] {
    if (next == messages.size()) {
      server.next_layer().async_flush([](error_code ec) { CHECK_FALSE(ec); });
      return;
    }
    server.async_write(asio::buffer(messages[next]), [&](error_code ec, std::size_t) {
      REQUIRE_FALSE(ec);
      ++next;
      write_next();
    });
  };
  server.next_layer().gather();
  write_next();
  io.run();
  io.restart();
  CHECK(writes - after_handshake == 1);

  for (auto& expected : messages) {
    boost::beast::flat_buffer buffer;
    client.read(buffer); // the bytes are there already: no server work is needed
    CHECK(boost::beast::buffers_to_string(buffer.data()) == expected);
  }

  // The client closes; the server's pending read sees the close, answers it and tears down.
  error_code server_read;
  boost::beast::flat_buffer sink;
  server.async_read(sink, [&](error_code ec, std::size_t) { server_read = ec; });
  client.async_close(websocket::close_code::normal, [](error_code ec) { CHECK_FALSE(ec); });
  io.run();
  CHECK(server_read == websocket::error::closed);
  CHECK_FALSE(server.next_layer().next_layer().socket.is_open());
}

TEST_CASE("burst_stream: synchronous writes gather without touching the socket, and a flush "
          "started while a write passed straight to the socket waits for it") {
  connected_pair pair;
  auto& stream = pair.stream;
  auto& writes = pair.writes;
  std::vector<std::string> done;

  // Like a ping Beast sends by itself while no burst is open: straight to the socket.
  std::string control = "ping;";
  stream.async_write_some(asio::buffer(control), [&](error_code ec, std::size_t) {
    CHECK_FALSE(ec);
    done.push_back("control");
  });
  CHECK(writes == 1);

  std::string a = "a;", b = "bb;";
  error_code ec;
  CHECK(stream.write_some(asio::buffer(a), ec) == a.size());
  CHECK_FALSE(ec);
  CHECK(stream.write_some(asio::buffer(b)) == b.size());
  CHECK(stream.gathering());
  CHECK(writes == 1); // synchronous writes never reach the socket

  stream.async_flush([&](error_code e) {
    CHECK_FALSE(e);
    done.push_back("flush");
  });
  CHECK(writes == 1); // the control frame's write has not completed: the flush waits for it
  pair.io.run();
  CHECK(writes == 2);
  CHECK(done == std::vector<std::string>{"control", "flush"});
  CHECK_FALSE(stream.gathering());
  CHECK(read_exactly(pair.client, 10) == "ping;a;bb;");
}

TEST_CASE("burst_stream under Beast's synchronous write: queued messages are framed into one "
          "socket write and arrive whole and in order") {
  websocket_pair pair;
  auto& io = pair.io;
  auto& writes = pair.writes;
  auto& server = pair.server;
  auto& client = pair.client;
  auto after_handshake = writes;

  const std::vector<std::string> messages{"one", std::string(3000, 'x'), "three"};
  server.text(true);
  for (auto& m : messages) {
    error_code ec;
    server.write(asio::buffer(m), ec); // appends; never blocks
    REQUIRE_FALSE(ec);
  }
  CHECK(writes == after_handshake);
  bool flushed = false;
  server.next_layer().async_flush([&](error_code ec) {
    CHECK_FALSE(ec);
    flushed = true;
  });
  io.run();
  CHECK(flushed);
  CHECK(writes - after_handshake == 1);
  for (auto& expected : messages) {
    boost::beast::flat_buffer buffer;
    client.read(buffer); // the bytes are there already
    CHECK(boost::beast::buffers_to_string(buffer.data()) == expected);
  }
}

TEST_CASE("burst_stream: a burst's recycled buffers carry nothing into the next connection's "
          "burst") {
  // Bursts are recycled per thread; a recycled one must start empty, whoever used it before,
  // even one given back by a failed flush with bytes still gathered.
  connected_pair first;
  connected_pair second;
  first.stream.next_layer().socket.close();
  std::string lost = "for the first connection only;";
  first.stream.write_some(asio::buffer(lost));
  error_code failed;
  first.stream.async_flush([&](error_code ec) { failed = ec; });
  first.stream.write_some(asio::buffer(lost)); // gathered while that flush is in flight
  first.io.run();
  CHECK(failed);
  CHECK_FALSE(first.stream.gathering());

  std::string small = "second;";
  second.stream.gather(64);
  second.stream.write_some(asio::buffer(small));
  second.stream.async_flush([](error_code ec) { CHECK_FALSE(ec); });
  second.io.run();
  CHECK(second.writes == 1);
  CHECK(read_exactly(second.client, small.size()) == small);
  second.client.non_blocking(true);
  char extra = 0;
  error_code ec;
  CHECK(second.client.read_some(asio::buffer(&extra, 1), ec) == 0); // nothing after it
  CHECK(ec == asio::error::would_block);
}
