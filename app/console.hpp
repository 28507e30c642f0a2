#pragma once
// The browser console (clients/console/, with clients/js/router-client.js), served from the
// router's own binary at GET /: the files are compiled in (cmake/embed_assets.cmake), so a
// running router needs nothing on disk to serve them.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net/listener.hpp"

namespace er::app {

struct console_asset {
  std::string_view path;         ///< as requested, e.g. "/" or "/console.js"
  std::string_view content_type;
  std::string_view bytes;
};

/// Every file of the console (generated source).
const std::vector<console_asset>& console_assets();

/// The answer for GET `path` when it names a console file: the file, with a
/// Content-Security-Policy that allows only the router's own scripts, styles and sockets.
/// With a `source_dir` (router.console-dir, for working on the console) the files are read
/// from there on every request, named as in the source tree; otherwise the compiled-in copy.
std::optional<net::http_reply> console_reply(std::string_view path,
                                             const std::string& source_dir = {});

} // namespace er::app
