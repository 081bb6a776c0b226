/*
 * tcp.c: listeners and connections on top of the op table.
 *
 * A connection owns a plain fd and at most: one receive op, one connect op,
 * one close op, and a queue of send ops of which at most one kernel send is
 * in flight (it may carry several queued messages as one vectored send).
 * Bytes confirmed by a send completion are applied to the queue in order, so
 * a partial send continues from the exact offset and nothing is reordered.
 *
 * Closing: the receive is stopped and, for a graceful close, the queue is
 * flushed (bounded by the flush deadline on the close op), then FIN (or RST
 * for abort) and the fd close. The close callback runs after every other op
 * of the connection has had its final callback.
 */
#include "core/loop.h"
#include "os/platform.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SEND_BATCH 16 /* messages per vectored send */

static void conn_maybe_close(vigil_loop *loop, vigil__conn *c);
static void send_pump(vigil_loop *loop, vigil__conn *c);
static void send_fail_all(vigil_loop *loop, vigil__conn *c, int status, bool later);
static int conn_drain(vigil_loop *loop, vigil__conn *c);
static void recv_arm(vigil_loop *loop, vigil__op *op, vigil__conn *c);
static void stream_broken(vigil_loop *loop, vigil__conn *c, int status);

static vigil__conn *stream_from(vigil_loop *loop, vigil_conn h) {
    vigil__conn *c = vigil__conn_from_id(loop, h.id);
    return c && c->kind == VIGIL__CONN_STREAM ? c : NULL;
}

static vigil__op *op_of(vigil_loop *loop, uint32_t slot1) {
    return slot1 ? vigil__op_at(loop, slot1 - 1) : NULL;
}

/* The entry check of calls on a connection: the loop thread (VIGIL__API,
 * whose scope is the calling function), then a live stream. */
#define ENTER_STREAM(loop, h, c)                                                            \
    VIGIL__API(loop, (h).id);                                                               \
    vigil__conn *c = stream_from(loop, h);                                                  \
    if (!c)                                                                                 \
    return -EBADF

/* The connection's receive, unless it is ending. */
static vigil__op *live_recv(vigil_loop *loop, vigil__conn *c) {
    vigil__op *op = op_of(loop, c->recv_op);
    return op && !(op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_USER_DONE)) ? op : NULL;
}

static vigil_conn conn_handle(vigil_loop *loop, vigil__conn *c) {
    return (vigil_conn){vigil__conn_id(loop, c)};
}

static bool conn_alive(vigil_loop *loop, vigil__conn *c, uint64_t id) {
    return vigil__conn_from_id(loop, id) == c;
}

/* Marks op user-done and frees it if the kernel is done with it too. */
static void op_done(vigil_loop *loop, vigil__op *op) {
    op->flags |= VIGIL__OPF_USER_DONE;
    if (op->heap >= 0)
        vigil__heap_remove(loop, op);
    vigil__op_release(loop, op);
}

/* ---------------------------------------------------------- listeners */

static void accept_arm(vigil_loop *loop, vigil__op *op, vigil__conn *l) {
    int rc = loop->be->accept(loop, op, l->fd);
    if (rc < 0) { /* no room to queue it: retry shortly rather than lose the listener */
        op->due_ns = vigil__clock_ns() + 10000000ull;
        vigil__heap_push(loop, op);
    }
}

/* A listener on fd, which it owns from now on (closed here on failure). */
static int listener_new(vigil_loop *loop, vigil_socket fd, vigil_accept_cb cb, void *ud, vigil_listener *out) {
    vigil__conn *l = vigil__conn_new(loop, VIGIL__CONN_LISTENER, fd);
    vigil__op *op = l ? vigil__op_new(loop, VIGIL__OP_ACCEPT) : NULL;
    if (!op) {
        if (l)
            vigil__conn_free(loop, l);
        vigil__socket_close_now(fd);
        return -ENOMEM;
    }
    op->cb = (void *)cb;
    op->ud = ud;
    op->conn = vigil__conn_slot1(loop, l);
    l->io_op = op->self + 1;
    accept_arm(loop, op, l);
    out->id = vigil__conn_id(loop, l);
    return 0;
}

int vigil_listener_open(vigil_loop *loop, const vigil_listener_options *opts, vigil_accept_cb cb,
                        void *ud, vigil_listener *out) {
    VIGIL__API(loop, 0);
    int rc;
    if (!opts || !cb || !out || opts->backlog < 0 || !VIGIL__RESERVED_ZERO(*opts))
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    vigil__addr addr;
    rc = opts->path ? vigil__addr_unix(opts->path, &addr)
                    : vigil__addr_parse(opts->host ? opts->host : "127.0.0.1", opts->port, &addr);
    if (rc < 0)
        return rc;
    vigil_socket fd;
    rc = vigil__tcp_socket(&addr, &fd);
    if (rc < 0)
        return rc;
    rc = vigil__tcp_bind_listen(fd, &addr, opts->backlog, opts->reuseport);
    if (rc < 0) {
        vigil__socket_close_now(fd);
        return rc;
    }
    return listener_new(loop, fd, cb, ud, out);
}

int vigil_listener_adopt(vigil_loop *loop, vigil_socket fd, vigil_accept_cb cb, void *ud,
                         vigil_listener *out) {
    VIGIL__API(loop, 0);
    if (!cb || !out)
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    int rc = vigil__socket_adopt(fd, true);
    if (rc < 0)
        return rc;
    /* from here the fd is ours, even if the table is full */
    return listener_new(loop, fd, cb, ud, out);
}

int vigil_conn_adopt(vigil_loop *loop, vigil_socket fd, vigil_conn *out) {
    VIGIL__API(loop, 0);
    if (!out)
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    int rc = vigil__socket_adopt(fd, false);
    if (rc < 0)
        return rc;
    vigil__conn *c = vigil__conn_new(loop, VIGIL__CONN_STREAM, fd);
    if (!c)
        return -ENOMEM; /* the caller keeps the fd */
    *out = conn_handle(loop, c);
    return 0;
}

int vigil_listener_get_port(vigil_loop *loop, vigil_listener h) {
    VIGIL__API(loop, h.id);
    vigil__conn *l = vigil__conn_from_id(loop, h.id);
    if (!l || l->kind != VIGIL__CONN_LISTENER)
        return -EBADF;
    return vigil__socket_port(l->fd);
}

/* Starts the fd close of a connection or listener whose ops have all ended. */
static void close_fd(vigil_loop *loop, vigil__conn *c) {
    vigil__op *op = op_of(loop, c->close_op);
    if (!op) {
        op = vigil__op_new(loop, VIGIL__OP_CLOSE);
        if (!op) { /* cannot track it: close synchronously, it does not block */
            vigil__socket_close_now(c->fd);
            vigil__conn_free(loop, c);
            return;
        }
        op->conn = vigil__conn_slot1(loop, c);
        c->close_op = op->self + 1;
    }
    if (op->heap >= 0)
        vigil__heap_remove(loop, op);
    c->flags |= VIGIL__CF_CLOSE_SENT;
    if (loop->be->close(loop, op, c->fd) < 0) {
        vigil__socket_close_now(c->fd);
        vigil__later(loop, op, 0);
    }
}

int vigil_listener_close(vigil_loop *loop, vigil_listener h) {
    VIGIL__API(loop, h.id);
    vigil__conn *l = vigil__conn_from_id(loop, h.id);
    if (!l || l->kind != VIGIL__CONN_LISTENER || (l->flags & VIGIL__CF_CLOSING))
        return -EBADF;
    l->flags |= VIGIL__CF_CLOSING;
    vigil__op *op = op_of(loop, l->io_op);
    if (op && (op->flags & VIGIL__OPF_KERNEL))
        vigil__op_cancel_kernel(loop, op);
    else if (op && !(op->flags & VIGIL__OPF_USER_DONE))
        vigil__later(loop, op, -ECANCELED);
    else
        close_fd(loop, l);
    return 0;
}

static void accept_final(vigil_loop *loop, vigil__op *op, vigil__conn *l, int status) {
    vigil_accept_cb cb = (vigil_accept_cb)op->cb;
    void *ud = op->ud;
    vigil_listener lh = {vigil__conn_id(loop, l)};
    l->io_op = 0;
    op_done(loop, op);
    if (l->flags & VIGIL__CF_CLOSING)
        close_fd(loop, l); /* before the callback: nothing is left to do after it */
    VIGIL__CALLBACK(loop, cb, (loop, lh, status, (vigil_conn){0}, ud));
}

