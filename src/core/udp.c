/*
 * udp.c: datagram sockets (vigil.h, "UDP").
 *
 * A UDP socket is a connection-table entry of kind DGRAM. Receiving is one
 * op, multishot recvmsg into the loop's buffer pool where the kernel has it
 * (io_uring), one-shot recvmsg with a buffer from the pool otherwise, and a
 * recvmsg loop on epoll; all three leave the datagram in a pool buffer. With
 * multishot recvmsg the buffer starts with the kernel's io_uring_recvmsg_out
 * header and the sender's address (epoll writes the same layout), without
 * it the payload starts the buffer and the address is in the op's msghdr.
 * Each completion says which (VIGIL__CQE_MSGOUT, set by the backend that
 * made it), so one a rebuild carried over is read as the request made it.
 *
 * Sending never waits in the kernel: sendto() on a non-blocking socket
 * either takes the datagram whole or says EAGAIN. A datagram that cannot go
 * now waits in the socket's queue (copied) behind the others, and one WAIT
 * op asks the backend for writability. Nothing of a send is ever in flight,
 * so a rebuild has nothing to carry but the receive and the wait.
 */
#include "core/loop.h"
#include "os/platform.h"
#include "os/sockets.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static vigil__conn *dgram_from(vigil_loop *loop, vigil_udp h) {
    vigil__conn *c = vigil__conn_from_id(loop, h.id);
    return c && c->kind == VIGIL__CONN_DGRAM && !(c->flags & VIGIL__CF_CLOSING) ? c : NULL;
}

static vigil__op *op_of(vigil_loop *loop, uint32_t slot1) {
    return slot1 ? vigil__op_at(loop, slot1 - 1) : NULL;
}

static vigil_udp udp_handle(vigil_loop *loop, vigil__conn *c) { return (vigil_udp){vigil__conn_id(loop, c)}; }

/* -------------------------------------------------------- addresses */

int vigil_addr_parse(vigil_addr *p, const char *host, uint16_t port) {
    vigil__addr a;
    if (!p)
        return -EINVAL;
    int rc = vigil__addr_parse(host, port, &a);
    if (rc < 0)
        return rc;
    memset(p, 0, sizeof(*p));
    memcpy(p->bytes, a.bytes, a.len);
    p->len = a.len;
    return 0;
}

