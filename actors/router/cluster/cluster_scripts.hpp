#pragma once
// The Lua scripts the cluster runs in Redis: each is one atomic step (as Centrifugo does for
// its history). Keys are under the cluster prefix (cluster.prefix, "er:" by default); a user's
// keys live on the shard its id hashes to, and every node keeps its liveness key on every
// shard, so a script can tell live nodes' counts from dead ones'.
//
//   <p>node:<id>          a live node: its incarnation (a random id per process start), PX node-ttl
//   <p>nodes              sorted set: node id -> when its liveness ends (ms), for counting nodes
//   <p>epoch              this shard's epoch: new when Redis starts anew (empty, or from a
//                         snapshot)
//   <p>run_id             the run_id of the Redis process the epoch belongs to
//   <p>u:<user>:seq       the user's last publish offset
//   <p>u:<user>:began     "<epoch> <offset>": the user's stream began in that epoch after that
//                         offset (the first publish in the epoch writes it); kept like seq
//   <p>u:<user>:hist      the user's history stream (entries "<offset>-0", field e: the event,
//                         or "disconnect"; field p: the epoch it was published in), PX
//                         history-ttl from the last entry
//   <p>u:<user>:conns     hash "<node>|<incarnation>" -> the node's open connections of the user
//   <p>u:<user>           the user's channel: "<epoch> <offset> <event JSON>", or
//                         "<epoch> <offset> disconnect" ("<epoch> 0 disconnect" from older nodes)

namespace er::actors::cluster_scripts {

/// The open connections of a user on live nodes, as `total`; dead nodes' fields are dropped.
/// The script it starts sets CONNS (the user's conns hash) first. ARGV[1] prefix.
inline constexpr const char* live_count_lua = R"lua(
local function live(prefix, field)
  local bar = string.find(field, '|', 1, true)
  if not bar then return false end
  return redis.call('GET', prefix .. 'node:' .. string.sub(field, 1, bar - 1)) == string.sub(field, bar + 1)
end
local total = 0
local entries = redis.call('HGETALL', CONNS)
for i = 1, #entries, 2 do
  if live(ARGV[1], entries[i]) then
    total = total + tonumber(entries[i + 1])
  else
    redis.call('HDEL', CONNS, entries[i])
  end
end
)lua";

/// Publish, and disconnect: the user's next offset, the entry appended to its history, then
/// published. The entry is the event's JSON, or "disconnect" (a disconnect is in the user's
/// stream like a publish, so that a node that misses the message finds it in the history).
/// The history lives for the history TTL after the user's last entry: it serves gaps of
/// seconds (a lost link, a hand-over), and a user who is no longer published to must not hold
/// memory for good. The offset stays (a few bytes): were it to start again from 1, nodes
/// that stand further on would take the new entries for ones they had.
/// The first publish in an epoch notes where the user's stream began in it (KEYS[5]): a node
/// that comes to a new epoch owes its sessions the entries after that offset, and the history
/// cannot tell it (the entries of the snapshot's epoch may have expired).
/// KEYS[1] seq, KEYS[2] hist, KEYS[3] conns, KEYS[4] epoch, KEYS[5] began. ARGV[1] prefix,
/// ARGV[2] channel, ARGV[3] the entry, ARGV[4] history size, ARGV[5] an epoch to use if the
/// shard has none, ARGV[6] the history TTL (ms). Leaves `offset`, and `total` (connections of
/// the user on live nodes) for the caller's return.
inline constexpr const char* publish_lua = R"lua(
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  epoch = ARGV[5]
  redis.call('SET', KEYS[4], epoch)
end
local offset = redis.call('INCR', KEYS[1])
local began = redis.call('GET', KEYS[5])
if not began or string.sub(began, 1, #epoch + 1) ~= epoch .. ' ' then
  redis.call('SET', KEYS[5], epoch .. ' ' .. (offset - 1))
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], offset .. '-0', 'e', ARGV[3], 'p', epoch)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PUBLISH', ARGV[2], epoch .. ' ' .. offset .. ' ' .. ARGV[3])
)lua";

/// A new epoch when Redis started anew: run first on every command link that comes up, with
/// that Redis's run_id. A Redis that loaded a snapshot has the keys of an older process,
/// the epoch among them, with offsets from before the ones the nodes have seen: its users'
/// streams go on in a new epoch, whose first offset is the one after the restored one. An
/// empty Redis has no epoch: the first publish makes one. KEYS[1] run_id, KEYS[2] epoch.
/// ARGV[1] this Redis's run_id, ARGV[2] a new epoch.
inline constexpr const char* renew_epoch_lua = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1])
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('SET', KEYS[2], ARGV[2]) end
end
)lua";

/// A new connection of the user on this node, if the user has fewer than the limit on live
/// nodes. KEYS[1] conns, KEYS[2] seq, KEYS[3] epoch. ARGV[1] prefix, ARGV[2] this node's
/// field, ARGV[3] the limit. Returns {0} (refused) or {1, seq, epoch}: counted from the user's
/// offset `seq` on (every later publish counts the connection, so it must reach it); seq 0
/// and epoch "" when nothing was published yet.
inline constexpr const char* acquire_lua = R"lua(
if total >= tonumber(ARGV[3]) then return {0} end
redis.call('HINCRBY', CONNS, ARGV[2], 1)
return {1, redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[3]) or ''}
)lua";

} // namespace er::actors::cluster_scripts
