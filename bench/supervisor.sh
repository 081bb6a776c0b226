#!/usr/bin/env bash
# Supervisor figures: detection latency against stall_ms, and the supervisor
# thread's own CPU. For each stall_ms, vigil serve runs supervised with a
# spin of 3 x stall_ms injected every 500 ms under a light ping-pong load
# (10 connections) for DURATION seconds; the "stalled N ms" of each report
# line is the detection latency. Each spin is also fenced and the loop
# rebuilt (at 2 x stall_ms), so the budget is lifted, and the supervisor's
# CPU includes what rebuilds cost it.
# usage: bench/supervisor.sh [--build DIR] [--duration S] [--stall "20 50 100 200"] [--backend uring|epoll]
set -euo pipefail
BUILD=build DURATION=6 STALLS="20 50 100 200" BACKEND=uring
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --stall) STALLS=$2; shift 2 ;;
        --backend) BACKEND=$2; shift 2 ;;
        *) echo "usage: $0 [--build DIR] [--duration S] [--stall LIST] [--backend uring|epoll]" >&2; exit 2 ;;
    esac
done
printf '| backend | stall_ms | stalls | detection min/median/max ms | supervisor CPU ms | run s | supervisor CPU %% of a core |\n'
printf '|---|---:|---:|---|---:|---:|---:|\n'
for st in $STALLS; do
    out=$(mktemp)
    taskset -c 0 "$BUILD/src/cli/vigil" serve --port 0 --backend "$BACKEND" --stall-ms "$st" \
        --inject "spin:$((st * 3)):500" --restart-budget 1000000/1 >"$out" 2>"$out.err" &
    pid=$!
    for _ in $(seq 50); do grep -q port "$out" 2>/dev/null && break; sleep 0.1; done
    port=$(grep -o 'port [0-9]*' "$out" | awk '{print $2}')
    "$BUILD/bench/loadgen" --port "$port" --conns 10 --duration "$DURATION" --warmup 0 --cpu 1 >/dev/null 2>&1 || true
    kill -INT $pid
    wait $pid || true
    lat=$(grep -o 'stalled [0-9]* ms' "$out.err" | awk '{print $2}' | sort -n)
    n=$(echo "$lat" | awk 'NF' | wc -l)
    stats=$(echo "$lat" | awk 'NF { a[++n] = $1 } END { if (!n) print "-"; else printf "%d / %d / %d", a[1], a[int((n + 1) / 2)], a[n] }')
    cpu=$(grep -o 'supervisor CPU [0-9.]* ms' "$out.err" | awk '{print $3}')
    printf '| %s | %d | %d | %s | %s | %s | %s |\n' "$BACKEND" "$st" "$n" "$stats" "${cpu:-?}" "$DURATION" \
        "$(awk -v c="${cpu:-0}" -v d="$DURATION" 'BEGIN { printf "%.2f", c / (d * 10) }')"
    rm -f "$out" "$out.err"
done
