#!/usr/bin/env bash
# Comparison driver: runs loadgen against vigil and the two raw baselines.
#
# usage: bench/run.sh [--build DIR] [--rounds R] [--conns N] [--size B]
#                     [--mode pingpong|stream] [--duration S]
#                     [--servers "vigil vigil-epoll uring epoll"]
#
# Each server is pinned to CPU 0 (taskset -c 0), loadgen to CPU 1 (--cpu 1).
# Rounds are interleaved (round 1 runs every server once, then round 2, ...).
# Raw per-run lines go to DIR/bench-results.txt; a Markdown table with the
# median over rounds is printed at the end.  Exit status is non-zero if any
# run failed, had mismatches or lost bytes.
set -u

BUILD=build
ROUNDS=5
CONNS=1000
SIZE=64
MODE=pingpong
DURATION=5
SERVERS="vigil vigil-epoll uring epoll"
WARMUP=1
SERVER_CPU=0
CLIENT_CPU=1

usage() {
	cat >&2 <<'EOF'
usage: bench/run.sh [--build DIR (default build)] [--rounds R (default 5)]
                    [--conns N (default 1000)] [--size B (default 64)]
                    [--mode pingpong|stream (default pingpong)]
                    [--duration S (default 5)] [--servers "vigil vigil-epoll uring epoll"]
EOF
	exit 2
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_num() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }

while [ $# -gt 0 ]; do
	[ $# -ge 2 ] || usage
	case "$1" in
	--build) BUILD=$2 ;;
	--rounds) is_uint "$2" && [ "$2" -ge 1 ] || usage; ROUNDS=$2 ;;
	--conns) is_uint "$2" && [ "$2" -ge 1 ] || usage; CONNS=$2 ;;
	--size) is_uint "$2" && [ "$2" -ge 1 ] || usage; SIZE=$2 ;;
	--mode) [ "$2" = pingpong ] || [ "$2" = stream ] || usage; MODE=$2 ;;
	--duration) is_num "$2" || usage; DURATION=$2 ;;
	--servers) SERVERS=$2 ;;
	*) usage ;;
	esac
	shift 2
done

LOADGEN=$BUILD/bench/loadgen
if [ ! -x "$LOADGEN" ]; then
	echo "run.sh: $LOADGEN not found; build first (meson setup $BUILD && ninja -C $BUILD)" >&2
	exit 1
fi
if [ "$(nproc --all 2>/dev/null || echo 1)" -lt 2 ]; then
	echo "run.sh: fewer than 2 CPUs; server and loadgen will share CPU 0" >&2
	CLIENT_CPU=0
fi

# server name -> command line (port 0 = ephemeral)
server_cmd() {
	case "$1" in
	vigil) echo "$BUILD/src/cli/vigil serve --port 0 --backend uring" ;;
	vigil-epoll) echo "$BUILD/src/cli/vigil serve --port 0 --backend epoll" ;;
	vigil-sv) echo "$BUILD/src/cli/vigil serve --port 0 --backend uring --stall-ms 100" ;;
	uring) echo "$BUILD/bench/echo_uring --port 0" ;;
	epoll) echo "$BUILD/bench/echo_epoll --port 0" ;;
	*) return 1 ;;
	esac
}

# Be liberal: the number after the last ':' ("... 127.0.0.1:4242"), else the
# number after the word "port" ("listening on port 4242", "port=4242").
parse_port() {
	local line=$1 p=""
	if [[ $line =~ ^.*:([0-9]+) ]]; then
		p=${BASH_REMATCH[1]}
	elif [[ $line =~ [Pp][Oo][Rr][Tt][^0-9]{0,3}([0-9]+) ]]; then
		p=${BASH_REMATCH[1]}
	fi
	if [ -n "$p" ] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ]; then
		echo "$p"
		return 0
	fi
	return 1
}

# value of key=... in a loadgen line
kv() { awk -v k="$2" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (substr($i, 1, n - 1) == k) { print substr($i, n + 1); exit } } }' <<<"$1"; }

