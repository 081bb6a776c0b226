/*
 * vigil serve: an echo server or a fixed-response HTTP/1.1 server on one or
 * more supervised loops, with deliberate stalls for profiling recovery.
 *
 * Each loop runs on a thread of its own (--threads N), with its own listener
 * on the same port (SO_REUSEPORT: the kernel spreads connections). The main
 * thread only waits for SIGINT/SIGTERM: signals never interrupt a loop.
 */
#include "vigil.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#ifdef _WIN32
#include <windows.h>
#define BACKEND_HINT "use --backend auto (Windows has one backend: iocp)"
#else
#include <sys/resource.h>
#include <unistd.h>
#if defined(VIGIL_HAVE_URING) && !VIGIL_HAVE_URING
#define BACKEND_HINT "this vigil was built without io_uring (-During=disabled, or no liburing); " \
                     "use --backend auto or epoll"
#else
#define BACKEND_HINT "use --backend auto or epoll"
#endif
#endif

#include "cli.h"
#include "clock.h"
#include "files.h"
#include "http.h"
#include "http_conn.h"
#include "metrics.h"
#include "opts.h"

/* ------------------------------------------------------------ settings */

enum { INJECT_NONE, INJECT_SPIN, INJECT_BLOCK, INJECT_HANG };
/* Send-queue high-water marks: what one connection may hold in responses
 * (plus the one being queued when it crossed). */
#define HWM (1u << 20)
#define HWM_FILES (256u << 10)
enum { MODE_ECHO, MODE_HTTP };

static struct {
    const char *host;
    uint16_t port;
    int mode;
    uint32_t body_size;
    const char *root; /* --root: static files */
    uint32_t threads;
    int metrics_port; /* -1: none */
    vigil_loop_options loop_opts;
    int backend; /* vigil_backend, into loop_opts */
    uint32_t stall_ms, grace_ms, budget_r, budget_t;
    int budget_action; /* vigil_budget_action */
    uint32_t idle_ms;
    uint32_t request_ms;                /* HTTP: a request must arrive within this */
    uint32_t user_timeout_ms;           /* 0 = kernel default */
    uint32_t ka_idle, ka_intvl, ka_cnt; /* 0 = off */
    int inject_kind;
    uint32_t inject_ms, inject_period_ms, inject_count; /* count 0: no end */
    char *response;   /* the keep-alive HTTP/1.1 response, head and body */
    size_t response_len;
    char *body;
} cfg = {.host = "127.0.0.1", .port = 7000, .body_size = 13, .threads = 1, .metrics_port = -1,
         .grace_ms = 1000, .budget_r = 5, .budget_t = 10, .request_ms = 10000};

/* ------------------------------------------------------------ one loop */

typedef struct entry {
    vigil_conn c;
    http_conn *hc;  /* HTTP mode: the request side */
    files_conn *fc; /* HTTP mode with --root */
} entry;

typedef struct server {
    int index;
    vigil_loop *loop;
    vigil_listener listener;
    vigil_op inject_op;
    int inject_due; /* the next receive callback stalls */
    uint32_t injected;
    entry *conns; /* live connections; conn data holds index + 1 */
    size_t n, cap, open_at_stop;
    serve_counters counters; /* read by the metrics thread */
    uint64_t idle_closed;
    uint64_t request_timeouts; /* 408: a request did not arrive whole in time */
    int shutdown_ticks;
    int port; /* the bound port */
    vigil_op sweep_op; /* HTTP: the request deadline's sweep */
    vigil_op trim_op;  /* loop 0: memory back to the system */
    file_cache *files; /* --root: this loop's open-file cache */
    /* HTTP: responses to pipelined requests, batched into one send per read */
    char out[65536];
    size_t olen;
    uint64_t out_conn; /* whose they are */
} server;

static server *servers;
static uint32_t nservers;
static vigil_supervisor *supervisor;

static void count_add(_Atomic uint64_t *c, uint64_t v) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

static void conn_forget(server *s, vigil_loop *loop, vigil_conn c) {
    uintptr_t i1 = (uintptr_t)vigil_conn_get_data(loop, c);
    if (!i1 || i1 > s->n)
        return;
    size_t i = i1 - 1;
    if (s->conns[i].hc) {
        http_conn_release(s->conns[i].hc);
        free(s->conns[i].hc);
    }
    if (s->conns[i].fc)
        files_conn_gone(loop, s->conns[i].fc);
    if (s->out_conn == c.id)
        s->olen = 0; /* a batch never goes to another connection */
    s->conns[i] = s->conns[--s->n];
    if (i < s->n)
        vigil_conn_set_data(loop, s->conns[i].c, (void *)(i + 1));
    vigil_conn_set_data(loop, c, NULL);
}

static void on_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {}

static void on_drain(vigil_loop *loop, vigil_conn c, void *ud) { vigil_conn_recv_resume(loop, c); }

static entry *entry_of(server *s, vigil_loop *loop, vigil_conn c) {
    uintptr_t i1 = (uintptr_t)vigil_conn_get_data(loop, c);
    return i1 && i1 <= s->n ? &s->conns[i1 - 1] : NULL;
}

/* Deliberate stalls, for profiling recovery (--inject). Not static: a stall
 * report's backtrace names them. */
__attribute__((noinline)) void serve_inject_spin(uint32_t ms);
__attribute__((noinline)) void serve_inject_spin(uint32_t ms) {
    uint64_t until = now_ns() + (uint64_t)ms * NS_PER_MS;
    while (now_ns() < until)
        ;
}

