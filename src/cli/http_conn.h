/*
 * http_conn.h: the request side of one HTTP/1.1 server connection, shared by
 * vigil serve's three HTTP servers (the fixed response, --root files, and the
 * metrics port).
 *
 * Bytes go in as they arrive; requests come out to the server's handler one
 * at a time, in order, and only while the connection's send queue is under
 * its high-water mark and no earlier response is still being produced.
 * Whatever cannot be taken now waits in a small inbox with receiving paused.
 * So one connection holds at most: its send queue up to the high-water mark
 * plus one response, and HTTP_CONN_INBOX bytes of requests, whatever its peer
 * does (pipelined floods from a client that never reads included).
 *
 * A request must arrive whole (head and body) within the server's request
 * deadline of its first byte (http_conn_overdue, checked by a sweep), so a
 * client trickling bytes cannot hold a connection forever.
 */
#ifndef VIGIL_CLI_HTTP_CONN_H
#define VIGIL_CLI_HTTP_CONN_H

#include "vigil.h"
#include "http.h"

#include <stddef.h>
#include <stdint.h>

#define HTTP_CONN_INBOX (64u << 10) /* requests waiting; more than that: dropped */

/* What the handler did with a request. */
enum {
    HTTP_NEXT,  /* its response is queued: take the next */
    HTTP_BUSY,  /* it answers later and then calls http_conn_done */
    HTTP_CLOSE, /* its response is queued; then close the connection */
    HTTP_GONE,  /* the connection was dropped: touch nothing more */
};

typedef struct http_conn_hooks {
    /* One request, in order. */
    int (*request)(vigil_loop *loop, vigil_conn c, const http_request *req, void *ud);
    /* Responses the handler batched go out now (may be NULL). -1: dropped. */
    int (*flush)(vigil_loop *loop, vigil_conn c, void *ud);
    /* The connection must end: gracefully (after what is queued) or with
     * RST (abortive). The owner forgets it and frees the http_conn. */
    void (*end)(vigil_loop *loop, vigil_conn c, int abortive, void *ud);
} http_conn_hooks;

typedef struct http_conn {
    http_parser hp;
    vigil_conn c;
    const http_conn_hooks *hooks;
    void *ud;
    uint8_t *inbox;        /* bytes not taken yet: [in_pos, in_len) */
    uint32_t in_pos, in_len, in_cap;
    uint64_t since_ns;     /* when the request being received was first seen; 0: none */
    uint8_t full;          /* a send said the queue is over its high-water mark (vigil_conn_send 1) */
    uint8_t paused;        /* receiving paused by us */
    uint8_t busy;          /* a response is being produced (HTTP_BUSY) */
    uint8_t peer_done;     /* the peer sent EOF: end once everything is answered */
    uint8_t pumping;       /* inside run(): no re-entry */
    uint8_t busy_done;     /* a handler that answered inside its call said so (http_conn_done) */
} http_conn;

/* Sets up hc for connection c (hc is the owner's memory, zeroed or reused).
 * The connection's send watermark is the owner's to set (vigil_conn_set_watermark),
 * with its drain callback calling http_conn_drained. */
void http_conn_init(http_conn *hc, vigil_conn c, const http_conn_hooks *hooks, void *ud);
/* Frees what hc holds (not hc itself). */
void http_conn_release(http_conn *hc);

/* Bytes received. */
void http_conn_data(vigil_loop *loop, http_conn *hc, const uint8_t *data, size_t len);
/* The peer will send nothing more: requests received whole are still
 * answered, then the connection ends gracefully. */
void http_conn_eof(vigil_loop *loop, http_conn *hc);
/* Every send of a response goes through here: vigil_conn_send's result, which is
 * 1 when the queue went over the high-water mark (no request is taken then
 * until http_conn_drained). Returns rc. */
static inline int http_conn_sent(http_conn *hc, int rc) {
    if (rc == 1)
        hc->full = 1;
    return rc;
}
/* The send queue drained (the watermark's callback): take more requests. */
void http_conn_drained(vigil_loop *loop, http_conn *hc);
/* A response the handler was producing (HTTP_BUSY) is queued. */
void http_conn_done(vigil_loop *loop, http_conn *hc);

/* A sweep, every so often (now from now_ns, clock.h): returns 1 when a request
 * has been arriving for longer than limit_ns (the caller answers 408 with
 * http_conn_timeout). */
int http_conn_overdue(http_conn *hc, uint64_t now, uint64_t limit_ns);
/* Answers 408 Request Timeout and ends the connection. */
void http_conn_timeout(vigil_loop *loop, http_conn *hc);

#endif
