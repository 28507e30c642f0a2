#include "actors/router/manager/handlers/thread_handler.hpp"

#include <caf/actor_cast.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "context/ids.hpp"
#include "protocol/error_codes.hpp"

namespace er::actors {

namespace {

using json = nlohmann::json;
using handler_pointer = thread_handler_actor::pointer;

constexpr std::size_t max_title_bytes = 200;
constexpr std::int64_t default_list_limit = 50;
constexpr std::int64_t default_history_limit = 200;
constexpr std::int64_t max_limit = 1000;
constexpr const char* storage_quota_message =
  "this user's storage quota is used up (router.max-threads-per-user, router.max-user-store-bytes)";

json thread_json(const thread_info& t) {
  return json{{"thread_id", t.thread_id},
              {"title", t.title},
              {"created_at_ms", t.created_at_ms},
              {"updated_at_ms", t.updated_at_ms},
              {"message_count", t.message_count}};
}

json message_json(const thread_message& m) {
  return json{{"seq", m.seq},
              {"role", m.role},
              {"run_id", m.run_id.empty() ? json(nullptr) : json(m.run_id)},
              {"content", json::parse(m.content, nullptr, false)},
              {"created_at_ms", m.created_at_ms}};
}

/// payload.limit when valid, `fallback` when absent; nullopt when present but not 1..max.
std::optional<std::size_t> limit_of(const json& payload, std::int64_t fallback) {
  auto it = payload.find("limit");
  if (it == payload.end())
    return static_cast<std::size_t>(fallback);
  if (!it->is_number_integer() || it->get<std::int64_t>() < 1 || it->get<std::int64_t>() > max_limit)
    return std::nullopt;
  return it->get<std::size_t>();
}

/// The store query for `msg`, or the error that refuses it. A page of the thread list or of a
/// history holds at most `page_bytes` of threads or messages.
std::variant<thread_query, protocol::protocol_error> query_for(const protocol::inbound_message& msg,
                                                               std::size_t page_bytes) {
  thread_query q;
  auto refuse = [&](std::string why) {
    return protocol::protocol_error{error_code::invalid_message, std::move(why), msg.id};
  };
  if (msg.type == "create_thread") {
    q.op = thread_op::create;
    q.thread_id = context::random_id(context::id_prefix::thread);
    auto title = msg.payload.find("title");
    if (title != msg.payload.end() && !title->is_null()) {
      if (!title->is_string() || title->get<std::string>().size() > max_title_bytes)
        return refuse("payload.title must be a string of at most 200 bytes");
      q.title = title->get<std::string>();
    }
    return q;
  }
  auto limit = limit_of(msg.payload, msg.type == "list_threads" ? default_list_limit
                                                                 : default_history_limit);
  if (!limit)
    return refuse("payload.limit must be an integer from 1 to 1000");
  q.limit = *limit;
  q.max_bytes = page_bytes;
  if (msg.type == "list_threads") {
    q.op = thread_op::list;
    if (auto after = msg.payload.find("after"); after != msg.payload.end()) {
      auto updated = after->is_object() ? after->find("updated_at_ms") : after->end();
      auto id = after->is_object() ? after->find("thread_id") : after->end();
      if (updated == after->end() || !updated->is_number_integer() || id == after->end()
          || !id->is_string())
        return refuse("payload.after must be a listed thread: an object with updated_at_ms "
                      "(an integer) and thread_id (a string)");
      q.after = list_bounds::position{updated->get<std::int64_t>(), id->get<std::string>()};
    }
    return q;
  }
  if (!msg.thread_id)
    return refuse("thread_id is required");
  q.op = thread_op::history;
  q.thread_id = *msg.thread_id;
  if (auto before = msg.payload.find("before_seq"); before != msg.payload.end()) {
    if (!before->is_number_integer() || before->get<std::int64_t>() < 1)
      return refuse("payload.before_seq must be a positive integer");
    q.before_seq = before->get<std::int64_t>();
  }
  return q;
}

protocol::outbound_event reply_for(const protocol::inbound_message& msg, const thread_query& q, thread_reply& r) {
  protocol::outbound_event ev;
  ev.reply_to = msg.id;
  if (!r.error.empty())
    return protocol::make_error({error_code::unavailable, "the thread store failed", msg.id});
  if (!r.found)
    return protocol::make_error({error_code::not_found, "no such thread", msg.id});
  if (r.quota_exceeded)
    return protocol::make_error({error_code::quota_exceeded, storage_quota_message, msg.id});
  switch (q.op) {
    case thread_op::create:
      ev.type = "thread_created";
      ev.thread_id = r.thread.thread_id;
      ev.data = thread_json(r.thread);
      break;
    case thread_op::list: {
      ev.type = "thread_list";
      auto list = json::array();
      for (auto& t : r.threads)
        list.push_back(thread_json(t));
      ev.data = json{{"threads", std::move(list)}, {"has_more", r.has_more}};
      break;
    }
    default: {
      ev.type = "thread_history";
      ev.thread_id = q.thread_id;
      auto messages = json::array();
      for (auto& m : r.messages)
        messages.push_back(message_json(m));
      ev.data = json{{"messages", std::move(messages)}, {"has_more", r.has_more}};
      break;
    }
  }
  return ev;
}

thread_handler_actor::behavior_type handler_behavior(handler_pointer self, handler_parent manager,
                                                     std::size_t page_bytes, bool test_faults) {
  return {
    [=](handle_atom, const protocol::inbound_message& msg) {
      if (test_faults && msg.type == "test_fault")
        throw std::runtime_error("fault injected into a handler");
      auto query = query_for(msg, page_bytes);
      if (auto* refused = std::get_if<protocol::protocol_error>(&query))
        return self->send(manager, emit_atom::value, protocol::make_error(*refused));
      auto q = std::get<thread_query>(query);
      self->request(manager, std::chrono::seconds{10}, store_atom::value, q)
        .then(
          [=](thread_reply& r) { self->send(manager, emit_atom::value, reply_for(msg, q, r)); },
          [=](caf::error&) {
            self->send(manager, emit_atom::value,
                       protocol::make_error({error_code::unavailable, "the thread store did not answer",
                                   msg.id}));
          });
    },
  };
}

} // namespace

bool is_thread_message(const std::string& type) {
  return type == "create_thread" || type == "list_threads" || type == "get_thread_history";
}

thread_handler_actor spawn_thread_handler(caf::local_actor* spawner, handler_parent parent,
                                          std::size_t page_bytes, bool test_faults) {
  return spawner->spawn<caf::linked>(handler_behavior, std::move(parent), page_bytes, test_faults);
}

} // namespace er::actors
