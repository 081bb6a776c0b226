/* test_rebuild.c: fence a stuck loop thread and rebuild the loop on a new
 * thread and backend, with every connection and byte carried over.
 *
 * The server is a vigil echo loop under a supervisor. The clients are plain
 * non-blocking sockets driven by poll() on a thread of their own: each
 * connection streams a deterministic pattern with a window in flight and
 * checks every byte that comes back, so loss, duplication and reordering all
 * show up as mismatches or missing bytes. Server state that the stuck
 * thread and the rebuilt one could both touch is atomic; everything else
 * belongs to one connection, whose events the rebuild holds back until its
 * stuck callback returned (or the grace period passed). */
#include "core/debug.h"
#include "util.h"
#include "vt.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#define MSG_NOSIGNAL 0
#else
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#endif


static uint64_t ms_since(uint64_t t0) { return (vigil_now_ns() - t0) / 1000000ull; }

/* ------------------------------------------------------------ the server */

enum { STALL_NONE, STALL_FORCED, STALL_SPIN, STALL_HANG };

typedef struct server {
    vigil_loop *loop;
    vigil_listener l;
    int port;
    _Atomic uint64_t recv_cbs, accepted, echoed, send_errs, owner_dead, resets, io_errors;
    _Atomic int overflow_once;    /* forced: the first fence finds the CQ overflowed */
    _Atomic int stall_kind;       /* what the next stalling callback does */
    _Atomic uint64_t stall_every; /* forced: every Nth receive callback */
    _Atomic uint64_t stall_ms;    /* spin: how long */
    _Atomic int stall_armed;      /* spin/hang: the next receive callback stalls */
    _Atomic int stalls_done, fenced_seen;
    vt_blocker hang;              /* hang: a wait that only the test ends */
} server;

static void srv_drain(vigil_loop *loop, vigil_conn c, void *ud) { vigil_conn_recv_resume(loop, c); }

static void srv_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {}

/* Exported so that a stall report's backtrace can name them. */
void vigil_test_rebuild_spin(server *s, uint64_t ms);
__attribute__((noinline)) void vigil_test_rebuild_spin(server *s, uint64_t ms) {
    uint64_t until = vigil_now_ns() + ms * 1000000ull;
    while (vigil_now_ns() < until)
        ;
    if (vigil__debug_fenced(s->loop))
        atomic_fetch_add(&s->fenced_seen, 1);
}

void vigil_test_rebuild_hang(server *s);
__attribute__((noinline)) void vigil_test_rebuild_hang(server *s) {
    while (vt_blocker_wait_once(&s->hang) < 0 && errno == EINTR)
        ; /* retried when interrupted: only a rebuild gets the loop going */
}

/* After echoing, a callback may stall on purpose. */
static void maybe_stall(server *s, vigil_loop *loop) {
    int kind = atomic_load(&s->stall_kind);
    if (kind == STALL_FORCED) {
        uint64_t n = atomic_fetch_add(&s->recv_cbs, 1) + 1;
        uint64_t every = atomic_load(&s->stall_every);
        if (!every || n % every)
            return;
        /* a completion for an op that is gone, in flight at the fence: the
         * rebuild must drop it; then, as if stuck: the supervisor fences
         * this thread at once */
        vigil__debug_stale_completion(loop);
        if (atomic_exchange(&s->overflow_once, 0))
            vigil__debug_overflow_at_fence(loop);
        vigil__debug_request_fence(loop);
        uint64_t t0 = vigil_now_ns();
        while (!vigil__debug_fenced(loop) && ms_since(t0) < 2000)
            ;
        if (vigil__debug_fenced(loop))
            atomic_fetch_add(&s->fenced_seen, 1);
        return; /* into a fenced loop: vigil leaves from here */
    }
    if (kind == STALL_NONE || !atomic_exchange(&s->stall_armed, 0))
        return;
    atomic_fetch_add(&s->stalls_done, 1);
    if (kind == STALL_SPIN)
        vigil_test_rebuild_spin(s, atomic_load(&s->stall_ms));
    else
        vigil_test_rebuild_hang(s);
}

static void srv_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    server *s = ud;
    if (status <= 0) {
        if (status == -EOWNERDEAD)
            atomic_fetch_add(&s->resets, 1);
        if (status == -EIO)
            atomic_fetch_add(&s->io_errors, 1);
        if (getenv("VIGIL_TEST_VERBOSE"))
            fprintf(stderr, "server receive ended: %d\n", status);
        vigil_conn_abort(loop, c, srv_closed, NULL);
        return;
    }
    int rc = vigil_conn_send(loop, c, b->data, b->len, 0, NULL, NULL, NULL);
    if (rc == 1)
        vigil_conn_recv_pause(loop, c); /* backpressure: resumed by srv_drain */
    else if (rc < 0) {
        atomic_fetch_add(rc == -EOWNERDEAD ? &s->owner_dead : &s->send_errs, 1);
        return; /* -EOWNERDEAD: fenced, touch nothing more */
    }
    atomic_fetch_add(&s->echoed, (uint64_t)b->len);
    maybe_stall(s, loop);
}

static void srv_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    server *s = ud;
    if (status < 0)
        return;
    atomic_fetch_add(&s->accepted, 1);
    vigil_conn_set_watermark(loop, c, 1 << 20, 256 << 10, srv_drain, s);
    if (vigil_conn_recv_start(loop, c, 0, srv_recv, s, NULL) < 0)
        vigil_conn_abort(loop, c, srv_closed, NULL);
}

