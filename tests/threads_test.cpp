// Conversation threads in SQLite (DESIGN §6): create, list, history, appends by
// user_message and agent results, persistence across a router restart.

#include <cstdlib>
#include <filesystem>
#include <set>

#include <doctest/doctest.h>

#include "tests/support.hpp"
#include "tests/temp_dir.hpp"

using namespace er::test;

namespace {

json request(er::client::ws_client& c, const json& msg) {
  c.send_text(msg.dump());
  return next_json(c);
}

} // namespace

TEST_CASE("create_thread, list_threads and get_thread_history answer for this user's threads") {
  test_router router{agent_settings()};
  auto c = connect_user(router, "alice");
  auto created = request(*c.client, {{"type", "create_thread"}, {"id", "c1"}, {"payload", {{"title", "Plans"}}}});
  REQUIRE(created["type"] == "thread_created");
  CHECK(created["reply_to"] == "c1");
  auto thread_id = created["thread_id"].get<std::string>();
  CHECK(thread_id.rfind("t-", 0) == 0);
  CHECK(created["data"]["title"] == "Plans");
  auto list = request(*c.client, {{"type", "list_threads"}, {"id", "l1"}});
  REQUIRE(list["type"] == "thread_list");
  REQUIRE(list["data"]["threads"].size() == 1);
  CHECK(list["data"]["threads"][0]["thread_id"] == thread_id);
  auto history = request(*c.client, {{"type", "get_thread_history"}, {"id", "h1"}, {"thread_id", thread_id}});
  CHECK(history["type"] == "thread_history");
  CHECK(history["thread_id"] == thread_id);
  CHECK(history["data"]["messages"].empty());
  auto bad = request(*c.client, {{"type", "create_thread"}, {"id", "c2"}, {"payload", {{"title", 5}}}});
  CHECK(bad["data"]["code"] == "invalid_message");
  auto no_id = request(*c.client, {{"type", "get_thread_history"}, {"id", "h2"}});
  CHECK(no_id["data"]["code"] == "invalid_message");
}

TEST_CASE("user_message appends the text and the agent's result to its thread, and the "
          "history survives a restart of the router") {
  temp_dir dir;
  auto settings = agent_settings();
  settings.store_path = dir.file("threads.db");
  std::string thread_id, run_id;
  {
    test_router router{settings};
    auto c = connect_user(router, "alice");
    auto frames = run_to_end(*c.client, {{"type", "user_message"}, {"id", "m1"}, {"payload", {{"text", "What is up?"}}}});
    REQUIRE(frames.back()["type"] == "agent_completed");
    thread_id = frames.front()["thread_id"];
    run_id = frames.front()["run_id"];
    for (auto& f : frames)
      CHECK(f["thread_id"] == thread_id);
    // A second message on the same thread.
    auto second = run_to_end(*c.client, {{"type", "user_message"}, {"id", "m2"}, {"thread_id", thread_id},
                                         {"payload", {{"text", "And then?"}}}});
    CHECK(second.back()["type"] == "agent_completed");
  }
  test_router restarted{settings};
  auto c = connect_user(restarted, "alice");
  auto history = request(*c.client, {{"type", "get_thread_history"}, {"id", "h"}, {"thread_id", thread_id}});
  REQUIRE(history["type"] == "thread_history");
  auto& messages = history["data"]["messages"];
  REQUIRE(messages.size() == 4);
  CHECK(messages[0]["role"] == "user");
  CHECK(messages[0]["content"]["text"] == "What is up?");
  CHECK(messages[1]["role"] == "agent");
  CHECK(messages[1]["run_id"] == run_id);
  CHECK(messages[1]["content"]["output"] == "demo answer");
  CHECK(messages[2]["content"]["text"] == "And then?");
  CHECK(messages[3]["role"] == "agent");
  auto list = request(*c.client, {{"type", "list_threads"}, {"id", "l"}});
  REQUIRE(list["data"]["threads"].size() == 1);
  CHECK(list["data"]["threads"][0]["title"] == "What is up?");
  CHECK(list["data"]["threads"][0]["message_count"] == 4);
}

TEST_CASE("a thread created by user_message is titled with the text's start, cut between "
          "characters") {
  test_router router{agent_settings()};
  auto c = connect_user(router, "alice");
  // 59 ASCII bytes, then two-byte characters: byte 60 falls inside the first of them.
  std::string text = std::string(59, 'a') + "\xc3\xa9\xc3\xa9 and more";
  c.client->send_text(json{{"type", "user_message"}, {"id", "m"}, {"payload", {{"text", text}}}}.dump());
  read_until(*c.client, [](const json& f) { return is_final(f); });
  auto list = request(*c.client, {{"type", "list_threads"}, {"id", "l"}});
  REQUIRE(list["data"]["threads"].size() == 1);
  CHECK(list["data"]["threads"][0]["title"] == std::string(59, 'a'));
}

