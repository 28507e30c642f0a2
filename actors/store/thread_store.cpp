#include "actors/store/thread_store.hpp"

#include <chrono>
#include <memory>

#include <caf/typed_event_based_actor.hpp>

namespace er::actors {

namespace {

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

thread_reply run_query(thread_db& db, const std::string& user, const thread_query& q) {
  thread_reply r;
  switch (q.op) {
    case thread_op::create:
      if (auto created = db.create_thread(user, q.thread_id, q.title, now_ms()))
        r.thread = std::move(*created);
      else
        r.quota_exceeded = true;
      break;
    case thread_op::create_with_message:
      if (auto created = db.create_thread_with_message(user, q.thread_id, q.title, q.role,
                                                       q.run_id, q.content, now_ms()))
        r.thread = std::move(*created);
      else
        r.quota_exceeded = true;
      break;
    case thread_op::list: {
      list_bounds bounds;
      bounds.limit = q.limit;
      bounds.after = q.after;
      bounds.max_bytes = q.max_bytes;
      auto page = db.list_threads(user, bounds);
      r.threads = std::move(page.threads);
      r.has_more = page.has_more;
      break;
    }
    case thread_op::history:
      if (auto page = db.history(user, q.thread_id, page_bounds{q.limit, q.before_seq, q.max_bytes})) {
        r.messages = std::move(page->messages);
        r.has_more = page->has_more;
      } else {
        r.found = false;
      }
      break;
    case thread_op::append:
      switch (db.append_message(user, q.thread_id, q.role, q.run_id, q.content, now_ms())) {
        case append_result::appended:
          break;
        case append_result::not_found:
          r.found = false;
          break;
        case append_result::quota_exceeded:
          r.quota_exceeded = true;
          break;
      }
      break;
    case thread_op::exists:
      r.found = db.thread_exists(user, q.thread_id);
      break;
  }
  return r;
}

struct store_state {
  std::unique_ptr<thread_db> db;
  static inline const char* name = "thread_store";
};

thread_store_actor::behavior_type
store_behavior(thread_store_actor::stateful_pointer<store_state> self,
               std::shared_ptr<thread_db> opened) {
  self->state.db = std::make_unique<thread_db>(std::move(*opened));
  return {
    [=](store_atom, const std::string& user_id, const thread_query& q) {
      try {
        return run_query(*self->state.db, user_id, q);
      } catch (const std::exception& e) {
        // A failing query must not take the store (and every user's history) down.
        thread_reply r;
        r.found = false;
        r.error = e.what();
        return r;
      }
    },
  };
}

} // namespace

thread_store_actor spawn_thread_store(caf::actor_system& system, const std::string& path,
                                      store_quotas quotas) {
  auto db = std::make_shared<thread_db>(path, quotas);
  return system.spawn<caf::detached>(store_behavior, std::move(db));
}

} // namespace er::actors
