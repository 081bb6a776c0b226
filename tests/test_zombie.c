/* test_zombie.c: half-open ("zombie") connections. A peer that is alive but
 * stuck (a stopped process: its kernel still ACKs) is caught only by an idle
 * deadline; a peer that vanished (its packets dropped, inside a private
 * network namespace) is caught by TCP_USER_TIMEOUT, or by keepalive when
 * nothing is in flight. Plus the options themselves and their errors.
 *
 * The namespace tests fork a child that runs unshare(CLONE_NEWUSER |
 * CLONE_NEWNET) (or CLONE_NEWNET alone where user namespaces are denied to a
 * privileged caller), brings lo up, builds a connection on 127.0.0.1, and
 * then installs a drop-everything input rule with nft (or iptables): the
 * Debian package nftables (or iptables) must be installed. The child reports
 * to the test through a pipe; the test asserts. Children get SIGKILL when the
 * test process dies (PR_SET_PDEATHSIG) and are always reaped. */
#include "util.h"
#include "vt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t ms_since(uint64_t t0) { return (vigil_now_ns() - t0) / 1000000ull; }

static int sockopt_int(int fd, int level, int name) {
    int v = -1;
    socklen_t len = sizeof(v);
    if (getsockopt(fd, level, name, &v, &len) < 0)
        return -errno;
    return v;
}

/* --------------------------------------------------- a connection pair */

/* A vigil listener and a vigil client connected to it, on one loop. The
 * callbacks never assert: the namespace child uses them too. */
typedef struct pair {
    vigil_listener l;
    vigil_conn srv, cli;
    uint32_t srv_idle_ms;           /* idle deadline of the server's receive */
    volatile int accepted, connected, connect_status;
    uint64_t srv_bytes, cli_bytes;
    uint64_t srv_data_ns;           /* when the server last got bytes */
    volatile int srv_done, cli_done; /* final receive callbacks */
    int srv_final, cli_final;
    uint64_t srv_final_ns, cli_final_ns;
    volatile int cli_failed;        /* the client's receive ended or a send failed */
    int send_err;                   /* first failed client send */
    uint64_t sends_ok;
    uint64_t failed_ns;
    volatile int closed;
    vigil_op keep_timer;
} pair;

static void srv_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    pair *p = ud;
    if (status > 0) {
        p->srv_bytes += (uint64_t)status;
        p->srv_data_ns = vigil_now_ns();
        return;
    }
    p->srv_final = status;
    p->srv_final_ns = vigil_now_ns();
    p->srv_done = 1;
}

static void cli_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    pair *p = ud;
    if (status > 0) {
        p->cli_bytes += (uint64_t)status;
        return;
    }
    p->cli_final = status;
    p->cli_final_ns = vigil_now_ns();
    p->cli_done = 1;
    if (!p->cli_failed) {
        p->failed_ns = p->cli_final_ns;
        p->cli_failed = 1;
    }
}

static void cli_sent(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    pair *p = ud;
    if (status >= 0) {
        p->sends_ok++;
        return;
    }
    if (!p->send_err)
        p->send_err = status;
    if (!p->cli_failed) {
        p->failed_ns = vigil_now_ns();
        p->cli_failed = 1;
    }
}

static void pair_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    pair *p = ud;
    if (status < 0)
        return;
    if (p->accepted) { /* only one connection is expected */
        vigil_conn_abort(loop, c, NULL, NULL);
        return;
    }
    p->srv = c;
    p->accepted = 1;
    if (vigil_conn_recv_start(loop, c, p->srv_idle_ms, srv_recv, p, NULL) < 0)
        p->srv_done = 1;
}

static void pair_connected(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    pair *p = ud;
    p->connect_status = status;
    p->connected = 1;
}

static void pair_closed(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    pair *p = ud;
    p->closed++;
}

static bool run_until_both(vigil_loop *loop, const volatile int *a, const volatile int *b, int ms) {
    uint64_t t0 = vigil_now_ns();
    while (!*a || !*b) {
        if (ms_since(t0) >= (uint64_t)ms)
            return false;
        if (vigil_loop_run(loop, VIGIL_RUN_ONCE, 50) < 0)
            return false;
    }
    return true;
}

