/*
 * http_load.c: the HTTP/1.1 load generator behind `vigil bench --http`
 * (load.h: http_load_run).
 *
 * Client threads, each running a vigil loop of its own (io_uring unless
 * asked otherwise) with its share of the connections: keep-alive
 * connections that send fixed requests (t->reqs, each sent without a copy;
 * with several, each connection goes through them in turn from its own
 * starting point) and read every response with http_resp.c, which checks
 * its framing and, when an expected body is given, every byte of it. A
 * response whose status is not the one expected, whose body differs, or
 * whose framing is broken is counted and named, never taken as an answer
 * (a broken framing ends its connection: nothing after it can be trusted).
 *
 * Two ways to send:
 * - closed loop (rate 0): each connection keeps `pipeline` requests in
 *   flight and sends the next as soon as a response comes; latency is from
 *   the send to the end of the response.
 * - open loop (rate > 0): each connection's requests are due on a fixed
 *   schedule, rate / conns per second, the connections' schedules spread
 *   evenly, whatever the server does. A request goes when it is due, or as
 *   soon after as fewer than `pipeline` are in flight on its connection (so
 *   a stalled server is not flooded, as wrk2 does it), and its latency is
 *   counted from when it was due, not from when it went: the time the
 *   server made it wait before it could even be sent is in the figure
 *   (coordinated omission corrected). Between sends a thread sleeps in its
 *   loop's wait until the next due time, and polls for the last
 *   millisecond, so sends go out on time, which costs client CPU.
 *
 * A closed loop's threads may wait in batches (t->wait_batch: the loop
 * option of that name), waking once for many responses instead of once
 * for each: about two thirds of the client CPU per request, at the price
 * of up to wait_batch_us added to a response's measured latency when
 * fewer than the batch come within that time. The batch follows the
 * requests in flight (follow_in_flight).
 *
 * Time 0 is when every connection has connected (or failed to); responses
 * count from warmup_s to warmup_s + duration_s; then no request is sent and
 * the answers still owed are waited for, up to drain_s (2 s by default).
 * Gaps: for each connection the longest time it waited with requests in
 * flight and no response coming (warmup and measurement), percentiles over
 * the connections, as for echo.
 */
#include "load.h"
#include "http_resp.h"
#include "clock.h"
#include "vigil.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define CONNECT_DEADLINE_MS 5000
#define DRAIN_NS (2 * NS_PER_S)
#define TICK_MS 10 /* longest wait of a closed-loop thread: how soon it sees the phases change */
#define MAX_THREADS 256
#define MAX_PIPELINE 1024
#define MIN_BATCH 16 /* batched waits from 32 requests in flight a thread (follow_in_flight) */

typedef struct hworker hworker;

/* A request in flight: which one, and when it was sent (open loop: due). */
typedef struct inflight {
    uint64_t t;
    uint32_t req;
} inflight;

typedef struct hconn {
    hworker *w;
    vigil_conn c;
    int addr;           /* its server: run->addr[addr] */
    http_resp p;
    inflight *fl;       /* ring: the requests in flight, oldest first */
    uint32_t cap, head, n;
    uint32_t next_req;  /* the request it sends next: t->reqs[next_req] */
    uint64_t next_due;  /* open loop: when its next request is due */
    uint64_t last_rx;   /* its last response, or when it began to wait */
    uint64_t max_gap;
    bool connected, dead, closing;
    bool reconnecting; /* a new connection takes the place of one the server closed */
} hconn;

typedef struct hstats {
    uint64_t requests; /* answered in the measured part */
    uint64_t responses, bytes_sent, bytes_received;
    uint64_t mismatches, bad_status, bad_framing, errors, connect_failures, connected, kept, lost;
    uint64_t reconnects;
    load_hist hist;
    char what[64]; /* the first thing that went wrong, named */
} hstats;

struct hrun {
    const load_config *cfg;
    const http_load_target *t;
    struct { char host[64]; uint16_t port; } addr[LOAD_MAX_ADDRS]; /* numeric: connection i goes to i % naddrs */
    int naddrs;
    int nthreads;
    uint64_t interval_ns; /* open loop: between two requests of one connection */
    pthread_mutex_t mu;
    pthread_cond_t to_main, to_workers;
    int ready, running;
    bool go, abort;
    uint64_t t0, t_start, t_end;
};

