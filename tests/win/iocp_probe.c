/*
 * iocp_probe.c: what the IOCP backend will stand on, checked where it will
 * run in our tests: Windows sockets on a completion port under wine64.
 * Each check prints one line "probe: NAME: ok|FAIL ..." and the program
 * exits with the number of failures. Build with the cross file
 * (cross/x86_64-w64-mingw32.txt) and run with tests/win/probe.sh.
 *
 * Checks, in order:
 *  1. AcceptEx and ConnectEx complete through GetQueuedCompletionStatusEx,
 *     and the accept context can be updated (SO_UPDATE_ACCEPT_CONTEXT).
 *  2. A zero-byte WSARecv completes when data arrives, without taking it:
 *     the data is then read with a non-blocking recv (the idle-memory answer).
 *  3. Overlapped WSASend of 4 MiB completes with every byte, and the peer
 *     receives them in order.
 *  4. PostQueuedCompletionStatus wakes a thread waiting on the port.
 *  5. CancelIoEx on a pending WSARecv: its packet still comes (aborted), and
 *     only then is its OVERLAPPED free to reuse.
 *  6. A socket stays bound to its port: a second CreateIoCompletionPort
 *     fails; and a second thread that waits on the same port receives the
 *     completions the first thread no longer takes (a rebuild keeps the port
 *     and replaces the thread).
 *  7. closesocket from another thread ends a thread blocked in recv
 *     (CancelSynchronousIo does not, under wine).
 *  8. Memory per idle connection: N connections with a zero-byte WSARecv
 *     each, then with a 16 KiB buffer each (the process's working set).
 *  9. UDP receives as readiness: a zero-byte WSARecv with MSG_PEEK
 *     completes when a datagram arrives (WSAEMSGSIZE, or success for an
 *     empty one) and leaves it, where one without MSG_PEEK takes it; a peek
 *     that finds one already there says WSAEMSGSIZE at once and its packet
 *     still comes; recvfrom into a short buffer says WSAEMSGSIZE with the
 *     datagram's start and sender, and the datagram is gone.
 * 10. IOCTL_AFD_POLL on a socket's own handle completes through its port:
 *     writable at once, readable when a datagram arrives, and CancelIoEx
 *     aborts a pending one (its packet still comes).
 */
#include <winsock2.h>
#include <mswsock.h>
#include <psapi.h>
#include <windows.h>
#include <ws2tcpip.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static LPFN_ACCEPTEX pAcceptEx;
static LPFN_CONNECTEX pConnectEx;

static void *ext(SOCKET s, GUID g) {
    void *fn = NULL;
    DWORD n = 0;
    if (WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &g, sizeof(g), &fn, sizeof(fn), &n, NULL, NULL))
        return NULL;
    return fn;
}

static SOCKET tcp_socket(void) { return WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED); }

