#include "actors/store/thread_db.hpp"

#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iterator>
#include <limits>
#include <utility>

namespace er::actors {

namespace {

// Long enough to ride out another process's checkpoint or write, short
// enough that a stuck lock surfaces as an error instead of a hung actor.
constexpr int busy_timeout_ms = 5000;

// migrations[v] upgrades a database from user_version v to v + 1. Append new
// steps; never edit a released one, databases in the field already ran it.
constexpr const char* migrations[] = {
  R"sql(
    CREATE TABLE threads (
      user_id       TEXT    NOT NULL,
      thread_id     TEXT    NOT NULL,
      title         TEXT    NOT NULL,
      created_at_ms INTEGER NOT NULL,
      updated_at_ms INTEGER NOT NULL,
      message_count INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (user_id, thread_id)
    ) WITHOUT ROWID;
    CREATE INDEX threads_by_user_updated
      ON threads (user_id, updated_at_ms DESC, thread_id);
    CREATE TABLE messages (
      user_id       TEXT    NOT NULL,
      thread_id     TEXT    NOT NULL,
      seq           INTEGER NOT NULL,
      role          TEXT    NOT NULL CHECK (role IN ('user', 'agent')),
      run_id        TEXT    NOT NULL,
      content       TEXT    NOT NULL,
      created_at_ms INTEGER NOT NULL,
      UNIQUE (user_id, thread_id, seq),
      FOREIGN KEY (user_id, thread_id)
        REFERENCES threads (user_id, thread_id) ON DELETE CASCADE
    );
  )sql",
  // Per-user usage, kept with every write, for the quotas: threads, and bytes of titles and
  // message contents.
  R"sql(
    CREATE TABLE user_usage (
      user_id TEXT    PRIMARY KEY,
      threads INTEGER NOT NULL,
      bytes   INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO user_usage (user_id, threads, bytes)
      SELECT user_id, COUNT(*), SUM(length(CAST(title AS BLOB))) FROM threads GROUP BY user_id;
    UPDATE user_usage SET bytes = bytes + COALESCE(
      (SELECT SUM(length(CAST(content AS BLOB))) FROM messages m
       WHERE m.user_id = user_usage.user_id), 0);
  )sql",
};

constexpr int schema_version = static_cast<int>(std::size(migrations));

std::string describe(const std::string& path, const std::string& what,
                     sqlite3* db) {
  std::string msg = "thread_db '" + path + "': " + what;
  if (db != nullptr)
    msg += ": " + std::string(sqlite3_errmsg(db)) + " (sqlite code "
           + std::to_string(sqlite3_extended_errcode(db)) + ")";
  return msg;
}

[[noreturn]] void raise(const std::string& path, const std::string& what,
                        sqlite3* db) {
  throw thread_db_error(describe(path, what, db));
}

/// What a history message takes in a reply beyond its content and run id: its keys, seq,
/// role and time.
constexpr std::size_t message_overhead_bytes = 96;

/// What a listed thread takes in a reply beyond its title and id: its keys, times and count.
constexpr std::size_t thread_overhead_bytes = 128;

std::int64_t clamp_limit(std::size_t limit) {
  constexpr auto max = static_cast<std::uint64_t>(
    std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(
    std::min<std::uint64_t>(static_cast<std::uint64_t>(limit), max));
}

/// A page's row count to select: one more than its limit, to tell whether others follow.
std::int64_t limit_with_probe(std::size_t limit) {
  constexpr auto no_bound = std::numeric_limits<std::int64_t>::max();
  auto clamped = clamp_limit(limit);
  return clamped < no_bound ? clamped + 1 : clamped;
}

/// Whether a page of `rows` rows is full before the next one, with which it would take `bytes`
/// (its first row always goes in, however large).
bool page_full(std::size_t rows, std::size_t bytes, std::size_t limit, std::size_t max_bytes) {
  return rows == limit || (bytes > max_bytes && rows > 0);
}

// One use of a cached statement. Binds parameters in order and, when the use
// ends, resets it and drops the bindings: a cached statement left mid-step
// would keep a read snapshot open, and SQLITE_STATIC bindings must not
// outlive the caller's strings.
class statement_use {
public:
  statement_use(sqlite3_stmt* stmt, const std::string& path)
    : stmt_(stmt), path_(path) {}
  ~statement_use() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  statement_use(const statement_use&) = delete;
  statement_use& operator=(const statement_use&) = delete;

  statement_use& text(const std::string& value) {
    check(sqlite3_bind_text64(stmt_, ++index_, value.data(), value.size(),
                              SQLITE_STATIC, SQLITE_UTF8));
    return *this;
  }
  statement_use& integer(std::int64_t value) {
    check(sqlite3_bind_int64(stmt_, ++index_, value));
    return *this;
  }
  // true while a row is available, false when done.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW)
      return true;
    if (rc == SQLITE_DONE)
      return false;
    raise(path_, std::string("executing '") + sqlite3_sql(stmt_) + "'",
          sqlite3_db_handle(stmt_));
  }
  std::int64_t integer_at(int column) const {
    return sqlite3_column_int64(stmt_, column);
  }
  std::string text_at(int column) const {
    // Text before bytes: the conversion to UTF-8 may change the byte count.
    const auto* data = sqlite3_column_text(stmt_, column);
    const auto size = static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column));
    return data == nullptr ? std::string()
                           : std::string(reinterpret_cast<const char*>(data), size);
  }

