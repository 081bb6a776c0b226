/*
 * epoll.c: the epoll backend, for hosts where io_uring is missing or denied.
 *
 * It turns readiness into the completions the core expects, with the same
 * semantics as io_uring:
 *  a. Requests never complete inside the call that made them: sends,
 *     connects, closes, cancels and no-ops are queued and carried out at the
 *     start of the next wait(), like an io_uring submit.
 *  b. Accept and receive are "multishot": they stay armed (level-triggered
 *     EPOLLIN) and post completions with MORE until an error, EOF, a cancel,
 *     or no free buffer (-ENOBUFS, final: the core re-arms when one is back).
 *  c. Receives read into the core's buffer pool; the free list lives here.
 *  d. A send is tried at once in wait(); only when it would block does the
 *     fd get EPOLLOUT interest. At most one send per fd is in flight (core).
 *  e. Level-triggered, because the core pauses and resumes receives and the
 *     interest set follows the ops: no event is ever owed to a later re-arm.
 *  f. epoll data carries fd | registration generation << 32, never a
 *     pointer: an event for an fd that was closed and reused is dropped.
 *  g. Reads per ready fd per pass are bounded, so one fast sender cannot
 *     starve the rest.
 *  h. What readiness means depends on the request that waits for it (an
 *     accept, a stream or datagram receive, the wake, plain readiness; a
 *     send, a connect): the fd's slot says, set by the request. What a
 *     request needs later (its fd, a send's iovecs, a connect's address) is
 *     in a record of this file's, by op slot and checked by tag.
 */
#include "core/loop.h"
#include "os/platform.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define READS_PER_EVENT 4
#define ACCEPTS_PER_EVENT 64
#define MAX_EVENTS 256

/* What a request waiting on an fd asked for (quirk h). */
enum { RD_STREAM = 0, RD_ACCEPT, RD_DGRAM, RD_WAKE, RD_READY };
enum { WR_SEND = 0, WR_CONNECT, WR_READY };

/* fd_slot holds tag + 1, so that 0 means "no op" (tag 0 is a real tag). */
typedef struct fd_slot {
    uint64_t rd_tag;  /* request waiting for EPOLLIN, + 1; 0 = none */
    uint64_t wr_tag;  /* request waiting for EPOLLOUT, + 1 */
    uint32_t gen;     /* bumped when the fd is closed */
    uint32_t events;  /* interest currently registered; 0 = not in the set */
    uint8_t in_set;
    uint8_t rd_how, wr_how; /* RD_*, WR_* */
} fd_slot;

typedef struct pending {
    uint64_t tag;
    int kind; /* what to carry out: below */
    int fd;
    int32_t res; /* for PEND_DONE */
} pending;
enum { PEND_SEND = 1, PEND_CONNECT, PEND_CLOSE, PEND_DONE };

typedef struct send_flight {
    int n;
    struct iovec iov[];
} send_flight;

/* A request's record (quirk h), by op slot. */
typedef struct req {
    uint64_t tag;       /* the request's; another tag's lookup finds nothing */
    int fd;
    send_flight *send;  /* a send's iovecs, until it completes */
    const void *addr;   /* a connect's address (the op's: lives until the completion) */
    uint32_t addrlen;
} req;

typedef struct epoll_state {
    int epfd;
    uint64_t wake_buf;
    fd_slot *fds;
    uint32_t fds_cap;
    uint32_t *free_bufs; /* stack of buffer ids the loop can read into */
    uint32_t nfree;
    pending *pend;
    uint32_t npend, cap_pend;
    pending *run;   /* the requests being carried out now, [run_pos, run_n) still to do: */
    uint32_t run_pos, run_n, cap_run; /* in state memory, so a fence in a callback leaves them */
    struct epoll_event events[MAX_EVENTS];
    uint32_t cur_ev;    /* the epoll bits of the event being handled */
    req *reqs;          /* by op slot */
    uint32_t reqs_cap;
    /* The standing timer: a timerfd in the epoll set, set to the next timer's
     * due time only when that changes, so that epoll_wait needs no timeout of
     * its own (each one would start and cancel a kernel timer). -1: none. */
    int tmo_fd;
    uint64_t tmo_due;   /* what it is set to, 0: nothing (or it fired) */
} epoll_state;

