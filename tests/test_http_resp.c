/*
 * test_http_resp.c: the HTTP/1.1 response parser of the load generator,
 * alone: pipelined responses split at every byte, framing by status,
 * Content-Length, chunks and the close, the responses it must refuse, and
 * the comparison of bodies with the expected one.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http_resp.h"
#include "vt.h"

#define MAX_RESPONSES 16

/* How a connection is read: the expected body (NULL: none), whether the
 * requests were HEAD, and whether the connection ends after the bytes. */
typedef struct setup {
    const char *expect;
    bool head;
    bool eof;
} setup;

/* Everything the parser reported about some bytes. */
typedef struct outcome {
    int responses;
    int status[MAX_RESPONSES];
    uint64_t body_len[MAX_RESPONSES];
    bool close[MAX_RESPONSES], mismatch[MAX_RESPONSES];
    uint64_t mismatch_at[MAX_RESPONSES];
    size_t end[MAX_RESPONSES]; /* the offset just past each response */
    http_resp_event last;      /* the last event (of http_resp_eof with eof) */
    http_resp_error error;
    size_t used; /* bytes taken in all */
} outcome;

static void record(outcome *o, const http_resp *p) {
    VT_ASSERT(o->responses < MAX_RESPONSES, "more than %d responses", MAX_RESPONSES);
    int i = o->responses++;
    o->status[i] = p->status;
    o->body_len[i] = p->body_len;
    o->close[i] = p->close;
    o->mismatch[i] = p->mismatch;
    o->mismatch_at[i] = p->mismatch_at;
    o->end[i] = o->used;
}

/* Feeds s as reads would deliver it: a first piece of first bytes, then
 * pieces of step bytes (0: all at once). */
static outcome run_pieces(const char *s, size_t len, size_t first, size_t step, const setup *su) {
    outcome o = {0};
    http_resp p;
    http_resp_init(&p, (const uint8_t *)su->expect, su->expect ? strlen(su->expect) : 0);
    http_resp_expect_head(&p, su->head);
    if (!step)
        step = len;
    if (!first)
        first = step;
    for (size_t off = 0, piece = first; off < len && o.last != HTTP_RESP_ERROR;
         off += piece, piece = step) {
        const uint8_t *d = (const uint8_t *)s + off;
        size_t left = len - off < piece ? len - off : piece;
        while (left) {
            http_resp_event ev;
            size_t used = http_resp_feed(&p, d, left, &ev);
            VT_ASSERT(used <= left, "used %zu of %zu", used, left);
            o.used += used;
            o.last = ev;
            if (ev == HTTP_RESP_ERROR) {
                o.error = p.error;
                break;
            }
            if (ev == HTTP_RESP_DONE)
                record(&o, &p);
            else
                VT_ASSERT(used == left, "MORE after %zu of %zu bytes", used, left);
            d += used;
            left -= used;
        }
    }
    if (su->eof && o.last != HTTP_RESP_ERROR) {
        o.last = http_resp_eof(&p);
        if (o.last == HTTP_RESP_DONE)
            record(&o, &p);
        if (o.last == HTTP_RESP_ERROR)
            o.error = p.error;
    }
    return o;
}

static outcome run(const char *s, size_t len, size_t step, const setup *su) {
    return run_pieces(s, len, step, step, su);
}

static bool same(const outcome *a, const outcome *b) {
    if (a->responses != b->responses || a->last != b->last || a->error != b->error ||
        a->used != b->used)
        return false;
    for (int i = 0; i < a->responses; i++)
        if (a->status[i] != b->status[i] || a->body_len[i] != b->body_len[i] ||
            a->close[i] != b->close[i] || a->mismatch[i] != b->mismatch[i] ||
            a->mismatch_at[i] != b->mismatch_at[i] || a->end[i] != b->end[i])
            return false;
    return true;
}

/* Feeds s whole, in pieces of every size, and cut in two at every byte (a
 * sample of those for long inputs), checks that every way reports exactly
 * what the whole does, and returns that. */
static outcome every_way(const char *s, size_t len, const setup *su) {
    outcome whole = run(s, len, 0, su);
    size_t every = len <= 1000 ? 1 : 997;
    for (size_t step = 1; step <= len; step += step < 64 ? 1 : every) {
        outcome o = run(s, len, step, su);
        VT_ASSERT(same(&o, &whole),
                  "pieces of %zu: %d responses, event %d, error %d, used %zu; whole: %d, %d, %d, %zu",
                  step, o.responses, o.last, o.error, o.used, whole.responses, whole.last,
                  whole.error, whole.used);
    }
    for (size_t cut = 1; cut < len; cut += every) {
        outcome o = run_pieces(s, len, cut, len, su);
        VT_ASSERT(same(&o, &whole), "cut at %zu: %d responses, event %d, error %d, used %zu; whole: "
                  "%d, %d, %d, %zu", cut, o.responses, o.last, o.error, o.used, whole.responses,
                  whole.last, whole.error, whole.used);
    }
    return whole;
}

static const setup plain = {0};
static const setup at_eof = {.eof = true};

/* A literal with its length. */
#define BYTES(s) s, sizeof(s) - 1

/* ------------------------------------------------------------ framing */

#define R_LENGTH "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
#define R_CHUNKED                                                                            \
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"                                  \
    "7;name=value\r\nHello, \r\n6;a;b=\"q\"\r\nWorld!\r\n0;last\r\nX-Trailer: yes\r\n\r\n"
#define R_NO_CONTENT "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"

