/*
 * uring.c: the io_uring backend.
 *
 * Quirks this file works around (see ../shared/notes/kernel-facts.md):
 *  a. A ring must be driven by the thread that will own it: it is created
 *     R_DISABLED (any thread) and enabled by the loop thread (attach), which
 *     makes that thread the single issuer.
 *  b. SINGLE_ISSUER|DEFER_TASKRUN (6.1+) are faster, and a stuck owner then
 *     moves no bytes; on EINVAL we retry with fewer flags.
 *  c. Multishot ops end when a completion lacks IORING_CQE_F_MORE (error,
 *     cancel, EOF, -ENOBUFS, CQ overflow): the core re-arms them. A kernel
 *     that rejects a multishot opcode variant with -EINVAL makes us fall back
 *     to one-shot ops for the rest of the loop's life.
 *  d. Never MSG_WAITALL on sends: a partly done send could then have no
 *     completion, and the byte offset would be lost.
 *  e. CQ overflow: with IORING_FEAT_NODROP the kernel keeps overflowed
 *     completions; peeking flushes them. We require NODROP (5.5+).
 *  f. liburing returns -errno and never sets errno.
 *  g. liburing 2.3 lacks io_uring_setup_buf_ring: the buffer ring is mapped
 *     and registered here.
 *  h. What a completion means depends on the request that made it (a
 *     multishot recvmsg's buffers start with a head; a sendmsg's msghdr
 *     must live until its completion): each request leaves a record here,
 *     by op slot and checked by tag, read as its completions are copied out.
 */
#include "core/loop.h"
#include "os/platform.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15) /* Linux 6.12: getevents_arg.min_wait_usec */
#endif
#ifndef IORING_FEAT_NODROP
#define IORING_FEAT_NODROP (1U << 1)
#endif

#define BGID 0

/* What this backend remembers of a request (quirk h), by op slot. */
enum { HOW_OTHER = 0, HOW_ACCEPT_MULTI, HOW_RECV_MULTI, HOW_DGRAM_MULTI,
       HOW_POLL_IN, HOW_POLL_OUT, HOW_POLL_INOUT }; /* HOW_POLL_IN - 1 + VIGIL__POLL_* */
typedef struct req {
    uint64_t tag;  /* the request's; a completion with another is not its */
    uint8_t how;
    void *mem;     /* memory the kernel reads until the final completion (a sendmsg's) */
} req;

typedef struct uring_state {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    size_t br_len;
    unsigned br_mask;
    unsigned br_pending; /* buffers added but not yet published */
    /* A shallow ring: the kernel takes the ring's buffers in order, so with
     * all of them in it every receive lands in a buffer (and pages) not
     * touched for buf_count receives: a TLB and cache miss each, 5-7 % of
     * the raw liburing server's CPU per request at one connection. Only
     * br_depth buffers stay in the ring; the rest wait in spare, last freed
     * on top (still warm), and go in as the ring drains. br_depth grows when
     * a receive finds the ring empty or a pass nearly drains it, and shrinks
     * when passes use little of it (top_up). */
    unsigned br_in;      /* in the ring (published or pending), not yet taken */
    unsigned br_depth;   /* how many br_in is topped up to */
    unsigned br_low;     /* the fewest br_in seen at a top-up this window */
    unsigned br_topups;  /* top-ups this window */
    bool br_dry;         /* a receive found the ring empty since the last top-up */
    uint16_t *spare;     /* free buffer ids not in the ring: a stack */
    uint32_t nspare;
    uint64_t wake_buf;
    struct msghdr udp_mh; /* the template of multishot recvmsg: room for an IPv6 address */
    uint32_t setup_flags;
    bool multishot_accept, multishot_recv;
    bool min_wait;   /* the kernel has the minimum wait: batched waits work (opts->wait_batch) */
    struct io_uring_cqe *cqes[256];
    req *reqs;             /* by op slot */
    uint32_t reqs_cap;
    /* The standing timeout (uring_wait): an absolute IORING_OP_TIMEOUT at the
     * next timer's due time, armed once and left in the kernel across waits,
     * so that a wait needs no timeout of its own (each one would start and
     * cancel a kernel timer: 3-4 % of the CPU per request at one connection). */
    bool tmo_ok;           /* the kernel has absolute timeouts (with EXT_ARG: 5.11+) */
    uint64_t tmo_due;      /* the earliest one armed, 0: none known */
    unsigned tmo_pending;  /* armed and not yet completed */
    struct __kernel_timespec tmo_ts; /* read by the kernel at submission */
} uring_state;

