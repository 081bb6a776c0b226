#!/usr/bin/env bash
# VIGIL_INSTALL_BUILD=DIR install.sh: vigil as a user installs and uses it.
# `meson install` of the build DIR into a temporary directory, moved to
# another place (nothing may point back into the build tree, or to the
# prefix it was configured for); every program of PROGRAMS built against
# that copy with pkg-config and with CMake (find_package(vigil), vigil::vigil,
# and vigil::vigil_static where installed) and run, each to print "ok"; and
# the installed `vigil bench --compare` finding its peer servers beside
# itself, or saying where it looked and how to name them.
# Prints TAP (meson's suite install), as cli.sh does. Exit status 0 if all passed.
set -u
BUILD=$(cd "${VIGIL_INSTALL_BUILD:-build}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
# The programs built against the installed vigil: C files whose main prints
# "ok" last when all went well. The one place that lists them
# (VIGIL_INSTALL_PROGRAMS: others, separated by spaces).
PROGRAMS=(${VIGIL_INSTALL_PROGRAMS:-"$SRC"/tests/install/*.c})
# The examples (servers and clients: tests/examples.sh runs them) are built
# against the installed copy too, with each way of linking; curl_poll.c also
# wants libcurl, and is left out where that is not installed.
EXAMPLES=()
for e in "$SRC"/examples/*.c; do
    [ "$(basename "$e")" = curl_poll.c ] && ! pkg-config --exists libcurl && continue
    EXAMPLES+=("$e")
done
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.sh"

# The build's directories, as meson install lays them out under the prefix.
option() { # name
    meson introspect "$BUILD" --buildoptions |
        python3 -c "import json, sys; print({o['name']: o['value'] for o in json.load(sys.stdin)}['$1'])"
}
CONF_PREFIX=$(option prefix)
LIBDIR=$(option libdir) BINDIR=$(option bindir) LIBEXECDIR=$(option libexecdir)
VERSION=$(meson introspect "$BUILD" --projectinfo | python3 -c "import json, sys; print(json.load(sys.stdin)['version'])")
PREFIX=$T/prefix # where the installed tree ends up
LIB=$PREFIX/$LIBDIR

# meson install into DESTDIR, then the tree moved out of it: a prefix that is
# neither the configured one nor anywhere near the build
installs() {
    meson install -C "$BUILD" --no-rebuild --destdir "$T/dest" --quiet >"$T/install.log" 2>&1 ||
        { cat "$T/install.log"; return 1; }
    mv "$T/dest$CONF_PREFIX" "$PREFIX" || return 1
    local f
    for f in "$BINDIR/vigil" include/vigil.h "$LIBDIR/libvigil.so.$VERSION" "$LIBDIR/libvigil.a" \
        "$LIBDIR/pkgconfig/vigil.pc" "$LIBDIR/cmake/vigil/vigilConfig.cmake" \
        "$LIBDIR/cmake/vigil/vigilConfigVersion.cmake" "$LIBEXECDIR/vigil/echo_epoll"; do
        [ -e "$PREFIX/$f" ] || { echo "not installed: $f"; find "$PREFIX" | sed "s|^$PREFIX/||"; return 1; }
    done
}

# Runs a program built against the installed library: it prints ok, and
# links the installed libvigil.so (want "shared") or none at all ("static").
runs_ok() { # binary, shared|static
    local bin=$1 out
    out=$(LD_LIBRARY_PATH=$LIB "$bin" 2>&1) || { echo "$bin failed: $out"; return 1; }
    [ "$(tail -1 <<<"$out")" = ok ] || { echo "$bin said: $out"; return 1; }
    local lib
    lib=$(LD_LIBRARY_PATH=$LIB ldd "$bin" | awk '/libvigil/ { print $3 }')
    if [ "$2" = shared ]; then
        [ "$lib" = "$(realpath "$LIB")/libvigil.so.0" ] || [ "$lib" = "$LIB/libvigil.so.0" ] ||
            { echo "$bin links '$lib', not the installed $LIB/libvigil.so.0"; return 1; }
    else
        [ -z "$lib" ] || { echo "$bin links $lib: not static"; return 1; }
    fi
}

# cc $(pkg-config --cflags --libs vigil): the prefix in vigil.pc is the one
# configured, so it is named for the moved tree as for any relocated package
with_pkg_config() {
    local flags p name
    flags=$(PKG_CONFIG_PATH=$LIB/pkgconfig pkg-config --define-variable=prefix="$PREFIX" \
        --cflags --libs vigil) || return 1
    echo "pkg-config: $flags"
    for p in "${PROGRAMS[@]}"; do
        name=$(basename "$p" .c)
        cc -std=c11 -Wall -Werror -o "$T/pc-$name" "$p" $flags || return 1
        runs_ok "$T/pc-$name" shared || return 1
    done
    for p in "${EXAMPLES[@]}"; do
        name=$(basename "$p" .c)
        local extra=""
        [ "$name" = curl_poll ] && extra=$(pkg-config --cflags --libs libcurl)
        cc -std=c11 -Wall -Werror -o "$T/pc-ex-$name" "$p" $flags $extra || return 1
    done
    echo "built ${#EXAMPLES[@]} examples"
}

# find_package(vigil VERSION REQUIRED) with CMAKE_PREFIX_PATH, vigil::vigil
# (the shared library) and vigil::vigil_static for each program
with_cmake() {
    command -v cmake >/dev/null || { echo "cmake is not installed (apt-get install cmake)"; return 1; }
    local major_minor=${VERSION%.*} p name
    mkdir -p "$T/cm"
    cat >"$T/cm/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.13)
project(vigil_consumers C)
find_package(vigil $major_minor REQUIRED)
if(NOT TARGET vigil::vigil_static)
  message(FATAL_ERROR "no vigil::vigil_static though libvigil.a is installed")
endif()
foreach(src IN LISTS PROGRAMS)
  get_filename_component(name "\${src}" NAME_WE)
  add_executable(\${name} "\${src}")
  target_link_libraries(\${name} PRIVATE vigil::vigil)
  add_executable(\${name}-static "\${src}")
  target_link_libraries(\${name}-static PRIVATE vigil::vigil_static)
endforeach()
foreach(src IN LISTS EXAMPLES)
  get_filename_component(name "\${src}" NAME_WE)
  add_executable(ex-\${name} "\${src}")
  target_link_libraries(ex-\${name} PRIVATE vigil::vigil)
  if(name STREQUAL "curl_poll")
    find_package(CURL REQUIRED)
    target_link_libraries(ex-\${name} PRIVATE CURL::libcurl)
  endif()
endforeach()
EOF
    local list examples
    list=$(IFS=';'; echo "${PROGRAMS[*]}")
    examples=$(IFS=';'; echo "${EXAMPLES[*]}")
    cmake -S "$T/cm" -B "$T/cm/build" -G Ninja -DCMAKE_PREFIX_PATH="$PREFIX" -DPROGRAMS="$list" \
        -DEXAMPLES="$examples" \
        >"$T/cmake.log" 2>&1 || { cat "$T/cmake.log"; return 1; }
    cmake --build "$T/cm/build" >"$T/cmake-build.log" 2>&1 || { cat "$T/cmake-build.log"; return 1; }
    for p in "${PROGRAMS[@]}"; do
        name=$(basename "$p" .c)
        runs_ok "$T/cm/build/$name" shared || return 1
        runs_ok "$T/cm/build/$name-static" static || return 1
    done
    # a version it is not: 0.x promises nothing across minor versions
    sed -i "s/find_package(vigil $major_minor REQUIRED)/find_package(vigil ${VERSION%%.*}.99 REQUIRED)/" \
        "$T/cm/CMakeLists.txt"
    ! cmake -S "$T/cm" -B "$T/cm/build2" -G Ninja -DCMAKE_PREFIX_PATH="$PREFIX" >"$T/cmake2.log" 2>&1 ||
        { echo "find_package(vigil ${VERSION%%.*}.99) found $VERSION"; return 1; }
}

BENCH_ARGS=(bench --compare --rounds 1 --duration 0.3 --warmup 0.1 --conns 4 --drain 2)

# The installed vigil bench --compare: its peers from LIBEXECDIR/vigil beside
# it (the build tree is nowhere it looks: no path of it is in the binary)
bench_finds_peers() {
    "$PREFIX/$BINDIR/vigil" "${BENCH_ARGS[@]}" --out "$T/b1" >"$T/b1.out" 2>&1 ||
        { cat "$T/b1.out"; return 1; }
    # (libuv's and libevent's are there when their libraries were found)
    ! grep -q 'skipping the peer servers\|skipping raw-' "$T/b1.out" || { cat "$T/b1.out"; return 1; }
    python3 - "$T/b1/bench.json" "$PREFIX/$LIBEXECDIR/vigil/" <<'PY' || return 1
import json, sys
d, where = json.load(open(sys.argv[1])), sys.argv[2]
peers = {s["name"]: s["program"] for s in d["servers"] if not s["name"].startswith("vigil-")}
assert "raw-epoll" in peers, "no raw-epoll row: %s" % [s["name"] for s in d["servers"]]
for name, prog in peers.items():
    assert prog.startswith(where), "%s ran %s, not one from %s" % (name, prog, where)
PY
}

# Without them it says where it looked and how to name them; --peers DIR works
bench_says_where() {
    local peers=$PREFIX/$LIBEXECDIR/vigil
    mv "$peers" "$peers.away" || return 1
    "$PREFIX/$BINDIR/vigil" "${BENCH_ARGS[@]}" --out "$T/b2" >"$T/b2.out" 2>&1
    local rc=$?
    mv "$peers.away" "$peers"
    [ $rc -eq 0 ] || { cat "$T/b2.out"; return 1; }
    grep -q "no echo_epoll next to this vigil in $peers or $T/bench; .* --peers DIR" "$T/b2.out" ||
        { echo "did not say where it looked:"; cat "$T/b2.out"; return 1; }
    cp -r "$peers" "$T/elsewhere" || return 1
    "$PREFIX/$BINDIR/vigil" "${BENCH_ARGS[@]}" --peers "$T/elsewhere" --out "$T/b3" >"$T/b3.out" 2>&1 ||
        { cat "$T/b3.out"; return 1; }
    grep -q "\"program\":\"$T/elsewhere/echo_epoll\"" "$T/b3/bench.json" ||
        { echo "--peers $T/elsewhere not used:"; cat "$T/b3.out"; return 1; }
}

echo "TAP version 13"
check "meson install into a temporary prefix: library, header, vigil.pc, CMake package, vigil, peers" installs
if [ $FAIL -eq 0 ]; then
    check "pkg-config: ${#PROGRAMS[@]} program(s) built and run, ${#EXAMPLES[@]} examples built, against the installed vigil" with_pkg_config
    check "CMake find_package(vigil): ${#PROGRAMS[@]} program(s), vigil::vigil and vigil::vigil_static; ${#EXAMPLES[@]} examples" with_cmake
    check "the installed vigil bench --compare runs the peers installed beside it" bench_finds_peers
    check "without them, vigil bench says where it looked; --peers DIR" bench_says_where
fi
tap_end "install"
