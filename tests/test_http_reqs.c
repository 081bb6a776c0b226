/*
 * test_http_reqs.c: the request file of the load generator (vigil bench
 * --http --requests FILE), alone: the bytes each request is sent as (line
 * ends normalized, bodies exact, Host added), the flags of each request,
 * every rule that refuses a file with the request and the line it names,
 * and the limits.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cli/http_reqs.h"
#include "vt.h"

/* The bytes the heap holds, under ASan, to see that a parse frees all it
 * took (on the error paths above all), at the call that took it; the leak
 * check at the end of every test (vt.h) would find a leak too, but not
 * which of a test's many parses made it. Without ASan nothing is counted
 * (glibc's own counts keep freed chunks in its caches). */
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef HAVE_ASAN
/* sanitizer/allocator_interface.h, which gcc does not ship */
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_in_use(void) { return __sanitizer_get_current_allocated_bytes(); }
#else
static size_t heap_in_use(void) { return 0; }
#endif

/* What the heap held before the last parse_ok. */
static size_t heap_before_parse;

/* A literal with its length (the length counts NULs inside). */
#define BYTES(s) s, sizeof(s) - 1

/* Bytes made readable in a message: CR, LF, NUL and the other controls
 * escaped, long runs cut. One buffer per slot, for two in one message. */
static const char *shown(const uint8_t *s, size_t len, int slot) {
    static char buf[2][1024];
    char *b = buf[slot & 1];
    size_t n = 0;
    for (size_t i = 0; i < len && n < sizeof(buf[0]) - 8; i++) {
        uint8_t c = s[i];
        if (c == '\r')
            n += (size_t)snprintf(b + n, sizeof(buf[0]) - n, "\\r");
        else if (c == '\n')
            n += (size_t)snprintf(b + n, sizeof(buf[0]) - n, "\\n");
        else if (c < ' ' || c >= 0x7f)
            n += (size_t)snprintf(b + n, sizeof(buf[0]) - n, "\\x%02x", c);
        else
            b[n++] = (char)c;
    }
    b[n] = '\0';
    return b;
}

/* Parses what must be a good file. */
static http_reqs parse_ok(const char *file, size_t len, const char *host) {
    heap_before_parse = heap_in_use();
    http_reqs r;
    char err[256] = "";
    int rc = http_reqs_parse((const uint8_t *)file, len, host, &r, err, sizeof(err));
    VT_ASSERT(rc == 0, "parse failed: %d: %s", rc, err);
    VT_ASSERT(r.n >= 1 && r.bytes && r.req, "n %zu", r.n);
    /* the requests lie back to back, in the order of the file */
    VT_EQ(r.req[0].off, 0);
    for (size_t i = 1; i < r.n; i++)
        VT_ASSERT(r.req[i].off == r.req[i - 1].off + r.req[i - 1].len, "request %zu at %zu, after %zu+%zu", i,
                  r.req[i].off, r.req[i - 1].off, r.req[i - 1].len);
    return r;
}

/* Frees what parse_ok gave, which must be all the parse kept. */
static void release(http_reqs *r) {
    http_reqs_free(r);
    VT_ASSERT(!r->bytes && !r->req && !r->n, "not emptied");
    size_t now = heap_in_use();
    VT_ASSERT(now == heap_before_parse, "the heap holds %zu bytes, %zu before the parse", now, heap_before_parse);
}

/* Request i is sent as exactly these bytes. */
static void expect_request(const http_reqs *r, size_t i, const char *want, size_t want_len) {
    VT_ASSERT(i < r->n, "request %zu of %zu", i, r->n);
    const http_req *q = &r->req[i];
    VT_ASSERT(q->len == want_len && !memcmp(r->bytes + q->off, want, want_len),
              "request %zu: got \"%s\", want \"%s\"", i, shown(r->bytes + q->off, q->len, 0),
              shown((const uint8_t *)want, want_len, 1));
}

/* Parses what must be refused, by a rule that names a request and a line:
 * -EINVAL, err "request <req_no> (line <line_no>): ..." with says in it, on
 * one line, and out left as it was. */
