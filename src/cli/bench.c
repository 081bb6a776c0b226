/*
 * vigil bench: a throughput benchmark and load generator.
 *
 * Loads an echo server with the checked load generator of load.c, one row
 * per server: vigil's own `serve` (started here, pinned to a CPU, its CPU
 * time read from /proc), any server at --target, or with --compare, vigil on
 * io_uring and on epoll against the raw baselines of bench/ (and libuv and
 * libevent when built), interleaved over --rounds (3 by default: one run
 * alone can be off by a factor of 30 on a busy machine and look fine),
 * medians reported with the spread between rounds. A round where neither
 * the server nor the client was busy is called starved (judge_round), and
 * rounds that disagree by more than NOISY_SPREAD are called noisy: both are
 * warned about after the table and listed in bench.json.
 *
 * Children (child.c): started with fork+exec, their stdout is a pipe (the
 * first line carries the port), their stderr goes to an unlinked temporary
 * file that is shown only when they fail to start. Each is stopped with SIGINT, then
 * SIGKILL after 3 s; PR_SET_PDEATHSIG kills it if vigil bench dies first, and
 * SIGINT/SIGTERM of vigil bench ends the running load early and stops the
 * child before exiting.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "cli.h"
#include "escape.h"
#include "http_reqs.h"
#include "load.h"
#include "opts.h"
#include "vigil.h"

#ifndef VIGIL_HAVE_URING /* meson defines it: 1 with liburing, 0 without */
#define VIGIL_HAVE_URING 1
#endif

/* Where the peer servers of --compare are, relative to the directory of
 * this vigil (or absolute): an installed copy's in LIBEXECDIR/vigil
 * (src/cli/meson.build works out the path from BINDIR), a build tree's in
 * BUILD/bench, two up from BUILD/src/cli/vigil. No path of the build is
 * baked in: a moved build tree or install prefix finds its own peers. */
#ifndef VIGIL_PEERS_INSTALLED
#define VIGIL_PEERS_INSTALLED "../libexec/vigil"
#endif
#define VIGIL_PEERS_BUILD "../../bench"
#define PEER_MARK "echo_epoll" /* built wherever the peers are */

#define MAX_ROUNDS 100
#define MAX_SERVERS 8
#define START_TIMEOUT_MS 5000
#define STOP_GRACE_MS 3000

/* ------------------------------------------------------------ options */

enum { BACKEND_URING, BACKEND_EPOLL, BACKEND_AUTO };
static const char *const backend_names[] = {"uring", "epoll", "auto"};

#define MAX_CLIENT_CPUS 256

typedef struct bench_opts {
    const char *target;       /* NULL = start vigil serve; else --target's argument, or --http's URL */
    const char *target_arg;   /* --target H:P[,H:P...] */
    char target_hosts[LOAD_MAX_ADDRS][256];
    load_addr targets[LOAD_MAX_ADDRS]; /* connection i goes to targets[i % ntargets] */
    int ntargets;
    int backend;              /* BACKEND_*, of the vigil server started here */
    int mode;                 /* load_mode */
    long conns, size, window;
    bool window_set;
    double duration, warmup, drain;
    int threads;
    int server_cpu;
    int client_cpus[MAX_CLIENT_CPUS]; /* --client-cpu C[,C...]: client thread i on client_cpus[i % n] */
    int nclient_cpus;
    bool compare;
    int rounds;
    const char *out_dir;
    const char *peers;        /* --peers, else found by find_peers (NULL: none found) */
    bool peers_given;
    bool pin;                 /* false on a 1-CPU machine */
    int ncpus;                /* CPUs this process may run on */
    /* --http URL: an HTTP server (http_load.c) instead of an echo server */
    const char *http;         /* the URL: where to connect unless --target says otherwise; or a path */
    bool http_started;        /* --http /PATH: load `vigil serve --mode http`, started here */
    char http_host[256];      /* the URL's host and port: the Host field */
    uint16_t http_port;
    char http_path[1024];
    const char *method, *body, *expect_file;
    const char *headers[16];
    int nheaders;
    int pipeline, expect_status, client_backend;
    double rate;
    long pid;                 /* the server's pid, for its CPU (--target, --http) */
    bool compare_clients;     /* --http: wrk and h2load too, taking turns */
    int client_batch, client_batch_us; /* --http, closed loop: the client loops' batched waits */
    const char *requests_file; /* --requests FILE */
    bool method_given;
    http_reqs file_reqs;      /* what --requests FILE holds */
    http_load_req *reqs;      /* built from the above by parse_args: the requests to send */
    size_t nreqs;
    uint8_t *expect;
    size_t expect_len;
} bench_opts;

/* HOST:PORT, [V6]:PORT or V6 with the port after the last colon, into host
 * (without the brackets) and port. Returns 0 or -1. */
static int parse_hostport(const char *s, size_t n, char *host, size_t cap, uint16_t *port) {
    const char *colon = NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ':')
            colon = s + i;
    char digits[8];
    size_t nd = colon ? n - (size_t)(colon + 1 - s) : 0;
    long long p;
    if (!colon || colon == s || nd == 0 || nd >= sizeof(digits))
        return -1;
    memcpy(digits, colon + 1, nd);
    digits[nd] = '\0';
    if (num_ll(digits, 1, 65535, &p) != NUM_OK)
        return -1;
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= cap)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return 0;
}

/* --target HOST:PORT[,HOST:PORT...]: the connections spread over them in turn. */
static int parse_target(const char *s, void *dest) {
    bench_opts *o = dest;
    int n = 0;
    for (const char *p = s;; n++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (n == LOAD_MAX_ADDRS ||
            parse_hostport(p, len, o->target_hosts[n], sizeof(o->target_hosts[n]), &o->targets[n].port) != 0)
            return -1;
        o->targets[n].host = o->target_hosts[n];
        if (!comma)
            break;
        p = comma + 1;
    }
    o->ntargets = n + 1;
    o->target_arg = s;
    return 0;
}

/* http://HOST[:PORT][/PATH] (no https: the load is plain TCP), or /PATH
 * alone: `vigil serve --mode http` started here, as the echo load does. */
static int parse_url(const char *s, void *dest) {
    bench_opts *o = dest;
    if (s[0] == '/') {
        if (snprintf(o->http_path, sizeof(o->http_path), "%s", s) >= (int)sizeof(o->http_path) || strpbrk(s, " \r\n"))
            return -1;
        snprintf(o->http_host, sizeof(o->http_host), "127.0.0.1");
        o->http_port = 0; /* its port is known once it runs: the Host field goes without */
        o->http = s;
        o->http_started = true;
        return 0;
    }
    o->http_started = false;
    if (strncmp(s, "http://", 7))
        return -1;
    const char *h = s + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    char hostport[300];
    if (hl == 0 || hl >= sizeof(hostport) - 6)
        return -1;
    memcpy(hostport, h, hl);
    hostport[hl] = '\0';
    const char *colon = strrchr(hostport, ':');
    if (!colon || (hostport[0] == '[' && colon < strchr(hostport, ']')))
        strcat(hostport, ":80");
    if (parse_hostport(hostport, strlen(hostport), o->http_host, sizeof(o->http_host), &o->http_port) != 0)
        return -1;
    if (snprintf(o->http_path, sizeof(o->http_path), "%s", slash ? slash : "/") >= (int)sizeof(o->http_path))
        return -1;
    o->http = s;
    return 0;
}

/* --client-cpu C[,C...] with ranges A-B, or -1 for no pinning. */
static int parse_cpus(const char *s, void *dest) {
    bench_opts *o = dest;
    if (!strcmp(s, "-1")) {
        o->nclient_cpus = 0;
        return 0;
    }
    int n = 0;
    for (const char *p = s;;) {
        char *end;
        if (*p < '0' || *p > '9')
            return -1;
        long a = strtol(p, &end, 10), b = a;
        if (*end == '-') {
            if (end[1] < '0' || end[1] > '9')
                return -1;
            b = strtol(end + 1, &end, 10);
        }
        if (a < 0 || b < a || b >= CPU_SETSIZE || (*end && *end != ','))
            return -1;
        for (long c = a; c <= b; c++) {
            if (n == MAX_CLIENT_CPUS)
                return -1;
            o->client_cpus[n++] = (int)c;
        }
        if (!*end)
            break;
        p = end + 1;
    }
    o->nclient_cpus = n;
    return 0;
}

static int parse_header(const char *s, void *dest) {
    bench_opts *o = dest;
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || strpbrk(s, "\r\n") || o->nheaders == 16)
        return -1;
    o->headers[o->nheaders++] = s;
    return 0;
}

static const opt_choice backends[] = {
    {"uring", BACKEND_URING}, {"epoll", BACKEND_EPOLL}, {"auto", BACKEND_AUTO}, {NULL}};
static const opt_choice modes[] = {{"pingpong", LOAD_PINGPONG}, {"stream", LOAD_STREAM}, {NULL}};

static bench_opts bopt = {
    .backend = BACKEND_AUTO,
    .mode = LOAD_PINGPONG,
    .conns = 100,
    .size = 64,
    .window = 65536,
    .duration = 5,
    .warmup = 1,
    .drain = 2,
    .threads = 1,
    .server_cpu = 0,
    .client_cpus = {1},
    .nclient_cpus = 1,
    .rounds = 3,
    .out_dir = "vigil-bench",
    .method = "GET",
    .pipeline = 1,
    .client_backend = BACKEND_AUTO,
    .client_batch = 64,
    .client_batch_us = 250,
};

