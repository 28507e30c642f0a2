// libFuzzer target: the inbound message parser and validator. Whatever the bytes, it must
// answer with a message or a documented error code, never crash, hang or throw, agree with
// the full-document reading (tests/inbound_reference.hpp), and an error must render into a
// valid envelope.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocol/envelope.hpp"
#include "protocol/error_codes.hpp"
#include "tests/inbound_reference.hpp"

namespace {

bool documented(std::string_view code) {
  using namespace er::error_code;
  return code == invalid_json || code == invalid_message;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  auto parsed = er::protocol::parse_inbound(text);
  if (!er::testing::same_parse(parsed, er::testing::reference_parse_inbound(text)))
    std::abort();
  if (auto* msg = std::get_if<er::protocol::inbound_message>(&parsed)) {
    if (!msg->payload.is_object())
      std::abort();
    return 0;
  }
  auto& error = std::get<er::protocol::protocol_error>(parsed);
  if (!documented(error.code))
    std::abort();
  auto frame = er::protocol::render_event(er::protocol::make_error(error), 1, "fuzz-user",
                                        std::chrono::system_clock::now());
  if (nlohmann::json::parse(frame, nullptr, false).is_discarded())
    std::abort();
  return 0;
}
