#!/usr/bin/env bash
# tests/fallback.sh BUILD_DIR [eperm|enosys]...
#
# vigil serve with io_uring denied by seccomp (BUILD_DIR/tests/deny_uring),
# under each denial named (default: both): `vigil serve --port 0` must name
# epoll and the errno in its first line, loadgen (100 connections, 1 s) must
# pass, and SIGINT must stop it with exit status 0.
#
# The suites under the same denials are meson tests (tests/meson.build, suite
# fallback, which runs this script too): meson test -C BUILD_DIR --suite fallback
#
# Output: TAP (meson's protocol 'tap'): "ok - DENIAL vigil serve" or
# "not ok - ...", serve's first line and any failure's details as "#" lines
# below it, and the plan. Exit status 0 when everything passed.
set -uo pipefail

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: tests/fallback.sh BUILD_DIR [eperm|enosys]..." >&2
    exit 2
fi
BUILD=$1
shift
MODES=("$@")
[ ${#MODES[@]} -eq 0 ] && MODES=(eperm enosys)

DENY=$BUILD/tests/deny_uring
VIGIL=$BUILD/src/cli/vigil
LOADGEN=$BUILD/bench/loadgen

N=0 BAD=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# A TAP result line, counted.
result() { # label, passed (1/0)
    N=$((N + 1))
    if [ "$2" -eq 1 ]; then
        echo "ok - $1"
    else
        echo "not ok - $1"
        BAD=$((BAD + 1))
    fi
}

status_text() { # exit status as reported by bash
    if [ "$1" -gt 128 ]; then echo "killed by signal $(($1 - 128))"
    else echo "exit status $1"; fi
}

# Details, as TAP comment lines.
detail() { sed "s/^/#     /" | head -"${1:-30}"; }

# vigil serve under a denial, with load, then SIGINT.
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
    result "$label" "$([ -z "$why" ] && echo 1 || echo 0)"
    [ -n "$first" ] && echo "#     $first"
    if [ -n "$why" ]; then
        echo "#     $why (vigil serve: $(status_text $src))"
        [ -s "$TMP/lg.out" ] && [ $lrc -ne 0 ] && detail 10 <"$TMP/lg.out"
        detail 10 <"$err"
    fi
    rm -f "$TMP/lg.out"
}

echo "TAP version 13"
if [ ! -x "$DENY" ] || [ ! -x "$VIGIL" ] || [ ! -x "$LOADGEN" ]; then
    echo "Bail out! $DENY, $VIGIL or $LOADGEN missing (build $BUILD first)"
    exit 1
fi
if ! "$DENY" eperm true; then # seccomp unavailable here: the denial runs would mean nothing
    echo "Bail out! deny_uring cannot install its filter on this host"
    exit 1
fi
for mode in "${MODES[@]}"; do
    case $mode in
    eperm) serve_check eperm EPERM ;;
    enosys) serve_check enosys ENOSYS ;;
    *) echo "Bail out! unknown denial $mode (eperm or enosys)"; exit 2 ;;
    esac
done
echo "1..$N"
[ $BAD -eq 0 ]
