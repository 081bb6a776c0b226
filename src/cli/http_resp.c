/*
 * http_resp.c: the incremental HTTP/1.1 response parser of the load
 * generator (see http_resp.h).
 *
 * Why lines are found with one scan and judged whole: the load generator runs
 * it on hundreds of thousands of responses a second on one core, and most
 * lines arrive whole in one read. Such a line is judged where it lies in
 * the read, with no copy. Only a line that a read cuts in two has its start
 * (HTTP_RESP_MAX_LINE bytes) copied into the parser, and the rest of it is
 * only counted; each line is judged on that start and its length alone, so
 * that a line judged in place and the same line judged from the copy get
 * the same verdict.
 *
 * Why a CR is checked byte by byte against the one after it: a lone CR ends
 * the line for some parsers and not for others, so it is refused, and the
 * verdict must not depend on whether the CR and the byte after it came in
 * the same read.
 *
 * Body bytes are never copied: they are counted, and compared in place with
 * the expected body when there is one.
 */
#include "http_resp.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Where in a response the parser is. The states up to S_TRAILER read
 * lines; the body states take runs of bytes. */
enum {
    S_STATUS = 0, /* the status line of a response, final or interim */
    S_FIELDS,     /* field lines, up to the empty line that ends the head */
    S_CHUNK_SIZE, /* a chunk-size line, extensions included */
    S_CHUNK_END,  /* the empty line after a chunk's data */
    S_TRAILER,    /* trailer field lines after the last chunk, up to the empty line */
    S_BODY,       /* Content-Length bytes of body */
    S_CHUNK_DATA, /* the data of a chunk */
    S_BODY_EOF,   /* a body that runs until the connection closes */
    S_FAILED,     /* after an error: nothing more is taken */
};

/* What a line read by each state is refused as, when a CR in it is not
 * followed by LF, and when it runs past its budget. */
static const uint8_t bad_cr_error[] = {
    [S_STATUS] = HTTP_RESP_BAD_STATUS_LINE, [S_FIELDS] = HTTP_RESP_BAD_HEADER,
    [S_CHUNK_SIZE] = HTTP_RESP_BAD_CHUNK,   [S_CHUNK_END] = HTTP_RESP_BAD_CHUNK,
    [S_TRAILER] = HTTP_RESP_BAD_HEADER,
};
static const uint8_t too_long_error[] = {
    [S_STATUS] = HTTP_RESP_HEAD_TOO_LONG,  [S_FIELDS] = HTTP_RESP_HEAD_TOO_LONG,
    [S_CHUNK_SIZE] = HTTP_RESP_BAD_CHUNK,  [S_CHUNK_END] = HTTP_RESP_BAD_CHUNK,
    [S_TRAILER] = HTTP_RESP_HEAD_TOO_LONG,
};

const char *http_resp_error_name(http_resp_error e) {
    switch (e) {
    case HTTP_RESP_OK: return "ok";
    case HTTP_RESP_BAD_STATUS_LINE: return "bad status line";
    case HTTP_RESP_BAD_HEADER: return "bad header";
    case HTTP_RESP_HEAD_TOO_LONG: return "head too long";
    case HTTP_RESP_BAD_LENGTH: return "bad content-length";
    case HTTP_RESP_BAD_CHUNK: return "bad chunk";
    case HTTP_RESP_TRUNCATED: return "truncated response";
    }
    return "unknown error";
}

/* A field name is a token (RFC 9110 5.6.2): "!#$%&'*+-.^_`|~", digits and
 * letters. A byte a byte: a name is scanned once per field line, and a
 * table load is the cheapest test there is (bytes 0x80 and up are 0). */
static const uint8_t tchar_table[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, /* 0x20  !"#$%&'()*+,-./ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, /* 0x30 0-9:;<=>? */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 @A-O */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, /* 0x50 P-Z[\]^_ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 `a-o */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, /* 0x70 p-z{|}~ DEL */
};

static inline bool is_tchar(uint8_t c) { return tchar_table[c]; }

static inline bool is_ows(uint8_t c) { return c == ' ' || c == '\t'; }

/* Does s[0..len) spell lower, a lowercase word of letters and '-', in any
 * case? Setting bit 0x20 folds only 'A'-'Z' onto the letters; the one other
 * byte it maps onto one of these, CR onto '-', never reaches here (a line's
 * CRs are refused or stripped before it is read). */