static SOCKET listener(uint16_t *port) {
    SOCKET l = tcp_socket();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(l, (struct sockaddr *)&a, sizeof(a));
    listen(l, SOMAXCONN);
    int len = sizeof(a);
    getsockname(l, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return l;
}

/* Waits for one packet; returns its key, or (ULONG_PTR)-1 on timeout. */
static ULONG_PTR wait_one(HANDLE port, DWORD ms, OVERLAPPED **ov, DWORD *bytes, BOOL *ok) {
    OVERLAPPED_ENTRY e;
    ULONG n = 0;
    if (!GetQueuedCompletionStatusEx(port, &e, 1, &n, ms, FALSE) || n != 1)
        return (ULONG_PTR)-1;
    *ov = e.lpOverlapped;
    *bytes = e.dwNumberOfBytesTransferred;
    /* the status of the op: NTSTATUS in Internal (STATUS_SUCCESS = 0) */
    *ok = e.lpOverlapped ? e.lpOverlapped->Internal == 0 : TRUE;
    return e.lpCompletionKey;
}

typedef struct pair {
    SOCKET a, b; /* a: accepted by AcceptEx, b: connected by ConnectEx */
} pair;

/* 1: AcceptEx + ConnectEx through the port. */
static int make_pair(HANDLE port, SOCKET l, uint16_t lport, pair *p, int quiet) {
    SOCKET acc = tcp_socket(), con = tcp_socket();
    char abuf[2 * (sizeof(struct sockaddr_in6) + 16)];
    OVERLAPPED oa = {0}, oc = {0};
    DWORD got = 0;
    CreateIoCompletionPort((HANDLE)con, port, 2, 0);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(con, (struct sockaddr *)&any, sizeof(any)); /* ConnectEx wants a bound socket */
    BOOL a_ok = pAcceptEx(l, acc, abuf, 0, sizeof(struct sockaddr_in6) + 16, sizeof(struct sockaddr_in6) + 16,
                          &got, &oa);
    int a_pending = !a_ok && WSAGetLastError() == ERROR_IO_PENDING;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(lport),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    BOOL c_ok = pConnectEx(con, (struct sockaddr *)&to, sizeof(to), NULL, 0, NULL, &oc);
    int c_pending = !c_ok && WSAGetLastError() == ERROR_IO_PENDING;
    int seen_a = a_ok, seen_c = c_ok;
    for (int i = 0; i < 4 && !(seen_a && seen_c); i++) {
        OVERLAPPED *ov;
        DWORD bytes;
        BOOL ok;
        if (wait_one(port, 2000, &ov, &bytes, &ok) == (ULONG_PTR)-1)
            break;
        seen_a |= ov == &oa && ok;
        seen_c |= ov == &oc && ok;
    }
    int ok = seen_a && seen_c;
    if (ok) {
        ok = !setsockopt(acc, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (char *)&l, sizeof(l)) &&
             !setsockopt(con, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0);
        CreateIoCompletionPort((HANDLE)acc, port, 1, 0);
    }
    if (!quiet)
        check("AcceptEx and ConnectEx through GetQueuedCompletionStatusEx", ok,
               "accept %s, connect %s", a_ok ? "at once" : a_pending ? "pending" : "failed",
               c_ok ? "at once" : c_pending ? "pending" : "failed");
    p->a = acc;
    p->b = con;
    return ok;
}

/* 2: a zero-byte WSARecv completes on arrival and takes nothing. */
static void zero_byte_read(HANDLE port, pair *p) {
    WSABUF wb = {0, NULL};
    DWORD flags = 0;
    OVERLAPPED o = {0};
    int rc = WSARecv(p->a, &wb, 1, NULL, &flags, &o, NULL);
    int pending = rc == SOCKET_ERROR && WSAGetLastError() == WSA_IO_PENDING;
    send(p->b, "hello", 5, 0);
    OVERLAPPED *ov;
    DWORD bytes = 99;
    BOOL ok;
    ULONG_PTR key = wait_one(port, 2000, &ov, &bytes, &ok);
    u_long nb = 1;
    ioctlsocket(p->a, FIONBIO, &nb);
    char buf[16] = {0};
    int n = recv(p->a, buf, sizeof(buf), 0);
    nb = 0;
    ioctlsocket(p->a, FIONBIO, &nb);
    check("zero-byte WSARecv completes on arrival and leaves the bytes", pending && key == 1 && ov == &o &&
           bytes == 0 && n == 5 && !memcmp(buf, "hello", 5), "pending %d, %lu bytes, then recv %d", pending,
           (unsigned long)bytes, n);
}

/* 3: overlapped WSASend of 4 MiB, every byte in order at the peer. */
typedef struct reader {
    SOCKET s;
    size_t want, got, bad;
} reader;

static DWORD WINAPI read_all(void *arg) {
    reader *r = arg;
    static uint8_t buf[65536];
    while (r->got < r->want) {
        int n = recv(r->s, (char *)buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        for (int i = 0; i < n; i++)
            r->bad += buf[i] != (uint8_t)((r->got + i) * 31 + 7);
        r->got += (size_t)n;
    }
    return 0;
}

static void big_send(HANDLE port, pair *p) {
    size_t len = 4u << 20;
    uint8_t *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    reader r = {p->b, len, 0, 0};
    HANDLE t = CreateThread(NULL, 0, read_all, &r, 0, NULL);
    WSABUF wb = {(ULONG)len, (char *)data};
    OVERLAPPED o = {0};
    int rc = WSASend(p->a, &wb, 1, NULL, 0, &o, NULL);
    int started = rc == 0 || WSAGetLastError() == WSA_IO_PENDING;
    OVERLAPPED *ov;
    DWORD bytes = 0;
    BOOL ok = FALSE;
    ULONG_PTR key = wait_one(port, 10000, &ov, &bytes, &ok);
    WaitForSingleObject(t, 10000);
    CloseHandle(t);
    check("overlapped WSASend of 4 MiB, every byte in order", started && key == 1 && ok && bytes == len &&
           r.got == len && r.bad == 0, "completed %lu bytes, peer read %zu, %zu wrong", (unsigned long)bytes,
           r.got, r.bad);
    free(data);
}

/* 4: PostQueuedCompletionStatus wakes a waiting thread. */
typedef struct waiter {
    HANDLE port;
    ULONG_PTR key;
    DWORD ms;
} waiter;

static DWORD WINAPI wait_key(void *arg) {
    waiter *w = arg;
    OVERLAPPED *ov;
    DWORD bytes;
    BOOL ok;
    DWORD t0 = GetTickCount();
    w->key = wait_one(w->port, 5000, &ov, &bytes, &ok);
    w->ms = GetTickCount() - t0;
    return 0;
}

static void post_wakes(HANDLE port) {
    waiter w = {port, 0, 0};
    HANDLE t = CreateThread(NULL, 0, wait_key, &w, 0, NULL);
    Sleep(100);
    PostQueuedCompletionStatus(port, 0, 77, NULL);
    WaitForSingleObject(t, 5000);
    CloseHandle(t);
    check("PostQueuedCompletionStatus wakes a thread waiting on the port", w.key == 77 && w.ms < 1000,
           "key %lu after %lu ms", (unsigned long)w.key, (unsigned long)w.ms);
}

/* 5: CancelIoEx: the packet still comes, aborted. */
static void cancel_recv(HANDLE port, pair *p) {
    char buf[64];
    WSABUF wb = {sizeof(buf), buf};
    DWORD flags = 0;
    OVERLAPPED o = {0};
    WSARecv(p->a, &wb, 1, NULL, &flags, &o, NULL);
    BOOL c = CancelIoEx((HANDLE)p->a, &o);
    OVERLAPPED *ov;
    DWORD bytes;
    BOOL ok = TRUE;
    ULONG_PTR key = wait_one(port, 2000, &ov, &bytes, &ok);
    DWORD err = 0;
    if (key != (ULONG_PTR)-1 && !ok) {
        DWORD fl = 0, n2 = 0;
        if (!WSAGetOverlappedResult(p->a, &o, &n2, FALSE, &fl))
            err = (DWORD)WSAGetLastError();
    }
    check("CancelIoEx on a pending WSARecv: its packet still comes, aborted", c && key == 1 && ov == &o && !ok &&
           (err == WSA_OPERATION_ABORTED || err == ERROR_OPERATION_ABORTED), "cancel %d, error %lu", c,
           (unsigned long)err);
}

/* 6: one port per socket for life; a second thread takes over the port. */
static void port_for_life(HANDLE port, pair *p) {
    HANDLE other = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    HANDLE r = CreateIoCompletionPort((HANDLE)p->a, other, 9, 0);
    DWORD err = r ? 0 : GetLastError();
    check("a socket stays bound to its first port", r == NULL, "second bind: %s (error %lu)",
           r ? "accepted" : "refused", (unsigned long)err);
    CloseHandle(other);
    /* a zero-byte read issued by "the stuck thread", completed to whichever waits */
    WSABUF wb = {0, NULL};
    DWORD flags = 0;
    OVERLAPPED o = {0};
    WSARecv(p->a, &wb, 1, NULL, &flags, &o, NULL);
    waiter w = {port, 0, 0};
    HANDLE t = CreateThread(NULL, 0, wait_key, &w, 0, NULL); /* the rebuilt loop's thread */
    Sleep(50);
    send(p->b, "x", 1, 0);
    WaitForSingleObject(t, 5000);
    CloseHandle(t);
    char c;
    recv(p->a, &c, 1, 0);
    check("a new thread waiting on the same port gets the completions", w.key == 1, "key %lu",
           (unsigned long)w.key);
}

/* 7: closesocket from another thread ends a blocking recv. */
typedef struct blocked {
    SOCKET s;
    int rc, err;
    DWORD ms;
} blocked;

static DWORD WINAPI block_in_recv(void *arg) {
    blocked *b = arg;
    char buf[8];
    DWORD t0 = GetTickCount();
    b->rc = recv(b->s, buf, sizeof(buf), 0);
    b->err = WSAGetLastError();
    b->ms = GetTickCount() - t0;
    return 0;
}

static void unblock_by_close(HANDLE port, SOCKET l, uint16_t lport) {
    pair p;
    if (!make_pair(port, l, lport, &p, 1)) {
        check("closesocket from another thread ends a blocked recv", 0, "no pair");
        return;
    }
    blocked b = {p.a, 0, 0, 0};
    HANDLE t = CreateThread(NULL, 0, block_in_recv, &b, 0, NULL);
    Sleep(200);
    BOOL cs = CancelSynchronousIo(t);
    DWORD cs_err = cs ? 0 : GetLastError();
    DWORD still = WaitForSingleObject(t, 300);
    closesocket(p.a);
    DWORD w = WaitForSingleObject(t, 5000);
    CloseHandle(t);
    check("closesocket from another thread ends a blocked recv", w == WAIT_OBJECT_0 && b.rc == SOCKET_ERROR,
           "CancelSynchronousIo %s (error %lu, thread %s), then recv %d error %d after %lu ms",
           cs ? "worked" : "failed", (unsigned long)cs_err, still == WAIT_OBJECT_0 ? "ended" : "still blocked",
           b.rc, b.err, (unsigned long)b.ms);
    closesocket(p.b);
}

/* 8: working set per idle connection, zero-byte reads against 16 KiB buffers. */
static SIZE_T working_set(void) {
    PROCESS_MEMORY_COUNTERS pmc = {0};
    pmc.cb = sizeof(pmc);
    GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof(pmc));
    return pmc.WorkingSetSize;
}

static void idle_memory(HANDLE port, SOCKET l, uint16_t lport, int n) {
    pair *ps = calloc((size_t)n, sizeof(*ps));
    OVERLAPPED *os = calloc((size_t)n, sizeof(*os));
    char **bufs = calloc((size_t)n, sizeof(*bufs));
    int made = 0;
    for (; made < n; made++)
        if (!make_pair(port, l, lport, &ps[made], 1))
            break;
    SIZE_T base = working_set();
    for (int i = 0; i < made; i++) {
        WSABUF wb = {0, NULL};
        DWORD flags = 0;
        WSARecv(ps[i].a, &wb, 1, NULL, &flags, &os[i], NULL);
    }
    SIZE_T zero = working_set();
    for (int i = 0; i < made; i++) {
        CancelIoEx((HANDLE)ps[i].a, &os[i]);
        OVERLAPPED *ov;
        DWORD bytes;
        BOOL ok;
        wait_one(port, 1000, &ov, &bytes, &ok);
    }
    SIZE_T base2 = working_set();
    for (int i = 0; i < made; i++) {
        bufs[i] = malloc(16384);
        memset(bufs[i], 0, 16384); /* a receive buffer the kernel may write: committed */
        WSABUF wb = {16384, bufs[i]};
        DWORD flags = 0;
        memset(&os[i], 0, sizeof(os[i]));
        WSARecv(ps[i].a, &wb, 1, NULL, &flags, &os[i], NULL);
    }
    SIZE_T full = working_set();
    double per_zero = made ? ((double)zero - (double)base) / made : 0;
    double per_full = made ? ((double)full - (double)base2) / made : 0;
    check("memory per idle connection", made == n, "%d connections: zero-byte WSARecv %.0f B each, "
           "16 KiB WSARecv %.0f B each (working set)", made, per_zero, per_full);
    for (int i = 0; i < made; i++) {
        closesocket(ps[i].a);
        closesocket(ps[i].b);
        free(bufs[i]);
    }
    free(ps);
    free(os);
    free(bufs);
}

/* 9: UDP sockets, bound to 127.0.0.1, non-blocking, overlapped. */
static SOCKET udp_socket(HANDLE port, uint16_t *p) {
    SOCKET s = WSASocketW(AF_INET, SOCK_DGRAM, IPPROTO_UDP, NULL, 0, WSA_FLAG_OVERLAPPED);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(s, (struct sockaddr *)&a, sizeof(a));
    int len = sizeof(a);
    getsockname(s, (struct sockaddr *)&a, &len);
    *p = ntohs(a.sin_port);
    u_long nb = 1;
    ioctlsocket(s, FIONBIO, &nb);
    if (port)
        CreateIoCompletionPort((HANDLE)s, port, 1, 0);
    return s;
}

static int udp_to(SOCKET from, uint16_t port, const char *d, int n) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return sendto(from, d, n, 0, (struct sockaddr *)&a, sizeof(a));
}

