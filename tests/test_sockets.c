/* test_sockets.c: Unix-domain stream sockets, sockets adopted from the
 * application (a listening socket, as systemd socket activation hands one
 * over, and connected ones), and socket options, on every backend. */
#include "util.h"
#include "vt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* An echo server: every byte back on the connection it came from. */
static void echo_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    if (status > 0)
        VT_ASSERT(vigil_conn_send(loop, c, b->data, b->len, 0, NULL, NULL, NULL) >= 0);
    else
        vigil_conn_close(loop, c, 0, NULL, NULL);
}

static void echo_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    if (status == 0) {
        if (ud)
            atomic_fetch_add((_Atomic int *)ud, 1);
        VT_OK(vigil_conn_recv_start(loop, c, 0, echo_recv, NULL, NULL));
    }
}

/* A client in the loop: sends `total` pattern bytes, checks every byte back. */
typedef struct client {
    vigil_conn c;
    size_t total, sent, got;
    size_t bad_at;
    int connect_status;
    int closed, close_status;
    uint8_t *out;
} client;

static void cl_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    client *cl = ud;
    cl->close_status = status;
    cl->closed = 1;
}

static void cl_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    client *cl = ud;
    if (status <= 0)
        return;
    size_t bad = vt_check(b->data, b->len, 9, cl->got);
    if (bad != b->len && cl->bad_at == SIZE_MAX)
        cl->bad_at = cl->got + bad;
    cl->got += b->len;
    if (cl->got == cl->total)
        vigil_conn_close(loop, c, 0, cl_closed, cl);
}

static void cl_connected(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    client *cl = ud;
    cl->connect_status = status ? status : 1;
    if (status)
        return;
    VT_OK(vigil_conn_recv_start(loop, c, 0, cl_recv, cl, NULL));
    for (size_t off = 0; off < cl->total; off += 65536) {
        size_t n = cl->total - off < 65536 ? cl->total - off : 65536;
        VT_ASSERT(vigil_conn_send(loop, c, cl->out + off, n, 0, NULL, NULL, NULL) >= 0);
    }
}

static void client_init(client *cl, size_t total) {
    memset(cl, 0, sizeof(*cl));
    cl->total = total;
    cl->bad_at = SIZE_MAX;
    cl->out = malloc(total);
    VT_ASSERT(cl->out != NULL);
    vt_fill(cl->out, total, 9, 0);
}

static void client_check(vigil_loop *loop, client *cl) {
    VT_ASSERT(vt_run_until(loop, &cl->closed, 20000), "echo: %zu of %zu bytes back", cl->got, cl->total);
    VT_EQ(cl->got, cl->total);
    VT_ASSERT(cl->bad_at == SIZE_MAX, "first wrong byte at %zu", cl->bad_at);
    VT_EQ(cl->close_status, 0);
    free(cl->out);
}

VT_TEST(sockets, unix_stream_echo, 30) {
    vigil_loop *loop = vt_loop(NULL);
    char path[108];
    snprintf(path, sizeof(path), "/tmp/vigil-unix-%d.sock", (int)getpid());
    unlink(path);
    vigil_listener l;
    vigil_listener_options lo = {.path = path};
    VT_OK(vigil_listener_open(loop, &lo, echo_accept, NULL, &l));
    VT_EQ(vigil_listener_get_port(loop, l), -EAFNOSUPPORT);
    VT_EQ(vigil_listener_open(loop, &lo, echo_accept, NULL, &l), -EADDRINUSE); /* the file is there */
    client cl;
    client_init(&cl, 4u << 20);
    VT_OK(vigil_conn_connect_unix(loop, path, 5000, cl_connected, &cl, &cl.c, NULL));
    client_check(loop, &cl);
    VT_EQ(cl.connect_status, 1);
    int v;
    VT_EQ(vigil_conn_get_option(loop, cl.c, VIGIL_OPT_NODELAY, &v), -EBADF); /* closed */
    VT_OK(vigil_listener_close(loop, l));
    VT_OK(vigil_loop_destroy(loop));
    unlink(path);
}