static bool same_word(const uint8_t *s, size_t len, const char *lower, size_t lower_len) {
    if (len != lower_len)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((s[i] | 0x20) != (uint8_t)lower[i])
            return false;
    return true;
}

/* A line, where it lies: its first kept bytes at s (in the read, or copied
 * into the parser when a read cut it), its whole length len (without CR and
 * LF); kept = min(len, HTTP_RESP_MAX_LINE). */
typedef struct line {
    const uint8_t *s;
    size_t len, kept;
} line;

enum { LINE_DONE, LINE_MORE, LINE_BAD_CR, LINE_TOO_LONG };

/* Copies what fits of a piece of a line that a read cut into the parser. */
static void keep_piece(http_resp *p, const uint8_t *s, size_t n) {
    if (p->line_len < HTTP_RESP_MAX_LINE) {
        size_t room = HTTP_RESP_MAX_LINE - p->line_len;
        memcpy(p->line + p->line_len, s, n < room ? n : room);
    }
    p->line_len += (uint32_t)n;
}

/* The first CR or LF in s[0..n), or n: a line's one scan. Sixteen bytes
 * at a time where SSE2 is (every x86-64): a head's lines are 20-60 bytes,
 * and two memchr calls a line (one for the LF, one for a CR before it)
 * were most of the parser's time. */
static size_t find_cr_or_lf(const uint8_t *s, size_t n) {
    size_t i = 0;
#ifdef __SSE2__
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
        if (m)
            return i + (size_t)__builtin_ctz(m);
    }
#endif
    for (; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n')
            return i;
    return n;
}

/* Takes the bytes of the current line from data[*pos..n), moving *pos past
 * what it took. LINE_DONE with *out when the LF came; LINE_MORE when all
 * the bytes were taken and the line goes on; LINE_BAD_CR or LINE_TOO_LONG,
 * with *pos just past the byte found wrong. A CR may only come right
 * before the LF (or last in the bytes at hand, the LF to follow). */
static int next_line(http_resp *p, const uint8_t *data, size_t n, size_t *pos, line *out) {
    size_t start = *pos, avail = n - start;
    size_t scan = avail < p->budget ? avail : p->budget;
    const uint8_t *s = data + start;
    if (p->pending_cr && scan && s[0] != '\n') { /* the last read ended with a CR */
        *pos = start + 1;
        return LINE_BAD_CR;
    }
    size_t at = find_cr_or_lf(s, scan);
    if (at + 1 < scan && s[at] == '\r') {
        if (s[at + 1] != '\n') {
            *pos = start + at + 2;
            return LINE_BAD_CR;
        }
        at++;
    }
    const uint8_t *lf = at < scan && s[at] == '\n' ? s + at : NULL;
    size_t piece = lf ? at : scan; /* the line's bytes in this read, LF aside */
    bool ends_cr = piece ? s[piece - 1] == '\r' : p->pending_cr;
    if (!lf) {
        keep_piece(p, s, piece);
        p->pending_cr = ends_cr;
        p->budget -= (uint32_t)piece;
        *pos = start + piece;
        return p->budget ? LINE_MORE : LINE_TOO_LONG;
    }
    size_t len = p->line_len + piece - ends_cr;
    if (!p->line_len) { /* the whole line is in this read */
        out->s = s;
        out->kept = len < HTTP_RESP_MAX_LINE ? len : HTTP_RESP_MAX_LINE;
    } else {
        keep_piece(p, s, piece);
        size_t copied = p->line_len < HTTP_RESP_MAX_LINE ? p->line_len : HTTP_RESP_MAX_LINE;
        out->s = p->line;
        out->kept = len < copied ? len : copied; /* the copy may end with the CR */
    }
    out->len = len;
    p->budget -= (uint32_t)piece + 1;
    p->line_len = 0;
    p->pending_cr = false;
    *pos = start + piece + 1;
    return LINE_DONE;
}

/* Forgets what the fields of the head said: before each head (an interim
 * response's fields say nothing about the final one). */
static void start_head(http_resp *p) {
    p->state = S_STATUS;
    p->budget = HTTP_RESP_MAX_HEAD;
    memset(&p->said, 0, sizeof(p->said));
}

void http_resp_init(http_resp *p, const uint8_t *expect, size_t expect_len) {
    memset(p, 0, sizeof(*p));
    p->expect = expect;
    p->expect_len = expect_len;
    start_head(p);
}

void http_resp_expect_head(http_resp *p, bool head) { p->head_request = head; }

