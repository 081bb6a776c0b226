/*
 * test_http.c: the HTTP/1.1 parser of `vigil serve --mode http`, alone (on
 * every OS) and through the server (Linux): pipelined requests, requests split at every byte,
 * bodies, keep-alive rules, and the requests it must refuse.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <stdint.h>
#ifndef _WIN32 /* the server tests start the vigil binary with fork and exec */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>
#endif

#include "cli/http.h"
#include "util.h"
#include "vt.h"

typedef struct parsed {
    int requests, keep_alive[16], head[16], method[16], target_long[16], status, err;
    char target[120]; /* the first request's */
    size_t used;      /* bytes taken in all */
} parsed;

/* Feeds s as reads would deliver it: a first piece of first bytes, then
 * pieces of step bytes (0: all at once). */
static parsed feed_pieces(const char *s, size_t len, size_t first, size_t step) {
    parsed out = {0};
    http_parser p = {0};
    if (!step)
        step = len;
    if (!first)
        first = step;
    for (size_t off = 0, piece = first; off < len && !out.err; off += piece, piece = step) {
        const uint8_t *d = (const uint8_t *)s + off;
        size_t left = len - off < piece ? len - off : piece;
        while (left) {
            size_t used;
            http_request req;
            int st, rc = http_parse(&p, d, left, &used, &req, &st);
            VT_ASSERT(used <= left, "used %zu of %zu", used, left);
            out.used += used;
            if (rc < 0) {
                out.err = rc;
                out.status = st;
                break;
            }
            if (rc == 1 && out.requests < 16) {
                out.keep_alive[out.requests] = req.keep_alive;
                out.head[out.requests] = req.head;
                out.method[out.requests] = req.method;
                out.target_long[out.requests] = req.target_long;
                if (!out.requests)
                    memcpy(out.target, req.target, sizeof(out.target));
            }
            out.requests += rc == 1;
            d += used;
            left -= used;
            if (rc == 0)
                VT_EQ(left, 0);
        }
    }
    return out;
}

/* Feeds s in pieces of step bytes (0: all at once). */
static parsed feed(const char *s, size_t len, size_t step) { return feed_pieces(s, len, step, step); }

static bool same(const parsed *a, const parsed *b) {
    if (a->requests != b->requests || a->err != b->err || a->status != b->status ||
        a->used != b->used || strcmp(a->target, b->target))
        return false;
    for (int i = 0; i < a->requests && i < 16; i++)
        if (a->keep_alive[i] != b->keep_alive[i] || a->head[i] != b->head[i] ||
            a->method[i] != b->method[i] || a->target_long[i] != b->target_long[i])
            return false;
    return true;
}

/* Feeds s whole, byte by byte, in pieces of every size, and cut in two at
 * every byte (a sample of those for long inputs), and checks that every way
 * gives what the whole does: a verdict that depends on where reads split the
 * bytes is one an attacker can steer. Returns the verdict. */
static parsed feed_every_way(const char *s, size_t len) {
    parsed whole = feed(s, len, 0);
    size_t every = len <= 600 ? 1 : 37;
    for (size_t step = 1; step <= len; step += step < 64 ? 1 : every) {
        parsed p = feed(s, len, step);
        VT_ASSERT(same(&p, &whole), "pieces of %zu: %d requests, error %d, status %d, used %zu; whole: "
                  "%d, %d, %d, %zu", step, p.requests, p.err, p.status, p.used, whole.requests,
                  whole.err, whole.status, whole.used);
    }
    for (size_t cut = 1; cut < len; cut += every) {
        parsed p = feed_pieces(s, len, cut, len);
        VT_ASSERT(same(&p, &whole), "cut at %zu: %d requests, error %d, status %d; whole: %d, %d, %d",
                  cut, p.requests, p.err, p.status, whole.requests, whole.err, whole.status);
    }
    return whole;
}

static const char pipelined[] =
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
    "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"
    "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    "GET /last HTTP/1.1\r\nConnection: close\r\n\r\n";

VT_TEST(http, pipelined_in_one_read, 10) {
    parsed p = feed(pipelined, strlen(pipelined), 0);
    VT_EQ(p.err, 0);
    VT_EQ(p.requests, 5);
    VT_EQ(p.keep_alive[0], 1);
    VT_EQ(p.keep_alive[1], 1);
    VT_EQ(p.head[2], 1);
    VT_EQ(p.keep_alive[3], 1); /* 1.0 that asked for keep-alive */
    VT_EQ(p.keep_alive[4], 0); /* Connection: close */
}

