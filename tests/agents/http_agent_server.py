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

What each agent path answers is in http_agent_behaviours.py beside this file (imported from
there): NDJSON and SSE streams (/ndjson, /count, /sse, /ndjson-close, /sse-close), /gate,
/status/<code>, /bad-type, /malformed, /long-line, /no-final, /flood, /hang,
/slow-headers, /interim.

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

from http_agent_behaviours import ClientGone, Request, route

MAX_BODY_BYTES = 16 * 1024 * 1024


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
                route(self, url.path, query, request)
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
