"""Resume against the real router: a TCP drop in the middle of a demo run."""

import asyncio

from support import RouterTestCase, StateLog, TokenSource, wait_for
from event_router_client import RouterClient

STEPS = 8
DEMO_SEQUENCE = (["agent_started"] + ["agent_thinking"] * STEPS
                 + ["tool_executing", "tool_completed", "agent_completed"])


class ResumeTest(RouterTestCase):
    def start_demo_router(self):
        return self.start_router("--agents.demo-step-delay-ms=50", f"--agents.demo-steps={STEPS}")

    def assert_complete_demo_run(self, run):
        self.assertEqual([e["type"] for e in run.events], DEMO_SEQUENCE)
        self.assertEqual([e["data"]["step"] for e in run.events if e["type"] == "agent_thinking"],
                         list(range(1, STEPS + 1)))
        self.assertTrue(all(e["run_id"] == run.run_id for e in run.events))
        self.assertTrue(all(e["reply_to"] == run.request_id for e in run.events))
        ids = [e["event_id"] for e in run.events]
        self.assertEqual(ids, list(range(ids[0], ids[0] + len(ids))), "consecutive event ids")

    async def _drop_mid_run(self, client_class=RouterClient, **kwargs):
        router = self.start_demo_router()
        states, lost, delivered = StateLog(), [], []
        dropped = {"at": None}

        def on_frame(frame):
            delivered.append(frame)
            # Drop the TCP connection without a close frame right after the first thinking
            # step: the router sees a reset and keeps the session detached.
            if frame["type"] == "agent_thinking" and dropped["at"] is None:
                dropped["at"] = frame["event_id"]
                client.websocket.transport.abort()

        client = client_class(router.ws_url, TokenSource("alice"), on_state=states,
                              on_frame=on_frame, on_session_lost=lost.append,
                              min_backoff=0.3, max_backoff=0.4, request_timeout=5.0, **kwargs)
        self.addAsyncCleanup(client.close)
        await client.connect(timeout=5)
        session, connection = client.session_id, client.connection_id
        for _ in range(3):  # some history before the run: event ids 1-3
            await client.ping()
        frames = client.frames()
        run = await client.start_agent("demo", "resume me")
        iterated = [event async for event in run]  # ends with the final event
        self.assertIsNotNone(dropped["at"])
        self.assertEqual(iterated, run.events)
        self.assert_complete_demo_run(run)
        await wait_for(lambda: client.is_open, what="open")
        self.assertTrue(client.recovered)
        self.assertEqual(client.session_id, session)
        self.assertEqual(client.connection_id, connection)  # the same manager took the socket
        self.assertEqual(lost, [])
        self.assertEqual(states.closes()[0].code, 1006)
        self.assertFalse(states.closes()[0].terminal)
        self.assertEqual([c.recovered for c in states.opens()], [False, True])
        # exactly once: every delivered frame of the session has its own event id
        ids = [f["event_id"] for f in delivered if f["type"] != "connection_established"]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(ids, sorted(ids))
        frames.close()
        seen = [f async for f in frames]
        self.assertEqual([f["type"] for f in seen if f.get("run_id") == run.run_id], DEMO_SEQUENCE)
        # the session goes on after the resume
        reply = await client.request("ping")
        self.assertEqual(reply["event_id"], run.events[-1]["event_id"] + 1)
        return client, run

    async def test_resume_mid_run_without_loss_or_duplicate(self):
        client, _ = await self._drop_mid_run()
        self.assertEqual(client.stats["duplicates_dropped"], 0)

    async def test_replayed_duplicates_are_dropped(self):
        # A client whose resume cursor lags 3 events behind what it delivered (pong 3,
        # agent_started 4, agent_thinking 5): the router replays those 3 again, and the
        # client must not deliver them twice.
        class LaggingCursor(RouterClient):
            def _connect_url(self):
                if self.session_id is not None:
                    real = self.last_event_id
                    self.last_event_id = max(0, real - 3)
                    try:
                        return super()._connect_url()
                    finally:
                        self.last_event_id = real
                return super()._connect_url()

        client, _ = await self._drop_mid_run(LaggingCursor)
        self.assertEqual(client.stats["duplicates_dropped"], 3)

    async def test_pending_request_survives_a_resume(self):
        router = self.start_router("--agents.demo-step-delay-ms=50")
        states = StateLog()
        client = await self.make_client(router.ws_url, TokenSource("alice"), on_state=states,
                                        min_backoff=0.2, max_backoff=0.3)
        await client.connect(timeout=5)
        session = client.session_id
        # The pong is written by the router but the socket drops before the client reads it:
        # the resumed session replays it and the request still resolves.
        router.pause()
        request = asyncio.ensure_future(client.request("ping", timeout=5))
        await asyncio.sleep(0.1)
        client.websocket.transport.abort()
        router.resume()
        reply = await request
        self.assertEqual(reply["type"], "pong")
        self.assertEqual(len(states.opens()), 2)  # it came with the replay of the new connection
        self.assertTrue(client.recovered)
        self.assertEqual(client.session_id, session)