static opt bench_opt_table[] = {
    {"--target", 0, OPT_CUSTOM, &bopt, .meta = "H:P", .syn_meta = "HOST:PORT[,HOST:PORT...]", .parse = parse_target,
     .hint = "HOST:PORT, port 1..65535, at most 64 comma-separated",
     .help = "load this echo server instead of starting `vigil serve` (its CPU\n"
             "is then neither pinned nor measured); with several, connection i\n"
             "goes to the i-th in turn. With --http: where to connect instead of\n"
             "the URL's host (the URL still gives the path and the Host field)"},
    {"--http", 0, OPT_CUSTOM, &bopt, .meta = "URL", .syn_meta = "http://HOST[:PORT][/PATH] | /PATH", .parse = parse_url,
     .hint = "http://HOST[:PORT][/PATH], or /PATH",
     .help = "load this HTTP/1.1 server: keep-alive connections, every response's\n"
             "status and framing checked (and its body, with --expect-body); a\n"
             "/PATH alone loads `vigil serve --mode http` started here, pinned\n"
             "to --server-cpu, its CPU per request measured"},
    {"--method", 0, OPT_STRING, &bopt.method, .meta = "M", .flags = OPT_NONEMPTY, .given = &bopt.method_given,
     .help = "--http: the request's method (default {default})"},
    {"--header", 0, OPT_CUSTOM, &bopt, .meta = "H", .syn_meta = "'NAME: VALUE'", .parse = parse_header,
     .hint = "'NAME: VALUE', at most 16", .help = "--http: a request header (again for more)"},
    {"--body", 0, OPT_STRING, &bopt.body, .meta = "TEXT", .help = "--http: the request's body"},
    {"--requests", 0, OPT_STRING, &bopt.requests_file, .meta = "FILE", .flags = OPT_NONEMPTY,
     .help = "--http: send the whole HTTP/1.1 requests in FILE instead, each\n"
             "connection going through them in turn (blank lines between them;\n"
             "a body by Content-Length; the URL's Host added where none)"},
    {"--expect-body", 0, OPT_STRING, &bopt.expect_file, .meta = "FILE", .flags = OPT_NONEMPTY,
     .help = "--http: every response's body must be FILE's bytes"},
    {"--expect-status", 0, OPT_INT, &bopt.expect_status, 100, 599, "N",
     .help = "--http: every response's status must be N (default: any 2xx)"},
    {"--pipeline", 0, OPT_INT, &bopt.pipeline, 1, 1024, "N",
     .help = "--http: requests in flight per connection (default {default})"},
    {"--rate", 0, OPT_DOUBLE, &bopt.rate, 0, 1e9, "R",
     .help = "--http: open loop, R requests/s over all connections on a fixed\n"
             "schedule, latency counted from when each was due (default: closed loop)"},
    {"--client-backend", 0, OPT_ENUM, &bopt.client_backend, .meta = "B", .choices = backends,
     .help = "--http: backend of the client's vigil loops (default {default})"},
    {"--client-batch", 0, OPT_INT, &bopt.client_batch, 0, 4096, "N",
     .help = "--http, closed loop: a client thread's wait ends once N responses\n"
             "are in (at most: half its requests in flight, no batching under 32),\n"
             "or --client-batch-us after it began with at least one (io_uring,\n"
             "Linux 6.12+): fewer wake-ups, less client CPU; 0 = wake for each\n"
             "(default {default})"},
    {"--client-batch-us", 0, OPT_INT, &bopt.client_batch_us, 1, 100000, "US",
     .help = "... the longest a response waits in the client for the batch (default {default})"},
    {"--compare-clients", 0, OPT_FLAG, &bopt.compare_clients,
     .help = "--http: also load the URL with wrk and h2load (when installed),\n"
             "taking turns, and show their req/s and client CPU per request"},
    {"--pid", 0, OPT_LONG, &bopt.pid, 1, 4194304, "PID",
     .help = "the pid of the --target or --http server: its CPU per request"},
    {"--backend", 0, OPT_ENUM, &bopt.backend, .meta = "B", .choices = backends,
     .help = "backend of the vigil server started here (default {default})"},
    {"--mode", 0, OPT_ENUM, &bopt.mode, .meta = "M", .choices = modes,
     .help = "pingpong (default: one SIZE message per round trip) or stream\n"
             "(WINDOW bytes in flight in SIZE chunks)"},
    {"--conns", 0, OPT_LONG, &bopt.conns, 1, 1000000, "N", .help = "connections (default {default})"},
    {"--size", 0, OPT_LONG, &bopt.size, 1, 262144, "BYTES",
     .help = "message or chunk size (default {default}; {range})"},
    {"--window", 0, OPT_LONG, &bopt.window, 1, 1L << 30, "BYTES", .given = &bopt.window_set,
     .help = "stream: bytes in flight per connection (default {default}, >= size)"},
    {"--duration", 0, OPT_DOUBLE, &bopt.duration, 0, 86400, "S", .unit = "s", .flags = OPT_OPEN_LO,
     .help = "measured seconds (default {default})"},
    {"--warmup", 0, OPT_DOUBLE, &bopt.warmup, 0, 86400, "S", .unit = "s",
     .help = "seconds before measuring (default {default})"},
    {"--drain", 0, OPT_DOUBLE, &bopt.drain, 0, 3600, "S", .unit = "s", .flags = OPT_OPEN_LO,
     .help = "at the end, seconds to wait for echoes still owed before\n"
             "counting them lost (default {default})"},
    {"--threads", 0, OPT_INT, &bopt.threads, 1, 256, "T", .help = "client threads (default {default})"},
    {"--server-cpu", 0, OPT_INT, &bopt.server_cpu, 0, CPU_SETSIZE - 1, "C", .hint = "a CPU number",
     .help = "pin the server to CPU C (default {default})"},
    {"--client-cpu", 0, OPT_CUSTOM, &bopt, .meta = "C", .syn_meta = "C[,C...]", .parse = parse_cpus,
     .hint = "CPU numbers or ranges A-B, comma-separated, or -1",
     .help = "pin the client threads to these CPUs, thread i to the i-th\n"
             "(0-3 is 0,1,2,3; default 1; -1 = no pinning)"},
    {"--compare", 0, OPT_FLAG, &bopt.compare,
     .help = "the same load against vigil on io_uring, vigil on epoll, the\n"
             "raw baselines echo_uring and echo_epoll, and echo_libuv and\n"
             "echo_libevent when built"},
    {"--rounds", 0, OPT_INT, &bopt.rounds, 1, MAX_ROUNDS, "R",
     .help = "run the servers interleaved R times, report medians and the\n"
             "spread between rounds (default {default}; 1: one run, no spread)"},
    {"--out", 0, OPT_STRING, &bopt.out_dir, .meta = "DIR", .flags = OPT_NONEMPTY,
     .hint = "a directory",
     .help = "write DIR/bench.json, bench.csv, bench.svg (default {default})"},
    {"--peers", 0, OPT_STRING, &bopt.peers, .meta = "DIR", .flags = OPT_NONEMPTY,
     .hint = "a directory", .given = &bopt.peers_given,
     .help = "where the peer servers of --compare are (default {default}:\n"
             "looked for next to this vigil, in " VIGIL_PEERS_INSTALLED " or " VIGIL_PEERS_BUILD ")"},
};

static opt_cmd bench_cmd = {
    "bench", bench_opt_table, sizeof(bench_opt_table) / sizeof(bench_opt_table[0]), 18,
    "Every echoed byte is checked. Exit status 1 if a server failed to start, a\n"
    "byte was lost or came back wrong, or a connection failed; 2 for bad flags.\n"};

/* ------------------------------------------------------------ peers */

static char peers_looked[2][PATH_MAX]; /* where find_peers looked, in order */
static const char peers_none[] = "none found"; /* --help's default when there are none */
static int npeers_looked;

/* dir/rel with "." and ".." taken out, so that the path printed is the one
 * a user would type (rel may be absolute: then it alone). */
static void join_path(char *out, size_t len, const char *dir, const char *rel) {
    char buf[PATH_MAX];
    int w = rel[0] == '/' ? snprintf(buf, sizeof(buf), "%s", rel)
                          : snprintf(buf, sizeof(buf), "%s/%s", dir, rel);
    if (w < 0 || w >= (int)sizeof(buf))
        buf[0] = '\0'; /* too long to be a path: "/", where nothing is found */
    size_t n = 0;
    out[0] = '\0';
    for (char *save = NULL, *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, "."))
            continue;
        if (!strcmp(c, "..")) {
            char *slash = strrchr(out, '/');
            n = slash ? (size_t)(slash - out) : 0;
            out[n] = '\0';
            continue;
        }
        n += (size_t)snprintf(out + n, n < len ? len - n : 0, "/%s", c);
        if (n >= len)
            n = len - 1;
    }
    if (!out[0])
        snprintf(out, len, "/");
}

/* The peers' directory next to this vigil (/proc/self/exe, symlinks
 * resolved): the installed place first, then the build tree's; NULL when
 * neither has them (peers_looked says where it looked). */
static const char *find_peers(void) {
    static char found[PATH_MAX];
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0)
        return NULL;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    const char *rel[2] = {VIGIL_PEERS_INSTALLED, VIGIL_PEERS_BUILD};
    npeers_looked = 0;
    for (int i = 0; i < 2; i++) {
        char *dir = peers_looked[npeers_looked++], mark[PATH_MAX + 16];
        join_path(dir, PATH_MAX, exe, rel[i]);
        snprintf(mark, sizeof(mark), "%s/" PEER_MARK, dir);
        if (access(mark, X_OK) == 0) {
            snprintf(found, sizeof(found), "%s", dir);
            return found;
        }
    }
    return NULL;
}

/* Pins only to CPUs this process may use; with one CPU there is nothing to
 * separate. Returns -1 to go on, else the exit status. */
static int check_cpus(const opt_cmd *cmd, bench_opts *o) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    o->ncpus = sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? CPU_COUNT(&allowed) : 1;
    if (o->ncpus < 2) {
        o->pin = false;
        return -1;
    }
    o->pin = true;
    if (!o->target && !CPU_ISSET(o->server_cpu, &allowed))
        return opts_bad(cmd, "bad --server-cpu %d: not a CPU this process may run on", o->server_cpu);
    for (int i = 0; i < o->nclient_cpus; i++)
        if (!CPU_ISSET(o->client_cpus[i], &allowed))
            return opts_bad(cmd, "bad --client-cpu %d: not a CPU this process may run on", o->client_cpus[i]);
    return -1;
}

/* A whole file into *buf (malloc'd), at most max bytes: 0, or an errno. */
static int read_file(const char *path, size_t max, uint8_t **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno;
    size_t got = 0, room = 0;
    int err = 0;
    uint8_t *b = NULL;
    for (size_t k = 1; k > 0 && !err; got += k) {
        if (got > max) {
            err = EFBIG;
            break;
        }
        if (got == room) {
            uint8_t *bigger = realloc(b, room = room ? room * 2 : 65536);
            if (!bigger) {
                err = ENOMEM;
                break;
            }
            b = bigger;
        }
        k = fread(b + got, 1, room - got, f);
        if (k == 0 && ferror(f))
            err = EIO;
    }
    fclose(f);
    if (err) {
        free(b);
        return err;
    }
    *buf = b;
    *len = got;
    return 0;
}

/* The Host field of the requests: the URL's host and port (no port: the
 * server started here, whose port is not known yet). */
static void host_field(const bench_opts *o, char *buf, size_t len) {
    bool v6 = strchr(o->http_host, ':') != NULL;
    int n = snprintf(buf, len, "%s%s%s", v6 ? "[" : "", o->http_host, v6 ? "]" : "");
    if (o->http_port && n >= 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, ":%u", (unsigned)o->http_port);
}

