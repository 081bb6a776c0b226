#!/usr/bin/env bash
# bench/echo_ab.sh [--build DIR (build)] [--rounds R (15)] [--conns N (1)] NAME=COMMAND...
# Server CPU per echo request of several servers in one run, for differences
# smaller than this machine's noise between runs: the servers take turns R
# times (each on CPU 0, started as `COMMAND --port PORT`), loadgen (64-byte
# ping-pong, N connections) loads each from CPU 1, and `perf stat` counts the
# server's task-clock and received copies (skb:skb_copy_datagram_iovec, one
# per request) over 2.5 s. Prints each server's median us per request and the
# median of its per-round ratios to the last server named (adjacent turns see
# the same machine, so the ratio is steadier than either figure). Needs perf
# and root (the tracepoint). Example, a build against the one before it and
# the raw liburing server:
#   bench/echo_ab.sh --rounds 25 "new=build/src/cli/vigil serve --backend uring" \
#       "old=/tmp/old/build/src/cli/vigil serve --backend uring" "raw=build/bench/echo_uring"
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build ROUNDS=15 CONNS=1
usage() { sed -n '2,3p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--conns) CONNS=$2; shift 2 ;;
	*=*) break ;;
	*) usage ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $CONNS =~ ^[1-9][0-9]*$ && $# -ge 1 ]] || usage
command -v perf >/dev/null || { echo "echo_ab.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
LOADGEN=$BUILD/bench/loadgen
[ -x "$LOADGEN" ] || { echo "echo_ab.sh: $LOADGEN is not built (ninja -C $BUILD)" >&2; exit 1; }
PORT=${PORT:-7482}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
listening() { ss -ltn "sport = :$PORT" | grep -q LISTEN; }

for ((r = 1; r <= ROUNDS; r++)); do
	for spec in "$@"; do
		name=${spec%%=*} cmd=${spec#*=}
		# an io_uring server's listener can outlive its process for a moment
		for ((i = 0; i < 50; i++)); do listening || break; sleep 0.1; done
		# shellcheck disable=SC2086 # COMMAND is words on purpose
		taskset -c 0 $cmd --port "$PORT" >"$T/server.log" 2>&1 &
		sp=$!
		for ((i = 0; i < 50; i++)); do listening && break; sleep 0.1; done
		taskset -c 1 "$LOADGEN" --port "$PORT" --conns "$CONNS" --duration 4 --warmup 0 >/dev/null 2>&1 &
		lp=$!
		sleep 0.7
		perf stat -x, -e task-clock,skb:skb_copy_datagram_iovec -p "$sp" -o "$T/$name.$r" -- sleep 2.5 \
			2>/dev/null || true
		wait "$lp" || true
		kill -INT "$sp" 2>/dev/null || true
		wait "$sp" 2>/dev/null || true
	done
done

python3 - "$T" "$ROUNDS" "$CONNS" "$@" <<'EOF'
import math, statistics, sys
sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, 'bench')
from perf_stat import counts
d, rounds, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = [a.split('=', 1)[0] for a in sys.argv[4:]]
def per_request(path):  # task-clock us per request, NaN when the turn failed
    c = counts(path)
    req = c.get('skb:skb_copy_datagram_iovec', 0)
    return c['task-clock'] * 1000 / req if req > 0 and 'task-clock' in c else math.nan
us = {n: [per_request(f'{d}/{n}.{r}') for r in range(1, rounds + 1)] for n in names}
base = names[-1]
print(f'{conns} connection(s), {rounds} rounds, task-clock us per request; ratios per round to {base}')
for n in names:
    ok = [x for x in us[n] if not math.isnan(x)]
    pairs = [a / b for a, b in zip(us[n], us[base]) if not (math.isnan(a) or math.isnan(b))]
    if not ok or not pairs:
        print(f'{n:12s} no request counted (did it start? perf stat needs root)')
        continue
    print(f'{n:12s} {statistics.median(ok):8.3f} us   x{base}: median {statistics.median(pairs):.3f}'
          f'  [{" ".join(f"{x:.2f}" for x in pairs)}]')
EOF
