/*
 * supervised: an echo server whose loop a supervisor watches and rebuilds.
 *
 *   supervised [PORT]      (PORT 0 or none: any free port)
 *
 * Echoes every byte. A client that sends the line "stall" simulates a bug:
 * after echoing it, the callback spins for 1.5 s without returning. The
 * supervisor sees the loop make no progress for STALL_MS, reports it (one
 * line on stderr with "stall"), fences the stuck thread and rebuilds the loop
 * on a new thread, carrying every connection over; other clients keep being
 * echoed meanwhile. main() is the README's: vigil_serve runs the loop until
 * SIGINT or SIGTERM, and the exit status says whether a callback never came
 * back (3).
 */
/* clock_gettime and CLOCK_MONOTONIC are POSIX: not in strict C11. */
#define _POSIX_C_SOURCE 200809L
#include <vigil.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define STALL_MS 100   /* no progress this long: a stall (report, then fence) */
#define SPIN_MS 1500   /* the simulated bug */
#define GRACE_MS 3000  /* a fenced callback that returns within this keeps its client */

/* Per connection: how much of "stall\n" the current line has matched (-1: it
 * is some other line). */
struct echo { int m; };

static void die(const char *what, int err) {
    fprintf(stderr, "supervised: %s: %s\n", what, vigil_strerror(err));
    exit(1);
}

static void spin(int ms) {
    /* The C library's clock, not vigil_now_ns: once fenced, this thread must
     * stay away from vigil (each call would fail -EOWNERDEAD). */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 < ms);
}

static void on_close(vigil_loop *loop, vigil_conn conn, int status, void *ud) { free(ud); }

static void on_recv(vigil_loop *loop, vigil_conn conn, int status, const vigil_buf *buf,
                    void *ud) {
    struct echo *e = ud;
    if (status <= 0) { /* final. -EOWNERDEAD: reset after a stall past the grace */
        if (status < 0 && status != -ECANCELED)
            fprintf(stderr, "supervised: conn %#llx: %s\n", (unsigned long long)conn.id,
                    vigil_strerror(status));
        int rc = vigil_conn_close(loop, conn, 1000, on_close, e);
        if (rc < 0) /* then no close callback comes (also in destroy: -ECANCELED) */
            free(e);
        return;
    }
    /* Echo first: a call made after the fence would be refused. */
    int rc = vigil_conn_send(loop, conn, buf->data, buf->len, 0, NULL, NULL, NULL);
    if (rc < 0) {
        fprintf(stderr, "supervised: send: %s\n", vigil_strerror(rc));
        return; /* the stream broke: the receive's final callback follows */
    }
    int stall = 0;
    for (size_t i = 0; i < buf->len; i++) {
        char ch = (char)buf->data[i];
        if (e->m >= 0 && ch == "stall\n"[e->m])
            e->m++;
        else
            e->m = ch == '\n' ? 0 : -1;
        if (e->m == 6)
            stall = 1, e->m = 0;
    }
    if (stall) {
        fprintf(stderr, "supervised: conn %#llx asked for a stall: spinning %d ms\n",
                (unsigned long long)conn.id, SPIN_MS);
        spin(SPIN_MS);
        fprintf(stderr, "supervised: the stalled callback returned\n");
    }
}

static void on_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn conn, void *ud) {
    if (status < 0) {
        if (status != -ECANCELED)
            fprintf(stderr, "supervised: accept: %s\n", vigil_strerror(status));
        return;
    }
    struct echo *e = calloc(1, sizeof *e);
    int rc = e ? vigil_conn_recv_start(loop, conn, 0, on_recv, e, NULL) : -ENOMEM;
    if (rc < 0) {
        fprintf(stderr, "supervised: new connection: %s\n", vigil_strerror(rc));
        free(e);
        vigil_conn_abort(loop, conn, NULL, NULL);
    }
}

static int start_echo(vigil_loop *loop, uint16_t port) {
    vigil_listener l;
    vigil_listener_options lo = {.host = "127.0.0.1", .port = port};
    int rc = vigil_listener_open(loop, &lo, on_accept, NULL, &l);
    if (rc < 0 || (rc = vigil_listener_get_port(loop, l)) < 0)
        return rc;
    printf("listening on 127.0.0.1:%d\n", rc);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    long port = 0;
    char *end = NULL;
    if (argc > 2 || (argc == 2 && ((port = strtol(argv[1], &end, 10)) < 0 || port > 65535 ||
                                   *end || !*argv[1]))) {
        fprintf(stderr, "usage: supervised [PORT]\n  PORT: TCP port on 127.0.0.1 (0 or none: any)\n"
                        "  a client line \"stall\" makes its callback spin %d ms\n", SPIN_MS);
        return 2;
    }
    vigil_loop *loop;
    vigil_supervisor *sv;
    /* SUPERVISED: a backend that can be rebuilt exactly. INDEPENDENT_CALLBACKS:
     * our connections share no state, so the others' callbacks may run on the
     * rebuilt thread while the stuck one still spins; without it they would
     * wait (the "gate") until it returned, served late but in order. */
    vigil_loop_options lo = {.flags = VIGIL_LOOP_SUPERVISED | VIGIL_LOOP_INDEPENDENT_CALLBACKS};
    vigil_supervisor_options so = {.stall_ms = STALL_MS, .grace_ms = GRACE_MS};
    int rc;
    if ((rc = vigil_loop_create(&loop, &lo)) < 0)
        die("vigil_loop_create", rc);
    if ((rc = vigil_supervisor_start(&sv, &so)) < 0) /* log: stderr */
        die("vigil_supervisor_start", rc);
    if ((rc = vigil_supervisor_add(sv, loop)) < 0)
        die("vigil_supervisor_add", rc);
    if ((rc = start_echo(loop, (uint16_t)port)) < 0)
        die("listen", rc);

    /* Runs the loop on a thread of vigil's until SIGINT or SIGTERM. */
    int end_rc = vigil_serve(&loop, 1, &(vigil_serve_options){.stop_ms = 1000});
    if ((rc = vigil_supervisor_remove(sv, loop)) < 0)
        die("vigil_supervisor_remove", rc);
    if ((rc = vigil_supervisor_stop(sv)) < 0)
        die("vigil_supervisor_stop", rc);
    rc = end_rc < 0 ? end_rc : vigil_loop_destroy(loop);
    if (rc < 0) { /* a callback never returned: exiting ends it */
        fprintf(stderr, "supervised: %s\n", vigil_strerror(rc));
        return 3;
    }
    return 0;
}
