/* util.c: see util.h. */
#include "util.h"
#include "core/debug.h"
#include "vt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32 /* the plain peer on Winsock: the same calls under other names */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <tlhelp32.h>
#define poll WSAPoll
#define SOCK_CLOEXEC 0
#define MSG_NOSIGNAL 0
#define close closesocket /* only sockets are closed here */
#define accept4(fd, a, l, f) accept(fd, a, l)
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

bool vt_have_uring(void) {
#if defined(VIGIL_HAVE_URING) && !VIGIL_HAVE_URING
    return false;
#else
    return true;
#endif
}

void vt_need_backend_built(void) {
    vt_backend_id b = vt_backend();
    if (!vt_have_uring() && (b == VT_BACKEND_URING || b == VT_BACKEND_URING_COMPAT))
        VT_SKIP("io_uring is not built in (-During=disabled, or no liburing)");
}

vt_backend_id vt_backend(void) {
    const char *b = getenv("VIGIL_TEST_BACKEND");
    if (!b || !*b)
        return VT_BACKEND_DEFAULT;
    if (!strcmp(b, "uring") || !strcmp(b, "io_uring"))
        return VT_BACKEND_URING;
    if (!strcmp(b, "uring-compat"))
        return VT_BACKEND_URING_COMPAT;
    if (!strcmp(b, "epoll"))
        return VT_BACKEND_EPOLL;
    return VT_BACKEND_AUTO;
}

vigil_loop *vt_loop(const vigil_loop_options *extra) {
    vigil_loop_options o = {0};
    if (extra)
        o = *extra;
    switch (vt_backend()) {
    case VT_BACKEND_URING:
        o.backend = VIGIL_BACKEND_URING;
        break;
    case VT_BACKEND_URING_COMPAT:
        o.backend = VIGIL_BACKEND_URING;
        o.flags |= VIGIL_LOOP_NO_MULTISHOT_ACCEPT | VIGIL_LOOP_NO_MULTISHOT_RECV |
                   VIGIL_LOOP_NO_DEFER_TASKRUN;
        break;
    case VT_BACKEND_EPOLL:
        o.backend = VIGIL_BACKEND_EPOLL;
        break;
    default: /* the caller's backend (AUTO unless it says otherwise) */
        break;
    }
    vt_need_backend_built();
    vigil_loop *loop = NULL;
    int rc = vigil_loop_create(&loop, &o);
    VT_ASSERT(rc == 0, "vigil_loop_create: %d (%s)", rc, vigil_strerror(rc));
    return loop;
}

vigil_loop *vt_supervised_loop(uint32_t flags) {
    vigil_loop_options o = {.flags = VIGIL_LOOP_SUPERVISED | flags};
    if (vt_backend() != VT_BACKEND_URING_COMPAT)
        return vt_loop(&o);
    /* Without DEFER_TASKRUN a rebuild could not be exact: AUTO picks epoll */
    o.flags |= VIGIL_LOOP_NO_MULTISHOT_ACCEPT | VIGIL_LOOP_NO_MULTISHOT_RECV | VIGIL_LOOP_NO_DEFER_TASKRUN;
    vigil_loop *loop;
    int rc = vigil_loop_create(&loop, &o);
    VT_ASSERT(rc == 0, "vigil_loop_create: %d (%s)", rc, vigil_strerror(rc));
    vigil_loop_info info;
    vigil_loop_get_info(loop, &info);
    VT_ASSERT(!strcmp(info.backend, "epoll") && strstr(info.reason, "DEFER_TASKRUN"),
              "supervised without DEFER_TASKRUN: backend %s (%s)", info.backend, info.reason);
    return loop;
}

vigil_supervisor *vt_supervise(vigil_loop *loop, const vigil_supervisor_options *opts) {
    vigil_supervisor *sv = NULL;
    int rc = vigil_supervisor_start(&sv, opts);
    VT_ASSERT(rc == 0, "vigil_supervisor_start: %d (%s)", rc, vigil_strerror(rc));
    rc = vigil_supervisor_add(sv, loop);
    VT_ASSERT(rc == 0, "vigil_supervisor_add: %d (%s)", rc, vigil_strerror(rc));
    return sv;
}

void vt_need_rebuilds(void) {
    if (vt_backend() == VT_BACKEND_URING_COMPAT)
        VT_SKIP("a ring without DEFER_TASKRUN is never rebuilt");
}

static void vt_quiet_log(const char *line, void *ud) {
    (void)line;
    (void)ud;
}

vigil_loop *vt_fenceable_loop(vigil_supervisor **sv) {
    vt_need_rebuilds();
    vigil_loop_options o = {.flags = VIGIL_LOOP_SUPERVISED};
    vigil_loop *loop = vt_loop(&o);
    vigil_supervisor_options so = {.stall_ms = 1000, .tick_ms = 1, .log = vt_quiet_log};
    *sv = vt_supervise(loop, &so);
    return loop;
}

