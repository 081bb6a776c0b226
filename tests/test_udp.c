/* test_udp.c: datagrams on every backend: an echo of 10,000 datagrams
 * checked one by one with loss counted, zero-length and truncated
 * datagrams, cancel, close and destroy, addresses, and a rebuild with a
 * receive running. */
#include "compat.h"
#include "core/debug.h"
#include "util.h"
#include "vt.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vigil_udp open_udp(vigil_loop *loop, int *port) {
    vigil_udp u;
    vigil_udp_options o = {.host = "127.0.0.1"};
    VT_OK(vigil_udp_open(loop, &o, &u));
    *port = vigil_udp_get_port(loop, u);
    VT_ASSERT(*port > 0, "port %d", *port);
    return u;
}

/* The server: every datagram back to whoever sent it. */
static void echo_recv(vigil_loop *loop, vigil_udp u, int status, const vigil_buf *b, const vigil_addr *from,
                      void *ud) {
    if (status >= 0)
        VT_OK(vigil_udp_send(loop, u, from, b->data, b->len, NULL, NULL, NULL));
}

/* The client: datagram i is 8 bytes of i, then a pattern of i % 1400 bytes. */
#define DGRAMS 10000
#define WINDOW 64

typedef struct client {
    vigil_loop *loop;
    vigil_udp u;
    vigil_addr server;
    uint32_t next, got, bad, zero_len, sends_ok, sends_failed;
    uint8_t seen[DGRAMS];
} client;

static size_t dgram_len(uint32_t i) { return i % 1000 == 7 ? 0 : 8 + i % 1400; }

static void on_sent(vigil_loop *loop, vigil_udp u, int status, void *ud) {
    client *c = ud;
    if (status >= 0)
        c->sends_ok++;
    else
        c->sends_failed++;
}

static void send_one(client *c) {
    uint32_t i = c->next++;
    uint8_t d[8 + 1400];
    size_t len = dgram_len(i);
    if (len) {
        uint64_t v = i;
        memcpy(d, &v, 8);
        vt_fill(d + 8, len - 8, i, 0);
    }
    VT_OK(vigil_udp_send(c->loop, c->u, &c->server, d, len, on_sent, c, NULL));
}

static void client_recv(vigil_loop *loop, vigil_udp u, int status, const vigil_buf *b, const vigil_addr *from,
                        void *ud) {
    client *c = ud;
    if (status < 0)
        return;
    if (status == 0) { /* the zero-length ones carry no number */
        c->zero_len++;
    } else {
        uint64_t v = UINT64_MAX;
        if (b->len >= 8)
            memcpy(&v, b->data, 8);
        if (v >= DGRAMS || b->len != dgram_len((uint32_t)v) || c->seen[v] ||
            vt_check(b->data + 8, b->len - 8, (uint32_t)v, 0) != b->len - 8)
            c->bad++;
        else
            c->seen[v] = 1;
    }
    c->got++;
    if (c->next < DGRAMS)
        send_one(c);
}

VT_TEST(udp, echo_of_10000_datagrams_with_loss_counted, 60) {
    vigil_loop *loop = vt_loop(NULL);
    int sport, cport;
    vigil_udp s = open_udp(loop, &sport);
    VT_OK(vigil_udp_recv_start(loop, s, echo_recv, NULL, NULL));
    static client c;
    memset(&c, 0, sizeof(c));
    c.loop = loop;
    c.u = open_udp(loop, &cport);
    VT_OK(vigil_addr_parse(&c.server, "127.0.0.1", (uint16_t)sport));
    VT_OK(vigil_udp_recv_start(loop, c.u, client_recv, &c, NULL));
    for (int i = 0; i < WINDOW; i++)
        send_one(&c);
    /* a window of datagrams in flight; one that is lost would stall it, so
     * after a quiet second the rest is counted as lost */
    uint64_t last = vigil_now_ns(), got = 0;
    while (c.got < DGRAMS && vigil_now_ns() - last < 1000000000ull) {
        vigil_loop_run(loop, VIGIL_RUN_ONCE, 50);
        if (c.got != got) {
            got = c.got;
            last = vigil_now_ns();
        }
    }
    uint32_t numbered = 0;
    for (int i = 0; i < DGRAMS; i++)
        numbered += c.seen[i];
    uint32_t lost = DGRAMS - c.got;
    VT_LOG("udp echo: %u sent, %u back (%u numbered, %u empty), %u lost, %u wrong", c.next, c.got, numbered,
           c.zero_len, lost, c.bad);
    VT_EQ(c.bad, 0);
    VT_EQ(c.sends_failed, 0);
    VT_EQ(lost, 0); /* loopback with a window well inside the socket buffers */
    VT_EQ(c.zero_len, DGRAMS / 1000);
    VT_EQ(numbered + c.zero_len, DGRAMS);
    VT_OK(vigil_loop_destroy(loop));
    VT_EQ(c.sends_ok, DGRAMS); /* every send callback ran */
}

