#pragma once
// JSON texts that come from outside the router (client messages, publish bodies, agents'
// events) are parsed with a limit on their nesting. nlohmann parses iteratively, but it
// copies, compares and serializes documents recursively, one stack frame per level: a text of
// a few hundred kilobytes nested all the way down would overflow an io thread's stack when
// the event is rendered. Past the limit a text is refused, as if it were not JSON.

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace er::protocol {

/// The most levels of objects and arrays a JSON text from outside may nest; the outermost
/// value counts as one (`{}` is 1 deep, `{"a":[]}` is 2). Deeper texts are refused.
inline constexpr std::size_t max_json_depth = 128;

struct parsed_json {
  nlohmann::json doc; ///< discarded when the text was refused
  bool too_deep = false; ///< refused for its nesting, not for its syntax

  bool ok() const noexcept {
    return !doc.is_discarded();
  }
};

/// The document of `text`; refused (discarded) when `text` is not one JSON value or when it
/// nests deeper than `max_json_depth` (parsing stops there).
parsed_json parse_json(std::string_view text);

/// Why a text past the limit is refused, for `what` ("the message", "the body"): "<what> nests
/// deeper than 128 levels".
std::string too_deep_reason(std::string_view what);

} // namespace er::protocol
