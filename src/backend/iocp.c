/*
 * iocp.c: the Windows backend, on an I/O completion port (docs/windows.md).
 *
 * The wait takes a batch of packets with GetQueuedCompletionStatusEx into
 * backend memory and handles them in order, each leaving the batch before
 * its completions are dispatched (the epoll backend's rule, so a rebuild
 * can take the rest). Accepts are AcceptEx, one outstanding per listener,
 * re-posted after each; connects are ConnectEx on a socket bound to the
 * wildcard address; sends are one WSASend of the queued slices, a file
 * message one TransmitFile from its file offset. Receives
 * are readiness, as on epoll: a zero-byte WSARecv (100 bytes of kernel
 * state per idle connection, docs/windows.md) completes when data is
 * there, then non-blocking recv() fills pool buffers until
 * WSAEWOULDBLOCK, and another zero-byte WSARecv waits. The wake is such a
 * receive on the loop's wake socket. A rebuild keeps all of it and only
 * replaces the thread (iocp_handover).
 *
 * UDP receives are readiness too: a zero-byte WSARecv with MSG_PEEK (one
 * without it takes the datagram, under wine), then non-blocking recvfrom()
 * into pool buffers laid out as epoll and io_uring lay them out (udp.c:
 * head, address, payload). The poll hook (a full UDP socket waiting to
 * take more) is IOCTL_AFD_POLL on the socket's own handle, a request that
 * completes through the port like any other.
 *
 * Every request the port knows has a flight: a record of the backend's own
 * that holds the OVERLAPPED, the op's tag and the socket. The port hands
 * the OVERLAPPED back; the tag, not a pointer, names the op, so a late
 * packet for an op that is gone is stale and dropped like any other. A
 * flight is freed only once its packet was dequeued, cancelled or not.
 */
#include "core/loop.h"
#include "os/platform.h"
#include "os/sockets.h"

#include <winsock2.h>
#include <mswsock.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 256

#define ADDR_ROOM (sizeof(struct sockaddr_in6) + 16) /* what AcceptEx wants per address */
#define READS_PER_PACKET 4

typedef struct flight {
    OVERLAPPED ov; /* first: the port hands this pointer back */
    uint64_t tag;
    SOCKET s;      /* the socket (or file handle) it is on; INVALID_SOCKET for a posted packet */
    int kind;      /* FL_* */
    struct flight *prev, *next; /* live flights, for cancel */
    SOCKET acc;    /* accept: the socket it accepts into */
    char addrs[2 * ADDR_ROOM];
    int nbufs;     /* send: the slices */
    WSABUF bufs[16];
    uint8_t want;  /* poll: VIGIL__POLL_* asked for */
    struct afd_poll { /* poll: IOCTL_AFD_POLL's in and out (AFD_POLL_INFO) */
        LARGE_INTEGER timeout;
        ULONG count, exclusive;
        struct { HANDLE handle; ULONG events; LONG status; } h[1];
    } poll;
} flight;
enum { FL_POST = 1, FL_WAKE, FL_ACCEPT, FL_CONNECT, FL_RECV, FL_SEND, FL_UDP, FL_POLL, FL_FILE };

/* IOCTL_AFD_POLL (not in mingw's headers): what wepoll, mio and libuv's
 * uv_poll wait for socket readiness with; wine's WSAPoll is built on it. */
#define IOCTL_AFD_POLL 0x00012024
#define AFD_POLL_RECEIVE 0x0001
#define AFD_POLL_SEND 0x0004
#define AFD_POLL_DISCONNECT 0x0008
#define AFD_POLL_ABORT 0x0010
#define AFD_POLL_CONNECT_FAIL 0x0100
typedef LONG(NTAPI *nt_ioctl_fn)(HANDLE file, HANDLE event, void *apc, void *apc_ctx, void *iosb, ULONG code,
                                 void *in, ULONG in_len, void *out, ULONG out_len);
typedef ULONG(NTAPI *nt_dos_error_fn)(LONG status);

typedef struct packet { flight *f; DWORD bytes; ULONG_PTR status; } packet; /* status: the port's NTSTATUS */

typedef struct iocp_state {
    HANDLE port;
    flight *live;
    flight *unsettled; /* dequeued while the OVERLAPPED still said pending (below) */
    uint32_t *free_bufs; /* the pool's free list: the backend hands buffers out */
    uint32_t nfree;
    OVERLAPPED_ENTRY entries[BATCH];
    packet got[BATCH];    /* dequeued, not yet handled: [got_pos, got_n) */
    uint32_t got_pos, got_n;
    LPFN_ACCEPTEX accept_ex;
    LPFN_CONNECTEX connect_ex;
    LPFN_TRANSMITFILE transmit_file;
    nt_ioctl_fn nt_ioctl;         /* ntdll's NtDeviceIoControlFile, at the first poll */
    nt_dos_error_fn nt_dos_error; /* and RtlNtStatusToDosError */
} iocp_state;