median() {
	# reads numbers on stdin
	sort -g | awk '{ a[NR] = $1 } END {
		if (NR == 0) { print "n/a"; exit }
		if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

TMP=$(mktemp -d /tmp/vigil-bench.XXXXXX)
SERVER_PID=""
cleanup() {
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -INT "$SERVER_PID" 2>/dev/null
		sleep 0.5
		kill -KILL "$SERVER_PID" 2>/dev/null
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_server() {
	local pid=$1 i
	kill -INT "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "run.sh: server pid $pid ignored SIGINT for 5 s, killing it" >&2
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	SERVER_PID=""
}

RESULTS=$BUILD/bench-results.txt
: >"$RESULTS"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) mode=$MODE conns=$CONNS size=$SIZE duration=$DURATION rounds=$ROUNDS servers=\"$SERVERS\" kernel=$(uname -r)" >>"$RESULTS"

declare -A RPS P50 P99 CPU MISM LOST FAILS RUNS SKIPPED
ACTIVE=()
for s in $SERVERS; do
	if ! cmd=$(server_cmd "$s"); then
		echo "run.sh: unknown server '$s' (known: vigil vigil-epoll vigil-sv uring epoll)" >&2
		exit 2
	fi
	bin=${cmd%% *}
	if [ ! -x "$bin" ]; then
		echo "run.sh: skipping $s: $bin not found" >&2
		SKIPPED[$s]=1
		continue
	fi
	ACTIVE+=("$s")
	RPS[$s]="" P50[$s]="" P99[$s]="" CPU[$s]="" MISM[$s]=0 LOST[$s]=0 FAILS[$s]=0 RUNS[$s]=0
done
if [ ${#ACTIVE[@]} -eq 0 ]; then
	echo "run.sh: no server to run" >&2
	exit 1
fi

FAILED=0
for ((r = 1; r <= ROUNDS; r++)); do
	for s in "${ACTIVE[@]}"; do
		cmd=$(server_cmd "$s")
		out=$TMP/$s.$r.out err=$TMP/$s.$r.err
		# word splitting of $cmd is intended (paths without spaces)
		# shellcheck disable=SC2086
		taskset -c "$SERVER_CPU" $cmd >"$out" 2>"$err" &
		SERVER_PID=$!
		port=""
		for ((i = 0; i < 100; i++)); do
			if [ -s "$out" ] && [ "$(head -c 4096 "$out" | wc -l)" -ge 1 ]; then
				port=$(parse_port "$(head -n 1 "$out")") || port=""
				break
			fi
			kill -0 "$SERVER_PID" 2>/dev/null || break
			sleep 0.1
		done
		RUNS[$s]=$((RUNS[$s] + 1))
		if [ -z "$port" ]; then
			echo "run.sh: round $r $s: no port from first line '$(head -n 1 "$out")'; stderr: $(head -c 500 "$err")" >&2
			echo "round=$r server=$s rc=255 error=no_port" >>"$RESULTS"
			stop_server "$SERVER_PID"
			FAILS[$s]=$((FAILS[$s] + 1))
			FAILED=1
			continue
		fi
		line=$("$LOADGEN" --host 127.0.0.1 --port "$port" --conns "$CONNS" --mode "$MODE" \
			--size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" --cpu "$CLIENT_CPU" \
			--server-pid "$SERVER_PID" 2>"$TMP/loadgen.err")
		rc=$?
		stop_server "$SERVER_PID"
		echo "round=$r server=$s rc=$rc $line" >>"$RESULTS"
		mism=$(kv "$line" mismatches) lost=$(kv "$line" lost)
		printf 'round %d %-6s rc=%d req/s=%s p50_us=%s p99_us=%s cpu_us/req=%s mismatches=%s lost=%s\n' \
			"$r" "$s" "$rc" "$(kv "$line" req_per_s)" "$(kv "$line" p50_us)" "$(kv "$line" p99_us)" \
			"$(kv "$line" server_cpu_us_per_req)" "${mism:-?}" "${lost:-?}" >&2
		if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
			echo "run.sh: round $r $s: loadgen failed (rc=$rc): $(tail -n 3 "$TMP/loadgen.err")" >&2
			FAILS[$s]=$((FAILS[$s] + 1))
			FAILED=1
		fi
		if [ -n "$mism" ]; then MISM[$s]=$((MISM[$s] + mism)); fi
		if [ -n "$lost" ]; then LOST[$s]=$((LOST[$s] + lost)); fi
		if [ -n "$line" ]; then
			RPS[$s]+="$(kv "$line" req_per_s) "
			P50[$s]+="$(kv "$line" p50_us) "
			P99[$s]+="$(kv "$line" p99_us) "
			c=$(kv "$line" server_cpu_us_per_req)
			[ -n "$c" ] && CPU[$s]+="$c "
		fi
	done
done

med() { tr ' ' '\n' <<<"$1" | awk 'NF' | median; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "n/a" || v == "") print "n/a"; else printf f, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'; }

declare -A MCPU
for s in "${ACTIVE[@]}"; do MCPU[$s]=$(med "${CPU[$s]}"); done
BASE_URING=${MCPU[uring]:-n/a}
BASE_EPOLL=${MCPU[epoll]:-n/a}

echo
echo "mode=$MODE conns=$CONNS size=$SIZE duration=${DURATION}s rounds=$ROUNDS (medians; server on CPU $SERVER_CPU, loadgen on CPU $CLIENT_CPU)"
echo
echo "| server | req/s | p50_us | p99_us | cpu_us/req | vs uring | vs epoll | mismatches | lost | failed runs |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for s in $SERVERS; do
	if [ -n "${SKIPPED[$s]:-}" ]; then
		echo "| $s | (not built) | | | | | | | | |"
		continue
	fi
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/%s |\n' "$s" \
		"$(fmt "$(med "${RPS[$s]}")" '%.0f')" \
		"$(fmt "$(med "${P50[$s]}")" '%.1f')" \
		"$(fmt "$(med "${P99[$s]}")" '%.1f')" \
		"$(fmt "${MCPU[$s]}" '%.3f')" \
		"$(ratio "${MCPU[$s]}" "$BASE_URING")" \
		"$(ratio "${MCPU[$s]}" "$BASE_EPOLL")" \
		"${MISM[$s]}" "${LOST[$s]}" "${FAILS[$s]}" "${RUNS[$s]}"
done
# Paired ratios: each round's servers ran back to back, so the ratio within a
# round cancels much of the machine's drift; the median of those is steadier
# than a ratio of medians.
paired() { # server baseline
	paste -d' ' <(tr ' ' '\n' <<<"${CPU[$1]}" | awk 'NF') <(tr ' ' '\n' <<<"${CPU[$2]}" | awk 'NF') |
		awk 'NF == 2 && $2 > 0 { print $1 / $2 }' | median
}
echo
for s in "${ACTIVE[@]}"; do
	for b in uring epoll; do
		[ "$s" != "$b" ] && [ -n "${CPU[$b]:-}" ] && [ -n "${CPU[$s]:-}" ] || continue
		printf 'paired median of per-round cpu_us/req ratios: %s/%s = %s\n' "$s" "$b" \
			"$(fmt "$(paired "$s" "$b")" '%.3fx')"
	done
done
echo
echo "raw results: $RESULTS"

for s in "${ACTIVE[@]}"; do
	if [ "${MISM[$s]}" -ne 0 ] || [ "${LOST[$s]}" -ne 0 ]; then FAILED=1; fi
done
exit $FAILED
