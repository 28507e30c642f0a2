#include "context/ids.hpp"

#include <array>
#include <cstring>
#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/rand.h>

namespace er::context {

namespace {

/// 128 bits of the OS CSPRNG's output, handed out from a per-thread block: one RAND_bytes
/// call for 256 ids instead of one each (a demo run mints several). Handed-out bytes are
/// wiped from the block.
std::array<unsigned char, 16> random_bits() {
  struct block {
    std::array<unsigned char, 4096> bytes;
    std::size_t used = bytes.size();
  };
  thread_local block pool;
  if (pool.used == pool.bytes.size()) {
    if (RAND_bytes(pool.bytes.data(), static_cast<int>(pool.bytes.size())) != 1)
      throw std::runtime_error("the OS random generator failed");
    pool.used = 0;
  }
  std::array<unsigned char, 16> bits;
  std::memcpy(bits.data(), pool.bytes.data() + pool.used, bits.size());
  OPENSSL_cleanse(pool.bytes.data() + pool.used, bits.size());
  pool.used += bits.size();
  return bits;
}

} // namespace

std::string random_id(std::string_view prefix) {
  auto bytes = random_bits();
  static constexpr char hex[] = "0123456789abcdef";
  std::string id;
  id.reserve(prefix.size() + 2 * bytes.size());
  id.append(prefix);
  for (auto b : bytes) {
    id.push_back(hex[b >> 4]);
    id.push_back(hex[b & 0x0f]);
  }
  return id;
}

} // namespace er::context
