#pragma once
// The steps of a session moving between nodes and of its runs reporting across (DESIGN
// §11.5, manager/session_handover.hpp), as they travel between two nodes' routers: each is a
// JSON message on the recipient's node channel (<prefix>n:<node id>) in Redis, published on
// the shard of the session's user, so that the steps of one hand-over arrive in order.

#include <cstdint>
#include <optional>
#include <string>

#include <caf/allowed_unsafe_message_type.hpp>

#include "actors/message_types.hpp"
#include "actors/router/manager/session_handover.hpp"

namespace er::actors {

struct peer_note {
  enum class kind : std::uint8_t {
    request, ///< adopter -> owner: resume `token` of `user` after `last_event_id`
    offer,   ///< owner -> adopter: `offer` (not ok: nothing to adopt)
    accept,  ///< adopter -> owner: the offer was taken; the owner hosts the runs for it
    decline, ///< adopter -> owner: it was not (too late): the owner ends the session
    event,   ///< owner -> adopter: `event` of a run hosted on the owner's node
    stop,    ///< adopter -> owner: `request`, a stop_agent for such a run
    ended,   ///< adopter -> owner: the adopted session ended: the hosted runs stop
    gone,    ///< owner -> adopter: the host ended: runs without a final event are lost
  };
  kind what = kind::request;
  std::string handover; ///< the hand-over's id, random, minted by the adopter's bus
  std::string node;     ///< the other node: the recipient when sent, the sender when received
  std::string user;     ///< the session's user: picks the shard, checked by the recipient
  std::string token;    ///< request
  std::uint64_t last_event_id = 0; ///< request
  session_offer offer;             ///< offer
  /// offer: where the user's stream stood on the owner's node when the request reached it
  /// (the last offset its bus had handed to its router, with Redis' epoch of it; an empty
  /// epoch: nothing was published yet). The frames of the offer hold every event up to it;
  /// the adopting node delivers those after it from the user's history. Not set when the
  /// owner did not know.
  bool stream_known = false;
  std::string stream_epoch;
  std::uint64_t stream_offset = 0;
  protocol::outbound_event event;  ///< event
  protocol::inbound_message request; ///< stop
};

/// The message for `note.node`'s channel, sent by `from`.
std::string encode_peer_note(const peer_note& note, const std::string& from);

/// A message of this node's channel; nullopt when it is not a well-formed note.
std::optional<peer_note> decode_peer_note(const std::string& text);

/// The suffix of this node's resume tokens: ".<node id in hex>", so that any node can tell
/// where a session lives. Resume tokens are otherwise random; a forged suffix only sends the
/// question to a node that answers "no such session".
std::string resume_token_suffix(const std::string& node_id);

/// The node named by a resume token's suffix; nullopt when it names none.
std::optional<std::string> resume_token_node(const std::string& token);

} // namespace er::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(er::actors::peer_note)
