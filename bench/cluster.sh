#!/usr/bin/env bash
# The cluster at scale (DESIGN §11.8), a benchmark and not a test: a Redis and ROUTERS router
# processes sharing one port (router.reuse-port) on this host hold CONNECTIONS authenticated
# WebSocket connections, opened by LOADERS router-load processes from several loopback source
# addresses (a process here may open 20,000 files). While they are held, the publish and
# agents scenarios run across the nodes with every frame checked (zero leaks, zero missing
# events). Then the cost of the bus: the same publish load on one router with cluster.redis
# empty and set, alternating rounds, as ratios. Takes about 5 minutes after the build.
#
#   bench/cluster.sh             build (Release, BUILD_DIR), run, print JSON + a table
#
# Environment: BUILD_DIR (default build-bench), JOBS (build jobs, 2), CONNECTIONS (100000),
# ROUTERS (7), LOADERS (8), PUBLISH_RATE (2000 events/s across the nodes), BUS_RATE (3000
# events/s for the bus cost), ROUNDS (3), OUT (also write the JSON to this file).
# Progress goes to stderr; stdout gets the JSON and then the markdown table.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$root/build-bench}
JOBS=${JOBS:-2}
CONNECTIONS=${CONNECTIONS:-100000}
ROUTERS=${ROUTERS:-7}
LOADERS=${LOADERS:-8}
PUBLISH_RATE=${PUBLISH_RATE:-2000}
BUS_RATE=${BUS_RATE:-3000}
ROUNDS=${ROUNDS:-3}
PUBLISH_CONNS=5000
AGENT_CONNS=1000
SCENARIO_SECS=10
BUS_CONNS=2000
BUS_SECS=8

work=$(mktemp -d "${TMPDIR:-/tmp}/router-cluster-bench.XXXXXX")
runs="$work/runs.jsonl"
: > "$runs"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

log() { echo "cluster-bench: $*" >&2; }

# -- build ---------------------------------------------------------------------------------

log "building event-router and router-load (Release) in $BUILD_DIR"
cmake -S "$root" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
nice -n 10 cmake --build "$BUILD_DIR" -j "$JOBS" --target event-router router-load >&2
router_bin="$BUILD_DIR/event-router"
load_bin="$BUILD_DIR/router-load"
command -v redis-server >/dev/null || { log "redis-server is missing (apt-get install redis-server)"; exit 2; }

secret="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
api_key="bench-key-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
router_args=(--router.store-path=:memory: "--router.jwt-secret=$secret" "--router.api-key=$api_key"
             --router.max-connections=18000 --router.io-threads=1
             --router.messages-per-second=1000000 --router.messages-burst=1000000
             --router.max-connections-per-user=100000 --router.max-runs-per-connection=32
             --agents.demo-step-delay-ms=0 --cluster.node-ttl-ms=5000)
load_args=("--router.jwt-secret=$secret" "--api-key=$api_key" --router.max-connections-per-user=100000
           --agents.demo-step-delay-ms=0 --quiet --json)

start_redis() { # sets redis_pid, redis_port
  new_port redis_port
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --maxclients 10000 --dir "$work" >"$work/redis.log" 2>&1 &
  redis_pid=$!
  pids+=("$redis_pid")
  wait_port "$redis_port" || { log "redis-server did not start: $(tail -3 "$work/redis.log")"; exit 1; }
}

start_router() { # PORT ID EXTRA...: appends to router_pids once it accepts
  local port=$1 id=$2
  shift 2
  (cd "$work" && exec "$router_bin" "${router_args[@]}" "--router.port=$port" \
     "--router.server-id=$id" "$@") >"$work/router-$id.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  router_pids+=("$pid")
}

load_report() { # NAME FILE STATUS: a runs.jsonl line from a router-load JSON report
  python3 - "$1" "$2" "$3" >>"$runs" <<'EOF'
import json, sys
name, path, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    report = json.load(open(path))
except Exception:
    report = None
print(json.dumps({"kind": "load", "name": name, "exit_status": status, "report": report}))
EOF
}

