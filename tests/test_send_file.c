/* test_send_file.c: vigil_conn_send_file, the same on every backend: a
 * file's bytes in order with the connection's other messages, through
 * partial sends to a slow reader, a file cut short under a queued message,
 * bad arguments, cold pages read in off the loop thread (Linux), and a
 * rebuild in the middle of a file with every byte checked. */
#include "compat.h"
#include "util.h"
#include "vt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <io.h>
#else
#include <sys/mman.h>
#include <sys/resource.h>
#endif

#define KIB ((size_t)1024)
#define MIB ((size_t)1024 * 1024)
#define FILE_SEED 7u

/* ------------------------------------------------------------ helpers */

/* A file of size bytes of pattern FILE_SEED, at a path of this process's. */
static void make_file(char *path, size_t cap, const char *name, size_t size) {
    snprintf(path, cap, "vt-send-file-%ld-%s.bin", (long)getpid(), name);
    FILE *f = fopen(path, "wb");
    VT_ASSERT(f, "fopen %s: %s", path, strerror(errno));
    uint8_t *buf = malloc(MIB);
    for (size_t at = 0; at < size;) {
        size_t k = size - at < MIB ? size - at : MIB;
        vt_fill(buf, k, FILE_SEED, at);
        VT_EQ(fwrite(buf, 1, k, f), k);
        at += k;
    }
    free(buf);
    VT_EQ(fclose(f), 0);
}

/* Cuts the file down to size while another fd has it open. */
static void cut_file(const char *path, size_t size) {
#ifdef _WIN32
    int fd = _open(path, _O_RDWR | _O_BINARY);
    VT_ASSERT(fd >= 0);
    VT_EQ(_chsize_s(fd, (long long)size), 0);
    _close(fd);
#else
    VT_EQ(truncate(path, (off_t)size), 0);
#endif
}

typedef struct fs_done { volatile int done; int status; } fs_done;
static void on_fs(vigil_loop *loop, vigil_op op, int status, void *ud) {
    fs_done *d = ud;
    d->status = status;
    d->done = 1;
}

/* The file opened for reading through the loop, as a program would. */
static int open_file(vigil_loop *loop, const char *path) {
    fs_done d = {0};
    VT_OK(vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY, 0, on_fs, &d, NULL));
    VT_ASSERT(vt_run_until(loop, &d.done, 10000), "open %s: no callback", path);
    VT_ASSERT(d.status >= 0, "open %s: %d", path, d.status);
    return d.status;
}

static void close_file(vigil_loop *loop, int fd) {
    fs_done d = {0};
    VT_OK(vigil_fs_close(loop, fd, on_fs, &d, NULL));
    VT_ASSERT(vt_run_until(loop, &d.done, 10000));
    VT_OK(d.status);
}

/* A plain peer on a thread: reads until EOF, an error, want bytes or the
 * time limit, slow_us between reads of at most 64 KiB. */
typedef struct peer {
    int fd;
    size_t want;
    int slow_us;
    uint8_t *buf;
    size_t got;
    int eof, err;
    _Atomic int go, done;
} peer;

static void *peer_main(void *arg) {
    peer *p = arg;
    while (!atomic_load(&p->go))
        usleep(1000);
    uint64_t until = vigil_now_ns() + 30000000000ull;
    while (p->got < p->want && vigil_now_ns() < until) {
        struct pollfd pf = {.fd = p->fd, .events = POLLIN};
        if (vt_poll(&pf, 1, 100) <= 0)
            continue;
        size_t n = p->want - p->got < 64 * KIB ? p->want - p->got : 64 * KIB;
        int k = (int)recv(p->fd, (char *)p->buf + p->got, n, 0);
        if (k == 0) {
            p->eof = 1;
            shutdown(p->fd, SHUT_WR); /* our FIN too: the server's graceful close need not wait for it */
            break;
        }
        if (k < 0) {
            int e = vt_sock_error();
            if (e == EINTR || e == EAGAIN)
                continue;
            p->err = e;
            break;
        }
        p->got += (size_t)k;
        if (p->slow_us)
            usleep((useconds_t)p->slow_us);
    }
    atomic_store(&p->done, 1);
    return NULL;
}

