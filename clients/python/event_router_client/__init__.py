"""Python (asyncio) client of the event router.

Needs Python 3.10+ and the ``websockets`` package (tested with Debian 12's 10.4).
"""

import logging

from .client import RouterClient
from .notifications import SessionLost, StateChange
from .protocol import FINAL_RUN_EVENT_TYPES, ROUTER_FRAME_TYPES, RUN_EVENT_TYPES, SUBPROTOCOL
from .runs import Run
from .subscriptions import Subscription
from .errors import (
    AuthenticationError,
    ClientClosedError,
    ConnectionClosedError,
    HttpApiError,
    MessageTooLargeError,
    RequestError,
    RequestTimeout,
    RouterClientError,
    SessionLostError,
)
from .http_api import (
    disconnect,
    disconnect_sync,
    healthz,
    healthz_sync,
    http_base_url,
    publish,
    publish_sync,
)
from .policy import Action, Backoff, classify_close
from .tokens import decode_jwt_payload, token_expiry

__all__ = [
    "RouterClient", "Run", "Subscription", "StateChange", "SessionLost",
    "SUBPROTOCOL", "RUN_EVENT_TYPES", "FINAL_RUN_EVENT_TYPES", "ROUTER_FRAME_TYPES",
    "RouterClientError", "RequestError", "RequestTimeout", "SessionLostError",
    "ConnectionClosedError", "AuthenticationError", "ClientClosedError",
    "MessageTooLargeError", "HttpApiError",
    "publish", "publish_sync", "disconnect", "disconnect_sync", "healthz", "healthz_sync",
    "http_base_url",
    "Action", "Backoff", "classify_close",
    "decode_jwt_payload", "token_expiry",
]

__version__ = "0.1.0"

logging.getLogger("event_router_client").addHandler(logging.NullHandler())
