"""Reconnects against the real router: restarts, terminal close codes (4503, 4511, 4512, 1009,
1007, 1002), token expiry (4501), auth."""

import asyncio
import json
import time
import urllib.parse

import websockets

from support import API_KEY, AsyncTokenSource, RouterTestCase, StateLog, TokenSource, mint, wait_for
from event_router_client import (
    AuthenticationError,
    ClientClosedError,
    ConnectionClosedError,
    SessionLostError,
    disconnect,
    healthz,
)


class ServerRestartTest(RouterTestCase):
    async def test_reconnects_after_restart_on_same_port_not_recovered(self):
        router = self.start_router()
        states, lost, tokens = StateLog(), [], TokenSource("alice")
        client = await self.make_client(router.ws_url, tokens, on_state=states,
                                        on_session_lost=lost.append)
        await client.connect(timeout=5)
        first_session = client.session_id
        self.assertTrue(first_session.startswith("s-"))
        self.assertFalse(client.recovered)
        await client.ping()

        port = router.port
        self.assertEqual(await self.stop_router(router), 0)  # SIGTERM: the router drains, closes with 1001
        await wait_for(lambda: states.closes(), what="the close")
        self.assertEqual(states.closes()[0].code, 1001)
        self.assertFalse(states.closes()[0].terminal)
        await asyncio.sleep(0.3)  # the client retries against a closed port meanwhile
        self.assertFalse(client.is_open)

        restarted = self.start_router(port=port)
        self.assertEqual(restarted.port, port)
        await wait_for(lambda: client.is_open, timeout=10, what="the reconnect")
        self.assertNotEqual(client.session_id, first_session)
        self.assertFalse(client.recovered)  # the new process cannot know the old session
        self.assertEqual(len(lost), 1)
        self.assertEqual(lost[0].old_session_id, first_session)
        self.assertEqual(lost[0].new_session_id, client.session_id)
        self.assertGreaterEqual(len(tokens.calls), 2)  # a token per attempt
        self.assertIn("reconnecting", states.states())
        self.assertEqual(states.opens()[-1].recovered, False)
        self.assertEqual(states.states()[-1], "open")
        self.assertFalse(any(c.terminal for c in states.changes))
        reply = await client.request("ping")
        self.assertEqual(reply["type"], "pong")
        self.assertEqual(reply["event_id"], 1)  # event ids restart with the new session

    async def test_killed_router_fails_runs_and_requests_of_the_lost_session(self):
        router = self.start_router("--agents.demo-step-delay-ms=200", "--agents.demo-steps=20")
        lost = []
        client = await self.make_client(router.ws_url, TokenSource("alice"),
                                        on_session_lost=lost.append)
        await client.connect(timeout=5)
        run = await client.start_agent("demo", "slow")
        self.assertEqual(run.events[0]["type"], "agent_started")

        port = router.port
        router.kill()  # no close frame: the client sees 1006 and tries to resume
        restarted = self.start_router(port=port)
        with self.assertRaises(SessionLostError):
            await asyncio.wait_for(run.result(), 10)
        with self.assertRaises(SessionLostError):
            async for _ in run:
                pass
        await wait_for(lambda: client.is_open, timeout=10, what="the reconnect")
        self.assertFalse(client.recovered)
        self.assertEqual(len(lost), 1)
        self.assertEqual(lost[0].failed_runs, 1)
        self.assertEqual(client.close_code, 1006)
        health = await healthz(restarted.http_url)
        self.assertEqual(health["connections"], 1)


