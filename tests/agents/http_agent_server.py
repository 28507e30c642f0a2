#!/usr/bin/python3
"""HTTP agent backend for the router's C++ tests (Python 3 standard library only).

    http_agent_server.py [--port 0] [--tls CERT KEY] [--verbose] [--no-parent-watch]

The first stdout line is `listening PORT` (flushed); nothing else is ever written to stdout.
One ThreadingHTTPServer, HTTP/1.1 with keep-alive, one thread per connection (200+
concurrent requests are fine). The request path chooses the behaviour. Agent paths take a
POST whose body is the router's JSON request
    {"run_id", "thread_id", "agent", "user_id", "payload"}
(read whole, by Content-Length or chunked; a body that is not a JSON object is tolerated:
its fields echo as null and `body_error` says why). The run id of a request is the body's
`run_id` (null if absent).

Agent paths (POST):
  /ndjson, /count   200, application/x-ndjson, chunked: N events, one JSON line each,
                    {"type": T, "data": {...}}. The first N-1 cycle through agent_thinking,
                    tool_executing, tool_completed, agent_progress with data
                    {"seq": i, "text": "event i of N"}; the last is agent_completed whose data
                    is the echo (below). /count is the same; tests use it to count connections.
  /sse              200, text/event-stream, chunked: a comment line `: stream opened`, then per
                    event a block `id: i` / `event: T` / `data: <data JSON>` / blank line (the
                    first block also carries `retry: 3000`), with a comment block `: keep-alive`
                    after the first event. Same events as /ndjson.
  /ndjson-close,    the same bodies, close-delimited: no Content-Length, no chunking,
  /sse-close        `Connection: close`; the server closes the connection after the last event.
  /gate             200 NDJSON chunked: agent_thinking {"seq": 1, "text": "waiting at the gate"},
                    then waits until POST /_release releases it, then agent_completed (echo).
  /status/<code>    <code> (200-599) with Content-Type text/plain and a 300-byte body (by
                    Content-Length) starting `backend says no (status <code>)` and ending
                    `[end]`; 204 and 304 have no body. Keep-alive.
  /bad-type         200, Content-Type text/plain, body (Content-Length) is one valid NDJSON
                    agent_completed line: only the content type is wrong.
  /malformed        200 NDJSON chunked: agent_thinking, then the line `this is not JSON`,
                    then agent_completed (which the router must never forward), then the end.
  /long-line        200 NDJSON chunked: one valid agent_completed line (the echo plus a "pad"
                    string) of exactly 70,000 bytes and a newline, written in 4 KiB chunks;
                    `?bytes=N` chooses N (not below the size of the echo without padding).
  /no-final         200 NDJSON chunked: agent_thinking, then the chunked terminator.
  /hang             200 NDJSON chunked: agent_thinking, then nothing until the client closes
                    the connection; the disconnect is recorded.
  /slow-headers     reads the request, never answers; the disconnect is recorded.

Query options of /ndjson, /sse, /ndjson-close, /sse-close and /count:
  n=N          events in all, the last being agent_completed (default 3, at least 1)
  delay_ms=D   pause before each event after the first (default 0)
  pad=B        add "pad": "xxx..." (B bytes) to each non-final event's data
  chunk=K      write each event in pieces of at most K bytes (chunks or separate writes),
               to split lines across reads; default: one write per event
  eol=crlf     end lines with CRLF instead of LF
  close=1      after a complete chunked response, close the connection without having sent
               `Connection: close` (a keep-alive connection the server drops behind the
               client's back)
  content_type=S  send S as the Content-Type instead of the usual one

The echo (data of every agent_completed that ends a successful stream):
  {"run_id", "thread_id", "agent", "user_id", "payload"}  from the request body (null if absent),
  "x_request_id", "authorization", "content_type", "accept"  the request headers (null if absent),
  "method", "path" (with query), "body_error" (null, or why the body was not a JSON object),
  "events" (N).

A client that goes away before a response has ended (a write fails, or the socket reads EOF
while the server waits: pauses, /gate, /hang, /slow-headers) is recorded in the stats and
the server stops writing to it.

Control paths (not counted in the stats):
  GET  /_stats     {"connections_accepted": N, "requests": N, "disconnects": [run_id, ...],
                    "in_flight": N, "max_in_flight": N, "gates_waiting": N}
                   connections_accepted is counted at accept, except that a connection whose
                   first request is a control request is taken back out (so a test's own
                   /_stats and /_reset connections never count). requests, in_flight and
                   max_in_flight count agent-path requests only.
  POST /_reset     zeroes connections_accepted, requests, disconnects; max_in_flight becomes
                   the current in_flight (requests still being served keep counting).
                   Answers the stats as they were before the reset.
  POST /_release?run_id=R   releases the /gate request(s) of run R (if none waits yet, the
                   next /gate request of run R passes at once); without run_id releases every
                   waiting /gate request. Answers {"released": N} (N requests released now).

Every control answer is application/json with Content-Length. Unknown paths: 404; a wrong
method: 405.

By default the server exits when its parent process goes away (its parent pid changes), so a
crashed test never leaves it behind; --no-parent-watch disables that.
"""

