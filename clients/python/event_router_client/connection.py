"""The connection under a :class:`RouterClient`: the loop that connects with a token from
``get_token``, reads frames (handed to the session, ``session.py``), and after a close
reconnects and resumes, asks for a fresh token or stops for good as the close code says
(``policy.py``); the proactive token rotation; the terminal step. :class:`RouterClient`
(``client.py``) extends it with the public API and sets the options it reads (``backoff``,
``open_timeout``, ``proactive_refresh``, ...) before calling its ``__init__``."""

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Optional, Tuple

import websockets
import websockets.exceptions
from websockets.legacy.client import WebSocketClientProtocol

from .errors import AuthenticationError, ClientClosedError, ConnectionClosedError
from .notifications import StateChange
from .policy import Action, classify_close
from .protocol import SUBPROTOCOL, log, parse_frame
from .session import RouterSession
from .tokens import token_expiry
from .transport import RedactingLogger, RefusalReadingProtocol


@dataclass
class _Outcome:
    """How one connection attempt ended, and what to do next."""

    opened: bool = False
    open_seconds: float = 0.0
    code: Optional[int] = None
    reason: str = ""
    http_status: Optional[int] = None
    http_error: Optional[str] = None
    error: Optional[BaseException] = None
    action: Action = Action.RECONNECT
    rotated: bool = False


