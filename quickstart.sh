#!/usr/bin/env bash
# The README's two commands:
#   ./quickstart.sh run    install what is missing, build (Release), start the router
#   ./quickstart.sh test   install what is missing, build, run the whole suite through CTest
# Extra arguments after `run` go to event-router (e.g. --router.port=9000).
set -euo pipefail

cd "$(dirname "$0")"
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-2}

PACKAGES=(g++ cmake make libcaf-dev libboost-dev libboost-system-dev nlohmann-json3-dev
          doctest-dev libcpp-jwt-dev libsqlite3-dev prometheus-cpp-dev libssl-dev libsimdjson-dev perl)
# The suite also runs the clients (Node.js, Python), the console in Chromium, and the agents'
# example backends (Python).
TEST_PACKAGES=(nodejs chromium python3 python3-websockets)

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

case "${1:-}" in
  run)
    shift
    install_missing "${PACKAGES[@]}"
    build event-router router-client
    exec "$BUILD_DIR/event-router" "$@"
    ;;
  test)
    install_missing "${PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    build
    cd "$BUILD_DIR"
    ctest --output-on-failure -j "$JOBS" --timeout 600
    ;;
  *)
    echo "usage: $0 run [--router.KEY=VALUE ...] | test" >&2
    exit 2
    ;;
esac
