#!/usr/bin/env python3
"""bench_http.py: `vigil bench --http` as its users run it, against servers
that answer right and servers that do not.

    bench_http.py --vigil PATH   (or VIGIL_EXE=PATH, as meson's suite cli does)

- against `vigil serve --mode http`: every response checked (status,
  framing, the body against --expect-body), exit 0, bench.json with the
  client's CPU per request;
- against servers of this script's own that get one thing wrong each (a
  status, a Content-Length past the body, a body cut by the close, a
  different body): each is counted under its own name and the exit status
  is 1, never a silent pass;
- open loop (--rate) at a rate well below capacity against a server that
  stalls once for 1 s: the p99 counts from when requests were due, so it
  includes the stall, as a closed loop's does not.

Each check has a time limit; the servers bind 127.0.0.1 only. Prints TAP.
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, threading, time, traceback

ARGS = None
BODY = b"hello, bench\n"


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


class Server:
    """A tiny keep-alive HTTP/1.1 server on a thread: reads requests, answers
    each with respond(n) (n: the request's number), bytes as they are, or
    (bytes, True) to close the connection after them."""

    def __init__(self, respond, with_head=False):
        self.respond = respond
        self.with_head = with_head  # respond(n, head) then
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(128)
        self.port = self.ls.getsockname()[1]
        self.n = 0
        self.accepted = 0
        self.heads = []  # the first 50 request heads
        self.lock = threading.Lock()
        self.stop = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def requests(self, c):
        """Yields each request head read from c, its body (by Content-Length) skipped."""
        buf = b""
        while not self.stop:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for field in head.split(b"\r\n")[1:]:
                name, _, value = field.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            buf = buf[length:]
            with self.lock:
                if len(self.heads) < 50:
                    self.heads.append(head)
            yield head

    def serve(self, c):
        try:
            for head in self.requests(c):
                with self.lock:
                    self.n += 1
                    n = self.n
                out = self.respond(n, head) if self.with_head else self.respond(n)  # bytes, or (bytes, True): close
                if isinstance(out, tuple):
                    c.sendall(out[0])
                    return
                c.sendall(out)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.ls.close()


def ok_response(body=BODY, status=b"200 OK", length=None):
    n = len(body) if length is None else length
    return b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(n).encode() + b"\r\n\r\n" + body


def bench(port, *args, path="/", timeout=60, http=True):
    out = tempfile.mkdtemp(prefix="vigil-bench-http-")
    target = ["--http", "http://127.0.0.1:%d%s" % (port, path)] if http else ["--target", "127.0.0.1:%d" % port]
    cmd = [ARGS.vigil, "bench", *target, "--rounds", "1", "--warmup", "0.2", "--duration", "1", "--drain", "1",
           "--out", out, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    data = None
    try:
        with open(os.path.join(out, "bench.json")) as f:
            data = json.load(f)
        with open(os.path.join(out, "bench.svg")) as f:
            data["_svg"] = f.read()  # the chart, for the checks that read it
    except (OSError, ValueError):
        pass
    shutil.rmtree(out, ignore_errors=True)
    return p, data


def median(data):
    return data["servers"][0]["median"]


# ------------------------------------------------------------------ checks

def against_vigil_serve():
    """vigil serve --mode http: all answered, all checked, exit 0."""
    body_file = tempfile.NamedTemporaryFile(delete=False)  # the body serve answers, fetched below
    body_file.close()
    srv = subprocess.Popen([ARGS.vigil, "serve", "--mode", "http", "--port", "0"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        line = srv.stdout.readline()
        check(" port " in line, "no banner: %r" % line)
        port = int(line.rsplit(" port ", 1)[1])
        got = socket.create_connection(("127.0.0.1", port))
        got.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += got.recv(65536)
        head, _, rest = resp.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += got.recv(65536)
        got.close()
        with open(body_file.name, "wb") as f:
            f.write(rest[:length])
        p, data = bench(port, "--conns", "20", "--expect-body", body_file.name, "--pid", str(srv.pid))
        check(p.returncode == 0, "exit %d: %s %s" % (p.returncode, p.stdout, p.stderr))
        m = median(data)
        check(m["requests"] > 100, "only %d requests" % m["requests"])
        check(m["mismatches"] == 0 and m["bad_status"] == 0 and m["bad_framing"] == 0 and m["errors"] == 0,
              "errors in a clean run: %r" % m)
        check(m["client_cpu_us_per_req"] and m["client_cpu_us_per_req"] > 0, "no client CPU: %r" % m)
        check(m["server_cpu_us_per_req"] and m["server_cpu_us_per_req"] > 0, "no server CPU (--pid): %r" % m)
        check(m["p50_us"] <= m["p90_us"] <= m["p99_us"] <= m["max_us"], "percentiles out of order: %r" % m)
        # the per-connection view: each one's longest wait, and all 20 to the end
        check(0 < m["gap_p50_ms"] <= m["gap_p90_ms"] <= m["gap_p99_ms"] <= m["gap_max_ms"] < 1000 and
              m["connections"] == 20 and m["connections_kept"] == 20, "per connection: %r" % m)
        check("per connection, its longest wait: p50 " in p.stdout and "20 of 20 connections to the end" in p.stdout,
              "no per-connection line: %s" % p.stdout)
        # the same run with a body it does not get: every response counted as differing
        with open(body_file.name, "wb") as f:
            f.write(b"#" + rest[1:length])  # one byte off
        p, data = bench(port, "--conns", "4", "--expect-body", body_file.name)
        check(p.returncode == 1, "a wrong body passed: exit %d" % p.returncode)
        m = median(data)
        check(m["mismatches"] > 0 and m["mismatches"] >= m["requests"], "bodies differing: %r" % m)
    finally:
        srv.terminate()
        srv.wait(10)
        os.unlink(body_file.name)


def wrong_servers_are_named():
    """Each kind of wrong answer is counted as what it is, and fails the run."""
    cases = [
        ("status", lambda n: ok_response(status=b"500 Oops") if n % 3 == 0 else ok_response(), "bad_status"),
        # one request at a time: the response that promises more than it sends
        # looks like a slow one until the end, then it is a request unanswered
        ("length past the body", lambda n: ok_response(length=len(BODY) + 5) if n == 7 else ok_response(),
         "lost"),
        ("cut by the close", lambda n: (ok_response()[:-4], True) if n == 5 else ok_response(), "bad_framing"),
        ("body differs", lambda n: ok_response(body=b"hello, BENCH\n") if n % 2 else ok_response(),
         "mismatches"),
        ("bad status line", lambda n: b"HTTP/1.1 2x0 OK\r\n\r\n" if n == 3 else ok_response(), "bad_framing"),
        # answers ahead of the requests: each would seem to answer a request the
        # moment it is sent (and, without end, pile requests up unsent)
        ("answers ahead", lambda n: ok_response() * 50 if n == 4 else ok_response(), "bad_framing"),
    ]
    exp = tempfile.NamedTemporaryFile(delete=False)
    exp.write(BODY)
    exp.close()
    try:
        for name, fn, field in cases:
            srv = Server(fn)
            try:
                p, data = bench(srv.port, "--conns", "4", "--expect-body", exp.name)
                check(p.returncode == 1, "%s: exit %d, not 1" % (name, p.returncode))
                check(data is not None, "%s: no bench.json" % name)
                m = median(data)
                check(m[field] > 0, "%s: %s not counted: %r" % (name, field, m))
                if field == "bad_framing":  # broken framing ends its connection: not kept to the end
                    check(m["connections_kept"] < m["connections"], "%s: all kept: %r" % (name, m))
            finally:
                srv.close()
    finally:
        os.unlink(exp.name)


class Limited(Server):
    """Closes each connection after its 25th response (or after): with a
    Connection: close on it (announce), as nginx does at its
    keepalive_requests, or without a word."""

    def __init__(self, announce, after=25):
        self.announce = announce
        self.after = after
        super().__init__(lambda n: ok_response())

    def serve(self, c):
        try:
            for k, _ in enumerate(self.requests(c), 1):
                if k == self.after:
                    c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 13\r\n\r\n" + BODY
                              if self.announce else ok_response())
                    return
                c.sendall(ok_response())
        except OSError:
            pass
        finally:
            c.close()


def keep_alive_limits_reconnect():
    """Servers that close each connection after 25 responses, saying so or
    not: new connections take their places, counted as reconnects, not
    errors, in closed and open loop; a GET in flight at a silent close is
    sent again on the new connection, a POST is not (the close is then an
    error)."""
    for name, announce in (("Connection: close", True), ("silent close", False)):
        srv = Limited(announce)
        try:
            for mode in ([], ["--rate", "2000"]):
                p, data = bench(srv.port, "--conns", "4", *mode)
                check(data is not None, "%s %s: no bench.json: %s" % (name, mode, p.stderr))
                m = median(data)
                check(p.returncode == 0 and m["errors"] == 0 and m["reconnects"] > 10 and m["requests"] > 100,
                      "%s %s: exit %d, %r, %s" % (name, mode, p.returncode, m, p.stderr[-300:]))
        finally:
            srv.close()
    # a close after every response: some request is always crossing a close,
    # the last ones too, as the run ends (sent again then too: not errors)
    srv = Limited(False, after=1)
    try:
        for _ in range(3):
            p, data = bench(srv.port, "--conns", "4")
            m = median(data)
            check(p.returncode == 0 and m["errors"] == 0 and m["reconnects"] > 10,
                  "a close after each response: exit %d, %r, %s" % (p.returncode, m, p.stderr[-300:]))
    finally:
        srv.close()
    srv = Limited(False)
    try:
        p, data = bench(srv.port, "--conns", "4", "--method", "POST", "--body", "x")
        m = median(data)
        check(p.returncode == 1 and m["errors"] > 0, "POST after a silent close: exit %d, %r" % (p.returncode, m))
    finally:
        srv.close()


def open_loop_counts_the_stall():
    """A server that stops for 1 s once, loaded at 200 requests/s (far below
    what it can do): the open loop's p99 includes the second (requests due
    during it are counted from when they were due); the closed loop's
    median stays small."""
    t_stall = [None]

    def respond(n):
        if n == 150:  # 0.75 s in at 200/s
            t_stall[0] = time.time()
            time.sleep(1.0)
        return ok_response()

    srv = Server(respond)
    try:
        p, data = bench(srv.port, "--conns", "4", "--rate", "200", "--warmup", "0.1", "--duration", "3")
        check(p.returncode == 0, "exit %d: %s %s" % (p.returncode, p.stdout, p.stderr))
        m = median(data)
        check(t_stall[0] is not None, "the stall never happened")
        # at 200/s on 4 connections, a 1 s stall of one connection delays its
        # 50 requests due meanwhile, ~8 % of the 600 measured
        check(m["p99_us"] >= 500000, "open loop p99 %.0f us: the 1 s stall is not in it" % m["p99_us"])
        check(m["max_us"] >= 900000, "open loop max %.0f us: the 1 s stall is not in it" % m["max_us"])
        check(m["gap_max_ms"] >= 900, "the longest wait of a connection, %.0f ms: the stall is not in it" %
              m["gap_max_ms"])
        check(m["p50_us"] < 100000, "open loop p50 %.0f us: the server is fast outside the stall" % m["p50_us"])
        check(550 <= m["requests"] <= 650, "open loop: %d requests measured at 200/s for 3 s" % m["requests"])
        say_note("open loop 200/s with a 1 s stall: p50 %.0f us, p99 %.0f us, max %.0f us" %
                 (m["p50_us"], m["p99_us"], m["max_us"]))
    finally:
        srv.close()


def other_clients_take_turns():
    """--compare-clients: wrk and h2load, where installed, load the same URL
    as rows of their own with their req/s and CPU per request; where not,
    a line says how to install them."""
    srv = Server(lambda n: ok_response())
    try:
        p, data = bench(srv.port, "--conns", "4", "--compare-clients")
        check(p.returncode == 0, "exit %d: %s %s" % (p.returncode, p.stdout, p.stderr))
        rows = {sv["name"]: sv for sv in data["servers"]}
        check("vigil-bench" in rows, "no vigil-bench row: %r" % list(rows))
        for prog, pkg in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
            installed = any(os.access(os.path.join(d, prog), os.X_OK) for d in os.environ["PATH"].split(":"))
            if installed:
                m = rows[prog]["median"] if prog in rows else None
                check(m and m["req_per_s"] > 0 and m["client_cpu_us_per_req"] > 0, "%s: %r" % (prog, m))
                # what its report does not give is null, never a number made up (0, -1)
                check(m["p999_us"] is None and m["max_us"] is None, "%s: p99.9/max %r" % (prog, m))
                if prog == "h2load":
                    check(m["p50_us"] is None and m["p99_us"] is None, "h2load percentiles: %r" % m)
                # vigil bench against it, round by round
                ratio = [r for r in data["client_ratios"] if r["client"] == prog]
                check(len(ratio) == 1 and ratio[0]["rounds"] == 1 and ratio[0]["req_per_s"] > 0 and
                      ratio[0]["client_cpu_us_per_req"] > 0 and
                      ("vigil-bench / %s, medians of per-round ratios (1 round): req/s " % prog) in p.stdout,
                      "%s: no ratio: %r %s" % (prog, data["client_ratios"], p.stdout))
            else:
                check(prog not in rows and ("skipping %s: not installed (apt-get install %s)" % (prog, pkg)) in p.stdout,
                      "%s missing, and not said: %s" % (prog, p.stdout))
        svg = data["_svg"]
        check("Client CPU per request" in svg and "Server CPU per request (no --pid)" in svg and
              ">-1" not in svg and "pingpong" not in svg, "the chart of an HTTP run: %s" % svg[:400])
        p, _ = bench(srv.port, "--compare-clients", http=False)
        check(p.returncode == 2 and "--compare-clients needs --http" in p.stderr, "without --http: %d %s" %
              (p.returncode, p.stderr))
    finally:
        srv.close()


class EchoServer(Server):
    """Echoes what it reads; counts its connections."""

    def __init__(self):
        super().__init__(None)

    def serve(self, c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()


def thread_cpus(pid):
    """The CPUs each thread of pid may run on, as /proc says them (\"0\", \"0-1\")."""
    out = []
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith("Cpus_allowed_list:"):
                        out.append(line.split()[1])
    except OSError:
        pass
    return out


def targets_and_client_cpus():
    """--target A,B: the connections go to each in turn, echo and HTTP (where
    the URL still names the Host field); --client-cpu 0,1 with two threads:
    one thread on each CPU while the load runs."""
    a, b = Server(lambda n: ok_response()), Server(lambda n: ok_response())
    e1, e2 = EchoServer(), EchoServer()
    out = tempfile.mkdtemp(prefix="vigil-bench-http-")
    try:
        two_cpus = len(os.sched_getaffinity(0)) >= 2 and {0, 1} <= os.sched_getaffinity(0)
        pin = ["--threads", "2", "--client-cpu", "0,1"] if two_cpus else []
        cmd = [ARGS.vigil, "bench", "--http", "http://app.example:8080/x", "--target",
               "127.0.0.1:%d,127.0.0.1:%d" % (a.port, b.port), "--conns", "6", "--rounds", "1", "--warmup", "0.5",
               "--duration", "1.5", "--out", out, *pin]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = set()
        deadline = time.time() + 30
        while p.poll() is None and time.time() < deadline:
            seen.update(thread_cpus(p.pid))
            time.sleep(0.05)
        so, se = p.communicate(timeout=30)
        check(p.returncode == 0, "exit %d: %s %s" % (p.returncode, so, se))
        check(a.accepted == 3 and b.accepted == 3, "6 connections over 2 servers: %d and %d" %
              (a.accepted, b.accepted))
        heads = a.heads + b.heads
        check(heads and all(b"\r\nHost: app.example:8080" in h for h in heads), "Host field: %r" % heads[:2])
        with open(os.path.join(out, "bench.json")) as f:
            data = json.load(f)
        if two_cpus:
            check({"0", "1"} <= seen, "threads on CPUs %r, not one on 0 and one on 1" % sorted(seen))
            check(data["client_cpus"] == [0, 1], "client_cpus %r" % data["client_cpus"])
            check("client on CPUs 0,1" in so, "no CPUs in the banner: %s" % so)
        else:
            say_note("one CPU: --client-cpu 0,1 not tried")
        # (bench() gives --target e1 first; the list after it is the one that counts)
        p, _ = bench(e1.port, "--target", "127.0.0.1:%d,127.0.0.1:%d" % (e1.port, e2.port), "--conns", "5",
                     http=False)
        check(p.returncode == 0, "echo: exit %d: %s %s" % (p.returncode, p.stdout, p.stderr))
        check(e1.accepted == 3 and e2.accepted == 2, "echo: 5 connections: %d and %d" % (e1.accepted, e2.accepted))
        for bad in ("127.0.0.1:1,", "127.0.0.1:0", ",".join(["127.0.0.1:9"] * 65)):
            p, _ = bench(e1.port, "--target", bad, http=False)
            check(p.returncode == 2 and "bad --target" in p.stderr, "--target %.30s: %d %s" % (bad, p.returncode, p.stderr))
        for bad in ("1-", "a", "3-1", "1,,2"):
            p, _ = bench(a.port, "--client-cpu", bad)
            check(p.returncode == 2 and "bad --client-cpu" in p.stderr, "--client-cpu %s: %d %s" %
                  (bad, p.returncode, p.stderr))
    finally:
        for s in (a, b, e1, e2):
            s.close()
        shutil.rmtree(out, ignore_errors=True)


def requests_file_in_turn():
    """--requests FILE: the connections go through the file's requests in
    turn (a HEAD among them, whose response has a Content-Length and no
    body, pipelined), each with the URL's Host added where it has none; a
    bad file is refused before any load."""
    seen, order = {}, {}  # order: each connection's (thread's) requests, in order
    lock = threading.Lock()

    def respond(n, head):
        line = head.split(b"\r\n")[0]
        with lock:
            seen[line] = seen.get(line, 0) + 1
            order.setdefault(threading.get_ident(), []).append(line)
        if line.startswith(b"HEAD "):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n"
        body = line.split(b" ")[1]
        return ok_response(body=body)

    srv = Server(respond, with_head=True)
    d = tempfile.mkdtemp(prefix="vigil-bench-reqs-")
    try:
        f = os.path.join(d, "reqs")
        with open(f, "wb") as fh:
            fh.write(b"GET /a HTTP/1.1\n\nHEAD /b HTTP/1.1\r\nX-Try: 1\r\n\r\n\n"
                     b"POST /c HTTP/1.1\nHost: other\nContent-Length: 5\n\nab\r\nc\n")
        p, data = bench(srv.port, "--requests", f, "--conns", "3", "--pipeline", "4")
        check(p.returncode == 0, "exit %d: %s %s" % (p.returncode, p.stdout, p.stderr))
        m = median(data)
        check(m["requests"] > 300 and m["bad_framing"] == 0 and m["errors"] == 0, "%r" % m)
        lines = {b"GET /a HTTP/1.1", b"HEAD /b HTTP/1.1", b"POST /c HTTP/1.1"}
        check(set(seen) == lines, "requests seen: %r" % seen)
        check(len(order) == 3, "%d connections" % len(order))
        for seq in order.values():
            check(all(seq[i] != seq[i + 1] for i in range(len(seq) - 1)), "not in turn: %r" % seq[:6])
        heads = srv.heads
        check(any(h.startswith(b"GET /a") and b"\r\nHost: 127.0.0.1:%d" % srv.port in h for h in heads),
              "no Host added: %r" % heads[:3])
        check(any(h.startswith(b"POST /c") and b"\r\nHost: other\r\n" in h and b"Host: 127" not in h
                  for h in heads), "its own Host not kept: %r" % heads[:3])
        with open(f, "wb") as fh:
            fh.write(b"GET / HTTP/1.1\nTransfer-Encoding: chunked\n\n")
        p, _ = bench(srv.port, "--requests", f)
        check(p.returncode == 2 and "request 1 (line 2): Transfer-Encoding is refused" in p.stderr,
              "chunked request: %d %s" % (p.returncode, p.stderr))
        p, _ = bench(srv.port, "--requests", f, "--method", "PUT")
        check(p.returncode == 2 and "cannot take --method" in p.stderr, "with --method: %d %s" %
              (p.returncode, p.stderr))
    finally:
        srv.close()
        shutil.rmtree(d, ignore_errors=True)


def batch_follows_in_flight():
    """Batched client waits never wait for more responses than are owed: 4
    connections with --client-batch 64 --client-batch-us 100000 would get
    4 answers per 100 ms wait (40/s) if the batch did not follow the
    requests in flight; it is off there, so the run goes at full speed."""
    srv = Server(lambda n: ok_response())
    try:
        p, data = bench(srv.port, "--conns", "4", "--client-batch", "64", "--client-batch-us", "100000")
        check(p.returncode == 0, "exit %d: %s %s" % (p.returncode, p.stdout, p.stderr))
        m = median(data)
        check(m["requests"] > 1000, "%d requests in 1 s: the waits sat out 100 ms for a batch that cannot come"
              % m["requests"])
    finally:
        srv.close()


def started_server():
    """--http /PATH: vigil bench starts `vigil serve --mode http` itself, on
    each backend asked, and measures its CPU per request as it does for echo."""
    for backend in ("uring", "epoll"):
        out = tempfile.mkdtemp(prefix="vigil-bench-http-")
        try:
            p = subprocess.run([ARGS.vigil, "bench", "--http", "/started", "--backend", backend, "--conns", "8",
                                "--rounds", "1", "--warmup", "0.2", "--duration", "1", "--out", out],
                               capture_output=True, text=True, timeout=60)
            check(p.returncode == 0, "%s: exit %d: %s %s" % (backend, p.returncode, p.stdout, p.stderr))
            with open(os.path.join(out, "bench.json")) as f:
                data = json.load(f)
            m = median(data)
            check(m["requests"] > 100 and m["server_cpu_us_per_req"] and m["server_cpu_us_per_req"] > 0 and
                  m["client_cpu_us_per_req"] > 0, "%s: %r" % (backend, m))
            check(data["target"] is None and data["servers"][0]["name"] == "vigil-" + backend, "%s: %r" %
                  (backend, [data["target"], data["servers"][0]["name"]]))
        finally:
            shutil.rmtree(out, ignore_errors=True)
    for args, why in ((["--compare-clients"], "cannot take --target or --compare-clients"),
                      (["--target", "127.0.0.1:9"], "cannot take --target or --compare-clients")):
        p = subprocess.run([ARGS.vigil, "bench", "--http", "/x", *args], capture_output=True, text=True, timeout=30)
        check(p.returncode == 2 and why in p.stderr, "%s: %d %s" % (args, p.returncode, p.stderr))


NOTES = []


def say_note(s):
    NOTES.append(s)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", default=os.environ.get("VIGIL_EXE"))
    ARGS = ap.parse_args()
    if not ARGS.vigil:
        ap.error("--vigil PATH (or VIGIL_EXE) is needed")
    checks = [against_vigil_serve, wrong_servers_are_named, keep_alive_limits_reconnect, open_loop_counts_the_stall,
              other_clients_take_turns, targets_and_client_cpus, requests_file_in_turn, batch_follows_in_flight, started_server]
    print("TAP version 13")
    failed = 0
    for fn in checks:
        t0 = time.time()
        try:
            fn()
            print("ok - %s (%.1f s)" % (fn.__name__, time.time() - t0))
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("not ok - %s" % fn.__name__)
            msg = str(e) if isinstance(e, Fail) else traceback.format_exc()
            for line in msg.splitlines():
                print("#     " + line)
        for n in NOTES:
            print("#     " + n)
        NOTES.clear()
        sys.stdout.flush()
    print("1..%d" % len(checks))
    print("# bench_http: %d passed, %d failed" % (len(checks) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
