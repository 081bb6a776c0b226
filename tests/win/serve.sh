#!/usr/bin/env bash
# tests/win/serve.sh BUILD_WIN BUILD_LINUX: `vigil.exe serve` (BUILD_WIN, cross-built) run
# under wine64 on loopback, checked by the Linux `vigil bench` (BUILD_LINUX) as its client:
# ping-pong with 1, 100 and 1000 connections, stream with 1 and 100, every echoed byte
# verified; HTTP mode, the metrics endpoint and --idle-ms; static files (--root); the refusals of what Windows
# lacks; a clean stop by SIGINT; then the supervisor's recovery from spin, block and hang
# under ping-pong load. Every run is bounded (bench: --duration 2 or 8 s, `timeout 60`;
# serve: stopped by SIGINT, killed 10 s later if it is still there).
# Prints "serve: NAME: ok (...)" or "serve: NAME: FAIL ..." per check, then "serve: N failed"
# (probe.sh counts those lines). Exit status 0 if none failed.
#
# Stopping under wine: wine turns SIGINT into a console Ctrl-C, which serve's console
# control handler takes as the request to stop (exit 0, every connection closed). Wine
# installs no SIGTERM handler, so SIGTERM kills the process at once, with no Windows code
# run: no flush, no totals line. This script stops serve with SIGINT, and SIGKILL after 10 s.
set -u
BW=$(cd "${1:-build-win}" && pwd) || { echo "serve: setup: FAIL no ${1:-build-win}"; echo "serve: 1 failed"; exit 1; }
BL=$(cd "${2:-build}" 2>/dev/null && pwd) || BL=${2:-build}
EXE=$BW/src/cli/vigil.exe
CLIENT=$BL/src/cli/vigil
WINE=/usr/lib/wine/wine64
export WINEDEBUG=-all WINEPREFIX=${WINEPREFIX:-$BW/wineprefix}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # 1000 connections: the client's and wine's sockets
T=$(mktemp -d)
SPID=
trap '[ -n "$SPID" ] && kill -9 $SPID 2>/dev/null; rm -rf "$T"' EXIT
bad=0

ok() { echo "serve: $1: ok${2:+ ($2)}"; }
fail() { # name, why: the line, then what serve and the client said
    bad=$((bad + 1))
    echo "serve: $1: FAIL $2"
    [ -s "$T/bench.out" ] && sed 's/^/    bench: /' "$T/bench.out" | tail -6
    # what the supervisor and serve did (stalls, interruptions, fences, resets), then serve's last words
    [ -s "$T/err" ] && tr -d '\r' <"$T/err" |
        grep -E 'stall|interrupt|fenced|rebuilt|reset|error|inject' | sed 's/^/    serve: /' | tail -24
    [ -s "$T/err" ] && tr -d '\r' <"$T/err" | sed 's/^/    serve: /' | tail -4
    return 0
}

# start ARGS...: vigil.exe serve --port 0 ARGS in the background; PORT from its banner
# (and MPORT with --metrics-port). Up to 60 s: wine may be creating its prefix.
start() {
    : >"$T/out"; : >"$T/err"; : >"$T/bench.out"
    "$WINE" "$EXE" serve --port 0 "$@" </dev/null >"$T/out" 2>"$T/err" &
    SPID=$! PORT= MPORT=
    for _ in $(seq 600); do
        PORT=$(tr -d '\r' <"$T/out" | sed -n 's/^vigil serve: backend .* port \([0-9]*\)$/\1/p' | head -1)
        MPORT=$(tr -d '\r' <"$T/out" | sed -n 's|.*http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' | head -1)
        if [ -n "$PORT" ]; then
            case " $* " in *" --metrics-port "*) [ -n "$MPORT" ] && return 0 ;; *) return 0 ;; esac
        fi
        kill -0 $SPID 2>/dev/null || break
        sleep 0.1
    done
    return 1
}

