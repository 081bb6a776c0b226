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
#include "vt.h"

typedef struct parsed {
    int requests, keep_alive[16], head[16], status, err;
} parsed;

/* Feeds s in pieces of step bytes (0: all at once), as reads would deliver it. */
static parsed feed(const char *s, size_t len, size_t step) {
    parsed out = {0};
    http_parser p = {0};
    if (!step)
        step = len;
    for (size_t off = 0; off < len && !out.err; off += step) {
        const uint8_t *d = (const uint8_t *)s + off;
        size_t left = len - off < step ? len - off : step;
        while (left) {
            size_t used;
            http_request req;
            int st, rc = http_parse(&p, d, left, &used, &req, &st);
            VT_ASSERT(used <= left, "used %zu of %zu", used, left);
            if (rc < 0) {
                out.err = rc;
                out.status = st;
                break;
            }
            if (rc == 1 && out.requests < 16) {
                out.keep_alive[out.requests] = req.keep_alive;
                out.head[out.requests] = req.head;
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

VT_TEST(http, refused_requests, 10) {
    static const struct {
        const char *req;
        int err, status;
    } cases[] = {
        {"GARBAGE\r\n\r\n", -EPROTO, 400},
        {"GET /\r\n\r\n", -EPROTO, 400},
        {"GET / HTTP/2.0\r\n\r\n", -ENOTSUP, 505},
        {"GET / HTTX/1.1\r\n\r\n", -EPROTO, 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", -ENOTSUP, 501},
        {"POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n", -EPROTO, 400},
        {"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", -EPROTO, 400},
        {"GET / HTTP/1.1\r\n folded\r\n\r\n", -EPROTO, 400},
        {"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", -EPROTO, 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (size_t step = 0; step < 4; step++) {
            parsed p = feed(cases[i].req, strlen(cases[i].req), step);
            VT_ASSERT(p.err == cases[i].err && p.status == cases[i].status,
                      "'%s' in pieces of %zu: error %d status %d", cases[i].req, step, p.err, p.status);
        }
    /* a head past HTTP_MAX_HEAD: 431, whatever the pieces */
    char big[HTTP_MAX_HEAD + 200];
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n");
    while (n < HTTP_MAX_HEAD + 100)
        n += snprintf(big + n, sizeof(big) - (size_t)n, "X-A: aaaaaaaaaaaaaaaa\r\n");
    parsed p = feed(big, (size_t)n, 13);
    VT_EQ(p.err, -EMSGSIZE);
    VT_EQ(p.status, 431);
}

/* ------------------------------------------------------------ through the server */

/* Linux only: these fork and exec `vigil serve --threads 2` (SO_REUSEPORT).
 * On Windows the server is checked from Linux under wine instead: HTTP,
 * keep-alive and --root in tests/win/serve.sh. */
#ifndef _WIN32

static pid_t start_server_root(int *port, const char *root) {
    int out[2];
    VT_ASSERT(pipe(out) == 0, "pipe");
    pid_t pid = fork();
    VT_ASSERT(pid >= 0, "fork");
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        const char *b = getenv("VIGIL_TEST_BACKEND");
        const char *backend = !b                       ? "auto"
                              : !strcmp(b, "epoll")    ? "epoll"
                              : !strncmp(b, "uring", 5) ? "uring" /* uring-compat too */
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
