/*
 * vigil: the command-line tool. Subcommands: serve (an echo server), version.
 */
#include "vigil.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void usage_main(FILE *f) {
    fprintf(f, "usage: vigil <command> [options]\n"
               "commands:\n"
               "  serve     run an echo server (vigil serve --help)\n"
               "  version   print the library version\n");
}

static void usage_serve(FILE *f) {
    fprintf(f, "usage: vigil serve [--port P] [--host H] [--backend auto|uring|epoll]\n"
               "                   [--stall-ms N] [--restart-budget R/T] [--on-budget exit|epoll|report]\n"
               "                   [--grace-ms N] [--idle-ms N] [--inject KIND:DURATION_MS:PERIOD_MS]\n"
               "                   [--user-timeout-ms N] [--keepalive IDLE_S/INTERVAL_S/COUNT]\n"
               "  --port P      TCP port to listen on (default 7000; 0 = any free port)\n"
               "  --host H      numeric IPv4/IPv6 address (default 127.0.0.1)\n"
               "  --backend B   auto (default: io_uring, else epoll), uring or epoll\n"
               "  --stall-ms N  supervise the loop: report a stall after N ms, then interrupt\n"
               "                a thread blocked in a syscall, and after N ms more fence a\n"
               "                thread stuck in a callback and rebuild the loop on a new\n"
               "                thread, carrying every connection over (each action: one\n"
               "                line on stderr)\n"
               "  --restart-budget R/T  at most R rebuilds in T seconds (default 5/10), then\n"
               "                --on-budget exit (default; status 70), epoll (rebuild once\n"
               "                more on epoll, with a fresh budget) or report (stop rebuilding)\n"
               "  --grace-ms N  how long a stuck callback's connection waits for it to come\n"
               "                back after a rebuild before it is reset (default 1000)\n"
               "  --idle-ms N   reset connections that send nothing for N ms\n"
               "  --user-timeout-ms N  drop connections whose sent data stays unacknowledged\n"
               "                for N ms (TCP_USER_TIMEOUT; 1..2147483647): a vanished peer\n"
               "  --keepalive I/V/C  probe a silent peer after I s, every V s, C times, then\n"
               "                drop it (I and V 1..32767, C 1..127)\n"
               "  --inject K:D:P  stall the loop on purpose, first after P ms, then every P ms,\n"
               "                in the receive callback of the next connection with data,\n"
               "                after it echoed: spin (busy-loop D ms), block (sleep D ms in\n"
               "                one syscall, not retried when interrupted), hang (a read that\n"
               "                never returns by itself: only a rebuild frees the loop; that\n"
               "                connection is reset after --grace-ms)\n"
               "Echoes every byte back. Runs until SIGINT or SIGTERM, then closes every\n"
               "connection cleanly (queued bytes are flushed, then FIN).\n");
}

/* ------------------------------------------------------------ serve */

enum { INJECT_NONE, INJECT_SPIN, INJECT_BLOCK, INJECT_HANG };

typedef struct server {
    vigil_loop *loop;
    uint32_t idle_ms;
    uint32_t user_timeout_ms;          /* --user-timeout-ms; 0 = kernel default */
    uint32_t ka_idle, ka_intvl, ka_cnt; /* --keepalive; 0 = off */
    int inject_kind;
    uint32_t inject_ms, inject_period_ms;
    int inject_due; /* the next receive callback stalls */
    uint64_t injected, idle_closed;
    vigil_listener listener;
    vigil_op inject_op;
    vigil_conn *conns; /* live connections; conn data holds index + 1 */
    size_t n, cap, open_at_stop;
    uint64_t accepted, bytes;
    vigil_supervisor *sv;
    atomic_int finished;  /* finish() ran */
    atomic_int main_back; /* the main thread came back from the loop */
} server;

static server srv;

static void conn_forget(vigil_loop *loop, vigil_conn c) {
    uintptr_t i1 = (uintptr_t)vigil_conn_data(loop, c);
    if (!i1 || i1 > srv.n)
        return;
    size_t i = i1 - 1;
    srv.conns[i] = srv.conns[--srv.n];
    if (i < srv.n)
        vigil_conn_set_data(loop, srv.conns[i], (void *)(i + 1));
    vigil_conn_set_data(loop, c, NULL);
}

static void on_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {}

static void on_drain(vigil_loop *loop, vigil_conn c, void *ud) { vigil_recv_resume(loop, c); }

/* Deliberate stalls, for profiling recovery (--inject). Not static: a stall
 * report's backtrace names them. */