int vigil_addr_format(const vigil_addr *p, char *host, size_t cap, uint16_t *port) {
    if (!p || !host || !cap)
        return -EINVAL;
    const struct sockaddr *sa = (const struct sockaddr *)p->bytes;
    if (sa->sa_family == AF_INET && p->len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *v4 = (const void *)p->bytes;
        if (!inet_ntop(AF_INET, &v4->sin_addr, host, (socklen_t)cap))
            return -ENOSPC;
        if (port)
            *port = ntohs(v4->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && p->len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *v6 = (const void *)p->bytes;
        if (!inet_ntop(AF_INET6, &v6->sin6_addr, host, (socklen_t)cap))
            return -ENOSPC;
        if (port)
            *port = ntohs(v6->sin6_port);
        return 0;
    }
    if (port)
        *port = 0;
    return vigil__addr_unix_text(p->bytes, p->len, host, cap);
}

/* ------------------------------------------------------------ sockets */

int vigil_udp_open(vigil_loop *loop, const vigil_udp_options *o, vigil_udp *out) {
    VIGIL__API(loop, 0);
    if (!o || !out || !VIGIL__RESERVED_ZERO(*o))
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    vigil__addr a;
    int rc = vigil__addr_parse(o->host ? o->host : "127.0.0.1", o->port, &a);
    if (rc < 0)
        return rc;
    vigil_socket fd;
    if ((rc = vigil__udp_socket(&a, o->reuseport, &fd)) < 0)
        return rc;
    vigil__conn *c = vigil__conn_new(loop, VIGIL__CONN_DGRAM, fd);
    if (!c) {
        vigil__socket_close_now(fd);
        return -ENOMEM;
    }
    *out = udp_handle(loop, c);
    return 0;
}

int vigil_udp_get_port(vigil_loop *loop, vigil_udp h) {
    VIGIL__API(loop, h.id);
    vigil__conn *c = dgram_from(loop, h);
    return c ? vigil__socket_port(c->fd) : -EBADF;
}

/* The socket goes once every op on it has had its final callback. */
static void maybe_free(vigil_loop *loop, vigil__conn *c) {
    if (!(c->flags & VIGIL__CF_CLOSING) || c->recv_op || c->io_op || c->sendq.head)
        return;
    vigil__socket_close_now(c->fd); /* a UDP close never waits */
    vigil__conn_free(loop, c);
}

/* --------------------------------------------------------- receiving */

typedef vigil__dgram_rx rx_state; /* os/sockets.h */

static void recv_final(vigil_loop *loop, vigil__op *op, vigil__conn *c, int status) {
    op->flags |= VIGIL__OPF_USER_DONE;
    if (!(op->flags & (VIGIL__OPF_KERNEL | VIGIL__OPF_CARRIED)))
        c->recv_op = 0; /* else when the kernel let go: the socket stays until then */
    vigil_udp_recv_cb cb = (vigil_udp_recv_cb)op->cb;
    void *ud = op->ud;
    vigil_udp h = udp_handle(loop, c);
    vigil__op_release(loop, op);
    VIGIL__CALLBACK(loop, cb, (loop, h, status, NULL, NULL, ud));
    maybe_free(loop, c);
}

static void recv_arm(vigil_loop *loop, vigil__op *op, vigil__conn *c) {
    if (!loop->bufs_free) { /* the pool is dry: wait for a buffer, losing nothing */
        if (!(c->flags & VIGIL__CF_BUF_WAIT)) {
            c->flags |= VIGIL__CF_BUF_WAIT;
            vigil__queue_push(loop, &loop->buf_wait, vigil__conn_slot1(loop, c), vigil__conn_link);
        }
        return;
    }
    int rc = loop->be->recv_dgram(loop, op, c->fd, op->u.udp.rx); /* rx starts with its msghdr */
    if (rc < 0)
        vigil__later(loop, op, rc);
}

void vigil__udp_rearm(vigil_loop *loop, vigil__conn *c) {
    vigil__op *op = op_of(loop, c->recv_op);
    if (op && !(op->flags & (VIGIL__OPF_KERNEL | VIGIL__OPF_LATER | VIGIL__OPF_CARRIED | VIGIL__OPF_USER_DONE)))
        recv_arm(loop, op, c);
}

int vigil_udp_recv_start(vigil_loop *loop, vigil_udp h, vigil_udp_recv_cb cb, void *ud, vigil_op *out) {
    VIGIL__API(loop, h.id);
    vigil__conn *c = dgram_from(loop, h);
    if (!c)
        return -EBADF;
    if (!cb)
        return -EINVAL;
    if (c->recv_op)
        return -EALREADY;
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_UDP_RECV);
    rx_state *rx = op ? calloc(1, sizeof(*rx)) : NULL;
    if (!rx) {
        if (op) {
            op->flags |= VIGIL__OPF_USER_DONE;
            vigil__op_release(loop, op);
        }
        return -ENOMEM;
    }
    vigil__dgram_rx_init(rx, loop->opts.buf_size);
    op->u.udp.rx = rx;
    op->cb = (void *)cb;
    op->ud = ud;
    op->conn = vigil__conn_slot1(loop, c);
    c->recv_op = op->self + 1;
    recv_arm(loop, op, c);
    if (out)
        *out = vigil__op_handle(loop, op);
    return 0;
}