struct hworker {
    pthread_t tid;
    int id;
    struct hrun *run;
    vigil_loop *loop;
    hconn *conns;
    long n, first;     /* its connections, and the global index of the first */
    long connecting;   /* connects not yet called back */
    long closing;      /* closes not yet called back */
    uint64_t in_flight;
    uint32_t batch;    /* the wait_batch its loop has now */
    hstats st;
    _Atomic uint64_t done; /* responses in all phases: read by the progress loop */
    int pin_err, fatal;
    bool stopping;
    uint64_t t0, t_start, t_end, drain_deadline;
    /* The time of this pass's responses: read at the first of them. They
     * were all in when the wait returned, so one read does for all
     * (a clock read for each was 1 % of the client's CPU). */
    uint64_t pass_now;
    bool pass_now_read;
};

/* The first thing that went wrong, formatted only then (a server that
 * answers every request wrongly must not cost a format each). */
__attribute__((format(printf, 2, 3))) static void note(hstats *st, const char *fmt, ...) {
    if (st->what[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->what, sizeof(st->what), fmt, ap);
    va_end(ap);
}

/* ---- a connection ------------------------------------------------------- */

static void on_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) { ((hworker *)ud)->closing--; }

/* It ends (the server closed or reset it, or its framing broke): the
 * requests in flight on it are not lost, they failed with it. */
static void conn_end(hconn *h, const char *what) {
    hworker *w = h->w;
    if (h->dead)
        return;
    h->dead = true;
    w->in_flight -= h->n;
    h->n = 0;
    if (!w->stopping || what) {
        w->st.errors++;
        note(&w->st, "%s", what ? what : "the server closed a connection");
    }
    w->closing++;
    if (vigil_conn_abort(w->loop, h->c, on_closed, w) < 0)
        w->closing--;
}

static bool ring_push(hconn *h, inflight f) {
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 4;
        inflight *r = malloc(cap * sizeof(*r));
        if (!r)
            return false;
        for (uint32_t i = 0; i < h->n; i++)
            r[i] = h->fl[(h->head + i) % h->cap];
        free(h->fl);
        h->fl = r;
        h->cap = cap;
        h->head = 0;
    }
    h->fl[(h->head + h->n++) % h->cap] = f;
    return true;
}

/* The k-th request in flight (0: the one whose response comes next). */
static const http_load_req *owed(const hconn *h, uint32_t k) {
    return &h->w->run->t->reqs[h->fl[(h->head + k) % h->cap].req];
}

/* The parser must know whether the response it reads next answers a HEAD. */
static void expect_next(hconn *h) {
    if (h->n > 0)
        http_resp_expect_head(&h->p, owed(h, 0)->head);
}

/* One request, counted from t (its send, or when it was due). */
static void send_request(hworker *w, hconn *h, uint64_t t, uint64_t now) {
    const http_load_target *tg = w->run->t;
    const http_load_req *rq = &tg->reqs[h->next_req];
    if (!ring_push(h, (inflight){t, h->next_req})) {
        conn_end(h, "out of memory");
        return;
    }
    h->next_req = h->next_req + 1 == tg->nreqs ? 0 : h->next_req + 1;
    if (h->n == 1) {
        h->last_rx = now; /* it waits from now */
        expect_next(h);
    }
    w->in_flight++;
    int rc = vigil_conn_send_nocopy(w->loop, h->c, rq->data, rq->len, 0, NULL, NULL, NULL);
    if (rc < 0) {
        conn_end(h, "a send failed");
        return;
    }
    w->st.bytes_sent += rq->len;
}

/* Open loop: what of its schedule is due, as far as the pipeline allows. */
static void send_due(hworker *w, hconn *h, uint64_t now) {
    uint32_t depth = (uint32_t)w->run->t->pipeline;
    while (h->connected && !h->dead && !h->closing && h->next_due <= now && h->n < depth) {
        send_request(w, h, h->next_due, now);
        h->next_due += w->run->interval_ns;
    }
}