VT_TEST(http, split_at_every_byte, 10) {
    for (size_t step = 1; step <= strlen(pipelined); step++) {
        parsed p = feed(pipelined, strlen(pipelined), step);
        VT_ASSERT(p.err == 0 && p.requests == 5, "pieces of %zu: %d requests, error %d", step,
                  p.requests, p.err);
        VT_EQ(p.keep_alive[4], 0);
    }
}

VT_TEST(http, long_lines_split_anywhere, 10) {
    char req[4096], target[1500], value[2000];
    memset(target, 'a', sizeof(target) - 1);
    target[sizeof(target) - 1] = 0;
    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = 0;
    int n = snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nX-Long: %s\r\nConnection: close\r\n\r\n",
                     target, value);
    for (size_t step = 1; step < 300; step += 7) {
        parsed p = feed(req, (size_t)n, step);
        VT_ASSERT(p.err == 0 && p.requests == 1, "pieces of %zu: error %d", step, p.err);
        VT_EQ(p.keep_alive[0], 0);
    }
}

VT_TEST(http, keep_alive_rules, 10) {
    const char *r10 = "GET / HTTP/1.0\r\n\r\n";
    VT_EQ(feed(r10, strlen(r10), 0).keep_alive[0], 0); /* 1.0 closes unless asked */
    const char *r11 = "GET / HTTP/1.1\r\nConnection: foo, keep-alive\r\n\r\n";
    VT_EQ(feed(r11, strlen(r11), 0).keep_alive[0], 1);
    const char *bare = "GET / HTTP/1.1\nConnection: close\n\n"; /* bare LF line ends */
    parsed p = feed(bare, strlen(bare), 1);
    VT_EQ(p.requests, 1);
    VT_EQ(p.keep_alive[0], 0);
    const char *lead = "\r\nGET / HTTP/1.1\r\n\r\n"; /* an empty line before a request */
    VT_EQ(feed(lead, strlen(lead), 0).requests, 1);
}

/* A literal with its length, NULs and all. */
#define REQ(s) s, sizeof(s) - 1

typedef struct refusal {
    const char *req;
    size_t len;
    int err, status;
} refusal;

static void check_refused(const refusal *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        parsed p = feed_every_way(cases[i].req, cases[i].len);
        VT_ASSERT(p.err == cases[i].err && p.status == cases[i].status,
                  "case %zu '%.*s': error %d status %d (%d requests)", i, (int)cases[i].len,
                  cases[i].req, p.err, p.status, p.requests);
    }
}

VT_TEST(http, refused_requests, 10) {
    static const refusal cases[] = {
        {REQ("GARBAGE\r\n\r\n"), -EPROTO, 400},
        {REQ("GET /\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/2.0\r\n\r\n"), -ENOTSUP, 505},
        {REQ("GET / HTTX/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), -ENOTSUP, 501},
        {REQ("POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\n folded\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nNo colon here\r\n\r\n"), -EPROTO, 400},
    };
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));
    /* a head past HTTP_MAX_HEAD: 431, whatever the pieces */
    char big[HTTP_MAX_HEAD + 200];
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n");
    while (n < HTTP_MAX_HEAD + 100)
        n += snprintf(big + n, sizeof(big) - (size_t)n, "X-A: aaaaaaaaaaaaaaaa\r\n");
    parsed p = feed_every_way(big, (size_t)n);
    VT_EQ(p.err, -EMSGSIZE);
    VT_EQ(p.status, 431);
}

/* A CR must end a line with the LF right after it: a parser that takes a
 * lone CR as a line end sees a header where this one sees a value. */