/* A datagram in buffer id: where the payload and the address are. */
static void deliver(vigil_loop *loop, vigil__op *op, vigil__conn *c, const vigil__cqe *e) {
    uint32_t id = e->flags >> 16;
    uint8_t *b = loop->buf_base + (size_t)id * loop->opts.buf_size;
    vigil_addr from = {0};
    vigil_buf buf = {.id = id};
    if (e->flags & VIGIL__CQE_MSGOUT) {
        const vigil__msgout *o = (const void *)b;
        size_t head = VIGIL__UDP_HEAD;
        uint32_t room = loop->opts.buf_size > head ? loop->opts.buf_size - (uint32_t)head : 0;
        memcpy(from.bytes, b + sizeof(*o), o->namelen < sizeof(from.bytes) ? o->namelen : sizeof(from.bytes));
        from.len = o->namelen < sizeof(from.bytes) ? o->namelen : (uint32_t)sizeof(from.bytes);
        buf.data = b + head;
        buf.len = o->payloadlen < room ? o->payloadlen : room;
        buf.truncated = (o->flags & VIGIL__MSG_TRUNC) || o->payloadlen > room;
    } else {
        rx_state *rx = op->u.udp.rx;
        from.len = (uint32_t)VIGIL__RX_NAMELEN(rx) < sizeof(from.bytes) ? (uint32_t)VIGIL__RX_NAMELEN(rx) : (uint32_t)sizeof(from.bytes);
        memcpy(from.bytes, &rx->name, from.len);
        buf.data = b;
        buf.len = (size_t)e->res;
        buf.truncated = (VIGIL__RX_FLAGS(rx) & VIGIL__MSG_TRUNC) != 0;
        VIGIL__RX_NAMELEN(rx) = sizeof(rx->name);
    }
    loop->buf_state[id] = VIGIL__BUF_USER;
    loop->buf_current = id;
    vigil_udp_recv_cb cb = (vigil_udp_recv_cb)op->cb;
    VIGIL__CALLBACK(loop, cb, (loop, udp_handle(loop, c), (int)buf.len, &buf, &from, op->ud));
    loop->buf_current = UINT32_MAX;
    if (loop->buf_state[id] == VIGIL__BUF_USER)
        vigil__buf_recycle(loop, id);
}

static void deliver_empty(vigil_loop *loop, vigil__op *op, vigil__conn *c) {
    rx_state *rx = op->u.udp.rx;
    vigil_addr from = {0};
    from.len = (uint32_t)VIGIL__RX_NAMELEN(rx) < sizeof(from.bytes) ? (uint32_t)VIGIL__RX_NAMELEN(rx) : (uint32_t)sizeof(from.bytes);
    memcpy(from.bytes, &rx->name, from.len);
    VIGIL__RX_NAMELEN(rx) = sizeof(rx->name);
    vigil_buf buf = {.data = (const uint8_t *)"", .len = 0, .id = UINT32_MAX};
    vigil_udp_recv_cb cb = (vigil_udp_recv_cb)op->cb;
    VIGIL__CALLBACK(loop, cb, (loop, udp_handle(loop, c), 0, &buf, &from, op->ud));
}

static void udp_recv_complete(vigil_loop *loop, vigil__op *op, const vigil__cqe *e) {
    vigil__conn *c = vigil__conn_at(loop, op->conn);
    uint64_t cid = vigil__conn_id(loop, c);
    if (e->flags & VIGIL__CQE_BUF) {
        loop->bufs_free--;
        if (op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_USER_DONE))
            vigil__buf_recycle(loop, e->flags >> 16);
        else
            deliver(loop, op, c, e);
        if (vigil__conn_from_id(loop, cid) != c)
            return;
    }
    else if (e->res == 0 && !(e->flags & VIGIL__CQE_MSGOUT) && !(op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_USER_DONE))) {
        deliver_empty(loop, op, c); /* one-shot recvmsg of a zero-length datagram takes no buffer */
        if (vigil__conn_from_id(loop, cid) != c)
            return;
    }
    if (e->flags & VIGIL__CQE_MORE)
        return;
    if (op->flags & VIGIL__OPF_USER_DONE) {
        c->recv_op = 0;
        vigil__op_release(loop, op);
        maybe_free(loop, c);
        return;
    }
    if (op->flags & VIGIL__OPF_STOPPED) {
        recv_final(loop, op, c, op->status ? op->status : -ECANCELED);
        return;
    }
    /* the request ended but the receive goes on: a one-shot that delivered,
     * the pool ran dry (-ENOBUFS), a rebuild (-EAGAIN), a refused port
     * (ICMP on a connected peer: -ECONNREFUSED, not the socket's end) */
    if (e->res >= 0 || e->res == -ENOBUFS || e->res == -EAGAIN || e->res == -EINTR ||
        e->res == -ECONNREFUSED) {
        if (e->res == -ENOBUFS)
            vigil__stat_add(&loop->sv.stats.enobufs_rearms, 1);
        recv_arm(loop, op, c);
        return;
    }
    recv_final(loop, op, c, e->res);
}

