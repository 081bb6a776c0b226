/*
 * posix.c: clocks, sockets and memory on Linux/POSIX. None of these calls
 * blocks: sockets are non-blocking, close never lingers (an abortive close
 * sets a zero linger, which resets at once).
 */
#include "os/platform.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <linux/sockios.h> /* SIOCOUTQ */
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <stddef.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <poll.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

uint64_t vigil__clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

_Static_assert(sizeof(struct sockaddr_storage) <= sizeof(((vigil__addr *)0)->bytes),
               "vigil__addr must hold any socket address");

int vigil__addr_parse(const char *host, uint16_t port, vigil__addr *out) {
    if (!host || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)out->bytes;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out->bytes;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        out->len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        out->len = sizeof(*v6);
        return 0;
    }
    return -EINVAL;
}

static int socket_domain(vigil_socket fd) {
    int d = 0;
    socklen_t len = sizeof(d);
    return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &d, &len) < 0 ? -errno : d;
}

int vigil__addr_unix(const char *path, vigil__addr *out) {
    if (!path || !path[0] || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    struct sockaddr_un *un = (struct sockaddr_un *)out->bytes;
    size_t n = strlen(path);
    if (n >= sizeof(un->sun_path))
        return -ENAMETOOLONG;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n);
    if (path[0] == '@') { /* abstract: a leading NUL, and the length says where it ends */
        un->sun_path[0] = 0;
        out->len = (uint32_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        out->len = (uint32_t)sizeof(*un);
    }
    return 0;
}

const int vigil__o_directory = O_DIRECTORY;

int vigil__addr_unix_text(const uint8_t *bytes, uint32_t len, char *out, size_t cap) {
    const struct sockaddr_un *un = (const void *)bytes;
    size_t at = offsetof(struct sockaddr_un, sun_path);
    if (len < sizeof(sa_family_t) || un->sun_family != AF_UNIX)
        return -EAFNOSUPPORT;
    size_t n = len > at ? len - at : 0;
    if (n && un->sun_path[0]) /* a path: up to its NUL */
        n = strnlen(un->sun_path, n);
    if (n + 1 > cap)
        return -ENOSPC;
    memcpy(out, un->sun_path, n);
    if (n && !un->sun_path[0])
        out[0] = '@'; /* abstract */
    out[n] = 0;
    return 0;
}

int vigil__tcp_socket(const vigil__addr *a, vigil_socket *out) {
    int family = ((const struct sockaddr *)a->bytes)->sa_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, family == AF_UNIX ? 0 : IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    int one = 1;
    /* Small messages are the common case for an event loop: no Nagle delay. */
    if (family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *out = fd;
    return 0;
}

int vigil__udp_socket(const vigil__addr *a, int reuseport, vigil_socket *out) {
    int family = ((const struct sockaddr *)a->bytes)->sa_family;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        bind(fd, (const struct sockaddr *)a->bytes, a->len) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    *out = fd;
    return 0;
}

int vigil__udp_sendto(vigil_socket fd, const void *data, size_t len, const void *peer, uint32_t peer_len) {
    ssize_t n;
    do
        n = sendto(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)peer, peer_len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return (int)n;
}

int vigil__tcp_bind_listen(vigil_socket fd, const vigil__addr *a, int backlog, int reuseport) {
    int one = 1;
    if (((const struct sockaddr *)a->bytes)->sa_family == AF_UNIX) {
        if (reuseport)
            return -EINVAL; /* no such thing for a path */
    } else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        return -errno;
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        return -errno;
    if (bind(fd, (const struct sockaddr *)a->bytes, a->len) < 0)
        return -errno;
    if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0)
        return -errno;
    return 0;
}

int vigil__socket_port(vigil_socket fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

int vigil__watch_fd(vigil_socket fd, vigil_socket *out, bool *owned) {
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0)
        return -errno;
    *out = d;
    *owned = true;
    return 0;
}

int vigil__socket_name(vigil_socket fd, bool peer, uint8_t *out, uint32_t *len) {
    socklen_t n = 128;
    int rc = peer ? getpeername(fd, (struct sockaddr *)out, &n) : getsockname(fd, (struct sockaddr *)out, &n);
    if (rc < 0)
        return -errno;
    *len = n;
    return 0;
}

static int socket_family(int fd) {
    struct sockaddr_storage ss;
    socklen_t n = sizeof(ss);
    return getsockname(fd, (struct sockaddr *)&ss, &n) < 0 ? -errno : ss.ss_family;
}

int vigil__udp_setopt(vigil_socket fd, int opt, int value) {
    int fam = socket_family(fd);
    if (fam < 0)
        return fam;
    bool v6 = fam == AF_INET6;
    int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP, name;
    switch (opt) {
    case VIGIL_UDP_BROADCAST: level = SOL_SOCKET, name = SO_BROADCAST; break;
    case VIGIL_UDP_TTL: name = v6 ? IPV6_UNICAST_HOPS : IP_TTL; break;
    case VIGIL_UDP_MULTICAST_TTL: name = v6 ? IPV6_MULTICAST_HOPS : IP_MULTICAST_TTL; break;
    case VIGIL_UDP_MULTICAST_LOOP: name = v6 ? IPV6_MULTICAST_LOOP : IP_MULTICAST_LOOP; break;
    default: return -EINVAL;
    }
    return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? -errno : 0;
}

int vigil__udp_membership(vigil_socket fd, const char *group, uint32_t ifindex, bool join) {
    int fam = socket_family(fd);
    if (fam < 0)
        return fam;
    if (fam == AF_INET6) {
        struct ipv6_mreq m = {.ipv6mr_interface = ifindex};
        if (inet_pton(AF_INET6, group, &m.ipv6mr_multiaddr) != 1 || !IN6_IS_ADDR_MULTICAST(&m.ipv6mr_multiaddr))
            return -EINVAL;
        return setsockopt(fd, IPPROTO_IPV6, join ? IPV6_ADD_MEMBERSHIP : IPV6_DROP_MEMBERSHIP, &m,
                          sizeof(m)) < 0 ? -errno : 0;
    }
    struct ip_mreqn m = {.imr_ifindex = (int)ifindex};
    if (inet_pton(AF_INET, group, &m.imr_multiaddr) != 1 || !IN_MULTICAST(ntohl(m.imr_multiaddr.s_addr)))
        return -EINVAL;
    return setsockopt(fd, IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &m, sizeof(m)) < 0
               ? -errno
               : 0;
}

int vigil__socket_prepare_accepted(vigil_socket fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

int vigil__socket_shutdown(vigil_socket fd, int how) {
    int h = how == (VIGIL_SHUT_RD | VIGIL_SHUT_WR) ? SHUT_RDWR : how == VIGIL_SHUT_RD ? SHUT_RD : SHUT_WR;
    return shutdown(fd, h) < 0 ? -errno : 0;
}

int64_t vigil__socket_unsent(vigil_socket fd) {
    int n = 0;
    return ioctl(fd, SIOCOUTQ, &n) < 0 ? -errno : n;
}

int vigil__socket_set_abortive(vigil_socket fd) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0 ? -errno : 0;
}

/* Disconnecting a TCP socket (connect to AF_UNSPEC) sends RST now and keeps
 * the descriptor, which stays its owner's to close. A Unix socket has no
 * RST: both directions are shut down, which the peer sees as EOF. */
int vigil__socket_reset(vigil_socket fd) {
    struct sockaddr sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNSPEC;
    if (socket_domain(fd) == AF_UNIX)
        return shutdown(fd, SHUT_RDWR) < 0 ? -errno : 0;
    return connect(fd, &sa, sizeof(sa)) < 0 ? -errno : 0;
}

int vigil__socket_adopt(vigil_socket fd, bool listening) {
    int type = 0, acc = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return -errno; /* -ENOTSOCK for a file or pipe, -EBADF */
    if (type != SOCK_STREAM)
        return -EPROTOTYPE;
    len = sizeof(acc);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0)
        return -errno;
    if (listening && !acc)
        return -EINVAL;
    if (!listening) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (acc)
            return -EINVAL;
        if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
            return -errno; /* -ENOTCONN */
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

static int opt_of(int opt, int *level, int *name) {
    switch (opt) {
    case VIGIL_OPT_NODELAY: *level = IPPROTO_TCP; *name = TCP_NODELAY; return 0;
    case VIGIL_OPT_SNDBUF: *level = SOL_SOCKET; *name = SO_SNDBUF; return 0;
    case VIGIL_OPT_RCVBUF: *level = SOL_SOCKET; *name = SO_RCVBUF; return 0;
    default: return -EINVAL;
    }
}

int vigil__socket_setopt(vigil_socket fd, int opt, int value) {
    int level, name;
    if (opt_of(opt, &level, &name) < 0 || value < 0)
        return -EINVAL;
    if (level == IPPROTO_TCP && socket_domain(fd) == AF_UNIX)
        return -EOPNOTSUPP; /* Linux would say so too, as EOPNOTSUPP or ENOPROTOOPT */
    return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? -errno : 0;
}

int vigil__socket_getopt(vigil_socket fd, int opt, int *value) {
    int level, name;
    if (opt_of(opt, &level, &name) < 0 || !value)
        return -EINVAL;
    if (level == IPPROTO_TCP && socket_domain(fd) == AF_UNIX)
        return -EOPNOTSUPP;
    socklen_t len = sizeof(*value);
    return getsockopt(fd, level, name, value, &len) < 0 ? -errno : 0;
}

int vigil__socket_connect_state(vigil_socket fd, int *err) {
    if (socket_domain(fd) == AF_UNIX) {
        /* A Unix connect finishes inside the call, or never started (EAGAIN:
         * a full backlog): connected, failed, or to be issued again. */
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        *err = 0;
        if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
            return 1;
        socklen_t el = sizeof(*err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &el) < 0)
            *err = errno;
        return -1;
    }
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    *err = 0;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) {
        *err = errno;
        return -1;
    }
    if (ti.tcpi_state == TCP_SYN_SENT)
        return 0;
    if (ti.tcpi_state != TCP_CLOSE)
        return 1; /* established, or already closing: the connect itself succeeded */
    socklen_t el = sizeof(*err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &el) < 0)
        *err = errno;
    return -1;
}

