/* offload: slow work off the loop thread with vigil_work_queue.   usage: offload [PORT]
 *
 * PORT 0 or none: any free port. Each line "N" a client sends is answered
 * "prime(N) = P", the N-th prime found by trial division: deliberately slow
 * (N = 1000000 takes seconds). The search runs on the loop's worker pool, so
 * the loop keeps serving every other client meanwhile. A client's lines are
 * answered one at a time, in order: while its search runs we stop reading
 * from it. Ends on SIGINT or SIGTERM (vigil_serve), searches cut short. */
#include <vigil.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define MAXN 5000000L

struct client {
    vigil_conn conn;
    char in[32768]; /* received and not yet answered */
    size_t len;
    int busy, gone; /* a search of ours is on the pool; the connection has ended */
};
struct job { struct client *c; long n, prime; };
static atomic_int stopping; /* set at SIGINT/SIGTERM: running searches give up */

/* Runs on a pool thread: it may touch only its job, and of vigil call only
 * vigil_loop_post/_wake/_stop. Its return value is on_done's status. */
static int nth_prime(void *ud) {
    struct job *j = ud;
    long count = 0;
    for (long k = 2;; k++) {
        if ((k & 0xffff) == 0 && atomic_load(&stopping)) return -ECANCELED;
        int prime = 1;
        for (long d = 2; d * d <= k && prime; d++)
            prime = k % d != 0;
        if (prime && ++count == j->n)
            return j->prime = k, 0;
    }
}
static void reply(vigil_loop *loop, struct client *c, const char *text) {
    int rc = vigil_conn_send(loop, c->conn, text, strlen(text), 0, NULL, NULL, NULL);
    if (rc < 0 && rc != -EPIPE && rc != -VIGIL_ESHUTDOWN) /* the client is gone: fine */
        fprintf(stderr, "offload: send: %s\n", vigil_strerror(rc));
}
static void on_done(vigil_loop *loop, vigil_op op, int status, void *ud);

/* Answers the complete lines in c->in until one needs the pool. */
static void serve_lines(vigil_loop *loop, struct client *c) {
    char *nl, text[96];
    while (!c->busy && (nl = memchr(c->in, '\n', c->len))) {
        char *end;
        long n = (*nl = '\0', strtol(c->in, &end, 10));
        int bad = end == c->in || (*end && strcmp(end, "\r")) || n < 1 || n > MAXN;
        c->len -= (size_t)(nl + 1 - c->in);
        memmove(c->in, nl + 1, c->len);
        struct job *j = bad ? NULL : malloc(sizeof *j);
        if (j) /* filled in before it is queued: a pool thread may take it at once */
            *j = (struct job){c, n, 0};
        int rc = bad ? -EINVAL : j ? vigil_work_queue(loop, nth_prime, on_done, j, NULL) : -ENOMEM;
        if (rc == 0) { /* read nothing more from c until it is answered */
            c->busy = 1;
            vigil_conn_recv_pause(loop, c->conn);
            break;
        }
        free(j); /* -EAGAIN: the pool's queue is full */
        snprintf(text, sizeof text, "error: %s\n", bad ? "send a number 1..5000000" : vigil_strerror(rc));
        reply(loop, c, text);
    }
}
/* On the loop thread once nth_prime returned, or -ECANCELED if it never ran. */
static void on_done(vigil_loop *loop, vigil_op op, int status, void *ud) {
    struct job *j = ud;
    struct client *c = j->c;
    char text[96];
    if (status == 0) snprintf(text, sizeof text, "prime(%ld) = %ld\n", j->n, j->prime);
    else snprintf(text, sizeof text, "error: %s\n", vigil_strerror(status));
    free(j);
    c->busy = 0;
    if (c->gone) { free(c); return; } /* it left while we searched */
    reply(loop, c, text);
    serve_lines(loop, c);
    if (!c->busy) /* -ENOTCONN if its receive has ended meanwhile: fine */
        vigil_conn_recv_resume(loop, c->conn);
}
/* The connection's last callback. Its search may still run: then on_done frees c. */
static void on_close(vigil_loop *loop, vigil_conn conn, int status, void *ud) {
    struct client *c = ud;
    if (c->busy) c->gone = 1; else free(c);
}
static void on_recv(vigil_loop *loop, vigil_conn conn, int status, const vigil_buf *buf,
                    void *ud) {
    struct client *c = ud;
    if (status > 0 && buf->len > sizeof c->in - c->len) {
        reply(loop, c, "error: too much input\n");
        status = -EMSGSIZE;
    }
    if (status <= 0) { /* final (or too much input): flush the answers, then FIN */
        if (vigil_conn_close(loop, conn, 5000, on_close, c) < 0) /* no on_close then */
            on_close(loop, conn, 0, c);
        return;
    }
    memcpy(c->in + c->len, buf->data, buf->len);
    c->len += buf->len;
    serve_lines(loop, c);
}
static void on_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn conn, void *ud) {
    if (status < 0) { /* final: the listener is gone */
        if (status != -ECANCELED) fprintf(stderr, "offload: accept: %s\n", vigil_strerror(status));
        return;
    }
    struct client *c = calloc(1, sizeof *c);
    int rc = c ? (c->conn = conn, vigil_conn_recv_start(loop, conn, 0, on_recv, c, NULL)) : -ENOMEM;
    if (rc < 0) {
        fprintf(stderr, "offload: new client: %s\n", vigil_strerror(rc));
        free(c);
        vigil_conn_abort(loop, conn, NULL, NULL);
    }
}
/* Posted to the loop by vigil_serve at SIGINT/SIGTERM. vigil_loop_destroy
 * waits for running work without a limit: tell the searches to give up. */
static void on_stop(vigil_loop *loop, int status, void *ud) {
    atomic_store(&stopping, 1);
    vigil_loop_stop(loop);
}
static int fail(const char *what, int err) {
    fprintf(stderr, "offload: %s: %s\n", what, vigil_strerror(err));
    return 1;
}
int main(int argc, char **argv) {
    char *end = "";
    long port = argc == 2 ? strtol(argv[1], &end, 10) : 0;
    if (argc > 2 || *end || (argc == 2 && !*argv[1]) || port < 0 || port > 65535) {
        fprintf(stderr, "usage: offload [PORT]\n  PORT: TCP port on 127.0.0.1 (0 or none: any)\n"
                        "  then send lines \"N\" (1..%ld): each gets the N-th prime\n", MAXN);
        return 2;
    }
    vigil_loop *loop; vigil_listener l;
    vigil_listener_options lo = {.host = "127.0.0.1", .port = (uint16_t)port};
    int rc = vigil_loop_create(&loop, &(vigil_loop_options){.pool_threads = 4});
    if (rc < 0 || (rc = vigil_listener_open(loop, &lo, on_accept, NULL, &l)) < 0 ||
        (rc = vigil_listener_get_port(loop, l)) < 0)
        return fail("setup", rc);
    printf("listening on 127.0.0.1:%d\n", rc);
    fflush(stdout);
    if ((rc = vigil_serve(&loop, 1, &(vigil_serve_options){.on_stop = on_stop})) < 0)
        return fail("vigil_serve", rc);
    if ((rc = vigil_loop_destroy(loop)) < 0) /* cancels queued jobs, waits for running ones */
        return fail("vigil_loop_destroy", rc);
    return 0;
}
