#!/usr/bin/env bash
# HTTP comparison: wrk against `vigil serve --mode http` and nginx, in one run.
#
# usage: bench/http.sh [--build DIR (build)] [--rounds R (3)] [--duration S (10)]
#                      [--conns N (100)] [--threads T (1)] [--body-size N (13)]
#                      [--file N]
#
# --file N: the servers serve one file of N bytes from the same temp directory
# instead (nginx: `root DIR`, sendfile on, as Debian's nginx.conf has it;
# vigil: `serve --mode http --root DIR`; and h2o, Debian's package, with one
# thread and `file.dir: DIR`, when it is installed), and the check compares the
# body with the file byte for byte.
#
# Per round, interleaved: nginx (one process: worker_processes 1, daemon off,
# master_process off, a config generated in a temp dir, `return 200` with a body
# of N bytes), then `vigil serve --mode http --port 0 --body-size N`; each server
# pinned to CPU 0, wrk pinned to CPU 1 (`wrk -t T -c N -d S --latency`). Before
# each measurement, one `curl -si` checks the server answers 200 with
# Content-Length N and a body of N bytes. The server's CPU time (utime + stime
# from /proc/PID/stat, all threads) is read just before and just after wrk, and
# divided by wrk's request count; so is wrk's own CPU time (a client at 100 % of
# its core, not the server, then sets req/s). Raw lines go to DIR/http-results.txt; a
# Markdown table (medians over rounds, and the medians of the per-round
# vigil/nginx ratios) is printed at the end. The exit status is non-zero if a
# server fails to start, dies, answers the check wrongly, or wrk fails or reports
# socket errors or non-2xx/3xx responses.
set -u

BUILD=build
ROUNDS=3
DURATION=10
CONNS=100
THREADS=1
BODY=13
FILE_SIZE=""
SERVER_CPU=0
CLIENT_CPU=1

