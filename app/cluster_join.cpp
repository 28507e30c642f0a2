#include "app/cluster_join.hpp"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

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

using context_ptr = std::unique_ptr<redisContext, context_free>;

void say_unanswered(const actors::redis_address& shard, const char* why, const char* consequence) {
  std::cerr << "event-router: redis " << shard.text() << " does not answer (" << why << "): "
            << consequence << std::endl;
}

/// A blocking client of `shard`, authenticated, with cluster.redis-timeout-ms on every step (a
/// stopped Redis accepts and answers nothing); null, after saying why, when it does not answer.
/// Start-up and the end, when no io thread serves: a blocking client is the simple tool there.
context_ptr connect_shard(const actors::cluster_settings& cluster,
                          const actors::redis_address& shard, const char* consequence,
                          std::chrono::milliseconds limit = std::chrono::milliseconds::max()) {
  auto ms = std::min(cluster.redis_timeout, limit).count();
  timeval timeout{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
  auto unanswered = [&](const char* why) { say_unanswered(shard, why, consequence); };
  context_ptr c{redisConnectWithTimeout(shard.host.c_str(), shard.port, timeout)};
  if (!c || c->err) {
    unanswered(c ? c->errstr : "out of memory");
    return nullptr;
  }
  redisSetTimeout(c.get(), timeout);
  if (!cluster.password.empty()) {
    auto auth = command(c.get(), {"AUTH", cluster.password});
    if (!auth) {
      unanswered(c->errstr);
      return nullptr;
    }
    if (auth->type == REDIS_REPLY_ERROR)
      throw config_error("cluster.redis-password: redis " + shard.text() + " refused AUTH");
  }
  return c;
}

std::string node_key(const actors::cluster_settings& cluster) {
  return cluster.prefix + "node:" + cluster.node_id;
}

} // namespace

void claim_node_id(const actors::cluster_settings& cluster) {
  // A node that ended a moment ago may still hold the key: one that stopped cleanly released
  // it (release_node_id), one that crashed (a restart after a fault, by systemd) holds it until
  // it expires, at most its node-ttl-ms (which may differ from ours) after its last refresh. A
  // live node refreshes it before that, so the key's time to live grows again: that is refused
  // at once. A key that only runs down is waited for, until its time to live as first read
  // (or our own node-ttl-ms, whichever is longer) has passed.
  using clock = std::chrono::steady_clock;
  static constexpr auto margin = std::chrono::milliseconds{500};
  const char* registers_later = "this node registers there once it does";
  auto live_node = [&](const actors::redis_address& shard) {
    return config_error("router.server-id \"" + cluster.node_id
                        + "\" is the id of a live node of the cluster (redis " + shard.text()
                        + "): every node needs its own");
  };
  for (auto& shard : cluster.shards) {
    auto c = connect_shard(cluster, shard, registers_later);
    if (!c)
      continue;
    auto deadline = clock::now() + cluster.node_ttl + margin;
    std::optional<long long> last_ttl; ///< the key's PTTL at the previous try
    for (;;) {
      auto set = command(c.get(), {"SET", node_key(cluster), cluster.incarnation, "PX",
                                   std::to_string(cluster.node_ttl.count()), "NX"});
      if (!set) {
        say_unanswered(shard, c->errstr, registers_later);
        break;
      }
      if (set->type == REDIS_REPLY_ERROR) { // -LOADING: a Redis that restarts from a snapshot
        std::cerr << "event-router: redis " << shard.text() << ": " << set->str << ": "
                  << registers_later << std::endl;
        break;
      }
      if (set->type != REDIS_REPLY_NIL)
        break;
      auto pttl = command(c.get(), {"PTTL", node_key(cluster)});
      if (!pttl) {
        say_unanswered(shard, c->errstr, registers_later);
        break;
      }
      // -2: gone since the SET (try again at once); -1: no expiry, which no node sets.
      auto ttl = pttl->type == REDIS_REPLY_INTEGER ? pttl->integer : -1;
      if (ttl == -2)
        continue;
      if (ttl == -1 || (last_ttl && ttl > *last_ttl + 50)) // refreshed since the last try
        throw live_node(shard);
      if (!last_ttl) {
        deadline = std::max(deadline, clock::now() + std::chrono::milliseconds{ttl} + margin);
        std::cerr << "event-router: router.server-id \"" << cluster.node_id
                  << "\" is held on redis " << shard.text() << ": waiting up to "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now())
                       .count()
                  << " ms for it to expire (a node that just ended), unless a live node refreshes it"
                  << std::endl;
      }
      last_ttl = ttl;
      if (clock::now() >= deadline)
        throw live_node(shard);
      std::this_thread::sleep_for(std::chrono::milliseconds{100});
    }
  }
}

void release_node_id(const actors::cluster_settings& cluster) {
  static constexpr const char* if_ours =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
  // At most a second per shard (the stop has its own deadline), and nothing thrown: at worst
  // the key expires by itself.
  for (auto& shard : cluster.shards) {
    try {
      if (auto c = connect_shard(cluster, shard, "this node's id stays taken until it expires",
                                 std::chrono::milliseconds{1000}))
        command(c.get(), {"EVAL", if_ours, "1", node_key(cluster), cluster.incarnation});
    } catch (const std::exception& e) {
      std::cerr << "event-router: redis " << shard.text() << ": " << e.what()
                << ": this node's id stays taken until it expires" << std::endl;
    }
  }
}

} // namespace er::app