# stop: SIGINT, up to 10 s for a clean exit, then SIGKILL. STOP_RC: its exit status
# (137 when it had to be killed).
stop() {
    [ -n "$SPID" ] || { STOP_RC=1; return; }
    kill -INT $SPID 2>/dev/null
    for _ in $(seq 100); do
        kill -0 $SPID 2>/dev/null || break
        sleep 0.1
    done
    kill -9 $SPID 2>/dev/null
    wait $SPID 2>/dev/null
    STOP_RC=$?
    SPID=
}
stopped_cleanly() { [ "$STOP_RC" -eq 0 ] && tr -d '\r' <"$T/err" | grep -q '^vigil serve: stopped;'; }

# bench ARGS...: the Linux client against the server; BRC its exit status, B_* the
# median row of its bench.csv (requests per second, bytes sent and verified, ...).
# One round (bench repeats 3 times by default): the stalls injected into the
# server and the 60 s limit are timed for one load.
bench() {
    rm -rf "$T/b"
    timeout 60 "$CLIENT" bench --target "127.0.0.1:$PORT" --client-cpu -1 --warmup 0 --rounds 1 \
        --out "$T/b" "$@" >"$T/bench.out" 2>&1
    BRC=$?
    local row
    row=$(grep '^"[^"]*",median,' "$T/b/bench.csv" 2>/dev/null | head -1)
    B_RPS= B_SENT= B_VER= B_LOST= B_MIS= B_ERR= B_CF=
    IFS=, read -r _ _ _ B_RPS _ _ _ _ _ B_SENT B_VER B_LOST B_MIS B_ERR B_CF _ <<<"$row"
}
bench_exact() { # every byte sent came back, verified, and nothing failed
    [ "$BRC" -eq 0 ] && [ "${B_LOST:-1}" = 0 ] && [ "${B_MIS:-1}" = 0 ] && [ "${B_ERR:-1}" = 0 ] &&
        [ "${B_CF:-1}" = 0 ] && [ -n "$B_SENT" ] && [ "$B_SENT" -gt 0 ] && [ "$B_SENT" = "$B_VER" ]
}
numbers() { echo "${B_RPS%.*} req/s, $B_SENT bytes sent, $B_VER echoed and verified"; }
serr() { tr -d '\r' <"$T/err"; }

[ -x "$CLIENT" ] || { [ -f "$BL/build.ninja" ] && ninja -C "$BL" src/cli/vigil >/dev/null 2>&1; }
if [ ! -f "$EXE" ] || [ ! -x "$CLIENT" ]; then
    fail setup "needs $EXE and the Linux client $CLIENT (ninja -C BUILD_WIN; ninja -C BUILD_LINUX)"
    echo "serve: $bad failed"
    exit 1
fi

# --- echo: the Linux client's loads, every byte checked
if start; then
    ok "starts under wine64 and listens" "127.0.0.1:$PORT"
    for load in "pingpong 1" "pingpong 100" "pingpong 1000" "stream 1" "stream 100"; do
        set -- $load
        name="$1, $2 connection$([ "$2" -gt 1 ] && echo s)"
        # --drain 10: under wine on a busy 2-core host some of 1000 connections wait over a
        # second for their echo (p99 about 1 s when the host steals time): a byte still
        # owed 10 s after the load stopped is lost, not late
        bench --mode "$1" --conns "$2" --duration 2 --drain 10
        if bench_exact; then ok "$name" "$(numbers)"; else
            fail "$name" "bench exit $BRC, lost ${B_LOST:-?} B, mismatched ${B_MIS:-?} B, errors ${B_ERR:-?}"
        fi
    done
    stop
    if stopped_cleanly; then
        ok "SIGINT (Ctrl-C) stops it cleanly" "$(serr | sed -n 's/^vigil serve: stopped; //p')"
    else fail "SIGINT (Ctrl-C) stops it cleanly" "exit status $STOP_RC"; fi
else
    fail "starts under wine64 and listens" "no banner"
    stop
fi

