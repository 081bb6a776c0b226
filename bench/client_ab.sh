#!/usr/bin/env bash
# bench/client_ab.sh VIGIL_A VIGIL_B URL [ROUNDS] [-- BENCH_ARGS...]
# Client CPU per request of two builds of `vigil bench --http`, run at the
# same time: both on the same CPU (--client-cpu 1 unless BENCH_ARGS say
# otherwise) against the same server, ROUNDS times (default 6), 3 s each.
# Taking turns, rounds on this machine differ by 10-25 % and a 1 % change
# is lost; side by side, both see the same machine, and the ratio of the
# two is steady to about half a percent (the same build twice: 0.99-1.01).
# Each gets half the CPU, so it measures the work a request costs, not the
# sleeping and waking of a client with a core to itself (take turns for
# that: --compare-clients, or bench/README.md's pairs).
# Prints each round's ratio B/A and their median. Example:
#   bench/client_ab.sh /tmp/old/vigil build/src/cli/vigil http://127.0.0.1:7490/f13.bin 6 \
#       -- --expect-body /tmp/www/f13.bin
set -euo pipefail
usage() {
    echo "usage: bench/client_ab.sh VIGIL_A VIGIL_B URL [ROUNDS] [-- BENCH_ARGS...]" >&2
    exit 2
}
[ $# -ge 3 ] || usage
A=$1 B=$2 URL=$3
shift 3
ROUNDS=6
if [ $# -gt 0 ] && [ "$1" != "--" ]; then ROUNDS=$1; shift; fi
case $ROUNDS in '' | *[!0-9]* | 0) usage ;; esac
for bin in "$A" "$B"; do [ -x "$bin" ] || { echo "client_ab.sh: $bin: not an executable" >&2; exit 2; }; done
[ "${1:-}" = "--" ] && shift
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for r in $(seq "$ROUNDS"); do
    for w in a b; do
        bin=$A
        [ $w = b ] && bin=$B
        "$bin" bench --http "$URL" --rounds 1 --warmup 0.5 --duration 3 --client-cpu 1 "$@" \
            --out "$T/$w.$r" >"$T/$w.$r.log" 2>&1 &
    done
    wait
done
python3 - "$T" "$ROUNDS" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
ratios = []
for r in range(1, rounds + 1):
    try:
        a, b = (json.load(open(f"{d}/{w}.{r}/bench.json"))["servers"][0]["median"] for w in "ab")
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"client_ab.sh: round {r} has no result ({e}); see a run's log")
    ratios.append(b["client_cpu_us_per_req"] / a["client_cpu_us_per_req"])
    print(f"round {r}: A {a['client_cpu_us_per_req']:.3f} us, B {b['client_cpu_us_per_req']:.3f} us a request, B/A {ratios[-1]:.3f}")
print(f"client CPU per request, B/A: median {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}), {rounds} rounds")
PY