typedef struct one {
    int done, status, finals, final_status;
    size_t len;
    uint32_t truncated;
    uint8_t data[4096];
    char from[64];
    uint16_t from_port;
} one;

static void one_recv(vigil_loop *loop, vigil_udp u, int status, const vigil_buf *b, const vigil_addr *from,
                     void *ud) {
    one *o = ud;
    if (status < 0) {
        o->finals++;
        o->final_status = status;
        return;
    }
    o->status = status;
    o->len = b->len;
    o->truncated = b->truncated;
    memcpy(o->data, b->data, b->len < sizeof(o->data) ? b->len : sizeof(o->data));
    VT_OK(vigil_addr_format(from, o->from, sizeof(o->from), &o->from_port));
    o->done++;
}

VT_TEST(udp, long_datagram_is_cut_and_says_so, 20) {
    vigil_loop_options lo = {.buf_size = 1024};
    vigil_loop *loop = vt_loop(&lo);
    int port;
    vigil_udp u = open_udp(loop, &port);
    one o = {0};
    VT_OK(vigil_udp_recv_start(loop, u, one_recv, &o, NULL));
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    uint8_t big[3000];
    vt_fill(big, sizeof(big), 5, 0);
    VT_EQ(sendto(fd, big, sizeof(big), 0, (struct sockaddr *)&to, sizeof(to)), (ssize_t)sizeof(big));
    VT_ASSERT(vt_run_until(loop, &o.done, 5000));
    VT_EQ(o.truncated, 1);
    VT_ASSERT(o.len > 0 && o.len < sizeof(big) && o.len <= 1024, "cut to %zu", o.len);
    VT_EQ(memcmp(o.data, big, o.len), 0);
    VT_EQ(strcmp(o.from, "127.0.0.1"), 0);
    struct sockaddr_in me;
    socklen_t ml = sizeof(me);
    getsockname(fd, (struct sockaddr *)&me, &ml);
    VT_EQ(o.from_port, ntohs(me.sin_port));
    /* a short one after it is whole */
    o.done = 0;
    VT_EQ(sendto(fd, "tiny", 4, 0, (struct sockaddr *)&to, sizeof(to)), 4);
    VT_ASSERT(vt_run_until(loop, &o.done, 5000));
    VT_EQ(o.len, 4);
    VT_EQ(o.truncated, 0);
    vt_sock_close(fd);
    VT_OK(vigil_loop_destroy(loop));
    VT_EQ(o.finals, 1);
    VT_EQ(o.final_status, -ECANCELED);
}

