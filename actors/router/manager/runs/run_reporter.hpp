#pragma once
// How a run actor reports: every event goes to its manager as (run_event_atom, event), sent
// as the run itself, so the manager knows which run speaks and stamps the run's ids from its
// own records. A run cannot speak for another.

#include <string>

#include <caf/actor_cast.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>

#include "actors/router/manager/parent_handles.hpp"
#include "protocol/envelope.hpp"

namespace er::actors {

class run_reporter {
public:
  run_reporter(caf::scheduled_actor* self, run_parent parent)
    : self_(self), parent_(std::move(parent)) {
  }

  /// An event with its data as a document.
  void report(std::string type, nlohmann::json data) const {
    protocol::outbound_event ev;
    ev.type = std::move(type);
    ev.data = std::move(data);
    send(std::move(ev));
  }

  /// An event with its data already serialized (protocol::outbound_event::data_text).
  void report_text(std::string type, protocol::shared_text data_text) const {
    protocol::outbound_event ev;
    ev.type = std::move(type);
    ev.data_text = std::move(data_text);
    send(std::move(ev));
  }

  /// The run's one agent_error. The message may quote an agent's bytes: made valid UTF-8
  /// here, so that no JSON writer on its way (a cluster's peer notes) has to refuse it.
  void fail(const std::string& message) const {
    report("agent_error", nlohmann::json{{"message", protocol::valid_utf8(message)}});
  }

private:
  void send(protocol::outbound_event ev) const {
    caf::send_as(caf::actor_cast<caf::actor>(self_), parent_, run_event_atom::value,
                 std::move(ev));
  }

  caf::scheduled_actor* self_;
  run_parent parent_;
};

} // namespace er::actors