class TerminalCloseTest(RouterTestCase):
    async def test_no_reconnect_after_4503(self):
        router = self.start_router("--router.max-connections-per-user=1")
        first = await self.make_client(router.ws_url, TokenSource("alice"))
        await first.connect(timeout=5)

        states, tokens = StateLog(), TokenSource("alice")
        second = await self.make_client(router.ws_url, tokens, on_state=states)
        with self.assertRaises(ConnectionClosedError) as caught:
            await second.connect(timeout=5)
        self.assertEqual(caught.exception.code, 4503)
        self.assertTrue(second.closed)
        self.assertTrue(states.closes()[-1].terminal)
        self.assertEqual(states.closes()[-1].code, 4503)
        await asyncio.sleep(0.6)  # many backoff periods (0.05-0.1 s): no attempt follows
        self.assertEqual(len(tokens.calls), 1)
        self.assertEqual(states.states().count("connecting"), 1)
        self.assertTrue(first.is_open)
        await first.ping()
        health = await healthz(router.http_url)
        self.assertEqual(health["connections"], 1)

    async def test_no_reconnect_after_4511_disconnect_api(self):
        router = self.start_router()
        states, tokens = StateLog(), TokenSource("alice")
        client = await self.make_client(router.ws_url, tokens, on_state=states)
        bob = await self.make_client(router.ws_url, TokenSource("bob"))
        await client.connect(timeout=5)
        await bob.connect(timeout=5)
        pending = asyncio.ensure_future(client.request("ping", timeout=None))
        answer = await disconnect(router.http_url, API_KEY, "alice")
        self.assertEqual(answer, {"disconnected": 1})
        error = await client.wait_closed(timeout=5)
        self.assertIsInstance(error, ConnectionClosedError)
        self.assertEqual(error.code, 4511)
        self.assertEqual(states.closes()[-1].code, 4511)
        self.assertTrue(states.closes()[-1].terminal)
        # the ping either got its pong before the close or fails with the terminal error
        try:
            await asyncio.wait_for(pending, 2)
        except ConnectionClosedError as exc:
            self.assertEqual(exc.code, 4511)
        await asyncio.sleep(0.6)
        self.assertEqual(len(tokens.calls), 1)
        self.assertEqual(states.states().count("connecting"), 1)
        with self.assertRaises(ConnectionClosedError):
            await client.request("ping")
        self.assertTrue(bob.is_open)  # another user's connection is untouched
        await bob.ping()
        self.assertEqual((await healthz(router.http_url))["connections"], 1)


    async def test_no_reconnect_after_4512_another_connection_took_the_session(self):
        router = self.start_router("--agents.demo-step-delay-ms=100", "--agents.demo-steps=10")
        states, tokens = StateLog(), TokenSource("alice")
        client = await self.make_client(router.ws_url, tokens, on_state=states)
        await client.connect(timeout=5)
        await client.ping()
        run = await client.start_agent("demo", "moves away")
        # Another connection of the user resumes the session while the client's is open (a
        # second network path): it takes the session over.
        query = urllib.parse.urlencode({"resume": client.resume_token,
                                        "last_event_id": client.last_event_id})
        other = await websockets.connect(f"{router.ws_url}?{query}",
                                         subprotocols=["router.v1", "jwt." + mint("alice")])
        try:
            taken = json.loads(await asyncio.wait_for(other.recv(), 5))
            self.assertTrue(taken["data"]["recovered"])
            self.assertEqual(taken["data"]["session_id"], client.session_id)
            error = await client.wait_closed(timeout=5)
            self.assertIsInstance(error, ConnectionClosedError)
            self.assertEqual(error.code, 4512)
            self.assertEqual(states.closes()[-1].code, 4512)
            self.assertTrue(states.closes()[-1].terminal)
            with self.assertRaises(ConnectionClosedError):
                await run.result(timeout=2)
            await asyncio.sleep(0.6)  # many backoff periods: no attempt follows
            self.assertEqual(len(tokens.calls), 1)
            self.assertEqual(states.states().count("connecting"), 1)
            # The session goes on in the other connection: the run ends there.
            while True:
                frame = json.loads(await asyncio.wait_for(other.recv(), 5))
                if frame["type"] == "agent_completed" and frame["run_id"] == run.run_id:
                    break
        finally:
            await other.close()


