/*
 * loadgen: command-line wrapper over the load generator in src/cli/load.c
 * (epoll client threads, every echoed byte checked; the comment at the top
 * of load.c explains modes, gaps and the latency histogram).
 *
 * Prints one line, key=value (or one JSON object with --json), that
 * the bench/ scripts and bench/README.md parse: keep its keys, order and format.
 * Exit status 0 only if no byte mismatched or was lost, no connection
 * failed and every connection connected; 2 for bad flags.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

#define MAX_SIZE (256 * 1024)

struct options {
	const char *host;
	long port;
	long conns;
	load_mode mode;
	long size;
	long window;
	double duration;
	double warmup;
	int threads;
	int cpu;
	bool json;
	long server_pid;
};

static struct options opt;

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
	opt.mode = LOAD_PINGPONG;
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
		case 'p': opt.port = parse_long(optarg, 1, 65535); have_port = true; break;
		case 'c': opt.conns = parse_long(optarg, 1, 1000000); break;
		case 'm':
			if (strcmp(optarg, "pingpong") == 0)
				opt.mode = LOAD_PINGPONG;
			else if (strcmp(optarg, "stream") == 0)
				opt.mode = LOAD_STREAM;
			else
				usage();
			break;
		case 's': opt.size = parse_long(optarg, 1, MAX_SIZE); break;
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
	load_config cfg;
	load_result r;
	int rc;

	parse_args(argc, argv);
	if (opt.cpu >= 0) {
		/* load_run pins its threads; the main thread only samples /proc, pinned as before */
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(opt.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			fprintf(stderr, "loadgen: sched_setaffinity(%d): %s\n", opt.cpu, strerror(errno));
	}

	memset(&cfg, 0, sizeof(cfg));
	cfg.host = opt.host;
	cfg.port = (uint16_t)opt.port;
	cfg.conns = opt.conns;
	cfg.mode = opt.mode;
	cfg.size = opt.size;
	/* a window below one chunk always meant one chunk in flight; load.h wants window >= size */
	cfg.window = opt.window < opt.size ? opt.size : opt.window;
	cfg.duration_s = opt.duration;
	cfg.warmup_s = opt.warmup;
	cfg.threads = opt.threads;
	cfg.cpu = opt.cpu;
	cfg.server_pid = opt.server_pid;

	rc = load_run(&cfg, &r);
	if (r.cpu_pin_errno)
		fprintf(stderr, "loadgen: sched_setaffinity(%d): %s\n", opt.cpu, strerror(r.cpu_pin_errno));
	/* every connect failing still gets its line (connected=0 makes the status 1) */
	if (rc != 0 && rc != -ECONNREFUSED) {
		fprintf(stderr, "loadgen: %s\n", r.error);
		load_result_free(&r);
		return 1;
	}
	if (rc != 0)
		fprintf(stderr, "loadgen: %s\n", r.error);

	const char *mode = opt.mode == LOAD_PINGPONG ? "pingpong" : "stream";
	bool have_cpu = r.have_cpu;
	if (!have_cpu && opt.server_pid > 0 && rc == 0) {
		fprintf(stderr, "loadgen: cannot read /proc/%ld/stat\n", opt.server_pid);
		r.errors++;
	}
	fprintf(stderr, "loadgen: connected %" PRIu64 "/%ld in %.3f s\n", r.connected, opt.conns,
		r.connect_s);

	if (opt.json) {
		printf("{\"mode\":\"%s\",\"conns\":%ld,\"size\":%ld,\"duration_s\":%.2f,"
		       "\"requests\":%" PRIu64 ",\"req_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
		       "\"bytes_sent\":%" PRIu64 ",\"bytes_verified\":%" PRIu64 ",\"mismatches\":%" PRIu64
		       ",\"lost\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"unechoed_on_errors\":%" PRIu64
		       ",\"connect_failures\":%" PRIu64,
		       mode, opt.conns, opt.size, opt.duration, r.requests, r.req_per_s, r.p50_us,
		       r.p99_us, r.bytes_sent, r.bytes_verified, r.mismatches, r.lost, r.errors,
		       r.unechoed_on_errors, r.connect_failures);
		printf(",\"gap_p50_ms\":%.1f,\"gap_p90_ms\":%.1f,\"gap_p99_ms\":%.1f,\"gap_max_ms\":%.1f",
		       r.gap_p50_ms, r.gap_p90_ms, r.gap_p99_ms, r.gap_max_ms);
		if (have_cpu)
			printf(",\"server_cpu_us\":%.0f,\"server_cpu_us_per_req\":%.4f", r.server_cpu_us,
			       r.server_cpu_us_per_req);
		printf("}\n");
	} else {
		printf("mode=%s conns=%ld size=%ld duration_s=%.2f requests=%" PRIu64
		       " req_per_s=%.1f p50_us=%.1f p99_us=%.1f bytes_sent=%" PRIu64
		       " bytes_verified=%" PRIu64 " mismatches=%" PRIu64 " lost=%" PRIu64
		       " errors=%" PRIu64 " unechoed_on_errors=%" PRIu64 " connect_failures=%" PRIu64,
		       mode, opt.conns, opt.size, opt.duration, r.requests, r.req_per_s, r.p50_us,
		       r.p99_us, r.bytes_sent, r.bytes_verified, r.mismatches, r.lost, r.errors,
		       r.unechoed_on_errors, r.connect_failures);
		printf(" gap_p50_ms=%.1f gap_p90_ms=%.1f gap_p99_ms=%.1f gap_max_ms=%.1f", r.gap_p50_ms,
		       r.gap_p90_ms, r.gap_p99_ms, r.gap_max_ms);
		if (have_cpu)
			printf(" server_cpu_us=%.0f server_cpu_us_per_req=%.4f", r.server_cpu_us,
			       r.server_cpu_us_per_req);
		printf("\n");
	}
	fflush(stdout);

	bool ok = rc == 0 && r.mismatches == 0 && r.lost == 0 && r.errors == 0 &&
		  r.connect_failures == 0 && r.connected == (uint64_t)opt.conns;
	load_result_free(&r);
	return ok ? 0 : 1;
}