/* The timerfd's epoll data: never an fd's (gen << 32 | fd). */
#define TMO_DATA UINT64_MAX

static epoll_state *st(vigil_loop *loop) { return loop->be_state; }

static fd_slot *slot_of(epoll_state *s, int fd) {
    if (fd < 0)
        return NULL;
    if ((uint32_t)fd >= s->fds_cap) {
        uint32_t cap = s->fds_cap ? s->fds_cap : 1024;
        while (cap <= (uint32_t)fd)
            cap *= 2;
        fd_slot *n = realloc(s->fds, cap * sizeof(*n));
        if (!n)
            return NULL;
        memset(n + s->fds_cap, 0, (cap - s->fds_cap) * sizeof(*n));
        s->fds = n;
        s->fds_cap = cap;
    }
    return &s->fds[fd];
}

/* Makes the registered interest match the ops waiting on fd. With no op
 * waiting the fd leaves the set: epoll reports EPOLLHUP/EPOLLERR even for an
 * empty interest mask, which would spin a loop whose receive is paused. The
 * core may close an fd directly (the kernel then drops it from the set), so
 * ENOENT and EEXIST are repaired rather than reported. */
static int sync_interest(epoll_state *s, int fd, fd_slot *f) {
    uint32_t want = (f->rd_tag ? EPOLLIN : 0) | (f->wr_tag ? EPOLLOUT : 0);
    if (want == f->events && (f->in_set == (want != 0)))
        return 0;
    struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)(uint32_t)fd | ((uint64_t)f->gen << 32)};
    if (!want) {
        if (f->in_set)
            epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
        f->in_set = 0;
        f->events = 0;
        return 0;
    }
    int rc = epoll_ctl(s->epfd, f->in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
    if (rc < 0 && errno == ENOENT)
        rc = epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
    else if (rc < 0 && errno == EEXIST)
        rc = epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev);
    if (rc < 0)
        return -errno;
    f->in_set = 1;
    f->events = want;
    return 0;
}

static int push_pending(epoll_state *s, uint64_t tag, int kind, int fd, int32_t res) {
    if (s->npend == s->cap_pend) {
        uint32_t cap = s->cap_pend ? s->cap_pend * 2 : 256;
        pending *p = realloc(s->pend, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->pend = p;
        s->cap_pend = cap;
    }
    s->pend[s->npend++] = (pending){tag, kind, fd, res};
    return 0;
}

/* The record of a new request of op slot tag's; NULL when out of memory. */
static req *req_new(epoll_state *s, uint64_t tag, int fd) {
    uint32_t slot = (uint32_t)tag;
    if (!vigil__slot_array_fit((void **)&s->reqs, &s->reqs_cap, slot, sizeof(req)))
        return NULL;
    req *r = &s->reqs[slot];
    free(r->send); /* an earlier request of the slot's: it completed */
    *r = (req){.tag = tag, .fd = fd};
    return r;
}

/* The record of tag's request, or NULL if it is not tag's. */
static req *req_of(epoll_state *s, uint64_t tag) {
    uint32_t slot = (uint32_t)tag;
    return slot < s->reqs_cap && s->reqs[slot].tag == tag ? &s->reqs[slot] : NULL;
}

static void complete(vigil_loop *loop, uint64_t tag, int32_t res, uint32_t flags) {
    vigil__cqe e = {tag, res, flags};
    vigil__dispatch(loop, &e);
}

/* A send's final completion: its iovecs go first (the core may send the
 * rest of the message through the same slot at once). */
static void complete_send(vigil_loop *loop, uint64_t tag, int32_t res) {
    req *r = req_of(st(loop), tag);
    if (r) {
        free(r->send);
        r->send = NULL;
    }
    complete(loop, tag, res, 0);
}

static void epoll_fini(vigil_loop *loop);

static int epoll_init(vigil_loop *loop) {
    epoll_state *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->epfd = -1;
    s->tmo_fd = -1;
    loop->be_state = s;
    int rc = -ENOMEM;
    s->free_bufs = malloc(loop->env.opts->buf_count * sizeof(uint32_t));
    if (!s->free_bufs)
        goto fail;
    /* low ids first; only free ones (after a rebuild some are in use) */
    for (uint32_t i = loop->env.opts->buf_count; i-- > 0;)
        if (loop->env.buf_state[i] == VIGIL__BUF_KERNEL)
            s->free_bufs[s->nfree++] = i;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        rc = -errno;
        goto fail;
    }
    /* without it (no timerfd): each wait passes its own timeout */
    s->tmo_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = TMO_DATA};
    if (s->tmo_fd >= 0 && epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->tmo_fd, &tev) < 0) {
        close(s->tmo_fd);
        s->tmo_fd = -1;
    }
    loop->env.info->features = 0;
    loop->env.info->ring_entries = loop->env.info->cq_entries = 0;
    return 0;
