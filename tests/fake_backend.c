/* fake_backend.c: see fake_backend.h. */
#include "fake_backend.h"

#include "core/loop.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct rec {
    fake_req r;
    uint8_t *bytes; /* a send's, all of them */
} rec;

typedef struct fake_state {
    struct fake_state *next; /* every live state of the process */
    vigil_loop *loop;
    int gen;                 /* the loop's how-manieth state */
    int evfd;                /* readable while completions are queued (poll_fd) */
    uint64_t wake_tag1;      /* the armed wake read's tag + 1; 0 = none */
    vigil__cqe *q;           /* queued completions: [q_pos, q_n) still to hand over */
    uint32_t q_pos, q_n, q_cap;
    rec *reqs;
    uint32_t n_reqs, cap_reqs;
    uint32_t *free_bufs;     /* stack of buffer ids the fake may receive into */
    uint32_t nfree;
    uint8_t *buf_base;
    uint32_t buf_size;
    bool have_last;          /* the last completion queued, for fake_duplicate_last */
    vigil__cqe last;
    uint8_t *last_bytes;     /* ... and the bytes of its buffer */
    size_t last_len;
} fake_state;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static fake_state *states;
static uint32_t batch_max = 256;
static bool auto_cancel = true;
static uint64_t harvested;
/* States made per loop (a rebuild abandons the old state before it makes the
 * new one); the entry goes with the loop (fini). */
static struct { vigil_loop *loop; int made; } made[64];

static int count_made(vigil_loop *loop) {
    int free_i = -1;
    for (int i = 0; i < 64; i++) {
        if (made[i].loop == loop)
            return ++made[i].made;
        if (!made[i].loop && free_i < 0)
            free_i = i;
    }
    if (free_i >= 0)
        made[free_i].loop = loop, made[free_i].made = 1;
    return 1;
}

static void forget_made(vigil_loop *loop) {
    for (int i = 0; i < 64; i++)
        if (made[i].loop == loop)
            made[i].loop = NULL;
}

/* ------------------------------------------------------- under the lock */

static void signal_queued(fake_state *s) {
    uint64_t one = 1;
    if (write(s->evfd, &one, sizeof(one)) < 0) {
        /* saturated: readable anyway */
    }
}

static void drain_evfd(fake_state *s) {
    uint64_t v;
    while (read(s->evfd, &v, sizeof(v)) > 0) {
    }
}

static rec *live_rec(fake_state *s, uint64_t tag) {
    for (uint32_t i = s->n_reqs; i-- > 0;)
        if (s->reqs[i].r.tag == tag && !s->reqs[i].r.done)
            return &s->reqs[i];
    return NULL;
}

static int push(fake_state *s, vigil__cqe c) {
    if (s->q_pos && s->q_pos == s->q_n)
        s->q_pos = s->q_n = 0;
    if (s->q_n == s->q_cap) {
        uint32_t cap = s->q_cap ? s->q_cap * 2 : 64;
        vigil__cqe *q = realloc(s->q, cap * sizeof(*q));
        if (!q)
            return -ENOMEM;
        s->q = q;
        s->q_cap = cap;
    }
    s->q[s->q_n++] = c;
    if (!(c.flags & VIGIL__CQE_MORE)) {
        rec *r = live_rec(s, c.tag);
        if (r)
            r->r.done = true;
    }
    s->have_last = true;
    s->last = c;
    signal_queued(s);
    return 0;
}

static rec *record(fake_state *s, uint64_t tag, int what, int fd) {
    if (s->n_reqs == s->cap_reqs) {
        uint32_t cap = s->cap_reqs ? s->cap_reqs * 2 : 64;
        rec *n = realloc(s->reqs, cap * sizeof(*n));
        if (!n)
            return NULL;
        s->reqs = n;
        s->cap_reqs = cap;
    }
    rec *r = &s->reqs[s->n_reqs];
    memset(r, 0, sizeof(*r));
    r->r.tag = tag;
    r->r.what = what;
    r->r.fd = fd;
    r->r.seq = s->n_reqs++;
    return r;
}

