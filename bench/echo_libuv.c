/*
 * echo_libuv: single-threaded TCP echo server on libuv, a peer for
 * `vigil bench --compare`.
 *
 * Written the way libuv's documentation and its own benchmarks
 * (test/benchmark-pump.c, test/echo-server.c) do it:
 *  - one uv_loop (uv_default_loop), one uv_tcp_t listener, uv_listen with
 *    the shared backlog, uv_accept in the connection callback;
 *  - uv_read_start with an alloc callback.  The callback hands out one
 *    static 64 KiB buffer shared by all connections (the docs allow any
 *    buffer; libuv reads into it and calls the read callback at once, before
 *    any other read), so an idle connection holds no buffer;
 *  - on each read, uv_try_write first: on loopback the whole echo almost
 *    always goes out at once, with no write request, no copy and no
 *    callback.  Only an unsent rest is copied into a buffer of the
 *    connection and queued with uv_write (one write request), and reading
 *    is stopped (uv_read_stop) until its write callback says it is flushed,
 *    then restarted.  So a connection holds at most one backlog of up to
 *    64 KiB and one request whatever its peer does (bounded memory, like
 *    echo_epoll's backlog), and a peer that does not read is not read from.
 *    (uv_write alone, one request and one copy per read, is what the
 *    simplest libuv examples do; uv_try_write first is the fast path libuv
 *    offers for this and costs nothing when the socket is writable.)
 *  - TCP_NODELAY (uv_tcp_nodelay) on accepted sockets;
 *  - SIGINT/SIGTERM via uv_signal_t: close every handle, let uv_run drain,
 *    exit 0.
 * Command line and first stdout line as echo_epoll (bench_common.h): the
 * listening socket is made by bench_listen and handed to uv_tcp_open.
 */
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "bench_common.h"

#define RBUF (64 * 1024)

struct conn {
	uv_tcp_t tcp;         /* first: the handle's address is the conn's */
	uv_write_t wreq;      /* the one write in flight (when backlog) */
	char *backlog;        /* unsent rest, owned by wreq; NULL when none */
};

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sigint_h, sigterm_h;
static bool stopping;
static char rbuf[RBUF];
static unsigned long accepted;

static void on_close(uv_handle_t *h)
{
	struct conn *c = (struct conn *)h; /* struct conn starts with its uv_tcp_t */

	free(c->backlog);
	free(c);
}

static void close_conn(struct conn *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	*buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
	struct conn *c = req->data;

	free(c->backlog);
	c->backlog = NULL;
	if (status < 0 || stopping) {
		close_conn(c);
		return;
	}
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		close_conn(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct conn *c = (struct conn *)s;
	uv_buf_t wb;
	int w;

	if (n == 0) /* EAGAIN */
		return;
	if (n < 0) { /* UV_EOF or an error */
		close_conn(c);
		return;
	}
	wb = uv_buf_init(buf->base, (unsigned int)n);
	w = uv_try_write(s, &wb, 1);
	if (w == n)
		return;
	if (w < 0) {
		if (w != UV_EAGAIN) {
			close_conn(c);
			return;
		}
		w = 0;
	}
	/* Queue the rest from a copy (rbuf is reused by the next read) and
	 * stop reading until it is flushed: one backlog per connection. */
	c->backlog = malloc((size_t)(n - w));
	if (!c->backlog) {
		close_conn(c);
		return;
	}
	memcpy(c->backlog, buf->base + w, (size_t)(n - w));
	wb = uv_buf_init(c->backlog, (unsigned int)(n - w));
	uv_read_stop(s);
	c->wreq.data = c;
	if (uv_write(&c->wreq, s, &wb, 1, on_write) != 0)
		close_conn(c); /* on_close frees the backlog */
}

static void on_connection(uv_stream_t *srv, int status)
{
	struct conn *c;

	if (status < 0) {
		fprintf(stderr, "echo_libuv: listen: %s\n", uv_strerror(status));
		return;
	}
	c = malloc(sizeof(*c));
	if (!c) {
		fprintf(stderr, "echo_libuv: out of memory\n");
		exit(1);
	}
	c->backlog = NULL;
	uv_tcp_init(loop, &c->tcp);
	if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
		uv_close((uv_handle_t *)&c->tcp, on_close);
		return;
	}
	accepted++;
	uv_tcp_nodelay(&c->tcp, 1);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		close_conn(c);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (uv_is_closing(h))
		return;
	if (h->type == UV_TCP && h != (uv_handle_t *)&server)
		uv_close(h, on_close);
	else
		uv_close(h, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
	(void)h;
	(void)signum;
	if (stopping)
		return;
	stopping = true;
	/* Closing a handle cancels its pending writes (their callbacks run
	 * with UV_ECANCELED before the close callback). */
	uv_walk(loop, close_walk, NULL);
}

int main(int argc, char **argv)
{
	struct bench_server_opts opts;
	int lfd, rc;

	bench_server_parse(argc, argv, &opts);
	bench_raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	loop = uv_default_loop();

	/* Signal handlers before the first stdout line, so a SIGINT sent as
	 * soon as the port is read is never lost. */
	uv_signal_init(loop, &sigint_h);
	uv_signal_init(loop, &sigterm_h);
	uv_signal_start(&sigint_h, on_signal, SIGINT);
	uv_signal_start(&sigterm_h, on_signal, SIGTERM);

	lfd = bench_listen("echo_libuv", &opts, 1);
	uv_tcp_init(loop, &server);
	rc = uv_tcp_open(&server, lfd);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&server, BENCH_LISTEN_BACKLOG, on_connection);
	if (rc != 0) {
		fprintf(stderr, "echo_libuv: %s\n", uv_strerror(rc));
		return 1;
	}

	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	fprintf(stderr, "echo_libuv: stopped; %lu connections accepted (libuv %s)\n", accepted,
		uv_version_string());
	return 0;
}