/* The loop under test. On uring-compat (no DEFER_TASKRUN) a supervised loop
 * goes to epoll: a rebuild of such a ring could not be exact. */
/* The echo server's connections share nothing but atomic counters, so its
 * callbacks may run beside a fenced one (without the flag the gate would hold
 * them: test_gate.c). */
static vigil_loop *supervised_loop(void) { return vt_supervised_loop(VIGIL_LOOP_INDEPENDENT_CALLBACKS); }

/* ----------------------------------------------------------- the clients */

#define MAX_CLIENTS 128
typedef struct client {
    int fd;
    uint32_t seed;
    uint64_t sent, recvd, bad;
    uint64_t last_rx_ns, max_gap_ns;
    uint64_t first_bad_at, first_bad_len; /* stream offset + 1 of the first bad read */
    int dead, err;
} client;

typedef struct clients {
    int n, port;
    uint64_t window;
    client c[MAX_CLIENTS];
    _Atomic int stop;  /* stop sending, drain, then end */
    _Atomic int done;
    uint64_t mismatches, lost, dead;
    uint64_t gap_ms[MAX_CLIENTS]; /* longest wait of each, sorted after the run */
} clients;

static void *clients_main(void *arg) {
    clients *cs = arg;
    uint8_t wbuf[16384], rbuf[65536], want[65536];
    struct pollfd pf[MAX_CLIENTS];
    uint64_t drain_until = 0;
    for (;;) {
        bool stopping = atomic_load(&cs->stop);
        uint64_t now = vigil_now_ns();
        if (stopping && !drain_until)
            drain_until = now + 5000000000ull;
        bool all_back = true;
        for (int i = 0; i < cs->n; i++) {
            client *c = &cs->c[i];
            pf[i].fd = c->dead ? -1 : c->fd;
            pf[i].events = POLLIN | (!stopping && c->sent - c->recvd < cs->window ? POLLOUT : 0);
            pf[i].revents = 0;
            if (!c->dead && c->recvd < c->sent)
                all_back = false;
        }
        if (stopping && (all_back || now >= drain_until))
            break;
        if (vt_poll(pf, (unsigned)cs->n, 20) < 0 && vt_sock_error() != EINTR)
            break;
        now = vigil_now_ns();
        for (int i = 0; i < cs->n; i++) {
            client *c = &cs->c[i];
            if (c->dead)
                continue;
            if (pf[i].revents & POLLOUT) {
                uint64_t room = cs->window - (c->sent - c->recvd);
                size_t len = room < sizeof(wbuf) ? (size_t)room : sizeof(wbuf);
                vt_fill(wbuf, len, c->seed, c->sent);
                ssize_t w = send(c->fd, wbuf, len, MSG_NOSIGNAL);
                if (w > 0) {
                    if (c->sent == c->recvd)
                        c->last_rx_ns = now; /* a wait starts */
                    c->sent += (uint64_t)w;
                } else if (w < 0 && vt_sock_error() != EAGAIN) {
                    c->dead = 1, c->err = vt_sock_error();
                }
            }
            if (pf[i].revents & (POLLIN | POLLERR | POLLHUP)) {
                ssize_t r = recv(c->fd, rbuf, sizeof(rbuf), 0);
                if (r > 0) {
                    size_t valid = c->recvd >= c->sent ? 0
                                   : c->recvd + (uint64_t)r > c->sent ? (size_t)(c->sent - c->recvd)
                                                                     : (size_t)r;
                    c->bad += (uint64_t)r - valid; /* more than was sent */
                    vt_fill(want, valid, c->seed, c->recvd);
                    for (size_t k = 0; k < valid; k++)
                        c->bad += rbuf[k] != want[k];
                    if (c->bad && !c->first_bad_at) {
                        c->first_bad_at = c->recvd + 1;
                        c->first_bad_len = (uint64_t)r;
                    }
                    c->recvd += (uint64_t)r;
                    if (!stopping && now - c->last_rx_ns > c->max_gap_ns)
                        c->max_gap_ns = now - c->last_rx_ns;
                    c->last_rx_ns = now;
                } else if (r == 0 || vt_sock_error() != EAGAIN) {
                    c->dead = 1, c->err = r == 0 ? 0 : vt_sock_error();
                }
            }
        }
    }
    for (int i = 0; i < cs->n; i++) {
        client *c = &cs->c[i];
        cs->mismatches += c->bad;
        if (c->bad)
            fprintf(stderr, "client %d: %llu bad bytes, first in the read at %llu (%llu bytes); sent %llu "
                    "received %llu\n", i, (unsigned long long)c->bad, (unsigned long long)c->first_bad_at - 1,
                    (unsigned long long)c->first_bad_len, (unsigned long long)c->sent,
                    (unsigned long long)c->recvd);
        if (c->dead) {
            cs->dead++;
            if (cs->dead <= 3) /* why, for a failure */
                fprintf(stderr, "client %d died: error %d after %llu sent, %llu received\n", i, c->err,
                        (unsigned long long)c->sent, (unsigned long long)c->recvd);
        }
        else if (c->sent > c->recvd)
            cs->lost += c->sent - c->recvd;
        cs->gap_ms[i] = c->max_gap_ns / 1000000ull;
    }
    for (int i = 1; i < cs->n; i++) /* sort the gaps (insertion: n is small) */
        for (int j = i; j > 0 && cs->gap_ms[j - 1] > cs->gap_ms[j]; j--) {
            uint64_t t = cs->gap_ms[j];
            cs->gap_ms[j] = cs->gap_ms[j - 1];
            cs->gap_ms[j - 1] = t;
        }
    atomic_store(&cs->done, 1);
    return NULL;
}