/* block and hang wait in what the supervisor can interrupt: on Linux a
 * signal (EINTR), on Windows an APC, which ends an alertable wait. */
__attribute__((noinline)) void serve_inject_block(uint32_t ms);
__attribute__((noinline)) void serve_inject_block(uint32_t ms) {
#ifdef _WIN32
    SleepEx(ms, TRUE); /* one alertable wait; an APC (interrupted) means done */
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* one syscall; interrupted means done */
#endif
}

__attribute__((noinline)) void serve_inject_hang(void);
__attribute__((noinline)) void serve_inject_hang(void) {
#ifdef _WIN32
    HANDLE never = CreateEventA(NULL, TRUE, FALSE, NULL); /* never set */
    if (!never)
        return;
    while (WaitForSingleObjectEx(never, INFINITE, TRUE) == WAIT_IO_COMPLETION)
        ; /* retried when interrupted: only a rebuild frees the loop */
#else
    int p[2];
    if (pipe(p) < 0)
        return;
    char c;
    while (read(p[0], &c, 1) < 0 && errno == EINTR)
        ; /* retried when interrupted: only a rebuild frees the loop */
#endif
}

static void inject_timer(vigil_loop *loop, vigil_op t, int status, void *ud) {
    server *s = ud;
    if (status == 0)
        s->inject_due = 1;
}

static void inject_now(server *s, vigil_loop *loop) {
    s->inject_due = 0;
    s->injected++;
    if (cfg.inject_count && s->injected >= cfg.inject_count && s->inject_op.id) {
        vigil_op_cancel(loop, s->inject_op);
        s->inject_op.id = 0;
    }
    fprintf(stderr, "vigil serve: injecting %s for %u ms\n",
            cfg.inject_kind == INJECT_SPIN ? "spin" : cfg.inject_kind == INJECT_BLOCK ? "block" : "hang",
            cfg.inject_ms);
    if (cfg.inject_kind == INJECT_SPIN)
        serve_inject_spin(cfg.inject_ms);
    else if (cfg.inject_kind == INJECT_BLOCK)
        serve_inject_block(cfg.inject_ms);
    else
        serve_inject_hang();
}

/* A receive that ended: reset after a stuck callback (-EOWNERDEAD), an idle
 * or vanished peer (-ETIMEDOUT), or EOF/an error. Returns 1 if it ended. */
static int recv_ended(server *s, vigil_loop *loop, vigil_conn c, int status) {
    if (status > 0)
        return 0;
    if (status == -EOWNERDEAD) { /* its callback stayed stuck past --grace-ms */
        fprintf(stderr, "vigil serve: conn %#llx was reset: its callback stayed stuck\n",
                (unsigned long long)c.id);
        conn_forget(s, loop, c);
        vigil_conn_abort(loop, c, on_closed, NULL);
    } else if (status == -ETIMEDOUT) { /* --idle-ms: the peer went quiet (or, from the
                                        * kernel, --user-timeout-ms / --keepalive) */
        s->idle_closed++;
        if (cfg.idle_ms && !cfg.user_timeout_ms && !cfg.ka_idle)
            fprintf(stderr, "vigil serve: conn %#llx idle for %u ms: reset\n",
                    (unsigned long long)c.id, cfg.idle_ms);
        else
            fprintf(stderr, "vigil serve: conn %#llx timed out (idle deadline, user timeout or "
                            "keepalive): reset\n", (unsigned long long)c.id);
        conn_forget(s, loop, c);
        vigil_conn_abort(loop, c, on_closed, NULL);
    } else { /* EOF or error: flush what is queued, then close */
        conn_forget(s, loop, c);
        vigil_conn_close(loop, c, 5000, on_closed, NULL);
    }
    return 1;
}

/* Sends; returns 0, 1 when the queue is over its high-water mark, or -1 when
 * the connection was dropped or this thread fenced. */
static int answer(server *s, vigil_loop *loop, vigil_conn c, const void *data, size_t len) {
    int rc = vigil_conn_send(loop, c, data, len, 0, NULL, NULL, NULL);
    if (rc == -EOWNERDEAD)
        return -1; /* this thread was fenced off: the loop went on elsewhere */
    if (rc < 0) {
        conn_forget(s, loop, c);
        vigil_conn_abort(loop, c, on_closed, NULL);
        return -1;
    }
    count_add(&s->counters.sent, len);
    return rc;
}

static void on_recv_echo(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *buf, void *ud) {
    server *s = ud;
    if (recv_ended(s, loop, c, status))
        return;
    count_add(&s->counters.bytes, (uint64_t)status);
    int rc = answer(s, loop, c, buf->data, buf->len);
    if (rc < 0)
        return;
    if (rc == 1)
        vigil_conn_recv_pause(loop, c); /* the peer reads slower than it writes: on_drain resumes */
    if (s->inject_due)
        inject_now(s, loop); /* after the echo: a stall, not a lost message */
}

/* ------------------------------------------------------------ HTTP */

/* A response's bytes; the request side hears when the queue is over its mark. */
static int answer_http(server *s, vigil_loop *loop, vigil_conn c, const void *data, size_t len) {
    int rc = answer(s, loop, c, data, len);
    entry *e = rc == 1 ? entry_of(s, loop, c) : NULL;
    if (e && e->hc)
        http_conn_sent(e->hc, rc);
    return rc;
}

/* http_conn hands each request over, in order, while the send queue is under
 * its high-water mark; the fixed responses of consecutive requests gather in
 * s->out and go out in one send (flush_batch) at the end of the read. */
