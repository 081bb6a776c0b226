/* test_fake.c: the backend seam, proved with a scripted backend
 * (tests/fake_backend.h) that delivers completions reordered, duplicated,
 * late and stale, in an order the test writes down, so that every run is
 * the same run: the core's ordering, its stale-completion rule (op.h) and a
 * rebuild's carry-over (rebuild.c) are checked here without a kernel in
 * the way. Connections are real sockets (one end of a socketpair, adopted),
 * which the fake never reads or writes: the core's own calls on them
 * (shutdown, close) still work.
 *
 * Every loop here runs on the fake, whatever VIGIL_TEST_BACKEND says (the
 * suite is the same on every backend run of ./run). */
#include "fake_backend.h"
#include "util.h"
#include "vt.h"

#include "core/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFS 16   /* a small pool: a buffer that goes missing shows */
#define BUF_SIZE 256

/* ------------------------------------------------------------- helpers */

static vigil_loop *fake_loop(uint32_t flags) {
    fake_use();
    vigil_loop_options o = {.flags = flags, .buf_count = BUFS, .buf_size = BUF_SIZE};
    vigil_loop *loop = NULL;
    VT_OK(vigil_loop_create(&loop, &o));
    vigil_loop_info info;
    VT_OK(vigil_loop_get_info(loop, &info));
    VT_ASSERT(!strcmp(info.backend, "fake"), "backend %s (%s)", info.backend, info.reason);
    return loop;
}

/* A connection on one end of a socketpair; *peer: the other end. */
static vigil_conn pair(vigil_loop *loop, int *peer) {
    int sv[2];
    VT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    vigil_conn c;
    VT_OK(vigil_conn_adopt(loop, sv[0], &c));
    *peer = sv[1];
    return c;
}

static int fd_of(vigil_loop *loop, vigil_conn c) { return (int)vigil_conn_get_socket(loop, c); }

/* The receive request the fake holds for c now. */
static fake_req live(vigil_loop *loop, int what, vigil_conn c) {
    fake_req r;
    VT_ASSERT(fake_live(loop, what, fd_of(loop, c), &r), "no live request (%d) on fd %d", what,
              fd_of(loop, c));
    return r;
}

/* Runs the loop without sleeping until the fake has handed everything over
 * (and once more, for what the callbacks queued on the later list). */
static void pump(vigil_loop *loop) {
    int i = 0;
    do {
        VT_OK(vigil_loop_run(loop, VIGIL_RUN_NOWAIT, 0));
        VT_ASSERT(++i < 10000, "the fake's queue never empties");
    } while (fake_queued(loop));
    VT_OK(vigil_loop_run(loop, VIGIL_RUN_NOWAIT, 0));
}

static uint64_t stale(vigil_loop *loop) {
    vigil_loop_stats ls;
    VT_OK(vigil_loop_get_stats(loop, &ls));
    return ls.stale_completions;
}

/* The buffer pool as three parties count it: the core's count of buffers
 * free for the kernel, the buffers in that state, and the fake's free list
 * (with nothing queued, the three agree, and all are back). */
static void pool_is_whole(vigil_loop *loop) {
    uint32_t kernel = 0;
    for (uint32_t i = 0; i < BUFS; i++)
        kernel += loop->buf_state[i] == VIGIL__BUF_KERNEL;
    VT_EQ(kernel, BUFS);
    VT_EQ(fake_free_bufs(loop), BUFS);
    VT_EQ(loop->bufs_free, BUFS);
}

/* What the callbacks saw, in order: "A:abc|" a receive of conn A, "A=0|"
 * its final status, "S1=5|" a send callback. */
static char seen[4096];
static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
    size_t len = strlen(seen);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(seen + len, sizeof(seen) - len, fmt, ap);
    va_end(ap);
}
#define SEEN(want) VT_ASSERT(!strcmp(seen, want), "callbacks saw \"%s\", want \"%s\"", seen, want)

static void on_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    if (status > 0)
        note("%s:%.*s|", (const char *)ud, (int)b->len, (const char *)b->data);
    else
        note("%s=%d|", (const char *)ud, status);
}

