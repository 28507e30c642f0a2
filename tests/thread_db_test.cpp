#include "actors/store/thread_db.hpp"

#include <doctest/doctest.h>

#include "tests/temp_dir.hpp"
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

using er::actors::append_result;
using er::actors::history_page;
using er::actors::list_bounds;
using er::actors::page_bounds;
using er::actors::store_quotas;
using er::actors::thread_db;
using er::actors::thread_db_error;
using er::actors::thread_info;
using er::actors::thread_message;

namespace {

namespace fs = std::filesystem;

using er::test::temp_dir;

// Looks at the file with plain SQLite, independent of the class under test.
class raw_db {
public:
  explicit raw_db(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
      throw std::runtime_error("raw open failed: " + path);
  }
  ~raw_db() { sqlite3_close_v2(db_); }
  raw_db(const raw_db&) = delete;
  raw_db& operator=(const raw_db&) = delete;

  std::string text(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK)
      throw std::runtime_error(sqlite3_errmsg(db_));
    std::string value;
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr)
      value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return value;
  }
  long long integer(const std::string& sql) { return std::stoll(text(sql)); }

private:
  sqlite3* db_ = nullptr;
};

std::string json_text(const std::string& s) { return nlohmann::json({{"text", s}}).dump(); }

} // namespace

TEST_CASE("a created thread is listed and its history comes back in append order") {
  temp_dir dir;
  thread_db db(dir.file("threads.db"));

  const thread_info created = db.create_thread("alice", "t1", "First chat", 1000).value();
  CHECK(created.thread_id == "t1");
  CHECK(created.title == "First chat");
  CHECK(created.created_at_ms == 1000);
  CHECK(created.updated_at_ms == 1000);
  CHECK(created.message_count == 0);
  CHECK(db.thread_exists("alice", "t1"));

  auto empty = db.history("alice", "t1", 10);
  REQUIRE(empty.has_value());
  CHECK(empty->empty());

  REQUIRE(db.append_message("alice", "t1", "user", "", json_text("hi"), 1100) == append_result::appended);
  REQUIRE(db.append_message("alice", "t1", "agent", "run-1", json_text("hello"), 1200) == append_result::appended);

  const auto listed = db.list_threads("alice", 10);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].thread_id == "t1");
  CHECK(listed[0].title == "First chat");
  CHECK(listed[0].created_at_ms == 1000);
  CHECK(listed[0].updated_at_ms == 1200);
  CHECK(listed[0].message_count == 2);

  const auto messages = db.history("alice", "t1", 10);
  REQUIRE(messages.has_value());
  REQUIRE(messages->size() == 2);
  const thread_message& first = (*messages)[0];
  const thread_message& second = (*messages)[1];
  CHECK(first.seq == 1);
  CHECK(first.role == "user");
  CHECK(first.run_id.empty());
  CHECK(first.content == json_text("hi"));
  CHECK(first.created_at_ms == 1100);
  CHECK(second.seq == 2);
  CHECK(second.role == "agent");
  CHECK(second.run_id == "run-1");
  CHECK(second.content == json_text("hello"));
  CHECK(second.created_at_ms == 1200);
}

TEST_CASE("a thread of user A is invisible to user B") {
  temp_dir dir;
  const auto path = dir.file("threads.db");
  thread_db db(path);
  db.create_thread("alice", "shared-id", "Alice's", 1000);
  REQUIRE(db.append_message("alice", "shared-id", "user", "", json_text("secret"), 1100) == append_result::appended);

  SUBCASE("it answers exactly like an unknown thread id") {
    CHECK_FALSE(db.thread_exists("bob", "shared-id"));
    CHECK(db.thread_exists("bob", "shared-id") == db.thread_exists("bob", "no-such-id"));
    CHECK_FALSE(db.history("bob", "shared-id", 10).has_value());
    CHECK(db.history("bob", "shared-id", 10).has_value()
          == db.history("bob", "no-such-id", 10).has_value());
    CHECK(db.append_message("bob", "no-such-id", "user", "", json_text("x"), 2000) == append_result::not_found);
    CHECK(db.append_message("bob", "shared-id", "user", "", json_text("x"), 2000) == append_result::not_found);
    CHECK(db.list_threads("bob", 10).empty());
  }

  SUBCASE("appending to it writes nothing") {
    CHECK(db.append_message("bob", "shared-id", "agent", "r", json_text("intrusion"), 2000) == append_result::not_found);
    raw_db raw(path);
    CHECK(raw.integer("SELECT COUNT(*) FROM messages") == 1);
    CHECK(raw.integer("SELECT COUNT(*) FROM threads") == 1);
    CHECK(raw.integer("SELECT COUNT(*) FROM messages WHERE user_id = 'bob'") == 0);
    const auto alice = db.list_threads("alice", 10);
    REQUIRE(alice.size() == 1);
    CHECK(alice[0].updated_at_ms == 1100);
    CHECK(alice[0].message_count == 1);
    const auto history = db.history("alice", "shared-id", 10);
    REQUIRE(history.has_value());
    REQUIRE(history->size() == 1);
    CHECK((*history)[0].content == json_text("secret"));
  }
}