/* Clears what the last reported response left, when the next one begins. */
static void clear_result(http_resp *p) {
    p->done = false;
    p->status = 0;
    p->body_len = 0;
    p->close = p->mismatch = false;
    p->mismatch_at = 0;
}

static http_resp_event fail(http_resp *p, http_resp_error e) {
    p->error = e;
    p->state = S_FAILED;
    return HTTP_RESP_ERROR;
}

/* A piece of body (de-chunked), at offset body_len of it: counted, and
 * compared with the expected body while no difference has been found. */
static void take_body(http_resp *p, const uint8_t *d, size_t n) {
    if (p->compare_body && !p->mismatch) {
        uint64_t at = p->body_len;
        size_t in = at >= p->expect_len ? 0 : p->expect_len - at < n ? (size_t)(p->expect_len - at) : n;
        if (in && memcmp(d, p->expect + at, in)) {
            size_t i = 0; /* where, byte by byte: only once per mismatched body */
            while (d[i] == p->expect[at + i])
                i++;
            p->mismatch = true;
            p->mismatch_at = at + i;
        } else if (in < n) { /* the body goes on past the expected one */
            p->mismatch = true;
            p->mismatch_at = p->expect_len;
        }
    }
    p->body_len += n;
}

/* The response is complete: a body shorter than expected is a mismatch
 * too, and the parser is ready for the next response. */
static http_resp_event finish(http_resp *p) {
    if (p->compare_body && !p->mismatch && p->body_len != p->expect_len) {
        p->mismatch = true;
        p->mismatch_at = p->body_len;
    }
    p->compare_body = false;
    p->done = true;
    p->started = false;
    start_head(p);
    return HTTP_RESP_DONE;
}

/* "HTTP/1.x SP 3DIGIT [SP reason-phrase]" (RFC 9112 4); the reason may be
 * empty, and the SP before it missing too, as some servers send it. */
static bool status_line(http_resp *p, const line *l) {
    const uint8_t *s = l->s;
    if (l->len < 12 || memcmp(s, "HTTP/1.", 7) || s[7] < '0' || s[7] > '9' || s[8] != ' ')
        return false;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        status = status * 10 + (s[i] - '0');
    }
    if ((l->len > 12 && s[12] != ' ') || status < 100 || status > 599)
        return false;
    p->status = status;
    p->said.http10 = s[7] == '0';
    return true;
}

/* Content-Length = 1*DIGIT (RFC 9112 6.2), the OWS around it already cut. */
static bool content_length(const uint8_t *v, size_t n, uint64_t *out) {
    uint64_t len = 0;
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        uint64_t d = (uint64_t)(v[i] - '0');
        if (len > (UINT64_MAX - d) / 10)
            return false;
        len = len * 10 + d;
    }
    *out = len;
    return true;
}

/* The next element of a comma-separated list (RFC 9110 5.6.1) in
 * v[*at..n), without its OWS; empty elements are skipped. Returns false
 * when there is none left. */
static bool next_element(const uint8_t *v, size_t n, size_t *at, const uint8_t **el, size_t *el_len) {
    size_t i = *at;
    while (i < n && (v[i] == ',' || is_ows(v[i])))
        i++;
    if (i == n) {
        *at = n;
        return false;
    }
    const uint8_t *comma = memchr(v + i, ',', n - i);
    size_t end = comma ? (size_t)(comma - v) : n;
    *at = end;
    while (end > i && is_ows(v[end - 1]))
        end--;
    *el = v + i;
    *el_len = end - i;
    return true;
}

/* A field line (head or trailer): "token:" and a value. Only a head's
 * Content-Length, Transfer-Encoding and Connection are read; any other
 * line is only checked for its shape. Returns 0 or the error. */