fail:
    epoll_fini(loop);
    return rc;
}

static int epoll_wake(vigil_loop *loop, vigil__op *op);

static int epoll_attach(vigil_loop *loop) {
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_WAKE);
    if (!op)
        return -ENOMEM;
    return epoll_wake(loop, op);
}

static void epoll_abandon(void *state) {
    epoll_state *s = state;
    if (!s)
        return;
    if (s->epfd >= 0)
        close(s->epfd); /* epoll holds no socket references: nothing else to undo */
    if (s->tmo_fd >= 0)
        close(s->tmo_fd);
    free(s->fds);
    free(s->free_bufs);
    free(s->pend);
    free(s->run);
    for (uint32_t i = 0; i < s->reqs_cap; i++)
        free(s->reqs[i].send);
    free(s->reqs);
    free(s);
}

static void epoll_fini(vigil_loop *loop) {
    epoll_abandon(loop->be_state);
    loop->be_state = NULL;
}

/* A fenced state's results not yet delivered: finals queued for the next
 * wait (cancels, the stale test no-op). Requests not yet carried out (sends,
 * connects, closes) moved nothing; their ops are re-issued by the rebuild. */
static uint32_t epoll_harvest(void *state, vigil__cqe *out, uint32_t max, bool *overflowed) {
    (void)overflowed;
    epoll_state *s = state;
    uint32_t n = 0;
    while (n < max && s->run_pos < s->run_n) {
        pending p = s->run[s->run_pos++];
        if (p.kind == PEND_DONE)
            out[n++] = (vigil__cqe){p.tag, p.res, 0};
    }
    uint32_t i = 0;
    while (n < max && i < s->npend) {
        pending p = s->pend[i++];
        if (p.kind == PEND_DONE)
            out[n++] = (vigil__cqe){p.tag, p.res, 0};
    }
    if (i) {
        memmove(s->pend, s->pend + i, (s->npend - i) * sizeof(*s->pend));
        s->npend -= i;
    }
    return n;
}

static int arm_read(vigil_loop *loop, vigil__op *op, int fd, uint8_t how) {
    epoll_state *s = st(loop);
    uint64_t tag = vigil__op_tag(loop, op);
    fd_slot *f = slot_of(s, fd);
    if (!f || !req_new(s, tag, fd))
        return -ENOMEM;
    f->rd_tag = tag + 1;
    f->rd_how = how;
    int rc = sync_interest(s, fd, f);
    if (rc < 0) {
        f->rd_tag = 0;
        return rc;
    }
    vigil__op_kernel_started(loop, op);
    return 0;
}

static int epoll_accept(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    return arm_read(loop, op, fd, RD_ACCEPT);
}

static int epoll_recv(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    return arm_read(loop, op, fd, RD_STREAM);
}