VT_TEST(http, refused_bare_cr, 10) {
    static const refusal cases[] = {
        {REQ("GET / HTTP/1.1\r\nHost: a\rX-Smuggled: b\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nX-A\r: b\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\n\rHost: a\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\rHost: a\r\n\r\n"), -EPROTO, 400},
        {REQ("GET /a\rb HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET\r/ HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\r\n\r\n"), -EPROTO, 400},
        {REQ("\r\rGET / HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nX: \r"), 0, 0}, /* may be a CRLF yet */
        {REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nX: \r \r\n\r\n"), -EPROTO, 400},
    };
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));
    /* where the parser keeps neither the start nor the end of the line */
    char req[1024];
    int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-Long: %0300d\r%0200d\r\n\r\n", 0, 0);
    parsed p = feed_every_way(req, (size_t)n);
    VT_EQ(p.err, -EPROTO);
    VT_EQ(p.status, 400);
    VT_EQ(p.requests, 0);
    n = snprintf(req, sizeof(req), "GET /%0300d\r%0200d HTTP/1.1\r\n\r\n", 0, 0);
    p = feed_every_way(req, (size_t)n);
    VT_EQ(p.err, -EPROTO);
    n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-Long: %0300d\r\n\r\n", 0);
    VT_EQ(feed_every_way(req, (size_t)n).requests, 1);
}

/* NUL, CTLs and DEL: a C parser stops at a NUL where another reads on
 * ("Content-Length: 0\0" "12" was read as 0 here). */
VT_TEST(http, refused_controls, 10) {
    static const refusal cases[] = {
        {REQ("POST / HTTP/1.1\r\nContent-Length: 0\0" "12\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nX: a\x1b[0m\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nX: \x0b\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nX: \x0c\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nX\0: a\r\n\r\n"), -EPROTO, 400},
        {REQ("GET /a\0b HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET /a\x01 HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET /a\x7f HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\0\r\n\r\n"), -EPROTO, 400},
        {REQ("GE\0T / HTTP/1.1\r\n\r\n"), -EPROTO, 400},
    };
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));
    char req[1024]; /* past what the parser keeps of the line */
    int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-Long: %0300d", 0);
    memcpy(req + n, "\0\r\n\r\n", 5);
    VT_EQ(feed_every_way(req, (size_t)n + 5).err, -EPROTO);
}

