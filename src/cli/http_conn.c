/*
 * http_conn.c: the request side of one HTTP/1.1 server connection (see
 * http_conn.h).
 *
 * Why a request waits rather than being answered at once: a response costs
 * memory until the peer reads it, and a peer that pipelines requests but never
 * reads would otherwise make the server queue responses without end (one read
 * of 64 KiB holds a thousand small GETs). Checking the send queue between
 * requests, not only between reads, is what bounds a connection. The check
 * is the watermark's own protocol: vigil_conn_send says 1 when the queue went over
 * (http_conn_sent), the drain callback says it is low again; no call per
 * request.
 *
 * Bytes are parsed straight from the receive buffer; only what is left when
 * the server stops taking requests is copied into the inbox, and receiving is
 * paused until the inbox is empty again. While paused no further bytes
 * arrive, so the inbox holds at most what one receive delivered on top of an
 * earlier rest.
 */
#include "http_conn.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"

void http_conn_init(http_conn *hc, vigil_conn c, const http_conn_hooks *hooks, void *ud) {
    memset(hc, 0, sizeof(*hc));
    hc->c = c;
    hc->hooks = hooks;
    hc->ud = ud;
}

void http_conn_release(http_conn *hc) {
    free(hc->inbox);
    hc->inbox = NULL;
    hc->in_pos = hc->in_len = hc->in_cap = 0;
}

/* A request is partly in: its clock runs. */
static int receiving_request(const http_parser *p) {
    return p->head_len || p->line_len || p->in_body;
}

static int flush(vigil_loop *loop, http_conn *hc) {
    return hc->hooks->flush ? hc->hooks->flush(loop, hc->c, hc->ud) : 0;
}

/* Everything answered so far goes out, then the connection ends. */
static void end_after_flush(vigil_loop *loop, http_conn *hc) {
    if (flush(loop, hc) == 0)
        hc->hooks->end(loop, hc->c, 0, hc->ud);
}

static void say_and_end(vigil_loop *loop, http_conn *hc, const char *resp, size_t len) {
    if (flush(loop, hc) < 0)
        return;
    if (http_conn_sent(hc, vigil_conn_send(loop, hc->c, resp, len, 0, NULL, NULL, NULL)) < 0)
        hc->hooks->end(loop, hc->c, 1, hc->ud);
    else
        hc->hooks->end(loop, hc->c, 0, hc->ud);
}

/* Takes requests from d[0..n) while it may. *taken: bytes parsed. Returns 0,
 * or -1 when the connection ended (hc is gone). */
static int take(vigil_loop *loop, http_conn *hc, const uint8_t *d, size_t n, size_t *taken) {
    size_t pos = 0;
    *taken = 0;
    while (pos < n && !hc->busy && !hc->full) {
        size_t used;
        http_request req;
        int st;
        int rc = http_parse(&hc->hp, d + pos, n - pos, &used, &req, &st);
        pos += used;
        *taken = pos;
        if (rc == 0)
            break;
        if (rc < 0) { /* malformed: say so and close */
            char out[256];
            int len = http_error_response(out, sizeof(out), st);
            if (len > 0)
                say_and_end(loop, hc, out, (size_t)len);
            else
                hc->hooks->end(loop, hc->c, 1, hc->ud);
            return -1;
        }
        hc->since_ns = 0;
        int what = hc->hooks->request(loop, hc->c, &req, hc->ud);
        if (what == HTTP_GONE)
            return -1;
        if (what == HTTP_CLOSE) {
            end_after_flush(loop, hc);
            return -1;
        }
        if (what == HTTP_BUSY && !hc->busy_done)
            hc->busy = 1;
        hc->busy_done = 0;
    }
    return 0;
}