static void on_sent(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    note("%s=%d|", (const char *)ud, status);
}

static void on_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    note("%s closed=%d|", (const char *)ud, status);
}

/* ------------------------------------------------------------ ordering */

/* Completions of two connections, interleaved as the script says and
 * handed over three per wait: every receive callback comes in exactly that
 * order, with its bytes. */
VT_TEST(fake, receives_follow_the_scripted_order, 20) {
    seen[0] = 0;
    vigil_loop *loop = fake_loop(0);
    int pa, pb;
    vigil_conn a = pair(loop, &pa), b = pair(loop, &pb);
    VT_OK(vigil_conn_recv_start(loop, a, 0, on_recv, "A", NULL));
    VT_OK(vigil_conn_recv_start(loop, b, 0, on_recv, "B", NULL));
    uint64_t ta = live(loop, FAKE_RECV, a).tag, tb = live(loop, FAKE_RECV, b).tag;
    VT_ASSERT(ta != tb);
    fake_set_batch(3);
    VT_OK(fake_recv_bytes(loop, ta, "a1", 2, true));
    VT_OK(fake_recv_bytes(loop, tb, "b1", 2, true));
    VT_OK(fake_recv_bytes(loop, tb, "b22", 3, true));
    VT_OK(fake_recv_bytes(loop, ta, "a2", 2, true));
    VT_OK(fake_recv_bytes(loop, ta, "a333", 4, true));
    VT_OK(fake_recv_bytes(loop, tb, "b3", 2, true));
    VT_OK(fake_complete(loop, tb, 0, 0)); /* B's peer closed */
    VT_OK(fake_recv_bytes(loop, ta, "a4", 2, true));
    VT_EQ(fake_queued(loop), 8);
    pump(loop);
    SEEN("A:a1|B:b1|B:b22|A:a2|A:a333|B:b3|B=0|A:a4|");
    VT_ASSERT(fake_live(loop, FAKE_RECV, fd_of(loop, a), NULL), "A's receive goes on");
    VT_ASSERT(!fake_live(loop, FAKE_RECV, fd_of(loop, b), NULL), "B's receive ended");
    VT_EQ(stale(loop), 0);
    pool_is_whole(loop);
    VT_OK(vigil_loop_destroy(loop));
    close(pa);
    close(pb);
}

/* Three messages, confirmed in pieces that do not follow their borders:
 * each request asks for exactly what is left, and each send callback comes
 * once, in order, right after its last byte was confirmed. */
VT_TEST(fake, sends_confirmed_in_pieces_report_in_order, 20) {
    seen[0] = 0;
    vigil_loop *loop = fake_loop(0);
    int p;
    vigil_conn c = pair(loop, &p);
    VT_OK(vigil_conn_send(loop, c, "hello", 5, 0, on_sent, "S1", NULL));
    VT_OK(vigil_conn_send(loop, c, "world!", 6, 0, on_sent, "S2", NULL));
    VT_OK(vigil_conn_send(loop, c, "xyz12", 5, 0, on_sent, "S3", NULL));
    VT_EQ(vigil_conn_send_queued(loop, c), 16);
    VT_EQ(fake_count(loop, FAKE_SEND), 1); /* one send in flight per connection */

    static const struct step {
        const char *asks; /* what the request in flight asks to send */
        int slices;
        int32_t confirm;  /* what the fake confirms of it */
        const char *then; /* callbacks seen afterwards */
        int64_t queued;
    } steps[] = {
        {"hello", 1, 2, "", 14},
        {"lloworld!xyz12", 3, 3, "S1=5|", 11},
        {"world!xyz12", 2, 7, "S1=5|S2=6|", 4},
        {"yz12", 1, 2, "S1=5|S2=6|", 2},
        {"12", 1, 2, "S1=5|S2=6|S3=5|", 0},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        const struct step *s = &steps[i];
        fake_req r = live(loop, FAKE_SEND, c);
        VT_EQ(r.len, strlen(s->asks));
        VT_ASSERT(!memcmp(r.data, s->asks, r.len), "step %zu asks \"%.*s\", want \"%s\"", i, (int)r.len,
                  (const char *)r.data, s->asks);
        VT_EQ(r.slices, s->slices);
        VT_OK(fake_complete(loop, r.tag, s->confirm, 0));
        pump(loop);
        SEEN(s->then);
        VT_EQ(vigil_conn_send_queued(loop, c), s->queued);
    }
    VT_ASSERT(!fake_live(loop, FAKE_SEND, fd_of(loop, c), NULL), "nothing left to send");
    VT_EQ(fake_count(loop, FAKE_SEND), 5);
    VT_EQ(stale(loop), 0);
    VT_OK(vigil_loop_destroy(loop));
    close(p);
}

