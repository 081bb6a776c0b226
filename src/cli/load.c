/*
 * load.c: epoll-based TCP echo load generator with byte-exact verification
 * (the engine behind load.h: `vigil bench`, `vigil profile`, bench/loadgen).
 *
 * Every connection i sends a deterministic pseudo-random byte stream: the
 * 64-bit word w of the stream is a pure function of (seed_i, w) (see
 * stream_fill), so any byte at any stream offset can be regenerated.  What
 * comes back must equal what was sent, in order; each differing byte is a
 * mismatch.  At the end (after a drain of up to drain_s, 2 s by default) the bytes sent but not
 * echoed back on connections that are still open are reported as `lost`:
 * bytes that vanished without an error. On connections the server reset or
 * closed (`errors`), they are `unechoed_on_errors`: failed explicitly.
 *
 * Modes:
 *   pingpong  each connection writes one `size` message, waits until all of
 *             it has come back, records the round-trip time and repeats.
 *             request = one completed round trip.
 *   stream    each connection keeps up to `window` bytes in flight, refilled
 *             in whole `size` chunks; the chunks that fit are coalesced into
 *             one write() of at most 256 KiB (one chunk per write() would make
 *             the client, not the server, the bottleneck for small sizes).
 *             request = one chunk fully echoed;
 *             latency = time from the write() that completed the chunk to the
 *             read() that completed its echo (chunk round trip, includes
 *             queueing behind the window).
 * Only requests that complete inside the measurement window (after warmup)
 * count for requests/req_per_s/latency.  bytes_sent and bytes_verified are
 * totals over the whole run (warmup + measurement + drain).  The timeline
 * (bin_s > 0) counts every request that completes from time 0 to the end of
 * the measurement, warmup included.
 *
 * Gaps: for each connection, the longest time it waited with bytes
 * outstanding and nothing coming back (warmup and measurement, not the
 * drain); gap_p50/p90/p99/max_ms are percentiles of that over connections,
 * so gap_p90_ms <= 300 means 90 % of connections never waited over 300 ms.
 *
 * Latency histogram: log-linear, 2^LOAD_HIST_SUB_BITS linear sub-buckets per power of
 * two of nanoseconds (< 1.6% bucket width); percentiles report the bucket
 * midpoint.  Timeline bins use the same layout with 2^BIN_SUB_BITS
 * sub-buckets (< 12.5% width) so that thousands of bins stay small.
 *
 * Connections are split round-robin across `threads` threads, each with its
 * own epoll (level-triggered) instance.  Connecting is done in batches of
 * CONNECT_BATCH per thread so the server's listen backlog does not
 * overflow; a failed/timed-out connect is retried up to CONNECT_ATTEMPTS
 * times.
 *
 * Zombies: a zombie stops writing; once everything it wrote has come back it
 * goes silent, i.e. its epoll interest drops to EPOLLRDHUP alone (EPOLLHUP
 * and EPOLLERR are always reported), so it neither reads nor writes but
 * still sees the server's FIN or RST.  Zombie round k gives its
 * zombie_per_round zombies to the threads in turn, continuing where round
 * k-1 stopped, so they are spread over threads.
 *
 * Nothing here is global but the stream table, which is a constant filled
 * once (pthread_once).  Every other piece of state hangs off one load_run
 * call; the calling thread only waits, samples the server's CPU time and
 * reports progress.
 */
#include "load.h"
#include "vigil.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONNECT_BATCH 256
#define CONNECT_ATTEMPTS 5
#define CONNECT_TIMEOUT_NS (3 * NS_PER_S)
#define DRAIN_NS (2 * NS_PER_S)
#define PROGRESS_NS (200 * NS_PER_MS)
#define RBUF_SIZE (256 * 1024)
#define WBUF_SIZE (256 * 1024) /* max bytes per write() in stream mode */
#define MAX_EVENTS 1024
#define MAX_SIZE RBUF_SIZE
#define MAX_WINDOW (1L << 30)
#define MAX_THREADS 1024
#define MAX_BINS 10000

#define BIN_SUB_BITS 3
#define BIN_BUCKETS (64u << BIN_SUB_BITS)

struct conn {
    int fd;
    bool dead;          /* error or closed: no further I/O */
    bool want_out;      /* EPOLLOUT in the interest set */
    bool zombie;        /* stopped writing (see the top comment) */
    bool silent;        /* zombie with nothing outstanding: neither reads nor writes */
    uint64_t seed;
    uint64_t send_off;  /* bytes written so far */
    uint64_t recv_off;  /* bytes read (and checked) so far */
    uint64_t msg_end;   /* pingpong: end offset of the current message */
    uint64_t t_send;    /* pingpong: start time of the current message */
    uint64_t *chunk_ts; /* stream: completion time of written chunks */
    uint64_t last_rx;   /* last read with bytes, or when bytes became outstanding */
    uint64_t max_gap;   /* longest wait with bytes outstanding and none coming back */
    uint64_t silent_at; /* zombie: when it went silent (0 = not yet) */
    int64_t detect_ns;  /* zombie: silent -> server closed it; -1 = not (yet) */
};

/* One timeline bin of one thread. */
struct tbin {
    uint64_t requests;
    uint64_t max_ns;
    uint32_t b[BIN_BUCKETS];
};

struct stats {
    uint64_t requests;
    uint64_t bytes_sent;
    uint64_t bytes_verified;
    uint64_t mismatches;
    uint64_t lost;
    uint64_t unechoed_on_errors;
    uint64_t errors;
    uint64_t connect_failures;
    uint64_t connected;
    uint64_t kept;
    load_hist hist;
};

struct run;

struct worker {
    pthread_t tid;
    int id;
    int ep;
    struct run *run;
    struct conn *conns;
    long nconns;
    unsigned chunk_cap;
    unsigned char *wbuf, *rbuf, *cbuf;
    struct epoll_event *evs;
    int *attempts;      /* connect phase */
    long *batch, *retry;
    struct tbin *bins;  /* NULL without a timeline */
    struct stats st;
    _Atomic uint64_t done; /* requests completed in all phases: read by the progress loop */
    int pin_err;        /* errno of sched_setaffinity, 0 = fine */
    int conn_err;       /* last errno of a failed connect attempt */
    int fatal;          /* errno of a failed epoll_wait: the thread stopped early */
    const char *fatal_what;
    bool stopping;      /* the measurement is over: draining */
    uint64_t drain_deadline;
    int zround;         /* next zombie round */
    long zcursor;       /* first connection that may still become a zombie */
    /* Phase times, copied under run->mu when the run starts. */
    uint64_t t0, t_start, t_end;
};