VT_TEST(sockets, unix_abstract_namespace_and_errors, 20) {
    vigil_loop *loop = vt_loop(NULL);
    char name[64];
    snprintf(name, sizeof(name), "@vigil-test-%d", (int)getpid());
    vigil_listener l;
    vigil_listener_options lo = {.path = name};
    VT_OK(vigil_listener_open(loop, &lo, echo_accept, NULL, &l));
    client cl;
    client_init(&cl, 100000);
    VT_OK(vigil_conn_connect_unix(loop, name, 5000, cl_connected, &cl, &cl.c, NULL));
    client_check(loop, &cl);

    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = 0;
    vigil_listener_options bad = {.path = longp};
    VT_EQ(vigil_listener_open(loop, &bad, echo_accept, NULL, &l), -ENAMETOOLONG);
    vigil_listener_options empty = {.path = ""};
    VT_EQ(vigil_listener_open(loop, &empty, echo_accept, NULL, &l), -EINVAL);
    vigil_listener_options rp = {.path = "/tmp/vigil-never", .reuseport = 1};
    VT_EQ(vigil_listener_open(loop, &rp, echo_accept, NULL, &l), -EINVAL);
    vigil_conn c;
    VT_EQ(vigil_conn_connect_unix(loop, longp, 0, cl_connected, &cl, &c, NULL), -ENAMETOOLONG);
    VT_EQ(vigil_conn_connect_unix(loop, NULL, 0, cl_connected, &cl, &c, NULL), -EINVAL);
    /* nobody at the path: the connect callback says so */
    client miss;
    memset(&miss, 0, sizeof(miss));
    VT_OK(vigil_conn_connect_unix(loop, "/tmp/vigil-nobody-here.sock", 0, cl_connected, &miss, &miss.c, NULL));
    VT_ASSERT(vt_run_until(loop, &miss.connect_status, 5000));
    VT_EQ(miss.connect_status, -ENOENT);
    VT_OK(vigil_loop_destroy(loop));
}

/* A listening socket made by the application, blocking, as systemd would
 * pass it: vigil takes it over and serves it. */