/* Each message received is answered with a head and a body, as a server
 * answers a request. */
static void recv_answer(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    if (status <= 0)
        return;
    VT_OK(vigil_conn_send(loop, c, "head:", 5, 0, on_sent, "H", NULL));
    VT_OK(vigil_conn_send(loop, c, b->data, b->len, 0, on_sent, "B", NULL));
}

/* What the callbacks of one pass queue on a connection leaves in one
 * vectored send, started before the wait: here two answers of two messages
 * each (four slices, one request); what they queue while it is in flight
 * follows it in the next. Outside the loop's run a send starts at once. */
VT_TEST(fake, what_a_pass_queues_leaves_in_one_send, 20) {
    seen[0] = 0;
    vigil_loop *loop = fake_loop(0);
    int p;
    vigil_conn c = pair(loop, &p);
    VT_OK(vigil_conn_recv_start(loop, c, 0, recv_answer, NULL, NULL));
    uint64_t rt = live(loop, FAKE_RECV, c).tag;
    VT_OK(fake_recv_bytes(loop, rt, "one", 3, true));
    VT_OK(fake_recv_bytes(loop, rt, "two", 3, true));
    pump(loop);
    VT_EQ(fake_count(loop, FAKE_SEND), 1);
    fake_req r = live(loop, FAKE_SEND, c);
    VT_EQ(r.slices, 4);
    VT_EQ(r.len, 16);
    VT_ASSERT(!memcmp(r.data, "head:onehead:two", 16), "the send asks for \"%.*s\"", (int)r.len,
              (const char *)r.data);

    /* answers queued while that send is in flight go together after it */
    VT_OK(fake_recv_bytes(loop, rt, "3", 1, true));
    VT_OK(fake_recv_bytes(loop, rt, "4", 1, true));
    pump(loop);
    VT_EQ(fake_count(loop, FAKE_SEND), 1);
    VT_OK(fake_complete(loop, r.tag, 16, 0));
    pump(loop);
    SEEN("H=5|B=3|H=5|B=3|");
    VT_EQ(fake_count(loop, FAKE_SEND), 2);
    r = live(loop, FAKE_SEND, c);
    VT_EQ(r.slices, 4);
    VT_ASSERT(r.len == 12 && !memcmp(r.data, "head:3head:4", 12), "the send asks for \"%.*s\"",
              (int)r.len, (const char *)r.data);
    VT_OK(fake_complete(loop, r.tag, 12, 0));
    pump(loop);
    SEEN("H=5|B=3|H=5|B=3|H=5|B=1|H=5|B=1|");

    /* outside the run: at once */
    VT_OK(vigil_conn_send(loop, c, "now", 3, 0, on_sent, "N", NULL));
    VT_EQ(fake_count(loop, FAKE_SEND), 3);
    VT_OK(fake_complete(loop, live(loop, FAKE_SEND, c).tag, 3, 0));
    pump(loop);
    VT_EQ(vigil_conn_send_queued(loop, c), 0);
    VT_EQ(stale(loop), 0);
    VT_OK(vigil_loop_destroy(loop));
    close(p);
}

/* ---------------------------------------------------------- duplicated */

/* A final completion delivered twice: one callback, the duplicate counted
 * as stale, and the buffer it names goes back to the pool. */