/* State shared by one load_run call and its threads. */
struct run {
    const load_config *cfg;
    struct addrinfo *targets[LOAD_MAX_ADDRS]; /* connection i goes to targets[i % ntargets] */
    int ntargets;
    int nthreads;
    uint64_t bin_ns;
    size_t nbins;
    pthread_mutex_t mu;
    pthread_cond_t to_main; /* a thread connected all, or finished */
    pthread_cond_t to_workers; /* go */
    int ready, running;
    bool go, abort;
    uint64_t t0, t_start, t_end;
};

static struct timespec to_ts(uint64_t t) {
    struct timespec ts = {.tv_sec = (time_t)(t / NS_PER_S), .tv_nsec = (long)(t % NS_PER_S)};
    return ts;
}

/* ---- deterministic stream ---------------------------------------------- */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/*
 * The stream of a connection is a sequence of 64-bit little-endian words.
 * Word w is  T[(b + w) mod 2^TBITS] ^ mix64(seed ^ ((b + w) >> TBITS))
 * where T is a fixed pseudo-random table (1 MiB, filled with mix64 once),
 * b = seed >> (64 - TBITS) is the connection's start position in the table
 * and the mix64 key changes every 2^TBITS words, so the stream never
 * repeats.  Any byte at any offset can be regenerated, and the inner loop
 * is a load and an xor per word (a mix64 per word made the client's
 * generator/verifier, not the server, the bottleneck in stream mode).
 */
#define TBITS 17
#define TWORDS (1u << TBITS)
static uint64_t stream_table[TWORDS]; /* constant once filled */
static pthread_once_t stream_once = PTHREAD_ONCE_INIT;

static void stream_table_init(void) {
    for (uint64_t i = 0; i < TWORDS; i++)
        stream_table[i] = mix64(0x9e3779b97f4a7c15ull * (i + 1));
}

/* Fill buf with stream bytes [off, off+n) of the stream with this seed. */
static void stream_fill(uint64_t seed, uint64_t off, unsigned char *buf, size_t n) {
    const uint64_t b = seed >> (64 - TBITS);

    while (n > 0) {
        uint64_t wi = b + (off >> 3);
        uint64_t idx = wi & (TWORDS - 1);
        uint64_t key = mix64(seed ^ (wi >> TBITS));
        unsigned k = (unsigned)(off & 7);

        if (k != 0 || n < 8) {
            /* partial word */
            uint64_t w = stream_table[idx] ^ key;
            unsigned char wb[8];
            memcpy(wb, &w, 8);
            while (k < 8 && n > 0) {
                *buf++ = wb[k++];
                off++;
                n--;
            }
            continue;
        }
        /* whole words up to the end of this table period */
        size_t words = n / 8;
        if (words > TWORDS - idx)
            words = TWORDS - idx;
        for (size_t i = 0; i < words; i++) {
            uint64_t w = stream_table[idx + i] ^ key;
            memcpy(buf + 8 * i, &w, 8);
        }
        buf += 8 * words;
        off += 8 * words;
        n -= 8 * words;
    }
}

/* ---- histograms --------------------------------------------------------- */

/* Bucket of v in a log-linear histogram with 2^sb sub-buckets per octave. */
static unsigned hist_index(uint64_t v, unsigned sb) {
    if (v < (1u << sb))
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= sb */
    unsigned sub = (unsigned)(v >> (e - sb)) & ((1u << sb) - 1);
    return ((e - sb + 1) << sb) + sub;
}

static double hist_mid(unsigned idx, unsigned sb) {
    if (idx < (1u << sb))
        return idx;
    unsigned e = (idx >> sb) + sb - 1;
    unsigned sub = idx & ((1u << sb) - 1);
    double lo = ldexp(1.0, (int)e) + (double)sub * ldexp(1.0, (int)(e - sb));
    return lo + ldexp(1.0, (int)(e - sb)) / 2.0;
}

static uint64_t hist_rank(uint64_t total, double p) {
    uint64_t rank = (uint64_t)ceil(p * (double)total);
    return rank < 1 ? 1 : rank;
}

void load_hist_add(load_hist *h, uint64_t ns) { h->b[hist_index(ns, LOAD_HIST_SUB_BITS)]++; }

double load_hist_pct(const load_hist *h, uint64_t total, double p) {
    if (total == 0)
        return 0.0;
    uint64_t rank = hist_rank(total, p), acc = 0;
    for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++) {
        acc += h->b[i];
        if (acc >= rank)
            return hist_mid(i, LOAD_HIST_SUB_BITS);
    }
    return hist_mid(LOAD_HIST_BUCKETS - 1, LOAD_HIST_SUB_BITS);
}

static double bin_pct(const struct tbin *bn, double p) {
    if (bn->requests == 0)
        return 0.0;
    uint64_t rank = hist_rank(bn->requests, p), acc = 0;
    for (unsigned i = 0; i < BIN_BUCKETS; i++) {
        acc += bn->b[i];
        if (acc >= rank)
            return hist_mid(i, BIN_SUB_BITS);
    }
    return hist_mid(BIN_BUCKETS - 1, BIN_SUB_BITS);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank with rounding, as bench/loadgen always reported gaps. */
double load_percentile(double *v, size_t n, double p) {
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof(*v), cmp_double);
    if (p < 0)
        p = 0;
    if (p > 1)
        p = 1;
    return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

/* ---- connections -------------------------------------------------------- */

static void conn_kill(struct worker *w, struct conn *c, bool is_error) {
    if (c->dead)
        return;
    c->dead = true;
    if (is_error && !c->zombie) /* a zombie's end is what the profile waits for */
        w->st.errors++;
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static void set_out(struct worker *w, struct conn *c, bool on) {
    if (c->want_out == on || c->dead || c->silent)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        conn_kill(w, c, true);
        return;
    }
    c->want_out = on;
}

/* A zombie whose bytes are all back stops reading: like a SIGSTOPped peer,
 * it leaves whatever arrives in its receive buffer. EPOLLRDHUP (and the
 * always-reported EPOLLHUP/EPOLLERR) tell it when the server gives up on it. */
static void go_silent(struct worker *w, struct conn *c, uint64_t t) {
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        conn_kill(w, c, false);
        return;
    }
    c->want_out = false;
    c->silent = true;
    c->silent_at = t;
}

/* How many bytes the next write may take: the rest of the message
 * (pingpong), or the whole chunks that fit in the window (stream); 0: none. */
static inline uint64_t send_len(const struct worker *w, const struct conn *c, bool stopping) {
    const load_config *cfg = w->run->cfg;
    uint64_t S = (uint64_t)cfg->size;

    if (cfg->mode == LOAD_PINGPONG)
        return c->send_off < c->msg_end ? c->msg_end - c->send_off : 0;
    uint64_t inflight = c->send_off - c->recv_off;
    uint64_t window = (uint64_t)cfg->window;
    uint64_t room = window > inflight ? window - inflight : 0;

    if (stopping)
        return 0;
    /* finish the current chunk (one chunk may always be in flight) */
    uint64_t len = S - (c->send_off % S);
    if (inflight > 0 && len > room)
        return 0;
    /* coalesce further whole chunks that fit in the window */
    while (len + S <= room && len + S <= WBUF_SIZE)
        len += S;
    return len;
}

