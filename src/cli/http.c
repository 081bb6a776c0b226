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
#include <time.h>

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

/* Keeps a conditional field's value v (trailing whitespace dropped) in
 * out. Returns 1 when it cannot be read whole (cut off by line[], too long
 * for out, or a second one: a list split over two lines), so that what
 * depends on it is ignored rather than judged on a part. */
static int keep_field(http_parser *p, const char *v, char *out, size_t cap) {
    p->has_cond = 1;
    const char *e = p->line + p->line_len;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t n = (size_t)(e - v);
    if (p->truncated || out[0] || n == 0 || n >= cap)
        return 1;
    memcpy(out, v, n);
    out[n] = 0;
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
    } else if (nl == 13 && !strncasecmp(line, "if-none-match", nl)) {
        p->cond.cond_off |= keep_field(p, v, p->cond.if_none_match, sizeof(p->cond.if_none_match));
    } else if (nl == 17 && !strncasecmp(line, "if-modified-since", nl)) {
        p->cond.cond_off |=
            keep_field(p, v, p->cond.if_modified_since, sizeof(p->cond.if_modified_since));
    } else if (nl == 8 && !strncasecmp(line, "if-range", nl)) {
        p->cond.range_off |= keep_field(p, v, p->cond.if_range, sizeof(p->cond.if_range));
    } else if (nl == 5 && !strncasecmp(line, "range", nl)) {
        p->cond.range_off |= keep_field(p, v, p->cond.range, sizeof(p->cond.range));
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
    if (p->has_cond) { /* (most requests have none: no copy of the fields then) */
        req->cond = p->cond;
        if (req->cond.cond_off)
            req->cond.if_none_match[0] = req->cond.if_modified_since[0] = 0;
        if (req->cond.range_off)
            req->cond.range[0] = req->cond.if_range[0] = 0;
    } else {
        req->cond.if_none_match[0] = req->cond.if_modified_since[0] = 0;
        req->cond.range[0] = req->cond.if_range[0] = 0;
        req->cond.cond_off = req->cond.range_off = 0;
    }
    reset(p);
    *used = pos;
    return 1;
}

const char *http_connection_field(const http_request *req) {
    return !req->keep_alive ? "Connection: close\r\n" : req->http10 ? "Connection: keep-alive\r\n" : "";
}

int http_response_head(char *buf, size_t cap, size_t body_size, const char *content_type,
                       const http_request *req) {
    const char *conn = http_connection_field(req);
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
    const char *conn = http_connection_field(req);
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

/* ------------------------------------------------------------ dates */

static const char wdays[7][4] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"}; /* 1970-01-01: Thu */
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (the
 * era-based method: 400-year eras of 146097 days), so that no time zone,
 * locale or platform's gmtime is involved. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

void http_date(char out[30], int64_t t) {
    if (t < 0)
        t = 0;
    if (t > 253402300799) /* 9999-12-31T23:59:59: four digits of year */
        t = 253402300799;
    int64_t days = t / 86400, secs = t % 86400, y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int fields[] = {d, (int)(y / 100), (int)(y % 100), (int)(secs / 3600), (int)(secs / 60 % 60),
                    (int)(secs % 60)};
    static const uint8_t at[] = {5, 12, 14, 17, 20, 23}; /* where each two digits go */
    memcpy(out, "Thu, 01 Jan 1970 00:00:00 GMT", 30);
    memcpy(out, wdays[days % 7], 3);
    memcpy(out + 8, months[m - 1], 3);
    for (int i = 0; i < 6; i++) {
        out[at[i]] = (char)('0' + fields[i] / 10);
        out[at[i] + 1] = (char)('0' + fields[i] % 10);
    }
}

const char *http_date_now(void) {
    static _Thread_local int64_t shown = -1;
    static _Thread_local char now[30];
    int64_t t = (int64_t)time(NULL);
    if (t != shown) {
        http_date(now, t);
        shown = t;
    }
    return now;
}

/* Reads n digits at *s (exactly n), moving *s past them; -1 if not digits. */
static int digits(const char **s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++, (*s)++) {
        if (**s < '0' || **s > '9')
            return -1;
        v = v * 10 + (**s - '0');
    }
    return v;
}

static int month_of(const char **s) {
    for (int i = 0; i < 12; i++)
        if (!strncmp(*s, months[i], 3)) {
            *s += 3;
            return i + 1;
        }
    return -1;
}

