"""Agent runs: the events of one run, in order, as an async iterator."""

import asyncio
from typing import TYPE_CHECKING, Any, List, Optional

from .errors import RequestError
from .protocol import FINAL_RUN_EVENT_TYPES

if TYPE_CHECKING:
    from .client import RouterClient

#: A timeout argument left out: the client's ``request_timeout`` applies.
CLIENT_DEFAULT: Any = object()


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

    async def stop(self, timeout: Any = CLIENT_DEFAULT) -> dict:
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
        return await self.result(timeout=None if timeout is CLIENT_DEFAULT else timeout)