/* n more bytes written: the wait for an echo, the chunks' write times. */
static inline void sent(struct worker *w, struct conn *c, uint64_t n) {
    uint64_t S = (uint64_t)w->run->cfg->size;
    uint64_t before = c->send_off;
    if (before == c->recv_off) /* nothing was outstanding: the wait starts now */
        c->last_rx = now_ns();
    c->send_off += n;
    w->st.bytes_sent += n;
    if (w->run->cfg->mode == LOAD_STREAM && c->send_off / S != before / S) {
        /* chunks [before / S, send_off / S) are now fully written */
        uint64_t t = now_ns();
        for (uint64_t k = before / S; k < c->send_off / S; k++)
            c->chunk_ts[k % w->chunk_cap] = t;
    }
}

/* Write as much as the mode allows; enables EPOLLOUT when the socket is full. */
static void pump_send(struct worker *w, struct conn *c, bool stopping) {
    if (c->dead)
        return;
    if (c->zombie) {
        set_out(w, c, false);
        return;
    }
    for (;;) {
        uint64_t len = send_len(w, c, stopping);
        if (!len)
            break;
        stream_fill(c->seed, c->send_off, w->wbuf, (size_t)len);
        /* MSG_NOSIGNAL: a reset connection must not SIGPIPE the caller's process */
        ssize_t n = send(c->fd, w->wbuf, (size_t)len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_out(w, c, true);
                return;
            }
            conn_kill(w, c, true);
            return;
        }
        sent(w, c, (uint64_t)n);
        if ((uint64_t)n < len) {
            set_out(w, c, true);
            return;
        }
    }
    set_out(w, c, false);
}

static void record(struct worker *w, uint64_t done, uint64_t started) {
    uint64_t lat = done - started;

    /* single writer: a relaxed load and store is enough for the progress reader */
    atomic_store_explicit(&w->done, atomic_load_explicit(&w->done, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (w->bins && done >= w->t0) {
        uint64_t i = (done - w->t0) / w->run->bin_ns;
        if (i < w->run->nbins) {
            struct tbin *bn = &w->bins[i];
            bn->requests++;
            bn->b[hist_index(lat, BIN_SUB_BITS)]++;
            if (lat > bn->max_ns)
                bn->max_ns = lat;
        }
    }
    if (done >= w->t_start && done < w->t_end) {
        w->st.requests++;
        load_hist_add(&w->st.hist, lat);
    }
}

/* Checks len bytes just read into rbuf against the stream at recv_off. */
static inline void verify(struct worker *w, struct conn *c, size_t len) {
    size_t valid = len;
    if (c->recv_off + len > c->send_off) {
        /* more came back than was ever sent */
        valid = (size_t)(c->send_off - c->recv_off);
        w->st.mismatches += len - valid;
    }
    stream_fill(c->seed, c->recv_off, w->cbuf, valid);
    if (memcmp(w->cbuf, w->rbuf, valid) == 0) {
        w->st.bytes_verified += valid;
    } else {
        for (size_t i = 0; i < valid; i++) {
            if (w->cbuf[i] != w->rbuf[i])
                w->st.mismatches++;
            else
                w->st.bytes_verified++;
        }
    }
}

/* len more bytes came back: the wait they end, the requests they complete. */
static inline void received(struct worker *w, struct conn *c, size_t len, bool stopping) {
    const load_config *cfg = w->run->cfg;
    uint64_t S = (uint64_t)cfg->size;
    uint64_t before = c->recv_off;
    c->recv_off += len;
    if (!stopping) {
        uint64_t t = now_ns();
        if (t - c->last_rx > c->max_gap)
            c->max_gap = t - c->last_rx;
        c->last_rx = t;
    }

    if (cfg->mode == LOAD_PINGPONG) {
        if (c->recv_off >= c->msg_end && before < c->msg_end) {
            uint64_t t = now_ns();
            record(w, t, c->t_send);
            if (!stopping && !c->zombie) {
                c->msg_end = c->recv_off + S;
                c->t_send = t;
            }
        }
    } else if (c->recv_off / S != before / S) {
        uint64_t t = now_ns();
        uint64_t last = c->recv_off / S;
        if (last > c->send_off / S)
            last = c->send_off / S;
        for (uint64_t k = before / S; k < last; k++)
            record(w, t, c->chunk_ts[k % w->chunk_cap]);
    }
}

static void on_readable(struct worker *w, struct conn *c, bool stopping) {
    for (;;) {
        ssize_t n = read(c->fd, w->rbuf, RBUF_SIZE);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_kill(w, c, true);
            break;
        }
        if (n == 0) {
            conn_kill(w, c, true); /* server closed on us */
            return;
        }
        verify(w, c, (size_t)n);
        received(w, c, (size_t)n, stopping);
        if ((size_t)n < RBUF_SIZE)
            break;
    }
    if (c->zombie && !c->dead && c->recv_off >= c->send_off) {
        go_silent(w, c, now_ns());
        return;
    }
    pump_send(w, c, stopping);
}

/* Starts a connect for each connection of the batch; returns how many are
 * under way. A connection that could not even start one has fd -1. */
static long connect_batch(struct worker *w, long nb) {
    const struct run *run = w->run;
    long pending = 0;
    for (long i = 0; i < nb; i++) {
        struct conn *c = &w->conns[w->batch[i]];
        long global = w->batch[i] * run->nthreads + w->id; /* as setup_worker numbers them */
        const struct addrinfo *target = run->targets[global % run->ntargets];

        w->attempts[w->batch[i]]++;
        int fd = socket(target->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            w->conn_err = errno;
            c->fd = -1;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, target->ai_addr, target->ai_addrlen) != 0 && errno != EINPROGRESS) {
            w->conn_err = errno;
            close(fd);
            c->fd = -1;
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev);
        pending++;
    }
    return pending;
}

/* Waits up to CONNECT_TIMEOUT_NS for the pending connects to finish; a
 * connection that made it reads from now on and is marked want_out. */
static void await_connects(struct worker *w, long pending) {
    struct epoll_event *evs = w->evs; /* MAX_EVENTS >= CONNECT_BATCH */
    uint64_t deadline = now_ns() + CONNECT_TIMEOUT_NS;
    while (pending > 0) {
        uint64_t t = now_ns();
        if (t >= deadline)
            break;
        int n = epoll_wait(w->ep, evs, CONNECT_BATCH, (int)((deadline - t) / NS_PER_MS + 1));
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            int err = 0;
            socklen_t sl = sizeof(err);

            if (c->want_out) /* already resolved (cannot happen, defensive) */
                continue;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
            pending--;
            if (err != 0) {
                w->conn_err = err;
                close(c->fd);
                c->fd = -1;
                continue;
            }
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
            c->want_out = true; /* marks "connected" during this phase */
        }
    }
}