/* on_datagrams lays each out as io_uring's multishot recvmsg does: no
 * msghdr of the caller's is needed */
static int epoll_recv_dgram(vigil_loop *loop, vigil__op *op, vigil_socket fd, void *one_shot) {
    (void)one_shot;
    return arm_read(loop, op, fd, RD_DGRAM);
}

static int epoll_wake(vigil_loop *loop, vigil__op *op) { return arm_read(loop, op, loop->env.wake_fd, RD_WAKE); }

static void wait_write(vigil_loop *loop, uint64_t tag, int fd, uint8_t how);

/* Readiness: one request may wait for both directions (an fd watcher); it
 * then holds the fd's read and write waits with one tag, and whichever
 * comes first completes it with both that are ready. */
static int epoll_poll(vigil_loop *loop, vigil__op *op, int fd, uint32_t events) {
    epoll_state *s = st(loop);
    uint64_t tag = vigil__op_tag(loop, op);
    fd_slot *f = slot_of(s, fd);
    if (!(events & (VIGIL__POLL_IN | VIGIL__POLL_OUT)))
        return -EINVAL;
    if (!f || !req_new(s, tag, fd))
        return -ENOMEM;
    if (events & VIGIL__POLL_IN) {
        f->rd_tag = tag + 1;
        f->rd_how = RD_READY;
    }
    if (events & VIGIL__POLL_OUT) {
        f->wr_tag = tag + 1;
        f->wr_how = WR_READY;
    }
    int rc = sync_interest(s, fd, f);
    if (rc < 0) {
        if (f->rd_tag == tag + 1)
            f->rd_tag = 0;
        if (f->wr_tag == tag + 1)
            f->wr_tag = 0;
        return rc;
    }
    vigil__op_kernel_started(loop, op);
    return 0;
}

/* A readiness request is done: both of its waits go, and the completion
 * says which directions the event showed (ev: epoll's bits). */
static void ready_done(vigil_loop *loop, epoll_state *s, int fd, fd_slot *f, uint64_t tag, uint32_t ev) {
    int32_t res = 0;
    if (f->rd_tag == tag + 1) {
        f->rd_tag = 0;
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
            res |= VIGIL__POLL_IN;
    }
    if (f->wr_tag == tag + 1) {
        f->wr_tag = 0;
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            res |= VIGIL__POLL_OUT;
    }
    sync_interest(s, fd, f);
    complete(loop, tag, res, 0);
}

/* Queues a request for the next wait; its record is r (set up by the caller). */
static int queue_op(vigil_loop *loop, vigil__op *op, int kind, int fd) {
    int rc = push_pending(st(loop), vigil__op_tag(loop, op), kind, fd, 0);
    if (rc == 0)
        vigil__op_kernel_started(loop, op);
    return rc;
}

static int epoll_send(vigil_loop *loop, vigil__op *op, vigil_socket fd, const vigil__slice *sl, int n) {
    /* The slices live on the caller's stack: keep a copy until completion. */
    send_flight *fl = malloc(sizeof(*fl) + (size_t)n * sizeof(struct iovec));
    req *r = fl ? req_new(st(loop), vigil__op_tag(loop, op), fd) : NULL;
    if (!r) {
        free(fl);
        return -ENOMEM;
    }
    fl->n = n;
    for (int i = 0; i < n; i++) {
        fl->iov[i].iov_base = (void *)sl[i].base;
        fl->iov[i].iov_len = sl[i].len;
    }
    r->send = fl;
    return queue_op(loop, op, PEND_SEND, fd);
}

static int epoll_connect(vigil_loop *loop, vigil__op *op, vigil_socket fd, const void *addr, uint32_t len) {
    req *r = req_new(st(loop), vigil__op_tag(loop, op), fd);
    if (!r)
        return -ENOMEM;
    r->addr = addr;
    r->addrlen = len;
    return queue_op(loop, op, PEND_CONNECT, fd);
}

