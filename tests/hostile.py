#!/usr/bin/env python3
"""hostile.py: `vigil serve` against the clients a server on the internet meets.

    hostile.py --vigil PATH [--backend uring|epoll] [--soak S] [--only NAME]
    (or VIGIL_EXE=PATH VIGIL_TEST_BACKEND=uring|epoll hostile.py, as meson's
    suite hostile does: meson test -C BUILD --suite hostile --setup epoll)

Each check starts its own `vigil serve` (loopback only), attacks it, and
asserts what a deployer relies on: nothing leaks (fds back to where they
were, the server exits 0, which under ASan means LeakSanitizer found
nothing), memory stays within the documented per-connection bound, and a
well-behaved client alongside is served. Every check has a time limit and
every load loop a bound in time and count. Prints TAP: "ok - CHECK (time)"
or "not ok - CHECK" with the reason as "#" lines, then the plan.
"""
import argparse, os, signal, socket, stat, subprocess, sys, tempfile, threading, time, traceback

ARGS = None
MIB = 1 << 20
# The per-connection bound README.md documents: the send queue's high-water
# mark (1 MiB, 256 KiB with --root) plus one response (at most --body-size,
# 1 MiB) plus 64 KiB of requests. RSS is checked against a looser total, as
# the allocator keeps some of what was freed.
RSS_SLACK = 48 * MIB


STARTED = []  # every server, killed at the end if a failed check left it
SAY = threading.Lock()  # two checks run at once: whole lines only


def say(line):
    with SAY:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


class Server:
    """One `vigil serve`, its port (and metrics port), pid, fds and RSS."""

    def __init__(self, *args, root=None, user=None):
        cmd = [ARGS.vigil, "serve", "--port", "0", "--backend", ARGS.backend] + list(args)
        if root:
            cmd += ["--mode", "http", "--root", root]
        if user:  # as an unprivileged user: root reads every file
            cmd = ["setpriv", "--reuid", str(user), "--regid", str(user), "--clear-groups"] + cmd
        env = dict(os.environ)
        if "ASAN_OPTIONS" in env:  # freed memory held in quarantine is not what RSS checks look for
            env["ASAN_OPTIONS"] += ":quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True, env=env)
        STARTED.append(self.p)
        self.metrics = None
        line = self.p.stdout.readline()
        check(" port " in line, "no banner: %r" % line)
        self.port = int(line.rsplit(" port ", 1)[1])
        self.p.stdout.readline()  # features
        if "--metrics-port" in args:
            m = self.p.stdout.readline()
            self.metrics = int(m.rsplit(":", 1)[1].split("/")[0])
        self.pid = self.p.pid  # (setpriv execs vigil in its own process)
        if root:  # the first file calls make what file calls keep (a ring, a pool, and the
            for path in ("/small.txt", "/m64.bin", "/mid.bin", "/big.bin"):  # cache's fd of each large file)
                get(self.port, path)
        time.sleep(0.1)
        self.fds0 = self.fds()

    def fds(self):
        """Sockets and files held: what a leaked connection or download keeps
        (not the rings, eventfds and pipes a pool thread or file ring adds once)."""
        d = "/proc/%d/fd" % self.pid
        n = 0
        for fd in os.listdir(d):
            try:
                t = os.readlink(os.path.join(d, fd))
            except OSError:
                continue
            n += t.startswith("socket:") or (t.startswith("/") and not t.startswith("/dev/"))
        return n

    def rss(self):
        with open("/proc/%d/status" % self.pid) as f:
            for l in f:
                if l.startswith("VmRSS"):
                    return int(l.split()[1]) * 1024
        return 0

    def wait_fds(self, want, secs):
        """Waits until the server holds at most want fds; returns what it holds."""
        end = time.time() + secs
        n = self.fds()
        while n > want and time.time() < end:
            time.sleep(0.05)
            n = self.fds()
        return n

    def stop(self, sig=signal.SIGTERM, within=10):
        self.p.send_signal(sig)
        try:
            rc = self.p.wait(within)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise Fail("vigil serve did not stop within %d s of the signal" % within)
        self.err.seek(0)
        err = self.err.read().decode(errors="replace")
        check(rc == 0, "vigil serve exited %d:\n%s" % (rc, err[-3000:]))
        return err


