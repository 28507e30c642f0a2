"""What the client's callbacks receive: state changes and lost sessions."""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class StateChange:
    """What the ``on_state`` callback receives.

    ``state`` is one of:

    - ``"connecting"``: an attempt starts (``attempt``: 0 for the first connect);
    - ``"open"``: ``connection_established`` arrived (``recovered``: the session resumed);
    - ``"closed"``: a connection that was open ended (``code``, ``reason``) or the client
      stopped; ``terminal`` says whether the client stops here for good;
    - ``"reconnecting"``: the client waits ``delay`` seconds before the next attempt
      (``code``/``http_status``/``error`` say why the last attempt or connection ended).
    """

    state: str
    code: Optional[int] = None
    reason: str = ""
    terminal: bool = False
    recovered: Optional[bool] = None
    attempt: int = 0
    delay: Optional[float] = None
    http_status: Optional[int] = None
    error: Optional[BaseException] = None


@dataclass(frozen=True)
class SessionLost:
    """What the ``on_session_lost`` callback receives: a reconnect was not recovered.

    Events of the old session after ``last_event_id`` may be lost; ``failed_requests``
    requests and ``failed_runs`` runs that were waiting failed with
    :class:`SessionLostError`. Reload what you show (threads, history) from the router.
    """

    old_session_id: Optional[str]
    new_session_id: Optional[str]
    last_event_id: int
    failed_requests: int
    failed_runs: int