static int epoll_close(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    if (!req_new(st(loop), vigil__op_tag(loop, op), fd))
        return -ENOMEM;
    return queue_op(loop, op, PEND_CLOSE, fd);
}

static int epoll_nop(vigil_loop *loop, uint64_t tag) { return push_pending(st(loop), tag, PEND_DONE, -1, 0); }

/* Cancel: take the op off whatever it waits on and post its final -ECANCELED
 * at the next wait. An op that already completed is not found: nothing to do
 * (its completion is on its way or delivered). */
static int epoll_cancel(vigil_loop *loop, vigil__op *op) {
    epoll_state *s = st(loop);
    uint64_t tag = vigil__op_tag(loop, op);
    for (uint32_t i = 0; i < s->npend; i++) {
        if (s->pend[i].tag == tag && s->pend[i].kind != PEND_DONE) {
            if (s->pend[i].kind == PEND_CLOSE)
                return 0; /* a close is not cancelled */
            s->pend[i].kind = PEND_DONE;
            s->pend[i].res = -ECANCELED;
            return 0;
        }
    }
    req *r = req_of(s, tag);
    int fd = r ? r->fd : -1;
    fd_slot *f = fd >= 0 && (uint32_t)fd < s->fds_cap ? &s->fds[fd] : NULL;
    if (f && (f->rd_tag == tag + 1 || f->wr_tag == tag + 1)) {
        if (f->rd_tag == tag + 1)
            f->rd_tag = 0;
        if (f->wr_tag == tag + 1) /* a readiness request may hold both */
            f->wr_tag = 0;
        sync_interest(s, fd, f);
        return push_pending(s, tag, PEND_DONE, -1, -ECANCELED);
    }
    return 0;
}

