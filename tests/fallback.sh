#!/usr/bin/env bash
# tests/fallback.sh BUILD_DIR [CRITERION_ARGS...]
#
# The epoll fallback, with io_uring denied by seccomp (BUILD_DIR/tests/deny_uring):
#  (a) test_fallback plainly, then under `deny_uring eperm` and `deny_uring
#      enosys` (VIGIL_EXPECT_DENIED=EPERM / ENOSYS);
#  (b) every other BUILD_DIR/tests/test_* under each denial with
#      VIGIL_TEST_BACKEND=auto (so the loops fall back to epoll);
#  (c) `vigil serve --port 0` under each denial: its first line must name epoll
#      and the errno, loadgen (100 connections, 1 s) must pass, and SIGINT must
#      stop it with exit status 0.
# CRITERION_ARGS go to every Criterion binary (default: --jobs 2).
#
# Output: one line per binary or check, "LABEL [====] Synthesis: Tested: N |
# Passing: N | Failing: N | Crashing: N" (Criterion's own line for binaries,
# one of the same form for each check in (c)), failure details indented
# below it, and a total. A binary that dies before its summary, or exits
# non-zero without a failed test, gets a failing line of its own. Exit status
# 0 when everything passed.
set -uo pipefail

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: tests/fallback.sh BUILD_DIR [CRITERION_ARGS...]" >&2
    exit 2
fi
BUILD=$1
shift
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(--jobs 2)

DENY=$BUILD/tests/deny_uring
VIGIL=$BUILD/src/cli/vigil
LOADGEN=$BUILD/bench/loadgen
BIN_TIMEOUT=${FALLBACK_BIN_TIMEOUT:-900} # seconds for one whole Criterion binary

TESTED=0 PASSING=0 BAD=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Prints a Synthesis line of our own and counts it.
synth() { # label, passed (1/0), [tested]
    local label=$1 ok=$2 n=${3:-1}
    local pass=$((ok ? n : 0)) fail=$((ok ? 0 : n))
    printf '%-30s [====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d\n' \
        "$label" "$n" "$pass" "$fail" 0
    TESTED=$((TESTED + n)) PASSING=$((PASSING + pass)) BAD=$((BAD + fail))
}

status_text() { # exit status as reported by bash
    if [ "$1" -eq 124 ]; then echo "timed out after ${BIN_TIMEOUT} s"
    elif [ "$1" -gt 128 ]; then echo "killed by signal $(($1 - 128))"
    else echo "exit status $1"; fi
}

# Indents details; drops Synthesis lines so that only ours are counted.
detail() { grep -av 'Synthesis:' | sed "s/^/    /" | head -"${1:-30}"; }

# The failed tests (up to 8) and the most frequent assertion messages.
fail_details() { # log
    local clean=$TMP/clean n
    sed 's/\x1b\[[0-9;]*m//g' "$1" >"$clean"
    n=$(grep -a -c '^\[FAIL\]' "$clean")
    grep -a '^\[FAIL\]' "$clean" | detail 8
    [ "$n" -gt 8 ] && echo "    ... $((n - 8)) more [FAIL]"
    grep -a -E '^\[----\]   +[^ ]' "$clean" | sed 's/^\[----\] *//' | sort | uniq -c | sort -rn |
        head -5 | sed 's/^ *\([0-9]*\) /    message x\1: /'
}

