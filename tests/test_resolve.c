/* test_resolve.c: name lookups and connect by name, on every backend, with
 * no outside network. Each test runs in a child process with a private
 * mount and network namespace: a test /etc/hosts and /etc/resolv.conf are
 * bind-mounted over the real ones, and the name server in resolv.conf is a
 * small DNS responder of the test's own on 127.0.0.1:53 (in that namespace
 * only). It answers A queries for dns-only.test, NXDOMAIN for other names,
 * and never answers for blackhole.test. */
#include "util.h"
#include "vt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the child, a failed check prints why and exits with its line number. */
#define CHECK(cond, ...)                                                                    \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "[----] %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                   \
            fprintf(stderr, "\n");                                                          \
            _exit(__LINE__ % 250 + 1);                                                      \
        }                                                                                   \
    } while (0)

/* ----------------------------------------------------- the namespace */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

/* 0 when the namespace is ready; -1 (errno) when unshare is refused. */
static int enter_namespace(void) {
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0)
        return -1;
    CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "make / private: %s", strerror(errno));
    char hosts[64], resolv[64];
    snprintf(hosts, sizeof(hosts), "/tmp/vigil-hosts-%d", (int)getpid());
    snprintf(resolv, sizeof(resolv), "/tmp/vigil-resolv-%d", (int)getpid());
    write_file(hosts, "127.0.0.1 localhost\n"
                      "10.1.2.3 vigil-hosts.test\n"
                      "fd00::7 vigil-hosts.test\n"
                      "127.0.0.1 vigil-local.test\n"
                      "::1 vigil-local.test\n");
    write_file(resolv, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
    CHECK(mount(hosts, "/etc/hosts", NULL, MS_BIND, NULL) == 0, "bind hosts: %s", strerror(errno));
    CHECK(mount(resolv, "/etc/resolv.conf", NULL, MS_BIND, NULL) == 0, "bind resolv.conf: %s", strerror(errno));
    unlink(hosts); /* the mounts keep them */
    unlink(resolv);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    CHECK(ioctl(s, SIOCGIFFLAGS, &ifr) == 0, "lo flags: %s", strerror(errno));
    ifr.ifr_flags |= IFF_UP;
    CHECK(ioctl(s, SIOCSIFFLAGS, &ifr) == 0, "lo up: %s", strerror(errno));
    close(s);
    return 0;
}

/* The test's name server: one UDP socket, one thread, for the child's life. */
static _Atomic int dns_queries;

static void *dns_main(void *arg) {
    int fd = (int)(intptr_t)arg;
    uint8_t q[512], r[512];
    for (;;) {
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        if (n < 12)
            continue;
        atomic_fetch_add(&dns_queries, 1);
        /* the question: labels, then type and class */
        char name[256] = "";
        size_t pos = 12, nl = 0;
        while (pos < (size_t)n && q[pos] && nl < sizeof(name) - 70) {
            uint8_t len = q[pos++];
            if (nl)
                name[nl++] = '.';
            memcpy(name + nl, q + pos, len);
            nl += len;
            name[nl] = 0;
            pos += len;
        }
        pos++; /* the root label */
        if (pos + 4 > (size_t)n)
            continue;
        uint16_t qtype = (uint16_t)(q[pos] << 8 | q[pos + 1]);
        size_t qend = pos + 4;
        if (!strcmp(name, "blackhole.test"))
            continue; /* never answered */
        memcpy(r, q, qend);
        bool known = !strcmp(name, "dns-only.test");
        r[2] = 0x81;                   /* a response, recursion desired */
        r[3] = known ? 0x80 : 0x83;    /* recursion available; NOERROR or NXDOMAIN */
        r[6] = 0;
        r[7] = known && qtype == 1 ? 1 : 0; /* one answer, for A only */
        memset(r + 8, 0, 4);
        size_t len = qend;
        if (r[7]) {
            const uint8_t ans[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 8, 7};
            memcpy(r + len, ans, sizeof(ans));
            len += sizeof(ans);
        }
        sendto(fd, r, len, 0, (struct sockaddr *)&from, fl);
    }
    return NULL;
}

static void start_dns(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind 127.0.0.1:53: %s", strerror(errno));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, dns_main, (void *)(intptr_t)fd) == 0, "dns thread");
    pthread_detach(t);
}

