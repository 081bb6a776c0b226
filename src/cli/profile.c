/*
 * vigil profile: stall recovery, measured. For each backend and stall kind it
 * starts `vigil serve` supervised (pinned to one CPU), loads it with checked
 * echo clients (pinned to another), injects stalls, and reads what happened
 * from both sides: the server's supervisor lines on its stderr (stall start,
 * report, fence, rebuild, reset), stamped as they arrive, and the clients'
 * timeline, gaps and byte checks.
 *
 * Per scenario it reports detection latency (stall start to report, as seen
 * here), recovery (stall start until client throughput is back to half its
 * rate before the first stall), the largest wait each client saw (p50/p99
 * over connections), connections kept, bytes lost (must be 0) and throughput
 * before the first stall and after the last. Zombie peers are clients that go
 * silent; the server's idle deadline must reset them.
 */
#include "vigil.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "cli.h"
#include "clock.h"
#include "escape.h"
#include "load.h"
#include "opts.h"

enum { KIND_SPIN, KIND_BLOCK, KIND_HANG, KIND_ZOMBIE, NKINDS };
static const char *kind_names[] = {"spin", "block", "hang", "zombie"};
static const char *backend_names[] = {"uring", "epoll"};

/* What the server said, and when (seconds from the clients' time 0). */
enum { EV_STALL, EV_REPORT, EV_FENCE, EV_REBUILD, EV_RESET, EV_ZOMBIE_RESET, EV_OTHER };
static const char *event_names[] = {"stall", "report", "fence", "rebuild", "reset", "zombie-reset",
                                    "other"};

typedef struct event {
    int kind;
    uint64_t at_ns;
    double t;
    char text[200];
} event;

typedef struct scenario {
    int backend, kind;
    char name[32];
    load_result r;
    int load_rc;
    event *ev;
    size_t nev, cap;
    pthread_mutex_t lock;
    double detect_ms[128], recovery_ms[128];
    size_t ndetect, nrecovery;
    double rps_before, rps_after;
    const char *backend_used; /* from the server's first line */
    char backend_line[256];
    int server_status;        /* its exit status, -1 if killed */
    int ok;
} scenario;

static struct {
    int backends[2], nbackends;
    int kinds[NKINDS], nkinds;
    double duration_s;
    int stalls;
    uint32_t stall_len_ms, stall_ms;
    long conns, size;
    int mode; /* load_mode */
    int server_cpu, client_cpu;
    const char *out;
    int tty;
} cfg = {.backends = {0, 1}, .nbackends = 2, .kinds = {KIND_SPIN, KIND_BLOCK, KIND_HANG, KIND_ZOMBIE},
         .nkinds = NKINDS, .duration_s = 8, .stalls = 4, .stall_len_ms = 500, .stall_ms = 100,
         .conns = 200, .mode = LOAD_PINGPONG, .size = 64, .server_cpu = 0, .client_cpu = 1,
         .out = "vigil-profile"};

/* ------------------------------------------------------------ the server */

typedef struct server {
    child c;
    pthread_t reader; /* reads c.err_fd */
    bool reading;
    scenario *sc;
    FILE *log;
} server;

static void add_event(scenario *sc, int kind, const char *line) {
    pthread_mutex_lock(&sc->lock);
    if (sc->nev == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 64;
        event *p = realloc(sc->ev, cap * sizeof(*p));
        if (!p) {
            pthread_mutex_unlock(&sc->lock);
            return;
        }
        sc->ev = p;
        sc->cap = cap;
    }
    event *e = &sc->ev[sc->nev++];
    e->kind = kind;
    e->at_ns = now_ns();
    snprintf(e->text, sizeof(e->text), "%s", line);
    pthread_mutex_unlock(&sc->lock);
}

static int classify(const char *line) {
    if (strstr(line, "vigil serve: injecting"))
        return EV_STALL;
    if (strstr(line, "vigil: stall: "))
        return EV_REPORT;
    if (strstr(line, "fenced; rebuilding"))
        return EV_FENCE;
    if (strstr(line, " rebuilt on "))
        return EV_REBUILD;
    if (strstr(line, "was reset: its callback stayed stuck"))
        return EV_RESET;
    if (strstr(line, " idle for ") && strstr(line, "reset"))
        return EV_ZOMBIE_RESET;
    return EV_OTHER;
}

/* Reads the server's stderr line by line, stamping each line as it comes. */
static void *reader_main(void *arg) {
    server *c = arg;
    char buf[8192];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(c->c.err_fd, buf + have, sizeof(buf) - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = 0;
        char *start = buf, *nl;
        while ((nl = strchr(start, '\n'))) {
            *nl = 0;
            int k = classify(start);
            if (k != EV_OTHER || !strstr(start, "vigil serve: conn ")) /* keep the log readable */
                add_event(c->sc, k, start);
            if (c->log)
                fprintf(c->log, "%s\n", start);
            start = nl + 1;
        }
        have = strlen(start);
        memmove(buf, start, have);
        if (have == sizeof(buf) - 1)
            have = 0; /* a line too long to keep: dropped */
    }
    return NULL;
}

/* The arguments of `vigil serve` for a scenario, into argv (room for 16),
 * with its numbers written in buf. */
static void server_args(const scenario *sc, char *argv[], char buf[3][64]) {
    char *stall = buf[0], *idle = buf[1], *inject = buf[2];
    snprintf(stall, 64, "%u", cfg.stall_ms);
    snprintf(idle, 64, "%u", cfg.stall_ms * 3);
    /* stalls every period, from one period in: the last leaves time to recover */
    uint32_t period = (uint32_t)(cfg.duration_s * 1000 * 0.7 / cfg.stalls);
    snprintf(inject, 64, "%s:%u:%u:%d", kind_names[sc->kind], cfg.stall_len_ms, period, cfg.stalls);
    int a = 0;
    argv[a++] = "vigil";
    argv[a++] = "serve";
    argv[a++] = "--port";
    argv[a++] = "0";
    argv[a++] = "--backend";
    argv[a++] = (char *)backend_names[sc->backend];
    argv[a++] = "--stall-ms";
    argv[a++] = stall;
    argv[a++] = "--restart-budget";
    argv[a++] = "1000/10"; /* a profile stalls on purpose, often */
    argv[a++] = sc->kind == KIND_ZOMBIE ? "--idle-ms" : "--inject";
    argv[a++] = sc->kind == KIND_ZOMBIE ? idle : inject;
    argv[a] = NULL;
}

/* Starts `vigil serve` for a scenario; returns its port, or -errno. Its
 * stderr is read (and stamped) from the start, by reader_main. */