import argparse
import http.server
import json
import os
import select
import socket
import ssl
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

INTERMEDIATE_TYPES = ("agent_thinking", "tool_executing", "tool_completed", "agent_progress")
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
STATUS_BODY_BYTES = 300
LONG_LINE_BYTES = 70_000
MAX_BODY_BYTES = 16 * 1024 * 1024
POLL_SECONDS = 0.05  # how often waits look at the socket for the client going away


class ClientGone(Exception):
    """The client closed (or reset) the connection before the response ended."""


class Stats:
    def __init__(self):
        self._lock = threading.Lock()
        self._generation = 0  # bumped by reset(), so a pre-reset connection is not taken back out
        self._connections = 0
        self._requests = 0
        self._disconnects = []
        self._in_flight = 0
        self._max_in_flight = 0

    def connection_accepted(self):
        with self._lock:
            self._connections += 1
            return self._generation

    def control_connection(self, generation):
        with self._lock:
            if generation == self._generation and self._connections > 0:
                self._connections -= 1

    def request_started(self):
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def request_finished(self):
        with self._lock:
            self._in_flight -= 1

    def disconnected(self, run_id):
        with self._lock:
            self._disconnects.append(run_id)

    def _snapshot(self):
        return {
            "connections_accepted": self._connections,
            "requests": self._requests,
            "disconnects": list(self._disconnects),
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
        }

    def snapshot(self):
        with self._lock:
            return self._snapshot()

    def reset(self):
        with self._lock:
            before = self._snapshot()
            self._generation += 1
            self._connections = 0
            self._requests = 0
            self._disconnects = []
            self._max_in_flight = self._in_flight
            return before