/* A zero-byte WSARecv (flags) on r, then a datagram of len bytes: did the
 * packet come, with which WSA error (0: none), and is the datagram still
 * there for recv? */
static void udp_zero_read(HANDLE port, SOCKET r, SOCKET w, uint16_t rport, DWORD flags, int len, int *pending,
                          int *packet, int *err, int *left) {
    OVERLAPPED o = {0};
    WSABUF wb = {0, NULL};
    int rc = WSARecv(r, &wb, 1, NULL, &flags, &o, NULL);
    *pending = rc == SOCKET_ERROR && WSAGetLastError() == WSA_IO_PENDING;
    udp_to(w, rport, "0123456789", len);
    OVERLAPPED *ov;
    DWORD bytes, n = 0, fl = 0;
    BOOL ok;
    *packet = wait_one(port, 2000, &ov, &bytes, &ok) == 1 && ov == &o;
    *err = WSAGetOverlappedResult(r, &o, &n, FALSE, &fl) ? 0 : WSAGetLastError();
    char b[16];
    *left = recv(r, b, sizeof(b), 0) == len;
}

static void udp_reads(void) {
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    uint16_t rport, wport;
    SOCKET r = udp_socket(port, &rport), w = udp_socket(NULL, &wport);
    int pend, pkt, err, left, pend0, pkt0, err0, left0, npend, npkt, nerr, nleft;
    udp_zero_read(port, r, w, rport, MSG_PEEK, 10, &pend, &pkt, &err, &left);
    udp_zero_read(port, r, w, rport, MSG_PEEK, 0, &pend0, &pkt0, &err0, &left0);
    udp_zero_read(port, r, w, rport, 0, 10, &npend, &npkt, &nerr, &nleft);
    check("a zero-byte WSARecv with MSG_PEEK on UDP completes on arrival and leaves the datagram",
          pend && pkt && err == WSAEMSGSIZE && left && pend0 && pkt0 && err0 == 0 && left0,
          "10 bytes: pending %d, packet %d, error %d, then recv %d; empty: pending %d, packet %d, error %d, "
          "then recv %d; without MSG_PEEK the datagram is %s (error %d)",
          pend, pkt, err, left, pend0, pkt0, err0, left0, nleft ? "left" : "taken", nerr);
    /* a datagram already there */
    udp_to(w, rport, "hello", 5);
    Sleep(50);
    OVERLAPPED o = {0};
    WSABUF wb = {0, NULL};
    DWORD flags = MSG_PEEK;
    int rc = WSARecv(r, &wb, 1, NULL, &flags, &o, NULL);
    int at_once = rc == SOCKET_ERROR ? WSAGetLastError() : 0;
    OVERLAPPED *ov;
    DWORD bytes;
    BOOL ok;
    int came = wait_one(port, 1000, &ov, &bytes, &ok) == 1 && ov == &o;
    char b[1000];
    int got = recv(r, b, sizeof(b), 0);
    check("a UDP peek at a datagram already there: WSAEMSGSIZE at once, and its packet still comes",
          at_once == WSAEMSGSIZE && came && got == 5, "error %d at once, packet %d, then recv %d", at_once, came, got);
    /* a datagram longer than the buffer */
    char big[3000];
    for (int i = 0; i < (int)sizeof(big); i++)
        big[i] = (char)(i * 7);
    udp_to(w, rport, big, sizeof(big));
    udp_to(w, rport, "tiny", 4);
    Sleep(50);
    struct sockaddr_in from = {0};
    int flen = sizeof(from);
    int n = recvfrom(r, b, sizeof(b), 0, (struct sockaddr *)&from, &flen);
    int e = n < 0 ? WSAGetLastError() : 0;
    char tiny[16];
    int next = recvfrom(r, tiny, sizeof(tiny), 0, NULL, NULL);
    check("recvfrom into a short buffer: WSAEMSGSIZE, the start and the sender, the datagram gone",
          n < 0 && e == WSAEMSGSIZE && !memcmp(b, big, sizeof(b)) && ntohs(from.sin_port) == wport && next == 4,
          "recvfrom %d (error %d), sender port %u of %u, then the next datagram: %d bytes", n, e,
          ntohs(from.sin_port), wport, next);
    closesocket(r);
    closesocket(w);
    CloseHandle(port);
}