VT_TEST(http_resp, content_length, 10) {
    static const char buf[] = R_LENGTH "HTTP/1.1";
    http_resp p;
    http_resp_init(&p, NULL, 0);
    http_resp_event ev;
    size_t used = http_resp_feed(&p, (const uint8_t *)buf, sizeof(buf) - 1, &ev);
    VT_EQ(ev, HTTP_RESP_DONE);
    VT_EQ(used, sizeof(R_LENGTH) - 1); /* not a byte of the next response */
    VT_EQ(p.status, 200);
    VT_EQ(p.body_len, 13);
    VT_EQ(p.close, 0);
    VT_EQ(p.mismatch, 0);
    /* the start of the next one: taken, and pending at the close */
    VT_EQ(http_resp_feed(&p, (const uint8_t *)buf + used, 8, &ev), 8);
    VT_EQ(ev, HTTP_RESP_MORE);
    VT_EQ(p.status, 0); /* the fields were cleared when it began */
    VT_EQ(http_resp_eof(&p), HTTP_RESP_ERROR);
    VT_EQ(p.error, HTTP_RESP_TRUNCATED);
}

/* Three pipelined responses, one of each framing, read in every split:
 * the same three responses, each ending at the same byte. */
VT_TEST(http_resp, pipelined_split_every_way, 30) {
    static const char buf[] = R_LENGTH R_CHUNKED R_NO_CONTENT;
    const size_t end0 = sizeof(R_LENGTH) - 1, end1 = end0 + sizeof(R_CHUNKED) - 1;
    const setup checked = {.expect = "Hello, World!", .eof = true};
    outcome o = every_way(BYTES(buf), &checked);
    VT_EQ(o.responses, 3);
    VT_EQ(o.last, HTTP_RESP_MORE); /* the close came between responses */
    VT_EQ(o.used, sizeof(buf) - 1);
    VT_EQ(o.end[0], end0);
    VT_EQ(o.end[1], end1);
    VT_EQ(o.end[2], sizeof(buf) - 1);
    VT_EQ(o.status[0], 200);
    VT_EQ(o.status[1], 200);
    VT_EQ(o.status[2], 204);
    VT_EQ(o.body_len[0], 13);
    VT_EQ(o.body_len[1], 13);
    VT_EQ(o.body_len[2], 0);
    VT_EQ(o.close[0] + o.close[1], 0);
    VT_EQ(o.close[2], 1);
    VT_EQ(o.mismatch[0] + o.mismatch[1] + o.mismatch[2], 0);
    /* and with another expected body, the same split-proof mismatches */
    const setup other = {.expect = "Hello, world!"};
    o = every_way(BYTES(buf), &other);
    VT_EQ(o.responses, 3);
    VT_EQ(o.mismatch[0], 1);
    VT_EQ(o.mismatch_at[0], 7);
    VT_EQ(o.mismatch[1], 1);
    VT_EQ(o.mismatch_at[1], 7);
    VT_EQ(o.mismatch[2], 0); /* a 204 has no body to compare */
}

/* A head that came whole is remembered, and the same bytes again are taken
 * as they were read then (http_resp.h). What its lines said comes back with
 * it (length, chunked, Connection: close, interim or final), heads that
 * differ in a byte are read afresh, and every split (none of them sees a
 * head whole twice) reports the same. */
