"""Requests, runs and the thread helpers against the real router."""

import asyncio
import time

from support import RouterTestCase, TokenSource
from event_router_client import MessageTooLargeError, RequestError, RequestTimeout


class RequestTest(RouterTestCase):
    async def asyncSetUp(self):
        await super().asyncSetUp()
        self.router = self.start_router("--agents.demo-step-delay-ms=50")
        self.client = await self.make_client(self.router.ws_url, TokenSource("alice"))
        await self.client.connect(timeout=5)

    async def test_replies_match_their_requests(self):
        frames = self.client.frames()
        titles = [f"thread {i}" for i in range(8)]
        # Interleave thread requests (served by the handler actor) with pings (answered by
        # the manager itself): the replies may come back in another order than the requests.
        results = await asyncio.gather(
            *[self.client.create_thread(title) for title in titles],
            *[self.client.request("ping") for _ in range(8)])
        created, pongs = results[:8], results[8:]
        self.assertEqual([t["title"] for t in created], titles)
        self.assertEqual(len({t["thread_id"] for t in created}), 8)
        self.assertTrue(all(p["type"] == "pong" for p in pongs))
        self.assertEqual(len({p["reply_to"] for p in pongs}), 8)
        frames.close()
        replies = [f async for f in frames]
        self.assertEqual(len(replies), 16)  # one reply per request, nothing else
        self.assertEqual(len({f["reply_to"] for f in replies}), 16)
        self.assertEqual(sorted(f["type"] for f in replies), ["pong"] * 8 + ["thread_created"] * 8)
        by_id = {f["reply_to"]: f for f in replies}
        for thread in created:  # each create_thread returned the reply to its own id
            matching = [f for f in replies if f["thread_id"] == thread["thread_id"]]
            self.assertEqual(len(matching), 1)
            self.assertEqual(by_id[matching[0]["reply_to"]]["data"], thread)
        listed = await self.client.list_threads()
        self.assertEqual(sorted(t["title"] for t in listed), sorted(titles))
        self.assertEqual(self.client._in_flight.requests, {})

    async def test_error_replies_raise_with_their_code(self):
        with self.assertRaises(RequestError) as caught:
            await self.client.get_thread_history("t-00000000000000000000000000000000")
        self.assertEqual(caught.exception.code, "not_found")
        self.assertEqual(caught.exception.frame["type"], "error")
        with self.assertRaises(RequestError) as caught:
            await self.client.request("no_such_type")
        self.assertEqual(caught.exception.code, "unknown_type")
        with self.assertRaises(RequestError) as caught:
            await self.client.start_agent("no-such-agent", {})
        self.assertEqual(caught.exception.code, "unknown_agent")
        self.assertEqual(self.client._in_flight.runs_by_request, {})
        await self.client.ping()  # the connection survives every error

    async def test_timeout_and_late_reply(self):
        frames, events = self.client.frames(), self.client.events()
        self.router.pause()  # SIGSTOP: nothing answers
        started = time.monotonic()
        try:
            with self.assertRaises(RequestTimeout) as caught:
                await self.client.request("ping", timeout=0.4)
        finally:
            self.router.resume()
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 1.5)
        self.assertIsInstance(caught.exception, TimeoutError)
        late_id = caught.exception.request_id
        # The late pong arrives after SIGCONT; it must not resolve the next request.
        reply = await self.client.request("ping")
        self.assertNotEqual(reply["reply_to"], late_id)
        frames.close()
        seen = [f async for f in frames]
        self.assertIn(late_id, [f["reply_to"] for f in seen])  # it did arrive, and was dropped
        events.close()
        self.assertEqual([e async for e in events], [])  # a stray reply is no backend event
        self.assertEqual(self.client._in_flight.requests, {})

    async def test_message_over_the_router_limit_is_refused_locally(self):
        limit = self.client.limits["max_message_bytes"]
        with self.assertRaises(MessageTooLargeError):
            await self.client.request("create_thread", {"title": "x" * limit})
        self.assertTrue(self.client.is_open)  # no 1009 from the router
        await self.client.ping()

    async def test_threads_and_user_message(self):
        run = await self.client.user_message("hello there")
        self.assertIsNotNone(run.thread_id)
        final = await run.result(timeout=5)
        self.assertEqual(final["type"], "agent_completed")
        history = await self.client.get_thread_history(run.thread_id)
        self.assertEqual([m["role"] for m in history], ["user", "agent"])
        self.assertEqual(history[0]["content"], {"text": "hello there"})
        self.assertEqual(history[1]["run_id"], run.run_id)
        newest = await self.client.get_thread_history_page(run.thread_id, limit=1)
        self.assertEqual([m["seq"] for m in newest["messages"]], [2])
        self.assertTrue(newest["has_more"])
        older = await self.client.get_thread_history_page(run.thread_id, before_seq=2)
        self.assertEqual([m["role"] for m in older["messages"]], ["user"])
        self.assertFalse(older["has_more"])
        threads = await self.client.list_threads()
        self.assertEqual([t["thread_id"] for t in threads], [run.thread_id])
        second = await self.client.create_thread("second")
        # Both may share their updated_at_ms: the whole list says which comes first.
        both = [t["thread_id"] for t in await self.client.list_threads()]
        self.assertEqual(sorted(both), sorted([run.thread_id, second["thread_id"]]))
        first_page = await self.client.list_threads_page(limit=1)
        self.assertEqual([t["thread_id"] for t in first_page["threads"]], both[:1])
        self.assertTrue(first_page["has_more"])
        next_page = await self.client.list_threads_page(limit=1, after=first_page["threads"][-1])
        self.assertEqual([t["thread_id"] for t in next_page["threads"]], both[1:])
        self.assertFalse(next_page["has_more"])


