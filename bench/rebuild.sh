#!/usr/bin/env bash
# Rebuild time and what clients see during rebuilds. For each connection
# count, idle and under load: vigil serve (pinned to CPU 0) supervised with
# --stall-ms 100 and a 400 ms spin injected every 1.5 s, so that each
# injection is fenced and the loop rebuilt with every connection carried
# over. Rebuild time is the server's own figure ("rebuilt on ... in X ms":
# from the fence to every op queued again on the new backend). Idle: N - 8
# connections held open by idle_conns, 8 ping-pong connections to trigger the
# injections. Loaded: N ping-pong connections (loadgen, pinned to CPU 1).
# usage: bench/rebuild.sh [--build DIR] [--backend uring|epoll] [--conns "1000 10000"] [--rebuilds N]
set -euo pipefail
BUILD=build BACKEND=uring CONNS="1000 10000" REBUILDS=5
while [ $# -gt 0 ]; do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --backend) BACKEND=$2; shift 2 ;;
        --conns) CONNS=$2; shift 2 ;;
        --rebuilds) REBUILDS=$2; shift 2 ;;
        *) echo "usage: $0 [--build DIR] [--backend uring|epoll] [--conns LIST] [--rebuilds N]" >&2; exit 2 ;;
    esac
done
ulimit -n "$(ulimit -Hn)"
DURATION=$(awk -v r="$REBUILDS" 'BEGIN { printf "%.1f", r * 1.5 + 0.8 }')
printf '| backend | conns | load | rebuilds | rebuild ms median / max | connections carried | client gap p50 / p90 / max ms | lost | errors |\n'
printf '|---|---:|---|---:|---|---:|---|---:|---:|\n'
for n in $CONNS; do
    for load in idle loaded; do
        out=$(mktemp)
        taskset -c 0 "$BUILD/src/cli/vigil" serve --port 0 --backend "$BACKEND" --stall-ms 100 \
            --inject spin:400:1500 --restart-budget 1000/10 --grace-ms 2000 >"$out" 2>"$out.err" &
        spid=$!
        for _ in $(seq 50); do grep -q port "$out" 2>/dev/null && break; sleep 0.1; done
        port=$(grep -o 'port [0-9]*' "$out" | awk '{print $2}')
        ipid=
        active=$n
        if [ "$load" = idle ]; then
            active=8
            taskset -c 1 "$BUILD/bench/idle_conns" --port "$port" --conns $((n - 8)) --hold 60 >"$out.i" &
            ipid=$!
            for _ in $(seq 300); do grep -q connected "$out.i" 2>/dev/null && break; sleep 0.1; done
        fi
        res=$("$BUILD/bench/loadgen" --port "$port" --conns "$active" --size 64 --duration "$DURATION" \
            --warmup 0 --cpu 1 2>/dev/null || true)
        [ -n "$ipid" ] && kill -INT "$ipid" && wait "$ipid" || true
        kill -INT $spid
        wait $spid || true
        times=$(grep -o 'rebuilt on [a-z_]* in [0-9.]* ms' "$out.err" | awk '{print $5}' | sort -n)
        cnt=$(echo "$times" | awk 'NF' | wc -l)
        stats=$(echo "$times" | awk 'NF { a[++k] = $1 } END { if (!k) print "-"; else printf "%.1f / %.1f", a[int((k + 1) / 2)], a[k] }')
        carried=$(grep -o 'rebuilt on [a-z_]* in [0-9.]* ms: [0-9]* connections' "$out.err" | tail -1 | awk '{print $7}')
        kv() { echo "$res" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
        printf '| %s | %d | %s | %d | %s | %s | %s / %s / %s | %s | %s |\n' "$BACKEND" "$n" "$load" "$cnt" \
            "$stats" "${carried:-?}" "$(kv gap_p50_ms)" "$(kv gap_p90_ms)" "$(kv gap_max_ms)" "$(kv lost)" \
            "$(kv errors)"
        rm -f "$out" "$out.err" "$out.i"
    done
done