/* The batch's connections that did not connect (timed out: closed) go back
 * on the retry queue, or fail for good after CONNECT_ATTEMPTS. Returns the
 * retry queue's new length. */
static long retry_failed(struct worker *w, long nb, long nretry) {
    for (long i = 0; i < nb; i++) {
        long idx = w->batch[i];
        struct conn *c = &w->conns[idx];

        if (c->fd >= 0 && !c->want_out) {
            w->conn_err = ETIMEDOUT;
            close(c->fd); /* timed out */
            c->fd = -1;
        }
        if (c->fd < 0) {
            if (w->attempts[idx] < CONNECT_ATTEMPTS) {
                w->retry[nretry++] = idx;
            } else {
                c->dead = true;
                w->st.connect_failures++;
            }
        }
    }
    return nretry;
}

/* Connect all of this worker's connections in batches. */
static void connect_all(struct worker *w) {
    long next = 0, nretry = 0;

    /* retry queue: indexes that need another attempt, processed before new ones */
    while (next < w->nconns || nretry > 0) {
        long nb = 0;

        while (nb < CONNECT_BATCH && nretry > 0)
            w->batch[nb++] = w->retry[--nretry];
        while (nb < CONNECT_BATCH && next < w->nconns)
            w->batch[nb++] = next++;
        await_connects(w, connect_batch(w, nb));
        nretry = retry_failed(w, nb, nretry);
        if (nretry > 0)
            usleep(20000);
    }
    for (long i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (!c->dead) {
            c->want_out = false;
            w->st.connected++;
        }
    }
}

/* ---- zombies ------------------------------------------------------------ */

static uint64_t zombie_time(const struct worker *w, int k) {
    const load_config *cfg = w->run->cfg;
    return w->t0 + (uint64_t)((cfg->zombie_first_s + k * cfg->zombie_period_s) * 1e9);
}

/* Round k: zombie number k * per_round + j goes to thread (k * per_round + j) % threads. */
static void zombie_round(struct worker *w, int k, uint64_t t) {
    const load_config *cfg = w->run->cfg;
    long T = w->run->nthreads, want = 0;

    for (long j = 0; j < cfg->zombie_per_round; j++)
        if (((long)k * cfg->zombie_per_round + j) % T == w->id)
            want++;
    while (want > 0 && w->zcursor < w->nconns) {
        struct conn *c = &w->conns[w->zcursor++];
        if (c->dead || c->zombie)
            continue;
        c->zombie = true;
        want--;
        if (c->recv_off >= c->send_off)
            go_silent(w, c, t);
        else
            set_out(w, c, false); /* finish nothing: it only waits for its echo now */
    }
}

static void zombie_detected(struct worker *w, struct conn *c, uint64_t t) {
    c->detect_ns = (int64_t)(t - c->silent_at);
    close(c->fd);
    c->fd = -1;
    c->dead = true;
}

/* ---- the worker thread --------------------------------------------------- */

static int bad_config(load_result *out, const char *field, const char *why);

int load_pin(int cpu) {
    if (cpu < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) != 0 ? errno : 0;
}

int load_thread_cpu(const load_config *cfg, int thread) {
    return cfg->ncpus > 0 ? cfg->cpus[thread % cfg->ncpus] : cfg->cpu;
}

load_addr load_conn_addr(const load_config *cfg, long conn) {
    if (cfg->naddrs > 0)
        return cfg->addrs[conn % cfg->naddrs];
    return (load_addr){cfg->host, cfg->port};
}

int load_check_where(const load_config *cfg, load_result *out) {
    if (cfg->naddrs < 0 || cfg->naddrs > LOAD_MAX_ADDRS || (cfg->naddrs > 0 && !cfg->addrs))
        return bad_config(out, "addrs", "at most 64");
    for (int i = 0; i < cfg->naddrs; i++)
        if (cfg->addrs[i].port == 0)
            return bad_config(out, "addrs", "a port must be 1..65535");
    if (cfg->naddrs == 0 && cfg->port == 0)
        return bad_config(out, "port", "must be 1..65535");
    if (cfg->ncpus < 0 || (cfg->ncpus > 0 && !cfg->cpus))
        return bad_config(out, "cpus", "ncpus without cpus");
    for (int i = 0; i < cfg->ncpus; i++)
        if (cfg->cpus[i] < 0 || cfg->cpus[i] >= CPU_SETSIZE)
            return bad_config(out, "cpus", "must be CPU numbers");
    if (cfg->cpu < -1 || cfg->cpu >= CPU_SETSIZE)
        return bad_config(out, "cpu", "must be -1 or a CPU number");
    return 0;
}

static void pin_thread(struct worker *w) { w->pin_err = load_pin(load_thread_cpu(w->run->cfg, w->id)); }

/* Says this thread is connected, waits for every other, and takes the
 * phases' times. Returns false when the run was called off. */
static bool wait_go(struct worker *w) {
    struct run *run = w->run;
    pthread_mutex_lock(&run->mu);
    run->ready++;
    pthread_cond_signal(&run->to_main);
    while (!run->go)
        pthread_cond_wait(&run->to_workers, &run->mu);
    bool aborted = run->abort;
    w->t0 = run->t0;
    w->t_start = run->t_start;
    w->t_end = run->t_end;
    pthread_mutex_unlock(&run->mu);
    return !aborted;
}

static void kick_off(struct worker *w) {
    const load_config *cfg = w->run->cfg;
    for (long i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (c->dead)
            continue;
        if (cfg->mode == LOAD_PINGPONG) {
            c->msg_end = (uint64_t)cfg->size;
            c->t_send = now_ns();
        }
        pump_send(w, c, false);
    }
}

/* The measurement is over (or the caller said stop): no more writes, and
 * the drain begins. */
static void start_stopping(struct worker *w, uint64_t t) {
    const load_config *cfg = w->run->cfg;
    w->stopping = true;
    w->drain_deadline = t + (cfg->drain_s > 0 ? (uint64_t)(cfg->drain_s * 1e9) : DRAIN_NS);
    for (long i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        set_out(w, c, false);
        if (!c->dead && c->recv_off < c->send_off && t - c->last_rx > c->max_gap)
            c->max_gap = t - c->last_rx; /* a wait still open at the end */
    }
}

static bool drained(const struct worker *w) {
    for (long i = 0; i < w->nconns; i++) {
        const struct conn *c = &w->conns[i];
        if (!c->dead && c->recv_off < c->send_off)
            return false;
    }
    return true;
}