/* user_data of the standing timeout: never an op's tag (slot + gen + epoch). */
#define TAG_TIMEOUT (VIGIL__TAG_IGNORE - 1)
#define TMO_PENDING_MAX 4 /* more armed at once: the wait passes its own timeout */

static uring_state *st(vigil_loop *loop) { return loop->be_state; }

#define BR_DEPTH_MIN 32u
#define BR_WINDOW 256u /* top-ups between looks at whether to shrink */

static void ring_add(vigil_loop *loop, uring_state *s, uint32_t id) {
    io_uring_buf_ring_add(s->br, loop->env.buf_base + (size_t)id * loop->env.opts->buf_size,
                          loop->env.opts->buf_size, (unsigned short)id, (int)s->br_mask,
                          (int)s->br_pending);
    s->br_pending++;
    s->br_in++;
}

/* Refills the ring to br_depth from the spare stack's top, adapting the
 * depth to what the passes take: doubled when a receive found it empty or
 * it was left under a quarter full, halved when a whole window never took
 * a quarter. (A pass's completions come in batches, each followed by a
 * top-up, so the level alone can miss a ring that ran dry mid-pass.) */
static void top_up(vigil_loop *loop, uring_state *s) {
    uint32_t n = loop->env.opts->buf_count;
    bool dry = s->br_dry && s->nspare;
    s->br_dry = false;
    if ((dry || s->br_in < s->br_depth / 4) && s->br_depth < n) {
        s->br_depth = s->br_depth * 2 < n ? s->br_depth * 2 : n;
        s->br_low = UINT32_MAX;
        s->br_topups = 0;
    }
    if (s->br_in < s->br_low)
        s->br_low = s->br_in;
    if (++s->br_topups >= BR_WINDOW) {
        if (s->br_low > s->br_depth / 4 * 3 && s->br_depth / 2 >= BR_DEPTH_MIN)
            s->br_depth /= 2;
        s->br_low = UINT32_MAX;
        s->br_topups = 0;
    }
    while (s->br_in < s->br_depth && s->nspare)
        ring_add(loop, s, s->spare[--s->nspare]);
}

static void publish_buffers(uring_state *s) {
    if (s->br_pending) {
        io_uring_buf_ring_advance(s->br, (int)s->br_pending);
        s->br_pending = 0;
    }
}

/* The record of op slot tag's next request; NULL when out of memory. */
static req *req_new(uring_state *s, uint64_t tag, uint8_t how) {
    uint32_t slot = (uint32_t)tag;
    if (!vigil__slot_array_fit((void **)&s->reqs, &s->reqs_cap, slot, sizeof(req)))
        return NULL;
    req *r = &s->reqs[slot];
    free(r->mem); /* an earlier request of the slot's: its completion came */
    *r = (req){.tag = tag, .how = how};
    return r;
}

/* A completion in the core's terms, with what its request's record says
 * (quirk h); the record's memory goes with the final completion, before
 * the core sees it (it may issue the slot's next request at once).
 * Returns how the request was made. */
/* A poll's revents as the core takes them: which of the asked directions
 * are ready; an error or hang-up makes all of them (the next call says). */
static int32_t poll_mask(int32_t revents, uint32_t asked) {
    uint32_t m = 0;
    if (revents & (POLLIN | POLLPRI | POLLRDHUP | POLLERR | POLLHUP))
        m |= VIGIL__POLL_IN;
    if (revents & (POLLOUT | POLLERR | POLLHUP))
        m |= VIGIL__POLL_OUT;
    m &= asked;
    return (int32_t)(m ? m : asked);
}

