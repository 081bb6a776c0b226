/*
 * fuzz_http.c: a libFuzzer target for the HTTP/1.1 request parser of
 * `vigil serve --mode http` (src/cli/http.c). tests/fuzz.sh builds and runs it.
 *
 * What it checks, for every input:
 * - split independence: the input parsed whole, byte by byte, cut in two,
 *   and in pieces of sizes drawn from a seed taken from the input must give
 *   the same requests (every field), the same final error and status, and
 *   the same count of bytes taken. A verdict that depends on where the reads
 *   split the bytes is one an attacker can steer, one byte per packet;
 * - the contract of http_parse: *used <= len, a 0 return takes all of len,
 *   a 1 return takes at least a byte, errors and statuses come in the pairs
 *   http.h lists;
 * - what the parser accepted (the input parsed whole): each request's head,
 *   looked at again here with none of the parser's state, has no bare CR, no
 *   CTL but HTAB, fits HTTP_MAX_HEAD, and its request line is
 *   "method SP target SP HTTP/1.d" with the target as the parser reported it.
 * Any difference ends the run with abort(), after printing what differed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

typedef struct outcome {
    http_request *reqs; /* the requests, in order */
    size_t *ends;       /* where each ended: the offset just past its last byte */
    size_t n, cap;
    int err, status;
    size_t used; /* bytes taken in all */
} outcome;

static void fail(const char *what, const char *mode) {
    fprintf(stderr, "fuzz_http: %s (%s)\n", what, mode);
    abort();
}

/* Parses data in the pieces next_piece hands out. */
typedef size_t (*piece_fn)(void *state, size_t left);

static void parse(const uint8_t *data, size_t len, piece_fn next_piece, void *state, outcome *o,
                  const char *mode) {
    http_parser p;
    memset(&p, 0, sizeof(p));
    memset(o->reqs, 0, o->cap * sizeof(*o->reqs));
    o->n = 0;
    o->err = o->status = 0;
    o->used = 0;
    size_t off = 0;
    while (off < len && !o->err) {
        size_t piece = next_piece(state, len - off);
        if (piece == 0 || piece > len - off)
            piece = len - off;
        const uint8_t *d = data + off;
        size_t left = piece;
        off += piece;
        while (left) {
            http_request req;
            memset(&req, 0, sizeof(req));
            size_t used = (size_t)-1;
            int st = -1;
            int rc = http_parse(&p, d, left, &used, &req, &st);
            if (used > left)
                fail("used > len", mode);
            o->used += used;
            if (rc < 0) {
                int pair = (rc == -EPROTO && st == 400) || (rc == -EMSGSIZE && st == 431) ||
                           (rc == -ENOTSUP && (st == 501 || st == 505));
                if (!pair)
                    fail("an error with a status http.h does not pair it with", mode);
                o->err = rc;
                o->status = st;
                break;
            }
            if (rc == 0) {
                if (used != left)
                    fail("0 returned with bytes left", mode);
                if (st != 0)
                    fail("a status without an error", mode);
                break;
            }
            if (rc != 1)
                fail("a return other than 1, 0 or an error", mode);
            if (used == 0)
                fail("a request in no bytes", mode);
            if (o->n == o->cap)
                fail("more requests than the input can hold", mode);
            o->ends[o->n] = o->used;
            o->reqs[o->n++] = req;
            d += used;
            left -= used;
        }
    }
}

/* ------------------------------------------------------------ the splits */

static size_t whole(void *state, size_t left) {
    (void)state;
    return left;
}

static size_t bytewise(void *state, size_t left) {
    (void)state;
    (void)left;
    return 1;
}

typedef struct cut {
    size_t at;
    int done;
} cut;

static size_t cut_once(void *state, size_t left) {
    cut *c = state;
    if (c->done++)
        return left;
    return c->at ? c->at : left;
}

static size_t random_sizes(void *state, size_t left) {
    uint64_t *x = state; /* xorshift64 */
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    /* mostly small pieces, where splits land inside tokens and CRLFs, and
     * now and then a large one */
    uint64_t r = *x;
    size_t piece = (r & 7) == 0 ? (size_t)(r >> 8) % 512 + 1 : (size_t)(r >> 8) % 9 + 1;
    return piece < left ? piece : left;
}

static uint64_t seed_of(const uint8_t *data, size_t len) {
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ data[i]) * 0x100000001b3u;
    return h ? h : 1;
}

/* ------------------------------------------------------------ the checks */