VT_TEST(fake, duplicated_finals_reach_nobody, 20) {
    seen[0] = 0;
    vigil_loop *loop = fake_loop(0);
    int pa, pb;
    vigil_conn a = pair(loop, &pa), b = pair(loop, &pb);

    /* a receive's end of stream, which used a buffer (io_uring may post one) */
    VT_OK(vigil_conn_recv_start(loop, a, 0, on_recv, "A", NULL));
    uint64_t ta = live(loop, FAKE_RECV, a).tag;
    VT_OK(fake_recv_bytes(loop, ta, "abc", 3, true));
    VT_OK(fake_recv_bytes(loop, ta, NULL, 0, false));
    VT_OK(fake_duplicate_last(loop)); /* in another buffer, as a kernel would post it */
    VT_EQ(fake_free_bufs(loop), BUFS - 3);
    pump(loop);
    SEEN("A:abc|A=0|");
    VT_EQ(stale(loop), 1);
    pool_is_whole(loop);

    /* a send's last confirmation */
    seen[0] = 0;
    VT_OK(vigil_conn_send(loop, a, "ping", 4, 0, on_sent, "S", NULL));
    VT_OK(fake_complete(loop, live(loop, FAKE_SEND, a).tag, 4, 0));
    VT_OK(fake_duplicate_last(loop));
    pump(loop);
    SEEN("S=4|");
    VT_EQ(stale(loop), 2);
    VT_EQ(vigil_conn_send_queued(loop, a), 0);

    /* a cancel's -ECANCELED */
    seen[0] = 0;
    vigil_op op;
    VT_OK(vigil_conn_recv_start(loop, b, 0, on_recv, "B", &op));
    VT_OK(vigil_op_cancel(loop, op));
    VT_EQ(fake_queued(loop), 1); /* the fake answered the cancel */
    VT_OK(fake_duplicate_last(loop));
    pump(loop);
    SEEN("B=-125|");
    VT_EQ(stale(loop), 3);
    pool_is_whole(loop);
    VT_OK(vigil_loop_destroy(loop));
    close(pa);
    close(pb);
}

/* ---------------------------------------------------------------- late */

/* A receive is cancelled; its -ECANCELED comes, then data the kernel had
 * for it all the same: the late completions are stale, no callback comes
 * after the final one, and their buffers go back. */
VT_TEST(fake, late_data_after_a_cancel_is_stale, 20) {
    seen[0] = 0;
    vigil_loop *loop = fake_loop(0);
    int p;
    vigil_conn c = pair(loop, &p);
    vigil_op op;
    VT_OK(vigil_conn_recv_start(loop, c, 0, on_recv, "A", &op));
    uint64_t tag = live(loop, FAKE_RECV, c).tag;
    VT_OK(fake_recv_bytes(loop, tag, "one", 3, true));
    pump(loop);
    SEEN("A:one|");
    VT_OK(vigil_op_cancel(loop, op));
    fake_req r[64];
    int n = fake_requests(loop, r, 64);
    VT_ASSERT(n > 0 && r[n - 1].what == FAKE_CANCEL && r[n - 1].target == tag, "the cancel names the receive");
    VT_EQ(fake_queued(loop), 1); /* its -ECANCELED */
    VT_OK(fake_recv_bytes(loop, tag, "late", 4, true));
    VT_OK(fake_recv_bytes(loop, tag, "later", 5, false));
    pump(loop);
    SEEN("A:one|A=-125|");
    VT_EQ(stale(loop), 2);
    pool_is_whole(loop);
    VT_EQ(vigil_op_cancel(loop, op), -EBADF); /* the handle is gone with its op */
    VT_OK(vigil_loop_destroy(loop));
    close(p);
}

/* Closed from a receive callback while more data for it waits behind in
 * the same batch, ahead of the cancel's -ECANCELED (an io_uring multishot
 * receive posts what it got before the cancel took hold): no data callback
 * after vigil_conn_close (vigil.h), the bytes' buffers go back, and the close
 * completes. */
static void close_on_first(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    on_recv(loop, c, status, b, ud);
    if (status > 0 && !strcmp(seen, "A:x1|"))
        VT_OK(vigil_conn_close(loop, c, 1000, on_closed, "A"));
}

