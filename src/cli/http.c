/*
 * http.c: the incremental HTTP/1.1 request parser and the fixed responses
 * of `vigil serve --mode http` (see http.h).
 *
 * Why line by line, with only the start of each line kept: a pipelined burst
 * can hold dozens of requests in one read, and a request can be split
 * anywhere, even inside "\r\n". Keeping at most 128 bytes of a line keeps
 * the state per connection fixed (no per-connection buffer of the head).
 *
 * Why every head byte is judged as it goes by, and not the kept part of the
 * line once it ends: what is not kept is not seen later, so a CR, a NUL or a
 * space hidden past line[] would slip through, and a check that depends on
 * where the reads split the bytes is one an attacker can steer. Each byte
 * moves a small per-line state (where in the line it is, and whether a CR is
 * waiting for its LF); the verdict at each byte depends only on the bytes
 * before it. Body bytes are skipped unread.
 */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Where in its line the parser is; a request line, then header lines. */
enum { L_METHOD = 0, L_TARGET, L_VERSION, L_NAME, L_VALUE };

static void reset(http_parser *p) { memset(p, 0, sizeof(*p)); }

/* What each byte may be, from the RFC's definitions, computed by the
 * compiler: token characters (RFC 9110 5.6.2: methods, field names); a
 * request-target byte (VCHAR; obs-text too: some clients send UTF-8 paths
 * unescaped, and HTTP/1.1 has no delimiter over 0x7f); a
 * field-value byte (RFC 9110 5.5: VCHAR, obs-text, SP, HTAB). NUL, the other
 * CTLs and DEL are in none of them. */