static uint8_t cqe_take(uring_state *s, const struct io_uring_cqe *c, vigil__cqe *e) {
    e->tag = c->user_data;
    if (e->tag == TAG_TIMEOUT) { /* fired (or cancelled): no news for the core */
        s->tmo_pending--;
        s->tmo_due = 0; /* which one it was is not known: the next wait arms anew */
        e->tag = VIGIL__TAG_IGNORE;
    }
    e->res = c->res;
    e->flags = 0;
    if (c->flags & IORING_CQE_F_MORE)
        e->flags |= VIGIL__CQE_MORE;
    if (c->flags & IORING_CQE_F_BUFFER) {
        e->flags |= VIGIL__CQE_BUF | ((c->flags >> IORING_CQE_BUFFER_SHIFT) << 16);
        s->br_in--;
    } else if (c->res == -ENOBUFS) {
        s->br_dry = true;
    }
    uint32_t slot = (uint32_t)e->tag;
    if (e->tag == VIGIL__TAG_IGNORE || slot >= s->reqs_cap || s->reqs[slot].tag != e->tag)
        return HOW_OTHER;
    req *r = &s->reqs[slot];
    if (r->how == HOW_DGRAM_MULTI)
        e->flags |= VIGIL__CQE_MSGOUT;
    if (r->how >= HOW_POLL_IN && e->res > 0)
        e->res = poll_mask(e->res, (uint32_t)(r->how - HOW_POLL_IN + 1));
    if (!(e->flags & VIGIL__CQE_MORE)) {
        free(r->mem);
        r->mem = NULL;
    }
    return r->how;
}

static struct io_uring_sqe *get_sqe(uring_state *s) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (!sqe) {
        /* SQ full: hand what is queued to the kernel and take a fresh slot. */
        publish_buffers(s);
        io_uring_submit(&s->ring);
        sqe = io_uring_get_sqe(&s->ring);
    }
    return sqe;
}

static int setup_ring(vigil_loop *loop, uring_state *s) {
    const vigil_loop_options *o = loop->env.opts;
    uint32_t cq = o->ring_entries * 16;
    if (cq > 65536)
        cq = 65536;
    uint32_t base = IORING_SETUP_CQSIZE | IORING_SETUP_R_DISABLED;
    uint32_t tries[] = {
        base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        base | IORING_SETUP_SINGLE_ISSUER,
        base | IORING_SETUP_COOP_TASKRUN,
        base,
        IORING_SETUP_CQSIZE,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        uint32_t flags = tries[i];
        if ((o->flags & VIGIL_LOOP_NO_DEFER_TASKRUN) &&
            (flags & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER)))
            continue;
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = flags;
        p.cq_entries = cq;
        rc = io_uring_queue_init_params(o->ring_entries, &s->ring, &p);
        if (rc == 0) {
            s->setup_flags = flags;
            loop->env.info->ring_entries = p.sq_entries;
            loop->env.info->cq_entries = p.cq_entries;
            if (p.features & IORING_FEAT_NODROP)
                loop->env.info->features |= VIGIL_FEATURE_NODROP;
            if (p.features & IORING_FEAT_EXT_ARG) {
                loop->env.info->features |= VIGIL_FEATURE_EXT_ARG;
                s->tmo_ok = true;
            }
            if (p.features & IORING_FEAT_MIN_TIMEOUT) {
                loop->env.info->features |= VIGIL_FEATURE_BATCH_WAIT;
                s->min_wait = true;
            }
            return 0;
        }
        if (rc != -EINVAL)
            return rc; /* ENOSYS, EPERM, ENOMEM, EMFILE: not a flag problem */
    }
    return rc;
}

