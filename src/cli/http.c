/*
 * http.c: the incremental HTTP/1.1 request parser and the fixed responses
 * of `vigil serve --mode http` (see http.h).
 *
 * Why line by line, with only the start and the end of each line kept: a
 * pipelined burst can hold dozens of requests in one read, and a request can
 * be split anywhere, even inside "\r\n". Scanning for '\n' with memchr and
 * copying at most 128 bytes of a line keeps the work per request small and
 * the state per connection fixed (no per-connection buffer of the head).
 */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static void reset(http_parser *p) { memset(p, 0, sizeof(*p)); }

static int is_tchar(int c) { /* RFC 9110 token characters */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Keeps the last bytes of the current line, as a sliding window. */
static void tail_push(http_parser *p, const uint8_t *s, size_t n) {
    size_t k = sizeof(p->tail);
    if (n >= k) {
        memcpy(p->tail, s + n - k, k);
        p->tail_len = (uint32_t)k;
        return;
    }
    size_t keep = p->tail_len + n > k ? k - n : p->tail_len;
    memmove(p->tail, p->tail + p->tail_len - keep, keep);
    memcpy(p->tail + keep, s, n);
    p->tail_len = (uint32_t)(keep + n);
}

/* "METHOD SP target SP HTTP/1.x": the method from the start of the line, the
 * version from its end (tail, without the line ending: tn bytes). */
static int request_line(http_parser *p, const char *line, size_t n, size_t tn, int *status) {
    size_t m = 0;
    while (m < n && is_tchar((unsigned char)line[m]))
        m++;
    *status = 400;
    if (m == 0 || m >= n || line[m] != ' ' || (!p->truncated && n < m + 1 + 1 + 9) || tn < 9)
        return -EPROTO;
    const char *v = p->tail + tn - 8;
    if (v[-1] != ' ' || v[-2] == ' ' || memcmp(v, "HTTP/", 5) || v[5] < '0' || v[5] > '9' ||
        v[6] != '.' || v[7] < '0' || v[7] > '9')
        return -EPROTO;
    if (v[5] != '1') {
        *status = 505;
        return -ENOTSUP;
    }
    *status = 0;
    p->head_method = m == 4 && !memcmp(line, "HEAD", 4);
    p->method = p->head_method ? HTTP_HEAD : m == 3 && !memcmp(line, "GET", 3) ? HTTP_GET : HTTP_OTHER;
    p->version_minor = v[7] - '0';
    /* the target: between the method and " HTTP/1.x" (9 bytes before the end) */
    if (p->truncated || n < m + 1 + 9 || n - 9 - (m + 1) >= sizeof(p->target)) {
        p->target_long = 1;
    } else {
        size_t tl = n - 9 - (m + 1);
        memcpy(p->target, line + m + 1, tl);
        p->target[tl] = 0;
    }
    return 0;
}

/* Does the comma-separated list in v hold token tok (any case)? */
static int has_token(const char *v, const char *tok) {
    size_t tl = strlen(tok);
    for (const char *s = v; *s;) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        const char *end = e;
        while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - s) == tl && !strncasecmp(s, tok, tl))
            return 1;
        s = e;
    }
    return 0;
}

static int header_line(http_parser *p, char *line, size_t n, int *status) {
    if (line[0] == ' ' || line[0] == '\t') { /* obsolete line folding: refused (RFC 9112 5.2) */
        *status = 400;
        return -EPROTO;
    }
    char *colon = memchr(line, ':', n);
    if (!colon || colon == line) {
        if (p->truncated)
            return 0; /* a long header whose name we cannot see whole: not one we read */
        *status = 400;
        return -EPROTO;
    }
    for (char *c = line; c < colon; c++)
        if (!is_tchar((unsigned char)*c)) {
            *status = 400;
            return -EPROTO;
        }
    size_t nl = (size_t)(colon - line);
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (nl == 10 && !strncasecmp(line, "connection", nl)) {
        p->conn_close |= has_token(v, "close");
        p->conn_keep_alive |= has_token(v, "keep-alive");
    } else if (nl == 14 && !strncasecmp(line, "content-length", nl)) {
        char *e = v + strlen(v);
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        uint64_t len = 0;
        if (e == v || p->truncated) {
            *status = 400;
            return -EPROTO;
        }
        for (char *c = v; c < e; c++) {
            if (*c < '0' || *c > '9' || len > (UINT64_MAX - 9) / 10) {
                *status = 400;
                return -EPROTO;
            }
            len = len * 10 + (uint64_t)(*c - '0');
        }
        if (p->has_length && len != p->body_left) { /* two that disagree: smuggling */
            *status = 400;
            return -EPROTO;
        }
        p->has_length = 1;
        p->body_left = len;
    } else if (nl == 17 && !strncasecmp(line, "transfer-encoding", nl)) {
        p->chunked = 1;
    }
    return 0;
}

