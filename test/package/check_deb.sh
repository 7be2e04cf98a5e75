#!/usr/bin/env bash
# Proves the Debian package (cmake/package.cmake) on this machine (issue 16).
#   test/package/check_deb.sh BUILD_DIR        as root (./run test runs it so)
# Packs BUILD_DIR with cpack, which builds nothing: the programs and libraries
# must be built already, as they are once sdiff_tests is. Then it checks that:
#   - the .deb holds the programs, headers, libraries, CMake and pkg-config
#     packages, the systemd units and the example configs, and depends on the
#     shared libraries the programs link and the -dev packages the headers need;
#   - dpkg -i installs it and its postinst makes the system user sdiff;
#   - systemd-analyze verify passes on both installed units for an instance
#     (it needs no systemd as PID 1, and checks that ExecStart's program exists),
#     and systemd-analyze security rates their exposure 2.0 or less;
#   - the installed /usr/bin programs, run as the units run them (as sdiff,
#     --config FILE, no new privileges, no capabilities, LimitNOFILE) but
#     directly, since systemd need not be PID 1 here, replicate on loopback:
#     keys written through the master with the installed sdiff-ldb before and
#     after the follower starts reach the replica, and both daemons stop
#     cleanly on SIGTERM;
#   - every system call they made (strace) is one their unit's SystemCallFilter
#     allows, since systemd cannot run them under it here;
#   - dpkg -r removes every file it installed and keeps the user sdiff, as
#     designed (the databases under /var/lib/sdiff belong to it).
# Every wait has a deadline. On every way out it kills what it started,
# removes the package and, if this run made it, the user sdiff.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "check_deb: must run as root (it installs a package)" >&2; exit 2; }
if dpkg-query -W -f='${Status}' sdiff 2>/dev/null | grep -q "install ok installed"; then
  echo "check_deb: the package sdiff is installed on this machine; not touching it" >&2
  exit 2
fi
keys=500

cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
version=$(cache CMAKE_PROJECT_VERSION)
libdir=/usr/$(cache CMAKE_INSTALL_LIBDIR)  # lib, or lib/x86_64-linux-gnu for a prefix /usr
if [ -n "$(cache SDIFF_SANITIZE)" ]; then
  echo "check_deb: $build is a sanitizer build (SDIFF_SANITIZE); use a plain one" >&2
  exit 2
fi