/* The loop's current state, or NULL. */
static fake_state *current(vigil_loop *loop) {
    fake_state *best = NULL;
    for (fake_state *s = states; s; s = s->next)
        if (s->loop == loop && (!best || s->gen > best->gen))
            best = s;
    return best;
}

/* Takes a free buffer and copies n bytes into it: its id, or -ENOBUFS. */
static int fill_buffer(fake_state *s, const void *p, size_t n) {
    if (n > s->buf_size)
        return -EMSGSIZE;
    if (!s->nfree)
        return -ENOBUFS;
    uint32_t id = s->free_bufs[--s->nfree];
    if (n)
        memcpy(s->buf_base + (size_t)id * s->buf_size, p, n);
    return (int)id;
}

/* ------------------------------------------------------------- the seam */

static fake_state *st(vigil_loop *loop) { return loop->be_state; }

static void fake_abandon(void *state);

static int fake_init(vigil_loop *loop) {
    fake_state *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->free_bufs = malloc(loop->env.opts->buf_count * sizeof(uint32_t));
    s->buf_base = loop->env.buf_base;
    s->buf_size = loop->env.opts->buf_size;
    if (s->evfd < 0 || !s->free_bufs) {
        if (s->evfd >= 0)
            close(s->evfd);
        free(s->free_bufs);
        free(s);
        return -ENOMEM;
    }
    /* low ids first; only those in the kernel's hands (after a rebuild some
     * hold bytes not delivered yet) */
    for (uint32_t i = loop->env.opts->buf_count; i-- > 0;)
        if (loop->env.buf_state[i] == VIGIL__BUF_KERNEL)
            s->free_bufs[s->nfree++] = i;
    pthread_mutex_lock(&lock);
    s->gen = count_made(loop);
    s->next = states;
    states = s;
    pthread_mutex_unlock(&lock);
    loop->be_state = s;
    loop->env.info->features = 0;
    loop->env.info->ring_entries = loop->env.info->cq_entries = 0;
    return 0;
}

static int fake_wake(vigil_loop *loop, vigil__op *op) {
    fake_state *s = st(loop);
    uint64_t tag = vigil__op_tag(loop, op);
    pthread_mutex_lock(&lock);
    rec *r = record(s, tag, FAKE_WAKE, loop->env.wake_fd);
    if (r)
        s->wake_tag1 = tag + 1;
    pthread_mutex_unlock(&lock);
    if (!r)
        return -ENOMEM;
    vigil__op_kernel_started(loop, op);
    return 0;
}

static int fake_attach(vigil_loop *loop) {
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_WAKE);
    if (!op)
        return -ENOMEM;
    return fake_wake(loop, op);
}

/* Unlinks the state; frees it. Any thread. */
static void fake_abandon(void *state) {
    fake_state *s = state;
    if (!s)
        return;
    pthread_mutex_lock(&lock);
    for (fake_state **pp = &states; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pthread_mutex_unlock(&lock);
    for (uint32_t i = 0; i < s->n_reqs; i++)
        free(s->reqs[i].bytes);
    free(s->reqs);
    free(s->q);
    free(s->free_bufs);
    free(s->last_bytes);
    close(s->evfd);
    free(s);
}

static void fake_fini(vigil_loop *loop) {
    pthread_mutex_lock(&lock);
    forget_made(loop);
    pthread_mutex_unlock(&lock);
    fake_abandon(loop->be_state);
    loop->be_state = NULL;
}

/* Records a request the script answers; its op is in the kernel from now. */
static int plain_request(vigil_loop *loop, vigil__op *op, int what, int fd) {
    fake_state *s = st(loop);
    pthread_mutex_lock(&lock);
    rec *r = record(s, vigil__op_tag(loop, op), what, fd);
    pthread_mutex_unlock(&lock);
    if (!r)
        return -ENOMEM;
    vigil__op_kernel_started(loop, op);
    return 0;
}

static int fake_accept(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    return plain_request(loop, op, FAKE_ACCEPT, fd);
}

static int fake_recv(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    return plain_request(loop, op, FAKE_RECV, fd);
}

static int fake_recv_dgram(vigil_loop *loop, vigil__op *op, vigil_socket fd, void *one_shot) {
    return plain_request(loop, op, FAKE_RECV_DGRAM, fd);
}

static int fake_connect(vigil_loop *loop, vigil__op *op, vigil_socket fd, const void *addr, uint32_t len) {
    return plain_request(loop, op, FAKE_CONNECT, fd);
}

static int fake_resume_connect(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    return plain_request(loop, op, FAKE_RESUME_CONNECT, fd);
}

static int fake_poll(vigil_loop *loop, vigil__op *op, vigil_socket fd, uint32_t events) {
    return plain_request(loop, op, FAKE_POLL, fd);
}

/* The slices live on the caller's stack: copied. */
static int fake_send(vigil_loop *loop, vigil__op *op, vigil_socket fd, const vigil__slice *sl, int n) {
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += sl[i].len;
    uint8_t *bytes = malloc(len ? len : 1);
    if (!bytes)
        return -ENOMEM;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        memcpy(bytes + at, sl[i].base, sl[i].len);
        at += sl[i].len;
    }
    fake_state *s = st(loop);
    pthread_mutex_lock(&lock);
    rec *r = record(s, vigil__op_tag(loop, op), FAKE_SEND, fd);
    if (r) {
        r->bytes = bytes;
        r->r.len = (uint32_t)len;
        r->r.slices = n;
        memcpy(r->r.data, bytes, len < FAKE_DATA_MAX ? len : FAKE_DATA_MAX);
    }
    pthread_mutex_unlock(&lock);
    if (!r) {
        free(bytes);
        return -ENOMEM;
    }
    vigil__op_kernel_started(loop, op);
    return 0;
}