/* What is due at time t: zombie rounds, the switch to stopping, the drain's
 * end. Returns how long the next wait may last (ms), or -1 when this
 * thread's run is over. */
static int turn(struct worker *w, uint64_t t) {
    const load_config *cfg = w->run->cfg;
    while (!w->stopping && w->zround < cfg->zombie_rounds && t >= zombie_time(w, w->zround))
        zombie_round(w, w->zround++, t);
    bool stop = cfg->stop && atomic_load_explicit(cfg->stop, memory_order_relaxed);
    if (!w->stopping && (t >= w->t_end || stop))
        start_stopping(w, t);
    uint64_t until;
    if (w->stopping) {
        if (drained(w) || t >= w->drain_deadline)
            return -1;
        until = w->drain_deadline;
    } else {
        until = w->t_end;
        if (w->zround < cfg->zombie_rounds && zombie_time(w, w->zround) < until)
            until = zombie_time(w, w->zround);
    }
    uint64_t ms = (until - t) / NS_PER_MS + 1;
    return ms > 100 ? 100 : (int)ms;
}

static void dispatch(struct worker *w, int n) {
    for (int i = 0; i < n; i++) {
        struct conn *c = w->evs[i].data.ptr;
        uint32_t e = w->evs[i].events;

        if (c->dead)
            continue;
        if (c->silent) {
            if (e & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
                zombie_detected(w, c, now_ns());
            continue;
        }
        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
            on_readable(w, c, w->stopping);
        else if (e & EPOLLOUT)
            pump_send(w, c, w->stopping);
    }
}

static void event_loop(struct worker *w) {
    for (;;) {
        int timeout_ms = turn(w, now_ns());
        if (timeout_ms < 0)
            break;
        int n = epoll_wait(w->ep, w->evs, MAX_EVENTS, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            w->fatal = errno;
            w->fatal_what = "epoll_wait";
            break;
        }
        dispatch(w, n);
    }
}

/* What each connection left: bytes lost or unechoed, kept or not. */
static void settle(struct worker *w) {
    for (long i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (!c->zombie) {
            if (c->send_off > c->recv_off)
                *(c->dead ? &w->st.unechoed_on_errors : &w->st.lost) += c->send_off - c->recv_off;
            if (!c->dead)
                w->st.kept++;
        }
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
    }
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct run *run = w->run;

    pin_thread(w);
    connect_all(w);
    if (wait_go(w)) {
        kick_off(w);
        event_loop(w);
    }
    settle(w);
    pthread_mutex_lock(&run->mu);
    run->running--;
    pthread_cond_signal(&run->to_main);
    pthread_mutex_unlock(&run->mu);
    return NULL;
}

/* ---- server CPU via /proc ---------------------------------------------- */

static long long proc_cpu_ticks(long pid) {
    char path[64], buf[4096];
    unsigned long long utime, stime;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* after ")": field 3 (state) ... field 14 utime, 15 stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -1;
    return (long long)(utime + stime);
}

/* This process's CPU time in ns (every thread's), or -1. */
static long long self_cpu_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return -1;
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void load_cpu_take(load_cpu *s, long server_pid) {
    s->server_ticks = server_pid > 0 ? proc_cpu_ticks(server_pid) : -1;
    s->self_ns = self_cpu_ns();
    s->at = now_ns();
}

void load_cpu_result(long server_pid, const load_cpu *c0, const load_cpu *c1, load_result *out) {
    out->have_cpu = server_pid > 0 && c0->server_ticks >= 0 && c1->server_ticks >= 0;
    if (out->have_cpu) {
        out->server_cpu_us = (double)(c1->server_ticks - c0->server_ticks) * 1e6 /
                             (double)sysconf(_SC_CLK_TCK);
        out->server_cpu_us_per_req = out->requests ? out->server_cpu_us / (double)out->requests : 0;
    }
    out->have_client_cpu = c0->self_ns >= 0 && c1->self_ns >= 0 && c0->at && c1->at > c0->at;
    if (out->have_client_cpu)
        out->client_cpu_us = (double)(c1->self_ns - c0->self_ns) / 1e3;
    if (c0->at && c1->at > c0->at)
        out->cpu_window_s = (double)(c1->at - c0->at) / 1e9;
}

void load_hist_result(const load_hist *h, load_result *out) {
    out->p50_us = load_hist_pct(h, out->requests, 0.50) / 1000.0;
    out->p90_us = load_hist_pct(h, out->requests, 0.90) / 1000.0;
    out->p99_us = load_hist_pct(h, out->requests, 0.99) / 1000.0;
    out->p999_us = load_hist_pct(h, out->requests, 0.999) / 1000.0;
    for (unsigned i = LOAD_HIST_BUCKETS; i-- > 0;)
        if (h->b[i]) {
            out->max_us = hist_mid(i, LOAD_HIST_SUB_BITS) / 1000.0;
            break;
        }
}

/* ---- load_run ----------------------------------------------------------- */

static int fail(load_result *out, int err, const char *fmt, const char *arg) {
    snprintf(out->error, sizeof(out->error), fmt, arg);
    return err;
}

/* A field of the config that is out of range: -EINVAL, and out->error says which. */
static int bad_config(load_result *out, const char *field, const char *why) {
    snprintf(out->error, sizeof(out->error), "bad config: %s (%s)", field, why);
    return -EINVAL;
}

static int check_config(const load_config *cfg, load_result *out) {
    int rc = load_check_where(cfg, out);
    if (rc != 0)
        return rc;
    if (cfg->conns < 1)
        return bad_config(out, "conns", "must be >= 1");
    if (cfg->mode != LOAD_PINGPONG && cfg->mode != LOAD_STREAM)
        return bad_config(out, "mode", "pingpong or stream");
    if (cfg->size < 1 || cfg->size > MAX_SIZE)
        return bad_config(out, "size", "must be 1..262144");
    if (cfg->mode == LOAD_STREAM && (cfg->window < cfg->size || cfg->window > MAX_WINDOW))
        return bad_config(out, "window", "must be size..2^30 in stream mode");
    if (!(cfg->duration_s > 0) || cfg->duration_s > 1e6)
        return bad_config(out, "duration_s", "must be > 0");
    if (!(cfg->warmup_s >= 0) || cfg->warmup_s > 1e6)
        return bad_config(out, "warmup_s", "must be >= 0");
    if (!(cfg->drain_s >= 0) || cfg->drain_s > 3600)
        return bad_config(out, "drain_s", "must be 0..3600");
    if (cfg->threads < 1 || cfg->threads > MAX_THREADS)
        return bad_config(out, "threads", "must be 1..1024");
    if (!(cfg->bin_s >= 0))
        return bad_config(out, "bin_s", "must be >= 0");
    if (cfg->bin_s > 0 && (cfg->warmup_s + cfg->duration_s) / cfg->bin_s > MAX_BINS)
        return bad_config(out, "bin_s", "too small: more than 10000 bins");
    if (cfg->zombie_rounds < 0)
        return bad_config(out, "zombie_rounds", "must be >= 0");
    if (cfg->zombie_rounds > 0) {
        if (cfg->zombie_per_round < 1)
            return bad_config(out, "zombie_per_round", "must be >= 1 with zombie_rounds");
        if (!(cfg->zombie_first_s >= 0))
            return bad_config(out, "zombie_first_s", "must be >= 0");
        if (cfg->zombie_rounds > 1 && !(cfg->zombie_period_s > 0))
            return bad_config(out, "zombie_period_s", "must be > 0 with more than one round");
    }
    return 0;
}

typedef struct lookup {
    int done, status;
    char addr[64];
} lookup;

static void on_lookup(vigil_loop *loop, vigil_op op, int status, const char *const *addrs, void *ud) {
    lookup *l = ud;
    l->status = status;
    if (status > 0)
        snprintf(l->addr, sizeof(l->addr), "%s", addrs[0]);
    l->done = 1;
}

/* A name goes through vigil's own resolver (the loop's pool, 5 s deadline);
 * the address it gives, or a numeric host, becomes a sockaddr without any
 * lookup. The first address is used. */
static int resolve(load_addr a, struct addrinfo **ai, load_result *out) {
    const char *host = a.host ? a.host : "127.0.0.1";
    char port[8];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    snprintf(port, sizeof(port), "%u", (unsigned)a.port);
    if (getaddrinfo(host, port, &hints, ai) == 0)
        return 0;
    lookup l = {0};
    vigil_loop *loop = NULL;
    int rc = vigil_loop_create(&loop, NULL);
    vigil_op op;
    if (rc == 0)
        rc = vigil_resolve_start(loop, host, 0, on_lookup, &l, &op);
    if (rc == 0)
        rc = vigil_op_set_deadline(loop, op, 5000);
    while (rc == 0 && !l.done)
        if ((rc = vigil_loop_run(loop, VIGIL_RUN_ONCE, 100)) > 0)
            rc = 0;
    if (loop)
        vigil_loop_destroy(loop);
    if (rc == 0)
        rc = l.status < 0 ? l.status : 0;
    if (rc == 0 && (rc = getaddrinfo(l.addr, port, &hints, ai)) != 0)
        rc = -EINVAL;
    if (rc == 0) {
        if (!out->resolved[0]) /* the first name's */
            snprintf(out->resolved, sizeof(out->resolved), "%s", l.addr);
        return 0;
    }
    snprintf(out->error, sizeof(out->error), "resolving %s: %s", host, vigil_strerror(rc));
    return rc;
}

static void free_workers(struct worker *ws, int n) {
    for (int i = 0; ws && i < n; i++) {
        struct worker *w = &ws[i];
        for (long j = 0; w->conns && j < w->nconns; j++)
            free(w->conns[j].chunk_ts);
        free(w->conns);
        free(w->wbuf);
        free(w->rbuf);
        free(w->cbuf);
        free(w->evs);
        free(w->attempts);
        free(w->batch);
        free(w->retry);
        free(w->bins);
        if (w->ep >= 0)
            close(w->ep);
    }
    free(ws);
}

/* Everything a thread needs is allocated here, so a thread never fails to start its work. */
static int setup_worker(struct worker *w, struct run *run, int i) {
    const load_config *cfg = run->cfg;
    long conns = cfg->conns, T = run->nthreads;

    w->id = i;
    w->run = run;
    w->nconns = conns / T + (i < conns % T ? 1 : 0);
    w->chunk_cap = (unsigned)(cfg->window / cfg->size + 2);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0)
        return -errno;
    w->conns = calloc((size_t)w->nconns, sizeof(*w->conns));
    w->wbuf = malloc((size_t)(cfg->size > WBUF_SIZE ? cfg->size : WBUF_SIZE) + 8);
    w->rbuf = malloc(RBUF_SIZE);
    w->cbuf = malloc(RBUF_SIZE);
    w->evs = calloc(MAX_EVENTS, sizeof(*w->evs));
    w->attempts = calloc((size_t)w->nconns, sizeof(int));
    w->batch = calloc(CONNECT_BATCH, sizeof(long));
    w->retry = calloc((size_t)w->nconns, sizeof(long));
    if (run->nbins)
        w->bins = calloc(run->nbins, sizeof(*w->bins));
    if (!w->conns || !w->wbuf || !w->rbuf || !w->cbuf || !w->evs || !w->attempts || !w->batch ||
        !w->retry || (run->nbins && !w->bins))
        return -ENOMEM;
    for (long j = 0; j < w->nconns; j++) {
        struct conn *c = &w->conns[j];
        long global = j * T + i; /* round-robin index */
        c->fd = -1;
        c->seed = mix64(0x5eedull + (uint64_t)global);
        c->detect_ns = -1;
        if (cfg->mode == LOAD_STREAM) {
            c->chunk_ts = calloc(w->chunk_cap, sizeof(uint64_t));
            if (!c->chunk_ts)
                return -ENOMEM;
        }
    }
    return 0;
}

