// UserExecutionContext, ids and token carriers (DESIGN §2, §3).

#include <regex>
#include <set>

#include <doctest/doctest.h>

#include "context/ids.hpp"
#include "context/token_source.hpp"
#include "context/user_execution_context.hpp"

using namespace er::context;

TEST_CASE("server-minted ids are 128 random bits in hex with their kind's prefix, never repeated") {
  std::set<std::string> seen;
  const std::regex shape{"^r-[0-9a-f]{32}$"};
  for (int i = 0; i < 10000; ++i) {
    auto id = random_id(id_prefix::run);
    CHECK(std::regex_match(id, shape));
    CHECK(seen.insert(id).second);
  }
}

TEST_CASE("a context refuses placeholder user ids") {
  for (auto bad : {"", "  ", "default", "Anonymous", "null", "undefined", "none", "guest", "0"})
    CHECK_THROWS_AS(user_execution_context::for_connection(bad, "127.0.0.1"), invalid_user_id);
  CHECK_NOTHROW(user_execution_context::for_connection("alice", "127.0.0.1"));
}

TEST_CASE("derived contexts keep the identity and never change the original") {
  auto ctx = user_execution_context::for_connection("alice", "127.0.0.9");
  auto run = ctx.with_thread("t-1").with_run("r-1").with_request("q-1");
  CHECK(run.user_id() == "alice");
  CHECK(run.connection_id() == ctx.connection_id());
  CHECK(run.session_id() == ctx.session_id());
  CHECK(run.thread_id() == "t-1");
  CHECK(run.run_id() == "r-1");
  CHECK(run.request_id() == "q-1");
  CHECK(ctx.run_id().empty());
  CHECK(ctx.thread_id().empty());
  CHECK(ctx.client_address() == "127.0.0.9");
  // Siblings derived from one context do not see each other's ids.
  auto in_thread = ctx.with_thread("t-2");
  auto first = in_thread.with_run("r-2");
  auto second = in_thread.with_run("r-3").with_request("q-3");
  CHECK(in_thread.run_id().empty());
  CHECK(first.run_id() == "r-2");
  CHECK(first.request_id().empty());
  CHECK(second.run_id() == "r-3");
  CHECK(second.thread_id() == "t-2");
  CHECK(second.request_id() == "q-3");
  CHECK(ctx.request_id().empty());
}

TEST_CASE("token carriers are read in the documented order") {
  auto from_protocol = extract_token({"router.v1, jwt.AAA", "Bearer BBB", "/ws?token=CCC"});
  CHECK(from_protocol.token == "AAA");
  CHECK(from_protocol.carrier == token_carrier::subprotocol);
  CHECK(from_protocol.offers_protocol);
  auto from_header = extract_token({"router.v1", "bearer BBB", "/ws?token=CCC"});
  CHECK(from_header.token == "BBB");
  CHECK(from_header.carrier == token_carrier::authorization_header);
  auto from_query = extract_token({"", "Basic xyz", "/ws?a=1&token=C%2DC&b=2"});
  CHECK(from_query.token == "C-C");
  CHECK(from_query.carrier == token_carrier::query);
  CHECK_FALSE(from_query.offers_protocol);
  auto none = extract_token({"", "", "/ws"});
  CHECK(none.token.empty());
  CHECK_FALSE(none.carrier.has_value());
}

TEST_CASE("query parameters are percent-decoded and absent ones are nullopt") {
  CHECK(query_parameter("/ws?resume=rt-1&last_event_id=42", "last_event_id") == "42");
  CHECK(query_parameter("/ws?x=%41%42", "x") == "AB");
  CHECK(query_parameter("/ws?x=a+b%2Bc", "x") == "a b+c"); // form encoding: + is a space
  CHECK(percent_decode("a+b%2Bc%40d") == "a+b+c@d");        // a path: + is a plus
  CHECK(percent_decode("%4") == "%4");                      // not an escape: kept
  CHECK_FALSE(query_parameter("/ws?x=1", "y").has_value());
  CHECK_FALSE(query_parameter("/ws", "x").has_value());
  CHECK(target_path("/ws?x=1") == "/ws");
}