# --- HTTP, the metrics endpoint and --idle-ms
if start --mode http --metrics-port 0 --idle-ms 500; then
    body=$(timeout 10 curl -s "http://127.0.0.1:$PORT/" "http://127.0.0.1:$PORT/b" 2>&1)
    if [ "$body" = "Hello, world!Hello, world!" ]; then ok "--mode http: two requests on one connection"
    else fail "--mode http: two requests on one connection" "got '$body'"; fi
    if timeout 10 curl -sf "http://127.0.0.1:$MPORT/metrics" >"$T/metrics" &&
        grep -q '^vigil_serve_http_requests_total{loop="1"} 2$' "$T/metrics" &&
        grep -q '^vigil_loop_iterations_total{loop="1"} [1-9]' "$T/metrics" &&
        grep -q '^vigil_serve_sent_bytes_total{loop="1"} [1-9]' "$T/metrics" &&
        grep -q '^vigil_build_info{version="[^"]*",backend="iocp"} 1$' "$T/metrics" &&
        ! grep -q '^process_' "$T/metrics" && # no /proc: left out, not made up
        { ! command -v promtool >/dev/null || promtool check metrics <"$T/metrics" >/dev/null 2>&1; }; then
        ok "--metrics-port: scraped from Linux$(command -v promtool >/dev/null && echo ", promtool check metrics")"
    else fail "--metrics-port: scraped from Linux" "$(head -c 300 "$T/metrics" 2>/dev/null)"; fi
    t0=$(date +%s%N)
    ( exec 3<>"/dev/tcp/127.0.0.1/$PORT" && timeout 5 cat <&3 >/dev/null 2>&1 ) 2>/dev/null
    ms=$((($(date +%s%N) - t0) / 1000000))
    sleep 0.2
    if [ $ms -ge 400 ] && [ $ms -lt 4000 ] && serr | grep -q 'idle for 500 ms: reset'; then
        ok "--idle-ms 500: a silent connection is reset" "after $ms ms"
    else fail "--idle-ms 500: a silent connection is reset" "closed after $ms ms"; fi
    stop
    stopped_cleanly || fail "--mode http: stops cleanly" "exit status $STOP_RC"
else
    fail "--mode http --metrics-port 0 starts" "no banner"
    stop
fi

# --- --root: static files through the file calls (open and stat on the pool, a small body read
# overlapped on the port, a large one sent by TransmitFile: vigil_conn_send_file), the
# directory given as wine sees the Linux one (Z: is /)
mkdir -p "$T/www/sub" && printf 'hello file' >"$T/www/sub/a.txt" && head -c 3000000 /dev/urandom >"$T/www/big.bin"
if start --mode http --root "Z:$T/www"; then
    small=$(timeout 10 curl -s "http://127.0.0.1:$PORT/sub/a.txt")
    timeout 20 curl -s "http://127.0.0.1:$PORT/big.bin" >"$T/big.got"
    up=$(timeout 10 curl -s -o /dev/null -w '%{http_code}' --path-as-is "http://127.0.0.1:$PORT/../$(basename "$T")/www/sub/a.txt")
    # from the open-file cache now (read through the entry's fd: no mapping on Windows)
    timeout 20 curl -s "http://127.0.0.1:$PORT/big.bin" >"$T/big.again"
    timeout 10 curl -s -r 1000000-1999999 "http://127.0.0.1:$PORT/big.bin" >"$T/big.range"
    tail -c +1000001 "$T/www/big.bin" | head -c 1000000 >"$T/big.want"
    etag=$(timeout 10 curl -sI "http://127.0.0.1:$PORT/sub/a.txt" | tr -d '\r' | sed -n 's/^ETag: //p')
    nm=$(timeout 10 curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "http://127.0.0.1:$PORT/sub/a.txt")
    if [ "$small" = "hello file" ] && cmp -s "$T/big.got" "$T/www/big.bin" && [ "$up" = 404 ] &&
        cmp -s "$T/big.again" "$T/www/big.bin" && cmp -s "$T/big.range" "$T/big.want" && [ "$nm" = 304 ]; then
        ok "--mode http --root: files byte for byte, nothing above the root" "3 MB file twice, a 1 MB range, 304, '..' answered 404"
    else fail "--mode http --root: files byte for byte, nothing above the root" \
        "small '$small', big $(stat -c %s "$T/big.got" 2>/dev/null) then $(stat -c %s "$T/big.again" 2>/dev/null) bytes, range $(stat -c %s "$T/big.range" 2>/dev/null), etag '$etag' -> $nm, '..' answered $up"; fi
    stop
    stopped_cleanly || fail "--mode http --root: stops cleanly" "exit status $STOP_RC"