TEST_CASE("two users can own threads with the same thread id independently") {
  thread_db db(":memory:");
  db.create_thread("alice", "t", "A", 1000);
  db.create_thread("bob", "t", "B", 2000);
  REQUIRE(db.append_message("bob", "t", "user", "", json_text("from bob"), 2100) == append_result::appended);

  const auto alice = db.history("alice", "t", 10);
  const auto bob = db.history("bob", "t", 10);
  REQUIRE(alice.has_value());
  REQUIRE(bob.has_value());
  CHECK(alice->empty());
  REQUIRE(bob->size() == 1);
  CHECK((*bob)[0].seq == 1);
  CHECK(db.list_threads("alice", 10).at(0).title == "A");
  CHECK(db.list_threads("bob", 10).at(0).title == "B");
}

TEST_CASE("history survives closing and reopening the database file") {
  temp_dir dir;
  const auto path = dir.file("threads.db");
  {
    thread_db db(path);
    db.create_thread("alice", "t1", "Persistent", 1000);
    REQUIRE(db.append_message("alice", "t1", "user", "", json_text("one"), 1100) == append_result::appended);
    REQUIRE(db.append_message("alice", "t1", "agent", "run-7", json_text("two"), 1200) == append_result::appended);
  }
  thread_db reopened(path);
  CHECK(reopened.thread_exists("alice", "t1"));
  const auto history = reopened.history("alice", "t1", 10);
  REQUIRE(history.has_value());
  REQUIRE(history->size() == 2);
  CHECK((*history)[0].content == json_text("one"));
  CHECK((*history)[1].run_id == "run-7");
  REQUIRE(reopened.append_message("alice", "t1", "user", "", json_text("three"), 1300) == append_result::appended);
  CHECK(reopened.history("alice", "t1", 10)->back().seq == 3);
}

TEST_CASE("a file database runs in WAL journal mode with a recorded schema version") {
  temp_dir dir;
  const auto path = dir.file("threads.db");
  thread_db db(path);
  raw_db raw(path);
  CHECK(raw.text("PRAGMA journal_mode") == "wal");
  CHECK(raw.integer("PRAGMA user_version") == 2);
}

TEST_CASE("an in-memory database works") {
  thread_db db(":memory:");
  db.create_thread("alice", "t1", "Scratch", 1);
  REQUIRE(db.append_message("alice", "t1", "user", "", "{}", 2) == append_result::appended);
  const auto history = db.history("alice", "t1", 5);
  REQUIRE(history.has_value());
  REQUIRE(history->size() == 1);
  CHECK((*history)[0].content == "{}");
  CHECK(db.list_threads("alice", 5).size() == 1);
}

TEST_CASE("opening a path in a missing directory throws thread_db_error naming the path") {
  temp_dir dir;
  const auto path = (dir.path() / "missing" / "threads.db").string();
  try {
    thread_db db(path);
    FAIL("opening should have thrown");
  } catch (const thread_db_error& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
  }
  CHECK_FALSE(fs::exists(dir.path() / "missing"));
}

TEST_CASE("opening a file that is not a database throws thread_db_error naming the path") {
  temp_dir dir;
  const auto path = dir.file("garbage.db");
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string(8192, 'x');
  }
  try {
    thread_db db(path);
    FAIL("opening should have thrown");
  } catch (const thread_db_error& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
  }
}

TEST_CASE("a database from a newer schema version is refused") {
  temp_dir dir;
  const auto path = dir.file("threads.db");
  { thread_db db(path); }
  {
    raw_db raw(path);
    raw.text("PRAGMA user_version = 99");
  }
  CHECK_THROWS_AS(thread_db{path}, thread_db_error);
}