# -- 1. CONNECTIONS connections on ROUTERS processes sharing one port ------------------------

start_redis
new_port port
router_pids=()
for i in $(seq 1 "$ROUTERS"); do
  start_router "$port" "node-$i" --router.reuse-port=true "--cluster.redis=127.0.0.1:$redis_port"
done
wait_port "$port" || { log "the routers did not start: $(tail -3 "$work"/router-*.log)"; exit 1; }
sleep 2 # every node registered and subscribed
fd_base=$(sum_of fd_count "${router_pids[@]}")
rss_base=$(sum_of rss_kib "${router_pids[@]}" "$redis_pid")
log "$ROUTERS routers on port $port, Redis on $redis_port: RSS $rss_base KiB before connections"

per_loader=$((CONNECTIONS / LOADERS))
hold_secs=$((3 * SCENARIO_SECS + 60)) # past the scenarios below and the sampling
loader_pids=()
started=$(date +%s.%N)
for i in $(seq 1 "$LOADERS"); do
  "$load_bin" "${load_args[@]}" --scenario=idle --port="$port" --connections="$per_loader" \
    --users=$((per_loader / 4)) --user-prefix="idle-$i-" --sources=8 --connect-window=128 \
    --io-threads=1 --duration="$hold_secs" --drain-ms=1000 --handshake-timeout-ms=60000 \
    >"$work/idle-$i.json" 2>"$work/idle-$i.err" &
  loader_pids+=("$!")
  pids+=("$!")
done
target=$((per_loader * LOADERS))
open=0
for _ in $(seq 600); do # at most 5 minutes to connect
  open=$(( $(sum_of fd_count "${router_pids[@]}") - fd_base ))
  [ "$open" -ge "$target" ] && break
  alive=0
  for pid in "${loader_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ "$alive" -eq 1 ] || { log "every loader ended early: $(head -3 "$work"/idle-*.err)"; break; }
  sleep 0.5
done
connected_after=$(python3 -c "import time; print(round(time.time() - $started, 2))")
log "$open of $target connections open after ${connected_after} s"
sleep 5 # settled: every greeting sent, counts in Redis
rss_held=$(sum_of rss_kib "${router_pids[@]}")
rss_redis=$(rss_kib "$redis_pid")
per_router=$(for pid in "${router_pids[@]}"; do echo -n "$(( $(fd_count "$pid") )),"; done)
python3 - "$target" "$open" "$connected_after" "$rss_base" "$rss_held" "$rss_redis" \
  "$ROUTERS" "$LOADERS" "${per_router%,}" >>"$runs" <<'EOF'
import json, sys
target, open_, secs, base, routers_rss, redis_rss = map(float, sys.argv[1:7])
print(json.dumps({"kind": "scale", "connections": int(target), "open": int(open_),
                  "connect_seconds": secs, "connects_per_s": round(open_ / secs, 1),
                  "routers": int(sys.argv[7]), "loaders": int(sys.argv[8]),
                  "router_descriptors": [int(x) for x in sys.argv[9].split(",")],
                  "rss_before_kib": base, "rss_routers_kib": routers_rss, "rss_redis_kib": redis_rss,
                  "kib_per_connection_total": round((routers_rss + redis_rss) / max(open_, 1), 2),
                  "kib_per_connection_added": round((routers_rss + redis_rss - base) / max(open_, 1), 2)}))
EOF

# -- 2. while they are held: publish and agents across the nodes ----------------------------

status=0
"$load_bin" "${load_args[@]}" --scenario=publish --port="$port" --connections="$PUBLISH_CONNS" \
  --user-prefix=pub- --publish-rate="$PUBLISH_RATE" --publish-connections=16 \
  --duration="$SCENARIO_SECS" --sources=8 >"$work/publish.json" 2>"$work/publish.err" || status=$?
load_report publish-across-nodes "$work/publish.json" "$status"
log "publish across the nodes: exit $status"
status=0
"$load_bin" "${load_args[@]}" --scenario=agents --port="$port" --connections="$AGENT_CONNS" \
  --user-prefix=agent- --rate=1 --duration="$SCENARIO_SECS" --sources=8 \
  >"$work/agents.json" 2>"$work/agents.err" || status=$?