static void accept_complete(vigil_loop *loop, vigil__op *op, vigil__conn *l, const vigil__cqe *e) {
    bool more = e->flags & VIGIL__CQE_MORE;
    if (e->res >= 0) {
        vigil_socket fd = e->res;
        if (l->flags & VIGIL__CF_CLOSING || (op->flags & VIGIL__OPF_USER_DONE)) {
            vigil__socket_close_now(fd);
        } else {
            vigil__socket_prepare_accepted(fd);
            vigil__conn *c = vigil__conn_new(loop, VIGIL__CONN_STREAM, fd);
            if (!c) {
                vigil__socket_close_now(fd);
            } else {
                vigil_accept_cb cb = (vigil_accept_cb)op->cb;
                VIGIL__CALLBACK(loop, cb, (loop, (vigil_listener){vigil__conn_id(loop, l)}, 0,
                                         conn_handle(loop, c), op->ud));
            }
        }
    }
    if (more)
        return;
    /* The accept op ended. */
    if (op->flags & VIGIL__OPF_USER_DONE) {
        vigil__op_release(loop, op);
        return;
    }
    if (l->flags & VIGIL__CF_CLOSING) {
        accept_final(loop, op, l, -ECANCELED);
        return;
    }
    switch (e->res) {
    case -EMFILE:
    case -ENFILE:
    case -ENOBUFS:
    case -ENOMEM:
        /* Out of fds or memory: pause and retry later instead of spinning;
         * pending connections wait in the backlog. */
        if (e->res == -EMFILE || e->res == -ENFILE)
            vigil__stat_add(&loop->sv.stats.accept_emfile, 1);
        op->due_ns = vigil__clock_ns() + 20000000ull;
        vigil__heap_push(loop, op);
        return;
    case -ECANCELED:
    case -EINTR:
    case -EAGAIN:
    case -ECONNABORTED:
    case -EPROTO:
    case -EPERM:
    default:
        if (e->res >= 0 || e->res == -ECANCELED || e->res == -EINTR || e->res == -EAGAIN ||
            e->res == -ECONNABORTED || e->res == -EPROTO || e->res == -EPERM) {
            accept_arm(loop, op, l); /* transient, or a one-shot accept that succeeded */
            return;
        }
        accept_final(loop, op, l, e->res);
    }
}

/* ------------------------------------------------------------ connect */

static int connect_to(vigil_loop *loop, const vigil__addr *addr, uint32_t deadline_ms, vigil_connect_cb cb,
                      void *ud, vigil_conn *out, vigil_op *oph) {
    vigil_socket fd;
    int rc = vigil__tcp_socket(addr, &fd);
    if (rc < 0)
        return rc;
    vigil__conn *c = vigil__conn_new(loop, VIGIL__CONN_STREAM, fd);
    vigil__op *op = c ? vigil__op_new(loop, VIGIL__OP_CONNECT) : NULL;
    void *a = op ? malloc(addr->len) : NULL;
    if (!a) {
        if (op) {
            op->flags |= VIGIL__OPF_USER_DONE;
            vigil__op_release(loop, op);
        }
        if (c)
            vigil__conn_free(loop, c);
        vigil__socket_close_now(fd);
        return -ENOMEM;
    }
    memcpy(a, addr->bytes, addr->len);
    op->u.connect.addr = a;
    op->u.connect.addrlen = addr->len;
    op->cb = (void *)cb;
    op->ud = ud;
    op->conn = vigil__conn_slot1(loop, c);
    c->flags |= VIGIL__CF_CONNECTING;
    c->io_op = op->self + 1;
    if (deadline_ms) {
        op->due_ns = vigil__clock_ns() + deadline_ms * 1000000ull;
        vigil__heap_push(loop, op);
    }
    rc = loop->be->connect(loop, op, fd, a, addr->len);
    if (rc < 0)
        vigil__later(loop, op, rc);
    if (out)
        *out = conn_handle(loop, c);
    if (oph)
        *oph = vigil__op_handle(loop, op);
    return 0;
}

int vigil_conn_connect(vigil_loop *loop, const char *host, uint16_t port, uint32_t deadline_ms,
                       vigil_connect_cb cb, void *ud, vigil_conn *out, vigil_op *oph) {
    VIGIL__API(loop, 0);
    if (!host || !cb || port == 0)
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    vigil__addr addr;
    int rc = vigil__addr_parse(host, port, &addr);
    return rc < 0 ? rc : connect_to(loop, &addr, deadline_ms, cb, ud, out, oph);
}

int vigil_conn_connect_unix(vigil_loop *loop, const char *path, uint32_t deadline_ms, vigil_connect_cb cb,
                            void *ud, vigil_conn *out, vigil_op *oph) {
    VIGIL__API(loop, 0);
    if (!path || !cb)
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    vigil__addr addr;
    int rc = vigil__addr_unix(path, &addr);
    return rc < 0 ? rc : connect_to(loop, &addr, deadline_ms, cb, ud, out, oph);
}

static void connect_final(vigil_loop *loop, vigil__op *op, vigil__conn *c, int status) {
    if (op->flags & VIGIL__OPF_TIMED_OUT && status < 0)
        status = -ETIMEDOUT;
    else if (op->flags & VIGIL__OPF_STOPPED && status < 0)
        status = -ECANCELED;
    c->io_op = 0;
    c->flags &= (uint16_t)~VIGIL__CF_CONNECTING;
    vigil_connect_cb cb = (vigil_connect_cb)op->cb;
    void *ud = op->ud;
    op_done(loop, op);
    bool user_closing = c->flags & VIGIL__CF_CLOSING;
    if (status < 0) { /* the stream never existed: every call on it fails from now on */
        c->flags |= VIGIL__CF_BROKEN | (user_closing ? 0 : VIGIL__CF_CLOSING | VIGIL__CF_ABORT);
        c->fail_status = user_closing ? -ECANCELED : status;
    }
    uint64_t cid = vigil__conn_id(loop, c);
    VIGIL__CALLBACK(loop, cb, (loop, conn_handle(loop, c), status, ud));
    if (status < 0 && conn_alive(loop, c, cid)) /* sends queued while connecting: never sent */
        send_fail_all(loop, c, user_closing ? -ECANCELED : status, false);
    if (!conn_alive(loop, c, cid))
        return;
    if (user_closing) {
        /* connected after all: flush what was queued, then close (send_pump
         * closes when the queue is empty); failed: close at once */
        if (status == 0)
            send_pump(loop, c);
        else
            conn_maybe_close(loop, c);
    } else if (status < 0) {
        /* A failed connection is gone at once: no ops ever ran on its fd, so
         * closing it here does not block and the handle dies with it. */
        vigil__socket_close_now(c->fd);
        vigil__conn_free(loop, c);
    } else {
        send_pump(loop, c); /* sends queued while connecting */
    }
}

/* ------------------------------------------------------------- receive */

int vigil_conn_recv_start(vigil_loop *loop, vigil_conn h, uint32_t idle_deadline_ms, vigil_recv_cb cb,
                          void *ud, vigil_op *oph) {
    ENTER_STREAM(loop, h, c);
    if (!cb)
        return -EINVAL;
    if (c->flags & (VIGIL__CF_CLOSING | VIGIL__CF_BROKEN))
        return -VIGIL_ESHUTDOWN;
    if (c->flags & VIGIL__CF_CONNECTING)
        return -ENOTCONN;
    if (c->recv_op)
        return -EALREADY;
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_RECV);
    if (!op)
        return -ENOMEM;
    op->cb = (void *)cb;
    op->ud = ud;
    op->conn = vigil__conn_slot1(loop, c);
    op->u.recv.idle_ns = idle_deadline_ms * 1000000ull;
    op->u.recv.last_ns = vigil__clock_ns();
    if (idle_deadline_ms) {
        op->due_ns = op->u.recv.last_ns + op->u.recv.idle_ns;
        vigil__heap_push(loop, op);
    }
    c->recv_op = op->self + 1;
    recv_arm(loop, op, c);
    if (oph)
        *oph = vigil__op_handle(loop, op);
    return 0;
}

static void recv_arm(vigil_loop *loop, vigil__op *op, vigil__conn *c) {
    if (!loop->bufs_free) {
        /* Every buffer is with the user or parked: wait for one to come back. */
        if (!(c->flags & VIGIL__CF_BUF_WAIT)) {
            c->flags |= VIGIL__CF_BUF_WAIT;
            vigil__queue_push(loop, &loop->buf_wait, c->self + 1, vigil__conn_link);
        }
        return;
    }
    if (loop->be->recv(loop, op, c->fd) < 0) {
        op->status = -ENOMEM;
        op->flags |= VIGIL__OPF_STOPPED;
        vigil__later(loop, op, -ENOMEM);
    }
}

void vigil__tcp_buffers_freed(vigil_loop *loop) {
    for (uint32_t s1; loop->bufs_free && (s1 = vigil__queue_pop(loop, &loop->buf_wait, vigil__conn_link));) {
        vigil__conn *c = vigil__conn_at(loop, s1);
        c->flags &= (uint16_t)~VIGIL__CF_BUF_WAIT;
        vigil__op *op = op_of(loop, c->recv_op);
        if (c->kind == VIGIL__CONN_DGRAM)
            vigil__udp_rearm(loop, c);
        else if (c->kind == VIGIL__CONN_STREAM && op &&
            !(op->flags & (VIGIL__OPF_KERNEL | VIGIL__OPF_CARRIED | VIGIL__OPF_PAUSED |
                           VIGIL__OPF_STOPPED | VIGIL__OPF_USER_DONE)))
            recv_arm(loop, op, c);
    }
}

static void buf_wait_remove(vigil_loop *loop, vigil__conn *c) {
    if (!(c->flags & VIGIL__CF_BUF_WAIT))
        return;
    if (vigil__queue_remove(loop, &loop->buf_wait, c->self + 1, vigil__conn_link))
        c->flags &= (uint16_t)~VIGIL__CF_BUF_WAIT;
}

