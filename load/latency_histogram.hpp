#pragma once
// router-load's latency percentiles: microsecond samples in log-linear buckets.

#include <cstdint>
#include <vector>

namespace er::load {

/// Log-linear buckets (64 per power of two, under 1.6 % error), grown on demand.
class latency_histogram {
public:
  void record(std::uint64_t micros);
  void merge(const latency_histogram& other);
  void clear();
  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }
  double mean() const;
  /// The value at quantile `q` in [0, 1] (the bucket's upper bound, at most max()); 0 if empty.
  std::uint64_t percentile(double q) const;

private:
  std::vector<std::uint64_t> buckets_;
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
  double sum_ = 0;
};

} // namespace er::load
