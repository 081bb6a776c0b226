# tap.sh: sourced by the shell suites (cli.sh, install.sh, getting_started.sh,
# examples.sh) for their TAP: `check NAME FUNCTION...` runs the function in a
# subshell with a time limit (CHECK_SECONDS, default 120) and prints "ok - NAME",
# "ok - NAME # SKIP why" when it exits 77 (its last line says why), or
# "not ok - NAME" with the end of what it said as "#" lines; `tap_end SUITE`
# prints the plan and a summary and returns 0 unless a check failed. The
# caller sets T, a scratch directory.
PASS=0 FAIL=0 SKIP=0
check() {
    local name=$1; shift
    ( "$@" ) >"$T/out" 2>&1 &
    local pid=$! rc
    ( sleep "${CHECK_SECONDS:-120}"; kill -9 $pid ) >/dev/null 2>&1 & local watchdog=$!
    wait $pid; rc=$?
    pkill -P $watchdog sleep 2>/dev/null; kill $watchdog 2>/dev/null; wait $watchdog 2>/dev/null
    if [ $rc -eq 0 ]; then
        PASS=$((PASS + 1)); echo "ok - $name"
    elif [ $rc -eq 77 ]; then
        SKIP=$((SKIP + 1)); echo "ok - $name # SKIP $(tail -1 "$T/out")"
    else
        FAIL=$((FAIL + 1)); echo "not ok - $name"; sed 's/^/#     /' "$T/out" | tail -20
    fi
}
tap_end() { # suite name
    echo "1..$((PASS + FAIL + SKIP))"
    echo "# $1: $PASS passed, $FAIL failed, $SKIP skipped"
    [ $FAIL -eq 0 ]
}
