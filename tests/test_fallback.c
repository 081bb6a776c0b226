/* test_fallback.c: backend selection when io_uring is denied. Meant to run
 * three times (tests/fallback.sh does it): plainly, and under
 * `deny_uring eperm` / `deny_uring enosys` with VIGIL_EXPECT_DENIED=EPERM or
 * ENOSYS. Without VIGIL_EXPECT_DENIED every test expects io_uring, except in
 * a build without it (-During=disabled: epoll, and -ENOTSUP when forced). The loops
 * here are created with an explicit backend (not vt_loop), since the choice
 * is what is under test; VIGIL_BACKEND is cleared so AUTO really is auto. */
#include "util.h"
#include "vt.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MIB ((size_t)1024 * 1024)

/* The denial this run is under: 0 (none), EPERM or ENOSYS; *name gets its name. */
static int expected_denial(const char **name) {
    const char *e = getenv("VIGIL_EXPECT_DENIED");
    *name = e;
    if (!e || !*e)
        return 0;
    if (!strcmp(e, "EPERM"))
        return EPERM;
    if (!strcmp(e, "ENOSYS"))
        return ENOSYS;
    VT_ASSERT(0, "VIGIL_EXPECT_DENIED must be EPERM or ENOSYS, not '%s'", e);
    return 0;
}

static void clear_backend_env(void) {
    const char *b = getenv("VIGIL_BACKEND");
    if (b && *b)
        VT_LOG("ignoring VIGIL_BACKEND=%s: these tests choose the backend themselves", b);
    unsetenv("VIGIL_BACKEND");
}

static vigil_loop *auto_loop(void) {
    clear_backend_env();
    vigil_loop_options o = {.backend = VIGIL_BACKEND_AUTO};
    vigil_loop *loop = NULL;
    int rc = vigil_loop_create(&loop, &o);
    VT_ASSERT(rc == 0, "vigil_loop_create(AUTO): %d (%s)", rc, vigil_strerror(rc));
    VT_ASSERT(loop != NULL);
    return loop;
}

/* Asserts the loop runs on the backend this run expects. */
static void expect_backend(vigil_loop *loop, vigil_loop_info *info) {
    const char *name;
    int denied = expected_denial(&name);
    VT_OK(vigil_loop_get_info(loop, info));
    VT_ASSERT(info->backend != NULL && info->reason != NULL, "info has no backend or reason");
    const char *want = denied || !vt_have_uring() ? "epoll" : "io_uring";
    VT_ASSERT(!strcmp(info->backend, want), "backend '%s' (reason '%s'), expected '%s' (%s)",
              info->backend, info->reason, want,
              denied ? name : vt_have_uring() ? "io_uring not denied" : "io_uring not built in");
}

VT_TEST(fallback, auto_picks_epoll_and_says_why, 10) {
    const char *name;
    int denied = expected_denial(&name);
    vigil_loop *loop = auto_loop();
    vigil_loop_info info;
    expect_backend(loop, &info);
    VT_LOG("backend %s: %s", info.backend, info.reason);
    if (denied)
        VT_ASSERT(strstr(info.reason, name) != NULL,
                  "reason '%s' does not name the denied errno %s", info.reason, name);
    if (!vt_have_uring()) /* -During=disabled: AUTO must say why it is epoll */
        VT_ASSERT(strstr(info.reason, "not built in") != NULL,
                  "reason '%s' does not say io_uring is not built in", info.reason);
    VT_OK(vigil_loop_destroy(loop));
}

VT_TEST(fallback, forcing_uring_fails_clearly, 10) {
    const char *name;
    int denied = expected_denial(&name);
    clear_backend_env();
    vigil_loop_options o = {.backend = VIGIL_BACKEND_URING};
    vigil_loop *loop = (vigil_loop *)&o; /* must be reset to NULL on failure */
    int rc = vigil_loop_create(&loop, &o);
    if (!vt_have_uring()) { /* -During=disabled: asked for by name, io_uring is not supported */
        VT_ASSERT(rc == -ENOTSUP, "vigil_loop_create(URING) without io_uring built in: %d (%s), "
                  "expected %d", rc, vigil_strerror(rc), -ENOTSUP);
        VT_ASSERT(loop == NULL, "failed create left *out set");
        return;
    }
    if (denied) {
        VT_ASSERT(rc == -denied, "vigil_loop_create(URING) under %s: %d (%s), expected %d", name,
                  rc, vigil_strerror(rc), -denied);
        VT_ASSERT(loop == NULL, "failed create left *out set");
        const char *msg = vigil_strerror(rc);
        VT_ASSERT(msg != NULL && *msg, "no description for %d", rc);
        VT_LOG("forced io_uring under %s: %d (%s)", name, rc, msg);
        return;
    }
    VT_ASSERT(rc == 0, "vigil_loop_create(URING): %d (%s)", rc, vigil_strerror(rc));
    vigil_loop_info info;
    VT_OK(vigil_loop_get_info(loop, &info));
    VT_ASSERT(info.backend && !strcmp(info.backend, "io_uring"), "backend '%s'", info.backend);
    VT_OK(vigil_loop_destroy(loop));
}