/* "HH:MM:SS" */
static int64_t clock_of(const char **s) {
    int h = digits(s, 2);
    if (h < 0 || *(*s)++ != ':')
        return -1;
    int mi = digits(s, 2);
    if (mi < 0 || *(*s)++ != ':')
        return -1;
    int se = digits(s, 2);
    if (se < 0 || h > 23 || mi > 59 || se > 60)
        return -1;
    return h * 3600 + mi * 60 + (se == 60 ? 59 : se);
}

static int64_t date_of(int64_t y, int m, int d, int64_t secs) {
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || d < 1 || d > mdays[m - 1] || secs < 0 || y < 1970)
        return -1;
    return days_from_civil(y, m, d) * 86400 + secs;
}

int64_t http_date_parse(const char *s) {
    const char *w = s;
    while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))
        s++;
    if (s - w < 3)
        return -1;
    int64_t y;
    int m, d;
    if (*s == ',') { /* IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT" or RFC 850 "Sunday, 06-Nov-94 ..." */
        if (*++s != ' ')
            return -1;
        s++;
        if ((d = digits(&s, 2)) < 0)
            return -1;
        int rfc850 = *s == '-';
        if (*s++ != (rfc850 ? '-' : ' ') || (m = month_of(&s)) < 0 || *s++ != (rfc850 ? '-' : ' '))
            return -1;
        int yy = digits(&s, rfc850 ? 2 : 4);
        if (yy < 0)
            return -1;
        y = rfc850 ? (yy < 70 ? 2000 + yy : 1900 + yy) : yy;
        if (*s++ != ' ')
            return -1;
        int64_t secs = clock_of(&s);
        if (strcmp(s, " GMT"))
            return -1;
        return date_of(y, m, d, secs);
    }
    /* asctime "Sun Nov  6 08:49:37 1994" */
    if (*s++ != ' ' || (m = month_of(&s)) < 0 || *s++ != ' ')
        return -1;
    if (*s == ' ')
        s++, d = digits(&s, 1);
    else
        d = digits(&s, 2);
    if (d < 0 || *s++ != ' ')
        return -1;
    int64_t secs = clock_of(&s);
    if (secs < 0 || *s++ != ' ' || (y = digits(&s, 4)) < 0 || *s)
        return -1;
    return date_of(y, m, d, secs);
}

/* ------------------------------------------------------------ validators, ranges */

int http_etag_listed(const char *list, const char *etag) {
    size_t el = strlen(etag);
    const char *s = list;
    while (*s == ' ' || *s == '\t')
        s++;
    if (s[0] == '*' && (s[1] == 0 || s[1] == ' ' || s[1] == '\t'))
        return 1;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        if (!strncmp(s, "W/", 2)) /* weak comparison: W/ does not matter */
            s += 2;
        if (*s != '"')
            return 0; /* not a list of entity-tags: nothing matches */
        const char *e = strchr(s + 1, '"');
        if (!e)
            return 0;
        if ((size_t)(e + 1 - s) == el && !strncmp(s, etag, el))
            return 1;
        s = e + 1;
    }
    return 0;
}

/* A decimal number at *s, moving past it; -1 when there is none or it overflows. */
static int64_t number(const char **s) {
    if (**s < '0' || **s > '9')
        return -1;
    int64_t v = 0;
    for (; **s >= '0' && **s <= '9'; (*s)++) {
        if (v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (**s - '0');
    }
    return v;
}

int http_range(const char *v, uint64_t size, uint64_t *first, uint64_t *last) {
    if (strncasecmp(v, "bytes=", 6))
        return 0;
    const char *s = v + 6;
    while (*s == ' ' || *s == '\t')
        s++;
    int64_t a = -1, b = -1;
    if (*s == '-') { /* the last b bytes */
        s++;
        if ((b = number(&s)) < 0)
            return 0;
    } else {
        if ((a = number(&s)) < 0 || *s++ != '-')
            return 0;
        if (*s >= '0' && *s <= '9' && (b = number(&s)) < 0)
            return 0;
        if (b >= 0 && b < a)
            return 0; /* invalid: ignored, as the RFC allows */
    }
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s) /* a list, or trailing bytes: only one range is served */
        return 0;
    if (a < 0) {
        if (b == 0 || size == 0)
            return -1;
        *first = (uint64_t)b >= size ? 0 : size - (uint64_t)b;
        *last = size - 1;
        return 1;
    }
    if ((uint64_t)a >= size)
        return -1;
    *first = (uint64_t)a;
    *last = b < 0 || (uint64_t)b >= size ? size - 1 : (uint64_t)b;
    return 1;
}
