#!/usr/bin/env bash
# tests/win/probe.sh [N]: cross-builds the Windows side with mingw-w64
# (VIGIL_BUILD_WIN, default build-win) and runs it under wine64 with a
# private prefix: the IOCP probe (tests/win/iocp_probe.c; N idle connections
# for its memory check, default 1000), the platform test (src/os/win/platform.c),
# the core link test, the suites built for Windows (small runner, --tap), and
# vigil.exe serve driven by the Linux vigil (tests/win/serve.sh, with
# VIGIL_BUILD_LINUX, default build). meson's suite wine runs it.
# Installs gcc-mingw-w64-x86-64 and wine64 when missing (as root).
#
# Prints TAP: "# group: NAME" before each program's results, then "ok - ..."
# or "not ok - ..." per check or test ("# SKIP" for a test only Linux can
# run: never counted as passed), details as "#" lines, the plan, and
# "# N passed, N failed[, N skipped]". Exit status 0 if nothing failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
echo "TAP version 13"
missing=()
for p in gcc-mingw-w64-x86-64 wine64 meson ninja-build; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "Bail out! missing packages: sudo apt-get install -y ${missing[*]}"
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
BUILD=${VIGIL_BUILD_WIN:-build-win}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { [ -f "$BUILD/build.ninja" ] ||
       meson setup --cross-file cross/x86_64-w64-mingw32.txt "$BUILD"; } >"$log" 2>&1 ||
   ! ninja -C "$BUILD" >"$log" 2>&1; then
    sed 's/^/# /' "$log" | tail -30
    echo "Bail out! the Windows build failed"
    exit 1
fi
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
result() { # a TAP result line: printed and counted
    case $1 in
    "not ok"*) bad=$((bad + 1)) ;;
    *"# SKIP"*) skipped=$((skipped + 1)) ;;
    *) ok=$((ok + 1)) ;;
    esac
    echo "$1"
}
# A program's lines "NAME: CHECK: ok[: detail]" (or "ok (detail)") or
# "NAME: CHECK: FAIL ...", then "NAME: N failed", as TAP ("ok - NAME: CHECK
# (detail)"); anything else as a comment.
checks() { # name, its output
    local name=$1 line
    local ok_detail="^($name: .*): ok(: (.*))?\$" ok_paren="^($name: .*): ok( \(.*\))\$"
    local failed="^($name: .*): FAIL(.*)\$" end="^$name: [0-9]+ failed\$"
    echo "# group: $name"
    while IFS= read -r line; do
        if [[ $line =~ $ok_detail ]]; then
            result "ok - ${BASH_REMATCH[1]}${BASH_REMATCH[3]:+ (${BASH_REMATCH[3]})}"
        elif [[ $line =~ $ok_paren ]]; then
            result "ok - ${BASH_REMATCH[1]}${BASH_REMATCH[2]}"
        elif [[ $line =~ $failed ]]; then
            result "not ok - ${BASH_REMATCH[1]}"
            echo "#     FAIL${BASH_REMATCH[2]}"
        elif ! [[ $line =~ $end ]] && [ -n "$line" ]; then
            echo "#     $line"
        fi
    done <<<"$2"
    grep -q "^$name: [0-9]* failed\$" <<<"$2" || result "not ok - $name: did not run to its end"
}
run() { # name exe args...
    local name=$1 exe=$2 out; shift 2
    out=$(timeout 300 /usr/lib/wine/wine64 "$exe" "$@" 2>/dev/null | tr -d "\r") || true # a hang fails in checks
    checks "$name" "$out"
}
run probe "$BUILD/tests/win/iocp_probe.exe" "$N"
run platform "$BUILD/tests/win/platform_test.exe"
run core "$BUILD/tests/win/link_test.exe"
suite() { # exe: a suite with the small runner, its TAP report passed on
    local name out line plan n=0 before=$bad
    name=$(basename "$1" .exe)
    local err="$BUILD/tests/win/$name.log" # its stderr: [SKIP], [FAIL], [LOG ] lines
    out=$(timeout 300 /usr/lib/wine/wine64 "$1" --tap 2>"$err" | tr -d "\r") || true # a hang fails below
    tr -d "\r" <"$err" >"$err.tmp" && mv "$err.tmp" "$err"
    echo "# group: $name"
    plan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' <<<"$out" | head -1)
    while IFS= read -r line; do
        case $line in
        "ok "* | "not ok"*) result "$line"; n=$((n + 1)) ;;
        esac
    done <<<"$out"
    [ -n "$plan" ] && [ "$n" -eq "$plan" ] ||
        result "not ok - $name: $n results of ${plan:-?} (a crash or a hang of the runner)"
    if [ "$bad" -ne "$before" ]; then
        # a failure shows what every test of the suite logged, so a rare one can be read from CI's output
        grep -a -E '\[FAIL\]|\[SKIP\]|\[LOG \]|\[----\]|Synthesis' "$err" | sed 's/^/#     /' || true
        echo "#     (the whole output: $err)"
    fi
}
suite "$BUILD/tests/win/test_loop.exe"
suite "$BUILD/tests/win/test_tcp.exe"
suite "$BUILD/tests/win/test_errors.exe"
suite "$BUILD/tests/win/test_udp.exe"
suite "$BUILD/tests/win/test_fs.exe"
suite "$BUILD/tests/win/test_scale.exe"
suite "$BUILD/tests/win/test_calls.exe"
suite "$BUILD/tests/win/test_http.exe"
suite "$BUILD/tests/win/test_supervisor.exe"
suite "$BUILD/tests/win/test_rebuild.exe"
suite "$BUILD/tests/win/test_gate.exe"
# vigil.exe serve under wine, driven by the Linux vigil bench (tests/win/serve.sh)
out=$(bash tests/win/serve.sh "$BUILD" "${VIGIL_BUILD_LINUX:-build}" 2>/dev/null | tr -d "\r") || true
checks serve "$out"
echo "1..$((ok + bad + skipped))"
echo "# $ok passed, $bad failed${skipped:+, $skipped skipped}" | sed 's/, 0 skipped$//'
[ "$bad" -eq 0 ]