static int setup_buffers(vigil_loop *loop, uring_state *s) {
    uint32_t n = loop->env.opts->buf_count;
    s->br_len = (size_t)n * sizeof(struct io_uring_buf);
    s->br = vigil__mem_map(s->br_len);
    if (!s->br)
        return -ENOMEM;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)s->br;
    reg.ring_entries = n;
    reg.bgid = BGID;
    int rc = io_uring_register_buf_ring(&s->ring, &reg, 0);
    if (rc < 0)
        return rc == -EINVAL ? -ENOTSUP : rc; /* kernel before 5.19 */
    io_uring_buf_ring_init(s->br);
    s->br_mask = (unsigned)io_uring_buf_ring_mask(n);
    s->spare = malloc((size_t)n * sizeof(*s->spare));
    if (!s->spare)
        return -ENOMEM;
    /* Only buffers that are free: after a rebuild some are with the user,
     * parked, or named by completions of the fenced ring not yet applied.
     * Lowest ids on top of the stack. */
    for (uint32_t i = n; i-- > 0;)
        if (loop->env.buf_state[i] == VIGIL__BUF_KERNEL)
            s->spare[s->nspare++] = (uint16_t)i;
    s->br_depth = BR_DEPTH_MIN < n ? BR_DEPTH_MIN : n;
    s->br_low = UINT32_MAX;
    while (s->br_in < s->br_depth && s->nspare)
        ring_add(loop, s, s->spare[--s->nspare]);
    publish_buffers(s);
    loop->env.info->features |= VIGIL_FEATURE_BUF_RING;
    return 0;
}

static void uring_fini(vigil_loop *loop);

/* Every opcode the loop issues must be known to the kernel (5.6+ has them
 * all); otherwise io_uring is "unavailable" and the caller may fall back. */
static int probe_opcodes(uring_state *s) {
    static const int needed[] = {IORING_OP_ACCEPT, IORING_OP_CONNECT, IORING_OP_RECV,
                                 IORING_OP_SEND,   IORING_OP_SENDMSG, IORING_OP_CLOSE,
                                 IORING_OP_READ,   IORING_OP_ASYNC_CANCEL, IORING_OP_NOP,
                                 IORING_OP_POLL_ADD};
    struct io_uring_probe *p = io_uring_get_probe_ring(&s->ring);
    if (!p)
        return -ENOTSUP; /* no probe: kernel before 5.6 */
    int rc = 0;
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
        if (!io_uring_opcode_supported(p, needed[i]))
            rc = -ENOTSUP;
    io_uring_free_probe(p);
    return rc;
}

static int uring_init(vigil_loop *loop) {
    uring_state *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    loop->be_state = s;
    int rc = setup_ring(loop, s);
    if (rc < 0) {
        free(s);
        loop->be_state = NULL;
        return rc;
    }
    if (!(loop->env.info->features & VIGIL_FEATURE_NODROP)) {
        rc = -ENOTSUP; /* kernel before 5.5: completions could be lost */
        goto fail;
    }
    if ((rc = probe_opcodes(s)) < 0 || (rc = setup_buffers(loop, s)) < 0)
        goto fail;
    loop->env.info->ring_flags = s->setup_flags;
    if (s->setup_flags & IORING_SETUP_DEFER_TASKRUN)
        loop->env.info->features |= VIGIL_FEATURE_DEFER_TASKRUN;
    if (s->setup_flags & IORING_SETUP_SINGLE_ISSUER)
        loop->env.info->features |= VIGIL_FEATURE_SINGLE_ISSUER;
    /* Opcodes are probed; multishot variants have no probe bit, so they are
     * tried and dropped on -EINVAL (quirk c). Cancel-by-fd came with 5.19, as
     * did buffer rings, which we already have. */
    s->multishot_accept = !(loop->env.opts->flags & VIGIL_LOOP_NO_MULTISHOT_ACCEPT);
    s->multishot_recv = !(loop->env.opts->flags & VIGIL_LOOP_NO_MULTISHOT_RECV);
    loop->env.info->features |= VIGIL_FEATURE_CANCEL_FD;
    if (s->multishot_accept)
        loop->env.info->features |= VIGIL_FEATURE_MULTISHOT_ACCEPT;
    if (s->multishot_recv)
        loop->env.info->features |= VIGIL_FEATURE_MULTISHOT_RECV;
    return 0;
fail:
    uring_fini(loop);
    return rc;
}

static int queue(vigil_loop *loop, vigil__op *op, struct io_uring_sqe *sqe);

