/*
 * platform_test.c: src/os/win/platform.c under wine64, one line per check
 * ("platform: NAME: ok|FAIL ...") and the number of failures as the exit
 * status, like iocp_probe.c.
 */
#include "os/platform.h"

#include <winsock2.h>
#include <windows.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

int main(void) {
    check_prefix = "platform";
    uint64_t t0 = vigil__clock_ns();
    Sleep(50);
    uint64_t dt = vigil__clock_ns() - t0;
    check("the clock moves forward at the right pace", dt >= 40000000ull && dt < 1000000000ull, "%llu ns for 50 ms",
          (unsigned long long)dt);

    vigil__addr a;
    int r4 = vigil__addr_parse("127.0.0.1", 80, &a);
    int r6 = vigil__addr_parse("::1", 80, &a);
    int bad = vigil__addr_parse("localhost", 80, &a);
    int un = vigil__addr_unix("/tmp/x", &a);
    check("numeric addresses parse, names do not, Unix sockets are not offered",
          r4 == 0 && r6 == 0 && bad == -EINVAL && un == -EAFNOSUPPORT, "%d %d %d %d", r4, r6, bad, un);

    vigil_socket l, c;
    vigil__addr_parse("127.0.0.1", 0, &a);
    int rc = vigil__tcp_socket(&a, &l);
    int lr = rc == 0 ? vigil__tcp_bind_listen(l, &a, 16, 0) : rc;
    int port = vigil__socket_port(l);
    int rp = vigil__tcp_bind_listen(l, &a, 16, 1);
    check("a listener binds a free port; SO_REUSEPORT is refused, not faked", rc == 0 && lr == 0 && port > 0 &&
          rp == -ENOTSUP, "socket %d listen %d port %d reuseport %d", rc, lr, port, rp);

    vigil__addr to;
    vigil__addr_parse("127.0.0.1", (uint16_t)port, &to);
    rc = vigil__tcp_socket(&to, &c);
    int cr = connect((SOCKET)c, (const struct sockaddr *)to.bytes, (int)to.len);
    int cerr = cr ? vigil__win_errno((unsigned long)WSAGetLastError()) : 0;
    fd_set w;
    FD_ZERO(&w);
    FD_SET((SOCKET)c, &w);
    struct timeval tv = {2, 0};
    select(0, NULL, &w, NULL, &tv);
    int err = 0;
    int state = vigil__socket_connect_state(c, &err);
    check("a non-blocking connect says EAGAIN, then the socket is connected", rc == 0 && cerr == -EAGAIN &&
          state == 1, "connect %d (%d), state %d err %d", cr, cerr, state, err);
    SOCKET s = accept((SOCKET)l, NULL, NULL);
    int ar = vigil__socket_prepare_accepted((vigil_socket)s);
    int v = -1;
    int gr = vigil__socket_getopt((vigil_socket)s, VIGIL_OPT_NODELAY, &v);
    int sr = vigil__socket_setopt((vigil_socket)s, VIGIL_OPT_SNDBUF, 65536);
    int bo = vigil__socket_setopt((vigil_socket)s, 99, 1);
    check("accepted sockets: non-blocking, TCP_NODELAY, options by vigil's names", s != INVALID_SOCKET && ar == 0 &&
          gr == 0 && v != 0 && sr == 0 && bo == -EINVAL, "prepare %d nodelay %d (%d) sndbuf %d bad %d", ar, gr, v, sr,
          bo);
    char buf[8];
    int n = recv(s, buf, sizeof(buf), 0);
    int rerr = n < 0 ? vigil__win_errno((unsigned long)WSAGetLastError()) : 0;
    int ad = vigil__socket_adopt((vigil_socket)s, false);
    int adl = vigil__socket_adopt(l, true);
    int wrong = vigil__socket_adopt(l, false);
    check("an empty non-blocking socket says EAGAIN; adopt checks what it is given", n < 0 && rerr == -EAGAIN &&
          ad == 0 && adl == 0 && wrong == -EINVAL, "recv %d (%d), adopt %d %d %d", n, rerr, ad, adl, wrong);
    int sh = vigil__socket_shutdown(c, VIGIL_SHUT_WR);
    Sleep(50);
    n = recv(s, buf, sizeof(buf), 0);
    check("shutdown(VIGIL_SHUT_WR) is a FIN the peer reads as EOF", sh == 0 && n == 0, "shutdown %d, recv %d", sh, n);
    /* keepalive: the TCP options on Windows 10 1709+, SIO_KEEPALIVE_VALS
     * (count fixed at 10) where they are refused, as under wine 8 */
    int on = -1, cnt = -1; /* wine writes SO_KEEPALIVE as one byte: its low byte is read */
    int len = sizeof(on);
    int k1 = vigil__socket_keepalive((vigil_socket)s, 7, 3, 10);
    getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, (char *)&on, &len);
    int on1 = on & 0xff;
    int k2 = vigil__socket_keepalive((vigil_socket)s, 7, 3, 4);
    len = sizeof(cnt);
    int has_cnt = getsockopt(s, IPPROTO_TCP, 16 /* TCP_KEEPCNT */, (char *)&cnt, &len) == 0;
    int kb = vigil__socket_keepalive((vigil_socket)s, 0, 3, 4);
    int k0 = vigil__socket_keepalive((vigil_socket)s, 0, 0, 0);
    on = -1;
    len = sizeof(on);
    getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, (char *)&on, &len);
    on &= 0xff;
    check("keepalive: set, a count the system fixes refused (or set where it can be), off, bad values",
          k1 == 0 && on1 == 1 && (has_cnt ? k2 == 0 && cnt == 4 : k2 == -ENOTSUP) && kb == -EINVAL && k0 == 0 &&
              on == 0,
          "7/3/10 %d (on %d), 7/3/4 %d (count %s %d), 0/3/4 %d, off %d (on %d)", k1, on1, k2,
          has_cnt ? "readable" : "not readable", cnt, kb, k0, on);
    int u1 = vigil__socket_user_timeout((vigil_socket)s, 1500);
    int u0 = vigil__socket_user_timeout((vigil_socket)s, 0);
    int ub = vigil__socket_user_timeout((vigil_socket)s, 0x80000000u);
    check("user timeout: set or refused with -ENOTSUP, 0 is the default, too large is -EINVAL",
          (u1 == 0 || u1 == -ENOTSUP) && u0 == 0 && ub == -EINVAL, "1500 ms %d, 0 %d, 2^31 %d", u1, u0, ub);

    vigil__socket_close_now(c);
    vigil__socket_close_now((vigil_socket)s);
    vigil__socket_close_now(l);

    int wk = -1;
    rc = vigil__wakefd_open(&wk);
    int before = rc == 0 ? vigil__fd_readable(wk) : -1;
    int sg = rc == 0 ? vigil__wakefd_signal(wk) : -1;
    Sleep(20);
    int after = rc == 0 ? vigil__fd_readable(wk) : -1;
    check("a wake makes the wake socket readable", rc == 0 && before == 0 && sg == 0 && after == 1,
          "open %d, readable %d then %d", rc, before, after);
    vigil__wakefd_close(wk);

    vigil_socket u;
    vigil__addr_parse("127.0.0.1", 0, &a);
    rc = vigil__udp_socket(&a, 0, &u);
    int up = vigil__socket_port(u);
    vigil__addr self;
    vigil__addr_parse("127.0.0.1", (uint16_t)up, &self);
    int sent = vigil__udp_sendto(u, "dgram", 5, self.bytes, self.len);
    Sleep(20);
    n = recv((SOCKET)u, buf, sizeof(buf), 0);
    check("a UDP datagram to itself", rc == 0 && sent == 5 && n == 5 && !memcmp(buf, "dgram", 5),
          "socket %d sent %d got %d", rc, sent, n);
    vigil__socket_close_now(u);

    uint8_t *m = vigil__mem_map(1 << 20);
    int zero = m && m[12345] == 0;
    if (m)
        m[1 << 19] = 7;
    vigil__mem_unmap(m, 1 << 20);
    check("receive-buffer memory maps zeroed", m && zero, "");

    uint64_t c0 = vigil__thread_cpu_ns(vigil__thread_id());
    volatile uint64_t x = 0;
    for (uint64_t i = 0; i < 200000000ull; i++)
        x += i;
    uint64_t c1 = vigil__thread_cpu_ns(vigil__thread_id());
    char sc[64] = "x";
    int sy = vigil__thread_syscall(vigil__thread_id(), sc, sizeof(sc));
    check("a thread's CPU time grows while it spins; its syscall is not known here",
          c1 > c0 && sy == -ENOTSUP && sc[0] == 0, "%llu ns of CPU", (unsigned long long)(c1 - c0));

    check("Windows errors become negative errno values",
          vigil__win_errno(WSAECONNRESET) == -ECONNRESET && vigil__win_errno(WSAEWOULDBLOCK) == -EAGAIN &&
              vigil__win_errno(ERROR_OPERATION_ABORTED) == -ECANCELED && vigil__win_errno(WSAECONNREFUSED) ==
              -ECONNREFUSED && vigil__win_errno(0) == 0 && vigil__win_errno(123456) == -EIO, "");
    return check_done();
}