void vigil__socket_close_now(vigil_socket fd) {
    if (fd >= 0)
        close(fd);
}

void *vigil__mem_map(size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void vigil__mem_unmap(void *p, size_t len) {
    if (p)
        munmap(p, len);
}

void vigil__mem_guard(void *p, size_t len) {
    if (p)
        mprotect(p, len, PROT_NONE);
}

int vigil__wakefd_open(int *out) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    *out = fd;
    return 0;
}

int vigil__wakefd_signal(int fd) {
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: the loop is awake anyway. */
    if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

void vigil__wakefd_close(int fd) {
    if (fd >= 0)
        close(fd);
}

int vigil__thread_id(void) { return (int)syscall(SYS_gettid); }

/* The thread's time on a CPU (schedstat, exact to the last scheduler tick)
 * and whether it is ready to run (state R in stat: on a CPU, or waiting for
 * one) rather than blocked. Both files stay open (reading again from offset 0
 * gives fresh figures) until tid changes. */
static int pread_text(const char *what, int tid, int *fd, char *buf, size_t len) {
    if (*fd < 0) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/task/%d/%s", tid, what);
        if ((*fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            return -errno;
    }
    ssize_t n = pread(*fd, buf, len - 1, 0);
    if (n <= 0)
        return n < 0 ? -errno : -EIO;
    buf[n] = 0;
    return 0;
}

int vigil__thread_sched_lower(int tid, vigil__sched_saved *saved) {
    struct sched_param p = {0};
    int policy = sched_getscheduler(tid);
    if (policy < 0 || sched_getparam(tid, &p) < 0)
        return -errno;
    saved->policy = policy;
    saved->priority = p.sched_priority;
    struct sched_param idle = {0};
    return sched_setscheduler(tid, SCHED_IDLE, &idle) < 0 ? -errno : 0;
}

int vigil__thread_sched_restore(const vigil__sched_saved *saved) {
    struct sched_param p = {.sched_priority = saved->priority};
    return sched_setscheduler(0, saved->policy, &p) < 0 ? -errno : 0;
}

int vigil__thread_sched(int tid, vigil__sched_files *f, uint64_t *run_ns, bool *runnable) {
    if (f->tid != tid) {
        vigil__sched_files_close(f);
        f->tid = tid;
    }
    char buf[512];
    int rc = pread_text("schedstat", tid, &f->schedstat, buf, sizeof(buf));
    unsigned long long run;
    if (rc < 0 || sscanf(buf, "%llu", &run) != 1)
        return rc < 0 ? rc : -EIO;
    if ((rc = pread_text("stat", tid, &f->stat, buf, sizeof(buf))) < 0)
        return rc;
    const char *st = strrchr(buf, ')'); /* "tid (comm) S ...": comm may hold anything */
    if (!st || st[1] != ' ')
        return -EIO;
    *run_ns = run;
    *runnable = st[2] == 'R';
    return 0;
}

void vigil__sched_files_close(vigil__sched_files *f) {
    if (f->schedstat >= 0)
        close(f->schedstat);
    if (f->stat >= 0)
        close(f->stat);
    f->schedstat = f->stat = -1;
}

/* The scheduler's own count (ns, exact), from schedstat; /proc/.../stat's
 * ticks are sampled, and charge a whole 10 ms tick to a thread that merely
 * woke up when the tick hit, which overstates a thread that sleeps most of
 * the time on a busy core many times over. */
uint64_t vigil__thread_cpu_ns(int tid) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
    FILE *sf = fopen(path, "re");
    if (sf) {
        unsigned long long run = 0;
        int got = fscanf(sf, "%llu", &run);
        fclose(sf);
        if (got == 1)
            return run;
    }
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char line[1024];
    uint64_t ns = 0;
    if (fgets(line, sizeof(line), f)) {
        char *p = strrchr(line, ')'); /* the name may hold spaces */
        unsigned long ut, st;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            ns = (uint64_t)(ut + st) * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
    }
    fclose(f);
    return ns;
}

int vigil__fd_readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, 0);
    return n < 0 ? -errno : n > 0 && (p.revents & POLLIN);
}