/* 10: IOCTL_AFD_POLL (wepoll's, libuv's uv_poll), through the port. */
#define IOCTL_AFD_POLL 0x00012024
typedef struct afd_poll_info {
    LARGE_INTEGER timeout;
    ULONG count, exclusive;
    struct { HANDLE handle; ULONG events; LONG status; } h[1];
} afd_poll_info;
typedef LONG(NTAPI *nt_ioctl_fn)(HANDLE, HANDLE, void *, void *, void *, ULONG, void *, ULONG, void *, ULONG);

static int afd_poll(nt_ioctl_fn nt, SOCKET s, ULONG events, OVERLAPPED *o, afd_poll_info *pi) {
    memset(o, 0, sizeof(*o));
    memset(pi, 0, sizeof(*pi));
    pi->timeout.QuadPart = INT64_MAX;
    pi->count = 1;
    pi->h[0].handle = (HANDLE)s;
    pi->h[0].events = events;
    o->Internal = 0x103; /* STATUS_PENDING */
    return (int)nt((HANDLE)s, NULL, NULL, o, o, IOCTL_AFD_POLL, pi, sizeof(*pi), pi, sizeof(*pi));
}

static void afd_polls(void) {
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    nt_ioctl_fn nt = ntdll ? (nt_ioctl_fn)(void (*)(void))GetProcAddress(ntdll, "NtDeviceIoControlFile") : NULL;
    if (!nt) {
        check("IOCTL_AFD_POLL through the port", 0, "no NtDeviceIoControlFile");
        return;
    }
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    uint16_t rport, wport;
    SOCKET r = udp_socket(port, &rport), w = udp_socket(NULL, &wport);
    OVERLAPPED o, *ov;
    afd_poll_info pi;
    DWORD bytes;
    BOOL ok;
    int st1 = afd_poll(nt, r, 0x0004 /* AFD_POLL_SEND */, &o, &pi);
    int out = wait_one(port, 1000, &ov, &bytes, &ok) == 1 && ov == &o && o.Internal == 0 && (pi.h[0].events & 0x4);
    int st2 = afd_poll(nt, r, 0x0001 /* AFD_POLL_RECEIVE */, &o, &pi);
    int early = wait_one(port, 100, &ov, &bytes, &ok) == 1;
    udp_to(w, rport, "x", 1);
    int in = !early && wait_one(port, 2000, &ov, &bytes, &ok) == 1 && ov == &o && o.Internal == 0 &&
             (pi.h[0].events & 0x1);
    char b[4];
    recv(r, b, sizeof(b), 0);
    int st3 = afd_poll(nt, r, 0x0001, &o, &pi);
    int early3 = wait_one(port, 100, &ov, &bytes, &ok) == 1;
    BOOL cancelled = CancelIoEx((HANDLE)r, &o);
    int aborted = wait_one(port, 2000, &ov, &bytes, &ok) == 1 && ov == &o && o.Internal == 0xC0000120;
    check("IOCTL_AFD_POLL through the port: writable at once, readable on arrival, cancelled by CancelIoEx",
          out && in && !early3 && cancelled && aborted, "send poll %#x: %d; receive poll %#x: early %d, on arrival %d; "
          "cancel %#x: CancelIoEx %d, aborted %d", st1, out, st2, early, in, st3, cancelled, aborted);
    closesocket(r);
    closesocket(w);
    CloseHandle(port);
}

int main(int argc, char **argv) {
    check_prefix = "probe";
    int idle = argc > 1 ? atoi(argv[1]) : 1000;
    WSADATA wd;
    if (WSAStartup(MAKEWORD(2, 2), &wd)) {
        printf("probe: WSAStartup failed\n");
        return 1;
    }
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    uint16_t lport;
    SOCKET l = listener(&lport);
    pAcceptEx = ext(l, (GUID)WSAID_ACCEPTEX);
    pConnectEx = ext(l, (GUID)WSAID_CONNECTEX);
    CreateIoCompletionPort((HANDLE)l, port, 3, 0);
    check("AcceptEx and ConnectEx are there", pAcceptEx && pConnectEx, "");
    pair p;
    if (make_pair(port, l, lport, &p, 0)) {
        zero_byte_read(port, &p);
        big_send(port, &p);
        post_wakes(port);
        cancel_recv(port, &p);
        port_for_life(port, &p);
    }
    unblock_by_close(port, l, lport);
    udp_reads();
    afd_polls();
    idle_memory(port, l, lport, idle);
    return check_done();
}