TEST_CASE("threads are listed most recently updated first, up to the limit") {
  thread_db db(":memory:");
  db.create_thread("alice", "t1", "one", 100);
  db.create_thread("alice", "t2", "two", 200);
  db.create_thread("alice", "t3", "three", 300);
  db.create_thread("bob", "b1", "not alice's", 999);
  REQUIRE(db.append_message("alice", "t1", "user", "", "1", 400) == append_result::appended);

  const auto all = db.list_threads("alice", 10);
  REQUIRE(all.size() == 3);
  CHECK(all[0].thread_id == "t1");
  CHECK(all[1].thread_id == "t3");
  CHECK(all[2].thread_id == "t2");

  const auto two = db.list_threads("alice", 2);
  REQUIRE(two.size() == 2);
  CHECK(two[0].thread_id == "t1");
  CHECK(two[1].thread_id == "t3");

  CHECK(db.list_threads("alice", 0).empty());
  CHECK(db.list_threads("nobody", 10).empty());
}

TEST_CASE("a page of the thread list starts after its position, holds at most its limit and "
          "its bytes (the first thread always), and says whether more follow") {
  thread_db db(":memory:");
  // t0..t4 updated at the same millisecond (ordered by id), t5 later, t6 earlier; bob's own.
  for (int i = 0; i < 5; ++i)
    db.create_thread("alice", "t" + std::to_string(i), std::string(100, 'a'), 200);
  db.create_thread("alice", "t5", "late", 300);
  db.create_thread("alice", "t6", "early", 100);
  db.create_thread("bob", "t3", "not alice's", 200);
  auto ids = [](const er::actors::thread_page& p) {
    std::vector<std::string> out;
    for (auto& t : p.threads)
      out.push_back(t.thread_id);
    return out;
  };
  list_bounds b;
  b.limit = 3;
  auto first = db.list_threads("alice", b);
  CHECK(ids(first) == std::vector<std::string>{"t5", "t0", "t1"});
  CHECK(first.has_more);
  b.after = list_bounds::position{200, "t1"}; // within the tie
  auto second = db.list_threads("alice", b);
  CHECK(ids(second) == std::vector<std::string>{"t2", "t3", "t4"});
  CHECK(second.has_more);
  b.after = list_bounds::position{200, "t4"};
  auto last = db.list_threads("alice", b);
  CHECK(ids(last) == std::vector<std::string>{"t6"});
  CHECK_FALSE(last.has_more);
  b.after = list_bounds::position{100, "t6"};
  CHECK(db.list_threads("alice", b).threads.empty());
  // Bytes: two 100-byte titles do not fit in 300 bytes with their ids and keys, one does; a
  // bound below even one thread still gives the first.
  list_bounds by_bytes;
  by_bytes.limit = 100;
  by_bytes.after = list_bounds::position{300, "t5"};
  by_bytes.max_bytes = 300;
  auto one = db.list_threads("alice", by_bytes);
  CHECK(ids(one) == std::vector<std::string>{"t0"});
  CHECK(one.has_more);
  by_bytes.max_bytes = 1;
  CHECK(ids(db.list_threads("alice", by_bytes)) == std::vector<std::string>{"t0"});
  by_bytes.max_bytes = 2000;
  by_bytes.limit = 5;
  auto exact = db.list_threads("alice", by_bytes); // exactly the rest but t6: more follow
  CHECK(ids(exact) == std::vector<std::string>{"t0", "t1", "t2", "t3", "t4"});
  CHECK(exact.has_more);
}

TEST_CASE("history returns the latest messages up to the limit, oldest first") {
  thread_db db(":memory:");
  db.create_thread("alice", "t1", "long", 0);
  for (int i = 1; i <= 5; ++i)
    REQUIRE(db.append_message("alice", "t1", "user", "", std::to_string(i), i) == append_result::appended);

  const auto last_two = db.history("alice", "t1", 2);
  REQUIRE(last_two.has_value());
  REQUIRE(last_two->size() == 2);
  CHECK((*last_two)[0].seq == 4);
  CHECK((*last_two)[0].content == "4");
  CHECK((*last_two)[1].seq == 5);

  const auto none = db.history("alice", "t1", 0);
  REQUIRE(none.has_value());
  CHECK(none->empty());
  CHECK(db.history("alice", "t1", 100)->size() == 5);
}