static int flush_batch(vigil_loop *loop, vigil_conn c, void *ud) {
    server *s = ud;
    if (!s->olen || s->out_conn != c.id)
        return 0;
    size_t n = s->olen;
    s->olen = 0;
    return answer_http(s, loop, c, s->out, n) < 0 ? -1 : 0;
}

static int batch(server *s, vigil_loop *loop, vigil_conn c, const void *data, size_t len) {
    if (s->olen && (s->out_conn != c.id || s->olen + len > sizeof(s->out)) &&
        flush_batch(loop, s->out_conn == c.id ? c : (vigil_conn){s->out_conn}, s) < 0)
        return -1;
    if (len > sizeof(s->out)) /* a large body goes in a send of its own */
        return answer_http(s, loop, c, data, len) < 0 ? -1 : 0;
    s->out_conn = c.id;
    memcpy(s->out + s->olen, data, len);
    s->olen += len;
    return 0;
}

static int on_request_fixed(vigil_loop *loop, vigil_conn c, const http_request *req, void *ud) {
    server *s = ud;
    count_add(&s->counters.requests, 1);
    int more = req->keep_alive ? HTTP_NEXT : HTTP_CLOSE;
    if (!req->head && !req->http10 && req->keep_alive) /* the common case */
        return batch(s, loop, c, cfg.response, cfg.response_len) < 0 ? HTTP_GONE : more;
    char head[256];
    int h = http_response_head(head, sizeof(head), cfg.body_size, "text/plain", req);
    if (h < 0 || batch(s, loop, c, head, (size_t)h) < 0 ||
        (!req->head && cfg.body_size && batch(s, loop, c, cfg.body, cfg.body_size) < 0))
        return HTTP_GONE;
    return more;
}

static int on_request_files(vigil_loop *loop, vigil_conn c, const http_request *req, void *ud) {
    entry *e = entry_of(ud, loop, c);
    return e && e->fc ? files_request(loop, e->fc, req) : HTTP_GONE;
}

static void http_end(vigil_loop *loop, vigil_conn c, int abortive, void *ud) {
    conn_forget(ud, loop, c);
    if (abortive)
        vigil_conn_abort(loop, c, on_closed, NULL);
    else
        vigil_conn_close(loop, c, 5000, on_closed, NULL);
}

static const http_conn_hooks fixed_hooks = {on_request_fixed, flush_batch, http_end};
static const http_conn_hooks files_hooks_http = {on_request_files, NULL, http_end};

static void on_recv_http(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *buf, void *ud) {
    server *s = ud;
    entry *e = entry_of(s, loop, c);
    if (status == 0 && e && e->hc) { /* EOF: what came whole is still answered */
        http_conn_eof(loop, e->hc);
        return;
    }
    if (recv_ended(s, loop, c, status))
        return;
    count_add(&s->counters.bytes, (uint64_t)status);
    if (!e || !e->hc)
        return;
    http_conn_data(loop, e->hc, buf->data, buf->len);
    if (s->inject_due)
        inject_now(s, loop);
}

/* --root: files answers the requests; these are its hooks back. */
static void files_requests(void *ud, uint64_t n) { count_add(&((server *)ud)->counters.requests, n); }
static void files_sent(void *ud, uint64_t n) { count_add(&((server *)ud)->counters.sent, n); }

static const files_hooks file_hooks = {files_requests, http_end, files_sent};

static void on_drain_http(vigil_loop *loop, vigil_conn c, void *ud) {
    entry *e = entry_of(ud, loop, c);
    if (e && e->hc)
        http_conn_drained(loop, e->hc);
}

/* Every request must arrive whole within --request-ms of its first byte:
 * checked here, about four times per deadline (a sweep over the
 * connections costs less than a timer per connection). Downwards: an ended
 * connection's place is taken by the last one, already seen. */
static void request_sweep(vigil_loop *loop, vigil_op t, int status, void *ud) {
    server *s = ud;
    if (status < 0)
        return;
    uint64_t now = now_ns(), limit = (uint64_t)cfg.request_ms * NS_PER_MS;
    for (size_t i = s->n; i-- > 0;)
        if (i < s->n && s->conns[i].hc && http_conn_overdue(s->conns[i].hc, now, limit)) {
            s->request_timeouts++;
            http_conn_timeout(loop, s->conns[i].hc);
        }
}

/* Memory freed after a burst (a thousand connections holding a 1 MiB answer
 * each, say) goes back to the system: glibc keeps freed chunks in its
 * arenas, and raises its mmap threshold after the first large free, so
 * without this a process keeps its peak for good. Every 2 s, from loop 0
 * (malloc_trim covers every thread's arena). */
static void trim_memory(vigil_loop *loop, vigil_op t, int status, void *ud) {
#ifdef __GLIBC__
    if (status == 0)
        malloc_trim(0);
#endif
}

