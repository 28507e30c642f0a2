#!/usr/bin/env bash
# A soak: router-load's agents, publish and churn scenarios at once against one router for SECS
# seconds (default 300), each scenario under its own user prefix, so that a frame of one
# scenario reaching another's connection is a leak that scenario reports. Every scenario must
# pass (zero leaks, zero missing events, zero errors); the router's RSS and open files are
# sampled every 10 seconds, so that memory or descriptors kept past their connection show as a
# trend rather than a level. Not run by CI.
#
#   bench/soak.sh [SECS]
#
# Environment: BUILD_DIR (default build-bench), JOBS (build jobs, default 2), ROUTER (another
# event-router binary, e.g. an AddressSanitizer build's: its report lands in the router's log),
# OUT (also write the JSON to this file).
# Progress goes to stderr; stdout gets the JSON. Exit status 1 when a scenario failed or the
# router did not stop cleanly.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$root/build-bench}
JOBS=${JOBS:-2}
secs=${1:-300}

work=$(mktemp -d "${TMPDIR:-/tmp}/router-soak.XXXXXX")
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
port=

log() { echo "soak: $*" >&2; }

log "building event-router and router-load (Release) in $BUILD_DIR"
cmake -S "$root" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
nice -n 10 cmake --build "$BUILD_DIR" -j "$JOBS" --target event-router router-load >&2
router_bin=${ROUTER:-$BUILD_DIR/event-router}
load_bin="$BUILD_DIR/router-load"

secret="soak-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
api_key="soak-key-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
common=(--config-file=/dev/null "--router.jwt-secret=$secret" "--router.api-key=$api_key"
        --router.max-connections-per-user=100000)
new_port port
"$router_bin" "${common[@]}" "--router.store-path=$work/threads.db" "--router.port=$port" \
  >"$work/router.log" 2>&1 &
router_pid=$!
pids+=("$router_pid")
wait_port "$port" 30 || { log "the router did not start: $(tail -5 "$work/router.log")"; exit 1; }
# GET PATH from the router: its body
http_get() { python3 -c 'import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=10).read().decode())' "$port" "$1"; }
heap_in_use() { router_metric "$port" router_heap_in_use_bytes; }
heap_before=$(heap_in_use)
log "router PID $router_pid on port $port; $secs s of agents, publish and churn at once"

# name, then router-load's options: demo runs with their pauses, publishes to random users of
# 200 connections, connections opened and closed as fast as they go
scenarios=(
  "agents --scenario=agents --connections=200 --rate=2 --user-prefix=soak-agents-"
  "publish --scenario=publish --connections=200 --publish-rate=2000 --user-prefix=soak-publish-"
  "churn --scenario=churn --connections=20 --user-prefix=soak-churn-"
)
loaders=()
names=()
for s in "${scenarios[@]}"; do
  read -r name args <<<"$s"
  names+=("$name")
  # shellcheck disable=SC2086
  "$load_bin" "${common[@]}" --quiet --json "--port=$port" "--duration=$secs" $args \
    >"$work/$name.json" 2>"$work/$name.err" &
  loaders+=("$!")
  pids+=("$!")
done

: >"$work/samples"
start=$(date +%s)
any_loader_running() {
  local p
  for p in "${loaders[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done
  return 1
}
while any_loader_running; do
  kill -0 "$router_pid" 2>/dev/null || break
  echo "$(($(date +%s) - start)) $(rss_kib "$router_pid") $(fd_count "$router_pid")" >>"$work/samples"
  sleep 10
done

status=0
statuses=() # NAME=STATUS, for the report
for i in "${!loaders[@]}"; do
  s=0
  wait "${loaders[$i]}" || s=$?
  statuses+=("${names[$i]}=$s")
  [ "$s" -eq 0 ] || status=1
