/*
 * echo_libevent: single-threaded TCP echo server on libevent 2.1, a peer for
 * `vigil bench --compare`.
 *
 * Which libevent API, and why: libevent offers two ways to write this.
 *  - bufferevents (bufferevent_socket_new, a read callback doing
 *    evbuffer_add_buffer(output, input)): the book's echo example.  It is
 *    the convenient one, but a bufferevent never writes from the read
 *    callback: adding to its output buffer only arms the write event, so
 *    every echo costs an epoll_ctl to add EPOLLOUT, another pass of the
 *    loop for the writable event, the write, and an epoll_ctl to remove
 *    EPOLLOUT again, on top of the evbuffer chain bookkeeping.
 *  - the event API (event_new/event_add with EV_READ|EV_PERSIST, read()
 *    and write() in the callback): what performance-minded libevent users
 *    such as memcached do.  One read and one write per readiness event, no
 *    epoll_ctl on the fast path.
 * This server uses the event API, so it measures libevent's dispatch (its
 * epoll backend, event queue and callbacks) around the same syscalls as
 * echo_epoll, not bufferevent's extra round of the loop.
 *
 * Design:
 *  - an event_base created with EVENT_BASE_FLAG_NOLOCK (one thread, no
 *    locking), whichever backend libevent picks (epoll on Linux), level
 *    triggered; an evconnlistener (it drains the backlog with accept4 in a
 *    loop) on the socket from bench_listen;
 *  - per connection a persistent read event: one read() into a 64 KiB
 *    buffer shared by all connections, one write() of it;
 *  - a partial write (or EAGAIN) copies the rest into a per-connection
 *    backlog, removes the read event and adds a persistent write event: the
 *    connection is not read until the backlog is flushed, so a peer that
 *    does not read costs at most one 64 KiB backlog (as in echo_epoll);
 *  - TCP_NODELAY on accepted sockets; SIGINT/SIGTERM through evsignal
 *    events: loop exits, every connection is closed, exit 0.
 * Command line and first stdout line as echo_epoll (bench_common.h).
 */
#include <event2/event.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <stdint.h>

#include "bench_common.h"

#define RBUF (64 * 1024)

struct conn {
	int fd;
	struct event *rev, *wev; /* event_new'ed (event_struct.h is discouraged) */
	char *backlog; /* unsent bytes (NULL when none) */
	uint32_t off, len;
};

static struct event_base *base;
static struct conn **conns; /* by fd */
static long maxfds;
static char rbuf[RBUF];
static unsigned long accepted;

static void close_conn(struct conn *c)
{
	if (c->rev)
		event_free(c->rev); /* event_free deletes it first */
	if (c->wev)
		event_free(c->wev);
	conns[c->fd] = NULL;
	close(c->fd);
	free(c->backlog);
	free(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	while (c->off < c->len) {
		ssize_t w = write(c->fd, c->backlog + c->off, c->len - c->off);

		if (w > 0) {
			c->off += (uint32_t)w;
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return;
		} else {
			close_conn(c);
			return;
		}
	}
	free(c->backlog);
	c->backlog = NULL;
	c->off = c->len = 0;
	event_del(c->wev);
	if (event_add(c->rev, NULL) != 0)
		close_conn(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	ssize_t n, w;

	(void)what;
	do
		n = read(fd, rbuf, sizeof(rbuf));
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		close_conn(c);
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			close_conn(c);
		return;
	}
	do
		w = write(fd, rbuf, (size_t)n);
	while (w < 0 && errno == EINTR);
	if (w < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			close_conn(c);
			return;
		}
		w = 0;
	}
	if (w < n) {
		c->backlog = malloc((size_t)(n - w));
		if (!c->backlog) {
			close_conn(c);
			return;
		}
		memcpy(c->backlog, rbuf + w, (size_t)(n - w));
		c->off = 0;
		c->len = (uint32_t)(n - w);
		event_del(c->rev);
		if (event_add(c->wev, NULL) != 0)
			close_conn(c);
	}
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct conn *c;

	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	if (fd >= maxfds || !(c = calloc(1, sizeof(*c)))) {
		close(fd);
		return;
	}
	accepted++;
	bench_nodelay(fd);
	c->fd = fd;
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, c);
	c->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_writable, c);
	conns[fd] = c;
	if (!c->rev || !c->wev || event_add(c->rev, NULL) != 0)
		close_conn(c);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	(void)arg;
	/* EMFILE and the like: report and keep going, as echo_epoll does. */
	fprintf(stderr, "echo_libevent: accept: %s\n",
		evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
	struct bench_server_opts opts;
	struct event_config *cfg;
	struct evconnlistener *lst;
	struct event *sigint_ev, *sigterm_ev;
	int lfd;

	bench_server_parse(argc, argv, &opts);
	maxfds = bench_raise_nofile();
	conns = calloc((size_t)maxfds, sizeof(*conns));
	if (!conns) {
		perror("calloc");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);

	cfg = event_config_new();
	if (!cfg) {
		fprintf(stderr, "echo_libevent: event_config_new failed\n");
		return 1;
	}
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (!base) {
		fprintf(stderr, "echo_libevent: event_base_new failed\n");
		return 1;
	}
	/* Signal events before the first stdout line, so a SIGINT sent as soon
	 * as the port is read is never lost. */
	sigint_ev = evsignal_new(base, SIGINT, on_signal, NULL);
	sigterm_ev = evsignal_new(base, SIGTERM, on_signal, NULL);
	if (!sigint_ev || !sigterm_ev || evsignal_add(sigint_ev, NULL) != 0 ||
	    evsignal_add(sigterm_ev, NULL) != 0) {
		fprintf(stderr, "echo_libevent: cannot install signal events\n");
		return 1;
	}

	lfd = bench_listen("echo_libevent", &opts, 1);
	/* backlog 0: the socket already listens with BENCH_LISTEN_BACKLOG (-1
	 * would call listen(fd, 128) again and shrink the queue: SYNs dropped). */
	lst = evconnlistener_new(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
				 0, lfd);
	if (!lst) {
		fprintf(stderr, "echo_libevent: evconnlistener_new failed\n");
		return 1;
	}
	evconnlistener_set_error_cb(lst, on_accept_error);

	if (event_base_dispatch(base) < 0) {
		fprintf(stderr, "echo_libevent: event_base_dispatch failed\n");
		return 1;
	}

	evconnlistener_free(lst);
	for (long fd = 0; fd < maxfds; fd++)
		if (conns[fd])
			close_conn(conns[fd]);
	event_free(sigint_ev);
	event_free(sigterm_ev);
	fprintf(stderr, "echo_libevent: stopped; %lu connections accepted (libevent %s, %s)\n",
		accepted, event_get_version(), event_base_get_method(base));
	event_base_free(base);
	free(conns);
	return 0;
}
