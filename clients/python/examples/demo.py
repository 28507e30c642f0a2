#!/usr/bin/python3
"""A tour of the Python client: connect, ping, threads, an agent run, a backend publish.

Against a router started with ./quickstart.sh run (which prints a demo token):

    /usr/bin/python3 clients/python/examples/demo.py --url ws://127.0.0.1:8080/ws --token eyJ...

or let the example mint its own token with the router's secret (HS256):

    /usr/bin/python3 clients/python/examples/demo.py --secret <router.jwt-secret> --user alice \\
        --api-key <router.api-key>

With --api-key it also publishes an event to the user through the HTTP API and shows it
arriving on the WebSocket. --watch N keeps the connection N more seconds and prints what
arrives (stop or restart the router meanwhile to watch the reconnects).
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from event_router_client import (  # noqa: E402
    RequestError,
    RouterClient,
    SessionLost,
    StateChange,
    publish,
)


def mint_hs256(secret: str, user: str, ttl: int) -> str:
    """A development token (the router verifies it with the same secret)."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"sub": user, "iat": now, "exp": now + ttl}).encode())
    signature = b64(hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def show(label: str, frame: dict) -> None:
    data = json.dumps(frame.get("data"), ensure_ascii=False)
    if len(data) > 100:
        data = data[:97] + "..."
    print(f"  {label:<8} #{frame.get('event_id'):<4} {frame['type']:<16} {data}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("ER_URL", "ws://127.0.0.1:8080/ws"))
    parser.add_argument("--token", default=os.environ.get("ER_TOKEN"),
                        help="a JWT (for example the demo token ./quickstart.sh run prints)")
    parser.add_argument("--secret", help="mint tokens locally with this HS256 secret instead")
    parser.add_argument("--user", default="demo-user", help="user id of minted tokens")
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime of minted tokens (s)")
    parser.add_argument("--api-key", help="router.api-key, to publish an event to the user")
    parser.add_argument("--agent", default="demo")
    parser.add_argument("--watch", type=float, default=0.0,
                        help="stay connected this many seconds more, printing every frame")
    args = parser.parse_args()
    if not args.token and not args.secret:
        parser.error("give --token (or ER_TOKEN) or --secret")

    def get_token() -> str:  # called on every (re)connect and before the token expires
        return args.token or mint_hs256(args.secret, args.user, args.ttl)

    def on_state(change: StateChange) -> None:
        extra = []
        if change.code is not None:
            extra.append(f"code {change.code}")
        if change.reason:
            extra.append(change.reason)
        if change.delay is not None:
            extra.append(f"retry in {change.delay:.2f} s")
        if change.recovered is not None:
            extra.append(f"recovered={change.recovered}")
        if change.terminal:
            extra.append("terminal")
        print(f"[state] {change.state}" + (f" ({', '.join(extra)})" if extra else ""))

    def on_session_lost(lost: SessionLost) -> None:
        print(f"[lost]  session {lost.old_session_id} was not recovered after event "
              f"{lost.last_event_id}: reload what you show ({lost.failed_runs} run(s) and "
              f"{lost.failed_requests} request(s) failed)")

    client = RouterClient(args.url, get_token, on_state=on_state, on_session_lost=on_session_lost)
    try:
        await client.connect(timeout=15)
    except Exception as exc:  # noqa: BLE001 - an example reports and exits
        print(f"could not connect: {exc}")
        return 1
    try:
        print(f"connected as {client.user_id!r}, session {client.session_id}, "
              f"server {client.server_id}, limits {client.limits}")
        print(f"ping: {1000 * await client.ping():.2f} ms")

        thread = await client.create_thread("Python client demo")
        print(f"created thread {thread['thread_id']}")

        print(f"start_agent {args.agent!r}:")
        try:
            run = await client.start_agent(args.agent, "what is the answer?",
                                           thread_id=thread["thread_id"])
        except RequestError as exc:
            print(f"  refused: {exc.code} ({exc.message})")
        else:
            async for event in run:
                show("run", event)
            print(f"  final: {(await run.result())['type']}")

        print("user_message (runs the default agent in a new thread):")
        run = await client.user_message("hello from Python")
        final = await run.result(timeout=60)
        show("run", final)
        history = await client.get_thread_history(run.thread_id)
        print(f"  thread {run.thread_id} now holds {len(history)} message(s): "
              f"{[m['role'] for m in history]}")
        print(f"threads of this user: {len(await client.list_threads())}")

        if args.api_key:
            events = client.events()
            answer = await publish(args.url, args.api_key, client.user_id, "demo.notice",
                                   {"text": "published through the HTTP API"})
            print(f"publish answered {answer}")
            show("event", await events.get(timeout=5))
            events.close()

        if args.watch > 0:
            print(f"watching for {args.watch:.0f} s (every frame):")
            async with client.frames() as frames:
                deadline = time.monotonic() + args.watch
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        show("frame", await frames.get(timeout=remaining))
                    except (asyncio.TimeoutError, EOFError):
                        break
    finally:
        await client.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