/* Keeps d[0..n) in the inbox. -1: over the bound (or no memory). */
static int stash(http_conn *hc, const uint8_t *d, size_t n) {
    if (hc->in_pos && hc->in_len + n > hc->in_cap) { /* reuse the taken front */
        memmove(hc->inbox, hc->inbox + hc->in_pos, hc->in_len - hc->in_pos);
        hc->in_len -= hc->in_pos;
        hc->in_pos = 0;
    }
    if (hc->in_len + n > HTTP_CONN_INBOX)
        return -1;
    if (hc->in_len + n > hc->in_cap) {
        size_t cap = hc->in_cap ? hc->in_cap : 4096;
        while (cap < hc->in_len + n)
            cap *= 2;
        uint8_t *b = realloc(hc->inbox, cap);
        if (!b)
            return -1;
        hc->inbox = b;
        hc->in_cap = (uint32_t)cap;
    }
    memcpy(hc->inbox + hc->in_len, d, n);
    hc->in_len += (uint32_t)n;
    return 0;
}

/* Takes what it may from the inbox, then from d[0..n); keeps the rest; then
 * pauses or resumes receiving, and ends a connection whose peer is done. */
static void run(vigil_loop *loop, http_conn *hc, const uint8_t *d, size_t n) {
    if (hc->pumping) /* a handler answered at once and said so: the loop below goes on */
        return;
    hc->pumping = 1;
    size_t t;
    if (hc->in_len > hc->in_pos) {
        if (take(loop, hc, hc->inbox + hc->in_pos, hc->in_len - hc->in_pos, &t) < 0)
            return;
        hc->in_pos += (uint32_t)t;
        if (hc->in_pos == hc->in_len)
            hc->in_pos = hc->in_len = 0;
    }
    t = 0;
    if (n && hc->in_len == 0 && take(loop, hc, d, n, &t) < 0)
        return;
    hc->pumping = 0;
    if (t < n && stash(hc, d + t, n - t) < 0) { /* cannot happen while we pause in time */
        hc->hooks->end(loop, hc->c, 1, hc->ud);
        return;
    }
    if (flush(loop, hc) < 0)
        return;
    if (receiving_request(&hc->hp)) {
        if (!hc->since_ns)
            hc->since_ns = now_ns();
    } else {
        hc->since_ns = 0;
    }
    int waiting = hc->in_len > hc->in_pos;
    if (!waiting && !hc->busy && hc->peer_done) {
        end_after_flush(loop, hc);
        return;
    }
    /* Paused while bytes wait or the queue is full; not merely while a
     * response is being produced: a client that waits for it sends nothing
     * meanwhile, and pausing would cost two ring operations per request. */
    waiting |= hc->full;
    if (waiting && !hc->paused) {
        hc->paused = 1;
        vigil_conn_recv_pause(loop, hc->c);
    } else if (!waiting && hc->paused) {
        hc->paused = 0;
        vigil_conn_recv_resume(loop, hc->c);
        if (hc->since_ns) /* its clock stopped while we held the peer back */
            hc->since_ns = now_ns();
    }
}

void http_conn_data(vigil_loop *loop, http_conn *hc, const uint8_t *data, size_t len) {
    run(loop, hc, data, len);
}

void http_conn_eof(vigil_loop *loop, http_conn *hc) {
    hc->peer_done = 1;
    run(loop, hc, NULL, 0);
}

void http_conn_drained(vigil_loop *loop, http_conn *hc) {
    hc->full = 0;
    run(loop, hc, NULL, 0);
}

void http_conn_done(vigil_loop *loop, http_conn *hc) {
    if (hc->pumping) { /* answered inside the handler: take() goes on */
        hc->busy = 0;
        hc->busy_done = 1;
        return;
    }
    hc->busy = 0;
    run(loop, hc, NULL, 0);
}

int http_conn_overdue(http_conn *hc, uint64_t now, uint64_t limit_ns) {
    /* while we pause receiving, the peer cannot finish: not its delay */
    return hc->since_ns && !hc->paused && now - hc->since_ns > limit_ns;
}

void http_conn_timeout(vigil_loop *loop, http_conn *hc) {
    static const char timeout[] = "HTTP/1.1 408 Request Timeout\r\nServer: vigil\r\n"
                                  "Content-Length: 0\r\nConnection: close\r\n\r\n";
    say_and_end(loop, hc, timeout, sizeof(timeout) - 1);
}
