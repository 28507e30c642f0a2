#include "protocol/envelope.hpp"

#include <charconv>
#include <cstdio>
#include <ctime>
#include <utility>
#include <vector>

#include "protocol/bounded_json.hpp"
#include "protocol/error_codes.hpp"

namespace er::protocol {

namespace {

using json = nlohmann::json;

protocol_error invalid(std::string message, std::optional<std::string> reply_to) {
  return {error_code::invalid_message, std::move(message), std::move(reply_to)};
}

} // namespace

namespace {

/// One top-level member of a client message as the last occurrence of its key left it (a
/// duplicate key replaces the earlier value, as in nlohmann's document).
enum class member_state { absent, null, string, object, other };

/// Reads a client message in one pass without building its document: the envelope's members
/// are taken as they stream by, and only `payload`'s object becomes a document (built by
/// nlohmann's own DOM handler). Any other member's value is skipped. Errors of the envelope
/// are judged at the end, once the whole text is known to be valid JSON. Past max_json_depth
/// the payload is dropped and the rest of the text only read through (for its validity and
/// its id): the message is refused.
class inbound_reader {
public:
  using string_t = json::string_t;

  bool null() { return delegate() ? dom_->null() : scalar(member_state::null); }
  bool boolean(bool v) { return delegate() ? dom_->boolean(v) : scalar(member_state::other); }
  bool number_integer(json::number_integer_t v) {
    return delegate() ? dom_->number_integer(v) : scalar(member_state::other);
  }
  bool number_unsigned(json::number_unsigned_t v) {
    return delegate() ? dom_->number_unsigned(v) : scalar(member_state::other);
  }
  bool number_float(json::number_float_t v, const string_t& text) {
    return delegate() ? dom_->number_float(v, text) : scalar(member_state::other);
  }
  bool binary(json::binary_t&) { return false; } // CBOR and the like only, never JSON text
  bool string(string_t& v) {
    if (delegate())
      return dom_->string(v);
    if (depth_ == 1 && skip_ == 0 && (current_ == &type_ || current_ == &id_
                                       || current_ == &thread_id_)) {
      current_->state = member_state::string;
      current_->text = std::move(v);
      return true;
    }
    return scalar(member_state::other);
  }
  bool key(string_t& k) {
    if (delegate())
      return dom_->key(k);
    if (depth_ == 1 && skip_ == 0)
      current_ = k == "type" ? &type_ : k == "id" ? &id_ : k == "thread_id" ? &thread_id_
                 : k == "payload" ? &payload_ : nullptr;
    return true;
  }
  bool start_object(std::size_t n) {
    if (!may_open())
      return open_skipped();
    if (delegate())
      return ++sub_depth_, dom_->start_object(n);
    if (depth_ == 0 && skip_ == 0)
      return depth_ = 1, top_is_object_ = true;
    if (depth_ == 1 && skip_ == 0 && current_ == &payload_) {
      payload_.state = member_state::object;
      payload_doc_ = json();
      dom_.emplace(payload_doc_, false);
      sub_depth_ = 1;
      return dom_->start_object(n);
    }
    return open_skipped();
  }
  bool end_object() {
    if (delegate()) {
      bool ok = dom_->end_object();
      if (--sub_depth_ == 0)
        dom_.reset();
      return ok;
    }
    return close_nested();
  }
  bool start_array(std::size_t n) {
    if (!may_open())
      return open_skipped();
    if (delegate())
      return ++sub_depth_, dom_->start_array(n);
    return open_skipped();
  }
  bool end_array() {
    if (delegate()) {
      --sub_depth_;
      return dom_->end_array();
    }
    return close_nested();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

  std::variant<inbound_message, protocol_error> result();

private:
  struct member {
    member_state state = member_state::absent;
    std::string text;
  };

  bool delegate() const { return dom_.has_value(); }
  /// Whether one more level stays within max_json_depth. The first level past it marks the
  /// message too deep and drops the payload being built: its open levels are skipped from
  /// then on, like every level that follows.
  bool may_open() {
    if (static_cast<std::size_t>(depth_ + skip_ + sub_depth_) < max_json_depth)
      return true;
    too_deep_ = true;
    if (delegate()) {
      dom_.reset();
      payload_doc_ = json();
      skip_ += sub_depth_;
      sub_depth_ = 0;
    }
    return false;
  }
  /// A value that is not an object: at the top (no envelope) or as a member's value.
  bool scalar(member_state kind) {
    if (depth_ == 1 && skip_ == 0 && current_)
      current_->state = kind, current_->text.clear();
    return true;
  }
  /// An array or object that is not the payload: skipped, its member marked as not a string.
  bool open_skipped() {
    if (skip_ == 0 && depth_ == 1 && current_)
      current_->state = member_state::other, current_->text.clear();
    ++skip_;
    return true;
  }
  bool close_nested() {
    if (skip_ > 0)
      --skip_;
    else
      --depth_; // the envelope itself
    return true;
  }

  int depth_ = 0;          ///< 1 inside the top-level object
  int skip_ = 0;           ///< nesting of a skipped value (or of a top level that is no object)
  int sub_depth_ = 0;      ///< nesting inside the payload being built
  bool top_is_object_ = false;
  bool too_deep_ = false; ///< an object or array nested past max_json_depth
  member type_, id_, thread_id_, payload_;
  member* current_ = nullptr; ///< the member whose value comes next
  json payload_doc_;
  std::optional<nlohmann::detail::json_sax_dom_parser<json>> dom_;
};

std::variant<inbound_message, protocol_error> inbound_reader::result() {
  if (!top_is_object_)
    return invalid("the message must be a JSON object", {});
  inbound_message msg;
  if (id_.state != member_state::absent && id_.state != member_state::null) {
    if (id_.state != member_state::string)
      return invalid("\"id\" must be a string", {});
    msg.id = std::move(id_.text);
  }
  if (too_deep_)
    return invalid(too_deep_reason("the message"), msg.id);
  if (type_.state == member_state::absent || type_.state == member_state::null)
    return invalid("\"type\" is required", msg.id);
  if (type_.state != member_state::string)
    return invalid("\"type\" must be a string", msg.id);
  msg.type = std::move(type_.text);
  if (thread_id_.state != member_state::absent && thread_id_.state != member_state::null) {
    if (thread_id_.state != member_state::string)
      return invalid("\"thread_id\" must be a string", msg.id);
    msg.thread_id = std::move(thread_id_.text);
  }
  if (payload_.state == member_state::object)
    msg.payload = std::move(payload_doc_);
  else if (payload_.state == member_state::absent || payload_.state == member_state::null)
    msg.payload = json::object();
  else
    return invalid("\"payload\" must be an object", msg.id);
  return msg;
}

} // namespace

std::variant<inbound_message, protocol_error> parse_inbound(std::string_view text) {
  inbound_reader reader;
  if (!json::sax_parse(text.begin(), text.end(), &reader))
    return protocol_error{error_code::invalid_json, "the message is not valid JSON", {}};
  return reader.result();
}

namespace {

std::int64_t millis_of(std::chrono::system_clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
}

/// Per thread: the frame being rendered and a member being serialized, each with nlohmann's
/// serializer appending to it, reused from frame to frame (the texts keep their capacity; the
/// copies handed out are exact). Also what every stream on the thread shares: the members
/// of recent event types and of the current millisecond's timestamp.
struct render_buffer {
  std::string text;
  nlohmann::detail::serializer<json> writer{nlohmann::detail::output_adapter<char>(text), ' ',
                                            json::error_handler_t::replace};
  std::string value;
  nlohmann::detail::serializer<json> value_writer{nlohmann::detail::output_adapter<char>(value),
                                                  ' ', json::error_handler_t::replace};
  std::vector<std::pair<std::string, std::string>> types; ///< type, its member; a few
  std::int64_t timestamp_ms = -1;
  std::string timestamp_member;
};

render_buffer& thread_render_buffer() {
  thread_local render_buffer buffer;
  return buffer;
}

/// `,"key":value` into `text` (its capacity kept): `key` is one of the envelope's own names
/// (nothing to escape), `value` is serialized by nlohmann (invalid UTF-8 replaced, as in every
/// frame).
void write_member(std::string& text, std::string_view key, const json& value) {
  auto& buffer = thread_render_buffer();
  buffer.value.clear();
  buffer.value_writer.dump(value, false, false, 0);
  text.clear();
  text.reserve(key.size() + 4 + buffer.value.size());
  text += ",\"";
  text += key;
  text += "\":";
  text += buffer.value;
}

/// Whether nlohmann writes `value` as it is between its quotes: printable ASCII other than the
/// quote and the backslash. It escapes those and control characters, and checks every byte from
/// 0x7F up as UTF-8 (replacing what is invalid): such a value goes through it.
bool written_as_is(std::string_view value) {
  for (unsigned char c : value)
    if (c < 0x20 || c >= 0x7F || c == '"' || c == '\\')
      return false;
  return true;
}

/// `,"key":"value"` into `text` (its capacity kept), for a value written_as_is: the text
/// nlohmann would write, without its serializer's pass over every byte.
void write_plain_member(std::string& text, std::string_view key, std::string_view value) {
  text.clear();
  text.reserve(key.size() + value.size() + 6);
  text += ",\"";
  text += key;
  text += "\":\"";
  text += value;
  text += '"';
}

std::string member_text(std::string_view key, const json& value) {
  std::string text;
  write_member(text, key, value);
  return text;
}

/// A JSON string per thread to serialize a string value through: nlohmann keeps a document's
/// string on the heap, so a fresh document per value would cost an allocation.
json& scratch_string(const std::string& value) {
  thread_local json scratch = json::string_t{};
  scratch.get_ref<json::string_t&>() = value;
  return scratch;
}

const std::string& type_member(render_buffer& buffer, const std::string& type) {
  for (auto& [known, member] : buffer.types)
    if (known == type)
      return member;
  if (buffer.types.size() >= 16) // a backend publishing many types: keep the latest only
    buffer.types.erase(buffer.types.begin());
  return buffer.types.emplace_back(type, member_text("type", json(type))).second;
}

const std::string& timestamp_member(render_buffer& buffer,
                                    std::chrono::system_clock::time_point at) {
  if (auto ms = millis_of(at); ms != buffer.timestamp_ms) {
    auto& text = buffer.timestamp_member; // digits and "-:.TZ": nothing to escape
    text.assign(",\"timestamp\":\"");
    append_rfc3339(text, at);
    text += '"';
    buffer.timestamp_ms = ms;
  }
  return buffer.timestamp_member;
}

} // namespace

event_renderer::event_renderer(const std::string& user_id)
  : user_member_(member_text("user_id", json(user_id)) + "}") {
}

void event_renderer::append(std::string& out, cached_member& member, std::string_view key,
                            const std::string* value) {
  bool same = !member.text.empty() && member.value.has_value() == (value != nullptr)
              && (value == nullptr || *member.value == *value);
  if (!same) { // both kept in place: a run's members repeat, a ping's reply_to changes each time
    if (value && written_as_is(*value)) // minted ids, and most clients' request ids
      write_plain_member(member.text, key, *value);
    else
      write_member(member.text, key, value ? scratch_string(*value) : json(nullptr));
    if (!value)
      member.value.reset();
    else if (member.value)
      *member.value = *value;
    else
      member.value.emplace(*value);
  }
  out += member.text;
}

std::string event_renderer::render(const outbound_event& event, std::uint64_t event_id,
                                   std::chrono::system_clock::time_point at) {
  auto& buffer = thread_render_buffer();
  auto& out = buffer.text;
  out.clear();
  out += "{\"data\":";
  if (event.data_text)
    out += *event.data_text;
  else if (event.data.is_null())
    out += "{}";
  else
    buffer.writer.dump(event.data, false, false, 0);
  out += ",\"event_id\":";
  char digits[24];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, event_id).ptr);
  append(out, reply_to_, "reply_to", event.reply_to ? &*event.reply_to : nullptr);
  append(out, run_id_, "run_id", event.run_id ? &*event.run_id : nullptr);
  append(out, thread_id_, "thread_id", event.thread_id ? &*event.thread_id : nullptr);
  out += timestamp_member(buffer, at);
  out += type_member(buffer, event.type);
  out += user_member_;
  return out;
}