# Readable by sdiff, which the daemons run as.
work=$(mktemp -d /tmp/sdiff-deb-XXXXXX)
chmod 755 "$work"
installed=0
made_user=0
getent passwd sdiff >/dev/null || made_user=1
# The package's directories that dpkg -r must remove, unless they held
# something before (an earlier install's instances).
ours=(/usr/include/sdiff /usr/share/doc/sdiff)
for dir in /etc/sdiff /var/lib/sdiff; do [ -e "$dir" ] || ours+=("$dir"); done
master=""  # while the daemons run: the strace that runs each, and each daemon
follower=""
master_pid=""
follower_pid=""
cleanup() {
  for pid in $master_pid $follower_pid $master $follower; do kill -KILL "$pid" 2>/dev/null || true; done
  if ((installed)); then timeout 120 dpkg --purge sdiff >/dev/null 2>&1 || true; fi
  if ((made_user)) && getent passwd sdiff >/dev/null; then
    userdel sdiff 2>/dev/null || true
    groupdel sdiff 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

check=check_deb
# shellcheck source=test/package/common.sh
source "$(dirname "$0")/common.sh"

# --- the package --------------------------------------------------------------
timeout 300 cpack --config "$build/CPackConfig.cmake" -B "$work/out" >"$work/cpack.log" 2>&1 ||
  fail "cpack failed" cpack.log
deb=$work/out/sdiff_${version}_$(dpkg --print-architecture).deb
[ -f "$deb" ] || fail "cpack made no $deb" cpack.log
step "cpack made $(basename "$deb"), $(($(stat -c %s "$deb") / 1024)) KiB"

dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|' >"$work/contents"
for path in /usr/bin/sdiff-rocks-master /usr/bin/sdiff-rocks-follower /usr/bin/sdiff-ldb \
  /usr/include/sdiff/master.h /usr/include/sdiff/follower.h /usr/include/sdiff/version.h \
  "$libdir/libsdiff.a" "$libdir/cmake/sdiff/sdiffConfig.cmake" "$libdir/pkgconfig/sdiff.pc" \
  /lib/systemd/system/sdiff-rocks-master@.service /lib/systemd/system/sdiff-rocks-follower@.service \
  /etc/sdiff/ /var/lib/sdiff/ /usr/share/doc/sdiff/README.md /usr/share/doc/sdiff/operations.md \
  /usr/share/doc/sdiff/examples/master.conf.example \
  /usr/share/doc/sdiff/examples/follower.conf.example; do
  grep -qxF "$path" "$work/contents" || fail "the package lacks $path"
done
# Nothing else under /etc: dpkg would have to treat it as a conffile.
strays=$(grep -E '^/etc/.' "$work/contents" | grep -vxF /etc/sdiff/ || true)
[ -z "$strays" ] || fail "the package puts files under /etc:"$'\n'"$strays"
[ "$(dpkg-deb -f "$deb" Package)" = sdiff ] || fail "the package is not named sdiff"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "the package's version is not $version"
depends=$(dpkg-deb -f "$deb" Depends)
# From dpkg-shlibdeps, the shared libraries the programs link (RocksDB is
# linked statically: its compression libraries stand for it), and from the headers.
for dep in libssl3 'libfmt[0-9]+' 'libspdlog[0-9.a-z-]+' libzstd1 libisal2 'libc6 \(' adduser \
  librocksdb-dev libssl-dev libspdlog-dev libxxhash-dev libisal-dev; do
  grep -qE "(^|, )$dep" <<<"$depends" || fail "Depends lacks $dep: $depends"
done
step "contents and Depends: $depends"

# --- install ------------------------------------------------------------------
installed=1
timeout 300 dpkg -i "$deb" >"$work/dpkg-i.log" 2>&1 || fail "dpkg -i failed" dpkg-i.log
if grep -qi warning "$work/dpkg-i.log"; then fail "dpkg -i warns" dpkg-i.log; fi
for path in /usr/bin/sdiff-rocks-master /lib/systemd/system/sdiff-rocks-master@.service; do
  [ -e "$path" ] || fail "$path is missing after dpkg -i"
done
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd sdiff) || fail "the postinst made no user sdiff"
((uid < 1000)) || fail "the user sdiff is not a system user (uid $uid)"
[ "$shell" = /usr/sbin/nologin ] || fail "the user sdiff has a login shell ($shell)"
getent group sdiff >/dev/null || fail "the postinst made no group sdiff"
for bin in sdiff-rocks-master sdiff-rocks-follower sdiff-ldb; do
  out=$(/usr/bin/$bin --version) || fail "/usr/bin/$bin --version failed"
  [[ $out == "$bin $version "* ]] || fail "/usr/bin/$bin --version says '$out'"
done
step "dpkg -i: user sdiff (uid $uid, home $home), /usr/bin/sdiff-* $version"

# The installed units, as systemd would load them for an instance. verify
# needs no running systemd; it fails on a bad directive or a missing program.
for unit in sdiff-rocks-master@check.service sdiff-rocks-follower@check.service; do
  status=0
  timeout 60 systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 || status=$?
  ((status == 0)) || fail "systemd-analyze verify $unit exits $status" verify.log
  # It reports some problems (an unknown directive) without failing.
  if grep -q sdiff "$work/verify.log"; then fail "systemd-analyze verify $unit complains" verify.log; fi