# Runs one Criterion binary, plainly or under a denial; prints its Synthesis line.
run_bin() { # label, plain|eperm|enosys, binary, VAR=value...
    local label=$1 mode=$2 bin=$3
    shift 3
    local pre=()
    [ "$mode" = plain ] || pre=("$DENY" "$mode")
    local log=$TMP/log rc=0
    # (in a subshell whose stderr is dropped: bash's own "Segmentation fault"
    # notices would otherwise land on our stderr; the status is reported below)
    (timeout -k 10 "$BIN_TIMEOUT" env -u VIGIL_BACKEND -u VIGIL_TEST_BACKEND -u VIGIL_EXPECT_DENIED \
        "$@" "${pre[@]}" "$bin" "${ARGS[@]}" >"$log" 2>&1 </dev/null; exit $?) 2>/dev/null || rc=$?
    local line
    line=$(grep -a 'Synthesis:' "$log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g; s/^[[:space:]]*//; s/[[:space:]]*$//')
    if [ -z "$line" ]; then
        synth "$label" 0
        echo "    no Criterion summary ($(status_text $rc)); last output:"
        tail -15 "$log" | detail
        return
    fi
    local t p f c
    t=$(sed -n 's/.*Tested: \([0-9]*\).*/\1/p' <<<"$line")
    p=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
    f=$(sed -n 's/.*Failing: \([0-9]*\).*/\1/p' <<<"$line")
    c=$(sed -n 's/.*Crashing: \([0-9]*\).*/\1/p' <<<"$line")
    printf '%-30s %s\n' "$label" "$line"
    TESTED=$((TESTED + ${t:-0})) PASSING=$((PASSING + ${p:-0})) BAD=$((BAD + ${f:-0} + ${c:-0}))
    if [ $((${f:-0} + ${c:-0})) -ne 0 ]; then
        fail_details "$log"
    elif [ "$rc" -ne 0 ]; then
        synth "$label ($(status_text $rc))" 0
        tail -10 "$log" | detail
    fi
}

# (c) vigil serve under a denial, with load, then SIGINT.
serve_check() { # mode, ERRNO
    local mode=$1 errname=$2 label="$1 vigil serve"
    local out=$TMP/serve.out err=$TMP/serve.err why=""
    : >"$out"
    : >"$err"
    # A background job of a script starts with SIGINT ignored; trap - restores
    # the default, so the SIGINT below means what it would from a terminal.
    (trap - INT; exec env -u VIGIL_BACKEND "$DENY" "$mode" "$VIGIL" serve --port 0 \
        >"$out" 2>"$err" </dev/null) &
    local pid=$! # the subshell execs env, env execs deny_uring, which execs vigil
    for _ in $(seq 100); do
        grep -q . "$out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    local first port=""
    first=$(head -1 "$out")
    if [ -z "$first" ]; then
        why="no first line from vigil serve"
    elif ! grep -q 'backend epoll' <<<"$first"; then
        why="first line does not name epoll"
    elif ! grep -q "$errname" <<<"$first"; then
        why="first line does not name $errname"
    else
        port=$(grep -o 'port [0-9]*' <<<"$first" | tail -1 | awk '{print $2}')
        [ -n "$port" ] || why="no port in the first line"
    fi
    local lrc=0
    if [ -z "$why" ]; then
        "$LOADGEN" --port "$port" --conns 100 --duration 1 --warmup 0.2 >"$TMP/lg.out" 2>&1 || lrc=$?
        [ $lrc -eq 0 ] || why="loadgen exited $lrc"
    fi
    local src=0
    if kill -0 "$pid" 2>/dev/null; then
        kill -INT "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid"
            [ -n "$why" ] || why="still running 10 s after SIGINT"
        fi
    fi
    wait "$pid" 2>/dev/null || src=$?
    [ -n "$why" ] || [ $src -eq 0 ] || why="vigil serve exited $src after SIGINT"
    synth "$label" "$([ -z "$why" ] && echo 1 || echo 0)"
    [ -n "$first" ] && echo "    $first"
    if [ -n "$why" ]; then
        echo "    $why (vigil serve: $(status_text $src))"
        [ -s "$TMP/lg.out" ] && [ $lrc -ne 0 ] && detail 10 <"$TMP/lg.out"
        detail 10 <"$err"
    fi
    rm -f "$TMP/lg.out"
}

denials=("eperm EPERM" "enosys ENOSYS")

if [ ! -x "$DENY" ] || [ ! -x "$BUILD/tests/test_fallback" ]; then
    synth "fallback setup" 0
    echo "    $DENY or $BUILD/tests/test_fallback missing (configure with -Dtests=enabled)"
    exit 1
fi
if ! "$DENY" eperm true; then # seccomp unavailable here: the denial runs would mean nothing
    synth "fallback setup" 0
    echo "    deny_uring cannot install its filter on this host"
    exit 1
fi

# (a)
run_bin "plain test_fallback" plain "$BUILD/tests/test_fallback"
for d in "${denials[@]}"; do
    set -- $d
    run_bin "$1 test_fallback" "$1" "$BUILD/tests/test_fallback" VIGIL_EXPECT_DENIED="$2"
done
# (b)
for d in "${denials[@]}"; do
    set -- $d
    for bin in "$BUILD"/tests/test_*; do
        [ -f "$bin" ] && [ -x "$bin" ] || continue
        [ "$(basename "$bin")" = test_fallback ] && continue
        run_bin "$1 auto $(basename "$bin")" "$1" "$bin" VIGIL_TEST_BACKEND=auto
    done
done
# (c)
for d in "${denials[@]}"; do
    set -- $d
    serve_check "$1" "$2"
done

echo "fallback: $TESTED tested, $PASSING passing, $BAD failing or crashing"
[ $BAD -eq 0 ] && [ $PASSING -eq $TESTED ]