static void on_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    server *s = ud;
    if (status < 0) {
        if (status != -ECANCELED)
            fprintf(stderr, "vigil serve: accept failed: %s\n", vigil_strerror(status));
        return;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        entry *p = realloc(s->conns, cap * sizeof(*p));
        if (!p) {
            vigil_conn_abort(loop, c, on_closed, NULL);
            return;
        }
        s->conns = p;
        s->cap = cap;
    }
    http_conn *hc = NULL;
    files_conn *fc = NULL;
    /* The send queue's high-water mark bounds a connection: a large file
     * waits for its chunk to drain before the next is read (files), and no
     * request is taken while the queue is over it (http_conn). */
    size_t hwm = cfg.root ? HWM_FILES : HWM;
    if (cfg.mode == MODE_HTTP) {
        hc = malloc(sizeof(*hc));
        fc = hc && cfg.root ? files_conn_new(c, hc, s->files, &file_hooks, s) : NULL;
        if (!hc || (cfg.root && !fc)) {
            free(hc);
            vigil_conn_abort(loop, c, on_closed, NULL);
            return;
        }
        http_conn_init(hc, c, cfg.root ? &files_hooks_http : &fixed_hooks, s);
    }
    s->conns[s->n++] = (entry){c, hc, fc};
    vigil_conn_set_data(loop, c, (void *)(uintptr_t)s->n);
    count_add(&s->counters.accepted, 1);
    if (hc)
        vigil_conn_set_watermark(loop, c, hwm, hwm / 4, on_drain_http, s);
    else
        vigil_conn_set_watermark(loop, c, hwm, hwm / 4, on_drain, NULL);
    int zrc = cfg.user_timeout_ms ? vigil_conn_set_user_timeout(loop, c, cfg.user_timeout_ms) : 0;
    if (zrc == 0 && cfg.ka_idle)
        zrc = vigil_conn_set_keepalive(loop, c, cfg.ka_idle * 1000u, cfg.ka_intvl * 1000u,
                                       cfg.ka_cnt); /* the flag is in seconds */
    if (zrc < 0) {
        fprintf(stderr, "vigil serve: cannot set --user-timeout-ms/--keepalive: %s\n",
                vigil_strerror(zrc));
        conn_forget(s, loop, c);
        vigil_conn_abort(loop, c, on_closed, NULL);
        return;
    }
    vigil_recv_cb cb = cfg.mode == MODE_HTTP ? on_recv_http : on_recv_echo;
    if (vigil_conn_recv_start(loop, c, cfg.idle_ms, cb, s, NULL) < 0) {
        conn_forget(s, loop, c);
        vigil_conn_abort(loop, c, on_closed, NULL);
    }
}

/* Clean shutdown, on the loop's thread (whichever it is by now): stop
 * accepting, flush and close every connection, then stop the loop once they
 * are all closed, or after 3 s with what is still open cut. */
static void shutdown_tick(vigil_loop *loop, vigil_op t, int status, void *ud) {
    server *s = ud;
    if (status < 0)
        return;
    vigil_loop_stats st;
    vigil_loop_get_stats(loop, &st);
    if (st.connections == 0 || ++s->shutdown_ticks >= 150) {
        vigil_op_cancel(loop, t);
        vigil_loop_stop(loop);
    }
}

/* Posted by vigil_serve to each loop at SIGINT/SIGTERM (Ctrl-C on Windows). */
static void shutdown_now(vigil_loop *loop, int status, void *arg) {
    server *s = NULL;
    for (uint32_t i = 0; i < nservers && !s; i++)
        s = servers[i].loop == loop ? &servers[i] : NULL;
    if (!s || status < 0)
        return;
    s->open_at_stop = s->n;
    if (s->inject_op.id)
        vigil_op_cancel(loop, s->inject_op);
    if (s->sweep_op.id)
        vigil_op_cancel(loop, s->sweep_op);
    if (s->trim_op.id)
        vigil_op_cancel(loop, s->trim_op);
    vigil_listener_close(loop, s->listener);
    while (s->n) {
        vigil_conn c = s->conns[s->n - 1].c;
        conn_forget(s, loop, c);
        vigil_conn_close(loop, c, 2000, on_closed, NULL);
    }
    vigil_timer_start(loop, 20, 20, shutdown_tick, s, NULL);
}

/* What one loop served, added into the totals printed at the end. */
static struct {
    uint64_t accepted, bytes, requests, stale, open_at_stop, request_timeouts;
    uint64_t rebuilds, migrated, carried, returned, reset;
} total;

/* Once per loop, after vigil_serve returned: its figures into the totals,
 * then the loop goes (unless it could not end: a thread still stuck in it). */
static void server_close(server *s, bool destroy) {
    if (supervisor)
        vigil_supervisor_remove(supervisor, s->loop);
    vigil_loop_stats st;
    vigil_loop_get_stats(s->loop, &st);
    total.accepted += atomic_load(&s->counters.accepted);
    total.bytes += atomic_load(&s->counters.bytes);
    total.requests += atomic_load(&s->counters.requests);
    total.open_at_stop += s->open_at_stop;
    total.request_timeouts += s->request_timeouts;
    total.stale += st.stale_completions;
    total.rebuilds += st.rebuilds;
    total.migrated += st.conns_migrated;
    total.carried += st.bytes_carried;
    total.returned += st.stuck_returned;
    total.reset += st.stuck_reset;
    if (destroy && vigil_loop_destroy(s->loop) == 0) /* -EBUSY while a fenced callback still runs: left to the exit */
        file_cache_free(s->files, NULL); /* after the loop: its last sends held entries */
}

