// router-load's WebSocket client against a real Beast server over loopback: what it hands its
// sink, in which order and in which batches.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/websocket.hpp>
#include <doctest/doctest.h>

#include "load/async_ws_client.hpp"
#include "tests/eventually.hpp"

namespace {

namespace asio = boost::asio;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

/// Writes down every call, one line each; the lines of one on_texts call joined by '|'.
class recording_sink final : public er::load::client_sink {
public:
  void on_open(er::load::open_result r) override {
    add(r.upgraded ? "open" : "failed: " + r.error);
  }
  void on_texts(std::vector<std::string> frames) override {
    std::string line = "texts:";
    for (auto& f : frames)
      line += (line.size() > 6 ? "|" : "") + f;
    add(line);
  }
  void on_binary(std::size_t bytes) override {
    add("binary:" + std::to_string(bytes));
  }
  void on_closed(er::load::close_info info) override {
    add("closed:" + std::to_string(info.code) + (info.clean ? ":clean" : ":unclean"));
  }

  std::vector<std::string> lines() const {
    std::lock_guard<std::mutex> lock{mutex_};
    return lines_;
  }
  bool has(const std::string& line) const {
    auto all = lines();
    return std::find(all.begin(), all.end(), line) != all.end();
  }

private:
  void add(std::string line) {
    std::lock_guard<std::mutex> lock{mutex_};
    lines_.push_back(std::move(line));
  }
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

/// An unmasked frame, as a server sends it (payloads under 126 bytes).
std::string server_frame(std::uint8_t opcode, const std::string& payload) {
  std::string f;
  f += static_cast<char>(0x80 | opcode);
  f += static_cast<char>(payload.size());
  return f + payload;
}

} // namespace

TEST_CASE("router-load's client hands the text messages of one socket read to its sink in one "
          "batch, in order around binary frames and the close, and a lone message at once") {
  asio::io_context server_io;
  tcp::acceptor acceptor{server_io, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
  auto port = acceptor.local_endpoint().port();
  auto sink = std::make_shared<recording_sink>();
  std::string server_error;

  std::thread server{[&] {
    try {
      websocket::stream<tcp::socket> ws{acceptor.accept()};
      ws.accept();
      auto& socket = ws.next_layer();
      // Six frames in one write, so in one segment: three texts, a binary, two texts.
      asio::write(socket, asio::buffer(server_frame(1, "a") + server_frame(1, "b")
                                       + server_frame(1, "c") + server_frame(2, "xyz")
                                       + server_frame(1, "d") + server_frame(1, "e")));
      if (!er::test::eventually([&] { return sink->has("texts:d|e"); }, 5s))
        throw std::runtime_error("the first write's last texts never reached the sink");
      // One message alone: handed on without waiting for more bytes.
      asio::write(socket, asio::buffer(server_frame(1, "f")));
      if (!er::test::eventually([&] { return sink->has("texts:f"); }, 5s))
        throw std::runtime_error("a lone message was held back");
      asio::write(socket, asio::buffer(server_frame(1, "g") + server_frame(8, "\x03\xe8")));
      char reply[64];
      socket.read_some(asio::buffer(reply)); // the client's close frame
      boost::system::error_code ignored;
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
    } catch (const std::exception& e) {
      server_error = e.what();
    }
  }};

  asio::io_context client_io;
  er::load::async_client_options options;
  options.port = port;
  auto client = er::load::async_ws_client::open(client_io, options, sink);
  std::thread client_thread{[&] { client_io.run(); }};
  bool closed = er::test::eventually([&] { return sink->has("closed:1000:clean"); }, 10s);
  server.join();
  client_io.stop();
  client_thread.join();

  CHECK(server_error == "");
  CHECK(closed);
  CHECK(sink->lines() == std::vector<std::string>{"open", "texts:a|b|c", "binary:3", "texts:d|e",
                                                  "texts:f", "texts:g", "closed:1000:clean"});
}