VT_TEST(fake, no_data_callback_after_close, 20) {
    seen[0] = 0;
    vigil_loop *loop = fake_loop(0);
    int p;
    vigil_conn c = pair(loop, &p);
    int fd = fd_of(loop, c);
    VT_OK(vigil_conn_recv_start(loop, c, 0, close_on_first, "A", NULL));
    uint64_t tag = live(loop, FAKE_RECV, c).tag;
    VT_OK(fake_recv_bytes(loop, tag, "x1", 2, true));
    VT_OK(fake_recv_bytes(loop, tag, "x2", 2, true));
    VT_OK(fake_recv_bytes(loop, tag, "x3", 2, true));
    pump(loop);
    SEEN("A:x1|A=-125|");
    /* the close's lingering read (FIN sent, reading until the peer's): the
     * peer closes */
    fake_req drain;
    VT_ASSERT(fake_live(loop, FAKE_RECV, fd, &drain), "the close reads until the peer's FIN");
    VT_ASSERT(drain.tag != tag);
    VT_OK(fake_complete(loop, drain.tag, 0, 0));
    pump(loop);
    SEEN("A:x1|A=-125|A closed=0|");
    VT_EQ(fake_count(loop, FAKE_CLOSE), 1);
    VT_EQ(stale(loop), 0);
    pool_is_whole(loop);
    VT_OK(vigil_loop_destroy(loop));
    close(p);
}

/* --------------------------------------------------------------- stale */

/* A completion whose tag names a slot whose generation moved on (its op
 * ended, the slot went to a new op): dropped and counted, its buffer goes
 * back, and the new op in that slot is untouched. */
VT_TEST(fake, stale_tag_of_a_reused_slot_is_dropped, 20) {
    seen[0] = 0;
    vigil_loop *loop = fake_loop(0);
    int p;
    vigil_conn c = pair(loop, &p);
    VT_OK(vigil_conn_recv_start(loop, c, 0, on_recv, "A", NULL));
    uint64_t old = live(loop, FAKE_RECV, c).tag;
    VT_OK(fake_complete(loop, old, 0, 0)); /* end of stream: the op ends */
    pump(loop);
    SEEN("A=0|");

    vigil_op h;
    VT_OK(vigil_conn_recv_start(loop, c, 0, on_recv, "B", &h));
    uint64_t now = live(loop, FAKE_RECV, c).tag;
    VT_EQ(fake_tag_slot(now), fake_tag_slot(old)); /* the slot went to the new op */
    VT_ASSERT(fake_tag_gen(now) != fake_tag_gen(old), "a new generation");

    VT_OK(fake_recv_bytes(loop, old, "old", 3, true));
    VT_OK(fake_complete(loop, old, 0, 0));
    VT_OK(fake_recv_bytes(loop, fake_stale_tag(now), "older", 5, false));
    VT_OK(fake_recv_bytes(loop, now, "new", 3, true));
    pump(loop);
    SEEN("A=0|B:new|");
    VT_EQ(stale(loop), 3);
    /* the new op is as it was: waiting in the kernel, its request live */
    vigil__op *op = vigil__op_from_handle(loop, h);
    VT_ASSERT(op && (op->flags & VIGIL__OPF_KERNEL) && !(op->flags & VIGIL__OPF_USER_DONE),
              "the new receive is untouched");
    VT_ASSERT(fake_live(loop, FAKE_RECV, fd_of(loop, c), NULL));
    pool_is_whole(loop);

    /* the core's own stale hook goes through the seam as a no-op */
    VT_OK(vigil__debug_stale_completion(loop));
    pump(loop);
    VT_EQ(stale(loop), 4);
    VT_OK(fake_recv_bytes(loop, now, "still", 5, true));
    pump(loop);
    SEEN("A=0|B:new|B:still|");
    pool_is_whole(loop);
    VT_OK(vigil_loop_destroy(loop));
    close(p);
}

/* ------------------------------------------------------------- rebuild */