#define R_CLOSE "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 13\r\n\r\nHello, World!"
#define R_INTERIM "HTTP/1.1 100 Continue\r\n\r\n"
VT_TEST(http_resp, a_head_seen_again, 30) {
    static const char buf[] = R_LENGTH R_LENGTH R_CHUNKED R_CHUNKED R_CLOSE R_CLOSE R_LENGTH
        R_INTERIM R_LENGTH R_INTERIM R_LENGTH R_NO_CONTENT R_NO_CONTENT;
    const setup checked = {.expect = "Hello, World!"};
    outcome o = every_way(BYTES(buf), &checked);
    VT_EQ(o.responses, 11);
    VT_EQ(o.used, sizeof(buf) - 1);
    for (int i = 0; i < 11; i++) {
        bool no_content = i >= 9, closes = i == 4 || i == 5 || no_content;
        VT_EQ(o.status[i], no_content ? 204 : 200);
        VT_EQ(o.body_len[i], no_content ? 0 : 13);
        VT_EQ(o.close[i], closes);
        VT_EQ(o.mismatch[i], 0);
    }
    VT_EQ(o.end[1], 2 * (sizeof(R_LENGTH) - 1));
    /* the same head, now answering a HEAD request: no body this time */
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    static const char get[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    http_resp p;
    http_resp_init(&p, NULL, 0);
    http_resp_event ev;
    VT_EQ(http_resp_feed(&p, (const uint8_t *)get, sizeof(get) - 1, &ev), sizeof(get) - 1);
    VT_EQ(ev, HTTP_RESP_DONE);
    VT_EQ(p.body_len, 5);
    http_resp_expect_head(&p, true);
    VT_EQ(http_resp_feed(&p, (const uint8_t *)head, sizeof(head) - 1, &ev), sizeof(head) - 1);
    VT_EQ(ev, HTTP_RESP_DONE);
    VT_EQ(p.body_len, 0);
    http_resp_expect_head(&p, false);
    VT_EQ(http_resp_feed(&p, (const uint8_t *)get, sizeof(get) - 1, &ev), sizeof(get) - 1);
    VT_EQ(ev, HTTP_RESP_DONE);
    VT_EQ(p.body_len, 5);
    VT_EQ(p.status, 200);
    /* one byte more in the head than the remembered one: read, and refused */
    static const char longer[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\r\nhello";
    http_resp_feed(&p, (const uint8_t *)longer, sizeof(longer) - 1, &ev);
    VT_EQ(ev, HTTP_RESP_ERROR);
    VT_EQ(p.error, HTTP_RESP_BAD_HEADER);
}

VT_TEST(http_resp, head_response_has_no_body, 10) {
    static const char heads[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    const setup head = {.expect = "0123456789", .head = true};
    outcome o = every_way(BYTES(heads), &head);
    VT_EQ(o.responses, 2);
    VT_EQ(o.last, HTTP_RESP_DONE);
    VT_EQ(o.end[0], 40);
    VT_EQ(o.end[1], sizeof(heads) - 1);
    VT_EQ(o.body_len[0] + o.body_len[1], 0);
    VT_EQ(o.mismatch[0] + o.mismatch[1], 0); /* no body is expected of HEAD */
    /* and back to GET: the same head is followed by its body */
    static const char get[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    http_resp p;
    http_resp_init(&p, NULL, 0);
    http_resp_expect_head(&p, true);
    http_resp_event ev;
    VT_EQ(http_resp_feed(&p, (const uint8_t *)get, sizeof(get) - 1, &ev), sizeof(get) - 3);
    VT_EQ(ev, HTTP_RESP_DONE);
    http_resp_expect_head(&p, false);
    VT_EQ(http_resp_feed(&p, (const uint8_t *)get, sizeof(get) - 1, &ev), sizeof(get) - 1);
    VT_EQ(ev, HTTP_RESP_DONE);
    VT_EQ(p.body_len, 2);
}

/* 1xx responses are interim: skipped, their fields forgotten, and the
 * final response reported. */
VT_TEST(http_resp, interim_responses_are_skipped, 10) {
    static const char buf[] = "HTTP/1.1 100 Continue\r\n\r\n"
                              "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nConnection: close\r\n\r\n"
                              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    outcome o = every_way(BYTES(buf), &plain);
    VT_EQ(o.responses, 1);
    VT_EQ(o.status[0], 200);
    VT_EQ(o.body_len[0], 2);
    VT_EQ(o.close[0], 0);
    VT_EQ(o.end[0], sizeof(buf) - 1);
    /* the close after an interim response: the final one never came */
    static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\n";
    o = every_way(BYTES(interim), &at_eof);
    VT_EQ(o.used, sizeof(interim) - 1);
    VT_EQ(o.last, HTTP_RESP_ERROR);
    VT_EQ(o.error, HTTP_RESP_TRUNCATED);
    /* 101: the connection stops speaking HTTP, so it is the last response */
    static const char upgrade[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05";
    o = run(BYTES(upgrade), 0, &plain);
    VT_EQ(o.responses, 1);
    VT_EQ(o.status[0], 101);
    VT_EQ(o.close[0], 1);
    VT_EQ(o.end[0], sizeof(upgrade) - 3);
}

VT_TEST(http_resp, no_body_statuses, 10) {
#define R304 "HTTP/1.1 304 Not Modified\r\nContent-Length: 13\r\n\r\n"
#define R204 "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"
    static const char buf[] = R304 R204 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    outcome o = every_way(BYTES(buf), &plain);
    VT_EQ(o.responses, 3);
    VT_EQ(o.status[0], 304);
    VT_EQ(o.status[1], 204);
    VT_EQ(o.status[2], 200);
    VT_EQ(o.end[0], sizeof(R304) - 1);
    VT_EQ(o.end[1], sizeof(R304 R204) - 1);
#undef R304
#undef R204
    VT_EQ(o.end[2], sizeof(buf) - 1);
    VT_EQ(o.body_len[0] + o.body_len[1] + o.body_len[2], 0);
}

/* Without Content-Length or chunks, the body is what comes until the close. */
VT_TEST(http_resp, body_until_eof, 10) {
    static const char buf[] = "HTTP/1.1 200 OK\r\nServer: x\r\n\r\nabcdef";
    http_resp p;
    http_resp_init(&p, NULL, 0);
    http_resp_event ev;
    VT_EQ(http_resp_feed(&p, (const uint8_t *)buf, sizeof(buf) - 4, &ev), sizeof(buf) - 4);
    VT_EQ(ev, HTTP_RESP_MORE);
    VT_EQ(http_resp_feed(&p, (const uint8_t *)buf + sizeof(buf) - 4, 3, &ev), 3);
    VT_EQ(ev, HTTP_RESP_MORE);
    VT_EQ(http_resp_eof(&p), HTTP_RESP_DONE);
    VT_EQ(p.status, 200);
    VT_EQ(p.body_len, 6);
    VT_EQ(p.close, 1);
    VT_EQ(http_resp_eof(&p), HTTP_RESP_MORE); /* nothing more pending */

    static const struct {
        const char *resp;
        size_t len;
        uint64_t body_len;
    } cases[] = {
        {BYTES("HTTP/1.0 200 OK\r\n\r\nabcdef"), 6},
        {BYTES("HTTP/1.1 200 OK\r\n\r\n"), 0},
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabcdefgh"), 8},
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"), 5},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: br\r\n\r\nabc"), 3},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        outcome o = every_way(cases[i].resp, cases[i].len, &at_eof);
        VT_ASSERT(o.responses == 1 && o.last == HTTP_RESP_DONE, "case %zu: %d responses, event %d",
                  i, o.responses, o.last);
        VT_EQ(o.body_len[0], cases[i].body_len);
        VT_EQ(o.close[0], 1);
        VT_EQ(o.end[0], cases[i].len);
    }
    /* the expected body, delimited by the close */
    const setup expect = {.expect = "abcdef", .eof = true};
    outcome o = run(BYTES("HTTP/1.1 200 OK\r\n\r\nabcdef"), 0, &expect);
    VT_EQ(o.mismatch[0], 0);
    o = run(BYTES("HTTP/1.1 200 OK\r\n\r\nabc"), 0, &expect);
    VT_EQ(o.mismatch[0], 1);
    VT_EQ(o.mismatch_at[0], 3);
}

/* The close in the middle of a response, wherever it falls. */
VT_TEST(http_resp, truncated_at_eof, 10) {
    static const struct {
        const char *resp;
        size_t len;
    } cases[] = {
        {BYTES("H")},
        {BYTES("HTTP/1.1 200 OK")},
        {BYTES("HTTP/1.1 200 OK\r")},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Le")},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n")},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r")},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")},
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")},
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")},
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")},
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")},
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n")},
        {BYTES(R_LENGTH "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello")},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        outcome o = every_way(cases[i].resp, cases[i].len, &at_eof);
        VT_ASSERT(o.last == HTTP_RESP_ERROR && o.error == HTTP_RESP_TRUNCATED,
                  "case %zu: event %d, error %d", i, o.last, o.error);
        VT_EQ(o.used, cases[i].len);
    }
    /* the close between responses is not a truncation */
    outcome o = run(BYTES(R_LENGTH), 0, &at_eof);
    VT_EQ(o.responses, 1);
    VT_EQ(o.last, HTTP_RESP_MORE);
    http_resp p;
    http_resp_init(&p, NULL, 0);
    VT_EQ(http_resp_eof(&p), HTTP_RESP_MORE);
}

