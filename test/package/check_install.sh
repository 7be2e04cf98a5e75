#!/usr/bin/env bash
# Proves that sdiff can be embedded from its installed package alone (issue 16).
#   test/package/check_install.sh BUILD_DIR
# Installs BUILD_DIR (cmake --install) into a temporary prefix. It builds
# nothing itself: the programs and libraries must be built already, as they
# are once sdiff_tests is (ctest runs it as Package.InstallAndBuildExamples).
# Then, with nothing of the source or build tree on any path, it checks that:
#   - the prefix's include directory holds sdiff/*.h and nothing else;
#   - find_package(sdiff X.Y) accepts this version only for its own X.Y (before 1.0);
#   - pkg-config --cflags --libs sdiff compiles and links an example;
#   - examples/, copied out of the tree, configure with find_package(sdiff)
#     from the prefix and build;
#   - they replicate on loopback: the master example writes KEYS keys, the
#     follower example exits 0 once its replica holds them and reads the last
#     back through a ReplicaReader, and the master stops cleanly on SIGTERM.
# Every wait has a deadline; whatever it started is killed on every way out
# (ctest, on its own timeout, kills the whole tree).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
keys=1000

# The build's own compiler and install directories, as it was configured.
cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
cxx=$(cache CMAKE_CXX_COMPILER)
libdir=$(cache CMAKE_INSTALL_LIBDIR)
includedir=$(cache CMAKE_INSTALL_INCLUDEDIR)
if [ -n "$(cache SDIFF_SANITIZE)" ]; then
  # The exported targets do not carry -fsanitize: such a build is no package.
  echo "check_install: $build is a sanitizer build (SDIFF_SANITIZE); use a plain one" >&2
  exit 2
fi

