#!/usr/bin/env bash
# Benchmarks the router side by side with the peer echo servers of the shared bench kit
# (Node.js ws, uWebSockets.js) and with shared-manager-bench (the router's design with one
# manager actor for every connection, built for this comparison only), with the neutral client
# wsload, then runs router-load's own scenarios (ping, agents, publish, churn, idle) against
# the router, the agents scenario on an HTTP agent beside the built-in demo agent, and the
# memory of busy connections, then searches the agents scenario's ceiling (bench/agents_ceiling.py).
# Not run by CI; takes about 10-12 minutes after the build.
#
#   bench/run.sh                 build (Release, BUILD_DIR), run everything, print JSON + a table
#
# Environment: BUILD_DIR (default build-bench), JOBS (build jobs, default 2), BENCH_KIT (the
# shared kit, default ../shared/bench beside the checkout; it may be read-only: what is needed is copied to a
# temporary folder), ROUNDS (alternating rounds of the ping runs, default 3), PING_SECS (5),
# IDLE_CONNS (10000), CEILING (0 skips the agents ceiling search), CEILING_USERS (1000,10000),
# OUT (also write the JSON to this file).
# Progress goes to stderr; stdout gets the JSON and then the markdown table.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$root/build-bench}
JOBS=${JOBS:-2}
BENCH_KIT=${BENCH_KIT:-$root/../shared/bench}
ROUNDS=${ROUNDS:-3}
PING_SECS=${PING_SECS:-5}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_HOLD_SECS=4
CEILING_USERS=${CEILING_USERS:-1000,10000}

work=$(mktemp -d "${TMPDIR:-/tmp}/router-bench.XXXXXX")
runs="$work/runs.jsonl"
: > "$runs"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

log() { echo "bench: $*" >&2; }

# -- build and tools ----------------------------------------------------------------

log "building event-router and router-load (Release) in $BUILD_DIR"
cmake -S "$root" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
nice -n 10 cmake --build "$BUILD_DIR" -j "$JOBS" --target event-router router-load \
  shared-manager-bench >&2
router_bin="$BUILD_DIR/event-router"
shared_bin="$BUILD_DIR/shared-manager-bench"
load_bin="$BUILD_DIR/router-load"

cc -O2 -o "$work/wsload" "$BENCH_KIT/wsload.c" -lcrypto
wsload="$work/wsload"

cp -r "$BENCH_KIT/peers" "$work/peers"
declare -A peer_status=([ws]="not installed" [uws]="not installed")
if ! command -v npm >/dev/null; then
  log "npm is missing: the peers cannot be installed"
elif ! (cd "$work/peers" && ./peers.sh install >&2); then
  log "peers.sh install failed: the peers are skipped"
else
  peer_status=([ws]=installed [uws]=installed)
fi

secret="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
api_key="bench-key-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# An HTTP agent with the demo agent's events, behind a fast local server
# (bench/http-agent-server.mjs), to price the hop against the built-in demo agent.
new_port http_agent_port
printf '[agents.bench-http]\nurl="http://127.0.0.1:%s/agent"\nmax-in-flight=64\n' \
  "$http_agent_port" >"$work/router.conf"
router_args=("--config-file=$work/router.conf" --router.store-path=:memory: "--router.jwt-secret=$secret"
             "--router.api-key=$api_key"
             --router.messages-per-second=1000000 --router.messages-burst=1000000
             --router.max-connections-per-user=100000 --router.max-connections=20000
             --router.max-runs-per-connection=32 --agents.demo-step-delay-ms=0)

# start_server NAME PORT: sets server_pid once the server accepts (not in a subshell: the
# PID must reach `pids`)
start_server() {
  local name=$1 port=$2
  case "$name" in
    router)
      (cd "$work" && exec "$router_bin" "${router_args[@]}" "--router.port=$port") \
        >"$work/router-$port.log" 2>&1 &
      server_pid=$! ;;
    shared) # the router's design with one manager actor for all connections (bench only)
      "$shared_bin" "--port=$port" "--secret=$secret" >"$work/shared-$port.log" 2>&1 &
      server_pid=$! ;;
    ws|uws)
      server_pid=$(cd "$work/peers" && ./peers.sh start "$name" "$port") ;;
  esac
  pids+=("$server_pid")
  if ! wait_port "$port"; then
    stop_pids "$server_pid"
    return 1
  fi
}