static void expect_refused(const char *file, size_t len, const char *host, size_t req_no, size_t line_no,
                           const char *says) {
    static int marker;
    http_reqs out = {.bytes = (uint8_t *)&marker, .req = (http_req *)&marker, .n = 77};
    char err[512];
    memset(err, 'x', sizeof(err));
    size_t heap = heap_in_use();
    int rc = http_reqs_parse((const uint8_t *)file, len, host, &out, err, sizeof(err));
    size_t heap_after = heap_in_use();
    VT_ASSERT(rc == -EINVAL, "\"%s\": rc %d, want -EINVAL", shown((const uint8_t *)file, len, 0), rc);
    VT_ASSERT(memchr(err, '\0', sizeof(err)), "err not terminated");
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "request %zu (line %zu): ", req_no, line_no);
    VT_ASSERT(!strncmp(err, prefix, strlen(prefix)) && strstr(err + strlen(prefix), says),
              "\"%s\": got \"%s\", want \"%s...%s...\"", shown((const uint8_t *)file, len, 0), err, prefix, says);
    VT_ASSERT(!strchr(err, '\n'), "err on more than one line: %s", err);
    VT_ASSERT(out.bytes == (uint8_t *)&marker && out.req == (http_req *)&marker && out.n == 77, "out changed");
    VT_ASSERT(heap_after == heap, "\"%s\": the heap holds %zu bytes, %zu before", shown((const uint8_t *)file, len, 0),
              heap_after, heap);
}

/* A refused file that names no request: rc, and says in err. */
static void expect_failure(const char *file, size_t len, const char *host, int want_rc, const char *says) {
    http_reqs out = {0};
    char err[512] = "";
    size_t heap = heap_in_use();
    int rc = http_reqs_parse((const uint8_t *)file, len, host, &out, err, sizeof(err));
    size_t heap_after = heap_in_use();
    VT_ASSERT(rc == want_rc, "rc %d, want %d (%s)", rc, want_rc, err);
    VT_ASSERT(strstr(err, says) && !strchr(err, '\n'), "got \"%s\", want \"%s\"", err, says);
    VT_ASSERT(!out.bytes && !out.req && !out.n, "out changed");
    VT_ASSERT(heap_after == heap, "the heap holds %zu bytes, %zu before", heap_after, heap);
}

/* A case of a refused file, for the tables. */
typedef struct refusal {
    const char *file;
    size_t len;
    size_t req_no, line_no;
    const char *says;
} refusal;

static void expect_refusals(const refusal *cases, size_t n, const char *host) {
    for (size_t i = 0; i < n; i++)
        expect_refused(cases[i].file, cases[i].len, host, cases[i].req_no, cases[i].line_no, cases[i].says);
}

#define GET_A "GET / HTTP/1.1\r\nHost: a\r\n\r\n"

/* ------------------------------------------------------------ the bytes sent */

VT_TEST(http_reqs, one_get, 10) {
    static const char file[] = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    http_reqs r = parse_ok(BYTES(file), NULL);
    VT_EQ(r.n, 1);
    expect_request(&r, 0, BYTES(file));
    VT_EQ(r.req[0].head, 0);
    VT_EQ(r.req[0].idempotent, 1);
    release(&r);
    http_reqs_free(&r); /* a second free does nothing */
}

VT_TEST(http_reqs, lf_lines_normalized_to_crlf, 10) {
    /* LF alone, and mixed with CRLF; the body keeps its LF */
    static const char file[] = "GET / HTTP/1.1\nHost: a\r\nX-A: 1\n\n"
                               "POST /p HTTP/1.1\nHost: a\nContent-Length: 3\n\na\nb";
    http_reqs r = parse_ok(BYTES(file), NULL);
    VT_EQ(r.n, 2);
    expect_request(&r, 0, BYTES("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n"));
    expect_request(&r, 1, BYTES("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\na\nb"));
    release(&r);
}

VT_TEST(http_reqs, several_requests_with_blank_lines, 10) {
    static const char file[] = "\n\r\n\n"                              /* before the first */
                               "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"    /* */
                               "\n\r\n"                                /* between */
                               "GET /2 HTTP/1.1\nHost: b\n\n"          /* */
                               "GET /3 HTTP/1.1\r\nHost: c\r\n\r\n"    /* right after */
                               "\r\n\n\r\n\n";                         /* after the last */
    http_reqs r = parse_ok(BYTES(file), NULL);
    VT_EQ(r.n, 3);
    expect_request(&r, 0, BYTES("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"));
    expect_request(&r, 1, BYTES("GET /2 HTTP/1.1\r\nHost: b\r\n\r\n"));
    expect_request(&r, 2, BYTES("GET /3 HTTP/1.1\r\nHost: c\r\n\r\n"));
    release(&r);
}

