/*
 * http_reqs.c: the request file of the load generator (see http_reqs.h).
 *
 * The file is read once, line by line, and the bytes to send are written as
 * it goes into one buffer that grows, so that the connections later send
 * each request from that buffer as it is, with no more work per request.
 *
 * Why it is strict: the generator counts responses by framing them, so a
 * request the server would frame differently than we do (two lengths, a
 * chunked body, a bare CR that ends a line for some parsers and not for
 * others) would make every later count on the connection wrong. Such
 * requests are refused here, once, with the line to fix, instead of showing
 * up as errors in the middle of a run.
 *
 * The output is built apart and handed over only when the whole file is
 * good, so that a failure leaves the caller's struct untouched.
 */
#include "http_reqs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The output as it grows: the bytes to send and the requests found. */
typedef struct builder {
    uint8_t *bytes;
    size_t len, cap;
    http_req *req;
    size_t n, req_cap;
} builder;

/* Where the reading is, and where to say what went wrong. */
typedef struct reader {
    const uint8_t *buf;
    size_t len, pos;
    size_t line_no; /* the line of the file that pos is in, from 1 */
    size_t req_no;  /* the request being read, from 1 */
    char *err;
    size_t errcap;
    builder out;
} reader;

/* A line of the file, its LF or CRLF aside. */
typedef struct line {
    const uint8_t *s;
    size_t len;
    size_t no;  /* its number in the file, from 1 */
    bool ended; /* an LF ended it, not the end of the file */
    bool bare_cr; /* a CR in it is not right before its LF */
} line;

__attribute__((format(printf, 2, 3))) static void say(reader *r, const char *fmt, ...) {
    if (!r->errcap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errcap, fmt, ap);
    va_end(ap);
}

/* A rule of the file is broken at line line_no of the current request. */
__attribute__((format(printf, 3, 4))) static int refuse(reader *r, size_t line_no, const char *fmt, ...) {
    if (!r->errcap)
        return -EINVAL;
    int n = snprintf(r->err, r->errcap, "request %zu (line %zu): ", r->req_no, line_no);
    if (n >= 0 && (size_t)n < r->errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err + n, r->errcap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static int out_of_memory(reader *r) {
    say(r, "out of memory reading the requests");
    return -ENOMEM;
}

/* Room for more bytes in the output. Doubling keeps the copies linear; the
 * spare room is given back at the end. */
static bool reserve(builder *b, size_t more) {
    if (b->cap - b->len >= more)
        return true;
    if (more > SIZE_MAX - b->len)
        return false;
    size_t need = b->len + more, cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *bytes = realloc(b->bytes, cap);
    if (!bytes)
        return false;
    b->bytes = bytes;
    b->cap = cap;
    return true;
}

static bool append(builder *b, const void *s, size_t n) {
    if (!n)
        return true;
    if (!reserve(b, n))
        return false;
    memcpy(b->bytes + b->len, s, n);
    b->len += n;
    return true;
}

static bool add_request(builder *b, http_req req) {
    if (b->n == b->req_cap) {
        size_t cap = b->req_cap ? b->req_cap * 2 : 16;
        http_req *grown = realloc(b->req, cap * sizeof(*grown));
        if (!grown)
            return false;
        b->req = grown;
        b->req_cap = cap;
    }
    b->req[b->n++] = req;
    return true;
}

/* Takes the line at the reading position, and moves past it. */
static void take_line(reader *r, line *l) {
    const uint8_t *s = r->buf + r->pos;
    size_t avail = r->len - r->pos;
    const uint8_t *lf = avail ? memchr(s, '\n', avail) : NULL;
    size_t n = lf ? (size_t)(lf - s) : avail;
    l->s = s;
    l->no = r->line_no;
    l->ended = lf != NULL;
    l->len = lf && n && s[n - 1] == '\r' ? n - 1 : n;
    l->bare_cr = l->len && memchr(s, '\r', l->len);
    r->pos += lf ? n + 1 : n;
    if (lf)
        r->line_no++;
}

/* Skips the empty lines before a request; false at the end of the file. */
static bool skip_empty_lines(reader *r) {
    while (r->pos < r->len) {
        const uint8_t *s = r->buf + r->pos;
        if (s[0] == '\n') {
            r->pos += 1;
        } else if (s[0] == '\r' && r->len - r->pos >= 2 && s[1] == '\n') {
            r->pos += 2;
        } else {
            return true;
        }
        r->line_no++;
    }
    return false;
}

/* A token's byte (RFC 9110 5.6.2 tchar). */
static bool is_tchar(uint8_t c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c);
}

/* Bytes that may not be in a request target: space and the controls. */
static bool is_space_or_control(uint8_t c) { return c <= ' ' || c == 0x7f; }

static bool is_ows(uint8_t c) { return c == ' ' || c == '\t'; }

static bool same_bytes(const uint8_t *s, size_t len, const char *word) {
    return len == strlen(word) && !memcmp(s, word, len);
}

/* A field name, which is case-insensitive, against a lowercase one. */
static bool same_name(const uint8_t *s, size_t len, const char *lower) {
    if (len != strlen(lower))
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i] >= 'A' && s[i] <= 'Z' ? (uint8_t)(s[i] + ('a' - 'A')) : s[i];
        if (c != (uint8_t)lower[i])
            return false;
    }
    return true;
}