static int server_setup(server *s) {
    vigil_loop_options opts = cfg.loop_opts;
    int rc = vigil_loop_create(&s->loop, &opts);
    if (rc < 0) {
        if (opts.backend != VIGIL_BACKEND_AUTO && (rc == -EPERM || rc == -ENOSYS || rc == -ENOTSUP))
            fprintf(stderr, "vigil serve: %s is unavailable here: %s (%d); %s\n",
                    opts.backend == VIGIL_BACKEND_URING ? "io_uring" : "epoll", vigil_strerror(rc), rc,
                    BACKEND_HINT);
        else
            fprintf(stderr, "vigil serve: cannot create a loop: %s (%d)\n", vigil_strerror(rc), rc);
        return rc;
    }
    /* loop 0 picks the port (0: any); the others share it */
    uint16_t port = s->index ? (uint16_t)servers[0].port : cfg.port;
    vigil_listener_options lo = {.host = cfg.host, .port = port, .reuseport = cfg.threads > 1};
    rc = vigil_listener_open(s->loop, &lo, on_accept, s, &s->listener);
    if (rc < 0) {
        if (rc == -ENOTSUP && lo.reuseport)
            fprintf(stderr, "vigil serve: --threads %u needs SO_REUSEPORT (one listener per loop on "
                            "the same port), which this system lacks (Windows): use --threads 1\n",
                    cfg.threads);
        else
            fprintf(stderr, "vigil serve: cannot listen on %s:%u: %s\n", cfg.host, port,
                    vigil_strerror(rc));
        vigil_loop_destroy(s->loop);
        s->loop = NULL;
        return rc;
    }
    if (cfg.root && !(s->files = file_cache_new())) {
        fprintf(stderr, "vigil serve: out of memory\n");
        vigil_loop_destroy(s->loop);
        s->loop = NULL;
        return -ENOMEM;
    }
    s->port = vigil_listener_get_port(s->loop, s->listener);
    uint32_t sweep_ms = cfg.request_ms / 4 < 1000 ? cfg.request_ms / 4 + 1 : 1000;
    if (cfg.mode == MODE_HTTP)
        vigil_timer_start(s->loop, sweep_ms, sweep_ms, request_sweep, s, &s->sweep_op);
    if (s->index == 0)
        vigil_timer_start(s->loop, 2000, 2000, trim_memory, s, &s->trim_op);
    if (cfg.inject_kind)
        vigil_timer_start(s->loop, cfg.inject_period_ms, cfg.inject_period_ms, inject_timer, s,
                          &s->inject_op);
    return 0;
}

/* ------------------------------------------------------------ options */

/* Splits buf at each sep, in place: the number of parts, up to max + 1 (too many). */
static int split(char *buf, char sep, char **part, int max) {
    int n = 0;
    for (char *p = buf;; p++) {
        if (n == max)
            return max + 1;
        part[n++] = p;
        p = strchr(p, sep);
        if (!p)
            return n;
        *p = '\0';
    }
}

/* n whole numbers separated by sep, number i in lo[i]..hi[i], into *out[i]. */
static int parse_fields(const char *v, char sep, int n, const uint32_t *lo, const uint32_t *hi,
                        uint32_t *const *out) {
    char buf[32], *part[4];
    if (strlen(v) >= sizeof(buf) || split(strcpy(buf, v), sep, part, n) != n)
        return -1;
    for (int i = 0; i < n; i++)
        if (num_u32(part[i], lo[i], hi[i], out[i]) != NUM_OK)
            return -1;
    return 0;
}

/* R/T: 1..1000000 rebuilds in 1..86400 s. */
static int parse_budget(const char *v, void *dest) {
    return parse_fields(v, '/', 2, (const uint32_t[]){1, 1}, (const uint32_t[]){1000000, 86400},
                        (uint32_t *const[]){&cfg.budget_r, &cfg.budget_t});
}

/* IDLE_S/INTERVAL_S/COUNT: 1..32767/1..32767/1..127 (what Linux takes). */
static int parse_keepalive(const char *v, void *dest) {
    return parse_fields(v, '/', 3, (const uint32_t[]){1, 1, 1}, (const uint32_t[]){32767, 32767, 127},
                        (uint32_t *const[]){&cfg.ka_idle, &cfg.ka_intvl, &cfg.ka_cnt});
}

/* KIND:DURATION_MS:PERIOD_MS[:COUNT], every number whole and in range. */
static int parse_inject(const char *v, void *dest) {
    char buf[96], *part[4];
    if (strlen(v) >= sizeof(buf))
        return -1;
    int n = split(strcpy(buf, v), ':', part, 4);
    cfg.inject_count = 0; /* no end */
    if (n < 3 || n > 4 || num_u32(part[1], 1, 3600000, &cfg.inject_ms) != NUM_OK ||
        num_u32(part[2], 1, 3600000, &cfg.inject_period_ms) != NUM_OK ||
        (n == 4 && num_u32(part[3], 1, UINT32_MAX, &cfg.inject_count) != NUM_OK))
        return -1;
    cfg.inject_kind = !strcmp(part[0], "spin")    ? INJECT_SPIN
                      : !strcmp(part[0], "block") ? INJECT_BLOCK
                      : !strcmp(part[0], "hang")  ? INJECT_HANG
                                                  : INJECT_NONE;
    return cfg.inject_kind == INJECT_NONE ? -1 : 0;
}

static const opt_choice backends[] = {{"auto", VIGIL_BACKEND_AUTO},
                                      {"uring", VIGIL_BACKEND_URING},
                                      {"io_uring", VIGIL_BACKEND_URING},
                                      {"epoll", VIGIL_BACKEND_EPOLL},
                                      {NULL}};
static const opt_choice modes[] = {{"echo", MODE_ECHO}, {"http", MODE_HTTP}, {NULL}};
static const opt_choice budget_actions[] = {{"exit", VIGIL_BUDGET_EXIT},
                                            {"epoll", VIGIL_BUDGET_EPOLL},
                                            {"report", VIGIL_BUDGET_REPORT},
                                            {NULL}};

