"""What a client waits for: requests awaiting the frame whose ``reply_to`` is their id, and
agent runs awaiting their events. The one index of both: it routes each inbound frame to its
request and run, and fails them when their answers can no longer come."""

import asyncio
from dataclasses import dataclass
from typing import Dict, Optional

from .errors import RequestError
from .protocol import RUN_EVENT_TYPES
from .runs import Run


@dataclass
class PendingRequest:
    future: asyncio.Future
    type: str
    session_id: Optional[str]


class InFlight:
    def __init__(self) -> None:
        self.requests: Dict[str, PendingRequest] = {}
        self.runs_by_request: Dict[str, Run] = {}
        self.runs_by_id: Dict[str, Run] = {}

    @property
    def empty(self) -> bool:
        """True when no request awaits a reply and no run awaits events."""
        return not (self.requests or self.runs_by_request or self.runs_by_id)

    def expect_reply(self, request_id: str, future: asyncio.Future, type_: str,
                     session_id: Optional[str]) -> None:
        self.requests[request_id] = PendingRequest(future, type_, session_id)

    def drop_reply(self, request_id: str, future: asyncio.Future) -> None:
        """Forgets request ``request_id`` if ``future`` still awaits it (answered or given up)."""
        pending = self.requests.get(request_id)
        if pending is not None and pending.future is future:
            del self.requests[request_id]

    def expect_run(self, run: Run) -> None:
        self.runs_by_request[run.request_id] = run

    def forget_run(self, run: Run) -> None:
        if self.runs_by_request.get(run.request_id) is run:
            del self.runs_by_request[run.request_id]
        if run.run_id is not None and self.runs_by_id.get(run.run_id) is run:
            del self.runs_by_id[run.run_id]

    def route(self, frame: dict) -> bool:
        """Hands ``frame`` to the run and the request it belongs to; True when one took it."""
        to_run = self._route_to_run(frame)
        to_request = self._route_to_request(frame)
        return to_run or to_request

    def _route_to_run(self, frame: dict) -> bool:
        # Run events carry the start request's id as reply_to; the agent_stopped of a stop
        # carries the stop's id, so the run_id is looked up too.
        ftype, reply_to, run_id = frame.get("type"), frame.get("reply_to"), frame.get("run_id")
        run = self.runs_by_request.get(reply_to) if reply_to is not None else None
        if run is None and run_id is not None:
            run = self.runs_by_id.get(run_id)
        if run is None:
            return False
        if ftype == "error" and reply_to == run.request_id:
            run._fail(RequestError.from_frame(frame))
        elif ftype in RUN_EVENT_TYPES:
            run._push(frame)
            if run.run_id is not None:
                self.runs_by_id.setdefault(run.run_id, run)
        else:
            return False
        if run.done:
            self.forget_run(run)
        return True

    def _route_to_request(self, frame: dict) -> bool:
        reply_to = frame.get("reply_to")
        pending = self.requests.get(reply_to) if reply_to is not None else None
        if pending is None:
            return False
        if not pending.future.done():
            if frame.get("type") == "error":
                pending.future.set_exception(RequestError.from_frame(frame))
            else:
                pending.future.set_result(frame)
        return True

    def fail_requests(self, exc: BaseException) -> int:
        """Every request still waiting fails with ``exc``; returns how many did."""
        count = 0
        for request_id, pending in list(self.requests.items()):
            if not pending.future.done():
                pending.future.set_exception(exc)
                count += 1
            del self.requests[request_id]
        return count

    def fail_runs(self, exc: BaseException) -> int:
        """Every run still going fails with ``exc``; returns how many did."""
        runs = {id(r): r for r in list(self.runs_by_request.values()) + list(self.runs_by_id.values())}
        for run in runs.values():
            run._fail(exc)
            self.forget_run(run)
        return len(runs)