__attribute__((noinline)) void vigil_inject_spin(uint32_t ms);
__attribute__((noinline)) void vigil_inject_spin(uint32_t ms) {
    uint64_t until = vigil_now_ns() + (uint64_t)ms * 1000000ull;
    while (vigil_now_ns() < until)
        ;
}

__attribute__((noinline)) void vigil_inject_block(uint32_t ms);
__attribute__((noinline)) void vigil_inject_block(uint32_t ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* one syscall; interrupted means done */
}

__attribute__((noinline)) void vigil_inject_hang(void);
__attribute__((noinline)) void vigil_inject_hang(void) {
    int p[2];
    if (pipe(p) < 0)
        return;
    char c;
    while (read(p[0], &c, 1) < 0 && errno == EINTR)
        ; /* retried when interrupted: only a rebuild frees the loop */
}

static void inject_timer(vigil_loop *loop, vigil_op t, int status, void *ud) {
    if (status == 0)
        srv.inject_due = 1;
}

static void inject_now(void) {
    srv.inject_due = 0;
    srv.injected++;
    fprintf(stderr, "vigil serve: injecting %s for %u ms\n",
            srv.inject_kind == INJECT_SPIN ? "spin" : srv.inject_kind == INJECT_BLOCK ? "block" : "hang",
            srv.inject_ms);
    if (srv.inject_kind == INJECT_SPIN)
        vigil_inject_spin(srv.inject_ms);
    else if (srv.inject_kind == INJECT_BLOCK)
        vigil_inject_block(srv.inject_ms);
    else
        vigil_inject_hang();
}

static void on_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *buf, void *ud) {
    if (status == -EOWNERDEAD) { /* reset after its callback stayed stuck past --grace-ms */
        fprintf(stderr, "vigil serve: conn %#llx was reset: its callback stayed stuck\n",
                (unsigned long long)c.id);
        conn_forget(loop, c);
        vigil_abort(loop, c, on_closed, NULL);
        return;
    }
    if (status == -ETIMEDOUT) { /* --idle-ms: the peer went quiet (or, from the kernel,
                                 * --user-timeout-ms / --keepalive: it vanished) */
        srv.idle_closed++;
        if (srv.idle_ms && !srv.user_timeout_ms && !srv.ka_idle)
            fprintf(stderr, "vigil serve: conn %#llx idle for %u ms: reset\n",
                    (unsigned long long)c.id, srv.idle_ms);
        else
            fprintf(stderr, "vigil serve: conn %#llx timed out (idle deadline, user timeout or "
                            "keepalive): reset\n", (unsigned long long)c.id);
        conn_forget(loop, c);
        vigil_abort(loop, c, on_closed, NULL);
        return;
    }
    if (status > 0) {
        srv.bytes += (uint64_t)status;
        int rc = vigil_send(loop, c, buf->data, buf->len, 0, NULL, NULL, NULL);
        if (rc == -EOWNERDEAD)
            return; /* this thread was fenced off: the loop went on elsewhere */
        if (rc == 1)
            vigil_recv_pause(loop, c); /* the peer reads slower than it writes */
        else if (rc < 0) {
            conn_forget(loop, c);
            vigil_abort(loop, c, on_closed, NULL);
            return;
        }
        if (srv.inject_due)
            inject_now(); /* after the echo: a stall, not a lost message */
        return;
    }
    /* EOF or error: flush what is queued, then close. */
    conn_forget(loop, c);
    vigil_close(loop, c, 5000, on_closed, NULL);
}

static void on_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    if (status < 0) {
        if (status != -ECANCELED)
            fprintf(stderr, "vigil serve: accept failed: %s\n", vigil_strerror(status));
        return;
    }
    if (srv.n == srv.cap) {
        size_t cap = srv.cap ? srv.cap * 2 : 1024;
        vigil_conn *p = realloc(srv.conns, cap * sizeof(*p));
        if (!p) {
            vigil_abort(loop, c, on_closed, NULL);
            return;
        }
        srv.conns = p;
        srv.cap = cap;
    }
    srv.conns[srv.n++] = c;
    vigil_conn_set_data(loop, c, (void *)(uintptr_t)srv.n);
    srv.accepted++;
    vigil_send_watermark(loop, c, 1 << 20, 256 << 10, on_drain, NULL);
    int zrc = srv.user_timeout_ms ? vigil_conn_user_timeout(loop, c, srv.user_timeout_ms) : 0;
    if (zrc == 0 && srv.ka_idle)
        zrc = vigil_conn_keepalive(loop, c, srv.ka_idle, srv.ka_intvl, srv.ka_cnt);
    if (zrc < 0) {
        fprintf(stderr, "vigil serve: cannot set --user-timeout-ms/--keepalive: %s\n",
                vigil_strerror(zrc));
        conn_forget(loop, c);
        vigil_abort(loop, c, on_closed, NULL);
        return;
    }
    if (vigil_recv_start(loop, c, srv.idle_ms, on_recv, NULL, NULL) < 0) {
        conn_forget(loop, c);
        vigil_abort(loop, c, on_closed, NULL);
    }
}