else
    fail "--mode http --root starts" "no banner"
    stop
fi

# --- hostile clients (the same request side as on Linux, http_conn.c): a half-close still gets
# its answers, a request trickled past --request-ms gets 408, and a client that pipelines GETs
# and never reads leaves the server's memory where it was (wine's RSS, within 64 MiB)
if start --mode http --root "Z:$T/www" --request-ms 600; then
    out=$(timeout 30 python3 - "$PORT" "$SPID" <<'PY' 2>&1
import socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
def rss():
    for l in open("/proc/%d/status" % pid):
        if l.startswith("VmRSS"):
            return int(l.split()[1]) >> 10
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /sub/a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
s.shutdown(socket.SHUT_WR)
got = b""
s.settimeout(10)
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
half = got.count(b"HTTP/1.1 200 OK") == 2 and len(got) > 3000000
s = socket.create_connection(("127.0.0.1", port))
s.settimeout(0.05)
t0, slow = time.time(), b""
for ch in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 200:
    s.send(bytes([ch]))
    try:
        slow += s.recv(4096)
    except (socket.timeout, ConnectionResetError):
        pass
    if slow or time.time() - t0 > 5:
        break
    time.sleep(0.02)
took = time.time() - t0
r0 = rss()
f = socket.socket()
f.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
f.connect(("127.0.0.1", port))
f.setblocking(False)
req, sent, end = b"GET /sub/a.txt HTTP/1.1\r\nHost: t\r\n\r\n" * 1000, 0, time.time() + 3
while time.time() < end:
    try:
        sent += f.send(req)
    except BlockingIOError:
        time.sleep(0.01)
grew = rss() - r0
print("half-close %s; trickle: %r after %.1f s; flood: %d bytes of requests, RSS +%d MiB" %
      (half, slow[:12], took, sent, grew))
sys.exit(0 if half and slow.startswith(b"HTTP/1.1 408") and took < 3 and grew < 64 else 1)
PY
)
    if [ $? -eq 0 ]; then ok "hostile clients: half-close, slow request, pipelined flood" "$out"
    else fail "hostile clients: half-close, slow request, pipelined flood" "$out"; fi
    stop
    stopped_cleanly || fail "hostile clients: stops cleanly" "exit status $STOP_RC"
else
    fail "--mode http --root --request-ms starts" "no banner"
    stop
fi

