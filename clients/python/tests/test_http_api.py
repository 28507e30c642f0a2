"""The HTTP API helpers and user isolation against the real router."""

import asyncio

from support import API_KEY, RouterTestCase, TokenSource
from event_router_client import HttpApiError, healthz, publish, publish_sync


class PublishTest(RouterTestCase):
    async def asyncSetUp(self):
        await super().asyncSetUp()
        self.router = self.start_router()

    async def connect(self, user, **kwargs):
        client = await self.make_client(self.router.ws_url, TokenSource(user), **kwargs)
        await client.connect(timeout=5)
        return client

    async def test_publish_reaches_every_connection_of_the_user_only(self):
        received = {"alice1": [], "alice2": [], "bob": []}
        alice1 = await self.connect("alice", on_event=received["alice1"].append)
        alice2 = await self.connect("alice", on_event=received["alice2"].append)
        bob = await self.connect("bob", on_event=received["bob"].append)
        alice_events, bob_events = alice1.events(), bob.events()

        answer = await publish(self.router.http_url, API_KEY, "alice", "news", {"text": "for alice"})
        self.assertEqual(answer, {"delivered": 2})
        event = await alice_events.get(timeout=5)
        self.assertEqual(event["type"], "news")
        self.assertEqual(event["data"], {"text": "for alice"})
        self.assertEqual(event["user_id"], "alice")
        self.assertIsNone(event["reply_to"])

        # The blocking form, with the WebSocket URL as the base: bob's only event is his own.
        answer = await asyncio.to_thread(publish_sync, self.router.ws_url, API_KEY, "bob",
                                         "news", {"text": "for bob"})
        self.assertEqual(answer, {"delivered": 1})
        self.assertEqual((await bob_events.get(timeout=5))["data"], {"text": "for bob"})
        await alice1.ping()
        await alice2.ping()
        await bob.ping()  # every frame published before these pongs has been dispatched
        self.assertEqual([e["data"]["text"] for e in received["alice1"]], ["for alice"])
        self.assertEqual([e["data"]["text"] for e in received["alice2"]], ["for alice"])
        self.assertEqual([e["data"]["text"] for e in received["bob"]], ["for bob"])

        self.assertEqual(await publish(self.router.http_url, API_KEY, "carol", "news", {}),
                         {"delivered": 0})

    async def test_publish_errors(self):
        with self.assertRaises(HttpApiError) as caught:
            await publish(self.router.http_url, API_KEY, "alice", "pong", {})
        self.assertEqual(caught.exception.status, 400)
        self.assertIn("reserved", caught.exception.error)
        with self.assertRaises(HttpApiError) as caught:
            await publish(self.router.http_url, "wrong-key", "alice", "news", {})
        self.assertEqual(caught.exception.status, 401)
        self.assertIsInstance(caught.exception.body, dict)
        self.assertIn("error", caught.exception.body)

    async def test_two_users_never_see_each_others_frames(self):
        frames = {"alice": [], "bob": []}
        router = self.start_router("--agents.demo-step-delay-ms=10", "--agents.demo-steps=3")
        clients = {}
        for user in ("alice", "bob"):
            clients[user] = await self.make_client(router.ws_url, TokenSource(user),
                                                   on_frame=frames[user].append)
            await clients[user].connect(timeout=5)

        async def workload(user):
            client = clients[user]
            runs = await asyncio.gather(*[client.start_agent("demo", f"{user}-{i}") for i in range(3)])
            thread = await client.create_thread(f"{user}'s thread")
            pings = [client.ping() for _ in range(10)]
            publishes = [publish(router.http_url, API_KEY, user, "note", {"for": user, "n": n})
                         for n in range(5)]
            answers = await asyncio.gather(*pings, *publishes)
            results = [await r.result(timeout=10) for r in runs]
            return runs, thread, answers[10:], results

        (a_runs, a_thread, a_pub, a_res), (b_runs, b_thread, b_pub, b_res) = await asyncio.gather(
            workload("alice"), workload("bob"))
        self.assertEqual(a_pub, [{"delivered": 1}] * 5)
        self.assertEqual(b_pub, [{"delivered": 1}] * 5)
        self.assertTrue(all(r["type"] == "agent_completed" for r in a_res + b_res))
        await clients["alice"].ping()
        await clients["bob"].ping()

        own = {"alice": ({r.run_id for r in a_runs}, a_thread["thread_id"]),
               "bob": ({r.run_id for r in b_runs}, b_thread["thread_id"])}
        for user, other in (("alice", "bob"), ("bob", "alice")):
            with self.subTest(user=user):
                got = frames[user]
                # established, 3 demo runs of 7 events, thread_created, 10 pongs, 5 notes, 1 pong
                self.assertEqual(len(got), 1 + 3 * 7 + 1 + 10 + 5 + 1)
                self.assertTrue(all(f["user_id"] == user for f in got))
                other_runs, other_thread = own[other]
                self.assertFalse([f for f in got if f["run_id"] in other_runs])
                self.assertFalse([f for f in got if f["thread_id"] == other_thread])
                notes = [f for f in got if f["type"] == "note"]
                self.assertEqual(sorted(f["data"]["n"] for f in notes), list(range(5)))
                self.assertTrue(all(f["data"]["for"] == user for f in notes))
                self.assertNotIn(other, " ".join(str(f["data"]) for f in got))
                ids = [f["event_id"] for f in got]
                self.assertEqual(ids, list(range(len(ids))))  # 0 (established), 1, 2, ...
        health = await healthz(router.http_url)
        self.assertEqual(health["users"], 2)