/* ------------------------------------------------------------ refusals */

/* A response the parser must refuse: the error, and where it is found
 * (just past the first occurrence of at: the LF of the bad line, or the
 * byte after a lone CR). */
typedef struct refusal {
    const char *resp;
    size_t len;
    http_resp_error error;
    const char *at;
} refusal;

static void check_refused(const refusal *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const char *at = strstr(cases[i].resp, cases[i].at);
        VT_ASSERT(at, "case %zu: no '%s' in the response", i, cases[i].at);
        size_t where = (size_t)(at - cases[i].resp) + strlen(cases[i].at);
        outcome o = every_way(cases[i].resp, cases[i].len, &at_eof);
        VT_ASSERT(o.last == HTTP_RESP_ERROR && o.error == cases[i].error && o.used == where,
                  "case %zu '%.*s': event %d, error %d (%s), used %zu; want error %d at %zu", i,
                  (int)cases[i].len, cases[i].resp, o.last, o.error, http_resp_error_name(o.error),
                  o.used, cases[i].error, where);
    }
}

VT_TEST(http_resp, bad_status_lines, 10) {
    static const refusal cases[] = {
        {BYTES("HTTP/2 200 OK\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "OK\r\n"},
        {BYTES("HTTP/2.0 200 OK\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "OK\r\n"},
        {BYTES("HTTP/1.1 20\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "20\r\n"},
        {BYTES("HTTP/1.1 20 OK\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "OK\r\n"},
        {BYTES("FOO\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "FOO\r\n"},
        {BYTES("FOO\n"), HTTP_RESP_BAD_STATUS_LINE, "FOO\n"},
        {BYTES("http/1.1 200 OK\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "OK\r\n"},
        {BYTES("HTTP/1.1 200OK\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "OK\r\n"},
        {BYTES("HTTP/1.1 2000 OK\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "OK\r\n"},
        {BYTES("HTTP/1.1  200 OK\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "OK\r\n"},
        {BYTES("HTTP/1.1 2x0 OK\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "OK\r\n"},
        {BYTES("HTTP/1.1 099 Low\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "Low\r\n"},
        {BYTES("HTTP/1.1 600 High\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "High\r\n"},
        {BYTES("HTTP/1.x 200 OK\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "OK\r\n"},
        {BYTES("HTTP/1.1 200 O\rK\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "O\rK"},
        {BYTES("HTTP/1.1 200 OK\r\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "OK\r\r"},
        {BYTES("\r\nHTTP/1.1 200 OK\r\n\r\n"), HTTP_RESP_BAD_STATUS_LINE, "\r\n"},
        /* what a Content-Length that was too short leaves behind */
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdHTTP/1.1 200 OK\r\n\r\n"),
         HTTP_RESP_BAD_STATUS_LINE, "abcdHTTP/1.1 200 OK\r\n"},
    };
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));
}

VT_TEST(http_resp, accepted_status_lines, 10) {
    static const struct {
        const char *resp;
        size_t len;
        int status;
        bool close;
    } cases[] = {
        {BYTES("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), 200, false},
        {BYTES("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n"), 404, false},
        {BYTES("HTTP/1.1 503 Service Unavailable, \tfor now\r\nContent-Length: 0\r\n\r\n"), 503, false},
        {BYTES("HTTP/1.1 599 \xc3\xa9t\xc3\xa9\r\nContent-Length: 0\r\n\r\n"), 599, false},
        {BYTES("HTTP/1.1 200 OK\nContent-Length: 2\n\nok"), 200, false},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok"), 200, false},
        {BYTES("HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n"), 200, false},
        {BYTES("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), 200, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        outcome o = every_way(cases[i].resp, cases[i].len, &plain);
        VT_ASSERT(o.responses == 1 && o.end[0] == cases[i].len, "case %zu: %d responses, event %d "
                  "error %d", i, o.responses, o.last, o.error);
        VT_EQ(o.status[0], cases[i].status);
        VT_EQ(o.close[0], cases[i].close);
    }
}

VT_TEST(http_resp, bad_headers, 10) {
    static const refusal cases[] = {
        {BYTES("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"), HTTP_RESP_BAD_HEADER, "NoColon\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n"), HTTP_RESP_BAD_HEADER, "here\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nX-A: b\rc\r\n\r\n"), HTTP_RESP_BAD_HEADER, "b\rc"},
        {BYTES("HTTP/1.1 200 OK\r\nX-A: b\rContent-Length: 5\r\n\r\n"), HTTP_RESP_BAD_HEADER, "b\rC"},
        {BYTES("HTTP/1.1 200 OK\r\nX-A: b\r\r\n\r\n"), HTTP_RESP_BAD_HEADER, "b\r\r"},
        {BYTES("HTTP/1.1 200 OK\r\nX-A\r: b\r\n\r\n"), HTTP_RESP_BAD_HEADER, "A\r:"},
        {BYTES("HTTP/1.1 200 OK\r\n\r\r\n"), HTTP_RESP_BAD_HEADER, "\r\n\r\r"},
        {BYTES("HTTP/1.1 200 OK\r\nX-A: b\r\n folded\r\n\r\n"), HTTP_RESP_BAD_HEADER, "folded\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello"), HTTP_RESP_BAD_HEADER, "5\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n"), HTTP_RESP_BAD_HEADER, "name\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nX\"A: b\r\n\r\n"), HTTP_RESP_BAD_HEADER, "b\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n"),
         HTTP_RESP_BAD_HEADER, "colon\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\rb\r\n\r\n"),
         HTTP_RESP_BAD_HEADER, "a\rb"},
    };
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));
    /* a name longer than the parser keeps of a line */
    char resp[1024];
    int n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nX-%0300d: a\r\n\r\n", 0);
    outcome o = every_way(resp, (size_t)n, &plain);
    VT_EQ(o.error, HTTP_RESP_BAD_HEADER);
    VT_EQ(o.used, (size_t)n - 2);
    /* a lone CR where the kept start of the line has ended */
    n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nX-Long: %0300d\r%0200d\r\n\r\n", 0, 0);
    o = every_way(resp, (size_t)n, &plain);
    VT_EQ(o.error, HTTP_RESP_BAD_HEADER);
    VT_EQ(o.used, 17 + 8 + 300 + 2);
    /* and a long value of a field the parser does not read is fine */
    n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nX-Long: %0800d\r\nContent-Length: 0\r\n\r\n", 0);
    o = every_way(resp, (size_t)n, &plain);
    VT_EQ(o.responses, 1);
    VT_EQ(o.end[0], (size_t)n);
}

VT_TEST(http_resp, content_length_rules, 10) {
    static const refusal cases[] = {
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n"), HTTP_RESP_BAD_LENGTH, "x\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"), HTTP_RESP_BAD_LENGTH, ":\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length:  \r\n\r\n"), HTTP_RESP_BAD_LENGTH, ":  \r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), HTTP_RESP_BAD_LENGTH, "1\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"), HTTP_RESP_BAD_LENGTH, "5\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n"), HTTP_RESP_BAD_LENGTH, "5\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"), HTTP_RESP_BAD_LENGTH, "5\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n"), HTTP_RESP_BAD_LENGTH, "2\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n"),
         HTTP_RESP_BAD_LENGTH, "616\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
         HTTP_RESP_BAD_LENGTH, "999\r\n"},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
         HTTP_RESP_BAD_LENGTH, "4\r\n"},
        /* a 204's Content-Length is not read for framing, but it must still be one */
        {BYTES("HTTP/1.1 204 No Content\r\nContent-Length: x\r\n\r\n"), HTTP_RESP_BAD_LENGTH, "x\r\n"},
    };
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));

    static const struct {
        const char *resp;
        size_t len;
        uint64_t body_len;
    } fine[] = {
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: \t 7 \t\r\n\r\n1234567"), 7},
        {BYTES("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nCONTENT-LENGTH: 3\r\n\r\nabc"), 3},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 0003\r\n\r\nabc"), 3},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 0},
    };
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        outcome o = every_way(fine[i].resp, fine[i].len, &plain);
        VT_ASSERT(o.responses == 1 && o.end[0] == fine[i].len, "case %zu: %d responses, error %d",
                  i, o.responses, o.error);
        VT_EQ(o.body_len[0], fine[i].body_len);
    }
    /* the largest length there is: a head, and a body to wait for */
    static const char huge[] = "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nab";
    outcome o = every_way(BYTES(huge), &at_eof);
    VT_EQ(o.used, sizeof(huge) - 1);
    VT_EQ(o.error, HTTP_RESP_TRUNCATED);
}

VT_TEST(http_resp, chunk_rules, 10) {
#define CHUNKED_HEAD "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    static const refusal cases[] = {
        {BYTES(CHUNKED_HEAD "zz\r\n"), HTTP_RESP_BAD_CHUNK, "zz\r\n"},
        {BYTES(CHUNKED_HEAD "\r\n"), HTTP_RESP_BAD_CHUNK, "\r\n\r\n\r\n"},
        {BYTES(CHUNKED_HEAD "-1\r\n"), HTTP_RESP_BAD_CHUNK, "-1\r\n"},
        {BYTES(CHUNKED_HEAD "0x5\r\nhello\r\n"), HTTP_RESP_BAD_CHUNK, "0x5\r\n"},
        {BYTES(CHUNKED_HEAD "5 x\r\nhello\r\n"), HTTP_RESP_BAD_CHUNK, "5 x\r\n"},
        {BYTES(CHUNKED_HEAD "5 \r\nhello\r\n"), HTTP_RESP_BAD_CHUNK, "5 \r\n"},
        {BYTES(CHUNKED_HEAD "5\r\nhelloXX"), HTTP_RESP_BAD_CHUNK, "helloXX"},
        {BYTES(CHUNKED_HEAD "5\r\nhelloX\n"), HTTP_RESP_BAD_CHUNK, "helloX\n"},
        {BYTES(CHUNKED_HEAD "5\r\nhello\rX"), HTTP_RESP_BAD_CHUNK, "hello\rX"},
        {BYTES(CHUNKED_HEAD "5\r\nhello!\r\n0\r\n\r\n"), HTTP_RESP_BAD_CHUNK, "hello!\r"},
        {BYTES(CHUNKED_HEAD "5\rX"), HTTP_RESP_BAD_CHUNK, "5\rX"},
        /* 17 hex digits: an overflow, or padding no server needs */
        {BYTES(CHUNKED_HEAD "10000000000000000\r\n"), HTTP_RESP_BAD_CHUNK, "000\r\n"},
        {BYTES(CHUNKED_HEAD "00000000000000005\r\nhello\r\n"), HTTP_RESP_BAD_CHUNK, "005\r\n"},
        /* the chunks together longer than a body can be */
        {BYTES(CHUNKED_HEAD "1\r\na\r\nffffffffffffffff\r\n"), HTTP_RESP_BAD_CHUNK, "fff\r\n"},
    };
    check_refused(cases, sizeof(cases) / sizeof(cases[0]));

    static const struct {
        const char *resp;
        size_t len;
        uint64_t body_len;
    } fine[] = {
        {BYTES(CHUNKED_HEAD "A\r\n0123456789\r\n0\r\n\r\n"), 10},
        {BYTES(CHUNKED_HEAD "a;ext=1;q=\"x y\"\r\n0123456789\r\n0\r\n\r\n"), 10},
        {BYTES(CHUNKED_HEAD "5 \t;x\r\nhello\r\n0 ;y\r\n\r\n"), 5},
        {BYTES(CHUNKED_HEAD "000000000000000a\r\n0123456789\r\n00\r\n\r\n"), 10},
        {BYTES(CHUNKED_HEAD "5\nhello\n0\n\n"), 5},
        {BYTES(CHUNKED_HEAD "0\r\nX-A: 1\r\nContent-Length: 99\r\n\r\n"), 0},
        {BYTES("HTTP/1.1 200 OK\r\ntransfer-encoding: CHUNKED\r\n\r\n1\r\nx\r\n0\r\n\r\n"), 1},
    };
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        outcome o = every_way(fine[i].resp, fine[i].len, &plain);
        VT_ASSERT(o.responses == 1 && o.end[0] == fine[i].len, "case %zu: %d responses, error %d",
                  i, o.responses, o.error);
        VT_EQ(o.body_len[0], fine[i].body_len);
    }
    /* the largest chunk there is: its data is waited for */
    static const char huge[] = CHUNKED_HEAD "ffffffffffffffff\r\nab";
    outcome o = every_way(BYTES(huge), &at_eof);
    VT_EQ(o.used, sizeof(huge) - 1);
    VT_EQ(o.error, HTTP_RESP_TRUNCATED);
    /* extensions longer than a chunk-size line may be */
    static char ext[HTTP_RESP_MAX_CHUNK_LINE + 100];
    size_t n = (size_t)snprintf(ext, sizeof(ext), CHUNKED_HEAD "5;x=");
    memset(ext + n, 'e', sizeof(ext) - n - 1);
    o = every_way(ext, sizeof(ext) - 1, &plain);
    VT_EQ(o.error, HTTP_RESP_BAD_CHUNK);
    VT_EQ(o.used, sizeof(CHUNKED_HEAD) - 1 + HTTP_RESP_MAX_CHUNK_LINE);
    /* one just short of it is fine */
    n = (size_t)snprintf(ext, sizeof(ext), CHUNKED_HEAD "5;x=");
    size_t line_end = sizeof(CHUNKED_HEAD) - 1 + HTTP_RESP_MAX_CHUNK_LINE - 2;
    memset(ext + n, 'e', line_end - n);
    n = line_end + (size_t)snprintf(ext + line_end, sizeof(ext) - line_end, "\r\nhello\r\n0\r\n\r\n");
    o = every_way(ext, n, &plain);
    VT_EQ(o.responses, 1);
    VT_EQ(o.end[0], n);
#undef CHUNKED_HEAD
}

VT_TEST(http_resp, transfer_encoding_rules, 10) {
    static const struct {
        const char *resp;
        size_t len;
        uint64_t body_len;
    } cases[] = {
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"), 2},
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,chunked , \r\n\r\n2\r\nxy\r\n0\r\n\r\n"), 2},
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
               "2\r\nxy\r\n0\r\n\r\n"), 2},
        /* Transfer-Encoding wins over Content-Length (RFC 9112 6.3) */
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
               "2\r\nxy\r\n0\r\n\r\n"), 2},
        /* an empty one says nothing */
        {BYTES("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\nContent-Length: 2\r\n\r\nxy"), 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        outcome o = every_way(cases[i].resp, cases[i].len, &plain);
        VT_ASSERT(o.responses == 1 && o.end[0] == cases[i].len, "case %zu: %d responses, error %d",
                  i, o.responses, o.error);
        VT_EQ(o.body_len[0], cases[i].body_len);
        VT_EQ(o.close[0], 0);
    }
    /* chunked, then another coding: only the close ends the body */
    static const char last_gzip[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                    "Transfer-Encoding: gzip\r\n\r\n2\r\nxy\r\n0\r\n\r\n";
    outcome o = every_way(BYTES(last_gzip), &at_eof);
    VT_EQ(o.responses, 1);
    VT_EQ(o.body_len[0], 12);
    VT_EQ(o.close[0], 1);
}

VT_TEST(http_resp, head_too_long, 30) {
    static char resp[HTTP_RESP_MAX_HEAD + 200];
    /* a head of exactly HTTP_RESP_MAX_HEAD bytes, its last line included */
    const char *start = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: ";
    size_t n = (size_t)snprintf(resp, sizeof(resp), "%s", start);
    memset(resp + n, 'p', HTTP_RESP_MAX_HEAD - 4 - n);
    memcpy(resp + HTTP_RESP_MAX_HEAD - 4, "\r\n\r\n", 4);
    outcome o = every_way(resp, HTTP_RESP_MAX_HEAD, &plain);
    VT_EQ(o.responses, 1);
    VT_EQ(o.end[0], HTTP_RESP_MAX_HEAD);
    /* one byte more */
    memset(resp + n, 'p', HTTP_RESP_MAX_HEAD - 3 - n);
    memcpy(resp + HTTP_RESP_MAX_HEAD - 3, "\r\n\r\n", 4);
    o = every_way(resp, HTTP_RESP_MAX_HEAD + 1, &plain);
    VT_EQ(o.error, HTTP_RESP_HEAD_TOO_LONG);
    VT_EQ(o.used, HTTP_RESP_MAX_HEAD);
    /* many short lines */
    n = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\n");
    while (n < HTTP_RESP_MAX_HEAD + 100)
        n += (size_t)snprintf(resp + n, sizeof(resp) - n, "X-A: aaaaaaaaaaaaaaaa\r\n");
    o = every_way(resp, n, &plain);
    VT_EQ(o.error, HTTP_RESP_HEAD_TOO_LONG);
    VT_EQ(o.used, HTTP_RESP_MAX_HEAD);
    /* a trailer section that long */
    n = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    size_t trailer_start = n;
    while (n < trailer_start + HTTP_RESP_MAX_HEAD + 100)
        n += (size_t)snprintf(resp + n, sizeof(resp) - n, "X-A: aaaaaaaaaaaaaaaa\r\n");
    o = every_way(resp, n, &plain);
    VT_EQ(o.error, HTTP_RESP_HEAD_TOO_LONG);
    VT_EQ(o.used, trailer_start + HTTP_RESP_MAX_HEAD);
    /* a field the parser reads, longer than the start of a line it keeps */
    n = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: %0*d\r\n\r\n",
                         HTTP_RESP_MAX_LINE, 5);
    o = every_way(resp, n, &plain);
    VT_EQ(o.error, HTTP_RESP_HEAD_TOO_LONG);
    VT_EQ(o.used, n - 2);
    n = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nConnection: %*s\r\n\r\n",
                         HTTP_RESP_MAX_LINE, "close");
    o = every_way(resp, n, &plain);
    VT_EQ(o.error, HTTP_RESP_HEAD_TOO_LONG);
    /* the same field, just short enough */
    n = (size_t)snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nConnection: %*s\r\n\r\n",
                         HTTP_RESP_MAX_LINE - 12, "close");
    o = every_way(resp, n, &at_eof);
    VT_EQ(o.responses, 1);
    VT_EQ(o.close[0], 1);
}

/* ------------------------------------------------------------ bodies, connections */

VT_TEST(http_resp, expected_body_with_length, 10) {
    static const char buf[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!"  /* the one */
        "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!"  /* a byte differs */
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHello"           /* shorter */
        "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nHello, World!!" /* longer */
        "HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\nHello, World!"
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nXello, World!";
    const setup expect = {.expect = "Hello, World!"};
    outcome o = every_way(BYTES(buf), &expect);
    VT_EQ(o.responses, 7);
    VT_EQ(o.last, HTTP_RESP_DONE);
    VT_EQ(o.used, sizeof(buf) - 1);
    static const bool mismatch[] = {false, true, true, true, false, true, true};
    static const uint64_t at[] = {0, 7, 5, 13, 0, 0, 0};
    static const uint64_t body_len[] = {13, 13, 5, 14, 13, 0, 13};
    for (int i = 0; i < 7; i++) {
        VT_ASSERT(o.mismatch[i] == mismatch[i] && o.mismatch_at[i] == at[i] &&
                  o.body_len[i] == body_len[i], "response %d: mismatch %d at %llu, body %llu", i,
                  o.mismatch[i], (unsigned long long)o.mismatch_at[i],
                  (unsigned long long)o.body_len[i]);
    }
    VT_EQ(o.status[4], 404);
    const size_t head13 = sizeof("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n") - 1;
    VT_EQ(o.end[0], head13 + 13);
    VT_EQ(o.end[1], 2 * (head13 + 13));
    VT_EQ(o.end[2], 2 * (head13 + 13) + head13 - 1 + 5);
}

VT_TEST(http_resp, expected_body_chunked, 10) {
#define CH "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
#define FIRST CH "7\r\nHello, \r\n6\r\nWorld!\r\n0\r\n\r\n"
    static const char buf[] =
        FIRST                                                          /* the one */
        CH "D\r\nHello, World!\r\n0\r\n\r\n"                               /* in one chunk */
        CH "7\r\nHello, \r\n6\r\nWorlD!\r\n0\r\n\r\n"                      /* a byte differs */
        CH "7\r\nHello, \r\n0\r\n\r\n"                                     /* shorter */
        CH "7\r\nHello, \r\n6\r\nWorld!\r\n1\r\n!\r\n0\r\n\r\n"            /* longer */
        CH "1\r\nH\r\n1\r\ne\r\nb\r\nllo, World!\r\n0\r\nX-Sum: 1\r\n\r\n"; /* small chunks */
    const setup expect = {.expect = "Hello, World!"};
    outcome o = every_way(BYTES(buf), &expect);
    VT_EQ(o.responses, 6);
    VT_EQ(o.used, sizeof(buf) - 1);
    static const bool mismatch[] = {false, false, true, true, true, false};
    static const uint64_t at[] = {0, 0, 11, 7, 13, 0};
    static const uint64_t body_len[] = {13, 13, 13, 7, 14, 13};
    for (int i = 0; i < 6; i++) {
        VT_ASSERT(o.mismatch[i] == mismatch[i] && o.mismatch_at[i] == at[i] &&
                  o.body_len[i] == body_len[i], "response %d: mismatch %d at %llu, body %llu", i,
                  o.mismatch[i], (unsigned long long)o.mismatch_at[i],
                  (unsigned long long)o.body_len[i]);
    }
    VT_EQ(o.end[0], sizeof(FIRST) - 1);
#undef FIRST
#undef CH
}

VT_TEST(http_resp, connection_close, 10) {
    static const struct {
        const char *resp;
        size_t len;
        bool close;
    } cases[] = {
        {BYTES("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), true},
        {BYTES("HTTP/1.1 200 OK\r\nconnection: Keep-Alive, CLOSE\r\nContent-Length: 0\r\n\r\n"), true},
        {BYTES("HTTP/1.1 200 OK\r\nConnection: upgrade,close\r\nContent-Length: 0\r\n\r\n"), true},
        {BYTES("HTTP/1.1 200 OK\r\nConnection: te\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), true},
        {BYTES("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"), false},
        {BYTES("HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n"), false},
        {BYTES("HTTP/1.1 200 OK\r\nX-Connection: close\r\nContent-Length: 0\r\n\r\n"), false},
        {BYTES("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), false},
        {BYTES("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), true},
        {BYTES("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"), false},
        {BYTES("HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n"), true},
        /* HTTP/1.0 with Transfer-Encoding: framing to distrust (RFC 9112 6.1) */
        {BYTES("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
               "0\r\n\r\n"), true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        outcome o = every_way(cases[i].resp, cases[i].len, &plain);
        VT_ASSERT(o.responses == 1 && o.end[0] == cases[i].len, "case %zu: %d responses, error %d",
                  i, o.responses, o.error);
        VT_ASSERT(o.close[0] == cases[i].close, "case %zu: close %d", i, o.close[0]);
    }
}

/* After an error the parser takes nothing more; the fields of a response
 * stay until bytes of the next one are fed. */
VT_TEST(http_resp, error_and_fields_lifetime, 10) {
    static const char bad[] = "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n";
    http_resp p;
    http_resp_init(&p, NULL, 0);
    http_resp_event ev;
    VT_EQ(http_resp_feed(&p, (const uint8_t *)bad, sizeof(bad) - 1, &ev), sizeof(bad) - 3);
    VT_EQ(ev, HTTP_RESP_ERROR);
    VT_EQ(p.error, HTTP_RESP_BAD_LENGTH);
    VT_EQ(http_resp_feed(&p, (const uint8_t *)R_LENGTH, sizeof(R_LENGTH) - 1, &ev), 0);
    VT_EQ(ev, HTTP_RESP_ERROR);
    VT_EQ(http_resp_eof(&p), HTTP_RESP_ERROR);
    VT_EQ(p.error, HTTP_RESP_BAD_LENGTH);

    http_resp_init(&p, NULL, 0);
    VT_EQ(http_resp_feed(&p, (const uint8_t *)R_LENGTH, sizeof(R_LENGTH) - 1, &ev),
          sizeof(R_LENGTH) - 1);
    VT_EQ(ev, HTTP_RESP_DONE);
    VT_EQ(http_resp_feed(&p, (const uint8_t *)R_LENGTH, 0, &ev), 0); /* nothing fed */
    VT_EQ(ev, HTTP_RESP_MORE);
    VT_EQ(p.status, 200);
    VT_EQ(p.body_len, 13);
    VT_EQ(http_resp_feed(&p, (const uint8_t *)R_NO_CONTENT, 10, &ev), 10);
    VT_EQ(p.status, 0);
    VT_EQ(p.body_len, 0);

    /* every error has a name of its own */
    for (int a = HTTP_RESP_OK; a <= HTTP_RESP_TRUNCATED; a++)
        for (int b = a + 1; b <= HTTP_RESP_TRUNCATED; b++)
            VT_ASSERT(strcmp(http_resp_error_name((http_resp_error)a),
                             http_resp_error_name((http_resp_error)b)),
                      "errors %d and %d: both '%s'", a, b, http_resp_error_name((http_resp_error)a));
    VT_ASSERT(!strcmp(http_resp_error_name(HTTP_RESP_TRUNCATED), "truncated response"), "name");
}