static int server_start(server *s, scenario *sc) {
    char *argv[16], buf[3][64], err[160];
    server_args(sc, argv, buf);
    child_opts co = {.cpu = cfg.server_cpu, .err_pipe = true};
    int rc = child_spawn(&s->c, "/proc/self/exe", argv, &co, err, sizeof(err));
    if (rc < 0)
        return rc;
    s->sc = sc;
    if ((rc = pthread_create(&s->reader, NULL, reader_main, s)) != 0)
        return -rc;
    s->reading = true;
    /* its first line names the backend and the port */
    uint16_t port = 0;
    if (child_first_line(&s->c, 5000, NULL, err, sizeof(err)) < 0 ||
        !(port = child_line_port(s->c.line)))
        return -EIO;
    snprintf(sc->backend_line, sizeof(sc->backend_line), "%.*s", (int)sizeof(sc->backend_line) - 1,
             s->c.line);
    sc->backend_used = strstr(s->c.line, "backend epoll") ? "epoll" : "io_uring";
    return port;
}

/* SIGINT, then SIGKILL after 5 s; its exit status goes to sc (-1: killed). */
static void server_stop(server *s, scenario *sc) {
    int st = child_stop(&s->c, SIGINT, 5000);
    sc->server_status = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (s->reading)
        pthread_join(s->reader, NULL); /* it ends at EOF: the server is gone */
    child_close(&s->c);
}

/* ------------------------------------------------------------ one scenario */

static scenario *progress_sc;
static int progress_i, progress_n;

static void on_progress(double elapsed, uint64_t requests, void *ud) {
    static uint64_t last_req;
    static double last_t;
    if (!cfg.tty)
        return;
    if (elapsed < last_t)
        last_t = 0, last_req = 0;
    double rate = elapsed > last_t ? (double)(requests - last_req) / (elapsed - last_t) : 0;
    last_t = elapsed;
    last_req = requests;
    fprintf(stderr, "\r[%d/%d] %-14s %5.1f/%.0f s %9.0f req/s ", progress_i, progress_n,
            progress_sc->name, elapsed, cfg.duration_s + 0.5, rate);
    fflush(stderr);
}

static double bins_rate(const load_result *r, double bin_s, double from, double to) {
    uint64_t n = 0;
    size_t cnt = 0;
    for (size_t b = 0; b < r->nbins; b++) {
        double t = b * bin_s;
        if (t >= from && t + bin_s <= to) {
            n += r->bins[b].requests;
            cnt++;
        }
    }
    return cnt ? (double)n / (cnt * bin_s) : 0;
}

#define BIN_S 0.05
#define WARMUP_S 0.5

static size_t stuck_resets(const scenario *sc);

static void analyse(scenario *sc) {
    const load_result *r = &sc->r;
    for (size_t i = 0; i < sc->nev; i++)
        sc->ev[i].t = ((double)sc->ev[i].at_ns - (double)r->t0_ns) / 1e9;
    double end = WARMUP_S + cfg.duration_s;
    double first = end, last_event = 0;
    if (sc->kind == KIND_ZOMBIE) {
        for (size_t z = 0; z < r->nzombies && sc->ndetect < 128; z++)
            if (r->zombie_detect_ms[z] >= 0)
                sc->detect_ms[sc->ndetect++] = r->zombie_detect_ms[z];
        for (size_t z = 0; z < r->nzombies; z++)
            if (r->zombie_silent_s[z] >= 0 && r->zombie_silent_s[z] < first)
                first = r->zombie_silent_s[z];
        for (size_t i = 0; i < sc->nev; i++)
            if (sc->ev[i].kind == EV_ZOMBIE_RESET && sc->ev[i].t > last_event)
                last_event = sc->ev[i].t;
    } else {
        double stall_t = -1;
        for (size_t i = 0; i < sc->nev; i++) {
            event *e = &sc->ev[i];
            if (e->kind == EV_OTHER)
                continue;
            if (e->t > last_event)
                last_event = e->t;
            if (e->kind == EV_STALL) {
                stall_t = e->t;
                if (e->t < first)
                    first = e->t;
            } else if (e->kind == EV_REPORT && stall_t >= 0 && sc->ndetect < 128) {
                sc->detect_ms[sc->ndetect++] = (e->t - stall_t) * 1000;
                stall_t = -1; /* one report per stall */
            }
        }
    }
    if (first < WARMUP_S)
        first = WARMUP_S + BIN_S;
    sc->rps_before = bins_rate(r, BIN_S, WARMUP_S, first);
    double after_from = last_event + 0.5;
    if (after_from > end - 0.5)
        after_from = end - 0.5;
    sc->rps_after = bins_rate(r, BIN_S, after_from, end);
    /* recovery: from each stall's start to the first bin back at half the rate before */
    for (size_t i = 0; i < sc->nev && sc->kind != KIND_ZOMBIE; i++) {
        if (sc->ev[i].kind != EV_STALL || sc->nrecovery >= 128)
            continue;
        double t0 = sc->ev[i].t;
        size_t b = (size_t)(t0 / BIN_S) + 1;
        for (; b < r->nbins; b++)
            if ((double)r->bins[b].requests / BIN_S >= sc->rps_before / 2)
                break;
        if (b < r->nbins)
            sc->recovery_ms[sc->nrecovery++] = (b * BIN_S - t0) * 1000;
    }
    /* Every connection meant to stay stayed, but those a hang's grace reset on
     * purpose: a run that kept none of them is no rescue, whatever it lost. */
    sc->ok = sc->load_rc == 0 && r->lost == 0 && r->mismatches == 0 && sc->server_status == 0 &&
             r->connected == (uint64_t)cfg.conns &&
             r->kept + stuck_resets(sc) >= (uint64_t)cfg.conns - r->nzombies;
}

