#pragma once
// Joining the cluster at start-up: this node's id must not be a live node's (DESIGN §11).

#include "actors/router/cluster/cluster_bus.hpp"

namespace er::app {

/// Claims this node's liveness key on every shard (SET NX, as long as cluster.node-ttl-ms);
/// throws config_error naming router.server-id when a live node holds it. A shard that does
/// not answer is skipped: the cluster bus registers there once it answers.
/// A key held by a node that has just ended (a restart, one after a crash) is waited for until
/// it can have expired (node-ttl-ms), and only then refused.
void claim_node_id(const actors::cluster_settings& cluster);

/// At a clean stop: deletes this node's liveness key on every shard where it still holds this
/// process's incarnation, so that a restart claims the id at once. A shard that does not answer
/// within a second (or refuses) is skipped: the key expires there. Never throws.
void release_node_id(const actors::cluster_settings& cluster);

} // namespace er::app