static void recv_deliver(vigil_loop *loop, vigil__op *op, vigil__conn *c, uint32_t id, uint32_t len) {
    if (!op->cb) { /* the close's drain: the bytes are not wanted */
        vigil__buf_recycle(loop, id);
        return;
    }
    vigil_buf b = {loop->buf_base + (size_t)id * loop->opts.buf_size, len, id, 0};
    loop->buf_state[id] = VIGIL__BUF_USER;
    loop->buf_current = id;
    vigil_recv_cb cb = (vigil_recv_cb)op->cb;
    VIGIL__CALLBACK(loop, cb, (loop, conn_handle(loop, c), (int)len, &b, op->ud));
    loop->buf_current = UINT32_MAX;
    if (loop->buf_state[id] == VIGIL__BUF_USER)
        vigil__buf_recycle(loop, id);
}

/* Queues buffer id (len bytes) behind the connection's parked bytes:
 * through the buffers' own links, so it never allocates (op.h). */
static void park(vigil_loop *loop, vigil__conn *c, uint32_t id, uint32_t len) {
    loop->buf_state[id] = VIGIL__BUF_PARKED;
    loop->buf_park[id] = (vigil__parked){0, len};
    if (c->parked_tail)
        loop->buf_park[c->parked_tail - 1].next = id + 1;
    else
        c->parked_head = id + 1;
    c->parked_tail = id + 1;
}

static bool parked_pending(const vigil__conn *c) { return c->parked_head != 0; }

/* Takes the first parked buffer off the queue: its id, *len its bytes. */
static uint32_t unpark(vigil_loop *loop, vigil__conn *c, uint32_t *len) {
    uint32_t id = c->parked_head - 1;
    *len = loop->buf_park[id].len;
    c->parked_head = loop->buf_park[id].next;
    if (!c->parked_head)
        c->parked_tail = 0;
    return id;
}

/* Delivers parked bytes in order; stops early if the user pauses again. Each
 * entry leaves the list before its callback, so a fence in one leaves the
 * rest, and only the rest, for the rebuilt loop. */
static void flush_parked(vigil_loop *loop, vigil__op *op, vigil__conn *c, bool even_if_paused) {
    uint32_t gen = op->gen;
    while (parked_pending(c)) {
        if (!even_if_paused && (op->flags & VIGIL__OPF_PAUSED))
            break;
        uint32_t len, id = unpark(loop, c, &len);
        recv_deliver(loop, op, c, id, len);
        if (op->gen != gen || op->kind != VIGIL__OP_RECV)
            break;
    }
}

/* Received bytes nobody will take: the owner closed or cancelled the receive. */
static void discard_parked(vigil_loop *loop, vigil__conn *c) {
    uint32_t len;
    while (parked_pending(c))
        vigil__buf_recycle(loop, unpark(loop, c, &len));
    c->flags &= (uint16_t)~VIGIL__CF_EOF_PARKED;
}

static void recv_final(vigil_loop *loop, vigil__op *op, vigil__conn *c, int status) {
    if (op->flags & VIGIL__OPF_TIMED_OUT)
        status = -ETIMEDOUT;
    else if (op->flags & VIGIL__OPF_STOPPED)
        status = op->status;
    if (op->flags & VIGIL__OPF_PAUSED && !(op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_TIMED_OUT)) &&
        parked_pending(c)) {
        /* The end of the stream waits behind bytes the user has not taken yet. */
        c->flags |= VIGIL__CF_EOF_PARKED;
        c->parked_final = status;
        return;
    }
    if ((op->flags & VIGIL__OPF_STOPPED) && status == -ECANCELED)
        discard_parked(loop, c); /* closed or cancelled by its owner: no data after that */
    else
        flush_parked(loop, op, c, true); /* the stream ended: what came first goes first */
    buf_wait_remove(loop, c);
    c->recv_op = 0;
    vigil_recv_cb cb = (vigil_recv_cb)op->cb;
    void *ud = op->ud;
    op_done(loop, op);
    if (cb)
        VIGIL__CALLBACK(loop, cb, (loop, conn_handle(loop, c), status, NULL, ud));
    else
        c->flags |= VIGIL__CF_DRAINED;
    if (c->flags & VIGIL__CF_CLOSING)
        conn_maybe_close(loop, c);
}

static void recv_complete(vigil_loop *loop, vigil__op *op, vigil__conn *c, const vigil__cqe *e) {
    bool more = e->flags & VIGIL__CQE_MORE;
    if (e->flags & VIGIL__CQE_BUF) {
        uint32_t id = e->flags >> 16;
        loop->bufs_free--;
        if (e->res <= 0 || (op->flags & VIGIL__OPF_USER_DONE) || (c->flags & VIGIL__CF_DISCARD) ||
            ((op->flags & VIGIL__OPF_STOPPED) && op->status == -ECANCELED)) {
            /* no bytes, nobody to take them, its owner closed or cancelled it
             * (no data callback after that: vigil.h), or reset after a fence */
            vigil__buf_recycle(loop, id);
        } else {
            op->u.recv.last_ns = vigil__clock_ns();
            if (op->flags & VIGIL__OPF_PAUSED || parked_pending(c)) {
                park(loop, c, id, (uint32_t)e->res);
            } else {
                uint32_t gen = op->gen;
                recv_deliver(loop, op, c, id, (uint32_t)e->res);
                if (op->gen != gen || op->kind != VIGIL__OP_RECV)
                    return; /* cannot happen while in the kernel, but be safe */
            }
        }
    }
    if (more)
        return;
    if (op->flags & VIGIL__OPF_USER_DONE) {
        vigil__op_release(loop, op);
        return;
    }
    int res = e->res;
    if (res > 0 || res == -ENOBUFS || res == -EAGAIN || ((res == -ECANCELED || res == -EINTR) &&
                                       !(op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_TIMED_OUT)))) {
        /* Not the end of the stream: a one-shot receive, a dry buffer ring, or
         * a cancel we sent to pause. */
        if (res == -ENOBUFS)
            vigil__stat_add(&loop->sv.stats.enobufs_rearms, 1);
        if (op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_TIMED_OUT))
            recv_final(loop, op, c, -ECANCELED);
        else if (!(op->flags & VIGIL__OPF_PAUSED))
            recv_arm(loop, op, c);
        return;
    }
    if (res < 0 && !(op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_TIMED_OUT))) {
        /* The socket failed (a reset, TCP's own timeout): the stream cannot
         * go on in either direction, whichever side saw it first (io_uring
         * often a send, epoll the receive). Unsent messages fail with the
         * same error, then the receive says it, and a close reports it. */
        stream_broken(loop, c, res);
        return;
    }
    recv_final(loop, op, c, res);
}

int vigil_conn_recv_pause(vigil_loop *loop, vigil_conn h) {
    ENTER_STREAM(loop, h, c);
    vigil__op *op = live_recv(loop, c);
    if (!op)
        return -ENOTCONN;
    if (op->flags & VIGIL__OPF_PAUSED)
        return 0;
    op->flags |= VIGIL__OPF_PAUSED;
    /* The idle deadline keeps running: a paused connection whose peer neither
     * sends nor takes what we send is idle, and only the deadline ends it. */
    buf_wait_remove(loop, c);
    return vigil__op_cancel_kernel(loop, op);
}

int vigil_conn_recv_resume(vigil_loop *loop, vigil_conn h) {
    ENTER_STREAM(loop, h, c);
    vigil__op *op = live_recv(loop, c);
    if (!op)
        return -ENOTCONN;
    if (!(op->flags & VIGIL__OPF_PAUSED))
        return 0;
    op->flags &= (uint16_t)~VIGIL__OPF_PAUSED;
    op->u.recv.last_ns = vigil__clock_ns();
    if (op->u.recv.idle_ns && op->heap < 0) {
        op->due_ns = op->u.recv.last_ns + op->u.recv.idle_ns;
        vigil__heap_push(loop, op);
    }
    if (parked_pending(c) || (c->flags & VIGIL__CF_EOF_PARKED))
        vigil__later(loop, op, VIGIL__STATUS_RESUME); /* deliver on the next pass */
    else if (!(op->flags & (VIGIL__OPF_KERNEL | VIGIL__OPF_CARRIED)))
        recv_arm(loop, op, c);
    /* else: the pause's cancel is still under way; its completion re-arms */
    return 0;
}

/* Ends the receive with status (0 for a read shutdown, -ECANCELED otherwise). */
static void recv_stop(vigil_loop *loop, vigil__conn *c, int status) {
    vigil__op *op = op_of(loop, c->recv_op);
    if (!op || (op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_USER_DONE)))
        return;
    op->flags |= VIGIL__OPF_STOPPED;
    op->status = status; /* also replaces a pending resume on the later list */
    if (op->heap >= 0)
        vigil__heap_remove(loop, op);
    buf_wait_remove(loop, c);
    if (op->flags & VIGIL__OPF_KERNEL)
        vigil__op_cancel_kernel(loop, op);
    else if (!(op->flags & VIGIL__OPF_LATER))
        vigil__later(loop, op, status);
}

/* ---------------------------------------------------------------- send */

static void send_unlink_head(vigil_loop *loop, vigil__conn *c, vigil__op *op) {
    vigil__queue_pop(loop, &c->sendq, vigil__op_link); /* op is the head */
    c->queued -= op->u.send.len - op->u.send.done;
}