VT_TEST(http_reqs, body_taken_exactly, 10) {
    /* CRLFs, bare CRs, LFs, NULs and high bytes in the body, and a body
     * that looks like a request: all body, as it is */
#define BODY "a\r\n\0b\r\r\n\n\xff\0GET / HTTP/1.1\r\n\r\n"
#define HEAD_N(n) "PUT /up HTTP/1.1\nHost: a\nContent-Length: " #n "\n\n"
    static const char file[] = HEAD_N(29) BODY           /* the next request right after the body */
                               "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
                               "\n"                        /* the empty line after a body */
                               "POST /y HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n\r\n"
                               "\r\n"
                               "DELETE /z HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n\0";
    VT_EQ(sizeof(BODY) - 1, 29);
    http_reqs r = parse_ok(BYTES(file), NULL);
    VT_EQ(r.n, 4);
    expect_request(&r, 0, BYTES("PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 29\r\n\r\n" BODY));
    expect_request(&r, 1, BYTES("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"));
    expect_request(&r, 2, BYTES("POST /y HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n\r\n"));
    expect_request(&r, 3, BYTES("DELETE /z HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n\0"));
    release(&r);
#undef BODY
#undef HEAD_N
}

VT_TEST(http_reqs, host_inserted_when_missing, 10) {
    static const char file[] = "GET / HTTP/1.1\nAccept: */*\n\n"
                               "GET /with HTTP/1.1\r\nHost: there\r\n\r\n"
                               "POST /b HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"
                               "GET /bare HTTP/1.1\r\n\r\n"
                               "GET /old HTTP/1.0\r\n\r\n";
    http_reqs r = parse_ok(BYTES(file), "127.0.0.1:8080");
    VT_EQ(r.n, 5);
    expect_request(&r, 0, BYTES("GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\n\r\n"));
    expect_request(&r, 1, BYTES("GET /with HTTP/1.1\r\nHost: there\r\n\r\n"));
    expect_request(&r, 2, BYTES("POST /b HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 4\r\n\r\nbody"));
    expect_request(&r, 3, BYTES("GET /bare HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"));
    expect_request(&r, 4, BYTES("GET /old HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n\r\n"));
    release(&r);
    /* an empty host is an empty field value (RFC 9112 3.2) */
    r = parse_ok(BYTES("GET / HTTP/1.1\r\n\r\n"), "");
    expect_request(&r, 0, BYTES("GET / HTTP/1.1\r\nHost: \r\n\r\n"));
    release(&r);
}

VT_TEST(http_reqs, host_kept_when_present, 10) {
    /* in any case, anywhere in the head, with any value: sent as it is, once */
    static const char file[] = "GET /1 HTTP/1.1\r\nhost: x\r\n\r\n"
                               "GET /2 HTTP/1.1\r\nAccept: */*\r\nHOST:y:81\r\nX-B: 2\r\n\r\n"
                               "GET /3 HTTP/1.0\r\nHost: \r\n\r\n";
    http_reqs r = parse_ok(BYTES(file), "127.0.0.1:8080");
    VT_EQ(r.n, 3);
    expect_request(&r, 0, BYTES("GET /1 HTTP/1.1\r\nhost: x\r\n\r\n"));
    expect_request(&r, 1, BYTES("GET /2 HTTP/1.1\r\nAccept: */*\r\nHOST:y:81\r\nX-B: 2\r\n\r\n"));
    expect_request(&r, 2, BYTES("GET /3 HTTP/1.0\r\nHost: \r\n\r\n"));
    release(&r);
    /* a field whose name only starts or ends like Host is not it */
    r = parse_ok(BYTES("GET / HTTP/1.1\r\nHosts: x\r\nX-Host: y\r\n\r\n"), "h");
    expect_request(&r, 0, BYTES("GET / HTTP/1.1\r\nHost: h\r\nHosts: x\r\nX-Host: y\r\n\r\n"));
    release(&r);
}