private:
  void check(int rc) const {
    if (rc != SQLITE_OK)
      raise(path_, "binding a parameter", sqlite3_db_handle(stmt_));
  }

  sqlite3_stmt* stmt_;
  const std::string& path_;
  int index_ = 0;
};

// Rolls back unless commit() succeeded, so an early return or an exception
// never leaves a transaction (and its lock) open on the shared connection.
class transaction {
public:
  transaction(sqlite3_stmt* begin, sqlite3_stmt* commit, sqlite3_stmt* rollback,
              const std::string& path)
    : commit_(commit), rollback_(rollback), path_(path) {
    statement_use(begin, path_).step();
  }
  ~transaction() {
    if (open_ && sqlite3_get_autocommit(sqlite3_db_handle(rollback_)) == 0) {
      sqlite3_step(rollback_); // best effort; a destructor must not throw
      sqlite3_reset(rollback_);
    }
  }
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  void commit() {
    statement_use(commit_, path_).step();
    open_ = false;
  }

private:
  sqlite3_stmt* commit_;
  sqlite3_stmt* rollback_;
  const std::string& path_;
  bool open_ = true;
};

bool is_in_memory(const std::string& path) {
  // "" is SQLite's private temporary database; neither can use WAL.
  return path == ":memory:" || path.empty();
}

void require_non_empty(const std::string& value, const char* name) {
  if (value.empty())
    throw std::invalid_argument(std::string("thread_db: ") + name
                                + " must not be empty");
}

void check_message(const std::string& role, const std::string& content) {
  if (role != "user" && role != "agent")
    throw std::invalid_argument("thread_db: role must be \"user\" or \"agent\", got \""
                                + role + "\"");
  // Content is later spliced into outgoing JSON frames; reject it here
  // rather than let one bad row break every future history reply.
  if (!nlohmann::json::accept(content))
    throw std::invalid_argument("thread_db: message content is not valid JSON");
}

} // namespace

void thread_db::db_closer::operator()(sqlite3* db) const noexcept {
  // close_v2 defers the close until the last statement is finalized, so
  // even an unusual destruction order cannot leak or crash.
  sqlite3_close_v2(db);
}

void thread_db::stmt_finalizer::operator()(sqlite3_stmt* stmt) const noexcept {
  sqlite3_finalize(stmt);
}

thread_db::thread_db(const std::string& path, store_quotas quotas)
  : path_(path), quotas_(quotas) {
  if (path.find('\0') != std::string::npos)
    raise(path_, "path contains a NUL byte", nullptr);
  // NOMUTEX: the class contract already forbids concurrent use, so SQLite's
  // per-call mutex would only cost time.
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                    | SQLITE_OPEN_NOMUTEX;
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  db_.reset(raw); // SQLite returns a handle even on failure; it must be closed
  if (rc != SQLITE_OK)
    fail("cannot open database");
  sqlite3_extended_result_codes(db_.get(), 1);
  sqlite3_busy_timeout(db_.get(), busy_timeout_ms);
  configure();
  begin_deferred_ = prepare("BEGIN DEFERRED");
  begin_immediate_ = prepare("BEGIN IMMEDIATE");
  commit_ = prepare("COMMIT");
  rollback_ = prepare("ROLLBACK");
  migrate();
  prepare_statements();
}