VT_TEST(sockets, adopted_listener_serves, 20) {
    vigil_loop *loop = vt_loop(NULL);
    int lfd = socket(AF_INET, SOCK_STREAM, 0); /* blocking, inheritable: vigil fixes both */
    VT_ASSERT(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    VT_EQ(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    VT_EQ(listen(lfd, 16), 0);
    socklen_t sl = sizeof(sa);
    VT_EQ(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    _Atomic int accepted = 0;
    vigil_listener l;
    VT_OK(vigil_listener_adopt(loop, lfd, echo_accept, (void *)&accepted, &l));
    VT_ASSERT(fcntl(lfd, F_GETFL) & O_NONBLOCK, "adopted listener is non-blocking");
    VT_ASSERT(fcntl(lfd, F_GETFD) & FD_CLOEXEC, "adopted listener is close-on-exec");
    VT_EQ(vigil_listener_get_port(loop, l), ntohs(sa.sin_port));
    client cl;
    client_init(&cl, 1u << 20);
    VT_OK(vigil_conn_connect(loop, "127.0.0.1", ntohs(sa.sin_port), 5000, cl_connected, &cl, &cl.c, NULL));
    client_check(loop, &cl);
    VT_EQ(atomic_load(&accepted), 1);
    VT_OK(vigil_listener_close(loop, l));
    vt_run_until(loop, &(int){0}, 50);
    VT_EQ(fcntl(lfd, F_GETFD), -1); /* closed with its listener */
    VT_OK(vigil_loop_destroy(loop));
}

/* Connected sockets from elsewhere: one end of a socketpair, adopted, talks
 * to a plain peer on the other end. */
static void pair_sent(vigil_loop *loop, vigil_conn c, int status, void *ud) { *(int *)ud += status; }

static void pair_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    if (status > 0)
        VT_OK(vigil_conn_send(loop, c, b->data, b->len, 0, pair_sent, ud, NULL));
}

VT_TEST(sockets, adopted_connection_and_refusals, 20) {
    vigil_loop *loop = vt_loop(NULL);
    int sp[2];
    VT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    vigil_conn c;
    VT_OK(vigil_conn_adopt(loop, sp[0], &c));
    int got = 0;
    VT_OK(vigil_conn_recv_start(loop, c, 0, pair_recv, &got, NULL));
    VT_EQ(write(sp[1], "ping", 4), 4);
    uint64_t t0 = vigil_now_ns();
    while (got < 4 && vigil_now_ns() - t0 < 5000000000ull)
        vigil_loop_run(loop, VIGIL_RUN_ONCE, 50);
    VT_EQ(got, 4); /* echoed and confirmed sent */
    char back[4];
    VT_EQ(vt_sock_read_n(sp[1], back, 4, 5000), 4);
    VT_EQ(memcmp(back, "ping", 4), 0);
    VT_EQ(vigil_conn_set_option(loop, c, VIGIL_OPT_NODELAY, 1), -EOPNOTSUPP);

    /* what cannot be adopted stays the caller's, open */
    int p[2];
    VT_EQ(pipe(p), 0);
    vigil_listener l;
    VT_EQ(vigil_conn_adopt(loop, p[0], &c), -ENOTSOCK);
    VT_EQ(vigil_listener_adopt(loop, p[0], echo_accept, NULL, &l), -ENOTSOCK);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    VT_EQ(vigil_conn_adopt(loop, udp, &c), -EPROTOTYPE);
    int fresh = socket(AF_INET, SOCK_STREAM, 0);
    VT_EQ(vigil_conn_adopt(loop, fresh, &c), -ENOTCONN);
    VT_EQ(vigil_listener_adopt(loop, fresh, echo_accept, NULL, &l), -EINVAL); /* not listening */
    VT_EQ(vigil_conn_adopt(loop, -1, &c), -EBADF);
    int fds[] = {p[0], udp, fresh};
    for (int i = 0; i < 3; i++)
        VT_ASSERT(fcntl(fds[i], F_GETFD) >= 0, "refused fd %d was closed", fds[i]);
    close(p[0]);
    close(p[1]);
    close(udp);
    close(fresh);
    VT_OK(vigil_loop_destroy(loop));
    VT_EQ(fcntl(sp[0], F_GETFD), -1); /* vigil owned it: closed on destroy */
    close(sp[1]);
}

static void opt_connected(vigil_loop *loop, vigil_conn c, int status, void *ud) { *(int *)ud = status ? status : 1; }

VT_TEST(sockets, tcp_options, 20) {
    vigil_loop *loop = vt_loop(NULL);
    int port;
    vt_listen(loop, echo_accept, NULL, &port);
    int done = 0;
    vigil_conn c;
    VT_OK(vigil_conn_connect(loop, "127.0.0.1", (uint16_t)port, 5000, opt_connected, &done, &c, NULL));
    VT_ASSERT(vt_run_until(loop, &done, 5000));
    VT_EQ(done, 1);
    int v = -1;
    VT_OK(vigil_conn_get_option(loop, c, VIGIL_OPT_NODELAY, &v));
    VT_EQ(v, 1); /* vigil's default */
    VT_OK(vigil_conn_set_option(loop, c, VIGIL_OPT_NODELAY, 0));
    VT_OK(vigil_conn_get_option(loop, c, VIGIL_OPT_NODELAY, &v));
    VT_EQ(v, 0);
    VT_OK(vigil_conn_set_option(loop, c, VIGIL_OPT_SNDBUF, 65536));
    VT_OK(vigil_conn_get_option(loop, c, VIGIL_OPT_SNDBUF, &v));
    VT_ASSERT(v >= 65536, "SO_SNDBUF %d", v);
    VT_OK(vigil_conn_set_option(loop, c, VIGIL_OPT_RCVBUF, 32768));
    VT_OK(vigil_conn_get_option(loop, c, VIGIL_OPT_RCVBUF, &v));
    VT_ASSERT(v >= 32768, "SO_RCVBUF %d", v);
    VT_EQ(vigil_conn_set_option(loop, c, 99, 1), -EINVAL);
    VT_EQ(vigil_conn_set_option(loop, c, VIGIL_OPT_SNDBUF, -1), -EINVAL);
    VT_EQ(vigil_conn_get_option(loop, c, VIGIL_OPT_SNDBUF, NULL), -EINVAL);
    VT_EQ(vigil_conn_set_option(loop, (vigil_conn){12345}, VIGIL_OPT_NODELAY, 1), -EBADF);
    VT_OK(vigil_conn_abort(loop, c, NULL, NULL));
    VT_OK(vigil_loop_destroy(loop));
}

/* A rebuild under a Unix-socket echo: the streams move over whole. The
 * client is a plain thread (it must not be on the loop that is fenced). */

typedef struct unix_peer {
    char path[108];
    _Atomic int go, done;
    size_t got, bad_at;
} unix_peer;

static void *unix_peer_main(void *arg) {
    unix_peer *p = arg;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", p->path);
    VT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    while (!atomic_load(&p->go))
        usleep(1000);
    static uint8_t out[1 << 16], in[1 << 16];
    p->bad_at = SIZE_MAX;
    for (size_t off = 0; off < (64u << 20); off += sizeof(out)) {
        vt_fill(out, sizeof(out), 3, off);
        if (vt_sock_write_all(fd, out, sizeof(out)) < 0)
            break;
        size_t n = vt_sock_read_n(fd, in, sizeof(in), 10000);
        if (n != sizeof(in))
            break;
        size_t bad = vt_check(in, n, 3, off);
        if (bad != n && p->bad_at == SIZE_MAX)
            p->bad_at = off + bad;
        p->got += n;
    }
    close(fd);
    atomic_store(&p->done, 1);
    return NULL;
}

static void unix_stop_when_done(vigil_loop *loop, vigil_op t, int status, void *ud) {
    if (status == 0 && atomic_load(&((unix_peer *)ud)->done))
        vigil_loop_stop(loop);
}

VT_TEST(sockets, unix_streams_move_over_a_rebuild, 60) {
    vigil_supervisor *sv;
    vigil_loop *loop = vt_fenceable_loop(&sv);
    static unix_peer p;
    memset(&p, 0, sizeof(p));
    snprintf(p.path, sizeof(p.path), "/tmp/vigil-unix-rb-%d.sock", (int)getpid());
    unlink(p.path);
    vigil_listener l;
    vigil_listener_options lo = {.path = p.path};
    VT_OK(vigil_listener_open(loop, &lo, echo_accept, NULL, &l));
    pthread_t t;
    VT_EQ(pthread_create(&t, NULL, unix_peer_main, &p), 0);
    VT_OK(vigil_timer_start(loop, 15, 0, vt_fence_timer, NULL, NULL));
    VT_OK(vigil_timer_start(loop, 10, 10, unix_stop_when_done, &p, NULL));
    atomic_store(&p.go, 1);
    /* fenced in a callback, this thread waits for the rebuilt loop to stop */
    int rc = vigil_loop_run(loop, VIGIL_RUN_DEFAULT, 30000);
    VT_ASSERT(rc == 1, "run: %d, peer done %d with %zu bytes", rc, atomic_load(&p.done), p.got);
    VT_OK(vigil_loop_join(loop, 30000));
    pthread_join(t, NULL);
    vigil_loop_stats ls;
    VT_OK(vigil_loop_get_stats(loop, &ls));
    VT_EQ(ls.rebuilds, 1);
    VT_EQ(ls.conns_migrated, 1);
    VT_EQ(p.got, 64u << 20);
    VT_ASSERT(p.bad_at == SIZE_MAX, "first wrong byte at %zu", p.bad_at);
    VT_OK(vigil_supervisor_remove(sv, loop));
    VT_OK(vigil_supervisor_stop(sv));
    VT_OK(vigil_loop_destroy(loop));
    unlink(p.path);
}
