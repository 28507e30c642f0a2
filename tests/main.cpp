// The suite's entry point. A run whose filters match no test case fails: CTest runs each case
// by its name, and a name the filter cannot match (CTest cuts names at ';') would otherwise
// pass without running anything.

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <iostream>

namespace {

/// Whether test cases were run (not only listed), and how many passed the filters.
struct run_record {
  bool ran = false;
  unsigned matched = 0;
};

run_record& last_run() {
  static run_record record;
  return record;
}

/// Remembers how many test cases passed the filters.
struct match_counter : doctest::IReporter {
  explicit match_counter(const doctest::ContextOptions&) {
  }
  void report_query(const doctest::QueryData&) override {
  }
  void test_run_start() override {
  }
  void test_run_end(const doctest::TestRunStats& stats) override {
    last_run() = run_record{true, stats.numTestCasesPassingFilters};
  }
  void test_case_start(const doctest::TestCaseData&) override {
  }
  void test_case_reenter(const doctest::TestCaseData&) override {
  }
  void test_case_end(const doctest::CurrentTestCaseStats&) override {
  }
  void test_case_exception(const doctest::TestCaseException&) override {
  }
  void subcase_start(const doctest::SubcaseSignature&) override {
  }
  void subcase_end() override {
  }
  void log_assert(const doctest::AssertData&) override {
  }
  void log_message(const doctest::MessageData&) override {
  }
  void test_case_skipped(const doctest::TestCaseData&) override {
  }
};

REGISTER_LISTENER("match_counter", 1, match_counter);

} // namespace

int main(int argc, char** argv) {
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  int result = context.run();
  if (context.shouldExit() || result != 0)
    return result;
  if (last_run().ran && last_run().matched == 0) {
    std::cerr << "no test case matched the filters\n";
    return 3;
  }
  return result;
}