int vigil__socket_keepalive(vigil_socket fd, uint32_t idle_s, uint32_t interval_s, uint32_t count) {
    if (!idle_s && !interval_s && !count) {
        int off = 0;
        return setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &off, sizeof(off)) < 0 ? -errno : 0;
    }
    if (!idle_s || !interval_s || !count || idle_s > INT32_MAX || interval_s > INT32_MAX ||
        count > INT32_MAX)
        return -EINVAL;
    /* Set the three values first and SO_KEEPALIVE last; on a value the kernel
     * rejects, put back the ones already changed, so nothing half applies. */
    static const int names[3] = {TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT};
    int want[3] = {(int)idle_s, (int)interval_s, (int)count}, old[3];
    for (int i = 0; i < 3; i++) {
        socklen_t len = sizeof(old[i]);
        if (getsockopt(fd, IPPROTO_TCP, names[i], &old[i], &len) < 0)
            return -errno;
    }
    int rc = 0, i = 0;
    for (; i < 3; i++)
        if (setsockopt(fd, IPPROTO_TCP, names[i], &want[i], sizeof(want[i])) < 0) {
            rc = -errno;
            break;
        }
    if (rc == 0) {
        int on = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) < 0)
            rc = -errno;
    }
    if (rc < 0)
        while (i-- > 0)
            setsockopt(fd, IPPROTO_TCP, names[i], &old[i], sizeof(old[i]));
    return rc;
}