static iocp_state *st(vigil_loop *loop) { return loop->be_state; }

static flight *flight_new(iocp_state *s, int kind, uint64_t tag, SOCKET sock) {
    flight *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->kind = kind;
    f->tag = tag;
    f->s = sock;
    f->next = s->live;
    if (s->live)
        s->live->prev = f;
    s->live = f;
    return f;
}

static void flight_free(iocp_state *s, flight *f) {
    if (f->prev)
        f->prev->next = f->next;
    else
        s->live = f->next;
    if (f->next)
        f->next->prev = f->prev;
    free(f);
}

static void iocp_abandon(void *state) {
    iocp_state *s = state;
    if (!s)
        return;
    if (s->port)
        CloseHandle(s->port);
    while (s->live) /* the port is gone: no packet will name them any more */
        flight_free(s, s->live);
    while (s->unsettled) {
        flight *f = s->unsettled;
        s->unsettled = f->next;
        free(f);
    }
    free(s->free_bufs);
    free(s);
}

static void iocp_fini(vigil_loop *loop) {
    iocp_abandon(loop->be_state);
    loop->be_state = NULL;
}

static int iocp_init(vigil_loop *loop) {
    iocp_state *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    loop->be_state = s;
    s->free_bufs = malloc(loop->env.opts->buf_count * sizeof(uint32_t));
    if (!s->free_bufs) {
        iocp_fini(loop);
        return -ENOMEM;
    }
    for (uint32_t i = loop->env.opts->buf_count; i-- > 0;)
        if (loop->env.buf_state[i] == VIGIL__BUF_KERNEL)
            s->free_bufs[s->nfree++] = i;
    s->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    if (!s->port) {
        int rc = vigil__win_errno(GetLastError());
        iocp_fini(loop);
        return rc;
    }
    /* the wake socket is the loop's: bound to this port for life */
    if (!CreateIoCompletionPort((HANDLE)(uintptr_t)loop->env.wake_fd, s->port, 0, 0)) {
        int rc = vigil__win_errno(GetLastError());
        iocp_fini(loop);
        return rc;
    }
    loop->env.info->features = 0;
    loop->env.info->ring_entries = loop->env.info->cq_entries = 0;
    return 0;
}

/* Whether a request that did not say success still has its packet coming:
 * pending, or WSAEMSGSIZE, a warning (STATUS_BUFFER_OVERFLOW) that a
 * zero-byte receive on a datagram socket (the wake socket, a UDP peek)
 * says when a datagram was there at once. The port queues a packet for a
 * warning as for a success (tests/win/iocp_probe.c): freeing the flight
 * then would leave that packet naming freed memory. */
static bool packet_comes(int wsa_error) { return wsa_error == WSA_IO_PENDING || wsa_error == WSAEMSGSIZE; }

/* A zero-byte receive on the wake socket: it completes when a wake arrives. */
static int arm_wake(vigil_loop *loop, vigil__op *op) {
    iocp_state *s = st(loop);
    SOCKET w = (SOCKET)(uintptr_t)loop->env.wake_fd;
    flight *f = flight_new(s, FL_WAKE, vigil__op_tag(loop, op), w);
    if (!f)
        return -ENOMEM;
    WSABUF wb = {0, NULL};
    DWORD flags = 0;
    if (WSARecv(w, &wb, 1, NULL, &flags, &f->ov, NULL) == SOCKET_ERROR && !packet_comes(WSAGetLastError())) {
        int rc = vigil__win_errno((unsigned long)WSAGetLastError());
        flight_free(s, f);
        return rc;
    }
    vigil__op_kernel_started(loop, op);
    return 0;
}

static int iocp_attach(vigil_loop *loop) {
    for (flight *f = st(loop)->live; f; f = f->next)
        if (f->kind == FL_WAKE)
            return 0; /* handed over by a rebuild: the wake read is still in flight */
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_WAKE);
    if (!op)
        return -ENOMEM;
    return arm_wake(loop, op);
}

/* The socket joins the loop's port at its first request; a socket can be
 * bound to one port only, and for life. Its connection remembers that it
 * is (be_mark, zeroed with the connection, which ends with the socket), so
 * later requests make no failing CreateIoCompletionPort. A mark on the
 * connection, not a set of handles in the backend: sockets are also closed
 * where the backend does not see it (udp.c, a failed connect, destroy), and
 * a handle value the system reuses must not look bound. */
#define MARK_BOUND 1

static void bind_port(vigil_loop *loop, iocp_state *s, vigil__op *op, SOCKET sock) {
    vigil__conn *c = op->conn ? vigil__conn_at(loop, op->conn) : NULL;
    if (c && c->fd == (vigil_socket)sock) {
        if (c->be_mark & MARK_BOUND)
            return;
        c->be_mark |= MARK_BOUND;
    }
    CreateIoCompletionPort((HANDLE)sock, s->port, 0, 0);
}