/* ----------------------------------------------------------- sending */

static void send_final(vigil_loop *loop, vigil__op *op, vigil__conn *c, int status) {
    op->flags |= VIGIL__OPF_USER_DONE;
    vigil_udp_send_cb cb = (vigil_udp_send_cb)op->cb;
    void *ud = op->ud;
    vigil_udp h = udp_handle(loop, c);
    vigil__op_release(loop, op); /* frees the copy */
    if (cb)
        VIGIL__CALLBACK(loop, cb, (loop, h, status, ud));
}

/* Sends what the queue holds until the socket is full; each datagram's
 * callback comes from the later list. */
static void pump(vigil_loop *loop, vigil__conn *c) {
    while (c->sendq.head && !c->io_op) {
        vigil__op *op = op_of(loop, c->sendq.head);
        if (op->flags & VIGIL__OPF_LATER)
            return; /* already reported, waiting to run */
        int rc = loop->debug_udp_full ? (loop->debug_udp_full--, -EAGAIN)
                                      : vigil__udp_sendto(c->fd, op->u.send.data, op->u.send.len,
                                                          op->u.send.block, op->u.send.done);
        if (rc == -EAGAIN) { /* the socket buffer is full: wait until it is not */
            vigil__op *w = vigil__op_new(loop, VIGIL__OP_UDP_WAIT);
            if (w)
                w->conn = vigil__conn_slot1(loop, c); /* before the request: the backend may look */
            if (!w || loop->be->poll(loop, w, c->fd, VIGIL__POLL_OUT) < 0) {
                if (w) {
                    w->flags |= VIGIL__OPF_USER_DONE;
                    vigil__op_release(loop, w);
                }
                rc = -ENOMEM; /* cannot wait: fail this one rather than spin */
            } else {
                c->io_op = w->self + 1;
                return;
            }
        }
        vigil__queue_pop(loop, &c->sendq, vigil__op_link); /* op is the head */
        c->queued -= op->u.send.len;
        vigil__later(loop, op, rc < 0 ? rc : (int)op->u.send.len);
    }
}

static void udp_wait_complete(vigil_loop *loop, vigil__op *w, const vigil__cqe *e) {
    vigil__conn *c = vigil__conn_at(loop, w->conn);
    c->io_op = 0;
    w->flags |= VIGIL__OPF_USER_DONE;
    vigil__op_release(loop, w);
    if (c->flags & VIGIL__CF_CLOSING) {
        maybe_free(loop, c);
        return;
    }
    pump(loop, c);
}

int vigil_udp_send(vigil_loop *loop, vigil_udp h, const vigil_addr *to, const void *data, size_t len,
                   vigil_udp_send_cb cb, void *ud, vigil_op *out) {
    VIGIL__API(loop, h.id);
    vigil__conn *c = dgram_from(loop, h);
    if (!c)
        return -EBADF;
    if (!to || !to->len || to->len > sizeof(to->bytes) || (!data && len))
        return -EINVAL;
    if (len > 65507)
        return -EMSGSIZE; /* more than an IPv4 datagram can carry */
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_UDP_SEND);
    uint8_t *copy = op ? vigil__send_alloc(loop, len + sizeof(*to)) : NULL;
    if (!copy) {
        if (op) {
            op->flags |= VIGIL__OPF_USER_DONE;
            vigil__op_release(loop, op);
        }
        return -ENOMEM;
    }
    memcpy(copy, to, sizeof(*to)); /* the address travels in front of the bytes */
    if (len)
        memcpy(copy + sizeof(*to), data, len);
    op->u.send.data = copy + sizeof(*to);
    op->u.send.len = (uint32_t)len;
    op->u.send.block = copy;         /* the peer */
    op->u.send.done = to->len;        /* its length */
    op->cb = (void *)cb;
    op->ud = ud;
    op->conn = vigil__conn_slot1(loop, c);
    vigil__queue_push(loop, &c->sendq, op->self + 1, vigil__op_link);
    c->queued += len;
    pump(loop, c);
    if (out)
        *out = vigil__op_handle(loop, op);
    return 0;
}