/* ------------------------------------------------------ 1 MiB echo */

typedef struct srv {
    uint64_t accepted, bytes, eofs, errors, closed, close_nonzero, send_fail;
    int accept_err;
} srv;

static void srv_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    srv *s = ud;
    s->closed++;
    if (status != 0)
        s->close_nonzero++;
}

static void srv_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    srv *s = ud;
    if (status > 0) {
        s->bytes += (uint64_t)status;
        if (vigil_conn_send(loop, c, b->data, b->len, 0, NULL, NULL, NULL) < 0)
            s->send_fail++;
        return;
    }
    if (status == 0)
        s->eofs++;
    else
        s->errors++;
    if (status != -ECANCELED && vigil_conn_close(loop, c, 10000, srv_closed, s) < 0)
        s->errors++;
}

static void srv_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    srv *s = ud;
    if (status < 0) {
        s->accept_err = status;
        return;
    }
    s->accepted++;
    if (vigil_conn_recv_start(loop, c, 0, srv_recv, s, NULL) < 0)
        s->errors++;
}

/* A plain peer on its own thread: writes len bytes of pattern and reads the
 * echo at the same time (non-blocking, poll), so neither side's buffers can
 * deadlock it, then half-closes and waits for EOF. No asserts here. */
typedef struct peer {
    int fd;
    size_t len;
    uint32_t seed;
    size_t sent, got, bad_at;
    int err, eof_after, timed_out;
    int done;
} peer;

static void *peer_main(void *arg) {
    peer *p = arg;
    uint8_t *out = malloc(p->len), *in = malloc(64 * 1024);
    p->bad_at = SIZE_MAX;
    if (!out || !in) {
        p->err = ENOMEM;
        goto end;
    }
    vt_fill(out, p->len, p->seed, 0);
    fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK);
    uint64_t until = vigil_now_ns() + 20000ull * 1000000ull;
    int shut = 0;
    for (;;) {
        if (p->sent == p->len && !shut) {
            shutdown(p->fd, SHUT_WR);
            shut = 1;
        }
        if (vigil_now_ns() >= until) {
            p->timed_out = 1;
            break;
        }
        struct pollfd pf = {.fd = p->fd, .events = POLLIN | (p->sent < p->len ? POLLOUT : 0)};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        if (p->sent < p->len && (pf.revents & POLLOUT)) {
            size_t n = p->len - p->sent < 65536 ? p->len - p->sent : 65536;
            ssize_t w = send(p->fd, out + p->sent, n, MSG_NOSIGNAL);
            if (w > 0)
                p->sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                p->err = errno;
                break;
            }
        }
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(p->fd, in, 64 * 1024, 0);
            if (r == 0) {
                p->eof_after = 1;
                break;
            }
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    continue;
                p->err = errno;
                break;
            }
            if (p->bad_at == SIZE_MAX) {
                size_t k = vt_check(in, (size_t)r, p->seed, p->got);
                if (k != (size_t)r)
                    p->bad_at = p->got + k;
            }
            p->got += (size_t)r;
        }
    }
end:
    free(out);
    free(in);
    vt_sock_close(p->fd);
    __atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

VT_TEST(fallback, echo_works_on_fallback, 30) {
    vigil_loop *loop = auto_loop();
    vigil_loop_info info;
    expect_backend(loop, &info);
    srv s = {0};
    int port = 0;
    vigil_listener l = vt_listen(loop, srv_accept, &s, &port);
    peer p = {.fd = vt_sock_connect(port), .len = MIB, .seed = 0xFA11};
    pthread_t th;
    VT_EQ(pthread_create(&th, NULL, peer_main, &p), 0);
    /* the peer gives up by itself after 20 s, so the join cannot hang */
    bool finished = vt_run_until(loop, &p.done, 25000);
    pthread_join(th, NULL);
    VT_ASSERT(finished, "peer did not finish: sent %zu, got %zu of %zu", p.sent, p.got, p.len);
    VT_EQ(p.err, 0);
    VT_EQ(p.timed_out, 0);
    VT_EQ(p.sent, MIB);
    VT_EQ(p.got, MIB);
    VT_ASSERT(p.bad_at == SIZE_MAX, "echo differs from what was sent at byte %zu", p.bad_at);
    VT_EQ(p.eof_after, 1);
    VT_ASSERT(vt_run_until_count(loop, &s.closed, 1, 5000), "server side did not close after EOF");
    VT_EQ(s.accepted, 1);
    VT_EQ(s.accept_err, 0);
    VT_EQ(s.bytes, MIB);
    VT_EQ(s.eofs, 1);
    VT_EQ(s.errors, 0);
    VT_EQ(s.send_fail, 0);
    VT_EQ(s.close_nonzero, 0);
    VT_OK(vigil_listener_close(loop, l));
    VT_OK(vigil_loop_destroy(loop));
}