/* Connects a peer with a small receive window, so that what is sent stays
 * queued and goes in many partial sends; cap: the most it will read. */
static void peer_start(peer *p, pthread_t *th, int port, size_t cap, int slow_us) {
    p->fd = socket(AF_INET, SOCK_STREAM, 0);
    int rcvbuf = 64 * 1024;
    setsockopt(p->fd, SOL_SOCKET, SO_RCVBUF, (const void *)&rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    VT_ASSERT(connect(p->fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    p->want = cap;
    p->slow_us = slow_us;
    p->buf = malloc(cap + 1);
    VT_EQ(pthread_create(th, NULL, peer_main, p), 0);
}

typedef struct srv {
    vigil_listener l;
    vigil_conn c;
    volatile int accepted;
} srv;

static void on_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    srv *s = ud;
    if (status == 0) {
        s->c = c;
        s->accepted = 1;
    }
}

/* A listener and a plain blocking client, accepted: the client's fd. */
static int plain_peer(vigil_loop *loop, srv *s) {
    int port;
    s->l = vt_listen(loop, on_accept, s, &port);
    int pfd = vt_sock_connect(port);
    VT_ASSERT(vt_run_until(loop, &s->accepted, 5000));
    return pfd;
}

/* The end of a test: the peer, the file, the listener, the loop. */
static void end_test(vigil_loop *loop, srv *s, peer *p, int fd, const char *path) {
    free(p->buf);
    vt_sock_close(p->fd);
    close_file(loop, fd);
    vigil_listener_close(loop, s->l);
    VT_OK(vigil_loop_destroy(loop));
    remove(path);
}

/* Each message's callbacks, in order. */
typedef struct sent_log {
    _Atomic int n;       /* callbacks so far */
    int status[16];      /* by message */
    int order[16];       /* message of the i-th callback */
    _Atomic int closed;
    int close_status;
} sent_log;
typedef struct msg_ref { sent_log *log; int i; } msg_ref;

static void on_sent(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    msg_ref *r = ud;
    r->log->status[r->i] = status;
    r->log->order[atomic_load(&r->log->n)] = r->i;
    atomic_fetch_add(&r->log->n, 1);
}

static void on_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    sent_log *g = ud;
    g->close_status = status;
    atomic_store(&g->closed, 1);
}

static bool run_until_sent(vigil_loop *loop, sent_log *g, int n, int timeout_ms) {
    uint64_t until = vigil_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (atomic_load(&g->n) < n && vigil_now_ns() < until)
        VT_ASSERT(vigil_loop_run(loop, VIGIL_RUN_ONCE, 20) >= 0);
    return atomic_load(&g->n) >= n;
}

static void send_mem(vigil_loop *loop, vigil_conn c, size_t n, uint32_t seed, msg_ref *r) {
    uint8_t *tmp = malloc(n ? n : 1);
    vt_fill(tmp, n, seed, 0);
    VT_ASSERT(vigil_conn_send(loop, c, tmp, n, 0, on_sent, r, NULL) >= 0);
    free(tmp);
}

/* ------------------------------------------------------------ tests */

/* Memory and file messages interleaved (two ranges of one file, an empty
 * one, a range at an odd offset) reach a slow reader in queue order, byte
 * exact, each with one callback saying its length, in order. */
VT_TEST(send_file, file_and_memory_messages_keep_their_order, 60) {
    vigil_loop *loop = vt_loop(NULL);
    char path[128];
    const size_t FILE_SIZE = 5 * MIB;
    make_file(path, sizeof(path), "order", FILE_SIZE);
    int fd = open_file(loop, path);
    srv s = {0};
    int port;
    s.l = vt_listen(loop, on_accept, &s, &port);
    const size_t A = 1000, F1 = 3 * MIB + 123, B = 10, F2_OFF = MIB + 77, F2 = 200000, C = 70000;
    const size_t total = A + F1 + B + F2 + C;
    peer p = {0};
    pthread_t th;
    peer_start(&p, &th, port, total + 1, 200);
    VT_ASSERT(vt_run_until(loop, &s.accepted, 5000));

    sent_log g = {0};
    msg_ref r[6];
    for (int i = 0; i < 6; i++)
        r[i] = (msg_ref){&g, i};
    send_mem(loop, s.c, A, 1, &r[0]);
    VT_ASSERT(vigil_conn_send_file(loop, s.c, fd, 0, F1, 0, on_sent, &r[1], NULL) >= 0);
    send_mem(loop, s.c, B, 2, &r[2]);
    VT_ASSERT(vigil_conn_send_file(loop, s.c, fd, (int64_t)F2_OFF, F2, 0, on_sent, &r[3], NULL) >= 0);
    VT_ASSERT(vigil_conn_send_file(loop, s.c, fd, 0, 0, 0, on_sent, &r[4], NULL) >= 0);
    send_mem(loop, s.c, C, 3, &r[5]);
    VT_EQ(vigil_conn_send_queued(loop, s.c), (int64_t)total);
    atomic_store(&p.go, 1);
    VT_OK(vigil_conn_close(loop, s.c, 30000, on_closed, &g));
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&g.closed, 40000), "the close never came");
    pthread_join(th, NULL);

    VT_EQ(atomic_load(&g.n), 6);
    for (int i = 0; i < 6; i++)
        VT_EQ(g.order[i], i);
    VT_EQ(g.status[0], (int)A);
    VT_EQ(g.status[1], (int)F1);
    VT_EQ(g.status[2], (int)B);
    VT_EQ(g.status[3], (int)F2);
    VT_EQ(g.status[4], 0);
    VT_EQ(g.status[5], (int)C);
    VT_EQ(g.close_status, 0);
    VT_EQ(p.got, total);
    VT_EQ(p.eof, 1);
    const uint8_t *b = p.buf;
    VT_EQ(vt_check(b, A, 1, 0), A);
    VT_EQ(vt_check(b + A, F1, FILE_SEED, 0), F1);
    VT_EQ(vt_check(b + A + F1, B, 2, 0), B);
    VT_EQ(vt_check(b + A + F1 + B, F2, FILE_SEED, F2_OFF), F2);
    VT_EQ(vt_check(b + A + F1 + B + F2, C, 3, 0), C);
    end_test(loop, &s, &p, fd, path);
}