static void run_scenario(scenario *sc) {
    server c = {0};
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.log", cfg.out, sc->name);
    c.log = fopen(path, "w");
    int port = server_start(&c, sc);
    if (port <= 0) {
        sc->load_rc = port < 0 ? port : -EIO;
        snprintf(sc->r.error, sizeof(sc->r.error), "the server did not start (see %.100s)", path);
        server_stop(&c, sc);
        if (c.log)
            fclose(c.log);
        return;
    }
    load_config lc = {.port = (uint16_t)port, .conns = cfg.conns, .mode = cfg.mode, .size = cfg.size,
                      .window = cfg.size * 4 > 65536 ? cfg.size * 4 : 65536,
                      .duration_s = cfg.duration_s, .warmup_s = WARMUP_S, .threads = 1,
                      .cpu = cfg.client_cpu, .server_pid = c.c.pid, .bin_s = BIN_S,
                      .progress = on_progress};
    if (sc->kind == KIND_ZOMBIE) {
        int per = (int)(cfg.conns / 20) ? (int)(cfg.conns / 20) : 1;
        if ((long)per * cfg.stalls > cfg.conns / 2)
            per = (int)(cfg.conns / 2 / cfg.stalls) ? (int)(cfg.conns / 2 / cfg.stalls) : 1;
        lc.zombie_rounds = cfg.stalls;
        lc.zombie_per_round = per;
        lc.zombie_period_s = cfg.duration_s * 0.7 / cfg.stalls;
        lc.zombie_first_s = WARMUP_S + lc.zombie_period_s;
    }
    sc->load_rc = load_run(&lc, &sc->r);
    server_stop(&c, sc);
    if (c.log)
        fclose(c.log);
    analyse(sc);
}

/* ------------------------------------------------------------ reports */

static double pct(const double *v, size_t n, double p) {
    double tmp[128];
    memcpy(tmp, v, n * sizeof(*v));
    return load_percentile(tmp, n, p);
}

static double max_of(const double *v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

/* Zombies the server reset or closed: its idle deadline's job, all of them. */
static size_t zombies_reset(const load_result *r) {
    size_t n = 0;
    for (size_t z = 0; z < r->nzombies; z++)
        n += r->zombie_detect_ms[z] >= 0;
    return n;
}

/* Connections reset because their callback stayed stuck past the grace: a
 * hang's, one per stall. */
static size_t stuck_resets(const scenario *sc) {
    size_t n = 0;
    for (size_t i = 0; i < sc->nev; i++)
        n += sc->ev[i].kind == EV_RESET;
    return n;
}

/* What the server reset on purpose, in words ("" when nothing). kept counts
 * the connections meant to stay, so that 160 of 200 kept in a zombie
 * scenario does not read as 40 lost: these say where the others went. */
static void designed_resets(const scenario *sc, char *buf, size_t size) {
    size_t n;
    if (sc->kind == KIND_ZOMBIE) /* "as intended" only when there were some, all reset */
        snprintf(buf, size, "%zu/%zu zombies reset by the idle deadline%s", zombies_reset(&sc->r),
                 sc->r.nzombies,
                 sc->r.nzombies && zombies_reset(&sc->r) == sc->r.nzombies ? ", as intended" : "");
    else if ((n = stuck_resets(sc)))
        snprintf(buf, size, "%zu conn%s reset, callback stuck past the grace, as intended", n,
                 n == 1 ? "" : "s");
    else
        buf[0] = 0;
}

static void print_row(FILE *f, const scenario *sc) {
    const load_result *r = &sc->r;
    char det[32] = "-", rec[32] = "-";
    if (sc->ndetect)
        snprintf(det, sizeof(det), "%.0f/%.0f", pct(sc->detect_ms, sc->ndetect, 0.5),
                 pct(sc->detect_ms, sc->ndetect, 0.99));
    if (sc->nrecovery)
        snprintf(rec, sizeof(rec), "%.0f/%.0f", pct(sc->recovery_ms, sc->nrecovery, 0.5),
                 max_of(sc->recovery_ms, sc->nrecovery));
    char gap[32] = "-";
    if (!sc->load_rc)
        snprintf(gap, sizeof(gap), "%.0f/%.0f", r->gap_p50_ms, r->gap_p99_ms);
    char kept[48], result[200];
    snprintf(kept, sizeof(kept), "%llu/%zu", (unsigned long long)r->kept, (size_t)cfg.conns - r->nzombies);
    snprintf(result, sizeof(result), "%s", sc->ok ? "ok" : sc->load_rc ? r->error : "FAILED");
    char resets[100];
    designed_resets(sc, resets, sizeof(resets));
    if (!sc->load_rc && resets[0])
        snprintf(result + strlen(result), sizeof(result) - strlen(result), "; %s", resets);
    fprintf(f, "%-14s %11s %11s %11s %9s %5llu %9.0f %9.0f  %s\n", sc->name, det, rec, gap, kept,
            (unsigned long long)(r->lost + r->mismatches), sc->rps_before, sc->rps_after, result);
}

static void print_header(FILE *f) {
    fprintf(f, "%-14s %11s %11s %11s %9s %5s %9s %9s\n", "scenario", "detect ms", "recover ms",
            "gap ms", "kept", "lost", "req/s", "req/s");
    fprintf(f, "%-14s %11s %11s %11s %9s %5s %9s %9s\n", "", "p50/p99", "p50/max", "p50/p99", "conns",
            "bytes", "before", "after");
}

static void json_array(FILE *f, const double *v, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%.1f", i ? "," : "", v[i]);
    fputc(']', f);
}

static int write_json(scenario *scs, int n, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "{\"vigil\":\"%s\",\"duration_s\":%.1f,\"conns\":%ld,\"mode\":\"%s\",\"size\":%ld,"
               "\"stall_ms\":%u,\"stall_len_ms\":%u,\"stalls\":%d,\"server_cpu\":%d,\"client_cpu\":%d,"
               "\"bin_s\":%.2f,\"scenarios\":[",
            vigil_version(), cfg.duration_s, cfg.conns, cfg.mode == LOAD_STREAM ? "stream" : "pingpong",
            cfg.size, cfg.stall_ms, cfg.stall_len_ms, cfg.stalls, cfg.server_cpu, cfg.client_cpu, BIN_S);
    for (int i = 0; i < n; i++) {
        scenario *sc = &scs[i];
        load_result *r = &sc->r;
        fprintf(f, "%s\n{\"name\":\"%s\",\"backend\":\"%s\",\"kind\":\"%s\",\"ok\":%s,", i ? "," : "",
                sc->name, backend_names[sc->backend], kind_names[sc->kind], sc->ok ? "true" : "false");
        fprintf(f, "\"server\":");
        json_str(f, sc->backend_line);
        fprintf(f, ",\"error\":");
        json_str(f, sc->load_rc ? r->error : "");
        fprintf(f, ",\"detect_ms\":");
        json_array(f, sc->detect_ms, sc->ndetect);
        fprintf(f, ",\"recovery_ms\":");
        json_array(f, sc->recovery_ms, sc->nrecovery);
        fprintf(f, ",\"gap_p50_ms\":%.1f,\"gap_p99_ms\":%.1f,\"gap_max_ms\":%.1f,\"kept\":%llu,"
                   "\"conns\":%ld,\"zombies\":%zu,\"zombies_reset\":%zu,\"stuck_resets\":%zu,"
                   "\"lost_bytes\":%llu,\"mismatched_bytes\":%llu,\"unechoed_on_reset_bytes\":%llu,"
                   "\"errors\":%llu,\"req_per_s\":%.1f,"
                   "\"req_per_s_before\":%.1f,\"req_per_s_after\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
                   "\"server_status\":%d,",
                r->gap_p50_ms, r->gap_p99_ms, r->gap_max_ms, (unsigned long long)r->kept, cfg.conns,
                r->nzombies, zombies_reset(r), stuck_resets(sc), (unsigned long long)r->lost,
                (unsigned long long)r->mismatches, (unsigned long long)r->unechoed_on_errors,
                (unsigned long long)r->errors, r->req_per_s,
                sc->rps_before, sc->rps_after, r->p50_us, r->p99_us, sc->server_status);
        fprintf(f, "\"events\":[");
        int first = 1;
        for (size_t e = 0; e < sc->nev; e++) {
            if (sc->ev[e].kind == EV_OTHER)
                continue;
            fprintf(f, "%s{\"t\":%.4f,\"kind\":\"%s\",\"text\":", first ? "" : ",", sc->ev[e].t,
                    event_names[sc->ev[e].kind]);
            json_str(f, sc->ev[e].text);
            fputc('}', f);
            first = 0;
        }
        fprintf(f, "],\"timeline\":[");
        for (size_t b = 0; b < r->nbins; b++)
            fprintf(f, "%s[%.2f,%.0f,%.1f,%.1f]", b ? "," : "", b * BIN_S, r->bins[b].requests / BIN_S,
                    r->bins[b].p50_us, r->bins[b].p99_us);
        fprintf(f, "],\"timeline_columns\":[\"t_s\",\"req_per_s\",\"p50_us\",\"p99_us\"]}");
    }
    fprintf(f, "\n]}\n");
    return fclose(f) ? -errno : 0;
}

