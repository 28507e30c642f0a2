#!/usr/bin/env bash
# The README's two commands:
#   ./quickstart.sh run    install what is missing, build (Release), start the router
#   ./quickstart.sh test   install what is missing, build, run the whole suite through CTest
# Extra arguments after `run` go to event-router (e.g. --router.port=9000).
# And one to try the cluster:
#   ./quickstart.sh cluster [N]   a Redis on a free port and N routers (default 3) sharing
#                                 port 8080 (SO_REUSEPORT), each on its own ports for its
#                                 HTTP API too; Ctrl-C stops them all
set -euo pipefail

cd "$(dirname "$0")"
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-2}

PACKAGES=(g++ cmake make libcaf-dev libboost-dev libboost-system-dev nlohmann-json3-dev
          doctest-dev libcpp-jwt-dev libsqlite3-dev prometheus-cpp-dev libssl-dev libsimdjson-dev
          libhiredis-dev perl)
# The suite also runs the clients (Node.js, Python), the console in Chromium, and the agents'
# example backends (Python).
TEST_PACKAGES=(nodejs chromium python3 python3-websockets redis-server openssl)

# install_missing PACKAGE...: apt-get installs those not installed yet.
install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  # npm comes with Node.js from some sources and as its own package from Debian.
  if [[ " $* " == *" nodejs "* ]] && ! command -v npm >/dev/null; then
    missing+=(npm)
  fi
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "quickstart: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# build [TARGET ...]: everything when no target is named.
build() {
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DER_WERROR="${ER_WERROR:-OFF}" >/dev/null
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build "$BUILD_DIR" -j "$JOBS" "${targets[@]}"
}

# run_cluster N: a Redis without persistence on a free port and N routers on port 8080.
# What it started is stopped, and its directory removed, however it ends (globals: the EXIT
# trap runs after the function's locals are gone).
cluster_dir=""
cluster_pids=()
stop_cluster() {
  local pid _
  for pid in "${cluster_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do # the routers drain first; one still starting may not answer SIGTERM
    local alive=0
    for pid in "${cluster_pids[@]}"; do if kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${cluster_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  [ -n "$cluster_dir" ] && rm -rf "$cluster_dir"
  return 0
}
run_cluster() {
  local n=$1 i port routers=()
  [[ "$n" =~ ^[1-9][0-9]?$ ]] || { echo "quickstart: cluster N: 1 to 99 routers" >&2; exit 2; }
  trap stop_cluster EXIT
  trap 'exit 130' INT TERM
  cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/event-router-cluster.XXXXXX")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$cluster_dir" \
    >"$cluster_dir/redis.log" 2>&1 &
  cluster_pids+=($!)
  for i in $(seq 1 "$n"); do
    "$BUILD_DIR/event-router" --router.reuse-port=true --router.server-id="node-$i" \
      --router.store-path="$cluster_dir/node-$i.db" --cluster.redis="127.0.0.1:$port" \
      >"$cluster_dir/node-$i.log" 2>&1 &
    cluster_pids+=($!)
    routers+=($!)
  done
  # Every router listening, or the first one that ended instead, with its log (a port taken
  # by a router started without router.reuse-port, a bad configuration).
  for i in $(seq 1 "$n"); do
    local pid=${routers[$((i - 1))]} log="$cluster_dir/node-$i.log"
    for _ in $(seq 100); do
      grep -q "listening on" "$log" && break
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "quickstart: router node-$i ended instead of listening:" >&2
        cat "$log" >&2
        exit 1
      fi
      sleep 0.1
    done
    grep -q "listening on" "$log" || { echo "quickstart: router node-$i did not start" >&2; exit 1; }
  done
  head -n 7 "$cluster_dir/node-1.log"
  echo "cluster: redis on 127.0.0.1:$port, $n routers sharing port 8080 (logs in $cluster_dir);"
  echo "each connection lands on one of them; publish on any: the user's connections on every"
  echo "node get it. Ctrl-C stops everything."
  # Until one of them ends: then the others are stopped too, and its log says why.
  local status=0
  wait -n "${cluster_pids[@]}" || status=$?
  echo "quickstart: a process of the cluster ended (status $status); stopping the others." >&2
  tail -n 5 "$cluster_dir"/*.log >&2
  exit 1
}

case "${1:-}" in
  run)
    shift
    install_missing "${PACKAGES[@]}"
    build event-router router-client
    exec "$BUILD_DIR/event-router" "$@"
    ;;
  cluster)
    shift
    install_missing "${PACKAGES[@]}" redis-server python3
    build event-router router-client
    run_cluster "${1:-3}"
    ;;
  test)
    install_missing "${PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    build
    cd "$BUILD_DIR"
    ctest --output-on-failure -j "$JOBS" --timeout 600
    ;;
  *)
    echo "usage: $0 run [--router.KEY=VALUE ...] | test | cluster [N]" >&2
    exit 2
    ;;
esac