/* Bad arguments fail at once with a clear error, and leave the connection
 * as it was: a message after them still goes. */
VT_TEST(send_file, bad_arguments_fail_at_once, 20) {
    vigil_loop *loop = vt_loop(NULL);
    char path[128];
    make_file(path, sizeof(path), "bad", 4096);
    int fd = open_file(loop, path);
    srv s = {0};
    int pfd = plain_peer(loop, &s);

    VT_EQ(vigil_conn_send_file(loop, s.c, -1, 0, 10, 0, NULL, NULL, NULL), -EBADF);
    VT_EQ(vigil_conn_send_file(loop, s.c, fd, -1, 10, 0, NULL, NULL, NULL), -EINVAL);
    VT_EQ(vigil_conn_send_file(loop, s.c, fd, 0, (size_t)INT32_MAX + 1, 0, NULL, NULL, NULL), -EMSGSIZE);
    VT_EQ(vigil_conn_send_file(loop, s.c, fd, 4000, 97, 0, NULL, NULL, NULL), -ENODATA); /* 4096 bytes */
    VT_EQ(vigil_conn_send_file(loop, s.c, fd, 5000, 0, 0, NULL, NULL, NULL), -ENODATA);
    VT_EQ(vigil_conn_send_file(loop, (vigil_conn){0}, fd, 0, 10, 0, NULL, NULL, NULL), -EBADF);
    int pp[2];
#ifdef _WIN32
    VT_EQ(_pipe(pp, 4096, _O_BINARY), 0);
#else
    VT_EQ(pipe(pp), 0);
#endif
    VT_EQ(vigil_conn_send_file(loop, s.c, pp[0], 0, 10, 0, NULL, NULL, NULL), -ENODEV);
    close(pp[0]);
    close(pp[1]);
    VT_EQ(vigil_conn_send_file(loop, s.c, pp[0], 0, 10, 0, NULL, NULL, NULL), -EBADF); /* closed */
#ifndef _WIN32
    int wfd = open(path, O_WRONLY);
    VT_ASSERT(wfd >= 0);
    VT_EQ(vigil_conn_send_file(loop, s.c, wfd, 0, 10, 0, NULL, NULL, NULL), -EACCES);
    close(wfd);
#endif
    VT_EQ(vigil_conn_send_queued(loop, s.c), 0);

    sent_log g = {0};
    msg_ref r = {&g, 0};
    VT_OK(vigil_conn_send_file(loop, s.c, fd, 100, 1000, 0, on_sent, &r, NULL));
    VT_ASSERT(run_until_sent(loop, &g, 1, 5000));
    VT_EQ(g.status[0], 1000);
    uint8_t got[1000];
    VT_EQ(vt_sock_read_n(pfd, got, sizeof(got), 5000), sizeof(got));
    VT_EQ(vt_check(got, sizeof(got), FILE_SEED, 100), sizeof(got));

    VT_OK(vigil_conn_close(loop, s.c, 5000, on_closed, &g));
    VT_EQ(vigil_conn_send_file(loop, s.c, fd, 0, 10, 0, NULL, NULL, NULL), -EPIPE);
    vt_sock_close(pfd);
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&g.closed, 10000));
    close_file(loop, fd);
    vigil_listener_close(loop, s.l);
    VT_OK(vigil_loop_destroy(loop));
    remove(path);
}

