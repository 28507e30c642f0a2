#!/usr/bin/env bash
# Builds the event-router Debian package, installs it, runs the INSTALLED router with the
# INSTALLED config, talks to it with the installed router-client, verifies the systemd units,
# then removes and purges the package and checks that nothing is left.
#
#   sudo packaging/test-package.sh [BUILD_DIR]
#
# BUILD_DIR: where to build (configured with -DER_BUILD_TESTS=OFF -DER_WITH_LOAD=OFF when it
# holds no build yet; an existing one is reused as configured). Without it, a temporary folder
# that is removed at the end. Runs as root: it installs into this machine's system folders.
# Exits non-zero on the first failure; stops the router it started and purges the package it
# installed, whatever happens.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_dir="$(cd "$here/.." && pwd)"
package=event-router
jobs="${JOBS:-2}"

step() { printf '\n== %s\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root (dpkg -i installs into /usr, /etc, /lib/systemd)"
for tool in cmake cpack dpkg dpkg-deb dpkg-query dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || fail "$tool is missing (cmake, dpkg-dev)"
done

# --- state the cleanup needs ---------------------------------------------------------------
work="$(mktemp -d /tmp/event-router-pkgtest.XXXXXX)"
build_is_temp=0
if [ $# -ge 1 ] && [ -n "$1" ]; then
  build="$1"
else
  build="$work/build"
  build_is_temp=1
fi
router_pid=""
we_installed=0

cleanup() {
  local status=$?
  set +e
  if [ -n "$router_pid" ] && kill -0 "$router_pid" 2>/dev/null; then
    echo "cleanup: stopping router pid $router_pid"
    kill -TERM "$router_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$router_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$router_pid" 2>/dev/null
    wait "$router_pid" 2>/dev/null
  fi
  if [ "$we_installed" -eq 1 ] && dpkg-query -W -f='${Status}' "$package" 2>/dev/null \
       | grep -qv "not-installed"; then
    echo "cleanup: purging $package"
    dpkg -P "$package" >/dev/null 2>&1
  fi
  rm -rf "$work"
  if [ $status -ne 0 ]; then
    echo "test-package.sh: FAILED (exit $status)" >&2
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- preconditions: a machine without the package or its leftovers ---------------------------
step "preconditions"
if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "installed\|config-files"; then
  fail "$package is already installed (or its config is left): dpkg -P $package first"
fi
for path in /usr/bin/event-router /usr/bin/router-client /etc/event-router /var/lib/event-router \
            /lib/systemd/system/event-router.service /lib/systemd/system/event-router@.service; do
  if [ -e "$path" ] || [ -L "$path" ]; then fail "$path exists before the install"; fi
done
ok "no $package files on this machine"

# --- build -------------------------------------------------------------------------------------
step "build in $build"
if [ -f "$build/CMakeCache.txt" ]; then
  cmake -S "$source_dir" -B "$build" >/dev/null
else
  cmake -S "$source_dir" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DER_BUILD_TESTS=OFF -DER_WITH_LOAD=OFF >/dev/null
fi
cmake --build "$build" -j "$jobs" --target event-router router-client
rm -f "$build"/packages/"$package"_*.deb
cmake --build "$build" --target deb
shopt -s nullglob
debs=("$build"/packages/"$package"_*.deb)
shopt -u nullglob
[ ${#debs[@]} -eq 1 ] || fail "expected one $build/packages/${package}_*.deb, found ${#debs[@]}"
deb="${debs[0]}"
ok "built $deb"

# --- the package's metadata ----------------------------------------------------------------------
step "control fields"
field() { dpkg-deb -f "$deb" "$1"; }
version="$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")"
[ -n "$version" ] || fail "no CMAKE_PROJECT_VERSION in $build/CMakeCache.txt"
[ "$(field Package)" = "$package" ] || fail "Package is '$(field Package)'"
[ "$(field Version)" = "$version" ] || fail "Version '$(field Version)' is not the project's $version"
[ "$(field Section)" = "net" ] || fail "Section is '$(field Section)'"
[ -n "$(field Maintainer)" ] || fail "no Maintainer"
[ -n "$(field Description)" ] || fail "no Description"
depends="$(field Depends)"
for lib in libc6 libcaf-core libsqlite3 libssl3 libstdc++6; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib (dpkg-shlibdeps): $depends"
done
dpkg-deb -e "$deb" "$work/control"
grep -qx "/etc/event-router/caf-application.conf" "$work/control/conffiles" \
  || fail "the config is not a conffile"
for script in postinst prerm postrm; do
  [ -x "$work/control/$script" ] || fail "no executable $script in the package"
done
ok "Package $package, Version $version, Section net"
ok "Depends: $depends"
ok "conffiles: $(tr '\n' ' ' <"$work/control/conffiles")"

# --- install -------------------------------------------------------------------------------------
step "install with dpkg -i"
we_installed=1
if ! dpkg -i "$deb"; then
  echo "dpkg -i failed: installing the missing dependencies with apt-get -f install"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -f install -y || { apt-get update && apt-get -f install -y; } \
    || fail "apt-get -f install failed"
fi
status="$(dpkg-query -W -f='${Status}' "$package")"
[ "$status" = "install ok installed" ] || fail "package status: $status"
ok "$status"

step "installed files"
check_file() { [ -f "$1" ] || fail "$1 is missing"; ok "$1"; }
check_exec() {
  if [ ! -f "$1" ] || [ ! -x "$1" ]; then fail "$1 is missing or not executable"; fi
  ok "$1 (executable)"
}
config=/etc/event-router/caf-application.conf
check_exec /usr/bin/event-router
check_exec /usr/bin/router-client
check_exec /usr/lib/event-router/agents/example-agent
check_file "$config"
check_file /lib/systemd/system/event-router.service
check_file /lib/systemd/system/event-router@.service
check_file /usr/share/doc/event-router/README.md
check_file /usr/share/doc/event-router/README.packaging.md
[ -d /var/lib/event-router ] || fail "/var/lib/event-router was not created"
ok "/var/lib/event-router (directory)"
grep -qx 'store-path="/var/lib/event-router/router.db"' "$config" || fail "store-path in $config"
grep -qx 'host="127.0.0.1"' "$config" || fail "host in $config is not 127.0.0.1"
grep -q 'executable="/usr/lib/event-router/agents/example-agent"' "$config" \
  || fail "the example agent's path in $config"
ok "config: store-path /var/lib/event-router/router.db, host 127.0.0.1"
dpkg-query -W -f='${Conffiles}\n' "$package" | grep -q "$config" || fail "dpkg lists no conffile $config"
ok "dpkg records $config as a conffile"
[ "$(stat -c %a "$config")" = 644 ] || fail "mode of $config is $(stat -c %a "$config")"
unit=/lib/systemd/system/event-router.service
template=/lib/systemd/system/event-router@.service
for u in "$unit" "$template"; do
  for line in DynamicUser=yes StateDirectory=event-router ConfigurationDirectory=event-router \
              ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
              CapabilityBoundingSet= 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
              LimitNOFILE=65536 Restart=on-failure WorkingDirectory=/var/lib/event-router; do
    grep -qx "$line" "$u" || fail "$u lacks '$line'"
  done
done
grep -qx 'ExecStart=/usr/bin/event-router --config-file=/etc/event-router/caf-application.conf' \
  "$unit" || fail "ExecStart of $unit"
grep -q '^EnvironmentFile=-/etc/event-router/%i.env$' "$template" || fail "EnvironmentFile of $template"
# shellcheck disable=SC2016 # $ROUTER_ARGS is the unit's text, not ours to expand
grep -q '^ExecStart=.*--router.server-id=%H-%i .*\$ROUTER_ARGS$' "$template" \
  || fail "ExecStart of $template"
ok "units carry the hardening and the commands"

# --- run the installed router --------------------------------------------------------------------
step "run /usr/bin/event-router with $config"
# As the unit does: working directory /var/lib/event-router, the packaged store path; port 0
# (any free port) so that nothing else on this machine is disturbed.
(cd /var/lib/event-router && exec /usr/bin/event-router --config-file="$config" --router.port=0 \
   >"$work/router.out" 2>"$work/router.err") &
router_pid=$!
port=""
for _ in $(seq 1 200); do
  kill -0 "$router_pid" 2>/dev/null || break
  port="$(sed -nE 's#^event-router listening on ws://127\.0\.0\.1:([0-9]+)/ws.*#\1#p' "$work/router.out")"
  [ -n "$port" ] && break
  sleep 0.1
done
if [ -z "$port" ]; then
  cat "$work/router.out" "$work/router.err" >&2
  fail "the router did not start (pid $router_pid)"
fi
grep -q "config $config" "$work/router.out" || fail "the router did not read $config"
ok "pid $router_pid listening on 127.0.0.1:$port ($(head -1 "$work/router.out" | sed 's/.*(//; s/)$//'))"
[ -f /var/lib/event-router/router.db ] || fail "no store at /var/lib/event-router/router.db"
ok "SQLite store /var/lib/event-router/router.db"

step "mint a token with the installed binary and config, ping with router-client"
user="pkg-test-user"
token="$(/usr/bin/event-router --mint-token="$user" --config-file="$config")"
[ -n "$token" ] || fail "--mint-token printed nothing"
messages=('{"type":"ping","id":"pkg-ping-1"}')
with_agent=0
if command -v perl >/dev/null && perl -MJSON::PP -e1 2>/dev/null; then
  messages+=('{"type":"start_agent","id":"pkg-agent-1","payload":{"agent":"example","input":{"text":"from test-package.sh"}}}')
  with_agent=1
fi
timeout 60 /usr/bin/router-client --url="ws://127.0.0.1:$port/ws" --token="$token" \
  --idle-ms=3000 "${messages[@]}" >"$work/client.out" 2>"$work/client.err" \
  || { cat "$work/client.out" "$work/client.err" >&2; fail "router-client failed"; }
sed 's/^/   < /' "$work/client.out" | cut -c1-160
grep -q '"type": *"connection_established"' "$work/client.out" || fail "no connection_established"
pong="$(grep '"type": *"pong"' "$work/client.out" || true)"
[ -n "$pong" ] || fail "no pong came back"
grep -q '"reply_to": *"pkg-ping-1"' <<<"$pong" || fail "the pong does not answer pkg-ping-1: $pong"
grep -q "\"user_id\": *\"$user\"" <<<"$pong" || fail "the pong is not stamped with $user: $pong"
ok "pong for pkg-ping-1, user_id $user"
if [ "$with_agent" -eq 1 ]; then
  grep '"type": *"agent_completed"' "$work/client.out" | grep -q '"reply_to": *"pkg-agent-1"' \
    || fail "the packaged example agent (/usr/lib/event-router/agents/example-agent) did not complete"
  ok "the example command agent ran from /usr/lib/event-router/agents"
else
  echo "   skipped: the example agent (no perl with JSON::PP)"
fi

step "stop the router by its pid"
kill -TERM "$router_pid"
router_status=0
for _ in $(seq 1 300); do kill -0 "$router_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$router_pid" 2>/dev/null && fail "the router did not stop within 30 s of SIGTERM"
wait "$router_pid" || router_status=$?
router_pid=""
[ "$router_status" -eq 0 ] || { cat "$work/router.err" >&2; fail "the router exited with $router_status"; }
grep -q "event-router: stopped" "$work/router.out" || fail "no 'stopped' line"
ok "SIGTERM: drained and exited 0"

# --- the systemd units -------------------------------------------------------------------------
step "systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
  # A template is verified through an instance of it.
  mkdir -p "$work/units"
  cp "$unit" "$work/units/event-router.service"
  cp "$template" "$work/units/event-router@pkgtest.service"
  for u in "$work/units/event-router.service" "$work/units/event-router@pkgtest.service"; do
    verify_status=0
    SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$u" >"$work/verify.out" 2>&1 || verify_status=$?
    sed 's/^/   | /' "$work/verify.out"
    [ "$verify_status" -eq 0 ] || fail "systemd-analyze verify $(basename "$u") exited $verify_status"
    if grep -E -i -q "unknown (key|section)|failed to parse|invalid|ignoring" "$work/verify.out"; then
      fail "systemd-analyze verify $(basename "$u") complained"
    fi
    ok "$(basename "$u")"
  done
else
  echo "   skipped: systemd-analyze is not installed"
fi

# --- remove, purge -------------------------------------------------------------------------------
step "dpkg -r $package"
dpkg -r "$package"
for path in /usr/bin/event-router /usr/bin/router-client /usr/lib/event-router \
            "$unit" "$template" /usr/share/doc/event-router; do
  [ ! -e "$path" ] || fail "$path is left after dpkg -r"
done
[ -f "$config" ] || fail "dpkg -r removed the conffile $config (only purge may)"
status="$(dpkg-query -W -f='${Status}' "$package")"
[ "$status" = "deinstall ok config-files" ] || fail "status after dpkg -r: $status"
ok "binaries, units, docs gone; $config kept ($status)"

step "dpkg -P $package"
dpkg -P "$package"
we_installed=0
leftovers=()
for path in /usr/bin/event-router /usr/bin/router-client /etc/event-router /var/lib/event-router \
            /var/lib/private/event-router /usr/lib/event-router /usr/share/doc/event-router; do
  if [ -e "$path" ] || [ -L "$path" ]; then leftovers+=("$path"); fi
done
shopt -s nullglob
leftovers+=(/usr/bin/event-router* /usr/bin/router-client* /lib/systemd/system/event-router*)
leftovers+=(/etc/systemd/system/*.wants/event-router*)
shopt -u nullglob
[ ${#leftovers[@]} -eq 0 ] || fail "left after purge: ${leftovers[*]}"
if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "installed\|config-files"; then
  fail "dpkg still knows $package: $(dpkg-query -W -f='${Status}' "$package")"
fi
ok "nothing left in /usr/bin, /etc/event-router, /var/lib/event-router, /lib/systemd/system"

if [ "$build_is_temp" -eq 0 ]; then
  echo
  echo "package: $deb"
fi
echo
echo "test-package.sh: PASSED"
