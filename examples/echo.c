/*
 * echo: a TCP echo server on vigil.
 *
 *   echo [PORT]      (PORT 0 or none: any free port)
 *
 * Prints "listening on 127.0.0.1:PORT", then sends back every byte each
 * client sends, until SIGINT or SIGTERM.
 *
 * vigil is completion-based: you do not read a socket when it is readable,
 * you start a receive once and vigil calls you back with each chunk of bytes
 * it read for you. Sends are queued (and copied) per connection; vigil writes
 * them out in order, however long that takes.
 */
#include <vigil.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

/* Backpressure: a client that sends but does not read would make its send
 * queue grow without bound. Above HIGH queued bytes vigil_conn_send returns
 * 1: we stop reading from that client until the queue drains to LOW. */
#define HIGH (1u << 20)
#define LOW (256u << 10)

static void die(const char *what, int err) {
    fprintf(stderr, "echo: %s: %s\n", what, vigil_strerror(err));
    exit(1);
}

/* The connection's last callback: every op on it has ended. Nothing to free
 * here: this server keeps no per-connection state. */
static void on_close(vigil_loop *loop, vigil_conn conn, int status, void *ud) {
    (void)loop, (void)conn, (void)status, (void)ud;
}

/* The send queue drained below LOW: read again. -ENOTCONN means the receive
 * has ended meanwhile (the client went away), which is no error here. */
static void on_drain(vigil_loop *loop, vigil_conn conn, void *ud) {
    int rc = vigil_conn_recv_resume(loop, conn);
    if (rc < 0 && rc != -ENOTCONN)
        fprintf(stderr, "echo: resume: %s\n", vigil_strerror(rc));
}

/* status > 0: buf holds that many bytes (valid only during this call).
 * status 0: the client closed its side; < 0: an error. 0 and < 0 are final. */
static void on_recv(vigil_loop *loop, vigil_conn conn, int status, const vigil_buf *buf,
                    void *ud) {
    if (status > 0) {
        int rc = vigil_conn_send(loop, conn, buf->data, buf->len, 0, NULL, NULL, NULL);
        if (rc == 1) /* over the watermark: pause until on_drain */
            rc = vigil_conn_recv_pause(loop, conn);
        if (rc < 0) { /* a per-client failure must not end the server */
            fprintf(stderr, "echo: send: %s\n", vigil_strerror(rc));
            vigil_conn_abort(loop, conn, on_close, NULL);
        }
        return;
    }
    /* -ECANCELED: vigil_loop_destroy is ending everything; nothing to do. */
    if (status == -ECANCELED)
        return;
    /* EOF or an error: flush what is queued (at most 5 s), then FIN. */
    int rc = vigil_conn_close(loop, conn, 5000, on_close, NULL);
    if (rc < 0)
        fprintf(stderr, "echo: close: %s\n", vigil_strerror(rc));
}

static void on_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn conn, void *ud) {
    if (status < 0) { /* final: the listener is gone */
        if (status != -ECANCELED)
            fprintf(stderr, "echo: accept: %s\n", vigil_strerror(status));
        return;
    }
    int rc = vigil_conn_set_watermark(loop, conn, HIGH, LOW, on_drain, NULL);
    if (rc == 0)
        rc = vigil_conn_recv_start(loop, conn, 0, on_recv, NULL, NULL);
    if (rc < 0) {
        fprintf(stderr, "echo: new connection: %s\n", vigil_strerror(rc));
        vigil_conn_abort(loop, conn, on_close, NULL);
    }
}

/* Why vigil_signal_start and not vigil_serve: this server is one loop on one
 * thread, the main one, and wants no other. A signal watcher turns SIGINT and
 * SIGTERM into loop events (read from a signalfd), so this callback runs like
 * any other, between two others, and may call anything; vigil_serve would
 * run the loop on a thread of vigil's, which pays off with a supervisor
 * (see supervised.c). */
static void on_signal(vigil_loop *loop, vigil_op watcher, int status, void *ud) {
    if (status > 0)
        vigil_loop_stop(loop); /* vigil_loop_run returns; destroy ends the rest */
}

static void usage(void) {
    fprintf(stderr, "usage: echo [PORT]\n  PORT: TCP port on 127.0.0.1 (0 or none: any free one)\n");
    exit(2);
}

int main(int argc, char **argv) {
    long port = 0;
    if (argc > 2)
        usage();
    if (argc == 2) {
        char *end;
        port = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
            usage();
    }

    vigil_loop *loop;
    int rc = vigil_loop_create(&loop, NULL); /* NULL: default options */
    if (rc < 0)
        die("vigil_loop_create", rc);

    /* Blocks SIGINT/SIGTERM on this thread and delivers them as events. */
    if ((rc = vigil_signal_start(loop, SIGINT, on_signal, NULL, NULL)) < 0 ||
        (rc = vigil_signal_start(loop, SIGTERM, on_signal, NULL, NULL)) < 0)
        die("vigil_signal_start", rc);

    vigil_listener l;
    vigil_listener_options lo = {.host = "127.0.0.1", .port = (uint16_t)port};
    if ((rc = vigil_listener_open(loop, &lo, on_accept, NULL, &l)) < 0)
        die("vigil_listener_open", rc);
    int bound = vigil_listener_get_port(loop, l);
    if (bound < 0)
        die("vigil_listener_get_port", bound);
    printf("listening on 127.0.0.1:%d\n", bound);
    fflush(stdout);

    /* Runs until on_signal stops it (the watchers and listener keep it busy). */
    rc = vigil_loop_run(loop, VIGIL_RUN_DEFAULT, -1);
    if (rc < 0)
        die("vigil_loop_run", rc);
    /* Every open connection, the listener and the watchers get their final
     * callbacks (-ECANCELED) here. */
    if ((rc = vigil_loop_destroy(loop)) < 0)
        die("vigil_loop_destroy", rc);
    return 0;
}