static int write_csv(scenario *scs, int n, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "scenario,backend,kind,ok,detect_p50_ms,detect_p99_ms,recovery_p50_ms,recovery_max_ms,"
               "gap_p50_ms,gap_p99_ms,kept,conns,zombies,zombies_reset,lost_bytes,mismatched_bytes,"
               "req_per_s_before,req_per_s_after\n");
    for (int i = 0; i < n; i++) {
        scenario *sc = &scs[i];
        load_result *r = &sc->r;
        fprintf(f, "%s,%s,%s,%d,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%llu,%ld,%zu,%zu,%llu,%llu,%.0f,%.0f\n",
                sc->name, backend_names[sc->backend], kind_names[sc->kind], sc->ok,
                sc->ndetect ? pct(sc->detect_ms, sc->ndetect, 0.5) : 0,
                sc->ndetect ? pct(sc->detect_ms, sc->ndetect, 0.99) : 0,
                sc->nrecovery ? pct(sc->recovery_ms, sc->nrecovery, 0.5) : 0,
                max_of(sc->recovery_ms, sc->nrecovery), r->gap_p50_ms, r->gap_p99_ms,
                (unsigned long long)r->kept, cfg.conns, r->nzombies,
                zombies_reset(r), (unsigned long long)r->lost,
                (unsigned long long)r->mismatches, sc->rps_before, sc->rps_after);
    }
    return fclose(f) ? -errno : 0;
}

/* What a timeline marks: the server's events, a kind each, and the zombies
 * going silent (seen by the clients, so no server line). Each kind has a
 * lane of its own above the charts: a fence and its rebuild come within a
 * few ms of each other, a pixel or two apart at this scale, and on one line
 * one would hide the other and its hover text. */
enum { MARK_SILENT = EV_OTHER /* never drawn: its index is free */, NMARKS };
static const struct mark_style {
    const char *cls, *lane, *legend, *color, *dash;
} mark_styles[NMARKS] = {
    [EV_STALL] = {"stall", "stall", "stall injected", "#d62728", "none"},
    [EV_REPORT] = {"report", "report", "stall report", "#ff7f0e", "4 3"},
    [EV_FENCE] = {"fence", "fence", "thread fenced", "#9467bd", "4 3"},
    [EV_REBUILD] = {"rebuild", "rebuild", "loop rebuilt", "#2ca02c", "4 3"},
    [EV_RESET] = {"reset", "reset", "conn reset: callback stuck", "#8c564b", "4 3"},
    [EV_ZOMBIE_RESET] = {"zombie-reset", "reset", "zombie reset: idle deadline", "#17becf", "4 3"},
    [MARK_SILENT] = {"zombie", "silent", "client went silent (zombie)", "#7f7f7f", "none"},
};
/* the lanes top to bottom, in the order things happen */
static const int lane_order[NMARKS] = {EV_STALL,    EV_REPORT, EV_FENCE,       EV_REBUILD,
                                       MARK_SILENT, EV_RESET,  EV_ZOMBIE_RESET};

typedef struct mark {
    int kind;
    double t;
    const char *text; /* the server's line; NULL for MARK_SILENT */
} mark;

/* An SVG timeline's geometry: the marks' lanes from lanes_top, throughput in
 * the panel at T, latency (p99 per bin, log scale) in the one at top2, time
 * across both, the legend's rows at the bottom. */
typedef struct chart {
    double W, H, L, T, PH, top2, pw, span;
    double ymax, ystep; /* the throughput axis' top and tick step, requests/s */
    double tstep;       /* the time axis' tick step, s */
    double llo, lhi;    /* the latency axis' ends, log10 of us */
    double lanes_top;
    int lane[NMARKS];   /* each kind's lane, -1 when the scenario has no such mark */
    int nlanes, legend_rows;
} chart;

#define LANE_H 14.0
#define CLUSTER_PX 8.0 /* marks of a kind closer than this share one marker */

static double chart_x(const chart *c, double t) { return c->L + t / c->span * c->pw; }

/* The smallest of 1, 2, 2.5 and 5 x 10^n that is at least x (> 0): ticks a
 * reader can count along (75k, 150k), not a quarter of the data's maximum
 * (75.3k, 150.6k). */
static double nice_step(double x) {
    static const double m[] = {1, 2, 2.5, 5, 10};
    double p = pow(10, floor(log10(x)));
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (m[i] * p >= x * (1 - 1e-9))
            return m[i] * p;
    return 10 * p;
}

static int mark_cmp(const void *a, const void *b) {
    const mark *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind - y->kind;
    return (x->t > y->t) - (x->t < y->t);
}