done
# And their sandbox, as systemd rates it (0 best, 10 none): a guard against
# hardening lost in an edit. 1.2 when written.
for unit in sdiff-rocks-master@check.service sdiff-rocks-follower@check.service; do
  timeout 60 systemd-analyze security --offline=true "$unit" >"$work/security.log" 2>&1 ||
    fail "systemd-analyze security $unit failed" security.log
  exposure=$(sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p' "$work/security.log")
  [ -n "$exposure" ] || fail "systemd-analyze security $unit gave no exposure level" security.log
  awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' ||
    fail "systemd-analyze security rates $unit's exposure $exposure, above 2.0" security.log
done
step "systemd-analyze verify: both units, instance 'check'; security: exposure $exposure"

# --- run the installed daemons as the units do ----------------------------------
# As sdiff, with no new privileges, no capabilities and the units' LimitNOFILE
# (or this machine's hard limit, if lower: a container may not raise it);
# prlimit and setpriv exec, so $! is the daemon's own process id.
# strace records the system calls the daemons make, for the units'
# SystemCallFilter below. It is our child and the daemon its child: it exits
# with the daemon's status only once its record is complete.
nofile=$(ulimit -Hn)
if [ "$nofile" = unlimited ] || ((nofile > 65536)); then nofile=65536; fi
as_sdiff=(prlimit --nofile="$nofile:$nofile" setpriv --reuid=sdiff --regid=sdiff --init-groups
  --no-new-privs --bounding-set=-all --inh-caps=-all --)
conf=$work/etc
state=$work/state
mkdir -p "$conf" "$state/master" "$state/follower"
chown sdiff:sdiff "$state/master" "$state/follower"
chmod 750 "$state/master" "$state/follower"
head -c 32 /dev/urandom | base64 >"$conf/secret"
chown sdiff:sdiff "$conf/secret"
chmod 600 "$conf/secret"
cat >"$conf/master.conf" <<EOF
# as /etc/sdiff/INSTANCE.conf (docs/operations.md, "Run under systemd")
db = $state/master/db
create-if-missing = true
listen = 127.0.0.1:0
secret-file = $conf/secret
allow-writers = true
EOF

# sdiff_ldb ARGS...: the installed sdiff-ldb, as sdiff, for at most 60 s.
sdiff_ldb() { timeout 60 "${as_sdiff[@]}" /usr/bin/sdiff-ldb --secret-file "$conf/secret" "$@"; }
# load FIRST COUNT: writes key-FIRST.. through the master.
load() {
  local i
  for ((i = $1; i < $1 + $2; i++)); do printf 'key-%06d\tvalue-%d\n' "$i" "$i"; done >"$work/keys"
  chmod 644 "$work/keys"
  sdiff_ldb --master "127.0.0.1:$port" --timeout 30 load "$work/keys" >"$work/load.log" 2>&1 ||
    fail "sdiff-ldb load through the master failed" load.log master.log
}

traced=(strace -f -q)
# traced_pid TRACER NAME: the process id of the daemon TRACER (a strace) runs.
traced_pid() {
  local pid="" deadline=$((SECONDS + 30))
  until pid=$(pgrep -P "$1") && [ -n "$pid" ]; do
    kill -0 "$1" 2>/dev/null || fail "strace of the $2 exited before running it" "$2.log"
    ((SECONDS < deadline)) || fail "strace did not start the $2 within 30 s" "$2.log"
    sleep 0.1
  done
  echo "$pid"
}
"${traced[@]}" -o "$work/master.trace" "${as_sdiff[@]}" /usr/bin/sdiff-rocks-master \
  --config "$conf/master.conf" >"$work/master.log" 2>&1 &
master=$!
master_pid=$(traced_pid "$master" master)
port=$(port_of "$master" "the master" master.log 's/^serving .* on port \([0-9]*\)$/\1/p')
load 0 "$keys"
step "the installed master serves $state/master/db on 127.0.0.1:$port; $keys keys written through it"

cat >"$conf/follower.conf" <<EOF
db = $state/follower/db
master = 127.0.0.1:$port
secret-file = $conf/secret
EOF
"${traced[@]}" -o "$work/follower.trace" "${as_sdiff[@]}" /usr/bin/sdiff-rocks-follower \
  --config "$conf/follower.conf" >"$work/follower.log" 2>&1 &
follower=$!
follower_pid=$(traced_pid "$follower" follower)
# The follower bootstraps the first keys; these reach it by the stream (or
# by its diff, if it connects after them).
load "$keys" "$keys"
last=$(printf 'key-%06d' $((2 * keys - 1)))
deadline=$((SECONDS + 60))
until value=$(sdiff_ldb --db "$state/follower/db" get "$last" 2>/dev/null) &&
  [ "$value" = "value-$((2 * keys - 1))" ] &&
  sdiff_ldb --db "$state/follower/db" --master "127.0.0.1:$port" --timeout 30 diff \
    >"$work/diff.log" 2>&1; do
  kill -0 "$follower" 2>/dev/null || fail "the follower exited" follower.log
  ((SECONDS < deadline)) || fail "the replica does not equal the master after 60 s" \
    diff.log follower.log master.log
  sleep 0.2
done
step "the installed follower holds all $((2 * keys)) keys (sdiff-ldb diff --master: identical)"

kill -TERM "$follower_pid" "$master_pid"
for name in follower master; do
  # strace exits with the daemon's status, once it has written all it saw.
  status=0
  wait_for "${!name}" 30 "$name" || status=$?
  printf -v "$name" ''
  printf -v "${name}_pid" ''
  ((status == 0)) || fail "the $name exited $status on SIGTERM" "$name.log"
done
status=0
sdiff_ldb --db "$state/master/db" diff --db2 "$state/follower/db" >"$work/diff.log" 2>&1 || status=$?
((status == 0)) || fail "after stopping, sdiff-ldb diff exits $status" diff.log
step "both stopped on SIGTERM, exit 0; sdiff-ldb diff of the two databases: identical"

# The system calls each daemon made, from its own execve on (prlimit's and
# setpriv's are systemd's part), against its unit's SystemCallFilter lines:
# the first allows groups and calls, each ~ line denies some.
# expand ITEM...: the calls ITEM names, groups (@system-service) expanded.
expand() {
  local item
  for item in "$@"; do
    if [[ $item == @* ]]; then
      # shellcheck disable=SC2046  # one word a line
      expand $(systemd-analyze syscall-filter "$item" | sed 1d | sed -n 's/^ *\([@a-z0-9_-]\+\).*/\1/p')
    else
      echo "$item"
    fi
  done
}
for name in master follower; do
  unit=/lib/systemd/system/sdiff-rocks-$name@.service
  allow=$(sed -n 's/^SystemCallFilter=\([^~].*\)/\1/p' "$unit")
  deny=$(sed -n 's/^SystemCallFilter=~//p' "$unit")
  # shellcheck disable=SC2086  # lists of words
  comm -23 <(expand $allow | sort -u) <(expand $deny | sort -u) >"$work/allowed"
  [ -s "$work/allowed" ] || fail "$unit has no SystemCallFilter"
  sed -n "\|execve(\"/usr/bin/sdiff-rocks-$name\"|,\$p" "$work/$name.trace" |
    sed -n -E 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p; s/^[0-9]+ +<\.\.\. ([a-z0-9_]+) resumed>.*/\1/p' |
    sort -u >"$work/calls"
  (($(wc -l <"$work/calls") > 20)) || fail "strace recorded too few calls of the $name" "$name.trace"
  denied=$(comm -23 "$work/calls" "$work/allowed" | tr '\n' ' ')
  [ -z "$denied" ] || fail "the $name made calls its unit's SystemCallFilter denies: $denied"
done
step "the daemons made only system calls their units' SystemCallFilter allows"

# --- remove -------------------------------------------------------------------
dpkg -L sdiff | sort >"$work/files"
timeout 300 dpkg -r sdiff >"$work/dpkg-r.log" 2>&1 || fail "dpkg -r sdiff failed" dpkg-r.log
if dpkg-query -W -f='${Status}' sdiff 2>/dev/null | grep -q " installed$"; then
  fail "sdiff is still installed after dpkg -r"
fi
left=()
while read -r path; do
  # Directories other packages share (/usr/bin, ...) stay, as they should.
  [ -e "$path" ] && ! [ -d "$path" ] && left+=("$path")
done <"$work/files"
((${#left[@]} == 0)) || fail "dpkg -r left ${left[*]}"
for path in "${ours[@]}" "$libdir/cmake/sdiff"; do
  [ ! -e "$path" ] || fail "dpkg -r left $path"
done
getent passwd sdiff >/dev/null || fail "dpkg -r removed the user sdiff, which owns the databases"
timeout 120 dpkg --purge sdiff >"$work/dpkg-purge.log" 2>&1 || fail "dpkg --purge failed" dpkg-purge.log
installed=0
getent passwd sdiff >/dev/null || fail "dpkg --purge removed the user sdiff, which owns the databases"
step "dpkg -r and --purge: every file gone, the user sdiff kept"
echo "check_deb: OK"
