"""Exceptions raised by the event router client."""

from typing import Any, Optional


class RouterClientError(Exception):
    """Base class of every exception this package raises on purpose."""


class RequestError(RouterClientError):
    """The router answered a request with an ``error`` frame.

    ``code`` is the router's ``data.code`` (``not_found``, ``unknown_agent``,
    ``rate_limited``, ...), ``message`` its ``data.message`` and ``frame`` the whole
    error envelope.
    """

    def __init__(self, code: str, message: str = "", frame: Optional[dict] = None):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.frame = frame

    @classmethod
    def from_frame(cls, frame: dict) -> "RequestError":
        data = frame.get("data") if isinstance(frame.get("data"), dict) else {}
        return cls(str(data.get("code", "unknown")), str(data.get("message", "")), frame)


class RequestTimeout(RouterClientError, TimeoutError):
    """No reply arrived within the request's timeout.

    It is also a :class:`TimeoutError` (and therefore an :class:`asyncio.TimeoutError`
    on Python 3.11), so ``except TimeoutError`` catches it.
    """

    def __init__(self, type_: str, request_id: str, timeout: float):
        super().__init__(f"no reply to {type_!r} (id {request_id}) within {timeout} s")
        self.type = type_
        self.request_id = request_id
        self.timeout = timeout


class SessionLostError(RouterClientError):
    """The connection was re-established without recovering the session.

    Replies and run events of the old session can no longer arrive; every request and
    run that was waiting for them fails with this exception.
    """

    def __init__(self, old_session_id: Optional[str], new_session_id: Optional[str]):
        super().__init__(
            f"session {old_session_id} was not recovered (new session {new_session_id}); "
            "its pending replies and events are lost"
        )
        self.old_session_id = old_session_id
        self.new_session_id = new_session_id


class ConnectionClosedError(RouterClientError):
    """The client stopped for good: a terminal close code, or too many auth failures.

    ``code`` is the WebSocket close code (``None`` when the connection never opened,
    e.g. a refused upgrade), ``reason`` the close reason or a description.
    """

    def __init__(self, code: Optional[int], reason: str = "", *, http_status: Optional[int] = None):
        text = f"connection closed for good (code {code})"
        if http_status is not None:
            text = f"connection refused for good (HTTP {http_status})"
        if reason:
            text += f": {reason}"
        super().__init__(text)
        self.code = code
        self.reason = reason
        self.http_status = http_status


class AuthenticationError(ConnectionClosedError):
    """The router refused the upgrade with HTTP 401 ``max_auth_failures`` times in a row.

    ``error`` is the router's reason (``token_expired``, ``invalid_signature``, ...) when
    its body could be read.
    """

    def __init__(self, error: Optional[str], attempts: int):
        super().__init__(None, f"{error or 'unauthorized'} ({attempts} attempt(s))", http_status=401)
        self.error = error
        self.attempts = attempts


class ClientClosedError(RouterClientError):
    """The application closed the client while the operation was waiting."""


class MessageTooLargeError(RouterClientError, ValueError):
    """A message is larger than the router's ``max_message_bytes`` limit.

    Raised before sending: the router would close the whole connection with 1009.
    """

    def __init__(self, size: int, limit: int):
        super().__init__(f"message of {size} bytes exceeds the router's limit of {limit} bytes")
        self.size = size
        self.limit = limit


class HttpApiError(RouterClientError):
    """A call of the router's HTTP API answered with a non-2xx status.

    ``status`` is the HTTP status, ``body`` the parsed JSON body (or the raw text when it
    is not JSON) and ``error`` the body's ``error`` member when there is one.
    """

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        self.error = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"HTTP {status}: {self.error if self.error is not None else body!r}")