class TokenExpiryTest(RouterTestCase):
    """The router accepts a token up to router.jwt-leeway-s past its exp at the upgrade, keeps
    the connection until exp plus that leeway, then closes it with 4501; the session waits for
    a resume, so the reconnect with a fresh token recovers it. Each test sets the leeway."""

    async def test_4501_at_exp_resumes_with_a_fresh_token_and_the_run_loses_nothing(self):
        router = self.start_router("--router.jwt-leeway-s=0", "--agents.demo-step-delay-ms=150",
                                   "--agents.demo-steps=12")
        states, lost = StateLog(), []
        tokens = AsyncTokenSource("alice", ttls=[2])  # then 1 h; an async provider
        client = await self.make_client(router.ws_url, tokens, on_state=states,
                                        proactive_refresh=False, on_session_lost=lost.append)
        await client.connect(timeout=5)
        first_session = client.session_id
        first_exp = int(tokens.calls[0]) + 2
        run = await client.start_agent("demo", "across the expiry")  # ~2.2 s
        await wait_for(lambda: states.closes(), timeout=8, what="close 4501")
        closed_at = time.time()
        self.assertEqual(states.closes()[0].code, 4501)
        self.assertFalse(states.closes()[0].terminal)
        self.assertFalse(run.done, "the run was under way at the expiry")
        # With no leeway the router closes at exp itself.
        self.assertGreaterEqual(closed_at, first_exp - 0.1)
        self.assertLess(closed_at, first_exp + 1.5)
        await wait_for(lambda: len(states.opens()) >= 2 and client.is_open, timeout=5,
                       what="the reconnect")
        self.assertEqual(len(tokens.calls), 2)
        self.assertNotEqual(tokens.tokens[0], tokens.tokens[1])
        # A session closed with 4501 waits for its resume: the same session goes on.
        self.assertTrue(client.recovered)
        self.assertEqual(client.session_id, first_session)
        self.assertEqual(lost, [])
        final = await run.result(timeout=5)
        self.assertEqual(final["type"], "agent_completed")
        ids = [e["event_id"] for e in run.events]
        self.assertEqual(len(ids), 16)
        self.assertEqual(ids, list(range(ids[0], ids[0] + 16)), "every event once, in order")
        await client.ping()
        self.assertEqual(client.stats["rotations"], 0)
        self.assertEqual(client.stats["duplicates_dropped"], 0)

    async def test_token_past_exp_within_the_leeway_is_accepted_then_closed_when_it_ends(self):
        router = self.start_router("--router.jwt-leeway-s=3")
        states = StateLog()
        tokens = TokenSource("alice", ttls=[-1])  # expired 1 s ago: within the 3 s leeway
        client = await self.make_client(router.ws_url, tokens, on_state=states,
                                        proactive_refresh=False)
        await client.connect(timeout=5)  # the upgrade accepts it
        session = client.session_id
        await wait_for(lambda: states.closes(), timeout=5, what="close 4501")
        closed_at = time.time()
        self.assertEqual(states.closes()[0].code, 4501)
        self.assertGreaterEqual(closed_at, int(tokens.calls[0]) - 1 + 3 - 0.2,
                                "closed when exp plus the leeway passed, not before")
        await wait_for(lambda: len(states.opens()) >= 2 and client.is_open, timeout=5,
                       what="the second open")
        self.assertEqual(len(tokens.calls), 2)
        self.assertTrue(client.recovered)
        self.assertEqual(client.session_id, session)
        await client.ping()

    async def test_401_refreshes_the_token(self):
        router = self.start_router()
        states = StateLog()
        tokens = TokenSource("alice", ttls=[-40])  # past the leeway: HTTP 401 token_expired
        client = await self.make_client(router.ws_url, tokens, on_state=states)
        await client.connect(timeout=5)
        self.assertEqual(len(tokens.calls), 2)
        refused = [c for c in states.changes if c.state == "reconnecting"]
        self.assertEqual(refused[0].http_status, 401)
        self.assertIn("token_expired", refused[0].reason)
        await client.ping()

    async def test_401_repeatedly_is_terminal(self):
        router = self.start_router()
        tokens = TokenSource("alice", secret="not-the-router-secret")
        client = await self.make_client(router.ws_url, tokens, max_auth_failures=2)
        with self.assertRaises(AuthenticationError) as caught:
            await client.connect(timeout=5)
        self.assertEqual(caught.exception.error, "invalid_signature")
        self.assertEqual(caught.exception.http_status, 401)
        self.assertEqual(len(tokens.calls), 2)
        await asyncio.sleep(0.3)
        self.assertEqual(len(tokens.calls), 2)

    async def test_proactive_refresh_moves_to_a_fresh_token_and_resumes(self):
        router = self.start_router("--agents.demo-step-delay-ms=100", "--agents.demo-steps=10")
        states = StateLog()
        tokens = TokenSource("alice", ttls=[4])  # refreshed halfway, at ~2 s
        client = await self.make_client(router.ws_url, tokens, on_state=states)
        await client.connect(timeout=5)
        session = client.session_id
        first_exp = int(tokens.calls[0] + 4)
        await asyncio.sleep(max(0.0, tokens.calls[0] + 1.3 - time.time()))
        run = await client.start_agent("demo", "across the rotation")  # ~1.3 s long
        await wait_for(lambda: client.stats["rotations"] == 1, timeout=4, what="the rotation")
        final = await run.result(timeout=5)
        self.assertEqual(final["type"], "agent_completed")
        self.assertEqual([e["type"] for e in run.events],
                         ["agent_started"] + ["agent_thinking"] * 10
                         + ["tool_executing", "tool_completed", "agent_completed"])
        ids = [e["event_id"] for e in run.events]
        self.assertEqual(ids, list(range(ids[0], ids[0] + len(ids))))
        await wait_for(lambda: client.is_open, what="open")
        self.assertTrue(client.recovered)
        self.assertEqual(client.session_id, session)
        self.assertEqual(len(tokens.calls), 2)
        # past the first token's exp: no 4501, the connection lives on the fresh token
        await asyncio.sleep(max(0.0, first_exp + 1.0 - time.time()))
        self.assertTrue(client.is_open)
        self.assertNotIn(4501, [c.code for c in states.closes()])
        self.assertEqual(len(states.opens()), 2)
        await client.ping()