struct zrec {
    uint64_t silent_at; /* UINT64_MAX: never went silent */
    int64_t detect_ns;
};

static int cmp_zrec(const void *a, const void *b) {
    uint64_t x = ((const struct zrec *)a)->silent_at, y = ((const struct zrec *)b)->silent_at;
    return x < y ? -1 : x > y;
}

/* One thread's counters and histogram into out and h; its connections'
 * gaps onto gaps, its zombies onto z. */
static void add_thread(const struct worker *w, load_result *out, load_hist *h, double *gaps,
                       size_t *ngaps, struct zrec *z, size_t *nz) {
    const struct stats *s = &w->st;
    out->requests += s->requests;
    out->bytes_sent += s->bytes_sent;
    out->bytes_verified += s->bytes_verified;
    out->mismatches += s->mismatches;
    out->lost += s->lost;
    out->unechoed_on_errors += s->unechoed_on_errors;
    out->errors += s->errors;
    out->connect_failures += s->connect_failures;
    out->connected += s->connected;
    out->kept += s->kept;
    for (unsigned b = 0; b < LOAD_HIST_BUCKETS; b++)
        h->b[b] += s->hist.b[b];
    for (long j = 0; j < w->nconns; j++) {
        const struct conn *c = &w->conns[j];
        if (!c->zombie) {
            gaps[(*ngaps)++] = (double)c->max_gap / 1e6;
            continue;
        }
        z[*nz].silent_at = c->silent ? c->silent_at : UINT64_MAX;
        z[*nz].detect_ns = c->detect_ns;
        (*nz)++;
    }
}

