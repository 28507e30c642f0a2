#!/usr/bin/env bash
# Runs one client-side suite against a router binary; CTest calls it (see CMakeLists.txt).
#   clients/run-tests.sh js|python|console|asyncapi ROUTER_BINARY
# The npm suites install their test tooling with `npm ci` when package-lock.json changed.
set -euo pipefail
suite=$1
export ER_ROUTER_BINARY=$2
root="$(cd "$(dirname "$0")/.." && pwd)"

npm_ready() { # DIR: node_modules installed from the current package-lock.json
  local dir=$1 stamp=$1/node_modules/.package-lock.json
  if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

case "$suite" in
  js)
    npm_ready "$root/clients/js"
    cd "$root/clients/js" && node --test test/
    ;;
  python)
    cd "$root/clients/python" && /usr/bin/python3 -m unittest discover -s tests
    ;;
  console)
    npm_ready "$root/clients/console"
    cd "$root/clients/console" && node --test test/
    ;;
  asyncapi)
    npm_ready "$root/docs/validate"
    cd "$root/docs/validate" && node validate.mjs
    ;;
  *)
    echo "usage: $0 js|python|console|asyncapi ROUTER_BINARY" >&2
    exit 2
    ;;
esac