/* The core closes nothing itself once it asked: the fd goes now. */
static int fake_close(vigil_loop *loop, vigil__op *op, vigil_socket fd) {
    fake_state *s = st(loop);
    uint64_t tag = vigil__op_tag(loop, op);
    int res = close(fd) < 0 && errno != EINTR ? -errno : 0;
    pthread_mutex_lock(&lock);
    rec *r = record(s, tag, FAKE_CLOSE, fd);
    int rc = r ? push(s, (vigil__cqe){tag, res, 0}) : -ENOMEM;
    pthread_mutex_unlock(&lock);
    if (rc == 0)
        vigil__op_kernel_started(loop, op);
    return rc;
}

static int fake_cancel(vigil_loop *loop, vigil__op *op) {
    fake_state *s = st(loop);
    uint64_t tag = vigil__op_tag(loop, op);
    int rc = 0;
    pthread_mutex_lock(&lock);
    rec *c = record(s, VIGIL__TAG_IGNORE, FAKE_CANCEL, -1);
    if (c) {
        c->r.target = tag;
        c->r.done = true; /* a cancel's own completion carries no news */
    }
    rec *r = live_rec(s, tag);
    bool wake = s->wake_tag1 == tag + 1;
    if (wake)
        s->wake_tag1 = 0;
    if (r && (auto_cancel || wake) && r->r.what != FAKE_CLOSE)
        rc = push(s, (vigil__cqe){tag, -ECANCELED, 0});
    pthread_mutex_unlock(&lock);
    return rc;
}

static int fake_nop(vigil_loop *loop, uint64_t tag) {
    fake_state *s = st(loop);
    pthread_mutex_lock(&lock);
    int rc = push(s, (vigil__cqe){tag, 0, 0});
    pthread_mutex_unlock(&lock);
    return rc;
}

/* Hands over what is queued, at most batch_max; with nothing queued it
 * sleeps in poll() on its own eventfd (the script queued something) and the
 * loop's wake fd, up to the timeout. Never sleeps with something queued. */
