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
/// With a `source_dir` (router.console-dir, for working on the console) any .html, .css or .js
/// file of its console/ or js/ folder is read from there on every request, files added since
/// the build included; a name that is not a plain file name is never looked up. Otherwise the
/// compiled-in copy.
std::optional<net::http_reply> console_reply(std::string_view path,
                                             const std::string& source_dir = {});

} // namespace er::app