load_report agents-across-nodes "$work/agents.json" "$status"
log "agents across the nodes: exit $status"

# The hold ends for every loader at about the same moment: all connections close at once. The
# teardown is timed on the routers' side, from the first percent closed to the last percent.
teardown_from="" teardown_to=""
for _ in $(seq 1200); do # at most 4 minutes
  open=$(( $(sum_of fd_count "${router_pids[@]}") - fd_base ))
  now=$(date +%s.%N)
  [ -z "$teardown_from" ] && [ "$open" -le $((target * 99 / 100)) ] && teardown_from=$now
  [ "$open" -le $((target / 100)) ] && { teardown_to=$now; break; }
  sleep 0.2
done
python3 - "$target" "${teardown_from:-0}" "${teardown_to:-0}" >>"$runs" <<'EOF'
import json, sys
target, start, end = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
secs = end - start if start and end else None
print(json.dumps({"kind": "teardown", "seconds_98_percent": round(secs, 2) if secs else None,
                  "closes_per_s": round(0.98 * target / secs, 1) if secs else None}))
EOF
for i in "${!loader_pids[@]}"; do # the idle loaders end their hold and report
  status=0
  wait "${loader_pids[$i]}" || status=$?
  load_report "idle-$((i + 1))" "$work/idle-$((i + 1)).json" "$status"
done
stop_pids "${loader_pids[@]}" "${router_pids[@]}"
log "the held connections closed; the routers stopped"

# -- 3. the cost of the bus: one router, cluster.redis empty and set -----------------------

for round in $(seq 1 "$ROUNDS"); do
  for mode in single cluster; do
    new_port bus_port
    router_pids=()
    if [ "$mode" = cluster ]; then
      start_router "$bus_port" "bus-$round" "--cluster.redis=127.0.0.1:$redis_port"
    else
      start_router "$bus_port" "single-$round"
    fi
    wait_port "$bus_port" || { log "router ($mode) did not start"; exit 1; }
    sleep 1
    pid=${router_pids[0]}
    before=$(cpu_ticks "$pid")
    redis_before=$(cpu_ticks "$redis_pid")
    status=0
    "$load_bin" "${load_args[@]}" --scenario=publish --port="$bus_port" --connections="$BUS_CONNS" \
      --user-prefix="bus-$mode-$round-" --publish-rate="$BUS_RATE" --publish-connections=16 \
      --duration="$BUS_SECS" --sources=4 >"$work/bus.json" 2>"$work/bus.err" || status=$?
    after=$(cpu_ticks "$pid")
    redis_after=$(cpu_ticks "$redis_pid")
    python3 - "$mode" "$round" "$status" "$work/bus.json" "$((after - before))" \
      "$((redis_after - redis_before))" "$(getconf CLK_TCK)" >>"$runs" <<'EOF'
import json, sys
mode, rnd, status, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ticks, redis_ticks, hz = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
r = json.load(open(path))
deliveries = r["publish"]["deliveries"] or 1
print(json.dumps({"kind": "bus", "mode": mode, "round": rnd, "exit_status": status,
                  "verdict": r["verdict"], "deliveries_per_s": r["publish"]["deliveries_per_s"],
                  "p99_us": r["latency_us"]["p99"], "leaks": r["leaks"],
                  "missing_events": r["missing_events"],
                  "deliveries_per_publish": round(deliveries / (r["publish"]["published"] or 1), 2),
                  "router_cpu_us_per_delivery": round(ticks * 1e6 / hz / deliveries, 2),
                  "redis_cpu_us_per_publish": round(redis_ticks * 1e6 / hz / (r["publish"]["published"] or 1), 2),
                  "redis_cpu_us_per_delivery": round(redis_ticks * 1e6 / hz / deliveries, 2)}))
EOF
    log "bus $mode round $round: exit $status"
    stop_pids "$pid"
  done