thread_db::~thread_db() = default;
thread_db::thread_db(thread_db&&) noexcept = default;
thread_db& thread_db::operator=(thread_db&&) noexcept = default;

void thread_db::fail(const std::string& what) const {
  raise(path_, what, db_.get());
}

void thread_db::exec(const std::string& sql, const std::string& what) {
  if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
    fail(what);
}

std::string thread_db::query_text(const char* sql) {
  auto stmt = prepare(sql);
  statement_use use(stmt.get(), path_);
  return use.step() ? use.text_at(0) : std::string();
}

thread_db::stmt_ptr thread_db::prepare(const char* sql) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &raw,
                         nullptr)
      != SQLITE_OK)
    fail(std::string("preparing '") + sql + "'");
  return stmt_ptr(raw);
}

void thread_db::configure() {
  // Opening is lazy: a file that is not a database, or cannot be read, is
  // first noticed by the journal_mode switch (or by migrate() in memory).
  exec("PRAGMA foreign_keys = ON", "enabling foreign keys");
  if (query_text("PRAGMA foreign_keys") != "1")
    fail("this SQLite build cannot enforce foreign keys");
  if (is_in_memory(path_))
    return;
  const auto mode = query_text("PRAGMA journal_mode = WAL");
  if (mode != "wal")
    raise(path_, "cannot enable WAL journal mode (still '" + mode + "')",
          nullptr);
  // In WAL mode NORMAL cannot corrupt the database; it only risks the last
  // commits on power loss, not on a process crash.
  exec("PRAGMA synchronous = NORMAL", "setting synchronous = NORMAL");
}

void thread_db::migrate() {
  // IMMEDIATE: two processes opening a fresh file must not both run step 0.
  transaction tx(begin_immediate_.get(), commit_.get(), rollback_.get(), path_);
  const int current = std::stoi(query_text("PRAGMA user_version"));
  if (current > schema_version)
    raise(path_,
          "schema version " + std::to_string(current)
            + " is newer than this build supports ("
            + std::to_string(schema_version) + ")",
          nullptr);
  for (int version = current; version < schema_version; ++version)
    exec(migrations[version],
         "migrating schema to version " + std::to_string(version + 1));
  // PRAGMA takes no bound parameters; the value is our own constant.
  if (current != schema_version)
    exec("PRAGMA user_version = " + std::to_string(schema_version),
         "recording schema version");
  tx.commit();
}

void thread_db::prepare_statements() {
  insert_thread_ = prepare(
    "INSERT INTO threads (user_id, thread_id, title, created_at_ms,"
    " updated_at_ms, message_count) VALUES (?, ?, ?, ?, ?, 0)");
  select_threads_ = prepare(
    "SELECT thread_id, title, created_at_ms, updated_at_ms, message_count"
    " FROM threads WHERE user_id = ?"
    " ORDER BY updated_at_ms DESC, thread_id ASC LIMIT ?");
  select_threads_after_ = prepare(
    "SELECT thread_id, title, created_at_ms, updated_at_ms, message_count"
    " FROM threads WHERE user_id = ?1"
    " AND (updated_at_ms < ?2 OR (updated_at_ms = ?2 AND thread_id > ?3))"
    " ORDER BY updated_at_ms DESC, thread_id ASC LIMIT ?4");
  select_thread_exists_ = prepare(
    "SELECT 1 FROM threads WHERE user_id = ? AND thread_id = ?");
  bump_thread_ = prepare(
    "UPDATE threads SET message_count = message_count + 1, updated_at_ms = ?"
    " WHERE user_id = ? AND thread_id = ?");
  // Takes seq from the counter bumped just before in the same transaction,
  // so seq is dense per thread without a MAX() scan.
  insert_message_ = prepare(
    "INSERT INTO messages (user_id, thread_id, seq, role, run_id, content,"
    " created_at_ms)"
    " SELECT user_id, thread_id, message_count, ?, ?, ?, ? FROM threads"
    " WHERE user_id = ? AND thread_id = ?");
  select_messages_ = prepare(
    "SELECT seq, role, run_id, content, created_at_ms FROM messages"
    " WHERE user_id = ? AND thread_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?");
  select_usage_ = prepare("SELECT threads, bytes FROM user_usage WHERE user_id = ?");
  add_usage_ = prepare(
    "INSERT INTO user_usage (user_id, threads, bytes) VALUES (?, ?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET threads = threads + excluded.threads,"
    " bytes = bytes + excluded.bytes");
}