work=$(mktemp -d /tmp/sdiff-package-XXXXXX)
prefix=$work/prefix
master=""    # the examples' process ids while they run
follower=""
cleanup() {
  for pid in $master $follower; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

check=check_install
# shellcheck source=test/package/common.sh
source "$(dirname "$0")/common.sh"


cmake --install "$build" --prefix "$prefix" >"$work/install.log" || fail "cmake --install failed" install.log
step "installed $build into $prefix"

# Only the public headers: engine/, net/, plugin/ and tools/ stay internal.
headers=$(cd "$prefix/$includedir" && find . -mindepth 1 ! -type d -printf '%P\n' | sort)
strays=$(grep -v -E '^sdiff/[a-z_]+\.h$' <<<"$headers" || true)
[ -z "$strays" ] || fail "$prefix/$includedir holds more than sdiff/*.h:"$'\n'"$strays"
for name in follower master options replica_reader status version; do
  grep -qx "sdiff/$name.h" <<<"$headers" || fail "sdiff/$name.h is not installed"
done

# What find_package(sdiff VERSION) accepts: before 1.0 the same minor version
# only (a 0.x minor release may break the API), from 1.0 on the same major.
version_file=$prefix/$libdir/cmake/sdiff/sdiffConfigVersion.cmake
cat >"$work/accepts.cmake" <<'EOF_CMAKE'
include(${VERSION_FILE})
message("${PACKAGE_VERSION_COMPATIBLE}")
EOF_CMAKE
accepts() {  # accepts MAJOR.MINOR: prints TRUE or FALSE, as find_package decides
  local major=${1%%.*} minor=${1#*.}
  cmake -DPACKAGE_FIND_VERSION="$1" -DPACKAGE_FIND_VERSION_MAJOR="$major" \
    -DPACKAGE_FIND_VERSION_MINOR="$minor" -DPACKAGE_FIND_VERSION_PATCH=0 \
    -DVERSION_FILE="$version_file" -P "$work/accepts.cmake" 2>&1
}
installed=$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")$/\1/p' "$version_file")
IFS=. read -r v_major v_minor _ <<<"$installed"
expect_accepts() {  # expect_accepts MAJOR.MINOR TRUE|FALSE
  [ "$(accepts "$1")" = "$2" ] || fail "find_package(sdiff $1) on $installed: not $2"
}
expect_accepts "$v_major.$v_minor" TRUE
expect_accepts "$v_major.$((v_minor + 1))" FALSE
expect_accepts "$((v_major + 1)).0" FALSE
if ((v_major == 0 && v_minor > 0)); then expect_accepts "0.$((v_minor - 1))" FALSE; fi
if ((v_major > 0 && v_minor > 0)); then expect_accepts "$v_major.0" TRUE; fi
step "find_package(sdiff $v_major.$v_minor) accepts $installed; $v_major.$((v_minor + 1)) does not"

# The examples, out of the tree, so that nothing can reach it by a relative path.
cp -r "$src/examples" "$work/examples"
launcher=()
if command -v ccache >/dev/null; then
  # Relative to $work, so that a later run's other temporary name still hits.
  export CCACHE_BASEDIR=$work CCACHE_NOHASHDIR=1
  launcher=(ccache)
fi

export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
pc_flags=$(pkg-config --cflags --libs sdiff) || fail "pkg-config --cflags --libs sdiff failed"
# shellcheck disable=SC2086  # pkg-config's flags are words
"${launcher[@]}" "$cxx" -std=c++20 -o "$work/pc_master" "$work/examples/embedded_master/main.cc" \
  $pc_flags >"$work/pkg-config.log" 2>&1 ||
  fail "building with pkg-config's flags failed: $pc_flags" pkg-config.log
status=0
"$work/pc_master" >/dev/null 2>&1 || status=$?
((status == 2)) || fail "the program built with pkg-config's flags exits $status without arguments, not 2"
step "pkg-config: $pc_flags"

for example in embedded_master follower_reader; do
  cmake -S "$work/examples/$example" -B "$work/build-$example" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$cxx" \
    ${launcher:+-DCMAKE_CXX_COMPILER_LAUNCHER=ccache} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
    >"$work/configure-$example.log" 2>&1 ||
    fail "configuring $example failed" "configure-$example.log"
  found=$(sed -n 's/^sdiff_DIR:PATH=//p' "$work/build-$example/CMakeCache.txt")
  [ "$found" = "$prefix/$libdir/cmake/sdiff" ] || fail "$example found sdiff in '$found', not $prefix"
  cmake --build "$work/build-$example" -j2 >"$work/build-$example.log" 2>&1 ||
    fail "building $example failed" "build-$example.log"
  if grep -q -F -e "$src/" -e "$build/" "$work/build-$example/build.ninja"; then
    fail "$example's build names the source or build tree"
  fi
done
step "built examples/ against $prefix"

mkdir "$work/run"
"$work/build-embedded_master/embedded_master" "$work/run/master" --listen 127.0.0.1:0 \
  --keys "$keys" >"$work/master.log" 2>&1 &
master=$!
port=$(port_of "$master" "the master example" master.log \
  's/^listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p')

last=$(printf 'key-%08d' $((keys - 1)))
"$work/build-follower_reader/follower_reader" "$work/run/replica" --master "127.0.0.1:$port" \
  --expect-keys "$keys" --timeout-s 30 --read "$last" >"$work/follower.log" 2>&1 &
follower=$!
status=0
wait_for "$follower" 60 follower || status=$?
follower=""
((status == 0)) || fail "the follower example exited $status" follower.log master.log
grep -q "^$last = value-$((keys - 1)) " "$work/follower.log" ||
  fail "the follower example did not read $last back" follower.log
step "replicated $keys keys on 127.0.0.1:$port and read $last back"

kill -TERM "$master"
status=0
wait_for "$master" 30 master || status=$?
master=""
((status == 0)) || fail "the master example exited $status on SIGTERM" master.log
grep -q "^stopping on SIGTERM: $keys keys" "$work/master.log" ||
  fail "the master example did not stop as it says it does" master.log
step "the master example stopped cleanly on SIGTERM"
echo "check_install: OK"