TEST_CASE("a thread created with its first message is stored whole or not at all") {
  thread_db db(":memory:", store_quotas{2, 1000});
  auto created = db.create_thread_with_message("alice", "t1", "title", "user", "",
                                               R"({"text":"hello"})", 7);
  REQUIRE(created.has_value());
  CHECK(created->message_count == 1);
  auto history = db.history("alice", "t1", 10);
  REQUIRE(history.has_value());
  REQUIRE(history->size() == 1);
  CHECK((*history)[0].seq == 1);
  CHECK((*history)[0].content == R"({"text":"hello"})");
  CHECK(db.usage("alice").threads == 1);
  // A message past the byte quota: no thread either, and no usage counted.
  auto before = db.usage("alice");
  CHECK_FALSE(db.create_thread_with_message("alice", "t2", "title", "user", "",
                                            nlohmann::json(std::string(1000, 'x')).dump(), 8)
                .has_value());
  CHECK_FALSE(db.thread_exists("alice", "t2"));
  CHECK(db.usage("alice").threads == before.threads);
  CHECK(db.usage("alice").bytes == before.bytes);
  CHECK(db.list_threads("alice", 10).size() == 1);
  // Past the thread quota too.
  REQUIRE(db.create_thread("alice", "t3", "", 9).has_value());
  CHECK_FALSE(db.create_thread_with_message("alice", "t4", "", "user", "", "{}", 10).has_value());
  CHECK_THROWS_AS(db.create_thread_with_message("alice", "t1", "", "user", "", "{}", 11),
                  thread_db_error);
  CHECK_THROWS_AS(db.create_thread_with_message("alice", "t5", "", "user", "", "not json", 11),
                  std::invalid_argument);
}

TEST_CASE("a history page ends before before_seq, holds at most its limit and its bytes (the "
          "newest message always), and says whether older messages remain") {
  thread_db db(":memory:");
  db.create_thread("alice", "t1", "long", 0);
  for (int i = 1; i <= 6; ++i) // contents of 1,000 bytes, the fifth of 10,000
    REQUIRE(db.append_message("alice", "t1", "user", "",
                              nlohmann::json(std::string(i == 5 ? 9998 : 998, 'x')).dump(), i)
            == append_result::appended);
  auto seqs = [](const history_page& page) {
    std::vector<std::int64_t> out;
    for (auto& m : page.messages)
      out.push_back(m.seq);
    return out;
  };
  auto page = [&](std::size_t limit, std::int64_t before, std::size_t bytes) {
    auto p = db.history("alice", "t1", page_bounds{limit, before, bytes});
    REQUIRE(p.has_value());
    return *p;
  };
  auto all = page(100, 0, 1 << 20);
  CHECK(seqs(all) == std::vector<std::int64_t>{1, 2, 3, 4, 5, 6});
  CHECK_FALSE(all.has_more);
  auto by_count = page(2, 0, 1 << 20);
  CHECK(seqs(by_count) == std::vector<std::int64_t>{5, 6});
  CHECK(by_count.has_more);
  auto before = page(2, 5, 1 << 20);
  CHECK(seqs(before) == std::vector<std::int64_t>{3, 4});
  CHECK(before.has_more);
  auto first = page(2, 3, 1 << 20);
  CHECK(seqs(first) == std::vector<std::int64_t>{1, 2});
  CHECK_FALSE(first.has_more);
  CHECK(page(2, 1, 1 << 20).messages.empty());
  // 2,500 bytes: two of the small ones fit, the large one ends the page.
  auto by_bytes = page(100, 0, 2500);
  CHECK(seqs(by_bytes) == std::vector<std::int64_t>{6});
  CHECK(by_bytes.has_more);
  // The large one alone is over the bound and still comes: a page is never empty while
  // older messages remain.
  auto large = page(100, 6, 2500);
  CHECK(seqs(large) == std::vector<std::int64_t>{5});
  CHECK(large.has_more);
  auto rest = page(100, 5, 4000);
  CHECK(seqs(rest) == std::vector<std::int64_t>{2, 3, 4});
  CHECK(rest.has_more);
  CHECK_FALSE(db.history("bob", "t1", page_bounds{}).has_value()); // not bob's thread
}

TEST_CASE("content, ids and titles with quotes, unicode and SQL metacharacters round-trip intact") {
  temp_dir dir;
  const auto path = dir.file("threads.db");
  const std::string nasty = "it's \"quoted\" ; DROP TABLE messages; -- %_ \\ ' OR '1'='1"
                            " \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 \xE4\xB8\xAD\xE6\x96\x87";
  const std::string user = "u'\"; --" + nasty;
  const std::string thread = "t' OR 1=1 --\xF0\x9F\x98\x80";
  const std::string content = nlohmann::json({{"text", nasty}, {"n", 1}}).dump();
  {
    thread_db db(path);
    db.create_thread(user, thread, nasty, 10);
    REQUIRE(db.append_message(user, thread, "agent", nasty, content, 20) == append_result::appended);
  }
  thread_db db(path);
  const auto listed = db.list_threads(user, 10);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].thread_id == thread);
  CHECK(listed[0].title == nasty);
  const auto history = db.history(user, thread, 10);
  REQUIRE(history.has_value());
  REQUIRE(history->size() == 1);
  CHECK((*history)[0].content == content);
  CHECK((*history)[0].run_id == nasty);
  CHECK(nlohmann::json::parse((*history)[0].content).at("text") == nasty);
  CHECK_FALSE(db.thread_exists("u", "t"));
  CHECK(raw_db(path).integer("SELECT COUNT(*) FROM messages") == 1);
}