static void clients_connect(clients *cs, int n, int port, uint64_t window) {
    cs->n = n;
    cs->port = port;
    cs->window = window;
    for (int i = 0; i < n; i++) {
        client *c = &cs->c[i];
        c->fd = vt_sock_connect(port);
        c->seed = 1000u + (uint32_t)i;
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, (const void *)&one, sizeof(one));
        vt_sock_nonblock(c->fd);
    }
}

static void clients_close(clients *cs) {
    for (int i = 0; i < cs->n; i++)
        vt_sock_close(cs->c[i].fd);
}

/* ------------------------------------------------------------ a scenario */

typedef struct scenario {
    int conns;
    uint64_t window;
    uint32_t stall_ms;     /* supervisor */
    uint32_t grace_ms;
    uint32_t budget;       /* rebuilds allowed per 60 s */
    vigil_budget_action action;
    int kind;              /* STALL_* */
    uint64_t every;        /* forced: a fence every Nth receive callback */
    uint64_t want_rebuilds;/* forced: stop after this many */
    uint32_t run_ms;       /* spin/hang: how long the clients stream */
    uint32_t stall_at_ms;  /* spin/hang: when the stall is armed */
    uint64_t spin_ms;
    bool stop_on_budget;   /* forced: stop once on_budget ran */
    bool overflow_once;    /* forced: the first fence finds the CQ overflowed */
    bool app_destroys;     /* the fenced application thread destroys the loop itself */
} scenario;

typedef struct outcome {
    vigil_loop_stats ls;
    vigil_supervisor_stats ss;
    clients cs;
    uint64_t resets, owner_dead, send_errs, stalls_done, fenced_seen, io_errors;
    char reason[128];
    int run_rc;
    int fds_before, fds_after, threads_before, threads_after, vigil_threads_after;
    int budget_calls;
    char backend[16];
} outcome;

static _Atomic int budget_calls;
static void on_budget(uint32_t loop_id, void *ud) { atomic_fetch_add(&budget_calls, 1); }
static void quiet_log(const char *line, void *ud) {
    if (getenv("VIGIL_TEST_VERBOSE"))
        fprintf(stderr, "%s\n", line);
}

/* The application's thread runs the loop until it is fenced; then vigil's
 * threads do. The test thread watches from outside, through atomics. */
typedef struct app {
    server *s;
    clients *cs;
    const scenario *sc;
    vigil_supervisor *sv;
    _Atomic int ready, stopped; /* stopped: the stopper is done with the loop */
    int run_rc, after_rc, join_rc, setup_rc, destroy_rc;
    vigil_loop_stats ls; /* app_destroys: taken before the destroy */
    char backend[16], reason[128];
} app;

static void *app_main(void *arg) {
    app *a = arg;
    server *s = a->s;
    vigil_listener_options lo = {.host = "127.0.0.1"};
    a->setup_rc = vigil_listener_open(s->loop, &lo, srv_accept, s, &s->l);
    if (a->setup_rc == 0)
        s->port = vigil_listener_get_port(s->loop, s->l);
    atomic_store(&a->ready, 1);
    if (a->setup_rc < 0)
        return NULL;
    while (atomic_load(&a->ready) != 2) /* the clients connect meanwhile */
        vigil_loop_run(s->loop, VIGIL_RUN_ONCE, 10);
    /* Until the stopper stops the loop, wherever it runs by then: a fenced
     * thread waits here for the rebuilt loop to end. */
    a->run_rc = vigil_loop_run(s->loop, VIGIL_RUN_DEFAULT, -1);
    if (a->run_rc == -EOWNERDEAD && vigil_loop_join(s->loop, -1) == 0)
        a->run_rc = 1; /* fenced in a RUN_ONCE above: the loop ran on until it was stopped */
    vigil_loop_stats ls;
    vigil_loop_get_stats(s->loop, &ls);
    if (ls.rebuilds) { /* this thread was fenced; the loop went on elsewhere */
        a->after_rc = vigil_loop_run(s->loop, VIGIL_RUN_ONCE, 0);
        a->join_rc = vigil_loop_join(s->loop, 60000);
    }
    if (a->sc->app_destroys) { /* from the fenced thread: handed to the loop's own */
        while (!atomic_load(&a->stopped)) /* nobody may touch a loop being destroyed */
            usleep(1000);
        vigil_loop_join(s->loop, 60000);
        vigil_loop_get_stats(s->loop, &a->ls);
        vigil_loop_info info; /* its strings live as long as the loop: copy them */
        vigil_loop_get_info(s->loop, &info);
        snprintf(a->backend, sizeof(a->backend), "%s", info.backend);
        snprintf(a->reason, sizeof(a->reason), "%s", info.reason);
        vigil_supervisor_remove(a->sv, s->loop);
        a->destroy_rc = vigil_loop_destroy(s->loop);
    }
    return NULL;
}