static int fake_wait(vigil_loop *loop, int64_t timeout_ns) {
    fake_state *s = st(loop);
    pthread_mutex_lock(&lock);
    bool queued = s->q_pos < s->q_n;
    bool wake_armed = s->wake_tag1 != 0;
    pthread_mutex_unlock(&lock);
    if (!queued && timeout_ns != 0) {
        struct pollfd p[2] = {{.fd = s->evfd, .events = POLLIN},
                              {.fd = wake_armed ? loop->env.wake_fd : -1, .events = POLLIN}};
        int ms = timeout_ns < 0 ? -1 : (int)((timeout_ns + 999999) / 1000000);
        vigil__wait_enter(loop);
        int rc = poll(p, 2, ms);
        vigil__wait_leave(loop);
        if (rc < 0 && errno != EINTR)
            return -errno;
    }
    pthread_mutex_lock(&lock);
    if (s->wake_tag1) { /* the wake read, as epoll.c does it: one-shot, re-armed by the core */
        uint64_t v;
        ssize_t r = read(loop->env.wake_fd, &v, sizeof(v));
        if (r > 0) {
            uint64_t tag = s->wake_tag1 - 1;
            s->wake_tag1 = 0;
            push(s, (vigil__cqe){tag, (int32_t)r, 0});
        }
    }
    uint32_t n = s->q_n - s->q_pos;
    if (n > batch_max)
        n = batch_max;
    if (n > 256)
        n = 256;
    /* Into loop memory, as io_uring's wait copies its CQ out: a fence in a
     * callback leaves the rest of the batch to the rebuild (rebuild.c). */
    memcpy(loop->env.batch, s->q + s->q_pos, n * sizeof(vigil__cqe));
    s->q_pos += n;
    if (s->q_pos == s->q_n) {
        s->q_pos = s->q_n = 0;
        drain_evfd(s);
    }
    pthread_mutex_unlock(&lock);
    loop->env.batch_len = n;
    for (loop->env.batch_pos = 0; loop->env.batch_pos < n; loop->env.batch_pos++)
        vigil__dispatch(loop, &loop->env.batch[loop->env.batch_pos]);
    loop->env.batch_len = 0;
    return (int)n;
}

static int fake_poll_fd(vigil_loop *loop) { return st(loop)->evfd; }

static void fake_buf_recycle(vigil_loop *loop, uint32_t id) {
    fake_state *s = st(loop);
    pthread_mutex_lock(&lock);
    s->free_bufs[s->nfree++] = id;
    pthread_mutex_unlock(&lock);
}

/* What a fenced state still queued, oldest first; taken out of its queue. */
static uint32_t fake_harvest(void *state, vigil__cqe *out, uint32_t max, bool *overflowed) {
    fake_state *s = state;
    pthread_mutex_lock(&lock);
    uint32_t n = s->q_n - s->q_pos;
    if (n > max)
        n = max;
    memcpy(out, s->q + s->q_pos, n * sizeof(*out));
    s->q_pos += n;
    harvested += n;
    pthread_mutex_unlock(&lock);
    return n;
}

const vigil__backend fake_backend = {
    .name = "fake",
    .id = 0,
    .caps = VIGIL__CAP_FALLBACK, /* a rebuild stays on the fake */
    .init = fake_init,
    .attach = fake_attach,
    .fini = fake_fini,
    .accept = fake_accept,
    .recv = fake_recv,
    .recv_dgram = fake_recv_dgram,
    .wake = fake_wake,
    .send = fake_send,
    .connect = fake_connect,
    .close = fake_close,
    .cancel = fake_cancel,
    .nop = fake_nop,
    .wait = fake_wait,
    .poll_fd = fake_poll_fd,
    .buf_recycle = fake_buf_recycle,
    .resume_connect = fake_resume_connect,
    .poll = fake_poll,
    .harvest = fake_harvest,
    .abandon = fake_abandon,
};

/* ------------------------------------------------------------ the script */

void fake_use(void) { vigil__debug_force_backend(&fake_backend); }

int fake_requests(vigil_loop *loop, fake_req *out, int max) {
    pthread_mutex_lock(&lock);
    fake_state *s = current(loop);
    int n = s ? (int)s->n_reqs : 0;
    for (int i = 0; i < n && i < max; i++)
        out[i] = s->reqs[i].r;
    pthread_mutex_unlock(&lock);
    return n;
}

