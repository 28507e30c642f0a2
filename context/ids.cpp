#include "context/ids.hpp"

#include <array>
#include <stdexcept>

#include <openssl/rand.h>

namespace er::context {

std::string random_id(std::string_view prefix) {
  std::array<unsigned char, 16> bytes;
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw std::runtime_error("the OS random generator failed");
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