static void answered(hworker *w, hconn *h, uint64_t now) {
    const http_load_target *tg = w->run->t;
    w->st.responses++;
    atomic_store_explicit(&w->done, w->st.responses, memory_order_relaxed); /* only this thread writes it */
    if (h->n == 0) {
        w->st.bad_framing++;
        note(&w->st, "a response to no request");
        conn_end(h, "a response to no request");
        return;
    }
    uint64_t sent = h->fl[h->head].t;
    h->head = (h->head + 1) % h->cap;
    h->n--;
    w->in_flight--;
    expect_next(h);
    bool status_ok = tg->expect_status ? h->p.status == tg->expect_status : h->p.status / 100 == 2;
    if (!status_ok) {
        w->st.bad_status++;
        note(&w->st, "status %d", h->p.status);
    }
    if (h->p.mismatch) {
        w->st.mismatches++;
        note(&w->st, "a body differs from the expected one");
    }
    if (now >= w->t_start && now < w->t_end) {
        w->st.requests++;
        load_hist_add(&w->st.hist, now - sent);
    }
    if (!w->stopping && now - h->last_rx > h->max_gap)
        h->max_gap = now - h->last_rx;
    h->last_rx = now;
    if (h->p.close) { /* the server closes it after this one */
        h->closing = true;
        return;
    }
    if (w->stopping)
        return;
    if (w->run->interval_ns)
        send_due(w, h, now);
    else
        send_request(w, h, now, now);
}

static void on_connected(vigil_loop *loop, vigil_conn c, int status, void *ud);
static void kick_conn(hworker *w, hconn *h, uint64_t now);

/* A connect to its server; on_connected is called either way. */
static void connect_conn(hworker *w, hconn *h) {
    const struct hrun *run = w->run;
    int rc = vigil_conn_connect(w->loop, run->addr[h->addr].host, run->addr[h->addr].port, CONNECT_DEADLINE_MS,
                                on_connected, h, &h->c, NULL);
    if (rc < 0)
        on_connected(w->loop, h->c, rc, h);
}

static void parser_init(hconn *h) {
    const http_load_target *t = h->w->run->t;
    http_resp_init(&h->p, t->expect, t->expect_len);
    expect_next(h);
}

/* Whether every request still owed may be sent again (RFC 9112 9.3.1). */
static bool owed_idempotent(const hconn *h) {
    for (uint32_t k = 0; k < h->n; k++)
        if (!owed(h, k)->idempotent)
            return false;
    return true;
}

/* The server closed a connection between two responses: after one that
 * said Connection: close, or at a keep-alive limit (nginx closes a
 * connection after 1,000 requests by default) or an idle timeout, maybe
 * with requests already sent on it (which then may meet a reset). A new connection takes its place,
 * counted as a reconnect, not an error, and the requests still owed are
 * sent again on it when they may be (RFC 9112 9.3.1: idempotent methods;
 * else the close is an error), their latency still counted from their
 * first send; an open loop's requests due meanwhile wait for it and count
 * from when they were due. */
static void reconnect(hworker *w, hconn *h) {
    w->st.reconnects++;
    w->closing++;
    if (vigil_conn_abort(w->loop, h->c, on_closed, w) < 0)
        w->closing--;
    h->connected = h->closing = false;
    h->reconnecting = true;
    parser_init(h);
    connect_conn(w, h);
}

/* One call into the loop: a pass's callbacks all run in it, so the time
 * its first response read is forgotten after it. */
static int run_pass(hworker *w, vigil_run_mode mode, int timeout_ms) {
    int rc = vigil_loop_run(w->loop, mode, timeout_ms);
    w->pass_now_read = false;
    return rc;
}