/* A file cut short while its message waits in the queue: the message fails
 * -ENODATA, the stream breaks (the messages behind it fail too, the peer
 * sees it end early, never bytes that were not in the file), and nothing
 * crashes. */
VT_TEST(send_file, file_cut_short_breaks_the_stream, 40) {
    vigil_loop *loop = vt_loop(NULL);
    char path[128];
    const size_t FILE_SIZE = 16 * MIB, CUT = 512 * KIB;
    make_file(path, sizeof(path), "cut", FILE_SIZE);
    int fd = open_file(loop, path);
    srv s = {0};
    int port;
    s.l = vt_listen(loop, on_accept, &s, &port);
    peer p = {0};
    pthread_t th;
    peer_start(&p, &th, port, FILE_SIZE + 100, 0);
    VT_ASSERT(vt_run_until(loop, &s.accepted, 5000));

    sent_log g = {0};
    msg_ref r[2] = {{&g, 0}, {&g, 1}};
    VT_OK(vigil_conn_send_file(loop, s.c, fd, 0, FILE_SIZE, 0, on_sent, &r[0], NULL));
    send_mem(loop, s.c, 100, 5, &r[1]);
    for (int i = 0; i < 20; i++) /* what the windows take goes out; the peer does not read yet */
        vigil_loop_run(loop, VIGIL_RUN_NOWAIT, 0), usleep(5000);
    int64_t queued = vigil_conn_send_queued(loop, s.c);
    VT_ASSERT(queued > (int64_t)(FILE_SIZE / 2), "only %lld bytes still queued", (long long)queued);
    cut_file(path, CUT);
    atomic_store(&p.go, 1);
    VT_ASSERT(run_until_sent(loop, &g, 2, 20000), "%d callbacks", atomic_load(&g.n));
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&p.done, 20000), "the peer never saw the stream end");
    pthread_join(th, NULL);
    VT_EQ(atomic_load(&g.n), 2);
    VT_EQ(g.status[0], -ENODATA);
    VT_EQ(g.status[1], -ENODATA);
    VT_ASSERT(p.eof || p.err, "the peer read %zu bytes and no end", p.got);
    VT_ASSERT(p.got < FILE_SIZE, "the peer got %zu bytes of a file cut to %zu", p.got, CUT);
    VT_EQ(vt_check(p.buf, p.got, FILE_SEED, 0), p.got);
    VT_EQ(vigil_conn_send(loop, s.c, "x", 1, 0, NULL, NULL, NULL), -EPIPE);
    VT_OK(vigil_conn_close(loop, s.c, 5000, on_closed, &g));
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&g.closed, 10000));
    VT_EQ(g.close_status, -ENODATA);
    end_test(loop, &s, &p, fd, path);
}

