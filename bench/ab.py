#!/usr/bin/env python3
"""Two builds of the router, before and after a change, measured alternately on the same host.
Standard library only:

    bench/ab.py --base BUILD_DIR_BEFORE --new BUILD_DIR_AFTER \\
        [--rounds 4] [--ping-secs 5] [--rates 119209,149012] [--users 1000] [--out ab.json]

A single run, or a ceiling search, cannot tell a change from the host: on this shared machine a
server's throughput moves by tens of percent between runs minutes apart, and the agents ceiling
of one binary spread from 141,000 to 186,000 events/s within an hour. What does hold is a
comparison made within one round, the two builds run back to back, and the CPU spent per unit
of work at a fixed offered load. Each round therefore runs, for each build in turn (the first
alternating from round to round, so that neither always runs on a host that has just cooled):

- `wsload` (the shared bench kit's neutral client) ping over 100 connections at 1 and at 8 in
  flight for --ping-secs, against a fresh router: round trips/s and the router's CPU per round
  trip in user space and in the kernel;
- router-load's agents scenario at each of --rates events/s with --users users (one connection
  each, demo runs without pauses), against a fresh router: p99 of start_agent ->
  agent_completed and the CPU per event of the router and of router-load (the build's own
  router-load: a change to it shows there), as bench/agents_ceiling.py measures a probe.

Reported per measure: each build's median, and the median over rounds of new / base within the
round. JSON goes to stdout (and --out), a markdown table after it; progress to stderr.
"""
import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agents_ceiling  # noqa: E402  (Router, probe, clean: one definition of a probe)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*args):
    print("ab:", *args, file=sys.stderr, flush=True)


def build_wsload(kit, workdir):
    source = os.path.join(kit, "wsload.c")
    binary = os.path.join(workdir, "wsload")
    subprocess.run(["cc", "-O2", "-o", binary, source, "-lcrypto"], check=True)
    return binary


def ping(args, build, inflight, workdir):
    router = agents_ceiling.Router(os.path.join(build, "event-router"), args.secret, workdir)
    try:
        before = agents_ceiling.cpu_user_system(router.proc.pid)
        out = subprocess.run(
            [args.wsload, "-s", args.secret, "-g", "1", "-p", "/ws", "-c", "100", "-i",
             str(inflight), "-d", str(args.ping_secs), "127.0.0.1", str(router.port)],
            check=True, capture_output=True, text=True).stdout
        after = agents_ceiling.cpu_user_system(router.proc.pid)
    finally:
        router.stop()
    w = json.loads(out)
    user, system = after[0] - before[0], after[1] - before[1]
    replies = w["replies"] or 1
    return {"round_trips_per_s": w["replies_per_s"],
            "user_us_per_round_trip": 1e6 * user / replies,
            "kernel_us_per_round_trip": 1e6 * system / replies}