int vigil__debug_udp_full(vigil_loop *loop, uint32_t n) {
    VIGIL__API(loop, 0);
    loop->debug_udp_full = n;
    return 0;
}

/* ------------------------------------------------ the later list, close */

/* A final status from the later list (an op destroy already reported only
 * frees its slot); the socket goes once its last op is final. */
static bool finish_reported(vigil_loop *loop, vigil__op *op, vigil__conn *c) {
    if (!(op->flags & VIGIL__OPF_USER_DONE))
        return false;
    vigil__op_release(loop, op);
    maybe_free(loop, c);
    return true;
}

static void udp_recv_finish(vigil_loop *loop, vigil__op *op, int status) {
    vigil__conn *c = vigil__conn_at(loop, op->conn);
    if (finish_reported(loop, op, c))
        return;
    recv_final(loop, op, c, status);
    maybe_free(loop, c);
}

static void udp_send_finish(vigil_loop *loop, vigil__op *op, int status) {
    vigil__conn *c = vigil__conn_at(loop, op->conn);
    if (finish_reported(loop, op, c))
        return;
    send_final(loop, op, c, status);
    maybe_free(loop, c);
}

/* Stops the receive: -ECANCELED (or status) as its final callback. */
static void recv_stop(vigil_loop *loop, vigil__conn *c, int status) {
    vigil__op *op = op_of(loop, c->recv_op);
    if (!op || (op->flags & VIGIL__OPF_STOPPED))
        return;
    op->flags |= VIGIL__OPF_STOPPED;
    op->status = status;
    if (c->flags & VIGIL__CF_BUF_WAIT) {
        c->flags &= (uint16_t)~VIGIL__CF_BUF_WAIT; /* the buffer-wait list skips it */
    }
    if (op->flags & (VIGIL__OPF_KERNEL | VIGIL__OPF_CARRIED))
        vigil__op_cancel_kernel(loop, op); /* its completion ends it */
    else if (!(op->flags & VIGIL__OPF_LATER))
        vigil__later(loop, op, status);
}

static int udp_recv_cancel(vigil_loop *loop, vigil__op *op) {
    recv_stop(loop, vigil__conn_at(loop, op->conn), -ECANCELED);
    return 0;
}

static int udp_send_cancel(vigil_loop *loop, vigil__op *op) {
    if (!vigil__send_unlink(loop, vigil__conn_at(loop, op->conn), op)) /* a queued datagram that has not gone out */
        return -EBADF;
    op->flags |= VIGIL__OPF_STOPPED;
    vigil__later(loop, op, -ECANCELED);
    return 0;
}

static void fail_queue(vigil_loop *loop, vigil__conn *c, int status) {
    for (uint32_t s1; (s1 = vigil__queue_pop(loop, &c->sendq, vigil__op_link));) {
        vigil__op *op = op_of(loop, s1);
        op->flags |= VIGIL__OPF_STOPPED;
        vigil__later(loop, op, status);
    }
    c->queued = 0;
}

int vigil_udp_close(vigil_loop *loop, vigil_udp h) {
    VIGIL__API(loop, h.id);
    vigil__conn *c = dgram_from(loop, h);
    if (!c)
        return -EBADF;
    c->flags |= VIGIL__CF_CLOSING;
    recv_stop(loop, c, -ECANCELED);
    fail_queue(loop, c, -ECANCELED);
    vigil__op *w = op_of(loop, c->io_op);
    if (w)
        vigil__op_cancel_kernel(loop, w);
    maybe_free(loop, c);
    return 0;
}