client_args() { # the wsload options that differ between the router and a plain echo server
  case "$1" in router|shared) echo "-s $secret -g 1 -p /ws" ;; esac
}

servers=(router shared)
for p in ws uws; do
  if [ "${peer_status[$p]}" = installed ]; then
    new_port port
    if start_server "$p" "$port"; then
      servers+=("$p")
      peer_status[$p]=ok
      stop_pids "$server_pid"
    else
      peer_status[$p]="installed but did not start"
      log "peer $p did not start: skipped"
    fi
  fi
done

# -- side by side: ping (100 connections, 1 and 8 in flight) and idle memory -----------

ping_run() { # SERVER INFLIGHT ROUND
  local server=$1 inflight=$2 round=$3 port pid before after out
  new_port port
  start_server "$server" "$port" || { log "$server did not start"; return 0; }
  pid=$server_pid
  before=$(cpu_ticks_user_sys "$pid")
  # shellcheck disable=SC2046
  if ! out=$("$wsload" $(client_args "$server") -c 100 -i "$inflight" -d "$PING_SECS" \
               127.0.0.1 "$port"); then
    log "wsload ping against $server failed"
    stop_pids "$pid"
    return 0
  fi
  after=$(cpu_ticks_user_sys "$pid")
  stop_pids "$pid"
  log "ping $server inflight $inflight round $round: $out"
  python3 - "$server" "$inflight" "$round" "$before" "$after" "$(getconf CLK_TCK)" "$out" \
    >>"$runs" <<'EOF'
import json, sys
server, inflight, rnd, before, after, hz, out = sys.argv[1:]
w = json.loads(out)
# user and system (kernel) CPU seconds of the server over the run
user, system = ((int(a) - int(b)) / int(hz) for a, b in zip(after.split(","), before.split(",")))
per_rt = lambda s: 1e6 * s / w["replies"] if w["replies"] else None
print(json.dumps({"kind": "ping", "server": server, "inflight": int(inflight), "round": int(rnd),
                  "connections": w["conns"], "round_trips_per_s": w["replies_per_s"],
                  "server_cpu_s": user + system,
                  "server_cpu_us_per_round_trip": per_rt(user + system),
                  "server_user_cpu_us_per_round_trip": per_rt(user),
                  "server_system_cpu_us_per_round_trip": per_rt(system),
                  "wsload": w}))
EOF
}

idle_run() { # SERVER
  local server=$1 port pid rss0 fd0 rss1 fds client
  new_port port
  start_server "$server" "$port" || { log "$server did not start"; return 0; }
  pid=$server_pid
  sleep 0.5
  rss0=$(rss_kib "$pid")
  fd0=$(fd_count "$pid")
  # shellcheck disable=SC2046
  "$wsload" $(client_args "$server") -I -c "$IDLE_CONNS" -d "$IDLE_HOLD_SECS" 127.0.0.1 "$port" \
    >"$work/idle.out" 2>&1 &
  client=$!
  pids+=("$client")
  fds=0
  for _ in $(seq 600); do # every connection accepted: one descriptor each
    fds=$(fd_count "$pid")
    [ "$fds" -ge $((fd0 + IDLE_CONNS)) ] && break
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  sleep 1
  rss1=$(rss_kib "$pid")
  wait "$client" || log "wsload idle against $server: $(cat "$work/idle.out")"
  stop_pids "$client"
  stop_pids "$pid"
  log "idle $server: RSS $rss0 -> $rss1 KiB with $((fds - fd0)) connections"
  python3 - "$server" "$IDLE_CONNS" "$rss0" "$rss1" "$((fds - fd0))" >>"$runs" <<'EOF'
import json, sys
server, conns, rss0, rss1, seen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(json.dumps({"kind": "idle", "server": server, "connections": conns,
                  "connections_seen": seen, "rss_before_kib": rss0, "rss_after_kib": rss1,
                  "kib_per_connection": (rss1 - rss0) / conns}))
EOF
}

