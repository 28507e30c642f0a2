"""What each agent path of http_agent_server.py answers (see that file for the server, its
command line and its control paths). A behaviour is a function of the request's handler, the
parsed query and the Request; it writes the whole response through the handler.

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
  /flood            200 NDJSON, close-delimited: agent_progress lines, 64 KiB a write, as fast
                    as the connection takes them, until the client goes away.
  /hang             200 NDJSON chunked: agent_thinking, then nothing until the client closes
                    the connection; the disconnect is recorded.
  /slow-headers     reads the request, never answers; the disconnect is recorded.
  /interim          102 Processing, then 103 Early Hints (with a Link header), then after
                    `?delay_ms=D` (default 0) the /ndjson stream (query options as there).

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

A client that goes away while a behaviour waits or writes raises ClientGone, which the
server records as a disconnect.
"""

import json

INTERMEDIATE_TYPES = ("agent_thinking", "tool_executing", "tool_completed", "agent_progress")
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
STATUS_BODY_BYTES = 300
LONG_LINE_BYTES = 70_000
POLL_SECONDS = 0.05  # how often /gate looks at the socket for the client going away


class ClientGone(Exception):
    """The client closed (or reset) the connection before the response ended."""


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


def serve_stream(handler, query, request, content_type, chunked):
    n = int_option(query, "n", 3, 1, 1_000_000)
    delay = int_option(query, "delay_ms", 0, 0, 3_600_000) / 1000
    pad = "x" * int_option(query, "pad", 0, 0, 16 * 1024 * 1024)
    body = Body(
        handler,
        query.get("content_type", [content_type])[0],
        chunked=chunked,
        sse=content_type == SSE,
        piece=int_option(query, "chunk", 0, 0, 1 << 30),
        crlf=query.get("eol", [""])[0].lower() == "crlf",
    )
    for seq in range(1, n):
        if seq > 1:
            handler.pause(delay)
        data = {"seq": seq, "text": f"event {seq} of {n}"}
        if pad:
            data["pad"] = pad
        body.event(INTERMEDIATE_TYPES[(seq - 1) % len(INTERMEDIATE_TYPES)], data)
        if seq == 1 and body.sse:
            body.send(body.line(": keep-alive") + body.line(""))
    if n > 1:
        handler.pause(delay)
    body.event("agent_completed", dict(request.echo, events=n))
    body.end()
    if chunked and query.get("close", ["0"])[0] == "1":
        handler.close_connection = True


def serve_status(handler, code_text):
    try:
        code = int(code_text)
    except ValueError:
        code = 0
    if not 200 <= code <= 599:
        handler.send_json(400, {"error": "status must be 200-599"})
        return
    text = f"backend says no (status {code}). "
    end = "[end]"
    filler = "The quick brown fox jumps over the lazy dog. " * 10
    body = (text + filler)[: STATUS_BODY_BYTES - len(end)] + end
    headers = [("WWW-Authenticate", "Bearer")] if code == 401 else []
    handler.send_complete(code, "text/plain; charset=utf-8", body.encode(), headers)


def serve_gate(handler, query, request):
    gates = handler.server.gates
    body = Body(handler, NDJSON, chunked=True)
    gate = gates.enter(request.run_id)
    try:
        body.event("agent_thinking", {"seq": 1, "text": "waiting at the gate"})
        while not gate.wait(POLL_SECONDS):
            if handler.client_gone_within(0):
                raise ClientGone()
    finally:
        gates.leave(gate)
    body.event("agent_completed", dict(request.echo, events=2))
    body.end()


def serve_bad_type(handler, query, request):
    line = json.dumps({"type": "agent_completed", "data": request.echo}) + "\n"
    handler.send_complete(200, "text/plain", line.encode())


def serve_malformed(handler, query, request):
    body = Body(handler, NDJSON, chunked=True)
    body.event("agent_thinking", {"seq": 1, "text": "a valid event first"})
    body.send(b"this is not JSON\n")
    body.event("agent_completed", request.echo)
    body.end()


def serve_long_line(handler, query, request):
    size = int_option(query, "bytes", LONG_LINE_BYTES, 64, 64 * 1024 * 1024)
    data = dict(request.echo, pad="")
    skeleton = len(json.dumps({"type": "agent_completed", "data": data}))
    data["pad"] = "x" * max(0, size - skeleton)
    line = json.dumps({"type": "agent_completed", "data": data}).encode()
    body = Body(handler, NDJSON, chunked=True, piece=4096)
    body.send(line + b"\n")
    body.end()


def serve_no_final(handler, query, request):
    body = Body(handler, NDJSON, chunked=True)
    body.event("agent_thinking", {"seq": 1, "text": "and then nothing"})
    body.end()


def serve_flood(handler, query, request):
    body = Body(handler, NDJSON, chunked=False)
    line = json.dumps({"type": "agent_progress", "data": {"n": 1}}).encode() + b"\n"
    block = line * (65536 // len(line))
    while True:
        body.send(block)  # ClientGone ends it


def serve_hang(handler, query, request):
    body = Body(handler, NDJSON, chunked=True)
    body.event("agent_thinking", {"seq": 1, "text": "hanging"})
    wait_for_disconnect(handler)


def serve_interim(handler, query, request):
    """Interim responses first (102 Processing, then 103 Early Hints with a header), then the
    /ndjson stream: an HTTP/1.1 client reads past 1xx heads to the final response."""
    handler.write(b"HTTP/1.1 102 Processing\r\n\r\n"
                  b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
    handler.pause(int_option(query, "delay_ms", 0, 0, 60_000) / 1000)
    serve_stream(handler, query, request, NDJSON, True)


def serve_slow_headers(handler, query, request):
    wait_for_disconnect(handler)


def wait_for_disconnect(handler):
    while not handler.client_gone_within(3600):
        pass
    raise ClientGone()


STREAMS = {  # path -> (content type, chunked)
    "/ndjson": (NDJSON, True),
    "/count": (NDJSON, True),
    "/sse": (SSE, True),
    "/ndjson-close": (NDJSON, False),
    "/sse-close": (SSE, False),
}

BEHAVIOURS = {  # path -> behaviour(handler, query, request)
    "/gate": serve_gate,
    "/bad-type": serve_bad_type,
    "/malformed": serve_malformed,
    "/long-line": serve_long_line,
    "/no-final": serve_no_final,
    "/flood": serve_flood,
    "/hang": serve_hang,
    "/slow-headers": serve_slow_headers,
    "/interim": serve_interim,
}


def route(handler, path, query, request):
    """Answers the agent request for `path` (a POST): its stream or behaviour, else 404."""
    if path in STREAMS:
        content_type, chunked = STREAMS[path]
        serve_stream(handler, query, request, content_type, chunked)
    elif path.startswith("/status/"):
        serve_status(handler, path[len("/status/"):])
    elif path in BEHAVIOURS:
        BEHAVIOURS[path](handler, query, request)
    else:
        handler.send_json(404, {"error": f"no agent path {path}"})


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
