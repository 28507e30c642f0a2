"""asyncio client of the event router's WebSocket protocol (subprotocol ``router.v1``).

:class:`RouterClient` is the public API; the package's other modules hold its parts:
``connection.py`` (the connection loop, resume, token rotation, which it extends),
``in_flight.py`` (requests and runs awaiting answers), ``runs.py`` (:class:`Run`),
``subscriptions.py``, ``notifications.py`` (what callbacks receive), ``policy.py`` (close
codes and backoff), ``protocol.py`` (frame types), ``transport.py`` (websockets' additions).
"""

import asyncio
import itertools
import json
import secrets
import time
from typing import Any, Awaitable, Callable, List, Optional, Set, Union

import websockets.exceptions
from websockets.legacy.client import WebSocketClientProtocol

from .connection import RouterConnection
from .errors import ClientClosedError, MessageTooLargeError, RequestTimeout
from .notifications import SessionLost, StateChange
from .policy import Backoff
from .protocol import FINAL_RUN_EVENT_TYPES, ROUTER_FRAME_TYPES, RUN_EVENT_TYPES, SUBPROTOCOL
from .runs import CLIENT_DEFAULT, Run
from .subscriptions import Subscription

TokenProvider = Callable[[], Union[str, Awaitable[str]]]

# Importable from this module as well as from the package.
__all__ = [
    "RouterClient", "Run", "Subscription", "StateChange", "SessionLost", "TokenProvider",
    "SUBPROTOCOL", "RUN_EVENT_TYPES", "FINAL_RUN_EVENT_TYPES", "ROUTER_FRAME_TYPES",
]


