// An HTTP agent's run: POSTs the run to the agent's URL and reports each event of the streamed
// response (NDJSON lines or server-sent events) as it arrives. Whatever goes wrong ends the
// run with one agent_error; when the run ends early (stop, timeout, the connection closing)
// its actor ends and the request is aborted with it.

#include "actors/router/manager/runs/run_kinds.hpp"

#include <cctype>
#include <variant>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/router/manager/runs/http_agent_client.hpp"
#include "actors/router/manager/runs/run_flow.hpp"
#include "actors/router/manager/runs/run_reporter.hpp"
#include "actors/router/manager/runs/sse_decoder.hpp"
#include "protocol/message_types.hpp"

namespace er::actors {

namespace {

using json = nlohmann::json;
using head_atom = caf::atom_constant<caf::atom("head")>;
using body_atom = caf::atom_constant<caf::atom("body")>;
using end_atom = caf::atom_constant<caf::atom("end")>;
using failed_atom = caf::atom_constant<caf::atom("failed")>;
using reap_atom = caf::atom_constant<caf::atom("reap")>;

constexpr std::size_t max_line_bytes = 65536;
constexpr std::size_t error_excerpt_bytes = 200;
/// After its final event, how long a run waits for the response to end (so that its
/// connection can serve another run) before it drops the connection.
constexpr auto end_grace = std::chrono::seconds{1};

struct ndjson_stream {
  line_splitter lines{max_line_bytes};
};

struct http_state {
  std::shared_ptr<agent_request> request; ///< aborted when the run ends before it did
  run_parent parent;
  run_flow flow; ///< the body is read on as the manager handles its events
  void release_source(std::size_t weight) {
    if (request)
      request->consumed(weight);
  }
  std::variant<std::monostate, ndjson_stream, sse_decoder> format;
  unsigned status = 0;
  std::string error_body; ///< the first bytes of a non-2xx answer
  bool finished = false;  ///< its one final event has been reported

