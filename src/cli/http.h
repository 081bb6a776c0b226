/*
 * http.h: just enough HTTP/1.1 to serve a fixed response at full speed.
 *
 * The parser is incremental: it takes bytes as they arrive, in any split
 * (a request may end in the middle of a read, a read may hold many pipelined
 * requests), keeps no copy of them, and reports each complete request once
 * its head and its body (Content-Length) have gone by. It looks only at what
 * a fixed-response server needs: the request line, Connection, and how long
 * the body is.
 */
#ifndef VIGIL_CLI_HTTP_H
#define VIGIL_CLI_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD 8192 /* request line and headers; longer: 431 */

typedef struct http_parser {
    uint32_t head_len;   /* bytes of the current head seen so far */
    uint32_t line_len;   /* bytes of the current line kept in line[] */
    uint32_t lines;      /* lines of the current head done (0: in the request line) */
    uint64_t body_left;  /* bytes of the current request's body still to skip */
    int in_body;
    int version_minor;   /* of the current request: 1.0 or 1.1 */
    int conn_close, conn_keep_alive, head_method, has_length, chunked;
    int method;          /* HTTP_GET, HTTP_HEAD or HTTP_OTHER */
    int target_long;     /* the request target did not fit target[] */
    char target[120];    /* the request target, as sent */
    int truncated;       /* the current line is longer than line[] */
    char line[128];      /* the start of the current line; the rest is only counted */
    uint32_t tail_len;
    char tail[16];       /* its last bytes (the request line ends in the version) */
} http_parser;

enum { HTTP_OTHER = 0, HTTP_GET, HTTP_HEAD };

typedef struct http_request {
    int keep_alive; /* the connection stays open after the response */
    int head;       /* HEAD: the response has no body */
    int http10;     /* an HTTP/1.0 request: keep-alive must be said in the response */
    int method;     /* HTTP_GET, HTTP_HEAD, HTTP_OTHER */
    int target_long;/* the target was longer than target[] holds: answer 414 */
    char target[120];
} http_request;

/* Parses from data[0..len). Returns 1 when a whole request ended at
 * data[*used - 1] (call again with the rest), 0 when all len bytes were taken
 * and the request is not complete yet (*used == len), or a negative errno
 * for a request it must refuse, with the status to answer in *status:
 * -EPROTO (400: malformed), -EMSGSIZE (431: head over HTTP_MAX_HEAD),
 * -ENOTSUP (501: a Transfer-Encoding body; 505: a version other than 1.x).
 * After an error the parser must not be used again (close the connection). */
int http_parse(http_parser *p, const uint8_t *data, size_t len, size_t *used, http_request *req,
               int *status);

/* The head of a "200 OK" response to req with body_size bytes of body of
 * content_type. Writes it into buf (at most cap bytes) and returns its length,
 * or -ENOSPC. */
int http_response_head(char *buf, size_t cap, size_t body_size, const char *content_type,
                       const http_request *req);

/* An error response with Connection: close, or -ENOSPC. */
int http_error_response(char *buf, size_t cap, int status);

/* A short response with a status other than 200 (404, 403, 405, 414, 500...)
 * that keeps the connection as req says, with a one-line text body (none
 * for HEAD). Returns its length or -ENOSPC. */
int http_status_response(char *buf, size_t cap, int status, const http_request *req);

/* Decodes a request target into a path relative to the served directory:
 * drops the query, decodes %XX, strips the leading '/', maps "" and a
 * trailing '/' to index.html. Returns 0, or -EINVAL (not an absolute path,
 * a NUL or bad escape: 400) or -ENAMETOOLONG. ".." is left to the opener
 * (VIGIL_O_BENEATH refuses it). */
int http_target_path(const char *target, char *out, size_t cap);

#endif