bool http_method_idempotent(const uint8_t *m, size_t len) {
    static const char *const idempotent[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++)
        if (same_bytes(m, len, idempotent[i]))
            return true;
    return false;
}

/* What a request line says that the rest of the parse needs. */
typedef struct request_line {
    bool http11, head, idempotent;
} request_line;

static int read_request_line(reader *r, const line *l, request_line *rl) {
    const uint8_t *s = l->s;
    size_t len = l->len;
    const uint8_t *sp1 = memchr(s, ' ', len);
    size_t last = len;
    while (last && s[last - 1] != ' ')
        last--;
    if (!sp1 || last == 0 || (size_t)(sp1 - s) == last - 1)
        return refuse(r, l->no, "bad request line: want METHOD SP request-target SP HTTP/1.1");
    size_t method_len = (size_t)(sp1 - s);
    size_t target_off = method_len + 1, target_len = last - 1 - target_off;
    const uint8_t *version = s + last;
    size_t version_len = len - last;
    if (!method_len)
        return refuse(r, l->no, "bad request line: no method");
    for (size_t i = 0; i < method_len; i++)
        if (!is_tchar(s[i]))
            return refuse(r, l->no, "bad request line: the method is not a token");
    if (same_bytes(version, version_len, "HTTP/1.1"))
        rl->http11 = true;
    else if (same_bytes(version, version_len, "HTTP/1.0"))
        rl->http11 = false;
    else
        return refuse(r, l->no, "bad request line: the version is not HTTP/1.1 nor HTTP/1.0");
    if (!target_len)
        return refuse(r, l->no, "bad request line: empty request target");
    for (size_t i = 0; i < target_len; i++)
        if (is_space_or_control(s[target_off + i]))
            return refuse(r, l->no, "bad request line: the request target holds a space or control character");
    /* the connection would carry a tunnel after the response, not HTTP */
    if (same_bytes(s, method_len, "CONNECT"))
        return refuse(r, l->no, "CONNECT is refused: the connection would stop speaking HTTP");
    rl->head = same_bytes(s, method_len, "HEAD");
    rl->idempotent = http_method_idempotent(s, method_len);
    return 0;
}

/* A Content-Length value: 1*DIGIT between optional spaces and tabs. The
 * digits are all checked before the value is computed, so that a long
 * number is refused as too big and a bad one as bad, whatever its length. */
