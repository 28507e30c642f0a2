#!/usr/bin/env bash
# Instructions the router executes per ping and per demo run, counted by callgrind: time is
# not repeatable on a shared host, instructions are. For each load the router runs under
# `valgrind --tool=callgrind` twice, for a short and a long router-load run; the difference
# of the two totals divided by the difference of the work done cancels start-up and shutdown.
#
#   bench/instructions.sh            uses BUILD_DIR's event-router and router-load (built)
#
# Environment: BUILD_DIR (default build), SHORT (2 s), LONG (6 s), OUT (also write the JSON).
# Loads: ping, 10 connections x 1 in flight, then x 8 in flight (pipelined requests); agents,
# 50 users x 4 demo runs/s (no pauses).
# Prints one JSON object: instructions per ping round trip (at 1 and at 8 in flight) and per
# demo run (seven events).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$root/build}
SHORT=${SHORT:-2}
LONG=${LONG:-6}
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/router-instructions.XXXXXX")
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
built_binaries

secret="instr-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
common=(--config-file=/dev/null "--router.jwt-secret=$secret" --router.max-runs-per-connection=32
        --router.max-connections-per-user=100000 --agents.demo-step-delay-ms=0)

# measure NAME SECONDS LOAD-ARGS...: prints "instructions work" for one run under callgrind
measure() {
  local name=$1 secs=$2 port router_pid
  shift 2
  port=$((20000 + RANDOM % 10000)) # measure runs in a subshell: new_port's counter would not move
  valgrind --tool=callgrind --callgrind-out-file="$work/$name-$secs.out" "$router_bin" \
    "${common[@]}" --router.store-path=:memory: --router.messages-per-second=1000000 \
    --router.messages-burst=1000000 "--router.port=$port" >"$work/$name-$secs.log" 2>&1 &
  router_pid=$!
  wait_port "$port" 30 || { echo "the router did not start under valgrind" >&2; exit 1; }
  "$load_bin" "${common[@]}" --quiet --json "--port=$port" "$@" "--duration=$secs" \
    --drain-ms=3000 >"$work/$name-$secs.json" 2>"$work/$name-$secs.err"
  kill "$router_pid" # callgrind writes its counts as the router exits: wait for it
  wait "$router_pid" 2>/dev/null || true
  local total work_done
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$work/$name-$secs.out")
  work_done=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"]["round_trips"])' \
    "$work/$name-$secs.json")
  echo "$total $work_done"
}

per_unit() { # NAME LOAD-ARGS...: instructions per unit of work, long minus short
  local name=$1 short long
  shift
  read -r -a short <<<"$(measure "$name" "$SHORT" "$@")"
  read -r -a long <<<"$(measure "$name" "$LONG" "$@")"
  python3 -c 'import sys; a,b,c,d = map(int, sys.argv[1:]); print(round((c - a) / max(d - b, 1)))' \
    "${short[0]}" "${short[1]}" "${long[0]}" "${long[1]}"
}

ping=$(per_unit ping --scenario=ping --connections=10 --inflight=1)
ping8=$(per_unit ping8 --scenario=ping --connections=10 --inflight=8)
agents=$(per_unit agents --scenario=agents --connections=50 --users=50 --rate=4)
result="{\"instructions_per_ping\": $ping, \"instructions_per_ping_8_in_flight\": $ping8, \"instructions_per_demo_run\": $agents, \"short_s\": $SHORT, \"long_s\": $LONG}"
echo "$result"
[ -z "${OUT:-}" ] || echo "$result" >"$OUT"
