#pragma once
// The cluster bus (DESIGN §11): the router's link to the other nodes, through Redis, when
// cluster.redis is set. A child of the router, it is the only actor that talks to Redis:
//  - while this node holds a session of a user, it subscribes to the user's channel and hands
//    what arrives to the router (a backend's event, a disconnect), in offset order; a gap it
//    cannot fill from the user's history closes the user's sessions here with 4010;
//  - a publish or a disconnect on this node is one Lua script on the user's shard, which
//    reaches every node subscribed to the user (this one included);
//  - the per-user connection limit is checked against every live node's count, atomically;
//  - it keeps this node's liveness key on every shard, and reconnects, re-registers,
//    re-subscribes and recovers gaps by itself when Redis comes back;
//  - it carries the steps of a session moving to another node, and of the runs that session
//    left behind (peer_notes.hpp), on the nodes' own channels: a resume that reaches this node
//    for a session held by another asks that node, waits for its offer (or ends the question
//    when it takes too long or that node is not alive) and confirms the adoption.
// Users are spread over several Redis shards by a jump consistent hash of the user id.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/local_actor.hpp>
#include <caf/typed_actor.hpp>

#include "actors/message_types.hpp"
#include "actors/metrics.hpp"
#include "actors/router/cluster/peer_notes.hpp"
#include "actors/router/cluster/redis_link.hpp"

namespace boost::asio {
class io_context;
}

