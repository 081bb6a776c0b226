/*
 * metrics.c: the Prometheus endpoint of vigil serve (see metrics.h).
 *
 * Every scrape renders fresh numbers: the loops' and the supervisor's stats
 * may be read from any thread without locks, so nothing here ever waits for a
 * served loop, stalled or not. Any path answers with the metrics. The
 * process_* families are read from /proc/self on this thread, like any
 * client library's process collector: procfs answers from the kernel's
 * memory, it never waits on a disk or on another thread.
 */
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>
#endif

#include "clock.h"
#include "http.h"
#include "http_conn.h"

struct metrics_server {
    metrics_config cfg; /* loops copied */
    pthread_t tid;
    vigil_loop *loop;
    vigil_listener listener;
    int port, setup_rc, setup_done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    http_conn conns[64]; /* METRICS_CONNS scrapes at once */
    size_t nconns;
};

/* ------------------------------------------------------------ rendering */

/* The exposition grows in a malloc'd string (open_memstream is POSIX only:
 * not in Windows' C library). */
typedef struct text {
    char *p;
    size_t n, cap;
    int failed;
} text;

__attribute__((format(printf, 2, 3))) static void put(text *t, const char *fmt, ...) {
    for (;;) {
        if (t->failed)
            return;
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->cap - t->n;
        int w = vsnprintf(t->p ? t->p + t->n : NULL, room, fmt, ap);
        va_end(ap);
        if (w < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)w < room) {
            t->n += (size_t)w;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 16384;
        while (cap - t->n <= (size_t)w)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

static void family(text *f, const char *name, const char *type, const char *help) {
    put(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One per-loop family: the value of each loop, taken by get. */
static void per_loop(text *f, const metrics_config *c, const vigil_loop_stats *st, const char *name,
                     const char *type, const char *help, size_t offset) {
    family(f, name, type, help);
    for (uint32_t i = 0; i < c->nloops; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&st[i] + offset, sizeof(v));
        put(f, "%s{loop=\"%u\"} %llu\n", name, vigil_loop_get_id(c->loops[i].loop), (unsigned long long)v);
    }
}

static void histogram(text *f, const char *name, const char *help, const double *le,
                      const uint64_t *counts, int nbuckets, double sum) {
    family(f, name, "histogram", help);
    uint64_t cum = 0;
    for (int b = 0; b < nbuckets; b++) {
        cum += counts[b];
        if (b < nbuckets - 1)
            put(f, "%s_bucket{le=\"%g\"} %llu\n", name, le[b], (unsigned long long)cum);
        else
            put(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    put(f, "%s_sum %.6f\n%s_count %llu\n", name, sum, name, (unsigned long long)cum);
}

#define LOOP_FAMILY(name, type, help, field)                                                       \
    per_loop(f, c, st, "vigil_loop_" name, type, help, offsetof(vigil_loop_stats, field))

/* The loops' own stats, a family each. */
static void render_loops(text *f, const metrics_config *c, const vigil_loop_stats *st) {
    LOOP_FAMILY("iterations_total", "counter", "Passes through the loop.", iterations);
    LOOP_FAMILY("completions_total", "counter", "Kernel completions handled.", completions);
    LOOP_FAMILY("ops_in_flight", "gauge", "Kernel operations submitted and not yet finished.",
                ops_in_flight);
    LOOP_FAMILY("connections", "gauge", "Open connections.", connections);
    LOOP_FAMILY("stale_completions_total", "counter",
                "Completions for operations that no longer exist, dropped.", stale_completions);
    LOOP_FAMILY("cq_overflows_total", "counter",
                "Times the completion queue overflowed (nothing was lost).", cq_overflows);
    LOOP_FAMILY("enobufs_rearms_total", "counter",
                "Receives re-armed after the buffer ring ran dry.", enobufs_rearms);
    LOOP_FAMILY("accept_emfile_total", "counter",
                "Accepts paused because the process ran out of file descriptors.", accept_emfile);
    LOOP_FAMILY("deadlines_expired_total", "counter",
                "Connect, send and receive-idle deadlines that ended an operation.", deadlines_expired);
    LOOP_FAMILY("deadline_shutdowns_total", "counter",
                "Hung sockets shut down because a deadline passed.", deadline_shutdowns);
    LOOP_FAMILY("rebuilds_total", "counter",
                "Times the loop was rebuilt on a new thread and backend.", rebuilds);
    LOOP_FAMILY("connections_migrated_total", "counter",
                "Connections carried over by rebuilds.", conns_migrated);
    LOOP_FAMILY("carried_bytes_total", "counter",
                "Received bytes a fenced loop had not delivered yet, carried over.", bytes_carried);
    LOOP_FAMILY("ops_reissued_total", "counter",
                "Operations whose request died with a fenced backend, issued again.", ops_reissued);
    LOOP_FAMILY("stuck_returned_total", "counter",
                "Fenced callbacks that came back (their connection moved over).", stuck_returned);
    LOOP_FAMILY("stuck_reset_total", "counter",
                "Connections reset because their callback stayed stuck.", stuck_reset);
    LOOP_FAMILY("refused_calls_total", "counter",
                "Calls from fenced threads refused with EOWNERDEAD.", refused_calls);
    family(f, "vigil_loop_last_rebuild_seconds", "gauge",
           "Time the last rebuild took, fence excluded.");
    for (uint32_t i = 0; i < c->nloops; i++)
        put(f, "vigil_loop_last_rebuild_seconds{loop=\"%u\"} %.6f\n",
                vigil_loop_get_id(c->loops[i].loop), st[i].last_rebuild_us / 1e6);
    family(f, "vigil_loop_progress_age_seconds", "gauge",
           "Time since the loop last passed through its kernel wait.");
    uint64_t now = now_ns();
    for (uint32_t i = 0; i < c->nloops; i++)
        put(f, "vigil_loop_progress_age_seconds{loop=\"%u\"} %.6f\n",
                vigil_loop_get_id(c->loops[i].loop),
                now > st[i].last_progress_ns ? (now - st[i].last_progress_ns) / 1e9 : 0.0);
}

/* What vigil serve counts per loop. */
static void render_served(text *f, const metrics_config *c) {
    static const struct {
        const char *name, *help;
        size_t off;
    } served[] = {
        {"vigil_serve_connections_accepted_total", "Connections accepted.",
         offsetof(serve_counters, accepted)},
        {"vigil_serve_received_bytes_total", "Bytes received from clients.",
         offsetof(serve_counters, bytes)},
        {"vigil_serve_sent_bytes_total",
         "Bytes queued to send to clients (a connection that broke may not have sent them all).",
         offsetof(serve_counters, sent)},
        {"vigil_serve_http_requests_total", "HTTP requests answered.",
         offsetof(serve_counters, requests)},
    };
    for (size_t k = 0; k < sizeof(served) / sizeof(served[0]); k++) {
        family(f, served[k].name, "counter", served[k].help);
        for (uint32_t i = 0; i < c->nloops; i++) {
            const serve_counters *sc = c->loops[i].counters;
            uint64_t v = sc ? atomic_load_explicit((_Atomic uint64_t *)((char *)sc + served[k].off),
                                                   memory_order_relaxed)
                            : 0;
            put(f, "%s{loop=\"%u\"} %llu\n", served[k].name, vigil_loop_get_id(c->loops[i].loop),
                    (unsigned long long)v);
        }
    }
}

/* The supervisor's counters and histograms. */
static void render_supervisor(text *f, const metrics_config *c) {
    vigil_supervisor_stats ss;
    if (!c->supervisor || vigil_supervisor_get_stats(c->supervisor, &ss) != 0)
        return;
    static const struct {
        const char *name, *help;
        size_t off;
    } sup[] = {
        {"stalls_total", "Stalls detected.", offsetof(vigil_supervisor_stats, stalls)},
        {"reports_total", "Stall reports made.", offsetof(vigil_supervisor_stats, reports)},
        {"reports_suppressed_total", "Stall reports left out by the report interval.",
         offsetof(vigil_supervisor_stats, reports_suppressed)},
        {"threads_unblocked_total", "Loop threads interrupted in a blocking syscall.",
         offsetof(vigil_supervisor_stats, threads_unblocked)},
        {"recoveries_total", "Stalls that ended without a rebuild.",
         offsetof(vigil_supervisor_stats, recoveries)},
        {"fences_total", "Loop threads fenced off.", offsetof(vigil_supervisor_stats, fences)},
        {"rebuilds_total", "Loops rebuilt.", offsetof(vigil_supervisor_stats, rebuilds)},
        {"rebuild_failures_total", "Rebuilds that failed.",
         offsetof(vigil_supervisor_stats, rebuild_failures)},
        {"budget_exceeded_total", "Times a loop used up its restart budget.",
         offsetof(vigil_supervisor_stats, budget_exceeded)},
        {"ticks_total", "Supervisor checks of its loops.", offsetof(vigil_supervisor_stats, ticks)},
    };
    for (size_t k = 0; k < sizeof(sup) / sizeof(sup[0]); k++) {
        uint64_t v;
        memcpy(&v, (const char *)&ss + sup[k].off, sizeof(v));
        put(f, "# HELP vigil_supervisor_%s %s\n# TYPE vigil_supervisor_%s counter\n"
                   "vigil_supervisor_%s %llu\n",
                sup[k].name, sup[k].help, sup[k].name, sup[k].name, (unsigned long long)v);
    }
    family(f, "vigil_supervisor_cpu_seconds_total", "counter",
           "CPU time of the supervisor thread.");
    put(f, "vigil_supervisor_cpu_seconds_total %.6f\n", ss.cpu_ns / 1e9);
    static const double rebuild_le[] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1};
    histogram(f, "vigil_supervisor_rebuild_duration_seconds",
              "Rebuild time, from the fence to every operation issued again.", rebuild_le,
              ss.rebuild_hist, 8, ss.rebuild_us_sum / 1e6);
    /* detection buckets are in quarters of stall_ms (see vigil.h) */
    static const int quarters[] = {4, 5, 6, 8, 12, 16, 32};
    double detect_le[7];
    double unit = (c->stall_ms ? c->stall_ms : 100) / 4.0 / 1000.0;
    for (int b = 0; b < 7; b++)
        detect_le[b] = quarters[b] * unit;
    histogram(f, "vigil_supervisor_detection_latency_seconds",
              "Time from the start of a stall to its report.", detect_le, ss.detect_hist, 8,
              ss.detect_ms_sum / 1e3);
}

/* A label value: \, " and newline escaped, as the text format wants. */
static void label_value(text *f, const char *s) {
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            put(f, "\\%c", *s);
        else if (*s == '\n')
            put(f, "\\n");
        else
            put(f, "%c", *s);
    }
}

/* What runs: the library's version, and the loops' backend (a series per
 * backend in use: loops that auto chose for may differ). */
static void render_build_info(text *f, const metrics_config *c) {
    family(f, "vigil_build_info", "gauge",
           "The vigil library's version and the loops' backend; always 1.");
    const char *seen[8]; /* static strings (vigil.h); there are fewer backends */
    int nseen = 0;
    for (uint32_t i = 0; i < c->nloops; i++) {
        vigil_loop_info info;
        if (vigil_loop_get_info(c->loops[i].loop, &info) != 0 || !info.backend)
            continue;
        int dup = 0;
        for (int k = 0; k < nseen; k++)
            dup |= !strcmp(seen[k], info.backend);
        if (dup || nseen == (int)(sizeof(seen) / sizeof(seen[0])))
            continue;
        seen[nseen++] = info.backend;
        put(f, "vigil_build_info{version=\"");
        label_value(f, vigil_version());
        put(f, "\",backend=\"");
        label_value(f, info.backend);
        put(f, "\"} 1\n");
    }
}

#ifdef __linux__
/* The standard process_* families, from /proc/self (proc(5)); a figure that
 * cannot be read is left out, its family with it. */
static void render_process(text *f) {
    double ticks = (double)sysconf(_SC_CLK_TCK), page = (double)sysconf(_SC_PAGESIZE);
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0, rss = 0, btime = 0;
    int have_stat = 0, have_btime = 0;
    char buf[1024];
    FILE *p = fopen("/proc/self/stat", "r");
    if (p) {
        size_t n = fread(buf, 1, sizeof(buf) - 1, p);
        buf[n] = 0;
        fclose(p);
        /* after the command's ")": field 3 (state) on; utime is 14, stime 15,
         * starttime 22, vsize 23, rss 24 */
        const char *q = strrchr(buf, ')');
        have_stat = q && sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d "
                                       "%*d %*d %*d %*d %llu %llu %llu",
                                &utime, &stime, &start, &vsize, &rss) == 5;
    }
    if ((p = fopen("/proc/stat", "r"))) {
        while (!have_btime && fgets(buf, sizeof(buf), p))
            have_btime = sscanf(buf, "btime %llu", &btime) == 1;
        fclose(p);
    }
    if (have_stat && ticks > 0) {
        family(f, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.");
        put(f, "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / ticks);
        family(f, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        put(f, "process_resident_memory_bytes %.0f\n", (double)rss * page);
        family(f, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        put(f, "process_virtual_memory_bytes %llu\n", vsize);
        if (have_btime) {
            family(f, "process_start_time_seconds", "gauge",
                   "Start time of the process since the Unix epoch in seconds.");
            put(f, "process_start_time_seconds %.2f\n", (double)btime + (double)start / ticks);
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long fds = -1; /* the directory's own descriptor is listed too */
        struct dirent *e;
        while ((e = readdir(d)))
            fds += e->d_name[0] != '.';
        closedir(d);
        family(f, "process_open_fds", "gauge", "Number of open file descriptors.");
        put(f, "process_open_fds %ld\n", fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        family(f, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        if (rl.rlim_cur == RLIM_INFINITY)
            put(f, "process_max_fds +Inf\n");
        else
            put(f, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
}
#else
/* No /proc (Windows): the process_* families are left out. */
static void render_process(text *f) { (void)f; }
#endif

char *metrics_render(const metrics_config *c, size_t *len) {
    text out = {0}, *f = &out;
    vigil_loop_stats *st = calloc(c->nloops ? c->nloops : 1, sizeof(*st));
    if (!st)
        return NULL;
    for (uint32_t i = 0; i < c->nloops; i++)
        vigil_loop_get_stats(c->loops[i].loop, &st[i]);
    render_loops(f, c, st);
    render_served(f, c);
    render_supervisor(f, c);
    render_build_info(f, c);
    render_process(f);
    free(st);
    put(f, "%s", ""); /* NUL-terminated even when empty */
    if (out.failed) {
        free(out.p);
        return NULL;
    }
    *len = out.n;
    return out.p;
}

/* ------------------------------------------------------------ the endpoint */

/* A scrape connection: its request side, bounded like a served one (one
 * exposition of about 20 KiB per request, none taken while the queue is over
 * METRICS_HWM), within a fixed table: a local port needs few. */
#define METRICS_CONNS 64
#define METRICS_HWM (256u << 10)
#define METRICS_IDLE_MS 30000

static void on_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {}

static http_conn *scrape_of(metrics_server *m, vigil_loop *loop, vigil_conn c) {
    uintptr_t i1 = (uintptr_t)vigil_conn_get_data(loop, c);
    return i1 && i1 <= m->nconns ? &m->conns[i1 - 1] : NULL;
}

static void scrape_forget(metrics_server *m, vigil_loop *loop, vigil_conn c) {
    uintptr_t i1 = (uintptr_t)vigil_conn_get_data(loop, c);
    if (!i1 || i1 > m->nconns)
        return;
    size_t i = i1 - 1;
    http_conn_release(&m->conns[i]);
    m->conns[i] = m->conns[--m->nconns];
    if (i < m->nconns)
        vigil_conn_set_data(loop, m->conns[i].c, (void *)(i + 1));
    vigil_conn_set_data(loop, c, NULL);
}

static void scrape_end(vigil_loop *loop, vigil_conn c, int abortive, void *ud) {
    scrape_forget(ud, loop, c);
    if (abortive)
        vigil_conn_abort(loop, c, on_closed, NULL);
    else
        vigil_conn_close(loop, c, 2000, on_closed, NULL);
}

static int scrape_request(vigil_loop *loop, vigil_conn c, const http_request *req, void *ud) {
    metrics_server *m = ud;
    size_t blen = 0;
    char *body = metrics_render(&m->cfg, &blen);
    char head[256];
    int h = body ? http_response_head(head, sizeof(head), blen, METRICS_CONTENT_TYPE, req) : -1;
    http_conn *hc = scrape_of(m, loop, c);
    int rc = h > 0 ? vigil_conn_send(loop, c, head, (size_t)h, 5000, NULL, NULL, NULL) : -ENOMEM;
    if (rc >= 0 && !req->head)
        rc = vigil_conn_send(loop, c, body, blen, 5000, NULL, NULL, NULL);
    if (hc)
        http_conn_sent(hc, rc);
    free(body);
    if (rc < 0) {
        scrape_end(loop, c, 1, m);
        return HTTP_GONE;
    }
    return req->keep_alive ? HTTP_NEXT : HTTP_CLOSE;
}

static const http_conn_hooks scrape_hooks = {scrape_request, NULL, scrape_end};

static void on_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *buf, void *ud) {
    metrics_server *m = ud;
    http_conn *hc = scrape_of(m, loop, c);
    if (!hc)
        return;
    if (status > 0)
        http_conn_data(loop, hc, buf->data, buf->len);
    else if (status == 0)
        http_conn_eof(loop, hc); /* what came whole is answered, then the close */
    else if (status == -ECANCELED)
        scrape_forget(m, loop, c); /* closed by us, or the loop's end */
    else
        scrape_end(loop, c, 1, m);
}

static void on_drain(vigil_loop *loop, vigil_conn c, void *ud) {
    http_conn *hc = scrape_of(ud, loop, c);
    if (hc)
        http_conn_drained(loop, hc);
}

static void on_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    metrics_server *m = ud;
    if (status < 0)
        return;
    if (m->nconns == METRICS_CONNS) { /* a scraper or two is what this port is for */
        vigil_conn_abort(loop, c, on_closed, NULL);
        return;
    }
    http_conn *hc = &m->conns[m->nconns++];
    http_conn_init(hc, c, &scrape_hooks, m);
    vigil_conn_set_data(loop, c, (void *)(uintptr_t)m->nconns);
    if (vigil_conn_set_watermark(loop, c, METRICS_HWM, METRICS_HWM / 4, on_drain, m) < 0 ||
        vigil_conn_recv_start(loop, c, METRICS_IDLE_MS, on_recv, m, NULL) < 0)
        scrape_end(loop, c, 1, m);
}

/* The request deadline, as on the served ports (serve.c's request_sweep). */
static void scrape_sweep(vigil_loop *loop, vigil_op t, int status, void *ud) {
    metrics_server *m = ud;
    if (status < 0)
        return;
    uint64_t now = now_ns();
    for (size_t i = m->nconns; i-- > 0;)
        if (i < m->nconns && http_conn_overdue(&m->conns[i], now, m->cfg.request_ms * NS_PER_MS))
            http_conn_timeout(loop, &m->conns[i]);
}

static void stop_now(vigil_loop *loop, int status, void *arg) {
    metrics_server *m = arg;
    if (status == 0)
        vigil_listener_close(loop, m->listener);
    vigil_loop_stop(loop);
}

static void *metrics_thread(void *arg) {
    metrics_server *m = arg;
    vigil_loop_options o = {.ring_entries = 64, .buf_count = 16};
    int rc = vigil_loop_create(&m->loop, &o);
    if (rc == 0) {
        vigil_listener_options lo = {.host = "127.0.0.1", .port = m->cfg.port};
        rc = vigil_listener_open(m->loop, &lo, on_accept, m, &m->listener);
        if (rc == 0) {
            m->port = vigil_listener_get_port(m->loop, m->listener);
            uint32_t every = m->cfg.request_ms / 4 < 1000 ? m->cfg.request_ms / 4 + 1 : 1000;
            vigil_timer_start(m->loop, every, every, scrape_sweep, m, NULL);
        } else
            vigil_loop_destroy(m->loop);
    }
    pthread_mutex_lock(&m->lock);
    m->setup_rc = rc;
    m->setup_done = 1;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (rc < 0)
        return NULL;
    vigil_loop_run(m->loop, VIGIL_RUN_DEFAULT, -1);
    vigil_loop_destroy(m->loop); /* open scrapes end here (their receive: -ECANCELED) */
    return NULL;
}

int metrics_start(const metrics_config *cfg, metrics_server **out) {
    metrics_server *m = calloc(1, sizeof(*m));
    metrics_loop *loops = calloc(cfg->nloops ? cfg->nloops : 1, sizeof(*loops));
    if (!m || !loops) {
        free(m);
        free(loops);
        return -ENOMEM;
    }
    memcpy(loops, cfg->loops, cfg->nloops * sizeof(*loops));
    m->cfg = *cfg;
    m->cfg.loops = loops;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    if (pthread_create(&m->tid, NULL, metrics_thread, m) != 0) {
        free(loops);
        free(m);
        return -EAGAIN;
    }
    pthread_mutex_lock(&m->lock);
    while (!m->setup_done)
        pthread_cond_wait(&m->cond, &m->lock);
    pthread_mutex_unlock(&m->lock);
    if (m->setup_rc < 0) {
        int rc = m->setup_rc;
        pthread_join(m->tid, NULL);
        free(loops);
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int metrics_port(const metrics_server *m) { return m->port; }

void metrics_stop(metrics_server *m) {
    if (!m)
        return;
    if (vigil_loop_post(m->loop, stop_now, m) < 0)
        vigil_loop_stop(m->loop);
    pthread_join(m->tid, NULL);
    free((void *)m->cfg.loops);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m);
}