/* Listens on 127.0.0.1 and connects to it. Returns 0, or a negative errno
 * with what failed in *what. */
static int pair_open(vigil_loop *loop, pair *p, const char **what) {
    vigil_listener_options lo = {.host = "127.0.0.1", .port = 0};
    int rc = vigil_listener_open(loop, &lo, pair_accept, p, &p->l);
    if (rc < 0)
        return *what = "vigil_listener_open", rc;
    int port = vigil_listener_get_port(loop, p->l);
    if (port <= 0)
        return *what = "vigil_listener_get_port", port < 0 ? port : -EINVAL;
    rc = vigil_conn_connect(loop, "127.0.0.1", (uint16_t)port, 5000, pair_connected, p, &p->cli, NULL);
    if (rc < 0)
        return *what = "vigil_conn_connect", rc;
    if (!run_until_both(loop, &p->accepted, &p->connected, 5000))
        return *what = "connect and accept within 5 s", -ETIMEDOUT;
    if (p->connect_status < 0)
        return *what = "connect callback", p->connect_status;
    rc = vigil_conn_recv_start(loop, p->cli, 0, cli_recv, p, NULL);
    if (rc < 0)
        return *what = "vigil_conn_recv_start (client)", rc;
    return 0;
}

/* --------------------------------------------------------- the options */

typedef struct thread_call {
    vigil_loop *loop;
    vigil_conn c;
    int ka, ut;
} thread_call;

static void *call_off_thread(void *arg) {
    thread_call *t = arg;
    t->ka = vigil_conn_set_keepalive(t->loop, t->c, 5000, 2000, 3);
    t->ut = vigil_conn_set_user_timeout(t->loop, t->c, 1000);
    return NULL;
}

static void check_keepalive(int fd, int on, int idle, int intvl, int cnt) {
    VT_EQ(sockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE) != 0, on);
    if (idle >= 0) {
        VT_EQ(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), idle);
        VT_EQ(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), intvl);
        VT_EQ(sockopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT), cnt);
    }
}