/* method SP request-target SP HTTP-version, exactly (RFC 9112 3). */
VT_TEST(http, refused_request_lines, 10) {
    static const refusal cases[] = {
        {REQ("GET /a b HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET  / HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET /  HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET  HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET /a\tb HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET\t/ HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ(" GET / HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1 \r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.10\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / http/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/2.x\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/3.0\r\n\r\n"), -ENOTSUP, 505},
        {REQ("GET / HTTP/1.1 HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET HTTP/1.1\r\n\r\n"), -EPROTO, 400},
        {REQ("GET\r\n\r\n"), -EPROTO, 400},
    };
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Content-Length = 1*DIGIT; with Transfer-Encoding, the two parsers in
 * front of and behind a proxy may each pick a different one (RFC 9112 6.3). */
VT_TEST(http, refused_content_lengths, 10) {
    static const refusal cases[] = {
        {REQ("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\nabc"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\nabc"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length: 3,4\r\n\r\nabc"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length: 0x3\r\n\r\nabc"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length: 3\r\ntransfer-encoding: identity\r\n\r\nabc"), -EPROTO, 400},
        {REQ("POST / HTTP/1.1\r\nContent-Length : 3\r\n\r\nabc"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\n: a\r\n\r\n"), -EPROTO, 400},
        {REQ("GET / HTTP/1.1\r\nHo\"st: a\r\n\r\n"), -EPROTO, 400},
    };
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Empty lines before a request are part of its head: a client cannot send
 * them forever (nor 8 KiB of them before a head of 8 KiB). */
VT_TEST(http, head_limit_counts_leading_empty_lines, 10) {
    static char req[HTTP_MAX_HEAD + 400];
    size_t n = 0;
    while (n < HTTP_MAX_HEAD)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "\r\n");
    n += (size_t)snprintf(req + n, sizeof(req) - n, "GET / HTTP/1.1\r\n\r\n");
    parsed p = feed_every_way(req, n);
    VT_EQ(p.err, -EMSGSIZE);
    VT_EQ(p.status, 431);
    VT_EQ(p.used, HTTP_MAX_HEAD);
    /* a head of exactly HTTP_MAX_HEAD bytes, some of them leading empty lines */
    const char *start = "\r\n\n\r\nGET / HTTP/1.1\r\nX-Pad: ";
    n = (size_t)snprintf(req, sizeof(req), "%s", start);
    memset(req + n, 'p', HTTP_MAX_HEAD - 4 - n);
    n = HTTP_MAX_HEAD - 4;
    memcpy(req + n, "\r\n\r\n", 4);
    n += 4;
    p = feed_every_way(req, n);
    VT_EQ(p.err, 0);
    VT_EQ(p.requests, 1);
    memmove(req + 1, req, n); /* one more leading LF: one byte too many */
    req[0] = '\n';
    p = feed_every_way(req, n + 1);
    VT_EQ(p.err, -EMSGSIZE);
}

/* target[] holds 119 bytes and a NUL, as http.h says; 120 and more: 414. */
VT_TEST(http, target_length_limit, 10) {
    static const char *methods[] = {"GET", "OPTIONS", "A-VERY-LONG-METHOD-NAME-THAT-FILLS-THE-LINE"};
    for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++)
        for (size_t tl = 1; tl <= 121; tl += tl < 110 ? 9 : 1) {
            char target[200], req[400];
            memset(target, 'a', tl);
            target[0] = '/';
            target[tl] = 0;
            int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: a\r\n\r\n", methods[m], target);
            parsed p = feed_every_way(req, (size_t)n);
            VT_ASSERT(p.err == 0 && p.requests == 1, "%s, target of %zu: error %d", methods[m], tl, p.err);
            VT_ASSERT(p.target_long[0] == (tl >= 120), "%s, target of %zu: target_long %d", methods[m],
                      tl, p.target_long[0]);
            if (tl < 120)
                VT_ASSERT(!strcmp(p.target, target), "%s, target of %zu: kept '%s'", methods[m], tl,
                          p.target);
            VT_EQ(p.method[0], m == 0 ? HTTP_GET : HTTP_OTHER);
        }
}

/* What the rules above must still let through. */
VT_TEST(http, accepted_requests, 10) {
    static const struct {
        const char *req;
        size_t len;
        int requests;
    } cases[] = {
        {REQ("GET / HTTP/1.1\r\nX: caf\xc3\xa9 \x80\xff\r\n\r\n"), 1}, /* obs-text */
        {REQ("GET / HTTP/1.1\r\nX:\ta\tb\t\r\n\r\n"), 1},               /* HTAB */
        {REQ("GET / HTTP/1.1\r\nX:\r\nY: \r\n\r\n"), 1},                /* empty values */
        {REQ("POST / HTTP/1.1\r\nContent-Length: \t 3 \t\r\n\r\nabcGET / HTTP/1.1\r\n\r\n"), 2},
        {REQ("POST / HTTP/1.1\r\nContent-Length:3\r\nContent-Length: 3\r\n\r\nabc"), 1},
        {REQ("POST / HTTP/1.1\r\nContent-Length: 000\r\n\r\nGET / HTTP/1.1\r\n\r\n"), 2},
        {REQ("\r\nGET / HTTP/1.1\r\n\r\n"), 1},
        {REQ("\r\n\r\n\nGET / HTTP/1.1\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n"), 2},
        {REQ("GET /caf\xc3\xa9?q=\"<x>\"#f HTTP/1.1\r\n\r\n"), 1},
        {REQ("GET / HTTP/1.1\nX: a\n\n"), 1}, /* bare LF line ends */
        {REQ("GET / HTTP/1.1\r\nX: a\r\n\r\n\r\n"), 1}, /* and the start of an empty line */
        {REQ("GET / HTTP/1.1\r\nX: a\r\n\r\n\r"), 1},   /* and a CR that may yet get its LF */
        {REQ("OPTIONS * HTTP/1.1\r\n\r\n"), 1},
        {REQ("GET http://a/b HTTP/1.0\r\n\r\n"), 1},
        {REQ("GET / HTTP/1.9\r\n\r\n"), 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parsed p = feed_every_way(cases[i].req, cases[i].len);
        VT_ASSERT(p.err == 0 && p.requests == cases[i].requests,
                  "case %zu '%.*s': error %d status %d, %d requests", i, (int)cases[i].len,
                  cases[i].req, p.err, p.status, p.requests);
    }
    parsed p = feed_every_way(cases[8].req, cases[8].len);
    VT_ASSERT(!strcmp(p.target, "/caf\xc3\xa9?q=\"<x>\"#f"), "target '%s'", p.target);
    p = feed_every_way(cases[3].req, cases[3].len);
    VT_EQ(p.used, cases[3].len);
}

/* -EINVAL answers 400, -ENAMETOOLONG 414 (http.h). */
VT_TEST(http, target_path, 10) {
    char out[32];
    VT_EQ(http_target_path("/a%20b?x#y", out, sizeof(out)), 0);
    VT_ASSERT(!strcmp(out, "a b"), "'%s'", out);
    VT_EQ(http_target_path("/", out, sizeof(out)), 0);
    VT_ASSERT(!strcmp(out, "index.html"), "'%s'", out);
    VT_EQ(http_target_path("/d/", out, sizeof(out)), 0);
    VT_ASSERT(!strcmp(out, "d/index.html"), "'%s'", out);
    VT_EQ(http_target_path("/%zz", out, sizeof(out)), -EINVAL);
    VT_EQ(http_target_path("/%2", out, sizeof(out)), -EINVAL);
    VT_EQ(http_target_path("/%", out, sizeof(out)), -EINVAL);
    VT_EQ(http_target_path("/a%00b", out, sizeof(out)), -EINVAL);
    VT_EQ(http_target_path("a", out, sizeof(out)), -EINVAL);
    VT_EQ(http_target_path("*", out, sizeof(out)), -EINVAL);
    VT_EQ(http_target_path("/0123456789012345678901234567890123", out, sizeof(out)), -ENAMETOOLONG);
    VT_EQ(http_target_path("/0123456789012345678901/", out, sizeof(out)), -ENAMETOOLONG);
}

/* The one request of s, parsed whole. */
static http_request one_request(const char *s) {
    http_parser p = {0};
    http_request req;
    size_t used;
    int st;
    VT_EQ(http_parse(&p, (const uint8_t *)s, strlen(s), &used, &req, &st), 1);
    return req;
}

/* Preconditions and Range are kept as sent; what cannot be read whole (too
 * long, cut off, or sent twice) is ignored with what depends on it. */
VT_TEST(http, conditional_fields_kept_or_ignored, 10) {
    http_request r = one_request("GET /f HTTP/1.1\r\nIf-None-Match:  \"a\", W/\"b\" \r\n"
                                 "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                                 "Range: bytes=0-9\r\nIf-Range: \"a\"\r\n\r\n");
    VT_ASSERT(!strcmp(r.cond.if_none_match, "\"a\", W/\"b\""), "'%s'", r.cond.if_none_match);
    VT_ASSERT(!strcmp(r.cond.if_modified_since, "Sun, 06 Nov 1994 08:49:37 GMT"), "'%s'",
              r.cond.if_modified_since);
    VT_ASSERT(!strcmp(r.cond.range, "bytes=0-9") && !strcmp(r.cond.if_range, "\"a\""), "'%s' '%s'",
              r.cond.range, r.cond.if_range);
    /* a second If-None-Match: both preconditions ignored (a full answer) */
    r = one_request("GET /f HTTP/1.1\r\nIf-None-Match: \"a\"\r\nIf-Modified-Since: Sun, 06 Nov "
                    "1994 08:49:37 GMT\r\nif-none-match: \"b\"\r\n\r\n");
    VT_ASSERT(!r.cond.if_none_match[0] && !r.cond.if_modified_since[0], "kept '%s'",
              r.cond.if_none_match);
    /* a Range too long to keep: ignored; an If-Range cut off: the Range too */
    char big[400];
    snprintf(big, sizeof(big), "GET /f HTTP/1.1\r\nRange: bytes=%0100d-\r\n\r\n", 1);
    r = one_request(big);
    VT_ASSERT(!r.cond.range[0], "kept '%s'", r.cond.range);
    snprintf(big, sizeof(big), "GET /f HTTP/1.1\r\nRange: bytes=1-\r\nIf-Range: \"%0200d\"\r\n\r\n", 1);
    r = one_request(big);
    VT_ASSERT(!r.cond.range[0] && !r.cond.if_range[0], "kept '%s'", r.cond.range);
    /* and the next request starts clean */
    http_parser p = {0};
    const char two[] = "GET /a HTTP/1.1\r\nRange: bytes=1-2\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    size_t used, off = 0;
    int st;
    VT_EQ(http_parse(&p, (const uint8_t *)two, strlen(two), &used, &r, &st), 1);
    off += used;
    VT_EQ(http_parse(&p, (const uint8_t *)two + off, strlen(two) - off, &used, &r, &st), 1);
    VT_ASSERT(!r.cond.range[0] && !strcmp(r.target, "/b"), "second request '%s' range '%s'", r.target,
              r.cond.range);
}

/* HTTP-dates: formatted as IMF-fixdate, read in all three forms. */
VT_TEST(http, dates, 10) {
    char d[30];
    http_date(d, 784111777);
    VT_ASSERT(!strcmp(d, "Sun, 06 Nov 1994 08:49:37 GMT"), "'%s'", d);
    http_date(d, 0);
    VT_ASSERT(!strcmp(d, "Thu, 01 Jan 1970 00:00:00 GMT"), "'%s'", d);
    http_date(d, 951782400); /* a leap day */
    VT_ASSERT(!strcmp(d, "Tue, 29 Feb 2000 00:00:00 GMT"), "'%s'", d);
    http_date(d, 1796457600);
    VT_ASSERT(!strcmp(d, "Sat, 05 Dec 2026 08:00:00 GMT"), "'%s'", d);
    VT_EQ(http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    VT_EQ(http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
    VT_EQ(http_date_parse("Sun Nov  6 08:49:37 1994"), 784111777);
    VT_EQ(http_date_parse("Tue, 29 Feb 2000 00:00:00 GMT"), 951782400);
    for (int64_t t = 0; t < 4102444800; t += 86400 * 37 + 3671) { /* to 2100, both ways */
        http_date(d, t);
        VT_EQ(http_date_parse(d), t);
    }
    const char *bad[] = {"", "Sun", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC",
                         "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Nob 1994 08:49:37 GMT",
                         "Sun, 31 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
                         "Sun, 06 Nov 1994 08:49:37 GMT ", "Sun Nov 6 08:49:37 1994", "1994-11-06"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        VT_ASSERT(http_date_parse(bad[i]) == -1, "'%s' read as a date", bad[i]);
}

/* If-None-Match lists (weak comparison) and byte ranges. */
VT_TEST(http, etags_and_ranges, 10) {
    VT_EQ(http_etag_listed("\"x\"", "\"x\""), 1);
    VT_EQ(http_etag_listed("W/\"x\"", "\"x\""), 1);
    VT_EQ(http_etag_listed("\"a\", \"b\",W/\"x\"", "\"x\""), 1);
    VT_EQ(http_etag_listed("*", "\"x\""), 1);
    VT_EQ(http_etag_listed("\"xy\"", "\"x\""), 0);
    VT_EQ(http_etag_listed("x", "\"x\""), 0);
    VT_EQ(http_etag_listed("\"a\", \"x", "\"x\""), 0);
    static const struct { const char *v; uint64_t size; int rc; uint64_t first, last; } cases[] = {
        {"bytes=0-9", 100, 1, 0, 9},      {"bytes=90-", 100, 1, 90, 99},
        {"bytes=-10", 100, 1, 90, 99},    {"bytes=-1000", 100, 1, 0, 99},
        {"bytes=50-1000", 100, 1, 50, 99}, {"BYTES=5-5", 100, 1, 5, 5},
        {"bytes=100-", 100, -1, 0, 0},    {"bytes=-0", 100, -1, 0, 0},
        {"bytes=0-", 0, -1, 0, 0},        {"bytes=-5", 0, -1, 0, 0},
        {"bytes=9-1", 100, 0, 0, 0},      {"bytes=0-1,5-6", 100, 0, 0, 0},
        {"items=0-1", 100, 0, 0, 0},      {"bytes=a-", 100, 0, 0, 0},
        {"bytes=-", 100, 0, 0, 0},        {"bytes=99999999999999999999-", 100, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t first = 0, last = 0;
        int rc = http_range(cases[i].v, cases[i].size, &first, &last);
        VT_ASSERT(rc == cases[i].rc && (rc != 1 || (first == cases[i].first && last == cases[i].last)),
                  "'%s' of %llu: %d [%llu, %llu]", cases[i].v, (unsigned long long)cases[i].size, rc,
                  (unsigned long long)first, (unsigned long long)last);
    }
}

/* ------------------------------------------------------------ through the server */

/* Linux only: these fork and exec `vigil serve --threads 2` (SO_REUSEPORT).
 * On Windows the server is checked from Linux under wine instead: HTTP,
 * keep-alive and --root in tests/win/serve.sh. */
#ifndef _WIN32

static pid_t start_server_root(int *port, const char *root) {
    vt_need_backend_built();
    vt_backend_id b = vt_backend();
    int out[2];
    VT_ASSERT(pipe(out) == 0, "pipe");
    pid_t pid = fork();
    VT_ASSERT(pid >= 0, "fork");
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        const char *backend = b == VT_BACKEND_EPOLL                                  ? "epoll"
                              : b == VT_BACKEND_URING || b == VT_BACKEND_URING_COMPAT ? "uring"
                                                                                       : "auto";
        if (root)
            execl(VIGIL_EXE, "vigil", "serve", "--mode", "http", "--port", "0", "--backend", backend,
                  "--threads", "2", "--root", root, (char *)NULL);
        else
            execl(VIGIL_EXE, "vigil", "serve", "--mode", "http", "--port", "0", "--backend", backend,
                  "--threads", "2", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[512];
    size_t n = 0;
    while (n < sizeof(line) - 1 && read(out[0], line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = 0;
    char *p = strstr(line, " port ");
    VT_ASSERT(p, "no port in '%s'", line);
    *port = atoi(p + 6);
    return pid;
}

static pid_t start_server(int *port) { return start_server_root(port, NULL); }

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    VT_ASSERT(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect");
    return fd;
}

/* Reads until EOF or want bytes; returns what was read. */
static size_t read_all(int fd, char *buf, size_t cap) {
    size_t n = 0;
    ssize_t k;
    while (n < cap && (k = read(fd, buf + n, cap - n)) > 0)
        n += (size_t)k;
    return n;
}

static int count(const char *hay, size_t n, const char *needle) {
    int c = 0;
    size_t l = strlen(needle);
    for (size_t i = 0; i + l <= n; i++)
        if (!memcmp(hay + i, needle, l))
            c++;
    return c;
}

VT_TEST(http, server_answers_pipelined_and_split_requests, 30) {
    int port;
    pid_t pid = start_server(&port);
    /* 200 pipelined requests, written in odd-sized pieces, the last one closing */
    static char reqs[200 * 64];
    size_t len = 0;
    for (int i = 0; i < 199; i++)
        len += (size_t)snprintf(reqs + len, sizeof(reqs) - len, "GET /%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    len += (size_t)snprintf(reqs + len, sizeof(reqs) - len, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    int fd = connect_to(port);
    for (size_t off = 0, step = 1; off < len; off += step, step = step % 97 + 3) {
        size_t k = len - off < step ? len - off : step;
        VT_ASSERT(write(fd, reqs + off, k) == (ssize_t)k, "write");
        if (step % 5 == 0)
            usleep(200); /* let some pieces arrive alone */
    }
    static char resp[200 * 200];
    size_t n = read_all(fd, resp, sizeof(resp)); /* the server closes after the last */
    close(fd);
    VT_EQ(count(resp, n, "HTTP/1.1 200 OK\r\n"), 200);
    VT_EQ(count(resp, n, "Hello, world!"), 200);
    VT_EQ(count(resp, n, "Connection: close\r\n"), 1);

    /* a bad request gets 400 and the connection closes */
    fd = connect_to(port);
    const char bad[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\nNONSENSE\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    VT_ASSERT(write(fd, bad, sizeof(bad) - 1) == (ssize_t)(sizeof(bad) - 1), "write");
    n = read_all(fd, resp, sizeof(resp));
    close(fd);
    VT_EQ(count(resp, n, "HTTP/1.1 200 OK"), 1);
    VT_EQ(count(resp, n, "HTTP/1.1 400 Bad Request"), 1);

    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    VT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "vigil serve exited %d", status);
}

/* --root: files under a directory, pipelined, each response checked whole
 * and in order; nothing outside the directory is reachable. */
static void put_file(const char *dir, const char *name, const void *data, size_t len) {
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    VT_ASSERT(f, "create %s", path);
    VT_EQ(fwrite(data, 1, len, f), len);
    fclose(f);
}

typedef struct reply {
    int status;
    size_t len;          /* Content-Length */
    const char *body;    /* into the read buffer */
    char type[64];
} reply;

/* The next response at *pos in buf (n bytes); head: no body follows. */
static bool next_reply(const char *buf, size_t n, size_t *pos, bool head, reply *r) {
    const char *start = buf + *pos;
    const char *end = memmem(start, n - *pos, "\r\n\r\n", 4);
    if (!end || sscanf(start, "HTTP/1.1 %d", &r->status) != 1)
        return false;
    const char *cl = memmem(start, (size_t)(end - start), "Content-Length: ", 16);
    VT_ASSERT(cl, "no Content-Length");
    r->len = strtoul(cl + 16, NULL, 10);
    const char *ct = memmem(start, (size_t)(end - start), "Content-Type: ", 14);
    r->type[0] = 0;
    if (ct)
        sscanf(ct + 14, "%63[^\r]", r->type);
    r->body = end + 4;
    size_t body = head ? 0 : r->len;
    if ((size_t)(end + 4 - buf) + body > n)
        return false;
    *pos = (size_t)(end + 4 - buf) + body;
    return true;
}

VT_TEST(http, root_serves_files_and_nothing_outside, 30) {
    char dir[] = "/tmp/vigil-www-XXXXXX";
    VT_ASSERT(mkdtemp(dir), "mkdtemp");
    static uint8_t big[300000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7 + (i >> 11));
    put_file(dir, "index.html", "<p>home</p>", 11);
    put_file(dir, "a.txt", "alpha", 5);
    put_file(dir, "with space.txt", "spaced", 6);
    put_file(dir, "big.bin", big, sizeof(big));
    put_file(dir, "empty", "", 0);
    char p[300];
    snprintf(p, sizeof(p), "%s/sub", dir);
    VT_EQ(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/sub/out", dir);
    VT_EQ(symlink("/etc/hostname", p), 0);
    int port;
    pid_t pid = start_server_root(&port, dir);

    struct { const char *req; int status; const void *body; size_t len; bool head; const char *type; } want[] = {
        {"GET /a.txt HTTP/1.1\r\n\r\n", 200, "alpha", 5, false, "text/plain"},
        {"GET /missing HTTP/1.1\r\n\r\n", 404, NULL, 0, false, NULL},
        {"HEAD /big.bin HTTP/1.1\r\n\r\n", 200, NULL, sizeof(big), true, NULL},
        {"GET /big.bin HTTP/1.1\r\n\r\n", 200, big, sizeof(big), false, "application/octet-stream"},
        {"GET /../etc/passwd HTTP/1.1\r\n\r\n", 404, NULL, 0, false, NULL},
        {"GET /sub/out HTTP/1.1\r\n\r\n", 404, NULL, 0, false, NULL},
        {"GET /sub/ HTTP/1.1\r\n\r\n", 404, NULL, 0, false, NULL},
        {"GET /sub HTTP/1.1\r\n\r\n", 404, NULL, 0, false, NULL},
        {"GET /with%20space.txt?x=1 HTTP/1.1\r\n\r\n", 200, "spaced", 6, false, NULL},
        {"GET /empty HTTP/1.1\r\n\r\n", 200, "", 0, false, NULL},
        {"POST /a.txt HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405, NULL, 0, false, NULL},
        {"GET /%2e%2e/etc/passwd HTTP/1.1\r\n\r\n", 404, NULL, 0, false, NULL},
        {"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n", 414, NULL, 0, false, NULL},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 200, "<p>home</p>", 11, false, "text/html"},
    };
    size_t nw = sizeof(want) / sizeof(want[0]);
    static char reqs[8192];
    size_t len = 0;
    for (size_t i = 0; i < nw; i++)
        len += (size_t)snprintf(reqs + len, sizeof(reqs) - len, "%s", want[i].req);
    int fd = connect_to(port);
    for (size_t off = 0, step = 7; off < len; off += step, step = step % 113 + 5) {
        size_t k = len - off < step ? len - off : step;
        VT_ASSERT(write(fd, reqs + off, k) == (ssize_t)k, "write");
    }
    static char resp[1 << 20];
    size_t n = read_all(fd, resp, sizeof(resp));
    close(fd);
    size_t pos = 0;
    for (size_t i = 0; i < nw; i++) {
        reply r;
        VT_ASSERT(next_reply(resp, n, &pos, want[i].head, &r), "response %zu missing or short (%zu bytes in all)", i, n);
        VT_ASSERT(r.status == want[i].status, "%s: status %d, not %d", want[i].req, r.status, want[i].status);
        if (want[i].status == 200) {
            VT_ASSERT(r.len == want[i].len, "%s: Content-Length %zu", want[i].req, r.len);
            if (!want[i].head)
                VT_ASSERT(!memcmp(r.body, want[i].body, want[i].len), "%s: body differs", want[i].req);
        }
        if (want[i].type)
            VT_ASSERT(!strcmp(r.type, want[i].type), "%s: type %s", want[i].req, r.type);
    }
    VT_EQ(pos, n); /* nothing more: the last request closed the connection */
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    VT_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "vigil serve exited %d", status);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    VT_EQ(system(cmd), 0);
}
#endif /* !_WIN32 */
