#!/usr/bin/env bash
# VIGIL_CLI_BUILD=DIR cli.sh: the vigil command as users run it: a short `vigil profile`
# whose SVG is rendered by a real renderer (rsvg-convert) and checked, whose
# index.html is loaded in headless Chromium (browser_check.py), the metrics
# endpoint validated by `promtool check metrics`, bench's spread and its
# starved-round warning, and bad flags.
# Prints TAP (meson's suite cli): "ok - CHECK" or "not ok - CHECK" with the
# end of what it said as "#" lines, or "ok - CHECK # SKIP why" for a check
# that exited 77, then the plan. Exit status 0 if none failed.
set -u
BUILD=${VIGIL_CLI_BUILD:-build}
VIGIL=$BUILD/src/cli/vigil
# a build without io_uring (-During=disabled) profiles epoll alone
if [ "${VIGIL_CLI_URING:-1}" = 1 ]; then BACKENDS="uring epoll"; else BACKENDS="epoll"; fi
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
SPID=
trap '[ -n "$SPID" ] && kill -9 $SPID 2>/dev/null; rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.sh"

profile_runs() {
    local b f
    "$VIGIL" profile --backends "${BACKENDS// /,}" --kinds spin,zombie --duration 3 --stalls 1 \
        --conns 50 --out "$T/prof" >"$T/profile.out" || { cat "$T/profile.out"; return 1; }
    for f in index.html profile.json profile.csv; do
        [ -s "$T/prof/$f" ] || { echo "missing $f"; return 1; }
    done
    for b in $BACKENDS; do
        for f in $b-spin.svg $b-zombie.svg; do
            [ -s "$T/prof/$f" ] || { echo "missing $f"; return 1; }
        done
    done
    grep -q '"lost_bytes":0,' "$T/prof/profile.json" || { echo "bytes lost"; return 1; }
    ! grep -q '"lost_bytes":[1-9]' "$T/prof/profile.json" || { echo "bytes lost"; return 1; }
}
svg_renders() {
    local b s
    for b in $BACKENDS; do
        s=$b-spin
        grep -q 'class="mark stall"' "$T/prof/$s.svg" || { echo "$s: no stall mark"; return 1; }
        grep -q 'class="mark rebuild"' "$T/prof/$s.svg" || { echo "$s: no rebuild mark"; return 1; }
        rsvg-convert -o "$T/$s.png" "$T/prof/$s.svg" || return 1
        python3 "$HERE/png_check.py" "$T/$s.png" || return 1
    done
    set -- $BACKENDS
    grep -q 'class="mark zombie"' "$T/prof/$1-zombie.svg" ||
        { echo "no zombie mark"; grep zombie "$T/profile.out"; return 1; }
}
# What a person opens: index.html in a real browser. No console error (a
# broken page is loaded first to show that errors are caught), every
# timeline inline with its marks titled by the server's lines and each one
# hoverable, legends and ticks right, and a screenshot that is a picture.
report_in_browser() {
    [ -s "$T/prof/index.html" ] || { echo "no report (the profile check failed)"; return 1; }
    python3 "$HERE/browser_check.py" "$T/prof/index.html" --screenshot "$T/report.png"
    local rc=$?
    [ $rc -eq 0 ] || return $rc
    python3 "$HERE/png_check.py" "$T/report.png"
}
metrics_valid() {
    "$VIGIL" serve --port 0 --metrics-port 0 --stall-ms 100 --inject spin:400:300:1 --threads 2 \
        >"$T/serve.out" 2>"$T/serve.err" &
    SPID=$!
    local mp="" p=""
    for _ in $(seq 50); do
        mp=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/metrics.*|\1|p' "$T/serve.out")
        [ -n "$mp" ] && break; sleep 0.1
    done
    p=$(grep -o 'port [0-9]*' "$T/serve.out" | head -1 | awk '{print $2}')
    [ -n "$mp" ] && [ -n "$p" ] || { echo "no ports"; cat "$T/serve.err"; return 1; }
    # traffic, so that a stall is injected and the loop rebuilt
    "$BUILD/bench/loadgen" --port "$p" --conns 20 --duration 1.5 --warmup 0.2 >/dev/null 2>&1
    curl -sf -D "$T/metrics.head" "http://127.0.0.1:$mp/metrics" >"$T/metrics" ||
        { echo "scrape failed"; return 1; }
    local fds now
    fds=$(ls "/proc/$SPID/fd" | wc -l) now=$(date +%s)
    kill -INT $SPID; wait $SPID || { echo "vigil serve exited $?"; cat "$T/serve.err"; SPID=; return 1; }; SPID=
    promtool check metrics <"$T/metrics" || return 1
    grep -q '^vigil_supervisor_rebuilds_total [1-9]' "$T/metrics" || { echo "no rebuild counted"; return 1; }
    grep -q '^vigil_supervisor_detection_latency_seconds_count [1-9]' "$T/metrics" || return 1
    grep -q '^vigil_loop_iterations_total{loop="2"} [1-9]' "$T/metrics" || return 1
    grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8'$'\r''$' "$T/metrics.head" ||
        { echo "Content-Type:"; grep -i content-type "$T/metrics.head"; return 1; }
    # the version and the backend (as the banner names it), once
    local version backend
    version=$("$VIGIL" version | awk '{print $2}')
    backend=$(sed -n 's/^vigil serve: backend \([a-z_]*\) .*/\1/p' "$T/serve.out")
    [ "$(grep -c '^vigil_build_info' "$T/metrics")" -eq 1 ] &&
        grep -qx "vigil_build_info{version=\"$version\",backend=\"$backend\"} 1" "$T/metrics" &&
        grep -qx '# TYPE vigil_build_info gauge' "$T/metrics" ||
        { echo "vigil_build_info:"; grep build_info "$T/metrics"; return 1; }
    # echo: every byte received was sent back, counted the same way
    awk '/^vigil_serve_received_bytes_total/ {r += $2} /^vigil_serve_sent_bytes_total/ {s += $2}
         END {if (r > 0 && s == r) exit 0; print "received " r ", sent " s; exit 1}' "$T/metrics" || return 1
    grep -qx '# TYPE vigil_serve_sent_bytes_total counter' "$T/metrics" || return 1
    # the process_* families, each typed and with a value that fits this process
    local fam
    for fam in process_cpu_seconds_total:counter process_resident_memory_bytes:gauge \
        process_virtual_memory_bytes:gauge process_open_fds:gauge process_max_fds:gauge \
        process_start_time_seconds:gauge; do
        grep -qx "# TYPE ${fam%:*} ${fam#*:}" "$T/metrics" &&
            grep -Eq "^${fam%:*} [0-9.]+(e\+[0-9]+)?\$" "$T/metrics" || { echo "no ${fam%:*}"; return 1; }
    done
    awk -v fds="$fds" -v now="$now" '
        $1 == "process_cpu_seconds_total" && $2 <= 0 {print "cpu " $2; bad = 1}
        $1 == "process_resident_memory_bytes" && ($2 < 1e6 || $2 > 1e10) {print "rss " $2; bad = 1}
        $1 == "process_virtual_memory_bytes" && $2 < 1e6 {print "vsize " $2; bad = 1}
        $1 == "process_open_fds" && ($2 < fds - 3 || $2 > fds + 3) {print "fds " $2 ", /proc: " fds; bad = 1}
        $1 == "process_max_fds" && $2 < fds {print "max fds " $2; bad = 1}
        $1 == "process_start_time_seconds" && ($2 > now + 1 || $2 < now - 120) {print "start " $2; bad = 1}
        END {exit bad}' "$T/metrics" || return 1
}
bench_by_name() {
    "$VIGIL" serve --port 0 >"$T/serve2.out" 2>&1 &
    SPID=$!
    local p=""
    for _ in $(seq 50); do
        p=$(grep -o 'port [0-9]*' "$T/serve2.out" | head -1 | awk '{print $2}')
        [ -n "$p" ] && break; sleep 0.1
    done
    [ -n "$p" ] || { echo "no port"; return 1; }
    "$VIGIL" bench --target "localhost:$p" --duration 0.5 --warmup 0.2 --conns 4 --out "$T/b" \
        >"$T/bench.out" 2>&1 || { cat "$T/bench.out"; return 1; }
    grep -q 'vigil bench: localhost is 127.0.0.1' "$T/bench.out" || { cat "$T/bench.out"; return 1; }
    "$VIGIL" bench --target "no-such-name.invalid:$p" --duration 0.5 >"$T/bench2.out" 2>&1
    [ $? -eq 1 ] && grep -q 'resolving no-such-name.invalid' "$T/bench2.out" || { cat "$T/bench2.out"; return 1; }
    kill -INT $SPID; wait $SPID; SPID=
}
# A listening TCP socket among the process's descriptors (/proc/net/tcp{,6}, state 0A).
listening() { # PID
    local inodes
    inodes=$(find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n')
    [ -n "$inodes" ] || return 1
    awk -v want="$(echo $inodes)" 'BEGIN { n = split(want, a, " "); for (i = 1; i <= n; i++) w[a[i]] = 1 }
        $4 == "0A" && ($10 in w) { f = 1 } END { exit !f }' /proc/net/tcp /proc/net/tcp6
}
# CPU seconds the machine spent busy (user, nice, system, and steal: time the hypervisor
# gave to others; /proc/stat), and those of this shell's children that have ended (bash's
# times). Interrupts are left out: bench's own loopback traffic can be much of them.
machine_cpu_s() { awk '/^cpu / { printf "%.2f\n", ($2 + $3 + $4 + $9) / 100 }' /proc/stat; }
children_cpu_s() { # into the variable named $1 (not in a $(...): a subshell has its own children)
    times >"$T/times"
    printf -v "$1" '%s' "$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } print t }' "$T/times")"
}
# Two short rounds: the medians come with min, max and spread (bench.json, bench.csv),
# the chart has p99 latency and whiskers, and a sound round is not called starved.
bench_spread() {
    local try m0 c0 c1 w0 other=0
    for try in 1 2 3; do
        m0=$(machine_cpu_s) w0=$(date +%s.%N)
        children_cpu_s c0
        "$VIGIL" bench --rounds 2 --duration 0.5 --warmup 0.2 --conns 10 --out "$T/bsp" \
            >"$T/bsp.out" 2>&1 || { cat "$T/bsp.out"; return 1; }
        grep -q 'looks starved' "$T/bsp.out" || break
        # Other work on the machine can starve a round for real (bench then says so
        # rightly): what it used, in CPUs, besides bench and its server.
        children_cpu_s c1
        other=$(awk -v m0="$m0" -v m1="$(machine_cpu_s)" -v c0="$c0" -v c1="$c1" \
            -v w0="$w0" -v w1="$(date +%s.%N)" 'BEGIN { printf "%.2f", ((m1 - m0) - (c1 - c0)) / (w1 - w0) }')
        awk -v o="$other" 'BEGIN { exit !(o > 0.25) }' || break # a quiet machine: a real failure
    done
    python3 - "$T/bsp/bench.json" <<'PY' || return 1
import json, sys
d = json.load(open(sys.argv[1]))
s = d["servers"][0]
for k in ("median", "min", "max", "spread", "noisy", "starved_rounds", "rounds"):
    assert k in s, "no %s in %s" % (k, sorted(s))
assert s["min"]["req_per_s"] <= s["median"]["req_per_s"] <= s["max"]["req_per_s"], s
assert s["spread"]["req_per_s"] >= 0 and "server_cpu_us_per_req" in s["spread"], s["spread"]
assert len(s["rounds"]) == 2 and all(r["starved"] in (True, False) for r in s["rounds"]), s["rounds"]
assert all(0 <= r["server_busy"] and 0 < r["client_busy"] for r in s["rounds"]), s["rounds"]
assert "trustworthy" in d and isinstance(d["warnings"], list), sorted(d)
assert d["trustworthy"] == (not d["warnings"]), d["warnings"]
PY
    grep -q '^"vigil-[a-z]*",min,' "$T/bsp/bench.csv" && grep -q '^"vigil-[a-z]*",max,' "$T/bsp/bench.csv" ||
        { echo "no min/max rows in bench.csv"; cat "$T/bsp/bench.csv"; return 1; }
    grep -q 'p99 latency' "$T/bsp/bench.svg" || { echo "no p99 panel in bench.svg"; return 1; }
    grep -q 'class="whisker"' "$T/bsp/bench.svg" || { echo "no whiskers in bench.svg"; return 1; }
    rsvg-convert -o "$T/bsp.png" "$T/bsp/bench.svg" && python3 "$HERE/png_check.py" "$T/bsp.png" || return 1
    if grep -q 'looks starved' "$T/bsp.out"; then
        echo "a normal run called starved:"; cat "$T/bsp.out"
        if awk -v o="$other" 'BEGIN { exit !(o > 0.25) }'; then
            echo "other processes kept $other CPUs busy in 3 tries: no sound round to judge"
            return 77
        fi
        return 1
    fi
    grep -q '"starved":false' "$T/bsp/bench.json" && grep -q '"starved_rounds":\[\]' "$T/bsp/bench.json" ||
        { cat "$T/bsp/bench.json"; return 1; }
}
# The server bench started is stopped (SIGSTOP) from before the measured part to
# after it: the round is called starved, in the output and in bench.json. The
# --drain covers the stop, so no byte is lost and bench exits 0.
bench_starved() {
    "$VIGIL" bench --rounds 1 --conns 10 --warmup 0.3 --duration 1 --drain 5 --out "$T/bst" \
        >"$T/bst.out" 2>&1 &
    local bp=$! c="" i
    for i in $(seq 100); do # its server, once listening (before: it would not start)
        c=$(pgrep -P $bp | head -1)
        [ -n "$c" ] && listening "$c" && break
        c=""; sleep 0.05
    done
    [ -n "$c" ] || { echo "bench started no server"; kill $bp; wait $bp; cat "$T/bst.out"; return 1; }
    kill -STOP "$c"; sleep 2; kill -CONT "$c"
    wait $bp || { echo "bench exited $?"; cat "$T/bst.out"; return 1; }
    grep -q 'WARNING: vigil-[a-z]* looks starved in 1 of 1 round (round 1: ' "$T/bst.out" ||
        { echo "no starved warning"; cat "$T/bst.out"; return 1; }
    grep -q '"starved":true' "$T/bst/bench.json" && grep -q '"starved_rounds":\[1\]' "$T/bst/bench.json" &&
        grep -q '"trustworthy":false' "$T/bst/bench.json" || { cat "$T/bst/bench.json"; return 1; }
}
bad_flags() {
    local rc
    for args in "profile --duration 0" "profile --kinds nap" "profile --bogus 1" "bench --conns 0" \
        "bench --bogus" "bench --drain 0" "serve --mode gopher" "serve --threads 0" "serve --inject spin:1:1:0" \
        "serve --metrics-port 70000" "nosuchcommand"; do
        "$VIGIL" $args >/dev/null 2>"$T/err"; rc=$?
        [ $rc -eq 2 ] || { echo "vigil $args: exit $rc, not 2"; return 1; }
        grep -q usage "$T/err" || { echo "vigil $args: no usage"; return 1; }
    done
    for c in profile bench serve; do
        "$VIGIL" $c --help | grep -q "usage: vigil $c" || { echo "vigil $c --help"; return 1; }
    done
}

echo "TAP version 13"
check "profile: 4 scenarios, 0 bytes lost, every file written" profile_runs
check "profile: SVG timelines render (rsvg-convert) and carry their marks" svg_renders
check "profile: index.html in headless Chromium: no console error, timelines inline, marks hoverable" \
    report_in_browser
check "serve --metrics-port: promtool check metrics" metrics_valid
check "bench --target NAME:PORT looks the name up on a vigil loop" bench_by_name
check "bench --rounds 2: min, max and spread in bench.json and .csv; p99 and whiskers in the SVG" bench_spread
check "bench: a server stopped over the measured part is called starved" bench_starved
check "bad flags exit 2 with usage; --help" bad_flags
tap_end "cli"