VT_TEST(zombie, options_apply_and_validate, 20) {
    vigil_loop *loop = vt_loop(NULL);
    pair p = {0};
    const char *what = "";
    int rc = pair_open(loop, &p, &what);
    VT_ASSERT(rc == 0, "%s: %d (%s)", what, rc, vigil_strerror(rc));

    vigil_conn conns[2] = {p.cli, p.srv}; /* connected and accepted sockets alike */
    for (int i = 0; i < 2; i++) {
        vigil_conn c = conns[i];
        int fd = vigil_conn_get_socket(loop, c);
        VT_ASSERT(fd >= 0, "vigil_conn_get_socket: %d", fd);
        VT_EQ(sockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);

        VT_EQ(vigil_conn_set_keepalive(loop, c, 5000, 2000, 3), 0);
        check_keepalive(fd, 1, 5, 2, 3);
        VT_EQ(vigil_conn_set_keepalive(loop, c, 32767000, 32767000, 127), 0); /* the kernel's maxima */
        check_keepalive(fd, 1, 32767, 32767, 127);
        VT_EQ(vigil_conn_set_keepalive(loop, c, 7000, 3000, 4), 0);
        check_keepalive(fd, 1, 7, 3, 4);

        /* some but not all zero; values the kernel rejects: -EINVAL, nothing changes */
        const uint32_t bad[][3] = {{1000, 0, 0}, {0, 1000, 0}, {0, 0, 1}, {1000, 1000, 0},
                                   {0, 1000, 1}, {1000, 0, 1}, {32768000, 1000, 1},
                                   {1000, 32768000, 1}, {1000, 1000, 128}, {UINT32_MAX, 1000, 1},
                                   {1000, UINT32_MAX, 1}, {1000, 1000, UINT32_MAX},
                                   {0x80000000u, 1000, 1}};
        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
            int r = vigil_conn_set_keepalive(loop, c, bad[k][0], bad[k][1], bad[k][2]);
            VT_ASSERT(r == -EINVAL, "keepalive(%u, %u, %u): %d, want -EINVAL", bad[k][0], bad[k][1],
                      bad[k][2], r);
            check_keepalive(fd, 1, 7, 3, 4);
        }

        VT_EQ(vigil_conn_set_keepalive(loop, c, 0, 0, 0), 0); /* off */
        check_keepalive(fd, 0, 7, 3, 4);
        VT_EQ(vigil_conn_set_keepalive(loop, c, 0, 0, 0), 0); /* off again: still fine */
        check_keepalive(fd, 0, -1, -1, -1);
        VT_EQ(vigil_conn_set_keepalive(loop, c, 1000, 1000, 1), 0); /* the minima */
        check_keepalive(fd, 1, 1, 1, 1);
        VT_EQ(vigil_conn_set_keepalive(loop, c, 1, 1500, 1), 0); /* milliseconds round up */
        check_keepalive(fd, 1, 1, 2, 1);
        VT_EQ(vigil_conn_set_keepalive(loop, c, 1000, 1000, 1), 0);

        VT_EQ(sockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);
        VT_EQ(vigil_conn_set_user_timeout(loop, c, 1500), 0);
        VT_EQ(sockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 1500);
        VT_EQ(vigil_conn_set_user_timeout(loop, c, 1), 0);
        VT_EQ(sockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 1);
        VT_EQ(vigil_conn_set_user_timeout(loop, c, INT32_MAX), 0);
        VT_EQ(sockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), INT32_MAX);
        VT_EQ(vigil_conn_set_user_timeout(loop, c, (uint32_t)INT32_MAX + 1u), -EINVAL);
        VT_EQ(vigil_conn_set_user_timeout(loop, c, UINT32_MAX), -EINVAL);
        VT_EQ(sockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), INT32_MAX);
        VT_EQ(vigil_conn_set_user_timeout(loop, c, 0), 0); /* the kernel's default */
        VT_EQ(sockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);
    }

    /* off the loop thread: -EPERM, and nothing changes */
    int cfd = vigil_conn_get_socket(loop, p.cli);
    thread_call t = {.loop = loop, .c = p.cli};
    pthread_t th;
    VT_EQ(pthread_create(&th, NULL, call_off_thread, &t), 0);
    pthread_join(th, NULL);
    VT_EQ(t.ka, -EPERM);
    VT_EQ(t.ut, -EPERM);
    check_keepalive(cfd, 1, 1, 1, 1);
    VT_EQ(sockopt_int(cfd, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);

    /* handles that are not live connections: -EBADF */
    vigil_conn never = {0}, junk = {0x00ffffff00001234ull}, lis = {p.l.id};
    VT_EQ(vigil_conn_set_keepalive(loop, never, 1000, 1000, 1), -EBADF);
    VT_EQ(vigil_conn_set_user_timeout(loop, never, 100), -EBADF);
    VT_EQ(vigil_conn_set_keepalive(loop, junk, 1000, 1000, 1), -EBADF);
    VT_EQ(vigil_conn_set_user_timeout(loop, junk, 100), -EBADF);
    VT_EQ(vigil_conn_set_keepalive(loop, lis, 1000, 1000, 1), -EBADF); /* a listener is no connection */
    VT_EQ(vigil_conn_set_user_timeout(loop, lis, 100), -EBADF);
    /* the handle check comes before the value check */
    VT_EQ(vigil_conn_set_keepalive(loop, never, 1000, 0, 0), -EBADF);

    /* closed connections */
    VT_OK(vigil_conn_abort(loop, p.cli, pair_closed, &p));
    VT_OK(vigil_conn_close(loop, p.srv, 2000, pair_closed, &p));
    uint64_t t0 = vigil_now_ns();
    while (p.closed < 2 && ms_since(t0) < 5000)
        VT_OK(vigil_loop_run(loop, VIGIL_RUN_ONCE, 50));
    VT_EQ(p.closed, 2);
    VT_EQ(vigil_conn_set_keepalive(loop, p.cli, 1000, 1000, 1), -EBADF);
    VT_EQ(vigil_conn_set_user_timeout(loop, p.cli, 100), -EBADF);
    VT_EQ(vigil_conn_set_keepalive(loop, p.srv, 0, 0, 0), -EBADF);
    VT_EQ(vigil_conn_set_user_timeout(loop, p.srv, 0), -EBADF);

    VT_OK(vigil_listener_close(loop, p.l));
    VT_OK(vigil_loop_destroy(loop));
}