/* --http's one request, from the URL, --method, --header and --body. */
static int build_request(const opt_cmd *cmd, bench_opts *o) {
    char host[300];
    host_field(o, host, sizeof(host));
    size_t cap = 4096 + strlen(o->http_path) + strlen(o->method) + (o->body ? strlen(o->body) : 0);
    for (int i = 0; i < o->nheaders; i++)
        cap += strlen(o->headers[i]) + 2;
    char *r = malloc(cap);
    o->reqs = calloc(1, sizeof(*o->reqs));
    if (!r || !o->reqs) {
        free(r);
        return opts_bad(cmd, "out of memory");
    }
    int n = snprintf(r, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n", o->method, o->http_path, host);
    for (int i = 0; i < o->nheaders; i++)
        n += snprintf(r + n, cap - (size_t)n, "%s\r\n", o->headers[i]);
    if (o->body)
        n += snprintf(r + n, cap - (size_t)n, "Content-Length: %zu\r\n", strlen(o->body));
    n += snprintf(r + n, cap - (size_t)n, "\r\n%s", o->body ? o->body : "");
    o->reqs[0] = (http_load_req){(uint8_t *)r, (size_t)n, !strcmp(o->method, "HEAD"),
                                http_method_idempotent((const uint8_t *)o->method, strlen(o->method))};
    o->nreqs = 1;
    return -1;
}

/* --requests FILE: whole requests, checked by http_reqs.c, which adds the
 * URL's Host field to those without one. */
static int read_requests(const opt_cmd *cmd, bench_opts *o) {
    uint8_t *buf = NULL;
    size_t len = 0;
    int err = read_file(o->requests_file, HTTP_REQS_MAX_FILE, &buf, &len);
    if (err == EFBIG)
        return opts_bad(cmd, "bad --requests %s: over %zu MiB", o->requests_file, HTTP_REQS_MAX_FILE >> 20);
    if (err)
        return opts_bad(cmd, "bad --requests %s: %s", o->requests_file, strerror(err));
    char host[300], why[256];
    host_field(o, host, sizeof(host));
    int rc = http_reqs_parse(buf, len, host, &o->file_reqs, why, sizeof(why));
    free(buf);
    if (rc < 0)
        return opts_bad(cmd, "bad --requests %s: %s", o->requests_file, why);
    o->reqs = calloc(o->file_reqs.n, sizeof(*o->reqs));
    if (!o->reqs)
        return opts_bad(cmd, "--requests %s: out of memory", o->requests_file);
    for (size_t i = 0; i < o->file_reqs.n; i++) {
        const http_req *q = &o->file_reqs.req[i];
        o->reqs[i] = (http_load_req){o->file_reqs.bytes + q->off, q->len, q->head, q->idempotent};
    }
    o->nreqs = o->file_reqs.n;
    return -1;
}

/* The requests of --http, and the bytes of --expect-body. Returns -1 to go
 * on, else the exit status. */
static int build_requests(const opt_cmd *cmd, bench_opts *o) {
    if (o->requests_file && (o->method_given || o->nheaders || o->body))
        return opts_bad(cmd, "--requests gives whole requests: it cannot take --method, --header or --body");
    if (o->requests_file && o->compare_clients)
        return opts_bad(cmd, "--compare-clients: wrk and h2load load the URL alone, so it cannot take --requests");
    int rc = o->requests_file ? read_requests(cmd, o) : build_request(cmd, o);
    if (rc >= 0 || !o->expect_file)
        return rc;
    int err = read_file(o->expect_file, (size_t)1 << 30, &o->expect, &o->expect_len);
    if (err)
        return opts_bad(cmd, "bad --expect-body %s: %s", o->expect_file, strerror(err));
    return -1;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv) {
    const opt_cmd *cmd = &bench_cmd;
    bench_opts *o = &bopt;
    int rc = opts_parse(&bench_cmd, argc, argv);
    if (rc >= 0)
        return rc;
    if (o->peers == peers_none)
        o->peers = NULL;
    if (o->compare && (o->target_arg || o->http))
        return opts_bad(cmd, "--compare starts its own servers: it cannot take --target or --http");
    if (o->compare_clients && !o->http)
        return opts_bad(cmd, "--compare-clients needs --http");
    if (o->compare_clients && o->target_arg)
        return opts_bad(cmd, "--compare-clients: wrk and h2load load the URL's host, so it cannot take --target");
    if (o->http_started && (o->target_arg || o->compare_clients))
        return opts_bad(cmd, "--http /PATH starts vigil serve here: it cannot take --target or --compare-clients "
                             "(give a URL for those)");
    o->target = o->target_arg ? o->target_arg : o->http_started ? NULL : o->http;
    if (o->http && !o->http_started && !o->target_arg) { /* the URL's host */
        memcpy(o->target_hosts[0], o->http_host, sizeof(o->http_host)); /* the same size */
        o->targets[0] = (load_addr){o->target_hosts[0], o->http_port};
        o->ntargets = 1;
    }
    if (o->http && (rc = build_requests(cmd, o)) >= 0)
        return rc;
    if (o->mode == LOAD_STREAM && o->window_set && o->window < o->size)
        return opts_bad(cmd, "bad --window %ld: below --size %ld", o->window, o->size);
    if (o->window < o->size)
        o->window = o->size; /* the default window, for big chunks */
    return check_cpus(cmd, o);
}

/* ------------------------------------------------------------ children */

static _Atomic int g_stop;           /* SIGINT/SIGTERM seen */
static volatile sig_atomic_t g_child; /* the running server, 0 = none */

static void on_signal(int sig) {
    atomic_store(&g_stop, 1);
    pid_t c = (pid_t)g_child;
    if (c > 0)
        kill(c, SIGINT);
}

/* SIGINT, then SIGKILL after STOP_GRACE_MS: nothing is left running. */
static void child_end(child *c) {
    child_stop(c, SIGINT, STOP_GRACE_MS);
    child_close(c);
}

/* Starts argv pinned to the server CPU (unless not pinning), reads its port
 * from its first stdout line. Returns 0, or -1 with why in err (the child is
 * then gone). */
static int child_start(const bench_opts *o, char *const argv[], child *c, uint16_t *port,
                       char *err, size_t errlen) {
    child_opts co = {.cpu = o->pin ? o->server_cpu : -1, .pid_slot = &g_child};
    int rc = child_spawn(c, argv[0], argv, &co, err, errlen);
    if (rc == 0 && (rc = child_first_line(c, START_TIMEOUT_MS, &g_stop, err, errlen)) == 0 &&
        !(*port = child_line_port(c->line))) {
        snprintf(err, errlen, "%s: no port in its first line '%.200s'", argv[0], c->line);
        rc = -1;
    }
    if (rc != 0)
        child_end(c);
    return rc;
}

/* ------------------------------------------------------------ servers */

typedef struct run_rec {
    bool ok;
    char err[240];
    double rps, p50, p99, p999, cpu_per_req;
    double p90, max, client_cpu_per_req; /* client_cpu_per_req: 0 when not measured */
    bool have_cpu;
    /* How busy each side was over the measured part: the server in cores
     * (its CPU time / wall time), the client as a fraction of what its
     * threads could use (client_capacity). starved: see judge_round. */
    double server_busy, client_busy;
    bool have_busy;       /* both known: the round was judged */
    bool starved;
    uint64_t requests, bytes_sent, bytes_verified, lost, mismatches, errors, connect_failures;
    uint64_t connected;
    uint64_t bad_status, bad_framing, reconnects; /* --http */
    /* Each connection's longest wait with requests in flight and no answer
     * coming, percentiles over the connections (ms), and the connections
     * still open and healthy at the end: vigil bench's rows only. */
    bool have_gaps;
    double gap_p50, gap_p90, gap_p99, gap_max;
    uint64_t kept;
} run_rec;

typedef struct server {
    char name[64];
    const char *mech;     /* "uring" or "epoll": which raw baseline its CPU compares to */
    bool raw;             /* it is a raw baseline */
    char path[PATH_MAX];  /* what is exec'ed */
    const char *client;   /* --compare-clients: "wrk" or "h2load", a client row (path: where it is) */
    char shown[PATH_MAX]; /* the program, for bench.json */
    const char *args[8];  /* after path */
    run_rec runs[MAX_ROUNDS];
    run_rec med;          /* medians (rates, latencies, CPU) and sums (bytes, errors) */
    run_rec lo, hi;       /* the lowest and highest of each figure over the rounds that ran */
    /* (max - min) / median over the rounds: how far one round's figure can
     * be from another's; 0 with fewer than two rounds */
    double spread_rps, spread_p99, spread_cpu;
    bool noisy;           /* spread_rps or spread_cpu above NOISY_SPREAD */
    int nok, nstarved;
} server;

/* Rounds of one server further apart than this (relative to their median,
 * in req/s or CPU per request) are no steady figure: bench says so. Two
 * quiet back-to-back runs on a pinned pair of CPUs agree within a few %. */
#define NOISY_SPREAD 0.10

/* A round is starved (judge_round) when neither side was busy: the client
 * used less than STARVED_CLIENT of what its threads could, and the server
 * less than STARVED_SERVER of a core (STARVED_SERVER_SERIAL where each
 * client thread has a single ping-pong connection, every request waiting
 * for two wake-ups in turn). */
#define STARVED_CLIENT 0.50
#define STARVED_SERVER 0.50
#define STARVED_SERVER_SERIAL 0.20

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double spread_of(double lo, double hi, double med) { return med > 0 ? (hi - lo) / med : 0; }

/* Medians, sums, the lowest and highest figures and their spread, over the
 * rounds of s that ran; flags s noisy when the rounds disagree. */
static void compute_stats(server *s, int rounds) {
    double rps[MAX_ROUNDS], p50[MAX_ROUNDS], p99[MAX_ROUNDS], p999[MAX_ROUNDS], cpu[MAX_ROUNDS];
    double sbusy[MAX_ROUNDS], cbusy[MAX_ROUNDS], p90[MAX_ROUNDS], mx[MAX_ROUNDS], ccpu[MAX_ROUNDS];
    double g50[MAX_ROUNDS], g90[MAX_ROUNDS], g99[MAX_ROUNDS], gmax[MAX_ROUNDS];
    int n = 0, ncpu = 0, nbusy = 0, nccpu = 0, ngap = 0;
    run_rec *m = &s->med, *lo = &s->lo, *hi = &s->hi;
    memset(m, 0, sizeof(*m));
    memset(lo, 0, sizeof(*lo));
    memset(hi, 0, sizeof(*hi));
    s->nstarved = 0;
    for (int r = 0; r < rounds; r++) {
        const run_rec *x = &s->runs[r];
        if (!x->ok) {
            if (!m->err[0])
                snprintf(m->err, sizeof(m->err), "%s", x->err);
            continue;
        }
        rps[n] = x->rps;
        p50[n] = x->p50;
        p99[n] = x->p99;
        p999[n] = x->p999;
        p90[n] = x->p90;
        mx[n] = x->max;
        n++;
        if (x->client_cpu_per_req > 0)
            ccpu[nccpu++] = x->client_cpu_per_req;
        if (x->have_gaps) {
            g50[ngap] = x->gap_p50;
            g90[ngap] = x->gap_p90;
            g99[ngap] = x->gap_p99;
            gmax[ngap++] = x->gap_max;
        }
        m->connected += x->connected;
        m->kept += x->kept;
        if (x->have_cpu)
            cpu[ncpu++] = x->cpu_per_req;
        if (x->have_busy) {
            sbusy[nbusy] = x->server_busy;
            cbusy[nbusy++] = x->client_busy;
        }
        s->nstarved += x->starved;
        m->requests += x->requests;
        m->bytes_sent += x->bytes_sent;
        m->bytes_verified += x->bytes_verified;
        m->lost += x->lost;
        m->mismatches += x->mismatches;
        m->errors += x->errors;
        m->connect_failures += x->connect_failures;
        m->bad_status += x->bad_status;
        m->bad_framing += x->bad_framing;
        m->reconnects += x->reconnects;
    }
    s->nok = n;
    m->ok = n == rounds;
    /* median() sorts: the lowest is [0] and the highest [n-1] after it */
    m->rps = median(rps, n);
    m->p50 = median(p50, n);
    m->p99 = median(p99, n);
    m->p999 = median(p999, n);
    m->p90 = median(p90, n);
    m->max = median(mx, n);
    m->client_cpu_per_req = median(ccpu, nccpu);
    m->have_gaps = ngap > 0;
    m->gap_p50 = median(g50, ngap);
    m->gap_p90 = median(g90, ngap);
    m->gap_p99 = median(g99, ngap);
    m->gap_max = median(gmax, ngap);
    m->have_cpu = ncpu > 0;
    m->cpu_per_req = median(cpu, ncpu);
    m->have_busy = nbusy > 0;
    m->server_busy = median(sbusy, nbusy);
    m->client_busy = median(cbusy, nbusy);
    lo->ok = hi->ok = n > 0;
    if (n > 0) {
        lo->rps = rps[0], hi->rps = rps[n - 1];
        lo->p50 = p50[0], hi->p50 = p50[n - 1];
        lo->p99 = p99[0], hi->p99 = p99[n - 1];
        lo->p999 = p999[0], hi->p999 = p999[n - 1];
    }
    lo->have_cpu = hi->have_cpu = ncpu > 0;
    if (ncpu > 0)
        lo->cpu_per_req = cpu[0], hi->cpu_per_req = cpu[ncpu - 1];
    if (nccpu > 0)
        lo->client_cpu_per_req = ccpu[0], hi->client_cpu_per_req = ccpu[nccpu - 1];
    lo->have_busy = hi->have_busy = nbusy > 0;
    if (nbusy > 0) {
        lo->server_busy = sbusy[0], hi->server_busy = sbusy[nbusy - 1];
        lo->client_busy = cbusy[0], hi->client_busy = cbusy[nbusy - 1];
    }
    s->spread_rps = spread_of(lo->rps, hi->rps, m->rps);
    s->spread_p99 = spread_of(lo->p99, hi->p99, m->p99);
    s->spread_cpu = m->have_cpu ? spread_of(lo->cpu_per_req, hi->cpu_per_req, m->cpu_per_req) : 0;
    /* p99 is left out: a tail moves more from round to round than a rate */
    s->noisy = n >= 2 && (s->spread_rps > NOISY_SPREAD || s->spread_cpu > NOISY_SPREAD);
}

static bool run_clean(const run_rec *r, long conns) {
    return r->ok && r->lost == 0 && r->mismatches == 0 && r->errors == 0 && r->bad_status == 0 &&
           r->bad_framing == 0 && r->connect_failures == 0 && r->connected == (uint64_t)conns;
}

/* ------------------------------------------------------------ progress */

typedef struct progress_ctx {
    const char *name;
    int round, rounds;
    double total_s;
    double last_s;
    uint64_t last_req;
    double rate;
} progress_ctx;

static void on_progress(double elapsed, uint64_t requests, void *ud) {
    progress_ctx *p = ud;
    if (elapsed > p->last_s + 0.05) {
        p->rate = (double)(requests - p->last_req) / (elapsed - p->last_s);
        p->last_s = elapsed;
        p->last_req = requests;
    }
    if (p->rounds > 1)
        fprintf(stderr, "\r  round %d/%d  %-12s %5.1f/%.1f s  %10.0f req/s\033[K", p->round,
                p->rounds, p->name, elapsed, p->total_s, p->rate);
    else
        fprintf(stderr, "\r  %-12s %5.1f/%.1f s  %10.0f req/s\033[K", p->name, elapsed, p->total_s,
                p->rate);
    fflush(stderr);
}

/* ------------------------------------------------------------ one run */

static void load_base(const bench_opts *o, load_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->conns = o->conns;
    cfg->mode = o->mode;
    cfg->size = o->size;
    cfg->window = o->window;
    cfg->duration_s = o->duration;
    cfg->warmup_s = o->warmup;
    cfg->drain_s = o->drain;
    cfg->threads = o->threads;
    cfg->cpu = -1;
    if (o->pin) {
        cfg->cpus = o->client_cpus;
        cfg->ncpus = o->nclient_cpus;
    }
    cfg->stop = &g_stop;
}

static void fill_rec(run_rec *rec, const load_result *r) {
    rec->rps = r->req_per_s;
    rec->p50 = r->p50_us;
    rec->p99 = r->p99_us;
    rec->p999 = r->p999_us;
    rec->p90 = r->p90_us;
    rec->max = r->max_us;
    rec->client_cpu_per_req = r->have_client_cpu && r->requests ? r->client_cpu_us / (double)r->requests : 0;
    rec->bad_status = r->bad_status;
    rec->bad_framing = r->bad_framing;
    rec->reconnects = r->reconnects;
    rec->have_cpu = r->have_cpu && r->requests > 0; /* no requests: no CPU per request */
    rec->cpu_per_req = r->server_cpu_us_per_req;
    rec->requests = r->requests;
    rec->bytes_sent = r->bytes_sent;
    rec->bytes_verified = r->bytes_verified;
    rec->lost = r->lost;
    rec->mismatches = r->mismatches;
    rec->errors = r->errors;
    rec->connect_failures = r->connect_failures;
    rec->connected = r->connected;
    rec->kept = r->kept;
    rec->have_gaps = r->connected > 0;
    rec->gap_p50 = r->gap_p50_ms;
    rec->gap_p90 = r->gap_p90_ms;
    rec->gap_p99 = r->gap_p99_ms;
    rec->gap_max = r->gap_max_ms;
}

/* How many CPUs the client threads can keep busy: one per thread, up to
 * the CPUs of --client-cpu they are pinned to, or up to the CPUs there are. */
static double client_capacity(const bench_opts *o) {
    long t = o->threads < o->conns ? o->threads : o->conns;
    if (o->pin && o->nclient_cpus > 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        for (long i = 0; i < t; i++)
            CPU_SET(o->client_cpus[i % o->nclient_cpus], &set);
        return CPU_COUNT(&set);
    }
    return (double)(t < o->ncpus ? t : o->ncpus > 0 ? o->ncpus : 1);
}

/*
 * How busy each side was, and whether the round measured the server at all.
 *
 * The load is a closed loop: every connection sends its next request the
 * moment the echo of the last one is back (stream: as soon as its window
 * has room), so nothing paces it but the two ends. With more than one
 * request in flight per client thread, one end is the bottleneck and runs
 * close to flat out: the server near a whole core (its loop thread is
 * pinned and handles all it is given), or the client near all the CPU its
 * threads can use. A round where both used under half (STARVED_SERVER,
 * STARVED_CLIENT) had no bottleneck of its own: the requests spent their
 * time waiting on something else. The server was not running though it had
 * work (another task on its CPU, a cgroup's CPU quota, SIGSTOP, paging),
 * or the network held the bytes (delayed ACKs). Its req/s then measures
 * that wait, not the server: "starved".
 *
 * With one ping-pong connection per client thread the two ends take turns,
 * each waking the other, and neither runs flat out: there only a server
 * under STARVED_SERVER_SERIAL (20 %) of a core counts as starved.
 *
 * Measured here (2 CPUs, server on one, client on the other, 1 s rounds):
 * 4 to 100 connections, one side at 95-100 % (stream mode: the client at
 * 99 %, the server 60 %); 1 connection, the server at 55 % and the client
 * at 50 %; rounds that shared the CPUs with a compile, both sides at
 * 30-45 %; the server stopped (SIGSTOP) over the measured part, both at 0.
 * CPU time is utime+stime of /proc/PID/stat (every thread) in ticks of
 * 10 ms: 1 % of a core over a 1 s round. Not judged for --target (its
 * CPU is not measured).
 */
static void judge_round(const bench_opts *o, run_rec *rec, const load_result *r) {
    rec->have_busy = r->have_cpu && r->have_client_cpu && r->cpu_window_s > 0;
    if (!rec->have_busy)
        return;
    rec->server_busy = r->server_cpu_us / 1e6 / r->cpu_window_s;
    rec->client_busy = r->client_cpu_us / 1e6 / r->cpu_window_s / client_capacity(o);
    bool serial = o->mode == LOAD_PINGPONG && o->conns <= o->threads;
    double server_min = serial ? STARVED_SERVER_SERIAL : STARVED_SERVER;
    rec->starved = rec->server_busy < server_min && rec->client_busy < STARVED_CLIENT;
}

/* Runs the load against the servers at addrs; the result goes to rec. */
static void run_load(const bench_opts *o, const load_addr *addrs, int naddrs, long server_pid,
                     progress_ctx *pc, run_rec *rec) {
    load_config cfg;
    load_result r;
    load_base(o, &cfg);
    cfg.addrs = addrs;
    cfg.naddrs = naddrs;
    cfg.server_pid = server_pid;
    bool tty = isatty(STDERR_FILENO);
    if (tty) {
        cfg.progress = on_progress;
        cfg.ud = pc;
    }
    int rc;
    if (o->http) {
        http_load_target t = {.reqs = o->reqs, .nreqs = o->nreqs, .pipeline = o->pipeline, .rate = o->rate,
                              .expect = o->expect, .expect_len = o->expect_len,
                              .expect_status = o->expect_status};
        if (o->rate == 0 && o->client_batch > 1) { /* an open loop sends on time: no batching there */
            t.wait_batch = (uint32_t)o->client_batch;
            t.wait_batch_us = (uint32_t)o->client_batch_us;
        }
        t.backend = o->client_backend == BACKEND_URING ? VIGIL_BACKEND_URING
                    : o->client_backend == BACKEND_EPOLL ? VIGIL_BACKEND_EPOLL
                                                         : VIGIL_BACKEND_AUTO;
        rc = http_load_run(&cfg, &t, &r);
    } else {
        rc = load_run(&cfg, &r);
    }
    if (tty)
        fprintf(stderr, "\r\033[K");
    if (rc != 0) {
        rec->ok = false;
        snprintf(rec->err, sizeof(rec->err), "%s", r.error);
    } else {
        rec->ok = true;
        fill_rec(rec, &r);
        judge_round(o, rec, &r);
        if (r.resolved[0] && pc->round == 1) /* a name, looked up on a vigil loop */
            fprintf(stderr, "vigil bench: %s is %s\n", addrs[0].host, r.resolved);
        if (r.cpu_pin_errno)
            fprintf(stderr, "vigil bench: pinning the client to CPU %d%s: %s\n", o->client_cpus[0],
                    o->nclient_cpus > 1 ? " and the others" : "", strerror(r.cpu_pin_errno));
        if (!run_clean(rec, o->conns) && o->http)
            snprintf(rec->err, sizeof(rec->err),
                     "%llu requests unanswered, %llu bodies differ, %llu bad statuses, %llu broken "
                     "framings, %llu connection errors, %llu of %ld connected; first: %s",
                     (unsigned long long)r.lost, (unsigned long long)r.mismatches,
                     (unsigned long long)r.bad_status, (unsigned long long)r.bad_framing,
                     (unsigned long long)r.errors, (unsigned long long)r.connected, o->conns, r.what);
        else if (!run_clean(rec, o->conns))
            snprintf(rec->err, sizeof(rec->err),
                     "%llu bytes lost, %llu mismatched, %llu connection errors, %llu of %ld connected",
                     (unsigned long long)r.lost, (unsigned long long)r.mismatches,
                     (unsigned long long)r.errors, (unsigned long long)r.connected, o->conns);
    }
    load_result_free(&r);
}

/* Starts s, loads it, stops it. */
static void run_server(const bench_opts *o, server *s, int round, run_rec *rec) {
    char *argv[10];
    int n = 0;
    argv[n++] = s->path;
    for (int i = 0; s->args[i]; i++)
        argv[n++] = (char *)s->args[i];
    argv[n] = NULL;

    child c;
    uint16_t port = 0;
    memset(rec, 0, sizeof(*rec));
    if (child_start(o, argv, &c, &port, rec->err, sizeof(rec->err)) < 0) {
        rec->ok = false;
        return;
    }
    /* `vigil serve --backend auto` says which backend it chose */
    if (!strncmp(s->name, "vigil-auto", 10)) {
        const char *b = strstr(c.line, "backend ");
        if (b && !strncmp(b + 8, "io_uring", 8)) {
            snprintf(s->name, sizeof(s->name), "vigil-uring");
            s->mech = "uring";
        } else if (b && !strncmp(b + 8, "epoll", 5)) {
            snprintf(s->name, sizeof(s->name), "vigil-epoll");
            s->mech = "epoll";
        }
    }
    progress_ctx pc = {.name = s->name, .round = round + 1, .rounds = o->rounds,
                       .total_s = o->warmup + o->duration};
    run_load(o, &(load_addr){"127.0.0.1", port}, 1, c.pid, &pc, rec);
    child_end(&c);
}

/* ------------------------------------------------------------ output */

static const char *mode_name(load_mode m) { return m == LOAD_PINGPONG ? "pingpong" : "stream"; }

/* --client-cpu's CPUs as given, comma-separated ("1", "1,2,3"). */
static void cpu_list(const bench_opts *o, char *buf, size_t len) {
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < o->nclient_cpus && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%d", i ? "," : "", o->client_cpus[i]);
}

/* One line describing the load, used in the header, the JSON and the chart title. */
static void describe(const bench_opts *o, char *buf, size_t len, bool short_form) {
    char pin[160];
    if (o->target && o->pid)
        snprintf(pin, sizeof(pin), "external server %s (pid %ld, not pinned)", o->target, o->pid);
    else if (o->target)
        snprintf(pin, sizeof(pin), "external server %s (CPU not measured, not pinned)", o->target);
    else if (!o->pin)
        snprintf(pin, sizeof(pin), "1 CPU: server and client not pinned");
    else
        snprintf(pin, sizeof(pin), "server on CPU %d", o->server_cpu);
    char client[96] = "", cpus[64];
    cpu_list(o, cpus, sizeof(cpus));
    if (o->pin && o->nclient_cpus > 0)
        snprintf(client, sizeof(client), ", client on CPU%s %s", o->nclient_cpus > 1 ? "s" : "", cpus);
    else if (o->pin)
        snprintf(client, sizeof(client), ", client not pinned");
    char mode[320], what[200];
    if (o->requests_file)
        snprintf(what, sizeof(what), "%zu request%s of %.120s in turn", o->nreqs, o->nreqs == 1 ? "" : "s",
                 o->requests_file);
    else
        snprintf(what, sizeof(what), "%s", o->method);
    if (o->http && o->rate > 0)
        snprintf(mode, sizeof(mode), "HTTP %s, open loop at %g requests/s, up to %d in flight a connection",
                 what, o->rate, o->pipeline);
    else if (o->http && o->client_batch > 1)
        snprintf(mode, sizeof(mode), "HTTP %s, closed loop, %d in flight a connection, client waits batched (%d, %d us)",
                 what, o->pipeline, o->client_batch, o->client_batch_us);
    else if (o->http)
        snprintf(mode, sizeof(mode), "HTTP %s, closed loop, %d in flight a connection", what, o->pipeline);
    else if (o->mode == LOAD_PINGPONG)
        snprintf(mode, sizeof(mode), "%ld-byte ping-pong", o->size);
    else
        snprintf(mode, sizeof(mode), "stream of %ld-byte chunks, %ld bytes in flight", o->size,
                 o->window);
    char med[48] = "";
    if (o->rounds > 1)
        snprintf(med, sizeof(med), ", medians of %d rounds", o->rounds);
    char brief[240];
    if (o->http)
        snprintf(brief, sizeof(brief), "HTTP %s%s", what, o->rate > 0 ? ", open loop" : "");
    else
        snprintf(brief, sizeof(brief), "%s %ld B", mode_name(o->mode), o->size);
    if (short_form)
        snprintf(buf, len, "%ld conns, %s, %g s (+%g s warmup)%s; %s%s", o->conns, brief, o->duration,
                 o->warmup, med, pin, client);
    else
        snprintf(buf, len, "%ld connections, %s, %g s after %g s warmup, %d client thread%s; %s%s",
                 o->conns, mode, o->duration, o->warmup, o->threads, o->threads == 1 ? "" : "s",
                 pin, client);
}

/* Index of the raw baseline s's CPU compares to, or -1. */
static int baseline_of(server *sv, int n, int i) {
    if (sv[i].raw || !sv[i].mech)
        return -1;
    for (int j = 0; j < n; j++)
        if (sv[j].raw && !strcmp(sv[j].mech, sv[i].mech) && sv[j].nok > 0 && sv[j].med.have_cpu)
            return j;
    return -1;
}

/* A spread as a percentage, "-" with fewer than two rounds to compare. */
static void fmt_spread(char *buf, size_t len, const server *s, double spread) {
    if (s->nok < 2)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.1f%%%s", spread * 100, spread > NOISY_SPREAD ? "!" : "");
}

static void print_http_table(const bench_opts *o, server *sv, int n);

/* The per-connection view of a row: each connection's longest wait, and
 * how many made it to the end (medians and sums over the rounds). */
static void print_connections(const server *s) {
    const run_rec *m = &s->med;
    if (!m->have_gaps)
        return;
    printf("%-12s per connection, its longest wait: p50 %.2f ms, p90 %.2f, p99 %.2f, max %.2f; "
           "%llu of %llu connections to the end, %.1f MB checked (%d round%s)\n",
           "", m->gap_p50, m->gap_p90, m->gap_p99, m->gap_max, (unsigned long long)m->kept,
           (unsigned long long)m->connected, (double)m->bytes_verified / 1e6, s->nok, s->nok == 1 ? "" : "s");
}

static void print_table(const bench_opts *o, server *sv, int n) {
    if (o->http) {
        print_http_table(o, sv, n);
        return;
    }
    printf("%-12s %11s %7s %9s %9s %11s %7s %10s %10s %10s %10s %7s\n", "server", "req/s", "spread",
           "p50 us", "p99 us", "CPU us/req", "spread", "req/s x1st", "CPU x raw", "lost B",
           "mismatch B", "errors");
    double first = sv[0].nok > 0 ? sv[0].med.rps : 0;
    for (int i = 0; i < n; i++) {
        const run_rec *m = &sv[i].med;
        if (sv[i].nok == 0) {
            printf("%-12s failed: %s\n", sv[i].name, m->err);
            continue;
        }
        char cpu[32] = "-", r1[32] = "-", rc[32] = "-", sr[16], sc[16] = "-";
        if (m->have_cpu) {
            snprintf(cpu, sizeof(cpu), "%.3f", m->cpu_per_req);
            fmt_spread(sc, sizeof(sc), &sv[i], sv[i].spread_cpu);
        }
        fmt_spread(sr, sizeof(sr), &sv[i], sv[i].spread_rps);
        if (first > 0)
            snprintf(r1, sizeof(r1), "%.2fx", m->rps / first);
        int b = baseline_of(sv, n, i);
        if (b >= 0 && m->have_cpu && sv[b].med.cpu_per_req > 0)
            snprintf(rc, sizeof(rc), "%.2fx", m->cpu_per_req / sv[b].med.cpu_per_req);
        printf("%-12s %11.1f %7s %9.1f %9.1f %11s %7s %10s %10s %10llu %10llu %7llu\n", sv[i].name,
               m->rps, sr, m->p50, m->p99, cpu, sc, r1, rc, (unsigned long long)m->lost,
               (unsigned long long)m->mismatches, (unsigned long long)m->errors);
        if (sv[i].nok < o->rounds)
            printf("%-12s %d of %d rounds failed: %s\n", "", o->rounds - sv[i].nok, o->rounds,
                   m->err);
        print_connections(&sv[i]);
    }
    if (o->rounds > 1)
        printf("spread: (max - min) / median over the %d rounds (! above %.0f%%); min and max in "
               "bench.json and bench.csv\n", o->rounds, NOISY_SPREAD * 100);
}

/* --compare-clients: vigil bench (row 0) against client row i, as medians
 * of the ratios of rounds taken minutes apart at most (the rows take turns
 * in each round): on a machine whose speed drifts, steadier than the ratio
 * of two medians, which may come from rounds far apart. Returns the rounds
 * both ran (0: none); *cpu is NAN when neither measured its CPU. */
static int client_ratio(const bench_opts *o, server *sv, int i, double *rps, double *cpu) {
    double r[MAX_ROUNDS], c[MAX_ROUNDS];
    int nr = 0, nc = 0;
    for (int k = 0; k < o->rounds; k++) {
        const run_rec *v = &sv[0].runs[k], *x = &sv[i].runs[k];
        if (!v->ok || !x->ok || x->rps <= 0)
            continue;
        r[nr++] = v->rps / x->rps;
        if (v->client_cpu_per_req > 0 && x->client_cpu_per_req > 0)
            c[nc++] = v->client_cpu_per_req / x->client_cpu_per_req;
    }
    *rps = nr ? median(r, nr) : NAN;
    *cpu = nc ? median(c, nc) : NAN;
    return nr;
}

static void print_client_ratios(const bench_opts *o, server *sv, int n) {
    for (int i = 1; i < n; i++) {
        double rps, cpu;
        int nr = sv[i].client ? client_ratio(o, sv, i, &rps, &cpu) : 0;
        if (nr == 0)
            continue;
        printf("%s / %s, medians of per-round ratios (%d round%s): req/s %.3fx", sv[0].name, sv[i].name, nr,
               nr == 1 ? "" : "s", rps);
        if (!isnan(cpu))
            printf(", client CPU per request %.3fx", cpu);
        printf("\n");
    }
}

/* --http: latency to p99.9 and max, both sides' CPU, and what was wrong. */
static void print_http_table(const bench_opts *o, server *sv, int n) {
    printf("%-12s %10s %7s %8s %8s %8s %9s %9s %10s %10s %9s %9s %9s %9s %7s\n", "server", "req/s", "spread",
           "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "server us", "client us", "unanswrd",
           "bad body", "bad stat", "bad frame", "errors");
    for (int i = 0; i < n; i++) {
        const run_rec *m = &sv[i].med;
        if (sv[i].nok == 0) {
            printf("%-12s failed: %s\n", sv[i].name, m->err);
            continue;
        }
        char cpu[32] = "-", ccpu[32] = "-", sr[16], lat[5][24];
        const double lv[5] = {m->p50, m->p90, m->p99, m->p999, m->max};
        for (int k = 0; k < 5; k++) /* what a client's report does not give: - */
            snprintf(lat[k], sizeof(lat[k]), lv[k] > 0 ? "%.1f" : "-", lv[k]);
        if (m->have_cpu)
            snprintf(cpu, sizeof(cpu), "%.3f", m->cpu_per_req);
        if (m->client_cpu_per_req > 0)
            snprintf(ccpu, sizeof(ccpu), "%.3f", m->client_cpu_per_req);
        fmt_spread(sr, sizeof(sr), &sv[i], sv[i].spread_rps);
        printf("%-12s %10.1f %7s %8s %8s %8s %9s %9s %10s %10s %9llu %9llu %9llu %9llu %7llu\n",
               sv[i].name, m->rps, sr, lat[0], lat[1], lat[2], lat[3], lat[4], cpu, ccpu,
               (unsigned long long)m->lost, (unsigned long long)m->mismatches,
               (unsigned long long)m->bad_status, (unsigned long long)m->bad_framing,
               (unsigned long long)m->errors);
        if (sv[i].nok < o->rounds || m->err[0])
            printf("%-12s %d of %d rounds failed: %s\n", "", o->rounds - sv[i].nok, o->rounds, m->err);
        print_connections(&sv[i]);
        if (m->reconnects)
            printf("%-12s %llu connections the server closed between responses were replaced (keep-alive limits)\n",
                   "", (unsigned long long)m->reconnects);
    }
    printf("server us, client us: CPU per request (server: with --pid, or started here); latency %s\n",
           o->rate > 0 ? "from when each request was due (open loop)" : "from each request's send");
    print_client_ratios(o, sv, n);
}

/* ------------------------------------------------------------ warnings */

/* What makes a result untrustworthy, one line each: printed after the
 * table, listed in bench.json ("warnings", "trustworthy") and under the chart. */
#define MAX_WARNINGS (2 * MAX_SERVERS)
static char warns[MAX_WARNINGS][1024];
static int nwarn;

static void find_warnings(const bench_opts *o, server *sv, int n) {
    nwarn = 0;
    for (int i = 0; i < n; i++) {
        const server *s = &sv[i];
        if (s->nstarved > 0) {
            char *w = warns[nwarn++];
            size_t len = sizeof(warns[0]);
            int at = snprintf(w, len, "%.63s looks starved in %d of %d round%s (", s->name,
                              s->nstarved, o->rounds, o->rounds == 1 ? "" : "s");
            for (int r = 0, k = 0; r < o->rounds; r++) {
                const run_rec *x = &s->runs[r];
                if (!x->ok || !x->starved || at >= (int)len)
                    continue;
                at += snprintf(w + at, len - (size_t)at,
                               "%sround %d: %.0f req/s, the server used %.1f%% of a core and the "
                               "client %.1f%% of its CPU", k++ ? "; " : "", r + 1, x->rps,
                               x->server_busy * 100, x->client_busy * 100);
            }
            if (at < (int)len)
                snprintf(w + at, len - (size_t)at,
                         "): neither side was busy, so req/s measured waiting, not the server "
                         "(another task on the server's CPU, a CPU quota, a stopped or paging "
                         "process?)");
        }
        if (s->noisy) {
            char cpu[160] = "";
            if (s->med.have_cpu)
                snprintf(cpu, sizeof(cpu), ", CPU us/req %.3f..%.3f (spread %.1f%%)",
                         s->lo.cpu_per_req, s->hi.cpu_per_req, s->spread_cpu * 100);
            snprintf(warns[nwarn++], sizeof(warns[0]),
                     "%.63s's %d rounds disagree: req/s %.0f..%.0f around a median of %.0f (spread "
                     "%.1f%%)%s; more than %.0f%% apart, its median is no steady figure (rerun "
                     "on a quieter machine, or with more --rounds)",
                     s->name, s->nok, s->lo.rps, s->hi.rps, s->med.rps, s->spread_rps * 100, cpu,
                     NOISY_SPREAD * 100);
        }
    }
}

/* A fraction (4 decimals), or null when not known. */
static void json_frac(FILE *f, const char *key, bool have, double v) {
    if (have)
        fprintf(f, "\"%s\":%.4f,", key, v);
    else
        fprintf(f, "\"%s\":null,", key);
}

/* A latency in us, or null when there is none (no requests, or a client
 * whose report does not give it: wrk has no p99.9 nor max, h2load no
 * percentiles). */
static void json_lat(FILE *f, const char *key, double v) {
    if (v > 0)
        fprintf(f, "\"%s\":%.1f,", key, v);
    else
        fprintf(f, "\"%s\":null,", key);
}

/* A round (round true: with its verdict) or the medians. */
static void json_rec(FILE *f, const run_rec *r, bool round) {
    fprintf(f, "{\"ok\":%s,\"req_per_s\":%.1f,", r->ok ? "true" : "false", r->rps);
    json_lat(f, "p50_us", r->p50);
    json_lat(f, "p99_us", r->p99);
    json_lat(f, "p999_us", r->p999);
    json_frac(f, "server_cpu_us_per_req", r->have_cpu, r->cpu_per_req);
    json_frac(f, "client_cpu_us_per_req", r->client_cpu_per_req > 0, r->client_cpu_per_req);
    json_lat(f, "p90_us", r->p90);
    json_lat(f, "max_us", r->max);
    fprintf(f, "\"bad_status\":%llu,\"bad_framing\":%llu,\"reconnects\":%llu,",
            (unsigned long long)r->bad_status, (unsigned long long)r->bad_framing,
            (unsigned long long)r->reconnects);
    json_frac(f, "gap_p50_ms", r->have_gaps, r->gap_p50);
    json_frac(f, "gap_p90_ms", r->have_gaps, r->gap_p90);
    json_frac(f, "gap_p99_ms", r->have_gaps, r->gap_p99);
    json_frac(f, "gap_max_ms", r->have_gaps, r->gap_max);
    if (r->have_gaps)
        fprintf(f, "\"connections\":%llu,\"connections_kept\":%llu,", (unsigned long long)r->connected,
                (unsigned long long)r->kept);
    else
        fprintf(f, "\"connections\":null,\"connections_kept\":null,");
    json_frac(f, "server_busy", r->have_busy, r->server_busy);
    json_frac(f, "client_busy", r->have_busy, r->client_busy);
    if (round)
        fprintf(f, "\"starved\":%s,", !r->have_busy ? "null" : r->starved ? "true" : "false");
    fprintf(f,
            "\"requests\":%llu,\"bytes_sent\":%llu,\"bytes_verified\":%llu,\"lost\":%llu,"
            "\"mismatches\":%llu,\"errors\":%llu,\"connect_failures\":%llu",
            (unsigned long long)r->requests, (unsigned long long)r->bytes_sent,
            (unsigned long long)r->bytes_verified, (unsigned long long)r->lost,
            (unsigned long long)r->mismatches, (unsigned long long)r->errors,
            (unsigned long long)r->connect_failures);
    if (r->err[0]) {
        fprintf(f, ",\"error\":");
        json_str(f, r->err);
    }
    fputc('}', f);
}

/* The lowest or highest figures over the rounds. */
static void json_range(FILE *f, const run_rec *r) {
    fprintf(f, "{\"req_per_s\":%.1f,", r->rps);
    json_lat(f, "p50_us", r->p50);
    json_lat(f, "p99_us", r->p99);
    json_lat(f, "p999_us", r->p999);
    json_frac(f, "server_busy", r->have_busy, r->server_busy);
    json_frac(f, "client_busy", r->have_busy, r->client_busy);
    json_frac(f, "client_cpu_us_per_req", r->client_cpu_per_req > 0, r->client_cpu_per_req);
    if (r->have_cpu)
        fprintf(f, "\"server_cpu_us_per_req\":%.4f}", r->cpu_per_req);
    else
        fprintf(f, "\"server_cpu_us_per_req\":null}");
}

static int write_json(const char *path, const bench_opts *o, server *sv, int n) {
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    char desc[1024];
    describe(o, desc, sizeof(desc), false);
    fprintf(f, "{\n  \"description\":");
    json_str(f, desc);
    fprintf(f,
            ",\n  \"mode\":\"%s\",\"conns\":%ld,\"size\":%ld,\"window\":%ld,\"duration_s\":%g,"
            "\"warmup_s\":%g,\"threads\":%d,\"rounds\":%d,",
            mode_name(o->mode), o->conns, o->size, o->window, o->duration, o->warmup, o->threads,
            o->rounds);
    if (o->target) {
        fprintf(f, "\"target\":");
        json_str(f, o->target);
        fprintf(f, ",\"server_cpu\":null,");
    } else {
        fprintf(f, "\"target\":null,");
        if (o->pin)
            fprintf(f, "\"server_cpu\":%d,", o->server_cpu);
        else
            fprintf(f, "\"server_cpu\":null,");
    }
    if (o->pin && o->nclient_cpus > 0) {
        fprintf(f, "\"client_cpu\":%d,\"client_cpus\":[", o->client_cpus[0]);
        for (int i = 0; i < o->nclient_cpus; i++)
            fprintf(f, "%s%d", i ? "," : "", o->client_cpus[i]);
        fprintf(f, "],\n");
    } else {
        fprintf(f, "\"client_cpu\":null,\"client_cpus\":[],\n");
    }
    fprintf(f, "  \"client_ratios\":["); /* --compare-clients: print_client_ratios */
    for (int i = 1, first = 1; i < n; i++) {
        double rps, cpu;
        int nr = sv[i].client ? client_ratio(o, sv, i, &rps, &cpu) : 0;
        if (nr == 0)
            continue;
        fprintf(f, "%s{\"client\":", first ? "" : ",");
        json_str(f, sv[i].name);
        fprintf(f, ",\"rounds\":%d,\"req_per_s\":%.4f,", nr, rps);
        json_frac(f, "client_cpu_us_per_req", !isnan(cpu), cpu);
        fprintf(f, "\"of\":");
        json_str(f, sv[0].name);
        fprintf(f, "}");
        first = 0;
    }
    fprintf(f, "],\n  \"servers\":[");
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s\n    {\"name\":", i ? "," : "");
        json_str(f, sv[i].name);
        fprintf(f, ",\"program\":");
        json_str(f, sv[i].shown[0] ? sv[i].shown : sv[i].path);
        fprintf(f, ",\"baseline\":");
        int b = baseline_of(sv, n, i);
        if (b >= 0)
            json_str(f, sv[b].name);
        else
            fputs("null", f);
        const server *s = &sv[i];
        fprintf(f, ",\n     \"median\":");
        json_rec(f, &s->med, false);
        fprintf(f, ",\n     \"min\":");
        json_range(f, &s->lo);
        fprintf(f, ",\n     \"max\":");
        json_range(f, &s->hi);
        fprintf(f, ",\n     \"spread\":{\"req_per_s\":%.4f,\"p99_us\":%.4f,", s->spread_rps,
                s->spread_p99);
        json_frac(f, "server_cpu_us_per_req", s->med.have_cpu, s->spread_cpu);
        fprintf(f, "\"rounds_ok\":%d},\n     \"noisy\":%s,\"starved_rounds\":[", s->nok,
                s->noisy ? "true" : "false");
        for (int r = 0, k = 0; r < o->rounds; r++)
            if (s->runs[r].ok && s->runs[r].starved)
                fprintf(f, "%s%d", k++ ? "," : "", r + 1);
        fprintf(f, "],\n     \"rounds\":[");
        for (int r = 0; r < o->rounds; r++) {
            fprintf(f, "%s\n       ", r ? "," : "");
            json_rec(f, &s->runs[r], true);
        }
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ],\n  \"trustworthy\":%s,\"warnings\":[", nwarn ? "false" : "true");
    for (int k = 0; k < nwarn; k++) {
        fprintf(f, "%s\n    ", k ? "," : "");
        json_str(f, warns[k]);
    }
    fprintf(f, "%s]\n}\n", nwarn ? "\n  " : "");
    return fclose(f) == 0 ? 0 : -1;
}