# --- --keepalive: under wine 8 through SIO_KEEPALIVE_VALS (count fixed at 10); the
# Linux socket under it must carry the idle time, as ss shows its timer
if start --keepalive 7/3/10; then
    exec 3<>"/dev/tcp/127.0.0.1/$PORT"
    sleep 0.5
    timer=$(ss -tnoH state established "( sport = :$PORT )" 2>/dev/null | grep -o 'timer:([^)]*)' | head -1)
    exec 3>&-
    if [[ $timer =~ ^timer:\(keepalive,[4-7][.s] ]]; then ok "--keepalive 7/3/10: the idle timer is set" "$timer"
    else fail "--keepalive 7/3/10: the idle timer is set" "ss: '${timer:-no timer}'"; fi
    stop
    stopped_cleanly || fail "--keepalive: stops cleanly" "exit status $STOP_RC"
else
    fail "--keepalive 7/3/10 starts" "no banner"
    stop
fi

# --- what Windows lacks, refused clearly
refused() { # name, expected status, expected message, vigil.exe arguments...
    local name=$1 want=$2 msg=$3 rc; shift 3
    timeout 60 "$WINE" "$EXE" "$@" </dev/null >"$T/out" 2>"$T/err"; rc=$?
    if [ $rc -eq "$want" ] && serr | grep -q -- "$msg"; then ok "$name" "exit $rc"
    else fail "$name" "exit $rc, not $want with '$msg'"; fi
}
refused "bench is not available on Windows" 2 "not available on Windows: run it on Linux against" bench
refused "profile is not available on Windows" 2 "not available on Windows: run it on Linux against" profile
refused "--threads 2 needs SO_REUSEPORT" 1 "needs SO_REUSEPORT" serve --port 0 --threads 2
refused "--on-budget epoll: no epoll on Windows" 1 "no epoll" serve --port 0 --stall-ms 100 --on-budget epoll

# --- the supervisor: stalls injected 3 times (at 2, 4 and 6 s, 3 s each) under 8 s of
# ping-pong load from Linux. spin: reported, fenced, the loop rebuilt on a new thread on
# the same completion port; --grace-ms 5000 lets the spinning callback come back (after
# 3 s) and its connection move over, so every byte comes back (with the default 1000 ms
# that connection is reset, by design). block: an alertable SleepEx, ended by the
# supervisor's APC, no rebuild needed. hang: a wait that never ends by itself: rebuilt,
# and its connection reset after --grace-ms, by design, so the client counts one failed
# connection per hang (exit status 1): no byte may be lost or wrong on any connection,
# and the failed connections must be exactly the ones serve reset.
recovery() { # kind, extra serve options...
    local kind=$1 name="--stall-ms 100 --inject $1:3000:2000:3, 100 connections"; shift
    if ! start --stall-ms 100 --inject "$kind:3000:2000:3" "$@"; then
        fail "$name" "no banner"; stop; return
    fi
    bench --conns 100 --duration 8 --drain 10
    stop
    local why="" e rebuilds resets
    e=$(serr)
    rebuilds=$(grep -c 'rebuilt on iocp in' <<<"$e")
    resets=$(grep -c 'was reset: its callback stayed stuck' <<<"$e")
    [ "$(grep -c "injecting $kind for 3000 ms" <<<"$e")" = 3 ] || why+=" not injected 3 times;"
    # the report names where the loop was when the stall began: under wine a WSASend can
    # itself take over 100 ms on a busy host, and a stall that began there and ran on
    # into the injected one is reported once, "in library"
    grep -E -q "^vigil: stall: loop [0-9]* stalled [0-9]* ms in (callback|library)" <<<"$e" || why+=" no stall report;"
    case $kind in
    spin)
        grep -q 'fenced; rebuilding it on a new thread' <<<"$e" || why+=" no fence line;"
        [ "$rebuilds" -ge 1 ] || why+=" no rebuild line;"
        bench_exact || why+=" bench exit $BRC, lost ${B_LOST:-?}, mismatched ${B_MIS:-?}, errors ${B_ERR:-?};" ;;
    block)
        grep -q 'stalled [0-9]* ms in SleepEx.*interrupting it (an APC)' <<<"$e" || why+=" no interruption;"
        bench_exact || why+=" bench exit $BRC, lost ${B_LOST:-?}, mismatched ${B_MIS:-?}, errors ${B_ERR:-?};" ;;
    hang)
        grep -q 'fenced; rebuilding it on a new thread' <<<"$e" || why+=" no fence line;"
        [ "$rebuilds" -ge 1 ] || why+=" no rebuild line;"
        [ "$BRC" -eq 1 ] && [ "${B_LOST:-1}" = 0 ] && [ "${B_MIS:-1}" = 0 ] && [ "${B_CF:-1}" = 0 ] &&
            [ "$resets" -ge 1 ] && [ "${B_ERR:-0}" = "$resets" ] ||
            why+=" bench exit $BRC, lost ${B_LOST:-?}, mismatched ${B_MIS:-?}, errors ${B_ERR:-?} for $resets resets;" ;;
    esac
    stopped_cleanly || why+=" exit status $STOP_RC;"
    if [ -z "$why" ]; then
        local sup
        sup=$(sed -n 's/^vigil serve: supervisor: \(.*\), [0-9]* injected.*/\1/p' <<<"$e")
        ok "$name" "$(numbers); $sup; $resets connections reset"
    else fail "$name" "${why%;}"; fi
}
recovery spin --grace-ms 5000
recovery block --grace-ms 5000
recovery hang

echo "serve: $bad failed"
[ $bad -eq 0 ]