bool vt_run_until(vigil_loop *loop, const volatile int *flag, int timeout_ms) {
    uint64_t until = vigil_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    /* flags may be set by peer threads: read them atomically */
    while (!__atomic_load_n((const int *)flag, __ATOMIC_ACQUIRE)) {
        uint64_t now = vigil_now_ns();
        if (now >= until)
            return false;
        int left = (int)((until - now) / 1000000ull) + 1;
        int rc = vigil_loop_run(loop, VIGIL_RUN_ONCE, left < 50 ? left : 50);
        VT_ASSERT(rc >= 0, "vigil_loop_run: %d", rc);
    }
    return true;
}

bool vt_run_until_count(vigil_loop *loop, const volatile uint64_t *count, uint64_t want, int timeout_ms) {
    uint64_t until = vigil_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (__atomic_load_n((const uint64_t *)count, __ATOMIC_ACQUIRE) < want) {
        if (vigil_now_ns() >= until)
            return false;
        int rc = vigil_loop_run(loop, VIGIL_RUN_ONCE, 50);
        VT_ASSERT(rc >= 0, "vigil_loop_run: %d", rc);
    }
    return true;
}

void vt_fill(uint8_t *p, size_t n, uint32_t seed, uint64_t offset) {
    for (size_t i = 0; i < n; i++)
        p[i] = vt_pattern(seed, offset + i);
}

size_t vt_check(const uint8_t *p, size_t n, uint32_t seed, uint64_t offset) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != vt_pattern(seed, offset + i))
            return i;
    return n;
}

void vt_fence_timer(vigil_loop *loop, vigil_op timer, int status, void *ud) {
    if (status)
        return;
    vigil__debug_request_fence(loop);
    uint64_t t0 = vigil_now_ns();
    while (!vigil__debug_fenced(loop) && vigil_now_ns() - t0 < 5000000000ull)
        ;
    if (ud)
        __atomic_store_n((int *)ud, vigil__debug_fenced(loop), __ATOMIC_SEQ_CST);
}

int vt_run_until_fenced(vigil_loop *loop, int timeout_ms) {
    uint64_t until = vigil_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int rc;
    while ((rc = vigil_loop_run(loop, VIGIL_RUN_ONCE, 50)) >= 0 && vigil_now_ns() < until)
        ;
    return rc;
}

vigil_listener vt_listen(vigil_loop *loop, vigil_accept_cb cb, void *ud, int *port) {
    vigil_listener_options lo = {.host = "127.0.0.1", .port = 0, .backlog = 4096};
    vigil_listener l;
    int rc = vigil_listener_open(loop, &lo, cb, ud, &l);
    VT_ASSERT(rc == 0, "vigil_listener_open: %d", rc);
    int p = vigil_listener_get_port(loop, l);
    VT_ASSERT(p > 0, "vigil_listener_get_port: %d", p);
    if (port)
        *port = p;
    return l;
}

int vt_sock_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    VT_ASSERT(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    VT_ASSERT(rc == 0, "connect: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, (const void *)&one, sizeof(one));
    return fd;
}

int vt_sock_listen(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    VT_ASSERT(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    VT_ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    VT_ASSERT(listen(fd, 128) == 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

int vt_sock_accept(int lfd, int timeout_ms) {
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

int vt_sock_write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

size_t vt_sock_read_n(int fd, void *p, size_t n, int timeout_ms) {
    uint8_t *b = p;
    size_t got = 0;
    uint64_t until = vigil_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (got < n) {
        uint64_t now = vigil_now_ns();
        if (now >= until)
            break;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)((until - now) / 1000000ull) + 1) <= 0)
            continue;
        ssize_t r = recv(fd, b + got, n - got, 0);
        if (r == 0)
            break;
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            break;
        }
        got += (size_t)r;
    }
    return got;
}

void vt_sock_reset(int fd) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, (const void *)&lg, sizeof(lg));
    close(fd);
}

void vt_sock_close(int fd) { close(fd); }

long vt_raise_nofile(long want) {
#ifdef _WIN32
    return want; /* no descriptor limit of that kind */
#else
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    rlim_t target = (rlim_t)want;
    if (target > r.rlim_max)
        target = r.rlim_max;
    if (r.rlim_cur < target) {
        r.rlim_cur = target;
        setrlimit(RLIMIT_NOFILE, &r);
        getrlimit(RLIMIT_NOFILE, &r);
    }
    return (long)r.rlim_cur;
#endif
}

