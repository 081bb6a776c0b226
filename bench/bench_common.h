/* Small helpers shared by the baseline echo servers (header-only). */
#ifndef VIGIL_BENCH_COMMON_H
#define VIGIL_BENCH_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BENCH_LISTEN_BACKLOG 4096

/* Raise the RLIMIT_NOFILE soft limit to the hard limit; return the new soft limit. */
static inline long bench_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 1024;
	if (rl.rlim_cur != rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 20))
		return 1L << 20;
	return (long)rl.rlim_cur;
}

struct bench_server_opts {
	const char *host;
	const char *port;
};

static inline void bench_server_usage(const char *prog)
{
	fprintf(stderr, "usage: %s [--host H (default 127.0.0.1)] [--port P (0 = ephemeral)]\n", prog);
}

/* Parse --host/--port; exits 2 on a bad flag. */
static inline void bench_server_parse(int argc, char **argv, struct bench_server_opts *o)
{
	static const struct option lopts[] = {
		{ "host", required_argument, NULL, 'h' },
		{ "port", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, '?' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->host = "127.0.0.1";
	o->port = "0";
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			o->host = optarg;
			break;
		case 'p': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || v < 0 || v > 65535) {
				bench_server_usage(argv[0]);
				exit(2);
			}
			o->port = optarg;
			break;
		}
		default:
			bench_server_usage(argv[0]);
			exit(2);
		}
	}
	if (optind != argc) {
		bench_server_usage(argv[0]);
		exit(2);
	}
}

/*
 * Create a listening TCP socket bound to host:port, print
 * "<name> listening on HOST:PORT" as the first stdout line and flush it.
 * `nonblock` selects O_NONBLOCK for the listener.
 */
static inline int bench_listen(const char *name, const struct bench_server_opts *o, int nonblock)
{
	struct addrinfo hints, *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char hbuf[INET6_ADDRSTRLEN];
	int fd = -1, one = 1, rc, port;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(o->host, o->port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "%s: getaddrinfo(%s): %s\n", name, o->host, gai_strerror(rc));
		exit(1);
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, BENCH_LISTEN_BACKLOG) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		fprintf(stderr, "%s: cannot listen on %s:%s: %s\n", name, o->host, o->port, strerror(errno));
		exit(1);
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
		perror("getsockname");
		exit(1);
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, hbuf, sizeof(hbuf));
		port = ntohs(s6->sin6_port);
		printf("%s listening on [%s]:%d\n", name, hbuf, port);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &s4->sin_addr, hbuf, sizeof(hbuf));
		port = ntohs(s4->sin_port);
		printf("%s listening on %s:%d\n", name, hbuf, port);
	}
	fflush(stdout);
	return fd;
}

/* Block SIGINT/SIGTERM and return a signalfd that becomes readable on either. */
static inline int bench_signalfd(int flags)
{
	sigset_t set;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
		perror("sigprocmask");
		exit(1);
	}
	fd = signalfd(-1, &set, SFD_CLOEXEC | flags);
	if (fd < 0) {
		perror("signalfd");
		exit(1);
	}
	return fd;
}

static inline void bench_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

#endif
