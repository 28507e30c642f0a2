#pragma once
// The router.v1 wire format (DESIGN §4): validation of client messages and rendering of the
// server envelope. Pure functions, no actor state: the manager stamps event_id and user_id.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

namespace er::protocol {

/// A well-formed client message. `payload` is always an object (empty when absent).
struct inbound_message {
  std::string type;
  std::optional<std::string> id;
  std::optional<std::string> thread_id;
  nlohmann::json payload;
};

/// Why a client message was refused; `reply_to` echoes the request's id when one was readable.
struct protocol_error {
  std::string_view code; ///< one of er::error_code
  std::string message;
  std::optional<std::string> reply_to;
};

/// Checks the envelope (JSON object, string `type`, optional string `id`/`thread_id`, object
/// `payload`). The type itself is not checked here: the manager knows which ones it serves.
std::variant<inbound_message, protocol_error> parse_inbound(std::string_view text);

/// Immutable text shared by every event that carries it: passing it on copies no bytes.
using shared_text = std::shared_ptr<const std::string>;

/// What a manager's child asks it to send; the manager adds event_id, user_id and timestamp.
struct outbound_event {
  std::string type;
  bool published = false; ///< from the publish API: a backend's own type
  std::optional<std::string> thread_id;
  std::optional<std::string> run_id;
  std::optional<std::string> reply_to;
  /// The event's data, an object; null stands for the empty object (most replies have no
  /// data, and an empty object would cost an allocation per event).
  nlohmann::json data;
  /// `data` already serialized by nlohmann (a built-in agent's events, the same for every
  /// run, shared by all of them); when set it is sent instead of `data`, which is then ignored.
  shared_text data_text;
  /// When the event came into being, for the delivery latency metric; unset: not measured.
  std::chrono::steady_clock::time_point created{};
};

/// Renders the server envelopes of one user's stream; this runs for every frame sent. The
/// members are written in the order nlohmann's DOM dump would write them (by key), which is
/// what the renderer's test compares against. Members that repeat from event to event (the
/// user_id, run_id and thread_id of the stream's last event; per thread, the timestamp of the
/// current millisecond and recent types) are kept as serialized text, so an event costs the
/// dump of its data and little else. Values are serialized by nlohmann, except the strings it
/// would write as they are (printable ASCII without a quote or a backslash: minted ids, most
/// request ids) and the timestamp, which are copied between their quotes.
class event_renderer {
public:
  explicit event_renderer(const std::string& user_id);
  event_renderer(const event_renderer&) = delete;
  event_renderer& operator=(const event_renderer&) = delete;

  /// The envelope of `event` as one JSON text frame.
  std::string render(const outbound_event& event, std::uint64_t event_id,
                     std::chrono::system_clock::time_point at);

private:
  /// One `,"key":value` member, serialized again only when its value changes.
  struct cached_member {
    std::optional<std::string> value; ///< null: the member was null
    std::string text;                 ///< empty: nothing cached yet
  };

  /// Appends `member` with `value` (null: JSON null).
  static void append(std::string& out, cached_member& member, std::string_view key,
                     const std::string* value);

  std::string user_member_; ///< `,"user_id":"..."}`: the envelope's last member
  /// reply_to repeats in every event of a run (the id of the request that started it).
  cached_member reply_to_, run_id_, thread_id_;
};

/// The server envelope as one JSON text frame (a one-off event_renderer).
std::string render_event(const outbound_event& event, std::uint64_t event_id,
                         const std::string& user_id,
                         std::chrono::system_clock::time_point at);

outbound_event make_error(const protocol_error& error);

/// At most `max_bytes` of `text`, cut at a character boundary (UTF-8 `text`).
std::string_view utf8_prefix(std::string_view text, std::size_t max_bytes);

/// `text` as valid UTF-8: each byte that is not part of a valid sequence becomes U+FFFD (by
/// nlohmann's replace handler). For messages that quote bytes from outside (an agent's
/// response body, a header), which every strict JSON writer downstream would refuse.
std::string valid_utf8(std::string_view text);

/// A client's text as an error message quotes it: in double quotes, at most
/// `max_echo_bytes` of it, cut at a character boundary and marked with "..." when cut.
inline constexpr std::size_t max_echo_bytes = 64;
std::string quote_excerpt(std::string_view text);

/// RFC 3339 UTC with milliseconds, e.g. 2026-11-25T22:10:59.123Z
std::string rfc3339(std::chrono::system_clock::time_point at);
/// rfc3339(at) appended to `out`.
void append_rfc3339(std::string& out, std::chrono::system_clock::time_point at);

} // namespace er::protocol
