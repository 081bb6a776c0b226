#!/usr/bin/env bash
# bench/kernel_events.sh [--build DIR (build)] [--rounds R (5)] [--conns N (1)]
#                        [--backend uring|epoll (uring)]
# What each server makes the kernel do per request: `vigil serve` and the raw
# server of the same backend (bench/echo_uring or echo_epoll) take turns R
# times on CPU 0 while loadgen (64-byte ping-pong, N connections) loads them
# from CPU 1; each turn `perf stat` counts kernel tracepoints in the server
# process over 2.5 s (tracepoints need no hardware counters, which VMs often
# lack) and its task-clock, divided by the requests (one received copy,
# skb:skb_copy_datagram_iovec, per request). Prints the median per request of
# each count for each server. Found vigil's one kernel timer per wait (issue
# 19; bench/README.md). Needs perf and root (tracepoints).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build ROUNDS=5 CONNS=1 BACKEND=uring
while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2 ;;
	--rounds) ROUNDS=$2 ;;
	--conns) CONNS=$2 ;;
	--backend) BACKEND=$2 ;;
	*) sed -n '2,3p' "$0" >&2; exit 2 ;;
	esac
	shift 2
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $CONNS =~ ^[1-9][0-9]*$ && $BACKEND =~ ^(uring|epoll)$ ]] ||
	{ sed -n '2,3p' "$0" >&2; exit 2; }
command -v perf >/dev/null || { echo "kernel_events.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
VIGIL=$BUILD/src/cli/vigil RAW=$BUILD/bench/echo_$BACKEND LOADGEN=$BUILD/bench/loadgen
for p in "$VIGIL" "$RAW" "$LOADGEN"; do
	[ -x "$p" ] || { echo "kernel_events.sh: $p is not built (ninja -C $BUILD)" >&2; exit 1; }
done
PORT=${PORT:-7481}
EVENTS=sched:sched_switch,sched:sched_wakeup,ipi:ipi_send_cpu,timer:hrtimer_start
EVENTS+=,skb:skb_copy_datagram_iovec,net:net_dev_xmit,raw_syscalls:sys_enter,task-clock
[ "$BACKEND" = uring ] && EVENTS+=,io_uring:io_uring_submit_req,io_uring:io_uring_complete
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
listening() { ss -ltn "sport = :$PORT" | grep -q LISTEN; }

run() { # name round command...
	local name=$1 r=$2 i
	shift 2
	# an io_uring server's listener can outlive its process for a moment
	for ((i = 0; i < 50; i++)); do listening || break; sleep 0.1; done
	taskset -c 0 "$@" >"$T/server.log" 2>&1 &
	local sp=$!
	for ((i = 0; i < 50; i++)); do listening && break; sleep 0.1; done
	taskset -c 1 "$LOADGEN" --port "$PORT" --conns "$CONNS" --duration 4 --warmup 0 >/dev/null 2>&1 &
	local lp=$!
	sleep 0.7
	perf stat -x, -e "$EVENTS" -p "$sp" -o "$T/$name.$r" -- sleep 2.5 2>/dev/null || true
	wait "$lp" || true
	kill -INT "$sp" 2>/dev/null || true
	wait "$sp" 2>/dev/null || true
}

for ((r = 1; r <= ROUNDS; r++)); do
	run vigil "$r" "$VIGIL" serve --port "$PORT" --backend "$BACKEND"
	run raw "$r" "$RAW" --port "$PORT"
done

python3 - "$T" "$ROUNDS" "$BACKEND" "$CONNS" <<'EOF'
import statistics, sys
sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, 'bench')
from perf_stat import counts
d, rounds, backend, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
per = {}
for name in ('vigil', 'raw'):
    rows = []
    for r in range(1, rounds + 1):
        c = counts(f'{d}/{name}.{r}')
        req = c.get('skb:skb_copy_datagram_iovec', 0)
        if req > 0:
            rows.append({k: v / req for k, v in c.items()})
    per[name] = rows
if not per['vigil'] or not per['raw']:
    sys.exit('kernel_events.sh: no requests counted (perf stat failed? needs root)')
print(f'{backend}, {conns} connection(s), per request, medians of '
      f'{len(per["vigil"])} and {len(per["raw"])} rounds')
print(f'{"event":36s} {"vigil":>10s} {"raw":>10s} {"vigil/raw":>10s}')
for k in per['vigil'][0]:
    v = statistics.median(x.get(k, 0) for x in per['vigil'])
    w = statistics.median(x.get(k, 0) for x in per['raw'])
    if k == 'task-clock':
        k, v, w = 'task-clock (us)', v * 1000, w * 1000
    ratio = f'{v / w:.2f}x' if w else '-'
    print(f'{k:36s} {v:10.3f} {w:10.3f} {ratio:>10s}')
EOF