/* A fraction, or an empty field. */
static void csv_frac(FILE *f, bool have, double v) {
    fputc(',', f);
    if (have)
        fprintf(f, "%.4f", v);
}

/* A latency, or empty (json_lat). */
static void csv_lat(FILE *f, double v) {
    fputc(',', f);
    if (v > 0)
        fprintf(f, "%.1f", v);
}

/* A row: a round, the medians (with the spreads), or the lowest or highest
 * figures (kind "min", "max": the counters are left empty, they are sums
 * in the median row). */
static void csv_rec(FILE *f, const server *s, const char *round, const run_rec *r, bool round_row) {
    bool range = !strcmp(round, "min") || !strcmp(round, "max");
    csv_str(f, s->name);
    fprintf(f, ",%s,%s,%.1f", round, r->ok ? "ok" : "failed", r->rps);
    csv_lat(f, r->p50);
    csv_lat(f, r->p99);
    csv_lat(f, r->p999);
    fputc(',', f);
    if (r->have_cpu)
        fprintf(f, "%.4f", r->cpu_per_req);
    if (range)
        fprintf(f, ",,,,,,,,");
    else
        fprintf(f, ",%llu,%llu,%llu,%llu,%llu,%llu,%llu,", (unsigned long long)r->requests,
                (unsigned long long)r->bytes_sent, (unsigned long long)r->bytes_verified,
                (unsigned long long)r->lost, (unsigned long long)r->mismatches,
                (unsigned long long)r->errors, (unsigned long long)r->connect_failures);
    csv_str(f, range ? "" : r->err);
    csv_frac(f, r->have_busy, r->server_busy);
    csv_frac(f, r->have_busy, r->client_busy);
    fprintf(f, ",%s", round_row && r->have_busy ? (r->starved ? "yes" : "no") : "");
    bool med = !strcmp(round, "median");
    csv_frac(f, med && s->nok >= 2, s->spread_rps);
    csv_frac(f, med && s->nok >= 2 && s->med.have_cpu, s->spread_cpu);
    fprintf(f, ",%s", med && s->nok >= 2 ? (s->noisy ? "yes" : "no") : "");
    csv_frac(f, r->client_cpu_per_req > 0, r->client_cpu_per_req);
    csv_lat(f, r->p90);
    csv_lat(f, r->max);
    fprintf(f, ",%llu,%llu", (unsigned long long)r->bad_status, (unsigned long long)r->bad_framing);
    csv_frac(f, r->have_gaps, r->gap_p50);
    csv_frac(f, r->have_gaps, r->gap_p90);
    csv_frac(f, r->have_gaps, r->gap_p99);
    csv_frac(f, r->have_gaps, r->gap_max);
    if (r->have_gaps && !range)
        fprintf(f, ",%llu,%llu\n", (unsigned long long)r->connected, (unsigned long long)r->kept);
    else
        fprintf(f, ",,\n");
}