static int arm_wake(vigil_loop *loop, vigil__op *op) {
    uring_state *s = st(loop);
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_read(sqe, loop->env.wake_fd, &s->wake_buf, sizeof(s->wake_buf), 0);
    return queue(loop, op, sqe);
}

static int uring_attach(vigil_loop *loop) {
    uring_state *s = st(loop);
    if (s->setup_flags & IORING_SETUP_R_DISABLED) {
        /* Debian's liburing 2.3 declares io_uring_enable_rings but does not
         * export it: register directly. */
        if (syscall(__NR_io_uring_register, s->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
            return -errno;
    }
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_WAKE);
    if (!op)
        return -ENOMEM;
    return arm_wake(loop, op);
}

static void uring_abandon(void *state) {
    uring_state *s = state;
    if (!s)
        return;
    if (s->ring.ring_fd > 0 || s->ring.sq.ring_ptr)
        io_uring_queue_exit(&s->ring);
    /* The ring's teardown may finish asynchronously. On destroy the core gets
     * here only once every op had its final completion; after a fence, the
     * ring is DEFER_TASKRUN and its owner will never enter it again, so it
     * completes nothing more (kernel-facts.md): no kernel write is pending. */
#ifdef VIGIL_GUARD_BUFFERS
    vigil__mem_guard(s->br, s->br_len);
#else
    vigil__mem_unmap(s->br, s->br_len);
#endif
    for (uint32_t i = 0; i < s->reqs_cap; i++)
        free(s->reqs[i].mem);
    free(s->reqs);
    free(s->spare);
    free(s);
}

static void uring_fini(vigil_loop *loop) {
    uring_abandon(loop->be_state);
    loop->be_state = NULL;
}

/* A fenced ring's completions that its owner had not reaped yet: the CQ from
 * head to tail, read from this thread (plain memory; the owner will never
 * touch it again). With SINGLE_ISSUER the overflow list cannot be flushed
 * from here (only the owner may enter the ring): report it. */
static uint32_t uring_harvest(void *state, vigil__cqe *out, uint32_t max, bool *overflowed) {
    uring_state *s = state;
    if (IO_URING_READ_ONCE(*s->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW)
        *overflowed = true;
    struct io_uring_cqe *cqes[256];
    uint32_t n = io_uring_peek_batch_cqe(&s->ring, cqes, max < 256 ? max : 256);
    for (uint32_t i = 0; i < n; i++)
        cqe_take(s, cqes[i], &out[i]);
    io_uring_cq_advance(&s->ring, n);
    return n;
}

/* Tags the prepared sqe with op and records the request (how, and memory
 * the kernel reads until the final completion, freed then). Out of memory
 * the sqe becomes a no-op that completes nobody. */
static int queue_as(vigil_loop *loop, vigil__op *op, struct io_uring_sqe *sqe, uint8_t how, void *mem) {
    uint64_t tag = vigil__op_tag(loop, op);
    req *r = req_new(st(loop), tag, how);
    if (!r) {
        free(mem);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, VIGIL__TAG_IGNORE);
        return -ENOMEM;
    }
    r->mem = mem;
    io_uring_sqe_set_data64(sqe, tag);
    vigil__op_kernel_started(loop, op);
    return 0;
}

static int queue(vigil_loop *loop, vigil__op *op, struct io_uring_sqe *sqe) {
    return queue_as(loop, op, sqe, HOW_OTHER, NULL);
}

/* A connect the fenced ring had started: wait until the socket is writable
 * (the core then reads SO_ERROR). */
static int uring_resume_connect(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    struct io_uring_sqe *sqe = get_sqe(st(loop));
    if (!sqe)
        return -EBUSY;
    io_uring_prep_poll_add(sqe, fd, POLLOUT);
    return queue(loop, op, sqe);
}

/* One-shot readiness (the signalfd, a full UDP socket): the core does the rest. */
static int uring_poll(vigil_loop *loop, vigil__op *op, int fd, uint32_t events) {
    events &= VIGIL__POLL_IN | VIGIL__POLL_OUT;
    if (!events)
        return -EINVAL;
    struct io_uring_sqe *sqe = get_sqe(st(loop));
    if (!sqe)
        return -EBUSY;
    io_uring_prep_poll_add(sqe, fd, ((events & VIGIL__POLL_IN) ? POLLIN | POLLRDHUP : 0) |
                                        ((events & VIGIL__POLL_OUT) ? POLLOUT : 0));
    return queue_as(loop, op, sqe, (uint8_t)(HOW_POLL_IN - 1 + events), NULL);
}

_Static_assert(sizeof(vigil__msgout) == sizeof(struct io_uring_recvmsg_out), "the datagram head");

/* Datagrams: multishot recvmsg into the buffer ring (head, address, payload
 * in each buffer), or one-shot recvmsg with a ring buffer for the payload
 * and the address in the op's own msghdr. */
static int uring_recv_dgram(vigil_loop *loop, vigil__op *op, vigil_socket fd, void *one_shot) {
    uring_state *s = st(loop);
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe)
        return -EBUSY;
    uint8_t how = HOW_OTHER;
    if (s->multishot_recv) {
        s->udp_mh.msg_namelen = VIGIL__UDP_NAME_MAX;
        io_uring_prep_recvmsg_multishot(sqe, fd, &s->udp_mh, 0);
        how = HOW_DGRAM_MULTI;
    } else {
        io_uring_prep_recvmsg(sqe, fd, (struct msghdr *)one_shot, 0);
    }
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    return queue_as(loop, op, sqe, how, NULL);
}