static void *stopper_main(void *arg) {
    app *a = arg;
    const scenario *sc = a->sc;
    uint64_t t0 = vigil_now_ns();
    if (sc->kind == STALL_FORCED) {
        vigil_loop_stats ls;
        do {
            usleep(2000);
            vigil_loop_get_stats(a->s->loop, &ls);
        } while (ls.rebuilds < sc->want_rebuilds && ms_since(t0) < 240000 &&
                 !(sc->stop_on_budget && atomic_load(&budget_calls)));
        atomic_store(&a->s->stall_kind, STALL_NONE); /* no more fences, then */
        usleep(200000); /* the last rebuild's resets, if any, reach the clients */
    } else {
        usleep(sc->stall_at_ms * 1000);
        atomic_store(&a->s->stall_armed, 1);
        while (ms_since(t0) < sc->run_ms)
            usleep(2000);
    }
    atomic_store(&a->s->stall_kind, STALL_NONE);
    atomic_store(&a->cs->stop, 1);
    while (!atomic_load(&a->cs->done))
        usleep(2000);
    vigil_loop_stop(a->s->loop);
    atomic_store(&a->stopped, 1);
    return NULL;
}

static void run_scenario(const scenario *sc, outcome *out) {
    static server s;
    memset(&s, 0, sizeof(s));
    memset(out, 0, sizeof(*out));
    atomic_store(&budget_calls, 0);
    out->fds_before = vt_count_fds();
    out->threads_before = vt_count_threads();
    vt_blocker_open(&s.hang);

    s.loop = supervised_loop();
    vigil_supervisor_options so = {.stall_ms = sc->stall_ms, .tick_ms = sc->kind == STALL_FORCED ? 1 : 0,
                                   .grace_ms = sc->grace_ms, .budget_rebuilds = sc->budget,
                                   .budget_window_ms = 60000, .budget_action = sc->action,
                                   .on_budget = on_budget, .log = quiet_log};
    vigil_supervisor *sv = vt_supervise(s.loop, &so);

    app a = {.s = &s, .cs = &out->cs, .sc = sc, .sv = sv};
    pthread_t at, ct, st;
    VT_EQ(pthread_create(&at, NULL, app_main, &a), 0);
    while (!atomic_load(&a.ready))
        usleep(1000);
    VT_OK(a.setup_rc);
    clients_connect(&out->cs, sc->conns, s.port, sc->window);
    uint64_t t0 = vigil_now_ns();
    while (atomic_load(&s.accepted) < (uint64_t)sc->conns && ms_since(t0) < 10000)
        usleep(1000);
    VT_EQ(atomic_load(&s.accepted), sc->conns);
    atomic_store(&s.stall_every, sc->every);
    atomic_store(&s.stall_ms, sc->spin_ms);
    atomic_store(&s.overflow_once, sc->overflow_once);
    atomic_store(&s.stall_kind, sc->kind);
    atomic_store(&a.ready, 2);

    VT_EQ(pthread_create(&ct, NULL, clients_main, &out->cs), 0);
    VT_EQ(pthread_create(&st, NULL, stopper_main, &a), 0);
    pthread_join(st, NULL);
    pthread_join(ct, NULL);
    /* a hung callback is let go only now: its thread must find itself fenced */
    vt_blocker_release(&s.hang);
    pthread_join(at, NULL);
    out->run_rc = a.run_rc;
    if (a.after_rc) { /* fenced: no longer its thread (the thread fenced last hears -EOWNERDEAD) */
        VT_ASSERT(a.after_rc == -EOWNERDEAD || a.after_rc == -EPERM, "after: %d", a.after_rc);
        VT_OK(a.join_rc);
    }

    if (sc->app_destroys) {
        VT_OK(a.destroy_rc);
        out->ls = a.ls;
        snprintf(out->backend, sizeof(out->backend), "%s", a.backend);
        snprintf(out->reason, sizeof(out->reason), "%s", a.reason);
    } else {
        vigil_loop_info info;
        VT_OK(vigil_loop_get_stats(s.loop, &out->ls));
        VT_OK(vigil_loop_get_info(s.loop, &info));
        snprintf(out->backend, sizeof(out->backend), "%s", info.backend);
        snprintf(out->reason, sizeof(out->reason), "%s", info.reason);
    }
    VT_OK(vigil_supervisor_get_stats(sv, &out->ss));
    if (!sc->app_destroys) {
        VT_OK(vigil_supervisor_remove(sv, s.loop));
        VT_OK(vigil_loop_destroy(s.loop)); /* from this thread: the loop's own thread runs it */
    }
    VT_OK(vigil_supervisor_stop(sv));
    clients_close(&out->cs);
    vt_blocker_close(&s.hang);
    out->resets = atomic_load(&s.resets);
    out->io_errors = atomic_load(&s.io_errors);
    out->owner_dead = atomic_load(&s.owner_dead);
    out->send_errs = atomic_load(&s.send_errs);
    out->stalls_done = atomic_load(&s.stalls_done);
    out->fenced_seen = atomic_load(&s.fenced_seen);
    out->budget_calls = atomic_load(&budget_calls);
    /* fenced threads leave once their callback returns: give them a moment */
    for (int i = 0; i < 200 && (vt_count_threads_named("vigil-") > 0 ||
                                 (vt_count_threads_named("vigil-") < 0 && vt_count_threads() > out->threads_before));
         i++)
        usleep(10000);
    out->fds_after = vt_count_fds();
    out->threads_after = vt_count_threads();
    out->vigil_threads_after = vt_count_threads_named("vigil-");
#ifndef _WIN32
    if (out->threads_after != out->threads_before) { /* say which ones, for the failure */
        DIR *d = opendir("/proc/self/task");
        for (struct dirent *e; d && (e = readdir(d));) {
            if (e->d_name[0] == '.')
                continue;
            char path[300], sc[128] = "", comm[64] = "";
            snprintf(path, sizeof(path), "/proc/self/task/%.200s/syscall", e->d_name);
            FILE *f = fopen(path, "r");
            if (f) {
                if (!fgets(sc, sizeof(sc), f))
                    sc[0] = 0;
                fclose(f);
            }
            snprintf(path, sizeof(path), "/proc/self/task/%.200s/comm", e->d_name);
            if ((f = fopen(path, "r"))) {
                if (!fgets(comm, sizeof(comm), f))
                    comm[0] = 0;
                fclose(f);
            }
            VT_LOG("thread %s (%.30s): %s", e->d_name, comm, sc);
        }
        if (d)
            closedir(d);
    }
#endif
}

