"""What a client knows of its session: the router's ``connection_established`` (session,
resume token, limits), the resume cursor (the last event id delivered) and its duplicate
filter, and where each inbound frame goes (its request and run, the subscriptions, the
callbacks). The base of :class:`RouterConnection` (``connection.py``), which feeds it frames;
the callbacks (``on_state``, ``on_frame``, ``on_event``, ``on_session_lost``) and ``url`` /
``resume`` are set by :class:`RouterClient` before its ``__init__``."""

import asyncio
import inspect
import urllib.parse
from typing import Any, Callable, Dict, Optional

from .errors import SessionLostError
from .in_flight import InFlight
from .notifications import SessionLost, StateChange
from .protocol import ROUTER_FRAME_TYPES, log


class RouterSession:
    """The session's state and where inbound frames go; the base of :class:`RouterConnection`."""

    def __init__(self) -> None:
        self.state = "idle"
        #: True when the current connection resumed the previous session (no event lost).
        self.recovered = False
        self.session_id: Optional[str] = None
        self.connection_id: Optional[str] = None
        self.resume_token: Optional[str] = None
        self.server_id: Optional[str] = None
        self.user_id: Optional[str] = None
        self.limits: Dict[str, Any] = {}
        #: event_id of the last frame delivered in the current session (the resume cursor).
        self.last_event_id = 0
        #: close code of the last connection that ended (None while none has).
        self.close_code: Optional[int] = None
        self.close_reason = ""
        self.stats = {"connects": 0, "token_fetches": 0, "duplicates_dropped": 0,
                      "sessions_lost": 0, "rotations": 0}

        self._in_flight = InFlight()
        self._frame_subs: set = set()
        self._event_subs: set = set()
        #: the tasks of async callbacks still running: kept (asyncio holds only weak references
        #: to tasks), their failures logged, and awaited or cancelled by close().
        self._callback_tasks: set = set()

    def _connect_url(self) -> str:
        if not (self.resume and self.resume_token and self.session_id):
            return self.url
        parts = urllib.parse.urlsplit(self.url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query = [(k, v) for k, v in query if k not in ("resume", "last_event_id")]
        query += [("resume", self.resume_token), ("last_event_id", str(self.last_event_id))]
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    def _on_established(self, frame: dict) -> None:
        data = frame.get("data") if isinstance(frame.get("data"), dict) else {}
        new_session = data.get("session_id")
        recovered = (bool(data.get("recovered")) and self.session_id is not None
                     and new_session == self.session_id)
        if not recovered:
            self._start_new_session(new_session)
        self.recovered = recovered
        self.resume_token = data.get("resume_token")
        self.connection_id = data.get("connection_id")
        self.server_id = data.get("server_id")
        self.user_id = frame.get("user_id")
        if isinstance(data.get("limits"), dict):
            self.limits = dict(data["limits"])
        for sub in list(self._frame_subs):
            sub._put(frame)
        self._call(self.on_frame, frame)

    def _start_new_session(self, new_session: Optional[str]) -> None:
        """A session that is not the previous one: event ids start again, and what waited
        for the old session fails (on_session_lost says so)."""
        old_session = self.session_id
        old_cursor = self.last_event_id
        self.session_id = new_session
        self.last_event_id = 0
        if old_session is None:
            return
        self.stats["sessions_lost"] += 1
        exc = SessionLostError(old_session, new_session)
        failed_requests = self._in_flight.fail_requests(exc)
        failed_runs = self._in_flight.fail_runs(exc)
        self._call(self.on_session_lost, SessionLost(
            old_session, new_session, old_cursor, failed_requests, failed_runs))

    def _dispatch(self, frame: dict) -> None:
        event_id = frame.get("event_id")
        if isinstance(event_id, int) and not isinstance(event_id, bool):
            if event_id <= self.last_event_id:
                self.stats["duplicates_dropped"] += 1
                return
            self.last_event_id = event_id

        for sub in list(self._frame_subs):
            sub._put(frame)
        self._call(self.on_frame, frame)

        handled = self._in_flight.route(frame)
        if (not handled and frame.get("reply_to") is None and frame.get("run_id") is None
                and frame.get("type") not in ROUTER_FRAME_TYPES):
            for sub in list(self._event_subs):
                sub._put(frame)
            self._call(self.on_event, frame)

    def _emit(self, change: StateChange) -> None:
        self.state = change.state
        self._call(self.on_state, change)

    def _call(self, callback: Optional[Callable], arg: Any) -> None:
        if callback is None:
            return
        try:
            result = callback(arg)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._callback_tasks.add(task)
                task.add_done_callback(self._callback_done)
        except Exception:  # noqa: BLE001 - an application callback must not kill the reader
            log.exception("event router client callback failed")

    def _callback_done(self, task: "asyncio.Future") -> None:
        self._callback_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event router client callback failed", exc_info=task.exception())

    async def _settle_callbacks(self, timeout: float) -> None:
        """Gives the async callbacks still running `timeout` seconds, then cancels them and
        gives them as long again to end (one that ignores its cancellation is left running).
        A callback that is itself waiting in close() is left alone."""
        pending = {t for t in self._callback_tasks if t is not asyncio.current_task()}
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=timeout)