static int uring_accept(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    uring_state *s = st(loop);
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe)
        return -EBUSY;
    if (s->multishot_accept)
        io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return queue_as(loop, op, sqe, s->multishot_accept ? HOW_ACCEPT_MULTI : HOW_OTHER, NULL);
}

static int uring_recv(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    uring_state *s = st(loop);
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe)
        return -EBUSY;
    if (s->multishot_recv)
        io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    else
        io_uring_prep_recv(sqe, fd, NULL, loop->env.opts->buf_size, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    return queue_as(loop, op, sqe, s->multishot_recv ? HOW_RECV_MULTI : HOW_OTHER, NULL);
}

typedef struct send_flight {
    struct msghdr msg;
    struct iovec iov[];
} send_flight;

static int uring_send(vigil_loop *loop, vigil__op *op, vigil_socket fd, const vigil__slice *sl, int n) {
    uring_state *s = st(loop);
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe)
        return -EBUSY;
    if (n == 1) {
        io_uring_prep_send(sqe, fd, sl[0].base, sl[0].len, MSG_NOSIGNAL);
        return queue(loop, op, sqe);
    }
    /* The msghdr must live until the completion (quirk h): the record's. */
    send_flight *f = malloc(sizeof(*f) + (size_t)n * sizeof(struct iovec));
    if (!f) {
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, VIGIL__TAG_IGNORE);
        return -ENOMEM;
    }
    memset(&f->msg, 0, sizeof(f->msg));
    for (int i = 0; i < n; i++) {
        f->iov[i].iov_base = (void *)sl[i].base;
        f->iov[i].iov_len = sl[i].len;
    }
    f->msg.msg_iov = f->iov;
    f->msg.msg_iovlen = (size_t)n;
    io_uring_prep_sendmsg(sqe, fd, &f->msg, MSG_NOSIGNAL);
    return queue_as(loop, op, sqe, HOW_OTHER, f);
}

static int uring_connect(vigil_loop *loop, vigil__op *op, vigil_socket fd, const void *addr,
                         uint32_t len) {
    struct io_uring_sqe *sqe = get_sqe(st(loop));
    if (!sqe)
        return -EBUSY;
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)addr, len);
    return queue(loop, op, sqe);
}

static int uring_close(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    struct io_uring_sqe *sqe = get_sqe(st(loop));
    if (!sqe)
        return -EBUSY;
    io_uring_prep_close(sqe, fd);
    return queue(loop, op, sqe);
}