/* The marks from time 0 on, by kind, then time: *n of them (NULL when none,
 * or out of memory: a timeline without marks). */
static mark *marks_of(const scenario *sc, size_t *n) {
    const load_result *r = &sc->r;
    mark *m = malloc((sc->nev + r->nzombies + 1) * sizeof(*m));
    *n = 0;
    if (!m)
        return NULL;
    for (size_t i = 0; i < sc->nev; i++)
        if (sc->ev[i].kind != EV_OTHER && sc->ev[i].t >= 0)
            m[(*n)++] = (mark){sc->ev[i].kind, sc->ev[i].t, sc->ev[i].text};
    for (size_t z = 0; z < r->nzombies; z++)
        if (r->zombie_silent_s[z] >= 0)
            m[(*n)++] = (mark){MARK_SILENT, r->zombie_silent_s[z], NULL};
    qsort(m, *n, sizeof(*m), mark_cmp);
    return m;
}

/* A legend entry's width: its sample line and its label, about 7 px a letter. */
static double legend_w(int kind) { return 40 + 7 * strlen(mark_styles[kind].legend); }

static void chart_scale(const load_result *r, const mark *m, size_t nm, chart *c) {
    const double R = 20, GAP = 60;
    *c = (chart){.W = 960, .L = 80, .lanes_top = 50, .PH = 180};
    c->pw = c->W - c->L - R;
    /* a lane for each kind that occurs, and a legend entry; its rows wrap */
    bool has[NMARKS] = {0};
    for (size_t i = 0; i < nm; i++)
        has[m[i].kind] = true;
    double lx = c->L;
    c->legend_rows = 1;
    for (int k = 0; k < NMARKS; k++) {
        int kind = lane_order[k];
        c->lane[kind] = has[kind] ? c->nlanes++ : -1;
        if (!has[kind])
            continue;
        if (lx > c->L && lx + legend_w(kind) > c->W)
            c->legend_rows++, lx = c->L;
        lx += legend_w(kind);
    }
    c->T = c->lanes_top + c->nlanes * LANE_H + (c->nlanes ? 8 : 0);
    c->top2 = c->T + c->PH + GAP;
    c->H = c->top2 + c->PH + 32 + 18 * c->legend_rows;
    /* the measured part, or more when the server said something during the
     * drain after it (a loaded machine): shown, not dropped */
    c->span = WARMUP_S + cfg.duration_s;
    for (size_t i = 0; i < nm; i++)
        c->span = m[i].t > c->span ? m[i].t : c->span;
    c->ymax = 1;
    for (size_t b = 0; b < r->nbins; b++)
        if (r->bins[b].requests / BIN_S > c->ymax)
            c->ymax = r->bins[b].requests / BIN_S;
    /* 3 to 6 ticks, the top one a whole step above the data's peak or on it */
    c->ystep = nice_step(c->ymax * 1.05 / 6);
    c->ymax = ceil(c->ymax * 1.05 / c->ystep) * c->ystep;
    c->tstep = nice_step(c->span / 10);
    double lmin = 1e9, lmax = 1;
    for (size_t b = 0; b < r->nbins; b++)
        if (r->bins[b].requests) {
            lmin = r->bins[b].p99_us < lmin ? r->bins[b].p99_us : lmin;
            lmax = r->bins[b].p99_us > lmax ? r->bins[b].p99_us : lmax;
        }
    if (lmin > lmax)
        lmin = 1;
    c->llo = floor(log10(lmin > 1 ? lmin : 1));
    c->lhi = ceil(log10(lmax * 1.01));
    if (c->lhi <= c->llo)
        c->lhi = c->llo + 1;
}

/* The titles, the two frames with their grids, and the axes' labels. A
 * standalone file starts with the XML declaration; inside HTML there is none. */
static void svg_frame(FILE *f, const scenario *sc, const chart *c, bool standalone) {
    const load_result *r = &sc->r;
    if (standalone)
        fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
            c->W, c->H, c->W, c->H);
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"16\" font-weight=\"bold\">vigil profile: %s "
               "(%s), %s</text>\n",
            c->L, sc->name, sc->backend_used ? sc->backend_used : "?", kind_names[sc->kind]);
    char resets[100];
    designed_resets(sc, resets, sizeof(resets));
    fprintf(f, "<text x=\"%.0f\" y=\"40\" fill=\"#555\">%ld connections, %s %ld B; bytes lost %llu; "
               "gap p50/p99 %.0f/%.0f ms; kept %llu/%zu%s%s</text>\n",
            c->L, cfg.conns, cfg.mode == LOAD_STREAM ? "stream" : "ping-pong", cfg.size,
            (unsigned long long)(r->lost + r->mismatches), r->gap_p50_ms, r->gap_p99_ms,
            (unsigned long long)r->kept, (size_t)cfg.conns - r->nzombies, resets[0] ? "; " : "",
            resets);
    for (int p = 0; p < 2; p++) { /* frames, grids, axes */
        double y0 = p ? c->top2 : c->T;
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                   "stroke=\"#888\"/>\n", c->L, y0, c->pw, c->PH);
        for (int k = 0; k * c->tstep <= c->span * (1 + 1e-9); k++) {
            double s = k * c->tstep;
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#eee\"/>"
                       "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#555\">%g s</text>\n",
                    chart_x(c, s), y0, chart_x(c, s), y0 + c->PH, chart_x(c, s), y0 + c->PH + 15, s);
        }
    }
    int nticks = (int)lround(c->ymax / c->ystep);
    for (int k = 0; k <= nticks; k++) {
        double v = k * c->ystep, y = c->T + c->PH - c->PH * k / nticks;
        if (k > 0 && k < nticks)
            fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#eee\"/>", c->L,
                    y, c->L + c->pw, y);
        fprintf(f, "<text class=\"ytick\" x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#555\">"
                   "%g%s</text>\n",
                c->L - 5, y + 4, v >= 1000 ? v / 1000 : v, v >= 1000 ? "k" : "");
    }
    for (double e = c->llo; e <= c->lhi; e++) {
        double y = c->top2 + c->PH - c->PH * (e - c->llo) / (c->lhi - c->llo);
        double us = pow(10, e);
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                   "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#555\">%g %s</text>\n",
                c->L, y, c->L + c->pw, y, c->L - 5, y + 4,
                us >= 1e6 ? us / 1e6 : us >= 1000 ? us / 1000 : us,
                us >= 1e6 ? "s" : us >= 1000 ? "ms" : "us");
    }
    fprintf(f, "<text x=\"12\" y=\"%.0f\" transform=\"rotate(-90 12 %.0f)\" text-anchor=\"middle\">"
               "requests/s</text>\n", c->T + c->PH / 2, c->T + c->PH / 2);
    fprintf(f, "<text x=\"12\" y=\"%.0f\" transform=\"rotate(-90 12 %.0f)\" text-anchor=\"middle\">"
               "latency p99</text>\n", c->top2 + c->PH / 2, c->top2 + c->PH / 2);
}