static void on_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *buf, void *ud) {
    hconn *h = ud;
    hworker *w = h->w;
    if (h->dead)
        return;
    if (!w->pass_now_read) {
        w->pass_now = now_ns();
        w->pass_now_read = true;
    }
    uint64_t now = w->pass_now;
    if (status <= 0) {
        http_resp_event ev = http_resp_eof(&h->p);
        if (ev == HTTP_RESP_DONE)
            answered(w, h, now); /* a body that ran until the close */
        if (ev == HTTP_RESP_ERROR) {
            w->st.bad_framing++;
            conn_end(h, "a response cut short");
        } else if ((status == 0 || status == -ECONNRESET || status == -EPIPE) && ev == HTTP_RESP_MORE &&
                   owed_idempotent(h) && (h->n > 0 || !w->stopping)) {
            /* it said Connection: close, or closed between responses (a reset, when a
             * request reached the closed socket first): as wrk does. Also while the
             * run drains, for the requests still owed (one sent just before the end
             * may have crossed the close). */
            reconnect(w, h);
        } else if (status == 0 && h->n == 0) {
            conn_end(h, NULL); /* the run is over: nothing was owed */
        } else {
            conn_end(h, status == 0 ? "the server closed a connection" : "a connection was reset");
        }
        return;
    }
    const uint8_t *d = buf->data;
    size_t n = buf->len;
    w->st.bytes_received += n;
    /* These bytes all came before this callback began: a response in them
     * answers a request sent before it, never one this callback sends as it
     * goes (else a server that floods responses would seem to answer each
     * request the moment it is sent, and the requests would pile up). */
    uint32_t answerable = h->n;
    while (n > 0 && !h->dead) {
        http_resp_event ev;
        size_t k = http_resp_feed(&h->p, d, n, &ev);
        d += k;
        n -= k;
        if (ev == HTTP_RESP_DONE && answerable == 0) {
            w->st.bad_framing++;
            conn_end(h, "a response to no request sent before it");
        } else if (ev == HTTP_RESP_DONE) {
            answerable--;
            answered(w, h, now);
        } else if (ev == HTTP_RESP_ERROR) {
            w->st.bad_framing++;
            char what[64];
            snprintf(what, sizeof(what), "broken framing: %s", http_resp_error_name(h->p.error));
            conn_end(h, what);
        } else {
            break;
        }
    }
}

static void on_connected(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    hconn *h = ud;
    hworker *w = h->w;
    if (h->reconnecting) {
        h->reconnecting = false;
        if (h->dead) /* the run ended meanwhile (settle): destroy cancelled it */
            return;
        if (status < 0) {
            h->dead = true;
            w->st.errors++;
            note(&w->st, "a reconnect failed");
            return;
        }
        h->connected = true;
        if (vigil_conn_recv_start(loop, c, 0, on_recv, h, NULL) < 0) {
            conn_end(h, "could not receive");
            return;
        }
        for (uint32_t k = 0; k < h->n; k++) /* the requests still owed, again */
            if (vigil_conn_send_nocopy(loop, c, owed(h, k)->data, owed(h, k)->len, 0, NULL, NULL, NULL) < 0) {
                conn_end(h, "a send failed");
                return;
            }
        if (!w->stopping)
            kick_conn(w, h, now_ns());
        return;
    }
    w->connecting--;
    if (status < 0) {
        h->dead = true;
        w->st.connect_failures++;
        note(&w->st, "connect: %s", vigil_strerror(status));
        return;
    }
    h->connected = true;
    w->st.connected++;
    if (vigil_conn_recv_start(loop, c, 0, on_recv, h, NULL) < 0)
        conn_end(h, "could not receive");
}

/* ---- a thread ----------------------------------------------------------- */

/* Connects its share; true when the run goes on. */
static bool connect_all(hworker *w) {
    struct hrun *run = w->run;
    for (long i = 0; i < w->n; i++) {
        hconn *h = &w->conns[i];
        h->w = w;
        h->addr = (int)((w->first + i) % run->naddrs);
        h->next_req = (uint32_t)((size_t)(w->first + i) % run->t->nreqs);
        parser_init(h);
        w->connecting++;
        connect_conn(w, h);
    }
    while (w->connecting > 0)
        if (run_pass(w, VIGIL_RUN_ONCE, 100) < 0)
            return false;
    pthread_mutex_lock(&run->mu);
    run->ready++;
    pthread_cond_signal(&run->to_main);
    while (!run->go && !run->abort)
        pthread_cond_wait(&run->to_workers, &run->mu);
    bool go = !run->abort;
    w->t0 = run->t0;
    w->t_start = run->t_start;
    w->t_end = run->t_end;
    pthread_mutex_unlock(&run->mu);
    return go;
}

/* A connection's first requests: the pipeline filled, or what is due. */
static void kick_conn(hworker *w, hconn *h, uint64_t now) {
    if (w->run->interval_ns)
        send_due(w, h, now);
    else
        for (int k = (int)h->n; k < w->run->t->pipeline && !h->dead; k++)
            send_request(w, h, now, now);
}

static void kick_off(hworker *w) {
    struct hrun *run = w->run;
    uint64_t now = now_ns();
    for (long i = 0; i < w->n; i++) {
        hconn *h = &w->conns[i];
        if (h->dead)
            continue;
        if (run->interval_ns) /* the schedules spread evenly over one interval */
            h->next_due =
                w->t0 + (uint64_t)((double)run->interval_ns * (double)(w->first + i) / (double)run->cfg->conns);
        kick_conn(w, h, now);
    }
}

