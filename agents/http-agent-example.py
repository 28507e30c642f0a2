#!/usr/bin/python3
"""Example HTTP agent backend for event-router (Python 3 standard library only).

    agents/http-agent-example.py [--host 127.0.0.1] [--port 9100] [--delay-ms 300] [--bearer TOKEN]

The first stdout line is `http-agent-example listening on http://HOST:PORT/agent`; one log
line per request goes to stderr. Declare it as an HTTP agent in caf-application.conf:

    [agents.http-example]
    url="http://127.0.0.1:9100/agent"

The request
-----------
For each run the router sends one request (keep-alive connections are reused between runs):

    POST /agent HTTP/1.1
    Content-Type: application/json
    X-Request-Id: r-...                     (the run id)
    Authorization: Bearer <token>           (only when a bearer is configured for the agent)

    {"run_id": "r-...", "thread_id": "t-..." or null, "agent": "http-example",
     "user_id": "<the verified user id>", "payload": {...}}

`payload` is the client's payload: {"agent", "input"} for start_agent, {"text"} for
user_message. `user_id` is the user the router authenticated: trust it, not the payload.

The response
------------
Any status other than 2xx fails the run (the router reports it as one agent_error). A 2xx
response streams events, each one {"type": T, "data": {...}} with T one of agent_thinking,
tool_executing, tool_completed, agent_progress, agent_completed, agent_error: the same events
as the command agents' line protocol (see README.md). The router forwards each event to the
user as soon as it arrives, and agent_completed or agent_error ends the run; a stream that
ends without one of them is an error. Two formats:

    Content-Type: application/x-ndjson      one JSON object per line
        {"type": "agent_thinking", "data": {"text": "Reading the request"}}

    Content-Type: text/event-stream         Server-Sent Events: `event:` names the type,
        event: agent_thinking               `data:` carries the data object, a blank line
        data: {"text": "Reading the request"}   ends the event (comments `: ...` and
                                            `id:`/`retry:` fields are ignored)

This server answers NDJSON, or SSE when the path is /agent/sse or the Accept header prefers
text/event-stream. It uses chunked transfer encoding, so the connection stays open for the
router's next run (a response without a length that ends by closing the connection also
works, but then the connection cannot be reused). Keep each event line well under 64 KiB.

The router gives up on a run by closing the connection: stop_agent, the agent's timeout, or
the user's connection closing. Writing to the socket then fails (within an event or two);
stop working on the run at that point, as this server does.

Streaming a model's tokens
--------------------------
`run_agent` below yields events and the handler sends each one as it is yielded. A real
backend streams its model's output the same way, one agent_progress event per piece of text:

    def run_agent(request, delay):
        yield "agent_thinking", {"text": "Asking the model"}
        answer = []
        with llm.stream(prompt_for(request)) as pieces:   # any client that yields text
            for piece in pieces:
                answer.append(piece)
                yield "agent_progress", {"delta": piece}
        yield "agent_completed", {"output": "".join(answer)}

When the router goes away, the handler closes the generator: the `with` block exits and the
model's stream is closed too, so nobody keeps paying for tokens no one will read.

Try it
------
    agents/http-agent-example.py --port 9100 &
    curl -N -H 'Content-Type: application/json' -H 'X-Request-Id: r-1' \\
         -d '{"run_id": "r-1", "thread_id": null, "agent": "http-example",
              "user_id": "alice", "payload": {"text": "hello there"}}' \\
         http://127.0.0.1:9100/agent          # or .../agent/sse for Server-Sent Events
"""

import argparse
import hmac
import json
import logging
import re
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
MAX_BODY_BYTES = 1024 * 1024


# ---- the agent --------------------------------------------------------------------------

def input_text(payload):
    """The text to work on: user_message sends {"text"}, start_agent {"agent", "input"}."""
    if "text" in payload:
        return str(payload["text"])
    value = payload.get("input")
    return value if isinstance(value, str) else json.dumps(value)


def run_agent(request, delay):
    """The agent: yields (event type, data) pairs, pausing as real work would."""
    text = input_text(request["payload"])

    yield "agent_thinking", {"text": f"Reading the message of {request['user_id']}"}
    time.sleep(delay)

    yield "tool_executing", {"tool": "word_count", "input": text}
    time.sleep(delay)
    words = text.split()
    yield "tool_completed", {"tool": "word_count", "output": {"words": len(words)}}
    time.sleep(delay)

    yield "agent_thinking", {"text": "Writing the answer"}
    longest = max(words, key=len, default="")
    answer = f'Words in your message: {len(words)}. The longest: "{longest}".'
    for token in re.findall(r"\S+\s*", answer):  # the way an LLM streams its answer
        time.sleep(delay / 4)
        yield "agent_progress", {"delta": token}

    yield "agent_completed", {"output": answer}


def with_final_error(events):
    """Turns an exception inside the agent into the run's final agent_error event."""
    try:
        yield from events
    except Exception:
        logging.exception("the agent failed")
        yield "agent_error", {"message": "the agent failed"}


# ---- the protocol -----------------------------------------------------------------------

class ClientGone(Exception):
    """The router closed the connection: stop_agent, a timeout, or the user left."""