static int write_csv(const char *path, const bench_opts *o, server *sv, int n) {
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    /* the columns after error are newer: a reader by position still finds the old ones */
    fprintf(f, "server,round,status,req_per_s,p50_us,p99_us,p999_us,server_cpu_us_per_req,"
               "requests,bytes_sent,bytes_verified,lost,mismatches,errors,connect_failures,error,"
               "server_busy,client_busy,starved,spread_req_per_s,spread_cpu_us_per_req,noisy,"
               "client_cpu_us_per_req,p90_us,max_us,bad_status,bad_framing,gap_p50_ms,gap_p90_ms,gap_p99_ms,"
               "gap_max_ms,connections,connections_kept\n");
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < o->rounds; r++) {
            char rn[16];
            snprintf(rn, sizeof(rn), "%d", r + 1);
            csv_rec(f, &sv[i], rn, &sv[i].runs[r], true);
        }
        csv_rec(f, &sv[i], "median", &sv[i].med, false);
        if (sv[i].nok > 0) {
            csv_rec(f, &sv[i], "min", &sv[i].lo, false);
            csv_rec(f, &sv[i], "max", &sv[i].hi, false);
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* A round step of about range/5: 1, 2 or 5 times a power of ten. */
static double nice_step(double range) {
    if (!(range > 0))
        return 1;
    double raw = range / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

/* Tick labels as short as they go (100k); bar labels with fixed decimals (274.1k, 3.30). */
static void fmt_num(char *buf, size_t len, double v, bool tick) {
    if (v >= 1e6)
        snprintf(buf, len, tick ? "%gM" : "%.2fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, len, tick ? "%gk" : "%.1fk", v / 1e3);
    else if (v >= 100 || (tick && v == floor(v)))
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, tick ? "%g" : "%.2f", v);
}

static const char *bar_color(const server *s) {
    if (!strncmp(s->name, "vigil", 5))
        return s->mech && !strcmp(s->mech, "epoll") ? "#4c9be8" : "#1f5fa8";
    if (s->raw)
        return s->mech && !strcmp(s->mech, "uring") ? "#7a7a7a" : "#a8a8a8";
    return "#e0892b";
}

/* One panel's figures per server: the bar (the median; NAN = no bar) and
 * its whisker, the lowest and highest round (NAN = none: one round). */
typedef struct bars {
    double v[MAX_SERVERS], lo[MAX_SERVERS], hi[MAX_SERVERS];
} bars;

/* One bar panel at x0: a bar per server with a y axis and ticks. */
static void svg_panel(FILE *f, double x0, double y0, double w, double h, const char *title,
                      server *sv, int n, const bars *b) {
    const double left = 64, bottom = 40, top = 30;
    const double *v = b->v;
    double px = x0 + left, pw = w - left - 16, py = y0 + top, ph = h - top - bottom;
    double vmax = 0;
    for (int i = 0; i < n; i++) {
        if (!isnan(v[i]) && v[i] > vmax)
            vmax = v[i];
        if (!isnan(v[i]) && !isnan(b->hi[i]) && b->hi[i] > vmax)
            vmax = b->hi[i]; /* the whisker fits too */
    }
    fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\">", x0 + 8,
            y0 + 16);
    xml_str(f, title);
    fprintf(f, "</text>\n");
    if (vmax <= 0) {
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" fill=\"#555\">"
                   "no data</text>\n", px + pw / 2, py + ph / 2);
        return;
    }
    double step = nice_step(vmax), ymax = ceil(vmax * 1.12 / step) * step;
    for (double t = 0; t <= ymax + step / 2; t += step) {
        double y = py + ph - t / ymax * ph;
        char lab[32];
        fmt_num(lab, sizeof(lab), t, true);
        fprintf(f, "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", px,
                y, px + pw, y);
        fprintf(f, "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
                px - 5, y, px, y);
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>\n",
                px - 8, y + 4, lab);
    }
    fprintf(f, "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", px, py,
            px, py + ph);
    fprintf(f, "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", px,
            py + ph, px + pw, py + ph);
    double slot = pw / n, bw = slot * 0.62;
    for (int i = 0; i < n; i++) {
        double cx = px + slot * (i + 0.5);
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">", cx,
                py + ph + 16);
        xml_str(f, sv[i].name);
        fprintf(f, "</text>\n");
        if (isnan(v[i])) {
            fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" "
                       "fill=\"#b00\">%s</text>\n", cx, py + ph - 6, sv[i].nok ? "n/a" : "failed");
            continue;
        }
        double bh = v[i] / ymax * ph;
        char lab[32];
        fmt_num(lab, sizeof(lab), v[i], false);
        fprintf(f, "  <rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n",
                cx - bw / 2, py + ph - bh, bw, bh, bar_color(&sv[i]));
        double label_y = py + ph - bh - 4;
        if (!isnan(b->lo[i]) && !isnan(b->hi[i])) {
            /* min-max over the rounds: a vertical line with caps; the label
             * moves right of it so the two do not overlap */
            double ylo = py + ph - b->lo[i] / ymax * ph, yhi = py + ph - b->hi[i] / ymax * ph;
            double cap = bw * 0.18;
            fprintf(f, "  <g class=\"whisker\" stroke=\"#222\" stroke-width=\"1.2\">"
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/></g>\n",
                    cx, ylo, cx, yhi, cx - cap, ylo, cx + cap, ylo, cx - cap, yhi, cx + cap, yhi);
            if (yhi - 4 < label_y)
                label_y = yhi - 4;
        }
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n",
                cx, label_y, lab);
    }
}

