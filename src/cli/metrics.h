/*
 * metrics.h: counters and histograms of running loops in the Prometheus text
 * format (version 0.0.4), served over HTTP on 127.0.0.1 by a loop of its own
 * on a thread of its own: a scrape never runs on, or waits for, a served loop.
 */
#ifndef VIGIL_CLI_METRICS_H
#define VIGIL_CLI_METRICS_H

#include <stdint.h>

#include "vigil.h"

/* What vigil serve counts per loop, beside the loop's own stats. Written by
 * the loop's thread, read here: relaxed atomics. bytes: received, as the
 * receive callbacks get them; sent: as handed to vigil_conn_send (queued:
 * what a connection that breaks had not sent yet is counted too). */
typedef struct serve_counters {
    _Atomic uint64_t accepted, bytes, requests, sent;
} serve_counters;

typedef struct metrics_loop {
    vigil_loop *loop;
    const serve_counters *counters; /* may be NULL */
} metrics_loop;

typedef struct metrics_config {
    uint16_t port;                /* on 127.0.0.1; 0 = any free port */
    const metrics_loop *loops;    /* copied */
    uint32_t nloops;
    vigil_supervisor *supervisor; /* may be NULL */
    uint32_t stall_ms;            /* the supervisor's, for the detection buckets */
    uint32_t request_ms;          /* a scrape request must arrive whole within this */
} metrics_config;

typedef struct metrics_server metrics_server;

/* The exposition's media type: the text format, version 0.0.4, in UTF-8. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Starts serving. Returns 0 or -errno (-EADDRINUSE, ...). */
int metrics_start(const metrics_config *cfg, metrics_server **out);
/* The bound port. */
int metrics_port(const metrics_server *m);
/* Stops and frees (NULL: nothing). The loops it reads must outlive this. */
void metrics_stop(metrics_server *m);

/* Renders the exposition into a malloc'd, NUL-terminated string (*len bytes). */
char *metrics_render(const metrics_config *cfg, size_t *len);

#endif