def parse_request(body):
    """The router's request; ValueError says what is wrong with it."""
    try:
        request = json.loads(body)
    except ValueError:  # also invalid UTF-8
        raise ValueError("the body is not JSON") from None
    if not isinstance(request, dict):
        raise ValueError("the body must be a JSON object")
    for field in ("run_id", "agent", "user_id"):
        if not isinstance(request.get(field), str) or not request[field]:
            raise ValueError(f"'{field}' must be a non-empty string")
    if not isinstance(request.get("thread_id"), (str, type(None))):
        raise ValueError("'thread_id' must be a string or null")
    if not isinstance(request.get("payload"), dict):
        raise ValueError("'payload' must be an object")
    return request


def encode(event_type, data, sse):
    """One event in the response's format. json.dumps never writes a line break, so an
    event is exactly one NDJSON line, or one SSE `data:` line."""
    if sse:
        return f"event: {event_type}\ndata: {json.dumps(data)}\n\n".encode()
    return (json.dumps({"type": event_type, "data": data}) + "\n").encode()


def accept_quality(accept, media_type):
    """The q value an Accept header gives media_type (the most specific range wins)."""
    main_type = media_type.split("/")[0]
    quality, specificity = 0.0, -1
    for item in accept.split(","):
        media_range, *params = [part.strip().lower() for part in item.split(";")]
        rank = {media_type: 2, f"{main_type}/*": 1, "*/*": 0}.get(media_range)
        if rank is None or rank < specificity:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality, specificity = q, rank
    return quality


def wants_sse(accept):
    return accept_quality(accept, SSE) > accept_quality(accept, NDJSON)


# ---- the server -------------------------------------------------------------------------

class AgentHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the router reuses connections between runs
    server_version = "http-agent-example/1"
    disable_nagle_algorithm = True  # send each small event at once

    def do_POST(self):
        self.run_id = self.headers.get("X-Request-Id") or "-"  # for the log, until parsed
        try:
            length = int(self.headers["Content-Length"])
        except (TypeError, ValueError):
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True  # an unread body would garble the next request
            self.fail(HTTPStatus.BAD_REQUEST, f"send a Content-Length of at most {MAX_BODY_BYTES}")
            return
        body = self.rfile.read(length)

        path = urlsplit(self.path).path
        if path not in ("/agent", "/agent/sse"):
            self.fail(HTTPStatus.NOT_FOUND, "POST /agent or /agent/sse")
            return
        if not self.authorized():
            self.fail(HTTPStatus.UNAUTHORIZED, "a valid bearer token is required")
            return
        try:
            request = parse_request(body)
        except ValueError as e:
            self.fail(HTTPStatus.BAD_REQUEST, str(e))
            return
        self.run_id = request["run_id"]
        sse = path == "/agent/sse" or wants_sse(self.headers.get("Accept", ""))
        self.stream(with_final_error(run_agent(request, self.server.delay)), sse)

    def authorized(self):
        if self.server.bearer is None:
            return True
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.server.bearer.encode())

    def stream(self, events, sse):
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", SSE if sse else NDJSON)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent, last = 0, None
        try:
            for event_type, data in events:
                self.send_chunk(encode(event_type, data, sse))
                sent, last = sent + 1, event_type
            self.send_chunk(b"")  # the empty last chunk ends the response
            outcome = f"{last}, {sent} events"
        except ClientGone:
            self.close_connection = True
            outcome = f"the router went away after {sent} events; stopped"
        finally:
            events.close()  # stops the agent if it is still running
        self.log(f"200 {'sse' if sse else 'ndjson'}: {outcome}")

    def send_chunk(self, data):
        """Sends one chunk of the chunked body; b"" is the last chunk."""
        try:
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError as e:  # BrokenPipeError, ConnectionResetError, ...
            raise ClientGone() from e

    def fail(self, status, message):
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(body)
        self.log(f"{status.value}: {message}")

    def log(self, outcome):
        logging.info("%s %s %s run %s: %s",
                     self.address_string(), self.command, self.path, self.run_id, outcome)

    def log_request(self, code="-", size="-"):
        pass  # one line per request, written by log() with the run id

    def log_message(self, format, *args):
        logging.warning("%s %s", self.address_string(), format % args)


class AgentServer(ThreadingHTTPServer):
    """One thread per connection; the handlers read `bearer` and `delay` from here."""

    request_queue_size = 128  # the default (5) resets connections when many runs start at once

    def __init__(self, address, bearer, delay):
        super().__init__(address, AgentHandler)
        self.bearer = bearer
        self.delay = delay


def main():
    parser = argparse.ArgumentParser(description="Example HTTP agent backend for event-router.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0: any free port")
    parser.add_argument("--delay-ms", type=int, default=300, help="pause between steps")
    parser.add_argument("--bearer", metavar="TOKEN",
                        help="require 'Authorization: Bearer TOKEN' on every request")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = AgentServer((args.host, args.port), args.bearer, max(args.delay_ms, 0) / 1000)
    print(f"http-agent-example listening on http://{args.host}:{server.server_address[1]}/agent",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
