// Per-user storage quotas over real connections (DESIGN §6): past them a request that would
// store more gets quota_exceeded, a run's unstorable result still completes with
// "stored": false, nothing stored is deleted, and the store file stays within the bound.

#include <filesystem>

#include <doctest/doctest.h>

#include "tests/support.hpp"
#include "tests/temp_dir.hpp"

using namespace er::test;

namespace {

er::app::router_settings quota_settings(const temp_dir& dir) {
  auto s = agent_settings();
  s.store_path = dir.file("quota.db");
  s.max_threads_per_user = 3;
  s.max_user_store_bytes = 256 * 1024;
  s.messages_per_second = 100000;
  s.messages_burst = 100000;
  return s;
}

json ask(er::client::ws_client& c, const json& msg) {
  c.send_text(msg.dump());
  return next_json(c);
}

} // namespace

TEST_CASE("create_thread past router.max-threads-per-user is quota_exceeded, and threads stay") {
  temp_dir dir;
  test_router router{quota_settings(dir)};
  auto c = connect_user(router, "alice");
  for (int i = 0; i < 3; ++i)
    CHECK(ask(*c.client, {{"type", "create_thread"}, {"id", "t" + std::to_string(i)}})["type"]
          == "thread_created");
  auto refused = ask(*c.client, {{"type", "create_thread"}, {"id", "t3"}});
  CHECK(refused["type"] == "error");
  CHECK(refused["data"]["code"] == "quota_exceeded");
  CHECK(refused["reply_to"] == "t3");
  // A user_message without a thread would create one: refused, and no run starts.
  auto message = ask(*c.client, {{"type", "user_message"}, {"id", "m"}, {"payload", {{"text", "hi"}}}});
  CHECK(message["data"]["code"] == "quota_exceeded");
  CHECK(c.client->read(300ms).what == er::client::frame::kind::timeout); // no agent_started
  auto list = ask(*c.client, {{"type", "list_threads"}, {"id", "l"}});
  CHECK(list["data"]["threads"].size() == 3);
  auto bob = connect_user(router, "bob"); // a quota is per user
  CHECK(ask(*bob.client, {{"type", "create_thread"}, {"id", "b"}})["type"] == "thread_created");
}

TEST_CASE("a user_message without a thread whose text is past the byte quota leaves no thread "
          "behind: the thread and its first message are stored together or not at all") {
  temp_dir dir;
  auto settings = quota_settings(dir);
  settings.max_user_store_bytes = 4096;
  test_router router{settings};
  auto c = connect_user(router, "alice");
  // The title (the text's first 60 bytes) fits; the text does not.
  auto refused = ask(*c.client, {{"type", "user_message"}, {"id", "m"},
                                 {"payload", {{"text", std::string(5000, 'x')}}}});
  CHECK(refused["data"]["code"] == "quota_exceeded");
  CHECK(refused["reply_to"] == "m");
  CHECK(c.client->read(300ms).what == er::client::frame::kind::timeout); // no agent_started
  auto list = ask(*c.client, {{"type", "list_threads"}, {"id", "l"}});
  CHECK(list["data"]["threads"].empty());
  // Nor does the refusal use up any quota: a message that fits creates its thread.
  auto ok = ask(*c.client, {{"type", "user_message"}, {"id", "m2"},
                            {"payload", {{"text", std::string(1000, 'y')}}}});
  CHECK(ok["type"] == "agent_started");
  read_until(*c.client, [](const json& f) { return is_final(f); });
  auto after = ask(*c.client, {{"type", "list_threads"}, {"id", "l2"}});
  REQUIRE(after["data"]["threads"].size() == 1);
  CHECK(after["data"]["threads"][0]["thread_id"] == ok["thread_id"]);
}

TEST_CASE("past router.max-user-store-bytes a user_message is refused without a run, a run's "
          "result completes with stored: false, and the store file stays bounded") {
  temp_dir dir;
  auto settings = quota_settings(dir);
  test_router router{settings};
  auto c = connect_user(router, "alice");
  auto created = ask(*c.client, {{"type", "create_thread"}, {"id", "t"}});
  auto thread_id = created["thread_id"].get<std::string>();
  std::string big(60 * 1000, 'x'); // 60 KB of text per message, as an abusive client sends
  int stored = 0;
  int refused = 0;
  // A run's end waits for the store: under ThreadSanitizer beside other tests' SQLite files,
  // once took longer than read_until's usual 10 s.
  const auto run_timeout = 30s;
  for (int i = 0; i < 40; ++i) {
    auto id = "m" + std::to_string(i);
    c.client->send_text(json{{"type", "user_message"}, {"id", id}, {"thread_id", thread_id},
                             {"payload", {{"text", big}}}}.dump());
    auto first = next_json(*c.client);
    if (first["type"] == "error") {
      CHECK(first["data"]["code"] == "quota_exceeded");
      CHECK(first["reply_to"] == id);
      ++refused;
      continue;
    }
    REQUIRE(first["type"] == "agent_started");
    auto rest = read_until(*c.client, [](const json& f) { return is_final(f); }, run_timeout);
    CHECK(rest.back()["type"] == "agent_completed");
    ++stored;
  }
  CHECK(stored >= 1);
  CHECK(refused >= 30);
  // The demo's result echoes the input: once the text fits and the result does not, the
  // run still completes and says its result was not stored.
  auto history = ask(*c.client, {{"type", "get_thread_history"}, {"id", "h"}, {"thread_id", thread_id},
                                 {"payload", {{"limit", 1000}}}});
  std::size_t bytes = 0;
  for (auto& m : history["data"]["messages"])
    bytes += m["content"].dump().size();
  CHECK(bytes <= static_cast<std::size_t>(settings.max_user_store_bytes));
  c.client->send_text(json{{"type", "start_agent"}, {"id", "r"}, {"thread_id", thread_id},
                           {"payload", {{"agent", "echo"}, {"input", big}}}}.dump());
  auto run = read_until(*c.client, [](const json& f) { return is_final(f); }, run_timeout);
  CHECK(run.back()["type"] == "agent_completed");
  CHECK(run.back()["data"]["stored"] == false);
  CHECK(run.back()["data"]["output"] == big); // the client still gets the result
  // Nothing stored was deleted, and the file holds about the quota, not 40 x 60 KB.
  auto again = ask(*c.client, {{"type", "get_thread_history"}, {"id", "h2"}, {"thread_id", thread_id},
                               {"payload", {{"limit", 1000}}}});
  CHECK(again["data"]["messages"].size() == history["data"]["messages"].size());
  auto file_bytes = std::filesystem::file_size(settings.store_path)
                    + (std::filesystem::exists(settings.store_path + "-wal")
                         ? std::filesystem::file_size(settings.store_path + "-wal")
                         : 0);
  CHECK(file_bytes < 2 * 1024 * 1024);
}