TEST_CASE("append rejects an unknown role or non-JSON content without writing") {
  thread_db db(":memory:");
  db.create_thread("alice", "t1", "strict", 0);
  CHECK_THROWS_AS(db.append_message("alice", "t1", "system", "", "{}", 1), std::invalid_argument);
  CHECK_THROWS_AS(db.append_message("alice", "t1", "user", "", "not json", 1), std::invalid_argument);
  CHECK_THROWS_AS(db.append_message("alice", "t1", "user", "", "", 1), std::invalid_argument);
  CHECK(db.history("alice", "t1", 10)->empty());
  CHECK(db.list_threads("alice", 1).at(0).message_count == 0);
}

TEST_CASE("creating a thread that already exists throws and keeps the original") {
  thread_db db(":memory:");
  db.create_thread("alice", "t1", "original", 100);
  CHECK_THROWS_AS(db.create_thread("alice", "t1", "impostor", 200), thread_db_error);
  CHECK_THROWS_AS(db.create_thread("", "t1", "no user", 200), std::invalid_argument);
  CHECK_THROWS_AS(db.create_thread("alice", "", "no id", 200), std::invalid_argument);
  const auto listed = db.list_threads("alice", 10);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].title == "original");
  CHECK(listed[0].created_at_ms == 100);
}

TEST_CASE("a moved thread_db keeps serving the same database") {
  thread_db first(":memory:");
  first.create_thread("alice", "t1", "moved", 1);
  thread_db second(std::move(first));
  CHECK(second.thread_exists("alice", "t1"));
  thread_db third(":memory:");
  third = std::move(second);
  CHECK(third.thread_exists("alice", "t1"));
  REQUIRE(third.append_message("alice", "t1", "user", "", "{}", 2) == append_result::appended);
}

TEST_CASE("quotas refuse a thread past max_threads and a write past max_bytes, and delete nothing") {
  temp_dir dir;
  auto path = dir.file("quota.db");
  thread_db db{path, store_quotas{2, 100}};
  REQUIRE(db.create_thread("alice", "t1", "0123456789", 1)); // 10 bytes
  REQUIRE(db.create_thread("alice", "t2", "", 2));
  CHECK_FALSE(db.create_thread("alice", "t3", "", 3)); // a third thread
  CHECK(db.usage("alice").threads == 2);
  CHECK(db.create_thread("bob", "t3", "", 3)); // another user's quota is his own
  std::string content = json_text(std::string(75, 'x')); // 86 bytes: 96 in all
  CHECK(db.append_message("alice", "t1", "user", "", content, 4) == append_result::appended);
  CHECK(db.usage("alice").bytes == 10 + content.size());
  CHECK(db.append_message("alice", "t2", "user", "", json_text("123456789"), 5)
        == append_result::quota_exceeded); // 20 more bytes: 116 > 100
  CHECK(db.append_message("alice", "t2", "user", "", "{}", 5)
        == append_result::appended); // 2 more: 98
  CHECK(db.append_message("nobody", "t1", "user", "", "{}", 6) == append_result::not_found);
  CHECK(db.history("alice", "t1", 10)->size() == 1);
  CHECK(db.history("alice", "t2", 10)->size() == 1); // the refused write left nothing behind
  CHECK(db.list_threads("alice", 10).front().message_count >= 1);
}

TEST_CASE("opening a database written before quotas existed counts what it holds") {
  temp_dir dir;
  auto path = dir.file("usage.db");
  {
    thread_db db{path};
    REQUIRE(db.create_thread("alice", "t1", "abc", 1));
    REQUIRE(db.append_message("alice", "t1", "user", "", "{}", 2) == append_result::appended);
    REQUIRE(db.create_thread("bob", "t1", "", 3));
  }
  {
    raw_db raw{path}; // back to schema version 1: no usage table
    raw.text("DROP TABLE user_usage");
    raw.text("PRAGMA user_version = 1");
  }
  thread_db reopened{path};
  CHECK(reopened.usage("alice").threads == 1);
  CHECK(reopened.usage("alice").bytes == 5); // "abc" and "{}"
  CHECK(reopened.usage("bob").threads == 1);
  CHECK(reopened.usage("nobody").threads == 0);
}