static void log_outcome(const char *what, const outcome *o) {
    int n = o->cs.n;
    VT_LOG("%s: %llu rebuilds (%llu fences), %llu connections migrated, %llu bytes carried, %llu ops "
           "re-issued, %llu stale dropped, stuck returned %llu / reset %llu, refused calls %llu; "
           "rebuild max %.2f ms; clients: mismatches %llu, lost %llu, dead %llu, gap p50 %llu p90 %llu "
           "max %llu ms",
           what, (unsigned long long)o->ls.rebuilds, (unsigned long long)o->ss.fences,
           (unsigned long long)o->ls.conns_migrated, (unsigned long long)o->ls.bytes_carried,
           (unsigned long long)o->ls.ops_reissued, (unsigned long long)o->ls.stale_completions,
           (unsigned long long)o->ls.stuck_returned, (unsigned long long)o->ls.stuck_reset,
           (unsigned long long)o->ls.refused_calls, o->ss.rebuild_us_max / 1000.0,
           (unsigned long long)o->cs.mismatches, (unsigned long long)o->cs.lost,
           (unsigned long long)o->cs.dead, (unsigned long long)o->cs.gap_ms[n / 2],
           (unsigned long long)o->cs.gap_ms[(n * 9) / 10], (unsigned long long)o->cs.gap_ms[n - 1]);
}

static void assert_exact(const outcome *o, uint64_t max_dead) {
    VT_EQ(o->cs.mismatches, 0);
    VT_EQ(o->cs.lost, 0);
    VT_ASSERT(o->cs.dead <= max_dead, "%llu connections died (at most %llu allowed)",
              (unsigned long long)o->cs.dead, (unsigned long long)max_dead);
    VT_EQ(o->send_errs, 0);
    VT_EQ(o->fds_after, o->fds_before);
    if (o->vigil_threads_after >= 0) /* where names can be read */
        VT_EQ(o->vigil_threads_after, 0); /* vigil's threads are named vigil-* */
#ifndef __SANITIZE_THREAD__ /* ThreadSanitizer starts threads of its own along the way */
    VT_EQ(o->threads_after, o->threads_before);
#endif
}

/* --------------------------------------------------------------- tests */

/* The soak: 1000 rebuilds in a row, each fenced in the middle of a receive
 * batch while 64 streams flow both ways (the epoch in completion tags wraps
 * around four times): every byte comes back exactly, nothing leaks. */
VT_TEST(rebuild, soak_1000_rebuilds_carry_every_byte, 300) {
    /* stall_ms long: only the forced fences happen, none at a random point
     * (that is what spin_is_recovered is for) */
    scenario sc = {.conns = 64, .window = 65536, .stall_ms = 10000, .grace_ms = 2000, .budget = 100000,
                   .kind = STALL_FORCED, .every = 11, .want_rebuilds = 1000};
    outcome o;
    run_scenario(&sc, &o);
    log_outcome("1000 forced rebuilds", &o);
    VT_EQ(o.run_rc, 1); /* stopped with work left, on the thread of the last rebuild */
    VT_ASSERT(o.ls.rebuilds >= 1000, "only %llu rebuilds", (unsigned long long)o.ls.rebuilds);
    VT_EQ(o.ss.rebuilds, o.ls.rebuilds);
    VT_EQ(o.ss.rebuild_failures, 0);
    VT_EQ(o.ls.stuck_returned, o.ls.rebuilds); /* each callback came back ... */
    VT_EQ(o.ls.stuck_reset, 0);                /* ... in time, so nothing was reset */
    VT_EQ(o.ls.refused_calls, 0);
    VT_ASSERT(o.ls.stale_completions >= 1000, "stale dropped %llu", (unsigned long long)o.ls.stale_completions);
#ifndef __SANITIZE_THREAD__ /* slowed down ten times, the ring may have nothing left to carry */
    VT_ASSERT(o.ls.bytes_carried > 0 || strcmp(o.backend, "io_uring"), "nothing carried on io_uring");
#endif
    VT_ASSERT(o.ls.conns_migrated >= 1000 * 64, "migrated %llu", (unsigned long long)o.ls.conns_migrated);
    VT_ASSERT(o.ls.ops_reissued > 0, "no op was re-issued");
    VT_ASSERT(o.fenced_seen >= 1000, "fenced seen %llu", (unsigned long long)o.fenced_seen);
    assert_exact(&o, 0);
}