/* Clean shutdown, on the loop's thread (whichever it is by now): stop
 * accepting, flush and close every connection; the loop then runs out of
 * work. A timer bounds it: what is still open after 3 s is cut. */
static void shutdown_timeout(vigil_loop *loop, vigil_op t, int status, void *ud) {
    if (status == 0)
        vigil_loop_stop(loop);
}

static void shutdown_now(vigil_loop *loop, int status, void *arg) {
    if (status < 0)
        return;
    srv.open_at_stop = srv.n;
    if (srv.inject_op.id)
        vigil_cancel(loop, srv.inject_op);
    vigil_listener_close(loop, srv.listener);
    while (srv.n) {
        vigil_conn c = srv.conns[srv.n - 1];
        conn_forget(loop, c);
        vigil_close(loop, c, 2000, on_closed, NULL);
    }
    vigil_timer_start(loop, 3000, 0, shutdown_timeout, NULL, NULL);
}

/* Prints what was served and frees everything; once, from the main thread,
 * or from the signal thread if the main one stays stuck in a fenced callback. */
static int finish(int failed) {
    if (atomic_exchange(&srv.finished, 1))
        return failed;
    if (srv.sv) {
        vigil_supervisor_stats ss;
        vigil_supervisor_stats_get(srv.sv, &ss);
        vigil_supervisor_remove(srv.sv, srv.loop);
        vigil_supervisor_stop(srv.sv);
        fprintf(stderr,
                "vigil serve: supervisor: %llu stalls, %llu threads interrupted, %llu rebuilds "
                "(max %.1f ms), detection max %llu ms, %llu injected, supervisor CPU %.1f ms\n",
                (unsigned long long)ss.stalls, (unsigned long long)ss.threads_unblocked,
                (unsigned long long)ss.rebuilds, ss.rebuild_us_max / 1000.0,
                (unsigned long long)ss.detect_ms_max, (unsigned long long)srv.injected, ss.cpu_ns / 1e6);
    }
    vigil_loop_stats st;
    vigil_loop_stats_get(srv.loop, &st);
    if (st.rebuilds)
        fprintf(stderr,
                "vigil serve: rebuilds: %llu, connections carried over %llu, bytes carried %llu, "
                "stuck callbacks back %llu, connections reset %llu\n",
                (unsigned long long)st.rebuilds, (unsigned long long)st.conns_migrated,
                (unsigned long long)st.bytes_carried, (unsigned long long)st.stuck_returned,
                (unsigned long long)st.stuck_reset);
    fprintf(stderr,
            "vigil serve: stopped; %llu connections served, %zu closed at stop, %llu bytes echoed, "
            "%llu stale completions dropped\n",
            (unsigned long long)srv.accepted, srv.open_at_stop, (unsigned long long)srv.bytes,
            (unsigned long long)st.stale_completions);
    vigil_loop_destroy(srv.loop);
    return failed;
}

/* Signals are taken by a dedicated thread, so they never interrupt the loop. */
static void *signal_thread(void *arg) {
    sigset_t *set = arg;
    int sig;
    if (sigwait(set, &sig) != 0 || atomic_load(&srv.finished))
        return NULL;
    if (vigil_loop_post(srv.loop, shutdown_now, NULL) < 0)
        vigil_loop_stop(srv.loop);
    /* If the main thread was fenced in a callback that never returns (hang),
     * it will not finish: once the loop has ended on its new thread, this
     * thread does. */
    for (;;) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        if (atomic_load(&srv.finished))
            return NULL;
        vigil_loop_stats st;
        vigil_loop_stats_get(srv.loop, &st);
        if (st.rebuilds && vigil_loop_join(srv.loop, 0) == 0 && !atomic_load(&srv.main_back)) {
            nanosleep(&(struct timespec){1, 0}, NULL);
            if (!atomic_load(&srv.main_back)) {
                fprintf(stderr, "vigil serve: the main thread is still stuck in a fenced callback\n");
                exit(finish(0));
            }
        }
    }
}

