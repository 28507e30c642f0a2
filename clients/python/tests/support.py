"""Test support: the real router binary as a child process, HS256 tokens, waiting helpers."""

import asyncio
import base64
import hashlib
import functools
import hmac
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from typing import List, Optional

CLIENT_DIR = Path(__file__).resolve().parents[1]
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))

SECRET = "python-client-test-secret-0123456789"
API_KEY = "python-client-test-api-key"

_LISTEN_RE = re.compile(r"listening on ws://([0-9.]+):(\d+)/ws")


def router_binary() -> str:
    """The router under test: $ER_ROUTER_BINARY, else the project's build/event-router."""
    path = os.environ.get("ER_ROUTER_BINARY")
    if not path:
        candidate = CLIENT_DIR.parents[1] / "build" / "event-router"
        if candidate.is_file():
            path = str(candidate)
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError(
            "set ER_ROUTER_BINARY to an event-router binary "
            f"(got {path!r}); these tests run against the real router")
    return path


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def mint(sub: str, ttl: float = 3600, *, exp: Optional[int] = None, secret: str = SECRET,
         **claims) -> str:
    """An HS256 JWT for ``sub`` expiring ``ttl`` s from now (or at ``exp``)."""
    now = int(time.time())
    payload = {"sub": sub, "iat": now, "exp": int(exp if exp is not None else now + ttl)}
    payload.update(claims)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode("ascii")
    signature = _b64(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return f"{header}.{body}.{signature}"


class Router:
    """One event-router child process. ``stop()`` (SIGTERM, then wait) and ``kill()``
    (SIGKILL, then wait) act on its PID only."""

    def __init__(self, *extra: str, port: int = 0):
        self.extra = list(extra)
        self.workdir = tempfile.TemporaryDirectory(prefix="er-pyclient-")
        self.stderr_file = open(os.path.join(self.workdir.name, "stderr.log"), "w+b")
        args = [
            router_binary(),
            f"--router.port={port}",
            "--router.host=127.0.0.1",
            "--router.store-path=:memory:",
            f"--router.jwt-secret={SECRET}",
            f"--router.api-key={API_KEY}",
            "--router.io-threads=1",
            *self.extra,
        ]
        # A working directory of its own: no caf-application.conf is picked up by accident.
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr_file,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir.name)
        self.stdout_lines: List[str] = []
        first = self._read_first_line(timeout=10.0)
        match = _LISTEN_RE.search(first or "")
        if not match:
            self.kill()
            raise RuntimeError(f"router did not start: {first!r} / stderr: {self.stderr()!r}")
        self.host, self.port = match.group(1), int(match.group(2))
        self._drain = threading.Thread(target=self._drain_stdout, daemon=True)
        self._drain.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _read_first_line(self, timeout: float) -> Optional[str]:
        result: List[str] = []
        reader = threading.Thread(target=lambda: result.append(
            self.proc.stdout.readline().decode("utf-8", "replace")), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result:
            return None
        self.stdout_lines.append(result[0])
        return result[0]

    def _drain_stdout(self) -> None:
        for line in self.proc.stdout:
            self.stdout_lines.append(line.decode("utf-8", "replace"))

    def stderr(self) -> str:
        self.stderr_file.flush()
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode("utf-8", "replace")

    def _signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait (SIGKILL after ``timeout``); returns the exit status."""
        self._signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            return self.proc.wait()
        finally:
            self._cleanup()

    def kill(self) -> int:
        self._signal(signal.SIGKILL)
        try:
            return self.proc.wait()
        finally:
            self._cleanup()

    def pause(self, timeout: float = 2.0) -> None:
        """SIGSTOP, and wait until every thread of the router has actually stopped (the
        signal takes effect asynchronously: a running thread may still serve a frame)."""
        self._signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not self._all_threads_stopped():
            if time.monotonic() > deadline:
                raise RuntimeError("the router did not stop on SIGSTOP")
            time.sleep(0.001)

    def _all_threads_stopped(self) -> bool:
        task_dir = f"/proc/{self.proc.pid}/task"
        try:
            for tid in os.listdir(task_dir):
                with open(f"{task_dir}/{tid}/stat") as stat:
                    state = stat.read().rsplit(")", 1)[1].split()[0]
                if state not in ("T", "t"):
                    return False
        except FileNotFoundError:
            return False
        return True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _cleanup(self) -> None:
        if self.proc.stdout is not None:
            if hasattr(self, "_drain"):
                self._drain.join(2.0)
            if not self._drain_alive():
                self.proc.stdout.close()
        if not self.stderr_file.closed:
            self.stderr_file.close()
        self.workdir.cleanup()

    def _drain_alive(self) -> bool:
        return hasattr(self, "_drain") and self._drain.is_alive()

    def ensure_stopped(self) -> None:
        """For cleanups: stop the process if it still runs (resuming it if paused)."""
        if self.proc.poll() is None:
            self.resume()
            self.stop()
        elif not self.stderr_file.closed:
            self._cleanup()


async def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01, what: str = "condition"):
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


class TokenSource:
    """A get_token callable that records its calls and returns minted tokens."""

    def __init__(self, user: str, ttl: float = 3600, ttls: Optional[List[float]] = None,
                 secret: str = SECRET):
        self.user = user
        self.ttl = ttl
        self.ttls = list(ttls or [])
        self.secret = secret
        self.calls: List[float] = []
        self.tokens: List[str] = []

    def __call__(self) -> str:
        self.calls.append(time.time())
        ttl = self.ttls.pop(0) if self.ttls else self.ttl
        token = mint(self.user, ttl, secret=self.secret)
        self.tokens.append(token)
        return token


class AsyncTokenSource(TokenSource):
    """The same, as an async callable (get_token may be either)."""

    async def __call__(self) -> str:  # type: ignore[override]
        await asyncio.sleep(0.001)
        return TokenSource.__call__(self)


class StateLog:
    """An on_state callback that records every StateChange."""

    def __init__(self):
        self.changes = []

    def __call__(self, change) -> None:
        self.changes.append(change)

    def states(self) -> List[str]:
        return [c.state for c in self.changes]

    def closes(self):
        return [c for c in self.changes if c.state == "closed"]

    def opens(self):
        return [c for c in self.changes if c.state == "open"]


TEST_TIMEOUT = float(os.environ.get("ER_PY_TEST_TIMEOUT", "30"))


class RouterTestCase(unittest.IsolatedAsyncioTestCase):
    """Starts routers on demand and stops every one of them after the test.

    Every test method is bounded by TEST_TIMEOUT seconds: a client that hangs fails its
    test (and the cleanups still stop its routers) instead of blocking the suite.
    """

    def __init__(self, methodName: str = "runTest"):
        super().__init__(methodName)
        method = getattr(self, methodName, None)
        if method is not None and inspect.iscoroutinefunction(method):
            @functools.wraps(method)
            async def bounded():
                started = time.monotonic()
                try:
                    return await asyncio.wait_for(method(), TEST_TIMEOUT)
                except asyncio.TimeoutError:
                    if time.monotonic() - started >= TEST_TIMEOUT:
                        raise AssertionError(f"test did not finish within {TEST_TIMEOUT} s") from None
                    raise
            setattr(self, methodName, bounded)

    async def asyncSetUp(self) -> None:
        self._routers: List[Router] = []
        # Registered first, so it runs last: after every client of the test has closed.
        # The router's SIGTERM drain waits for its clients' close handshakes, which an event
        # loop blocked in wait() could not answer: stop them from a worker thread.
        self.addAsyncCleanup(self._stop_routers)

    async def _stop_routers(self) -> None:
        for router in reversed(self._routers):
            await asyncio.to_thread(router.ensure_stopped)

    def start_router(self, *extra: str, port: int = 0) -> Router:
        router = Router(*extra, port=port)
        self._routers.append(router)
        return router

    async def stop_router(self, router: Router) -> int:
        """SIGTERM and wait, without blocking the event loop (the router's drain waits
        for the clients' close handshakes)."""
        return await asyncio.to_thread(router.stop)

    async def make_client(self, url: str, get_token, **kwargs):
        from event_router_client import RouterClient
        kwargs.setdefault("min_backoff", 0.05)
        kwargs.setdefault("max_backoff", 0.5)
        kwargs.setdefault("request_timeout", 5.0)
        client = RouterClient(url, get_token, **kwargs)
        self.addAsyncCleanup(client.close)
        return client