done
# Every session must end: the detached ones once their resume window has passed. Then the heap
# the allocator accounts as in use is back near where it was before the load; what is not
# (beyond the per-thread caches and SQLite's page cache) outlived its session.
sessions_left=unknown
heap_after=0
if kill -0 "$router_pid" 2>/dev/null; then
  log "waiting for every session to end (router.resume-window-ms, 30 s by default)"
  for _ in $(seq 90); do
    sessions_left=$(http_get /healthz | python3 -c 'import json, sys
h = json.load(sys.stdin); print(h["connections"] + h["detached"])') || sessions_left=unknown
    [ "$sessions_left" = 0 ] && break
    sleep 1
  done
  heap_after=$(heap_in_use) || heap_after=0
  [ "$sessions_left" = 0 ] || { log "$sessions_left sessions left after 90 s"; status=1; }
fi
after_rss=$(rss_kib "$router_pid" 2>/dev/null || echo 0)
after_fds=$(fd_count "$router_pid")
router_status=0
if kill -0 "$router_pid" 2>/dev/null; then
  kill "$router_pid"
  wait "$router_pid" || router_status=$?
else
  wait "$router_pid" || router_status=$?
  log "the router ended during the soak (status $router_status)"
  [ "$router_status" -ne 0 ] || router_status=1
fi
pids=()
[ "$router_status" -eq 0 ] || status=1

python3 - "$work" "$secs" "$router_status" "$after_rss" "$after_fds" "$sessions_left" \
  "$heap_before" "$heap_after" "${statuses[@]}" >"$work/soak.json" <<'EOF'
import json, os, sys
work, secs, router_status, after_rss, after_fds, sessions_left, heap_before, heap_after = sys.argv[1:9]
statuses = [arg.split("=") for arg in sys.argv[9:]]
samples = [tuple(int(x) for x in line.split()) for line in open(os.path.join(work, "samples"))
           if len(line.split()) == 3]
scenarios = {}
for name, status in statuses:
    try:
        rep = json.load(open(os.path.join(work, name + ".json")))
    except (OSError, ValueError):
        rep = {}
    opened = (rep.get("connections") or {}).get("established") or 0
    scenarios[name] = {"exit_status": int(status), "verdict": rep.get("verdict", "no report"),
                       "connections_opened": opened,
                       "throughput_per_s": rep.get("throughput_per_s"),
                       "leaks": rep.get("leaks"), "missing_events": rep.get("missing_events"),
                       "errors": rep.get("errors"), "failures": rep.get("failures")}
half = [r for t, r, _ in samples if t <= int(secs) // 2]
rest = [r for t, r, _ in samples if t > int(secs) // 2]
print(json.dumps({
    "seconds": int(secs), "router_exit_status": int(router_status), "scenarios": scenarios,
    # RSS climbs through the first resume window (router.resume-window-ms, 30 s by default: a
    # churned connection's session waits that long for a resume) and while replay buffers and
    # allocator pools fill, then levels; what was kept past its session would keep the second
    # half climbing above the first
    "router_rss_kib": {"first_half_max": max(half, default=None),
                       "second_half_max": max(rest, default=None),
                       "after": int(after_rss)},
    "router_open_files_after": int(after_fds),
    "sessions_left_after_the_resume_window": sessions_left,
    # the allocator's account (router_heap_in_use_bytes) before the load and once every
    # session has ended
    "router_heap_in_use": {
        "before": int(heap_before or 0), "after": int(heap_after or 0),
        "growth_per_connection_opened": (int(heap_after or 0) - int(heap_before or 0))
            / max(1, sum(s["connections_opened"] for s in scenarios.values()))},
    "samples": [{"t_s": t, "rss_kib": r, "open_files": f} for t, r, f in samples]}, indent=2))
EOF
cat "$work/soak.json"
[ -z "${OUT:-}" ] || cp "$work/soak.json" "$OUT"
python3 - "$work/soak.json" >&2 <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for name, s in r["scenarios"].items():
    print("soak: %s: %s (exit %d), %s/s, leaks %s, missing %s, errors %s" % (
        name, s["verdict"], s["exit_status"], s["throughput_per_s"], s["leaks"],
        s["missing_events"], sum((s["errors"] or {}).values())))
m = r["router_rss_kib"]
print("soak: router RSS max %s KiB in the first half, %s KiB in the second, %s KiB after; %d open files after; exit %d" % (
    m["first_half_max"], m["second_half_max"], m["after"], r["router_open_files_after"],
    r["router_exit_status"]))
h = r["router_heap_in_use"]
print("soak: sessions left %s; heap in use %d KiB before, %d KiB after every session ended (%.1f bytes per connection opened)" % (
    r["sessions_left_after_the_resume_window"], h["before"] // 1024, h["after"] // 1024,
    h["growth_per_connection_opened"]))
EOF
if [ "$status" -ne 0 ]; then
  log "FAIL: see $work (kept)"
  trap - EXIT
fi
exit "$status"
