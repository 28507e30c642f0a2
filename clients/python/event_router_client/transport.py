"""What the client adds to the ``websockets`` package: a debug log without tokens, and the
JSON body of a refused upgrade (the reason of a 401)."""

import asyncio
import json
import logging
import re
from typing import Any

import websockets.exceptions
from websockets.legacy.client import WebSocketClientProtocol

_SECRET_RE = re.compile(r"(jwt\.)[A-Za-z0-9_\-.=]+|((?:resume|token)=)[^&\s'\"]+")


def redact(text: str) -> str:
    """``text`` with every token (``jwt.<token>``, ``resume=``, ``token=``) masked."""
    return _SECRET_RE.sub(lambda m: (m.group(1) or m.group(2)) + "<redacted>", text)


class RedactingLogger(logging.LoggerAdapter):
    """Keeps tokens (``jwt.<token>``, ``resume=``, ``token=``) out of websockets' debug log."""

    def log(self, level, msg, *args, **kwargs):  # noqa: D401 - logging API
        if not self.isEnabledFor(level):
            return
        safe_args = tuple(
            a if isinstance(a, (int, float)) else redact(str(a)) for a in args
        )
        self.logger.log(level, redact(str(msg)), *safe_args, **kwargs)


class RefusalReadingProtocol(WebSocketClientProtocol):
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
