#!/usr/bin/env python3
"""The agents scenario's ceiling: the highest agent events/s a router delivers with the p99 of
start_agent -> agent_completed under each latency bound (5 and 10 ms by default), at each
number of users. Standard library only; run by bench/run.sh, or alone:

    bench/agents_ceiling.py --router build/event-router --load build/router-load \\
        --users 1000,10000 [--duration 5] [--bounds-ms 5,10] [--out ceiling.json]

For each number of users a fresh router is started (demo runs without pauses: seven events per
run, rate and connection limits raised, an in-memory store) and router-load offers demo runs at
rising rates (x1.25 per probe from --start events/s) until the p99 passes the largest bound or
the router no longer delivers what is offered; then each bound's ceiling is narrowed by
bisection between its last passing and first failing probe. A probe passes a bound when its p99
is under the bound, it delivered at least 97% of the offered events, and router-load found no
leak, missing event or error. Probes past the ceiling may miss events or see slow readers
closed (reported, never hidden); a leak in any probe makes the exit status 1.

CPU per event is counted over the measured window only: router-load prints one progress line a
second; the router's and router-load's CPU time (/proc/PID/stat) are read at the first and the
last line of the window, and the events are those the lines between them report.
JSON goes to stdout (and --out); progress to stderr.
"""
import argparse
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time

EVENTS_PER_RUN = 7  # agent_started, 3 x agent_thinking, tool_executing, tool_completed, agent_completed
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROGRESS = re.compile(r"^\[\s*\d+s\s+(\w+)\].*round-trips/s (\d+)")


def log(*args):
    print("ceiling:", *args, file=sys.stderr, flush=True)