static opt serve_opts[] = {
    {"--port", 0, OPT_U16, &cfg.port, 0, 65535, "P",
     .help = "TCP port to listen on (default {default}; 0 = any free port)"},
    {"--host", 0, OPT_STRING, &cfg.host, .meta = "H",
     .help = "numeric IPv4/IPv6 address (default {default})"},
    {"--backend", 0, OPT_ENUM, &cfg.backend, .meta = "B", .choices = backends,
     .help = "auto (default: io_uring, else epoll), uring or epoll\n"
             "(on Windows only auto: the IOCP backend)"},
    {"--mode", 0, OPT_ENUM, &cfg.mode, .meta = "M", .choices = modes,
     .help = "echo (default: every byte back) or http (HTTP/1.1 keep-alive,\n"
             "pipelining; every request gets 200 with a fixed body)"},
    {"--body-size", 0, OPT_U32, &cfg.body_size, 0, 1 << 20, "N",
     .help = "bytes of that body (default {default}, \"Hello, world!\"; {range})"},
    {"--root", 0, OPT_STRING, &cfg.root, .meta = "DIR",
     .help = "with --mode http: serve the files under DIR instead (GET and\n"
             "HEAD; 404 for what is missing or outside DIR; \"/\" is index.html;\n"
             "ETag, Last-Modified, 304, single ranges), looked at through\n"
             "vigil's file calls, never blocking the loop, and cached per loop:\n"
             "a file changed or deleted is seen within 1 s"},
    {"--threads", 0, OPT_U32, &cfg.threads, 1, 256, "N",
     .help = "N loops on N threads, one listener each on the same port\n"
             "(SO_REUSEPORT), all supervised when --stall-ms is set ({range};\n"
             "1 on Windows, which has no SO_REUSEPORT)"},
    {"--metrics-port", 0, OPT_INT, &cfg.metrics_port, 0, 65535, "P",
     .help = "serve counters and histograms in the Prometheus text\n"
             "format on 127.0.0.1:P (0 = any free port, printed at start)"},
    {"--stall-ms", 0, OPT_U32, &cfg.stall_ms, 1, UINT32_MAX, "N", .unit = "ms",
     .help = "supervise the loops: report a stall after N ms, then interrupt\n"
             "a thread blocked in a syscall, and after N ms more fence a\n"
             "thread stuck in a callback and rebuild the loop on a new\n"
             "thread, carrying every connection over (each action: one\n"
             "line on stderr)"},
    {"--restart-budget", 0, OPT_CUSTOM, NULL, .meta = "R/T", .parse = parse_budget,
     .hint = "R/T: 1..1000000 rebuilds in 1..86400 s",
     .help = "at most R rebuilds in T seconds (default 5/10), then what\n"
             "--on-budget says"},
    {"--on-budget", 0, OPT_ENUM, &cfg.budget_action, .meta = "A", .choices = budget_actions,
     .help = "when the budget is spent: exit (default; status 70), epoll\n"
             "(rebuild once more on epoll, with a fresh budget) or report\n"
             "(stop rebuilding)"},
    {"--grace-ms", 0, OPT_U32, &cfg.grace_ms, 1, 3600000, "N", .unit = "ms",
     .help = "how long a stuck callback's connection waits for it to come\n"
             "back after a rebuild before it is reset (default {default})"},
    {"--idle-ms", 0, OPT_U32, &cfg.idle_ms, 1, UINT32_MAX, "N", .unit = "ms",
     .help = "reset connections where nothing moves for N ms: no byte\n"
             "received, none of the sent bytes taken (default: off)"},
    {"--request-ms", 0, OPT_U32, &cfg.request_ms, 1, 3600000, "N", .unit = "ms",
     .help = "HTTP: a request (head and body) must arrive whole within\n"
             "N ms of its first byte, else 408 and close (default {default};\n"
             "also the metrics port)"},
    {"--user-timeout-ms", 0, OPT_U32, &cfg.user_timeout_ms, 1, INT_MAX, "N", .unit = "ms",
     .help = "drop connections whose sent data stays unacknowledged\n"
             "for N ms (TCP_USER_TIMEOUT; {range}): a vanished peer"},
    {"--keepalive", 0, OPT_CUSTOM, NULL, .meta = "I/V/C", .syn_meta = "IDLE_S/INTERVAL_S/COUNT",
     .parse = parse_keepalive, .hint = "IDLE_S/INTERVAL_S/COUNT: 1..32767/1..32767/1..127",
     .help = "probe a silent peer after I s, every V s, C times, then\n"
             "drop it (I and V 1..32767, C 1..127)"},
    {"--inject", 0, OPT_CUSTOM, NULL, .meta = "K:D:P[:C]",
     .syn_meta = "KIND:DURATION_MS:PERIOD_MS[:COUNT]", .parse = parse_inject,
     .hint = "KIND:DURATION_MS:PERIOD_MS[:COUNT], KIND spin|block|hang, DURATION and PERIOD "
             "1..3600000 ms, COUNT >= 1",
     .help = "stall a loop on purpose, first after P ms, then every\n"
             "P ms (C times; default: no end), in the receive callback of\n"
             "the next connection with data, after it was answered: spin\n"
             "(busy-loop D ms), block (sleep D ms in one syscall, not\n"
             "retried when interrupted), hang (a read that never returns by\n"
             "itself: only a rebuild frees the loop; that connection is\n"
             "reset after --grace-ms)"},
};

static opt_cmd serve_cmd = {
    "serve", serve_opts, sizeof(serve_opts) / sizeof(serve_opts[0]), 16,
    "Runs until SIGINT or SIGTERM (on Windows: Ctrl-C, Ctrl-Break, closing the console),\n"
    "then closes every connection cleanly (queued bytes are flushed, then FIN).\n"};

/* ------------------------------------------------------------ the system */

/* As many sockets as allowed. (The stop request, SIGINT/SIGTERM or Ctrl-C,
 * is vigil_serve's.) */