VT_TEST(http_reqs, host_missing_without_default, 10) {
    static const refusal cases[] = {
        {BYTES("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), 1, 1, "no Host field"},
        {BYTES(GET_A "\n\nPOST /p HTTP/1.1\nContent-Length: 1\n\nx"), 2, 6, "no Host field"},
        {BYTES("GET / HTTP/1.1\r\nHosts: a\r\n\r\n"), 1, 1, "no Host field"},
    };
    expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), NULL);
    /* HTTP/1.0 may go without: nothing added */
    http_reqs r = parse_ok(BYTES("GET / HTTP/1.0\r\n\r\n"), NULL);
    expect_request(&r, 0, BYTES("GET / HTTP/1.0\r\n\r\n"));
    release(&r);
}

VT_TEST(http_reqs, method_flags, 10) {
    static const struct {
        const char *method;
        bool head, idempotent;
    } cases[] = {
        {"GET", false, true},    {"HEAD", true, true},     {"PUT", false, true},    {"DELETE", false, true},
        {"OPTIONS", false, true}, {"TRACE", false, true},  {"POST", false, false},  {"PATCH", false, false},
        {"PURGE", false, false}, {"get", false, false},    {"head", false, false},  {"GETS", false, false},
        {"HEADER", false, false}, {"G", false, false},
    };
    /* all in one file, so that each request's flags are its own */
    char file[2048];
    size_t n = 0, count = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < count; i++)
        n += (size_t)snprintf(file + n, sizeof(file) - n, "%s / HTTP/1.1\r\nHost: a\r\n\r\n", cases[i].method);
    http_reqs r = parse_ok(file, n, NULL);
    VT_EQ(r.n, count);
    for (size_t i = 0; i < count; i++)
        VT_ASSERT(r.req[i].head == cases[i].head && r.req[i].idempotent == cases[i].idempotent,
                  "%s: head %d idempotent %d", cases[i].method, r.req[i].head, r.req[i].idempotent);
    release(&r);
}

/* ------------------------------------------------------------ refused */

