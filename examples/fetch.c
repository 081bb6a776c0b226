/* fetch: an HTTP/1.0 GET on vigil.               usage: fetch HOST PORT PATH OUTFILE
 *
 * Opens OUTFILE (vigil_fs_open), looks HOST up and connects to each of its
 * addresses in turn under one deadline (vigil_conn_connect_name), sends the
 * request and writes the body with vigil_fs_write as it arrives: the loop
 * never blocks on the disk. A server silent for IDLE_MS ends the fetch. Prints
 * the status line and the body's size; exits 0 on 200, 1 otherwise. */
#define _POSIX_C_SOURCE 200809L /* O_CLOEXEC (VIGIL_O_CLOEXEC) is POSIX 2008 */
#include <fcntl.h> /* O_WRONLY, O_CREAT, O_TRUNC */
#include <vigil.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONNECT_MS 5000 /* the lookup and the connects, all addresses */
#define IDLE_MS 10000   /* nothing received for this long: give up */
#define MAXWRITES 8     /* file writes in flight before we pause the socket */

static struct {
    const char *host, *path, *out;
    int fd, port, in_body, writes, eof, err; /* fd: OUTFILE, once open */
    vigil_conn conn;
    char head[8192];                         /* status line and headers */
    size_t headlen;
    int64_t offset;                          /* body bytes handed to writes so far */
} f = {.fd = -1};
/* One write of part of a received buffer, kept (not copied) until it is done. */
struct wr { vigil_buf kept; const uint8_t *p; size_t len; int64_t off; };

static void fail(const char *what, int err) {
    fprintf(stderr, "fetch: %s: %s\n", what, vigil_strerror(err));
    if (!f.err) f.err = err;
}
static void on_file_closed(vigil_loop *loop, vigil_op op, int status, void *ud) {
    if (status < 0) fail("close OUTFILE", status); /* the end: print what we got */
    char *eol = strstr(f.head, "\r\n");
    printf("%.*s\n%lld bytes written to %s\n", eol ? (int)(eol - f.head) : 11,
           eol ? f.head : "no response", (long long)f.offset, f.out);
}
/* The end: the receive is over and no write is in flight. Closing the file
 * is a file call too: the loop runs until its callback. */