#ifdef _WIN32
static void raise_nofile(void) {} /* sockets are not counted against a limit there */
#else
static void raise_nofile(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}
#endif

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv) {
    int rc = opts_parse(&serve_cmd, argc, argv);
    if (rc >= 0)
        return rc;
    if (cfg.root && cfg.mode != MODE_HTTP)
        return opts_bad(&serve_cmd, "--root serves files over HTTP: it needs --mode http");
    cfg.loop_opts.backend = (vigil_backend)cfg.backend;
    return -1;
}

static int make_response(void) {
    cfg.body = malloc(cfg.body_size + 1);
    cfg.response = malloc(cfg.body_size + 256);
    if (!cfg.body || !cfg.response)
        return -ENOMEM;
    static const char hello[] = "Hello, world!";
    for (uint32_t i = 0; i < cfg.body_size; i++)
        cfg.body[i] = cfg.body_size == 13 ? hello[i] : (char)('a' + i % 26);
    http_request req = {.keep_alive = 1};
    int h = http_response_head(cfg.response, 256, cfg.body_size, "text/plain", &req);
    if (h < 0)
        return h;
    memcpy(cfg.response + h, cfg.body, cfg.body_size);
    cfg.response_len = (size_t)h + cfg.body_size;
    return 0;
}

static void print_banner(void) {
    vigil_loop_info info;
    vigil_loop_get_info(servers[0].loop, &info);
    int bound = servers[0].port;
    const char *fmt = strchr(cfg.host, ':') ? "[%s]:%d" : "%s:%d";
    char where[80];
    snprintf(where, sizeof(where), fmt, cfg.host, bound);
    char loops[32] = "";
    if (cfg.threads > 1)
        snprintf(loops, sizeof(loops), " x %u loops", cfg.threads);
    char what[300];
    snprintf(what, sizeof(what), "%s%s%s", cfg.mode == MODE_HTTP ? "http" : "echo",
             cfg.root ? " files from " : "", cfg.root ? cfg.root : "");
    printf("vigil serve: backend %s (%s), %s on %s%s port %d\n", info.backend, info.reason, what,
           where, loops, bound);
    static const char *names[] = {"multishot-accept", "multishot-recv", "buf-ring", "nodrop",
                                  "cancel-fd", "defer-taskrun", "single-issuer", "ext-arg"};
    printf("vigil serve: features");
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (info.features & (1u << i))
            printf(" %s", names[i]);
    printf("; ring %u/%u entries, %u buffers of %u bytes\n", info.ring_entries, info.cq_entries,
           info.buf_count, info.buf_size);
}

static void print_totals(void) {
    if (supervisor) {
        vigil_supervisor_stats ss;
        vigil_supervisor_get_stats(supervisor, &ss);
        uint64_t injected = 0;
        for (uint32_t i = 0; i < cfg.threads; i++)
            injected += servers[i].injected;
        fprintf(stderr,
                "vigil serve: supervisor: %llu stalls, %llu threads interrupted, %llu rebuilds "
                "(max %.1f ms), detection max %llu ms, %llu injected, supervisor CPU %.1f ms\n",
                (unsigned long long)ss.stalls, (unsigned long long)ss.threads_unblocked,
                (unsigned long long)ss.rebuilds, ss.rebuild_us_max / 1000.0,
                (unsigned long long)ss.detect_ms_max, (unsigned long long)injected, ss.cpu_ns / 1e6);
    }
    if (total.rebuilds)
        fprintf(stderr,
                "vigil serve: rebuilds: %llu, connections carried over %llu, bytes carried %llu, "
                "stuck callbacks back %llu, connections reset %llu\n",
                (unsigned long long)total.rebuilds, (unsigned long long)total.migrated,
                (unsigned long long)total.carried, (unsigned long long)total.returned,
                (unsigned long long)total.reset);
    char reqs[96] = "";
    if (cfg.mode == MODE_HTTP)
        snprintf(reqs, sizeof(reqs), ", %llu requests answered, %llu timed out (408)",
                 (unsigned long long)total.requests, (unsigned long long)total.request_timeouts);
    fprintf(stderr,
            "vigil serve: stopped; %llu connections served, %llu closed at stop, %llu bytes %s%s, "
            "%llu stale completions dropped\n",
            (unsigned long long)total.accepted, (unsigned long long)total.open_at_stop,
            (unsigned long long)total.bytes, cfg.mode == MODE_HTTP ? "received" : "echoed", reqs,
            (unsigned long long)total.stale);
}

/* What every loop needs before the first is made. Returns -1 to go on, else the exit status. */
static int prepare(void) {
    raise_nofile();
    int frc = cfg.root ? files_root(cfg.root) : 0;
    if (frc < 0) {
        fprintf(stderr, "vigil serve: --root %s: %s\n", cfg.root, strerror(-frc));
        return 1;
    }
    if (cfg.mode == MODE_HTTP && make_response() < 0) {
        fprintf(stderr, "vigil serve: out of memory\n");
        return 1;
    }
    if (cfg.stall_ms)
        /* a backend it can be rebuilt on exactly; and its connections share
         * nothing but atomic counters, so the rebuilt loop may serve them while
         * a fenced callback still runs (only the stuck connection waits) */
        cfg.loop_opts.flags |= VIGIL_LOOP_SUPERVISED | VIGIL_LOOP_INDEPENDENT_CALLBACKS;
    return -1;
}

/* Every loop is set up here, one after the other (loop 0 picks the port the
 * others share), then vigil_serve runs each on a thread of its own. */