class Gates:
    """The /gate requests waiting for POST /_release."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiting = []  # (run_id, threading.Event)
        self._released_early = set()  # run ids released before their request arrived

    def enter(self, run_id):
        gate = threading.Event()
        with self._lock:
            if run_id in self._released_early:
                self._released_early.discard(run_id)
                gate.set()
            else:
                self._waiting.append((run_id, gate))
        return gate

    def leave(self, gate):
        with self._lock:
            self._waiting = [(r, g) for r, g in self._waiting if g is not gate]

    def release(self, run_id=None):
        with self._lock:
            chosen = [g for r, g in self._waiting if run_id is None or r == run_id]
            self._waiting = [(r, g) for r, g in self._waiting if not (run_id is None or r == run_id)]
            if run_id is not None and not chosen:
                self._released_early.add(run_id)
        for gate in chosen:
            gate.set()
        return len(chosen)

    def count(self):
        with self._lock:
            return len(self._waiting)


class Request:
    """What the router sent, parsed once."""

    def __init__(self, handler, body):
        self.body_error = None
        fields = {}
        try:
            parsed = json.loads(body.decode("utf-8"))
            if isinstance(parsed, dict):
                fields = parsed
            else:
                self.body_error = "the body is not a JSON object"
        except (UnicodeDecodeError, ValueError) as e:
            self.body_error = f"the body is not JSON: {e}"
        self.run_id = fields.get("run_id")
        self.echo = {key: fields.get(key) for key in ("run_id", "thread_id", "agent", "user_id", "payload")}
        self.echo.update(
            x_request_id=handler.headers.get("X-Request-Id"),
            authorization=handler.headers.get("Authorization"),
            content_type=handler.headers.get("Content-Type"),
            accept=handler.headers.get("Accept"),
            method=handler.command,
            path=handler.path,
            body_error=self.body_error,
        )


def int_option(query, name, default, low, high):
    try:
        value = int(query.get(name, [default])[0])
    except ValueError:
        value = default
    return min(max(value, low), high)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # every event leaves at once

    def version_string(self):
        return "http-agent-test-server/1"

    def __init__(self, request, client_address, server, generation):
        self.generation = generation
        self.requests_on_connection = 0
        super().__init__(request, client_address, server)

    # ---- plumbing ---------------------------------------------------------------------

    def log_message(self, format, *args):
        if self.server.verbose:
            sys.stderr.write(f"http_agent_server: {self.address_string()} {format % args}\n")

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts, size = [], 0
            while True:
                line = self.rfile.readline(1024)
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                size += length
                if size > MAX_BODY_BYTES:
                    raise ValueError("request body too large")
                parts.append(self.rfile.read(length))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length)

    def send_complete(self, status, content_type, body, extra_headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if status not in (204, 304):
            self.wfile.write(body)

    def send_json(self, status, document):
        self.send_complete(status, "application/json", json.dumps(document).encode() + b"\n")

    def write(self, data):
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as e:  # BrokenPipeError, ConnectionResetError, ssl.SSLError, ...
            raise ClientGone() from e

    def client_gone_within(self, seconds):
        """Waits up to `seconds`; True as soon as the client has closed its end."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                readable, _, _ = select.select([self.connection], [], [], min(remaining, 1.0))
            except (OSError, ValueError):
                return True
            if readable and self.read_shows_eof():
                return True
            if remaining <= 0:
                return False

    def read_shows_eof(self):
        """Reads what the client sent while the server is not reading: b"" means it closed."""
        sock = self.connection
        try:
            if isinstance(sock, ssl.SSLSocket):  # TLS sockets take no recv flags
                timeout = sock.gettimeout()
                sock.settimeout(0)
                try:
                    data = sock.recv(4096)
                finally:
                    sock.settimeout(timeout)
            else:
                data = sock.recv(4096, socket.MSG_DONTWAIT)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            return False  # e.g. part of a TLS record, or a TLS message that is not data
        except OSError:
            return True  # reset
        if data:
            self.close_connection = True  # bytes the router should not have sent; consumed
        return not data

    def pause(self, seconds):
        if seconds > 0 and self.client_gone_within(seconds):
            raise ClientGone()

    # ---- dispatch ---------------------------------------------------------------------

    def dispatch(self):
        self.requests_on_connection += 1
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            body = self.read_body()
        except ValueError as e:
            self.close_connection = True
            self.send_json(400, {"error": str(e)})
            return

        if url.path.startswith("/_"):
            if self.requests_on_connection == 1:
                self.server.stats.control_connection(self.generation)
            self.control(url.path, query)
            return

        stats = self.server.stats
        stats.request_started()
        request = Request(self, body)
        try:
            if self.command != "POST":
                self.send_json(405, {"error": "agent paths take POST"})
            else:
                self.route(url.path, query, request)
        except ClientGone:
            stats.disconnected(request.run_id)
            self.close_connection = True
        finally:
            stats.request_finished()

    def control(self, path, query):
        server = self.server
        if path == "/_stats" and self.command == "GET":
            self.send_json(200, dict(server.stats.snapshot(), gates_waiting=server.gates.count()))
        elif path == "/_reset" and self.command == "POST":
            self.send_json(200, server.stats.reset())
        elif path == "/_release" and self.command == "POST":
            run_id = query.get("run_id", [None])[0]
            self.send_json(200, {"released": server.gates.release(run_id)})
        elif path in ("/_stats", "/_reset", "/_release"):
            self.send_json(405, {"error": f"wrong method for {path}"})
        else:
            self.send_json(404, {"error": f"no control path {path}"})

    def route(self, path, query, request):
        streams = {
            "/ndjson": (NDJSON, True),
            "/count": (NDJSON, True),
            "/sse": (SSE, True),
            "/ndjson-close": (NDJSON, False),
            "/sse-close": (SSE, False),
        }
        if path in streams:
            content_type, chunked = streams[path]
            self.serve_stream(query, request, content_type, chunked)
        elif path.startswith("/status/"):
            self.serve_status(path[len("/status/"):])
        elif path == "/gate":
            self.serve_gate(request)
        elif path == "/bad-type":
            line = json.dumps({"type": "agent_completed", "data": request.echo}) + "\n"
            self.send_complete(200, "text/plain", line.encode())
        elif path == "/malformed":
            body = Body(self, NDJSON, chunked=True)
            body.event("agent_thinking", {"seq": 1, "text": "a valid event first"})
            body.send(b"this is not JSON\n")
            body.event("agent_completed", request.echo)
            body.end()
        elif path == "/long-line":
            self.serve_long_line(query, request)
        elif path == "/no-final":
            body = Body(self, NDJSON, chunked=True)
            body.event("agent_thinking", {"seq": 1, "text": "and then nothing"})
            body.end()
        elif path == "/hang":
            body = Body(self, NDJSON, chunked=True)
            body.event("agent_thinking", {"seq": 1, "text": "hanging"})
            self.wait_for_disconnect()
        elif path == "/slow-headers":
            self.wait_for_disconnect()
        else:
            self.send_json(404, {"error": f"no agent path {path}"})

    # ---- behaviours -------------------------------------------------------------------

    def serve_stream(self, query, request, content_type, chunked):
        n = int_option(query, "n", 3, 1, 1_000_000)
        delay = int_option(query, "delay_ms", 0, 0, 3_600_000) / 1000
        pad = "x" * int_option(query, "pad", 0, 0, 16 * 1024 * 1024)
        body = Body(
            self,
            query.get("content_type", [content_type])[0],
            chunked=chunked,
            sse=content_type == SSE,
            piece=int_option(query, "chunk", 0, 0, 1 << 30),
            crlf=query.get("eol", [""])[0].lower() == "crlf",
        )
        for seq in range(1, n):
            if seq > 1:
                self.pause(delay)
            data = {"seq": seq, "text": f"event {seq} of {n}"}
            if pad:
                data["pad"] = pad
            body.event(INTERMEDIATE_TYPES[(seq - 1) % len(INTERMEDIATE_TYPES)], data)
            if seq == 1 and body.sse:
                body.send(body.line(": keep-alive") + body.line(""))
        if n > 1:
            self.pause(delay)
        body.event("agent_completed", dict(request.echo, events=n))
        body.end()
        if chunked and query.get("close", ["0"])[0] == "1":
            self.close_connection = True

    def serve_status(self, code_text):
        try:
            code = int(code_text)
        except ValueError:
            code = 0
        if not 200 <= code <= 599:
            self.send_json(400, {"error": "status must be 200-599"})
            return
        text = f"backend says no (status {code}). "
        end = "[end]"
        filler = "The quick brown fox jumps over the lazy dog. " * 10
        body = (text + filler)[: STATUS_BODY_BYTES - len(end)] + end
        headers = [("WWW-Authenticate", "Bearer")] if code == 401 else []
        self.send_complete(code, "text/plain; charset=utf-8", body.encode(), headers)

    def serve_gate(self, request):
        gates = self.server.gates
        body = Body(self, NDJSON, chunked=True)
        gate = gates.enter(request.run_id)
        try:
            body.event("agent_thinking", {"seq": 1, "text": "waiting at the gate"})
            while not gate.wait(POLL_SECONDS):
                if self.client_gone_within(0):
                    raise ClientGone()
        finally:
            gates.leave(gate)
        body.event("agent_completed", dict(request.echo, events=2))
        body.end()

    def serve_long_line(self, query, request):
        size = int_option(query, "bytes", LONG_LINE_BYTES, 64, 64 * 1024 * 1024)
        data = dict(request.echo, pad="")
        skeleton = len(json.dumps({"type": "agent_completed", "data": data}))
        data["pad"] = "x" * max(0, size - skeleton)
        line = json.dumps({"type": "agent_completed", "data": data}).encode()
        body = Body(self, NDJSON, chunked=True, piece=4096)
        body.send(line + b"\n")
        body.end()

    def wait_for_disconnect(self):
        while not self.client_gone_within(3600):
            pass
        raise ClientGone()