static void send_final(vigil_loop *loop, vigil__conn *c, vigil__op *op, int status) {
    vigil_send_cb cb = (vigil_send_cb)op->cb;
    void *ud = op->ud;
    op_done(loop, op);
    if (cb)
        VIGIL__CALLBACK(loop, cb, (loop, conn_handle(loop, c), status, ud));
}

/* Reports, in order, the messages at the head of the queue whose every byte
 * went out. Returns false if a callback closed the connection. */
static bool send_report_sent(vigil_loop *loop, vigil__conn *c) {
    uint64_t cid = vigil__conn_id(loop, c);
    for (vigil__op *op; (op = op_of(loop, c->sendq.head)) && op->u.send.done == op->u.send.len;) {
        send_unlink_head(loop, c, op);
        send_final(loop, c, op, (int)op->u.send.len);
        if (!conn_alive(loop, c, cid))
            return false;
    }
    return true;
}

static void check_drain(vigil_loop *loop, vigil__conn *c) {
    if ((c->flags & VIGIL__CF_OVER_HWM) && c->queued <= c->lwm) {
        c->flags &= (uint16_t)~VIGIL__CF_OVER_HWM;
        if (c->drain_cb)
            VIGIL__CALLBACK(loop, c->drain_cb, (loop, conn_handle(loop, c), c->drain_ud));
    }
}

static void send_fail_all(vigil_loop *loop, vigil__conn *c, int status, bool later);

/* The stream cannot go on (a send failed, or a deadline passed). Its owner
 * hears it from every unsent message, and from the receive even while it is
 * paused (bytes already received come first): a paused connection would
 * otherwise never learn that its peer is gone. With no receive to say it, a
 * writer waiting for the drain callback gets that (the queue is empty now);
 * with one, the drain would only come first and find the receive over. */
static void stream_broken(vigil_loop *loop, vigil__conn *c, int status) {
    uint64_t cid = vigil__conn_id(loop, c);
    c->flags |= VIGIL__CF_BROKEN;
    send_fail_all(loop, c, status, false);
    if (!conn_alive(loop, c, cid))
        return;
    bool receiving = live_recv(loop, c) != NULL;
    recv_stop(loop, c, status);
    if (c->flags & VIGIL__CF_CLOSING)
        conn_maybe_close(loop, c);
    else if (!receiving)
        check_drain(loop, c);
}

/* Fails every queued send, in order, with status. The in-flight one (if any)
 * is cancelled and fails when its completion arrives, before the rest.
 * later: called from a vigil call (close, abort, send): no callback runs
 * inside a vigil call, so the finals go to the later list, in order, and
 * run from the loop (the connection lives on until they have). */
static void send_fail_all(vigil_loop *loop, vigil__conn *c, int status, bool later) {
    c->fail_status = status; /* for the rest, should a callback below be fenced */
    vigil__op *head = op_of(loop, c->sendq.head);
    if (head && (head->flags & VIGIL__OPF_KERNEL)) {
        head->flags |= VIGIL__OPF_STOPPED;
        head->status = status;
        vigil__op_cancel_kernel(loop, head);
        return;
    }
    while (c->sendq.head) {
        vigil__op *op = op_of(loop, c->sendq.head);
        send_unlink_head(loop, c, op);
        if (later) {
            op->flags |= VIGIL__OPF_STOPPED;
            vigil__later(loop, op, status);
            continue;
        }
        send_final(loop, c, op, status);
        if (!vigil__conn_from_id(loop, vigil__conn_id(loop, c)))
            return;
    }
}

static void send_pump(vigil_loop *loop, vigil__conn *c) {
    vigil__op *head = op_of(loop, c->sendq.head);
    if (c->flags & (VIGIL__CF_CONNECTING | VIGIL__CF_CLOSE_SENT))
        return;
    if (!head) {
        if ((c->flags & VIGIL__CF_SHUT_WR) && !(c->flags & VIGIL__CF_FIN_SENT)) {
            c->flags |= VIGIL__CF_FIN_SENT;
            vigil__socket_shutdown(c->fd, VIGIL_SHUT_WR);
        }
        if (c->flags & VIGIL__CF_CLOSING)
            conn_maybe_close(loop, c);
        return;
    }
    if (head->flags & (VIGIL__OPF_KERNEL | VIGIL__OPF_CARRIED))
        return; /* one send in flight per connection (a rebuild may hold its completion) */
    bool own_files = loop->be->send_file != NULL;
    int rc;
    if ((head->flags & VIGIL__OPF_FILE) && own_files) {
        head->flags |= VIGIL__OPF_STARTED;
        rc = vigil__file_msg_transmit(loop, c, head); /* a file goes alone there */
    } else {
        vigil__slice s[SEND_BATCH];
        int n = 0;
        for (vigil__op *op = head; op && n < SEND_BATCH; op = op_of(loop, op->next)) {
            uint32_t left = op->u.send.len - op->u.send.done;
            if (op->flags & VIGIL__OPF_FILE) {
                /* what of the file is in memory: the batch ends where it stops */
                if (own_files || !vigil__file_msg_window(loop, c, op, &s[n]))
                    break;
            } else {
                s[n] = (vigil__slice){op->u.send.data + op->u.send.done, left};
            }
            op->flags |= VIGIL__OPF_STARTED; /* part of a send the kernel may carry out */
            if (s[n++].len < left)
                break;
        }
        if (n == 0)
            return; /* the head is a file whose next pages are being read in */
        rc = loop->be->send(loop, head, c->fd, s, n);
    }
    if (rc < 0) {
        /* Could not even queue it (out of memory): the stream cannot go on. */
        c->flags |= VIGIL__CF_BROKEN;
        send_fail_all(loop, c, rc, true); /* send_pump may run inside vigil_conn_send */
    }
}

/* A message a callback queues while nothing is in flight on its connection
 * starts at the end of the pass, before the wait, not at once: everything
 * the pass's callbacks queue on a connection (an HTTP head and its body,
 * the answers to pipelined requests) then leaves in one vectored send, with
 * one completion. It costs no latency: both Linux backends hand sends to
 * the kernel at the wait anyway. */
static void send_pump_soon(vigil_loop *loop, vigil__conn *c) {
    if (!loop->in_callback) {
        send_pump(loop, c); /* called outside the loop's run: no pass to end */
        return;
    }
    if (c->flags & VIGIL__CF_PUMP_SOON)
        return;
    if (loop->pump_n == loop->pump_cap) {
        uint32_t cap = loop->pump_cap ? loop->pump_cap * 2 : 64;
        uint64_t *ids = realloc(loop->pump_ids, cap * sizeof(*ids));
        if (!ids) {
            send_pump(loop, c); /* no room on the list: at once, as it was */
            return;
        }
        loop->pump_ids = ids;
        loop->pump_cap = cap;
    }
    c->flags |= VIGIL__CF_PUMP_SOON;
    loop->pump_ids[loop->pump_n++] = vigil__conn_id(loop, c);
}

void vigil__tcp_pump(vigil_loop *loop, vigil__conn *c) { send_pump(loop, c); }

void vigil__tcp_pump_soon_run(vigil_loop *loop) {
    for (uint32_t i = 0; i < loop->pump_n; i++) {
        vigil__conn *c = vigil__conn_from_id(loop, loop->pump_ids[i]); /* NULL: gone since */
        if (!c || !(c->flags & VIGIL__CF_PUMP_SOON))
            continue;
        c->flags &= (uint16_t)~VIGIL__CF_PUMP_SOON;
        send_pump(loop, c); /* runs no callback: failures go to the later list */
    }
    loop->pump_n = 0;
}

/* n bytes a send confirmed, applied to the queue from head on, in order. */
static void send_apply(vigil_loop *loop, vigil__conn *c, vigil__op *head, int64_t n) {
    vigil__op *r = op_of(loop, c->recv_op);
    if (r && r->u.recv.idle_ns)
        r->u.recv.last_ns = vigil__clock_ns(); /* the peer takes what we send: not idle */
    for (vigil__op *op = head; n > 0 && op; op = op_of(loop, op->next)) {
        uint32_t left = op->u.send.len - op->u.send.done;
        uint32_t take = n < left ? (uint32_t)n : left;
        op->u.send.done += take;
        c->queued -= take;
        n -= take;
    }
}

/* A send that began with file message head says the file ended before the
 * message: the mapping faulted at its first byte (a send fails -EFAULT only
 * when nothing went; a fault later in it sends what came before), or the
 * backend's own file send found nothing more to read. */
static bool file_ended(vigil_loop *loop, const vigil__op *head, int64_t n) {
    return n == -EFAULT || (n == 0 && loop->be->send_file && head->u.send.done < head->u.send.len);
}