/* A callback spins for 3 s: the loop is fenced and rebuilt; the spinning
 * callback's connection moves over when it returns; every stream is exact. */
VT_TEST(rebuild, spin_is_recovered, 60) {
    scenario sc = {.conns = 100, .window = 65536, .stall_ms = 100, .grace_ms = 5000, .budget = 5,
                   .kind = STALL_SPIN, .spin_ms = 3000, .run_ms = 5000, .stall_at_ms = 500,
                   .app_destroys = true};
    outcome o;
    run_scenario(&sc, &o);
    log_outcome("spin 3 s", &o);
    VT_EQ(o.stalls_done, 1);
    VT_EQ(o.ls.rebuilds, 1);
    VT_EQ(o.fenced_seen, 1);      /* the spinning callback learned it was fenced */
    VT_EQ(o.ls.stuck_returned, 1);
    VT_EQ(o.ls.stuck_reset, 0);
    assert_exact(&o, 0);
    /* 90 % of the streams waited far less than the 3 s the spin lasted */
    VT_ASSERT(o.cs.gap_ms[(o.cs.n * 9) / 10] < 1000, "gap p90 %llu ms",
              (unsigned long long)o.cs.gap_ms[(o.cs.n * 9) / 10]);
}

/* A callback blocks in a read that retries on EINTR: unblocking cannot help,
 * the loop is rebuilt; the hung connection is reset after the grace period
 * with -EOWNERDEAD (its peer sees RST); the other 99 are exact. */
VT_TEST(rebuild, hang_is_recovered, 60) {
    scenario sc = {.conns = 100, .window = 65536, .stall_ms = 100, .grace_ms = 500, .budget = 5,
                   .kind = STALL_HANG, .run_ms = 4000, .stall_at_ms = 500};
    outcome o;
    run_scenario(&sc, &o);
    log_outcome("hang", &o);
    VT_EQ(o.stalls_done, 1);
    VT_EQ(o.ls.rebuilds, 1);
    VT_EQ(o.ls.stuck_reset, 1);
    VT_EQ(o.resets, 1);           /* its owner got -EOWNERDEAD */
    VT_EQ(o.cs.dead, 1);          /* and its peer a reset, not a silent gap */
    assert_exact(&o, 1);
}

/* A rebuild storm: the budget stops it, on_budget runs, and with the REPORT
 * action the loop keeps its last thread and stays exact. */
VT_TEST(rebuild, budget_stops_a_rebuild_storm, 60) {
    scenario sc = {.conns = 16, .window = 32768, .stall_ms = 10000, .grace_ms = 2000, .budget = 3,
                   .action = VIGIL_BUDGET_REPORT, .kind = STALL_FORCED, .every = 50,
                   .want_rebuilds = 1000, .stop_on_budget = true};
    outcome o;
    run_scenario(&sc, &o);
    log_outcome("budget 3", &o);
    VT_EQ(o.ls.rebuilds, 3);
    VT_EQ(o.ss.budget_exceeded, 1);
    VT_EQ(o.budget_calls, 1);
    assert_exact(&o, 0);
}

static void spin_timer_done(vigil_loop *loop, vigil_op t, int status, void *ud) {
    if (status == 0)
        *(int *)ud = 1;
}

#ifndef _WIN32 /* io_uring, epoll and fork: Linux's (docs/windows.md) */
/* io_uring without DEFER_TASKRUN cannot be rebuilt exactly: such a loop is
 * supervised without rebuilds (said once in the log), and a spinning callback
 * is reported but the loop stays on its thread. */
static _Atomic int inexact_lines;
static void inexact_log(const char *line, void *ud) {
    if (strstr(line, "without DEFER_TASKRUN"))
        atomic_fetch_add(&inexact_lines, 1);
}
static void spin_timer(vigil_loop *loop, vigil_op t, int status, void *ud) {
    if (status == 0)
        vigil_test_rebuild_spin(ud, 500);
}

VT_TEST(rebuild, ring_without_defer_taskrun_is_never_rebuilt, 20) {
    vigil_loop_options lo = {.backend = VIGIL_BACKEND_URING, .flags = VIGIL_LOOP_NO_DEFER_TASKRUN};
    vigil_loop *loop;
    int rc = vigil_loop_create(&loop, &lo);
    if (rc == -EPERM || rc == -ENOSYS || rc == -ENOTSUP)
        VT_SKIP("io_uring unavailable here (%d): nothing to check", rc);
    VT_OK(rc);
    static server s;
    memset(&s, 0, sizeof(s));
    s.loop = loop;
    vigil_supervisor_options so = {.stall_ms = 100, .log = inexact_log};
    vigil_supervisor *sv = vt_supervise(loop, &so);
    VT_EQ(atomic_load(&inexact_lines), 1);
    int fired = 0;
    VT_OK(vigil_timer_start(loop, 10, 0, spin_timer, &s, NULL));
    uint64_t t0 = vigil_now_ns();
    while (ms_since(t0) < 900)
        VT_OK(vigil_loop_run(loop, VIGIL_RUN_ONCE, 50)); /* never -EOWNERDEAD */
    (void)fired;
    vigil_supervisor_stats ss;
    VT_OK(vigil_supervisor_get_stats(sv, &ss));
    VT_ASSERT(ss.stalls >= 1, "the spin was not seen");
    VT_EQ(ss.fences, 0);
    VT_EQ(ss.rebuilds, 0);
    VT_EQ(atomic_load(&s.fenced_seen), 0);
    VT_OK(vigil_supervisor_remove(sv, loop));
    VT_OK(vigil_supervisor_stop(sv));
    VT_OK(vigil_loop_destroy(loop));
}

