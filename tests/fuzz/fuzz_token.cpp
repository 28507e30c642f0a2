// libFuzzer target: token extraction from the three carriers and JWT verification. The
// first byte picks the carrier; the rest is the header value or the request target. It must
// never crash or throw, and must never accept a token it did not sign.

#include <cstdint>
#include <cstdlib>
#include <string>

#include "context/jwt_auth.hpp"
#include "context/token_source.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  std::string rest{reinterpret_cast<const char*>(data) + 1, size - 1};
  er::context::token_request request;
  switch (data[0] % 3) {
    case 0: request.subprotocols = rest; break;
    case 1: request.authorization = rest; break;
    default: request.target = rest; break;
  }
  auto extracted = er::context::extract_token(request);
  static const er::context::jwt_verifier verifier{
    {"fuzzing-secret-never-in-the-corpus", "", "", std::chrono::seconds{30}}};
  auto verdict = verifier.verify(extracted.token);
  if (std::holds_alternative<er::context::verified_token>(verdict))
    std::abort(); // the fuzzer cannot know the secret: an accepted token is a forgery
  (void)er::context::query_parameter(rest, "token");
  return 0;
}
