#!/usr/bin/env bash
# examples.sh DIR: runs the programs of examples/ (built in DIR, e.g.
# build/examples) as a user would, over loopback only, and checks what they
# do. Prints TAP: the plan "1..N", then "ok N - CHECK" or "not ok N - CHECK"
# with the end of what the check said as "#" lines; a check that cannot run
# here says "ok N - CHECK # SKIP why". Every check is bounded (timeout(1), 120
# s at most; each client and wait inside it has its own, shorter, limit).
# Exit status 0 if all passed. Needs python3 (clients, and the HTTP server).
set -u
DIR=${1:-}
if [ -z "$DIR" ] || [ ! -x "$DIR/echo" ]; then
    echo "usage: examples.sh DIR   (DIR: the built examples, e.g. build/examples)" >&2
    exit 2
fi
DIR=$(cd "$DIR" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export DIR T

# start NAME: runs DIR/NAME 0 in the background (stdout $T/NAME.out, stderr
# $T/NAME.err), waits up to 5 s for its first line "listening on 127.0.0.1:P",
# and sets SPID and PORT. The check's EXIT trap kills it if it is still there.
start() {
    "$DIR/$1" 0 >"$T/$1.out" 2>"$T/$1.err" &
    SPID=$!
    trap 'kill -9 $SPID 2>/dev/null' EXIT
    for _ in $(seq 50); do
        PORT=$(sed -n '1s/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/$1.out")
        [ -n "$PORT" ] && return 0
        kill -0 $SPID 2>/dev/null || break
        sleep 0.1
    done
    echo "$1 did not print 'listening on 127.0.0.1:PORT'; it said:"; cat "$T/$1.out" "$T/$1.err"
    return 1
}
# stop SIG NAME: sends SIG, waits up to 5 s; the exit status must be 0.
stop() {
    kill -"$1" $SPID
    for _ in $(seq 50); do
        kill -0 $SPID 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 $SPID 2>/dev/null; then echo "$2 still runs 5 s after SIG$1"; return 1; fi
    wait $SPID; local rc=$?
    [ $rc -eq 0 ] || { echo "$2 exited $rc after SIG$1; stderr:"; cat "$T/$2.err"; return 1; }
    clean "$T/$2.err"
}
# clean FILE: no sanitizer report in what a program said (ASan builds).
clean() {
    ! grep -qE 'Sanitizer|runtime error:' "$1" || { echo "sanitizer report:"; cat "$1"; return 1; }
}
# usage_on_bad_args NAME ARGS...: exit 2 and "usage" on stderr.
usage_on_bad_args() {
    local name=$1; shift
    timeout 5 "$DIR/$name" "$@" >/dev/null 2>"$T/usage.err"; local rc=$?
    [ $rc -eq 2 ] && grep -q '^usage: ' "$T/usage.err" ||
        { echo "$name $*: exit $rc, stderr: $(cat "$T/usage.err")"; return 1; }
}
# http_server DIR2 [slow]: python's server on a free port for DIR2, sets HPORT
# (HPID killed by the caller's trap). slow: a path with "?delay" waits 1 s.
http_server() {
    HPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    if [ "${2:-}" = slow ]; then
        (cd "$1" && exec python3 -c '
import http.server, sys, time
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if "?delay" in self.path: time.sleep(1)
        super().do_GET()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$HPORT") &
    else
        (cd "$1" && exec python3 -m http.server --bind 127.0.0.1 "$HPORT") >"$T/http.log" 2>&1 &
    fi
    HPID=$!
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/$HPORT) 2>/dev/null && return 0
        sleep 0.1
    done
    echo "the python HTTP server did not start"; return 1
}
export -f start stop clean usage_on_bad_args http_server

# ------------------------------------------------------------------ checks

echo_usage() {
    usage_on_bad_args echo abc && usage_on_bad_args echo 70000 && usage_on_bad_args echo 1 2
}
echo_bytes() { # 3 clients at once, 2 MiB each, sent while reading, then half-closed
    start echo || return 1
    timeout 30 python3 - "$PORT" <<'EOF' || return 1
import os, socket, sys, threading
port = int(sys.argv[1])
def client(res, i):
    s = socket.create_connection(("127.0.0.1", port)); data = os.urandom(2 << 20)
    def w(): s.sendall(data); s.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=w); t.start(); got = bytearray()
    while (b := s.recv(65536)): got += b
    t.join(); res[i] = bytes(got) == data or f"client {i}: {len(got)} bytes back, wrong"
res = [None] * 3
ts = [threading.Thread(target=client, args=(res, i)) for i in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
bad = [r for r in res if r is not True]
if bad: print(*bad, sep="\n"); sys.exit(1)
EOF
    exec 3<>/dev/tcp/127.0.0.1/$PORT && printf 'left open\n' >&3  # still connected at the end
    stop TERM echo
}

chat_broadcast() {
    usage_on_bad_args chat x || return 1
    start chat || return 1
    timeout 20 python3 - "$PORT" <<'EOF' || return 1
import socket, sys, time
port = int(sys.argv[1])
def join(nick):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(nick + b"\n"); s.settimeout(3); return s
def expect(s, want):
    got = b""
    while len(got) < len(want): got += s.recv(4096)
    assert got == want, f"wanted {want!r}, got {got!r}"
a, b, c = join(b"alice"), join(b"bob"), join(b"carol")
time.sleep(0.3)  # every nickname is in
a.sendall(b"hello "); time.sleep(0.1); a.sendall(b"all\nsecond\r\n")  # split, and CRLF
expect(b, b"alice: hello all\nalice: second\n"); expect(c, b"alice: hello all\nalice: second\n")
c.sendall(b"hi alice\n")
expect(a, b"carol: hi alice\n"); expect(b, b"carol: hi alice\n")
a.settimeout(0.3)
try: extra = a.recv(100)
except socket.timeout: extra = b""
assert extra == b"", f"the sender got its own line back: {extra!r}"
EOF
    stop INT chat
}
chat_backpressure() {
    # A client that never reads, with a small receive buffer. Honest promise:
    # the room chats until that client's queue passes the watermark, then
    # everyone's reading pauses (no line is lost, nobody's queue grows), and
    # the send deadline (5 s) drops the dead reader; the room then goes on.
    # At SIGINT the others get "server: bye" and EOF.
    start chat || return 1
    timeout 40 python3 - "$PORT" <<'EOF' || return 1
import socket, sys, threading, time
port = int(sys.argv[1])
z = socket.socket(); z.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
z.connect(("127.0.0.1", port)); z.sendall(b"zombie\n")
a = socket.create_connection(("127.0.0.1", port)); a.sendall(b"alice\n")
b = socket.create_connection(("127.0.0.1", port)); b.sendall(b"bob\n")
time.sleep(0.3)
line = b"x" * 200 + b"\n"
def flood():  # alice writes as fast as the server takes it, for 12 s
    a.settimeout(0.2); t0 = time.time()
    while time.time() - t0 < 12:
        try: a.send(line * 10)
        except socket.timeout: pass
th = threading.Thread(target=flood); th.start()
b.settimeout(0.1); t0 = last = time.time(); got = 0; gaps = []; before = None
while time.time() - t0 < 12:
    try: d = b.recv(65536)
    except socket.timeout: continue
    assert d, "bob was disconnected"
    now = time.time()
    if now - last > 1.0: gaps.append((round(last - t0, 2), round(now - last, 2)))
    if before is None and gaps: before = got
    got += len(d); last = now
th.join()
print("bob got", got, "bytes; gaps over 1 s (start, length):", gaps)
assert gaps, "no pause: the dead reader never filled up?"
assert before and before > 0, "bob got nothing before the room paused"
assert 3.0 <= gaps[0][1] <= 8.0, "the pause should last about the 5 s send deadline"
assert got > before, "the room did not go on after the dead reader was dropped"
z.settimeout(3); n = 0
try:
    while (d := z.recv(65536)): n += len(d)
except ConnectionResetError: pass
print("the dead reader was disconnected after", n, "bytes")
EOF
    timeout 10 python3 - "$PORT" <<'EOF' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(b"dave\n"); s.settimeout(8)
got = b""
while (d := s.recv(4096)): got += d
assert got.endswith(b"server: bye\n"), f"got {got[-50:]!r} before EOF"
EOF
    local cpid=$!
    sleep 0.5
    stop INT chat || return 1
    wait $cpid || { echo "no 'server: bye' then EOF at SIGINT"; return 1; }
}

fetch_file() {
    usage_on_bad_args fetch && usage_on_bad_args fetch localhost 80 /x || return 1
    mkdir -p "$T/www" && head -c 1048577 /dev/urandom >"$T/www/data.bin" || return 1
    http_server "$T/www" || return 1
    trap 'kill $HPID 2>/dev/null' EXIT
    # By name: localhost may give ::1 first, where nothing listens; the next address answers.
    timeout 20 "$DIR/fetch" localhost "$HPORT" /data.bin "$T/out.bin" >"$T/fetch.out" 2>&1 ||
        { echo "fetch exited $?"; cat "$T/fetch.out"; return 1; }
    clean "$T/fetch.out" && cmp "$T/www/data.bin" "$T/out.bin" || return 1
    grep -q '^HTTP/1.[01] 200 ' "$T/fetch.out" && grep -q '^1048577 bytes' "$T/fetch.out" ||
        { cat "$T/fetch.out"; return 1; }
    timeout 20 "$DIR/fetch" 127.0.0.1 "$HPORT" /missing "$T/out2" >"$T/fetch.out" 2>&1
    [ $? -eq 1 ] && grep -q ' 404 ' "$T/fetch.out" || { echo "404:"; cat "$T/fetch.out"; return 1; }
    kill $HPID; wait $HPID 2>/dev/null  # now nothing listens there
    timeout 20 "$DIR/fetch" 127.0.0.1 "$HPORT" /data.bin "$T/out3" >"$T/fetch.out" 2>&1
    [ $? -eq 1 ] && grep -qi 'refused' "$T/fetch.out" || { echo "refused:"; cat "$T/fetch.out"; return 1; }
}

supervised_stall() {
    usage_on_bad_args supervised x || return 1
    start supervised || return 1
    timeout 30 python3 - "$PORT" <<'EOF' || return 1
import socket, sys, time
port = int(sys.argv[1])
def ping(s, m):
    s.sendall(m); got = b""
    while len(got) < len(m): got += s.recv(100)
    assert got == m, f"sent {m!r}, got {got!r}"
cs = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
st = socket.create_connection(("127.0.0.1", port))
for s in cs + [st]: s.settimeout(5)
for i, s in enumerate(cs): ping(s, b"warm %d\n" % i)
st.sendall(b"stall\n"); t0 = time.time(); worst = 0; n = 0
while time.time() - t0 < 2.5:  # the spin lasts 1.5 s
    for i, s in enumerate(cs):
        a = time.time(); ping(s, b"ping %d %d\n" % (i, n)); worst = max(worst, time.time() - a); n += 1
    time.sleep(0.01)
print(f"{n} echoes while one callback spun, the slowest {worst*1000:.0f} ms")
assert worst < 1.0, "the other clients waited for the stuck callback"
got = b""
while len(got) < 6: got += st.recv(100)
assert got == b"stall\n"
ping(st, b"still here\n")  # the stalled client kept its connection (grace 3 s)
EOF
    exec 3<>/dev/tcp/127.0.0.1/$PORT && printf 'half a li' >&3  # still connected at the end
    stop INT supervised || return 1
    grep -q 'stall' "$T/supervised.err" && grep -q 'rebuilt' "$T/supervised.err" ||
        { echo "no stall report and rebuild in stderr:"; cat "$T/supervised.err"; return 1; }
}

offload_answers() {
    usage_on_bad_args offload -1 || return 1
    start offload || return 1
    timeout 60 python3 - "$PORT" <<'EOF' || return 1
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.settimeout(30)
s.sendall(b"1\n10\n1000\nabc\n100000\n0\n")  # pipelined: answered in order
want = [b"prime(1) = 2", b"prime(10) = 29", b"prime(1000) = 7919", b"error: send a number 1..5000000",
        b"prime(100000) = 1299709", b"error: send a number 1..5000000"]
got = b""
while got.count(b"\n") < len(want): got += s.recv(4096)
assert got.split(b"\n")[:-1] == want, got
EOF
    stop INT offload
}
offload_concurrent() {
    start offload || return 1
    timeout 30 python3 - "$PORT" <<'EOF' || return 1
import socket, sys, time
port = int(sys.argv[1])
slow = socket.create_connection(("127.0.0.1", port)); fast = socket.create_connection(("127.0.0.1", port))
slow.sendall(b"2000000\n"); time.sleep(0.2)  # seconds of work on the pool
t = time.time(); fast.sendall(b"5\n"); fast.settimeout(2)
assert fast.recv(100) == b"prime(5) = 11\n"
took = time.time() - t
slow.settimeout(0.05)
try: early = slow.recv(100)
except socket.timeout: early = b""
assert early == b"", "the slow answer came first?"
print(f"fast answer in {took*1000:.0f} ms while the slow one runs")
assert took < 1.0
EOF
    # SIGINT while a client is connected and its search runs: the search gives
    # up, the client's state is freed (ASan), exit 0 in < 5 s.
    exec 3<>/dev/tcp/127.0.0.1/$PORT && printf '3000000\n' >&3 && sleep 0.2
    stop INT offload
}

curl_concurrent() {
    mkdir -p "$T/www2" && head -c 300001 /dev/urandom >"$T/www2/a.bin" &&
        head -c 7 /dev/urandom >"$T/www2/b.bin" || return 1
    http_server "$T/www2" slow || return 1
    trap 'kill $HPID 2>/dev/null' EXIT
    usage_on_bad_args curl_poll || return 1
    local u=http://127.0.0.1:$HPORT t0 t1
    t0=$(date +%s%N)
    timeout 20 "$DIR/curl_poll" "$u/a.bin?delay" "$u/b.bin?delay" >"$T/curl.out" 2>&1 ||
        { echo "curl_poll exited $?"; cat "$T/curl.out"; return 1; }
    t1=$(date +%s%N)
    clean "$T/curl.out" || return 1
    grep -qx "$u/a.bin?delay: 200, 300001 bytes" "$T/curl.out" &&
        grep -qx "$u/b.bin?delay: 200, 7 bytes" "$T/curl.out" || { cat "$T/curl.out"; return 1; }
    # Each answer waits 1 s at the server: both in under 1.8 s means at once.
    [ $(((t1 - t0) / 1000000)) -lt 1800 ] || { echo "took $(((t1 - t0) / 1000000)) ms"; return 1; }
    timeout 20 "$DIR/curl_poll" "$u/b.bin" "$u/nope" >"$T/curl.out" 2>&1
    [ $? -eq 1 ] && grep -qx "$u/nope: 404, .* bytes" "$T/curl.out" || { cat "$T/curl.out"; return 1; }
}
export -f echo_usage echo_bytes chat_broadcast chat_backpressure fetch_file supervised_stall \
    offload_answers offload_concurrent curl_concurrent

# ------------------------------------------------------------------ runner

CHECKS=(
    "echo_usage|echo: usage on bad arguments, exit 2"
    "echo_bytes|echo: 3 clients x 2 MiB echoed byte for byte; SIGTERM ends it, exit 0"
    "chat_broadcast|chat: lines reach every other client as 'nick: line'"
    "chat_backpressure|chat: a client that never reads pauses the room, is dropped, the room goes on; SIGINT says bye"
    "fetch_file|fetch: by name to OUTFILE, byte for byte; 404 and refused exit 1"
    "supervised_stall|supervised: a 1.5 s spin is fenced and rebuilt while the others are echoed"
    "offload_answers|offload: pipelined lines answered in order, correctly"
    "offload_concurrent|offload: a slow search does not hold up another client; SIGINT ends it"
    "curl_concurrent|curl_poll: two URLs at once, sizes right; 404 exits 1"
)
echo "1..${#CHECKS[@]}"
n=0 failed=0
for c in "${CHECKS[@]}"; do
    n=$((n + 1)) fn=${c%%|*} name=${c#*|}
    if [ "$fn" = curl_concurrent ] && [ ! -x "$DIR/curl_poll" ]; then
        echo "ok $n - $name # SKIP libcurl not built"
        continue
    fi
    timeout -k 5 120 bash -c "trap 'exit 143' TERM; $fn" >"$T/check.log" 2>&1; rc=$?
    if [ $rc -eq 0 ]; then
        echo "ok $n - $name"
        sed '/^$/d; s/^/# /' "$T/check.log" # what the check measured, if it said anything
    else
        failed=$((failed + 1))
        echo "not ok $n - $name"
        [ $rc -eq 124 ] && echo "# timed out after 120 s"
        tail -25 "$T/check.log" | sed 's/^/# /'
    fi
done
[ $failed -eq 0 ]