/* ---------------------------------------------- a stopped peer process */

/* The peer: a plain blocking socket in a child process. It connects, sends
 * one message, and waits until it is killed. */
static void stopped_peer_child(int port_rd, pid_t parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(3);
    int port = 0;
    if (read(port_rd, &port, sizeof(port)) != (ssize_t)sizeof(port) || port <= 0)
        _exit(4);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        _exit(5);
    static const char msg[] = "hello from a peer that is about to freeze";
    if (send(fd, msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg))
        _exit(6);
    for (;;)
        pause(); /* alive, never reads: its kernel ACKs whatever arrives */
}

VT_TEST(zombie, stopped_peer_is_caught_by_idle_deadline, 20) {
    /* Fork before the loop exists: the child inherits no ring or epoll fd. */
    int pp[2];
    VT_ASSERT(pipe2(pp, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    VT_ASSERT(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(pp[1]);
        stopped_peer_child(pp[0], parent);
    }
    close(pp[0]);

    vigil_loop *loop = vt_loop(NULL);
    pair p = {.srv_idle_ms = 300};
    int port = 0;
    p.l = vt_listen(loop, pair_accept, &p, &port);
    VT_ASSERT(write(pp[1], &port, sizeof(port)) == (ssize_t)sizeof(port));
    close(pp[1]);

    /* the peer's message arrives: it was alive a moment ago */
    uint64_t t0 = vigil_now_ns();
    while (!(p.accepted && p.srv_bytes > 0) && !p.srv_done && ms_since(t0) < 5000)
        VT_OK(vigil_loop_run(loop, VIGIL_RUN_ONCE, 50));
    VT_ASSERT(p.accepted && p.srv_bytes > 0, "the peer's message did not arrive (accepted %d, bytes %llu, "
              "receive ended %d: %d)", p.accepted, (unsigned long long)p.srv_bytes, p.srv_done, p.srv_final);
    VT_ASSERT(!p.srv_done, "the receive ended early: %d", p.srv_final);

    /* freeze it */
    VT_EQ(kill(pid, SIGSTOP), 0);
    int st = 0;
    VT_EQ(waitpid(pid, &st, WUNTRACED), pid);
    VT_ASSERT(WIFSTOPPED(st), "the peer is not stopped (status %#x)", st);

    /* Data we send now is still ACKed by the stopped peer's kernel, so TCP
     * alone sees nothing wrong: the send completes and nothing stays unacked. */
    uint8_t chunk[4096];
    vt_fill(chunk, sizeof(chunk), 7, 0);
    VT_OK(vigil_conn_send(loop, p.srv, chunk, sizeof(chunk), 0, NULL, NULL, NULL));
    t0 = vigil_now_ns();
    while (vigil_conn_send_queued(loop, p.srv) > 0 && !p.srv_done && ms_since(t0) < 2000)
        VT_OK(vigil_loop_run(loop, VIGIL_RUN_ONCE, 10));
    VT_EQ(vigil_conn_send_queued(loop, p.srv), 0);
    int sfd = vigil_conn_get_socket(loop, p.srv);
    struct tcp_info ti;
    socklen_t tl = sizeof(ti);
    for (int i = 0; i < 100 && !p.srv_done; i++) { /* until the ACK is in (well before 300 ms) */
        memset(&ti, 0, sizeof(ti));
        VT_EQ(getsockopt(sfd, IPPROTO_TCP, TCP_INFO, &ti, &tl), 0);
        if (ti.tcpi_unacked == 0)
            break;
        VT_OK(vigil_loop_run(loop, VIGIL_RUN_ONCE, 1));
    }
    VT_ASSERT(!p.srv_done, "the idle deadline fired before the check");
    VT_ASSERT(ti.tcpi_state == TCP_ESTABLISHED, "TCP state %u", ti.tcpi_state);
    VT_ASSERT(ti.tcpi_unacked == 0, "%u segments unacked: the stopped peer's kernel should ACK",
              ti.tcpi_unacked);

    VT_ASSERT(vt_run_until(loop, &p.srv_done, 5000), "no final receive callback within 5 s");
    uint64_t idle_ms = (p.srv_final_ns - p.srv_data_ns) / 1000000ull;
    VT_ASSERT(p.srv_final == -ETIMEDOUT, "receive ended %d (%s), want -ETIMEDOUT", p.srv_final,
              vigil_strerror(p.srv_final));
    VT_ASSERT(idle_ms >= 250 && idle_ms <= 2000, "idle deadline 300 ms fired after %llu ms",
              (unsigned long long)idle_ms);
    /* the hung socket was shut down: our FIN went out (the stopped peer's
     * kernel ACKs it too, so FIN_WAIT2 follows FIN_WAIT1) */
    for (int i = 0; i < 100; i++) {
        memset(&ti, 0, sizeof(ti));
        VT_EQ(getsockopt(sfd, IPPROTO_TCP, TCP_INFO, &ti, &tl), 0);
        if (ti.tcpi_state == TCP_FIN_WAIT2)
            break;
        VT_OK(vigil_loop_run(loop, VIGIL_RUN_ONCE, 10));
    }
    VT_ASSERT(ti.tcpi_state == TCP_FIN_WAIT2, "TCP state %u after the deadline, want FIN_WAIT2",
              ti.tcpi_state);
    VT_LOG("stopped peer: idle deadline fired after %llu ms; the peer's kernel had ACKed all we sent",
           (unsigned long long)idle_ms);

    /* end it, reap it */
    VT_EQ(kill(pid, SIGKILL), 0);
    VT_EQ(waitpid(pid, &st, 0), pid);
    VT_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "peer status %#x", st);

    VT_OK(vigil_conn_abort(loop, p.srv, pair_closed, &p));
    VT_OK(vigil_listener_close(loop, p.l));
    t0 = vigil_now_ns();
    while (p.closed < 1 && ms_since(t0) < 5000)
        VT_OK(vigil_loop_run(loop, VIGIL_RUN_ONCE, 50));
    VT_EQ(p.closed, 1);
    VT_OK(vigil_loop_destroy(loop));
}

/* ------------------------------------- a vanished peer, in a namespace */

/* What the namespace child reports. */
typedef struct ns_result {
    int ok;           /* the scenario ran to the end */
    int status;       /* the first error the client saw */
    int recv_final, send_err;
    uint64_t ms;      /* from the drop rule (and the first unacked send) to that error */
    char tool[32];    /* what installed the rule */
    char msg[1024];   /* what went wrong, if !ok */
} ns_result;

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int rc = n == (ssize_t)strlen(text) ? 0 : n < 0 ? -errno : -EIO;
    close(fd);
    return rc;
}