TEST_CASE("a thread's history comes in pages that fit the outbound queue, paged back with "
          "before_seq down to its first message") {
  auto settings = agent_settings();
  settings.outbound_queue_bytes = 64 * 1024; // a history page holds at most 16 KiB
  test_router router{settings};
  auto c = connect_user(router, "alice");
  // Twelve 6,000-byte messages and the agent's twelve answers: 74 KB, more than the queue
  // holds: in one frame, with anything queued behind it, they would end the connection with 4008.
  std::string thread_id;
  auto text = [](int i) { return std::string(6000, static_cast<char>('a' + i)); };
  for (int i = 0; i < 12; ++i) {
    json msg{{"type", "user_message"}, {"id", "m" + std::to_string(i)}, {"payload", {{"text", text(i)}}}};
    if (!thread_id.empty())
      msg["thread_id"] = thread_id;
    auto frames = run_to_end(*c.client, msg);
    REQUIRE(frames.back()["type"] == "agent_completed");
    thread_id = frames.front()["thread_id"];
  }
  // The newest page first, then each older one: no page over 16 KiB, every message once.
  std::vector<json> all;
  json payload = json::object();
  for (int pages = 0;; ++pages) {
    REQUIRE(pages < 24);
    auto page = request(*c.client, {{"type", "get_thread_history"}, {"id", "h"}, {"thread_id", thread_id},
                                    {"payload", payload}});
    REQUIRE(page["type"] == "thread_history");
    auto& messages = page["data"]["messages"];
    REQUIRE(!messages.empty());
    CHECK(page["data"].dump().size() < 16 * 1024 + 1024);
    all.insert(all.begin(), messages.begin(), messages.end());
    if (!page["data"]["has_more"].get<bool>())
      break;
    CHECK(messages.size() < 24);
    payload["before_seq"] = messages[0]["seq"];
  }
  REQUIRE(all.size() == 24);
  for (int i = 0; i < 24; ++i) {
    CHECK(all[i]["seq"] == i + 1);
    CHECK(all[i]["role"] == (i % 2 == 0 ? "user" : "agent"));
    if (i % 2 == 0)
      CHECK(all[i]["content"]["text"] == text(i / 2));
  }
  // A limit pages by count as well: the three before seq 10, then the three before those.
  auto three = request(*c.client, {{"type", "get_thread_history"}, {"id", "l"}, {"thread_id", thread_id},
                                   {"payload", {{"limit", 3}, {"before_seq", 10}}}});
  REQUIRE(three["data"]["messages"].size() == 2); // two: their 6 KB each fill the page
  CHECK(three["data"]["messages"][0]["seq"] == 8);
  CHECK(three["data"]["messages"][1]["seq"] == 9);
  auto small = request(*c.client, {{"type", "get_thread_history"}, {"id", "s"}, {"thread_id", thread_id},
                                   {"payload", {{"limit", 2}, {"before_seq", 3}}}});
  REQUIRE(small["data"]["messages"].size() == 2);
  CHECK(small["data"]["messages"][0]["seq"] == 1);
  CHECK(small["data"]["has_more"] == false);
  // A before_seq past the newest reads from the newest; one that is not a positive integer is
  // refused, and the connection goes on.
  auto past = request(*c.client, {{"type", "get_thread_history"}, {"id", "p"}, {"thread_id", thread_id},
                                  {"payload", {{"limit", 1}, {"before_seq", 1000}}}});
  REQUIRE(past["data"]["messages"].size() == 1);
  CHECK(past["data"]["messages"][0]["seq"] == 24);
  CHECK(past["data"]["has_more"] == true);
  for (auto bad : {json(0), json(-3), json("5"), json(2.5)}) {
    auto refused = request(*c.client, {{"type", "get_thread_history"}, {"id", "b"}, {"thread_id", thread_id},
                                       {"payload", {{"before_seq", bad}}}});
    CHECK(refused["data"]["code"] == "invalid_message");
    CHECK(refused["reply_to"] == "b");
  }
  CHECK(request(*c.client, {{"type", "ping"}, {"id", "still"}})["type"] == "pong");
}

