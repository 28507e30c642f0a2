# Sourced by the bench scripts (run.sh, cluster.sh, instructions.sh): the processes they start,
# the ports they use and what they read from /proc. Set `work` (a temporary folder) before
# sourcing: it is removed at exit, with every process in `pids`.

pids=()

end_pids() { # TENTHS PID...: SIGTERM, then SIGKILL after TENTHS tenths of a second; reaped
  local tenths=$1 pid
  shift
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

# Every process a script starts is in `pids`; all of them end here, whatever happens.
cleanup() {
  end_pids 50 "${pids[@]}"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pids() { # PID...: SIGTERM, then SIGKILL after 10 s; taken out of `pids`
  local kept=() p
  end_pids 100 "$@"
  for p in "${pids[@]}"; do
    [[ " $* " == *" $p "* ]] || kept+=("$p")
  done
  pids=("${kept[@]+"${kept[@]}"}")
}

wait_port() { # PORT [SECONDS]: true once something accepts on 127.0.0.1:PORT (default 10 s)
  for _ in $(seq $((${2:-10} * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# built_binaries: router_bin and load_bin, from BUILD_DIR; exits 2 naming what to build
built_binaries() {
  router_bin="$BUILD_DIR/event-router"
  load_bin="$BUILD_DIR/router-load"
  [ -x "$router_bin" ] && [ -x "$load_bin" ] || { echo "build event-router and router-load in $BUILD_DIR" >&2; exit 2; }
}

# router_metric PORT NAME: one series of the router's /metrics, as an integer
router_metric() {
  python3 -c 'import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=10).read().decode())' "$1" |
    awk -v n="$2" '$1 == n {printf "%d\n", $2}'
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_ticks_user_sys() { awk '{print $14 "," $15}' "/proc/$1/stat"; } # utime,stime
sum_of() { # FUNCTION PID...: the sum of FUNCTION over the PIDs
  local f=$1 total=0 pid
  shift
  for pid in "$@"; do total=$((total + $($f "$pid"))); done
  echo "$total"
}

next_port=$((20000 + RANDOM % 10000)) # below the ephemeral range (32768-)
# new_port VAR: the next port into VAR (not in a subshell: the counter must move on)
new_port() { next_port=$((next_port + 1)); printf -v "$1" "%s" "$next_port"; }
