/*
 * iocp.c: the Windows backend, on an I/O completion port (docs/windows.md).
 *
 * Built so far: the port, the wait (GetQueuedCompletionStatusEx, copied
 * into loop->batch before anything is dispatched, as on Linux), the wake
 * (a zero-byte WSARecv on the loop's wake socket, drained when it
 * completes), the stale-completion no-op and cancel. Sockets (AcceptEx,
 * ConnectEx, zero-byte receives, WSASend) are the next step: until then
 * their requests say -ENOTSUP, and vigil_loop_info names the backend
 * "iocp (no sockets yet)".
 *
 * Every request the port knows has a flight: a record of the backend's own
 * that holds the OVERLAPPED, the op's tag and the socket. The port hands
 * the OVERLAPPED back; the tag, not a pointer, names the op, so a late
 * packet for an op that is gone is stale and dropped like any other. A
 * flight is freed only once its packet was dequeued, cancelled or not.
 */
#include "io/loop.h"
#include "platform/platform.h"

#include <winsock2.h>
#include <windows.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 256

typedef struct flight {
    OVERLAPPED ov; /* first: the port hands this pointer back */
    uint64_t tag;
    SOCKET s;      /* INVALID_SOCKET for a posted packet */
    int kind;      /* FL_* */
    struct flight *prev, *next; /* live flights, for cancel */
} flight;
enum { FL_POST = 1, FL_WAKE };

typedef struct iocp_state {
    HANDLE port;
    flight *live;
    uint32_t *free_bufs; /* the pool's free list: the backend hands buffers out */
    uint32_t nfree;
    OVERLAPPED_ENTRY entries[BATCH];
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
    s->free_bufs = malloc(loop->opts.buf_count * sizeof(uint32_t));
    if (!s->free_bufs) {
        iocp_fini(loop);
        return -ENOMEM;
    }
    for (uint32_t i = loop->opts.buf_count; i-- > 0;)
        if (loop->buf_state[i] == VIGIL__BUF_KERNEL)
            s->free_bufs[s->nfree++] = i;
    s->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    if (!s->port) {
        int rc = vigil__win_errno(GetLastError());
        iocp_fini(loop);
        return rc;
    }
    /* the wake socket is the loop's: bound to this port for life */
    if (!CreateIoCompletionPort((HANDLE)(uintptr_t)loop->wake_fd, s->port, 0, 0)) {
        int rc = vigil__win_errno(GetLastError());
        iocp_fini(loop);
        return rc;
    }
    loop->info.features = 0;
    loop->info.ring_entries = loop->info.cq_entries = 0;
    return 0;
}

/* A zero-byte receive on the wake socket: it completes when a wake arrives. */
static int arm_wake(vigil_loop *loop, vigil__op *op) {
    iocp_state *s = st(loop);
    SOCKET w = (SOCKET)(uintptr_t)loop->wake_fd;
    flight *f = flight_new(s, FL_WAKE, vigil__op_tag(loop, op), w);
    if (!f)
        return -ENOMEM;
    WSABUF wb = {0, NULL};
    DWORD flags = 0;
    if (WSARecv(w, &wb, 1, NULL, &flags, &f->ov, NULL) == SOCKET_ERROR && WSAGetLastError() != WSA_IO_PENDING) {
        int rc = vigil__win_errno((unsigned long)WSAGetLastError());
        flight_free(s, f);
        return rc;
    }
    vigil__op_kernel_started(loop, op);
    return 0;
}

static int iocp_attach(vigil_loop *loop) {
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_WAKE);
    if (!op)
        return -ENOMEM;
    return arm_wake(loop, op);
}

static int iocp_recv(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    if (op->kind == VIGIL__OP_WAKE)
        return arm_wake(loop, op);
    return -ENOTSUP; /* sockets: the next step */
}

static int iocp_accept(vigil_loop *loop, vigil__op *op, vigil_socket fd) { return -ENOTSUP; }
static int iocp_send(vigil_loop *loop, vigil__op *op, vigil_socket fd, const vigil__slice *sl, int n) {
    return -ENOTSUP;
}
static int iocp_connect(vigil_loop *loop, vigil__op *op, vigil_socket fd, const void *addr, uint32_t len) {
    return -ENOTSUP;
}
static int iocp_resume_connect(vigil_loop *loop, vigil__op *op, vigil_socket fd) { return -ENOTSUP; }
static int iocp_poll(vigil_loop *loop, vigil__op *op, int fd, bool out) { return -ENOTSUP; }

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

/* What a packet says, as the core wants it: bytes, or -errno. */
static int32_t result_of(flight *f, DWORD bytes) {
    if (f->s == INVALID_SOCKET)
        return (int32_t)bytes;
    DWORD n = 0, flags = 0;
    if (WSAGetOverlappedResult(f->s, &f->ov, &n, FALSE, &flags))
        return (int32_t)n;
    return vigil__win_errno((unsigned long)WSAGetLastError());
}

static int iocp_wait(vigil_loop *loop, int64_t timeout_ns) {
    iocp_state *s = st(loop);
    DWORD ms = timeout_ns < 0 ? INFINITE : timeout_ns == 0 ? 0 : (DWORD)((timeout_ns + 999999) / 1000000);
    ULONG n = 0;
    vigil__wait_enter(loop);
    BOOL ok = GetQueuedCompletionStatusEx(s->port, s->entries, BATCH, &n, ms, FALSE);
    vigil__wait_leave(loop); /* a fenced thread leaves here */
    if (!ok) {
        DWORD e = GetLastError();
        return e == WAIT_TIMEOUT ? 0 : vigil__win_errno(e);
    }
    /* Copy the packets into loop memory and free their flights first: the
     * batch stays reachable while callbacks run. */
    for (ULONG i = 0; i < n; i++) {
        flight *f = (flight *)s->entries[i].lpOverlapped;
        vigil__cqe *e = &loop->batch[i];
        e->tag = f->tag;
        e->flags = 0;
        if (f->kind == FL_WAKE) { /* take every wake byte: one completion stands for all */
            char drain[64]; /* the wake socket is non-blocking */
            while (recv(f->s, drain, sizeof(drain), 0) > 0)
                ;
            e->res = 8; /* as an eventfd read */
        } else {
            e->res = result_of(f, s->entries[i].dwNumberOfBytesTransferred);
        }
        flight_free(s, f);
    }
    loop->batch_len = n;
    for (loop->batch_pos = 0; loop->batch_pos < n; loop->batch_pos++)
        vigil__dispatch(loop, &loop->batch[loop->batch_pos]);
    loop->batch_len = loop->batch_pos = 0;
    return (int)n;
}

static int iocp_poll_fd(vigil_loop *loop) { return -1; /* the supervisor on Windows: not yet */ }

static void iocp_buf_recycle(vigil_loop *loop, uint32_t id) {
    iocp_state *s = st(loop);
    s->free_bufs[s->nfree++] = id;
}

static uint32_t iocp_harvest(void *state, vigil__cqe *out, uint32_t max, bool *overflowed) {
    (void)state, (void)out, (void)max, (void)overflowed;
    return 0; /* rebuilds on Windows keep the port: not yet */
}

const vigil__backend vigil__iocp_backend = {
    .name = "iocp (no sockets yet)",
    .init = iocp_init,
    .attach = iocp_attach,
    .fini = iocp_fini,
    .accept = iocp_accept,
    .recv = iocp_recv,
    .send = iocp_send,
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
};