def cpu_user_system(pid):
    """(user, system) CPU seconds of a live process ((0, 0) if it has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    except OSError:
        return 0.0, 0.0


def cpu_seconds(pid):
    """user + system CPU seconds of a live process (0 if it has ended)."""
    return sum(cpu_user_system(pid))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


class Router:
    """One event-router process on a free port, stopped by its PID."""

    def __init__(self, binary, secret, workdir):
        self.port = free_port()
        args = [binary, "--config-file=/dev/null", "--router.store-path=:memory:",
                f"--router.jwt-secret={secret}", f"--router.port={self.port}",
                "--router.messages-per-second=1000000", "--router.messages-burst=1000000",
                "--router.max-connections-per-user=100000", "--router.max-connections=20000",
                "--router.max-runs-per-connection=32", "--agents.demo-step-delay-ms=0"]
        self.log = open(os.path.join(workdir, f"router-{self.port}.log"), "w")
        self.proc = subprocess.Popen(args, cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_port(self.port):
            self.stop()
            raise RuntimeError("the router did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def probe(args, router, users, events_per_s):
    """One router-load run offering `events_per_s`; returns its measured figures."""
    rate = events_per_s / EVENTS_PER_RUN / users  # runs per second per connection
    cmd = [args.load, "--config-file=/dev/null", f"--router.jwt-secret={args.secret}",
           "--router.max-runs-per-connection=32", "--router.max-connections-per-user=100000",
           "--agents.demo-step-delay-ms=0", "--scenario=agents", f"--port={router.port}",
           f"--connections={users}", f"--users={users}", f"--rate={rate:.6f}",
           f"--duration={args.duration}", f"--io-threads={args.load_threads}",
           "--connect-window=128", "--json"]
    load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    window = []  # (router cpu, load cpu, round trips reported by this line)
    for line in load.stderr:
        m = PROGRESS.match(line)
        if m and m.group(1) == "run":
            window.append((cpu_seconds(router.proc.pid), cpu_seconds(load.pid), int(m.group(2))))
    out = load.stdout.read()
    status = load.wait()
    try:
        report = json.loads(out)
    except ValueError:
        report = None
    result = {"offered_events_per_s": round(events_per_s), "rate_per_connection": round(rate, 4),
              "exit_status": status}
    if not report:
        result["failure"] = "router-load gave no report"
        return result
    delivered = EVENTS_PER_RUN * report["throughput_per_s"]
    result.update({
        "events_per_s": round(delivered), "p50_us": report["latency_us"]["p50"],
        "p99_us": report["latency_us"]["p99"], "p99_9_us": report["latency_us"]["p99_9"],
        "leaks": report["leaks"], "missing_events": report["missing_events"],
        "errors": report["errors"], "verdict": report["verdict"]})
    if len(window) >= 2:
        events = EVENTS_PER_RUN * sum(n for _, _, n in window[1:])
        if events:
            result["router_cpu_us_per_event"] = round(
                (window[-1][0] - window[0][0]) * 1e6 / events, 2)
            result["load_cpu_us_per_event"] = round(
                (window[-1][1] - window[0][1]) * 1e6 / events, 2)
    return result


def clean(r):
    return r.get("verdict") == "pass" and r.get("leaks") == 0 and r.get("missing_events") == 0


def keeps_up(r):
    return clean(r) and r["events_per_s"] >= 0.97 * r["offered_events_per_s"]


def passes(r, bound_us):
    return keeps_up(r) and r["p99_us"] < bound_us


def search(args, users, workdir):
    router = Router(args.router, args.secret, workdir)
    probes = []

    def run(events):
        r = probe(args, router, users, events)
        probes.append(r)
        log(f"{users} users, {r['offered_events_per_s']:,} events/s offered:",
            f"{r.get('events_per_s', 0):,} delivered, p99 {r.get('p99_us', 0) / 1000:.1f} ms,",
            f"router {r.get('router_cpu_us_per_event')} us/event,",
            f"load {r.get('load_cpu_us_per_event')} us/event, {r.get('verdict', r.get('failure'))}")
        return r

    try:
        largest = max(args.bounds_us)
        events = args.start
        while events <= args.limit:
            r = run(events)
            if not passes(r, largest):
                break
            events *= 1.25
        ceilings = {}
        for bound in args.bounds_us:
            passing = [p for p in probes if passes(p, bound)]
            failing = [p for p in probes if not passes(p, bound)]
            low = max((p["offered_events_per_s"] for p in passing), default=None)
            high = min((p["offered_events_per_s"] for p in failing
                        if low is None or p["offered_events_per_s"] > low), default=None)
            for _ in range(args.bisect):
                if low is None or high is None or high - low < 0.05 * low:
                    break
                middle = (low + high) / 2
                if passes(run(middle), bound):
                    low = middle
                else:
                    high = middle
            best = max((p for p in probes if passes(p, bound)),
                       key=lambda p: p["offered_events_per_s"], default=None)
            ceilings[f"p99_under_{bound // 1000}_ms"] = best and {
                k: best.get(k) for k in ("events_per_s", "offered_events_per_s", "p50_us",
                                          "p99_us", "router_cpu_us_per_event",
                                          "load_cpu_us_per_event")}
    finally:
        router.stop()
    # Past the ceiling a probe may miss events or see closes (a client too slow to read is
    # closed by the router's backpressure, by design); a leak is never acceptable.
    return {"users": users, "ceilings": ceilings, "probes": probes,
            "probes_not_clean": sum(1 for p in probes if not clean(p)),
            "probes_with_leaks": sum(1 for p in probes if p.get("leaks"))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", required=True)
    parser.add_argument("--load", required=True)
    parser.add_argument("--users", default="1000,10000")
    parser.add_argument("--bounds-ms", default="5,10")
    parser.add_argument("--duration", type=int, default=5, help="seconds per probe")
    parser.add_argument("--start", type=float, default=25000, help="first probe, events/s")
    parser.add_argument("--limit", type=float, default=1000000, help="last probe, events/s")
    parser.add_argument("--bisect", type=int, default=2, help="bisection steps per bound")
    parser.add_argument("--load-threads", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()
    args.router, args.load = os.path.abspath(args.router), os.path.abspath(args.load)
    args.bounds_us = sorted(int(float(b) * 1000) for b in args.bounds_ms.split(","))
    args.secret = "ceiling-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="router-ceiling.") as workdir:
        results = [search(args, int(u), workdir) for u in args.users.split(",")]
    report = {"host": {"cores": os.cpu_count(), "kernel": os.uname().release},
              "duration_s": args.duration, "events_per_run": EVENTS_PER_RUN, "results": results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 1 if any(r["probes_with_leaks"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
