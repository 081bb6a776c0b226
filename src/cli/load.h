/*
 * load.h: the TCP echo load generator behind `vigil bench`, `vigil profile`
 * and bench/loadgen. Plain epoll client threads (not vigil: the thing under
 * test must not also be the thing measuring it), every byte checked.
 *
 * Each connection sends a deterministic pseudo-random stream; what comes back
 * must equal it, in order. Modes:
 *   PINGPONG  one `size`-byte message at a time; a request is one round trip.
 *   STREAM    up to `window` bytes in flight in `size` chunks; a request is
 *             one chunk echoed, its latency from write to echo.
 * Time 0 is when every connection is connected; requests count from
 * warmup_s to warmup_s + duration_s; the timeline covers both.
 *
 * Zombie peers (for profiling the idle deadline): from zombie_first_s, every
 * zombie_period_s, zombie_per_round healthy connections stop sending, wait
 * for their outstanding bytes to come back, and then go silent: they neither
 * read nor write, like a peer that was SIGSTOPped. When the server then
 * resets or closes them, zombie_detect_ms records how long after going
 * silent. Zombies are left out of gaps, kept and lost.
 */
#ifndef VIGIL_CLI_LOAD_H
#define VIGIL_CLI_LOAD_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

typedef enum load_mode { LOAD_PINGPONG = 0, LOAD_STREAM } load_mode;

/* A server's address: a numeric address or a name, and a port. */
typedef struct load_addr {
    const char *host; /* NULL = "127.0.0.1" */
    uint16_t port;
} load_addr;

typedef struct load_config {
    const char *host;   /* numeric address or name; NULL = "127.0.0.1" */
    uint16_t port;
    /* Several servers: when naddrs > 0, connection i goes to addrs[i % naddrs]
     * (host and port are then not used), at most LOAD_MAX_ADDRS. */
    const load_addr *addrs;
    int naddrs;
    long conns;         /* >= 1 */
    load_mode mode;
    long size;          /* bytes per message or chunk, 1 .. 262144 */
    long window;        /* STREAM: bytes in flight per connection (>= size) */
    double duration_s;  /* measured part, > 0 */
    double warmup_s;    /* >= 0 */
    double drain_s;     /* after the load: how long to wait for echoes still owed; 0 = 2 s */
    int threads;        /* client threads, >= 1 (capped at conns) */
    int cpu;            /* pin the client threads to this CPU; -1 = no pinning */
    const int *cpus;    /* ncpus > 0: client thread i is pinned to cpus[i % ncpus] (cpu not used) */
    int ncpus;
    long server_pid;    /* > 0: sample its CPU time (/proc) over the measured part */
    double bin_s;       /* timeline bin width in seconds; 0 = no timeline */
    int zombie_rounds, zombie_per_round;
    double zombie_first_s, zombie_period_s;
    /* Called about every 200 ms from the calling thread while the load runs
     * (may be NULL): seconds since time 0, requests so far (all phases). */
    void (*progress)(double elapsed_s, uint64_t requests, void *ud);
    void *ud;
    /* May be NULL. When *stop becomes nonzero (a signal handler may set it),
     * the load ends early as if the measured part were over: drain, count. */
    const _Atomic int *stop;
} load_config;

/* One timeline bin: requests that completed in it, and their latency. */
typedef struct load_bin {
    uint64_t requests;
    double p50_us, p99_us, max_us; /* 0 when requests == 0 */
} load_bin;

typedef struct load_result {
    uint64_t requests;          /* completed in the measured part */
    double req_per_s, p50_us, p90_us, p99_us, p999_us, max_us;
    uint64_t bytes_sent, bytes_verified; /* whole run */
    uint64_t mismatches;        /* bytes that came back different (http: bodies that differ) */
    uint64_t responses;         /* http: responses in all phases */
    uint64_t bad_status;        /* http: responses whose status was not the one expected */
    uint64_t bad_framing;       /* http: responses whose framing was broken (each ended its connection) */
    char what[64];              /* http: the first thing that went wrong, named; "" if none */
    uint64_t reconnects;        /* http: connections the server closed between responses, replaced */
    uint64_t lost;              /* bytes sent, not echoed, on connections still open: must be 0 */
    uint64_t unechoed_on_errors;/* bytes not echoed on connections the server reset (failed loudly; zombies excluded) */
    uint64_t errors;            /* connections that ended with an error or EOF (zombies excluded) */
    uint64_t connect_failures;
    uint64_t connected;
    uint64_t kept;              /* non-zombie connections still open and healthy at the end */
    double gap_p50_ms, gap_p90_ms, gap_p99_ms, gap_max_ms; /* longest wait per connection */
    int have_cpu;               /* server_pid was given and /proc was readable */
    double server_cpu_us, server_cpu_us_per_req;
    /* This process's CPU (the client threads, all but idle otherwise) over
     * the same measured part, sampled at the same two instants as the
     * server's, and the wall time between them: how busy each side was. */
    int have_client_cpu;
    double client_cpu_us;
    double cpu_window_s;        /* between the two samples; 0 when not sampled */
    double connect_s;           /* time it took to connect them all */
    uint64_t t0_ns;             /* CLOCK_MONOTONIC of time 0 (same clock as vigil_now_ns) */
    load_bin *bins;             /* bin i covers [i*bin_s, (i+1)*bin_s) from time 0 */
    size_t nbins;
    double *zombie_detect_ms;   /* one per zombie, in the order they went silent; < 0: never */
    double *zombie_silent_s;    /* when each went silent, seconds from time 0 */
    size_t nzombies;
    int cpu_pin_errno;          /* errno of pinning the client threads to cfg->cpu; 0 = pinned or not asked */
    char error[160];            /* set when load_run fails */
    char resolved[64];          /* the address a host name resolved to ("" for a numeric host) */
} load_result;