static int read_length(reader *r, const line *l, const uint8_t *v, size_t n, size_t *length) {
    while (n && is_ows(v[0])) {
        v++;
        n--;
    }
    while (n && is_ows(v[n - 1]))
        n--;
    if (!n)
        return refuse(r, l->no, "bad Content-Length: no digits");
    for (size_t i = 0; i < n; i++)
        if (v[i] < '0' || v[i] > '9')
            return refuse(r, l->no, "bad Content-Length: digits only");
    uint64_t value = 0;
    for (size_t i = 0; i < n; i++) {
        value = value * 10 + (uint64_t)(v[i] - '0');
        if (value > HTTP_REQS_MAX_BODY)
            return refuse(r, l->no, "Content-Length over %u bytes (1 GiB)", HTTP_REQS_MAX_BODY);
    }
    *length = (size_t)value;
    return 0;
}

/* Whether the head, from head_start in the output, would still fit with
 * more bytes and the empty line that ends it. */
static bool head_fits(const reader *r, size_t head_start, size_t more) {
    size_t now = r->out.len - head_start;
    return more <= HTTP_REQS_MAX_HEAD && now + more + 2 <= HTTP_REQS_MAX_HEAD;
}

/* Reads one request from the reading position, which is at its request
 * line, and appends it to the output. */
static int read_request(reader *r, const char *host, size_t host_len) {
    size_t head_start = r->out.len;
    line l;
    take_line(r, &l);
    size_t request_line_no = l.no;
    if (l.bare_cr)
        return refuse(r, l.no, "bare CR (a CR not followed by LF)");
    if (!l.ended)
        return refuse(r, l.no, "the file ends in the head (no empty line after it)");
    request_line rl = {0};
    int rc = read_request_line(r, &l, &rl);
    if (rc)
        return rc;
    if (!head_fits(r, head_start, l.len + 2))
        return refuse(r, l.no, "head over %d bytes", HTTP_REQS_MAX_HEAD);
    if (!append(&r->out, l.s, l.len) || !append(&r->out, "\r\n", 2))
        return out_of_memory(r);
    size_t host_at = r->out.len;

    bool has_host = false, has_length = false;
    size_t length = 0;
    for (;;) {
        take_line(r, &l);
        if (l.bare_cr)
            return refuse(r, l.no, "bare CR (a CR not followed by LF)");
        if (!l.ended)
            return refuse(r, l.no, "the file ends in the head (no empty line after it)");
        if (!l.len)
            break;
        if (is_ows(l.s[0]))
            return refuse(r, l.no, "a field line starts with a space or tab (obs-fold is refused)");
        size_t name_len = 0;
        while (name_len < l.len && is_tchar(l.s[name_len]))
            name_len++;
        if (!name_len || name_len == l.len || l.s[name_len] != ':')
            return refuse(r, l.no, "bad field line: want name: value (the name a token, the colon right after it)");
        const uint8_t *value = l.s + name_len + 1;
        size_t value_len = l.len - name_len - 1;
        if (value_len && memchr(value, '\0', value_len))
            return refuse(r, l.no, "NUL in a field value");
        bool keep = true;
        if (same_name(l.s, name_len, "content-length")) {
            size_t this_length = 0;
            rc = read_length(r, &l, value, value_len, &this_length);
            if (rc)
                return rc;
            if (has_length && this_length != length)
                return refuse(r, l.no, "Content-Length %zu after Content-Length %zu", this_length, length);
            keep = !has_length; /* the same value again: the first one says it */
            has_length = true;
            length = this_length;
        } else if (same_name(l.s, name_len, "transfer-encoding")) {
            return refuse(r, l.no, "Transfer-Encoding is refused: give the body with Content-Length "
                                   "instead (the requests are sent as fixed bytes)");
        } else if (same_name(l.s, name_len, "host")) {
            has_host = true;
        }
        if (!keep)
            continue;
        if (!head_fits(r, head_start, l.len + 2))
            return refuse(r, l.no, "head over %d bytes", HTTP_REQS_MAX_HEAD);
        if (!append(&r->out, l.s, l.len) || !append(&r->out, "\r\n", 2))
            return out_of_memory(r);
    }

    if (!has_host && host) {
        size_t field_len = sizeof("Host: ") - 1 + host_len + 2;
        if (!head_fits(r, head_start, field_len))
            return refuse(r, l.no, "head over %d bytes with the Host field added", HTTP_REQS_MAX_HEAD);
        if (!reserve(&r->out, field_len))
            return out_of_memory(r);
        uint8_t *at = r->out.bytes + host_at;
        memmove(at + field_len, at, r->out.len - host_at);
        memcpy(at, "Host: ", 6);
        memcpy(at + 6, host, host_len);
        memcpy(at + 6 + host_len, "\r\n", 2);
        r->out.len += field_len;
    } else if (!has_host && rl.http11) {
        return refuse(r, request_line_no, "no Host field (a HTTP/1.1 request needs one)");
    }
    if (!append(&r->out, "\r\n", 2))
        return out_of_memory(r);

    size_t left = r->len - r->pos;
    if (length > left)
        return refuse(r, r->line_no, "the body is cut short by the end of the file: %zu of %zu bytes", left,
                      length);
    const uint8_t *body = r->buf + r->pos;
    if (!append(&r->out, body, length))
        return out_of_memory(r);
    /* the body's lines count too, for the lines of later errors */
    for (const uint8_t *p = body, *end = body + length; p < end; p++) {
        p = memchr(p, '\n', (size_t)(end - p));
        if (!p)
            break;
        r->line_no++;
    }
    r->pos += length;

    http_req req = {.off = head_start, .len = r->out.len - head_start, .head = rl.head,
                    .idempotent = rl.idempotent};
    if (!add_request(&r->out, req))
        return out_of_memory(r);
    return 0;
}

