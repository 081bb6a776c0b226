#!/usr/bin/env bash
# bench/serve_ab.sh "VIGIL_A VIGIL_B ..." [URL_PATH] -- SERVE_ARGS...
# Server CPU per HTTP request of several builds of `vigil serve`, measured in
# one run: each build serves on CPU 0 while wrk (-t1 -c100, 3 s) loads it from
# CPU 1, the builds taking turns ROUNDS times (default 5, so all see the same
# machine); then each build's median CPU us/request (utime+stime of the
# server process over the wrk run, divided by the requests wrk counted) and
# its ratio to the first build's. Needs wrk. Example, the cost of a change to
# the files path:
#   bench/serve_ab.sh "/tmp/old/build/src/cli/vigil build/src/cli/vigil" small.txt -- \
#       --mode http --root /tmp/www
set -euo pipefail
read -r -a BINS <<<"${1:?usage: bench/serve_ab.sh \"VIGIL_A VIGIL_B ...\" [URL_PATH] -- SERVE_ARGS...}"
shift
URL_PATH=
if [ "${1:-}" != "--" ] && [ $# -gt 0 ]; then URL_PATH=$1; shift; fi
[ "${1:-}" = "--" ] && shift
ROUNDS=${ROUNDS:-5}
PORT=${PORT:-7471}
command -v wrk >/dev/null || { echo "serve_ab.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for r in $(seq "$ROUNDS"); do
    for i in "${!BINS[@]}"; do
        taskset -c 0 "${BINS[$i]}" serve --port "$PORT" "$@" >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 50); do # until it listens
            (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
            sleep 0.1
        done
        t0=$(ticks $pid)
        reqs=$(taskset -c 1 wrk -t1 -c100 -d3s "http://127.0.0.1:$PORT/$URL_PATH" | awk '/requests in/ { print $1 }')
        t1=$(ticks $pid)
        kill $pid
        wait $pid 2>/dev/null || true
        awk -v i="$i" -v a="$t0" -v b="$t1" -v n="$reqs" -v hz="$hz" \
            'BEGIN { printf "%d %.2f %d\n", i, (b - a) * 1e6 / hz / n, n / 3 }' >>"$T/rows"
    done
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
base=$(awk '$1 == 0 { print $2 }' "$T/rows" | median)
printf '| build | CPU us/request (median of %d) | req/s (median) | CPU vs the first |\n|---|---:|---:|---:|\n' "$ROUNDS"
for i in "${!BINS[@]}"; do
    us=$(awk -v i="$i" '$1 == i { print $2 }' "$T/rows" | median)
    rps=$(awk -v i="$i" '$1 == i { print $3 }' "$T/rows" | median)
    printf '| %s | %s | %s | %s |\n' "${BINS[$i]}" "$us" "$rps" "$(awk -v a="$us" -v b="$base" 'BEGIN { printf "%.2fx", a / b }')"
done
