#include "protocol/bounded_json.hpp"

#include <string>

namespace er::protocol {

namespace {

using json = nlohmann::json;

/// nlohmann's own DOM builder, stopped at the first object or array past the limit.
class bounded_dom {
public:
  explicit bounded_dom(json& doc) : dom_(doc, false) {
  }

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& text) {
    return dom_.number_float(v, text);
  }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t&) { return false; } // CBOR and the like only, never JSON text
  bool key(json::string_t& k) { return dom_.key(k); }
  bool start_object(std::size_t n) { return open() && dom_.start_object(n); }
  bool end_object() { return --depth_, dom_.end_object(); }
  bool start_array(std::size_t n) { return open() && dom_.start_array(n); }
  bool end_array() { return --depth_, dom_.end_array(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

  bool too_deep() const noexcept { return too_deep_; }

private:
  bool open() {
    if (depth_ == max_json_depth)
      return too_deep_ = true, false;
    ++depth_;
    return true;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::size_t depth_ = 0;
  bool too_deep_ = false;
};

} // namespace

parsed_json parse_json(std::string_view text) {
  parsed_json result;
  bounded_dom sax(result.doc);
  if (!json::sax_parse(text.begin(), text.end(), &sax)) {
    result.doc = json(json::value_t::discarded);
    result.too_deep = sax.too_deep();
  }
  return result;
}

std::string too_deep_reason(std::string_view what) {
  return std::string{what} + " nests deeper than " + std::to_string(max_json_depth) + " levels";
}

} // namespace er::protocol
