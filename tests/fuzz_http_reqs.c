/*
 * fuzz_http_reqs.c: a libFuzzer target for the request files of
 * `vigil bench --http --requests` (src/cli/http_reqs.c). tests/fuzz.sh
 * builds and runs it.
 *
 * The input: a byte of flags (1: no Host to add), then the file. What it
 * checks: a refusal says why in one line; an accepted file's requests lie
 * back to back, each head ends with an empty CRLF line and has no bare CR
 * nor bare LF, and the requests read again (nothing left to add or to
 * normalize) come out byte for byte the same, with the same flags. Any
 * difference ends the run with abort(), after saying what differed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_reqs.h"

static void fail(const char *what) {
    fprintf(stderr, "fuzz_http_reqs: %s\n", what);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    const char *host = data[0] & 1 ? NULL : "h:1";
    http_reqs r, again;
    char err[256];
    int rc = http_reqs_parse(data + 1, size - 1, host, &r, err, sizeof(err));
    if (rc != 0) {
        if (!err[0] || strchr(err, '\n'))
            fail("a refusal without a one-line reason");
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < r.n; i++) {
        const http_req *q = &r.req[i];
        if (q->off != total || q->len < 4)
            fail("requests not back to back");
        total += q->len;
        const uint8_t *s = r.bytes + q->off, *end = memmem(s, q->len, "\r\n\r\n", 4);
        if (!end)
            fail("a head without its empty line");
        for (const uint8_t *c = s; c < end + 4; c++)
            if ((*c == '\r' && c[1] != '\n') || (*c == '\n' && (c == s || c[-1] != '\r')))
                fail("a bare CR or LF in a head");
    }
    if (http_reqs_parse(r.bytes, total, NULL, &again, err, sizeof(err)) != 0)
        fail(err);
    if (again.n != r.n || memcmp(again.bytes, r.bytes, total))
        fail("read again, the requests changed");
    for (size_t i = 0; i < r.n; i++)
        if (again.req[i].off != r.req[i].off || again.req[i].len != r.req[i].len ||
            again.req[i].head != r.req[i].head || again.req[i].idempotent != r.req[i].idempotent)
            fail("read again, a request's place or flags changed");
    http_reqs_free(&again);
    http_reqs_free(&r);
    return 0;
}