namespace er::actors {

using presence_atom = caf::atom_constant<caf::atom("presence")>; ///< router -> bus
using acquire_atom = caf::atom_constant<caf::atom("acquire")>;   ///< router -> bus
using reserve_atom = caf::atom_constant<caf::atom("reserve")>;   ///< router -> bus
using settle_atom = caf::atom_constant<caf::atom("settle")>;     ///< router -> bus
using cpublish_atom = caf::atom_constant<caf::atom("cpublish")>; ///< router -> bus
using cdisconn_atom = caf::atom_constant<caf::atom("cdisconn")>; ///< router -> bus
using remote_atom = caf::atom_constant<caf::atom("remote")>;     ///< bus -> router
using lost_atom = caf::atom_constant<caf::atom("lost")>;         ///< bus -> router
using status_atom = caf::atom_constant<caf::atom("status")>;     ///< bus -> router
using link_atom = caf::atom_constant<caf::atom("link")>;         ///< redis links -> bus
using message_atom = caf::atom_constant<caf::atom("message")>;   ///< redis links -> bus
using subscribed_atom = caf::atom_constant<caf::atom("subscrbd")>; ///< redis links -> bus
using tick_atom = caf::atom_constant<caf::atom("tick")>;         ///< bus -> itself
using reply_atom = caf::atom_constant<caf::atom("reply")>;       ///< redis links -> bus
using adopt_atom = caf::atom_constant<caf::atom("adopt")>;       ///< router -> bus
using peer_atom = caf::atom_constant<caf::atom("peer")>;         ///< router <-> bus
using hotimeout_atom = caf::atom_constant<caf::atom("hotimeout")>; ///< bus -> itself

struct cluster_settings {
  std::vector<redis_address> shards; ///< cluster.redis
  std::string password;              ///< cluster.redis-password
  std::string prefix = "er:";        ///< cluster.prefix
  std::chrono::milliseconds node_ttl{5000};
  std::chrono::milliseconds redis_timeout{2000}; ///< cluster.redis-timeout-ms (redis_link.hpp)
  std::size_t history_size = 1000;          ///< cluster.history-size
  std::chrono::milliseconds history_ttl{600000}; ///< cluster.history-ttl-ms
  std::string node_id;     ///< router.server-id
  std::string incarnation; ///< random, per process start
  boost::asio::io_context* io = nullptr;
  std::shared_ptr<router_metrics> metrics; ///< may be null
};

/// What the bus reports for /healthz.
struct cluster_status {
  std::string node_id;
  std::uint64_t nodes = 0; ///< live nodes, this one included
  bool redis_up = false;   ///< every shard answers
};

/// A publish or disconnect through the cluster: the connections it reached, or unavailable.
struct cluster_result {
  bool available = true;
  std::uint64_t connections = 0;
};

/// The answer to acquire. An admitted connection of a user this node already follows is owed
/// what the node handed its router after the connection was counted and before the answer
/// (the answer comes on the command link, the user's channel on the subscriber link, in
/// either order): those events, `owed`, go to its manager before anything newer. Among them a
/// disconnect (`disconnected`: it closes with 4511 after them), or a history that no longer
/// held them (`lost`: it closes with 4010).
struct admission {
  bool admitted = false;
  std::vector<protocol::outbound_event> owed;
  bool disconnected = false;
  bool lost = false;
};

/// What the bus tells the router.
using cluster_feedback = caf::typed_actor<
  // a backend's event for the user's sessions on this node, in the user's offset order
  caf::reacts_to<remote_atom, std::string, protocol::outbound_event>,
  // close the user's sessions on this node with this code (4511 disconnect, 4010 state lost)
  caf::reacts_to<lost_atom, std::string, std::uint16_t>,
  caf::reacts_to<status_atom, cluster_status>,
  // a step of a hand-over from another node (never an offer: the bus answers adopt with it)
  caf::reacts_to<peer_atom, peer_note>>;

using cluster_bus_actor = caf::typed_actor<
  // this node holds `n` open connections of the user (and some session of it while n >= 0;
  // -1: no session of the user left here): keeps the counts and the subscription. `settles`:
  // the connection it adds is a place acquire or reserve granted, settled with it (as by
  // settle_atom, in the same write of the count).
  caf::reacts_to<presence_atom, std::string, std::int64_t, bool>,
  // may this node open one more connection of the user under the limit? (a place, counted
  // at once if so)
  caf::replies_to<acquire_atom, std::string, std::uint64_t>::with<admission>,
  // may a detached session of the user here be attached again under the limit? (likewise)
  caf::replies_to<reserve_atom, std::string, std::uint64_t>::with<bool>,
  // a place asked for with acquire or reserve is settled: granted and now a connection in the
  // presence count, granted and given back, or asked for by a request that timed out here.
  // Until then the node's count written to Redis includes it.
  caf::reacts_to<settle_atom, std::string>,
  caf::replies_to<cpublish_atom, std::string, protocol::outbound_event>::with<cluster_result>,
  caf::replies_to<cdisconn_atom, std::string>::with<cluster_result>,
  // a resume of a session that node `node` holds: its offer, or one that is not ok (that node
  // is not alive, has no such session for this user, or did not answer in time); an ok offer
  // must be confirmed with an accept or decline note, or it is declined after a while
  caf::replies_to<adopt_atom, std::string /* node */, std::string /* user */,
                  std::string /* token */, std::uint64_t /* last_event_id */>::with<peer_note>,
  // sends a note to `note.node`
  caf::reacts_to<peer_atom, peer_note>,
  // internal: a redis link went up (true) or down; a message on a channel; a subscription
  // confirmed; a command's reply; the timer
  // a link of a shard is up (with the server's run_id) or down
  caf::reacts_to<link_atom, std::uint64_t, bool, bool, std::string>,
  caf::reacts_to<message_atom, std::uint64_t, std::string, std::string>,
  caf::reacts_to<subscribed_atom, std::uint64_t, std::string>,
  caf::reacts_to<reply_atom, std::uint64_t, redis_reply>,
  caf::reacts_to<tick_atom>,
  caf::reacts_to<hotimeout_atom, std::string>>;

/// Spawned by the router, linked to it.
cluster_bus_actor spawn_cluster_bus(caf::local_actor* router, cluster_feedback feedback,
                                    std::shared_ptr<const cluster_settings> settings);

/// The shard of a user among `shards`: a jump consistent hash of the user id.
std::size_t shard_of(const std::string& user_id, std::size_t shards);

} // namespace er::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::cluster_status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::cluster_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::admission)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::redis_reply)