done

# -- report ---------------------------------------------------------------------------------

python3 - "$runs" "$(nproc)" "$(uname -r)" "${OUT:-}" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
scale = next(r for r in runs if r["kind"] == "scale")
loads = {r["name"]: r for r in runs if r["kind"] == "load"}
def rep(name):
    return (loads.get(name) or {}).get("report") or {}
idle = [rep(n) for n in loads if n.startswith("idle-")]
bus = [r for r in runs if r["kind"] == "bus"]
def merged_errors(reports): # {kind: count} over the reports
    out = {}
    for r in reports:
        for kind, n in (r.get("errors") or {}).items():
            out[kind] = out.get(kind, 0) + n
    return out
def ratios(key):
    rounds = sorted({r["round"] for r in bus})
    out = []
    for n in rounds:
        s = next((r for r in bus if r["round"] == n and r["mode"] == "single"), None)
        c = next((r for r in bus if r["round"] == n and r["mode"] == "cluster"), None)
        if s and c and s[key]:
            out.append(c[key] / s[key])
    return round(statistics.median(out), 3) if out else None
summary = {
    "host": {"cores": int(sys.argv[2]), "kernel": sys.argv[3]},
    "scale": scale,
    "teardown": next((r for r in runs if r["kind"] == "teardown"), None),
    "idle_loaders": {"established": sum(r.get("connections", {}).get("established", 0) for r in idle),
                     "failed": sum(r.get("connections", {}).get("failed", 0) for r in idle),
                     "leaks": sum(r.get("leaks", 0) for r in idle),
                     "errors": merged_errors(idle),
                     "verdicts": sorted({r.get("verdict", "none") for r in idle}),
                     "failures": sorted({f for r in idle for f in r.get("failures", [])})},
    "publish_across_nodes": {k: rep("publish-across-nodes").get(k) for k in
                             ("verdict", "leaks", "missing_events", "publish", "latency_us")},
    "agents_across_nodes": {k: rep("agents-across-nodes").get(k) for k in
                            ("verdict", "leaks", "missing_events", "messages", "latency_us")},
    "bus_rounds": bus,
    "bus_cost": {"router_cpu_per_delivery_cluster_over_single": ratios("router_cpu_us_per_delivery"),
                 "p99_cluster_over_single": ratios("p99_us"),
                 "deliveries_per_s_cluster_over_single": ratios("deliveries_per_s")},
}
text = json.dumps(summary, indent=2)
print(text)
if sys.argv[4]:
    open(sys.argv[4], "w").write(text + "\n")
pub = summary["publish_across_nodes"]
ag = summary["agents_across_nodes"]
bc = summary["bus_cost"]
print()
print("| measure | value |")
print("|---|---|")
print(f"| connections held, routers on one port | {scale['open']:,} on {scale['routers']} processes |")
print(f"| connects/s (all loaders) | {scale['connects_per_s']:,} |")
td = summary["teardown"] or {}
if td.get("closes_per_s"):
    print(f"| all closed at once: closes/s (close handshakes, Redis bookkeeping) | {td['closes_per_s']:,} |")
print(f"| RSS per connection, routers + Redis | {scale['kib_per_connection_total']} KiB "
      f"({scale['kib_per_connection_added']} KiB added by the connections) |")
if pub.get("publish"):
    print(f"| cross-node publish: deliveries/s; p99 | {pub['publish']['deliveries_per_s']:,}; "
          f"{pub['latency_us']['p99'] / 1000:.1f} ms (leaks {pub['leaks']}, missing {pub['missing_events']}) |")
if ag.get("latency_us"):
    print(f"| agents across nodes: p99 start to completion | {ag['latency_us']['p99'] / 1000:.1f} ms "
          f"(leaks {ag['leaks']}, missing {ag['missing_events']}) |")
print(f"| bus cost: router CPU per delivery, cluster / single | {bc['router_cpu_per_delivery_cluster_over_single']} |")
print(f"| bus cost: p99, cluster / single | {bc['p99_cluster_over_single']} |")
EOF
