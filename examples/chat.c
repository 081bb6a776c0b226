/* chat: a line-based broadcast chat server on vigil.      usage: chat [PORT]
 *
 * PORT 0 or none: any free port. A client's first line is its nickname; each
 * later line goes to every other client as "nick: line\n". Backpressure: when
 * a receiver has more than HIGH bytes queued, the server stops reading from
 * every client (their bytes wait in the kernel, TCP slows the senders) until
 * that queue drains to LOW. A receiver that takes nothing for SEND_DEADLINE
 * ms is disconnected, so one dead reader pauses the room for at most that
 * long. Ends on SIGINT or SIGTERM, saying goodbye to every client. */
#include <vigil.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HIGH (64u << 10)
#define LOW (16u << 10)
#define SEND_DEADLINE 5000 /* ms a message may wait in a receiver's queue */
#define MAXLINE 1024

struct client {
    struct client *prev, *next;   /* the room: every connected client */
    vigil_conn conn;
    char nick[32], line[MAXLINE]; /* nick: "" until the first line came */
    size_t len;                   /* of the line being received */
    int congested;                /* its queue is over HIGH */
};
/* Touched by callbacks only, which never run two at once: no lock. */
static struct client *room;
static int ncongested; /* clients over HIGH: while > 0, nobody is read */
static vigil_listener listener;

/* Pausing or resuming a receive that has ended gives -ENOTCONN: that client
 * is on its way out (its final receive callback comes), fine here. */
static void set_reading(vigil_loop *loop, int on) {
    for (struct client *c = room; c; c = c->next) {
        int rc = on ? vigil_conn_recv_resume(loop, c->conn) : vigil_conn_recv_pause(loop, c->conn);
        if (rc < 0 && rc != -ENOTCONN)
            fprintf(stderr, "chat: pause/resume: %s\n", vigil_strerror(rc));
    }
}
static void uncongest(vigil_loop *loop, struct client *c) {
    if (c->congested && (c->congested = 0, --ncongested == 0))
        set_reading(loop, 1);
}
/* Runs once c's queue has drained to LOW. */
static void on_drain(vigil_loop *loop, vigil_conn conn, void *ud) { uncongest(loop, ud); }
/* The last callback of a connection: every op on it has ended; free it. */
static void on_close(vigil_loop *loop, vigil_conn conn, int status, void *ud) { free(ud); }

