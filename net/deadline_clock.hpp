#pragma once
// deadline_clock: the deadlines of every session of one io_context (heartbeats, token expiry,
// close handshakes) in one ordered set with one asio timer, instead of a timer object and a
// pending wait operation in every session: an idle connection carries one intrusive set node.
//
// Thread safety: schedule() and cancel() may be called from any thread; a mutex guards the
// set (with one thread per io_context, as the router runs, it is never contended). Due
// entries are told on the clock's io_context, under the clock's lock and outside the entry's
// own handlers: on_deadline() must only hand the event over (post it to the entry's
// io_context) and must not call back into the clock.

#include <chrono>
#include <cstdint>
#include <mutex>

#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/set.hpp>

namespace er::net {

class deadline_clock : public boost::asio::execution_context::service {
public:
  using clock_type = std::chrono::steady_clock;
  using time_point = clock_type::time_point;

  /// What a session derives from to be scheduled.
  class entry
    : public boost::intrusive::set_base_hook<boost::intrusive::optimize_size<true>> {
  public:
    entry() = default;
    entry(const entry&) = delete;
    entry& operator=(const entry&) = delete;

  protected:
    ~entry() = default;
    /// The deadline passed; `generation` identifies the schedule() it belongs to (see
    /// generation()): a deadline replaced after it fired must be ignored by its receiver.
    virtual void on_deadline(std::uint64_t generation) = 0;
    /// Changes with every schedule() and cancel() of this entry.
    std::uint64_t generation() const noexcept {
      return generation_;
    }

  private:
    friend class deadline_clock;
    time_point at_{};
    std::uint64_t generation_ = 0;
  };

  using key_type = deadline_clock;
  static inline boost::asio::execution_context::id id;

  explicit deadline_clock(boost::asio::execution_context& context);
  ~deadline_clock() override;

  /// The clock of `io` (created on first use).
  static deadline_clock& of(boost::asio::io_context& io);

  /// Tells `e` at `at` (replacing its previous deadline) and returns the new generation.
  std::uint64_t schedule(entry& e, time_point at);
  /// Forgets `e`'s deadline; required before `e` is destroyed.
  void cancel(entry& e);

  /// Entries waiting (tests).
  std::size_t size() const;

private:
  struct by_deadline {
    bool operator()(const entry& a, const entry& b) const noexcept {
      return a.at_ < b.at_;
    }
  };
  using entry_set =
    boost::intrusive::multiset<entry, boost::intrusive::compare<by_deadline>,
                               boost::intrusive::constant_time_size<false>>;

  void shutdown() override;
  void arm_locked(); // the timer waits for the earliest deadline
  void on_timer(std::uint64_t armed);

  boost::asio::io_context& io_;
  mutable std::mutex mutex_;
  entry_set entries_;
  boost::asio::steady_timer timer_;
  time_point armed_for_ = time_point::max();
  std::uint64_t arming_ = 0; ///< which wait is current: replaced ones end without effect
  bool stopped_ = false;
};

} // namespace er::net
