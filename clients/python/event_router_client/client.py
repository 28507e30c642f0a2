"""asyncio client of the event router's WebSocket protocol (subprotocol ``router.v1``)."""

import asyncio
import inspect
import itertools
import json
import logging
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Union

import websockets
import websockets.exceptions
from websockets.legacy.client import WebSocketClientProtocol

from .errors import (
    AuthenticationError,
    ClientClosedError,
    ConnectionClosedError,
    MessageTooLargeError,
    RequestError,
    RequestTimeout,
    SessionLostError,
)
from .policy import Action, Backoff, classify_close
from .tokens import token_expiry

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

TokenProvider = Callable[[], Union[str, Awaitable[str]]]

_DEFAULT = object()


# --------------------------------------------------------------------------- notifications

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


# --------------------------------------------------------------------------- logging

_SECRET_RE = re.compile(r"(jwt\.)[A-Za-z0-9_\-.=]+|((?:resume|token)=)[^&\s'\"]+")


def _redact(text: str) -> str:
    return _SECRET_RE.sub(lambda m: (m.group(1) or m.group(2)) + "<redacted>", text)


class _RedactingLogger(logging.LoggerAdapter):
    """Keeps tokens (``jwt.<token>``, ``resume=``, ``token=``) out of websockets' debug log."""

    def log(self, level, msg, *args, **kwargs):  # noqa: D401 - logging API
        if not self.isEnabledFor(level):
            return
        safe_args = tuple(
            a if isinstance(a, (int, float)) else _redact(str(a)) for a in args
        )
        self.logger.log(level, _redact(str(msg)), *safe_args, **kwargs)