user_usage thread_db::usage(const std::string& user_id) {
  statement_use select(select_usage_.get(), path_);
  select.text(user_id);
  if (!select.step())
    return {};
  return user_usage{static_cast<std::uint64_t>(select.integer_at(0)),
                    static_cast<std::uint64_t>(select.integer_at(1))};
}

void thread_db::add_usage(const std::string& user_id, std::uint64_t threads,
                          std::uint64_t bytes) {
  statement_use upsert(add_usage_.get(), path_);
  upsert.text(user_id).integer(static_cast<std::int64_t>(threads))
    .integer(static_cast<std::int64_t>(bytes));
  upsert.step();
}

void thread_db::insert_thread(const std::string& user_id, const std::string& thread_id,
                              const std::string& title, std::int64_t now_ms) {
  {
    statement_use insert(insert_thread_.get(), path_);
    insert.text(user_id).text(thread_id).text(title).integer(now_ms).integer(now_ms);
    insert.step();
  }
  add_usage(user_id, 1, title.size());
}

std::optional<thread_info> thread_db::create_thread(const std::string& user_id,
                                                    const std::string& thread_id,
                                                    const std::string& title,
                                                    std::int64_t now_ms) {
  require_non_empty(user_id, "user_id");
  require_non_empty(thread_id, "thread_id");
  // IMMEDIATE: the quota check and the write see the same usage, even with a second process.
  transaction tx(begin_immediate_.get(), commit_.get(), rollback_.get(), path_);
  if (thread_exists(user_id, thread_id))
    raise(path_, "thread '" + thread_id + "' already exists for this user",
          nullptr);
  auto used = usage(user_id);
  if (used.threads + 1 > quotas_.max_threads || used.bytes + title.size() > quotas_.max_bytes)
    return std::nullopt;
  insert_thread(user_id, thread_id, title, now_ms);
  tx.commit();
  return thread_info{thread_id, title, now_ms, now_ms, 0};
}

std::optional<thread_info> thread_db::create_thread_with_message(
  const std::string& user_id, const std::string& thread_id, const std::string& title,
  const std::string& role, const std::string& run_id, const std::string& content,
  std::int64_t now_ms) {
  require_non_empty(user_id, "user_id");
  require_non_empty(thread_id, "thread_id");
  check_message(role, content);
  transaction tx(begin_immediate_.get(), commit_.get(), rollback_.get(), path_);
  if (thread_exists(user_id, thread_id))
    raise(path_, "thread '" + thread_id + "' already exists for this user",
          nullptr);
  auto used = usage(user_id);
  if (used.threads + 1 > quotas_.max_threads
      || used.bytes + title.size() + content.size() > quotas_.max_bytes)
    return std::nullopt;
  insert_thread(user_id, thread_id, title, now_ms);
  bump_thread(user_id, thread_id, now_ms);
  insert_message(user_id, thread_id, role, run_id, content, now_ms);
  tx.commit();
  return thread_info{thread_id, title, now_ms, now_ms, 1};
}

std::vector<thread_info> thread_db::list_threads(const std::string& user_id,
                                                 std::size_t limit) {
  list_bounds bounds;
  bounds.limit = limit;
  return list_threads(user_id, bounds).threads;
}