/* Moves the calling (single-threaded) process into a network namespace of
 * its own, inside a user namespace of its own if it can, and brings lo up. */
static int enter_private_net(ns_result *r) {
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0) {
        char map[64];
        write_file("/proc/self/setgroups", "deny"); /* absent on old kernels */
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)uid);
        int rc = write_file("/proc/self/uid_map", map);
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)gid);
        if (rc == 0)
            rc = write_file("/proc/self/gid_map", map);
        if (rc < 0) {
            snprintf(r->msg, sizeof(r->msg), "writing the uid/gid map: %s", strerror(-rc));
            return rc;
        }
    } else {
        int e = errno;
        /* user namespaces denied: a privileged caller can still make a netns */
        if (unshare(CLONE_NEWNET) < 0) {
            int e2 = errno;
            snprintf(r->msg, sizeof(r->msg),
                     "cannot make a network namespace: unshare(NEWUSER|NEWNET): %s, "
                     "unshare(NEWNET): %s", strerror(e), strerror(e2));
            return -e2;
        }
    }
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    int up = s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
    if (up) {
        ifr.ifr_flags |= IFF_UP;
        up = ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
    }
    if (!up) {
        int e = errno;
        snprintf(r->msg, sizeof(r->msg), "bringing lo up: %s", strerror(e));
        if (s >= 0)
            close(s);
        return -e;
    }
    close(s);
    return 0;
}

/* Drops every packet that arrives on any interface of this namespace (only
 * lo here): to each end, the other has vanished without a FIN or RST. */