int http_reqs_parse(const uint8_t *buf, size_t len, const char *host, http_reqs *out, char *err,
                    size_t errcap) {
    reader r = {.buf = buf, .len = len, .line_no = 1, .err = err, .errcap = err ? errcap : 0};
    if (errcap && err)
        err[0] = '\0';
    if (len > HTTP_REQS_MAX_FILE) {
        say(&r, "the request file is over %zu MiB (%zu bytes)", HTTP_REQS_MAX_FILE >> 20, len);
        return -EFBIG;
    }
    if (!len)
        r.buf = (const uint8_t *)""; /* never read, but no arithmetic on a NULL buf */
    size_t host_len = 0;
    if (host) {
        host_len = strlen(host);
        for (size_t i = 0; i < host_len; i++) {
            if (is_space_or_control((uint8_t)host[i])) {
                say(&r, "bad Host value for the requests: it holds a space or control character");
                return -EINVAL;
            }
        }
    }
    /* most files need a few bytes more than they hold (CRs added) */
    if (len && !reserve(&r.out, len + len / 16 + 64)) {
        free(r.out.bytes);
        return out_of_memory(&r);
    }

    int rc = 0;
    while (skip_empty_lines(&r)) {
        r.req_no = r.out.n + 1;
        if (r.out.n == HTTP_REQS_MAX_REQUESTS) {
            rc = refuse(&r, r.line_no, "more than %d requests", HTTP_REQS_MAX_REQUESTS);
            break;
        }
        rc = read_request(&r, host, host_len);
        if (rc)
            break;
    }
    if (!rc && !r.out.n) {
        say(&r, "no request (the file is empty or holds only empty lines)");
        rc = -EINVAL;
    }
    if (rc) {
        free(r.out.bytes);
        free(r.out.req);
        return rc;
    }
    /* the requests are kept for the whole run: give the spare room back */
    uint8_t *bytes = realloc(r.out.bytes, r.out.len);
    http_req *req = realloc(r.out.req, r.out.n * sizeof(*req));
    *out = (http_reqs){.bytes = bytes ? bytes : r.out.bytes, .req = req ? req : r.out.req, .n = r.out.n};
    return 0;
}

void http_reqs_free(http_reqs *r) {
    free(r->bytes);
    free(r->req);
    *r = (http_reqs){0};
}