def conn(port, rcvbuf=None, timeout=5):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:  # before connect: the window is set at the handshake
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def read_until_close(s, limit=64 * MIB, secs=5):
    s.settimeout(secs)
    out = bytearray()
    while len(out) < limit:
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        if not b:
            break
        out += b
    return bytes(out)


def get(port, path, head=False, secs=5):
    """One request on a new connection (Connection: close): (status, body)."""
    s = conn(port, timeout=secs)
    s.sendall(("%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % ("HEAD" if head else "GET", path)).encode())
    r = read_until_close(s, secs=secs)
    s.close()
    check(r.startswith(b"HTTP/1.1 "), "%s: no response (%r)" % (path, r[:80]))
    hdr, _, body = r.partition(b"\r\n\r\n")
    return int(r[9:12]), body


class Polite(threading.Thread):
    """A well-behaved keep-alive client beside an attack: every answer must
    come, whole, within 2 s."""

    def __init__(self, port, path="/", body=None):
        super().__init__(daemon=True)
        self.port, self.path, self.body = port, path, body
        self.stop_at = None
        self.ok = self.errors = 0
        self.first_error = None
        self.halt = False

    def run(self):
        try:
            s = conn(self.port, timeout=2)
            req = ("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % self.path).encode()
            while not self.halt:
                s.sendall(req)
                buf = b""
                while b"\r\n\r\n" not in buf:
                    b = s.recv(65536)
                    check(b, "closed")
                    buf += b
                hdr, _, body = buf.partition(b"\r\n\r\n")
                check(hdr.startswith(b"HTTP/1.1 200"), "status %r" % hdr[:20])
                n = int(hdr.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(body) < n:
                    b = s.recv(65536)
                    check(b, "closed mid-body")
                    body += b
                check(self.body is None or body == self.body, "body differs")
                self.ok += 1
                time.sleep(0.01)
            s.close()
        except Exception as e:  # noqa: BLE001 (reported by the check)
            self.errors += 1
            self.first_error = repr(e)

    def finish(self):
        self.halt = True
        self.join(5)
        check(self.errors == 0, "a well-behaved client failed: %s" % self.first_error)
        check(self.ok > 0, "a well-behaved client got no answer")


def make_root():
    d = tempfile.mkdtemp(prefix="vigil-hostile-")
    os.chmod(d, 0o755)
    with open(os.path.join(d, "small.txt"), "wb") as f:
        f.write(b"hello, hostile\n")
    # sizes: one send; over one 256 KiB chunk; more than socket buffers hold
    for name, size in (("m64.bin", 64 << 10), ("mid.bin", 600 << 10), ("big.bin", 12 * MIB)):
        with open(os.path.join(d, name), "wb") as f:
            f.write(os.urandom(size))
    for name in ("small.txt", "m64.bin", "mid.bin", "big.bin"):
        os.chmod(os.path.join(d, name), 0o644)
    return d


# ------------------------------------------------------------------ checks

def aborted_downloads_do_not_leak(root):
    """Item 1: clients that leave in the middle of a large file."""
    srv = Server(root=root)
    for i in range(40):
        s = conn(srv.port, rcvbuf=16384)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        s.recv(1000)
        time.sleep(0.01)
        reset(s) if i % 2 else s.close()
    n = srv.wait_fds(srv.fds0, 5)
    check(n <= srv.fds0, "fds %d after 40 aborted downloads, %d before" % (n, srv.fds0))
    st, body = get(srv.port, "/big.bin")
    check(st == 200 and len(body) == 12 * MIB, "a whole download after them: %d, %d bytes" % (st, len(body)))
    srv.stop()


def reset_while_paused_is_closed(mode_args, path):
    """Item 2: the server paused receiving (the peer never reads), then RST."""
    srv = Server(*mode_args)
    socks = []
    for _ in range(4):
        s = conn(srv.port, rcvbuf=4096)
        s.setblocking(False)
        payload = (b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode()) * 500 if path else b"x" * 65536
        end, sent = time.time() + 0.3, 0
        while time.time() < end and sent < 64 * MIB:  # until the server stops reading
            try:
                sent += s.send(payload)
            except BlockingIOError:
                time.sleep(0.02)
        socks.append(s)
    for s in socks:
        reset(s)
    n = srv.wait_fds(srv.fds0, 5)
    check(n <= srv.fds0, "fds %d 5 s after 4 resets of paused connections, %d before" % (n, srv.fds0))
    srv.stop()


def pipelined_flood_is_bounded(mode_args, path, port_of="port", root=None):
    """Item 3: a client pipelines requests and never reads a byte."""
    srv = Server(*mode_args, root=root)
    port = srv.metrics if port_of == "metrics" else srv.port
    rss0 = srv.rss()
    req = (b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode()) * 1000
    socks = []
    for _ in range(4):
        s = conn(port, rcvbuf=4096)
        s.setblocking(False)
        socks.append(s)
    end, sent = time.time() + 1.5, 0
    while time.time() < end and sent < 256 * MIB:
        for s in socks:
            try:
                sent += s.send(req)
            except BlockingIOError:
                pass
        time.sleep(0.005)
    grew = srv.rss() - rss0
    check(grew < 4 * 3 * MIB + RSS_SLACK, "RSS grew %d MiB from 4 clients (%d bytes of requests)" % (grew >> 20, sent))
    for s in socks:
        reset(s)
    srv.wait_fds(srv.fds0, 5)
    srv.stop()


def slow_requests_get_408(mode_args, port_of="port", root=None):
    """Item 5: slowloris: a head one byte at a time, or leading CRLFs."""
    srv = Server("--request-ms", "600", *mode_args, root=root)
    port = srv.metrics if port_of == "metrics" else srv.port
    for trickle in (b"GET / HTTP/1.1\r\nX-A: " + b"a" * 200, b"\r\n" * 200):
        s = conn(port)
        t0, got = time.time(), b""
        s.setblocking(False)
        for b in trickle:  # one byte every 20 ms: 4 s in all, if allowed
            try:
                s.send(bytes([b]))
                got += s.recv(4096)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
            if got or time.time() - t0 > 4:
                break
            time.sleep(0.02)
        s.settimeout(3)
        try:
            got += read_until_close(s, secs=3)
        except ConnectionResetError:
            pass
        took = time.time() - t0
        check(got.startswith(b"HTTP/1.1 408"), "a trickled request got %r after %.1f s" % (got[:40], took))
        check(took < 2.5, "408 took %.1f s with --request-ms 600" % took)
        s.close()
    st, _ = get(port, "/metrics" if port_of == "metrics" else "/")
    check(st in (200, 404), "a normal request after: %d" % st)
    srv.stop()


def reset_storm_gives_memory_back():
    """Thousands of connections that each pipeline GETs of a 1 MiB body and
    reset: each holds its bound while it lives, and the memory goes back to
    the system once they are gone (glibc keeps a process's peak otherwise)."""
    srv = Server("--mode", "http", "--body-size", "1048576")
    rss0 = srv.rss()
    stop = threading.Event()

    def storm():
        n = 0
        while not stop.is_set() and n < 20000:
            n += 1
            try:
                s = conn(srv.port, timeout=1)
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * (1 + n % 30))
                reset(s)
            except OSError:
                time.sleep(0.01)

    ths = [threading.Thread(target=storm) for _ in range(4)]
    for t in ths:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in ths:
        t.join()
    # The server works through the storm's accept backlog after the storm
    # (each connection holding up to its bound: about 2 GiB at the top here),
    # slowly on a busy host or under ASan; once the connections are gone the
    # memory must go back within 6 s (the trim runs every 2 s).
    t0 = time.time()
    peak = srv.rss()
    n = srv.wait_fds(srv.fds0, 30)
    check(n <= srv.fds0, "fds %d 30 s after the storm, %d before" % (n, srv.fds0))
    gone = time.time() - t0
    end = time.time() + 6
    while srv.rss() - rss0 > RSS_SLACK and time.time() < end:
        time.sleep(0.2)
    grew = srv.rss() - rss0
    if "ASAN_OPTIONS" not in os.environ:  # ASan's allocator keeps what it had: only leaks count there
        check(grew < RSS_SLACK, "RSS %d MiB above the start 6 s after the storm's last connection went "
              "(%.1f s after the storm; %d MiB when it ended)" % (grew >> 20, gone, (peak - rss0) >> 20))
    srv.stop()


def special_files_are_refused(root):
    """Item 6 and 9: a FIFO, a Unix socket, a device, an unreadable file."""
    fifo = os.path.join(root, "fifo")
    sockp = os.path.join(root, "sock")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    u = socket.socket(socket.AF_UNIX)
    if os.path.exists(sockp):
        os.unlink(sockp)
    u.bind(sockp)
    secret = os.path.join(root, "secret.txt")
    with open(secret, "w") as f:
        f.write("no\n")
    os.chmod(secret, 0o600)
    os.symlink("/dev/zero", os.path.join(root, "zero")) if not os.path.exists(os.path.join(root, "zero")) else None
    srv = Server(root=root, user=65534)
    t0 = time.time()
    for _ in range(5):
        st, _ = get(srv.port, "/fifo", secs=3)
        check(st == 404, "a FIFO: %d" % st)
    check(time.time() - t0 < 3, "5 FIFO requests took %.1f s" % (time.time() - t0))
    for path in ("/sock", "/secret.txt", "/zero"):
        st, _ = get(srv.port, path, secs=3)
        check(st == 404, "%s: %d, not 404" % (path, st))
    st, body = get(srv.port, "/small.txt")
    check(st == 200 and body == b"hello, hostile\n", "a file after them: %d" % st)
    st, _ = get(srv.port, "/%zz")
    check(st == 400, "a bad escape: %d, not 400" % st)
    t0 = time.time()
    srv.stop(within=5)
    u.close()


def half_close_gets_the_answer(root):
    """Item 7: a whole request, then shutdown(SHUT_WR)."""
    srv = Server(root=root)
    for i in range(30):
        s = conn(srv.port)
        s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /mid.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        r = read_until_close(s, secs=5)
        s.close()
        check(r.count(b"HTTP/1.1 200 OK") == 2 and len(r) > 600 << 10,
              "round %d: %d bytes, %d answers" % (i, len(r), r.count(b"HTTP/1.1 200 OK")))
    srv.stop()


def fetch(port, path, headers=(), method="GET", secs=5):
    """One request with extra header lines: (status, {name: value}, body)."""
    s = conn(port, timeout=secs)
    extra = "".join("%s\r\n" % h for h in headers)
    s.sendall(("%s %s HTTP/1.1\r\nHost: t\r\n%sConnection: close\r\n\r\n" % (method, path, extra)).encode())
    r = read_until_close(s, secs=secs)
    s.close()
    check(r.startswith(b"HTTP/1.1 "), "%s: no response (%r)" % (path, r[:80]))
    hdr, _, body = r.partition(b"\r\n\r\n")
    fields = {}
    for line in hdr.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    return int(r[9:12]), fields, body


def files_answer_conditionally(root):
    """Issue 19: validators, 304, single ranges (206/416), If-Range; what
    every static server answers, checked byte for byte."""
    srv = Server(root=root)
    mid = open(os.path.join(root, "mid.bin"), "rb").read()
    small = b"hello, hostile\n"
    for path, data in (("/small.txt", small), ("/mid.bin", mid)):
        st, h, body = fetch(srv.port, path)
        check(st == 200 and body == data, "%s: %d, %d bytes" % (path, st, len(body)))
        etag, lm = h.get("etag", ""), h.get("last-modified", "")
        check(etag.startswith('"') and lm.endswith(" GMT") and h.get("accept-ranges") == "bytes" and
              h.get("date", "").endswith(" GMT"), "%s: validators %r" % (path, h))
        for cond in ("If-None-Match: %s" % etag, "If-None-Match: \"x\", W/%s" % etag, "If-None-Match: *",
                     "If-Modified-Since: %s" % lm):
            st, h2, body = fetch(srv.port, path, [cond])
            check(st == 304 and body == b"" and h2.get("etag") == etag, "%s with %s: %d" % (path, cond, st))
        for cond in ("If-None-Match: \"other\"", "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT",
                     "If-None-Match: \"other\"\r\nIf-Modified-Since: %s" % lm):  # INM decides
            st, _, body = fetch(srv.port, path, [cond])
            check(st == 200 and body == data, "%s with %r: %d" % (path, cond, st))
        n = len(data)
        for rng, lo, hi in (("0-4", 0, 4), ("5-", 5, n - 1), ("-7", n - 7, n - 1), ("3-999999999", 3, n - 1)):
            st, h2, body = fetch(srv.port, path, ["Range: bytes=" + rng])
            check(st == 206 and body == data[lo:hi + 1] and
                  h2.get("content-range") == "bytes %d-%d/%d" % (lo, hi, n),
                  "%s Range %s: %d, %r, %d bytes" % (path, rng, st, h2.get("content-range"), len(body)))
        st, h2, body = fetch(srv.port, path, ["Range: bytes=%d-" % n])
        check(st == 416 and h2.get("content-range") == "bytes */%d" % n and body == b"", "%s past the end: %d" % (path, st))
        for extra in (["Range: bytes=0-1,3-4"], ["Range: bytes=0-4", "If-Range: \"other\""]):
            st, _, body = fetch(srv.port, path, extra)
            check(st == 200 and body == data, "%s with %r: %d, not the whole file" % (path, extra, st))
        st, _, body = fetch(srv.port, path, ["Range: bytes=1-2", "If-Range: %s" % etag])
        check(st == 206 and body == data[1:3], "%s If-Range current: %d" % (path, st))
        st, h2, body = fetch(srv.port, path, ["Range: bytes=1-2"], method="HEAD")
        check(st == 200 and body == b"" and h2.get("content-length") == str(n), "%s HEAD with Range: %d" % (path, st))
    srv.stop()


def files_changes_are_seen_within_a_second():
    """Issue 19: the open-file cache never answers from a file that changed,
    was replaced or was deleted more than FILE_CACHE_VALID_MS (1 s) ago."""
    d = tempfile.mkdtemp(prefix="vigil-cache-")
    os.chmod(d, 0o755)
    past = time.time() - 3600

    def put(name, data, old=True):
        tmp = os.path.join(d, ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # clean pages, then out of memory: the server
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # faults them in on its pool
        if old:
            os.utime(tmp, (past, past))
        os.replace(tmp, os.path.join(d, name))  # a new inode under the name

    small, big = b"version one\n", os.urandom(3 * MIB)
    put("s.txt", small)
    put("b.bin", big)
    srv = Server(root=d)
    for path, data in (("/s.txt", small), ("/b.bin", big)):
        for _ in range(3):  # cached now, and answered from the cache
            st, _, body = fetch(srv.port, path)
            check(st == 200 and body == data, "%s before: %d" % (path, st))

    def seen(path, want_status, want_body, what):
        t0 = time.time()
        while True:
            st, _, body = fetch(srv.port, path)
            if st == want_status and (want_body is None or body == want_body):
                return time.time() - t0
            check(time.time() - t0 < 1.5, "%s %s: still %d (%d bytes) after %.1f s" % (path, what, st, len(body), time.time() - t0))
            time.sleep(0.05)

    # in place, same size, mtime now: within the window, then every time
    with open(os.path.join(d, "s.txt"), "r+b") as f:
        f.write(b"version two\n")
    waits = [seen("/s.txt", 200, b"version two\n", "changed in place")]
    for _ in range(5):
        st, _, body = fetch(srv.port, "/s.txt")
        check(body == b"version two\n", "the old version came back")
    big2 = os.urandom(2 * MIB)  # replaced by a shorter file
    put("b.bin", big2)
    waits.append(seen("/b.bin", 200, big2, "replaced"))
    os.unlink(os.path.join(d, "s.txt"))
    waits.append(seen("/s.txt", 404, None, "deleted"))
    os.unlink(os.path.join(d, "b.bin"))
    waits.append(seen("/b.bin", 404, None, "deleted"))
    say("#     files: changes seen after %s s (the window is 1 s; polled every 50 ms)" % "/".join("%.2f" % w for w in waits))
    srv.stop()
    subprocess.run(["rm", "-rf", d])


def truncated_while_sent_is_cut_not_fatal():
    """Issue 19: a large body goes out from a mapping of the file; a file
    truncated under a download must cut that download (a reset or an early
    close), never kill the server (a SIGBUS) or hang it; the next request
    gets the file as it is now."""
    d = tempfile.mkdtemp(prefix="vigil-trunc-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "t.bin")
    data = os.urandom(8 * MIB)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    srv = Server(root=d)
    socks = []
    for _ in range(4):  # slow readers: most of the file still to send when it shrinks
        s = conn(srv.port, rcvbuf=16384, timeout=5)
        s.sendall(b"GET /t.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        s.recv(4096)
        socks.append(s)
    with open(path, "r+b") as f:
        f.truncate(100 << 10)
    for s in socks:
        got, t0 = 0, time.time()
        while True:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            got += len(b)
        check(got < len(data), "a whole 8 MiB body came from a file of 100 KiB (%d bytes)" % got)
        check(time.time() - t0 < 5, "a cut download hung %.1f s" % (time.time() - t0))
        s.close()
    time.sleep(1.1)  # the cache's window
    st, _, body = fetch(srv.port, "/t.bin")
    check(st == 200 and body == data[:100 << 10], "after the truncation: %d, %d bytes" % (st, len(body)))
    srv.stop()  # exit 0: no signal killed it
    subprocess.run(["rm", "-rf", d])


def cache_churn_is_exact():
    """Issue 19: more files than the open-file cache holds (1,024 a loop):
    entries are evicted while a large body is still being sent from one of
    them (it holds its entry), and every body is exact."""
    d = tempfile.mkdtemp(prefix="vigil-churn-")
    os.chmod(d, 0o755)
    past = time.time() - 3600
    big = os.urandom(4 * MIB)
    files = {"big.bin": big}
    for i in range(1100):
        files["f%d.txt" % i] = ("file %d " % i).encode() * (i % 7 + 1)
    for name, data in files.items():
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, 0o644)
        os.utime(p, (past, past))  # settled: cached, not looked at again within a second
    srv = Server(root=d)
    slow = conn(srv.port, rcvbuf=16384, timeout=10)
    slow.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    first = slow.recv(65536)
    # one keep-alive connection walks every small file twice, pipelined 50 at a time
    s = conn(srv.port, timeout=10)
    names = ["f%d.txt" % i for i in range(1100)] * 2
    buf = b""
    for at in range(0, len(names), 50):
        batch = names[at:at + 50]
        s.sendall(b"".join(b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n" % n.encode() for n in batch))
        for n in batch:
            while b"\r\n\r\n" not in buf:
                b = s.recv(65536)
                check(b, "closed while answering /%s" % n)
                buf += b
            hdr, _, buf = buf.partition(b"\r\n\r\n")
            length = int(hdr.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(buf) < length:
                b = s.recv(65536)
                check(b, "closed mid-body of /%s" % n)
                buf += b
            body, buf = buf[:length], buf[length:]
            check(hdr.startswith(b"HTTP/1.1 200") and body == files[n], "/%s: %r, %d bytes" % (n, hdr[:20], len(body)))
    s.close()
    rest = bytearray(first)  # the big body, its entry long evicted meanwhile
    while True:
        b = slow.recv(65536)
        if not b:
            break
        rest += b
        if b"\r\n\r\n" in rest and len(rest.partition(b"\r\n\r\n")[2]) >= len(big):
            break
    slow.close()
    check(rest.partition(b"\r\n\r\n")[2] == big, "the large body sent across 2,200 evictions differs")
    srv.stop()
    subprocess.run(["rm", "-rf", d])


def large_files_hold_bounded_fds():
    """The open-file cache keeps a large file's fd (its body is sent from the
    file) for at most 128 large files a loop: a client walking 300 of them
    leaves the server with that many more fds, not 300."""
    d = tempfile.mkdtemp(prefix="vigil-fds-")
    os.chmod(d, 0o755)
    past = time.time() - 3600
    for i in range(300):
        p = os.path.join(d, "l%d.bin" % i)
        with open(p, "wb") as f:
            f.write(bytes([i & 255]) * (40 << 10))  # over FILE_SMALL (32 KiB): sent from the file
        os.chmod(p, 0o644)
        os.utime(p, (past, past))  # settled: cached
    srv = Server(root=d)
    for i in range(300):
        st, body = get(srv.port, "/l%d.bin" % i)
        check(st == 200 and body == bytes([i & 255]) * (40 << 10), "/l%d.bin: %d, %d bytes" % (i, st, len(body)))
    time.sleep(0.2)
    n = srv.fds()
    check(srv.fds0 + 100 <= n <= srv.fds0 + 128, "fds %d after 300 large files, %d before" % (n, srv.fds0))
    srv.stop()
    subprocess.run(["rm", "-rf", d])


def rebuild_during_downloads_keeps_every_byte(root):
    """Issue 19: a loop rebuilt (spun callbacks, supervised) while clients
    download a 12 MiB mapped file slowly: every byte arrives, in order."""
    srv = Server("--stall-ms", "100", "--inject", "spin:400:600:3", "--restart-budget", "20/10", root=root)
    want = open(os.path.join(root, "big.bin"), "rb").read()
    results, errors = [], []

    def client(i):
        try:
            end = time.time() + 4
            while time.time() < end:
                s = conn(srv.port, rcvbuf=32768, timeout=10)
                s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                buf = bytearray()
                while b"\r\n\r\n" not in buf:
                    b = s.recv(65536)
                    check(b, "closed before the head")
                    buf += b
                hdr, _, body = bytes(buf).partition(b"\r\n\r\n")
                body = bytearray(body)
                while len(body) < len(want):
                    b = s.recv(min(65536, len(want) - len(body)))
                    check(b, "closed after %d bytes" % len(body))
                    body += b
                    time.sleep(0.001)  # a slow reader: the download spans stalls
                s.close()
                results.append(hdr.startswith(b"HTTP/1.1 200") and bytes(body) == want)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    err = srv.stop()
    rebuilt = err.count(" rebuilt on ")
    check(not errors, "a download failed: %s" % errors[:2])
    check(results and all(results), "%d of %d downloads differ" % (results.count(False), len(results)))
    check(rebuilt >= 1, "no rebuild happened:\n%s" % err[-1500:])
    say("#     rebuilds: %d during %d downloads of 12 MiB, every byte checked" % (rebuilt, len(results)))


def bad_inject_flags_are_refused():
    """Item 9: --inject with a negative number, junk or a zero."""
    for bad in ("spin:-1:100", "spin:100:100junk", "block:100:-5", "hang:0:100", "spin:100:100:0",
                "spin:100", "spin:100:100:1:1", "nap:100:100"):
        p = subprocess.run([ARGS.vigil, "serve", "--port", "0", "--inject", bad], capture_output=True,
                           text=True, timeout=10)
        check(p.returncode == 2 and "bad --inject" in p.stderr, "--inject %s: exit %d" % (bad, p.returncode))


def soak(root):
    """Everything at once, for a bounded time, in every mode, with a polite
    client alongside; then fds and RSS back near where they were."""
    servers = [Server("--mode", "http", "--request-ms", "800", "--metrics-port", "0"),
               Server("--request-ms", "800", root=root), Server("--idle-ms", "2000")]
    rss0 = [s.rss() for s in servers]
    polite = [Polite(servers[0].port), Polite(servers[1].port, "/small.txt", b"hello, hostile\n")]
    for p in polite:
        p.start()
    end = time.time() + ARGS.soak
    attacks = 0
    rnd = 7

    def nxt(n):
        nonlocal rnd
        rnd = (rnd * 1103515245 + 12345) & 0x7FFFFFFF
        return rnd % n

    held = []
    while time.time() < end and attacks < 5000:
        srv = servers[nxt(3)]
        port = srv.metrics if srv is servers[0] and nxt(4) == 0 else srv.port
        kind = nxt(5)
        try:
            s = conn(port, rcvbuf=4096, timeout=1)
            if kind == 0:  # aborted download / reset mid-response
                s.sendall(b"GET /mid.bin HTTP/1.1\r\nHost: t\r\n\r\n" if srv is servers[1] else b"GET / HTTP/1.1\r\n\r\n" * 50)
                time.sleep(0.005)
                reset(s)
            elif kind == 1:  # pipelined flood, never read, then reset
                s.setblocking(False)
                for _ in range(20):
                    try:
                        s.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n" * 400)
                    except BlockingIOError:
                        break
                reset(s)
            elif kind == 2:  # slowloris, left to the request deadline
                s.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
                held.append(s)
            elif kind == 3:  # half-close after a request
                s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                s.shutdown(socket.SHUT_WR)
                s.close()
            else:  # garbage
                s.sendall(bytes([nxt(256) for _ in range(64)]) + b"\r\n\r\n")
                s.close()
        except OSError:
            pass
        attacks += 1
        if len(held) > 50:
            for h in held:
                h.close()
            held = []
        time.sleep(0.002)
    for h in held:
        h.close()
    for p in polite:
        p.finish()
    grown = []
    for srv, r0 in zip(servers, rss0):
        n = srv.wait_fds(srv.fds0, 8)
        check(n <= srv.fds0, "fds %d after the soak, %d before" % (n, srv.fds0))
        grew = srv.rss() - r0
        grown.append(grew)
        check(grew < RSS_SLACK, "RSS %d MiB above where it started" % (grew >> 20))
    say("#     soak: %d attacks in %.0f s; polite clients %d and %d answers, no error; "
          "fds back to baseline; RSS +%s KiB (http+metrics, files, echo)" %
          (attacks, ARGS.soak, polite[0].ok, polite[1].ok, "/".join(str(g >> 10) for g in grown)))
    for srv in servers:
        srv.stop()


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", default=os.environ.get("VIGIL_EXE"))
    ap.add_argument("--backend", default=os.environ.get("VIGIL_TEST_BACKEND", "auto"))
    ap.add_argument("--soak", type=float, default=4)
    ap.add_argument("--only", default="")
    ARGS = ap.parse_args()
    if not ARGS.vigil:
        ap.error("--vigil PATH (or VIGIL_EXE) is needed")
    if ARGS.backend.startswith("uring"):
        ARGS.backend = "uring"
    root = make_root()
    checks = [
        ("soak", lambda: soak(root)),  # the longest first: the rest runs beside it
        ("aborted_downloads_do_not_leak", lambda: aborted_downloads_do_not_leak(root)),
        ("reset_while_paused_is_closed/echo", lambda: reset_while_paused_is_closed([], None)),
        ("reset_while_paused_is_closed/http", lambda: reset_while_paused_is_closed(["--mode", "http", "--body-size", "65536"], "/")),
        ("pipelined_flood_is_bounded/files", lambda: pipelined_flood_is_bounded([], "/m64.bin", root=root)),
        ("pipelined_flood_is_bounded/http", lambda: pipelined_flood_is_bounded(["--mode", "http", "--body-size", "1048576"], "/")),
        ("pipelined_flood_is_bounded/metrics", lambda: pipelined_flood_is_bounded(["--metrics-port", "0"], "/metrics", "metrics")),
        ("slow_requests_get_408/http", lambda: slow_requests_get_408(["--mode", "http"])),
        ("slow_requests_get_408/files", lambda: slow_requests_get_408([], root=root)),
        ("slow_requests_get_408/metrics", lambda: slow_requests_get_408(["--metrics-port", "0"], "metrics")),
        ("reset_storm_gives_memory_back", reset_storm_gives_memory_back),
        ("special_files_are_refused", lambda: special_files_are_refused(root)),
        ("half_close_gets_the_answer", lambda: half_close_gets_the_answer(root)),
        ("bad_inject_flags_are_refused", bad_inject_flags_are_refused),
        ("files_answer_conditionally", lambda: files_answer_conditionally(root)),
        ("files_changes_are_seen_within_a_second", files_changes_are_seen_within_a_second),
        ("rebuild_during_downloads_keeps_every_byte", lambda: rebuild_during_downloads_keeps_every_byte(root)),
        ("truncated_while_sent_is_cut_not_fatal", truncated_while_sent_is_cut_not_fatal),
        ("cache_churn_is_exact", cache_churn_is_exact),
        ("large_files_hold_bounded_fds", large_files_hold_bounded_fds),
    ]
    # two at a time (each with its own servers), as the suites run with --jobs 2
    todo = [(n, f) for n, f in checks if not ARGS.only or ARGS.only in n]
    say("TAP version 13")
    lock = threading.Lock()
    counts = {"passed": 0, "failed": 0}

    def one(name, fn):
        t0 = time.time()
        result = [None]

        def body():
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                result[0] = e if isinstance(e, Fail) else Fail(traceback.format_exc())

        th = threading.Thread(target=body, daemon=True)
        th.start()
        th.join(60)  # each check has a minute
        if th.is_alive():
            result[0] = Fail("timed out after 60 s")
        with lock:
            if result[0] is None:
                counts["passed"] += 1
                say("ok - %s (%.1f s)" % (name, time.time() - t0))
            else:
                counts["failed"] += 1
                say("\n".join(["not ok - %s" % name] + ["#     " + l for l in str(result[0]).splitlines()]))

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                name, fn = todo.pop(0)
            one(name, fn)

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    passed, failed = counts["passed"], counts["failed"]
    for p in STARTED:
        if p.poll() is None:
            p.kill()
            p.wait()
    subprocess.run(["rm", "-rf", root])
    say("1..%d" % (passed + failed))
    say("# hostile: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