/* Tries tag's send; returns 1 if it completed, 0 if it would block. */
static int try_send(vigil_loop *loop, uint64_t tag, int fd) {
    req *r = req_of(st(loop), tag);
    send_flight *fl = r ? r->send : NULL;
    if (!fl) { /* cannot happen: a send is recorded before it is queued */
        complete(loop, tag, -EFAULT, 0);
        return 1;
    }
    ssize_t n;
    if (fl->n == 1) {
        n = send(fd, fl->iov[0].iov_base, fl->iov[0].iov_len, MSG_NOSIGNAL);
    } else {
        struct msghdr m = {.msg_iov = fl->iov, .msg_iovlen = (size_t)fl->n};
        n = sendmsg(fd, &m, MSG_NOSIGNAL);
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    complete_send(loop, tag, n < 0 ? -errno : (int32_t)n);
    return 1;
}

static void wait_write(vigil_loop *loop, uint64_t tag, int fd, uint8_t how) {
    epoll_state *s = st(loop);
    fd_slot *f = slot_of(s, fd);
    int rc = f ? 0 : -ENOMEM;
    if (f) {
        f->wr_tag = tag + 1;
        f->wr_how = how;
        rc = sync_interest(s, fd, f);
        if (rc < 0)
            f->wr_tag = 0;
    }
    if (rc < 0)
        complete(loop, tag, rc, 0);
}

static void run_pending(vigil_loop *loop, pending p) {
    if (p.kind == PEND_DONE) {
        complete(loop, p.tag, p.res, 0);
        return;
    }
    req *r = req_of(st(loop), p.tag);
    if (!r || !vigil__tag_live(loop, p.tag))
        return;
    switch (p.kind) {
    case PEND_SEND:
        if (!try_send(loop, p.tag, p.fd))
            wait_write(loop, p.tag, p.fd, WR_SEND);
        break;
    case PEND_CONNECT:
        if (connect(p.fd, r->addr, r->addrlen) == 0)
            complete(loop, p.tag, 0, 0);
        else if (errno == EINPROGRESS || errno == EINTR || errno == EALREADY)
            wait_write(loop, p.tag, p.fd, WR_CONNECT);
        else
            complete(loop, p.tag, -errno, 0);
        break;
    case PEND_CLOSE: {
        epoll_state *s = st(loop);
        fd_slot *f = slot_of(s, p.fd);
        if (f) {
            if (f->in_set)
                epoll_ctl(s->epfd, EPOLL_CTL_DEL, p.fd, NULL);
            uint32_t gen = f->gen + 1;
            memset(f, 0, sizeof(*f));
            f->gen = gen; /* events still queued for the old fd are dropped */
        }
        complete(loop, p.tag, close(p.fd) < 0 && errno != EINTR ? -errno : 0, 0);
        break;
    }
    }
}

/* Carries out queued requests; callbacks may queue more, which run too. The
 * batch being carried out swaps places with the queue, and stays in state
 * memory until each entry's turn (harvest reads what a fence left). */
static int drain_pending(vigil_loop *loop) {
    epoll_state *s = st(loop);
    int done = 0;
    for (int round = 0; s->npend && round < 16; round++) {
        pending *t = s->run;
        uint32_t tcap = s->cap_run;
        s->run = s->pend;
        s->cap_run = s->cap_pend;
        s->run_n = s->npend;
        s->run_pos = 0;
        s->pend = t;
        s->cap_pend = tcap;
        s->npend = 0;
        while (s->run_pos < s->run_n) {
            pending p = s->run[s->run_pos++];
            run_pending(loop, p);
            done++;
        }
    }
    return done;
}

/* A connect the fenced state had started: wait for writability, then the
 * core reads SO_ERROR (on_writable completes connects with it). */
static int epoll_resume_connect(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    uint64_t tag = vigil__op_tag(loop, op);
    if (!req_new(st(loop), tag, fd))
        return -ENOMEM;
    vigil__op_kernel_started(loop, op);
    wait_write(loop, tag, fd, WR_CONNECT);
    return 0;
}

/* Datagrams into pool buffers, laid out as io_uring's multishot recvmsg
 * lays them out (head, address, payload), so udp.c reads one format. A
 * zero-length datagram is a datagram, not an end. */
static void on_datagrams(vigil_loop *loop, epoll_state *s, int fd, fd_slot *f, uint64_t tag) {
    for (int i = 0; i < READS_PER_EVENT * 4; i++) {
        if (!s->nfree) {
            f->rd_tag = 0;
            sync_interest(s, fd, f);
            complete(loop, tag, -ENOBUFS, VIGIL__CQE_MSGOUT);
            return;
        }
        uint32_t id = s->free_bufs[--s->nfree];
        uint8_t *buf = loop->env.buf_base + (size_t)id * loop->env.opts->buf_size;
        size_t room = loop->env.opts->buf_size - VIGIL__UDP_HEAD;
        struct iovec iov = {buf + VIGIL__UDP_HEAD, room};
        struct msghdr mh = {.msg_name = buf + sizeof(vigil__msgout), .msg_namelen = VIGIL__UDP_NAME_MAX,
                            .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_TRUNC); /* n: the whole datagram's length */
        if (n >= 0) {
            vigil__msgout *o = (vigil__msgout *)buf;
            *o = (vigil__msgout){mh.msg_namelen, 0, (uint32_t)n, (uint32_t)mh.msg_flags};
            size_t used = VIGIL__UDP_HEAD + ((size_t)n < room ? (size_t)n : room);
            complete(loop, tag, (int32_t)used, VIGIL__CQE_MSGOUT | VIGIL__CQE_MORE | VIGIL__CQE_BUF | (id << 16));
            f = slot_of(s, fd);
            if (f->rd_tag != tag + 1)
                return; /* stopped meanwhile */
            continue;
        }
        s->free_bufs[s->nfree++] = id;
        if (errno == EAGAIN || errno == EINTR)
            return;
        if (errno == ECONNREFUSED) /* an ICMP error for an earlier send: not the socket's end */
            continue;
        f->rd_tag = 0;
        sync_interest(s, fd, f);
        complete(loop, tag, -errno, VIGIL__CQE_MSGOUT);
        return;
    }
}

static void on_wake(vigil_loop *loop, epoll_state *s, int fd, fd_slot *f, uint64_t tag);
static void on_accepts(vigil_loop *loop, epoll_state *s, int fd, fd_slot *f, uint64_t tag);
static void on_stream(vigil_loop *loop, epoll_state *s, int fd, fd_slot *f, uint64_t tag);

/* Readiness for the request waiting to read fd, as it asked (quirk h). */
static void on_readable(vigil_loop *loop, epoll_state *s, int fd, fd_slot *f) {
    uint64_t tag = f->rd_tag - 1;
    if (!vigil__tag_live(loop, tag))
        return;
    switch (f->rd_how) {
    case RD_WAKE:
        on_wake(loop, s, fd, f, tag);
        return;
    case RD_READY: /* readiness only: the core reads */
        ready_done(loop, s, fd, f, tag, s->cur_ev);
        return;
    case RD_ACCEPT:
        on_accepts(loop, s, fd, f, tag);
        return;
    case RD_DGRAM:
        on_datagrams(loop, s, fd, f, tag);
        return;
    default:
        on_stream(loop, s, fd, f, tag);
    }
}

/* The wake fd: read as io_uring reads it, one-shot; the core re-arms. */
static void on_wake(vigil_loop *loop, epoll_state *s, int fd, fd_slot *f, uint64_t tag) {
    ssize_t r = read(fd, &s->wake_buf, sizeof(s->wake_buf));
    if (r < 0 && errno == EAGAIN)
        return;
    f->rd_tag = 0;
    complete(loop, tag, r < 0 ? -errno : (int32_t)r, 0);
}

/* Connections into completions with MORE; an error is final (the core
 * decides: EMFILE pauses and retries). */
static void on_accepts(vigil_loop *loop, epoll_state *s, int fd, fd_slot *f, uint64_t tag) {
    for (int i = 0; i < ACCEPTS_PER_EVENT && f->rd_tag == tag + 1; i++) {
        int nfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (nfd >= 0) {
            complete(loop, tag, nfd, VIGIL__CQE_MORE);
            f = slot_of(s, fd); /* the table may have grown */
            continue;
        }
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
            return;
        f->rd_tag = 0;
        sync_interest(s, fd, f);
        complete(loop, tag, -errno, 0);
        return;
    }
}

/* A stream's bytes into pool buffers. */
static void on_stream(vigil_loop *loop, epoll_state *s, int fd, fd_slot *f, uint64_t tag) {
    for (int i = 0; i < READS_PER_EVENT; i++) {
        if (!s->nfree) {
            f->rd_tag = 0;
            sync_interest(s, fd, f);
            complete(loop, tag, -ENOBUFS, 0);
            return;
        }
        uint32_t id = s->free_bufs[--s->nfree];
        uint8_t *buf = loop->env.buf_base + (size_t)id * loop->env.opts->buf_size;
        ssize_t n = recv(fd, buf, loop->env.opts->buf_size, 0);
        if (n > 0) {
            complete(loop, tag, (int32_t)n, VIGIL__CQE_MORE | VIGIL__CQE_BUF | (id << 16));
            f = slot_of(s, fd);
            if (f->rd_tag != tag + 1 || (size_t)n < loop->env.opts->buf_size)
                return; /* stopped meanwhile, or the socket is drained */
            continue;
        }
        s->free_bufs[s->nfree++] = id;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        f->rd_tag = 0;
        sync_interest(s, fd, f);
        complete(loop, tag, n == 0 ? 0 : -errno, 0);
        return;
    }
}

static void on_writable(vigil_loop *loop, int fd, fd_slot *f) {
    uint64_t tag = f->wr_tag - 1;
    if (!vigil__tag_live(loop, tag))
        return;
    if (f->wr_how == WR_READY) { /* readiness only: the core writes */
        ready_done(loop, st(loop), fd, f, tag, st(loop)->cur_ev);
        return;
    }
    if (f->wr_how == WR_CONNECT) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        f->wr_tag = 0;
        sync_interest(st(loop), fd, f);
        complete(loop, tag, -err, 0);
        return;
    }
    f->wr_tag = 0; /* the send completes now (or fails); the core sends the rest */
    sync_interest(st(loop), fd, f);
    if (!try_send(loop, tag, fd))
        wait_write(loop, tag, fd, WR_SEND);
}