VT_TEST(udp, addresses_and_refusals, 20) {
    vigil_addr p;
    char host[64];
    uint16_t port = 0;
    VT_OK(vigil_addr_parse(&p, "::1", 5353));
    VT_OK(vigil_addr_format(&p, host, sizeof(host), &port));
    VT_EQ(strcmp(host, "::1"), 0);
    VT_EQ(port, 5353);
    VT_EQ(vigil_addr_parse(&p, "localhost", 1), -EINVAL); /* numeric only: names go through vigil_resolve_start */
    VT_EQ(vigil_addr_parse(NULL, "::1", 1), -EINVAL);
    vigil_addr empty = {0};
    VT_EQ(vigil_addr_format(&empty, host, sizeof(host), &port), -EAFNOSUPPORT);

    vigil_loop *loop = vt_loop(NULL);
    int uport;
    vigil_udp u = open_udp(loop, &uport);
    one o = {0};
    VT_EQ(vigil_udp_recv_start(loop, u, NULL, NULL, NULL), -EINVAL);
    vigil_op r;
    VT_OK(vigil_udp_recv_start(loop, u, one_recv, &o, &r));
    VT_EQ(vigil_udp_recv_start(loop, u, one_recv, &o, NULL), -EALREADY);
    VT_OK(vigil_addr_parse(&p, "127.0.0.1", (uint16_t)uport));
    static uint8_t huge[70000];
    VT_EQ(vigil_udp_send(loop, u, &p, huge, sizeof(huge), NULL, NULL, NULL), -EMSGSIZE);
    VT_EQ(vigil_udp_send(loop, u, NULL, "x", 1, NULL, NULL, NULL), -EINVAL);
    VT_EQ(vigil_udp_send(loop, (vigil_udp){999}, &p, "x", 1, NULL, NULL, NULL), -EBADF);
    vigil_udp_options taken = {.host = "127.0.0.1", .port = (uint16_t)uport};
    vigil_udp u2;
    VT_EQ(vigil_udp_open(loop, &taken, &u2), -EADDRINUSE);
    vigil_udp_options bad = {.host = "not-an-address"};
    VT_EQ(vigil_udp_open(loop, &bad, &u2), -EINVAL);
    /* cancel ends the receive once; close ends the socket */
    VT_OK(vigil_op_cancel(loop, r));
    VT_EQ(vigil_op_cancel(loop, r), -EBADF);
    vigil_loop_run(loop, VIGIL_RUN_NOWAIT, 0);
    VT_ASSERT(vt_run_until(loop, &o.finals, 2000));
    VT_EQ(o.final_status, -ECANCELED);
    VT_OK(vigil_udp_close(loop, u));
    VT_EQ(vigil_udp_close(loop, u), -EBADF);
    VT_EQ(vigil_udp_get_port(loop, u), -EBADF);
    VT_EQ(vigil_loop_run(loop, VIGIL_RUN_DEFAULT, 2000), 0); /* nothing left to run */
    VT_OK(vigil_loop_destroy(loop));
    VT_EQ(o.finals, 1);
}

/* A rebuild while datagrams flow: the receive goes on on the new thread and
 * every datagram sent after the fence is echoed. The peer holds its last
 * datagram until the fence was seen, so it cannot finish (and stop the
 * loop) before the rebuild even on a loopback fast enough for 2,000 round
 * trips before the fence timer. */
typedef struct peer_run {
    int port;
    _Atomic int go, stop, sent, back, bad, fenced;
} peer_run;

