"""Reconnect policy: what each close code means and how long to wait.

The close codes are the router's (``protocol/close_codes.hpp``, the router's README "Close
codes"):

==============  ==========================================================
1000            normal: stop when the application closed; a 1000 the
                application did not ask for is unexpected: reconnect
1001            server going away: reconnect
1006            no close frame (a reset, a network loss, a refused TCP
                connect): reconnect (and try to resume)
1002            protocol error (a frame breaking RFC 6455): terminal
1007            invalid UTF-8 (a text frame that is not UTF-8): terminal
1009            message too big: terminal
1011            internal error: reconnect
1012-1014       service restart / try again later / bad gateway: reconnect
4000-4499       reconnect allowed (4008 slow consumer, 4009 heartbeat
                timeout, 4010 state lost in the cluster)
4029            rate limited: reconnect, but back off longer
4501            token expired (exp plus the router's leeway): reconnect
                with a fresh token; the router resumes the session
4512            session resumed on another connection: terminal, since
                reconnecting would take the session back from it
4500-4999       otherwise terminal (4503 too many connections for this user,
                4510 protocol abuse, 4511 disconnected by the backend)
1003/1008/1010  protocol errors the router does not send: terminal, since a
                reconnect would repeat them
anything else   reconnect
==============  ==========================================================
"""

import enum
import random
from dataclasses import dataclass
from typing import Optional

NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
ABNORMAL = 1006
INVALID_PAYLOAD = 1007
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
RATE_LIMITED = 4029
TOKEN_EXPIRED = 4501
TOO_MANY_CONNECTIONS = 4503
PROTOCOL_ABUSE = 4510
DISCONNECTED_BY_BACKEND = 4511
SESSION_MOVED = 4512

_TERMINAL_RFC_CODES = frozenset({PROTOCOL_ERROR, 1003, INVALID_PAYLOAD, 1008, MESSAGE_TOO_BIG, 1010})


class Action(enum.Enum):
    STOP = "stop"                    # the application closed: no reconnect, not an error
    RECONNECT = "reconnect"          # reconnect with the normal backoff
    RECONNECT_SLOW = "reconnect_slow"  # 4029: reconnect with a longer backoff
    REFRESH_TOKEN = "refresh_token"  # 4501: reconnect with a fresh token, resuming
    TERMINAL = "terminal"            # no automatic reconnect


def classify_close(code: Optional[int], closed_by_application: bool = False) -> Action:
    """What to do after a connection ended with ``code`` (``None``: no close frame)."""
    if closed_by_application:
        return Action.STOP
    if code is None or code == ABNORMAL:
        return Action.RECONNECT
    if code == RATE_LIMITED:
        return Action.RECONNECT_SLOW
    if code == TOKEN_EXPIRED:
        return Action.REFRESH_TOKEN
    if 4500 <= code <= 4999:  # SESSION_MOVED among them
        return Action.TERMINAL
    if code in _TERMINAL_RFC_CODES:
        return Action.TERMINAL
    return Action.RECONNECT


def is_terminal(code: Optional[int]) -> bool:
    return classify_close(code) is Action.TERMINAL


@dataclass
class Backoff:
    """Full-jitter exponential backoff.

    The wait before reconnect attempt ``n`` (0 for the first attempt after a
    connection that had been stable) is uniform in
    ``[min_delay, min(max_delay, min_delay * 2 ** (n + 1))]``. After a 4029 the wait is
    ``rate_limited_delay`` plus that.
    """

    min_delay: float = 0.5
    max_delay: float = 20.0
    rate_limited_delay: float = 5.0
    rng: random.Random = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.min_delay < 0 or self.max_delay < self.min_delay:
            raise ValueError("backoff needs 0 <= min_delay <= max_delay")
        if self.rate_limited_delay < 0:
            raise ValueError("rate_limited_delay must be >= 0")
        if self.rng is None:
            self.rng = random.Random()

    def cap(self, attempt: int) -> float:
        # 2 ** large overflows nothing in Python, but keep the float small.
        exponent = min(max(attempt, 0) + 1, 62)
        return min(self.max_delay, self.min_delay * (2 ** exponent))

    def delay(self, attempt: int, action: Action = Action.RECONNECT) -> float:
        base = self.rng.uniform(self.min_delay, max(self.min_delay, self.cap(attempt)))
        if action is Action.RECONNECT_SLOW:
            return self.rate_limited_delay + base
        return base