static void send_complete(vigil_loop *loop, vigil__op *head, vigil__conn *c, const vigil__cqe *e) {
    uint64_t cid = vigil__conn_id(loop, c);
    bool stopped = head->flags & VIGIL__OPF_STOPPED;
    int stop_status = head->status ? head->status : -ECANCELED;
    head->flags &= (uint16_t)~VIGIL__OPF_STOPPED;
    int64_t n = e->res;
    if (!stopped && (head->flags & VIGIL__OPF_FILE) && file_ended(loop, head, n)) {
        vigil__tcp_break(loop, c, -ENODATA);
        return;
    }
    if (n > 0) {
        /* Apply every confirmed byte to the queue first, then report the
         * messages that went out: whatever a callback does (a fence
         * included), the queue in loop memory says exactly what was sent. */
        send_apply(loop, c, head, n);
        if (!send_report_sent(loop, c))
            return;
        check_drain(loop, c);
        if (!conn_alive(loop, c, cid))
            return;
    } else if (!stopped && (n == 0 || n == -EAGAIN || n == -EINTR || n == -ECANCELED)) {
        /* nothing moved; the pump tries again */
    } else {
        if (!stopped) { /* the stream cannot go on */
            stream_broken(loop, c, (int)n);
            return;
        }
        stopped = true;
    }
    if (stopped) /* aborted, timed out or failed: the rest fails now, in order */
        send_fail_all(loop, c, stop_status, false);
    if (!conn_alive(loop, c, cid))
        return;
    if (!(c->flags & (VIGIL__CF_BROKEN | VIGIL__CF_ABORT)))
        send_pump(loop, c);
    else if (c->flags & VIGIL__CF_CLOSING)
        conn_maybe_close(loop, c);
}

/* Behind the gate (rebuild.c) the stream goes on: the confirmed bytes are
 * applied and the rest is sent (also after a send that moved nothing, as a
 * rebuild re-issues them), but the messages that went out are reported only
 * when the gate opens (a FINISH marker each, held in order with the
 * connection's other events). A send that failed or was stopped is held as
 * it is. */
static bool send_behind_gate(vigil_loop *loop, vigil__op *head, const vigil__cqe *e) {
    vigil__conn *c = vigil__conn_at(loop, head->conn);
    int64_t n = e->res;
    bool nothing_moved = n == 0 || n == -EAGAIN || n == -EINTR || n == -ECANCELED;
    if ((n <= 0 && !nothing_moved) || (head->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_USER_DONE)) ||
        (c->flags & (VIGIL__CF_BROKEN | VIGIL__CF_ABORT)))
        return false;
    if (n > 0)
        send_apply(loop, c, head, n);
    for (vigil__op *op; (op = op_of(loop, c->sendq.head)) && op->u.send.done == op->u.send.len;) {
        send_unlink_head(loop, c, op);
        op->flags |= VIGIL__OPF_CARRIED; /* its final callback waits in the held list */
        vigil__hold(loop, &(vigil__cqe){vigil__op_tag(loop, op), (int32_t)op->u.send.len,
                                        VIGIL__CQE_FINISH});
    }
    send_pump(loop, c);
    return true;
}

/* One message, queued behind the connection's others. data is the message
 * itself: vigil's copy (copied), or the caller's memory until the callback;
 * or file, a file message (send_file.c), data its mapping if it has one. */
static int send_queue(vigil_loop *loop, vigil__conn *c, uint8_t *data, size_t len, bool copied,
                      vigil__file_msg *file, uint32_t deadline_ms, vigil_send_cb cb, void *ud,
                      vigil_op *oph) {
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_SEND);
    if (!op) {
        if (copied)
            vigil__send_free(loop, data, len ? len : 1);
        if (file)
            vigil__file_msg_free(loop, file);
        return -ENOMEM;
    }
    op->u.send.data = data;
    op->u.send.len = (uint32_t)len;
    op->u.send.block = copied ? (void *)data : file; /* what send_release frees */
    if (file)
        op->flags |= VIGIL__OPF_FILE;
    op->cb = (void *)cb;
    op->ud = ud;
    op->conn = vigil__conn_slot1(loop, c);
    if (oph)
        *oph = vigil__op_handle(loop, op);
    if (len == 0 && !c->sendq.head) { /* nothing before it: it has gone out */
        vigil__later(loop, op, 0);
        return 0;
    }
    if (deadline_ms) {
        op->due_ns = vigil__clock_ns() + deadline_ms * 1000000ull;
        vigil__heap_push(loop, op);
    }
    vigil__queue_push(loop, &c->sendq, op->self + 1, vigil__op_link);
    c->queued += len;
    send_pump_soon(loop, c);
    if (c->hwm && c->queued > c->hwm) {
        c->flags |= VIGIL__CF_OVER_HWM;
        return 1;
    }
    return 0;
}

static int send_check(const vigil__conn *c, size_t len) {
    if (len > INT32_MAX)
        return -EMSGSIZE;
    if (c->flags & (VIGIL__CF_CLOSING | VIGIL__CF_SHUT_WR | VIGIL__CF_BROKEN))
        return -EPIPE;
    return 0;
}

int vigil_conn_send(vigil_loop *loop, vigil_conn h, const void *data, size_t len, uint32_t deadline_ms,
                    vigil_send_cb cb, void *ud, vigil_op *oph) {
    vigil_iov one = {data, len};
    return vigil_conn_sendv(loop, h, &one, 1, deadline_ms, cb, ud, oph);
}

int vigil_conn_send_nocopy(vigil_loop *loop, vigil_conn h, const void *data, size_t len,
                           uint32_t deadline_ms, vigil_send_cb cb, void *ud, vigil_op *oph) {
    ENTER_STREAM(loop, h, c);
    int rc = !data && len ? -EINVAL : send_check(c, len);
    return rc < 0 ? rc : send_queue(loop, c, (uint8_t *)data, len, false, NULL, deadline_ms, cb, ud, oph);
}

int vigil_conn_send_file(vigil_loop *loop, vigil_conn h, int fd, int64_t offset, size_t len,
                         uint32_t deadline_ms, vigil_send_cb cb, void *ud, vigil_op *oph) {
    ENTER_STREAM(loop, h, c);
    if (fd < 0)
        return -EBADF;
    if (offset < 0)
        return -EINVAL;
    int rc = send_check(c, len);
    vigil__file_msg *m = NULL;
    if (rc == 0)
        rc = vigil__file_msg_new(loop, fd, offset, len, &m);
    if (rc < 0)
        return rc;
    return send_queue(loop, c, vigil__file_msg_data(m), len, false, m, deadline_ms, cb, ud, oph);
}

#define SENDV_MAX 1024

int vigil_conn_sendv(vigil_loop *loop, vigil_conn h, const vigil_iov *iov, size_t n,
                     uint32_t deadline_ms, vigil_send_cb cb, void *ud, vigil_op *oph) {
    ENTER_STREAM(loop, h, c);
    if ((!iov && n) || n > SENDV_MAX)
        return -EINVAL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!iov[i].base && iov[i].len)
            return -EINVAL;
        if (iov[i].len > (size_t)INT32_MAX - len)
            return -EMSGSIZE;
        len += iov[i].len;
    }
    int rc = send_check(c, len);
    if (rc < 0)
        return rc;
    uint8_t *copy = vigil__send_alloc(loop, len ? len : 1); /* a 0-byte message is one too */
    if (!copy)
        return -ENOMEM;
    for (size_t i = 0, at = 0; i < n; at += iov[i].len, i++)
        if (iov[i].len)
            memcpy(copy + at, iov[i].base, iov[i].len);
    return send_queue(loop, c, copy, len, true, NULL, deadline_ms, cb, ud, oph);
}

int64_t vigil_conn_send_queued(vigil_loop *loop, vigil_conn h) {
    VIGIL__API(loop, h.id);
    vigil__conn *c = stream_from(loop, h);
    return c ? (int64_t)c->queued : -EBADF;
}

int vigil_conn_set_watermark(vigil_loop *loop, vigil_conn h, size_t high, size_t low,
                             vigil_drain_cb cb, void *ud) {
    ENTER_STREAM(loop, h, c);
    if (high && (low > high || !cb))
        return -EINVAL;
    c->hwm = high;
    c->lwm = low;
    c->drain_cb = cb;
    c->drain_ud = ud;
    if (!high)
        c->flags &= (uint16_t)~VIGIL__CF_OVER_HWM;
    return 0;
}

/* ------------------------------------------------------ shutdown/close */

int vigil_conn_shutdown(vigil_loop *loop, vigil_conn h, int how) {
    ENTER_STREAM(loop, h, c);
    if (how < VIGIL_SHUT_RD || how > (VIGIL_SHUT_RD | VIGIL_SHUT_WR))
        return -EINVAL;
    if (c->flags & (VIGIL__CF_CLOSING | VIGIL__CF_CONNECTING))
        return -ENOTCONN;
    if (how & VIGIL_SHUT_RD) {
        recv_stop(loop, c, 0);
        vigil__socket_shutdown(c->fd, VIGIL_SHUT_RD);
    }
    if (how & VIGIL_SHUT_WR) {
        c->flags |= VIGIL__CF_SHUT_WR;
        send_pump(loop, c);
    }
    return 0;
}