static int drop_all_input(ns_result *r) {
    static const char *const nft[] = {"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"};
    static const char *const ipt[] = {"/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables"};
    char cmd[512];
    int found = 0;
    for (size_t i = 0; i < 3; i++) {
        if (access(nft[i], X_OK) != 0)
            continue;
        found = 1;
        snprintf(cmd, sizeof(cmd),
                 "%s add table inet vigil_zombie && %s add chain inet vigil_zombie in "
                 "'{ type filter hook input priority 0; policy drop; }'",
                 nft[i], nft[i]);
        fflush(NULL);
        int st = system(cmd);
        if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            snprintf(r->tool, sizeof(r->tool), "nft");
            return 0;
        }
        snprintf(r->msg, sizeof(r->msg), "'%s' failed (status %#x)", cmd, st);
        break;
    }
    for (size_t i = 0; i < 3; i++) {
        if (access(ipt[i], X_OK) != 0)
            continue;
        found = 1;
        snprintf(cmd, sizeof(cmd), "%s -w -A INPUT -j DROP", ipt[i]);
        fflush(NULL);
        int st = system(cmd);
        if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            snprintf(r->tool, sizeof(r->tool), "iptables");
            return 0;
        }
        size_t n = strlen(r->msg);
        snprintf(r->msg + n, sizeof(r->msg) - n, "%s'%s' failed (status %#x)", n ? "; " : "", cmd, st);
        break;
    }
    if (!found)
        snprintf(r->msg, sizeof(r->msg),
                 "neither nft nor iptables is installed: install the Debian package nftables");
    return -ENOENT;
}

static void keep_sending(vigil_loop *loop, vigil_op t, int status, void *ud) {
    pair *p = ud;
    if (status != 0 || p->cli_failed)
        return;
    uint8_t chunk[1024];
    vt_fill(chunk, sizeof(chunk), 3, p->sends_ok);
    vigil_conn_send(loop, p->cli, chunk, sizeof(chunk), 0, cli_sent, p, NULL);
}

enum { VANISH_USER_TIMEOUT, VANISH_KEEPALIVE };

/* The namespace child: a connection on lo, then the drop rule; the client
 * must fail with -ETIMEDOUT. Never asserts: everything goes into *r. */
static void vanish_scenario(int mode, ns_result *r) {
    if (enter_private_net(r) < 0)
        return;
    vigil_loop *loop = vt_loop(NULL);
    pair p = {0};
    const char *what = "";
    int rc = pair_open(loop, &p, &what);
    if (rc < 0) {
        snprintf(r->msg, sizeof(r->msg), "%s: %d (%s)", what, rc, vigil_strerror(rc));
        goto out;
    }
    if (mode == VANISH_USER_TIMEOUT)
        rc = vigil_conn_set_user_timeout(loop, p.cli, 500);
    else
        rc = vigil_conn_set_keepalive(loop, p.cli, 1000, 1000, 2);
    if (rc < 0) {
        snprintf(r->msg, sizeof(r->msg), "setting the option: %d (%s)", rc, vigil_strerror(rc));
        goto out;
    }
    /* the path works before the drop */
    uint8_t hello[100];
    vt_fill(hello, sizeof(hello), 1, 0);
    vigil_conn_send(loop, p.cli, hello, sizeof(hello), 0, cli_sent, &p, NULL);
    uint64_t t0 = vigil_now_ns();
    while (p.srv_bytes < sizeof(hello) && !p.cli_failed && ms_since(t0) < 5000)
        vigil_loop_run(loop, VIGIL_RUN_ONCE, 50);
    if (p.srv_bytes < sizeof(hello) || p.cli_failed) {
        snprintf(r->msg, sizeof(r->msg), "no data before the drop (server got %llu bytes, client "
                 "failed %d)", (unsigned long long)p.srv_bytes, p.cli_failed);
        goto out;
    }

    if (drop_all_input(r) < 0)
        goto out;
    t0 = vigil_now_ns();
    if (mode == VANISH_USER_TIMEOUT) {
        /* data in flight that is never ACKed; and more of it, every 100 ms */
        keep_sending(loop, (vigil_op){0}, 0, &p);
        rc = vigil_timer_start(loop, 100, 100, keep_sending, &p, &p.keep_timer);
        if (rc < 0) {
            snprintf(r->msg, sizeof(r->msg), "vigil_timer_start: %d", rc);
            goto out;
        }
    } /* keepalive: silence; the probes go unanswered */
    while (!p.cli_failed && ms_since(t0) < 10000)
        vigil_loop_run(loop, VIGIL_RUN_ONCE, 50);
    if (p.keep_timer.id)
        vigil_op_cancel(loop, p.keep_timer);
    if (!p.cli_failed) {
        snprintf(r->msg, sizeof(r->msg), "the client saw nothing for 10 s after the drop "
                 "(%llu sends completed)", (unsigned long long)p.sends_ok);
        goto out;
    }
    r->ms = (p.failed_ns - t0) / 1000000ull;
    r->recv_final = p.cli_done ? p.cli_final : 1;
    r->send_err = p.send_err;
    /* whichever saw it first; the other then sees EOF or -EPIPE */
    r->status = p.send_err == -ETIMEDOUT || (p.cli_done && p.cli_final == -ETIMEDOUT)
                    ? -ETIMEDOUT
                    : p.send_err ? p.send_err : p.cli_final;
    r->ok = 1;
out:
    vigil_loop_destroy(loop);
}

