#pragma once
// A connection's rate limit (router.messages-per-second / router.messages-burst).

#include <algorithm>
#include <chrono>

namespace er::actors {

class token_bucket {
public:
  using clock = std::chrono::steady_clock;

  /// Starts full: `burst` messages may come at once.
  explicit token_bucket(double burst) : tokens_(burst) {
  }

  /// Refills at `per_second` up to `burst` since the last call, then takes one token.
  /// False: no token left, the message is refused.
  bool take(double per_second, double burst, clock::time_point now = clock::now()) {
    tokens_ = std::min(burst,
                       tokens_ + std::chrono::duration<double>(now - refilled_).count() * per_second);
    refilled_ = now;
    if (tokens_ < 1.0)
      return false;
    tokens_ -= 1.0;
    return true;
  }

private:
  double tokens_;
  clock::time_point refilled_ = clock::now();
};

} // namespace er::actors
