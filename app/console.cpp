#include "app/console.hpp"

#include <fstream>
#include <iterator>
#include <string>

namespace er::app {

namespace {

// No inline script or style, nothing from elsewhere; WebSocket connections to this origin
// only (ws: and wss: are named because CSP 'self' does not cover them in every browser).
constexpr std::string_view content_security_policy =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
  "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The file of `asset` in the source tree under `dir`: clients/console/<name>, else
/// clients/js/<name>.
std::string read_source(const console_asset& asset, const std::string& dir) {
  auto name = asset.path == "/" ? std::string{"index.html"} : std::string{asset.path.substr(1)};
  std::ifstream in{dir + "/console/" + name, std::ios::binary};
  if (!in)
    in.open(dir + "/js/" + name, std::ios::binary);
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

} // namespace

std::optional<net::http_reply> console_reply(std::string_view path, const std::string& source_dir) {
  for (const auto& asset : console_assets()) {
    if (asset.path != path)
      continue;
    net::http_reply r;
    r.status = 200;
    r.body = source_dir.empty() ? std::string{asset.bytes} : read_source(asset, source_dir);
    r.content_type = std::string{asset.content_type} + "; charset=utf-8";
    r.headers = {{"Content-Security-Policy", std::string{content_security_policy}},
                 {"X-Content-Type-Options", "nosniff"},
                 {"Referrer-Policy", "no-referrer"},
                 {"Cache-Control", "no-cache"}};
    return r;
  }
  return std::nullopt;
}

} // namespace er::app