/* Runs the load to the end (connect, warmup, measure, up to 2 s of drain).
 * Returns 0 when it ran (check mismatches, lost, errors), or -errno with
 * out->error saying what was wrong: -EINVAL for a bad config, a resolver or
 * connect failure of every connection, -ENOMEM. When every connect failed
 * (-ECONNREFUSED, whatever the errno was; out->error has it) the counters
 * are still set: connected 0, connect_failures = conns. */
int load_run(const load_config *cfg, load_result *out);

/* HTTP (http_load.c): what each connection sends and what it expects back.
 * cfg's mode, size, window, bin_s and zombies are not used. */
typedef struct http_load_req {
    const uint8_t *data;     /* the bytes of one request, sent as they are */
    size_t len;
    bool head;               /* HEAD: its response has no body */
    bool idempotent;         /* it may be sent again on a new connection (GET, HEAD, ...) */
} http_load_req;
typedef struct http_load_target {
    const http_load_req *reqs; /* nreqs >= 1: connection i sends reqs[i % nreqs] first, then the next in turn */
    size_t nreqs;
    int pipeline;            /* requests in flight per connection, 1..1024 */
    double rate;             /* 0: closed loop; > 0: open loop, requests/s over all connections */
    const uint8_t *expect;   /* when not NULL: every body must be these expect_len bytes */
    size_t expect_len;
    int expect_status;       /* 0: any 2xx */
    int backend;             /* the client loops' vigil_backend (VIGIL_BACKEND_AUTO: io_uring) */
    uint32_t wait_batch, wait_batch_us; /* the client loops' batched waits (vigil_loop_options); 0: none */
} http_load_target;
/* As load_run; lost counts the requests sent on connections still open
 * and never answered. */
int http_load_run(const load_config *cfg, const http_load_target *t, load_result *out);
void load_result_free(load_result *r);

/* Percentile (0..1) of n values (sorted in place). */
double load_percentile(double *v, size_t n, double p);

/* Shared by the load engines (load.c, http_load.c). Latency histograms:
 * log-linear, 2^LOAD_HIST_SUB_BITS sub-buckets per power of two of ns
 * (< 1.6 % wide); percentiles are bucket midpoints. */
#define LOAD_HIST_SUB_BITS 6
#define LOAD_HIST_BUCKETS (64u << LOAD_HIST_SUB_BITS)
typedef struct load_hist { uint64_t b[LOAD_HIST_BUCKETS]; } load_hist;
void load_hist_add(load_hist *h, uint64_t ns);
double load_hist_pct(const load_hist *h, uint64_t total, double p); /* ns */
void load_hist_result(const load_hist *h, load_result *out); /* p50..max of out->requests */
/* Both sides' CPU at the edges of the measured part: the server's from
 * /proc (server_pid > 0), this process's, and when. */
typedef struct load_cpu {
    long long server_ticks, self_ns; /* -1: not read */
    uint64_t at;                     /* now_ns() of the sample; 0: not taken */
} load_cpu;
void load_cpu_take(load_cpu *s, long server_pid);
int load_pin(int cpu); /* the calling thread to cpu (-1: not at all): 0 or the errno */
int load_thread_cpu(const load_config *cfg, int thread); /* where thread i is pinned: a CPU or -1 */
load_addr load_conn_addr(const load_config *cfg, long conn); /* where connection i goes */
/* cfg's addresses and CPUs in range: 0, or -EINVAL with out->error saying which */
int load_check_where(const load_config *cfg, load_result *out);
#define LOAD_MAX_ADDRS 64
/* The calling thread's part of a run: waits for the client threads, taking
 * the two CPU samples and calling cfg->progress (load.c: load_supervise). */
typedef struct load_watch {
    pthread_mutex_t *mu;
    pthread_cond_t *cond;    /* signalled when a thread ends; its clock CLOCK_MONOTONIC */
    const int *running;      /* threads still running, under mu */
    uint64_t t0, t_start, t_end;
    uint64_t (*done)(void *ud); /* requests so far, all phases */
    void *ud;
} load_watch;
void load_supervise(const load_config *cfg, const load_watch *w, load_cpu *c0, load_cpu *c1);
void load_cpu_result(long server_pid, const load_cpu *c0, const load_cpu *c1, load_result *out);

#endif