/* Leaves the room and closes gracefully (what is queued is flushed first). */
static void drop(vigil_loop *loop, struct client *c) {
    if (c->prev) c->prev->next = c->next; else room = c->next;
    if (c->next) c->next->prev = c->prev;
    uncongest(loop, c);
    int rc = vigil_conn_close(loop, c->conn, 1000, on_close, c);
    if (rc < 0) { /* then no close callback will come: free c here */
        if (rc != -VIGIL_ESHUTDOWN) fprintf(stderr, "chat: close: %s\n", vigil_strerror(rc));
        free(c);
    }
}
static void broadcast(vigil_loop *loop, struct client *from, const char *line, size_t len) {
    vigil_iov iov[] = {{from->nick, strlen(from->nick)}, {": ", 2}, {line, len}, {"\n", 1}};
    for (struct client *c = room; c; c = c->next) {
        if (c == from || !c->nick[0]) continue;
        /* One message, its pieces copied. If it is not out within
         * SEND_DEADLINE ms the stream is broken: c's receive then ends. */
        int rc = vigil_conn_sendv(loop, c->conn, iov, 4, SEND_DEADLINE, NULL, NULL, NULL);
        if (rc == 1 && !c->congested) { /* over HIGH: the room waits for c */
            c->congested = 1;
            if (ncongested++ == 0) set_reading(loop, 0);
        } else if (rc < 0 && rc != -EPIPE) { /* -EPIPE: c broke; its receive ends soon */
            fprintf(stderr, "chat: send to %s: %s\n", c->nick, vigil_strerror(rc));
        }
    }
}
/* status > 0: buf holds that many bytes, valid during this call only. */
static void on_recv(vigil_loop *loop, vigil_conn conn, int status, const vigil_buf *buf,
                    void *ud) {
    struct client *c = ud;
    if (status <= 0) { /* final: EOF, an error, or -ECANCELED (we closed it) */
        if (status != -ECANCELED) drop(loop, c);
        return;
    }
    for (size_t i = 0; i < buf->len; i++) {
        if (buf->data[i] == '\n' || c->len == MAXLINE) { /* a line (too long: cut) */
            size_t n = c->len && c->line[c->len - 1] == '\r' ? c->len - 1 : c->len;
            if (c->nick[0])
                broadcast(loop, c, c->line, n);
            else if (snprintf(c->nick, sizeof c->nick, "%.*s", (int)n, c->line) == 0)
                strcpy(c->nick, "anon");
            c->len = 0;
        }
        if (buf->data[i] != '\n') c->line[c->len++] = (char)buf->data[i];
    }
}
static void on_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn conn, void *ud) {
    if (status < 0) { /* final: -ECANCELED once the listener is closed */
        if (status != -ECANCELED) fprintf(stderr, "chat: accept: %s\n", vigil_strerror(status));
        return;
    }
    struct client *c = calloc(1, sizeof *c);
    int rc = c ? vigil_conn_set_watermark(loop, conn, HIGH, LOW, on_drain, c) : -ENOMEM;
    if (rc == 0) rc = vigil_conn_recv_start(loop, conn, 0, on_recv, c, NULL);
    if (rc == 0 && ncongested > 0) /* the room is paused: so is the newcomer */
        rc = vigil_conn_recv_pause(loop, conn);
    if (rc < 0) {
        fprintf(stderr, "chat: new client: %s\n", vigil_strerror(rc));
        vigil_conn_abort(loop, conn, on_close, c); /* on_close frees c */
        return;
    }
    c->conn = conn;
    if ((c->next = room)) room->prev = c;
    room = c;
}
/* vigil_serve posts this to the loop at SIGINT/SIGTERM: stop accepting, say
 * goodbye, close everyone. The loop ends once nothing is left to do. */
static void on_stop(vigil_loop *loop, int status, void *ud) {
    if (status < 0) return; /* -ECANCELED: the loop was destroyed first */
    vigil_listener_close(loop, listener);
    while (room) {
        vigil_conn_send(loop, room->conn, "server: bye\n", 12, 0, NULL, NULL, NULL);
        drop(loop, room);
    }
}
static int fail(const char *what, int err) {
    return fprintf(stderr, "chat: %s: %s\n", what, vigil_strerror(err)), 1;
}
int main(int argc, char **argv) {
    char *end = "";
    long port = argc == 2 ? strtol(argv[1], &end, 10) : 0;
    if (argc > 2 || *end || (argc == 2 && !*argv[1]) || port < 0 || port > 65535) {
        fprintf(stderr, "usage: chat [PORT]\n  PORT: TCP port on 127.0.0.1 (0 or none: any)\n");
        return 2;
    }
    vigil_loop *loop;
    vigil_listener_options lo = {.host = "127.0.0.1", .port = (uint16_t)port};
    int rc = vigil_loop_create(&loop, NULL);
    if (rc < 0 || (rc = vigil_listener_open(loop, &lo, on_accept, NULL, &listener)) < 0 ||
        (rc = vigil_listener_get_port(loop, listener)) < 0)
        return fail("setup", rc);
    printf("listening on 127.0.0.1:%d\n", rc);
    fflush(stdout);
    /* vigil_serve rather than a signal watcher: it posts on_stop to the loop,
     * then gives the goodbyes stop_ms before stopping the loop where it is. */
    rc = vigil_serve(&loop, 1, &(vigil_serve_options){.stop_ms = 2000, .on_stop = on_stop});
    if (rc < 0 || (rc = vigil_loop_destroy(loop)) < 0) /* destroy: final callbacks of the rest */
        return fail("vigil_serve/destroy", rc);
    return 0; /* vigil_serve returned SIGINT or SIGTERM: a normal end */
}