  ~http_state() {
    if (request)
      request->abort();
  }
  static inline const char* name = "http_run";
};

using http_pointer = caf::stateful_actor<http_state>*;

bool successful(unsigned status) {
  return status >= 200 && status < 300;
}

/// Ends the run with its one agent_error.
void fail(http_pointer self, const run_reporter& out, const std::string& message,
          bool unavailable = false) {
  if (!std::exchange(self->state.finished, true)) {
    auto data = json{{"message", message}};
    if (unavailable)
      data["code"] = "unavailable";
    out.report("agent_error", std::move(data));
  }
  self->quit();
}

void report(http_pointer self, const run_reporter& out, agent_line& event) {
  if (self->state.finished)
    return; // anything after the final event is not the run's
  bool final = protocol::is_final_agent_event(event.type);
  out.report(std::move(event.type), std::move(event.data));
  if (final) {
    self->state.finished = true;
    self->delayed_send(self, end_grace, reap_atom::value);
  }
}

/// The response head: a 2xx with a streaming content type, or the run fails.
void on_head(http_pointer self, const run_reporter& out, unsigned status,
             const std::string& content_type) {
  auto& st = self->state;
  st.status = status;
  if (!successful(status))
    return; // its body is collected for the message
  auto media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && media.back() == ' ')
    media.pop_back();
  for (auto& c : media) // media types are case-insensitive (RFC 9110 §8.3.1)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (media == "application/x-ndjson")
    st.format = ndjson_stream{};
  else if (media == "text/event-stream")
    st.format = sse_decoder{max_line_bytes};
  else
    fail(self, out,
         "the agent answered with Content-Type \""
           + std::string{protocol::utf8_prefix(content_type, 100)}
           + "\"; expected application/x-ndjson or text/event-stream");
}

void fail_with_status(http_pointer self, const run_reporter& out) {
  auto& st = self->state;
  fail(self, out,
       "the agent answered HTTP " + std::to_string(st.status) + ": "
         + std::string{protocol::utf8_prefix(st.error_body, error_excerpt_bytes)});
}

void on_body(http_pointer self, const run_reporter& out, const std::string& bytes) {
  auto& st = self->state;
  if (!successful(st.status)) {
    st.error_body.append(bytes, 0, error_excerpt_bytes - std::min(error_excerpt_bytes, st.error_body.size()));
    if (st.error_body.size() >= error_excerpt_bytes)
      fail_with_status(self, out);
    return;
  }
  std::vector<agent_line> events;
  std::string why; // not empty: the stream broke the protocol
  if (auto* nd = std::get_if<ndjson_stream>(&st.format)) {
    bool within_limit = nd->lines.feed(bytes, [&](std::string line) {
      if (!why.empty() || line.empty() || line == "\r")
        return;
      if (auto event = parse_agent_line(line))
        events.push_back(std::move(*event));
      else
        why = "the agent sent a line that is not a JSON agent event";
    });
    if (!within_limit)
      why = "the agent sent a line longer than " + std::to_string(max_line_bytes) + " bytes";
  } else if (auto* sse = std::get_if<sse_decoder>(&st.format)) {
    if (!sse->feed(bytes, events))
      why = sse->error();
  }
  for (auto& event : events)
    report(self, out, event);
  if (!why.empty())
    fail(self, out, why);
}

void on_end(http_pointer self, const run_reporter& out) {
  auto& st = self->state;
  st.request = nullptr; // ended: its connection may serve another run
  if (!successful(st.status))
    return fail_with_status(self, out);
  std::vector<agent_line> events;
  if (auto* nd = std::get_if<ndjson_stream>(&st.format))
    nd->lines.finish([&](std::string line) {
      if (auto event = parse_agent_line(line))
        events.push_back(std::move(*event));
    });
  else if (auto* sse = std::get_if<sse_decoder>(&st.format))
    sse->finish(events);
  for (auto& event : events)
    report(self, out, event);
  fail(self, out, "the agent's response ended without agent_completed or agent_error");
}

/// The response's callbacks run on the connection's strand: they only post to the mailbox.
agent_response_callbacks mailbox_callbacks(http_pointer self) {
  auto me = caf::actor_cast<caf::actor>(self);
  agent_response_callbacks cb;
  cb.on_head = [me](unsigned status, std::string type) {
    caf::anon_send(me, head_atom::value, static_cast<std::uint32_t>(status), std::move(type));
  };
  cb.on_body = [me](std::string bytes) { caf::anon_send(me, body_atom::value, std::move(bytes)); };
  cb.on_end = [me] { caf::anon_send(me, end_atom::value); };
  cb.on_error = [me](std::string message, bool unavailable) {
    caf::anon_send(me, failed_atom::value, std::move(message), unavailable);
  };
  return cb;
}

caf::behavior http_run(http_pointer self, run_parent parent, run_spec spec,
                       std::shared_ptr<http_agent_pool> pool, std::string agent) {
  self->state.parent = parent;
  run_reporter out{self, std::move(parent)};
  auto body = json{{"run_id", spec.run_id},
                   {"thread_id", spec.thread_id.empty() ? json(nullptr) : json(spec.thread_id)},
                   {"agent", agent},
                   {"user_id", spec.user_id},
                   {"payload", spec.payload}};
  self->state.request =
    pool->start(spec.run_id, body.dump(), mailbox_callbacks(self), run_flow::window,
                run_flow::line_weight);
  return {
    [=](head_atom, std::uint32_t status, const std::string& type) {
      on_head(self, out, status, type);
    },
    [=](body_atom, const std::string& bytes) {
      on_body(self, out, bytes);
      // after its events: a run_sync asked now covers them
      flow_handled(self, read_window::weight(bytes, run_flow::line_weight));
    },
    [=](end_atom) { on_end(self, out); },
    [=](failed_atom, const std::string& message, bool unavailable) {
      fail(self, out, message, unavailable);
    },
    [=](reap_atom) { self->quit(); }, // the response never ended: the request is dropped
  };
}

} // namespace

caf::actor spawn_http_run(caf::local_actor* spawner, run_parent parent, run_spec spec,
                          const agent_definition& agent) {
  return spawner->spawn<caf::linked>(http_run, std::move(parent), std::move(spec), agent.http,
                                     agent.name);
}

} // namespace er::actors