static http_resp_error field_line(http_resp *p, const line *l, bool in_head) {
    const uint8_t *s = l->s;
    size_t name_len = 0;
    while (name_len < l->kept && is_tchar(s[name_len]))
        name_len++;
    /* no name (a line starting with SP or HTAB is an obsolete fold), a
     * byte in it that no name has, no colon, or a name too long to keep */
    if (!name_len || name_len == l->kept || s[name_len] != ':')
        return HTTP_RESP_BAD_HEADER;
    if (!in_head)
        return HTTP_RESP_OK;
    enum { OTHER, LENGTH, TE, CONNECTION } field = OTHER;
    if (same_word(s, name_len, "content-length", 14))
        field = LENGTH;
    else if (same_word(s, name_len, "transfer-encoding", 17))
        field = TE;
    else if (same_word(s, name_len, "connection", 10))
        field = CONNECTION;
    if (field == OTHER)
        return HTTP_RESP_OK;
    if (l->len > l->kept) /* a line to read, and only its start was kept */
        return HTTP_RESP_HEAD_TOO_LONG;
    size_t from = name_len + 1, to = l->len;
    while (from < to && is_ows(s[from]))
        from++;
    while (to > from && is_ows(s[to - 1]))
        to--;
    const uint8_t *v = s + from, *el;
    size_t n = to - from, at = 0, el_len;
    switch (field) {
    case LENGTH: {
        uint64_t len;
        if (!content_length(v, n, &len))
            return HTTP_RESP_BAD_LENGTH;
        /* two that disagree: which one frames the body is anyone's guess */
        if (p->said.has_length && len != p->said.length)
            return HTTP_RESP_BAD_LENGTH;
        p->said.has_length = true;
        p->said.length = len;
        break;
    }
    case TE: {
        /* Several lines make one list: the last coding of the last line
         * that has one is the final coding. */
        bool any = false, chunked = false;
        while (next_element(v, n, &at, &el, &el_len)) {
            any = true;
            chunked = same_word(el, el_len, "chunked", 7);
        }
        if (any) {
            p->said.has_te = true;
            p->said.te_chunked = chunked;
        }
        break;
    }
    case CONNECTION:
        while (next_element(v, n, &at, &el, &el_len)) {
            p->said.conn_close |= same_word(el, el_len, "close", 5);
            p->said.conn_keep_alive |= same_word(el, el_len, "keep-alive", 10);
        }
        break;
    default:
        break;
    }
    return HTTP_RESP_OK;
}

/* The empty line that ends a head: skips an interim response, or decides
 * how the final one's body is framed (RFC 9112 6.3). */
static http_resp_event head_end(http_resp *p) {
    int status = p->status;
    if (status < 200 && status != 101) {
        start_head(p);
        return HTTP_RESP_MORE;
    }
    /* HTTP/1.0 with Transfer-Encoding: the framing is suspect, and the
     * RFC (6.1) has the connection closed after it. */
    const http_resp_said *h = &p->said;
    p->close = h->conn_close || (h->http10 && (!h->conn_keep_alive || h->has_te)) || status == 101;
    if (p->head_request || status == 204 || status == 304 || status == 101)
        return finish(p);
    p->compare_body = p->expect != NULL;
    if (h->has_te) {
        if (h->te_chunked) {
            p->state = S_CHUNK_SIZE;
            p->budget = HTTP_RESP_MAX_CHUNK_LINE;
        } else {
            p->state = S_BODY_EOF;
            p->close = true;
        }
    } else if (h->has_length) {
        if (!h->length)
            return finish(p);
        p->state = S_BODY;
        p->left = h->length;
    } else {
        p->state = S_BODY_EOF;
        p->close = true;
    }
    return HTTP_RESP_MORE;
}

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* chunk-size [BWS ";" chunk-ext] (RFC 9112 7.1); the extensions are not
 * read. At most 16 hex digits, leading zeros included: any more is either
 * an overflow or padding no server needs. */
static http_resp_event chunk_size_line(http_resp *p, const line *l) {
    const uint8_t *s = l->s;
    uint64_t size = 0;
    size_t i = 0;
    int d;
    while (i < l->kept && (d = hex_digit(s[i])) >= 0) {
        if (i == 16)
            return fail(p, HTTP_RESP_BAD_CHUNK);
        size = size << 4 | (uint64_t)d;
        i++;
    }
    if (!i)
        return fail(p, HTTP_RESP_BAD_CHUNK);
    if (i < l->len) {
        while (i < l->kept && is_ows(s[i]))
            i++;
        if (i == l->kept || s[i] != ';')
            return fail(p, HTTP_RESP_BAD_CHUNK);
    }
    if (!size) {
        p->state = S_TRAILER;
        p->budget = HTTP_RESP_MAX_HEAD;
        return HTTP_RESP_MORE;
    }
    if (size > UINT64_MAX - p->body_len)
        return fail(p, HTTP_RESP_BAD_CHUNK);
    p->state = S_CHUNK_DATA;
    p->left = size;
    return HTTP_RESP_MORE;
}

/* A head that began in this call's bytes ended: what its lines said is
 * kept for when the same bytes come again (its bytes are kept by
 * http_resp_feed, which knows where the head ended). */