/* Runs vanish_scenario(mode) in a child and returns its report. */
static ns_result run_vanish(int mode) {
    vt_need_backend_built(); /* the loop is the child's */
    int pp[2];
    VT_ASSERT(pipe2(pp, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    VT_ASSERT(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(pp[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        ns_result r;
        memset(&r, 0, sizeof(r));
        if (getppid() == parent)
            vanish_scenario(mode, &r);
        ssize_t n = write(pp[1], &r, sizeof(r));
        _exit(n == (ssize_t)sizeof(r) ? 0 : 1);
    }
    close(pp[1]);
    ns_result r;
    memset(&r, 0, sizeof(r));
    size_t got = 0;
    uint64_t t0 = vigil_now_ns();
    while (got < sizeof(r) && ms_since(t0) < 20000) {
        struct pollfd pf = {.fd = pp[0], .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        ssize_t n = read(pp[0], (char *)&r + got, sizeof(r) - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(pp[0]);
    if (got < sizeof(r))
        kill(pid, SIGKILL);
    int st = 0;
    VT_EQ(waitpid(pid, &st, 0), pid);
    VT_ASSERT(got == sizeof(r), "the namespace child sent no report (status %#x)", st);
    VT_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "namespace child status %#x", st);
    VT_ASSERT(r.ok, "namespace scenario: %s", r.msg);
    return r;
}

VT_TEST(zombie, vanished_peer_is_caught_by_user_timeout, 30) {
    ns_result r = run_vanish(VANISH_USER_TIMEOUT);
    VT_LOG("user timeout 500 ms: client failed after %llu ms (receive %d, send %d; rule by %s)",
           (unsigned long long)r.ms, r.recv_final, r.send_err, r.tool);
    VT_ASSERT(r.status == -ETIMEDOUT, "client failed with %d (%s), want -ETIMEDOUT (receive %d, "
              "send %d)", r.status, vigil_strerror(r.status), r.recv_final, r.send_err);
    VT_ASSERT(r.ms >= 400 && r.ms <= 10000, "user timeout 500 ms fired after %llu ms",
              (unsigned long long)r.ms);
}

VT_TEST(zombie, keepalive_detects_dead_peer, 30) {
    ns_result r = run_vanish(VANISH_KEEPALIVE);
    VT_LOG("keepalive 1 s / 1 s x 2: client failed after %llu ms (receive %d, send %d; rule by %s)",
           (unsigned long long)r.ms, r.recv_final, r.send_err, r.tool);
    VT_ASSERT(r.status == -ETIMEDOUT, "client failed with %d (%s), want -ETIMEDOUT (receive %d, "
              "send %d)", r.status, vigil_strerror(r.status), r.recv_final, r.send_err);
    /* idle 1 s, then two unanswered probes 1 s apart: about 3 s */
    VT_ASSERT(r.ms >= 2000 && r.ms <= 10000, "keepalive 1/1/2 fired after %llu ms",
              (unsigned long long)r.ms);
}