VT_TEST(http_reqs, request_line_refused, 10) {
    static const refusal cases[] = {
        {BYTES("GET /\r\nHost: a\r\n\r\n"), 1, 1, "want METHOD SP request-target SP HTTP/1.1"},
        {BYTES("GET\r\nHost: a\r\n\r\n"), 1, 1, "want METHOD SP request-target SP HTTP/1.1"},
        {BYTES(" / HTTP/1.1\r\nHost: a\r\n\r\n"), 1, 1, "no method"},
        {BYTES("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 1, 1, "the method is not a token"},
        {BYTES("G\tT / HTTP/1.1\r\nHost: a\r\n\r\n"), 1, 1, "the method is not a token"},
        {BYTES("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 1, 1, "the version is not HTTP/1.1 nor HTTP/1.0"},
        {BYTES("GET / http/1.1\r\nHost: a\r\n\r\n"), 1, 1, "the version is not HTTP/1.1 nor HTTP/1.0"},
        {BYTES("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 1, 1, "the version is not HTTP/1.1 nor HTTP/1.0"},
        {BYTES("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), 1, 1, "the version is not HTTP/1.1 nor HTTP/1.0"},
        {BYTES("GET  HTTP/1.1\r\nHost: a\r\n\r\n"), 1, 1, "empty request target"},
        {BYTES("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 1, 1, "the request target holds a space or control"},
        {BYTES("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 1, 1, "the request target holds a space or control"},
        {BYTES("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), 1, 1, "the request target holds a space or control"},
        {BYTES("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n"), 1, 1, "the request target holds a space or control"},
        {BYTES("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), 1, 1, "the request target holds a space or control"},
        {BYTES("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), 1, 1, "CONNECT is refused"},
        /* a line of spaces is not an empty line */
        {BYTES(GET_A " \r\n" GET_A), 2, 4, "want METHOD SP request-target SP HTTP/1.1"},
        /* counted in a later request, after blank lines of both kinds */
        {BYTES(GET_A "\r\n\n" GET_A "\n" "GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 3, 10, "the version"},
        {BYTES("\n\n\r\nCONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n"), 1, 4, "CONNECT is refused"},
    };
    expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), NULL);
    /* the refusals do not depend on the Host given */
    expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), "h");
    /* a target of the other forms is fine */
    http_reqs r = parse_ok(BYTES("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"
                                 "GET http://a/b?c=%20\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"),
                           NULL);
    VT_EQ(r.n, 2);
    release(&r);
}

VT_TEST(http_reqs, field_line_refused, 10) {
    static const refusal cases[] = {
        {BYTES("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n"), 1, 4, "obs-fold"},
        {BYTES("GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n"), 1, 3, "obs-fold"},
        {BYTES("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 1, 2, "bad field line"},
        {BYTES("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), 1, 2, "bad field line"},
        {BYTES("GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n"), 1, 3, "bad field line"},
        {BYTES("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), 1, 3, "bad field line"},
        {BYTES("GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n"), 1, 3, "bad field line"},
        {BYTES("GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n"), 1, 3, "bad field line"},
        {BYTES("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\0\r\n\r\n"), 1, 3, "NUL in a field value"},
        /* bare CRs: in a field line, in the request line, before the empty line, at the end */
        {BYTES("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), 1, 2, "bare CR"},
        {BYTES("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"), 1, 2, "bare CR"},
        {BYTES("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), 1, 1, "bare CR"},
        {BYTES("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), 1, 3, "bare CR"},
        {BYTES(GET_A "\r"), 2, 4, "bare CR"},
        {BYTES(GET_A "\r\r\n"), 2, 4, "bare CR"},
        /* the file ends in the head: no empty line, no LF */
        {BYTES("GET / HTTP/1.1\r\nHost: a\r\n"), 1, 3, "the file ends in the head"},
        {BYTES("GET / HTTP/1.1\nHost: a\n"), 1, 3, "the file ends in the head"},
        {BYTES("GET / HTTP/1.1\r\nHost: a"), 1, 2, "the file ends in the head"},
        {BYTES(GET_A "\nGET / HTTP/1.1"), 2, 5, "the file ends in the head"},
        /* in a later request */
        {BYTES(GET_A GET_A "GET / HTTP/1.1\nHost: a\nX-A : 1\n\n"), 3, 9, "bad field line"},
    };
    expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), NULL);
}

VT_TEST(http_reqs, content_length, 10) {
    /* spaces and tabs around the digits, leading zeros, zero */
    http_reqs r = parse_ok(BYTES("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t 005 \t\r\n\r\nhello"
                                 "POST / HTTP/1.1\r\nHost: a\r\ncontent-length:0\r\n\r\n"),
                           NULL);
    VT_EQ(r.n, 2);
    expect_request(&r, 0, BYTES("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t 005 \t\r\n\r\nhello"));
    expect_request(&r, 1, BYTES("POST / HTTP/1.1\r\nHost: a\r\ncontent-length:0\r\n\r\n"));
    release(&r);
    /* the same value twice: merged into the first */
    r = parse_ok(BYTES("POST / HTTP/1.1\nContent-Length: 3\nHost: a\nCONTENT-LENGTH: 03\n\nabc"), NULL);
    VT_EQ(r.n, 1);
    expect_request(&r, 0, BYTES("POST / HTTP/1.1\r\nContent-Length: 3\r\nHost: a\r\n\r\nabc"));
    release(&r);

#define CL(v) "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " v "\r\n\r\n"
    static const refusal cases[] = {
        {BYTES(CL("")), 1, 3, "bad Content-Length: no digits"},
        {BYTES(CL(" \t ")), 1, 3, "bad Content-Length: no digits"},
        {BYTES(CL("abc")), 1, 3, "bad Content-Length: digits only"},
        {BYTES(CL("-1")), 1, 3, "bad Content-Length: digits only"},
        {BYTES(CL("+5")), 1, 3, "bad Content-Length: digits only"},
        {BYTES(CL("0x10")), 1, 3, "bad Content-Length: digits only"},
        {BYTES(CL("5,5") "12345"), 1, 3, "bad Content-Length: digits only"},
        {BYTES(CL("1 2") "12345"), 1, 3, "bad Content-Length: digits only"},
        {BYTES(CL("5\x0b")), 1, 3, "bad Content-Length: digits only"},
        {BYTES(CL("1073741825")), 1, 3, "Content-Length over 1073741824 bytes"},
        {BYTES(CL("99999999999999999999999999999999")), 1, 3, "Content-Length over 1073741824 bytes"},
        {BYTES("POST / HTTP/1.1\r\nContent-Length: 5\r\nHost: a\r\nContent-Length: 6\r\n\r\n123456"), 1, 4,
         "Content-Length 6 after Content-Length 5"},
        /* exactly 1 GiB is allowed: then it is the end of the file that refuses it */
        {BYTES(CL("1073741824") "abc"), 1, 5, "the body is cut short by the end of the file: 3 of 1073741824"},
        {BYTES(GET_A "\n\n" CL("x")), 2, 8, "bad Content-Length"},
    };
#undef CL
    expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), NULL);
}

VT_TEST(http_reqs, transfer_encoding_refused, 10) {
    static const refusal cases[] = {
        {BYTES("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 1, 3,
         "Transfer-Encoding is refused: give the body with Content-Length instead"},
        {BYTES(GET_A "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\ntransfer-encoding: gzip\r\n\r\nx"), 2, 7,
         "give the body with Content-Length"},
    };
    expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), NULL);
}

VT_TEST(http_reqs, body_cut_short, 10) {
    static const refusal cases[] = {
        /* named at the line where the body starts */
        {BYTES("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"), 1, 5,
         "cut short by the end of the file: 3 of 10"},
        {BYTES("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n"), 1, 5,
         "cut short by the end of the file: 0 of 1"},
        /* the empty lines after a body are body when it is not complete */
        {BYTES("POST / HTTP/1.1\nHost: a\nContent-Length: 5\n\nab\n\n"), 1, 5,
         "cut short by the end of the file: 4 of 5"},
        /* the second one, after a body of many lines: 5-10, then 11 empty */
        {BYTES("POST / HTTP/1.1\nHost: a\nContent-Length: 6\n\n\n\n\n\n\n\n\r\n"
               "POST / HTTP/1.1\nHost: a\nContent-Length: 6\n\nab\ncd"), 2, 16,
         "cut short by the end of the file: 5 of 6"},
    };
    expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), NULL);
    /* one byte less in the body than the first case is good */
    http_reqs r = parse_ok(BYTES("POST / HTTP/1.1\nHost: a\nContent-Length: 2\n\nab\n\n"), NULL);
    expect_request(&r, 0, BYTES("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab"));
    release(&r);
}

/* The line numbers go on through bodies, blank lines of both kinds and the
 * Host lines added, so that each error names the file's line. */
VT_TEST(http_reqs, line_numbers_across_the_file, 10) {
    static const char start[] = "\r\n\n"                                    /* lines 1-2 */
                                "PUT /1 HTTP/1.1\r\nContent-Length: 9\r\n\r\n" /* 3-5, Host added */
                                "\r\nab\nb\r\n\n"                          /* the body: 6-9 */
                                "\r\n"                                      /* 10 */
                                "GET /2 HTTP/1.1\n\n"                       /* 11-12, Host added */
                                "POST /3 HTTP/1.1\nContent-Length: 2\n\nab" /* 13-16, the body on 16 */
                                "GET /4 HTTP/1.1\nX: 1\n";                  /* 16 (after the body), 17 */
    char file[512];
    static const struct {
        const char *end;
        size_t req_no, line_no;
        const char *says;
    } cases[] = {
        {"X : 2\n\n", 4, 18, "bad field line"},
        {"X: 2\n\r\n\n\rGET", 5, 21, "bare CR"},
        {"\n\n\r\nGET / HTTP/3\n", 5, 21, "the version"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = snprintf(file, sizeof(file), "%s%s", start, cases[i].end);
        expect_refused(file, (size_t)n, "h", cases[i].req_no, cases[i].line_no, cases[i].says);
    }
    /* and the good file, for the bytes */
    int n = snprintf(file, sizeof(file), "%s\n", start);
    http_reqs r = parse_ok(file, (size_t)n, "h");
    VT_EQ(r.n, 4);
    expect_request(&r, 0, BYTES("PUT /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n\r\nab\nb\r\n\n"));
    expect_request(&r, 1, BYTES("GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_request(&r, 2, BYTES("POST /3 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab"));
    expect_request(&r, 3, BYTES("GET /4 HTTP/1.1\r\nHost: h\r\nX: 1\r\n\r\n"));
    release(&r);
}

VT_TEST(http_reqs, no_request, 10) {
    expect_failure(NULL, 0, NULL, -EINVAL, "no request");
    expect_failure(BYTES(""), "h", -EINVAL, "no request");
    expect_failure(BYTES("\n"), NULL, -EINVAL, "no request");
    expect_failure(BYTES("\r\n\n\r\n\r\n\n"), NULL, -EINVAL, "no request");
    /* not empty lines: requests, and bad ones */
    expect_refused(BYTES("\n\r"), NULL, 1, 2, "bare CR");
    expect_refused(BYTES("\n\t\n"), NULL, 1, 2, "want METHOD SP request-target SP HTTP/1.1");
}

/* ------------------------------------------------------------ limits, arguments */

/* A file with one request whose head is head_len bytes once sent, padded
 * with an X-Pad field; lf: its lines end in LF in the file. Returns its
 * length in buf. */
static size_t padded_request(char *buf, size_t cap, size_t head_len, bool with_host, bool lf) {
    const char *eol = lf ? "\n" : "\r\n";
    /* the head sent: "GET / HTTP/1.1\r\n" ["Host: a\r\n"] "X-Pad: " pad "\r\n" "\r\n" */
    size_t fixed = strlen("GET / HTTP/1.1\r\n") + (with_host ? strlen("Host: a\r\n") : 0) + strlen("X-Pad: ") + 4;
    VT_ASSERT(head_len > fixed && head_len - fixed + 64 < cap, "head_len %zu", head_len);
    size_t n = (size_t)snprintf(buf, cap, "GET / HTTP/1.1%s%s%sX-Pad: ", eol, with_host ? "Host: a" : "",
                                with_host ? eol : "");
    memset(buf + n, 'p', head_len - fixed);
    n += head_len - fixed;
    n += (size_t)snprintf(buf + n, cap - n, "%s%s", eol, eol);
    return n;
}

VT_TEST(http_reqs, head_limit, 20) {
    size_t cap = HTTP_REQS_MAX_HEAD + 256;
    char *buf = malloc(cap);
    VT_ASSERT(buf, "malloc");
    /* exactly the limit, in CRLF and in LF (normalized, it is the same head) */
    for (int lf = 0; lf <= 1; lf++) {
        size_t n = padded_request(buf, cap, HTTP_REQS_MAX_HEAD, true, lf);
        http_reqs r = parse_ok(buf, n, NULL);
        VT_EQ(r.req[0].len, HTTP_REQS_MAX_HEAD);
        release(&r);
        /* one byte more: the line that goes over is named */
        n = padded_request(buf, cap, HTTP_REQS_MAX_HEAD + 1, true, lf);
        expect_refused(buf, n, NULL, 1, 3, "head over 65536 bytes");
    }
    /* the limit counts the CRs added: under it in the file, over it once sent */
    size_t n = padded_request(buf, cap, HTTP_REQS_MAX_HEAD + 1, true, true);
    VT_ASSERT(n < HTTP_REQS_MAX_HEAD, "file head %zu", n);
    /* the Host field added counts too, named at the empty line */
    n = padded_request(buf, cap, HTTP_REQS_MAX_HEAD - 9, false, false); /* "Host: a\r\n" is 9 */
    http_reqs r = parse_ok(buf, n, "a");
    VT_EQ(r.req[0].len, HTTP_REQS_MAX_HEAD);
    release(&r);
    n = padded_request(buf, cap, HTTP_REQS_MAX_HEAD - 8, false, false);
    expect_refused(buf, n, "a", 1, 3, "head over 65536 bytes with the Host field added");
    /* a request line that long alone, in the second request */
    memcpy(buf, GET_A, sizeof(GET_A) - 1);
    n = sizeof(GET_A) - 1;
    n += (size_t)snprintf(buf + n, cap - n, "GET /");
    memset(buf + n, 'u', HTTP_REQS_MAX_HEAD);
    n += HTTP_REQS_MAX_HEAD;
    n += (size_t)snprintf(buf + n, cap - n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_refused(buf, n, NULL, 2, 4, "head over 65536 bytes");
    /* many short lines, as many as fit with the empty line; then one more,
     * which is named */
    n = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\nHost: a\r\n");
    size_t lines = 2;
    while (n + 10 + 2 <= HTTP_REQS_MAX_HEAD) {
        n += (size_t)snprintf(buf + n, cap - n, "X-Ten: 1\r\n");
        lines++;
    }
    memcpy(buf + n, "\r\n", 2);
    r = parse_ok(buf, n + 2, NULL);
    VT_EQ(r.req[0].len, n + 2);
    release(&r);
    n += (size_t)snprintf(buf + n, cap - n, "X-Ten: 1\r\n\r\n");
    expect_refused(buf, n, NULL, 1, lines + 1, "head over 65536 bytes");
    free(buf);
}

VT_TEST(http_reqs, request_count_limit, 30) {
    static const char one[] = "GET / HTTP/1.0\n\n"; /* two lines */
    size_t n1 = sizeof(one) - 1, max = HTTP_REQS_MAX_REQUESTS;
    char *buf = malloc(n1 * (max + 1));
    VT_ASSERT(buf, "malloc");
    for (size_t i = 0; i <= max; i++)
        memcpy(buf + i * n1, one, n1);
    http_reqs r = parse_ok(buf, n1 * max, NULL);
    VT_EQ(r.n, max);
    VT_EQ(r.req[max - 1].off + r.req[max - 1].len, (n1 + 2) * max);
    VT_ASSERT(!memcmp(r.bytes + r.req[max - 1].off, "GET / HTTP/1.0\r\n\r\n", 18), "last request");
    release(&r);
    /* one more: named with its number and its line */
    expect_refused(buf, n1 * (max + 1), NULL, max + 1, 2 * max + 1, "more than 65536 requests");
    /* but empty lines after the last one are not a request */
    memset(buf + n1 * max, '\n', n1);
    buf[n1 * max] = '\r';
    r = parse_ok(buf, n1 * (max + 1), NULL);
    VT_EQ(r.n, max);
    release(&r);
    free(buf);
}

VT_TEST(http_reqs, file_size_limit, 30) {
    /* the pages are mapped, never written: they read as zeros and cost no memory */
    size_t len = HTTP_REQS_MAX_FILE + 1;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    VT_ASSERT(map != MAP_FAILED, "mmap: %s", strerror(errno));
    expect_failure(map, len, NULL, -EFBIG, "the request file is over 256 MiB");
    /* exactly the limit is read: and refused for what it holds (a line of
     * NULs that the file ends in) */
    expect_refused(map, len - 1, NULL, 1, 1, "the file ends in the head");
    munmap(map, len);
}

VT_TEST(http_reqs, bad_host_argument, 10) {
    expect_failure(BYTES(GET_A), "a\r\nX-Evil: 1", -EINVAL, "bad Host value");
    expect_failure(BYTES(GET_A), "a b", -EINVAL, "bad Host value");
    expect_failure(BYTES(GET_A), "a\tb", -EINVAL, "bad Host value");
    expect_failure(BYTES(GET_A), "a\x7f", -EINVAL, "bad Host value");
}

VT_TEST(http_reqs, error_buffer, 10) {
    static const char bad[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/9\r\n\r\n";
    http_reqs out = {0};
    size_t heap = heap_in_use();
    /* no room for a message: the same verdict */
    VT_EQ(http_reqs_parse((const uint8_t *)bad, sizeof(bad) - 1, NULL, &out, NULL, 0), -EINVAL);
    VT_EQ(http_reqs_parse((const uint8_t *)bad, sizeof(bad) - 1, NULL, &out, NULL, 100), -EINVAL);
    char err[12];
    memset(err, 'x', sizeof(err));
    VT_EQ(http_reqs_parse((const uint8_t *)bad, sizeof(bad) - 1, NULL, &out, err, 0), -EINVAL);
    VT_EQ(err[0], 'x'); /* errcap 0: not written */
    /* a short one: cut, terminated */
    VT_EQ(http_reqs_parse((const uint8_t *)bad, sizeof(bad) - 1, NULL, &out, err, sizeof(err)), -EINVAL);
    VT_ASSERT(!strcmp(err, "request 2 ("), "got \"%s\"", err);
    VT_ASSERT(!out.bytes && !out.req && !out.n, "out changed");
    /* and a good file with no error buffer */
    VT_EQ(http_reqs_parse((const uint8_t *)bad, 27, NULL, &out, NULL, 0), 0);
    VT_EQ(out.n, 1);
    http_reqs_free(&out);
    VT_EQ(heap_in_use(), heap);
}