#ifdef _WIN32
void vt_blocker_open(vt_blocker *b) {
    HANDLE e = CreateEventA(NULL, FALSE, FALSE, NULL);
    VT_ASSERT(e != NULL, "CreateEvent: %lu", GetLastError());
    b->r = b->w = (intptr_t)e;
}

int vt_blocker_wait_once(vt_blocker *b) {
    DWORD r = WaitForSingleObjectEx((HANDLE)b->r, INFINITE, TRUE);
    if (r == WAIT_OBJECT_0)
        return 1;
    errno = r == WAIT_IO_COMPLETION ? EINTR : EIO;
    return -1;
}

void vt_blocker_release(vt_blocker *b) { VT_ASSERT(SetEvent((HANDLE)b->w)); }
void vt_blocker_close(vt_blocker *b) { CloseHandle((HANDLE)b->r); }
#else
void vt_blocker_open(vt_blocker *b) {
    int p[2];
    VT_EQ(pipe(p), 0);
    b->r = p[0];
    b->w = p[1];
}

int vt_blocker_wait_once(vt_blocker *b) {
    char c;
    return (int)read((int)b->r, &c, 1); /* one read, not retried */
}

void vt_blocker_release(vt_blocker *b) { VT_EQ(write((int)b->w, "x", 1), 1); }

void vt_blocker_close(vt_blocker *b) {
    close((int)b->r);
    close((int)b->w);
}
#endif

#ifdef _WIN32
void vt_sock_nonblock(int fd) {
    u_long on = 1;
    VT_EQ(ioctlsocket((SOCKET)fd, FIONBIO, &on), 0);
}

int vt_sock_error(void) {
    int e = WSAGetLastError();
    switch (e) {
    case WSAEWOULDBLOCK: return EAGAIN;
    case WSAEINTR: return EINTR;
    case WSAECONNRESET: case WSAECONNABORTED: return ECONNRESET;
    case WSAENOTCONN: return ENOTCONN;
    default: return EIO;
    }
}

int vt_poll(struct pollfd *p, unsigned n, int timeout_ms) { return WSAPoll(p, n, timeout_ms); }

int vt_count_fds(void) {
    DWORD n = 0;
    GetProcessHandleCount(GetCurrentProcess(), &n);
    return (int)n;
}

int vt_count_threads(void) {
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
    VT_ASSERT(snap != INVALID_HANDLE_VALUE);
    THREADENTRY32 e = {.dwSize = sizeof(e)};
    int n = 0;
    for (BOOL ok = Thread32First(snap, &e); ok; ok = Thread32Next(snap, &e))
        n += e.th32OwnerProcessID == GetCurrentProcessId();
    CloseHandle(snap);
    return n;
}

int vt_count_threads_named(const char *prefix) {
    (void)prefix;
    return -1; /* winpthreads keeps thread names to itself */
}
#else
void vt_sock_nonblock(int fd) { VT_EQ(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0); }

int vt_sock_error(void) { return errno; }

int vt_poll(struct pollfd *p, unsigned n, int timeout_ms) { return poll(p, (nfds_t)n, timeout_ms); }

static int count_dir(const char *path) {
    DIR *d = opendir(path);
    VT_ASSERT(d != NULL, "opendir %s", path);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

int vt_count_fds(void) { return count_dir("/proc/self/fd") - 1; /* the directory's own fd */ }

int vt_count_threads(void) { return count_dir("/proc/self/task"); }

int vt_count_threads_named(const char *prefix) {
    DIR *d = opendir("/proc/self/task");
    VT_ASSERT(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof(path), "/proc/self/task/%.200s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(comm, sizeof(comm), f))
                comm[0] = 0;
            fclose(f);
        }
        n += strncmp(comm, prefix, strlen(prefix)) == 0;
    }
    closedir(d);
    return n;
}
#endif

/* ---- leaks: each test's process checks itself (vt.h) -------------------- */
#ifndef VT_MINI
#if defined(__SANITIZE_ADDRESS__)
#define VT_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VT_HAVE_LSAN 1
#endif
#endif
#ifdef VT_HAVE_LSAN
#include <criterion/hooks.h>
#include <sanitizer/lsan_interface.h>

/* The runner keeps an allocation of Criterion's to its exit, which
 * tests/lsan.supp's leak:libcriterion.so hides there. But every test runs
 * under Criterion's frames, so in a test's own process that line would
 * hide every leak: the runner starts them without it. */
ReportHook(PRE_ALL)(struct criterion_test_set *set) {
    (void)set;
    setenv("LSAN_OPTIONS", "", 1);
}

void vt_leak_check(void) {
    if (__lsan_do_recoverable_leak_check())
        cr_assert_fail("memory left unreachable at the end of the test (LeakSanitizer's report above)");
}
#else
void vt_leak_check(void) {}
#endif
#endif