/* The next due time of its connections (open loop), or UINT64_MAX. */
static uint64_t next_due(const hworker *w) {
    uint64_t t = UINT64_MAX;
    for (long i = 0; i < w->n; i++) {
        const hconn *h = &w->conns[i];
        if (h->connected && !h->dead && !h->closing && h->n < (uint32_t)w->run->t->pipeline && h->next_due < t)
            t = h->next_due;
    }
    return t;
}

/* A batched wait for more responses than are owed would sit out all of
 * wait_batch_us each time, and the server would idle: the batch follows
 * the requests in flight, half of them (the server works on the other half
 * meanwhile), at most t->wait_batch. Below MIN_BATCH it is off: a few
 * responses a wake-up save less than the wait's timer costs (h2o, 13 B,
 * 10 connections: 7.5 against 6.5 us of client CPU a request, and 8 %
 * fewer requests; 100 connections: 5.2 against 6.8 us). */
static void follow_in_flight(hworker *w) {
    const http_load_target *t = w->run->t;
    if (!t->wait_batch)
        return;
    uint64_t half = w->in_flight / 2;
    uint32_t n = half < t->wait_batch ? (uint32_t)half : t->wait_batch;
    if (n < MIN_BATCH)
        n = 0;
    if (n != w->batch && vigil_loop_set_wait_batch(w->loop, n, n ? t->wait_batch_us : 0) == 0)
        w->batch = n;
}

static void run_load(hworker *w) {
    struct hrun *run = w->run;
    const load_config *cfg = run->cfg;
    uint64_t drain_ns = cfg->drain_s > 0 ? (uint64_t)(cfg->drain_s * 1e9) : DRAIN_NS;
    for (;;) {
        uint64_t now = now_ns();
        bool stop = cfg->stop && atomic_load(cfg->stop);
        if (!w->stopping && (now >= w->t_end || stop || run->abort)) {
            w->stopping = true;
            w->drain_deadline = now + drain_ns;
        }
        if (w->stopping && (w->in_flight == 0 || now >= w->drain_deadline))
            return;
        int timeout = TICK_MS;
        if (run->interval_ns && !w->stopping) {
            for (long i = 0; i < w->n; i++)
                send_due(w, &w->conns[i], now);
            uint64_t due = next_due(w);
            if (due != UINT64_MAX)
                timeout = due <= now + NS_PER_MS ? 0 : (int)((due - now) / NS_PER_MS);
            if (timeout > TICK_MS)
                timeout = TICK_MS;
        }
        follow_in_flight(w);
        int rc = run_pass(w, timeout ? VIGIL_RUN_ONCE : VIGIL_RUN_NOWAIT, timeout);
        if (rc < 0) {
            w->fatal = rc;
            return;
        }
    }
}

/* The end: what is still owed on open connections is lost; every
 * connection closes (RST: a benchmark's connections owe nothing). */
static void settle(hworker *w) {
    for (long i = 0; i < w->n; i++) {
        hconn *h = &w->conns[i];
        if (h->reconnecting)
            h->dead = true; /* its connect ends with the loop, owing nothing */
        if (h->dead || !h->connected)
            continue;
        w->st.lost += h->n;
        w->st.kept++;
        w->in_flight -= h->n;
        h->n = 0;
        h->dead = true;
        w->closing++;
        if (vigil_conn_abort(w->loop, h->c, on_closed, w) < 0)
            w->closing--;
    }
    uint64_t until = now_ns() + 2 * NS_PER_S;
    while (w->closing > 0 && now_ns() < until)
        if (run_pass(w, VIGIL_RUN_ONCE, 50) < 0)
            break;
}

static void *worker_main(void *arg) {
    hworker *w = arg;
    struct hrun *run = w->run;
    w->pin_err = load_pin(load_thread_cpu(run->cfg, w->id));
    if (connect_all(w)) {
        kick_off(w);
        run_load(w);
    }
    settle(w);
    vigil_loop_destroy(w->loop); /* here: its owner, the thread that ran it */
    w->loop = NULL;
    pthread_mutex_lock(&run->mu);
    run->running--;
    pthread_cond_signal(&run->to_main);
    pthread_mutex_unlock(&run->mu);
    return NULL;
}