static int started(vigil_loop *loop, vigil__op *op, iocp_state *s, flight *f, int rc) {
    if (rc == SOCKET_ERROR && !packet_comes(WSAGetLastError())) {
        int err = vigil__win_errno((unsigned long)WSAGetLastError());
        if (f->acc != INVALID_SOCKET && f->kind == FL_ACCEPT)
            closesocket(f->acc);
        flight_free(s, f);
        return err;
    }
    vigil__op_kernel_started(loop, op);
    return 0; /* the packet comes, whether it finished at once or not */
}

/* A zero-byte receive: FL_RECV on a stream; FL_UDP peeks, because on a
 * datagram socket a zero-byte read without MSG_PEEK takes the datagram
 * (wine, tests/win/iocp_probe.c). A peek completes when a datagram is
 * there, with WSAEMSGSIZE (it did not fit in no bytes) or, for an empty
 * one, success, and leaves it for recvfrom. */
static int zero_read(vigil_loop *loop, vigil__op *op, SOCKET sock, int kind) {
    iocp_state *s = st(loop);
    bind_port(loop, s, op, sock);
    flight *f = flight_new(s, kind, vigil__op_tag(loop, op), sock);
    if (!f)
        return -ENOMEM;
    WSABUF wb = {0, NULL};
    DWORD flags = kind == FL_UDP ? MSG_PEEK : 0;
    return started(loop, op, s, f, WSARecv(sock, &wb, 1, NULL, &flags, &f->ov, NULL));
}

static int iocp_recv(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    return zero_read(loop, op, (SOCKET)fd, FL_RECV);
}

/* on_datagrams writes io_uring's multishot layout: no msghdr is needed */
static int iocp_recv_dgram(vigil_loop *loop, vigil__op *op, vigil_socket fd, void *one_shot) {
    (void)one_shot;
    return zero_read(loop, op, (SOCKET)fd, FL_UDP);
}

/* Winsock's extension function g (AcceptEx, ConnectEx, TransmitFile), looked
 * up through a socket the first time: false where the provider has none. */
static bool extension(SOCKET sock, GUID g, void **fn) {
    DWORD n = 0;
    if (!*fn)
        WSAIoctl(sock, SIO_GET_EXTENSION_FUNCTION_POINTER, &g, sizeof(g), fn, sizeof(*fn), &n, NULL, NULL);
    return *fn != NULL;
}