class _Protocol(WebSocketClientProtocol):
    """websockets' client protocol, plus the JSON body of a refused upgrade (401's reason)."""

    async def handshake(self, *args, **kwargs):
        try:
            return await super().handshake(*args, **kwargs)
        except websockets.exceptions.InvalidStatusCode as exc:
            exc.body = await self._refusal_body(exc.headers)  # type: ignore[attr-defined]
            raise

    async def _refusal_body(self, headers) -> Any:
        try:
            length = int(headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if length <= 0 or length > 65536:
            return None
        try:
            raw = await asyncio.wait_for(self.reader.readexactly(length), 1.0)
        except Exception:  # noqa: BLE001 - best effort, only for the error message
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")


# --------------------------------------------------------------------------- runs

class Run:
    """One agent run started by :meth:`RouterClient.start_agent` or ``user_message``.

    ``async for event in run`` yields every event of the run in order, from
    ``agent_started`` to its final event (``agent_completed``, ``agent_error`` or
    ``agent_stopped``) included, then stops; each iteration starts from the first event,
    so iterating late loses nothing. ``await run.result()`` returns the final event.
    When the run's session is lost (a reconnect that was not recovered) or the client
    stops for good, iteration and ``result()`` raise :class:`SessionLostError` /
    :class:`ConnectionClosedError` / :class:`ClientClosedError`.
    """

    def __init__(self, client: "RouterClient", request_id: str, agent: Optional[str],
                 thread_id: Optional[str]):
        loop = asyncio.get_running_loop()
        self._client = client
        self.request_id = request_id
        self.agent = agent
        self.run_id: Optional[str] = None
        self.thread_id = thread_id
        self.events: List[dict] = []
        self.final: Optional[dict] = None
        self.error: Optional[BaseException] = None
        self.session_id: Optional[str] = None
        self._started = loop.create_future()
        self._done = loop.create_future()
        self._changed = loop.create_future()

    def __repr__(self) -> str:
        return (f"<Run {self.run_id or '?'} agent={self.agent!r} events={len(self.events)} "
                f"final={self.final['type'] if self.final else None}>")

    @property
    def done(self) -> bool:
        """True once the final event arrived or the run failed."""
        return self.final is not None or self.error is not None

    def _notify(self) -> None:
        if not self._changed.done():
            self._changed.set_result(None)
        self._changed = asyncio.get_running_loop().create_future()

    def _push(self, frame: dict) -> None:
        if self.done:
            return
        if self.run_id is None and isinstance(frame.get("run_id"), str):
            self.run_id = frame["run_id"]
        if frame.get("thread_id") is not None:
            self.thread_id = frame["thread_id"]
        self.events.append(frame)
        if not self._started.done():
            self._started.set_result(frame)
        if frame.get("type") in FINAL_RUN_EVENT_TYPES:
            self.final = frame
            self._done.set_result(frame)
        self._notify()

    def _fail(self, exc: BaseException) -> None:
        if self.done:
            return
        self.error = exc
        for fut in (self._started, self._done):
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: nobody need wait on it
        self._notify()

    async def result(self, timeout: Optional[float] = None) -> dict:
        """The run's final event (whatever its type); waits ``timeout`` s at most."""
        return await asyncio.wait_for(asyncio.shield(self._done), timeout)

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        i = 0
        while True:
            while i < len(self.events):
                event = self.events[i]
                i += 1
                yield event
                if event is self.final:
                    return
            if self.error is not None:
                raise self.error
            # shielded: a cancelled iterator must not cancel the future other iterators share
            await asyncio.shield(self._changed)

    async def stop(self, timeout: Any = _DEFAULT) -> dict:
        """Send ``stop_agent`` and return the run's final event.

        That is ``agent_stopped`` when the stop reached the running run; when the run
        finished first (the router answers ``not_found``), it is the run's own final event.
        """
        if self.final is not None:
            return self.final
        if self.error is not None:
            raise self.error
        if self.run_id is None:  # cannot happen after start_agent returned
            raise RuntimeError("the run has not started")
        try:
            await self._client.request("stop_agent", {"run_id": self.run_id}, timeout=timeout)
        except RequestError as exc:
            if exc.code == "not_found" and self.final is not None:
                return self.final
            raise
        # agent_stopped is routed to this run by its run_id in the same dispatch.
        return await self.result(timeout=None if timeout is _DEFAULT else timeout)


# --------------------------------------------------------------------------- subscriptions

_END = object()


class Subscription:
    """An async iterator over frames (``client.frames()``) or backend events (``client.events()``).

    It receives what arrives after it was created, in order, until it is closed
    (``close()``, or leaving ``async with``) or the client stops for good.
    """

    def __init__(self, registry: Set["Subscription"]):
        self._registry = registry
        self._queue: asyncio.Queue = asyncio.Queue()
        self._closed = False
        registry.add(self)

    def _put(self, frame: dict) -> None:
        if not self._closed:
            self._queue.put_nowait(frame)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._registry.discard(self)
            self._queue.put_nowait(_END)

    def __aiter__(self):
        return self

    async def __anext__(self) -> dict:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # later calls end too
            raise StopAsyncIteration
        return item

    async def get(self, timeout: Optional[float] = None) -> dict:
        """The next item; ``asyncio.TimeoutError`` after ``timeout`` s, ``EOFError`` when closed."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except StopAsyncIteration:
            raise EOFError("subscription closed") from None

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- client

@dataclass
class _Pending:
    future: asyncio.Future
    type: str
    session_id: Optional[str]


@dataclass
class _Outcome:
    opened: bool = False
    open_seconds: float = 0.0
    code: Optional[int] = None
    reason: str = ""
    http_status: Optional[int] = None
    http_error: Optional[str] = None
    error: Optional[BaseException] = None
    action: Action = Action.RECONNECT
    rotated: bool = False


class RouterClient:
    """A reconnecting, resuming client of one user's connection to the router.

    ``url`` is the WebSocket endpoint (``ws://host:port/ws``); ``get_token`` a callable,
    plain or async, returning a JWT. It is called before every connect and reconnect,
    after close 4501, and ``refresh_margin`` s before the current token's ``exp`` (the
    client then moves to a fresh connection with the new token and resumes its session).

    Use ``async with RouterClient(...) as client`` or ``await client.connect()`` /
    ``await client.close()``.
    """

    def __init__(
        self,
        url: str,
        get_token: TokenProvider,
        *,
        min_backoff: float = 0.5,
        max_backoff: float = 20.0,
        rate_limited_backoff: float = 5.0,
        stable_after: float = 1.0,
        max_auth_failures: int = 3,
        proactive_refresh: bool = True,
        refresh_margin: float = 30.0,
        resume: bool = True,
        request_timeout: Optional[float] = 10.0,
        open_timeout: float = 10.0,
        ping_interval: Optional[float] = 20.0,
        ping_timeout: Optional[float] = 20.0,
        close_timeout: float = 5.0,
        max_size: Optional[int] = 16 * 1024 * 1024,
        on_state: Optional[Callable[[StateChange], Any]] = None,
        on_event: Optional[Callable[[dict], Any]] = None,
        on_frame: Optional[Callable[[dict], Any]] = None,
        on_session_lost: Optional[Callable[[SessionLost], Any]] = None,
        backoff: Optional[Backoff] = None,
    ):
        if not callable(get_token):
            raise TypeError("get_token must be callable")
        if max_auth_failures < 1:
            raise ValueError("max_auth_failures must be >= 1")
        self.url = url
        self._get_token = get_token
        self.backoff = backoff or Backoff(min_backoff, max_backoff, rate_limited_backoff)
        self.stable_after = stable_after
        self.max_auth_failures = max_auth_failures
        self.proactive_refresh = proactive_refresh
        self.refresh_margin = refresh_margin
        self.resume = resume
        self.request_timeout = request_timeout
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_size = max_size
        self.on_state = on_state
        self.on_event = on_event
        self.on_frame = on_frame
        self.on_session_lost = on_session_lost

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

        self._ws: Optional[WebSocketClientProtocol] = None
        self._task: Optional[asyncio.Task] = None
        self._refresh_task: Optional[asyncio.Task] = None
        self._open = asyncio.Event()
        self._stopped = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._final_error: Optional[BaseException] = None
        self._closing = False
        self._rotating = False
        self._pending_token: Optional[str] = None
        self._token: Optional[str] = None
        self._token_exp: Optional[float] = None
        self._pending: Dict[str, _Pending] = {}
        self._runs_by_request: Dict[str, Run] = {}
        self._runs_by_id: Dict[str, Run] = {}
        self._frame_subs: Set[Subscription] = set()
        self._event_subs: Set[Subscription] = set()
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._ws_logger = _RedactingLogger(logging.getLogger("websockets.client"), {})

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> "RouterClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    @property
    def websocket(self) -> Optional[WebSocketClientProtocol]:
        """The current websockets connection (None between connections). For tests and tools."""
        return self._ws

    async def connect(self, timeout: Optional[float] = None) -> None:
        """Start the client and wait until the first connection is open.

        Transient failures are retried with backoff meanwhile. Raises
        :class:`ConnectionClosedError` (or :class:`AuthenticationError`) when the client
        stops for good first, ``asyncio.TimeoutError`` after ``timeout`` s (the client is
        then closed).
        """
        if self._task is None:
            if self._stopped.is_set():
                raise ClientClosedError("the client was closed")
            self._task = asyncio.get_running_loop().create_task(self._supervise())
        try:
            await self.wait_open(timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise

    async def wait_open(self, timeout: Optional[float] = None) -> None:
        """Wait until a connection is open; raises the terminal error if the client stopped."""
        if self._open.is_set():
            return
        if self._stopped.is_set():
            raise self._final_error or ClientClosedError("the client was closed")
        opened = asyncio.ensure_future(self._open.wait())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            done, _ = await asyncio.wait({opened, stopped}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            opened.cancel()
            stopped.cancel()
        if opened in done or self._open.is_set():
            return
        if self._stopped.is_set():
            raise self._final_error or ClientClosedError("the client was closed")
        raise asyncio.TimeoutError("the connection did not open in time")

    async def wait_closed(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """Wait until the client stopped for good; returns why (the terminal error, or None
        after :meth:`close`)."""
        await asyncio.wait_for(self._stopped.wait(), timeout)
        return None if isinstance(self._final_error, ClientClosedError) else self._final_error

    @property
    def closed(self) -> bool:
        return self._stopped.is_set()

    async def close(self) -> None:
        """Close with 1000 and stop reconnecting. Pending requests and runs fail with
        :class:`ClientClosedError`."""
        if self._stopped.is_set():
            return
        self._closing = True
        self._wakeup.set()
        ws = self._ws
        task = self._task
        if ws is not None and task is not None and not task.done():
            try:
                await asyncio.wait_for(ws.close(1000, "client closed"), self.close_timeout + 1)
            except Exception:  # noqa: BLE001 - we are leaving anyway
                ws.transport.abort()
        if task is not None and not task.done():
            if ws is None:
                task.cancel()  # connecting or waiting to reconnect: nothing to close cleanly
            try:
                await asyncio.wait_for(asyncio.shield(task), self.close_timeout + 1)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # close() itself was cancelled
            except Exception:  # noqa: BLE001 - a timeout, or the task failed: end it anyway
                task.cancel()
                try:
                    await task
                except BaseException:  # noqa: BLE001
                    pass
        self._finish(ClientClosedError("the client was closed"), code=1000,
                     reason="closed by the application")

    # ------------------------------------------------------------------ connection loop

    async def _supervise(self) -> None:
        attempt = 0
        auth_failures = 0
        try:
            while not self._closing:
                self._emit(StateChange("connecting", attempt=attempt))
                outcome = await self._connect_once()
                if self._closing:
                    break
                if outcome.http_status == 401:
                    auth_failures += 1
                elif outcome.opened:
                    auth_failures = 0
                if outcome.opened and outcome.open_seconds >= self.stable_after:
                    attempt = 0
                terminal_error: Optional[BaseException] = None
                if outcome.action is Action.TERMINAL:
                    terminal_error = ConnectionClosedError(
                        outcome.code, outcome.reason or outcome.http_error or "",
                        http_status=outcome.http_status)
                elif auth_failures >= self.max_auth_failures:
                    terminal_error = AuthenticationError(outcome.http_error, auth_failures)
                if terminal_error is not None:
                    if not outcome.opened:
                        log.warning("router client stopped: %s", terminal_error)
                    self._finish(terminal_error, code=outcome.code,
                                 reason=outcome.reason or str(terminal_error),
                                 http_status=outcome.http_status)
                    return
                if outcome.opened:
                    self._emit(StateChange("closed", code=outcome.code, reason=outcome.reason,
                                           terminal=False))
                if outcome.rotated:
                    delay = 0.0
                elif (outcome.action is Action.REFRESH_TOKEN and outcome.opened
                      and outcome.open_seconds >= self.stable_after):
                    delay = 0.0  # a token that expired normally: reconnect at once
                else:
                    delay = self.backoff.delay(attempt, outcome.action)
                    attempt += 1
                self._emit(StateChange("reconnecting", code=outcome.code, reason=outcome.reason,
                                       attempt=attempt, delay=delay,
                                       http_status=outcome.http_status, error=outcome.error))
                if delay > 0:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), delay)
                    except asyncio.TimeoutError:
                        pass
        except asyncio.CancelledError:
            ws = self._ws
            if ws is not None:
                ws.transport.abort()
            raise
        except Exception as exc:  # a bug here must not leave waiters hanging
            log.exception("router client supervisor failed")
            self._finish(ConnectionClosedError(None, f"client failure: {exc!r}"), code=None,
                         reason=repr(exc))

    async def _fetch_token(self) -> str:
        self.stats["token_fetches"] += 1
        token = self._get_token()
        if inspect.isawaitable(token):
            token = await token
        if not isinstance(token, str) or not token:
            raise ValueError("get_token returned no token")
        return token

    def _connect_url(self) -> str:
        if not (self.resume and self.resume_token and self.session_id):
            return self.url
        parts = urllib.parse.urlsplit(self.url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query = [(k, v) for k, v in query if k not in ("resume", "last_event_id")]
        query += [("resume", self.resume_token), ("last_event_id", str(self.last_event_id))]
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    async def _connect_once(self) -> _Outcome:
        outcome = _Outcome()
        self._rotating = False
        try:
            token = self._pending_token or await self._fetch_token()
        except Exception as exc:  # noqa: BLE001 - the provider's failure is transient for us
            log.warning("get_token failed: %r", exc)
            outcome.error = exc
            return outcome
        self._pending_token = None
        try:
            ws = await websockets.connect(
                self._connect_url(),
                create_protocol=_Protocol,
                subprotocols=[SUBPROTOCOL, "jwt." + token],
                open_timeout=self.open_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=self.close_timeout,
                max_size=self.max_size,
                compression=None,
                logger=self._ws_logger,
            )
        except websockets.exceptions.InvalidStatusCode as exc:
            status = exc.status_code
            body = getattr(exc, "body", None)
            outcome.http_status = status
            outcome.http_error = body.get("error") if isinstance(body, dict) else None
            outcome.error = exc
            outcome.reason = f"HTTP {status}" + (f" {outcome.http_error}" if outcome.http_error else "")
            if status == 401 or status >= 500 or status in (408, 429):
                outcome.action = Action.RECONNECT  # 401: retried with a fresh token, bounded
            else:
                outcome.action = Action.TERMINAL  # 400/404/426...: retrying cannot help
            return outcome
        except (OSError, asyncio.TimeoutError, EOFError,
                websockets.exceptions.InvalidHandshake,
                websockets.exceptions.ConnectionClosed) as exc:
            outcome.error = exc
            outcome.reason = f"connect failed: {exc!r}"
            return outcome

        if self._closing:
            await ws.close(1000, "client closed")
            outcome.action = Action.STOP
            return outcome
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close(1002, "subprotocol router.v1 required")
            outcome.action = Action.TERMINAL
            outcome.reason = f"the server selected subprotocol {ws.subprotocol!r}"
            return outcome

        self._ws = ws
        opened_at = None
        try:
            raw = await asyncio.wait_for(ws.recv(), self.open_timeout)
            first = self._parse(raw)
            if first is None or first.get("type") != "connection_established":
                outcome.action = Action.TERMINAL
                outcome.reason = "the first frame was not connection_established"
                await ws.close(1002, "expected connection_established")
                return outcome
            self._token = token
            self._token_exp = token_expiry(token)
            self._on_established(first)
            opened_at = time.monotonic()
            outcome.opened = True
            self.stats["connects"] += 1
            self._open.set()
            self._emit(StateChange("open", recovered=self.recovered))
            if self.proactive_refresh and self._token_exp is not None:
                self._refresh_task = asyncio.ensure_future(self._refresh_loop(ws))
            async for raw in ws:
                frame = self._parse(raw)
                if frame is not None:
                    self._dispatch(frame)
        except websockets.exceptions.ConnectionClosed:
            pass
        except asyncio.TimeoutError:
            ws.transport.abort()
            outcome.reason = "no connection_established in time"
        finally:
            self._open.clear()
            if self._refresh_task is not None:
                self._refresh_task.cancel()
                self._refresh_task = None
            if opened_at is not None:
                outcome.open_seconds = time.monotonic() - opened_at
            try:
                await asyncio.wait_for(ws.wait_closed(), self.close_timeout + 1)
            except asyncio.TimeoutError:
                ws.transport.abort()
            self._ws = None
        if outcome.action is Action.TERMINAL:
            return outcome
        outcome.code = ws.close_code
        if not outcome.reason:
            outcome.reason = ws.close_reason or ""
        self.close_code, self.close_reason = outcome.code, outcome.reason
        outcome.rotated = self._rotating and not self._closing
        if outcome.rotated:
            outcome.action = Action.RECONNECT
            outcome.reason = outcome.reason or "token rotation"
        else:
            outcome.action = classify_close(outcome.code, closed_by_application=self._closing)
        return outcome

    # ------------------------------------------------------------------ token refresh

    async def _refresh_loop(self, ws: WebSocketClientProtocol) -> None:
        exp = self._token_exp
        current = self._token
        try:
            while exp is not None:
                remaining = exp - time.time()
                if remaining <= 1.0:
                    return  # too late: the router closes with 4501, we reconnect then
                wait = remaining - self.refresh_margin
                if wait <= 0:
                    wait = remaining / 2
                await asyncio.sleep(wait)
                if self._ws is not ws or not ws.open:
                    return
                try:
                    token = await self._fetch_token()
                except Exception as exc:  # noqa: BLE001
                    log.warning("get_token failed during refresh: %r", exc)
                    continue
                new_exp = token_expiry(token)
                fresher = (new_exp > exp) if new_exp is not None else (token != current)
                if not fresher:
                    continue
                if self._ws is not ws or not ws.open:
                    self._pending_token = token  # used by the reconnect under way
                    return
                self._pending_token = token
                await self._rotate(ws)
                return
        except asyncio.CancelledError:
            pass

    async def _rotate(self, ws: WebSocketClientProtocol) -> None:
        """Move to a new connection with the fresh token, resuming the session.

        The router has no in-band token refresh, and a close frame would end the session,
        so the old connection is dropped without one (as a network loss would be) once
        everything handed to it has left; the router keeps the session detached and the
        reconnect resumes it at once. Sends wait for the new connection meanwhile.
        """
        self._rotating = True
        self.stats["rotations"] += 1
        self._open.clear()
        deadline = time.monotonic() + 2.0
        transport = ws.transport
        while transport.get_write_buffer_size() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        transport.abort()

    # ------------------------------------------------------------------ inbound

    @staticmethod
    def _parse(raw: Union[str, bytes]) -> Optional[dict]:
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

    def _on_established(self, frame: dict) -> None:
        data = frame.get("data") if isinstance(frame.get("data"), dict) else {}
        new_session = data.get("session_id")
        recovered = (bool(data.get("recovered")) and self.session_id is not None
                     and new_session == self.session_id)
        if not recovered:
            old_session = self.session_id
            old_cursor = self.last_event_id
            self.session_id = new_session
            self.last_event_id = 0
            if old_session is not None:
                self.stats["sessions_lost"] += 1
                exc = SessionLostError(old_session, new_session)
                failed_requests = self._fail_pending(exc)
                failed_runs = self._fail_runs(exc)
                self._call(self.on_session_lost, SessionLost(
                    old_session, new_session, old_cursor, failed_requests, failed_runs))
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

        ftype = frame.get("type")
        reply_to = frame.get("reply_to")
        run_id = frame.get("run_id")
        handled = False

        run = self._runs_by_request.get(reply_to) if reply_to is not None else None
        if run is None and run_id is not None:
            run = self._runs_by_id.get(run_id)
        if run is not None and (ftype in RUN_EVENT_TYPES
                                or (ftype == "error" and reply_to == run.request_id)):
            if ftype == "error":
                run._fail(RequestError.from_frame(frame))
            else:
                run._push(frame)
                if run.run_id is not None:
                    self._runs_by_id.setdefault(run.run_id, run)
            if run.done:
                self._forget_run(run)
            handled = True

        pending = self._pending.get(reply_to) if reply_to is not None else None
        if pending is not None:
            if not pending.future.done():
                if ftype == "error":
                    pending.future.set_exception(RequestError.from_frame(frame))
                else:
                    pending.future.set_result(frame)
            handled = True

        if not handled and reply_to is None and run_id is None and ftype not in ROUTER_FRAME_TYPES:
            for sub in list(self._event_subs):
                sub._put(frame)
            self._call(self.on_event, frame)

    # ------------------------------------------------------------------ bookkeeping

    def _forget_run(self, run: Run) -> None:
        if self._runs_by_request.get(run.request_id) is run:
            del self._runs_by_request[run.request_id]
        if run.run_id is not None and self._runs_by_id.get(run.run_id) is run:
            del self._runs_by_id[run.run_id]

    def _fail_pending(self, exc: BaseException) -> int:
        count = 0
        for rid, pending in list(self._pending.items()):
            if not pending.future.done():
                pending.future.set_exception(exc)
                count += 1
            del self._pending[rid]
        return count

    def _fail_runs(self, exc: BaseException) -> int:
        runs = {id(r): r for r in list(self._runs_by_request.values()) + list(self._runs_by_id.values())}
        for run in runs.values():
            run._fail(exc)
            self._forget_run(run)
        return len(runs)

    def _finish(self, exc: BaseException, *, code: Optional[int], reason: str,
                http_status: Optional[int] = None) -> None:
        if self._stopped.is_set():
            return
        self._final_error = exc
        self._closing = True
        self._open.clear()
        self._fail_pending(exc)
        self._fail_runs(exc)
        self.state = "closed"
        self._stopped.set()
        self._emit(StateChange("closed", code=code, reason=reason, terminal=True,
                               http_status=http_status,
                               error=None if isinstance(exc, ClientClosedError) else exc))
        for sub in list(self._frame_subs) + list(self._event_subs):
            sub.close()

    def _emit(self, change: StateChange) -> None:
        self.state = change.state
        self._call(self.on_state, change)

    @staticmethod
    def _call(callback: Optional[Callable], arg: Any) -> None:
        if callback is None:
            return
        try:
            result = callback(arg)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)
        except Exception:  # noqa: BLE001 - an application callback must not kill the reader
            log.exception("event router client callback failed")

    def _new_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    # ------------------------------------------------------------------ outbound

    def _encode(self, message: dict) -> str:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        limit = self.limits.get("max_message_bytes")
        if isinstance(limit, int):
            size = len(text.encode("utf-8"))
            if size > limit:
                raise MessageTooLargeError(size, limit)
        return text

    async def _send_text(self, text: str, register: Optional[Callable[[Optional[str]], None]] = None) -> None:
        """Send on the open connection, waiting for one when there is none.

        ``register`` (the reply's bookkeeping) runs right before the frame is handed to the
        socket. A frame handed to a connection that then fails is not sent again: the
        router may have received it, and a resumed session replays its reply.
        """
        if self._task is None and not self._stopped.is_set():
            raise RuntimeError("call connect() first")
        while True:
            await self.wait_open()
            ws = self._ws
            if ws is None or not ws.open:
                # The connection is going away; the reader will clear the open flag.
                if ws is not None:
                    try:
                        await asyncio.wait_for(ws.wait_closed(), 1.0)
                    except asyncio.TimeoutError:
                        pass
                await asyncio.sleep(0.01)
                continue
            if register is not None:
                register(self.session_id)
            try:
                await ws.send(text)
            except websockets.exceptions.ConnectionClosed:
                pass
            return

    async def send(self, type: str, payload: Optional[dict] = None,
                   thread_id: Optional[str] = None, id: Optional[str] = None) -> str:
        """Send one message without waiting for its reply; returns its id."""
        message_id = id or self._new_id()
        message = {"type": type, "id": message_id}
        if thread_id is not None:
            message["thread_id"] = thread_id
        if payload is not None:
            message["payload"] = payload
        await self._send_text(self._encode(message))
        return message_id

    async def request(self, type: str, payload: Optional[dict] = None,
                      thread_id: Optional[str] = None, timeout: Any = _DEFAULT) -> dict:
        """Send a message and return the reply frame whose ``reply_to`` is its id.

        An ``error`` reply raises :class:`RequestError` (``.code``); no reply within
        ``timeout`` s (default ``request_timeout``; the time waiting for a connection counts)
        raises :class:`RequestTimeout`. A late reply is dropped.
        """
        if timeout is _DEFAULT:
            timeout = self.request_timeout
        request_id = self._new_id()
        message = {"type": type, "id": request_id}
        if thread_id is not None:
            message["thread_id"] = thread_id
        if payload is not None:
            message["payload"] = payload
        text = self._encode(message)
        future = asyncio.get_running_loop().create_future()

        def register(session_id: Optional[str]) -> None:
            self._pending[request_id] = _Pending(future, type, session_id)

        async def exchange() -> dict:
            await self._send_text(text, register)
            return await future

        try:
            return await asyncio.wait_for(exchange(), timeout)
        except asyncio.TimeoutError:
            if future.done() and not future.cancelled():
                return future.result()
            raise RequestTimeout(type, request_id, timeout) from None
        finally:
            if self._pending.get(request_id) is not None and self._pending[request_id].future is future:
                del self._pending[request_id]

    async def _start_run(self, type: str, payload: dict, thread_id: Optional[str],
                         agent: Optional[str], timeout: Any) -> Run:
        if timeout is _DEFAULT:
            timeout = self.request_timeout
        request_id = self._new_id()
        message = {"type": type, "id": request_id, "payload": payload}
        if thread_id is not None:
            message["thread_id"] = thread_id
        text = self._encode(message)
        run = Run(self, request_id, agent, thread_id)

        def register(session_id: Optional[str]) -> None:
            run.session_id = session_id
            self._runs_by_request[request_id] = run

        async def start() -> None:
            await self._send_text(text, register)
            await asyncio.shield(run._started)

        try:
            await asyncio.wait_for(start(), timeout)
        except asyncio.TimeoutError:
            if not run._started.done():
                self._forget_run(run)
                exc = RequestTimeout(type, request_id, timeout)
                run._fail(exc)
                raise exc from None
        except BaseException:
            self._forget_run(run)
            raise
        return run

    # ------------------------------------------------------------------ helpers

    async def start_agent(self, agent: str, input: Any = None, thread_id: Optional[str] = None,
                          timeout: Any = _DEFAULT) -> Run:
        """Start ``agent`` with ``input``; returns the :class:`Run` once ``agent_started``
        arrived. ``unknown_agent``, ``too_many_runs``... raise :class:`RequestError`."""
        return await self._start_run("start_agent", {"agent": agent, "input": input},
                                     thread_id, agent, timeout)

    async def user_message(self, text: str, thread_id: Optional[str] = None,
                           timeout: Any = _DEFAULT) -> Run:
        """Append ``text`` to a thread (a new one without ``thread_id``) and run the
        default agent on it; returns its :class:`Run` (``run.thread_id`` is the thread)."""
        return await self._start_run("user_message", {"text": text}, thread_id, None, timeout)

    async def ping(self, timeout: Any = _DEFAULT) -> float:
        """Round trip to the connection's manager, in seconds."""
        started = time.monotonic()
        await self.request("ping", timeout=timeout)
        return time.monotonic() - started

    async def create_thread(self, title: Optional[str] = None, timeout: Any = _DEFAULT) -> dict:
        """Create a thread; returns it (``thread_id``, ``title``, ``created_at_ms``...)."""
        payload = {"title": title} if title is not None else {}
        reply = await self.request("create_thread", payload, timeout=timeout)
        return reply.get("data") or {}

    async def list_threads(self, limit: Optional[int] = None, timeout: Any = _DEFAULT) -> List[dict]:
        """This user's threads, most recently updated first."""
        payload = {"limit": limit} if limit is not None else {}
        reply = await self.request("list_threads", payload, timeout=timeout)
        return list((reply.get("data") or {}).get("threads") or [])

    async def get_thread_history(self, thread_id: str, limit: Optional[int] = None,
                                 timeout: Any = _DEFAULT) -> List[dict]:
        """The messages of one of this user's threads (``seq``, ``role``, ``content``...)."""
        payload = {"limit": limit} if limit is not None else {}
        reply = await self.request("get_thread_history", payload, thread_id=thread_id,
                                   timeout=timeout)
        return list((reply.get("data") or {}).get("messages") or [])

    def events(self) -> Subscription:
        """Events published by backends (HTTP API) from now on, in order."""
        return self._subscribe(self._event_subs)

    def frames(self) -> Subscription:
        """Every frame from now on, in order, duplicates of a resume excluded."""
        return self._subscribe(self._frame_subs)

    def _subscribe(self, registry: Set[Subscription]) -> Subscription:
        subscription = Subscription(registry)
        if self._stopped.is_set():
            subscription.close()  # nothing will come: iteration ends at once
        return subscription
