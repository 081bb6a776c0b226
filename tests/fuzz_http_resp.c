/*
 * fuzz_http_resp.c: a libFuzzer target for the response parser of
 * `vigil bench --http` (src/cli/http_resp.c). tests/fuzz.sh builds and runs it.
 *
 * The input: a byte of flags (1: the requests are HEAD, 2: compare bodies
 * with "hello, world\n", 4: the connection closes after the bytes), a byte
 * seeding the splits, then the bytes a server sent. What it checks:
 * - split independence: parsed whole, byte by byte, and in pieces drawn
 *   from the seed, the same responses (status, body length, close,
 *   mismatch and where), the same last event and error, and the same count
 *   of bytes taken (http_resp.h promises it: a verdict that depends on where
 *   reads split is one a server can steer, one byte per segment);
 * - the contract of http_resp_feed: it never takes more than it is given,
 *   MORE takes all, an error stays an error (0 bytes, ERROR after it).
 * Any difference ends the run with abort(), after saying what differed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_resp.h"

#define MAX_SEEN 64
static const uint8_t expect[] = "hello, world\n";

typedef struct seen {
    int status;
    uint64_t body_len, mismatch_at;
    bool close, mismatch;
} seen;

typedef struct outcome {
    seen r[MAX_SEEN];
    size_t n, used;
    http_resp_event last;
    http_resp_error error;
} outcome;

static void fail(const char *what, const char *mode) {
    fprintf(stderr, "fuzz_http_resp: %s (%s)\n", what, mode);
    abort();
}

/* Feeds data in pieces of at most piece bytes (0: sizes from the seed). */
static void run(const uint8_t *data, size_t len, uint8_t flags, uint32_t seed, size_t piece, outcome *o,
                const char *mode) {
    http_resp p;
    http_resp_init(&p, flags & 2 ? expect : NULL, flags & 2 ? sizeof(expect) - 1 : 0);
    http_resp_expect_head(&p, flags & 1);
    memset(o, 0, sizeof(*o));
    size_t off = 0;
    bool failed = false;
    while (off < len) {
        size_t k = piece;
        if (!k) {
            seed = seed * 1103515245u + 12345u;
            k = 1 + (seed >> 16) % 97;
        }
        if (k > len - off)
            k = len - off;
        size_t at = 0;
        while (at < k) {
            http_resp_event ev;
            size_t took = http_resp_feed(&p, data + off + at, k - at, &ev);
            if (took > k - at)
                fail("took more than it was given", mode);
            if (failed && (took != 0 || ev != HTTP_RESP_ERROR))
                fail("went on after an error", mode);
            o->used += took;
            at += took;
            o->last = ev;
            if (ev == HTTP_RESP_MORE && at != k)
                fail("MORE without taking all", mode);
            if (ev == HTTP_RESP_DONE && o->n < MAX_SEEN)
                o->r[o->n++] = (seen){p.status, p.body_len, p.mismatch_at, p.close, p.mismatch};
            if (ev == HTTP_RESP_ERROR) {
                failed = true;
                o->error = p.error;
                break;
            }
            if (ev == HTTP_RESP_MORE)
                break;
        }
        off += k;
        if (failed)
            break;
    }
    if (!failed && (flags & 4)) {
        o->last = http_resp_eof(&p);
        if (o->last == HTTP_RESP_DONE && o->n < MAX_SEEN)
            o->r[o->n++] = (seen){p.status, p.body_len, p.mismatch_at, p.close, p.mismatch};
        if (o->last == HTTP_RESP_ERROR)
            o->error = p.error;
    }
}

static void same(const outcome *a, const outcome *b, const char *mode) {
    if (a->n != b->n)
        fail("a different number of responses", mode);
    for (size_t i = 0; i < a->n; i++) { /* field by field: padding is not compared */
        const seen *x = &a->r[i], *y = &b->r[i];
        if (x->status != y->status || x->body_len != y->body_len || x->mismatch_at != y->mismatch_at ||
            x->close != y->close || x->mismatch != y->mismatch)
            fail("a response read differently", mode);
    }
    if (a->last != b->last || a->error != b->error)
        fail("a different last event or error", mode);
    if (a->used != b->used)
        fail("a different count of bytes taken", mode);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    uint32_t seed = data[1];
    data += 2;
    size -= 2;
    static outcome whole, bytes, pieces; /* large: not on the stack */
    run(data, size, flags, seed, size ? size : 1, &whole, "whole");
    run(data, size, flags, seed, 1, &bytes, "byte by byte");
    run(data, size, flags, seed, 0, &pieces, "pieces");
    same(&whole, &bytes, "byte by byte");
    same(&whole, &pieces, "pieces");
    return 0;
}