/* Linux: pages of the file that are not in memory are read in on the
 * loop's pool, never by the loop thread's send: the loop thread (this one)
 * takes no major fault for a 16 MiB file evicted from the page cache (0 or
 * 1 measured; sending it from the mapping without the fill takes one per
 * read-ahead of the mapping: 8 measured, on 6.18). */
VT_TEST(send_file, cold_pages_are_read_off_the_loop_thread, 60) {
#ifdef _WIN32
    VT_SKIP("TransmitFile reads the file in the kernel");
#else
    vigil_loop *loop = vt_loop(NULL);
    char path[128];
    const size_t FILE_SIZE = 16 * MIB;
    make_file(path, sizeof(path), "cold", FILE_SIZE);
    int fd = open_file(loop, path);
    VT_EQ(fdatasync(fd), 0);
    VT_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    void *m = mmap(NULL, FILE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    VT_ASSERT(m != MAP_FAILED);
    unsigned char vec[FILE_SIZE / 4096];
    VT_EQ(mincore(m, FILE_SIZE, vec), 0);
    size_t in = 0;
    for (size_t i = 0; i < sizeof(vec); i++)
        in += vec[i] & 1;
    munmap(m, FILE_SIZE);
    if (in > sizeof(vec) / 8)
        VT_SKIP("the page cache keeps %zu of %zu pages of the file (a file system that cannot drop them)", in,
                sizeof(vec));
    srv s = {0};
    int port;
    s.l = vt_listen(loop, on_accept, &s, &port);
    peer p = {0};
    pthread_t th;
    peer_start(&p, &th, port, FILE_SIZE, 0);
    VT_ASSERT(vt_run_until(loop, &s.accepted, 5000));
    struct rusage ru0, ru1;
    VT_EQ(getrusage(RUSAGE_THREAD, &ru0), 0);
    sent_log g = {0};
    msg_ref r = {&g, 0};
    VT_OK(vigil_conn_send_file(loop, s.c, fd, 0, FILE_SIZE, 0, on_sent, &r, NULL));
    atomic_store(&p.go, 1);
    VT_ASSERT(run_until_sent(loop, &g, 1, 30000));
    VT_EQ(getrusage(RUSAGE_THREAD, &ru1), 0);
    pthread_join(th, NULL);
    VT_EQ(g.status[0], (int)FILE_SIZE);
    VT_EQ(p.got, FILE_SIZE);
    VT_EQ(vt_check(p.buf, FILE_SIZE, FILE_SEED, 0), FILE_SIZE);
    long faults = ru1.ru_majflt - ru0.ru_majflt;
    VT_LOG("%zu of %zu pages cached before; loop thread major faults during the send: %ld", in, sizeof(vec),
           faults);
    VT_ASSERT(faults <= 4, "the loop thread took %ld major faults sending a cold file", faults);
    free(p.buf);
    vt_sock_close(p.fd);
    close_file(loop, fd);
    vigil_listener_close(loop, s.l);
    VT_OK(vigil_loop_destroy(loop));
    remove(path);
#endif
}

/* A rebuild in the middle of a file message: the message goes on from its
 * next unsent byte on the new thread, and the peer gets every byte of the
 * file and the message behind it, once, in order. */
typedef struct rb_state {
    sent_log g;
    msg_ref r[2];
    srv s;
    _Atomic int ended;
} rb_state;

static void rb_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    rb_state *x = ud;
    x->g.close_status = status;
    atomic_store(&x->ended, 1);
}

static void rb_last_sent(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    rb_state *x = (rb_state *)((msg_ref *)ud)->log; /* the log is the state's first member */
    on_sent(loop, c, status, ud);
    vigil_conn_close(loop, c, 10000, rb_closed, x);
    vigil_listener_close(loop, x->s.l); /* nothing left: the rebuilt loop's run ends */
}