/* ---- http_load_run ------------------------------------------------------ */

static int fail(load_result *out, int err, const char *what) {
    snprintf(out->error, sizeof(out->error), "%s", what);
    return err;
}

/* A numeric address for a host (the loops connect to numbers). */
static int numeric_host(load_addr a, char *dst, size_t cap, load_result *out) {
    const char *host = a.host ? a.host : "127.0.0.1";
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(out->error, sizeof(out->error), "resolving %s: %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    rc = getnameinfo(ai->ai_addr, ai->ai_addrlen, dst, (socklen_t)cap, NULL, 0, NI_NUMERICHOST);
    freeaddrinfo(ai);
    if (rc != 0)
        return fail(out, -EINVAL, "no numeric address");
    if (strcmp(dst, host) && !out->resolved[0]) /* the first name's */
        snprintf(out->resolved, sizeof(out->resolved), "%s", dst);
    return 0;
}

static int check(const load_config *cfg, const http_load_target *t, load_result *out) {
    int rc = load_check_where(cfg, out);
    if (rc != 0)
        return rc;
    if (cfg->conns < 1 || !(cfg->duration_s > 0) || !(cfg->warmup_s >= 0) || cfg->threads < 1 ||
        cfg->threads > MAX_THREADS)
        return fail(out, -EINVAL, "bad config: conns, duration, warmup or threads out of range");
    if (!t->reqs || t->nreqs == 0 || t->nreqs > UINT32_MAX)
        return fail(out, -EINVAL, "bad config: no request");
    for (size_t i = 0; i < t->nreqs; i++)
        if (!t->reqs[i].data || t->reqs[i].len == 0)
            return fail(out, -EINVAL, "bad config: an empty request");
    if (t->pipeline < 1 || t->pipeline > MAX_PIPELINE)
        return fail(out, -EINVAL, "bad config: pipeline must be 1..1024");
    if (!(t->rate >= 0) || t->rate > 1e9)
        return fail(out, -EINVAL, "bad config: rate must be 0..1e9");
    return 0;
}

static uint64_t responses_done(void *ud) {
    const hworker *ws = ud;
    uint64_t done = 0;
    for (int i = 0; i < ws[0].run->nthreads; i++)
        done += atomic_load_explicit(&ws[i].done, memory_order_relaxed);
    return done;
}

static void collect(struct hrun *run, hworker *ws, const load_cpu *c0, const load_cpu *c1, load_result *out,
                    double *gaps) {
    load_hist *h = calloc(1, sizeof(*h));
    size_t ngaps = 0;
    for (int i = 0; i < run->nthreads; i++) {
        const hstats *s = &ws[i].st;
        out->requests += s->requests;
        out->responses += s->responses;
        out->bytes_sent += s->bytes_sent;
        out->bytes_verified += s->bytes_received;
        out->mismatches += s->mismatches;
        out->bad_status += s->bad_status;
        out->bad_framing += s->bad_framing;
        out->errors += s->errors;
        out->connect_failures += s->connect_failures;
        out->connected += s->connected;
        out->kept += s->kept;
        out->lost += s->lost;
        out->reconnects += s->reconnects;
        if (!out->what[0] && s->what[0])
            snprintf(out->what, sizeof(out->what), "%s", s->what);
        for (unsigned b = 0; h && b < LOAD_HIST_BUCKETS; b++)
            h->b[b] += s->hist.b[b];
        for (long j = 0; j < ws[i].n; j++)
            if (ws[i].conns[j].connected)
                gaps[ngaps++] = (double)ws[i].conns[j].max_gap / 1e6;
        if (ws[i].pin_err && !out->cpu_pin_errno)
            out->cpu_pin_errno = ws[i].pin_err;
    }
    out->req_per_s = (double)out->requests / run->cfg->duration_s;
    if (h)
        load_hist_result(h, out);
    free(h);
    out->gap_p50_ms = load_percentile(gaps, ngaps, 0.50);
    out->gap_p90_ms = load_percentile(gaps, ngaps, 0.90);
    out->gap_p99_ms = load_percentile(gaps, ngaps, 0.99);
    out->gap_max_ms = load_percentile(gaps, ngaps, 1.0);
    load_cpu_result(run->cfg->server_pid, c0, c1, out);
}

int http_load_run(const load_config *cfg, const http_load_target *t, load_result *out) {
    memset(out, 0, sizeof(*out));
    int rc = check(cfg, t, out);
    struct hrun run = {.cfg = cfg, .t = t};
    for (int i = 0; rc == 0 && i < (cfg->naddrs > 0 ? cfg->naddrs : 1); i++) {
        load_addr a = load_conn_addr(cfg, i);
        rc = numeric_host(a, run.addr[i].host, sizeof(run.addr[i].host), out);
        run.addr[i].port = a.port;
        run.naddrs++;
    }
    if (rc != 0)
        return rc;
    struct rlimit rl; /* many connections: as many fds as allowed */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    run.nthreads = cfg->threads < cfg->conns ? cfg->threads : (int)cfg->conns;
    if (t->rate > 0)
        run.interval_ns = (uint64_t)((double)cfg->conns / t->rate * 1e9);
    pthread_mutex_init(&run.mu, NULL);
    pthread_condattr_t ca; /* the waits' deadlines are now_ns()'s, CLOCK_MONOTONIC */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&run.to_main, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&run.to_workers, NULL);
    hworker *ws = calloc((size_t)run.nthreads, sizeof(*ws));
    double *gaps = calloc((size_t)cfg->conns + 1, sizeof(double));
    int started = 0;
    rc = ws && gaps ? 0 : -ENOMEM;
    vigil_loop_options lo = {.backend = t->backend}; /* batched waits: follow_in_flight */
    for (int i = 0; rc == 0 && i < run.nthreads; i++) {
        hworker *w = &ws[i];
        w->id = i;
        w->run = &run;
        w->first = cfg->conns * i / run.nthreads;
        w->n = cfg->conns * (i + 1) / run.nthreads - w->first;
        w->conns = calloc((size_t)w->n, sizeof(*w->conns));
        if (!w->conns)
            rc = -ENOMEM;
        else if ((rc = vigil_loop_create(&w->loop, &lo)) < 0)
            snprintf(out->error, sizeof(out->error), "a client loop: %s", vigil_strerror(rc));
    }
    /* A loop is owned by the first thread that runs it: made here, run and
     * destroyed by its worker (one that never started is destroyed here). */
    for (int i = 0; rc == 0 && i < run.nthreads; i++) {
        pthread_mutex_lock(&run.mu);
        run.running++;
        pthread_mutex_unlock(&run.mu);
        if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0) {
            run.running--;
            rc = -EAGAIN;
            break;
        }
        started++;
    }
    load_cpu c0 = {-1, -1, 0}, c1 = {-1, -1, 0};
    pthread_mutex_lock(&run.mu);
    while (rc == 0 && run.ready < run.nthreads && run.running == run.nthreads)
        pthread_cond_wait(&run.to_main, &run.mu);
    run.t0 = now_ns();
    run.t_start = run.t0 + (uint64_t)(cfg->warmup_s * 1e9);
    run.t_end = run.t_start + (uint64_t)(cfg->duration_s * 1e9);
    if (rc == 0 && run.ready == run.nthreads)
        run.go = true;
    else
        run.abort = true;
    pthread_cond_broadcast(&run.to_workers);
    pthread_mutex_unlock(&run.mu);
    if (started)
        load_supervise(cfg, &(load_watch){&run.mu, &run.to_main, &run.running, run.t0, run.t_start, run.t_end,
                                          responses_done, ws},
                       &c0, &c1);
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);
    if (rc == 0)
        collect(&run, ws, &c0, &c1, out, gaps);
    for (int i = 0; ws && i < run.nthreads; i++) {
        for (long j = 0; ws[i].conns && j < ws[i].n; j++)
            free(ws[i].conns[j].fl);
        free(ws[i].conns);
        if (ws[i].loop)
            vigil_loop_destroy(ws[i].loop);
        if (rc == 0 && ws[i].fatal)
            rc = ws[i].fatal;
    }
    free(ws);
    free(gaps);
    pthread_mutex_destroy(&run.mu);
    pthread_cond_destroy(&run.to_main);
    pthread_cond_destroy(&run.to_workers);
    out->t0_ns = run.t0;
    if (rc == 0 && out->connected == 0) {
        snprintf(out->error, sizeof(out->error), "no connection: %s", out->what);
        return -ECONNREFUSED;
    }
    if (rc != 0 && !out->error[0])
        snprintf(out->error, sizeof(out->error), "%s", vigil_strerror(rc));
    return rc;
}