static int close_common(vigil_loop *loop, vigil_conn h, bool abortive, uint32_t flush_ms,
                        vigil_close_cb cb, void *ud) {
    VIGIL__API(loop, h.id);
    vigil__conn *c = stream_from(loop, h);
    if (!c || (c->flags & VIGIL__CF_CLOSING))
        return -EBADF;
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_CLOSE);
    if (!op)
        return -ENOMEM;
    op->conn = vigil__conn_slot1(loop, c);
    c->close_op = op->self + 1;
    c->flags |= VIGIL__CF_CLOSING;
    c->close_cb = cb;
    c->close_ud = ud;
    c->close_status = 0;
    recv_stop(loop, c, -ECANCELED);
    vigil__op *conn_op = op_of(loop, c->io_op);
    if (conn_op && !(conn_op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_LATER))) {
        conn_op->flags |= VIGIL__OPF_STOPPED;
        vigil__op_cancel_kernel(loop, conn_op);
    }
    if (abortive || (c->flags & VIGIL__CF_BROKEN)) {
        c->flags |= VIGIL__CF_ABORT;
        /* a broken stream reports what broke it, not a clean close */
        c->close_status = abortive ? -ECONNABORTED : c->fail_status ? c->fail_status : -ECONNRESET;
        /* an abort discards them; after a break they fail with what broke it */
        send_fail_all(loop, c, abortive || !c->fail_status ? -ECANCELED : c->fail_status, true);
    } else {
        op->due_ns = vigil__clock_ns() + (flush_ms ? flush_ms : 30000) * 1000000ull;
        vigil__heap_push(loop, op);
        /* the flush continues in send_pump; the deadline is the close op's */
    }
    if (vigil__conn_from_id(loop, h.id))
        conn_maybe_close(loop, c);
    return 0;
}

int vigil_conn_close(vigil_loop *loop, vigil_conn h, uint32_t flush_deadline_ms, vigil_close_cb cb,
                     void *ud) {
    return close_common(loop, h, false, flush_deadline_ms, cb, ud);
}

int vigil_conn_abort(vigil_loop *loop, vigil_conn h, vigil_close_cb cb, void *ud) {
    return close_common(loop, h, true, 0, cb, ud);
}

/* Lingering close: after our FIN, read and discard until the peer's FIN (or
 * an error, or the close deadline, at most DRAIN_MS from now). Closing a
 * socket that still has unread bytes makes the kernel send RST, and an RST
 * can destroy our own last bytes before the peer reads them. */
#define DRAIN_MS 2000
static int conn_drain(vigil_loop *loop, vigil__conn *c) {
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_RECV);
    if (!op)
        return -ENOMEM;
    op->conn = vigil__conn_slot1(loop, c);
    c->recv_op = op->self + 1;
    c->flags |= VIGIL__CF_DRAINING;
    vigil__op *cl = op_of(loop, c->close_op);
    uint64_t limit = vigil__clock_ns() + DRAIN_MS * 1000000ull;
    if (cl && (!cl->due_ns || cl->due_ns > limit)) {
        cl->due_ns = limit;
        vigil__heap_push(loop, cl);
    }
    recv_arm(loop, op, c);
    return 0;
}

/* Proceeds with a close once the connection's other ops have ended. */
static void conn_maybe_close(vigil_loop *loop, vigil__conn *c) {
    if (!(c->flags & VIGIL__CF_CLOSING) || (c->flags & VIGIL__CF_CLOSE_SENT))
        return;
    if (c->recv_op || c->io_op)
        return;
    if (c->sendq.head && !(c->flags & (VIGIL__CF_ABORT | VIGIL__CF_BROKEN)))
        return; /* still flushing */
    if (c->sendq.head)
        return; /* failing sends: waiting for the in-flight one */
    if (c->flags & (VIGIL__CF_ABORT | VIGIL__CF_BROKEN)) {
        vigil__socket_set_abortive(c->fd);
    } else {
        if (!(c->flags & VIGIL__CF_FIN_SENT)) {
            c->flags |= VIGIL__CF_FIN_SENT;
            /* FIN even if another ring still holds a reference to this fd */
            vigil__socket_shutdown(c->fd, VIGIL_SHUT_WR);
        }
        if (!(c->flags & (VIGIL__CF_DRAINING | VIGIL__CF_DRAINED)) && conn_drain(loop, c) == 0)
            return; /* closing now, with unread bytes, would reset instead of FIN */
    }
    close_fd(loop, c);
}

static void close_complete(vigil_loop *loop, vigil__op *op, vigil__conn *c) {
    c->close_op = 0;
    vigil_close_cb cb = c->close_cb;
    void *ud = c->close_ud;
    int status = c->close_status;
    bool listener = c->kind == VIGIL__CONN_LISTENER;
    bool user_done = op->flags & VIGIL__OPF_USER_DONE;
    vigil_conn h = conn_handle(loop, c);
    vigil__conn_free(loop, c);
    op_done(loop, op);
    if (cb && !listener && !user_done)
        VIGIL__CALLBACK(loop, cb, (loop, h, status, ud));
}

/* ------------------------------------------------------- dispatching */

/* The op classes of a stream's ops (loop.h): what the core does with each
 * kind's completions, final statuses, cancels, deadlines and rebuilds. */

static vigil__conn *conn_of(vigil_loop *loop, vigil__op *op) { return vigil__conn_at(loop, op->conn); }

static void accept_on_completion(vigil_loop *loop, vigil__op *op, const vigil__cqe *e) {
    accept_complete(loop, op, conn_of(loop, op), e);
}

static void recv_on_completion(vigil_loop *loop, vigil__op *op, const vigil__cqe *e) {
    recv_complete(loop, op, conn_of(loop, op), e);
}

static void send_on_completion(vigil_loop *loop, vigil__op *op, const vigil__cqe *e) {
    if (op->flags & VIGIL__OPF_USER_DONE) { /* destroy already reported it */
        vigil__op_release(loop, op);
        return;
    }
    send_complete(loop, op, conn_of(loop, op), e);
}

static void connect_on_completion(vigil_loop *loop, vigil__op *op, const vigil__cqe *e) {
    vigil__conn *c = conn_of(loop, op);
    if (op->flags & VIGIL__OPF_USER_DONE) {
        vigil__op_release(loop, op);
    } else if (op->flags & VIGIL__OPF_RESUMED) {
        /* waited for a connect a fenced ring had started: the socket says how it went */
        op->flags &= (uint16_t)~VIGIL__OPF_RESUMED;
        int err = 0;
        connect_final(loop, op, c, e->res < 0 ? e->res
                                  : vigil__socket_connect_state(c->fd, &err) > 0 ? 0
                                  : err ? -err : -ECONNREFUSED);
    } else {
        connect_final(loop, op, c, e->res);
    }
}

static void close_on_completion(vigil_loop *loop, vigil__op *op, const vigil__cqe *e) {
    close_complete(loop, op, conn_of(loop, op));
}

/* A final status queued on the later list: every stream op's finish starts
 * here (an op destroy already reported only frees its slot). */
static bool finish_reported(vigil_loop *loop, vigil__op *op) {
    if (!(op->flags & VIGIL__OPF_USER_DONE))
        return false;
    vigil__op_release(loop, op);
    return true;
}

static void accept_finish(vigil_loop *loop, vigil__op *op, int status) {
    if (!finish_reported(loop, op))
        accept_final(loop, op, conn_of(loop, op), status);
}

static void recv_finish(vigil_loop *loop, vigil__op *op, int status) {
    if (finish_reported(loop, op))
        return;
    vigil__conn *c = conn_of(loop, op);
    if (status != VIGIL__STATUS_RESUME || (op->flags & VIGIL__OPF_STOPPED)) {
        recv_final(loop, op, c, status);
        return;
    }
    flush_parked(loop, op, c, false);
    if (op->kind != VIGIL__OP_RECV || (op->flags & VIGIL__OPF_PAUSED))
        return; /* a callback ended it (the slot may be another op's now) or paused it */
    if (c->flags & VIGIL__CF_EOF_PARKED) {
        c->flags &= (uint16_t)~VIGIL__CF_EOF_PARKED;
        recv_final(loop, op, c, c->parked_final);
    } else if (!(op->flags & (VIGIL__OPF_KERNEL | VIGIL__OPF_CARRIED))) {
        recv_arm(loop, op, c);
    }
}

static void send_finish(vigil_loop *loop, vigil__op *op, int status) {
    if (finish_reported(loop, op))
        return;
    vigil__conn *c = conn_of(loop, op);
    uint64_t cid = vigil__conn_id(loop, c);
    send_final(loop, c, op, status);
    if (conn_alive(loop, c, cid))
        check_drain(loop, c); /* a message the gate held went out */
}

static void connect_finish(vigil_loop *loop, vigil__op *op, int status) {
    if (!finish_reported(loop, op))
        connect_final(loop, op, conn_of(loop, op), status);
}

static void close_finish(vigil_loop *loop, vigil__op *op, int status) {
    if (!finish_reported(loop, op))
        close_complete(loop, op, conn_of(loop, op));
}

/* Takes a queued send out of the middle of its connection's queue. */
bool vigil__send_unlink(vigil_loop *loop, vigil__conn *c, vigil__op *op) {
    if (!vigil__queue_remove(loop, &c->sendq, op->self + 1, vigil__op_link))
        return false;
    c->queued -= op->u.send.len;
    return true;
}

static int recv_cancel(vigil_loop *loop, vigil__op *op) {
    recv_stop(loop, conn_of(loop, op), -ECANCELED);
    return 0;
}

static int connect_cancel(vigil_loop *loop, vigil__op *op) {
    op->flags |= VIGIL__OPF_STOPPED;
    return vigil__op_cancel_kernel(loop, op);
}

static int send_cancel(vigil_loop *loop, vigil__op *op) {
    if (op->flags & (VIGIL__OPF_KERNEL | VIGIL__OPF_STARTED))
        return -EBUSY;
    if (!vigil__send_unlink(loop, conn_of(loop, op), op))
        return -EBADF;
    op->flags |= VIGIL__OPF_STOPPED;
    vigil__later(loop, op, -ECANCELED); /* then the drain check, after its callback */
    return 0;
}