for round in $(seq "$ROUNDS"); do
  for inflight in 1 8; do
    for server in "${servers[@]}"; do
      ping_run "$server" "$inflight" "$round"
    done
  done
done
for server in "${servers[@]}"; do
  [ "$server" = shared ] || idle_run "$server"
done

# -- router-load's own scenarios against one router --------------------------------------

new_port port
start_server router "$port"
router_pid=$server_pid
load_common=(--config-file=/dev/null "--router.jwt-secret=$secret" "--router.api-key=$api_key"
             --router.max-runs-per-connection=32 --json --quiet --io-threads=2)
load_run() { # NAME ARGS...
  local name=$1 status=0
  shift
  "$load_bin" "${load_common[@]}" "--port=$port" "$@" >"$work/load-$name.json" \
    2>"$work/load-$name.err" || status=$?
  log "router-load $name: exit $status; $(head -1 "$work/load-$name.err")"
  python3 - "$name" "$status" "$work/load-$name.json" >>"$runs" <<'EOF'
import json, sys
name, status, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    report = json.load(open(path))
except ValueError:
    report = None
print(json.dumps({"kind": "router-load", "scenario": name, "exit_status": status, "report": report}))
EOF
}
load_run ping --scenario=ping --connections=100 --inflight=8 --duration=5
# 1,000 users, demo runs (3 steps, no pause: 7 events each) at 7.2 runs/s per user, which is
# 50,000 events/s when the router keeps up; alternating with the same load on an HTTP agent
# that streams the same events. Three rounds each, the medians reported: this machine's
# neighbours move a single round's p99 by several times. The HTTP agent is one Node.js process
# on the same two cores, and it is the first to saturate: a round it does not keep up with
# (events missing, or fewer runs/s than offered) is kept in the runs but not in the medians,
# and the HTTP rounds go on at half the rate, each beside a demo round at that rate, so that the
# hop is priced where both keep up. Names: agents-ROUND, http-agents-ROUND@RATE,
# agents-ROUND@RATE (the demo round at a lowered rate).
kept_up() { # NAME RATE: every event delivered, and at least 95% of the runs/s offered
  python3 - "$work/load-$1.json" "$2" <<'EOF'
import json, sys
try:
    report = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(1)
offered = 1000 * float(sys.argv[2])
sys.exit(0 if report.get("verdict") == "pass"
         and (report.get("throughput_per_s") or 0) >= 0.95 * offered else 1)
EOF
}
node "$root/bench/http-agent-server.mjs" "$http_agent_port" >"$work/http-agent.log" 2>&1 &
http_agent_pid=$!
pids+=("$http_agent_pid")
wait_port "$http_agent_port" || log "the bench HTTP agent did not start"
agents_rate=7.2
http_rate=$agents_rate
for round in 1 2 3; do
  load_run "agents-$round" --scenario=agents --connections=1000 --users=1000 \
    "--rate=$agents_rate" --duration=5
  while :; do
    load_run "http-agents-$round@$http_rate" --scenario=agents --agent=bench-http \
      --connections=1000 --users=1000 "--rate=$http_rate" --duration=5
    if kept_up "http-agents-$round@$http_rate" "$http_rate" || [ "$http_rate" = 1.8 ]; then
      break
    fi
    http_rate=$(python3 -c "print($http_rate / 2)")
    log "the HTTP agent did not keep up: its rounds go on at $http_rate runs/s per user"
  done
  if [ "$http_rate" != "$agents_rate" ]; then
    load_run "agents-$round@$http_rate" --scenario=agents --connections=1000 --users=1000 \
      "--rate=$http_rate" --duration=5
  fi
done
stop_pids "$http_agent_pid"
load_run publish --scenario=publish --connections=200 --publish-rate=2000 --duration=5
load_run churn --scenario=churn --connections=50 --duration=5
load_run idle --scenario=idle --connections="$IDLE_CONNS" --duration=2 --connect-window=128
stop_pids "$router_pid"

# -- memory of a busy connection: the replay buffers under the agents load -------------------