usage() {
	cat >&2 <<'EOF'
usage: bench/http.sh [--build DIR (default build)] [--rounds R (default 3)]
                     [--duration S (default 10)] [--conns N (default 100)]
                     [--threads T (wrk threads, default 1)] [--body-size N (default 13)]
                     [--file N (serve a file of N bytes from a directory instead)]
EOF
	exit 2
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while [ $# -gt 0 ]; do
	[ $# -ge 2 ] || usage
	case "$1" in
	--build) BUILD=$2 ;;
	--rounds) is_uint "$2" && [ "$2" -ge 1 ] || usage; ROUNDS=$2 ;;
	--duration) is_uint "$2" && [ "$2" -ge 1 ] || usage; DURATION=$2 ;;
	--conns) is_uint "$2" && [ "$2" -ge 1 ] || usage; CONNS=$2 ;;
	--threads) is_uint "$2" && [ "$2" -ge 1 ] || usage; THREADS=$2 ;;
	--body-size) is_uint "$2" && [ "$2" -le 1048576 ] || usage; BODY=$((10#$2)) ;;
	--file) is_uint "$2" && [ "$2" -le 1073741824 ] || usage; FILE_SIZE=$((10#$2)) ;;
	*) usage ;;
	esac
	shift 2
done
[ "$CONNS" -ge "$THREADS" ] || { echo "http.sh: --conns must be >= --threads (wrk)" >&2; usage; }

for tool in wrk nginx curl taskset awk; do
	if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
		echo "http.sh: $tool not found (Debian: apt-get install wrk nginx-light curl util-linux)" >&2
		exit 1
	fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
H2O=$(command -v h2o || true) # a peer for files only (it has no fixed response)
VIGIL=$BUILD/src/cli/vigil
if [ ! -x "$VIGIL" ]; then
	echo "http.sh: $VIGIL not found; build first (meson setup $BUILD && ninja -C $BUILD)" >&2
	exit 1
fi
if [ "$(nproc --all 2>/dev/null || echo 1)" -lt 2 ]; then
	echo "http.sh: fewer than 2 CPUs; servers and wrk will share CPU 0" >&2
	CLIENT_CPU=0
fi
# nginx in single-process mode does not apply worker_rlimit_nofile; raise it here
# for everything started below (servers and wrk).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CLK_TCK=$(getconf CLK_TCK)

# The body vigil serves: "Hello, world!" for 13 bytes, else 'a' + i % 26.
make_body() {
	if [ "$1" -eq 13 ]; then
		printf 'Hello, world!'
	else
		awk -v n="$1" 'BEGIN { a = "abcdefghijklmnopqrstuvwxyz"; s = "";
			while (length(s) < n) s = s a; printf "%s", substr(s, 1, n) }'
	fi
}
BODY_TEXT=$(make_body "$BODY")

TMP=$(mktemp -d /tmp/vigil-http.XXXXXX)
URL_PATH=/
ROOT=""
if [ -n "$FILE_SIZE" ]; then # one file, the same bytes for both servers
	ROOT=$TMP/www
	mkdir -p "$ROOT"
	head -c "$FILE_SIZE" /dev/urandom >"$ROOT/f.bin"
	chmod 755 "$TMP" "$ROOT" && chmod 644 "$ROOT/f.bin" # h2o reads it as nobody
	URL_PATH=/f.bin
	BODY=$FILE_SIZE
fi
SERVER_PID=""
cleanup() {
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null
		sleep 0.5
		kill -KILL "$SERVER_PID" 2>/dev/null
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_server() { # pid signal
	local pid=$1 i
	kill "-$2" "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "http.sh: server pid $pid ignored SIG$2 for 5 s, killing it" >&2
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	SERVER_PID=""
}

# utime + stime of a process (all threads), in clock ticks
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_nginx_conf() { # dir port
	local d=$1 body maps="" i
	# The bodies used here are letters (and "Hello, world!"): no quotes, backslashes
	# or '$' to escape. nginx limits a config token to 4 KiB, so a longer body is
	# split into map variables ($vbI) of 2 KiB each that `return` concatenates (nginx then
	# builds the body per request instead of sending a constant).
	if [ "$BODY" -le 3072 ]; then
		body=$BODY_TEXT
	else
		body=""
		for ((i = 0; i * 2048 < BODY; i++)); do
			maps+="    map \$host \$vb$i { default \"${BODY_TEXT:i*2048:2048}\"; }"$'\n'
			body+="\$vb$i"
		done
	fi
	local location="return 200 \"$body\";"
	[ -n "$ROOT" ] && location="root $ROOT; sendfile on; tcp_nopush on;"
	mkdir -p "$d/tmp"
	cat >"$d/nginx.conf" <<EOF
# generated by bench/http.sh
worker_processes 1;
daemon off;
master_process off;
pid $d/nginx.pid;
error_log $d/error.log warn;

events {
    worker_connections $((CONNS + 1024));
}

http {
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
$maps
    server {
        listen 127.0.0.1:$2;
        location / {
            $location
        }
    }
}
EOF
}

# Waits until a server answers on the port (or dies); 0 when it answers.
wait_http() { # pid port
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$1" 2>/dev/null || return 1
		curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$2$URL_PATH" && return 0
		sleep 0.1
	done
	return 1
}

# Starts a peer server on a free port, retrying when another process took
# the port meanwhile; sets SERVER_PID and PORT. launch DIR PORT starts it in
# the background (its stdout and stderr in DIR) and writes its error log to
# DIR/error.log.
start_peer() { # name launch round
	local d=$TMP/$1.$3 attempt
	for ((attempt = 0; attempt < 10; attempt++)); do
		PORT=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		port_busy "$PORT" && continue
		rm -rf "$d"
		mkdir -p "$d"
		"$2" "$d" "$PORT"
		wait_http "$SERVER_PID" "$PORT" && return 0
		if kill -0 "$SERVER_PID" 2>/dev/null; then
			stop_server "$SERVER_PID" TERM
		else
			wait "$SERVER_PID" 2>/dev/null
			SERVER_PID=""
		fi
		grep -q "Address already in use" "$d/error.log" "$d/stderr" 2>/dev/null || break
	done
	echo "http.sh: $1 did not start: $(cat "$d/stderr" "$d/error.log" 2>/dev/null | tail -n 5)" >&2
	return 1
}

launch_nginx() { # dir port
	write_nginx_conf "$1" "$2"
	taskset -c "$SERVER_CPU" "$NGINX" -p "$1/" -c "$1/nginx.conf" -e "$1/error.log" \
		>"$1/stdout" 2>"$1/stderr" &
	SERVER_PID=$!
}

# h2o in worker mode: one process, num-threads 1, as nobody when run as root
# (h2o will not serve as root).
launch_h2o() { # dir port
	cat >"$1/h2o.conf" <<EOF
# generated by bench/http.sh
num-threads: 1
max-connections: $((CONNS + 1024))
$([ "$(id -u)" -eq 0 ] && echo "user: nobody")
error-log: $1/error.log
listen:
  host: 127.0.0.1
  port: $2
hosts:
  default:
    paths:
      /:
        file.dir: $ROOT
EOF
	taskset -c "$SERVER_CPU" "$H2O" -m worker -c "$1/h2o.conf" >"$1/stdout" 2>"$1/stderr" &
	SERVER_PID=$!
}

# Be liberal, as run.sh: the number after the last ':', else after "port".
parse_port() {
	local line=$1 p=""
	if [[ $line =~ [Pp][Oo][Rr][Tt][^0-9]{0,3}([0-9]+)[^0-9]*$ ]]; then
		p=${BASH_REMATCH[1]}
	elif [[ $line =~ ^.*:([0-9]+) ]]; then
		p=${BASH_REMATCH[1]}
	fi
	if [ -n "$p" ] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ]; then
		echo "$p"
		return 0
	fi
	return 1
}

# Starts vigil serve --mode http; sets SERVER_PID, PORT and VIGIL_LINE.
start_vigil() { # round
	local out=$TMP/vigil.$1.out err=$TMP/vigil.$1.err i
	local what=(--body-size "$BODY")
	[ -n "$ROOT" ] && what=(--root "$ROOT")
	taskset -c "$SERVER_CPU" "$VIGIL" serve --mode http --port 0 "${what[@]}" >"$out" 2>"$err" &
	SERVER_PID=$!
	PORT=""
	for ((i = 0; i < 100; i++)); do
		if [ -s "$out" ] && [ "$(head -c 4096 "$out" | wc -l)" -ge 1 ]; then
			PORT=$(parse_port "$(head -n 1 "$out")") || PORT=""
			break
		fi
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	VIGIL_LINE=$(head -n 1 "$out")
	if [ -z "$PORT" ] || ! wait_http "$SERVER_PID" "$PORT"; then
		echo "http.sh: vigil did not start: first line '$VIGIL_LINE'; stderr: $(head -c 500 "$err")" >&2
		[ -n "$SERVER_PID" ] && stop_server "$SERVER_PID" INT
		return 1
	fi
	return 0
}

# One curl -si: status 200, Content-Length = BODY, body of BODY bytes. Prints the
# Content-Length.
check_response() { # name port
	local f=$TMP/check.$1 status cl blen w
	if [ -n "$ROOT" ] && ! { curl -s --max-time 5 -o "$f.body" "http://127.0.0.1:$2$URL_PATH" &&
		cmp -s "$f.body" "$ROOT/f.bin"; }; then
		echo "http.sh: $1: the body is not the file, byte for byte" >&2
		return 1
	fi
	if ! w=$(curl -si --max-time 5 -o "$f" -w '%{http_code} %{size_download}' "http://127.0.0.1:$2$URL_PATH" 2>/dev/null); then
		echo "http.sh: $1: curl failed" >&2
		return 1
	fi
	status=${w% *} blen=${w#* }
	cl=$(tr -d '\r' <"$f" | awk 'tolower($1) == "content-length:" { print $2; exit } /^$/ { exit }')
	if [ "$status" != 200 ] || [ "${cl:-x}" != "$BODY" ] || [ "$blen" -ne "$BODY" ]; then
		echo "http.sh: $1: expected 200 with a $BODY-byte body, got status ${status:-?}," \
			"Content-Length ${cl:-none}, $blen body bytes" >&2
		return 1
	fi
	echo "$cl"
}

# wrk latency value ("635.91us", "1.23ms", "2.00s", "1.00m") in microseconds
to_us() {
	awk -v v="$1" 'BEGIN {
		if (match(v, /us$/)) print substr(v, 1, RSTART - 1) + 0;
		else if (match(v, /ms$/)) print substr(v, 1, RSTART - 1) * 1000;
		else if (match(v, /s$/)) print substr(v, 1, RSTART - 1) * 1000000;
		else if (match(v, /m$/)) print substr(v, 1, RSTART - 1) * 60000000;
		else if (match(v, /h$/)) print substr(v, 1, RSTART - 1) * 3600000000;
		else print "" }'
}

median() {
	sort -g | awk '{ a[NR] = $1 } END {
		if (NR == 0) { print "n/a"; exit }
		if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
med() { tr ' ' '\n' <<<"$1" | awk 'NF' | median; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "n/a" || v == "") print "n/a"; else printf f, v }'; }
ms() { awk -v v="$1" 'BEGIN { if (v == "n/a" || v == "") print "n/a"; else printf "%.3f", v / 1000 }'; }

RESULTS=$BUILD/http-results.txt
: >"$RESULTS"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) conns=$CONNS wrk_threads=$THREADS duration=$DURATION rounds=$ROUNDS body=$BODY file=${FILE_SIZE:-no} kernel=$(uname -r) nginx=$("$NGINX" -v 2>&1 | sed 's/.*\///') wrk=$(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')" >>"$RESULTS"

SERVERS="nginx vigil"
[ -n "$ROOT" ] && [ -n "$H2O" ] && SERVERS="nginx h2o vigil"
declare -A RPS P50 P99 CPU WCPU FAILS RUNS
for s in $SERVERS; do RPS[$s]="" P50[$s]="" P99[$s]="" CPU[$s]="" FAILS[$s]=0 RUNS[$s]=0; done
declare -A ROUND_VAL # "$s.$r.metric" -> value, for the paired ratios
FAILED=0
VIGIL_BACKEND=""

for ((r = 1; r <= ROUNDS; r++)); do
	for s in $SERVERS; do
		RUNS[$s]=$((RUNS[$s] + 1))
		ok=1
		case $s in
		nginx) start_peer nginx launch_nginx "$r" || ok=0 ;;
		vigil) start_vigil "$r" || ok=0 ;;
		h2o) start_peer h2o launch_h2o "$r" || ok=0 ;;
		esac
		if [ "$ok" -ne 1 ] || [ -z "$SERVER_PID" ]; then
			echo "round=$r server=$s rc=255 error=start_failed" >>"$RESULTS"
			FAILS[$s]=$((FAILS[$s] + 1)) FAILED=1
			continue
		fi
		if ! cl=$(check_response "$s" "$PORT"); then
			echo "round=$r server=$s rc=255 error=bad_response" >>"$RESULTS"
			stop_server "$SERVER_PID" TERM
			FAILS[$s]=$((FAILS[$s] + 1)) FAILED=1
			continue
		fi
		if [ "$s" = vigil ] && [ -z "$VIGIL_BACKEND" ]; then
			VIGIL_BACKEND=$(sed -n 's/.*backend \([a-z_]*\).*/\1/p' <<<"$VIGIL_LINE")
		fi
		pid=$SERVER_PID
		t0=$(cpu_ticks "$pid")
		# in a subshell, whose waited-for children's CPU (cutime + cstime,
		# fields 16 and 17 of /proc/PID/stat) is then wrk's own
		(taskset -c "$CLIENT_CPU" wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" --latency \
			"http://127.0.0.1:$PORT$URL_PATH" >"$TMP/wrk.out" 2>&1
		rc=$?
		awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$BASHPID/stat" >"$TMP/wrk.cpu"
		exit $rc)
		rc=$?
		wrk_ticks=$(cat "$TMP/wrk.cpu" 2>/dev/null)
		t1=$(cpu_ticks "$pid")
		alive=1
		kill -0 "$pid" 2>/dev/null || alive=0
		if [ "$s" = vigil ]; then stop_server "$pid" INT; else stop_server "$pid" TERM; fi
		w=$TMP/wrk.out
		reqs=$(awk '/requests in/ { print $1; exit }' "$w")
		rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$w")
		p50=$(to_us "$(awk '/Latency Distribution/ { d = 1 } d && $1 == "50%" { print $2; exit }' "$w")")
		p99=$(to_us "$(awk '/Latency Distribution/ { d = 1 } d && $1 == "99%" { print $2; exit }' "$w")")
		# "  Socket errors: connect 0, read 84, write 9312, timeout 0" (only when not all 0)
		sockerr=$(awk '/Socket errors:/ { n = 0; for (i = 1; i <= NF; i++) { v = $i; sub(/,$/, "", v);
			if (v ~ /^[0-9]+$/) n += v } print n; exit }' "$w")
		non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF; exit }' "$w")
		sockerr=${sockerr:-0} non2xx=${non2xx:-0}
		cpu_us="" cpu_req="" wrk_req=""
		if [ -n "$t0" ] && [ -n "$t1" ] && [ -n "$reqs" ] && [ "$reqs" -gt 0 ]; then
			cpu_us=$(((t1 - t0) * 1000000 / CLK_TCK))
			cpu_req=$(awk -v c="$cpu_us" -v n="$reqs" 'BEGIN { printf "%.3f", c / n }')
			[ -n "$wrk_ticks" ] && wrk_req=$(awk -v t="$wrk_ticks" -v hz="$CLK_TCK" -v n="$reqs" \
				'BEGIN { printf "%.3f", t * 1000000 / hz / n }')
		fi
		echo "round=$r server=$s rc=$rc alive=$alive content_length=$cl requests=${reqs:-} req_per_s=${rps:-} p50_us=${p50:-} p99_us=${p99:-} socket_errors=$sockerr non2xx=$non2xx server_cpu_ticks=$((${t1:-0} - ${t0:-0})) server_cpu_us=${cpu_us:-} server_cpu_us_per_req=${cpu_req:-} wrk_cpu_us_per_req=${wrk_req:-}" >>"$RESULTS"
		sed 's/^/#   /' "$w" >>"$RESULTS"
		printf 'round %d %-5s rc=%d req/s=%s p50_us=%s p99_us=%s cpu_us/req=%s socket_errors=%s non2xx=%s\n' \
			"$r" "$s" "$rc" "${rps:-?}" "${p50:-?}" "${p99:-?}" "${cpu_req:-?}" "$sockerr" "$non2xx" >&2
		if [ "$rc" -ne 0 ] || [ -z "$rps" ] || [ -z "$cpu_req" ] || [ "$alive" -ne 1 ] ||
			[ "$sockerr" -ne 0 ] || [ "$non2xx" -ne 0 ]; then
			echo "http.sh: round $r $s: failed (wrk rc=$rc, server alive=$alive, socket errors $sockerr, non-2xx $non2xx): $(tail -n 3 "$w")" >&2
			FAILS[$s]=$((FAILS[$s] + 1)) FAILED=1
			continue
		fi
		RPS[$s]+="$rps " P50[$s]+="$p50 " P99[$s]+="$p99 " CPU[$s]+="$cpu_req " WCPU[$s]+="${wrk_req:-} "
		ROUND_VAL[$s.$r.rps]=$rps ROUND_VAL[$s.$r.p50]=$p50 ROUND_VAL[$s.$r.p99]=$p99 ROUND_VAL[$s.$r.cpu]=$cpu_req
	done