class CloseCodeTest(RouterTestCase):
    async def test_application_close_stops_with_1000(self):
        router = self.start_router()
        states, tokens = StateLog(), TokenSource("alice")
        client = await self.make_client(router.ws_url, tokens, on_state=states)
        await client.connect(timeout=5)
        await client.close()
        self.assertTrue(client.closed)
        self.assertEqual(states.closes()[-1].code, 1000)
        self.assertTrue(states.closes()[-1].terminal)
        self.assertIsNone(await client.wait_closed(1))
        await asyncio.sleep(0.3)
        self.assertEqual(len(tokens.calls), 1)
        self.assertEqual((await healthz(router.http_url))["connections"], 0)
        with self.assertRaises(ClientClosedError):
            await client.ping()

    async def test_4029_reconnects_after_a_longer_backoff(self):
        router = self.start_router("--router.messages-burst=5", "--router.messages-per-second=1")
        states = StateLog()
        client = await self.make_client(router.ws_url, TokenSource("alice"), on_state=states,
                                        rate_limited_backoff=0.7)
        await client.connect(timeout=5)
        first_session = client.session_id
        for _ in range(12):  # 5 accepted, then 5 refusals in a row close the connection
            await client.send("ping")
        await wait_for(lambda: states.closes(), what="close 4029")
        self.assertEqual(states.closes()[0].code, 4029)
        self.assertFalse(states.closes()[0].terminal)
        waits = [c for c in states.changes if c.state == "reconnecting"]
        self.assertGreaterEqual(waits[0].delay, 0.7 + 0.05)  # rate_limited_backoff + min_backoff
        await wait_for(lambda: client.is_open and client.session_id != first_session, timeout=5,
                       what="the reconnect")
        await client.ping()

    async def test_1009_is_terminal(self):
        router = self.start_router("--router.max-message-bytes=1024")
        states = StateLog()
        client = await self.make_client(router.ws_url, TokenSource("alice"), on_state=states)
        await client.connect(timeout=5)
        self.assertEqual(client.limits["max_message_bytes"], 1024)
        client.limits.clear()  # skip the client's own check to reach the router's
        await client.send("create_thread", {"title": "x" * 2000})
        error = await client.wait_closed(timeout=5)
        self.assertEqual(error.code, 1009)
        self.assertTrue(states.closes()[-1].terminal)
        self.assertEqual(states.states().count("connecting"), 1)

    async def test_1007_is_terminal(self):
        router = self.start_router()
        states = StateLog()
        client = await self.make_client(router.ws_url, TokenSource("alice"), on_state=states)
        await client.connect(timeout=5)
        # A masked text frame whose payload is not UTF-8 (websockets would never send one).
        payload, mask = b"{\xff\xfe}", b"\x01\x02\x03\x04"
        client.websocket.transport.write(bytes([0x81, 0x80 | len(payload)]) + mask
                                         + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        error = await client.wait_closed(timeout=5)
        self.assertEqual(error.code, 1007)
        self.assertTrue(states.closes()[-1].terminal)
        self.assertEqual(states.states().count("connecting"), 1)

    async def test_1002_is_terminal(self):
        router = self.start_router()
        states = StateLog()
        client = await self.make_client(router.ws_url, TokenSource("alice"), on_state=states)
        await client.connect(timeout=5)
        client.websocket.transport.write(bytes([0x81, 0x02]) + b"hi")  # a client frame must be masked
        error = await client.wait_closed(timeout=5)
        self.assertEqual(error.code, 1002)
        self.assertTrue(states.closes()[-1].terminal)
        self.assertEqual(states.states().count("connecting"), 1)

    async def test_1011_reconnects(self):
        router = self.start_router("--agents.test-agents=1")
        states = StateLog()
        client = await self.make_client(router.ws_url, TokenSource("alice"), on_state=states)
        await client.connect(timeout=5)
        first_session = client.session_id
        await client.send("test_fault")  # the manager throws: its connection closes with 1011
        await wait_for(lambda: states.closes(), what="close 1011")
        self.assertEqual(states.closes()[0].code, 1011)
        self.assertFalse(states.closes()[0].terminal)
        await wait_for(lambda: client.is_open and client.session_id != first_session, timeout=5,
                       what="the reconnect")
        self.assertFalse(client.recovered)
        await client.ping()

    async def test_close_while_reconnecting(self):
        router = self.start_router()
        states = StateLog()
        client = await self.make_client(router.ws_url, TokenSource("alice"), on_state=states)
        await client.connect(timeout=5)
        router.kill()
        await wait_for(lambda: "reconnecting" in states.states(), what="reconnecting")
        pending = asyncio.ensure_future(client.request("ping", timeout=None))
        await asyncio.sleep(0.2)  # refused connects meanwhile
        self.assertFalse(pending.done())
        started = time.monotonic()
        await client.close()
        self.assertLess(time.monotonic() - started, 1.0)
        with self.assertRaises(ClientClosedError):
            await pending
        self.assertTrue(states.changes[-1].terminal)
        self.assertEqual(states.changes[-1].state, "closed")