static int parse_port(const char *s, uint16_t *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int parse_u32(const char *s, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || !*s || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static void raise_nofile(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

static int cmd_serve(int argc, char **argv) {
    uint16_t port = 7000;
    uint32_t stall_ms = 0, grace_ms = 1000, budget_r = 5, budget_t = 10;
    vigil_budget_action budget_action = VIGIL_BUDGET_EXIT;
    const char *host = "127.0.0.1";
    vigil_loop_options opts = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage_serve(stdout);
            return 0;
        } else if (!strcmp(a, "--port") && v) {
            if (parse_port(v, &port) < 0) {
                fprintf(stderr, "vigil serve: bad port '%s'\n", v);
                usage_serve(stderr);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--stall-ms") && v) {
            if (parse_u32(v, &stall_ms) < 0 || !stall_ms) {
                fprintf(stderr, "vigil serve: bad --stall-ms '%s'\n", v);
                usage_serve(stderr);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--restart-budget") && v) {
            char r[16], t[16], extra;
            if (sscanf(v, "%15[0-9]/%15[0-9]%c", r, t, &extra) != 2 || parse_u32(r, &budget_r) < 0 ||
                parse_u32(t, &budget_t) < 0 || !budget_r || budget_r > 1000000 || !budget_t ||
                budget_t > 86400) {
                fprintf(stderr, "vigil serve: bad --restart-budget '%s' (R/T: 1..1000000 rebuilds "
                                "in 1..86400 s)\n", v);
                usage_serve(stderr);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--on-budget") && v) {
            if (!strcmp(v, "exit"))
                budget_action = VIGIL_BUDGET_EXIT;
            else if (!strcmp(v, "epoll"))
                budget_action = VIGIL_BUDGET_EPOLL;
            else if (!strcmp(v, "report"))
                budget_action = VIGIL_BUDGET_REPORT;
            else {
                fprintf(stderr, "vigil serve: bad --on-budget '%s' (exit, epoll or report)\n", v);
                usage_serve(stderr);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--grace-ms") && v) {
            if (parse_u32(v, &grace_ms) < 0 || !grace_ms || grace_ms > 3600000) {
                fprintf(stderr, "vigil serve: bad --grace-ms '%s'\n", v);
                usage_serve(stderr);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--idle-ms") && v) {
            if (parse_u32(v, &srv.idle_ms) < 0 || !srv.idle_ms) {
                fprintf(stderr, "vigil serve: bad --idle-ms '%s'\n", v);
                usage_serve(stderr);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--user-timeout-ms") && v) {
            if (parse_u32(v, &srv.user_timeout_ms) < 0 || !srv.user_timeout_ms ||
                srv.user_timeout_ms > INT_MAX) {
                fprintf(stderr, "vigil serve: bad --user-timeout-ms '%s'\n", v);
                usage_serve(stderr);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--keepalive") && v) {
            char idle[16], intvl[16], cnt[16], extra;
            if (sscanf(v, "%15[0-9]/%15[0-9]/%15[0-9]%c", idle, intvl, cnt, &extra) != 3 ||
                parse_u32(idle, &srv.ka_idle) < 0 || parse_u32(intvl, &srv.ka_intvl) < 0 ||
                parse_u32(cnt, &srv.ka_cnt) < 0 || !srv.ka_idle || srv.ka_idle > 32767 ||
                !srv.ka_intvl || srv.ka_intvl > 32767 || !srv.ka_cnt || srv.ka_cnt > 127) {
                fprintf(stderr, "vigil serve: bad --keepalive '%s' (IDLE_S/INTERVAL_S/COUNT: "
                                "1..32767/1..32767/1..127)\n", v);
                usage_serve(stderr);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--inject") && v) {
            char kind[16];
            unsigned d, p;
            if (sscanf(v, "%15[a-z]:%u:%u", kind, &d, &p) != 3 || !d || !p ||
                !(srv.inject_kind = !strcmp(kind, "spin")    ? INJECT_SPIN
                                    : !strcmp(kind, "block") ? INJECT_BLOCK
                                    : !strcmp(kind, "hang")  ? INJECT_HANG
                                                             : INJECT_NONE)) {
                fprintf(stderr, "vigil serve: bad --inject '%s' (KIND:DURATION_MS:PERIOD_MS, KIND spin|block|hang)\n", v);
                usage_serve(stderr);
                return 2;
            }
            srv.inject_ms = d;
            srv.inject_period_ms = p;
            i++;
        } else if (!strcmp(a, "--host") && v) {
            host = v;
            i++;
        } else if (!strcmp(a, "--backend") && v) {
            if (!strcmp(v, "auto"))
                opts.backend = VIGIL_BACKEND_AUTO;
            else if (!strcmp(v, "uring") || !strcmp(v, "io_uring"))
                opts.backend = VIGIL_BACKEND_URING;
            else if (!strcmp(v, "epoll"))
                opts.backend = VIGIL_BACKEND_EPOLL;
            else {
                fprintf(stderr, "vigil serve: unknown backend '%s' (auto, uring or epoll)\n", v);
                usage_serve(stderr);
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "vigil serve: unknown or incomplete option '%s'\n", a);
            usage_serve(stderr);
            return 2;
        }
    }
    raise_nofile();

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    if (stall_ms)
        opts.flags |= VIGIL_LOOP_SUPERVISED; /* a backend it can be rebuilt on exactly */
    int rc = vigil_loop_create(&srv.loop, &opts);
    if (rc < 0) {
        if (opts.backend == VIGIL_BACKEND_URING && (rc == -EPERM || rc == -ENOSYS || rc == -ENOTSUP))
            fprintf(stderr, "vigil serve: io_uring is unavailable here: %s (%d); "
                            "use --backend auto or epoll\n", vigil_strerror(rc), rc);
        else
            fprintf(stderr, "vigil serve: cannot create a loop: %s (%d)\n", vigil_strerror(rc), rc);
        return 1;
    }
    vigil_listen_options lo = {.host = host, .port = port};
    rc = vigil_listen(srv.loop, &lo, on_accept, NULL, &srv.listener);
    if (rc < 0) {
        fprintf(stderr, "vigil serve: cannot listen on %s:%u: %s\n", host, port, vigil_strerror(rc));
        vigil_loop_destroy(srv.loop);
        return 1;
    }
    vigil_loop_info info;
    vigil_loop_info_get(srv.loop, &info);
    int bound = vigil_listener_port(srv.loop, srv.listener);
    const char *fmt = strchr(host, ':') ? "[%s]:%d" : "%s:%d";
    char where[80];
    snprintf(where, sizeof(where), fmt, host, bound);
    printf("vigil serve: backend %s (%s), echo on %s port %d\n", info.backend, info.reason, where, bound);
    static const char *names[] = {"multishot-accept", "multishot-recv", "buf-ring", "nodrop",
                                  "cancel-fd", "defer-taskrun", "single-issuer", "ext-arg"};
    printf("vigil serve: features");
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (info.features & (1u << i))
            printf(" %s", names[i]);
    printf("; ring %u/%u entries, %u buffers of %u bytes\n", info.ring_entries, info.cq_entries,
           info.buf_count, info.buf_size);
    fflush(stdout);

    vigil_supervisor *sv = NULL;
    if (stall_ms) {
        vigil_supervisor_options so = {.stall_ms = stall_ms, .grace_ms = grace_ms,
                                       .budget_rebuilds = budget_r, .budget_window_ms = budget_t * 1000,
                                       .budget_action = budget_action};
        rc = vigil_supervisor_start(&sv, &so);
        if (rc == 0)
            rc = vigil_supervisor_add(sv, srv.loop);
        if (rc < 0) {
            fprintf(stderr, "vigil serve: cannot supervise the loop: %s\n", vigil_strerror(rc));
            if (sv)
                vigil_supervisor_stop(sv);
            vigil_loop_destroy(srv.loop);
            return 1;
        }
        fprintf(stderr, "vigil serve: supervised: stall after %u ms, rebuild after %u ms more, "
                        "budget %u rebuilds in %u s, then %s\n", stall_ms, stall_ms, budget_r, budget_t,
                budget_action == VIGIL_BUDGET_EPOLL ? "epoll" : budget_action == VIGIL_BUDGET_REPORT
                                                                    ? "report only" : "exit");
    }
    srv.sv = sv;
    if (srv.inject_kind)
        vigil_timer_start(srv.loop, srv.inject_period_ms, srv.inject_period_ms, inject_timer, NULL,
                          &srv.inject_op);

    pthread_t sig_tid;
    pthread_create(&sig_tid, NULL, signal_thread, &set);
    pthread_detach(sig_tid);

    rc = vigil_loop_run(srv.loop, VIGIL_RUN_DEFAULT, -1);
    if (rc == -EOWNERDEAD) { /* this thread was fenced: the loop goes on, on a thread of vigil's */
        fprintf(stderr, "vigil serve: the main thread was fenced; the loop runs on in a new thread\n");
        rc = vigil_loop_join(srv.loop, -1);
    }
    atomic_store(&srv.main_back, 1);
    if (rc < 0)
        fprintf(stderr, "vigil serve: loop failed: %s\n", vigil_strerror(rc));
    return finish(rc < 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("vigil %s\n", vigil_version());
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage_main(stdout);
        return 0;
    }
    fprintf(stderr, "vigil: unknown command '%s'\n", cmd);
    usage_main(stderr);
    return 2;
}
