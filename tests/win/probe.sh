#!/usr/bin/env bash
# tests/win/probe.sh [N]: cross-builds tests/win/iocp_probe.c and
# tests/win/platform_test.c (src/os/win/platform.c) for Windows and runs them
# under wine64 with a private prefix; N idle connections for the probe's
# memory check (default 1000); then the suites built for Windows so far
# (test_loop, test_tcp, test_errors, test_udp, test_supervisor, test_rebuild, test_gate).
# Installs gcc-mingw-w64-x86-64 and wine64 when missing (as root). Prints
# the probe's lines and "N passed, N failed" (", N skipped" when a suite
# skipped tests that only Linux can run: never counted as passed).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
missing=()
for p in gcc-mingw-w64-x86-64 wine64 meson ninja-build; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "probe.sh: missing packages: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
BUILD=${VIGIL_BUILD_WIN:-build-win}
[ -f "$BUILD/build.ninja" ] || meson setup --cross-file cross/x86_64-w64-mingw32.txt "$BUILD" >/dev/null
ninja -C "$BUILD" >/dev/null
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
export WINEDEBUG=-all WINEPREFIX=${WINEPREFIX:-$BUILD/wineprefix}
# A new prefix is made by the first program's start and updated in the
# background; a program started meanwhile can lose its output. Make it, and
# wait for wine to settle, before anything runs.
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    /usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1 || true
    /usr/lib/wine/wineserver -w 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ok=0 bad=0 skipped=0
run() { # name exe args...: lines "NAME: CHECK: ok|FAIL ...", then "NAME: N failed"
    local name=$1 exe=$2 out; shift 2
    out=$(timeout 300 /usr/lib/wine/wine64 "$exe" "$@" 2>/dev/null | tr -d "\r") || true # a hang fails below
    echo "$out"
    ok=$((ok + $(grep -c "^$name: .*: ok" <<<"$out" || true)))
    bad=$((bad + $(grep -c "^$name: .*: FAIL" <<<"$out" || true)))
    grep -q "^$name: [0-9]* failed\$" <<<"$out" || bad=$((bad + 1)) # it did not run to its end
}
run probe "$BUILD/tests/win/iocp_probe.exe" "$N"
run platform "$BUILD/tests/win/platform_test.exe"
run core "$BUILD/tests/win/link_test.exe"
suite() { # exe: a suite with the small runner; its Synthesis line counts (skips apart)
    local out line
    out=$(timeout 300 /usr/lib/wine/wine64 "$1" 2>&1 | tr -d "\r") || true # a hang fails below
    local log="$BUILD/tests/win/$(basename "$1" .exe).log"
    printf '%s\n' "$out" >"$log"
    line=$(grep -a 'Synthesis:' <<<"$out" | tail -1)
    if grep -q -a -E '\[FAIL\]' <<<"$out" || [ -z "$line" ]; then
        # a failure shows what every test of the suite logged, so a rare one can be read from CI's output
        grep -a -E '\[FAIL\]|\[SKIP\]|\[LOG \]|\[----\]' <<<"$out" || true
        echo "(the whole output: $log)"
    else
        grep -a -E '\[SKIP\]' <<<"$out" || true
    fi
    echo "$(basename "$1" .exe): $line"
    local p f c k
    p=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
    f=$(sed -n 's/.*Failing: \([0-9]*\).*/\1/p' <<<"$line")
    c=$(sed -n 's/.*Crashing: \([0-9]*\).*/\1/p' <<<"$line")
    k=$(sed -n 's/.*Skipped: \([0-9]*\).*/\1/p' <<<"$line")
    ok=$((ok + ${p:-0})) bad=$((bad + ${f:-1} + ${c:-0})) skipped=$((skipped + ${k:-0}))
}
suite "$BUILD/tests/win/test_loop.exe"
suite "$BUILD/tests/win/test_tcp.exe"
suite "$BUILD/tests/win/test_errors.exe"
suite "$BUILD/tests/win/test_udp.exe"
suite "$BUILD/tests/win/test_fs.exe"
suite "$BUILD/tests/win/test_scale.exe"
suite "$BUILD/tests/win/test_http.exe"
suite "$BUILD/tests/win/test_supervisor.exe"
suite "$BUILD/tests/win/test_rebuild.exe"
suite "$BUILD/tests/win/test_gate.exe"
# vigil.exe serve under wine, driven by the Linux vigil bench (tests/win/serve.sh)
out=$(bash tests/win/serve.sh "$BUILD" "${VIGIL_BUILD_LINUX:-build}" 2>/dev/null | tr -d "\r") || true
echo "$out"
ok=$((ok + $(grep -c "^serve: .*: ok" <<<"$out" || true)))
bad=$((bad + $(grep -c "^serve: .*: FAIL" <<<"$out" || true)))
grep -q "^serve: [0-9]* failed\$" <<<"$out" || bad=$((bad + 1)) # it did not run to its end
if [ "$skipped" -gt 0 ]; then
    echo "$ok passed, $bad failed, $skipped skipped"
else
    echo "$ok passed, $bad failed"
fi
[ "$bad" -eq 0 ]