/* A panel's bars from a figure of the medians and of the lowest and highest rounds. */
static void fill_bars(bars *b, server *sv, int n, int rounds, double (*get)(const run_rec *)) {
    for (int i = 0; i < n; i++) {
        const server *s = &sv[i];
        bool have = s->nok > 0 && !isnan(get(&s->med));
        b->v[i] = have ? get(&s->med) : NAN;
        b->lo[i] = have && rounds > 1 && s->nok > 1 ? get(&s->lo) : NAN;
        b->hi[i] = have && rounds > 1 && s->nok > 1 ? get(&s->hi) : NAN;
    }
}

static double get_rps(const run_rec *r) { return r->rps; }
static double get_p99(const run_rec *r) { return r->p99 > 0 ? r->p99 : NAN; }
static double get_cpu(const run_rec *r) { return r->have_cpu ? r->cpu_per_req : NAN; }
static double get_client_cpu(const run_rec *r) { return r->client_cpu_per_req > 0 ? r->client_cpu_per_req : NAN; }

/* Text in lines of at most width characters, broken at spaces, from y
 * down by 18 each (f NULL: only counted). Returns how many lines. */
static int svg_wrapped(FILE *f, double y, size_t width, const char *cls, const char *color,
                       const char *text) {
    int lines = 0;
    char buf[sizeof(warns[0])];
    const char *p = text;
    while (*p) {
        size_t len = strlen(p);
        if (len > width) {
            len = width;
            while (len > 0 && p[len] != ' ')
                len--;
            if (len == 0)
                len = width; /* no space: cut the word */
        }
        if (f) {
            snprintf(buf, sizeof(buf), "%.*s", (int)len, p);
            fprintf(f, "  <text class=\"%s\" x=\"%d\" y=\"%.1f\" font-size=\"12\" fill=\"%s\">", cls,
                    lines ? 30 : 16, y + 18.0 * lines, color);
            xml_str(f, buf);
            fprintf(f, "</text>\n");
        }
        lines++;
        p += len;
        while (*p == ' ')
            p++;
    }
    return lines;
}

