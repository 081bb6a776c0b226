/*
 * http_reqs.h: the request file of the load generator (vigil bench --http
 * --requests FILE): one or more complete raw HTTP/1.1 requests, which the
 * connections send in rotation. This turns the file's bytes into the bytes
 * to send, checked once, so that the generator sends fixed bytes and can
 * count the responses.
 *
 * The rules:
 * - Requests follow each other. Empty lines (LF or CRLF) before a request
 *   and after the last one are skipped: they separate the requests in the
 *   file, and a server may ignore them too (RFC 9112 section 2.2).
 * - A line ends in LF or CRLF; a CR anywhere else is refused. In the bytes
 *   to send every line of the head ends in CRLF, and the head ends with an
 *   empty line. The file must hold that empty line: a file that ends in a
 *   head is refused.
 * - The request line is "METHOD SP request-target SP HTTP/1.1" (or
 *   HTTP/1.0), with single spaces. The method is a token (RFC 9110 tchar,
 *   case-sensitive); the target is not empty and holds no space nor control
 *   character (bytes 0x00-0x20 and 0x7f). CONNECT is refused: after it the
 *   connection would stop speaking HTTP.
 * - A field line is "name: value": the name a token, the colon right after
 *   it. A line that starts with SP or HTAB (obs-fold) is refused, and so is
 *   a NUL in a value (RFC 9110 5.5). Other lines are sent as they are.
 * - Content-Length is digits only, around which spaces and tabs are
 *   allowed, and at most HTTP_REQS_MAX_BODY. Several Content-Length fields
 *   of the same value are merged into the first; different values are
 *   refused. Exactly that many bytes of body follow the head's empty line;
 *   they are copied as they are (binary, nothing normalized), and a file
 *   that ends before them is refused. Without Content-Length there is no
 *   body. Transfer-Encoding is refused: give the body with Content-Length.
 * - A request without a Host field gets "Host: <host>" right after its
 *   request line. Without host (NULL) a HTTP/1.1 request without Host is
 *   refused; a HTTP/1.0 one may go without. Host fields that are there are
 *   sent as they are.
 * - Limits: at most HTTP_REQS_MAX_REQUESTS requests, each head at most
 *   HTTP_REQS_MAX_HEAD bytes as it will be sent (CRLFs, an added Host
 *   field and the empty line included), the file at most HTTP_REQS_MAX_FILE
 *   bytes. A file with no request (empty, or only empty lines) is refused.
 */
#ifndef VIGIL_CLI_HTTP_REQS_H
#define VIGIL_CLI_HTTP_REQS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_REQS_MAX_REQUESTS 65536
#define HTTP_REQS_MAX_HEAD 65536
#define HTTP_REQS_MAX_BODY (1u << 30)       /* 1 GiB, a Content-Length above is refused */
#define HTTP_REQS_MAX_FILE ((size_t)256 << 20) /* 256 MiB; check it before reading the file */

typedef struct http_req {
    size_t off, len; /* the request's bytes in http_reqs.bytes, as they will be sent */
    bool head;       /* method HEAD: its response has no body */
    bool idempotent; /* GET HEAD PUT DELETE OPTIONS TRACE (RFC 9110 9.2.2): may be sent again
                        on a new connection */
} http_req;

typedef struct http_reqs {
    uint8_t *bytes; /* all the requests back to back, owned */
    http_req *req;  /* n of them, in the order of the file; owned */
    size_t n;       /* at least 1 */
} http_reqs;

/* Parses the file's bytes buf[0..len) into out. host: the Host field value
 * to add to a request that has none (e.g. "127.0.0.1:8080"); it must hold
 * no whitespace nor control character. NULL: a HTTP/1.1 request without
 * Host is refused.
 * Returns 0; or -EINVAL when the file breaks a rule above (or host is bad),
 * -EFBIG when len is over HTTP_REQS_MAX_FILE, -ENOMEM; then err (when
 * errcap > 0) holds one line saying why, where a request is to blame with
 * its number and the line in the file where the problem is ("request 3
 * (line 17): bad request line: ..."), and out is untouched (nothing to
 * free). */
int http_reqs_parse(const uint8_t *buf, size_t len, const char *host, http_reqs *out, char *err,
                    size_t errcap);

/* RFC 9110 9.2.2: GET HEAD PUT DELETE OPTIONS TRACE (case-sensitive), the
 * methods whose requests may be sent again on a new connection. */
bool http_method_idempotent(const uint8_t *m, size_t len);

/* Frees what http_reqs_parse gave out, and empties it (a second call does
 * nothing). */
void http_reqs_free(http_reqs *r);

#endif