new_port port
start_server router "$port"
busy_pid=$server_pid
busy_base=$(rss_kib "$busy_pid")
busy_max=$busy_base
"$load_bin" "${load_common[@]}" "--port=$port" --scenario=agents --connections=1000 \
  --users=1000 --rate=7.2 --duration=10 >"$work/load-busy.json" 2>"$work/load-busy.err" &
busy_load=$!
while kill -0 "$busy_load" 2>/dev/null; do
  rss=$(rss_kib "$busy_pid")
  [ "$rss" -gt "$busy_max" ] && busy_max=$rss
  sleep 0.5
done
wait "$busy_load" || true
busy_kib=$(( (busy_max - busy_base) / 1000 ))
echo "{\"kind\": \"busy\", \"server\": \"router\", \"connections\": 1000, \"seconds\": 10, \"kib_per_connection\": $busy_kib}" >>"$runs"
log "busy memory: $busy_kib KiB per connection"
stop_pids "$busy_pid"

# -- the agents ceiling: the highest events/s under each p99 bound ----------------------------

if [ "${CEILING:-1}" != 0 ]; then
  log "the agents ceiling at $CEILING_USERS users (bench/agents_ceiling.py)"
  status=0
  python3 "$root/bench/agents_ceiling.py" --router "$router_bin" --load "$load_bin" \
    --users "$CEILING_USERS" >"$work/ceiling.json" || status=$?
  python3 - "$status" "$work/ceiling.json" >>"$runs" <<'EOF'
import json, sys
try:
    report = json.load(open(sys.argv[2]))
except ValueError:
    report = None
print(json.dumps({"kind": "ceiling", "exit_status": int(sys.argv[1]), "report": report}))
EOF
fi

# -- report ------------------------------------------------------------------------------

