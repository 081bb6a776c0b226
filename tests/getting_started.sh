#!/usr/bin/env bash
# VIGIL_CLI_BUILD=DIR getting_started.sh: docs/getting-started.md as a newcomer
# follows it: its echo.c, taken from the page, built against this build's
# library, then run with the page's own commands (nc), checked step by step:
# an echo, a stall answered at once by the rebuilt loop while the callback
# still spins, the supervisor's lines, and SIGINT ending it with status 0.
# TAP, like cli.sh; each check has 60 s.
set -u
BUILD=${VIGIL_CLI_BUILD:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$HERE")
PAGE=$SRC/docs/getting-started.md
T=$(mktemp -d)
SPID=
trap '[ -n "$SPID" ] && kill -9 $SPID 2>/dev/null; rm -rf "$T"' EXIT
CHECK_SECONDS=60
. "$(dirname "$0")/tap.sh"

builds() {
    awk '/^```c$/{f=1;next} /^```$/{f=0} f' "$PAGE" >"$T/echo.c"
    [ -s "$T/echo.c" ] || { echo "no C block in the page"; return 1; }
    cc -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter -O2 "$T/echo.c" -o "$T/echo" \
        -I"$SRC/include" -L"$BUILD/src" -lvigil -Wl,-rpath,"$BUILD/src"
}
# The page's commands, with its port; a different one if 7000 is taken here.
runs_as_shown() {
    local port=7000
    ss -ltn | grep -q ":$port " && port=$((20000 + RANDOM % 20000))
    "$T/echo" $port >"$T/srv.out" 2>"$T/srv.err" &
    SPID=$!
    for _ in $(seq 50); do grep -q listening "$T/srv.out" && break; sleep 0.1; done
    grep -q "listening on 127.0.0.1:$port" "$T/srv.out" || { echo "not listening"; cat "$T/srv.err"; return 1; }
    [ "$(printf 'hello\n' | timeout 5 nc -N 127.0.0.1 $port)" = hello ] || { echo "no echo"; return 1; }
    printf 'stall\n' | timeout 10 nc -N 127.0.0.1 $port >/dev/null &
    local stalled=$!
    sleep 0.5
    local t0 t1 got
    t0=$(date +%s%N)
    got=$(printf 'still here\n' | timeout 5 nc -N 127.0.0.1 $port)
    t1=$(date +%s%N)
    [ "$got" = "still here" ] || { echo "the second client got '$got'"; cat "$T/srv.err"; return 1; }
    local ms=$(( (t1 - t0) / 1000000 ))
    echo "answered in $ms ms while the other callback spins"
    [ $ms -lt 700 ] || { echo "too slow: the callback spins until 1.5 s"; cat "$T/srv.err"; return 1; }
    wait $stalled
    grep -q 'stall' "$T/srv.err" && grep -q 'rebuilt' "$T/srv.err" || { cat "$T/srv.err"; return 1; }
    sleep 1.2 # the spin ends
    kill -INT $SPID; wait $SPID; local rc=$?; SPID=
    [ $rc -eq 0 ] || { echo "exit status $rc after SIGINT"; cat "$T/srv.err"; return 1; }
}

echo "TAP version 13"
check "docs/getting-started.md: its echo.c builds warning-free" builds
check "docs/getting-started.md: its commands run as the page says" runs_as_shown
tap_end "getting started"