class RouterConnection(RouterSession):
    """The connection's state and its loop; the base of :class:`RouterClient`."""

    def __init__(self) -> None:
        super().__init__()  # the session (session.py)
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
        self._ws_logger = RedactingLogger(logging.getLogger("websockets.client"), {})

    # ------------------------------------------------------------------ the loop

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
                if self._stop_for_good(outcome, auth_failures):
                    return
                if outcome.opened:
                    self._emit(StateChange("closed", code=outcome.code, reason=outcome.reason,
                                           terminal=False))
                delay, attempt = self._reconnect_delay(outcome, attempt)
                self._emit(StateChange("reconnecting", code=outcome.code, reason=outcome.reason,
                                       attempt=attempt, delay=delay,
                                       http_status=outcome.http_status, error=outcome.error))
                await self._wait_before_reconnect(delay)
        except asyncio.CancelledError:
            ws = self._ws
            if ws is not None:
                ws.transport.abort()
            raise
        except Exception as exc:  # a bug here must not leave waiters hanging
            log.exception("router client supervisor failed")
            self._finish(ConnectionClosedError(None, f"client failure: {exc!r}"), code=None,
                         reason=repr(exc))

    def _stop_for_good(self, outcome: _Outcome, auth_failures: int) -> bool:
        """Finishes the client when ``outcome`` is terminal; True when it did."""
        if outcome.action is Action.TERMINAL:
            error: BaseException = ConnectionClosedError(
                outcome.code, outcome.reason or outcome.http_error or "",
                http_status=outcome.http_status)
        elif auth_failures >= self.max_auth_failures:
            error = AuthenticationError(outcome.http_error, auth_failures)
        else:
            return False
        if not outcome.opened:
            log.warning("router client stopped: %s", error)
        self._finish(error, code=outcome.code, reason=outcome.reason or str(error),
                     http_status=outcome.http_status)
        return True

    def _reconnect_delay(self, outcome: _Outcome, attempt: int) -> Tuple[float, int]:
        """The wait before the next attempt, and the attempt count after it."""
        if outcome.rotated:
            return 0.0, attempt
        if (outcome.action is Action.REFRESH_TOKEN and outcome.opened
                and outcome.open_seconds >= self.stable_after):
            return 0.0, attempt  # a token that expired normally: reconnect (and resume) at once
        return self.backoff.delay(attempt, outcome.action), attempt + 1

    async def _wait_before_reconnect(self, delay: float) -> None:
        """Sleeps ``delay`` s, or less when close() wakes the loop."""
        if delay <= 0:
            return
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), delay)
        except asyncio.TimeoutError:
            pass

    # ------------------------------------------------------------------ one connection

    async def _connect_once(self) -> _Outcome:
        outcome = _Outcome()
        self._rotating = False
        token = await self._token_for_attempt(outcome)
        if token is None:
            return outcome
        ws = await self._open_websocket(token, outcome)
        if ws is None or not await self._accept_handshake(ws, outcome):
            return outcome
        self._ws = ws
        await self._serve(ws, token, outcome)
        if outcome.action is not Action.TERMINAL:
            self._classify_end(ws, outcome)
        return outcome

    async def _fetch_token(self) -> str:
        self.stats["token_fetches"] += 1
        token = self._get_token()
        if inspect.isawaitable(token):
            token = await token
        if not isinstance(token, str) or not token:
            raise ValueError("get_token returned no token")
        return token

    async def _token_for_attempt(self, outcome: _Outcome) -> Optional[str]:
        """The rotation's fresh token, else get_token()'s; None when that failed."""
        try:
            token = self._pending_token or await self._fetch_token()
        except Exception as exc:  # noqa: BLE001 - the provider's failure is transient for us
            log.warning("get_token failed: %r", exc)
            outcome.error = exc
            return None
        self._pending_token = None
        return token

    async def _open_websocket(self, token: str, outcome: _Outcome) -> Optional[WebSocketClientProtocol]:
        try:
            return await websockets.connect(
                self._connect_url(),
                create_protocol=RefusalReadingProtocol,
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
            self._note_refusal(exc, outcome)
        except (OSError, asyncio.TimeoutError, EOFError,
                websockets.exceptions.InvalidHandshake,
                websockets.exceptions.ConnectionClosed) as exc:
            outcome.error = exc
            outcome.reason = f"connect failed: {exc!r}"
        return None

    @staticmethod
    def _note_refusal(exc: websockets.exceptions.InvalidStatusCode, outcome: _Outcome) -> None:
        """An upgrade answered with an HTTP status: which, why, and whether to retry."""
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

    async def _accept_handshake(self, ws: WebSocketClientProtocol, outcome: _Outcome) -> bool:
        if self._closing:
            await ws.close(1000, "client closed")
            outcome.action = Action.STOP
            return False
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close(1002, "subprotocol router.v1 required")
            outcome.action = Action.TERMINAL
            outcome.reason = f"the server selected subprotocol {ws.subprotocol!r}"
            return False
        return True

    async def _serve(self, ws: WebSocketClientProtocol, token: str, outcome: _Outcome) -> None:
        """Reads the connection until it ends: connection_established first, then every frame."""
        opened_at = None
        try:
            first = parse_frame(await asyncio.wait_for(ws.recv(), self.open_timeout))
            if first is None or first.get("type") != "connection_established":
                outcome.action = Action.TERMINAL
                outcome.reason = "the first frame was not connection_established"
                await ws.close(1002, "expected connection_established")
                return
            opened_at = self._opened(ws, token, first, outcome)
            async for raw in ws:
                frame = parse_frame(raw)
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

    def _opened(self, ws: WebSocketClientProtocol, token: str, first: dict,
                outcome: _Outcome) -> float:
        """The connection is established: the client is open. Returns when (monotonic)."""
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
        return opened_at

    def _classify_end(self, ws: WebSocketClientProtocol, outcome: _Outcome) -> None:
        """What the close code of the ended connection asks for (a rotation reconnects)."""
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

    # ------------------------------------------------------------------ token rotation

    async def _refresh_loop(self, ws: WebSocketClientProtocol) -> None:
        exp = self._token_exp
        current = self._token
        try:
            while exp is not None:
                remaining = exp - time.time()
                if remaining <= 1.0:
                    # Too late: the router closes with 4501 once its leeway is over, and the
                    # reconnect resumes the session with a fresh token.
                    return
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
                self._pending_token = token  # used by the reconnect (under way, or the rotation's)
                if self._ws is ws and ws.open:
                    await self._rotate(ws)
                return
        except asyncio.CancelledError:
            pass

    async def _rotate(self, ws: WebSocketClientProtocol) -> None:
        """Move to a new connection with the fresh token, resuming the session.

        The router has no in-band token refresh, and a close frame from the client would end
        the session, so the old connection is dropped without one (as a network loss would
        be) once everything handed to it has left; the router keeps the session detached and
        the reconnect resumes it at once, before the token's expiry could close it (4501).
        Sends wait for the new connection meanwhile.
        """
        self._rotating = True
        self.stats["rotations"] += 1
        self._open.clear()
        deadline = time.monotonic() + 2.0
        transport = ws.transport
        while transport.get_write_buffer_size() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        transport.abort()

    # ------------------------------------------------------------------ the end

    def _finish(self, exc: BaseException, *, code: Optional[int], reason: str,
                http_status: Optional[int] = None) -> None:
        if self._stopped.is_set():
            return
        self._final_error = exc
        self._closing = True
        self._open.clear()
        self._in_flight.fail_requests(exc)
        self._in_flight.fail_runs(exc)
        self.state = "closed"
        self._stopped.set()
        self._emit(StateChange("closed", code=code, reason=reason, terminal=True,
                               http_status=http_status,
                               error=None if isinstance(exc, ClientClosedError) else exc))
        for sub in list(self._frame_subs) + list(self._event_subs):
            sub.close()
