#include "load/latency_histogram.hpp"

#include <algorithm>
#include <cmath>

namespace er::load {

namespace {

constexpr int sub_bits = 7; // values below 128 are exact; above, 64 buckets per octave
constexpr std::uint64_t linear = std::uint64_t{1} << sub_bits;
constexpr std::uint64_t half = linear / 2;

std::size_t bucket_of(std::uint64_t v) {
  if (v < linear)
    return static_cast<std::size_t>(v);
  int msb = 63 - __builtin_clzll(v);
  int shift = msb - (sub_bits - 1);
  auto top = v >> shift; // in [half, linear)
  return static_cast<std::size_t>(linear + static_cast<std::uint64_t>(msb - sub_bits) * half
                                  + (top - half));
}

std::uint64_t upper_bound_of(std::size_t bucket) {
  if (bucket < linear)
    return bucket;
  auto rest = bucket - linear;
  auto octave = rest / half;
  auto top = half + rest % half;
  auto shift = octave + 1;
  return ((top + 1) << shift) - 1;
}

} // namespace

void latency_histogram::record(std::uint64_t micros) {
  auto b = bucket_of(micros);
  if (b >= buckets_.size())
    buckets_.resize(b + 1);
  ++buckets_[b];
  ++count_;
  max_ = std::max(max_, micros);
  sum_ += static_cast<double>(micros);
}

void latency_histogram::merge(const latency_histogram& other) {
  if (other.buckets_.size() > buckets_.size())
    buckets_.resize(other.buckets_.size());
  for (std::size_t i = 0; i < other.buckets_.size(); ++i)
    buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void latency_histogram::clear() {
  buckets_.clear();
  count_ = 0;
  max_ = 0;
  sum_ = 0;
}

double latency_histogram::mean() const {
  return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_);
}

std::uint64_t latency_histogram::percentile(double q) const {
  if (count_ == 0)
    return 0;
  auto rank = static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * count_));
  rank = std::max<std::uint64_t>(rank, 1);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank)
      return std::min(upper_bound_of(i), max_);
  }
  return max_;
}

} // namespace er::load