peers_json=$(for p in ws uws; do echo "$p=${peer_status[$p]}"; done | python3 -c '
import json, sys
print(json.dumps(dict(line.strip().split("=", 1) for line in sys.stdin)))')
python3 - "$runs" "$peers_json" "$(nproc)" "$(uname -r)" "${OUT:-}" <<'EOF'
import json, re, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peers, cores, kernel, out = json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
servers = ["router", "shared"] + [p for p in ("ws", "uws") if peers.get(p) == "ok"]

def matching(kind, server, key, match):
    """The runs of `kind` against `server` that measured `key`, with every field in `match`."""
    return [r for r in runs if r["kind"] == kind and r["server"] == server and r.get(key) is not None
            and all(r.get(k) == v for k, v in match.items())]

def paired_ratio(kind, peer, key, **match):
    """Median over rounds of router / peer within each round: the servers of one round ran
    minutes apart at most, so the ratio cancels what the shared host did between rounds."""
    def by_round(server):
        return {r.get("round", 0): r[key] for r in matching(kind, server, key, match) if r[key]}
    mine, theirs = by_round("router"), by_round(peer)
    xs = [mine[k] / theirs[k] for k in mine if k in theirs]
    return statistics.median(xs) if xs else None

def median(kind, server, key, **match):
    xs = [r[key] for r in matching(kind, server, key, match)]
    return statistics.median(xs) if xs else None

rows = [
    ("ping, 100 connections, 1 in flight: round trips/s", "ping", "round_trips_per_s", {"inflight": 1}, "higher"),
    ("ping, 100 connections, 8 in flight: round trips/s", "ping", "round_trips_per_s", {"inflight": 8}, "higher"),
    ("ping, 1 in flight: server CPU µs per round trip", "ping", "server_cpu_us_per_round_trip", {"inflight": 1}, "lower"),
    ("ping, 8 in flight: server CPU µs per round trip", "ping", "server_cpu_us_per_round_trip", {"inflight": 8}, "lower"),
    ("ping, 1 in flight: of which user space", "ping", "server_user_cpu_us_per_round_trip", {"inflight": 1}, "lower"),
    ("ping, 1 in flight: of which kernel", "ping", "server_system_cpu_us_per_round_trip", {"inflight": 1}, "lower"),
    ("ping, 8 in flight: of which user space", "ping", "server_user_cpu_us_per_round_trip", {"inflight": 8}, "lower"),
    ("ping, 8 in flight: of which kernel", "ping", "server_system_cpu_us_per_round_trip", {"inflight": 8}, "lower"),
    ("idle", "idle", "kib_per_connection", {}, "lower"),
]
table = []
summary = {}
for label, kind, key, match, better in rows:
    if kind == "idle":
        conns = next((r["connections"] for r in runs if r["kind"] == "idle"), 0)
        label = "idle, %d connections: server RSS KiB per connection" % conns
    values = {s: median(kind, s, key, **match) for s in servers}
    ratios = {p: paired_ratio(kind, p, key, **match) for p in servers[1:]}
    summary[label] = {"values": values, "router_over_peer": ratios, "better": better}
    table.append((label, values, ratios, better))

def agents_of(pattern):
    """The agents rounds whose scenario name matches `pattern` (a regex) and that delivered
    every event; every completed run delivered agent_started, 3 thinking, 2 tool events and
    agent_completed: 7 events. Rounds that lost events are counted apart, never in a median."""
    named = [r for r in runs if r["kind"] == "router-load" and re.fullmatch(pattern, r["scenario"])]
    reports = [r["report"] for r in named if r["report"] and r["report"].get("verdict") == "pass"
               and r["report"].get("throughput_per_s") is not None]
    return reports and {
        "rounds": len(reports), "rounds_failed": len(named) - len(reports),
        "events_per_s": statistics.median([7 * a["throughput_per_s"] for a in reports]),
        "p99_us": statistics.median([a["latency_us"]["p99"] for a in reports]),
        "p99_us_rounds": [a["latency_us"]["p99"] for a in reports]}
agents_summary = agents_of(r"agents-\d+")
# The HTTP rounds at the last rate tried (bench/run.sh halves it while the agent server cannot
# keep up), against the demo rounds at that rate.
http_names = [r["scenario"] for r in runs if r["kind"] == "router-load" and r["scenario"].startswith("http-agents-")]
agents_rate = http_names[0].split("@")[1] if http_names else None  # the first HTTP round's: the demo rounds'
http_rate = http_names[-1].split("@")[1] if http_names else None
http_summary = http_rate and agents_of(r"http-agents-\d+@" + re.escape(http_rate))
http_given_up = [n for n in http_names if not n.endswith("@" + http_rate)]  # rates it did not keep up with
demo_at_http_rate = agents_summary if http_rate == agents_rate else http_rate and agents_of(r"agents-\d+@" + re.escape(http_rate))
summary["agents, 1,000 users (median of rounds)"] = agents_summary or None
summary["agents over HTTP, 1,000 users (median of rounds)"] = http_summary and {
    "runs_per_s_per_user": float(http_rate), "rounds_at_higher_rates": http_given_up, **http_summary}
if http_rate != agents_rate:
    summary["agents at the HTTP rounds' rate, 1,000 users (median of rounds)"] = demo_at_http_rate or None
if http_summary and demo_at_http_rate:
    summary["agents over HTTP / built-in demo"] = {
        "runs_per_s_per_user": float(http_rate),
        "events_per_s": http_summary["events_per_s"] / demo_at_http_rate["events_per_s"],
        "p99": http_summary["p99_us"] / demo_at_http_rate["p99_us"]}
busy = next((r for r in runs if r["kind"] == "busy"), None)
ceiling = next((r for r in runs if r["kind"] == "ceiling"), None)
ceiling_rows = []  # (users, bound, events/s, p99 µs, router µs/event, router-load µs/event)
for res in ((ceiling or {}).get("report") or {}).get("results", []):
    for bound, c in res["ceilings"].items():
        ceiling_rows.append((res["users"], bound, c))
summary["agents ceiling (highest events/s under each p99 bound)"] = [
    {"users": u, "bound": b, **(c or {})} for u, b, c in ceiling_rows] or None
summary["busy, 1,000 connections under the agents load: server RSS KiB per connection"] = busy and busy["kib_per_connection"]

result = {"machine": {"cores": cores, "kernel": kernel}, "peers": peers,
          "note": "values: medians over alternating rounds; ratios: medians over rounds of router / peer in the same round",
          "summary": summary, "runs": runs}
text = json.dumps(result, indent=2, ensure_ascii=False)
print(text)
if out:
    open(out, "w").write(text + "\n")

def fmt(v):
    return "n/a" if v is None else ("%.0f" % v if abs(v) >= 100 else "%.2f" % v)

print()
head = "| load | " + " | ".join(servers) + " | " + " | ".join("router / %s" % p for p in servers[1:]) + " | better |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for label, values, ratios, better in table:
    print("| %s | %s | %s | %s |" % (label, " | ".join(fmt(values[s]) for s in servers),
          " | ".join("n/a" if ratios[p] is None else "%.2f" % ratios[p] for p in servers[1:]), better))
print()
for r in runs:
    if r["kind"] == "router-load":
        rep = r["report"] or {}
        lat = rep.get("latency_us", {})
        extra = ""
        if "agents-" in r["scenario"] and rep.get("throughput_per_s") is not None:
            # every completed demo run delivered agent_started, 3 thinking, 2 tool events, completed
            extra = " (= %.0f agent events/s)" % (7 * rep["throughput_per_s"])
        print("- router-load %s: %s (exit %d), throughput %s/s%s, connect rate %s/s, latency (%s) p50 %s µs, p99 %s µs, p99.9 %s µs; leaks %s, missing %s, errors %s" % (
            r["scenario"], rep.get("verdict", "no report"), r["exit_status"], rep.get("throughput_per_s"), extra,
            rep.get("connections", {}).get("connect_rate_per_s"), lat.get("of"), lat.get("p50"),
            lat.get("p99"), lat.get("p99_9"), rep.get("leaks"), rep.get("missing_events"),
            sum((rep.get("errors") or {}).values())))
        if "publish" in rep:
            pub = rep["publish"]
            print("  - publish: %s published = %s/s, %s deliveries = %s/s, router's delivered sum %s (expected %s), %s skipped" % (
                pub.get("published"), pub.get("publishes_per_s"), pub.get("deliveries"),
                pub.get("deliveries_per_s"), pub.get("delivered_sum"),
                pub.get("expected_deliveries"), pub.get("skipped")))
named_summaries = [("agents", agents_summary),
                   ("agents over HTTP at %s runs/s per user" % http_rate, http_summary)]
if http_rate != agents_rate:
    named_summaries.append(("agents at %s runs/s per user" % http_rate, demo_at_http_rate))
for name, a in named_summaries:
    if a:
        print("- router-load %s, median of %d rounds: %.0f agent events/s, p99 %s µs (rounds: %s µs)%s" % (
            name, a["rounds"], a["events_per_s"], a["p99_us"], ", ".join(str(x) for x in a["p99_us_rounds"]),
            "; %d more rounds lost events (not counted)" % a["rounds_failed"] if a["rounds_failed"] else ""))
if http_given_up:
    print("- the HTTP agent did not keep up in %s: not counted" % ", ".join(http_given_up))
if http_summary and demo_at_http_rate:
    ratio = summary["agents over HTTP / built-in demo"]
    print("- agents over HTTP / built-in demo at %s runs/s per user: %.2f x the events/s, %.2f x the p99" % (
        http_rate, ratio["events_per_s"], ratio["p99"]))
if busy:
    print("- busy: %d KiB of server RSS per connection under the agents load (1,000 connections, 10 s)" % busy["kib_per_connection"])
for users, bound, c in ceiling_rows:
    if c:
        print("- agents ceiling, %d users, %s: %s events/s (p99 %.1f ms); CPU per event: router %s µs, router-load %s µs" % (
            users, bound.replace("_", " "), format(c["events_per_s"], ","), c["p99_us"] / 1000,
            c.get("router_cpu_us_per_event"), c.get("load_cpu_us_per_event")))
    else:
        print("- agents ceiling, %d users, %s: no probe passed" % (users, bound.replace("_", " ")))
for p in ("ws", "uws"):
    if peers.get(p) != "ok":
        print("- peer %s: %s (not measured)" % (p, peers.get(p)))
EOF
