"""Pure unit tests (no router): close-code policy, backoff, JWT reading, URLs, redaction."""

import asyncio
import random
import unittest

import support  # noqa: F401  (puts the package on sys.path)
from event_router_client import Action, Backoff, classify_close, decode_jwt_payload, http_base_url, token_expiry
from event_router_client.client import RouterClient
from event_router_client.transport import redact


class ClosePolicyTest(unittest.TestCase):
    def test_codes(self):
        expected = {
            1000: Action.RECONNECT,  # a 1000 the application did not ask for
            1001: Action.RECONNECT,
            1006: Action.RECONNECT,
            None: Action.RECONNECT,
            1011: Action.RECONNECT,
            1012: Action.RECONNECT,
            4000: Action.RECONNECT,
            4008: Action.RECONNECT,
            4009: Action.RECONNECT,
            4010: Action.RECONNECT,
            4499: Action.RECONNECT,
            4029: Action.RECONNECT_SLOW,
            4501: Action.REFRESH_TOKEN,
            1009: Action.TERMINAL,
            1002: Action.TERMINAL,  # protocol error
            1007: Action.TERMINAL,  # invalid UTF-8
            1008: Action.TERMINAL,
            4500: Action.TERMINAL,
            4503: Action.TERMINAL,
            4510: Action.TERMINAL,
            4511: Action.TERMINAL,
            4512: Action.TERMINAL,  # the session moved to another connection
            4999: Action.TERMINAL,
        }
        for code, action in expected.items():
            with self.subTest(code=code):
                self.assertIs(classify_close(code), action)

    def test_application_close_stops_whatever_the_code(self):
        for code in (1000, 1001, 1006, 4501):
            self.assertIs(classify_close(code, closed_by_application=True), Action.STOP)


class BackoffTest(unittest.TestCase):
    def test_full_jitter_bounds_and_growth(self):
        backoff = Backoff(0.5, 20.0, 5.0, rng=random.Random(7))
        for attempt in range(12):
            cap = min(20.0, 0.5 * 2 ** (attempt + 1))
            samples = [backoff.delay(attempt) for _ in range(300)]
            self.assertTrue(all(0.5 <= s <= cap for s in samples), (attempt, min(samples), max(samples)))
            # jittered: the samples spread over the interval, not one value
            if cap > 0.5:
                self.assertGreater(max(samples) - min(samples), (cap - 0.5) * 0.5)
        self.assertEqual(backoff.cap(100), 20.0)

    def test_rate_limited_backs_off_longer(self):
        backoff = Backoff(0.5, 20.0, 5.0, rng=random.Random(1))
        for attempt in range(5):
            self.assertGreaterEqual(backoff.delay(attempt, Action.RECONNECT_SLOW), 5.5)

    def test_invalid(self):
        with self.assertRaises(ValueError):
            Backoff(2.0, 1.0)


class TokenTest(unittest.TestCase):
    def test_reads_exp_without_verifying(self):
        token = support.mint("alice", exp=1234567890, secret="whatever")
        self.assertEqual(token_expiry(token), 1234567890.0)
        self.assertEqual(decode_jwt_payload(token)["sub"], "alice")

    def test_garbage(self):
        for token in ("", "a.b", "a.!!!.c", "a.bm90IGpzb24.c", "x.WzFd.y"):
            with self.subTest(token=token):
                self.assertIsNone(token_expiry(token))
        self.assertIsNone(token_expiry(support.mint("alice", exp=5).replace(
            support.mint("alice", exp=5).split(".")[1], "eyJleHAiOiJzb29uIn0")))


class UrlTest(unittest.TestCase):
    def test_http_base_url(self):
        self.assertEqual(http_base_url("ws://127.0.0.1:9/ws"), "http://127.0.0.1:9")
        self.assertEqual(http_base_url("wss://h/prefix/ws"), "https://h/prefix")
        self.assertEqual(http_base_url("http://h:1/"), "http://h:1")
        with self.assertRaises(ValueError):
            http_base_url("ftp://h")

    def test_resume_query(self):
        client = RouterClient("ws://h:1/ws?x=1&resume=old", lambda: "t")
        self.assertEqual(client._connect_url(), "ws://h:1/ws?x=1&resume=old")  # no session yet
        client.session_id, client.resume_token, client.last_event_id = "s-1", "rt-2", 17
        self.assertEqual(client._connect_url(), "ws://h:1/ws?x=1&resume=rt-2&last_event_id=17")
        client.resume = False
        self.assertEqual(client._connect_url(), "ws://h:1/ws?x=1&resume=old")

    def test_redaction(self):
        text = redact("> Sec-WebSocket-Protocol: router.v1, jwt.aaa.bbb.ccc GET /ws?resume=rt-1&last_event_id=3")
        self.assertNotIn("aaa", text)
        self.assertNotIn("rt-1", text)
        self.assertIn("last_event_id=3", text)


class AsyncCallbackTest(unittest.IsolatedAsyncioTestCase):
    """Async callbacks run as tasks the client keeps: a failure is logged through the
    package's logger, and close() lets them finish or cancels them."""

    async def test_a_failing_async_callback_is_logged(self):
        client = RouterClient("ws://127.0.0.1:1/ws", lambda: "t")

        async def on_frame(frame):
            await asyncio.sleep(0)
            raise RuntimeError("callback broke")

        with self.assertLogs("event_router_client", level="ERROR") as logs:
            client._call(on_frame, {"type": "pong"})
            await asyncio.sleep(0.05)
        self.assertTrue(any("callback failed" in line for line in logs.output))
        self.assertIn("callback broke", "\n".join(logs.output))
        self.assertEqual(client._callback_tasks, set())

    async def test_close_awaits_the_closed_state_callback_and_cancels_one_that_hangs(self):
        client = RouterClient("ws://127.0.0.1:1/ws", lambda: "t", close_timeout=0.2)
        states, hung = [], []

        async def on_state(change):
            await asyncio.sleep(0.01)
            states.append(change.state)

        async def hangs(frame):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                hung.append("cancelled")
                raise

        client.on_state = on_state
        client._call(hangs, {"type": "pong"})
        await client.close()
        self.assertEqual(states, ["closed"])
        self.assertEqual(hung, ["cancelled"])
        self.assertEqual(client._callback_tasks, set())


if __name__ == "__main__":
    unittest.main()
