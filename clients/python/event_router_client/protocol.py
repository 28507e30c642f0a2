"""What the router's protocol (subprotocol ``router.v1``) fixes for the client: the frame types,
and reading a frame."""

import json
import logging
from typing import Optional, Union

log = logging.getLogger("event_router_client")

SUBPROTOCOL = "router.v1"

RUN_EVENT_TYPES = frozenset({
    "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_progress",
    "agent_completed", "agent_error", "agent_stopped",
})
FINAL_RUN_EVENT_TYPES = frozenset({"agent_completed", "agent_error", "agent_stopped"})
#: Types of the router's own protocol. A frame of any other type, without ``reply_to``
#: and ``run_id``, is an event published by a backend through the HTTP API.
ROUTER_FRAME_TYPES = frozenset({
    "connection_established", "pong", "error", "thread_created", "thread_list", "thread_history",
}) | RUN_EVENT_TYPES


def parse_frame(raw: Union[str, bytes]) -> Optional[dict]:
    """The frame as a dict with a string ``type``; ``None`` (logged) for anything else."""
    try:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        log.warning("dropped a frame that is not JSON")
        return None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        log.warning("dropped a frame without a type")
        return None
    return frame