bool fake_live(vigil_loop *loop, int what, int fd, fake_req *out) {
    bool found = false;
    pthread_mutex_lock(&lock);
    fake_state *s = current(loop);
    for (uint32_t i = s ? s->n_reqs : 0; i-- > 0;) {
        fake_req *r = &s->reqs[i].r;
        if (r->what == what && (fd < 0 || r->fd == fd) && !r->done) {
            if (out)
                *out = *r;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return found;
}

int fake_count(vigil_loop *loop, int what) {
    int n = 0;
    pthread_mutex_lock(&lock);
    fake_state *s = current(loop);
    for (uint32_t i = 0; s && i < s->n_reqs; i++)
        n += s->reqs[i].r.what == what;
    pthread_mutex_unlock(&lock);
    return n;
}

int fake_complete(vigil_loop *loop, uint64_t tag, int32_t res, uint32_t flags) {
    pthread_mutex_lock(&lock);
    fake_state *s = current(loop);
    int rc = s ? push(s, (vigil__cqe){tag, res, flags}) : -ENODEV;
    if (rc == 0 && s->last_bytes) {
        free(s->last_bytes);
        s->last_bytes = NULL;
        s->last_len = 0;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int fake_recv_bytes(vigil_loop *loop, uint64_t tag, const void *p, size_t n, bool more) {
    pthread_mutex_lock(&lock);
    fake_state *s = current(loop);
    int id = s ? fill_buffer(s, p, n) : -ENODEV;
    uint8_t *copy = id >= 0 ? malloc(n ? n : 1) : NULL;
    if (id >= 0 && !copy) {
        s->free_bufs[s->nfree++] = (uint32_t)id;
        id = -ENOMEM;
    }
    if (id >= 0) {
        if (n)
            memcpy(copy, p, n);
        uint32_t flags = VIGIL__CQE_BUF | ((uint32_t)id << 16) | (more ? VIGIL__CQE_MORE : 0);
        int rc = push(s, (vigil__cqe){tag, (int32_t)n, flags});
        if (rc < 0) {
            s->free_bufs[s->nfree++] = (uint32_t)id;
            free(copy);
            id = rc;
        } else {
            free(s->last_bytes);
            s->last_bytes = copy;
            s->last_len = n;
        }
    }
    pthread_mutex_unlock(&lock);
    return id;
}

int fake_duplicate_last(vigil_loop *loop) {
    pthread_mutex_lock(&lock);
    fake_state *s = current(loop);
    int rc = s && s->have_last ? 0 : -ENOENT;
    vigil__cqe c = rc == 0 ? s->last : (vigil__cqe){0};
    if (rc == 0 && (c.flags & VIGIL__CQE_BUF)) {
        int id = fill_buffer(s, s->last_bytes, s->last_len);
        if (id < 0)
            rc = id;
        else
            c.flags = (c.flags & 0xFFFFu) | ((uint32_t)id << 16);
    }
    if (rc == 0)
        rc = push(s, c);
    pthread_mutex_unlock(&lock);
    return rc;
}

uint64_t fake_stale_tag(uint64_t tag) {
    uint32_t gen = (fake_tag_gen(tag) - 1) & 0xFFFFFFu;
    return (tag & ~(0xFFFFFFull << 32)) | ((uint64_t)gen << 32);
}

void fake_set_batch(uint32_t n) {
    pthread_mutex_lock(&lock);
    batch_max = n < 1 ? 1 : n > 256 ? 256 : n;
    pthread_mutex_unlock(&lock);
}

void fake_set_auto_cancel(bool on) {
    pthread_mutex_lock(&lock);
    auto_cancel = on;
    pthread_mutex_unlock(&lock);
}

/* What the script reads of the loop's current state (zeros: none). */
typedef struct snapshot { uint32_t queued, nfree; int gen; } snapshot;

static snapshot snap(vigil_loop *loop) {
    pthread_mutex_lock(&lock);
    fake_state *s = current(loop);
    snapshot x = s ? (snapshot){s->q_n - s->q_pos, s->nfree, s->gen} : (snapshot){0};
    pthread_mutex_unlock(&lock);
    return x;
}

uint32_t fake_queued(vigil_loop *loop) { return snap(loop).queued; }
uint32_t fake_free_bufs(vigil_loop *loop) { return snap(loop).nfree; }
int fake_states(vigil_loop *loop) { return snap(loop).gen; }

uint64_t fake_harvested(void) {
    pthread_mutex_lock(&lock);
    uint64_t n = harvested;
    pthread_mutex_unlock(&lock);
    return n;
}