static int write_svg(const char *path, const bench_opts *o, server *sv, int n) {
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    double panel_w = 90.0 * n + 100;
    if (panel_w < 380)
        panel_w = 380;
    /* the panels side by side (--http: the client's CPU too); the notes
     * (what the whiskers are, the warnings) below them, a line each */
    int npanels = o->http ? 4 : 3;
    double W = npanels * panel_w + 20 * (npanels - 1), panels_h = 420;
    size_t width = (size_t)((W - 40) / 6.8); /* characters of 12 px DejaVu Sans a line holds */
    int notes = 1;
    for (int k = 0; k < nwarn; k++)
        notes += svg_wrapped(NULL, 0, width, "", "", warns[k]);
    double H = panels_h + 12 + 18.0 * notes;
    bars rps, p99, cpu, ccpu;
    fill_bars(&rps, sv, n, o->rounds, get_rps);
    fill_bars(&p99, sv, n, o->rounds, get_p99);
    fill_bars(&cpu, sv, n, o->rounds, get_cpu);
    fill_bars(&ccpu, sv, n, o->rounds, get_client_cpu);
    char desc[512], title[640];
    describe(o, desc, sizeof(desc), true);
    snprintf(title, sizeof(title), "vigil bench: %s", desc);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
               "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Arial, "
               "sans-serif\">\n",
            W, H, W, H);
    fprintf(f, "  <rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", W, H);
    /* the title wraps at the ';' when it is long */
    char *semi = strchr(title, ';');
    fprintf(f, "  <text x=\"%.1f\" y=\"24\" font-size=\"15\" text-anchor=\"middle\">", W / 2);
    if (semi && strlen(title) * 7.5 > W) {
        *semi = '\0';
        xml_str(f, title);
        fprintf(f, "</text>\n  <text x=\"%.1f\" y=\"44\" font-size=\"13\" text-anchor=\"middle\" "
                   "fill=\"#444\">", W / 2);
        xml_str(f, semi + 2);
    } else {
        xml_str(f, title);
    }
    fprintf(f, "</text>\n");
    svg_panel(f, 0, 56, panel_w, panels_h - 56, "Requests per second (higher is better)", sv, n,
              &rps);
    svg_panel(f, panel_w + 20, 56, panel_w, panels_h - 56,
              "p99 latency, \xc2\xb5s (lower is better)", sv, n, &p99);
    double x = 2 * (panel_w + 20);
    if (o->http) {
        svg_panel(f, x, 56, panel_w, panels_h - 56, "Client CPU per request, \xc2\xb5s (lower is better)", sv, n,
                  &ccpu);
        x += panel_w + 20;
    }
    svg_panel(f, x, 56, panel_w, panels_h - 56,
              o->target && !o->pid ? "Server CPU per request (no --pid)"
                                   : "Server CPU per request, \xc2\xb5s (lower is better)",
              sv, n, &cpu);
    double y = panels_h + 12;
    fprintf(f, "  <text x=\"16\" y=\"%.1f\" font-size=\"12\" fill=\"#444\">", y);
    if (o->rounds > 1)
        fprintf(f, "Bars: medians of %d rounds; whiskers: the lowest and highest round.", o->rounds);
    else
        fprintf(f, "One round: no spread to show (--rounds 2 or more for whiskers).");
    fprintf(f, "</text>\n");
    for (int k = 0; k < nwarn; k++) {
        char line[sizeof(warns[0]) + 8];
        snprintf(line, sizeof(line), "\xe2\x9a\xa0 %.1023s", warns[k]);
        y += 18 * svg_wrapped(f, y + 18, width, "warning", "#b00", line);
    }
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -1;
}

