/*
 * http.h: just enough HTTP/1.1 to serve a fixed response at full speed.
 *
 * The parser is incremental: it takes bytes as they arrive, in any split
 * (a request may end in the middle of a read, a read may hold many pipelined
 * requests), keeps no copy of them, and reports each complete request once
 * its head and its body (Content-Length) have gone by. It looks only at what
 * vigil serve needs: the request line, Connection, how long the body is,
 * and for files the preconditions and Range (http_conditions).
 *
 * It is strict about framing (RFC 9112), because vigil may sit behind a
 * proxy: a request that two parsers could read differently (where it ends,
 * how long its body is, where one header stops and the next starts) is how
 * requests get smuggled past the proxy, so such a request is refused, never
 * guessed at. Refused with 400: a CR not followed by LF; a CTL or DEL in the
 * request line or a field value (HTAB is allowed in values, obs-text too);
 * a request line other than exactly "method SP target SP HTTP/d.d", or an
 * empty target, or one with a byte no request-target has; a field name that
 * is not a token (so also "Name : value" and folded lines); a Content-Length
 * that is not 1*DIGIT (surrounding whitespace aside), overflows, or disagrees
 * with another; Transfer-Encoding together with Content-Length. Each byte is
 * judged when it arrives, so where the reads split the bytes never changes
 * the verdict. Empty lines before a request are skipped but count toward
 * HTTP_MAX_HEAD, so they cannot hold a connection open for free.
 */
#ifndef VIGIL_CLI_HTTP_H
#define VIGIL_CLI_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD 8192 /* request line and headers; longer: 431 */

/* The fields a file server answers conditionally (RFC 9110 13, 14), as
 * sent. A field that does not fit, or comes twice, is not guessed at: the
 * preconditions (or the range) are then ignored and the whole file is sent,
 * which is always a correct answer. "" when absent. */
#define HTTP_FIELD_MAX 88
typedef struct http_conditions {
    char if_none_match[HTTP_FIELD_MAX];
    char if_modified_since[40];
    char if_range[HTTP_FIELD_MAX];
    char range[HTTP_FIELD_MAX];
    uint8_t cond_off;  /* ignore If-None-Match and If-Modified-Since */
    uint8_t range_off; /* ignore Range */
} http_conditions;

typedef struct http_parser {
    uint32_t head_len;   /* bytes of the current head seen so far, empty lines before it too */
    uint32_t line_len;   /* bytes of the current line kept in line[] (no CR, no LF) */
    uint32_t part_len;   /* bytes of the current part of the line (method, target, name...) */
    uint32_t name_len;   /* a header line's: the length of its name */
    int state;           /* where in its line the parser is (http.c: L_METHOD...) */
    int cr;              /* the last byte was a CR: the next must be LF */
    uint64_t body_left;  /* bytes of the current request's body still to skip */
    int in_body;
    int version_major, version_minor;
    int conn_close, conn_keep_alive, head_method, has_length, chunked;
    int method;          /* HTTP_GET, HTTP_HEAD or HTTP_OTHER */
    int target_long;     /* the request target did not fit target[] */
    char target[120];    /* the request target, as sent (at most 119 bytes) */
    int truncated;       /* the current line is longer than line[] */
    char line[128];      /* the start of the current line; the rest is only checked */
    http_conditions cond;/* the request's preconditions and range, so far */
    int has_cond;        /* ... any of them seen (else cond is not copied out) */
} http_parser;

enum { HTTP_OTHER = 0, HTTP_GET, HTTP_HEAD };

typedef struct http_request {
    int keep_alive; /* the connection stays open after the response */
    int head;       /* HEAD: the response has no body */
    int http10;     /* an HTTP/1.0 request: keep-alive must be said in the response */
    int method;     /* HTTP_GET, HTTP_HEAD, HTTP_OTHER */
    int target_long;/* the target was longer than target[] holds: answer 414 */
    char target[120];
    http_conditions cond; /* with cond_off and range_off already applied */
} http_request;

/* Parses from data[0..len). Returns 1 when a whole request ended at
 * data[*used - 1] (call again with the rest), 0 when all len bytes were taken
 * and the request is not complete yet (*used == len), or a negative errno
 * for a request it must refuse, with the status to answer in *status:
 * -EPROTO (400: malformed, see above), -EMSGSIZE (431: head over
 * HTTP_MAX_HEAD), -ENOTSUP (501: a Transfer-Encoding body; 505: a version
 * other than 1.x). On an error *used counts the bytes up to and including
 * the one that made the request bad (431: up to the limit). After an error
 * the parser must not be used again (close the connection). */
int http_parse(http_parser *p, const uint8_t *data, size_t len, size_t *used, http_request *req,
               int *status);

/* The head of a "200 OK" response to req with body_size bytes of body of
 * content_type. Writes it into buf (at most cap bytes) and returns its length,
 * or -ENOSPC. */
int http_response_head(char *buf, size_t cap, size_t body_size, const char *content_type,
                       const http_request *req);

/* The Connection field a response to req needs ("" for HTTP/1.1 keep-alive). */
const char *http_connection_field(const http_request *req);

/* An error response with Connection: close, or -ENOSPC. */
int http_error_response(char *buf, size_t cap, int status);

/* A short response with a status other than 200 (404, 403, 405, 414, 500...)
 * that keeps the connection as req says, with a one-line text body (none
 * for HEAD). Returns its length or -ENOSPC. */
int http_status_response(char *buf, size_t cap, int status, const http_request *req);

/* Decodes a request target into a path relative to the served directory:
 * drops the query, decodes %XX, strips the leading '/', maps "" and a
 * trailing '/' to index.html. Returns 0, or -EINVAL (answer 400: not an
 * absolute path, a bad %XX escape, or one that decodes to NUL) or
 * -ENAMETOOLONG (answer 414: the path does not fit cap). ".." is left to the
 * opener (VIGIL_O_BENEATH refuses it). */
int http_target_path(const char *target, char *out, size_t cap);

/* An HTTP-date (IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT") of unix_s:
 * 29 characters and a NUL. */
void http_date(char out[30], int64_t unix_s);
/* The current time as an HTTP-date, formatted once a second per thread. */
const char *http_date_now(void);
/* Parses an HTTP-date in any of the three forms a recipient must accept
 * (IMF-fixdate, RFC 850, asctime): seconds since 1970, or -1. */
int64_t http_date_parse(const char *s);
/* Does If-None-Match's list (weak comparison) hold etag, or is it "*"? */
int http_etag_listed(const char *list, const char *etag);
/* A Range of a representation of size bytes: 1 and [*first, *last] for one
 * satisfiable byte range; -1 when no byte of it can be served (answer 416);
 * 0 to ignore it and send everything (not "bytes=", malformed, or more
 * than one range: a server may always ignore Range). */
int http_range(const char *v, uint64_t size, uint64_t *first, uint64_t *last);

#endif
