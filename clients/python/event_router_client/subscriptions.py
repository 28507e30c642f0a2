"""Subscriptions: the frames (``client.frames()``) or backend events (``client.events()``)
that arrive from now on, as an async iterator."""

import asyncio
from typing import Optional, Set

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