static void same(const outcome *a, const outcome *b, const char *mode) {
    if (a->n != b->n)
        fail("a different number of requests", mode);
    if (a->err != b->err || a->status != b->status)
        fail("a different error or status", mode);
    if (a->used != b->used)
        fail("a different count of bytes taken", mode);
    for (size_t i = 0; i < a->n; i++) {
        const http_request *x = &a->reqs[i], *y = &b->reqs[i];
        if (a->ends[i] != b->ends[i])
            fail("a request that ends elsewhere", mode);
        if (x->keep_alive != y->keep_alive || x->head != y->head || x->http10 != y->http10 ||
            x->method != y->method || x->target_long != y->target_long)
            fail("a request with different fields", mode);
        if (memcmp(x->target, y->target, sizeof(x->target)))
            fail("a request with a different target", mode);
        /* the conditional fields too: kept or ignored alike whatever the split */
        if (memcmp(&x->cond, &y->cond, sizeof(x->cond)))
            fail("a request with different preconditions or range", mode);
    }
}

static int is_tchar(int c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The request in s[0..n) was accepted: its head, read again from scratch,
 * must be one the rules in http.h let through. */
static void check_accepted(const uint8_t *s, size_t n, const http_request *req) {
    size_t i = 0;
    while (i < n && (s[i] == '\n' || (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')))
        i += s[i] == '\r' ? 2 : 1; /* empty lines before it */
    size_t line = i, head_end = 0;
    int lines = 0;
    for (; i < n; i++) {
        int c = s[i];
        if (c == '\r' && (i + 1 == n || s[i + 1] != '\n'))
            fail("a bare CR accepted", "whole");
        if (c != '\r' && c != '\n' && c != '\t' && (c < 0x20 || c == 0x7f))
            fail("a CTL accepted", "whole");
        if (c != '\n')
            continue;
        size_t e = i > line && s[i - 1] == '\r' ? i - 1 : i;
        if (lines++ == 0) { /* the request line */
            size_t m = line;
            while (m < e && is_tchar(s[m]))
                m++;
            if (m == line || m == e || s[m] != ' ')
                fail("a request line without a method accepted", "whole");
            if (e - m < 11 || memcmp(s + e - 9, " HTTP/1.", 8) || s[e - 1] < '0' || s[e - 1] > '9')
                fail("a request line without a version accepted", "whole");
            size_t t = m + 1, tl = e - 9 - t;
            for (size_t k = t; k < t + tl; k++)
                if (s[k] <= 0x20 || s[k] == 0x7f)
                    fail("a target with a space or a CTL accepted", "whole");
            if (tl == 0)
                fail("an empty target accepted", "whole");
            if (req->target_long != (tl >= sizeof(req->target)))
                fail("target_long where the target fits, or not where it does not", "whole");
            if (!req->target_long && (strlen(req->target) != tl || memcmp(req->target, s + t, tl)))
                fail("a target other than the one sent", "whole");
            int get = e - line > 4 && !memcmp(s + line, "GET ", 4);
            int head = e - line > 5 && !memcmp(s + line, "HEAD ", 5);
            if (req->method != (get ? HTTP_GET : head ? HTTP_HEAD : HTTP_OTHER) || req->head != head)
                fail("a method other than the one sent", "whole");
            if (req->http10 != (s[e - 1] == '0'))
                fail("http10 other than the version sent", "whole");
        } else if (e == line) { /* the end of the head */
            head_end = i + 1;
            break;
        } else {
            size_t k = line;
            while (k < e && is_tchar(s[k]))
                k++;
            if (k == line || k == e || s[k] != ':')
                fail("a header line without a name and a colon accepted", "whole");
        }
        line = i + 1;
    }
    if (!head_end)
        fail("a request without the end of its head accepted", "whole");
    if (head_end > HTTP_MAX_HEAD)
        fail("a head over HTTP_MAX_HEAD accepted", "whole");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    /* the shortest request, "A * HTTP/1.1\n\n", has 14 bytes */
    size_t cap = len / 14 + 1;
    outcome o[4];
    for (int i = 0; i < 4; i++) {
        o[i].cap = cap;
        o[i].reqs = malloc(cap * sizeof(http_request));
        o[i].ends = malloc(cap * sizeof(size_t));
        if (!o[i].reqs || !o[i].ends)
            abort();
    }
    uint64_t seed = seed_of(data, len);
    cut c = {len ? (size_t)(seed % len) : 0, 0};
    parse(data, len, whole, NULL, &o[0], "whole");
    parse(data, len, bytewise, NULL, &o[1], "byte by byte");
    parse(data, len, cut_once, &c, &o[2], "cut in two");
    parse(data, len, random_sizes, &seed, &o[3], "random pieces");
    same(&o[0], &o[1], "byte by byte");
    same(&o[0], &o[2], "cut in two");
    same(&o[0], &o[3], "random pieces");
    if (o[0].used > len || (!o[0].err && o[0].used != len))
        fail("bytes left over without an error", "whole");
    for (size_t i = 0; i < o[0].n; i++) {
        size_t start = i ? o[0].ends[i - 1] : 0;
        check_accepted(data + start, o[0].ends[i] - start, &o[0].reqs[i]);
    }
    for (int i = 0; i < 4; i++) {
        free(o[i].reqs);
        free(o[i].ends);
    }
    return 0;
}
