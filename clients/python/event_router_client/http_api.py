"""The router's backend HTTP API: publish an event to a user, disconnect a user, health.

Each call exists in a blocking form (``publish_sync``...) and an asyncio form
(``publish``...) that runs the blocking one in a worker thread (``asyncio.to_thread``),
so the event loop never blocks on the network.
"""

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

from .errors import HttpApiError

DEFAULT_TIMEOUT = 10.0


def http_base_url(base_url: str) -> str:
    """``http(s)://host:port[/prefix]`` from an HTTP base URL or the WebSocket URL.

    ``ws://h:p/ws`` becomes ``http://h:p``, ``wss://`` becomes ``https://``; a trailing
    ``/ws`` path (the WebSocket endpoint) is dropped, any other path is kept as a prefix.
    """
    parts = urllib.parse.urlsplit(base_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) or ws(s) URL: {base_url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/ws"):
        path = path[: -len("/ws")]
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


def _call(method: str, url: str, api_key: Optional[str], body: Any, timeout: float) -> Any:
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        raise HttpApiError(exc.code, parsed) from None
    if not raw:
        return None
    return json.loads(raw)


def publish_sync(base_url: str, api_key: str, user_id: str, type: str,
                 data: Optional[dict] = None, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """``POST /api/v1/publish``: deliver ``{"type": type, "data": data}`` to every
    connection of ``user_id``. Returns the answer, ``{"delivered": <connections>}``;
    raises :class:`HttpApiError` (``status``, ``body``, ``error``) on a non-2xx answer
    (400 for a reserved type or a malformed body, 401 for a wrong key)."""
    event: dict = {"type": type}
    if data is not None:
        event["data"] = data
    url = http_base_url(base_url) + "/api/v1/publish"
    return _call("POST", url, api_key, {"user_id": user_id, "event": event}, timeout)


def disconnect_sync(base_url: str, api_key: str, user_id: str,
                    timeout: float = DEFAULT_TIMEOUT) -> dict:
    """``POST /api/v1/users/<user_id>/disconnect``: close every connection of the user
    with 4511. Returns ``{"disconnected": n}``; raises :class:`HttpApiError` on non-2xx."""
    url = (http_base_url(base_url) + "/api/v1/users/"
           + urllib.parse.quote(user_id, safe="") + "/disconnect")
    return _call("POST", url, api_key, None, timeout)


def healthz_sync(base_url: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """``GET /healthz``: ``{"status": "ok", "server_id", "connections", "users", ...}``."""
    return _call("GET", http_base_url(base_url) + "/healthz", None, None, timeout)


async def publish(base_url: str, api_key: str, user_id: str, type: str,
                  data: Optional[dict] = None, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Async form of :func:`publish_sync` (runs in a worker thread)."""
    return await asyncio.to_thread(publish_sync, base_url, api_key, user_id, type, data, timeout)


async def disconnect(base_url: str, api_key: str, user_id: str,
                     timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Async form of :func:`disconnect_sync` (runs in a worker thread)."""
    return await asyncio.to_thread(disconnect_sync, base_url, api_key, user_id, timeout)


async def healthz(base_url: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Async form of :func:`healthz_sync` (runs in a worker thread)."""
    return await asyncio.to_thread(healthz_sync, base_url, timeout)
