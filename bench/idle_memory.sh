#!/usr/bin/env bash
# Memory per idle connection: the server's RSS (and its anonymous, private
# part) with no connection, then with N idle connections held open by
# idle_conns; the difference divided by N. vigil-wine is vigil.exe serve
# (cross-built in --build-win) under wine64: the wine process, and on a row of
# its own the wineserver, which holds every socket of a Windows process.
# usage: bench/idle_memory.sh [--build DIR] [--build-win DIR] [--conns N]
#                             [--servers "vigil uring epoll vigil-wine"]
set -euo pipefail
BUILD=build BUILD_WIN=build-win CONNS=10000 SERVERS="vigil uring epoll"
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --build-win) BUILD_WIN=$2; shift 2 ;;
        --conns) CONNS=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        *) echo "usage: $0 [--build DIR] [--build-win DIR] [--conns N] [--servers LIST]" >&2; exit 2 ;;
    esac
done
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
anon_kib() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }
printf '| server | RSS idle (KiB) | RSS with %d conns (KiB) | bytes per conn (RSS) | bytes per conn (anon) |\n' "$CONNS"
printf '|---|---|---|---|---|\n'
for s in $SERVERS; do
    case $s in
        vigil) cmd=("$BUILD/src/cli/vigil" serve --port 0) ;;
        uring) cmd=("$BUILD/bench/echo_uring" --port 0) ;;
        epoll) cmd=("$BUILD/bench/echo_epoll" --port 0) ;;
        vigil-wine) cmd=(/usr/lib/wine/wine64 "$BUILD_WIN/src/cli/vigil.exe" serve --port 0)
            export WINEDEBUG=-all WINEPREFIX=${WINEPREFIX:-$PWD/$BUILD_WIN/wineprefix}
            [ -f "$BUILD_WIN/src/cli/vigil.exe" ] || { echo "skip $s: $BUILD_WIN/src/cli/vigil.exe not built" >&2; continue; } ;;
        *) echo "unknown server $s" >&2; exit 2 ;;
    esac
    [ -x "${cmd[0]}" ] || { echo "skip $s: ${cmd[0]} not built" >&2; continue; }
    out=$(mktemp)
    "${cmd[@]}" >"$out" 2>/dev/null &
    spid=$!
    for _ in $(seq 600); do [ -s "$out" ] && break; sleep 0.1; done # wine: up to 60 s
    port=$(head -1 "$out" | tr -d '\r' | grep -oE '[0-9]+' | tail -1)
    sleep 0.3
    r0=$(rss_kib $spid) a0=$(anon_kib $spid)
    wpid=
    if [ "$s" = vigil-wine ]; then wpid=$(pgrep -x 'wineserver(64)?' | head -1); fi # Debian's is wineserver64
    if [ -n "$wpid" ]; then w0=$(rss_kib $wpid) wa0=$(anon_kib $wpid); fi
    "$BUILD/bench/idle_conns" --port "$port" --conns "$CONNS" --hold 4 >"$out.c" &
    cpid=$!
    for _ in $(seq 200); do grep -q connected "$out.c" 2>/dev/null && break; sleep 0.1; done
    sleep 1.5
    r1=$(rss_kib $spid) a1=$(anon_kib $spid)
    if [ -n "$wpid" ]; then w1=$(rss_kib $wpid) wa1=$(anon_kib $wpid); fi
    wait $cpid || true
    kill -INT $spid; wait $spid || true
    printf '| %s | %d | %d | %d | %d |\n' "$s" "$r0" "$r1" $(((r1 - r0) * 1024 / CONNS)) $(((a1 - a0) * 1024 / CONNS))
    if [ -n "$wpid" ]; then
        printf '| %s (wineserver) | %d | %d | %d | %d |\n' "$s" "$w0" "$w1" \
            $(((w1 - w0) * 1024 / CONNS)) $(((wa1 - wa0) * 1024 / CONNS))
    fi
    rm -f "$out" "$out.c"
done