/* A deadline passed on a live stream: a stream cannot skip bytes, so the
 * connection is broken, every unsent message fails with -ETIMEDOUT, and both
 * directions are shut down (the peer sees FIN; the owner's close or abort
 * then releases the fd). */
static void deadline_break(vigil_loop *loop, vigil__conn *c) {
    if (c->flags & (VIGIL__CF_BROKEN | VIGIL__CF_CLOSE_SENT))
        return;
    uint64_t cid = vigil__conn_id(loop, c);
    int fd = c->fd;
    stream_broken(loop, c, -ETIMEDOUT);
    if (!conn_alive(loop, c, cid) || (c->flags & VIGIL__CF_CLOSE_SENT))
        return;
    vigil__socket_shutdown(fd, VIGIL_SHUT_RD | VIGIL_SHUT_WR);
    vigil__stat_add(&loop->sv.stats.deadline_shutdowns, 1);
}

/* Deadlines on a stream's ops. */

static void accept_deadline(vigil_loop *loop, vigil__op *op, uint64_t due, uint64_t now) {
    vigil__conn *c = conn_of(loop, op); /* retry after running out of fds */
    if (!(c->flags & VIGIL__CF_CLOSING))
        accept_arm(loop, op, c);
}

static void recv_deadline(vigil_loop *loop, vigil__op *op, uint64_t due, uint64_t now) {
    vigil__conn *c = conn_of(loop, op);
    /* The peer still draining what the kernel holds for it is not idle
     * either (a download can sit there for seconds): the send queue's
     * size, read only here, at the deadline, says whether it moved. */
    int64_t unsent = vigil__socket_unsent(c->fd);
    if (unsent > 0 && unsent != op->u.recv.unsent) {
        op->u.recv.unsent = unsent;
        op->u.recv.last_ns = vigil__clock_ns();
    }
    uint64_t next = op->u.recv.last_ns + op->u.recv.idle_ns;
    if (next > vigil__clock_ns()) { /* bytes came or went meanwhile: push it back */
        op->due_ns = next;
        vigil__heap_push(loop, op);
        return;
    }
    /* The peer went quiet: end the receive with -ETIMEDOUT and break the
     * connection as a send deadline does, so the hung socket is shut down
     * (the peer sees FIN) even before the owner closes it. */
    op->flags |= VIGIL__OPF_TIMED_OUT;
    vigil__stat_add(&loop->sv.stats.deadlines_expired, 1);
    if (op->flags & VIGIL__OPF_KERNEL)
        vigil__op_cancel_kernel(loop, op);
    else
        vigil__later(loop, op, -ETIMEDOUT);
    deadline_break(loop, c);
}

static void connect_deadline(vigil_loop *loop, vigil__op *op, uint64_t due, uint64_t now) {
    op->flags |= VIGIL__OPF_TIMED_OUT;
    vigil__stat_add(&loop->sv.stats.deadlines_expired, 1);
    vigil__op_cancel_kernel(loop, op); /* the failed connection is closed at once */
}

static void send_deadline(vigil_loop *loop, vigil__op *op, uint64_t due, uint64_t now) {
    vigil__stat_add(&loop->sv.stats.deadlines_expired, 1);
    deadline_break(loop, conn_of(loop, op));
}

static void close_deadline(vigil_loop *loop, vigil__op *op, uint64_t due, uint64_t now) {
    vigil__conn *c = conn_of(loop, op);
    if (c->flags & VIGIL__CF_DRAINING) {
        /* Everything was sent; the peer just has not closed. Stop reading. */
        recv_stop(loop, c, 0);
        return;
    }
    /* The flush deadline passed: discard the rest and reset. */
    if (!(c->flags & VIGIL__CF_CLOSE_SENT)) {
        c->flags |= VIGIL__CF_ABORT;
        c->close_status = -ETIMEDOUT;
        send_fail_all(loop, c, -ETIMEDOUT, false);
        if (vigil__conn_from_id(loop, vigil__conn_id(loop, c)))
            conn_maybe_close(loop, c);
    }
}

/* Rebuilds (rebuild.c): a close did not happen (a close completes within
 * the submit that carries it, and its completion would have been
 * harvested), so it is issued again; a connect is judged by the socket. */
static void close_reissue(vigil_loop *loop, vigil__op *op) {
    vigil__conn *c = conn_of(loop, op);
    vigil__reissue_drop(loop, op);
    if (loop->be->close(loop, op, c->fd) < 0) {
        vigil__socket_close_now(c->fd);
        vigil__later(loop, op, 0);
    }
}

static void connect_reissue(vigil_loop *loop, vigil__op *op) {
    vigil__conn *c = conn_of(loop, op);
    int err = 0;
    int state = vigil__socket_connect_state(c->fd, &err);
    if (state > 0) {
        vigil__reissue_result(loop, op, 0); /* it connected */
        return;
    }
    if (state < 0 && err) {
        vigil__reissue_result(loop, op, -err); /* it failed */
        return;
    }
    vigil__reissue_drop(loop, op);
    int rc;
    if (state == 0) { /* under way: wait for it */
        op->flags |= VIGIL__OPF_RESUMED;
        rc = loop->be->resume_connect(loop, op, c->fd);
    } else { /* never started */
        rc = loop->be->connect(loop, op, c->fd, op->u.connect.addr, op->u.connect.addrlen);
    }
    if (rc < 0)
        vigil__later(loop, op, rc);
}

static void connect_release(vigil_loop *loop, vigil__op *op) { free(op->u.connect.addr); }

static void send_release(vigil_loop *loop, vigil__op *op) {
    if (op->flags & VIGIL__OPF_FILE)
        vigil__file_msg_free(loop, op->u.send.block);
    else if (op->u.send.block) /* NULL: the caller's memory (vigil_conn_send_nocopy) */
        vigil__send_free(loop, op->u.send.block, op->u.send.len ? op->u.send.len : 1);
}

const vigil__op_class vigil__accept_class = {
    .name = "accept",
    .flags = VIGIL__CLASS_REARMS | VIGIL__CLASS_NEW_FD,
    .complete = accept_on_completion,
    .finish = accept_finish,
    .deadline = accept_deadline, /* retries after EMFILE */
    .reissue = vigil__reissue_again, /* behind the gate: held, up to a cap (rebuild.c) */
};

const vigil__op_class vigil__recv_class = {
    .name = "recv",
    .flags = VIGIL__CLASS_REARMS,
    .complete = recv_on_completion,
    .finish = recv_finish,
    .cancel = recv_cancel,
    .deadline = recv_deadline, /* the idle deadline */
    .reissue = vigil__reissue_again,
};

const vigil__op_class vigil__send_class = {
    .name = "send",
    .complete = send_on_completion,
    .finish = send_finish,
    .cancel = send_cancel,
    .deadline = send_deadline,
    .reissue = vigil__reissue_again, /* goes on from its confirmed offset */
    .behind_gate = send_behind_gate,
    .release = send_release,
};

const vigil__op_class vigil__connect_class = {
    .name = "connect",
    .complete = connect_on_completion,
    .finish = connect_finish,
    .cancel = connect_cancel,
    .deadline = connect_deadline,
    .reissue = connect_reissue,
    .release = connect_release,
};

const vigil__op_class vigil__close_class = {
    .name = "close",
    .complete = close_on_completion,
    .finish = close_finish,
    .deadline = close_deadline, /* the flush deadline */
    .reissue = close_reissue,
};

/* Destroy: every live op's final callback now, in the documented order;
 * kernel completions that arrive later only free slots. */