static void *peer_main(void *arg) {
    peer_run *p = arg;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    VT_EQ(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
    vt_sock_recv_timeout(fd, 2000); /* far longer than a rebuild */
    while (!atomic_load(&p->go))
        usleep(1000);
    for (uint32_t i = 0; i < 2000 && !atomic_load(&p->stop); i++) {
        for (int w = 0; i == 1999 && !atomic_load(&p->fenced) && w < 5000; w++)
            usleep(1000);
        uint8_t d[64], back[64];
        vt_fill(d, sizeof(d), i, 0);
        if (send(fd, d, sizeof(d), 0) != (ssize_t)sizeof(d))
            break;
        atomic_fetch_add(&p->sent, 1);
        ssize_t n = recv(fd, back, sizeof(back), 0);
        if (n == (ssize_t)sizeof(d) && !memcmp(d, back, sizeof(d)))
            atomic_fetch_add(&p->back, 1);
        else if (n >= 0)
            atomic_fetch_add(&p->bad, 1);
    }
    vt_sock_close(fd);
    atomic_store(&p->stop, 1);
    return NULL;
}

static void stop_when_done(vigil_loop *loop, vigil_op t, int status, void *ud) {
    peer_run *p = ud;
    if (status == 0 && atomic_load(&p->stop))
        vigil_loop_stop(loop);
}

VT_TEST(udp, rebuild_keeps_receiving, 30) {
    vigil_supervisor *sv;
    vigil_loop *loop = vt_fenceable_loop(&sv);
    static peer_run p;
    memset(&p, 0, sizeof(p));
    vigil_udp u = open_udp(loop, &p.port);
    VT_OK(vigil_udp_recv_start(loop, u, echo_recv, NULL, NULL));
    pthread_t t;
    VT_EQ(pthread_create(&t, NULL, peer_main, &p), 0);
    VT_OK(vigil_timer_start(loop, 30, 0, vt_fence_timer, (void *)&p.fenced, NULL));
    VT_OK(vigil_timer_start(loop, 10, 10, stop_when_done, &p, NULL));
    atomic_store(&p.go, 1);
    /* fenced in a callback, this thread waits for the rebuilt loop to stop */
    VT_EQ(vigil_loop_run(loop, VIGIL_RUN_DEFAULT, 20000), 1);
    VT_OK(vigil_loop_join(loop, 20000)); /* the rebuilt loop stops when the peer is done */
    pthread_join(t, NULL);
    vigil_loop_stats ls;
    VT_OK(vigil_loop_get_stats(loop, &ls));
    VT_EQ(ls.rebuilds, 1);
    VT_LOG("udp across a rebuild: %d sent, %d back, %d wrong", atomic_load(&p.sent), atomic_load(&p.back),
           atomic_load(&p.bad));
    VT_EQ(atomic_load(&p.bad), 0);
    VT_EQ(atomic_load(&p.sent), 2000);
    VT_EQ(atomic_load(&p.back), 2000); /* the one in flight at the fence too */
    VT_OK(vigil_supervisor_remove(sv, loop));
    VT_OK(vigil_supervisor_stop(sv));
    VT_OK(vigil_loop_destroy(loop));
}

/* A full socket buffer: the datagrams wait in order, the loop waits for
 * writability, and every one goes out once, in order. */
typedef struct sent_log {
    int n, order_ok, cancelled;
} sent_log;

static void logged(vigil_loop *loop, vigil_udp u, int status, void *ud) {
    sent_log *l = ud;
    if (status == -ECANCELED) {
        l->cancelled++;
        return;
    }
    l->order_ok &= status == 5;
    l->n++;
}

VT_TEST(udp, full_socket_waits_and_keeps_order, 20) {
    vigil_loop *loop = vt_loop(NULL);
    int port;
    vigil_udp u = open_udp(loop, &port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    VT_EQ(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0);
    socklen_t ml = sizeof(me);
    getsockname(fd, (struct sockaddr *)&me, &ml);
    vigil_addr to;
    VT_OK(vigil_addr_parse(&to, "127.0.0.1", ntohs(me.sin_port)));
    VT_OK(vigil__debug_udp_full(loop, 3));
    sent_log l = {0, 1, 0};
    vigil_op second;
    for (int i = 0; i < 10; i++) {
        char d[8];
        snprintf(d, sizeof(d), "dg%02d", i);
        VT_OK(vigil_udp_send(loop, u, &to, d, 5, logged, &l, i == 1 ? &second : NULL));
    }
    VT_OK(vigil_op_cancel(loop, second)); /* still queued: it never goes out */
    uint64_t t0 = vigil_now_ns();
    while (l.n < 9 && vigil_now_ns() - t0 < 5000000000ull)
        vigil_loop_run(loop, VIGIL_RUN_ONCE, 50);
    VT_EQ(l.n, 9);
    VT_EQ(l.order_ok, 1);
    VT_EQ(l.cancelled, 1);
    for (int i = 0; i < 10; i++) {
        if (i == 1)
            continue;
        char d[8], want[8];
        snprintf(want, sizeof(want), "dg%02d", i);
        VT_EQ(vt_recv_now(fd, d, sizeof(d)), 5);
        VT_ASSERT(!memcmp(d, want, 5), "datagram %d out of order: %.5s", i, d);
    }
    VT_EQ(vt_recv_now(fd, (char[8]){0}, 8), -1); /* nothing more */
    vt_sock_close(fd);
    VT_OK(vigil_loop_destroy(loop));
}