static int uring_cancel(vigil_loop *loop, vigil__op *op) {
    struct io_uring_sqe *sqe = get_sqe(st(loop));
    if (!sqe)
        return -EBUSY;
    /* The target gets its own final completion (-ECANCELED, or its result if
     * it won the race); this request's completion carries no news. */
    io_uring_prep_cancel64(sqe, vigil__op_tag(loop, op), 0);
    io_uring_sqe_set_data64(sqe, VIGIL__TAG_IGNORE);
    return 0;
}

/* The stale-completion test hook: submitted at once, so that its completion
 * is already in the CQ if the loop is fenced right after (rebuild tests). */
static int uring_nop(vigil_loop *loop, uint64_t tag) {
    struct io_uring_sqe *sqe = get_sqe(st(loop));
    if (!sqe)
        return -EBUSY;
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, tag);
    int rc = io_uring_submit(&st(loop)->ring);
    return rc < 0 ? rc : 0;
}

/* A multishot variant the kernel does not know fails with -EINVAL at once:
 * drop to one-shot and let the core re-arm (quirk c). */
static bool multishot_rejected(vigil_loop *loop, uring_state *s, uint8_t how, const vigil__cqe *e) {
    if (e->res != -EINVAL || (e->flags & VIGIL__CQE_MORE))
        return false;
    if (how == HOW_ACCEPT_MULTI && s->multishot_accept) {
        s->multishot_accept = false;
        pthread_mutex_lock(loop->env.info_lock); /* vigil_loop_get_info reads it from anywhere */
        loop->env.info->features &= ~VIGIL_FEATURE_MULTISHOT_ACCEPT;
        pthread_mutex_unlock(loop->env.info_lock);
        return true;
    }
    if (how == HOW_RECV_MULTI && s->multishot_recv) {
        s->multishot_recv = false;
        pthread_mutex_lock(loop->env.info_lock);
        loop->env.info->features &= ~VIGIL_FEATURE_MULTISHOT_RECV;
        pthread_mutex_unlock(loop->env.info_lock);
        return true;
    }
    return false;
}

/* Leaves a standing timeout in the kernel for until (a vigil__clock_ns,
 * CLOCK_MONOTONIC as IORING_TIMEOUT_ABS counts) unless one that ends no
 * later is there already. One that ends sooner than needed only wakes the
 * loop early. False: the wait must pass its own timeout. */
static bool standing_timeout(uring_state *s, uint64_t until) {
    if (!s->tmo_ok || !until)
        return false;
    if (s->tmo_due && s->tmo_due <= until)
        return true;
    if (s->tmo_pending >= TMO_PENDING_MAX)
        return false;
    struct io_uring_sqe *sqe = get_sqe(s);
    if (!sqe)
        return false;
    s->tmo_ts.tv_sec = (long long)(until / 1000000000u);
    s->tmo_ts.tv_nsec = (long long)(until % 1000000000u);
    io_uring_prep_timeout(sqe, &s->tmo_ts, 0, IORING_TIMEOUT_ABS);
    io_uring_sqe_set_data64(sqe, TAG_TIMEOUT);
    s->tmo_pending++;
    s->tmo_due = until;
    return true;
}

/* A wait for wait_batch completions that settles for one after
 * wait_batch_us (Linux 6.12: the min_wait_usec of io_uring_getevents_arg,
 * which liburing 2.3 calls pad). With DEFER_TASKRUN the kernel then wakes
 * the thread once per batch, not once per completion. The batch counts
 * completions that come during the wait: the kernel counts all those in
 * the CQ, and the submit just before posts one for each send done at once
 * (nearly all of them), which would end the wait before anything had come
 * and take two passes for each batch (a load generator: 3 % more CPU a
 * request). */
static int batch_wait(uring_state *s, const vigil_loop_options *o, struct __kernel_timespec *ts) {
    int rc = io_uring_submit(&s->ring);
    if (rc < 0)
        return rc;
    unsigned want = io_uring_cq_ready(&s->ring) + o->wait_batch;
    if (want > *s->ring.cq.kring_entries)
        want = *s->ring.cq.kring_entries;
    struct io_uring_getevents_arg arg = {.sigmask_sz = _NSIG / 8, .pad = o->wait_batch_us,
                                         .ts = (uint64_t)(uintptr_t)ts};
    return io_uring_enter2((unsigned)s->ring.ring_fd, 0, want, /* -errno, as liburing's calls */
                           IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, (sigset_t *)&arg, sizeof(arg));
}

