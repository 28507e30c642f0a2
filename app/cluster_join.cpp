#include "app/cluster_join.hpp"

#include <iostream>
#include <memory>

extern "C" {
#include <hiredis/hiredis.h>
}

#include "app/config.hpp"

namespace er::app {

namespace {

struct context_free {
  void operator()(redisContext* c) const noexcept {
    redisFree(c);
  }
};
struct reply_free {
  void operator()(redisReply* r) const noexcept {
    freeReplyObject(r);
  }
};
using reply_ptr = std::unique_ptr<redisReply, reply_free>;

reply_ptr command(redisContext* c, const std::vector<std::string>& argv) {
  std::vector<const char*> args;
  std::vector<std::size_t> lengths;
  for (auto& a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  return reply_ptr{static_cast<redisReply*>(
    redisCommandArgv(c, static_cast<int>(args.size()), args.data(), lengths.data()))};
}

} // namespace

void claim_node_id(const actors::cluster_settings& cluster) {
  auto ms = cluster.redis_timeout.count();
  timeval timeout{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
  for (auto& shard : cluster.shards) {
    auto unanswered = [&](const char* why) {
      std::cerr << "event-router: redis " << shard.text() << " does not answer (" << why
                << "): this node registers there once it does" << std::endl;
    };
    // Start-up, before any io thread serves: a blocking client is the simple tool here, with
    // cluster.redis-timeout-ms on every step (a stopped Redis accepts and answers nothing).
    std::unique_ptr<redisContext, context_free> c{
      redisConnectWithTimeout(shard.host.c_str(), shard.port, timeout)};
    if (!c || c->err) {
      unanswered(c ? c->errstr : "out of memory");
      continue;
    }
    redisSetTimeout(c.get(), timeout);
    if (!cluster.password.empty()) {
      auto auth = command(c.get(), {"AUTH", cluster.password});
      if (!auth) {
        unanswered(c->errstr);
        continue;
      }
      if (auth->type == REDIS_REPLY_ERROR)
        throw config_error("cluster.redis-password: redis " + shard.text() + " refused AUTH");
    }
    auto key = cluster.prefix + "node:" + cluster.node_id;
    auto set = command(c.get(), {"SET", key, cluster.incarnation, "PX",
                                 std::to_string(cluster.node_ttl.count()), "NX"});
    if (!set)
      unanswered(c->errstr);
    else if (set->type == REDIS_REPLY_NIL)
      throw config_error("router.server-id \"" + cluster.node_id
                         + "\" is the id of a live node of the cluster (redis " + shard.text()
                         + "): every node needs its own");
  }
}

} // namespace er::app