static void maybe_finish(vigil_loop *loop) {
    if (!f.eof || f.writes > 0 || f.fd < 0) return;
    int rc = vigil_fs_close(loop, f.fd, on_file_closed, NULL, NULL);
    if (rc < 0) fail("vigil_fs_close", rc);
    f.fd = -1;
}
/* Nothing more will come from the network: finish with what we have. */
static void no_more(vigil_loop *loop, const char *what, int err) {
    if (err < 0) fail(what, err);
    f.eof = 1;
    maybe_finish(loop);
}
/* Ends the download early: abort gives the receive its final callback. */
static void give_up(vigil_loop *loop, const char *what, int err) {
    fail(what, err);
    vigil_conn_abort(loop, f.conn, NULL, NULL); /* -EBADF if it has ended: fine */
}
static void on_written(vigil_loop *loop, vigil_op op, int status, void *ud) {
    struct wr *w = ud;
    if (status > 0 && (size_t)status < w->len) { /* a short write: write the rest */
        w->p += status, w->len -= (size_t)status, w->off += status;
        if ((status = vigil_fs_write(loop, f.fd, w->p, w->len, w->off, on_written, w, NULL)) == 0)
            return;
    }
    if (status < 0) give_up(loop, "write OUTFILE", status);
    vigil_buf_release(loop, &w->kept);
    free(w);
    if (f.writes-- == MAXWRITES) /* below the limit again (-ENOTCONN if it ended: fine) */
        vigil_conn_recv_resume(loop, f.conn);
    maybe_finish(loop);
}
static void write_body(vigil_loop *loop, const vigil_buf *buf, size_t from) {
    struct wr *w = malloc(sizeof *w);
    int rc = w ? vigil_buf_keep(loop, buf) : -ENOMEM;
    if (rc == 0) {
        *w = (struct wr){*buf, buf->data + from, buf->len - from, f.offset};
        if ((rc = vigil_fs_write(loop, f.fd, w->p, w->len, w->off, on_written, w, NULL)) < 0)
            vigil_buf_release(loop, buf);
    }
    if (rc < 0) {
        free(w);
        give_up(loop, "vigil_fs_write", rc);
        return;
    }
    f.offset += (int64_t)(buf->len - from);
    if (++f.writes == MAXWRITES) /* the disk is behind: let the bytes wait in the socket */
        vigil_conn_recv_pause(loop, f.conn);
}
static void on_recv(vigil_loop *loop, vigil_conn conn, int status, const vigil_buf *buf,
                    void *ud) {
    if (status <= 0) { /* final: 0 is EOF, which ends an HTTP/1.0 body */
        vigil_conn_close(loop, conn, 1000, NULL, NULL); /* -EBADF after an abort: fine */
        /* -ETIMEDOUT: the idle deadline; EOF before the body: no HTTP */
        no_more(loop, "receive", status < 0 ? status : f.in_body ? 0 : -EPROTO);
        return;
    }
    size_t i = 0;
    while (!f.in_body && i < buf->len && f.headlen < sizeof f.head - 1) { /* the head */
        f.head[f.headlen++] = (char)buf->data[i++];
        f.in_body = f.headlen >= 4 && !memcmp(f.head + f.headlen - 4, "\r\n\r\n", 4);
    }
    if (!f.in_body && f.headlen == sizeof f.head - 1)
        give_up(loop, "response head", -EMSGSIZE);
    else if (f.in_body && i < buf->len)
        write_body(loop, buf, i);
}
static void on_connect(vigil_loop *loop, vigil_conn conn, int status, void *ud) {
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", f.path, f.host);
    f.conn = conn; /* valid only if status is 0 */
    if (status == 0)
        status = n >= (int)sizeof req ? -ENAMETOOLONG
                 : vigil_conn_send(loop, conn, req, (size_t)n, IDLE_MS, NULL, NULL, NULL);
    if (status >= 0)
        status = vigil_conn_recv_start(loop, conn, IDLE_MS, on_recv, NULL, NULL);
    if (status < 0) { /* a failed connect leaves no connection (-EBADF); else abort it */
        vigil_conn_abort(loop, conn, NULL, NULL);
        no_more(loop, "connect", status);
    }
}
static void on_open(vigil_loop *loop, vigil_op op, int status, void *ud) {
    if (status < 0) { /* nothing else runs then: vigil_loop_run returns */
        fail(f.out, status);
        return;
    }
    f.fd = status; /* now connect */
    status = vigil_conn_connect_name(loop, f.host, (uint16_t)f.port, CONNECT_MS, on_connect, NULL, NULL);
    if (status < 0) no_more(loop, "vigil_conn_connect_name", status);
}
int main(int argc, char **argv) {
    char *end = "";
    long port = argc == 5 ? strtol(argv[2], &end, 10) : 0;
    if (argc != 5 || *end || port < 1 || port > 65535 || argv[3][0] != '/') {
        fprintf(stderr, "usage: fetch HOST PORT PATH OUTFILE\n"
                        "  e.g. fetch localhost 8000 /index.html out.html (PATH starts with /)\n");
        return 2;
    }
    f.host = argv[1], f.port = (int)port, f.path = argv[3], f.out = argv[4];
    vigil_loop *loop;
    int rc = vigil_loop_create(&loop, NULL);
    if (rc < 0) return fail("vigil_loop_create", rc), 1;
    rc = vigil_fs_open(loop, VIGIL_FS_CWD, f.out, O_WRONLY | O_CREAT | O_TRUNC | VIGIL_O_CLOEXEC,
                       0644, on_open, NULL, NULL);
    if (rc < 0) fail("vigil_fs_open", rc);
    else if ((rc = vigil_loop_run(loop, VIGIL_RUN_DEFAULT, -1)) < 0) /* until no work is left */
        fail("vigil_loop_run", rc);
    if ((rc = vigil_loop_destroy(loop)) < 0) fail("vigil_loop_destroy", rc);
    return f.err || (strncmp(f.head, "HTTP/1.0 200 ", 13) && strncmp(f.head, "HTTP/1.1 200 ", 13));
}