TEST_CASE("the thread list comes in pages that fit the outbound queue, paged on with after "
          "down to the first thread created") {
  auto settings = agent_settings();
  settings.outbound_queue_bytes = 16 * 1024; // a page of the list holds at most 4 KiB
  test_router router{settings};
  auto c = connect_user(router, "alice");
  // Sixty threads with 200-byte titles: over 20 KB listed, more than the queue holds (in one
  // frame, with anything queued behind it, they would end the connection with 4008). Many are created within one millisecond:
  // the list orders those by thread_id, and the pages must not lose or repeat one of them.
  std::set<std::string> created;
  for (int i = 0; i < 60; ++i) {
    auto title = std::to_string(i) + std::string(200 - std::to_string(i).size(), 'x');
    auto t = request(*c.client, {{"type", "create_thread"}, {"id", "c"}, {"payload", {{"title", title}}}});
    REQUIRE(t["type"] == "thread_created");
    created.insert(t["thread_id"].get<std::string>());
  }
  std::vector<json> listed;
  json payload{{"limit", 1000}};
  for (int pages = 0;; ++pages) {
    REQUIRE(pages < 60);
    auto page = request(*c.client, {{"type", "list_threads"}, {"id", "l"}, {"payload", payload}});
    REQUIRE(page["type"] == "thread_list");
    auto& threads = page["data"]["threads"];
    REQUIRE(!threads.empty());
    CHECK(page["data"].dump().size() < 4 * 1024 + 512);
    listed.insert(listed.end(), threads.begin(), threads.end());
    if (!page["data"]["has_more"].get<bool>())
      break;
    payload["after"] = threads.back(); // the whole thread object will do
  }
  REQUIRE(listed.size() == 60);
  std::set<std::string> ids;
  for (std::size_t i = 0; i < listed.size(); ++i) {
    ids.insert(listed[i]["thread_id"].get<std::string>());
    if (i == 0)
      continue;
    auto& prev = listed[i - 1];
    auto& cur = listed[i];
    bool ordered = prev["updated_at_ms"] > cur["updated_at_ms"]
                   || (prev["updated_at_ms"] == cur["updated_at_ms"] && prev["thread_id"] < cur["thread_id"]);
    CHECK(ordered);
  }
  CHECK(ids == created); // each thread once
  // The limit pages by count as well; a page after the last thread is empty.
  auto two = request(*c.client, {{"type", "list_threads"}, {"id", "t"}, {"payload", {{"limit", 2}}}});
  REQUIRE(two["data"]["threads"].size() == 2);
  CHECK(two["data"]["threads"][0] == listed[0]);
  CHECK(two["data"]["has_more"] == true);
  auto next = request(*c.client, {{"type", "list_threads"}, {"id", "t"},
                                  {"payload", {{"limit", 2}, {"after", two["data"]["threads"][1]}}}});
  REQUIRE(next["data"]["threads"].size() == 2);
  CHECK(next["data"]["threads"][0] == listed[2]);
  auto end = request(*c.client, {{"type", "list_threads"}, {"id", "e"}, {"payload", {{"after", listed.back()}}}});
  CHECK(end["data"]["threads"].empty());
  CHECK(end["data"]["has_more"] == false);
  // An after that is not a listed thread's position is refused, and the connection goes on.
  for (auto bad : {json(5), json("t-1"), json{{"thread_id", "t-1"}}, json{{"updated_at_ms", 5}},
                   json{{"updated_at_ms", "5"}, {"thread_id", "t-1"}},
                   json{{"updated_at_ms", 5}, {"thread_id", 7}}}) {
    auto refused = request(*c.client, {{"type", "list_threads"}, {"id", "b"}, {"payload", {{"after", bad}}}});
    CHECK(refused["data"]["code"] == "invalid_message");
    CHECK(refused["reply_to"] == "b");
  }
  CHECK(request(*c.client, {{"type", "ping"}, {"id", "still"}})["type"] == "pong");
}

TEST_CASE("the store file is created on first start in WAL mode") {
  temp_dir dir;
  auto settings = agent_settings();
  settings.store_path = dir.file("fresh.db");
  test_router router{settings};
  CHECK(std::filesystem::exists(settings.store_path));
}

TEST_CASE("an unusable store path stops the start with an error naming it") {
  auto settings = agent_settings();
  settings.store_path = "/nonexistent-dir/threads.db";
  try {
    test_router router{settings};
    FAIL("the router started");
  } catch (const std::exception& e) {
    CHECK(std::string{e.what()}.find("/nonexistent-dir/threads.db") != std::string::npos);
  }
}
