/*
 * http_resp.h: an incremental HTTP/1.1 response parser, for the load
 * generator (vigil bench --http).
 *
 * It is fed the bytes of a keep-alive connection as they arrive, in any
 * split (a response may end in the middle of a read, a read may hold many
 * pipelined responses), and stops right after each complete response to
 * report it. It keeps no copy of the bytes, except the start of a line that
 * a read cut in two, and it reads only what framing needs: the status line,
 * Content-Length, Transfer-Encoding and Connection. Every other line is
 * only checked for its shape.
 *
 * Framing follows RFC 9112 section 6. A 1xx response is interim: it is
 * skipped, and the final response that follows is the one reported (101
 * Switching Protocols aside: after it the connection no longer speaks
 * HTTP, so it is reported, with close set). 204, 304 and the responses to
 * HEAD have no body. Otherwise a Transfer-Encoding whose last coding is
 * chunked frames the body in chunks, and any other Transfer-Encoding runs
 * the body until the connection closes; Transfer-Encoding wins over
 * Content-Length, as the RFC says. Then Content-Length, and without
 * either, the body runs until the connection closes (http_resp_eof).
 *
 * Where the reads split the bytes never changes what is reported, nor how
 * many bytes were taken: each line is judged when its LF arrives, on its
 * first HTTP_RESP_MAX_LINE bytes and its length, and a CR is judged by the
 * byte after it.
 */
#ifndef VIGIL_CLI_HTTP_RESP_H
#define VIGIL_CLI_HTTP_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A status line and its fields, the empty line that ends them included;
 * the trailer section after a chunked body has the same limit. */
#define HTTP_RESP_MAX_HEAD 65536
/* The start of a line the parser keeps when a read cuts the line in two;
 * so also the longest Content-Length, Transfer-Encoding or Connection line
 * it reads (longer: HTTP_RESP_HEAD_TOO_LONG); a field name's colon must
 * come within it. */
#define HTTP_RESP_MAX_LINE 256
/* A chunk-size line, its extensions included. */
#define HTTP_RESP_MAX_CHUNK_LINE 4096
/* The longest head the parser remembers, to know it again (see
 * http_resp_feed). */
#define HTTP_RESP_SEEN_MAX 512

typedef enum http_resp_event {
    HTTP_RESP_MORE = 0, /* all bytes taken, no response complete yet */
    HTTP_RESP_DONE,     /* a response is complete: its fields are in http_resp */
    HTTP_RESP_ERROR,    /* the framing is broken (http_resp.error): drop the connection */
} http_resp_event;

typedef enum http_resp_error {
    HTTP_RESP_OK = 0,
    HTTP_RESP_BAD_STATUS_LINE, /* not "HTTP/1.x SP 3DIGIT [SP reason]", or a status outside 100..599 */
    HTTP_RESP_BAD_HEADER,      /* a field line without "token:", a CR not followed by LF, a folded line */
    HTTP_RESP_HEAD_TOO_LONG,   /* a head or trailer section over HTTP_RESP_MAX_HEAD, or a
                                  line to read over HTTP_RESP_MAX_LINE */
    HTTP_RESP_BAD_LENGTH,      /* a Content-Length not 1*DIGIT, overflowing, or two that differ */
    HTTP_RESP_BAD_CHUNK,       /* a chunk size not hex (at most 16 digits), or chunk data
                                  not followed by CRLF */
    HTTP_RESP_TRUNCATED,       /* the connection closed in the middle of a response */
} http_resp_error;

/* A short name for reports: "bad status line", "truncated response"... */
const char *http_resp_error_name(http_resp_error e);

/* What a head's status line and fields said of its framing, before its
 * empty line was acted on (the status itself is http_resp.status). */
typedef struct http_resp_said {
    bool http10, conn_close, conn_keep_alive, has_length, has_te, te_chunked;
    uint64_t length; /* Content-Length */
} http_resp_said;

typedef struct http_resp {
    /* The last response reported with HTTP_RESP_DONE, valid until the next
     * call that feeds bytes. */
    int status;
    uint64_t body_len;    /* bytes of body (de-chunked); 0 without a body */
    bool close;           /* the server closes the connection after it: Connection: close,
                             HTTP/1.0 without keep-alive, a body delimited by the close, 101 */
    bool mismatch;        /* with an expected body: this body was not it */
    uint64_t mismatch_at; /* ... the offset of the first byte that differs (or where
                             the shorter of the two ends) */
    http_resp_error error; /* after HTTP_RESP_ERROR: why */

    /* The parser's state; see http_resp.c. */
    const uint8_t *expect;
    size_t expect_len;
    bool head_request;  /* the responses are to HEAD requests: no bodies */
    bool compare_body;  /* this response's body is compared with expect */
    bool done;          /* the fields above describe a reported response */
    bool started;       /* some byte of the current response was taken */
    uint8_t state;
    bool pending_cr;    /* the line so far ends with a CR: the next byte must be LF */
    http_resp_said said; /* of the head being read */
    uint32_t budget;    /* bytes the current line may still take (LF included) */
    uint32_t line_len;  /* bytes of the current line taken so far, when a read cut it */
    uint64_t left;      /* bytes of the body or of the current chunk still to come */
    uint8_t line[HTTP_RESP_MAX_LINE]; /* the start of a line a read cut in two */
    /* The last head read whole from one call's bytes, and what its lines
     * said (before its empty line was acted on). */
    const uint8_t *head_from; /* where the head being read began in this call's bytes, or NULL */
    bool seen_ended;          /* such a head just ended: its bytes are to be kept */
    uint16_t seen_len;        /* its bytes in seen; 0: none */
    int seen_status;
    http_resp_said seen_said;
    uint8_t seen[HTTP_RESP_SEEN_MAX];
} http_resp;

/* Ready for a new connection. expect: when not NULL, every body must be
 * these expect_len bytes (which must outlive the parser's use); one that
 * differs in a byte or in length sets mismatch for that response, which is
 * not a framing error. Bodies absent by rule (HEAD, 204, 304) are not
 * compared. */
void http_resp_init(http_resp *p, const uint8_t *expect, size_t expect_len);

/* Whether the requests are HEAD (the responses then have no body, whatever
 * their fields say). It holds from the response whose head ends next, until
 * changed. */
void http_resp_expect_head(http_resp *p, bool head);

/* Takes up to n bytes and stops right after the first complete response.
 * Returns the bytes taken; *ev is HTTP_RESP_DONE when a response ended at
 * data[returned - 1] (call again with the rest), HTTP_RESP_MORE when all n
 * were taken and no response is complete yet, HTTP_RESP_ERROR when the
 * framing is broken: the count then runs up to the byte found wrong (the
 * LF of a line that is wrong), and every later call returns 0 and ERROR.
 * A head that came whole in one call is remembered (up to
 * HTTP_RESP_SEEN_MAX bytes); when the next head begins with the same bytes
 * they are taken as they were read then, not line by line: a server's
 * heads differ in the Date line once a second, and reading the lines was
 * most of the parser's time. The verdicts are the same either way: the
 * same bytes, read from the same state (a head's start). */
size_t http_resp_feed(http_resp *p, const uint8_t *data, size_t n, http_resp_event *ev);

/* The connection ended. HTTP_RESP_DONE when that completes a body
 * delimited by the close; HTTP_RESP_ERROR (HTTP_RESP_TRUNCATED) when a
 * response was in progress (an interim 1xx one counts); HTTP_RESP_MORE
 * when the connection ended between responses. Call http_resp_init again
 * before reusing the parser. */
http_resp_event http_resp_eof(http_resp *p);

#endif