std::string render_event(const outbound_event& event, std::uint64_t event_id,
                         const std::string& user_id,
                         std::chrono::system_clock::time_point at) {
  return event_renderer{user_id}.render(event, event_id, at);
}

std::string_view utf8_prefix(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes)
    return text;
  auto cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80)
    --cut; // text[cut] continues a character: cut before that character
  return text.substr(0, cut);
}

std::string valid_utf8(std::string_view text) {
  auto quoted = json(std::string{text}).dump(-1, ' ', false, json::error_handler_t::replace);
  return json::parse(quoted).get<std::string>();
}

std::string quote_excerpt(std::string_view text) {
  if (text.size() <= max_echo_bytes)
    return "\"" + std::string{text} + "\"";
  return "\"" + std::string{utf8_prefix(text, max_echo_bytes)} + "...\"";
}

outbound_event make_error(const protocol_error& error) {
  outbound_event ev;
  ev.type = "error";
  ev.reply_to = error.reply_to;
  ev.data = json{{"code", error.code}, {"message", error.message}};
  return ev;
}

std::string rfc3339(std::chrono::system_clock::time_point at) {
  std::string text;
  append_rfc3339(text, at);
  return text;
}

void append_rfc3339(std::string& out, std::chrono::system_clock::time_point at) {
  auto ms = millis_of(at);
  auto secs = ms / 1000;
  // Per thread, the text up to the second (gmtime and its formatting run once a second).
  thread_local std::int64_t cached_secs = -1;
  thread_local char prefix[80];
  if (secs != cached_secs) {
    std::time_t t = static_cast<std::time_t>(secs);
    std::tm utc{};
    gmtime_r(&t, &utc);
    std::snprintf(prefix, sizeof(prefix), "%04d-%02d-%02dT%02d:%02d:%02d.", utc.tm_year + 1900,
                  utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
    cached_secs = secs;
  }
  auto milli = static_cast<int>(ms % 1000);
  out += prefix;
  out += static_cast<char>('0' + milli / 100);
  out += static_cast<char>('0' + milli / 10 % 10);
  out += static_cast<char>('0' + milli % 10);
  out += 'Z';
}

} // namespace er::protocol