thread_page thread_db::list_threads(const std::string& user_id, const list_bounds& bounds) {
  thread_page page;
  if (bounds.limit == 0)
    return page;
  statement_use select(bounds.after ? select_threads_after_.get() : select_threads_.get(), path_);
  select.text(user_id);
  if (bounds.after)
    select.integer(bounds.after->updated_at_ms).text(bounds.after->thread_id);
  select.integer(limit_with_probe(bounds.limit));
  std::size_t bytes = 0;
  while (select.step()) {
    thread_info t{select.text_at(0), select.text_at(1), select.integer_at(2),
                  select.integer_at(3), select.integer_at(4)};
    bytes += t.thread_id.size() + t.title.size() + thread_overhead_bytes;
    if (page_full(page.threads.size(), bytes, bounds.limit, bounds.max_bytes)) {
      page.has_more = true;
      break;
    }
    page.threads.push_back(std::move(t));
  }
  return page;
}

bool thread_db::thread_exists(const std::string& user_id,
                              const std::string& thread_id) {
  statement_use select(select_thread_exists_.get(), path_);
  select.text(user_id).text(thread_id);
  return select.step();
}

std::optional<std::vector<thread_message>>
thread_db::history(const std::string& user_id, const std::string& thread_id,
                   std::size_t limit) {
  page_bounds bounds;
  bounds.limit = limit;
  auto page = history(user_id, thread_id, bounds);
  if (!page)
    return std::nullopt;
  return std::move(page->messages);
}

std::optional<history_page>
thread_db::history(const std::string& user_id, const std::string& thread_id,
                   const page_bounds& bounds) {
  // One read snapshot, so the ownership check and the rows agree even if
  // another process appends in between.
  transaction tx(begin_deferred_.get(), commit_.get(), rollback_.get(), path_);
  if (!thread_exists(user_id, thread_id))
    return std::nullopt;
  history_page page;
  if (bounds.limit == 0)
    return page;
  {
    statement_use select(select_messages_.get(), path_);
    select.text(user_id).text(thread_id)
      .integer(bounds.before_seq > 0 ? bounds.before_seq
                                     : std::numeric_limits<std::int64_t>::max())
      .integer(limit_with_probe(bounds.limit));
    std::size_t bytes = 0;
    while (select.step()) {
      thread_message m{select.integer_at(0), select.text_at(1), select.text_at(2),
                       select.text_at(3), select.integer_at(4)};
      bytes += m.content.size() + m.run_id.size() + message_overhead_bytes;
      if (page_full(page.messages.size(), bytes, bounds.limit, bounds.max_bytes)) {
        page.has_more = true;
        break;
      }
      page.messages.push_back(std::move(m));
    }
  }
  tx.commit();
  // Selected newest first so the page ends at the latest; callers want append order.
  std::reverse(page.messages.begin(), page.messages.end());
  return page;
}

bool thread_db::bump_thread(const std::string& user_id, const std::string& thread_id,
                            std::int64_t now_ms) {
  {
    statement_use bump(bump_thread_.get(), path_);
    bump.integer(now_ms).text(user_id).text(thread_id);
    bump.step();
  }
  return sqlite3_changes(db_.get()) != 0;
}

void thread_db::insert_message(const std::string& user_id, const std::string& thread_id,
                               const std::string& role, const std::string& run_id,
                               const std::string& content, std::int64_t now_ms) {
  {
    statement_use insert(insert_message_.get(), path_);
    insert.text(role).text(run_id).text(content).integer(now_ms)
      .text(user_id).text(thread_id);
    insert.step();
  }
  add_usage(user_id, 0, content.size());
}

append_result thread_db::append_message(const std::string& user_id,
                                        const std::string& thread_id,
                                        const std::string& role,
                                        const std::string& run_id,
                                        const std::string& content,
                                        std::int64_t now_ms) {
  check_message(role, content);
  transaction tx(begin_immediate_.get(), commit_.get(), rollback_.get(), path_);
  if (!bump_thread(user_id, thread_id, now_ms))
    return append_result::not_found; // not this user's thread; nothing written
  if (usage(user_id).bytes + content.size() > quotas_.max_bytes)
    return append_result::quota_exceeded; // tx rolls back the bump
  insert_message(user_id, thread_id, role, run_id, content, now_ms);
  tx.commit();
  return append_result::appended;
}

} // namespace er::actors