/* Past the budget with the EPOLL action, an io_uring loop is rebuilt once
 * more, on epoll, and says why; every stream stays exact. */
VT_TEST(rebuild, budget_moves_the_loop_to_epoll, 60) {
    vt_backend_id b = vt_backend();
    if ((b != VT_BACKEND_URING && b != VT_BACKEND_DEFAULT) || !vt_have_uring())
        VT_SKIP("the loop starts on epoll here: the EPOLL action would mean exit");
    scenario sc = {.conns = 16, .window = 32768, .stall_ms = 10000, .grace_ms = 2000, .budget = 2,
                   .action = VIGIL_BUDGET_EPOLL, .kind = STALL_FORCED, .every = 50, .want_rebuilds = 3};
    outcome o;
    run_scenario(&sc, &o);
    log_outcome("budget 2, then epoll", &o);
    /* 2 within the budget, the one on epoll, and then the fresh budget: a
     * forced fence already on its way when the test stops may add one more */
    VT_ASSERT(o.ls.rebuilds >= 3 && o.ls.rebuilds <= 5, "rebuilds %llu", (unsigned long long)o.ls.rebuilds);
    VT_EQ(o.ss.budget_exceeded, 1);
    VT_EQ(o.budget_calls, 1);
    VT_ASSERT(!strcmp(o.backend, "epoll"), "backend after the budget: %s", o.backend);
    VT_ASSERT(strstr(o.reason, "budget"), "reason: %s", o.reason);
    assert_exact(&o, 0);
}

/* Past the budget with the EXIT action (the default) the process ends with
 * status 70 and says why. In a child process, of course. */
static void exit_timer(vigil_loop *loop, vigil_op t, int status, void *ud) {
    if (status)
        return;
    vigil__debug_request_fence(loop);
    uint64_t t0 = vigil_now_ns();
    while (!vigil__debug_fenced(loop) && ms_since(t0) < 2000)
        ;
}

VT_TEST(rebuild, budget_exit_ends_the_process_with_70, 30) {
    int pp[2];
    VT_EQ(pipe(pp), 0);
    fflush(NULL);
    pid_t pid = fork();
    VT_ASSERT(pid >= 0);
    if (pid == 0) {
        close(pp[0]);
        dup2(pp[1], 2); /* the supervisor's log goes to the parent */
        vigil_loop *loop;
        vigil_loop_options lo = {.flags = VIGIL_LOOP_SUPERVISED};
        if (vigil_loop_create(&loop, &lo) < 0)
            _exit(3);
        vigil_supervisor_options so = {.stall_ms = 10000, .tick_ms = 1, .budget_rebuilds = 1,
                                       .budget_window_ms = 60000};
        vigil_supervisor *sv;
        if (vigil_supervisor_start(&sv, &so) < 0 || vigil_supervisor_add(sv, loop) < 0)
            _exit(4);
        int rc = vigil_timer_start(loop, 20, 50, exit_timer, NULL, NULL);
        if (rc == 0)
            rc = vigil_loop_run(loop, VIGIL_RUN_DEFAULT, -1);
        if (rc == -EOWNERDEAD)
            rc = vigil_loop_join(loop, 20000);
        fprintf(stderr, "the loop ended: %d\n", rc);
        _exit(5); /* the budget should have ended the process before */
    }
    close(pp[1]);
    char log[4096] = "";
    size_t got = 0;
    for (ssize_t n; got < sizeof(log) - 1 && (n = read(pp[0], log + got, sizeof(log) - 1 - got)) > 0;)
        got += (size_t)n;
    log[got] = 0;
    close(pp[0]);
    int st = 0;
    VT_EQ(waitpid(pid, &st, 0), pid);
    VT_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 70, "child status %#x; its log: %s", st, log);
    VT_ASSERT(strstr(log, "restart budget exhausted; exiting (status 70)"), "log: %s", log);
}

#endif

/* A CQ that overflowed at the fence lost completions only the fenced thread
 * could flush: every stream that was receiving is reset with -EIO, none is
 * carried with a gap. */
VT_TEST(rebuild, cq_overflow_at_the_fence_resets_receiving_streams, 60) {
    scenario sc = {.conns = 16, .window = 32768, .stall_ms = 10000, .grace_ms = 2000, .budget = 100,
                   .kind = STALL_FORCED, .every = 50, .want_rebuilds = 1, .overflow_once = true};
    outcome o;
    run_scenario(&sc, &o);
    log_outcome("overflow at the fence", &o);
    VT_EQ(o.ls.rebuilds, 1);
    VT_EQ(o.cs.mismatches, 0);
    VT_EQ(o.cs.lost, 0);
    VT_EQ(o.cs.dead, 16);     /* every client saw a reset ... */
    VT_EQ(o.io_errors, 16);   /* ... and every server receive ended -EIO */
}