/* Runs body in a child inside the namespace; the test passes if it exits 0. */
static void in_namespace(void (*body)(void)) {
    vt_need_backend_built();
    pid_t pid = fork();
    VT_ASSERT(pid >= 0);
    if (pid == 0) {
        /* root with CAP_SYS_ADMIN, as the rest of the suite needs (nftables) */
        CHECK(enter_namespace() == 0, "cannot make a mount and network namespace: %s", strerror(errno));
        start_dns();
        body();
        _exit(0);
    }
    int st = 0;
    VT_EQ(waitpid(pid, &st, 0), pid);
    VT_ASSERT(WIFEXITED(st), "the child died of signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    VT_ASSERT(WEXITSTATUS(st) == 0, "a check failed in the child at line ~%d (see above)", WEXITSTATUS(st) - 1);
}

/* ------------------------------------------------------- lookups */

typedef struct answer {
    int done, status, calls;
    char addrs[16][46];
} answer;

static void on_answer(vigil_loop *loop, vigil_op op, int status, const char *const *addrs, void *ud) {
    answer *a = ud;
    a->status = status;
    a->calls++;
    for (int i = 0; status > 0 && i < status && i < 16; i++)
        snprintf(a->addrs[i], sizeof(a->addrs[i]), "%s", addrs[i]);
    a->done = 1;
}

static bool has(const answer *a, const char *addr) {
    for (int i = 0; i < a->status; i++)
        if (!strcmp(a->addrs[i], addr))
            return true;
    return false;
}

static answer lookup(vigil_loop *loop, const char *name, int family, uint32_t deadline_ms) {
    answer a;
    memset(&a, 0, sizeof(a));
    vigil_op op;
    int rc = vigil_resolve_start(loop, name, family, on_answer, &a, &op);
    CHECK(rc == 0, "vigil_resolve_start(%s): %d", name, rc);
    if (deadline_ms)
        CHECK(vigil_op_set_deadline(loop, op, deadline_ms) == 0, "deadline");
    uint64_t until = vigil_now_ns() + 10000000000ull;
    while (!a.done && vigil_now_ns() < until)
        vigil_loop_run(loop, VIGIL_RUN_ONCE, 50);
    CHECK(a.done && a.calls == 1, "%s: %d callbacks", name, a.calls);
    return a;
}

static void body_lookups(void) {
    vigil_loop *loop = vt_loop(NULL);
    answer a = lookup(loop, "vigil-hosts.test", 0, 5000);
    CHECK(a.status == 2 && has(&a, "10.1.2.3") && has(&a, "fd00::7"), "hosts file: %d", a.status);
    a = lookup(loop, "vigil-hosts.test", 4, 5000);
    CHECK(a.status == 1 && has(&a, "10.1.2.3"), "IPv4 only: %d", a.status);
    a = lookup(loop, "vigil-hosts.test", 6, 5000);
    CHECK(a.status == 1 && has(&a, "fd00::7"), "IPv6 only: %d", a.status);
    int before = atomic_load(&dns_queries);
    a = lookup(loop, "dns-only.test", 4, 5000);
    CHECK(a.status == 1 && has(&a, "10.9.8.7"), "from the test name server: %d", a.status);
    CHECK(atomic_load(&dns_queries) > before, "the name server was not asked");
    a = lookup(loop, "missing.test", 0, 5000);
    CHECK(a.status == -ENOENT, "NXDOMAIN: %d", a.status);
    a = lookup(loop, "10.20.30.40", 0, 5000);
    CHECK(a.status == 1 && has(&a, "10.20.30.40"), "numeric: %d", a.status);
    CHECK(vigil_loop_destroy(loop) == 0, "destroy");
}

VT_TEST(resolve, hosts_file_and_name_server, 30) { in_namespace(body_lookups); }

/* A name server that never answers: the deadline answers, and the loop
 * goes on serving meanwhile (a timer keeps firing). */
static void tick(vigil_loop *loop, vigil_op t, int status, void *ud) {
    if (status == 0)
        (*(int *)ud)++;
}

static void body_deadline(void) {
    vigil_loop *loop = vt_loop(NULL);
    int ticks = 0;
    vigil_op t;
    CHECK(vigil_timer_start(loop, 10, 10, tick, &ticks, &t) == 0, "timer");
    uint64_t t0 = vigil_now_ns();
    answer a = lookup(loop, "blackhole.test", 0, 300);
    uint64_t took = (vigil_now_ns() - t0) / 1000000;
    CHECK(a.status == -ETIMEDOUT, "blackhole: %d", a.status);
    CHECK(took >= 290 && took < 900, "answered after %llu ms", (unsigned long long)took);
    CHECK(ticks >= 10, "the loop stalled during the lookup: %d ticks", ticks);
    /* cancel: answered at once */
    answer c;
    memset(&c, 0, sizeof(c));
    vigil_op op;
    CHECK(vigil_resolve_start(loop, "blackhole.test", 0, on_answer, &c, &op) == 0, "start");
    CHECK(vigil_op_cancel(loop, op) == 0, "cancel");
    CHECK(vigil_op_cancel(loop, op) == -EBADF, "cancel twice");
    vigil_loop_run(loop, VIGIL_RUN_NOWAIT, 0);
    CHECK(c.done && c.status == -ECANCELED, "cancelled: %d", c.status);
    vigil_op_cancel(loop, t);
    vigil_loop_stats ls;
    vigil_loop_get_stats(loop, &ls);
    CHECK(ls.deadlines_expired == 1, "deadlines_expired %llu", (unsigned long long)ls.deadlines_expired);
    CHECK(vigil_loop_destroy(loop) == 0, "destroy"); /* waits for the stuck getaddrinfo */
    CHECK(c.calls == 1 && a.calls == 1, "one final each");
}

VT_TEST(resolve, deadline_and_cancel_answer_at_once, 30) { in_namespace(body_deadline); }

/* ------------------------------------------------- connect by name */

typedef struct dialed {
    int done, status;
    vigil_conn c;
} dialed;

static void on_dialed(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    dialed *d = ud;
    d->status = status;
    d->c = c;
    d->done++;
}

static void srv_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    if (status > 0)
        vigil_conn_send(loop, c, b->data, b->len, 0, NULL, NULL, NULL);
}