/* The timeline: each bin merged over the threads. */
static int merge_bins(const struct run *run, const struct worker *ws, load_result *out) {
    struct tbin *m = calloc(1, sizeof(*m));
    out->bins = calloc(run->nbins, sizeof(*out->bins));
    if (!m || !out->bins) {
        free(m);
        return fail(out, -ENOMEM, "%s", "out of memory");
    }
    out->nbins = run->nbins;
    for (size_t b = 0; b < run->nbins; b++) {
        memset(m, 0, sizeof(*m));
        for (int i = 0; i < run->nthreads; i++) {
            const struct tbin *t = &ws[i].bins[b];
            m->requests += t->requests;
            if (t->max_ns > m->max_ns)
                m->max_ns = t->max_ns;
            for (unsigned k = 0; k < BIN_BUCKETS; k++)
                m->b[k] += t->b[k];
        }
        out->bins[b].requests = m->requests;
        out->bins[b].p50_us = bin_pct(m, 0.50) / 1000.0;
        out->bins[b].p99_us = bin_pct(m, 0.99) / 1000.0;
        out->bins[b].max_us = (double)m->max_ns / 1000.0;
    }
    free(m);
    return 0;
}

/* The zombies, in the order they went silent. */
static int zombie_results(const struct run *run, struct zrec *z, size_t nz, load_result *out) {
    qsort(z, nz, sizeof(*z), cmp_zrec);
    out->zombie_detect_ms = calloc(nz, sizeof(double));
    out->zombie_silent_s = calloc(nz, sizeof(double));
    if (!out->zombie_detect_ms || !out->zombie_silent_s)
        return fail(out, -ENOMEM, "%s", "out of memory");
    out->nzombies = nz;
    for (size_t k = 0; k < nz; k++) {
        bool silent = z[k].silent_at != UINT64_MAX;
        out->zombie_silent_s[k] = silent ? (double)(z[k].silent_at - run->t0) / 1e9 : -1;
        out->zombie_detect_ms[k] = z[k].detect_ns >= 0 ? (double)z[k].detect_ns / 1e6 : -1;
    }
    return 0;
}

/* Merge the threads' counters, histograms, gaps, bins and zombies into out. */
static int collect(struct run *run, struct worker *ws, const load_cpu *c0, const load_cpu *c1,
                   load_result *out) {
    const load_config *cfg = run->cfg;
    load_hist *h = calloc(1, sizeof(*h));
    double *gaps = calloc((size_t)cfg->conns + 1, sizeof(double));
    struct zrec *z = calloc((size_t)cfg->conns + 1, sizeof(*z));
    size_t ngaps = 0, nz = 0;
    int rc = 0;

    if (!h || !gaps || !z) {
        rc = fail(out, -ENOMEM, "%s", "out of memory");
        goto done;
    }
    for (int i = 0; i < run->nthreads; i++)
        add_thread(&ws[i], out, h, gaps, &ngaps, z, &nz);
    out->req_per_s = (double)out->requests / cfg->duration_s;
    load_hist_result(h, out);
    out->gap_p50_ms = load_percentile(gaps, ngaps, 0.50);
    out->gap_p90_ms = load_percentile(gaps, ngaps, 0.90);
    out->gap_p99_ms = load_percentile(gaps, ngaps, 0.99);
    out->gap_max_ms = load_percentile(gaps, ngaps, 1.0);

    load_cpu_result(cfg->server_pid, c0, c1, out);
    if (run->nbins && (rc = merge_bins(run, ws, out)) != 0)
        goto done;
    if (nz)
        rc = zombie_results(run, z, nz, out);
done:
    free(h);
    free(gaps);
    free(z);
    return rc;
}

/* Waits until *w->running is 0 (under w->mu, woken through w->cond),
 * sampling both sides' CPU at the edges of the measured part (the threads
 * may end right at its end: a closed loop that owes nothing then, so a
 * sample still missing is taken on the way out) and calling the progress
 * callback every PROGRESS_NS with w->done(w->ud). */
void load_supervise(const load_config *cfg, const load_watch *w, load_cpu *cpu0, load_cpu *cpu1) {
    /* sampled even without a server_pid: the client's own CPU tells bench
     * whether the client was the bottleneck */
    bool have0 = false, have1 = false;
    uint64_t next_tick = w->t0 + PROGRESS_NS;

    pthread_mutex_lock(w->mu);
    for (;;) {
        uint64_t t = now_ns();
        if (!have0 && t >= w->t_start) {
            load_cpu_take(cpu0, cfg->server_pid);
            have0 = true;
        }
        if (!have1 && t >= w->t_end) {
            load_cpu_take(cpu1, cfg->server_pid);
            have1 = true;
        }
        if (cfg->progress && t >= next_tick) {
            uint64_t done = w->done(w->ud);
            /* not under the lock: the callback may take its time printing */
            pthread_mutex_unlock(w->mu);
            cfg->progress((double)(t - w->t0) / 1e9, done, cfg->ud);
            pthread_mutex_lock(w->mu);
            next_tick += PROGRESS_NS;
            if (next_tick <= t)
                next_tick = t + PROGRESS_NS;
        }
        if (*w->running == 0)
            break;
        /* wake for the next CPU sample or progress tick, or when a thread ends */
        uint64_t wake = UINT64_MAX;
        if (!have0)
            wake = w->t_start;
        else if (!have1)
            wake = w->t_end;
        if (cfg->progress && next_tick < wake)
            wake = next_tick;
        if (wake == UINT64_MAX) {
            pthread_cond_wait(w->cond, w->mu);
        } else {
            struct timespec ts = to_ts(wake);
            pthread_cond_timedwait(w->cond, w->mu, &ts);
        }
    }
    pthread_mutex_unlock(w->mu);
    if (!have0)
        load_cpu_take(cpu0, cfg->server_pid);
    if (!have1)
        load_cpu_take(cpu1, cfg->server_pid);
}

static uint64_t requests_done(void *ud) {
    const struct run *run = ((const struct worker *)ud)->run;
    const struct worker *ws = ud;
    uint64_t done = 0;
    for (int i = 0; i < run->nthreads; i++)
        done += atomic_load_explicit(&ws[i].done, memory_order_relaxed);
    return done;
}

