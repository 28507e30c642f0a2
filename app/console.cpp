#include "app/console.hpp"

#include <fstream>
#include <optional>
#include <iterator>
#include <string>

namespace er::app {

namespace {

// No inline script or style, nothing from elsewhere; WebSocket connections to this origin
// only (ws: and wss: are named because CSP 'self' does not cover them in every browser).
constexpr std::string_view content_security_policy =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
  "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The content type of a console file, by the same rule as the build's (CMakeLists.txt):
/// .html, .css, .js; anything else is not a console file.
std::optional<std::string_view> content_type_of(std::string_view name) {
  auto ends_with = [name](std::string_view suffix) {
    return name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  if (ends_with(".html"))
    return "text/html";
  if (ends_with(".css"))
    return "text/css";
  if (ends_with(".js"))
    return "text/javascript";
  return std::nullopt;
}

/// A plain file name: letters, digits, '-', '_' and '.', not starting with '.'; never a path.
bool plain_file_name(std::string_view name) {
  if (name.empty() || name.size() > 128 || name.front() == '.')
    return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok)
      return false;
  }
  return true;
}

/// The file `name` from the source tree under `dir`: clients/console/<name>, else
/// clients/js/<name>, as the build embeds them; nullopt when neither exists.
std::optional<std::string> read_source(std::string_view name, const std::string& dir) {
  for (const char* folder : {"/console/", "/js/"}) {
    std::ifstream in{dir + folder + std::string{name}, std::ios::binary};
    if (in)
      return std::string{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  }
  return std::nullopt;
}

net::http_reply asset_reply(std::string body, std::string_view content_type) {
  net::http_reply r;
  r.status = 200;
  r.body = std::move(body);
  r.content_type = std::string{content_type} + "; charset=utf-8";
  r.headers = {{"Content-Security-Policy", std::string{content_security_policy}},
               {"X-Content-Type-Options", "nosniff"},
               {"Referrer-Policy", "no-referrer"},
               {"Cache-Control", "no-cache"}};
  return r;
}

} // namespace

std::optional<net::http_reply> console_reply(std::string_view path, const std::string& source_dir) {
  if (!source_dir.empty()) {
    // Working on the console: any console or client file on disk, including files added
    // since the binary was built, read on every request.
    if (path.empty() || path.front() != '/') // a target such as "?x" has an empty path
      return std::nullopt;
    auto name = path == "/" ? std::string_view{"index.html"} : path.substr(1);
    if (!plain_file_name(name))
      return std::nullopt;
    auto type = content_type_of(name);
    if (!type)
      return std::nullopt;
    if (auto body = read_source(name, source_dir))
      return asset_reply(std::move(*body), *type);
    return std::nullopt;
  }
  for (const auto& asset : console_assets())
    if (asset.path == path)
      return asset_reply(std::string{asset.bytes}, asset.content_type);
  return std::nullopt;
}

} // namespace er::app
