/*
 * loadgen: epoll-based TCP echo load generator with byte-exact verification.
 *
 * Every connection i sends a deterministic pseudo-random byte stream: the
 * 64-bit word w of the stream is a pure function of (seed_i, w) (see
 * stream_fill), so any byte at any stream offset can be regenerated.  What
 * comes back must equal what was sent, in order; each differing byte is a
 * mismatch.  At the end (after a drain of up to 2 s) the bytes sent but not
 * echoed back on connections that are still open are reported as `lost`:
 * bytes that vanished without an error. On connections the server reset or
 * closed (`errors`), they are `unechoed_on_errors`: failed explicitly.
 *
 * Modes:
 *   pingpong  each connection writes one --size message, waits until all of
 *             it has come back, records the round-trip time and repeats.
 *             request = one completed round trip.
 *   stream    each connection keeps up to --window bytes in flight, refilled
 *             in whole --size chunks; the chunks that fit are coalesced into
 *             one write() of at most 256 KiB (one chunk per write() would make
 *             the client, not the server, the bottleneck for small sizes).
 *             request = one chunk fully echoed;
 *             latency = time from the write() that completed the chunk to the
 *             read() that completed its echo (chunk round trip, includes
 *             queueing behind the window).
 * Only requests that complete inside the measurement window (after warmup)
 * count for requests/req_per_s/latency.  bytes_sent and bytes_verified are
 * totals over the whole run (warmup + measurement + drain).
 *
 * Gaps: for each connection, the longest time it waited with bytes
 * outstanding and nothing coming back (warmup and measurement, not the
 * drain); gap_p50/p90/p99/max_ms are percentiles of that over connections,
 * so gap_p90_ms <= 300 means 90 % of connections never waited over 300 ms.
 *
 * Latency histogram: log-linear, 2^SUB_BITS linear sub-buckets per power of
 * two of nanoseconds (< 1.6% bucket width); percentiles report the bucket
 * midpoint.
 *
 * Connections are split round-robin across --threads threads, each with its
 * own epoll (level-triggered) instance.  Connecting is done in batches of
 * CONNECT_BATCH per thread so the server's listen backlog does not
 * overflow; a failed/timed-out connect is retried up to CONNECT_ATTEMPTS
 * times.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
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
#define NS_PER_S 1000000000ull
#define RBUF_SIZE (256 * 1024)
#define WBUF_SIZE (256 * 1024) /* max bytes per write() in stream mode */
#define MAX_EVENTS 1024

#define SUB_BITS 6
#define SUB_COUNT (1u << SUB_BITS)
#define HIST_BUCKETS (64u * SUB_COUNT)

enum mode { MODE_PINGPONG, MODE_STREAM };

struct options {
	const char *host;
	const char *port;
	long conns;
	enum mode mode;
	long size;
	long window;
	double duration;
	double warmup;
	int threads;
	int cpu;
	bool json;
	long server_pid;
};

struct conn {
	int fd;
	bool dead;          /* error or closed: no further I/O */
	bool want_out;      /* EPOLLOUT in the interest set */
	uint64_t seed;
	uint64_t send_off;  /* bytes written so far */
	uint64_t recv_off;  /* bytes read (and checked) so far */
	uint64_t msg_end;   /* pingpong: end offset of the current message */
	uint64_t t_send;    /* pingpong: start time of the current message */
	uint64_t *chunk_ts; /* stream: completion time of written chunks */
	uint64_t last_rx;   /* last read with bytes, or when bytes became outstanding */
	uint64_t max_gap;   /* longest wait with bytes outstanding and none coming back */
};

struct hist {
	uint64_t b[HIST_BUCKETS];
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
	struct hist hist;
};

struct worker {
	pthread_t tid;
	int id;
	int ep;
	struct conn *conns;
	long nconns;
	unsigned chunk_cap;
	unsigned char *wbuf, *rbuf, *cbuf;
	struct stats st;
};

static struct options opt;
static struct addrinfo *target;
static pthread_barrier_t barrier;
/* Phase boundaries (CLOCK_MONOTONIC ns), written by main between barriers. */
static uint64_t t_measure_start, t_measure_end;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / NS_PER_S), .tv_nsec = (long)(t % NS_PER_S) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* ---- deterministic stream ---------------------------------------------- */