class RunTest(RouterTestCase):
    async def asyncSetUp(self):
        await super().asyncSetUp()
        self.router = self.start_router("--agents.demo-step-delay-ms=40", "--agents.demo-steps=4")
        self.client = await self.make_client(self.router.ws_url, TokenSource("alice"))
        await self.client.connect(timeout=5)

    async def test_echo(self):
        run = await self.client.start_agent("echo", {"n": 42})
        events = [e async for e in run]
        self.assertEqual([e["type"] for e in events], ["agent_started", "agent_completed"])
        self.assertEqual(events[0]["data"]["agent"], "echo")
        self.assertEqual(await run.result(), events[-1])
        self.assertEqual(events[-1]["data"], {"output": {"n": 42}})

    async def test_concurrent_runs_get_their_own_events_in_order(self):
        runs = await asyncio.gather(*[self.client.start_agent("demo", f"input {i}") for i in range(4)])
        self.assertEqual(len({r.run_id for r in runs}), 4)
        collected = await asyncio.gather(*[self._collect(r) for r in runs])
        expected = (["agent_started"] + ["agent_thinking"] * 4
                    + ["tool_executing", "tool_completed", "agent_completed"])
        for run, events in zip(runs, collected):
            self.assertEqual([e["type"] for e in events], expected)
            self.assertTrue(all(e["run_id"] == run.run_id and e["reply_to"] == run.request_id
                                for e in events))
            self.assertEqual(events[-1]["data"]["input"], run.events[-1]["data"]["input"])
        self.assertEqual(sorted(r.events[-1]["data"]["input"] for r in runs),
                         [f"input {i}" for i in range(4)])
        self.assertEqual(self.client._in_flight.runs_by_id, {})

    @staticmethod
    async def _collect(run):
        return [e async for e in run]

    async def test_stop(self):
        router = self.start_router("--agents.demo-step-delay-ms=200", "--agents.demo-steps=20")
        client = await self.make_client(router.ws_url, TokenSource("bob"))
        await client.connect(timeout=5)
        run = await client.start_agent("demo", "long")
        final = await run.stop()
        self.assertEqual(final["type"], "agent_stopped")
        self.assertEqual(final["run_id"], run.run_id)
        events = [e async for e in run]
        self.assertEqual(events[0]["type"], "agent_started")
        self.assertEqual(events[-1]["type"], "agent_stopped")
        self.assertEqual([e["type"] for e in events].count("agent_stopped"), 1)
        self.assertEqual(await run.stop(), final)  # again: the same final, no request

    async def test_stop_after_completion_returns_the_final_event(self):
        run = await self.client.start_agent("echo", "done already")
        await run.result(timeout=5)
        self.assertEqual((await run.stop())["type"], "agent_completed")

    async def test_too_many_runs(self):
        runs = [await self.client.start_agent("demo", i) for i in range(4)]
        with self.assertRaises(RequestError) as caught:
            await self.client.start_agent("demo", "one too many")
        self.assertEqual(caught.exception.code, "too_many_runs")
        for run in runs:
            self.assertEqual((await run.result(timeout=5))["type"], "agent_completed")

    async def test_cancelled_iterator_does_not_disturb_another(self):
        run = await self.client.start_agent("demo", "shared")
        waiting = asyncio.ensure_future(self._collect(run))
        impatient = asyncio.ensure_future(self._collect(run))
        await asyncio.sleep(0.05)
        impatient.cancel()
        events = await asyncio.wait_for(waiting, 5)
        self.assertEqual(events[-1]["type"], "agent_completed")
        self.assertEqual(len(events), 8)