static void srv_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    if (status == 0)
        vigil_conn_recv_start(loop, c, 0, srv_recv, NULL, NULL);
}

static dialed dial(vigil_loop *loop, const char *name, uint16_t port, uint32_t deadline_ms) {
    dialed d = {0};
    int rc = vigil_conn_connect_name(loop, name, port, deadline_ms, on_dialed, &d, NULL);
    CHECK(rc == 0, "vigil_conn_connect_name(%s): %d", name, rc);
    uint64_t until = vigil_now_ns() + 10000000000ull;
    while (!d.done && vigil_now_ns() < until) {
        int rc2 = vigil_loop_run(loop, VIGIL_RUN_ONCE, 50);
        CHECK(rc2 >= 0, "run: %d", rc2);
    }
    CHECK(d.done == 1, "%s: %d callbacks", name, d.done);
    return d;
}

static void body_dial(void) {
    vigil_loop *loop = vt_loop(NULL);
    vigil_listener l;
    vigil_listener_options lo = {.host = "127.0.0.1"};
    CHECK(vigil_listener_open(loop, &lo, srv_accept, NULL, &l) == 0, "listen");
    uint16_t port = (uint16_t)vigil_listener_get_port(loop, l);
    /* vigil-local.test is 127.0.0.1 and ::1; only the first listens: either
     * order ends connected */
    dialed d = dial(loop, "vigil-local.test", port, 5000);
    CHECK(d.status == 0, "connect by name: %d", d.status);
    CHECK(vigil_conn_get_socket(loop, d.c) >= 0, "a usable connection");
    vigil_conn_abort(loop, d.c, NULL, NULL);
    d = dial(loop, "missing.test", port, 5000);
    CHECK(d.status == -ENOENT, "no such name: %d", d.status);
    d = dial(loop, "vigil-hosts.test", port, 300); /* 10.1.2.3 and fd00::7: no route here */
    CHECK(d.status < 0, "unreachable: %d", d.status);
    uint64_t t0 = vigil_now_ns();
    d = dial(loop, "blackhole.test", port, 250);
    CHECK(d.status == -ETIMEDOUT, "blackhole: %d", d.status);
    CHECK((vigil_now_ns() - t0) / 1000000 < 900, "the deadline held");
    /* cancel while the lookup waits */
    dialed c = {0};
    vigil_op op;
    CHECK(vigil_conn_connect_name(loop, "blackhole.test", port, 0, on_dialed, &c, &op) == 0, "start");
    vigil_loop_run(loop, VIGIL_RUN_NOWAIT, 0);
    CHECK(vigil_op_cancel(loop, op) == 0, "cancel");
    for (int i = 0; i < 20 && !c.done; i++)
        vigil_loop_run(loop, VIGIL_RUN_ONCE, 10);
    CHECK(c.done == 1 && c.status == -ECANCELED, "cancelled dial: %d (%d calls)", c.status, c.done);
    /* refused at the call */
    CHECK(vigil_conn_connect_name(loop, NULL, port, 0, on_dialed, &c, NULL) == -EINVAL, "no name");
    CHECK(vigil_conn_connect_name(loop, "x.test", 0, 0, on_dialed, &c, NULL) == -EINVAL, "port 0");
    CHECK(vigil_resolve_start(loop, "x.test", 5, on_answer, &c, NULL) == -EINVAL, "family 5");
    CHECK(vigil_resolve_start(loop, "", 0, on_answer, &c, NULL) == -EINVAL, "empty");
    CHECK(vigil_resolve_start(loop, "x.test", 0, NULL, NULL, NULL) == -EINVAL, "no callback");
    CHECK(vigil_loop_destroy(loop) == 0, "destroy");
}

VT_TEST(resolve, connect_by_name, 30) { in_namespace(body_dial); }

/* Outside any namespace: the machine's own localhost. */
VT_TEST(resolve, localhost_here, 20) {
    vigil_loop *loop = vt_loop(NULL);
    answer a;
    memset(&a, 0, sizeof(a));
    VT_OK(vigil_resolve_start(loop, "localhost", 4, on_answer, &a, NULL));
    VT_ASSERT(vt_run_until(loop, &a.done, 10000));
    VT_ASSERT(a.status >= 1 && has(&a, "127.0.0.1"), "localhost: %d", a.status);
    VT_OK(vigil_loop_destroy(loop));
}