static inline uint64_t mix64(uint64_t x)
{
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
 * where T is a fixed pseudo-random table (1 MiB, filled with mix64 at start),
 * b = seed >> (64 - TBITS) is the connection's start position in the table
 * and the mix64 key changes every 2^TBITS words, so the stream never
 * repeats.  Any byte at any offset can be regenerated, and the inner loop
 * is a load and an xor per word (a mix64 per word made the client's
 * generator/verifier, not the server, the bottleneck in stream mode).
 */
#define TBITS 17
#define TWORDS (1u << TBITS)
static uint64_t stream_table[TWORDS];

static void stream_table_init(void)
{
	for (uint64_t i = 0; i < TWORDS; i++)
		stream_table[i] = mix64(0x9e3779b97f4a7c15ull * (i + 1));
}

/* Fill buf with stream bytes [off, off+n) of the stream with this seed. */
static void stream_fill(uint64_t seed, uint64_t off, unsigned char *buf, size_t n)
{
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

/* ---- histogram ---------------------------------------------------------- */

static unsigned hist_index(uint64_t v)
{
	if (v < SUB_COUNT)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= SUB_BITS */
	unsigned sub = (unsigned)(v >> (e - SUB_BITS)) & (SUB_COUNT - 1);
	return (e - SUB_BITS + 1) * SUB_COUNT + sub;
}

static double hist_mid(unsigned idx)
{
	if (idx < SUB_COUNT)
		return idx;
	unsigned e = idx / SUB_COUNT + SUB_BITS - 1;
	unsigned sub = idx % SUB_COUNT;
	double lo = ldexp(1.0, (int)e) + (double)sub * ldexp(1.0, (int)(e - SUB_BITS));
	return lo + ldexp(1.0, (int)(e - SUB_BITS)) / 2.0;
}

static double hist_pct(const struct hist *h, uint64_t total, double p)
{
	uint64_t rank, acc = 0;

	if (total == 0)
		return 0.0;
	rank = (uint64_t)ceil(p * (double)total);
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		acc += h->b[i];
		if (acc >= rank)
			return hist_mid(i);
	}
	return hist_mid(HIST_BUCKETS - 1);
}

/* ---- connections -------------------------------------------------------- */

static void conn_kill(struct worker *w, struct conn *c, bool is_error)
{
	if (c->dead)
		return;
	c->dead = true;
	if (is_error)
		w->st.errors++;
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

static void set_out(struct worker *w, struct conn *c, bool on)
{
	struct epoll_event ev;

	if (c->want_out == on || c->dead)
		return;
	ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
		conn_kill(w, c, true);
		return;
	}
	c->want_out = on;
}

/* Write as much as the mode allows; enables EPOLLOUT when the socket is full. */
static void pump_send(struct worker *w, struct conn *c, bool stopping)
{
	uint64_t S = (uint64_t)opt.size;

	if (c->dead)
		return;
	for (;;) {
		uint64_t len;

		if (opt.mode == MODE_PINGPONG) {
			if (c->send_off >= c->msg_end)
				break;
			len = c->msg_end - c->send_off;
		} else {
			uint64_t inflight = c->send_off - c->recv_off;
			uint64_t room = (uint64_t)opt.window > inflight ? (uint64_t)opt.window - inflight : 0;

			if (stopping)
				break;
			/* finish the current chunk (one chunk may always be in flight) */
			len = S - (c->send_off % S);
			if (inflight > 0 && len > room)
				break;
			/* coalesce further whole chunks that fit in the window */
			while (len + S <= room && len + S <= WBUF_SIZE)
				len += S;
		}
		stream_fill(c->seed, c->send_off, w->wbuf, (size_t)len);
		ssize_t n = write(c->fd, w->wbuf, (size_t)len);
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
		uint64_t before = c->send_off;
		if (before == c->recv_off) /* nothing was outstanding: the wait starts now */
			c->last_rx = now_ns();
		c->send_off += (uint64_t)n;
		w->st.bytes_sent += (uint64_t)n;
		if (opt.mode == MODE_STREAM && c->send_off / S != before / S) {
			/* chunks [before / S, send_off / S) are now fully written */
			uint64_t t = now_ns();
			for (uint64_t k = before / S; k < c->send_off / S; k++)
				c->chunk_ts[k % w->chunk_cap] = t;
		}
		if ((uint64_t)n < len) {
			set_out(w, c, true);
			return;
		}
	}
	set_out(w, c, false);
}

static void record(struct worker *w, uint64_t done, uint64_t started)
{
	if (done >= t_measure_start && done < t_measure_end) {
		w->st.requests++;
		w->st.hist.b[hist_index(done - started)]++;
	}
}

static void on_readable(struct worker *w, struct conn *c, bool stopping)
{
	uint64_t S = (uint64_t)opt.size;

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
		/* verify */
		size_t len = (size_t)n;
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
		uint64_t before = c->recv_off;
		c->recv_off += len;
		if (!stopping) {
			uint64_t t = now_ns();
			if (t - c->last_rx > c->max_gap)
				c->max_gap = t - c->last_rx;
			c->last_rx = t;
		}

		if (opt.mode == MODE_PINGPONG) {
			if (c->recv_off >= c->msg_end && before < c->msg_end) {
				uint64_t t = now_ns();
				record(w, t, c->t_send);
				if (!stopping) {
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
		if ((size_t)n < RBUF_SIZE)
			break;
	}
	pump_send(w, c, stopping);
}

/* Connect all of this worker's connections in batches. */
static void connect_all(struct worker *w)
{
	long next = 0;
	int *attempts = calloc((size_t)w->nconns, sizeof(int));
	long *batch = calloc(CONNECT_BATCH, sizeof(long));
	struct epoll_event evs[CONNECT_BATCH];

	if (!attempts || !batch) {
		perror("calloc");
		exit(1);
	}
	/* retry queue: indexes that need another attempt, processed before new ones */
	long *retry = calloc((size_t)w->nconns, sizeof(long));
	long nretry = 0;
	if (!retry) {
		perror("calloc");
		exit(1);
	}

	while (next < w->nconns || nretry > 0) {
		long nb = 0, pending = 0;

		while (nb < CONNECT_BATCH && nretry > 0)
			batch[nb++] = retry[--nretry];
		while (nb < CONNECT_BATCH && next < w->nconns)
			batch[nb++] = next++;

		for (long i = 0; i < nb; i++) {
			struct conn *c = &w->conns[batch[i]];
			struct epoll_event ev;
			int fd;

			attempts[batch[i]]++;
			fd = socket(target->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (fd < 0) {
				fprintf(stderr, "loadgen: socket: %s\n", strerror(errno));
				c->fd = -1;
				continue;
			}
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			if (connect(fd, target->ai_addr, target->ai_addrlen) != 0 && errno != EINPROGRESS) {
				close(fd);
				c->fd = -1;
				continue;
			}
			c->fd = fd;
			ev.events = EPOLLOUT;
			ev.data.ptr = c;
			epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev);
			pending++;
		}

		uint64_t deadline = now_ns() + CONNECT_TIMEOUT_NS;
		while (pending > 0) {
			uint64_t t = now_ns();
			if (t >= deadline)
				break;
			int n = epoll_wait(w->ep, evs, CONNECT_BATCH, (int)((deadline - t) / 1000000 + 1));
			if (n < 0 && errno != EINTR)
				break;
			for (int i = 0; i < n; i++) {
				struct conn *c = evs[i].data.ptr;
				int err = 0;
				socklen_t sl = sizeof(err);
				struct epoll_event ev;

				if (c->want_out) /* already resolved (cannot happen, defensive) */
					continue;
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
				pending--;
				if (err != 0) {
					close(c->fd);
					c->fd = -1;
					continue;
				}
				ev.events = EPOLLIN;
				ev.data.ptr = c;
				epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
				c->want_out = true; /* marks "connected" during this phase */
			}
		}

		for (long i = 0; i < nb; i++) {
			long idx = batch[i];
			struct conn *c = &w->conns[idx];

			if (c->fd >= 0 && !c->want_out) {
				close(c->fd); /* timed out */
				c->fd = -1;
			}
			if (c->fd < 0) {
				if (attempts[idx] < CONNECT_ATTEMPTS) {
					retry[nretry++] = idx;
				} else {
					c->dead = true;
					w->st.connect_failures++;
				}
			}
		}
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
	free(attempts);
	free(batch);
	free(retry);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event *evs = calloc(MAX_EVENTS, sizeof(*evs));
	bool stopping = false;
	uint64_t drain_deadline = 0;

	if (!evs) {
		perror("calloc");
		exit(1);
	}
	if (opt.cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(opt.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			fprintf(stderr, "loadgen: sched_setaffinity(%d): %s\n", opt.cpu, strerror(errno));
	}
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	if (w->ep < 0) {
		perror("epoll_create1");
		exit(1);
	}
	connect_all(w);

	pthread_barrier_wait(&barrier); /* all connected */
	pthread_barrier_wait(&barrier); /* phase times published */

	/* kick off */
	for (long i = 0; i < w->nconns; i++) {
		struct conn *c = &w->conns[i];
		if (c->dead)
			continue;
		if (opt.mode == MODE_PINGPONG) {
			c->msg_end = (uint64_t)opt.size;
			c->t_send = now_ns();
		}
		pump_send(w, c, false);
	}

	for (;;) {
		uint64_t t = now_ns();
		int timeout_ms;

		if (!stopping && t >= t_measure_end) {
			stopping = true;
			drain_deadline = t + DRAIN_NS;
			for (long i = 0; i < w->nconns; i++) {
				struct conn *c = &w->conns[i];
				set_out(w, c, false);
				if (!c->dead && c->recv_off < c->send_off && t - c->last_rx > c->max_gap)
					c->max_gap = t - c->last_rx; /* a wait still open at the end */
			}
		}
		if (stopping) {
			bool drained = true;
			for (long i = 0; i < w->nconns; i++) {
				struct conn *c = &w->conns[i];
				if (!c->dead && c->recv_off < c->send_off) {
					drained = false;
					break;
				}
			}
			if (drained || t >= drain_deadline)
				break;
			timeout_ms = (int)((drain_deadline - t) / 1000000 + 1);
		} else {
			timeout_ms = (int)((t_measure_end - t) / 1000000 + 1);
		}
		if (timeout_ms > 100)
			timeout_ms = 100;

		int n = epoll_wait(w->ep, evs, MAX_EVENTS, timeout_ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("epoll_wait");
			exit(1);
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			uint32_t e = evs[i].events;

			if (c->dead)
				continue;
			if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
				on_readable(w, c, stopping);
			else if (e & EPOLLOUT)
				pump_send(w, c, stopping);
		}
	}

	for (long i = 0; i < w->nconns; i++) {
		struct conn *c = &w->conns[i];
		if (c->send_off > c->recv_off)
			*(c->dead ? &w->st.unechoed_on_errors : &w->st.lost) += c->send_off - c->recv_off;
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
	}
	close(w->ep);
	free(evs);
	return NULL;
}

/* ---- server CPU via /proc ---------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Percentile p of the sorted v[0..n-1], in ms. */
static double pct_ms(const uint64_t *v, size_t n, double p)
{
	if (!n)
		return 0.0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[i] / 1e6;
}

static long long proc_cpu_ticks(long pid)
{
	char path[64], buf[4096];
	FILE *f;
	size_t n;
	char *p;
	unsigned long long utime, stime;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* after ")": field 3 (state) ... field 14 utime, 15 stime */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
		return -1;
	return (long long)(utime + stime);
}

/* ---- options ------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen --port P [--host H (127.0.0.1)] [--conns N (1)]\n"
		"               [--mode pingpong|stream] [--size BYTES (64)] [--window BYTES (65536)]\n"
		"               [--duration SECONDS (5)] [--warmup SECONDS (1)] [--threads T (1)]\n"
		"               [--cpu C (-1 = no pinning)] [--server-pid PID] [--json]\n");
	exit(2);
}

static long parse_long(const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
		usage();
	return v;
}

static double parse_double(const char *s, double min, double max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || errno != 0 || !(v >= min) || !(v <= max))
		usage();
	return v;
}

static void parse_args(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "conns", required_argument, NULL, 'c' },
		{ "mode", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 's' },
		{ "window", required_argument, NULL, 'w' },
		{ "duration", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, 'W' },
		{ "threads", required_argument, NULL, 't' },
		{ "cpu", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "server-pid", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	bool have_port = false;

	opt.host = "127.0.0.1";
	opt.conns = 1;
	opt.mode = MODE_PINGPONG;
	opt.size = 64;
	opt.window = 65536;
	opt.duration = 5.0;
	opt.warmup = 1.0;
	opt.threads = 1;
	opt.cpu = -1;
	opt.server_pid = -1;

	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (ch) {
		case 'H': opt.host = optarg; break;
		case 'p': parse_long(optarg, 1, 65535); opt.port = optarg; have_port = true; break;
		case 'c': opt.conns = parse_long(optarg, 1, 1000000); break;
		case 'm':
			if (strcmp(optarg, "pingpong") == 0)
				opt.mode = MODE_PINGPONG;
			else if (strcmp(optarg, "stream") == 0)
				opt.mode = MODE_STREAM;
			else
				usage();
			break;
		case 's': opt.size = parse_long(optarg, 1, RBUF_SIZE); break;
		case 'w': opt.window = parse_long(optarg, 1, 1L << 30); break;
		case 'd': opt.duration = parse_double(optarg, 0.01, 86400); break;
		case 'W': opt.warmup = parse_double(optarg, 0, 86400); break;
		case 't': opt.threads = (int)parse_long(optarg, 1, 256); break;
		case 'C': opt.cpu = (int)parse_long(optarg, -1, CPU_SETSIZE - 1); break;
		case 'j': opt.json = true; break;
		case 'P': opt.server_pid = parse_long(optarg, 1, 1L << 30); break;
		default: usage();
		}
	}
	if (optind != argc || !have_port)
		usage();
	if (opt.threads > opt.conns)
		opt.threads = (int)opt.conns;
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	struct addrinfo hints;
	struct worker *ws;
	struct stats tot;
	long long cpu0 = -1, cpu1 = -1;
	int rc;

	parse_args(argc, argv);
	stream_table_init();
	signal(SIGPIPE, SIG_IGN);

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(opt.host, opt.port, &hints, &target);
	if (rc != 0) {
		fprintf(stderr, "loadgen: getaddrinfo(%s): %s\n", opt.host, gai_strerror(rc));
		return 1;
	}
	if (opt.cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(opt.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			fprintf(stderr, "loadgen: sched_setaffinity(%d): %s\n", opt.cpu, strerror(errno));
	}

	ws = calloc((size_t)opt.threads, sizeof(*ws));
	if (!ws) {
		perror("calloc");
		return 1;
	}
	pthread_barrier_init(&barrier, NULL, (unsigned)opt.threads + 1);
	for (int i = 0; i < opt.threads; i++) {
		struct worker *w = &ws[i];
		w->id = i;
		w->nconns = opt.conns / opt.threads + (i < opt.conns % opt.threads ? 1 : 0);
		w->conns = calloc((size_t)w->nconns, sizeof(*w->conns));
		w->wbuf = malloc((size_t)(opt.size > WBUF_SIZE ? opt.size : WBUF_SIZE) + 8);
		w->rbuf = malloc(RBUF_SIZE);
		w->cbuf = malloc(RBUF_SIZE);
		w->chunk_cap = (unsigned)(opt.window / opt.size + 2);
		if (!w->conns || !w->wbuf || !w->rbuf || !w->cbuf) {
			perror("malloc");
			return 1;
		}
		for (long j = 0; j < w->nconns; j++) {
			struct conn *c = &w->conns[j];
			long global = j * opt.threads + i; /* round-robin index */
			c->fd = -1;
			c->seed = mix64(0x5eedull + (uint64_t)global);
			if (opt.mode == MODE_STREAM) {
				c->chunk_ts = calloc(w->chunk_cap, sizeof(uint64_t));
				if (!c->chunk_ts) {
					perror("calloc");
					return 1;
				}
			}
		}
		if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
			perror("pthread_create");
			return 1;
		}
	}

	uint64_t tc0 = now_ns();
	pthread_barrier_wait(&barrier); /* all connected */
	uint64_t t0 = now_ns();
	double connect_s = (double)(t0 - tc0) / 1e9;
	t_measure_start = t0 + (uint64_t)(opt.warmup * 1e9);
	t_measure_end = t_measure_start + (uint64_t)(opt.duration * 1e9);
	pthread_barrier_wait(&barrier); /* go */

	if (opt.server_pid > 0) {
		sleep_until(t_measure_start);
		cpu0 = proc_cpu_ticks(opt.server_pid);
		sleep_until(t_measure_end);
		cpu1 = proc_cpu_ticks(opt.server_pid);
	}

	memset(&tot, 0, sizeof(tot));
	for (int i = 0; i < opt.threads; i++) {
		struct worker *w = &ws[i];
		pthread_join(w->tid, NULL);
		tot.requests += w->st.requests;
		tot.bytes_sent += w->st.bytes_sent;
		tot.bytes_verified += w->st.bytes_verified;
		tot.mismatches += w->st.mismatches;
		tot.lost += w->st.lost;
		tot.unechoed_on_errors += w->st.unechoed_on_errors;
		tot.errors += w->st.errors;
		tot.connect_failures += w->st.connect_failures;
		tot.connected += w->st.connected;
		for (unsigned b = 0; b < HIST_BUCKETS; b++)
			tot.hist.b[b] += w->st.hist.b[b];
	}

	/* the longest wait each connection saw, across connections */
	uint64_t *gaps = calloc((size_t)opt.conns + 1, sizeof(uint64_t));
	size_t ngaps = 0;
	for (int i = 0; gaps && i < opt.threads; i++)
		for (long j = 0; j < ws[i].nconns; j++)
			gaps[ngaps++] = ws[i].conns[j].max_gap;
	if (gaps)
		qsort(gaps, ngaps, sizeof(*gaps), cmp_u64);
	double gap50 = gaps ? pct_ms(gaps, ngaps, 0.50) : 0, gap90 = gaps ? pct_ms(gaps, ngaps, 0.90) : 0;
	double gap99 = gaps ? pct_ms(gaps, ngaps, 0.99) : 0, gapmax = gaps ? pct_ms(gaps, ngaps, 1.0) : 0;
	free(gaps);

	double rps = (double)tot.requests / opt.duration;
	double p50 = hist_pct(&tot.hist, tot.requests, 0.50) / 1000.0;
	double p99 = hist_pct(&tot.hist, tot.requests, 0.99) / 1000.0;
	const char *mode = opt.mode == MODE_PINGPONG ? "pingpong" : "stream";
	bool have_cpu = opt.server_pid > 0 && cpu0 >= 0 && cpu1 >= 0;
	double cpu_us = 0, cpu_per_req = 0;
	if (have_cpu) {
		cpu_us = (double)(cpu1 - cpu0) * 1e6 / (double)sysconf(_SC_CLK_TCK);
		cpu_per_req = tot.requests ? cpu_us / (double)tot.requests : 0.0;
	} else if (opt.server_pid > 0) {
		fprintf(stderr, "loadgen: cannot read /proc/%ld/stat\n", opt.server_pid);
		tot.errors++;
	}
	fprintf(stderr, "loadgen: connected %" PRIu64 "/%ld in %.3f s\n", tot.connected, opt.conns, connect_s);

	if (opt.json) {
		printf("{\"mode\":\"%s\",\"conns\":%ld,\"size\":%ld,\"duration_s\":%.2f,"
		       "\"requests\":%" PRIu64 ",\"req_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
		       "\"bytes_sent\":%" PRIu64 ",\"bytes_verified\":%" PRIu64 ",\"mismatches\":%" PRIu64
		       ",\"lost\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"unechoed_on_errors\":%" PRIu64
		       ",\"connect_failures\":%" PRIu64,
		       mode, opt.conns, opt.size, opt.duration, tot.requests, rps, p50, p99,
		       tot.bytes_sent, tot.bytes_verified, tot.mismatches, tot.lost, tot.errors,
		       tot.unechoed_on_errors, tot.connect_failures);
		printf(",\"gap_p50_ms\":%.1f,\"gap_p90_ms\":%.1f,\"gap_p99_ms\":%.1f,\"gap_max_ms\":%.1f",
		       gap50, gap90, gap99, gapmax);
		if (have_cpu)
			printf(",\"server_cpu_us\":%.0f,\"server_cpu_us_per_req\":%.4f", cpu_us, cpu_per_req);
		printf("}\n");
	} else {
		printf("mode=%s conns=%ld size=%ld duration_s=%.2f requests=%" PRIu64
		       " req_per_s=%.1f p50_us=%.1f p99_us=%.1f bytes_sent=%" PRIu64
		       " bytes_verified=%" PRIu64 " mismatches=%" PRIu64 " lost=%" PRIu64
		       " errors=%" PRIu64 " unechoed_on_errors=%" PRIu64 " connect_failures=%" PRIu64,
		       mode, opt.conns, opt.size, opt.duration, tot.requests, rps, p50, p99,
		       tot.bytes_sent, tot.bytes_verified, tot.mismatches, tot.lost, tot.errors,
		       tot.unechoed_on_errors, tot.connect_failures);
		printf(" gap_p50_ms=%.1f gap_p90_ms=%.1f gap_p99_ms=%.1f gap_max_ms=%.1f", gap50, gap90,
		       gap99, gapmax);
		if (have_cpu)
			printf(" server_cpu_us=%.0f server_cpu_us_per_req=%.4f", cpu_us, cpu_per_req);
		printf("\n");
	}
	fflush(stdout);

	bool ok = tot.mismatches == 0 && tot.lost == 0 && tot.errors == 0 &&
		  tot.connect_failures == 0 && tot.connected == (uint64_t)opt.conns;
	return ok ? 0 : 1;
}