class RouterClient(RouterConnection):
    """A reconnecting, resuming client of one user's connection to the router.

    ``url`` is the WebSocket endpoint (``ws://host:port/ws``); ``get_token`` a callable,
    plain or async, returning a JWT. It is called before every connect and reconnect (so
    after close 4501, whose reconnect resumes the session), and ``refresh_margin`` s before
    the current token's ``exp`` (the client then moves to a fresh connection with the new
    token and resumes its session).

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

        super().__init__()  # the session's state and the connection's (connection.py)
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

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
        # The async callbacks (the "closed" state's among them) end with the client.
        await self._settle_callbacks(self.close_timeout)

    # ------------------------------------------------------------------ outbound

    def _new_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

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
                      thread_id: Optional[str] = None, timeout: Any = CLIENT_DEFAULT) -> dict:
        """Send a message and return the reply frame whose ``reply_to`` is its id.

        An ``error`` reply raises :class:`RequestError` (``.code``); no reply within
        ``timeout`` s (default ``request_timeout``; the time waiting for a connection counts)
        raises :class:`RequestTimeout`. A late reply is dropped.
        """
        if timeout is CLIENT_DEFAULT:
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
            self._in_flight.expect_reply(request_id, future, type, session_id)

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
            self._in_flight.drop_reply(request_id, future)

    async def _start_run(self, type: str, payload: dict, thread_id: Optional[str],
                         agent: Optional[str], timeout: Any) -> Run:
        if timeout is CLIENT_DEFAULT:
            timeout = self.request_timeout
        request_id = self._new_id()
        message = {"type": type, "id": request_id, "payload": payload}
        if thread_id is not None:
            message["thread_id"] = thread_id
        text = self._encode(message)
        run = Run(self, request_id, agent, thread_id)

        def register(session_id: Optional[str]) -> None:
            run.session_id = session_id
            self._in_flight.expect_run(run)

        async def start() -> None:
            await self._send_text(text, register)
            await asyncio.shield(run._started)

        try:
            await asyncio.wait_for(start(), timeout)
        except asyncio.TimeoutError:
            if not run._started.done():
                self._in_flight.forget_run(run)
                exc = RequestTimeout(type, request_id, timeout)
                run._fail(exc)
                raise exc from None
        except BaseException:
            self._in_flight.forget_run(run)
            raise
        return run

    # ------------------------------------------------------------------ helpers

    async def start_agent(self, agent: str, input: Any = None, thread_id: Optional[str] = None,
                          timeout: Any = CLIENT_DEFAULT) -> Run:
        """Start ``agent`` with ``input``; returns the :class:`Run` once ``agent_started``
        arrived. ``unknown_agent``, ``too_many_runs``... raise :class:`RequestError`."""
        return await self._start_run("start_agent", {"agent": agent, "input": input},
                                     thread_id, agent, timeout)

    async def user_message(self, text: str, thread_id: Optional[str] = None,
                           timeout: Any = CLIENT_DEFAULT) -> Run:
        """Append ``text`` to a thread (a new one without ``thread_id``) and run the
        default agent on it; returns its :class:`Run` (``run.thread_id`` is the thread)."""
        return await self._start_run("user_message", {"text": text}, thread_id, None, timeout)

    async def ping(self, timeout: Any = CLIENT_DEFAULT) -> float:
        """Round trip to the connection's manager, in seconds."""
        started = time.monotonic()
        await self.request("ping", timeout=timeout)
        return time.monotonic() - started

    async def create_thread(self, title: Optional[str] = None, timeout: Any = CLIENT_DEFAULT) -> dict:
        """Create a thread; returns it (``thread_id``, ``title``, ``created_at_ms``...)."""
        payload = {"title": title} if title is not None else {}
        reply = await self.request("create_thread", payload, timeout=timeout)
        return reply.get("data") or {}

    async def list_threads(self, limit: Optional[int] = None, timeout: Any = CLIENT_DEFAULT) -> List[dict]:
        """The first page of this user's threads, most recently updated first. Later pages:
        :meth:`list_threads_page`."""
        page = await self.list_threads_page(limit, timeout=timeout)
        return page["threads"]

    async def list_threads_page(self, limit: Optional[int] = None, after: Optional[dict] = None,
                                timeout: Any = CLIENT_DEFAULT) -> dict:
        """One page of this user's threads: ``{"threads": [...], "has_more": bool}``, those
        listed after the thread ``after`` (from the first when None). While ``has_more``, the
        next page starts at ``after=page["threads"][-1]``."""
        payload: dict = {}
        if limit is not None:
            payload["limit"] = limit
        if after is not None:
            payload["after"] = {"updated_at_ms": after.get("updated_at_ms"),
                                "thread_id": after.get("thread_id")}
        reply = await self.request("list_threads", payload, timeout=timeout)
        data = reply.get("data") or {}
        return {"threads": list(data.get("threads") or []),
                "has_more": bool(data.get("has_more"))}

    async def get_thread_history(self, thread_id: str, limit: Optional[int] = None,
                                 timeout: Any = CLIENT_DEFAULT) -> List[dict]:
        """The newest page of one of this user's threads (``seq``, ``role``, ``content``...),
        oldest first. Older pages: :meth:`get_thread_history_page`."""
        page = await self.get_thread_history_page(thread_id, limit, timeout=timeout)
        return page["messages"]

    async def get_thread_history_page(self, thread_id: str, limit: Optional[int] = None,
                                      before_seq: Optional[int] = None,
                                      timeout: Any = CLIENT_DEFAULT) -> dict:
        """One page of a thread: ``{"messages": [...], "has_more": bool}``, the messages
        before ``before_seq`` (from the newest when None), oldest first. While ``has_more``,
        the page before starts at ``before_seq=page["messages"][0]["seq"]``."""
        payload: dict = {}
        if limit is not None:
            payload["limit"] = limit
        if before_seq is not None:
            payload["before_seq"] = before_seq
        reply = await self.request("get_thread_history", payload, thread_id=thread_id,
                                   timeout=timeout)
        data = reply.get("data") or {}
        return {"messages": list(data.get("messages") or []),
                "has_more": bool(data.get("has_more"))}

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