/* Destroy: every datagram socket's receive, then its queued sends, end
 * now (-ECANCELED); their sockets close once the kernel let go. */
void vigil__udp_destroy_all(vigil_loop *loop) {
    for (uint32_t s1 = 1; s1 <= loop->conns.cap; s1++) {
        vigil__conn *c = vigil__conn_at(loop, s1);
        if (c->kind != VIGIL__CONN_DGRAM || (c->flags & VIGIL__CF_CLOSING))
            continue;
        vigil_udp_close(loop, udp_handle(loop, c));
        vigil__op *op = op_of(loop, c->recv_op);
        if (op && !(op->flags & VIGIL__OPF_USER_DONE) && !(op->flags & VIGIL__OPF_LATER))
            recv_final(loop, op, c, -ECANCELED); /* now, in destroy's order */
    }
}

/* After a fence: the receive goes on (the rebuild issued it again or it
 * waits in the later list), and the queue is pumped. */
void vigil__udp_repair(vigil_loop *loop, vigil__conn *c) {
    vigil__udp_rearm(loop, c);
    if (!(c->flags & VIGIL__CF_CLOSING))
        pump(loop, c);
    else
        maybe_free(loop, c);
}

/* ------------------------------------------------------ op classes */

static void udp_recv_release(vigil_loop *loop, vigil__op *op) { free(op->u.udp.rx); }

/* one block: the peer, then the bytes */
static void udp_send_release(vigil_loop *loop, vigil__op *op) {
    vigil__send_free(loop, op->u.send.block, op->u.send.len + sizeof(vigil_addr));
}

const vigil__op_class vigil__udp_recv_class = {
    .name = "udp-recv",
    .flags = VIGIL__CLASS_REARMS | VIGIL__CLASS_STANDING,
    .complete = udp_recv_complete,
    .finish = udp_recv_finish,
    .cancel = udp_recv_cancel,
    .reissue = vigil__reissue_again,
    .release = udp_recv_release,
};

/* a queued datagram: never in the kernel (sendto does not wait) */
const vigil__op_class vigil__udp_send_class = {
    .name = "udp-send",
    .finish = udp_send_finish,
    .cancel = udp_send_cancel,
    .release = udp_send_release,
};

/* a full socket: waiting for it to take more (its sends are the queue's) */
const vigil__op_class vigil__udp_wait_class = {
    .name = "udp-wait",
    .flags = VIGIL__CLASS_STANDING,
    .complete = udp_wait_complete,
    .reissue = vigil__reissue_again,
};

int vigil_udp_set_option(vigil_loop *loop, vigil_udp h, int opt, int value) {
    VIGIL__API(loop, h.id);
    vigil__conn *c = dgram_from(loop, h);
    if (!c)
        return -EBADF;
    bool ttl = opt == VIGIL_UDP_TTL || opt == VIGIL_UDP_MULTICAST_TTL;
    if (opt < VIGIL_UDP_BROADCAST || opt > VIGIL_UDP_MULTICAST_LOOP || value < 0 ||
        value > (ttl ? 255 : 1) || (opt == VIGIL_UDP_TTL && value == 0))
        return -EINVAL;
    return vigil__udp_setopt(c->fd, opt, value);
}

static int membership(vigil_loop *loop, vigil_udp h, const char *group, uint32_t ifindex, bool join) {
    vigil__conn *c = dgram_from(loop, h);
    if (!c)
        return -EBADF;
    return group ? vigil__udp_membership(c->fd, group, ifindex, join) : -EINVAL;
}

int vigil_udp_join(vigil_loop *loop, vigil_udp h, const char *group, uint32_t ifindex) {
    VIGIL__API(loop, h.id);
    return membership(loop, h, group, ifindex, true);
}

int vigil_udp_leave(vigil_loop *loop, vigil_udp h, const char *group, uint32_t ifindex) {
    VIGIL__API(loop, h.id);
    return membership(loop, h, group, ifindex, false);
}