def agents(args, build, events_per_s, workdir):
    probe_args = argparse.Namespace(load=os.path.join(build, "router-load"), secret=args.secret,
                                    duration=args.agent_secs, load_threads=2)
    router = agents_ceiling.Router(os.path.join(build, "event-router"), args.secret, workdir)
    try:
        r = agents_ceiling.probe(probe_args, router, args.users, events_per_s)
    finally:
        router.stop()
    if not agents_ceiling.clean(r):
        log(f"agents at {events_per_s:,.0f} events/s against {build}: not clean: {r}")
    return {"events_per_s": r.get("events_per_s"), "p99_us": r.get("p99_us"),
            "router_us_per_event": r.get("router_cpu_us_per_event"),
            "load_us_per_event": r.get("load_cpu_us_per_event"),
            "clean": agents_ceiling.clean(r)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="build folder before the change")
    parser.add_argument("--new", required=True, help="build folder after the change")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--ping-secs", type=int, default=5)
    parser.add_argument("--rates", default="119209,149012",
                        help="agents events/s offered, comma-separated; empty: no agents runs")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--agent-secs", type=int, default=5)
    parser.add_argument("--bench-kit", default=os.path.join(ROOT, "..", "shared", "bench"))
    parser.add_argument("--out")
    args = parser.parse_args()
    builds = {"base": os.path.abspath(args.base), "new": os.path.abspath(args.new)}
    for name, build in builds.items():
        for binary in ("event-router", "router-load"):
            if not os.access(os.path.join(build, binary), os.X_OK):
                parser.error(f"--{name}: no {binary} in {build}")
    rates = [float(r) for r in args.rates.split(",") if r]
    args.secret = "ab-" + secrets.token_hex(16)

    runs = []  # {"round", "build", "measure", ...figures}
    with tempfile.TemporaryDirectory(prefix="router-ab.") as workdir:
        args.wsload = build_wsload(args.bench_kit, workdir)
        for rnd in range(1, args.rounds + 1):
            order = ["base", "new"] if rnd % 2 else ["new", "base"]
            for inflight in (1, 8):
                for name in order:
                    r = ping(args, builds[name], inflight, workdir)
                    log(f"round {rnd} {name} ping, {inflight} in flight: {r}")
                    runs.append({"round": rnd, "build": name,
                                 "measure": f"ping, {inflight} in flight", **r})
            for rate in rates:
                for name in order:
                    r = agents(args, builds[name], rate, workdir)
                    log(f"round {rnd} {name} agents at {rate:,.0f} events/s: {r}")
                    runs.append({"round": rnd, "build": name,
                                 "measure": f"agents, {args.users} users, {rate:.0f} events/s offered",
                                 **r})

    figures = [("ping, %d in flight" % n, key, better) for n in (1, 8) for key, better in
               (("round_trips_per_s", "higher"), ("user_us_per_round_trip", "lower"),
                ("kernel_us_per_round_trip", "lower"))]
    figures += [(f"agents, {args.users} users, {rate:.0f} events/s offered", key, "lower")
                for rate in rates
                for key in ("p99_us", "router_us_per_event", "load_us_per_event")]
    summary = []
    for measure, key, better in figures:
        by = {name: {r["round"]: r[key] for r in runs
                     if r["measure"] == measure and r["build"] == name and r.get(key)}
              for name in builds}
        ratios = [by["new"][k] / by["base"][k] for k in by["new"] if k in by["base"]]
        summary.append({
            "measure": measure, "figure": key, "better": better,
            "base": statistics.median(by["base"].values()) if by["base"] else None,
            "new": statistics.median(by["new"].values()) if by["new"] else None,
            "new_over_base": statistics.median(ratios) if ratios else None,
            "new_over_base_rounds": [round(x, 3) for x in ratios]})
    report = {"builds": builds, "rounds": args.rounds, "host": {"cores": os.cpu_count(),
              "kernel": os.uname().release},
              "note": "values: medians over rounds; new_over_base: median over rounds of the "
                      "ratio within each round",
              "summary": summary, "runs": runs}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")

    def fmt(v):
        return "n/a" if v is None else ("%.0f" % v if abs(v) >= 100 else "%.2f" % v)

    print()
    print("| measure | figure | base | new | new / base | rounds | better |")
    print("|---|---|---|---|---|---|---|")
    for s in summary:
        print("| %s | %s | %s | %s | %s | %s | %s |" % (
            s["measure"], s["figure"].replace("_", " "), fmt(s["base"]), fmt(s["new"]),
            "n/a" if s["new_over_base"] is None else "%.3f" % s["new_over_base"],
            ", ".join("%.2f" % x for x in s["new_over_base_rounds"]), s["better"]))
    unclean = sum(1 for r in runs if r.get("clean") is False)
    if unclean:
        log(f"{unclean} agents runs were not clean (leaks, missing events or errors): see runs")
    return 1 if unclean else 0


if __name__ == "__main__":
    sys.exit(main())