/* The state one load_run shares with its threads. */
static void run_init(struct run *run, const load_config *cfg) {
    memset(run, 0, sizeof(*run));
    run->cfg = cfg;
    run->nthreads = cfg->threads > cfg->conns ? (int)cfg->conns : cfg->threads;
    if (cfg->bin_s > 0) {
        run->bin_ns = (uint64_t)(cfg->bin_s * 1e9);
        if (run->bin_ns == 0)
            run->bin_ns = 1;
        uint64_t span = (uint64_t)((cfg->warmup_s + cfg->duration_s) * 1e9);
        run->nbins = (size_t)((span + run->bin_ns - 1) / run->bin_ns);
    }
    pthread_mutex_init(&run->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* timed waits use now_ns() deadlines */
    pthread_cond_init(&run->to_main, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&run->to_workers, NULL);
}

static void run_destroy(struct run *run) {
    pthread_cond_destroy(&run->to_main);
    pthread_cond_destroy(&run->to_workers);
    pthread_mutex_destroy(&run->mu);
}

/* Every worker, set up (free_workers frees them, set up or not). Returns 0 or -errno. */
static int make_workers(struct run *run, struct worker **out_ws, load_result *out) {
    struct worker *ws = calloc((size_t)run->nthreads, sizeof(*ws));
    *out_ws = ws;
    if (!ws)
        return fail(out, -ENOMEM, "%s", "out of memory");
    for (int i = 0; i < run->nthreads; i++)
        ws[i].ep = -1;
    for (int i = 0; i < run->nthreads; i++) {
        int rc = setup_worker(&ws[i], run, i);
        if (rc != 0) {
            snprintf(out->error, sizeof(out->error), "setting up client thread %d: %s", i,
                     strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* Starts the threads; returns how many started, *rc -errno if one did not. */
static int start_workers(struct run *run, struct worker *ws, load_result *out, int *rc) {
    int started = 0;
    for (; started < run->nthreads; started++) {
        int e = pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]);
        if (e != 0) {
            *rc = -e;
            snprintf(out->error, sizeof(out->error), "pthread_create: %s", strerror(e));
            break;
        }
    }
    return started;
}

/* Waits until the started threads have connected, then sets time 0 and the
 * phases and lets them go; they are called off when one thread did not
 * start or nothing connected. Returns how many connected (*conn_err: the
 * last connect error). */
static uint64_t release_workers(struct run *run, struct worker *ws, int started, bool failed,
                                uint64_t tc0, load_result *out, int *conn_err) {
    const load_config *cfg = run->cfg;
    pthread_mutex_lock(&run->mu);
    run->running = started;
    while (run->ready < started)
        pthread_cond_wait(&run->to_main, &run->mu);
    /* the threads wrote their connect results before signalling ready (under mu) */
    uint64_t connected = 0;
    for (int i = 0; i < started; i++) {
        connected += ws[i].st.connected;
        if (ws[i].conn_err)
            *conn_err = ws[i].conn_err;
    }
    uint64_t t0 = now_ns();
    out->connect_s = (double)(t0 - tc0) / 1e9;
    out->t0_ns = t0;
    run->t0 = t0;
    run->t_start = t0 + (uint64_t)(cfg->warmup_s * 1e9);
    run->t_end = run->t_start + (uint64_t)(cfg->duration_s * 1e9);
    run->abort = failed || connected == 0;
    run->go = true;
    pthread_cond_broadcast(&run->to_workers);
    pthread_mutex_unlock(&run->mu);
    return connected;
}

static void join_workers(struct worker *ws, int started, load_result *out) {
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);
    for (int i = 0; i < started; i++)
        if (ws[i].pin_err && !out->cpu_pin_errno)
            out->cpu_pin_errno = ws[i].pin_err;
}

/* After the threads ended: the result, or why there is none. */
static int results(struct run *run, struct worker *ws, int started, uint64_t connected,
                   int conn_err, const load_cpu *cpu0, const load_cpu *cpu1,
                   load_result *out) {
    const load_config *cfg = run->cfg;
    if (connected == 0) {
        /* the counters still say what happened, so callers can print them */
        for (int i = 0; i < started; i++)
            out->connect_failures += ws[i].st.connect_failures;
        char where[112];
        load_addr a = load_conn_addr(cfg, 0);
        int n = snprintf(where, sizeof(where), "%s port %u", a.host ? a.host : "127.0.0.1", (unsigned)a.port);
        if (cfg->naddrs > 1)
            snprintf(where + n, sizeof(where) - (size_t)n, " and %d more", cfg->naddrs - 1);
        snprintf(out->error, sizeof(out->error), "connect to %s: %s (all %ld connections failed)",
                 where, strerror(conn_err ? conn_err : ECONNREFUSED), cfg->conns);
        return -ECONNREFUSED;
    }
    int rc = collect(run, ws, cpu0, cpu1, out);
    for (int i = 0; rc == 0 && i < started; i++) {
        if (ws[i].fatal) {
            rc = -ws[i].fatal;
            snprintf(out->error, sizeof(out->error), "client thread %d: %s: %s", i,
                     ws[i].fatal_what, strerror(ws[i].fatal));
        }
    }
    return rc;
}

/* thousands of connections need thousands of descriptors: the soft limit up to the hard one */
static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int load_run(const load_config *cfg, load_result *out) {
    struct run run;
    struct worker *ws = NULL;
    load_cpu cpu0 = {-1, -1, 0}, cpu1 = {-1, -1, 0};
    int rc, conn_err = 0;

    memset(out, 0, sizeof(*out));
    if (!cfg)
        return fail(out, -EINVAL, "%s", "bad config: NULL");
    if ((rc = check_config(cfg, out)) != 0)
        return rc;
    pthread_once(&stream_once, stream_table_init);
    raise_nofile();
    run_init(&run, cfg);
    for (int i = 0; rc == 0 && i < (cfg->naddrs > 0 ? cfg->naddrs : 1); i++)
        if ((rc = resolve(load_conn_addr(cfg, i), &run.targets[i], out)) == 0)
            run.ntargets++;
    if (rc == 0 && (rc = make_workers(&run, &ws, out)) == 0) {
        uint64_t tc0 = now_ns();
        int started = start_workers(&run, ws, out, &rc);
        uint64_t connected = release_workers(&run, ws, started, rc != 0, tc0, out, &conn_err);
        if (!run.abort)
            load_supervise(cfg, &(load_watch){&run.mu, &run.to_main, &run.running, run.t0, run.t_start,
                                              run.t_end, requests_done, ws},
                           &cpu0, &cpu1);
        join_workers(ws, started, out);
        if (rc == 0)
            rc = results(&run, ws, started, connected, conn_err, &cpu0, &cpu1, out);
    }
    free_workers(ws, run.nthreads);
    for (int i = 0; i < run.ntargets; i++)
        freeaddrinfo(run.targets[i]);
    run_destroy(&run);
    return rc;
}

void load_result_free(load_result *r) {
    if (!r)
        return;
    free(r->bins);
    free(r->zombie_detect_ms);
    free(r->zombie_silent_s);
    r->bins = NULL;
    r->zombie_detect_ms = r->zombie_silent_s = NULL;
    r->nbins = r->nzombies = 0;
}
