/*
 * link_test.c: the core (loop, tcp, udp, fence, rebuild, lookups, the pool)
 * built and linked for Windows with the IOCP backend as far as it goes.
 * Lines as iocp_probe.c prints them (check.h).
 */
#include "vigil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

/* A TCP echo on one loop: a listener, a client that sends 1 MiB in 64 KiB
 * pieces, every byte checked back, both sides closed gracefully. */
#define TOTAL (1u << 20)

static uint8_t pat(size_t i) { return (uint8_t)(i * 131 + (i >> 9)); }

typedef struct echo_run {
    vigil_conn client;
    int connected, closed, close_status, accepted;
    size_t got, bad;
} echo_run;

static void srv_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    if (status > 0)
        vigil_conn_send(loop, c, b->data, b->len, 0, NULL, NULL, NULL);
    else
        vigil_conn_close(loop, c, 5000, NULL, NULL);
}

static void srv_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    echo_run *r = ud;
    if (status == 0) {
        r->accepted++;
        vigil_conn_recv_start(loop, c, 0, srv_recv, NULL, NULL);
    }
}

static void cl_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    echo_run *r = ud;
    r->close_status = status;
    r->closed = 1;
}

static void cl_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    echo_run *r = ud;
    if (status <= 0)
        return;
    for (size_t i = 0; i < b->len; i++)
        r->bad += b->data[i] != pat(r->got + i);
    r->got += b->len;
    if (r->got == TOTAL)
        vigil_conn_close(loop, c, 5000, cl_closed, r);
}

static void cl_connected(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    echo_run *r = ud;
    r->connected = status ? status : 1;
    if (status)
        return;
    vigil_conn_recv_start(loop, c, 0, cl_recv, r, NULL);
    static uint8_t piece[65536];
    for (size_t off = 0; off < TOTAL; off += sizeof(piece)) {
        for (size_t i = 0; i < sizeof(piece); i++)
            piece[i] = pat(off + i);
        vigil_conn_send(loop, c, piece, sizeof(piece), 0, NULL, NULL, NULL);
    }
}

static void tcp_echo(void) {
    vigil_loop *loop = NULL;
    if (vigil_loop_create(&loop, NULL) != 0) {
        check("a TCP echo over the completion port", 0, "no loop");
        return;
    }
    echo_run r = {0};
    vigil_listener l;
    vigil_listener_options lo = {.host = "127.0.0.1"};
    int rc = vigil_listener_open(loop, &lo, srv_accept, &r, &l);
    int port = rc == 0 ? vigil_listener_get_port(loop, l) : rc;
    if (port > 0)
        rc = vigil_conn_connect(loop, "127.0.0.1", (uint16_t)port, 5000, cl_connected, &r, &r.client, NULL);
    uint64_t until = vigil_now_ns() + 20000000000ull;
    while (rc == 0 && !r.closed && vigil_now_ns() < until && r.connected >= 0)
        vigil_loop_run(loop, VIGIL_RUN_ONCE, 100);
    check("a TCP echo over the completion port: AcceptEx, ConnectEx, zero-byte reads, WSASend",
          rc == 0 && r.accepted == 1 && r.connected == 1 && r.got == TOTAL && r.bad == 0 && r.closed &&
              r.close_status == 0,
          "listen/connect %d, port %d, accepted %d, connected %d, %zu of %u bytes back, %zu wrong, closed %d (%d)",
          rc, port, r.accepted, r.connected, r.got, TOTAL, r.bad, r.closed, r.close_status);
    vigil_listener_close(loop, l);
    check("the loop with its listener is destroyed", vigil_loop_destroy(loop) == 0, "");
}

int main(void) {
    check_prefix = "core";
    check("the library links and knows its version", !strcmp(vigil_version(), VIGIL_VERSION_STRING), "%s",
          vigil_version());
    vigil_loop *loop = NULL;
    vigil_loop_options uring = {.backend = VIGIL_BACKEND_URING};
    int rc = vigil_loop_create(&loop, &uring);
    check("io_uring is refused on Windows", rc == -ENOTSUP && !loop, "%d", rc);
    rc = vigil_loop_create(&loop, NULL);
    vigil_loop_info info = {0};
    if (rc == 0)
        vigil_loop_get_info(loop, &info);
    check("a loop is created on the completion port", rc == 0 && info.backend && !strncmp(info.backend, "iocp", 4),
          "%d, %s (%s)", rc, info.backend ? info.backend : "-", info.reason ? info.reason : "-");
    if (rc == 0)
        check("it is destroyed", vigil_loop_destroy(loop) == 0, "");
    tcp_echo();
    vigil_loop_options bad = {.buf_count = 3};
    check("bad options are refused first", vigil_loop_create(&loop, &bad) == -EINVAL, "");
    check("calls on no loop are refused", vigil_loop_run(NULL, VIGIL_RUN_ONCE, 0) == -EINVAL &&
          vigil_loop_destroy(NULL) == -EINVAL, "");
    vigil_addr p;
    char host[64];
    uint16_t port = 0;
    int pr = vigil_addr_parse(&p, "::1", 9);
    int tr = pr == 0 ? vigil_addr_format(&p, host, sizeof(host), &port) : pr;
    check("addresses round-trip", pr == 0 && tr == 0 && !strcmp(host, "::1") && port == 9, "%d %d %s", pr, tr,
          host);
    return check_done();
}