done

# Median over rounds of the within-round vigil/PEER ratio of one metric.
paired() { # metric [peer: nginx]
	local r peer=${2:-nginx}
	for ((r = 1; r <= ROUNDS; r++)); do
		[ -n "${ROUND_VAL[vigil.$r.$1]:-}" ] && [ -n "${ROUND_VAL[$peer.$r.$1]:-}" ] || continue
		awk -v a="${ROUND_VAL[vigil.$r.$1]}" -v b="${ROUND_VAL[$peer.$r.$1]}" 'BEGIN { if (b > 0) print a / b }'
	done | median
}

echo
echo "wrk -t $THREADS -c $CONNS -d ${DURATION}s, ${ROOT:+a file of }$BODY bytes, $ROUNDS interleaved rounds (medians;" \
	"servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU; vigil backend ${VIGIL_BACKEND:-?})"
echo
echo "| server | requests/s | latency p50 ms | latency p99 ms | server CPU us/request | wrk CPU us/request | failed runs |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for s in $SERVERS; do
	printf '| %s | %s | %s | %s | %s | %s | %s/%s |\n' "$s" \
		"$(fmt "$(med "${RPS[$s]}")" '%.0f')" \
		"$(ms "$(med "${P50[$s]}")")" "$(ms "$(med "${P99[$s]}")")" \
		"$(fmt "$(med "${CPU[$s]}")" '%.3f')" "$(fmt "$(med "${WCPU[$s]:-}")" '%.3f')" "${FAILS[$s]}" "${RUNS[$s]}"
done
for peer in $SERVERS; do
	[ "$peer" = vigil ] && continue
	printf '| vigil/%s (median of per-round ratios) | %s | %s | %s | %s | | |\n' "$peer" \
		"$(fmt "$(paired rps "$peer")" '%.2fx')" "$(fmt "$(paired p50 "$peer")" '%.2fx')" \
		"$(fmt "$(paired p99 "$peer")" '%.2fx')" "$(fmt "$(paired cpu "$peer")" '%.2fx')"
done
echo
echo "raw results: $RESULTS"
exit $FAILED