/* A thread stuck in vigil's own code holds the tables mid-change: it is
 * reported (as "library"), never fenced, and the loop goes on afterwards. */
static _Atomic int library_reports;
static void library_stall(const vigil_stall_report *r, void *ud) {
    if (!strcmp(r->where, "library"))
        atomic_fetch_add(&library_reports, 1);
}
static void library_timer(vigil_loop *loop, vigil_op t, int status, void *ud) {
    if (status == 0)
        vigil__debug_library_spin(loop, 600);
}

VT_TEST(rebuild, library_stall_is_reported_never_fenced, 20) {
    vigil_loop *loop = supervised_loop();
    vigil_supervisor_options so = {.stall_ms = 100, .on_stall = library_stall, .log = quiet_log};
    vigil_supervisor *sv = vt_supervise(loop, &so);
    VT_OK(vigil_timer_start(loop, 10, 0, library_timer, NULL, NULL));
    int fired = 0;
    VT_OK(vigil_timer_start(loop, 900, 0, spin_timer_done, &fired, NULL));
    uint64_t t0 = vigil_now_ns();
    while (!fired && ms_since(t0) < 5000)
        VT_OK(vigil_loop_run(loop, VIGIL_RUN_ONCE, 50)); /* never -EOWNERDEAD */
    VT_EQ(fired, 1); /* the loop went on */
    vigil_supervisor_stats ss;
    VT_OK(vigil_supervisor_get_stats(sv, &ss));
    VT_ASSERT(ss.stalls >= 1, "the library stall was not seen");
    VT_ASSERT(atomic_load(&library_reports) >= 1, "no report said library");
    VT_EQ(ss.fences, 0);
    VT_OK(vigil_supervisor_remove(sv, loop));
    VT_OK(vigil_supervisor_stop(sv));
    VT_OK(vigil_loop_destroy(loop));
}

/* Bad input to the calls and options this part added: -EINVAL or -EPERM,
 * nothing started, nothing changed. */
static void *destroy_elsewhere(void *loop) { return (void *)(intptr_t)vigil_loop_destroy(loop); }

VT_TEST(rebuild, bad_options_and_calls, 10) {
    vigil_supervisor *sv = NULL;
    vigil_supervisor_options bad_action = {.budget_action = (vigil_budget_action)7};
    VT_EQ(vigil_supervisor_start(&sv, &bad_action), -EINVAL);
    vigil_supervisor_options bad_budget = {.budget_rebuilds = 2000000};
    VT_EQ(vigil_supervisor_start(&sv, &bad_budget), -EINVAL);
    VT_ASSERT(sv == NULL);
    vigil_loop *loop = NULL;
    vigil_loop_options bad_flags = {.flags = 1u << 20};
    VT_EQ(vigil_loop_create(&loop, &bad_flags), -EINVAL);
    VT_ASSERT(loop == NULL);
    VT_EQ(vigil_loop_join(NULL, 0), -EINVAL);
    loop = supervised_loop();
    VT_OK(vigil_timer_start(loop, 60000, 0, spin_timer_done, &(int){0}, NULL)); /* attached here */
    VT_EQ(vigil_loop_join(loop, 0), 0); /* never rebuilt: nothing to wait for */
    pthread_t t;
    void *rc;
    VT_EQ(pthread_create(&t, NULL, destroy_elsewhere, loop), 0);
    pthread_join(t, &rc);
    VT_EQ((intptr_t)rc, -EPERM); /* not rebuilt: only its own thread may destroy it */
    VT_OK(vigil_loop_destroy(loop));
}

#ifndef _WIN32
#include <sched.h>
/* A fenced callback that still spins yields its CPU to the rebuilt loop
 * (idle scheduling, never killed) and has its scheduling back once it
 * returns: on a pinned server the spinner would otherwise halve the loop. */
static atomic_int yield_policy_fenced, yield_fenced;

static void spin_until_idle(vigil_loop *loop, vigil_op t, int status, void *ud) {
    vt_fence_timer(loop, t, status, (void *)&yield_fenced);
    int policy = sched_getscheduler(0);
    for (uint64_t t0 = vigil_now_ns(); policy != SCHED_IDLE && vigil_now_ns() - t0 < 2000000000ull;)
        policy = sched_getscheduler(0); /* the supervisor lowers it just after the fence */
    atomic_store(&yield_policy_fenced, policy);
}

VT_TEST(rebuild, fenced_spinner_yields_its_cpu_until_it_returns, 30) {
    vigil_supervisor *sv;
    vigil_loop *loop = vt_fenceable_loop(&sv);
    int before = sched_getscheduler(0);
    VT_OK(vigil_timer_start(loop, 10, 0, spin_until_idle, NULL, NULL));
    VT_EQ(vt_run_until_fenced(loop, 10000), -EOWNERDEAD);
    VT_EQ(atomic_load(&yield_fenced), 1);
    VT_EQ(atomic_load(&yield_policy_fenced), SCHED_IDLE);
    VT_EQ(sched_getscheduler(0), before); /* back, once the callback returned */
    vigil_loop_stop(loop);
    VT_OK(vigil_loop_join(loop, 10000));
    VT_OK(vigil_supervisor_remove(sv, loop));
    VT_OK(vigil_supervisor_stop(sv));
    VT_OK(vigil_loop_destroy(loop));
}
#endif
