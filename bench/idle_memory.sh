#!/usr/bin/env bash
# Memory per idle connection, as the router's allocator accounts for it: the heap in use
# (router_heap_in_use_bytes, glibc's mallinfo2) and the RSS, before and after router-load holds
# CONNS idle connections. The heap in use repeats to a few bytes per connection from run to run
# where the RSS moves with the allocator's arenas: it is the measure for a change that saves
# memory (bench/run.sh's idle row is the RSS, beside the peers).
#
#   bench/idle_memory.sh             uses BUILD_DIR's event-router and router-load (built)
#
# Environment: BUILD_DIR (default build), CONNS (10000), RUNS (2), OUT (also write the JSON).
# Prints one JSON object: per run, KiB per connection of heap in use and of RSS.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$root/build}
CONNS=${CONNS:-10000}
RUNS=${RUNS:-2}

work=$(mktemp -d "${TMPDIR:-/tmp}/router-idle.XXXXXX")
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
built_binaries

secret="idle-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

results=()
for run in $(seq "$RUNS"); do
  new_port port
  (cd "$work" && exec "$router_bin" --config-file=/dev/null "--router.port=$port" \
     --router.store-path=:memory: "--router.jwt-secret=$secret" \
     --router.max-connections-per-user=100000 --router.max-connections=20000) \
    >"$work/router-$run.log" 2>&1 &
  router_pid=$!
  pids+=("$router_pid")
  wait_port "$port" || { echo "the router did not start: $(cat "$work/router-$run.log")" >&2; exit 1; }
  sleep 0.5
  heap0=$(router_metric "$port" router_heap_in_use_bytes)
  rss0=$(rss_kib "$router_pid")
  "$load_bin" --scenario=idle "--connections=$CONNS" --duration=4 --connect-window=128 \
    "--port=$port" "--router.jwt-secret=$secret" --quiet >"$work/load-$run.out" 2>&1 &
  load_pid=$!
  pids+=("$load_pid")
  for _ in $(seq 300); do
    [ "$(router_metric "$port" router_connections)" = "$CONNS" ] && break
    sleep 0.1
  done
  sleep 1.5 # every connection greeted and idle
  heap1=$(router_metric "$port" router_heap_in_use_bytes)
  rss1=$(rss_kib "$router_pid")
  wait "$load_pid" || { echo "router-load failed: $(cat "$work/load-$run.out")" >&2; exit 1; }
  stop_pids "$router_pid"
  results+=("$(python3 -c "import json; print(json.dumps({'heap_kib_per_connection': round(($heap1 - $heap0) / 1024 / $CONNS, 3), 'rss_kib_per_connection': round(($rss1 - $rss0) / $CONNS, 3)}))")")
  echo "idle run $run: ${results[-1]}" >&2
done

json=$(printf '%s\n' "${results[@]}" | python3 -c "
import json, sys
runs = [json.loads(line) for line in sys.stdin if line.strip()]
print(json.dumps({'kind': 'idle_memory', 'connections': $CONNS, 'runs': runs}))")
echo "$json"
[ -n "${OUT:-}" ] && echo "$json" >"$OUT"
exit 0
