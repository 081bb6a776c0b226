#!/usr/bin/env bash
# What clients see when a loop stalls, supervised and not, in one run: for
# each stall kind and backend, vigil serve (pinned to CPU 0) with
# --inject KIND:3000:2000, once with --stall-ms 100 and once without, under
# 64 clients streaming 16 KiB chunks with 256 KiB in flight (loadgen on CPU 1,
# checking every byte) for DURATION seconds.
# usage: bench/stalls.sh [--build DIR] [--duration S (9)] [--kinds "spin block hang"] [--backends "uring epoll"]
set -euo pipefail
BUILD=build DURATION=9 KINDS="spin block hang" BACKENDS="uring epoll"
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --kinds) KINDS=$2; shift 2 ;;
        --backends) BACKENDS=$2; shift 2 ;;
        *) echo "usage: $0 [--build DIR] [--duration S] [--kinds LIST] [--backends LIST]" >&2; exit 2 ;;
    esac
done
kv() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
run_one() { # backend, extra serve flags... ; prints the loadgen line
    local be=$1 out pid port res
    shift
    out=$(mktemp)
    taskset -c 0 "$BUILD/src/cli/vigil" serve --port 0 --backend "$be" "$@" >"$out" 2>"$out.err" &
    pid=$!
    for _ in $(seq 50); do grep -q port "$out" 2>/dev/null && break; sleep 0.1; done
    port=$(grep -o 'port [0-9]*' "$out" | awk '{print $2}')
    res=$("$BUILD/bench/loadgen" --port "$port" --conns 64 --mode stream --size 16384 --window 262144 \
        --duration "$DURATION" --warmup 0 --cpu 1 2>/dev/null || true)
    kill -KILL $pid 2>/dev/null || true # a hang keeps an unsupervised server stuck
    wait $pid 2>/dev/null || true
    local n
    n=$(grep -c 'rebuilt on' "$out.err" || true)
    rm -f "$out" "$out.err"
    echo "$res rebuilds=$n"
}
printf '| kind | backend | bytes checked | mismatches | lost | conns reset | rebuilds | gap p90 ms | gap p90 unsupervised | ratio | gap max ms |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for kind in $KINDS; do
    for be in $BACKENDS; do
        sup=$(run_one "$be" --stall-ms 100 --inject "$kind:3000:2000")
        rb=$(kv "$sup" rebuilds)
        uns=$(run_one "$be" --inject "$kind:3000:2000")
        g=$(kv "$sup" gap_p90_ms) u=$(kv "$uns" gap_p90_ms)
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$kind" "$be" \
            "$(kv "$sup" bytes_verified)" "$(kv "$sup" mismatches)" "$(kv "$sup" lost)" \
            "$(kv "$sup" errors)" "$rb" "$g" "$u" \
            "$(awk -v a="$g" -v b="$u" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }')" \
            "$(kv "$sup" gap_max_ms)"
    done
done