static int setup_loops(vigil_loop **loops) {
    int rc = 0;
    for (; nservers < cfg.threads; nservers++) {
        server *s = &servers[nservers];
        s->index = (int)nservers;
        if ((rc = server_setup(s)) < 0)
            break;
        loops[nservers] = s->loop;
    }
    return rc;
}

/* With --stall-ms: the supervisor, watching every loop. */
static int start_supervisor(void) {
    if (!cfg.stall_ms)
        return 0;
    vigil_supervisor_options so = {.stall_ms = cfg.stall_ms, .grace_ms = cfg.grace_ms,
                                   .budget_rebuilds = cfg.budget_r,
                                   .budget_window_ms = cfg.budget_t * 1000,
                                   .budget_action = (vigil_budget_action)cfg.budget_action};
    int rc = vigil_supervisor_start(&supervisor, &so);
    for (uint32_t i = 0; rc == 0 && i < nservers; i++)
        rc = vigil_supervisor_add(supervisor, servers[i].loop);
    if (rc == -ENOTSUP && cfg.budget_action == VIGIL_BUDGET_EPOLL)
        fprintf(stderr, "vigil serve: --on-budget epoll: this system has no epoll (Windows): "
                        "use exit or report\n");
    else if (rc < 0)
        fprintf(stderr, "vigil serve: cannot supervise the loops: %s\n", vigil_strerror(rc));
    return rc;
}

/* With --metrics-port: the endpoint, on a loop and thread of its own. */
static int start_metrics(metrics_server **metrics) {
    if (cfg.metrics_port < 0)
        return 0;
    metrics_config mc = {.port = (uint16_t)cfg.metrics_port, .supervisor = supervisor,
                         .stall_ms = cfg.stall_ms, .nloops = nservers,
                         .request_ms = cfg.request_ms};
    metrics_loop *ml = calloc(nservers, sizeof(*ml));
    for (uint32_t i = 0; ml && i < nservers; i++)
        ml[i] = (metrics_loop){servers[i].loop, &servers[i].counters};
    mc.loops = ml;
    int rc = ml ? metrics_start(&mc, metrics) : -ENOMEM;
    free(ml);
    if (rc < 0)
        fprintf(stderr, "vigil serve: cannot serve metrics on 127.0.0.1:%d: %s\n",
                cfg.metrics_port, vigil_strerror(rc));
    return rc;
}

static void announce(metrics_server *metrics) {
    print_banner();
    if (metrics)
        printf("vigil serve: metrics on http://127.0.0.1:%d/metrics\n", metrics_port(metrics));
    fflush(stdout);
    if (supervisor)
        fprintf(stderr, "vigil serve: supervised: stall after %u ms, rebuild after %u ms more, "
                        "budget %u rebuilds in %u s, then %s\n", cfg.stall_ms, cfg.stall_ms,
                cfg.budget_r, cfg.budget_t,
                cfg.budget_action == VIGIL_BUDGET_EPOLL    ? "epoll"
                : cfg.budget_action == VIGIL_BUDGET_REPORT ? "report only"
                                                           : "exit");
}

/* Until SIGINT or SIGTERM (Ctrl-C): then each loop closes its connections
 * (shutdown_now) and ends; what has not ended 5 s later is stopped. */
static int serve_loops(vigil_loop **loops) {
    vigil_serve_options so = {.stop_ms = 5000, .on_stop = shutdown_now};
    int end = vigil_serve(loops, nservers, &so);
    if (end == -EDEADLK)
        fprintf(stderr, "vigil serve: a callback is still stuck in a fenced thread; leaving it\n");
    else if (end < 0)
        fprintf(stderr, "vigil serve: the loops did not end: %s\n", vigil_strerror(end));
    return end;
}

/* Everything down, the totals printed. Returns 1 if setting up failed;
 * else exits (end: what vigil_serve returned). */
static int finish(metrics_server *metrics, vigil_loop **loops, int rc, int end) {
    metrics_stop(metrics); /* before the loops it reads go */
    for (uint32_t i = 0; i < nservers; i++)
        server_close(&servers[i], end != -ETIMEDOUT);
    if (nservers)
        print_totals();
    if (supervisor)
        vigil_supervisor_stop(supervisor);
    free(loops);
    if (rc < 0 || nservers < cfg.threads)
        return 1;
    /* a thread stuck for good in a fenced callback still runs: leave without it */
    int code = end == -ETIMEDOUT ? 1 : 0;
    fflush(stdout);
    fflush(stderr);
#ifdef _WIN32
    /* Everything is closed and said: end the process here. exit() would
     * first run the CRT's and every DLL's teardown, and under wine64 that
     * path now and then faults (SIGSEGV, exit status 139, after the totals
     * line, about one stop in 40 on a busy host). */
    TerminateProcess(GetCurrentProcess(), (UINT)code);
#endif
    exit(code);
}

int cmd_serve(int argc, char **argv) {
    int rc = parse_args(argc, argv);
    if (rc >= 0 || (rc = prepare()) >= 0)
        return rc;
    servers = calloc(cfg.threads, sizeof(*servers));
    vigil_loop **loops = calloc(cfg.threads, sizeof(*loops));
    if (!servers || !loops) {
        fprintf(stderr, "vigil serve: out of memory\n");
        return 1;
    }
    metrics_server *metrics = NULL;
    int end = 0;
    if ((rc = setup_loops(loops)) == 0 && (rc = start_supervisor()) == 0 &&
        (rc = start_metrics(&metrics)) == 0) {
        announce(metrics);
        end = serve_loops(loops);
    }
    return finish(metrics, loops, rc, end);
}