int http_parse(http_parser *p, const uint8_t *data, size_t len, size_t *used, http_request *req,
               int *status) {
    size_t pos = 0;
    *status = 0;
    while (pos < len) {
        if (p->in_body) {
            size_t take = len - pos < p->body_left ? len - pos : (size_t)p->body_left;
            pos += take;
            p->body_left -= take;
            if (p->body_left == 0)
                goto done;
            continue;
        }
        const uint8_t *nl = memchr(data + pos, '\n', len - pos);
        size_t seg = nl ? (size_t)(nl - (data + pos)) + 1 : len - pos;
        if (p->head_len + seg > HTTP_MAX_HEAD) {
            *status = 431;
            *used = pos;
            return -EMSGSIZE;
        }
        size_t room = sizeof(p->line) - 1 - p->line_len;
        size_t copy = seg < room ? seg : room;
        memcpy(p->line + p->line_len, data + pos, copy);
        p->line_len += (uint32_t)copy;
        if (copy < seg)
            p->truncated = 1;
        tail_push(p, data + pos, seg);
        p->head_len += (uint32_t)seg;
        pos += seg;
        if (!nl)
            break;
        /* a whole line: drop its "\r\n" (or bare "\n") */
        size_t n = p->line_len, tn = p->tail_len;
        tn--;
        if (tn && p->tail[tn - 1] == '\r')
            tn--;
        if (!p->truncated) {
            n--;
            if (n && p->line[n - 1] == '\r')
                n--;
        }
        p->line[n] = 0;
        int rc = 0;
        if (p->lines == 0) {
            if (n == 0 && !p->truncated) { /* an empty line before a request: allowed, skipped */
                p->head_len = 0;
            } else {
                rc = request_line(p, p->line, n, tn, status);
                p->lines = 1;
            }
        } else if (n == 0 && !p->truncated) { /* the end of the head */
            if (p->chunked) {
                *status = 501;
                rc = -ENOTSUP;
            } else if (p->has_length && p->body_left) {
                p->in_body = 1;
            } else {
                goto done;
            }
        } else {
            rc = header_line(p, p->line, n, status);
            p->lines++;
        }
        p->line_len = 0;
        p->tail_len = 0;
        p->truncated = 0;
        if (rc < 0) {
            *used = pos;
            return rc;
        }
    }
    *used = len;
    return 0;
done:
    req->http10 = p->version_minor == 0;
    req->keep_alive = req->http10 ? p->conn_keep_alive && !p->conn_close : !p->conn_close;
    req->head = p->head_method;
    req->method = p->method;
    req->target_long = p->target_long;
    memcpy(req->target, p->target, sizeof(req->target));
    reset(p);
    *used = pos;
    return 1;
}

int http_response_head(char *buf, size_t cap, size_t body_size, const char *content_type,
                       const http_request *req) {
    const char *conn = !req->keep_alive ? "Connection: close\r\n"
                       : req->http10    ? "Connection: keep-alive\r\n"
                                        : "";
    int n = snprintf(buf, cap,
                     "HTTP/1.1 200 OK\r\nServer: vigil\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n%s\r\n",
                     content_type, body_size, conn);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int http_error_response(char *buf, size_t cap, int status) {
    const char *reason = status == 431   ? "Request Header Fields Too Large"
                         : status == 501 ? "Not Implemented"
                         : status == 505 ? "HTTP Version Not Supported"
                                         : "Bad Request";
    if (status != 431 && status != 501 && status != 505)
        status = 400;
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nServer: vigil\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                     status, reason);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

static const char *reason_of(int status) {
    switch (status) {
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

int http_status_response(char *buf, size_t cap, int status, const http_request *req) {
    const char *reason = reason_of(status);
    const char *conn = !req->keep_alive ? "Connection: close\r\n"
                       : req->http10    ? "Connection: keep-alive\r\n"
                                        : "";
    const char *allow = status == 405 ? "Allow: GET, HEAD\r\n" : "";
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nServer: vigil\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n%s%s",
                     status, reason, strlen(reason) + 1, allow, conn, req->head ? "" : reason,
                     req->head ? "" : "\n");
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

static int hex(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int http_target_path(const char *target, char *out, size_t cap) {
    if (target[0] != '/')
        return -EINVAL; /* origin form only: no absolute URIs, no "*" */
    size_t o = 0;
    for (const char *s = target + 1; *s && *s != '?' && *s != '#'; s++) {
        int c = (unsigned char)*s;
        if (c == '%') {
            int h = hex(s[1]), l = h < 0 ? -1 : hex(s[2]);
            if (l < 0)
                return -EINVAL;
            c = h * 16 + l;
            s += 2;
            if (c == 0)
                return -EINVAL;
        }
        if (o + 1 >= cap)
            return -ENAMETOOLONG;
        out[o++] = (char)c;
    }
    out[o] = 0;
    if (o == 0 || out[o - 1] == '/') {
        const char *idx = "index.html";
        if (o + strlen(idx) + 1 > cap)
            return -ENAMETOOLONG;
        memcpy(out + o, idx, strlen(idx) + 1);
    }
    return 0;
}
