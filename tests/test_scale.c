/* test_scale.c: many connections on one loop. */
#include "util.h"
#include "vt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MSG 64 /* bytes each client sends and gets back */
#ifdef _WIN32
/* Under wine every Winsock call is a round trip to wineserver, and its cost
 * grows with the sockets it holds: 3,000 connections open, echo and close
 * in 7 s, 9,000 take 20 s to echo and 32 s to close, past the 10 s close
 * deadlines (2026-12-03). That is wine's speed, not what this test checks. */
#define SCALE_N 3000
#else
#define SCALE_N 9000
#endif

typedef struct sconn {
    vigil_conn c;
    int closes, close_status;
} sconn;

typedef struct server {
    sconn *side; /* one per accepted connection, in accept order */
    uint64_t accepted, eofs, errors, closed, close_nonzero, send_fail;
} server;

static server *g_srv;
static void srv_closed_side(vigil_loop *loop, vigil_conn c, int status, void *ud);

static void srv_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    server *s = g_srv;
    sconn *x = ud;
    if (status > 0) {
        if (vigil_conn_send(loop, c, b->data, b->len, 0, NULL, NULL, NULL) < 0)
            s->send_fail++;
        return;
    }
    if (status == 0)
        s->eofs++;
    else
        s->errors++;
    if (status != -ECANCELED)
        VT_OK(vigil_conn_close(loop, c, 10000, srv_closed_side, x));
}

static void srv_closed_side(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    sconn *x = ud;
    x->closes++;
    x->close_status = status;
    g_srv->closed++;
    if (status != 0)
        g_srv->close_nonzero++;
}

static void srv_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    server *s = ud;
    if (status == -ECANCELED && s->accepted == SCALE_N)
        return; /* the listener's final callback, from vigil_loop_destroy */
    VT_ASSERT(status == 0, "accept callback: status %d (%s) after %llu accepted", status, vigil_strerror(status),
              (unsigned long long)s->accepted);
    VT_ASSERT(s->accepted < SCALE_N, "more connections than clients");
    sconn *x = &s->side[s->accepted];
    s->accepted++;
    x->c = c;
    VT_OK(vigil_conn_set_data(loop, c, x));
    VT_OK(vigil_conn_recv_start(loop, c, 0, srv_recv, x, NULL));
}

typedef struct client {
    vigil_conn c;
    uint32_t seed;
    int connect_cbs, connect_status;
    size_t got, bad_at;
    int recv_finals;
    int closes, close_status;
} client;

static uint64_t g_connected, g_done, g_closed;

static void cl_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    client *k = ud;
    if (status <= 0) {
        k->recv_finals++;
        return;
    }
    size_t m = vt_check(b->data, b->len, k->seed, k->got);
    if (m != b->len && k->bad_at == SIZE_MAX)
        k->bad_at = k->got + m;
    k->got += b->len;
    if (k->got == MSG)
        g_done++;
}

static void cl_connected(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    client *k = ud;
    k->connect_cbs++;
    k->connect_status = status;
    if (status != 0)
        return;
    g_connected++;
    VT_OK(vigil_conn_recv_start(loop, c, 0, cl_recv, k, NULL));
    uint8_t msg[MSG];
    vt_fill(msg, MSG, k->seed, 0);
    VT_EQ(vigil_conn_send(loop, c, msg, MSG, 0, NULL, NULL, NULL), 0);
}

static void cl_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    client *k = ud;
    k->closes++;
    k->close_status = status;
    g_closed++;
}

VT_TEST(scale, thousands_of_connections_on_one_loop, 60) {
    enum { N = SCALE_N, BATCH = 1000 };
    long lim = vt_raise_nofile(20000);
    VT_ASSERT(lim >= 2 * N + 200, "RLIMIT_NOFILE %ld too low for %d connections", lim, N);
    vigil_loop *loop = vt_loop(NULL);
    server s = {0};
    s.side = calloc(N, sizeof(*s.side));
    g_srv = &s;
    int port;
    vt_listen(loop, srv_accept, &s, &port);
    client *k = calloc(N, sizeof(*k));
    for (int i = 0; i < N; i += BATCH) {
        int end = i + BATCH < N ? i + BATCH : N;
        for (int j = i; j < end; j++) {
            k[j].seed = (uint32_t)j;
            k[j].bad_at = SIZE_MAX;
            int rc = vigil_conn_connect(loop, "127.0.0.1", (uint16_t)port, 20000, cl_connected, &k[j], &k[j].c, NULL);
            VT_ASSERT(rc == 0, "vigil_conn_connect #%d: %d (%s)", j, rc, vigil_strerror(rc));
        }
        VT_ASSERT(vt_run_until_count(loop, &g_connected, (uint64_t)end, 20000), "batch %d: %llu connected", i,
                  (unsigned long long)g_connected);
        VT_ASSERT(vt_run_until_count(loop, &s.accepted, (uint64_t)end, 20000), "batch %d: %llu accepted", i,
                  (unsigned long long)s.accepted);
    }
    VT_ASSERT(vt_run_until_count(loop, &g_done, N, 20000), "echoed %llu of %d", (unsigned long long)g_done, N);
    vigil_loop_stats st;
    VT_OK(vigil_loop_get_stats(loop, &st));
    VT_EQ(st.connections, 2 * N);
    for (int i = 0; i < N; i++) {
        VT_EQ(k[i].connect_cbs, 1);
        VT_EQ(k[i].connect_status, 0);
        VT_EQ(k[i].got, MSG);
        VT_EQ(k[i].bad_at, SIZE_MAX);
        VT_OK(vigil_conn_close(loop, k[i].c, 10000, cl_closed, &k[i]));
    }
    VT_ASSERT(vt_run_until_count(loop, &g_closed, N, 20000), "client closes: %llu", (unsigned long long)g_closed);
    VT_ASSERT(vt_run_until_count(loop, &s.closed, N, 20000), "server closes: %llu", (unsigned long long)s.closed);
    vigil_loop_run(loop, VIGIL_RUN_NOWAIT, 0);
    for (int i = 0; i < N; i++) {
        VT_EQ(k[i].closes, 1);
        VT_EQ(k[i].close_status, 0);
        VT_EQ(k[i].recv_finals, 1);
        VT_EQ(s.side[i].closes, 1);
        VT_EQ(s.side[i].close_status, 0);
    }
    VT_EQ(s.accepted, N);
    VT_EQ(s.eofs, N);
    VT_EQ(s.errors, 0);
    VT_EQ(s.send_fail, 0);
    VT_EQ(s.close_nonzero, 0);
    VT_OK(vigil_loop_get_stats(loop, &st));
    VT_EQ(st.connections, 0);
    VT_OK(vigil_loop_destroy(loop));
    free(k);
    free(s.side);
}