static int iocp_accept(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    iocp_state *s = st(loop);
    SOCKET l = (SOCKET)fd;
    bind_port(loop, s, op, l);
    if (!extension(l, (GUID)WSAID_ACCEPTEX, (void **)&s->accept_ex))
        return -ENOTSUP;
    WSAPROTOCOL_INFOW pi;
    int pl = sizeof(pi);
    if (getsockopt(l, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&pi, &pl))
        return vigil__win_errno((unsigned long)WSAGetLastError());
    SOCKET acc = WSASocketW(pi.iAddressFamily, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                            WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (acc == INVALID_SOCKET)
        return vigil__win_errno((unsigned long)WSAGetLastError());
    flight *f = flight_new(s, FL_ACCEPT, vigil__op_tag(loop, op), l);
    if (!f) {
        closesocket(acc);
        return -ENOMEM;
    }
    f->acc = acc;
    DWORD got = 0;
    BOOL ok = s->accept_ex(l, acc, f->addrs, 0, ADDR_ROOM, ADDR_ROOM, &got, &f->ov);
    return started(loop, op, s, f, ok ? 0 : SOCKET_ERROR);
}

static int iocp_connect(vigil_loop *loop, vigil__op *op, vigil_socket fd, const void *addr, uint32_t len) {
    iocp_state *s = st(loop);
    SOCKET sock = (SOCKET)fd;
    if (!extension(sock, (GUID)WSAID_CONNECTEX, (void **)&s->connect_ex))
        return -ENOTSUP;
    /* ConnectEx wants a bound socket: the wildcard address of its family */
    SOCKADDR_STORAGE any;
    memset(&any, 0, sizeof(any));
    any.ss_family = ((const struct sockaddr *)addr)->sa_family;
    int alen = any.ss_family == AF_INET6 ? (int)sizeof(struct sockaddr_in6) : (int)sizeof(struct sockaddr_in);
    if (bind(sock, (struct sockaddr *)&any, alen) && WSAGetLastError() != WSAEINVAL) /* EINVAL: bound */
        return vigil__win_errno((unsigned long)WSAGetLastError());
    bind_port(loop, s, op, sock);
    flight *f = flight_new(s, FL_CONNECT, vigil__op_tag(loop, op), sock);
    if (!f)
        return -ENOMEM;
    BOOL ok = s->connect_ex(sock, (const struct sockaddr *)addr, (int)len, NULL, 0, NULL, &f->ov);
    return started(loop, op, s, f, ok ? 0 : SOCKET_ERROR);
}

static int iocp_send(vigil_loop *loop, vigil__op *op, vigil_socket fd, const vigil__slice *sl, int n) {
    iocp_state *s = st(loop);
    SOCKET sock = (SOCKET)fd;
    bind_port(loop, s, op, sock);
    flight *f = flight_new(s, FL_SEND, vigil__op_tag(loop, op), sock);
    if (!f)
        return -ENOMEM;
    f->nbufs = n < 16 ? n : 16;
    for (int i = 0; i < f->nbufs; i++)
        f->bufs[i] = (WSABUF){(ULONG)sl[i].len, (char *)sl[i].base};
    return started(loop, op, s, f, WSASend(sock, f->bufs, (DWORD)f->nbufs, NULL, 0, &f->ov, NULL));
}

/* len bytes of a file from offset, read by the kernel itself (the core
 * keeps it alone in flight). A file that ends first completes with fewer
 * bytes; asked again from its end, with 0. */
static int iocp_send_file(vigil_loop *loop, vigil__op *op, vigil_socket fd, intptr_t file, int64_t offset,
                          uint32_t len) {
    iocp_state *s = st(loop);
    SOCKET sock = (SOCKET)fd;
    bind_port(loop, s, op, sock);
    if (!extension(sock, (GUID)WSAID_TRANSMITFILE, (void **)&s->transmit_file))
        return -ENOTSUP;
    flight *f = flight_new(s, FL_SEND, vigil__op_tag(loop, op), sock);
    if (!f)
        return -ENOMEM;
    f->ov.Offset = (DWORD)offset;
    f->ov.OffsetHigh = (DWORD)((uint64_t)offset >> 32);
    BOOL ok = s->transmit_file(sock, (HANDLE)file, len, 0, &f->ov, NULL, 0);
    return started(loop, op, s, f, ok ? 0 : SOCKET_ERROR);
}

/* A connect a fenced state had started: judged by the socket (rebuilds on
 * Windows are not built yet). */
static int iocp_resume_connect(vigil_loop *loop, vigil__op *op, vigil_socket fd) { return -ENOTSUP; }

#define OV_PENDING 0x103 /* STATUS_PENDING */

/* An NTSTATUS as the library's -errno. */
static int nt_errno(iocp_state *s, LONG status) {
    if (status == (LONG)0xC0000120) /* STATUS_CANCELLED */
        return -ECANCELED;
    return s->nt_dos_error ? vigil__win_errno(s->nt_dos_error(status)) : -EIO;
}

/* One completion (POLLOUT or POLLIN, > 0) once the socket can take more
 * (out) or has something to read: IOCTL_AFD_POLL on the socket's own
 * handle, so the port it is bound to gets the packet; the core does the
 * sending. An error or hang-up on the socket counts as ready too, as an
 * epoll event would: the core's next call finds the error. */
static int iocp_poll(vigil_loop *loop, vigil__op *op, vigil_socket fd, uint32_t events) {
    events &= VIGIL__POLL_IN | VIGIL__POLL_OUT;
    if (!events)
        return -EINVAL;
    iocp_state *s = st(loop);
    SOCKET sock = (SOCKET)fd;
    if (!s->nt_ioctl) {
        HMODULE nt = GetModuleHandleW(L"ntdll.dll");
        s->nt_ioctl = nt ? (nt_ioctl_fn)(void (*)(void))GetProcAddress(nt, "NtDeviceIoControlFile") : NULL;
        s->nt_dos_error = nt ? (nt_dos_error_fn)(void (*)(void))GetProcAddress(nt, "RtlNtStatusToDosError") : NULL;
        if (!s->nt_ioctl)
            return -ENOTSUP;
    }
    bind_port(loop, s, op, sock);
    flight *f = flight_new(s, FL_POLL, vigil__op_tag(loop, op), sock);
    if (!f)
        return -ENOMEM;
    f->want = (uint8_t)events;
    f->poll.timeout.QuadPart = INT64_MAX; /* none */
    f->poll.count = 1;
    f->poll.h[0].handle = (HANDLE)sock;
    f->poll.h[0].events = ((events & VIGIL__POLL_IN) ? AFD_POLL_RECEIVE | AFD_POLL_DISCONNECT : 0) |
                          ((events & VIGIL__POLL_OUT) ? AFD_POLL_SEND : 0) | AFD_POLL_ABORT | AFD_POLL_CONNECT_FAIL;
    f->ov.Internal = OV_PENDING; /* the status block is the OVERLAPPED's, written at the end */
    LONG rc = s->nt_ioctl((HANDLE)sock, NULL, NULL, &f->ov, &f->ov, IOCTL_AFD_POLL, &f->poll, sizeof(f->poll),
                          &f->poll, sizeof(f->poll));
    if (((ULONG)rc >> 30) == 3) { /* an error at once: no packet comes (success and pending: one does) */
        flight_free(s, f);
        return nt_errno(s, rc);
    }
    vigil__op_kernel_started(loop, op);
    return 0;
}

/* What a poll's packet says: ready (> 0) or -errno. */
/* Which asked directions the poll found ready (AFD writes the events back
 * into the same block); an abort or failed connect makes all of them. */
static int32_t poll_mask(const flight *f) {
    ULONG ev = f->poll.count ? f->poll.h[0].events : 0;
    uint32_t m = 0;
    if (ev & (AFD_POLL_RECEIVE | AFD_POLL_DISCONNECT | AFD_POLL_ABORT | AFD_POLL_CONNECT_FAIL))
        m |= VIGIL__POLL_IN;
    if (ev & (AFD_POLL_SEND | AFD_POLL_ABORT | AFD_POLL_CONNECT_FAIL))
        m |= VIGIL__POLL_OUT;
    m &= f->want;
    return (int32_t)(m ? m : f->want);
}

static int32_t poll_result(iocp_state *s, const flight *f) {
    LONG status = (LONG)f->ov.Internal;
    if (status != 0)
        return nt_errno(s, status);
    return poll_mask(f);
}

/* Closing a socket never waits here (no linger unless abortive, which is
 * zero): it completes at once, as a posted packet. */
static int iocp_close(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    closesocket((SOCKET)fd);
    iocp_state *s = st(loop);
    flight *f = flight_new(s, FL_POST, vigil__op_tag(loop, op), INVALID_SOCKET);
    if (!f)
        return -ENOMEM;
    vigil__op_kernel_started(loop, op);
    PostQueuedCompletionStatus(s->port, 0, 0, &f->ov);
    return 0;
}

static int iocp_nop(vigil_loop *loop, uint64_t tag) {
    iocp_state *s = st(loop);
    flight *f = flight_new(s, FL_POST, tag, INVALID_SOCKET);
    if (!f)
        return -ENOMEM;
    return PostQueuedCompletionStatus(s->port, 0, 0, &f->ov) ? 0 : vigil__win_errno(GetLastError());
}

/* The target's packet still comes (aborted, or completed if it won). */
static int iocp_cancel(vigil_loop *loop, vigil__op *op) {
    iocp_state *s = st(loop);
    uint64_t tag = vigil__op_tag(loop, op);
    for (flight *f = s->live; f; f = f->next)
        if (f->tag == tag && f->s != INVALID_SOCKET)
            CancelIoEx((HANDLE)f->s, &f->ov);
    return 0;
}

/* What a packet says, as the core wants it: bytes, or -errno (a posted
 * packet carries its result as its byte count). A file read at the end
 * says ERROR_HANDLE_EOF: 0 bytes, as read(2). */
static int32_t result_of(flight *f, DWORD bytes) {
    if (f->s == INVALID_SOCKET)
        return (int32_t)bytes;
    if (f->kind == FL_FILE) {
        DWORD n = 0;
        if (GetOverlappedResult((HANDLE)f->s, &f->ov, &n, FALSE))
            return (int32_t)n;
        return vigil__win_errno(GetLastError()); /* ERROR_HANDLE_EOF is 0 there */
    }
    DWORD n = 0, flags = 0;
    if (WSAGetOverlappedResult(f->s, &f->ov, &n, FALSE, &flags))
        return (int32_t)n;
    return vigil__win_errno((unsigned long)WSAGetLastError());
}

/* A file the loop opened joins the port for life, as a socket does. */
static int iocp_file_bind(vigil_loop *loop, intptr_t handle) {
    return CreateIoCompletionPort((HANDLE)handle, st(loop)->port, 0, 0) ? 0 : vigil__win_errno(GetLastError());
}

/* An overlapped ReadFile or WriteFile at offset on a bound file. Its packet
 * comes when it succeeds, at once or later, and when it is pending; a call
 * that fails at once queues none, so its result is posted as the packet
 * (a read at the end of the file fails at once with ERROR_HANDLE_EOF: 0). */
static int iocp_file_rw(vigil_loop *loop, vigil__op *op, intptr_t handle, void *buf, uint32_t len,
                        int64_t offset, bool write) {
    iocp_state *s = st(loop);
    flight *f = flight_new(s, FL_FILE, vigil__op_tag(loop, op), (SOCKET)handle);
    if (!f)
        return -ENOMEM;
    f->ov.Offset = (DWORD)offset;
    f->ov.OffsetHigh = (DWORD)((uint64_t)offset >> 32);
    BOOL ok = write ? WriteFile((HANDLE)handle, buf, len, NULL, &f->ov) : ReadFile((HANDLE)handle, buf, len, NULL, &f->ov);
    DWORD e = ok ? 0 : GetLastError();
    if (!ok && e != ERROR_IO_PENDING) {
        f->s = INVALID_SOCKET; /* a posted packet now, carrying the result */
        if (!PostQueuedCompletionStatus(s->port, (DWORD)vigil__win_errno(e), 0, &f->ov)) {
            int rc = vigil__win_errno(GetLastError());
            flight_free(s, f);
            return rc;
        }
    }
    return 0; /* in flight: fs.c counts it (vigil__engine_started) */
}

static void complete(vigil_loop *loop, uint64_t tag, int32_t res, uint32_t flags) {
    vigil__cqe e = {tag, res, flags};
    vigil__dispatch(loop, &e);
}

/* The op a tag names, while it waits on us. */
static vigil__op *live_op(vigil_loop *loop, uint64_t tag) {
    vigil__op *op = vigil__op_at(loop, (uint32_t)tag);
    if (!op || op->kind == VIGIL__OP_FREE || !(op->flags & VIGIL__OPF_KERNEL) || vigil__op_tag(loop, op) != tag)
        return NULL;
    return op;
}

/* Before each read of a readiness loop: the op still waits on us and a
 * pool buffer is free (into *id); else its final completion is given. */
static bool next_buffer(vigil_loop *loop, iocp_state *s, uint64_t tag, uint32_t *id) {
    vigil__op *op = live_op(loop, tag);
    if (!op)
        return false;
    if (op->flags & VIGIL__OPF_CANCELING) {
        complete(loop, tag, -ECANCELED, 0);
        return false;
    }
    if (!s->nfree) {
        complete(loop, tag, -ENOBUFS, 0); /* final: the core re-arms when a buffer comes back */
        return false;
    }
    *id = s->free_bufs[--s->nfree];
    return true;
}

/* After a readiness loop drained the socket: another zero-byte wait. */
static void wait_again(vigil_loop *loop, uint64_t tag, SOCKET sock, int kind) {
    vigil__op *op = live_op(loop, tag);
    if (!op)
        return;
    if (op->flags & VIGIL__OPF_CANCELING) { /* stopped by a callback: no new wait */
        complete(loop, tag, -ECANCELED, 0);
        return;
    }
    int rc = zero_read(loop, op, sock, kind); /* still in the kernel's stead: no new count */
    if (rc < 0)
        complete(loop, tag, rc, 0);
}

/* Datagrams are there: each into a pool buffer as io_uring's multishot
 * recvmsg lays it out (vigil__msgout, the address, the payload at
 * VIGIL__UDP_HEAD), as the epoll backend does, until the socket has no
 * more; then another peek waits. An empty datagram is a datagram, not an
 * end. One longer than the room fails with WSAEMSGSIZE after filling the
 * room with its start (the rest is gone, its length untold): it is
 * delivered cut, with the truncation flag. An ICMP error for an earlier
 * send (WSAECONNRESET, WSAENETRESET on UDP) is not the socket's end. */
static void on_datagrams(vigil_loop *loop, iocp_state *s, uint64_t tag, SOCKET sock) {
    for (int i = 0; i < READS_PER_PACKET * 4; i++) {
        uint32_t id;
        if (!next_buffer(loop, s, tag, &id))
            return;
        uint8_t *buf = loop->env.buf_base + (size_t)id * loop->env.opts->buf_size;
        int room = (int)(loop->env.opts->buf_size - VIGIL__UDP_HEAD);
        int namelen = VIGIL__UDP_NAME_MAX;
        struct sockaddr *name = (struct sockaddr *)(buf + sizeof(vigil__msgout));
        int n = recvfrom(sock, (char *)buf + VIGIL__UDP_HEAD, room, 0, name, &namelen);
        int err = n < 0 ? WSAGetLastError() : 0;
        if (n >= 0 || err == WSAEMSGSIZE) {
            vigil__msgout *o = (vigil__msgout *)buf;
            *o = (vigil__msgout){(uint32_t)namelen, 0, (uint32_t)(n >= 0 ? n : room), n >= 0 ? 0u : VIGIL__MSG_TRUNC};
            complete(loop, tag, (int32_t)(VIGIL__UDP_HEAD + o->payloadlen),
                     VIGIL__CQE_MSGOUT | VIGIL__CQE_MORE | VIGIL__CQE_BUF | (id << 16));
            continue;
        }
        s->free_bufs[s->nfree++] = id;
        if (err == WSAEWOULDBLOCK)
            break;
        if (err == WSAECONNRESET || err == WSAENETRESET)
            continue;
        complete(loop, tag, vigil__win_errno((unsigned long)err), VIGIL__CQE_MSGOUT);
        return;
    }
    wait_again(loop, tag, sock, FL_UDP);
}

/* Data is there: fill pool buffers until the socket has no more, then wait
 * again with a zero-byte read (or end: EOF, an error, no buffer). */
static void on_readable(vigil_loop *loop, iocp_state *s, uint64_t tag, SOCKET sock) {
    for (int i = 0; i < READS_PER_PACKET; i++) {
        uint32_t id;
        if (!next_buffer(loop, s, tag, &id))
            return;
        char *buf = (char *)loop->env.buf_base + (size_t)id * loop->env.opts->buf_size;
        int n = recv(sock, buf, (int)loop->env.opts->buf_size, 0);
        if (n > 0) {
            complete(loop, tag, n, VIGIL__CQE_MORE | VIGIL__CQE_BUF | (id << 16));
            if ((uint32_t)n < loop->env.opts->buf_size)
                break; /* drained, most likely: wait again */
            continue;
        }
        s->free_bufs[s->nfree++] = id;
        int err = n < 0 ? WSAGetLastError() : 0;
        if (n < 0 && err == WSAEWOULDBLOCK)
            break;
        complete(loop, tag, n == 0 ? 0 : vigil__win_errno((unsigned long)err), 0);
        return;
    }
    wait_again(loop, tag, sock, FL_RECV);
}

/* Under wine a packet can be dequeued before the OVERLAPPED it names is
 * final (its Internal still STATUS_PENDING): seen for zero-byte receives a
 * thread had dequeued and not handled when it was fenced, whose status is
 * only written when that thread makes its next system call. Such a
 * flight's memory is kept until the write came, and freed then (or with
 * the loop), so a late write never lands in a new request. */
static bool unsettled(const flight *f) { return f->s != INVALID_SOCKET && f->ov.Internal == OV_PENDING; }

static void retire(iocp_state *s, flight *f) {
    if (!unsettled(f)) {
        flight_free(s, f);
        return;
    }
    if (f->prev) /* off the live list, onto the unsettled one */
        f->prev->next = f->next;
    else
        s->live = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->prev = NULL;
    f->next = s->unsettled;
    s->unsettled = f;
}

static void reap_unsettled(iocp_state *s) {
    for (flight **pp = &s->unsettled; *pp;) {
        flight *f = *pp;
        if (f->ov.Internal != OV_PENDING) {
            *pp = f->next;
            free(f);
        } else {
            pp = &f->next;
        }
    }
}

static void handle(vigil_loop *loop, iocp_state *s, flight *f, DWORD bytes, ULONG_PTR status) {
    uint64_t tag = f->tag;
    int kind = f->kind;
    SOCKET sock = f->s, acc = f->acc;
    /* Unsettled: a zero-byte receive moved nothing, so its packet means
     * "readable"; another request is taken at the packet's word when that
     * says success (not seen: loud -EIO otherwise, never a guess). */
    int32_t res;
    if (!unsettled(f))
        res = kind == FL_POLL ? poll_result(s, f) : result_of(f, bytes);
    else if (kind == FL_RECV || kind == FL_WAKE || kind == FL_UDP)
        res = 0;
    else if (status == 0)
        res = kind == FL_POLL ? poll_mask(f) : (int32_t)bytes;
    else
        res = -EIO;
    retire(s, f);
    switch (kind) {
    case FL_WAKE: {
        char drain[64]; /* the wake socket is non-blocking: take every wake byte */
        while (recv(sock, drain, sizeof(drain), 0) > 0)
            ;
        /* as an eventfd read; WSAEMSGSIZE: the zero-byte read took a wake byte */
        complete(loop, tag, res < 0 && res != -EMSGSIZE ? res : 8, 0);
        return;
    }
    case FL_ACCEPT: {
        vigil__op *op = live_op(loop, tag);
        if (res < 0 || !op) {
            closesocket(acc);
            complete(loop, tag, res < 0 ? res : -ECANCELED, 0);
            return;
        }
        setsockopt(acc, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (char *)&sock, sizeof(sock));
        bool again = !(op->flags & VIGIL__OPF_CANCELING);
        complete(loop, tag, (int32_t)acc, again ? VIGIL__CQE_MORE : 0);
        if (!again)
            return;
        if ((op = live_op(loop, tag)) != NULL) { /* the next accept */
            int rc = iocp_accept(loop, op, (vigil_socket)sock);
            if (rc < 0)
                complete(loop, tag, rc, 0);
        }
        return;
    }
    case FL_CONNECT:
        if (res >= 0)
            setsockopt(sock, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0);
        complete(loop, tag, res < 0 ? res : 0, 0);
        return;
    case FL_RECV:
        if (res < 0)
            complete(loop, tag, res, 0); /* aborted (-ECANCELED) or failed */
        else
            on_readable(loop, s, tag, sock);
        return;
    case FL_UDP: /* a peek at a datagram longer than none, or an ICMP error: readable */
        if (res < 0 && res != -EMSGSIZE && res != -ECONNRESET && res != -ENETRESET)
            complete(loop, tag, res, 0);
        else
            on_datagrams(loop, s, tag, sock);
        return;
    default: /* sends, polls, posted no-ops and closes */
        complete(loop, tag, res, 0);
    }
}

static int iocp_wait(vigil_loop *loop, int64_t timeout_ns) {
    iocp_state *s = st(loop);
    if (s->unsettled)
        reap_unsettled(s);
    if (s->got_pos < s->got_n) { /* a fenced thread's batch, handed over: its rest first */
        uint32_t rest = s->got_n - s->got_pos;
        while (s->got_pos < s->got_n) {
            packet p = s->got[s->got_pos++];
            handle(loop, s, p.f, p.bytes, p.status);
        }
        s->got_pos = s->got_n = 0;
        return (int)rest;
    }
    DWORD ms = timeout_ns < 0 ? INFINITE : timeout_ns == 0 ? 0 : (DWORD)((timeout_ns + 999999) / 1000000);
    ULONG n = 0;
    vigil__wait_enter(loop);
    BOOL ok = GetQueuedCompletionStatusEx(s->port, s->entries, BATCH, &n, ms, FALSE);
    vigil__wait_leave(loop); /* a fenced thread leaves here */
    if (!ok) {
        DWORD e = GetLastError();
        return e == WAIT_TIMEOUT ? 0 : vigil__win_errno(e);
    }
    /* Into backend memory first; each packet leaves it before it is handled. */
    for (ULONG i = 0; i < n; i++)
        s->got[i] = (packet){(flight *)s->entries[i].lpOverlapped, s->entries[i].dwNumberOfBytesTransferred,
                             s->entries[i].Internal};
    s->got_pos = 0;
    s->got_n = n;
    while (s->got_pos < s->got_n) {
        packet p = s->got[s->got_pos++];
        handle(loop, s, p.f, p.bytes, p.status);
    }
    s->got_pos = s->got_n = 0;
    return (int)n;
}

static int iocp_poll_fd(vigil_loop *loop) { return -1; /* the supervisor on Windows: not yet */ }

static void iocp_buf_recycle(vigil_loop *loop, uint32_t id) {
    iocp_state *s = st(loop);
    s->free_bufs[s->nfree++] = id;
}

/* Never called: rebuilds hand the state over (iocp_handover). */
static uint32_t iocp_harvest(void *state, vigil__cqe *out, uint32_t max, bool *overflowed) {
    (void)state, (void)out, (void)max, (void)overflowed;
    return 0;
}

/* A rebuild on Windows keeps the port, its sockets and every request in
 * flight; only the thread that waits on it changes (docs/windows.md). The
 * fenced thread never waits on the port again, so each packet still to
 * come is dequeued by the new thread, and what the fenced thread had
 * dequeued and not handled is still in got[], handled first by the next
 * wait. Flights of live ops take the new epoch, so those ops are not
 * issued again; a flight whose op is gone stays stale. */
static int iocp_handover(vigil_loop *loop) {
    iocp_state *s = st(loop);
    uint8_t old_epoch = (uint8_t)(loop->epoch - 1);
    for (flight *f = s->live; f; f = f->next) {
        if (f->tag == VIGIL__TAG_IGNORE || (uint8_t)(f->tag >> 56) != old_epoch)
            continue;
        vigil__op *op = vigil__op_at(loop, (uint32_t)f->tag);
        if (!op || op->kind == VIGIL__OP_FREE || op->gen != ((uint32_t)(f->tag >> 32) & VIGIL__TAG_GEN_MASK))
            continue;
        op->req_epoch = loop->epoch;
        f->tag = vigil__op_tag(loop, op);
    }
    return 0;
}

const vigil__backend vigil__iocp_backend = {
    .name = "iocp",
    .id = 0, /* no VIGIL_BACKEND_* value of its own: the only one on Windows */
    .caps = VIGIL__CAP_HANDOVER | VIGIL__CAP_FILE_IO,
    .init = iocp_init,
    .attach = iocp_attach,
    .fini = iocp_fini,
    .accept = iocp_accept,
    .recv = iocp_recv,
    .recv_dgram = iocp_recv_dgram,
    .wake = arm_wake,
    .send = iocp_send,
    .send_file = iocp_send_file,
    .connect = iocp_connect,
    .close = iocp_close,
    .cancel = iocp_cancel,
    .nop = iocp_nop,
    .wait = iocp_wait,
    .poll_fd = iocp_poll_fd,
    .buf_recycle = iocp_buf_recycle,
    .resume_connect = iocp_resume_connect,
    .poll = iocp_poll,
    .harvest = iocp_harvest,
    .abandon = iocp_abandon,
    .handover = iocp_handover,
    .file_bind = iocp_file_bind,
    .file_rw = iocp_file_rw,
};
