#include "net/deadline_clock.hpp"

#include <vector>

namespace er::net {

deadline_clock::deadline_clock(boost::asio::execution_context& context)
  : boost::asio::execution_context::service(context),
    io_(static_cast<boost::asio::io_context&>(context)),
    timer_(io_) {
}

deadline_clock::~deadline_clock() {
  std::lock_guard<std::mutex> guard{mutex_};
  entries_.clear(); // unlinks whatever was left; entries outliving the clock are not told
}

deadline_clock& deadline_clock::of(boost::asio::io_context& io) {
  return boost::asio::use_service<deadline_clock>(
    static_cast<boost::asio::execution_context&>(io));
}

std::uint64_t deadline_clock::schedule(entry& e, time_point at) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (e.is_linked())
    entries_.erase(entries_.iterator_to(e));
  e.at_ = at;
  entries_.insert(e);
  if (at < armed_for_)
    arm_locked();
  return ++e.generation_;
}

void deadline_clock::cancel(entry& e) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (e.is_linked())
    entries_.erase(entries_.iterator_to(e));
  ++e.generation_;
  // The timer may stay armed for a deadline that is gone: it then wakes once for nothing.
}

std::size_t deadline_clock::size() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return entries_.size();
}

void deadline_clock::shutdown() {
  std::lock_guard<std::mutex> guard{mutex_};
  stopped_ = true;
  ++arming_;
  timer_.cancel();
}

void deadline_clock::arm_locked() {
  if (stopped_ || entries_.empty()) {
    armed_for_ = time_point::max();
    return;
  }
  armed_for_ = entries_.begin()->at_;
  auto armed = ++arming_;
  timer_.expires_at(armed_for_); // cancels the wait for a later deadline
  timer_.async_wait([this, armed](const boost::system::error_code&) { on_timer(armed); });
}

void deadline_clock::on_timer(std::uint64_t armed) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (armed != arming_)
    return; // replaced by a wait for an earlier deadline, or the clock stopped
  armed_for_ = time_point::max();
  auto now = clock_type::now();
  while (!entries_.empty() && entries_.begin()->at_ <= now) {
    auto& e = *entries_.begin();
    entries_.erase(entries_.begin());
    e.on_deadline(e.generation_);
  }
  arm_locked();
}

} // namespace er::net