int vigil__socket_user_timeout(vigil_socket fd, uint32_t ms) {
    if (ms > INT32_MAX)
        return -EINVAL;
    int v = (int)ms;
    return setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof(v)) < 0 ? -errno : 0;
}

/* ------------------------------------------------------ stop requests */

/* A stop request reaches whichever thread does not block it. The waiter
 * blocks both signals and reads them from a signalfd (so they are caught when
 * every thread blocks them, as vigil's own threads do); a thread of the
 * program that does not block them runs this handler, which passes the signal
 * on through a pipe (write is async-signal-safe; SA_RESTART keeps that
 * thread's calls going). */
static int stop_pipe_w = -1;

static void on_stop_signal(int sig) {
    int saved = errno;
    char b = (char)sig;
    if (write(stop_pipe_w, &b, 1) < 0) {
        /* full pipe: a request is already waiting */
    }
    errno = saved;
}

int vigil__stop_requests_catch(vigil__stop_requests *st) {
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    sigemptyset(&st->set);
    sigaddset(&st->set, SIGINT);
    sigaddset(&st->set, SIGTERM);
    int rc = pthread_sigmask(SIG_BLOCK, &st->set, &st->old);
    if (rc == 0 && (st->sfd = signalfd(-1, &st->set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
        rc = errno;
        pthread_sigmask(SIG_SETMASK, &st->old, NULL);
    }
    if (rc) {
        close(p[0]);
        close(p[1]);
        return -rc;
    }
    st->pipe_r = p[0];
    stop_pipe_w = p[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    /* Also over SIG_IGN: a shell starts background jobs with SIGINT ignored,
     * and the program asked to be stopped by it. */
    for (int i = 0; i < 2; i++)
        sigaction(i ? SIGTERM : SIGINT, &sa, &st->act[i]);
    return 0;
}

int vigil__stop_request_wait(vigil__stop_requests *st, int timeout_ms) {
    struct pollfd pf[2] = {{.fd = st->sfd, .events = POLLIN}, {.fd = st->pipe_r, .events = POLLIN}};
    if (poll(pf, 2, timeout_ms) <= 0)
        return 0;
    struct signalfd_siginfo si;
    if (read(st->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        return (int)si.ssi_signo;
    char b;
    if (read(st->pipe_r, &b, 1) == 1)
        return (unsigned char)b;
    return 0;
}

void vigil__stop_requests_release(vigil__stop_requests *st) {
    for (int i = 0; i < 2; i++)
        sigaction(i ? SIGTERM : SIGINT, &st->act[i], NULL);
    /* A request that came after the last wait would end the process the
     * moment it is unblocked: take it first. */
    while (vigil__stop_request_wait(st, 0) > 0)
        ;
    pthread_sigmask(SIG_SETMASK, &st->old, NULL);
    close(st->sfd);
    close(st->pipe_r);
    close(stop_pipe_w);
    stop_pipe_w = -1;
}