/* A supervised loop is fenced in a receive callback while the fake still
 * holds completions it has not handed over: the rest of the batch being
 * dispatched (in loop memory) and its queue (harvested), data and a send's
 * partial confirmation among them. After the rebuild, on a fresh fake state:
 * every byte arrives exactly once and in order, the receive is issued again
 * on the new state (where the script answers it), the send asks for exactly
 * the bytes not confirmed yet, and a completion of the old state's tag is
 * stale. */
#define CHUNK 64
#define CHUNKS_BEFORE 10 /* queued before the fence */
#define CHUNKS_AFTER 3   /* on the new state's receive */

typedef struct rb_app {
    pthread_mutex_t mu;
    uint8_t got[(CHUNKS_BEFORE + CHUNKS_AFTER) * CHUNK];
    size_t len;
    int callbacks, finals, sends, send_status;
    _Atomic int fenced;
} rb_app;

static void rb_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    rb_app *a = ud;
    pthread_mutex_lock(&a->mu);
    if (status > 0 && a->len + b->len <= sizeof(a->got)) {
        memcpy(a->got + a->len, b->data, b->len);
        a->len += b->len;
    } else if (status > 0) {
        a->len += b->len; /* more than was ever sent: the check below fails */
    } else {
        a->finals++;
    }
    int n = ++a->callbacks;
    pthread_mutex_unlock(&a->mu);
    if (n != 2)
        return;
    /* the second chunk: stuck, as far as the supervisor can tell */
    VT_OK(vigil__debug_request_fence(loop));
    uint64_t t0 = vigil_now_ns();
    while (!vigil__debug_fenced(loop) && vigil_now_ns() - t0 < 5000000000ull)
        ;
    atomic_store(&a->fenced, vigil__debug_fenced(loop));
}

static void rb_sent(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    rb_app *a = ud;
    pthread_mutex_lock(&a->mu);
    a->sends++;
    a->send_status = status;
    pthread_mutex_unlock(&a->mu);
}

static size_t rb_len(rb_app *a) {
    pthread_mutex_lock(&a->mu);
    size_t n = a->len;
    pthread_mutex_unlock(&a->mu);
    return n;
}

static int rb_sends(rb_app *a) {
    pthread_mutex_lock(&a->mu);
    int n = a->sends;
    pthread_mutex_unlock(&a->mu);
    return n;
}