static rb_state *rb_now;
static size_t rb_sent_at_fence; /* bytes of the file the peer had when the fence came */
static int rb_calls_at_fence;

static void rb_fence(vigil_loop *loop, vigil_op t, int status, void *ud) {
    rb_calls_at_fence = atomic_load(&rb_now->g.n);
    rb_sent_at_fence = 24 * MIB + 5000 - (size_t)vigil_conn_send_queued(loop, rb_now->s.c); /* file + tail, less queued */
    vt_fence_timer(loop, t, status, ud);
}

VT_TEST(send_file, rebuild_mid_file_carries_every_byte, 60) {
    vigil_supervisor *sv;
    vigil_loop *loop = vt_fenceable_loop(&sv);
    char path[128];
    const size_t FILE_SIZE = 24 * MIB, TAIL = 5000;
    make_file(path, sizeof(path), "rebuild", FILE_SIZE);
    int fd = open_file(loop, path);
    rb_state x = {0};
    int port;
    x.s.l = vt_listen(loop, on_accept, &x.s, &port);
    peer p = {0};
    pthread_t th;
    peer_start(&p, &th, port, FILE_SIZE + TAIL + 1, 2000);
    VT_ASSERT(vt_run_until(loop, &x.s.accepted, 5000));
    x.r[0] = (msg_ref){&x.g, 0};
    x.r[1] = (msg_ref){&x.g, 1};
    VT_OK(vigil_conn_send_file(loop, x.s.c, fd, 0, FILE_SIZE, 0, on_sent, &x.r[0], NULL));
    uint8_t *tail = malloc(TAIL);
    vt_fill(tail, TAIL, 9, 0);
    VT_OK(vigil_conn_send(loop, x.s.c, tail, TAIL, 0, rb_last_sent, &x.r[1], NULL));
    free(tail);
    atomic_store(&p.go, 1);
    _Atomic int fenced = 0;
    rb_now = &x;
    VT_OK(vigil_timer_start(loop, 100, 0, rb_fence, (void *)&fenced, NULL));
    VT_EQ(vt_run_until_fenced(loop, 10000), -EOWNERDEAD);
    VT_EQ(atomic_load(&fenced), 1);
    VT_LOG("fenced with %zu of %zu bytes of the file gone", rb_sent_at_fence, FILE_SIZE);
    VT_EQ(rb_calls_at_fence, 0);
    VT_ASSERT(rb_sent_at_fence < FILE_SIZE / 2, "the fence came at byte %zu", rb_sent_at_fence);
#ifndef _WIN32 /* IOCP confirms a TransmitFile's bytes when it completes, all at once */
    VT_ASSERT(rb_sent_at_fence > 0, "the fence came before the file began");
#endif
    uint64_t t0 = vigil_now_ns();
    while (!atomic_load(&x.ended) && vigil_now_ns() - t0 < 40000000000ull)
        usleep(2000);
    VT_ASSERT(atomic_load(&x.ended), "the messages never all went: %d callbacks", atomic_load(&x.g.n));
    pthread_join(th, NULL);
    VT_OK(vigil_loop_join(loop, 10000));
    vigil_loop_stats ls;
    VT_OK(vigil_loop_get_stats(loop, &ls));
    VT_EQ(ls.rebuilds, 1);
    VT_EQ(atomic_load(&x.g.n), 2);
    VT_EQ(x.g.status[0], (int)FILE_SIZE);
    VT_EQ(x.g.status[1], (int)TAIL);
    VT_EQ(x.g.close_status, 0);
    VT_EQ(p.got, FILE_SIZE + TAIL);
    VT_EQ(p.eof, 1);
    VT_EQ(vt_check(p.buf, FILE_SIZE, FILE_SEED, 0), FILE_SIZE);
    VT_EQ(vt_check(p.buf + FILE_SIZE, TAIL, 9, 0), TAIL);
    VT_OK(vigil_supervisor_remove(sv, loop));
    VT_OK(vigil_supervisor_stop(sv));
    free(p.buf);
    vt_sock_close(p.fd);
    close(fd); /* the loop is gone: a plain close */
    VT_OK(vigil_loop_destroy(loop));
    remove(path);
}