/* Throughput as a line; latency as a dot per bin where requests completed. */
static void svg_data(FILE *f, const load_result *r, const chart *c) {
    fprintf(f, "<polyline class=\"throughput\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
    for (size_t b = 0; b < r->nbins; b++)
        fprintf(f, "%.1f,%.1f ", chart_x(c, (b + 0.5) * BIN_S),
                c->T + c->PH - c->PH * (r->bins[b].requests / BIN_S) / c->ymax);
    fprintf(f, "\"/>\n");
    fprintf(f, "<g class=\"latency\" fill=\"#d62728\">\n");
    for (size_t b = 0; b < r->nbins; b++) {
        if (!r->bins[b].requests)
            continue;
        double lv = log10(r->bins[b].p99_us > 1 ? r->bins[b].p99_us : 1);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\"/>\n", chart_x(c, (b + 0.5) * BIN_S),
                c->top2 + c->PH - c->PH * (lv - c->llo) / (c->lhi - c->llo));
    }
    fprintf(f, "</g>\n");
}

/* One marker for marks [from, to) (of one kind, within CLUSTER_PX): a
 * box in the kind's lane, a vertical line from it across both charts per
 * mark, and the hover text (<title>) of the group: the server's lines. */
static void svg_marker(FILE *f, const mark *m, size_t from, size_t to, const chart *c) {
    const struct mark_style *st = &mark_styles[m[from].kind];
    double y = c->lanes_top + c->lane[m[from].kind] * LANE_H + LANE_H / 2;
    double x0 = chart_x(c, m[from].t);
    fprintf(f, "<g class=\"mark %s\"><title>", st->cls);
    if (to - from > 1)
        fprintf(f, "%zu x %s, %.3f to %.3f s:\n", to - from, st->legend, m[from].t, m[to - 1].t);
    for (size_t i = from; i < to && i < from + 12; i++) {
        fprintf(f, "%s%.3f s: ", i > from ? "\n" : "", m[i].t);
        xml_str(f, m[i].text ? m[i].text : "a client stopped reading and writing (a zombie peer)");
    }
    if (to - from > 12)
        fprintf(f, "\n... and %zu more (profile.json has them all)", to - from - 12);
    fprintf(f, "</title>\n");
    for (size_t i = from; i < to; i++)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"%s\" "
                   "stroke-width=\"1.5\" stroke-dasharray=\"%s\"/>\n",
                chart_x(c, m[i].t), y, chart_x(c, m[i].t), c->top2 + c->PH, st->color, st->dash);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"8\" height=\"10\" fill=\"%s\"/>", x0 - 4, y - 5,
            st->color);
    if (to - from > 1)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"%s\">%zu</text>", x0 + 6,
                y + 4, st->color, to - from);
    fprintf(f, "</g>\n");
}

/* The marks (sorted by marks_of): lanes labelled on the left, a marker per
 * kind and cluster. */
static void svg_marks(FILE *f, const mark *m, size_t nm, const chart *c) {
    for (int kind = 0; kind < NMARKS; kind++)
        if (c->lane[kind] >= 0)
            fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"10\" "
                       "fill=\"#555\">%s</text>\n",
                    c->L - 6, c->lanes_top + c->lane[kind] * LANE_H + LANE_H / 2 + 3.5,
                    mark_styles[kind].lane);
    for (size_t i = 0; i < nm;) {
        size_t j = i + 1;
        while (j < nm && m[j].kind == m[i].kind &&
               chart_x(c, m[j].t) - chart_x(c, m[i].t) < CLUSTER_PX)
            j++;
        svg_marker(f, m, i, j, c);
        i = j;
    }
}

/* The kinds of mark this timeline has, no others. */
static void svg_legend(FILE *f, const chart *c) {
    double ly = c->top2 + c->PH + 32, lx = c->L;
    for (int k = 0; k < NMARKS; k++) {
        int kind = lane_order[k];
        if (c->lane[kind] < 0)
            continue;
        if (lx > c->L && lx + legend_w(kind) > c->W)
            ly += 18, lx = c->L;
        const struct mark_style *st = &mark_styles[kind];
        fprintf(f, "<g class=\"legend %s\"><line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" "
                   "stroke=\"%s\" stroke-width=\"2\" stroke-dasharray=\"%s\"/><text x=\"%.0f\" "
                   "y=\"%.0f\">%s</text></g>\n",
                st->cls, lx, ly - 4, lx + 20, ly - 4, st->color, st->dash, lx + 24, ly, st->legend);
        lx += legend_w(kind);
    }
}

/* An SVG timeline: client throughput above, latency (p99 per bin, log scale)
 * below, and the server's events as marked vertical lines across both. */
static void svg_timeline(FILE *f, const scenario *sc, bool standalone) {
    chart c;
    size_t nm;
    mark *m = marks_of(sc, &nm);
    chart_scale(&sc->r, m, nm, &c);
    svg_frame(f, sc, &c, standalone);
    svg_data(f, &sc->r, &c);
    svg_marks(f, m, nm, &c);
    svg_legend(f, &c);
    fprintf(f, "</svg>\n");
    free(m);
}

static int write_svg(const scenario *sc, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    svg_timeline(f, sc, true);
    return fclose(f) ? -errno : 0;
}