static void head_said(http_resp *p) {
    p->seen_len = 0; /* until the bytes that go with it are there */
    p->seen_status = p->status;
    p->seen_said = p->said;
    p->seen_ended = true;
}

/* The remembered head again: its lines are taken as they were read. */
static http_resp_event head_again(http_resp *p) {
    p->status = p->seen_status;
    p->said = p->seen_said;
    return head_end(p);
}

/* A whole line, in the state that reads it. */
static http_resp_event on_line(http_resp *p, const line *l) {
    http_resp_error e;
    switch (p->state) {
    case S_STATUS:
        if (!status_line(p, l))
            return fail(p, HTTP_RESP_BAD_STATUS_LINE);
        p->state = S_FIELDS;
        return HTTP_RESP_MORE;
    case S_FIELDS:
        if (!l->len) {
            if (p->head_from)
                head_said(p);
            return head_end(p);
        }
        e = field_line(p, l, true);
        return e ? fail(p, e) : HTTP_RESP_MORE;
    case S_CHUNK_SIZE:
        return chunk_size_line(p, l);
    case S_CHUNK_END:
        if (l->len)
            return fail(p, HTTP_RESP_BAD_CHUNK);
        p->state = S_CHUNK_SIZE;
        p->budget = HTTP_RESP_MAX_CHUNK_LINE;
        return HTTP_RESP_MORE;
    default: /* S_TRAILER */
        if (!l->len)
            return finish(p);
        e = field_line(p, l, false);
        return e ? fail(p, e) : HTTP_RESP_MORE;
    }
}

size_t http_resp_feed(http_resp *p, const uint8_t *data, size_t n, http_resp_event *ev) {
    if (p->state == S_FAILED) {
        *ev = HTTP_RESP_ERROR;
        return 0;
    }
    if (!n) {
        *ev = HTTP_RESP_MORE;
        return 0;
    }
    if (p->done)
        clear_result(p);
    p->started = true;
    p->head_from = NULL; /* the last call's bytes are gone */
    size_t pos = 0;
    while (pos < n) {
        switch (p->state) {
        case S_BODY:
        case S_CHUNK_DATA: {
            size_t take = n - pos < p->left ? n - pos : (size_t)p->left;
            take_body(p, data + pos, take);
            pos += take;
            p->left -= take;
            if (p->left)
                break;
            if (p->state == S_BODY) {
                *ev = finish(p);
                return pos;
            }
            p->state = S_CHUNK_END;
            p->budget = 2; /* CRLF, or a bare LF */
            break;
        }
        case S_BODY_EOF:
            take_body(p, data + pos, n - pos);
            pos = n;
            break;
        default: {
            http_resp_event e;
            if (p->state == S_STATUS && p->budget == HTTP_RESP_MAX_HEAD && !p->line_len && !p->pending_cr) {
                /* A head begins here, read from the same state as any other. */
                if (p->seen_len && n - pos >= p->seen_len && !memcmp(data + pos, p->seen, p->seen_len)) {
                    pos += p->seen_len;
                    e = head_again(p);
                    if (e != HTTP_RESP_MORE) {
                        *ev = e;
                        return pos;
                    }
                    break;
                }
                p->head_from = data + pos;
            }
            line l;
            int r = next_line(p, data, n, &pos, &l);
            if (r == LINE_MORE)
                break;
            if (r != LINE_DONE) {
                *ev = fail(p, r == LINE_BAD_CR ? bad_cr_error[p->state] : too_long_error[p->state]);
                return pos;
            }
            e = on_line(p, &l);
            if (p->seen_ended) { /* the head that began at head_from ended at pos */
                size_t len = (size_t)(data + pos - p->head_from);
                p->seen_ended = false;
                p->head_from = NULL;
                if (len <= HTTP_RESP_SEEN_MAX) {
                    memcpy(p->seen, data + pos - len, len);
                    p->seen_len = (uint16_t)len;
                }
            }
            if (e != HTTP_RESP_MORE) {
                *ev = e;
                return pos;
            }
        }
        }
    }
    *ev = HTTP_RESP_MORE;
    return n;
}

http_resp_event http_resp_eof(http_resp *p) {
    if (p->state == S_FAILED)
        return HTTP_RESP_ERROR;
    if (p->state == S_BODY_EOF)
        return finish(p);
    if (!p->started)
        return HTTP_RESP_MORE;
    return fail(p, HTTP_RESP_TRUNCATED);
}