enum { C_TOKEN = 1, C_TARGET = 2, C_VALUE = 4 };
#define IS_TCHAR(c)                                                                          \
    (((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') || \
     (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || (c) == '\'' ||     \
     (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' ||      \
     (c) == '`' || (c) == '|' || (c) == '~')
#define IS_VCHAR_OR_OBS(c) ((c) > 0x20 && (c) != 0x7f)
#define CLASS(c)                                                                             \
    ((IS_TCHAR(c) ? C_TOKEN : 0) | (IS_VCHAR_OR_OBS(c) ? C_TARGET | C_VALUE : 0) |           \
     ((c) == ' ' || (c) == '\t' ? C_VALUE : 0))
#define ROW(c)                                                                               \
    CLASS(c), CLASS(c + 1), CLASS(c + 2), CLASS(c + 3), CLASS(c + 4), CLASS(c + 5),          \
        CLASS(c + 6), CLASS(c + 7), CLASS(c + 8), CLASS(c + 9), CLASS(c + 10), CLASS(c + 11), \
        CLASS(c + 12), CLASS(c + 13), CLASS(c + 14), CLASS(c + 15)
static const uint8_t byte_class[256] = {
    ROW(0x00), ROW(0x10), ROW(0x20), ROW(0x30), ROW(0x40), ROW(0x50), ROW(0x60), ROW(0x70),
    ROW(0x80), ROW(0x90), ROW(0xa0), ROW(0xb0), ROW(0xc0), ROW(0xd0), ROW(0xe0), ROW(0xf0),
};

/* In each state, the class of the bytes that just go on with the current
 * part of the line (the version is taken a byte at a time). */
static const uint8_t plain[] = {
    [L_METHOD] = C_TOKEN, [L_TARGET] = C_TARGET, [L_VERSION] = 0, [L_NAME] = C_TOKEN,
    [L_VALUE] = C_VALUE,
};

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

/* Content-Length = 1*DIGIT (RFC 9112 6.2), OWS around it already allowed
 * by the field syntax. No sign, no list: a parser that reads "+5", "5, 5"
 * or "5 6" its own way frames the body differently from ours. */
static int content_length(const char *v, const char *e, uint64_t *out) {
    uint64_t len = 0;
    if (e == v)
        return -EPROTO;
    for (const char *c = v; c < e; c++) {
        if (*c < '0' || *c > '9')
            return -EPROTO;
        uint64_t d = (uint64_t)(*c - '0');
        if (len > (UINT64_MAX - d) / 10)
            return -EPROTO;
        len = len * 10 + d;
    }
    *out = len;
    return 0;
}

/* A whole header line, its bytes already checked: what its value means, for
 * the few fields that matter here. The line's start is in p->line. */
static int header_line(http_parser *p) {
    size_t nl = p->name_len;
    if (nl >= p->line_len)
        return 0; /* a name too long to keep whole: not one we read */
    const char *line = p->line, *v = line + nl + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (nl == 10 && !strncasecmp(line, "connection", nl)) {
        p->conn_close |= has_token(v, "close");
        p->conn_keep_alive |= has_token(v, "keep-alive");
    } else if (nl == 14 && !strncasecmp(line, "content-length", nl)) {
        const char *e = line + p->line_len;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        uint64_t len;
        if (p->truncated || content_length(v, e, &len) < 0)
            return -EPROTO;
        if (p->has_length && len != p->body_left) /* two that disagree: smuggling */
            return -EPROTO;
        p->has_length = 1;
        p->body_left = len;
    } else if (nl == 17 && !strncasecmp(line, "transfer-encoding", nl)) {
        p->chunked = 1;
    }
    return 0;
}

/* n bytes of the current part of the line, all of its plain class: kept
 * where there is room, only counted where there is not. */
static void take_run(http_parser *p, const uint8_t *s, size_t n) {
    if (p->state == L_TARGET) {
        size_t room = sizeof(p->target) - 1, at = p->part_len;
        size_t k = at >= room ? 0 : n < room - at ? n : room - at;
        if (k)
            memcpy(p->target + at, s, k);
        if (k < n)
            p->target_long = 1;
    }
    size_t room = sizeof(p->line) - 1 - p->line_len;
    size_t k = n < room ? n : room;
    memcpy(p->line + p->line_len, s, k);
    p->line_len += (uint32_t)k;
    if (k < n)
        p->truncated = 1;
    p->part_len += (uint32_t)n;
}

/* One byte of a line (not CR, not LF). Returns 0, or -EPROTO. */
static int line_byte(http_parser *p, int c) {
    switch (p->state) {
    case L_METHOD:
        if (byte_class[c] & C_TOKEN)
            break;
        if (c != ' ' || !p->part_len)
            return -EPROTO;
        /* line[] holds the method whole if it is one we know */
        if (p->part_len == 3 && !memcmp(p->line, "GET", 3))
            p->method = HTTP_GET;
        else if (p->part_len == 4 && !memcmp(p->line, "HEAD", 4))
            p->method = HTTP_HEAD;
        p->head_method = p->method == HTTP_HEAD;
        p->state = L_TARGET;
        p->part_len = 0;
        return 0;
    case L_TARGET:
        if (c == ' ' && p->part_len) {
            p->state = L_VERSION;
            p->part_len = 0;
            return 0;
        }
        if (!(byte_class[c] & C_TARGET))
            return -EPROTO;
        if (p->part_len < sizeof(p->target) - 1)
            p->target[p->part_len] = (char)c;
        else
            p->target_long = 1;
        break;
    case L_VERSION: { /* "HTTP/" DIGIT "." DIGIT, a byte at a time */
        uint32_t i = p->part_len;
        if (i < 5 ? c != "HTTP/"[i] : i == 6 ? c != '.' : i > 7 || c < '0' || c > '9')
            return -EPROTO;
        if (i == 5)
            p->version_major = c - '0';
        if (i == 7)
            p->version_minor = c - '0';
        break;
    }
    case L_NAME:
        if (byte_class[c] & C_TOKEN)
            break;
        /* no whitespace before the colon (RFC 9112 5.1), none before the
         * name either: a line starting with SP or HTAB is obsolete folding */
        if (c != ':' || !p->part_len)
            return -EPROTO;
        p->name_len = p->part_len;
        p->state = L_VALUE;
        break;
    default: /* L_VALUE */
        if (!(byte_class[c] & C_VALUE))
            return -EPROTO;
        break;
    }
    p->part_len++;
    if (p->line_len < sizeof(p->line) - 1)
        p->line[p->line_len++] = (char)c;
    else
        p->truncated = 1;
    return 0;
}

/* The LF that ends a line. Returns 0 (go on), 1 (the head ended), or a
 * negative errno with *status. */
static int line_end(http_parser *p, int *status) {
    int rc = 0;
    p->line[p->line_len] = 0;
    *status = 400;
    switch (p->state) {
    case L_METHOD:
        if (p->part_len) /* not even a method and a target */
            return -EPROTO;
        break; /* an empty line before a request: skipped (RFC 9112 2.2) */
    case L_TARGET:
        return -EPROTO;
    case L_VERSION:
        if (p->part_len != 8)
            return -EPROTO;
        if (p->version_major != 1) {
            *status = 505;
            return -ENOTSUP;
        }
        p->state = L_NAME;
        break;
    case L_NAME:
        if (p->part_len) /* a name and no colon */
            return -EPROTO;
        if (p->chunked) {
            /* both: which one frames the body depends on who reads it (RFC 9112 6.3) */
            if (p->has_length)
                return -EPROTO;
            *status = 501;
            return -ENOTSUP;
        }
        rc = 1;
        break;
    default: /* L_VALUE */
        if (header_line(p) < 0)
            return -EPROTO;
        p->state = L_NAME;
        break;
    }
    *status = 0;
    p->line_len = 0;
    p->part_len = 0;
    p->truncated = 0;
    return rc;
}

int http_parse(http_parser *p, const uint8_t *data, size_t len, size_t *used, http_request *req,
               int *status) {
    size_t pos = 0;
    int rc;
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
        if (p->head_len == HTTP_MAX_HEAD) {
            *status = 431;
            *used = pos;
            return -EMSGSIZE;
        }
        if (!p->cr) { /* the bulk of a line: a run that changes no state */
            size_t room = HTTP_MAX_HEAD - p->head_len;
            size_t end = len - pos < room ? len : pos + room, i = pos;
            uint8_t want = plain[p->state];
            while (i < end && (byte_class[data[i]] & want))
                i++;
            if (i > pos) {
                take_run(p, data + pos, i - pos);
                p->head_len += (uint32_t)(i - pos);
                pos = i;
                continue;
            }
        }
        int c = data[pos++];
        p->head_len++;
        if (c == '\n') {
            p->cr = 0;
            rc = line_end(p, status);
            if (rc < 0)
                goto fail;
            if (rc == 1 && !(p->has_length && p->body_left))
                goto done;
            p->in_body = rc == 1;
            continue;
        }
        /* a CR is only ever the first half of a line ending: one anywhere
         * else ends the line for some parsers and not for others */
        if (p->cr) {
            rc = -EPROTO;
            *status = 400;
            goto fail;
        }
        if (c == '\r') {
            p->cr = 1;
            continue;
        }
        rc = line_byte(p, c);
        if (rc < 0) {
            *status = 400;
            goto fail;
        }
    }
    *used = len;
    return 0;
fail:
    *used = pos;
    return rc;
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
    case 400: return "Bad Request";
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
