#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace er::actors {

// Any failure of the storage itself (open, schema, I/O, lock timeout). The
// message always names the database path so logs point at the right file.
class thread_db_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct thread_info {
  std::string thread_id;
  std::string title;
  std::int64_t created_at_ms;
  std::int64_t updated_at_ms;
  std::int64_t message_count;
};

struct thread_message {
  std::int64_t seq;   // 1, 2, 3, ... within one thread
  std::string role;   // "user" or "agent"
  std::string run_id; // empty for user messages
  std::string content; // JSON text, byte-for-byte as appended
  std::int64_t created_at_ms;
};

/// Which page of a thread's history: the newest messages before `before_seq` (0: before
/// none), at most `limit` of them and at most `max_bytes` of their content and ids, of which
/// the newest message is always part however large.
struct page_bounds {
  std::size_t limit = 100;
  std::int64_t before_seq = 0;
  std::size_t max_bytes = std::numeric_limits<std::size_t>::max();
};

struct history_page {
  std::vector<thread_message> messages; // oldest first
  bool has_more = false;                // messages older than the first one remain
};

/// Which page of a user's thread list: the threads listed after `after` (most recently
/// updated first; `after` empty: from the first), at most `limit` of them and at most
/// `max_bytes` of their titles and ids, of which the first is always part.
struct list_bounds {
  std::size_t limit = 50;
  struct position {
    std::int64_t updated_at_ms = 0;
    std::string thread_id;
  };
  std::optional<position> after;
  std::size_t max_bytes = std::numeric_limits<std::size_t>::max();
};

struct thread_page {
  std::vector<thread_info> threads; // most recently updated first
  bool has_more = false;            // threads after the last one remain
};

/// Per-user storage quotas (router.max-threads-per-user, router.max-user-store-bytes). A write
/// past them is refused; nothing stored is ever deleted by a quota.
struct store_quotas {
  std::uint64_t max_threads = 1000;
  std::uint64_t max_bytes = std::uint64_t{64} << 20; ///< titles and message contents
};

/// What a user has stored.
struct user_usage {
  std::uint64_t threads = 0;
  std::uint64_t bytes = 0;
};

enum class append_result { appended, not_found, quota_exceeded };

// Conversation threads and their messages in one SQLite database.
//
// Isolation: every call is scoped by user_id. Another user's thread behaves
// exactly like a missing one (same answers, nothing written), and different
// users may use the same thread_id independently.
//
// Threading: one connection and no locking. Use it from one actor at a time;
// handing it to another thread between calls is fine, concurrent calls are not.
//
// Errors: storage failures throw thread_db_error. Caller bugs (empty ids, a
// role other than "user"/"agent", content that is not JSON) throw
// std::invalid_argument before anything is written.
class thread_db {
public:
  // Opens or creates the database; ":memory:" gives a private in-memory one.
  // File databases use WAL. Refuses files written by a newer schema version.
  explicit thread_db(const std::string& path, store_quotas quotas = {});
  ~thread_db();

  thread_db(const thread_db&) = delete;
  thread_db& operator=(const thread_db&) = delete;
  // A moved-from thread_db may only be destroyed or assigned to.
  thread_db(thread_db&&) noexcept;
  thread_db& operator=(thread_db&&) noexcept;

  // Throws thread_db_error if this user already has a thread with thread_id;
  // nullopt (nothing written) when it would exceed the user's quotas.
  std::optional<thread_info> create_thread(const std::string& user_id,
                                           const std::string& thread_id,
                                           const std::string& title, std::int64_t now_ms);

  // create_thread and append_message of its first message in one transaction: nullopt
  // (nothing written, no empty thread left behind) when the thread or the message would
  // exceed the user's quotas. Throws as both of them do.
  std::optional<thread_info> create_thread_with_message(const std::string& user_id,
                                                        const std::string& thread_id,
                                                        const std::string& title,
                                                        const std::string& role,
                                                        const std::string& run_id,
                                                        const std::string& content,
                                                        std::int64_t now_ms);

  // Most recently updated first (ties: thread_id ascending), at most `limit`.
  std::vector<thread_info> list_threads(const std::string& user_id,
                                        std::size_t limit);
  // One page within `bounds`, in the same order, and whether more threads follow.
  thread_page list_threads(const std::string& user_id, const list_bounds& bounds);

  bool thread_exists(const std::string& user_id, const std::string& thread_id);

  // nullopt when the thread is not this user's. Otherwise the latest `limit`
  // messages, oldest first (seq ascending).
  std::optional<std::vector<thread_message>>
  history(const std::string& user_id, const std::string& thread_id,
          std::size_t limit);

  // nullopt when the thread is not this user's. Otherwise the newest messages
  // within `bounds` (before its before_seq, at most its limit and max_bytes),
  // oldest first, and whether older ones remain.
  std::optional<history_page>
  history(const std::string& user_id, const std::string& thread_id,
          const page_bounds& bounds);

  // not_found when the thread is not this user's, quota_exceeded when the content
  // would take the user past max_bytes (nothing written either way). Otherwise
  // appends with the next seq and sets updated_at_ms = now_ms and bumps
  // message_count in the same transaction.
  append_result append_message(const std::string& user_id, const std::string& thread_id,
                               const std::string& role, const std::string& run_id,
                               const std::string& content, std::int64_t now_ms);

  user_usage usage(const std::string& user_id);

  const std::string& path() const noexcept { return path_; }

private:
  struct db_closer {
    void operator()(sqlite3* db) const noexcept;
  };
  struct stmt_finalizer {
    void operator()(sqlite3_stmt* stmt) const noexcept;
  };
  using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_finalizer>;

  [[noreturn]] void fail(const std::string& what) const;
  void exec(const std::string& sql, const std::string& what);
  std::string query_text(const char* sql);
  stmt_ptr prepare(const char* sql);
  void configure();
  void migrate();
  void prepare_statements();
  void add_usage(const std::string& user_id, std::uint64_t threads, std::uint64_t bytes);
  // Inside a write transaction: the thread's row (and its usage), with no check.
  void insert_thread(const std::string& user_id, const std::string& thread_id,
                     const std::string& title, std::int64_t now_ms);
  // Inside a write transaction: the thread's message count (the next message's seq) and
  // time go up; false when the thread is not this user's (nothing written).
  bool bump_thread(const std::string& user_id, const std::string& thread_id, std::int64_t now_ms);
  // Inside a write transaction, after bump_thread: the message with that seq (and its usage).
  void insert_message(const std::string& user_id, const std::string& thread_id,
                      const std::string& role, const std::string& run_id,
                      const std::string& content, std::int64_t now_ms);

  std::string path_;
  store_quotas quotas_;
  // Declared before the statements so that it is destroyed after them: every
  // cached statement is finalized before the connection closes.
  std::unique_ptr<sqlite3, db_closer> db_;
  stmt_ptr begin_deferred_;
  stmt_ptr begin_immediate_;
  stmt_ptr commit_;
  stmt_ptr rollback_;
  stmt_ptr insert_thread_;
  stmt_ptr select_threads_;
  stmt_ptr select_threads_after_;
  stmt_ptr select_thread_exists_;
  stmt_ptr bump_thread_;
  stmt_ptr insert_message_;
  stmt_ptr select_messages_;
  stmt_ptr select_usage_;
  stmt_ptr add_usage_;
};

} // namespace er::actors