/* Sets the standing timer for until (a vigil__clock_ns: CLOCK_MONOTONIC)
 * unless it ends no later already (one that ends sooner only wakes the loop
 * early). False: the wait must pass its own timeout. */
static bool standing_timer(epoll_state *s, uint64_t until) {
    if (s->tmo_fd < 0 || !until)
        return false;
    if (s->tmo_due && s->tmo_due <= until)
        return true;
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(until / 1000000000u),
                                          .tv_nsec = (long)(until % 1000000000u)}};
    if (timerfd_settime(s->tmo_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        return false;
    s->tmo_due = until;
    return true;
}

static int epoll_wait_be(vigil_loop *loop, int64_t timeout_ns) {
    epoll_state *s = st(loop);
    int handled = drain_pending(loop);
    int timeout_ms;
    if (handled || s->npend || timeout_ns == 0)
        timeout_ms = 0;
    else if (timeout_ns < 0 || standing_timer(s, loop->env.wait_until_ns))
        timeout_ms = -1;
    else /* round up: waking early would spin until the deadline */
        timeout_ms = (int)((timeout_ns + 999999) / 1000000);
    vigil__wait_enter(loop);
    int n = epoll_wait(s->epfd, s->events, MAX_EVENTS, timeout_ms);
    vigil__wait_leave(loop); /* out of the kernel: a fenced thread leaves here */
    if (n < 0)
        return errno == EINTR ? handled : -errno;
    for (int i = 0; i < n; i++) {
        uint64_t d = s->events[i].data.u64;
        if (d == TMO_DATA) { /* the standing timer fired: the loop runs what is due */
            uint64_t expirations;
            ssize_t r = read(s->tmo_fd, &expirations, sizeof(expirations)); /* EAGAIN: none */
            (void)r;
            s->tmo_due = 0;
            handled--; /* not a completion */
            continue;
        }
        int fd = (int)(uint32_t)d;
        fd_slot *f = slot_of(s, fd);
        if (!f || f->gen != (uint32_t)(d >> 32))
            continue; /* the fd was closed since: drop the event (quirk f) */
        uint32_t ev = s->events[i].events;
        s->cur_ev = ev;
        if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && f->rd_tag)
            on_readable(loop, s, fd, f);
        f = slot_of(s, fd);
        if (f && f->gen == (uint32_t)(d >> 32) && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && f->wr_tag)
            on_writable(loop, fd, f);
    }
    return handled + n;
}


static int epoll_poll_fd(vigil_loop *loop) { return st(loop)->epfd; }

static void epoll_buf_recycle(vigil_loop *loop, uint32_t id) {
    epoll_state *s = st(loop);
    s->free_bufs[s->nfree++] = id;
}

const vigil__backend vigil__epoll_backend = {
    .name = "epoll",
    .id = VIGIL_BACKEND_EPOLL,
    .caps = VIGIL__CAP_FALLBACK,
    .init = epoll_init,
    .attach = epoll_attach,
    .fini = epoll_fini,
    .accept = epoll_accept,
    .recv = epoll_recv,
    .recv_dgram = epoll_recv_dgram,
    .wake = epoll_wake,
    .send = epoll_send,
    .connect = epoll_connect,
    .close = epoll_close,
    .cancel = epoll_cancel,
    .nop = epoll_nop,
    .wait = epoll_wait_be,
    .poll_fd = epoll_poll_fd,
    .buf_recycle = epoll_buf_recycle,
    .resume_connect = epoll_resume_connect,
    .poll = epoll_poll,
    .harvest = epoll_harvest,
    .abandon = epoll_abandon,
};
