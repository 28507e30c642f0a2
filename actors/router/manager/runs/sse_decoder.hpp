#pragma once
// Server-sent events (the text/event-stream format of the HTML standard) as an HTTP agent
// streams them: `event: T` names the agent event, `data: {...}` carries its data (several
// data lines are joined with '\n'), a blank line ends the event; comments (`:`), `id:` and
// `retry:` are ignored. Lines end with LF or CRLF. Each line, and each event's data, is
// bounded like the NDJSON lines of the line protocol.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/router/manager/runs/agent_line.hpp"
#include "actors/router/manager/runs/line_splitter.hpp"

namespace er::actors {

class sse_decoder {
public:
  explicit sse_decoder(std::size_t max_line) : lines_(max_line) {
  }

  /// Decodes `bytes`, appending each complete event to `out`. False on a protocol fault;
  /// error() then says what.
  bool feed(std::string_view bytes, std::vector<agent_line>& out);

  /// The stream ended: false when it ended in the middle of an event.
  bool finish(std::vector<agent_line>& out);

  const std::string& error() const {
    return error_;
  }

private:
  bool on_line(std::string line, std::vector<agent_line>& out);
  bool dispatch(std::vector<agent_line>& out);

  line_splitter lines_;
  std::string type_;
  std::string data_;
  bool has_data_ = false;
  std::string error_;
};

} // namespace er::actors