/* Bounded wait for what the rebuilt loop's thread does. */
#define WAIT_FOR(cond, ms)                                                                  \
    do {                                                                                    \
        uint64_t wf_t0_ = vigil_now_ns();                                                   \
        while (!(cond) && vigil_now_ns() - wf_t0_ < (uint64_t)(ms) * 1000000ull)            \
            usleep(1000);                                                                   \
        VT_ASSERT((cond), "waited %d ms for %s", (ms), #cond);                             \
    } while (0)

static void quiet(const char *line, void *ud) {
    if (getenv("VIGIL_TEST_VERBOSE"))
        fprintf(stderr, "%s\n", line);
}

VT_TEST(fake, rebuild_carries_what_the_fake_still_held, 60) {
    static rb_app a;
    memset(&a, 0, sizeof(a));
    pthread_mutex_init(&a.mu, NULL);
    vigil_loop *loop = fake_loop(VIGIL_LOOP_SUPERVISED);
    vigil_supervisor_options so = {.stall_ms = 10000, .tick_ms = 1, .grace_ms = 10000, .log = quiet};
    vigil_supervisor *sv;
    VT_OK(vigil_supervisor_start(&sv, &so));
    VT_OK(vigil_supervisor_add(sv, loop));

    int p;
    vigil_conn c = pair(loop, &p);
    int fd = fd_of(loop, c);
    VT_OK(vigil_conn_recv_start(loop, c, 0, rb_recv, &a, NULL));
    VT_OK(vigil_conn_send(loop, c, "0123456789", 10, 0, rb_sent, &a, NULL));
    uint64_t rtag = live(loop, FAKE_RECV, c).tag, stag = live(loop, FAKE_SEND, c).tag;
    uint8_t chunk[CHUNK];
    for (int i = 0; i < CHUNKS_BEFORE; i++) {
        vt_fill(chunk, CHUNK, 7, (uint64_t)i * CHUNK);
        VT_OK(fake_recv_bytes(loop, rtag, chunk, CHUNK, true));
    }
    VT_OK(fake_complete(loop, stag, 4, 0)); /* "0123" went out */
    fake_set_batch(4); /* the fence comes at the second of four: two wait in loop memory */

    /* This thread runs the loop until it is fenced in rb_recv. */
    VT_EQ(vt_run_until_fenced(loop, 10000), -EOWNERDEAD);
    VT_ASSERT(atomic_load(&a.fenced), "the callback saw its fence");

    /* The rebuild: a new fake state, where the receive is asked for again. */
    fake_req r;
    WAIT_FOR(fake_states(loop) == 2 && fake_live(loop, FAKE_RECV, fd, &r), 10000);
    VT_EQ(fake_tag_epoch(r.tag), (uint8_t)(fake_tag_epoch(rtag) + 1));
    VT_EQ(fake_tag_slot(r.tag), fake_tag_slot(rtag)); /* the same op, under the new epoch */
    VT_EQ(fake_harvested(), CHUNKS_BEFORE - 4 + 1); /* the queue: six chunks and the send's 4 */

    /* Every chunk the fenced state held arrives, once, in order. */
    WAIT_FOR(rb_len(&a) >= CHUNKS_BEFORE * CHUNK, 10000);
    /* The send goes on from its confirmed byte. */
    fake_req s;
    WAIT_FOR(fake_live(loop, FAKE_SEND, fd, &s), 10000);
    VT_EQ(s.len, 6);
    VT_ASSERT(!memcmp(s.data, "456789", 6), "the send asks for \"%.*s\"", (int)s.len, (const char *)s.data);
    VT_EQ(rb_sends(&a), 0);

    /* The old state's tag is stale on the new one; the new tag delivers. */
    vigil_loop_stats ls;
    VT_OK(vigil_loop_get_stats(loop, &ls));
    uint64_t stale_before = ls.stale_completions;
    VT_OK(fake_recv_bytes(loop, rtag, "stale", 5, true));
    for (int i = CHUNKS_BEFORE; i < CHUNKS_BEFORE + CHUNKS_AFTER; i++) {
        vt_fill(chunk, CHUNK, 7, (uint64_t)i * CHUNK);
        VT_OK(fake_recv_bytes(loop, r.tag, chunk, CHUNK, true));
    }
    VT_OK(fake_complete(loop, s.tag, 6, 0));
    WAIT_FOR(rb_len(&a) >= (CHUNKS_BEFORE + CHUNKS_AFTER) * CHUNK && rb_sends(&a) == 1, 10000);
    WAIT_FOR(fake_queued(loop) == 0, 10000);

    VT_OK(vigil_loop_stop(loop));
    VT_OK(vigil_loop_join(loop, 10000));
    pthread_mutex_lock(&a.mu);
    VT_EQ(a.len, (CHUNKS_BEFORE + CHUNKS_AFTER) * CHUNK);
    size_t bad = vt_check(a.got, a.len, 7, 0);
    VT_ASSERT(bad == a.len, "byte %zu differs", bad);
    VT_EQ(a.callbacks, CHUNKS_BEFORE + CHUNKS_AFTER); /* no duplicate, no final */
    VT_EQ(a.sends, 1);
    VT_EQ(a.send_status, 10);
    pthread_mutex_unlock(&a.mu);
    VT_OK(vigil_loop_get_stats(loop, &ls));
    VT_EQ(ls.rebuilds, 1);
    VT_EQ(ls.bytes_carried, (CHUNKS_BEFORE - 2) * CHUNK);
    VT_EQ(ls.stale_completions, stale_before + 1);
    VT_EQ(ls.stuck_returned, 1);
    pool_is_whole(loop); /* the loop's thread is done with it (joined) */

    VT_OK(vigil_supervisor_remove(sv, loop));
    VT_OK(vigil_loop_destroy(loop));
    VT_OK(vigil_supervisor_stop(sv));
    close(p);
    pthread_mutex_destroy(&a.mu);
}
