/*
 * echo_epoll: raw epoll echo server, the readiness-based baseline for vigil.
 *
 * Design (one thread):
 *  - LEVEL-triggered epoll.  A connection is registered for EPOLLIN; on each
 *    readiness event it gets one read() into a 64 KiB loop buffer and one
 *    write() of what was read (level triggering reports it again if more
 *    data is left, which keeps connections fair).
 *  - If the write is partial (or EAGAIN), the unsent rest is copied into a
 *    per-connection backlog and the interest set is switched to EPOLLOUT
 *    only: the connection is not read again until the backlog is flushed,
 *    so memory stays bounded at one 64 KiB backlog per connection.
 *  - Non-blocking sockets; the listener is drained with an accept4 loop.
 *  - SIGINT/SIGTERM arrive through a signalfd registered in the same epoll.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "bench_common.h"

#define RBUF (64 * 1024)
#define MAX_EVENTS 1024

struct conn {
	char *backlog;   /* unsent bytes (NULL when none) */
	uint32_t off, len;
};

static struct conn *conns;
static long maxfds;
static int ep;
static char rbuf[RBUF];

static void close_conn(int fd)
{
	struct conn *c = &conns[fd];

	free(c->backlog);
	c->backlog = NULL;
	c->off = c->len = 0;
	close(fd); /* also removes it from the epoll set */
}

static void set_interest(int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };

	if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0)
		close_conn(fd);
}

static void do_accept(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				fprintf(stderr, "echo_epoll: accept4: %s\n", strerror(errno));
			return;
		}
		if (fd >= maxfds) {
			close(fd);
			continue;
		}
		bench_nodelay(fd);
		ev.events = EPOLLIN;
		ev.data.fd = fd;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			fprintf(stderr, "echo_epoll: epoll_ctl add: %s\n", strerror(errno));
			close(fd);
		}
	}
}

/* Flush the backlog; returns true when it is empty again. */
static bool flush_backlog(int fd)
{
	struct conn *c = &conns[fd];

	while (c->off < c->len) {
		ssize_t w = write(fd, c->backlog + c->off, c->len - c->off);

		if (w > 0) {
			c->off += (uint32_t)w;
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return false;
		} else {
			close_conn(fd);
			return false;
		}
	}
	free(c->backlog);
	c->backlog = NULL;
	c->off = c->len = 0;
	set_interest(fd, EPOLLIN);
	return true;
}

static void on_readable(int fd)
{
	struct conn *c = &conns[fd];
	ssize_t n, w;

	do
		n = read(fd, rbuf, sizeof(rbuf));
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		close_conn(fd);
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			close_conn(fd);
		return;
	}
	do
		w = write(fd, rbuf, (size_t)n);
	while (w < 0 && errno == EINTR);
	if (w < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			close_conn(fd);
			return;
		}
		w = 0;
	}
	if (w < n) {
		c->backlog = malloc((size_t)(n - w));
		if (!c->backlog) {
			close_conn(fd);
			return;
		}
		memcpy(c->backlog, rbuf + w, (size_t)(n - w));
		c->off = 0;
		c->len = (uint32_t)(n - w);
		set_interest(fd, EPOLLOUT);
	}
}

int main(int argc, char **argv)
{
	struct bench_server_opts opts;
	struct epoll_event ev, events[MAX_EVENTS];
	int lfd, sfd;
	bool stopping = false;

	bench_server_parse(argc, argv, &opts);
	maxfds = bench_raise_nofile();
	conns = calloc((size_t)maxfds, sizeof(*conns));
	if (!conns) {
		perror("calloc");
		return 1;
	}
	sfd = bench_signalfd(SFD_NONBLOCK);
	lfd = bench_listen("echo_epoll", &opts, 1);

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		perror("epoll_create1");
		return 1;
	}
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.events = EPOLLIN;
	ev.data.fd = sfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

	while (!stopping) {
		int n = epoll_wait(ep, events, MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;
			uint32_t e = events[i].events;

			if (fd == lfd) {
				do_accept(lfd);
			} else if (fd == sfd) {
				struct signalfd_siginfo si;
				if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
					stopping = true;
			} else if (conns[fd].backlog) {
				if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
					flush_backlog(fd);
			} else if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
				on_readable(fd);
			}
		}
	}

	for (long fd = 0; fd < maxfds; fd++)
		if (conns[fd].backlog)
			free(conns[fd].backlog);
	close(lfd);
	close(ep);
	return 0;
}
