// The recycled memory of asynchronous operations (net/handler_memory.hpp).

#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <type_traits>
#include <thread>
#include <vector>

#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/handler_memory.hpp"

TEST_CASE("a freed block is handed out again for a request of the same size class") {
  auto* a = er::net::recycled_allocate(1100); // a Beast write operation's size
  std::memset(a, 0xab, 1100);
  er::net::recycled_deallocate(a, 1100);
  auto* b = er::net::recycled_allocate(1090); // same 16-byte class
  CHECK(b == a);
  auto* c = er::net::recycled_allocate(1100); // the cache is empty again: a new block
  CHECK(c != a);
  er::net::recycled_deallocate(b, 1090);
  er::net::recycled_deallocate(c, 1100);
}

TEST_CASE("blocks of every recycled size class are usable to their full size") {
  std::vector<std::pair<void*, std::size_t>> blocks;
  for (std::size_t size = 1; size <= 5000; size += 37) {
    auto* p = er::net::recycled_allocate(size);
    std::memset(p, 0x5a, size); // ASan would catch a block smaller than asked for
    blocks.emplace_back(p, size);
  }
  std::set<void*> distinct;
  for (auto& [p, size] : blocks)
    distinct.insert(p);
  CHECK(distinct.size() == blocks.size());
  for (auto& [p, size] : blocks)
    er::net::recycled_deallocate(p, size);
}

TEST_CASE("a block freed on another thread is kept by that thread, not lost") {
  auto* a = er::net::recycled_allocate(300);
  void* reused = nullptr;
  std::thread other{[&] {
    er::net::recycled_deallocate(a, 300);
    reused = er::net::recycled_allocate(300); // the other thread's cache hands it out
    er::net::recycled_deallocate(reused, 300);
  }};
  other.join();
  CHECK(reused == a);
}

TEST_CASE("asio operations wrapped by recycled() use the recycling allocator and complete") {
  using handler = er::net::recycled_handler<std::function<void(boost::system::error_code)>>;
  static_assert(std::is_same_v<boost::asio::associated_allocator_t<handler>,
                               er::net::recycling_allocator<void>>);
  boost::asio::io_context io;
  int fired = 0;
  std::vector<std::unique_ptr<boost::asio::steady_timer>> timers;
  for (int i = 0; i < 100; ++i) {
    timers.push_back(std::make_unique<boost::asio::steady_timer>(io));
    timers.back()->expires_after(std::chrono::milliseconds{1});
    timers.back()->async_wait(er::net::recycled([&](boost::system::error_code ec) {
      if (!ec)
        ++fired;
    }));
  }
  io.run();
  CHECK(fired == 100);
}