static int uring_wait(vigil_loop *loop, int64_t timeout_ns) {
    uring_state *s = st(loop);
    top_up(loop, s);
    publish_buffers(s);
    if (timeout_ns > 0 && standing_timeout(s, loop->env.wait_until_ns))
        timeout_ns = -1; /* the standing timeout ends the wait */
    int rc;
    vigil__wait_enter(loop);
    if (timeout_ns == 0) {
        rc = io_uring_submit_and_get_events(&s->ring);
    } else {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = timeout_ns / 1000000000,
                                       .tv_nsec = timeout_ns % 1000000000};
        if (s->min_wait && loop->env.opts->wait_batch)
            rc = batch_wait(s, loop->env.opts, timeout_ns < 0 ? NULL : &ts);
        else
            rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, timeout_ns < 0 ? NULL : &ts, NULL);
    }
    vigil__wait_leave(loop); /* out of the kernel: a fenced thread leaves here */
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
        return rc;
    int handled = 0;
    for (int round = 0; round < 8; round++) {
        if (IO_URING_READ_ONCE(*s->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW)
            vigil__stat_add(loop->env.cq_overflows, 1); /* peek flushes it (quirk e) */
        unsigned n = io_uring_peek_batch_cqe(&s->ring, s->cqes, 256);
        if (!n)
            break;
        /* Copy out and release the CQ slots first: the batch stays reachable
         * in loop memory while callbacks run. */
        for (unsigned i = 0; i < n; i++) {
            vigil__cqe *e = &loop->env.batch[i];
            if (multishot_rejected(loop, s, cqe_take(s, s->cqes[i], e), e))
                e->res = -EAGAIN; /* the core re-arms it as one-shot */
        }
        io_uring_cq_advance(&s->ring, n);
        loop->env.batch_len = n;
        for (loop->env.batch_pos = 0; loop->env.batch_pos < n; loop->env.batch_pos++)
            vigil__dispatch(loop, &loop->env.batch[loop->env.batch_pos]);
        loop->env.batch_len = 0;
        handled += (int)n;
        top_up(loop, s);
        publish_buffers(s);
        if (n < 256)
            break;
    }
    return handled;
}

/* The ring fd polls readable when completions wait for the owner (with
 * DEFER_TASKRUN: when task work waits), and not when the loop is idle. */
static int uring_poll_fd(vigil_loop *loop) { return st(loop)->ring.ring_fd; }

/* A freed buffer waits on the spare stack; the next top-up takes it first.
 * The stack has room for every buffer; a buffer freed twice (a core bug)
 * would overflow it, so past that it is dropped, not written out of bounds. */
static void uring_buf_recycle(vigil_loop *loop, uint32_t id) {
    uring_state *s = st(loop);
    if (s->nspare < loop->env.opts->buf_count)
        s->spare[s->nspare++] = (uint16_t)id;
}

const vigil__backend vigil__uring_backend = {
    .name = "io_uring",
    .id = VIGIL_BACKEND_URING,
    .caps = VIGIL__CAP_FILE_RING,
    .init = uring_init,
    .attach = uring_attach,
    .fini = uring_fini,
    .accept = uring_accept,
    .recv = uring_recv,
    .recv_dgram = uring_recv_dgram,
    .wake = arm_wake,
    .send = uring_send,
    .connect = uring_connect,
    .close = uring_close,
    .cancel = uring_cancel,
    .nop = uring_nop,
    .wait = uring_wait,
    .poll_fd = uring_poll_fd,
    .buf_recycle = uring_buf_recycle,
    .resume_connect = uring_resume_connect,
    .poll = uring_poll,
    .harvest = uring_harvest,
    .abandon = uring_abandon,
};