class Body:
    """One streamed response body: NDJSON or SSE events, chunked or close-delimited."""

    def __init__(self, handler, content_type, chunked, sse=None, piece=0, crlf=False):
        self.handler = handler
        self.chunked = chunked
        self.sse = content_type.startswith(SSE) if sse is None else sse
        self.piece = piece
        self.eol = "\r\n" if crlf else "\n"
        self.next_id = 1
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Cache-Control", "no-cache")
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        try:
            handler.end_headers()
        except OSError as e:
            raise ClientGone() from e
        if self.sse:
            self.send(self.line(": stream opened"))

    def line(self, text):
        return (text + self.eol).encode()

    def event(self, event_type, data):
        encoded = json.dumps(data)
        if self.sse:
            block = [f"id: {self.next_id}"]
            if self.next_id == 1:
                block.append("retry: 3000")
            block += [f"event: {event_type}", f"data: {encoded}", ""]
            self.next_id += 1
            self.send(b"".join(self.line(text) for text in block))
        else:
            self.send(json.dumps({"type": event_type, "data": data}).encode() + self.eol.encode())

    def send(self, data):
        pieces = [data[i:i + self.piece] for i in range(0, len(data), self.piece)] if self.piece else [data]
        for piece in pieces:
            if self.chunked:
                self.handler.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.handler.write(piece)

    def end(self):
        if self.chunked:
            self.handler.write(b"0\r\n\r\n")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # hundreds of connections may arrive at once

    def __init__(self, address, tls_context, verbose):
        self.tls_context = tls_context
        self.verbose = verbose
        self.stats = Stats()
        self.gates = Gates()
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        generation = self.stats.connection_accepted()  # at accept, before any TLS handshake
        threading.Thread(
            target=self.serve_connection, args=(request, client_address, generation), daemon=True
        ).start()

    def serve_connection(self, sock, client_address, generation):
        try:
            if self.tls_context is not None:
                sock.settimeout(10)
                sock = self.tls_context.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            Handler(sock, client_address, self, generation)
        except (OSError, ClientGone) as e:
            if self.verbose:
                sys.stderr.write(f"http_agent_server: connection {client_address}: {e!r}\n")
        except Exception:
            self.handle_error(sock, client_address)
        finally:
            self.close_connection_socket(sock)

    def close_connection_socket(self, sock):
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.setblocking(False)  # send close_notify, don't wait for the peer's
                sock.unwrap()
            else:
                sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            pass
        sock.close()


def watch_parent():
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    parser.add_argument("--no-parent-watch", action="store_true",
                        help="keep running when the parent process exits")
    args = parser.parse_args()

    tls_context = None
    if args.tls:
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(*args.tls)
        tls_context.set_alpn_protocols(["http/1.1"])

    server = Server((args.host, args.port), tls_context, args.verbose)
    print(f"listening {server.server_address[1]}", flush=True)
    if not args.no_parent_watch:
        threading.Thread(target=watch_parent, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