/* What the table's columns mean, under it. */
static void write_notes(FILE *f) {
    fprintf(f, "<dl class=\"notes\">\n"
               "<dt>detect ms p50/p99</dt><dd>How long the supervisor took to report a stall: from the "
               "server's \"injecting\" line to its stall report, both stamped as they arrive on its "
               "stderr; the median and 99th percentile over the stalls. In zombie scenarios: from a "
               "client going silent to the server resetting it (its idle deadline is %u ms).</dd>\n"
               "<dt>recover ms p50/max</dt><dd>From each stall's start to the first %.0f ms bin in which "
               "the clients' throughput is back to half its rate before the first stall; the median "
               "and the slowest.</dd>\n"
               "<dt>gap ms p50/p99</dt><dd>Each connection's longest wait: the longest time it had "
               "bytes outstanding and none coming back; the median and 99th percentile over the "
               "connections (zombies left out). A client caught in a stall waits about as long as the "
               "stall lasts.</dd>\n"
               "<dt>kept</dt><dd>Connections still open and healthy at the end, of those meant to stay: "
               "all of them but the zombies.</dd>\n"
               "<dt>reset as designed</dt><dd>Connections the server reset on purpose, not losses: in "
               "zombie scenarios the clients made to go silent (a round of them per stall), reset by "
               "the server's idle deadline, as they should all be; in hang scenarios the connection "
               "whose callback stayed stuck past the grace, one per stall.</dd>\n"
               "<dt>bytes lost</dt><dd>Bytes sent on connections still open that never came back, "
               "and bytes that came back different: must be 0. A row in red failed: bytes lost or "
               "wrong, a client that could not connect, a connection meant to stay that was not "
               "kept, or a server that did not exit cleanly.</dd>\n"
               "<dt>req/s before, after</dt><dd>The clients' mean throughput from the end of the "
               "warm-up (%.1f s) to the first stall or zombie, and from 0.5 s after the server's last "
               "event to the end.</dd>\n</dl>\n",
            cfg.stall_ms * 3, BIN_S * 1000, WARMUP_S);
}

static int write_index(scenario *scs, int n, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>vigil profile</title>\n"
               "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
               "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
               "td{white-space:nowrap}td:first-child{text-align:left}.bad{color:#b00}"
               "dt{font-weight:bold}dd{margin:0 0 .5em 1.5em;max-width:60em}figure{margin:0 0 2em}"
               "svg{max-width:100%%;height:auto}figcaption{color:#555}</style></head><body>\n"
               "<h1>vigil profile</h1>\n<p>vigil %s; %ld connections, %s %ld B, %.0f s per scenario, "
               "%d stalls of %u ms each, supervisor stall threshold %u ms; server on CPU %d, clients "
               "on CPU %d. Data: <a href=\"profile.json\">profile.json</a>, "
               "<a href=\"profile.csv\">profile.csv</a>.</p>\n<table>\n<tr><th>scenario</th>"
               "<th>detect ms p50/p99</th><th>recover ms p50/max</th><th>gap ms p50/p99</th>"
               "<th>kept</th><th>reset as designed</th><th>bytes lost</th><th>req/s before</th>"
               "<th>req/s after</th><th>timeline</th><th>server log</th></tr>\n",
            vigil_version(), cfg.conns, cfg.mode == LOAD_STREAM ? "stream" : "ping-pong", cfg.size,
            cfg.duration_s, cfg.stalls, cfg.stall_len_ms, cfg.stall_ms, cfg.server_cpu, cfg.client_cpu);
    for (int i = 0; i < n; i++) {
        scenario *sc = &scs[i];
        load_result *r = &sc->r;
        fprintf(f, "<tr%s><td>%s</td><td>", sc->ok ? "" : " class=\"bad\"", sc->name);
        if (sc->ndetect)
            fprintf(f, "%.0f/%.0f", pct(sc->detect_ms, sc->ndetect, 0.5), pct(sc->detect_ms, sc->ndetect, 0.99));
        fprintf(f, "</td><td>");
        if (sc->nrecovery)
            fprintf(f, "%.0f/%.0f", pct(sc->recovery_ms, sc->nrecovery, 0.5),
                    max_of(sc->recovery_ms, sc->nrecovery));
        /* kept: of the connections meant to stay; the zombies and a hang's
         * stuck connection are in the next column, where they went */
        size_t stuck = stuck_resets(sc);
        fprintf(f, "</td><td>%.0f/%.0f</td><td>%llu/%zu</td><td>", r->gap_p50_ms, r->gap_p99_ms,
                (unsigned long long)r->kept, (size_t)cfg.conns - r->nzombies);
        if (sc->kind == KIND_ZOMBIE)
            fprintf(f, "%zu/%zu zombies (idle deadline)", zombies_reset(r), r->nzombies);
        else if (stuck)
            fprintf(f, "%zu (callback stuck)", stuck);
        else
            fprintf(f, "0");
        fprintf(f, "</td><td>%llu</td><td>%.0f</td><td>%.0f</td><td><a href=\"#%s\">%s</a></td>"
                   "<td><a href=\"%s.log\">%s.log</a></td></tr>\n",
                (unsigned long long)(r->lost + r->mismatches), sc->rps_before, sc->rps_after, sc->name,
                sc->name, sc->name, sc->name);
    }
    fprintf(f, "</table>\n");
    write_notes(f);
    /* Inline, not <img>: an SVG shown as an image is a picture, its <title>
     * hover texts (the server's lines) never show. */
    for (int i = 0; i < n; i++) {
        fprintf(f, "<h2 id=\"%s\">%s</h2>\n<figure>\n", scs[i].name, scs[i].name);
        svg_timeline(f, &scs[i], false);
        fprintf(f, "<figcaption><a href=\"%s.svg\">%s.svg</a>, <a href=\"%s.log\">%s.log</a>: hover a "
                   "mark for the server's line</figcaption>\n</figure>\n",
                scs[i].name, scs[i].name, scs[i].name, scs[i].name);
    }
    fprintf(f, "</body></html>\n");
    return fclose(f) ? -errno : 0;
}

/* ------------------------------------------------------------ options */

static const opt_choice backend_choices[] = {{"uring", 0}, {"epoll", 1}, {NULL}};
static const opt_choice kind_choices[] = {{"spin", KIND_SPIN}, {"block", KIND_BLOCK}, {"hang", KIND_HANG},
                                          {"zombie", KIND_ZOMBIE}, {NULL}};
static const opt_choice modes[] = {{"pingpong", LOAD_PINGPONG}, {"stream", LOAD_STREAM}, {NULL}};

static bool backends_given;