static int mkdir_p(const char *dir) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (stat(buf, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ server list */

static server *add_server(server *sv, int *n, const char *name, const char *mech, bool raw) {
    server *s = &sv[(*n)++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->mech = mech;
    s->raw = raw;
    return s;
}

static server *add_vigil(server *sv, int *n, const char *backend) {
    char name[32];
    snprintf(name, sizeof(name), "vigil-%s", backend);
    server *s = add_server(sv, n, name, strcmp(backend, "auto") ? backend : NULL, false);
    snprintf(s->path, sizeof(s->path), "/proc/self/exe"); /* this very binary, even if rebuilt since */
    ssize_t len = readlink("/proc/self/exe", s->shown, sizeof(s->shown) - 1);
    s->shown[len > 0 ? len : 0] = '\0';
    s->args[0] = "serve";
    s->args[1] = "--port";
    s->args[2] = "0";
    s->args[3] = "--backend";
    s->args[4] = backend;
    return s;
}

/* A peer from the peers' directory; prints why and returns false when it
 * is not there. */
static bool add_peer(server *sv, int *n, const char *peers, const char *prog, const char *name,
                     const char *mech, bool raw, const char *package) {
    char path[PATH_MAX];
    size_t len = strlen(peers);
    while (len > 1 && peers[len - 1] == '/')
        len--;
    snprintf(path, sizeof(path), "%.*s/%s", (int)len, peers, prog);
    if (access(path, X_OK) != 0) {
        /* a build tree's peers live in BUILD/bench: name the build directory
         * in the hint; installed ones come from a build installed again */
        char build[PATH_MAX];
        bool in_build = len > 6 && !strncmp(peers + len - 6, "/bench", 6);
        if (in_build)
            snprintf(build, sizeof(build), "%.*s", (int)(len - 6), peers);
        else
            snprintf(build, sizeof(build), "BUILD");
        const char *then = in_build ? "" : " && meson install -C BUILD";
        if (package)
            printf("vigil bench: skipping %s: %s is not built; install the Debian package %s "
                   "(apt-get install %s), then meson setup --reconfigure %s && ninja -C %s%s\n",
                   name, path, package, package, build, build, then);
        else
            printf("vigil bench: skipping %s: %s not found (ninja -C %s%s builds it)\n", name, path,
                   build, then);
        return false;
    }
    server *s = add_server(sv, n, name, mech, raw);
    snprintf(s->path, sizeof(s->path), "%s", path);
    s->args[0] = "--host";
    s->args[1] = "127.0.0.1";
    s->args[2] = "--port";
    s->args[3] = "0";
    return true;
}

/* The peer servers of --compare, when their directory is known. */
static void add_peers(const bench_opts *o, server *sv, int *n) {
    if (!o->peers) {
        printf("vigil bench: skipping the peer servers (raw-uring, raw-epoll, libuv, libevent): no "
               PEER_MARK " next to this vigil in %s", peers_looked[0]);
        for (int i = 1; i < npeers_looked; i++)
            printf(" or %s", peers_looked[i]);
        printf("; build them (ninja -C BUILD), install them (meson install -C BUILD), or name "
               "their directory with --peers DIR\n");
        return;
    }
#if VIGIL_HAVE_URING
    add_peer(sv, n, o->peers, "echo_uring", "raw-uring", "uring", true, NULL);
#endif
    add_peer(sv, n, o->peers, "echo_epoll", "raw-epoll", "epoll", true, NULL);
    add_peer(sv, n, o->peers, "echo_libuv", "libuv", "epoll", false, "libuv1-dev");
    add_peer(sv, n, o->peers, "echo_libevent", "libevent", "epoll", false, "libevent-dev");
}

/* The path of prog on PATH, into out; false when it is not there. */
static bool on_path(const char *prog, char *out, size_t len) {
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, len, "%s/%s", d, prog);
        if (access(out, X_OK) == 0)
            return true;
    }
    return false;
}

/* --compare-clients: the other load generators, as rows of their own. */
static void add_clients(server *sv, int *n) {
    static const char *const clients[][2] = {{"wrk", "wrk"}, {"h2load", "nghttp2-client"}};
    for (size_t i = 0; i < 2; i++) {
        char path[PATH_MAX];
        if (!on_path(clients[i][0], path, sizeof(path))) {
            printf("vigil bench: skipping %s: not installed (apt-get install %s)\n", clients[i][0], clients[i][1]);
            continue;
        }
        server *s = add_server(sv, n, clients[i][0], NULL, false);
        snprintf(s->path, sizeof(s->path), "%s", path);
        snprintf(s->shown, sizeof(s->shown), "%s", path);
        s->client = clients[i][0];
    }
}

/* The servers to load, into sv; returns how many. */
static int list_servers(const bench_opts *o, server *sv) {
    int n = 0;
    if (o->compare) {
#if VIGIL_HAVE_URING
        add_vigil(sv, &n, "uring");
#else
        printf("vigil bench: skipping vigil-uring and raw-uring: this vigil was built without "
               "io_uring (-During=disabled, or no liburing)\n");
#endif
        add_vigil(sv, &n, "epoll");
        add_peers(o, sv, &n);
    } else if (o->target) {
        server *s = add_server(sv, &n, o->http ? "vigil-bench" : o->target, NULL, false);
        snprintf(s->path, sizeof(s->path), "%s", o->target);
        if (o->compare_clients)
            add_clients(sv, &n);
    } else {
        server *s = add_vigil(sv, &n, backend_names[o->backend]);
        if (o->http) { /* --http /PATH */
            s->args[5] = "--mode";
            s->args[6] = "http";
        }
    }
    return n;
}

/* ------------------------------------------------------------ cmd_bench */

/* The output directory, the signals, the header. Returns -1 to go on, else the exit status. */
static int set_up(const bench_opts *o) {
    if (mkdir_p(o->out_dir) != 0) {
        fprintf(stderr, "vigil bench: cannot create --out %s: %s\n", o->out_dir, strerror(errno));
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: waits for a child's line end early */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char desc[1024];
    describe(o, desc, sizeof(desc), false);
    printf("vigil bench: %s\n", desc);
    if (o->rounds > 1)
        printf("vigil bench: %d rounds, servers interleaved; medians below\n", o->rounds);
    fflush(stdout);
    return -1;
}

/* A number after key in text (wrk's and h2load's reports), scaled by its
 * unit when it has one of us, ms or s (to us); -1 when absent. */
static double after(const char *text, const char *key, bool time) {
    const char *p = strstr(text, key);
    if (!p)
        return -1;
    char *end;
    double v = strtod(p + strlen(key), &end);
    if (end == p + strlen(key))
        return -1;
    if (time)
        v *= !strncmp(end, "us", 2) ? 1 : !strncmp(end, "ms", 2) ? 1e3 : !strncmp(end, "s", 1) ? 1e6 : 1;
    return v;
}

/* --compare-clients: wrk or h2load against the same URL, pinned where the
 * client threads are, for --duration seconds (no warm-up: neither has one
 * that leaves its CPU out), its req/s, requests and latency from its
 * report, its CPU over its whole run from the kernel (wait4). */
static void run_client(const bench_opts *o, server *s, run_rec *rec) {
    char conns[32], threads[32], dur[32], *argv[16];
    int n = 0;
    snprintf(conns, sizeof(conns), "%ld", o->conns);
    snprintf(threads, sizeof(threads), "%d", o->threads);
    snprintf(dur, sizeof(dur), "%lds", o->duration < 1 ? 1 : lround(o->duration)); /* whole seconds only */
    argv[n++] = s->path;
    if (!strcmp(s->client, "wrk")) {
        char *a[] = {"-t", threads, "-c", conns, "-d", dur, "--latency", (char *)o->http};
        for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++)
            argv[n++] = a[i];
    } else {
        char *a[] = {"--h1", "-t", threads, "-c", conns, "-D", dur, (char *)o->http};
        for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++)
            argv[n++] = a[i];
    }
    argv[n] = NULL;
    child c;
    child_opts co = {.cpu = -1, .cpus = o->client_cpus, .ncpus = o->pin ? o->nclient_cpus : 0,
                     .pid_slot = &g_child};
    load_cpu c0, c1; /* the server's, with --pid, over the client's whole run */
    load_cpu_take(&c0, o->pid);
    if (child_spawn(&c, s->path, argv, &co, rec->err, sizeof(rec->err)) != 0) {
        rec->ok = false;
        return;
    }
    char out[16384];
    size_t got = 0;
    for (ssize_t k; got < sizeof(out) - 1 && (k = read(c.out_fd, out + got, sizeof(out) - 1 - got)) != 0;)
        if (k > 0)
            got += (size_t)k;
        else if (errno != EINTR)
            break;
    out[got] = '\0';
    int status = 0;
    struct rusage ru;
    pid_t pid = c.pid;
    if (wait4(pid, &status, 0, &ru) == pid)
        c.pid = 0;
    child_close(&c);
    load_cpu_take(&c1, o->pid);
    const char *fin = strstr(out, "finished in "); /* h2load: "finished in 2.00s, 123.4 req/s" */
    double rps = !strcmp(s->client, "wrk") ? after(out, "Requests/sec:", false) : fin ? after(fin, "s, ", false) : -1;
    double reqs = !strcmp(s->client, "wrk") ? -1 : after(out, "requests: ", false);
    double ok2xx = !strcmp(s->client, "wrk") ? -1 : after(out, "status codes: ", false);
    if (!strcmp(s->client, "wrk")) {
        const char *in = strstr(out, " requests in ");
        if (in) {
            const char *b = in;
            while (b > out && b[-1] != '\n' && b[-1] != ' ')
                b--;
            reqs = strtod(b, NULL);
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || rps <= 0 || reqs <= 0) {
        rec->ok = false;
        snprintf(rec->err, sizeof(rec->err), "%s failed (status %d): %.160s", s->client, status, out);
        return;
    }
    rec->ok = true;
    rec->rps = rps;
    rec->requests = (uint64_t)reqs;
    rec->p50 = after(out, " 50%", true);
    rec->p90 = after(out, " 90%", true);
    rec->p99 = after(out, " 99%", true);
    rec->connected = (uint64_t)o->conns;
    double cpu_us = (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
                    (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
    rec->client_cpu_per_req = cpu_us / reqs; /* its whole run: its warm-up too (h2load) */
    rec->have_cpu = o->pid > 0 && c0.server_ticks >= 0 && c1.server_ticks >= 0;
    if (rec->have_cpu) /* over its warm-up too, as its CPU: an estimate beside vigil bench's */
        rec->cpu_per_req = (double)(c1.server_ticks - c0.server_ticks) * 1e6 / (double)sysconf(_SC_CLK_TCK) / reqs;
    double bad = !strcmp(s->client, "wrk") ? after(out, "Non-2xx or 3xx responses:", false) : reqs - ok2xx;
    if (bad > 0)
        rec->bad_status = (uint64_t)bad;
}

/* One round of one server into its record. Returns -1 to go on, else the exit status. */
static int run_one(const bench_opts *o, server *s, int r) {
    run_rec *rec = &s->runs[r];
    if (s->client) {
        memset(rec, 0, sizeof(*rec));
        run_client(o, s, rec);
        if (!rec->ok && !atomic_load(&g_stop))
            fprintf(stderr, "vigil bench: %s: %s\n", s->name, rec->err);
        return -1;
    }
    if (!o->target) {
        run_server(o, s, r, rec);
        if (!rec->ok && !atomic_load(&g_stop))
            fprintf(stderr, "vigil bench: %s: %s\n", s->name, rec->err);
        return -1;
    }
    memset(rec, 0, sizeof(*rec));
    progress_ctx pc = {.name = s->name, .round = r + 1, .rounds = o->rounds,
                       .total_s = o->warmup + o->duration};
    run_load(o, o->targets, o->ntargets, o->pid, &pc, rec);
    if (!rec->ok) {
        fprintf(stderr, "vigil bench: cannot load %s: %s\n", o->target, rec->err);
        return 1;
    }
    return -1;
}

/* Every round of every server, interleaved. Returns -1 to go on, else the exit status. */
static int run_rounds(const bench_opts *o, server *sv, int n) {
    for (int r = 0; r < o->rounds && !atomic_load(&g_stop); r++) {
        for (int i = 0; i < n && !atomic_load(&g_stop); i++) {
            int rc = run_one(o, &sv[i], r);
            if (rc >= 0)
                return rc;
        }
    }
    if (atomic_load(&g_stop)) {
        /* run_server stopped its child already; nothing is left running */
        fprintf(stderr, "vigil bench: interrupted; nothing written\n");
        return 130;
    }
    return -1;
}

/* Medians, the table and the files. Returns the exit status. */
static int report(const bench_opts *o, server *sv, int n) {
    bool all_ok = true;
    for (int i = 0; i < n; i++) {
        compute_stats(&sv[i], o->rounds);
        for (int r = 0; r < o->rounds; r++)
            if (!run_clean(&sv[i].runs[r], o->conns))
                all_ok = false;
    }
    print_table(o, sv, n);
    find_warnings(o, sv, n);

    char jp[PATH_MAX], cp[PATH_MAX], gp[PATH_MAX];
    snprintf(jp, sizeof(jp), "%s/bench.json", o->out_dir);
    snprintf(cp, sizeof(cp), "%s/bench.csv", o->out_dir);
    snprintf(gp, sizeof(gp), "%s/bench.svg", o->out_dir);
    const char *paths[3] = {jp, cp, gp};
    int (*writers[3])(const char *, const bench_opts *, server *, int) = {write_json, write_csv,
                                                                          write_svg};
    for (int k = 0; k < 3; k++) {
        if (writers[k](paths[k], o, sv, n) != 0) {
            fprintf(stderr, "vigil bench: cannot write %s: %s\n", paths[k], strerror(errno));
            return 1;
        }
    }
    printf("wrote %s %s %s\n", jp, cp, gp);
    fflush(stdout);
    for (int k = 0; k < nwarn; k++)
        fprintf(stderr, "vigil bench: WARNING: %s\n", warns[k]);
    if (!all_ok)
        fprintf(stderr, "vigil bench: FAILED: a server did not start, or bytes were lost or "
                        "mismatched, or connections failed (see above)\n");
    return all_ok ? 0 : 1;
}

int cmd_bench(int argc, char **argv) {
    static server sv[MAX_SERVERS]; /* big (per-round records): not on the stack */
    const bench_opts *o = &bopt;
    bopt.peers = find_peers(); /* before parsing: --help shows it */
    if (!bopt.peers)
        bopt.peers = peers_none;
    int rc = parse_args(argc, argv);
    if (rc >= 0)
        return rc;
    int n = list_servers(o, sv);
    if ((rc = set_up(o)) >= 0 || (rc = run_rounds(o, sv, n)) >= 0)
        return rc;
    return report(o, sv, n);
}