/* The loop keeps a file's mapping between messages (Linux), and that never
 * sends stale bytes: a file that grew is mapped again for the new range, a
 * file replaced under its path (a new inode) is its own; and a mapping no
 * message used for a while is let go, so a deleted file's space comes back
 * (its "(deleted)" mapping leaves /proc/self/maps). */
static void send_range(vigil_loop *loop, vigil_conn c, int pfd, int fd, size_t off, size_t len, uint32_t seed) {
    sent_log g = {0};
    msg_ref r = {&g, 0};
    VT_OK(vigil_conn_send_file(loop, c, fd, (int64_t)off, len, 0, on_sent, &r, NULL));
    VT_ASSERT(run_until_sent(loop, &g, 1, 5000));
    VT_EQ(g.status[0], (int)len);
    uint8_t *got = malloc(len);
    VT_EQ(vt_sock_read_n(pfd, got, len, 5000), len);
    VT_EQ(vt_check(got, len, seed, off), len);
    free(got);
}

#ifndef _WIN32
static int mapped_deleted(const char *path) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof(line), f))
        n += strstr(line, path) && strstr(line, "(deleted)");
    if (f)
        fclose(f);
    return n;
}
#endif

VT_TEST(send_file, kept_mappings_follow_the_file, 30) {
    vigil_loop *loop = vt_loop(NULL);
    char path[128];
    make_file(path, sizeof(path), "grow", 64 * KIB);
    int fd = open_file(loop, path);
    srv s = {0};
    int pfd = plain_peer(loop, &s);
    send_range(loop, s.c, pfd, fd, 1000, 60000, FILE_SEED);
    /* it grows: the new bytes, pattern continued */
    FILE *f = fopen(path, "ab");
    uint8_t *more = malloc(MIB);
    vt_fill(more, MIB, FILE_SEED, 64 * KIB);
    VT_EQ(fwrite(more, 1, MIB, f), MIB);
    VT_EQ(fclose(f), 0);
    free(more);
    send_range(loop, s.c, pfd, fd, 60 * KIB, MIB, FILE_SEED);
    /* replaced: another file at the path, another fd; the old fd still the old file */
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *g = fopen(tmp, "wb");
    uint8_t *other = malloc(128 * KIB);
    vt_fill(other, 128 * KIB, 11, 0);
    VT_EQ(fwrite(other, 1, 128 * KIB, g), 128 * KIB);
    VT_EQ(fclose(g), 0);
    free(other);
#ifndef _WIN32
    VT_EQ(rename(tmp, path), 0);
    int fd2 = open_file(loop, path);
    send_range(loop, s.c, pfd, fd2, 5, 100 * KIB, 11);
    send_range(loop, s.c, pfd, fd, 3, 50 * KIB, FILE_SEED);
    /* both deleted and closed: their mappings go once unused for a second */
    VT_EQ(unlink(path), 0);
    close_file(loop, fd2);
    close_file(loop, fd);
    fd = -1;
    VT_ASSERT(mapped_deleted(path) >= 1, "no mapping of the file was kept");
    uint64_t t0 = vigil_now_ns();
    while (mapped_deleted(path) && vigil_now_ns() - t0 < 5000000000ull)
        vigil_loop_run(loop, VIGIL_RUN_ONCE, 50);
    VT_EQ(mapped_deleted(path), 0);
    VT_ASSERT(vigil_now_ns() - t0 >= 500000000ull, "let go after %llu ms: sooner than kept",
              (unsigned long long)((vigil_now_ns() - t0) / 1000000));
#else
    remove(tmp);
#endif
    if (fd >= 0)
        close_file(loop, fd);
    vt_sock_close(pfd);
    vigil_listener_close(loop, s.l);
    VT_OK(vigil_loop_destroy(loop));
    remove(path);
}