void vigil__tcp_destroy_all(vigil_loop *loop) {
    for (int pass = 0; pass < 2; pass++) {
        int want = pass == 0 ? VIGIL__CONN_LISTENER : VIGIL__CONN_STREAM;
        for (uint32_t s = 1; s <= loop->conns.cap; s++) {
            vigil__conn *c = vigil__conn_at(loop, s);
            if (c->kind != want)
                continue;
            vigil_conn h = conn_handle(loop, c);
            vigil__op *op;
            if ((op = op_of(loop, c->io_op)) && !(op->flags & VIGIL__OPF_USER_DONE)) {
                op->flags |= VIGIL__OPF_USER_DONE;
                vigil__op_cancel_kernel(loop, op);
                if (op->heap >= 0)
                    vigil__heap_remove(loop, op);
                if (c->kind == VIGIL__CONN_LISTENER)
                    VIGIL__CALLBACK(loop, ((vigil_accept_cb)op->cb), (loop, (vigil_listener){h.id}, -ECANCELED,
                                                                     (vigil_conn){0}, op->ud));
                else
                    VIGIL__CALLBACK(loop, ((vigil_connect_cb)op->cb), (loop, h, -ECANCELED, op->ud));
                vigil__op_release(loop, op);
            }
            c->io_op = 0;
            for (uint32_t s1; (s1 = vigil__queue_pop(loop, &c->sendq, vigil__op_link));) {
                op = op_of(loop, s1);
                op->flags |= VIGIL__OPF_USER_DONE;
                vigil__op_cancel_kernel(loop, op);
                if (op->heap >= 0)
                    vigil__heap_remove(loop, op);
                if (op->cb)
                    VIGIL__CALLBACK(loop, ((vigil_send_cb)op->cb), (loop, h, -ECANCELED, op->ud));
                vigil__op_release(loop, op);
            }
            if ((op = op_of(loop, c->recv_op)) && !(op->flags & VIGIL__OPF_USER_DONE)) {
                op->flags |= VIGIL__OPF_USER_DONE;
                vigil__op_cancel_kernel(loop, op);
                if (op->heap >= 0)
                    vigil__heap_remove(loop, op);
                uint32_t len;
                while (parked_pending(c))
                    vigil__buf_recycle(loop, unpark(loop, c, &len));
                if (op->cb) /* no callback: the close's own drain */
                    VIGIL__CALLBACK(loop, ((vigil_recv_cb)op->cb), (loop, h, -ECANCELED, NULL, op->ud));
                vigil__op_release(loop, op);
            }
            c->recv_op = 0;
            if ((op = op_of(loop, c->close_op))) {
                op->flags |= VIGIL__OPF_USER_DONE;
                if (op->heap >= 0)
                    vigil__heap_remove(loop, op);
                vigil__op_release(loop, op);
            }
            c->close_op = 0;
            if (c->close_cb && c->kind == VIGIL__CONN_STREAM) {
                /* a close already under way reports its own status; one still
                 * flushing is cut short */
                int st = (c->flags & VIGIL__CF_CLOSE_SENT) ? c->close_status : -ECANCELED;
                vigil_close_cb ccb = c->close_cb;
                c->close_cb = NULL;
                VIGIL__CALLBACK(loop, ccb, (loop, h, st, c->close_ud));
            }
            if (!(c->flags & VIGIL__CF_CLOSE_SENT))
                vigil__socket_close_now(c->fd);
            if (c->flags & VIGIL__CF_CLOSE_SENT)
                continue; /* its close op frees it */
            vigil__conn_free(loop, c);
        }
    }
}

/* ------------------------------------------------------------ rebuilds */

/* After a fence cut a callback on this connection (or listener) short, does
 * what that callback's caller would have done next. Every handler leaves the
 * tables consistent before it calls user code (callbacks may call any vigil
 * function), so only pending intentions can be missing: a receive to re-arm
 * or to end, parked bytes to deliver, sent messages to report, sends to fail
 * or to pump, a close to go on with. Each step looks at the state and does
 * only what it finds missing, so it is harmless where nothing is. */
void vigil__tcp_repair(vigil_loop *loop, vigil__conn *c) {
    uint64_t cid = vigil__conn_id(loop, c);
    const uint16_t busy = VIGIL__OPF_KERNEL | VIGIL__OPF_CARRIED | VIGIL__OPF_LATER | VIGIL__OPF_USER_DONE;
    if (c->kind == VIGIL__CONN_DGRAM) {
        vigil__udp_repair(loop, c);
        return;
    }
    if (c->kind == VIGIL__CONN_LISTENER) {
        vigil__op *op = op_of(loop, c->io_op);
        if (op && !(op->flags & busy) && op->heap < 0) {
            if (c->flags & VIGIL__CF_CLOSING)
                vigil__later(loop, op, -ECANCELED);
            else
                accept_arm(loop, op, c);
        } else if (!op && (c->flags & VIGIL__CF_CLOSING) && !(c->flags & VIGIL__CF_CLOSE_SENT)) {
            close_fd(loop, c);
        }
        return;
    }
    if (c->kind != VIGIL__CONN_STREAM || (c->flags & VIGIL__CF_CONNECTING))
        return;
    vigil__op *r = op_of(loop, c->recv_op);
    if (r && !(r->flags & busy) && !(c->flags & VIGIL__CF_BUF_WAIT)) {
        if (r->flags & VIGIL__OPF_TIMED_OUT)
            vigil__later(loop, r, -ETIMEDOUT);
        else if (r->flags & VIGIL__OPF_STOPPED)
            vigil__later(loop, r, r->status);
        else if (r->flags & VIGIL__OPF_PAUSED)
            ; /* resume re-arms or delivers */
        else if (parked_pending(c) || (c->flags & VIGIL__CF_EOF_PARKED))
            vigil__later(loop, r, VIGIL__STATUS_RESUME);
        else
            recv_arm(loop, r, c);
    }
    if (!send_report_sent(loop, c))
        return;
    vigil__op *head = op_of(loop, c->sendq.head);
    if (c->flags & (VIGIL__CF_BROKEN | VIGIL__CF_ABORT)) {
        if (head && !(head->flags & VIGIL__OPF_KERNEL))
            send_fail_all(loop, c, c->fail_status ? c->fail_status : -ECANCELED, false);
    } else {
        send_pump(loop, c);
    }
    if (!conn_alive(loop, c, cid))
        return;
    check_drain(loop, c);
    if (conn_alive(loop, c, cid) && (c->flags & VIGIL__CF_CLOSING))
        conn_maybe_close(loop, c);
}

/* The first half of a break behind the gate: the peer gets RST now, the
 * owner its callbacks when the gate opens (vigil__tcp_break). */
void vigil__tcp_reset_now(vigil_loop *loop, vigil__conn *c) {
    if (c->kind != VIGIL__CONN_STREAM || (c->flags & (VIGIL__CF_CLOSE_SENT | VIGIL__CF_BROKEN)))
        return;
    vigil__socket_reset(c->fd);
    c->flags |= VIGIL__CF_BROKEN;
}

/* Ends a stream the rebuild could not carry over exactly (its stuck callback
 * never came back, or made calls that were refused): the peer gets RST now,
 * the owner gets status from the receive and every unsent message, and
 * still closes the handle itself. */
void vigil__tcp_break(vigil_loop *loop, vigil__conn *c, int status) {
    if (c->kind != VIGIL__CONN_STREAM || (c->flags & (VIGIL__CF_CLOSE_SENT | VIGIL__CF_CONNECTING)))
        return;
    uint64_t cid = vigil__conn_id(loop, c);
    if (!(c->flags & VIGIL__CF_BROKEN))
        vigil__socket_reset(c->fd);
    c->flags |= VIGIL__CF_BROKEN;
    recv_stop(loop, c, status);
    send_fail_all(loop, c, status, false);
    if (conn_alive(loop, c, cid) && (c->flags & VIGIL__CF_CLOSING))
        conn_maybe_close(loop, c);
}

/* ------------------------------------------------------------ accessors */

vigil_socket vigil_conn_get_socket(vigil_loop *loop, vigil_conn h) {
    VIGIL__API_OR(loop, h.id, (vigil_socket)-1);
    vigil__conn *c = stream_from(loop, h);
    return c ? c->fd : (vigil_socket)-1;
}

int vigil_conn_set_data(vigil_loop *loop, vigil_conn h, void *data) {
    ENTER_STREAM(loop, h, c);
    c->data = data;
    return 0;
}

void *vigil_conn_get_data(vigil_loop *loop, vigil_conn h) {
    VIGIL__API_OR(loop, h.id, NULL);
    vigil__conn *c = stream_from(loop, h);
    return c ? c->data : NULL;
}

/* ------------------------------------------------- half-open connections */

/* The socket of a connection whose fd is still ours: once its close has been
 * handed to the kernel the number may already name another file. */
#define ENTER_ZOMBIE(loop, h, c)                                                            \
    ENTER_STREAM(loop, h, c);                                                               \
    if (c->flags & VIGIL__CF_CLOSE_SENT)                                                    \
    return -EBADF

/* Linux counts keepalive in whole seconds: a part of one rounds up, so
 * that a non-zero setting never becomes "off". */
static uint32_t ms_to_s_up(uint32_t ms) { return ms / 1000 + (ms % 1000 != 0); }

int vigil_conn_set_keepalive(vigil_loop *loop, vigil_conn h, uint32_t idle_ms, uint32_t interval_ms,
                             uint32_t count) {
    ENTER_ZOMBIE(loop, h, c);
    return vigil__socket_keepalive(c->fd, ms_to_s_up(idle_ms), ms_to_s_up(interval_ms), count);
}

int vigil_conn_get_peer(vigil_loop *loop, vigil_conn h, vigil_addr *out) {
    ENTER_ZOMBIE(loop, h, c);
    return out ? vigil__socket_name(c->fd, true, out->bytes, &out->len) : -EINVAL;
}

int vigil_conn_get_local(vigil_loop *loop, vigil_conn h, vigil_addr *out) {
    ENTER_ZOMBIE(loop, h, c);
    return out ? vigil__socket_name(c->fd, false, out->bytes, &out->len) : -EINVAL;
}

int vigil_conn_set_option(vigil_loop *loop, vigil_conn h, int opt, int value) {
    VIGIL__API(loop, h.id);
    vigil__conn *c = stream_from(loop, h);
    return c ? vigil__socket_setopt(c->fd, opt, value) : -EBADF;
}

int vigil_conn_get_option(vigil_loop *loop, vigil_conn h, int opt, int *value) {
    VIGIL__API(loop, h.id);
    vigil__conn *c = stream_from(loop, h);
    return c ? vigil__socket_getopt(c->fd, opt, value) : -EBADF;
}

int vigil_conn_set_user_timeout(vigil_loop *loop, vigil_conn h, uint32_t ms) {
    ENTER_ZOMBIE(loop, h, c);
    return vigil__socket_user_timeout(c->fd, ms);
}
