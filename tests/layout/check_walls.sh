#!/usr/bin/env bash
# The architecture's walls, checked on the sources and the binary (CTest: layout_walls).
#   children of a manager (handlers, runs) include no net/ header, directly or through another;
#   context/ and protocol/ are leaves; protocol/ pulls in neither CAF nor Beast;
#   net/ knows no actors, no application error codes, no client or load tool code;
#   event-router compiles and links no load-tool code and no simdjson.
# Usage: check_walls.sh CXX SOURCE_DIR EVENT_ROUTER_BINARY
set -uo pipefail
cxx=$1 src=$2 binary=$3
cd "$src" || exit 2
failures=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# The project headers a source file pulls in, transitively (g++ -MM: system headers left out).
project_deps() {
  "$cxx" -std=c++17 -MM -I. "$1" | tr ' \\' '\n\n' | grep -v '^$' | tail -n +2
}

# Every header, system ones included.
all_deps() {
  "$cxx" -std=c++17 -M -I. "$1" | tr ' \\' '\n\n' | grep -v '^$' | tail -n +2
}

# forbid FILES... -- PATTERN REASON: no file may depend on a header matching PATTERN.
forbid() {
  local pattern=$1 reason=$2
  shift 2
  for f in "$@"; do
    local bad
    bad=$(project_deps "$f" | grep -E "$pattern")
    [ -z "$bad" ] || fail "$f includes $(echo $bad) ($reason)"
  done
}

children=(actors/router/manager/handlers/*.cpp actors/router/manager/runs/*.cpp)
[ ${#children[@]} -gt 3 ] || fail "no children's sources found"
forbid '^net/' "a manager's child must not reach the transport" "${children[@]}"
forbid '^actors/router/manager/(connection_manager|manager_state)\.hpp|^actors/router/router\.hpp' \
  "a child knows its manager only by its parent handle" "${children[@]}"

forbid '^(net|actors|app|load|clients|protocol)/' "context/ is a leaf" context/*.cpp
forbid '^(net|actors|app|load|clients|context)/' "protocol/ is a leaf" protocol/*.cpp
for f in protocol/*.cpp; do
  bad=$(all_deps "$f" | grep -E '/caf/|/boost/')
  [ -z "$bad" ] || fail "$f pulls in CAF or Boost: $(echo $bad | head -c 200)"
done

forbid '^(actors|app|load|clients)/|^protocol/error_codes\.hpp' \
  "net/ is transport only" net/*.cpp
forbid '^(load|clients)/' "the router does not know the load tool or the clients" \
  actors/*.cpp actors/*/*.cpp actors/*/*/*.cpp actors/*/*/*/*.cpp app/*.cpp

load_symbols=$(nm -C "$binary" | grep -c 'er::load::')
[ "$load_symbols" -eq 0 ] || fail "$binary links load-tool code ($load_symbols symbols)"
[ "$(ldd "$binary" | grep -c simdjson)" -eq 0 ] || fail "$binary links simdjson"
[ "$(nm -C "$binary" | grep -c 'er::actors::')" -gt 0 ] || fail "$binary has no symbols to check" 

if [ "$failures" -gt 0 ]; then
  echo "$failures wall(s) broken"
  exit 1
fi
echo "every wall holds: $(ls "${children[@]}" | wc -l) child sources, context/, protocol/, net/, event-router"