static opt profile_opts[] = {
    {"--backends", 0, OPT_LIST, cfg.backends, .meta = "L", .choices = backend_choices,
     .count = &cfg.nbackends, .given = &backends_given,
     .help = "backends to profile (default {default}; epoll alone in a build\n"
             "without io_uring)"},
    {"--kinds", 0, OPT_LIST, cfg.kinds, .meta = "L", .choices = kind_choices, .count = &cfg.nkinds,
     .help = "stall kinds (default {default}): spin busy-loops\n"
             "in a callback, block sleeps in one syscall, hang blocks in a\n"
             "read that never returns, zombie makes clients go silent"},
    {"--duration", 0, OPT_DOUBLE, &cfg.duration_s, 2, 600, "S", .unit = "s",
     .help = "seconds of load per scenario (default {default}, {range})"},
    {"--stalls", 0, OPT_INT, &cfg.stalls, 1, 100, "N",
     .help = "stalls (or zombie rounds) per scenario (default {default}, {range})"},
    {"--stall-len", 0, OPT_U32, &cfg.stall_len_ms, 1, 60000, "MS", .unit = "ms",
     .help = "how long each injected stall lasts (default {default})"},
    {"--stall-ms", 0, OPT_U32, &cfg.stall_ms, 10, 10000, "MS", .unit = "ms",
     .help = "the supervisor's stall threshold (default {default}; the idle\n"
             "deadline for zombies is 3x this)"},
    {"--conns", 0, OPT_LONG, &cfg.conns, 2, 10000, "N",
     .help = "client connections (default {default})"},
    {"--mode", 0, OPT_ENUM, &cfg.mode, .meta = "M", .choices = modes,
     .help = "pingpong or stream, as in vigil bench (default {default})"},
    {"--size", 0, OPT_LONG, &cfg.size, 1, 262144, "BYTES", .unit = "bytes",
     .help = "message or chunk size, as in vigil bench (default {default})"},
    {"--server-cpu", 0, OPT_INT, &cfg.server_cpu, -1, CPU_SETSIZE - 1, "C",
     .hint = "a CPU number, or -1", .help = "pin the server to CPU C (default {default}; -1: none)"},
    {"--client-cpu", 0, OPT_INT, &cfg.client_cpu, -1, CPU_SETSIZE - 1, "C",
     .hint = "a CPU number, or -1",
     .help = "pin the clients to CPU C (default {default}; -1: none)"},
    {"--out", 0, OPT_STRING, &cfg.out, .meta = "DIR", .flags = OPT_NONEMPTY, .hint = "a directory",
     .help = "where the report goes (default {default}): index.html,\n"
             "profile.json, profile.csv and one SVG timeline per scenario"},
};

static opt_cmd profile_cmd = {
    "profile", profile_opts, sizeof(profile_opts) / sizeof(profile_opts[0]), 16,
    "Prints one table row per scenario. Exits 1 if any scenario lost or corrupted\n"
    "a byte, or its server failed.\n"};

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv) {
    int rc = opts_parse(&profile_cmd, argc, argv);
    if (rc >= 0)
        return rc;
#if defined(VIGIL_HAVE_URING) && !VIGIL_HAVE_URING
    if (!backends_given) { /* io_uring is not built in: a uring scenario could only fail */
        cfg.backends[0] = 1;
        cfg.nbackends = 1;
    }
#endif
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 2) /* one CPU: pinning both to it would only add noise */
        cfg.server_cpu = cfg.client_cpu = -1;
    if (cfg.server_cpu >= ncpu || cfg.client_cpu >= ncpu) {
        fprintf(stderr, "vigil profile: this machine has %ld CPUs (0..%ld)\n", ncpu, ncpu - 1);
        return 2;
    }
    return -1;
}

/* The output directory; the scenarios, named, in order: backends outside,
 * kinds inside. Returns them (n of them), or NULL with the exit status in *rc. */
static scenario *set_up(int *n, int *rc) {
    *rc = 1;
    if (mkdir(cfg.out, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "vigil profile: cannot create %s: %s\n", cfg.out, strerror(errno));
        return NULL;
    }
    cfg.tty = isatty(2);
    signal(SIGPIPE, SIG_IGN);
    *n = cfg.nbackends * cfg.nkinds;
    scenario *scs = calloc((size_t)*n, sizeof(*scs));
    for (int i = 0; scs && i < *n; i++) {
        scenario *sc = &scs[i];
        sc->backend = cfg.backends[i / cfg.nkinds];
        sc->kind = cfg.kinds[i % cfg.nkinds];
        snprintf(sc->name, sizeof(sc->name), "%s-%s", backend_names[sc->backend], kind_names[sc->kind]);
        pthread_mutex_init(&sc->lock, NULL);
    }
    return scs;
}

/* Every scenario, a table row each as it ends. Returns 1 if any failed. */
static int run_all(scenario *scs, int n) {
    printf("vigil profile: %d scenarios, %.0f s each: %ld connections (%s, %ld B), %d stalls of "
           "%u ms, supervisor at %u ms; server on CPU %d, clients on CPU %d\n",
           n, cfg.duration_s, cfg.conns, cfg.mode == LOAD_STREAM ? "stream" : "ping-pong", cfg.size,
           cfg.stalls, cfg.stall_len_ms, cfg.stall_ms, cfg.server_cpu, cfg.client_cpu);
    print_header(stdout);
    fflush(stdout);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        scenario *sc = &scs[i];
        progress_sc = sc, progress_i = i + 1, progress_n = n;
        run_scenario(sc);
        if (cfg.tty)
            fprintf(stderr, "\r%70s\r", "");
        print_row(stdout, sc);
        fflush(stdout);
        failed |= !sc->ok;
    }
    return failed;
}

/* The files and the last line. Returns nonzero if a file could not be written. */
static int report(scenario *scs, int n, int failed) {
    char path[4096];
    int wrc = 0;
    snprintf(path, sizeof(path), "%s/profile.json", cfg.out);
    wrc |= write_json(scs, n, path);
    snprintf(path, sizeof(path), "%s/profile.csv", cfg.out);
    wrc |= write_csv(scs, n, path);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s.svg", cfg.out, scs[i].name);
        wrc |= write_svg(&scs[i], path);
    }
    snprintf(path, sizeof(path), "%s/index.html", cfg.out);
    wrc |= write_index(scs, n, path);
    if (wrc)
        fprintf(stderr, "vigil profile: could not write every file in %s\n", cfg.out);
    uint64_t lost = 0;
    for (int i = 0; i < n; i++)
        lost += scs[i].r.lost + scs[i].r.mismatches;
    printf("vigil profile: %s: %llu bytes lost in all; report in %s/index.html (profile.json, "
           "profile.csv, %d SVG timelines)\n",
           failed ? "FAILED" : "every byte came back exactly", (unsigned long long)lost, cfg.out, n);
    return wrc;
}

static void free_scenarios(scenario *scs, int n) {
    for (int i = 0; i < n; i++) {
        load_result_free(&scs[i].r);
        free(scs[i].ev);
        pthread_mutex_destroy(&scs[i].lock);
    }
    free(scs);
}

int cmd_profile(int argc, char **argv) {
    int n, rc = parse_args(argc, argv);
    if (rc >= 0)
        return rc;
    scenario *scs = set_up(&n, &rc);
    if (!scs)
        return rc;
    int failed = run_all(scs, n);
    int wrc = report(scs, n, failed);
    free_scenarios(scs, n);
    return failed || wrc ? 1 : 0;
}
