/*
 * win.c: platform.h on Windows (Winsock 2, Win32), built with mingw-w64.
 *
 * Every socket is created overlapped (it will be bound to the loop's
 * completion port) and non-blocking, and not inherited by child processes.
 * Windows error codes become the library's negative errno values in one
 * place, vigil__win_errno(). Where Windows has no equivalent the function
 * says so with -ENOTSUP, never by pretending:
 * - SO_REUSEPORT: Windows does not spread connections over listeners;
 * - resetting a socket while keeping its handle (connect to AF_UNSPEC on
 *   Linux): a zero linger and a full shutdown come closest, and the RST
 *   goes out when the handle is closed;
 * - interrupting any blocking call: a queued APC ends an alertable wait
 *   (as a signal EINTRs a syscall) and CancelSynchronousIo a thread's
 *   synchronous I/O on real Windows; wine refuses the latter.
 * What a thread is doing comes from its suspended context and stack.
 * The wake primitive is a UDP socket on 127.0.0.1 that sends itself one
 * byte: the loop's wait sees it as a completion like any other socket's.
 */
#include "os/platform.h"

#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <mstcpip.h>
#include <windows.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ errors */

int vigil__win_errno(unsigned long e) {
    switch (e) {
    case 0: return 0;
    case WSAEWOULDBLOCK: case ERROR_IO_PENDING: return -EAGAIN;
    case WSAEINTR: return -EINTR;
    case WSAEBADF: case WSAENOTSOCK: case ERROR_INVALID_HANDLE: return -EBADF;
    case WSAEACCES: case ERROR_ACCESS_DENIED: return -EACCES;
    case WSAEFAULT: return -EFAULT;
    case WSAEINVAL: case ERROR_INVALID_PARAMETER: return -EINVAL;
    case WSAEMFILE: case ERROR_TOO_MANY_OPEN_FILES: return -EMFILE;
    case WSAEINPROGRESS: return -EINPROGRESS;
    case WSAEALREADY: return -EALREADY;
    case WSAEMSGSIZE: return -EMSGSIZE;
    case WSAEPROTOTYPE: return -EPROTOTYPE;
    case WSAENOPROTOOPT: return -ENOPROTOOPT;
    case WSAEPROTONOSUPPORT: return -EPROTONOSUPPORT;
    case WSAEOPNOTSUPP: return -EOPNOTSUPP;
    case WSAEAFNOSUPPORT: return -EAFNOSUPPORT;
    case WSAEADDRINUSE: return -EADDRINUSE;
    case WSAEADDRNOTAVAIL: return -EADDRNOTAVAIL;
    case WSAENETDOWN: return -ENETDOWN;
    case WSAENETUNREACH: return -ENETUNREACH;
    case WSAENETRESET: return -ENETRESET;
    case WSAECONNABORTED: case ERROR_CONNECTION_ABORTED: return -ECONNABORTED;
    case WSAECONNRESET: case ERROR_NETNAME_DELETED: return -ECONNRESET;
    case WSAENOBUFS: case ERROR_NOT_ENOUGH_MEMORY: case ERROR_OUTOFMEMORY: return -ENOBUFS;
    case WSAEISCONN: return -EISCONN;
    case WSAENOTCONN: return -ENOTCONN;
    case WSAESHUTDOWN: return -EPIPE;
    case WSAETIMEDOUT: case ERROR_SEM_TIMEOUT: case WAIT_TIMEOUT: return -ETIMEDOUT;
    case WSAECONNREFUSED: case ERROR_CONNECTION_REFUSED: return -ECONNREFUSED;
    case WSAEHOSTUNREACH: case ERROR_HOST_UNREACHABLE: return -EHOSTUNREACH;
    case ERROR_OPERATION_ABORTED: return -ECANCELED; /* WSA_OPERATION_ABORTED is the same code */
    case ERROR_FILE_NOT_FOUND: case ERROR_PATH_NOT_FOUND: return -ENOENT;
    case ERROR_FILE_EXISTS: case ERROR_ALREADY_EXISTS: return -EEXIST;
    case ERROR_HANDLE_EOF: return 0;
    case ERROR_DIRECTORY: return -ENOTDIR;
    case ERROR_DIR_NOT_EMPTY: return -ENOTEMPTY;
    case ERROR_DISK_FULL: case ERROR_HANDLE_DISK_FULL: return -ENOSPC;
    case ERROR_WRITE_PROTECT: return -EROFS;
    case ERROR_FILENAME_EXCED_RANGE: return -ENAMETOOLONG;
    case ERROR_INVALID_NAME: case ERROR_BAD_PATHNAME: return -ENOENT;
    case ERROR_SHARING_VIOLATION: case ERROR_LOCK_VIOLATION: return -EBUSY;
    case ERROR_BROKEN_PIPE: case ERROR_NO_DATA: return -EPIPE;
    case ERROR_NOT_SUPPORTED: return -ENOTSUP;
    default: return -EIO;
    }
}

static int wsa_err(void) { return vigil__win_errno((DWORD)WSAGetLastError()); }

/* Winsock wants WSAStartup once per process; the first socket call does it. */
static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;
static int wsa_rc;

static BOOL CALLBACK wsa_start(PINIT_ONCE once, PVOID p, PVOID *ctx) {
    WSADATA wd;
    wsa_rc = WSAStartup(MAKEWORD(2, 2), &wd) ? -ENOSYS : 0;
    return TRUE;
}

static int wsa(void) {
    InitOnceExecuteOnce(&wsa_once, wsa_start, NULL, NULL);
    return wsa_rc;
}

/* ------------------------------------------------------------ clocks */

uint64_t vigil__clock_ns(void) {
    static LARGE_INTEGER freq;
    LARGE_INTEGER c;
    if (!freq.QuadPart)
        QueryPerformanceFrequency(&freq); /* fixed at boot: a benign race */
    QueryPerformanceCounter(&c);
    return (uint64_t)((c.QuadPart / freq.QuadPart) * 1000000000ull +
                      (c.QuadPart % freq.QuadPart) * 1000000000ull / freq.QuadPart);
}

/* ----------------------------------------------------------- addresses */

_Static_assert(sizeof(SOCKADDR_STORAGE) <= sizeof(((vigil__addr *)0)->bytes), "vigil__addr holds any address");

int vigil__addr_parse(const char *host, uint16_t port, vigil__addr *out) {
    if (!host || !out)
        return -EINVAL;
    if (wsa() < 0)
        return -ENOSYS;
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

int vigil__addr_unix(const char *path, vigil__addr *out) {
    (void)path;
    (void)out;
    return -EAFNOSUPPORT; /* AF_UNIX exists on Windows 10 1803+, not under wine: not offered */
}

const int vigil__o_directory = VIGIL_O_DIRECTORY;

int vigil__addr_unix_text(const uint8_t *bytes, uint32_t len, char *out, size_t cap) {
    (void)bytes, (void)len, (void)out, (void)cap;
    return -EAFNOSUPPORT; /* no Unix sockets here (vigil__addr_unix) */
}

/* ------------------------------------------------------------- sockets */

static int prepare(SOCKET s, bool nodelay) {
    u_long nb = 1;
    if (ioctlsocket(s, FIONBIO, &nb))
        return wsa_err();
    SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0); /* the close-on-exec of Windows */
    if (nodelay) {
        BOOL one = TRUE;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof(one));
    }
    return 0;
}

static int new_socket(int family, int type, int proto, vigil_socket *out) {
    if (wsa() < 0)
        return -ENOSYS;
    SOCKET s = WSASocketW(family, type, proto, NULL, 0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET)
        return wsa_err();
    int rc = prepare(s, type == SOCK_STREAM);
    if (rc < 0) {
        closesocket(s);
        return rc;
    }
    *out = (vigil_socket)s;
    return 0;
}

int vigil__tcp_socket(const vigil__addr *a, vigil_socket *out) {
    int family = ((const struct sockaddr *)a->bytes)->sa_family;
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    return new_socket(family, SOCK_STREAM, IPPROTO_TCP, out);
}

int vigil__tcp_bind_listen(vigil_socket fd, const vigil__addr *a, int backlog, int reuseport) {
    if (reuseport)
        return -ENOTSUP; /* no kernel load balancing over listeners here */
    /* Windows' SO_REUSEADDR lets another socket take the port over: the
     * exclusive flag is what Linux's default means. */
    BOOL one = TRUE;
    setsockopt((SOCKET)fd, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&one, sizeof(one));
    if (bind((SOCKET)fd, (const struct sockaddr *)a->bytes, (int)a->len))
        return wsa_err();
    if (listen((SOCKET)fd, backlog > 0 ? backlog : SOMAXCONN))
        return wsa_err();
    return 0;
}

int vigil__udp_socket(const vigil__addr *a, int reuseport, vigil_socket *out) {
    if (reuseport)
        return -ENOTSUP;
    int family = ((const struct sockaddr *)a->bytes)->sa_family;
    int rc = new_socket(family, SOCK_DGRAM, IPPROTO_UDP, out);
    if (rc < 0)
        return rc;
    if (bind((SOCKET)*out, (const struct sockaddr *)a->bytes, (int)a->len)) {
        rc = wsa_err();
        closesocket((SOCKET)*out);
        return rc;
    }
    return 0;
}

int vigil__udp_sendto(vigil_socket fd, const void *data, size_t len, const void *peer, uint32_t peer_len) {
    int n = sendto((SOCKET)fd, data, (int)len, 0, (const struct sockaddr *)peer, (int)peer_len);
    return n < 0 ? wsa_err() : n;
}

int vigil__socket_port(vigil_socket fd) {
    SOCKADDR_STORAGE ss;
    int len = sizeof(ss);
    if (getsockname((SOCKET)fd, (struct sockaddr *)&ss, &len))
        return wsa_err();
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

int vigil__thread_sched_lower(int tid, vigil__sched_saved *saved) {
    HANDLE h = OpenThread(THREAD_SET_INFORMATION | THREAD_QUERY_INFORMATION, FALSE, (DWORD)tid);
    if (!h)
        return vigil__win_errno(GetLastError());
    int prio = GetThreadPriority(h);
    int rc = 0;
    if (prio == THREAD_PRIORITY_ERROR_RETURN || !SetThreadPriority(h, THREAD_PRIORITY_IDLE))
        rc = vigil__win_errno(GetLastError());
    else
        saved->priority = prio;
    CloseHandle(h);
    return rc;
}

int vigil__thread_sched_restore(const vigil__sched_saved *saved) {
    return SetThreadPriority(GetCurrentThread(), saved->priority) ? 0 : vigil__win_errno(GetLastError());
}

int vigil__watch_fd(vigil_socket fd, vigil_socket *out, bool *owned) {
    int type, len = sizeof(type);
    if (getsockopt((SOCKET)fd, SOL_SOCKET, SO_TYPE, (char *)&type, &len))
        return WSAGetLastError() == WSAENOTSOCK ? -ENOTSOCK : wsa_err();
    *out = fd;
    *owned = false;
    return 0;
}

int vigil__socket_name(vigil_socket fd, bool peer, uint8_t *out, uint32_t *len) {
    int n = 128;
    int rc = peer ? getpeername((SOCKET)fd, (struct sockaddr *)out, &n)
                  : getsockname((SOCKET)fd, (struct sockaddr *)out, &n);
    if (rc)
        return wsa_err();
    *len = (uint32_t)n;
    return 0;
}

static int socket_family(SOCKET s) {
    SOCKADDR_STORAGE ss;
    int n = sizeof(ss);
    return getsockname(s, (struct sockaddr *)&ss, &n) ? wsa_err() : ss.ss_family;
}

int vigil__udp_setopt(vigil_socket fd, int opt, int value) {
    int fam = socket_family((SOCKET)fd);
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
    DWORD v = (DWORD)value;
    return setsockopt((SOCKET)fd, level, name, (const char *)&v, sizeof(v)) ? wsa_err() : 0;
}

int vigil__udp_membership(vigil_socket fd, const char *group, uint32_t ifindex, bool join) {
    int fam = socket_family((SOCKET)fd);
    if (fam < 0)
        return fam;
    if (fam == AF_INET6) {
        struct ipv6_mreq m = {.ipv6mr_interface = ifindex};
        if (inet_pton(AF_INET6, group, &m.ipv6mr_multiaddr) != 1 || m.ipv6mr_multiaddr.s6_addr[0] != 0xff)
            return -EINVAL;
        return setsockopt((SOCKET)fd, IPPROTO_IPV6, join ? IPV6_ADD_MEMBERSHIP : IPV6_DROP_MEMBERSHIP,
                          (const char *)&m, sizeof(m)) ? wsa_err() : 0;
    }
    /* An interface index goes in imr_interface as 0.0.0.index (Windows'
     * convention for the IPv4 interface options). */
    struct ip_mreq m = {.imr_interface.s_addr = htonl(ifindex)};
    if (inet_pton(AF_INET, group, &m.imr_multiaddr) != 1 || (ntohl(m.imr_multiaddr.s_addr) >> 28) != 0xe)
        return -EINVAL;
    return setsockopt((SOCKET)fd, IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP,
                      (const char *)&m, sizeof(m)) ? wsa_err() : 0;
}

int vigil__socket_prepare_accepted(vigil_socket fd) { return prepare((SOCKET)fd, true); }

int vigil__socket_shutdown(vigil_socket fd, int how) {
    int h = how == (VIGIL_SHUT_RD | VIGIL_SHUT_WR) ? SD_BOTH : how == VIGIL_SHUT_RD ? SD_RECEIVE : SD_SEND;
    return shutdown((SOCKET)fd, h) ? wsa_err() : 0;
}

int64_t vigil__socket_unsent(vigil_socket fd) {
    (void)fd;
    return -ENOTSUP; /* no portable count; idle means nothing received or sent */
}

int vigil__socket_set_abortive(vigil_socket fd) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    return setsockopt((SOCKET)fd, SOL_SOCKET, SO_LINGER, (const char *)&lg, sizeof(lg)) ? wsa_err() : 0;
}

void vigil__socket_close_now(vigil_socket fd) {
    if (fd != (vigil_socket)INVALID_SOCKET)
        closesocket((SOCKET)fd);
}

int vigil__socket_reset(vigil_socket fd) {
    int rc = vigil__socket_set_abortive(fd); /* the RST goes at the close */
    shutdown((SOCKET)fd, SD_BOTH);
    return rc < 0 ? rc : -ENOTSUP;
}

int vigil__socket_connect_state(vigil_socket fd, int *err) {
    SOCKADDR_STORAGE ss;
    int len = sizeof(ss);
    *err = 0;
    if (getpeername((SOCKET)fd, (struct sockaddr *)&ss, &len) == 0)
        return 1;
    int e = 0, el = sizeof(e);
    if (getsockopt((SOCKET)fd, SOL_SOCKET, SO_ERROR, (char *)&e, &el) == 0 && e)
        *err = -vigil__win_errno((DWORD)e);
    /* Windows does not say "still connecting" for a ConnectEx socket; the
     * backend knows from its own OVERLAPPED, so this is "not connected". */
    return -1;
}

int vigil__socket_adopt(vigil_socket fd, bool listening) {
    if (wsa() < 0)
        return -ENOSYS;
    int type = 0, tl = sizeof(type), acc = 0, al = sizeof(acc);
    if (getsockopt((SOCKET)fd, SOL_SOCKET, SO_TYPE, (char *)&type, &tl))
        return wsa_err();
    if (type != SOCK_STREAM)
        return -EPROTOTYPE;
    if (getsockopt((SOCKET)fd, SOL_SOCKET, SO_ACCEPTCONN, (char *)&acc, &al))
        return wsa_err();
    if (listening != (acc != 0))
        return -EINVAL;
    if (!listening) {
        SOCKADDR_STORAGE ss;
        int len = sizeof(ss);
        if (getpeername((SOCKET)fd, (struct sockaddr *)&ss, &len))
            return wsa_err();
    }
    return prepare((SOCKET)fd, false);
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
    return setsockopt((SOCKET)fd, level, name, (const char *)&value, sizeof(value)) ? wsa_err() : 0;
}

int vigil__socket_getopt(vigil_socket fd, int opt, int *value) {
    int level, name, len = sizeof(*value);
    if (opt_of(opt, &level, &name) < 0 || !value)
        return -EINVAL;
    *value = 0;
    return getsockopt((SOCKET)fd, level, name, (char *)value, &len) ? wsa_err() : 0;
}

/* Windows 10 1709 and later take the three keepalive values as TCP options
 * (ws2ipdef.h; mingw-w64's headers lack them). Older systems, and wine 8,
 * refuse them (WSAENOPROTOOPT) and offer only SIO_KEEPALIVE_VALS: the idle
 * time and the interval, with the count of probes fixed by the system at 10.
 * There a call asking another count returns -ENOTSUP with nothing changed. */
#ifndef TCP_KEEPIDLE
#define TCP_KEEPIDLE 3
#endif
#ifndef TCP_KEEPCNT
#define TCP_KEEPCNT 16
#endif
#ifndef TCP_KEEPINTVL
#define TCP_KEEPINTVL 17
#endif
#define WIN_FIXED_KEEPCNT 10u

int vigil__socket_keepalive(vigil_socket fd, uint32_t idle_s, uint32_t interval_s, uint32_t count) {
    SOCKET s = (SOCKET)fd;
    if (!idle_s && !interval_s && !count) {
        BOOL off = FALSE;
        return setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, (const char *)&off, sizeof(off)) ? wsa_err() : 0;
    }
    /* SIO_KEEPALIVE_VALS takes milliseconds in a ULONG */
    if (!idle_s || !interval_s || !count || idle_s > UINT32_MAX / 1000 || interval_s > UINT32_MAX / 1000 ||
        count > 255)
        return -EINVAL;
    static const int names[3] = {TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT};
    DWORD want[3] = {idle_s, interval_s, count}, old[3];
    bool options = true;
    for (int i = 0; i < 3 && options; i++) {
        int len = sizeof(old[i]);
        if (getsockopt(s, IPPROTO_TCP, names[i], (char *)&old[i], &len)) {
            if (WSAGetLastError() != WSAENOPROTOOPT)
                return wsa_err();
            options = false;
        }
    }
    if (!options) {
        if (count != WIN_FIXED_KEEPCNT)
            return -ENOTSUP;
        struct tcp_keepalive ka = {.onoff = 1, .keepalivetime = idle_s * 1000, .keepaliveinterval = interval_s * 1000};
        DWORD got = 0;
        return WSAIoctl(s, SIO_KEEPALIVE_VALS, &ka, sizeof(ka), NULL, 0, &got, NULL, NULL) ? wsa_err() : 0;
    }
    /* as on Linux: the values first, SO_KEEPALIVE last, and on a refusal the
     * values already changed put back */
    int rc = 0, i = 0;
    for (; i < 3; i++)
        if (setsockopt(s, IPPROTO_TCP, names[i], (const char *)&want[i], sizeof(want[i]))) {
            rc = wsa_err();
            break;
        }
    if (rc == 0) {
        BOOL on = TRUE;
        if (setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, (const char *)&on, sizeof(on)))
            rc = wsa_err();
    }
    if (rc < 0)
        while (i-- > 0)
            setsockopt(s, IPPROTO_TCP, names[i], (const char *)&old[i], sizeof(old[i]));
    return rc;
}

/* TCP_MAXRTMS (Windows 10 1703 and later) bounds retransmission in
 * milliseconds, TCP_MAXRT (older) in whole seconds; wine 8 has neither
 * (-ENOTSUP). 0, Linux's "the kernel's default", sets nothing: Windows gives
 * 0 a meaning of its own, and a fresh socket already has the default. */
#ifndef TCP_MAXRT
#define TCP_MAXRT 5
#endif
#ifndef TCP_MAXRTMS
#define TCP_MAXRTMS 14
#endif

int vigil__socket_user_timeout(vigil_socket fd, uint32_t ms) {
    SOCKET s = (SOCKET)fd;
    if (ms > INT32_MAX)
        return -EINVAL;
    if (ms == 0)
        return 0;
    DWORD v = ms;
    if (!setsockopt(s, IPPROTO_TCP, TCP_MAXRTMS, (const char *)&v, sizeof(v)))
        return 0;
    if (WSAGetLastError() != WSAENOPROTOOPT)
        return wsa_err();
    if (ms % 1000 == 0) {
        v = ms / 1000;
        if (!setsockopt(s, IPPROTO_TCP, TCP_MAXRT, (const char *)&v, sizeof(v)))
            return 0;
        if (WSAGetLastError() != WSAENOPROTOOPT)
            return wsa_err();
    }
    return -ENOTSUP;
}

/* -------------------------------------------------------------- memory */

void *vigil__mem_map(size_t len) { return VirtualAlloc(NULL, len, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE); }

void vigil__mem_unmap(void *p, size_t len) {
    (void)len;
    if (p)
        VirtualFree(p, 0, MEM_RELEASE);
}

void vigil__mem_guard(void *p, size_t len) {
    DWORD old;
    VirtualProtect(p, len, PAGE_NOACCESS, &old);
}

/* --------------------------------------------------------------- wakes */

int vigil__wakefd_open(int *out) {
    vigil__addr a;
    vigil_socket s;
    int rc = vigil__addr_parse("127.0.0.1", 0, &a);
    if (rc == 0)
        rc = vigil__udp_socket(&a, 0, &s);
    if (rc < 0)
        return rc;
    /* connected to itself: a send lands in its own receive queue */
    SOCKADDR_STORAGE me;
    int len = sizeof(me);
    if (getsockname((SOCKET)s, (struct sockaddr *)&me, &len) || connect((SOCKET)s, (struct sockaddr *)&me, len)) {
        rc = wsa_err();
        closesocket((SOCKET)s);
        return rc;
    }
    if (s > (vigil_socket)INT32_MAX) { /* handles are small in practice; the core keeps an int */
        closesocket((SOCKET)s);
        return -EMFILE;
    }
    *out = (int)s;
    return 0;
}

int vigil__wakefd_signal(int fd) {
    char one = 1;
    int n = send((SOCKET)fd, &one, 1, 0);
    if (n == 1)
        return 0;
    int rc = wsa_err();
    return rc == -EAGAIN ? 0 : rc; /* full of wakes already: awake enough */
}

void vigil__wakefd_close(int fd) {
    if (fd >= 0)
        closesocket((SOCKET)fd);
}

/* ------------------------------------------------------------- threads */

int vigil__thread_id(void) { return (int)GetCurrentThreadId(); }

/* The exported symbol at or before pc in the module that holds it, as
 * "module!name+0xoff". Executables are linked with --export-all-symbols
 * (as Linux's with -rdynamic for backtrace_symbols), so vigil's and the
 * application's functions have names; the system DLLs export theirs. */
static void symbol_of(DWORD64 pc, char *out, size_t len) {
    HMODULE m;
    if (!GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                            (LPCSTR)(uintptr_t)pc, &m)) {
        snprintf(out, len, "0x%llx", (unsigned long long)pc);
        return;
    }
    char path[MAX_PATH];
    DWORD n = GetModuleFileNameA(m, path, sizeof(path));
    path[n < sizeof(path) ? n : sizeof(path) - 1] = 0;
    const char *mod = strrchr(path, '\\');
    mod = mod ? mod + 1 : path;
    const uint8_t *base = (const uint8_t *)m;
    const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)(base + ((const IMAGE_DOS_HEADER *)base)->e_lfanew);
    IMAGE_DATA_DIRECTORY d = nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
    DWORD rva = (DWORD)(pc - (DWORD64)(uintptr_t)base), best_rva = 0;
    const char *best = NULL;
    if (d.Size) {
        const IMAGE_EXPORT_DIRECTORY *e = (const IMAGE_EXPORT_DIRECTORY *)(base + d.VirtualAddress);
        const DWORD *names = (const DWORD *)(base + e->AddressOfNames);
        const DWORD *funcs = (const DWORD *)(base + e->AddressOfFunctions);
        const WORD *ords = (const WORD *)(base + e->AddressOfNameOrdinals);
        for (DWORD i = 0; i < e->NumberOfNames; i++) {
            DWORD f = funcs[ords[i]];
            if (f <= rva && f >= best_rva) {
                best_rva = f;
                best = (const char *)base + names[i];
            }
        }
    }
    snprintf(out, len, "%s!%s+0x%lx", mod, best ? best : "?", (unsigned long)(rva - best_rva));
}

static bool system_module(const char *sym) {
    return !strncasecmp(sym, "ntdll.dll!", 10) || !strncasecmp(sym, "kernelbase.dll!", 15) ||
           !strncasecmp(sym, "kernel32.dll!", 13) || !strncasecmp(sym, "ws2_32.dll!", 11) ||
           !strncasecmp(sym, "msvcrt.dll!", 11) || !strncasecmp(sym, "ucrtbase.dll!", 13);
}

#define WALK_MAX 32

int vigil__thread_inspect(int tid, char *bt, size_t btlen, char *what, size_t whatlen) {
    if (btlen)
        bt[0] = 0;
    if (whatlen)
        what[0] = 0;
    if ((DWORD)tid == GetCurrentThreadId())
        return -ENOTSUP; /* a thread cannot stop itself to look at its own stack */
    HANDLE h = OpenThread(THREAD_SUSPEND_RESUME | THREAD_GET_CONTEXT | THREAD_QUERY_INFORMATION, FALSE, (DWORD)tid);
    if (!h)
        return vigil__win_errno(GetLastError());
    /* Only the walk happens while the thread is stopped: no allocation and
     * no name lookups (the thread may hold the heap or loader lock). */
    DWORD64 pcs[WALK_MAX];
    int n = 0;
    if (SuspendThread(h) == (DWORD)-1) {
        int rc = vigil__win_errno(GetLastError());
        CloseHandle(h);
        return rc;
    }
    CONTEXT c;
    memset(&c, 0, sizeof(c));
    c.ContextFlags = CONTEXT_FULL;
    BOOL got = GetThreadContext(h, &c); /* returns once the thread has really stopped */
    /* Frames stay on the stack it stopped with, above where it stopped: a
     * step that leaves it (a frame without unwind data inside wine's own
     * code, say) ends the walk instead of reading wild memory. */
    DWORD64 sp0 = c.Rsp;
    bool walk = bt || what;
    while (got && walk && n < WALK_MAX && c.Rip && c.Rsp >= sp0 && c.Rsp - sp0 < (64u << 20) && !(c.Rsp & 7)) {
        pcs[n++] = c.Rip;
        DWORD64 image;
        PRUNTIME_FUNCTION f = RtlLookupFunctionEntry(c.Rip, &image, NULL);
        if (!f) { /* a leaf function: the return address is on top of the stack */
            c.Rip = *(DWORD64 *)(uintptr_t)c.Rsp;
            c.Rsp += 8;
            continue;
        }
        void *handler_data;
        DWORD64 frame;
        RtlVirtualUnwind(UNW_FLAG_NHANDLER, image, c.Rip, f, &c, &handler_data, &frame, NULL);
    }
    ResumeThread(h);
    CloseHandle(h);
    if (!got)
        return -EIO;
    /* Waiting: the innermost frame is a system call stub (ntdll NtXxx or ZwXxx);
     * the call the program made is the last system frame before its own. */
    char sym0[160] = "", api[160] = "";
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        char sym[160];
        symbol_of(pcs[i], sym, sizeof(sym));
        if (i == 0)
            snprintf(sym0, sizeof(sym0), "%s", sym);
        if (!*api && i > 0 && system_module(sym) && i + 1 < n) {
            char next[160];
            symbol_of(pcs[i + 1], next, sizeof(next));
            if (!system_module(next))
                snprintf(api, sizeof(api), "%s", sym);
        }
        if (btlen && used + 2 < btlen) {
            int w = snprintf(bt + used, btlen - used, "%s\n", sym);
            if (w > 0)
                used += (size_t)w < btlen - used ? (size_t)w : btlen - used - 1;
        }
    }
    if (whatlen) {
        const char *stub = strncasecmp(sym0, "ntdll.dll!", 10) ? NULL : sym0 + 10;
        if (!stub || (strncmp(stub, "Nt", 2) && strncmp(stub, "Zw", 2)))
            snprintf(what, whatlen, "running");
        else {
            const char *bang = strchr(api, '!');
            int stub_len = (int)strcspn(stub, "+");
            int api_len = bang ? (int)strcspn(bang + 1, "+") : 0;
            snprintf(what, whatlen, "%.*s (system call %.*s)", api_len ? api_len : stub_len,
                     api_len ? bang + 1 : stub, stub_len, stub);
        }
    }
    return 0;
}

static void CALLBACK no_apc(ULONG_PTR arg) { (void)arg; /* its only job: end an alertable wait */ }

int vigil__thread_interrupt(int tid) {
    HANDLE h = OpenThread(THREAD_SET_CONTEXT | THREAD_TERMINATE, FALSE, (DWORD)tid);
    if (!h)
        return vigil__win_errno(GetLastError());
    BOOL apc = QueueUserAPC(no_apc, h, 0) != 0;
    BOOL io = CancelSynchronousIo(h); /* wine: ERROR_NOT_FOUND (docs/windows.md) */
    CloseHandle(h);
    return apc || io ? 0 : -ESRCH;
}

int vigil__thread_syscall(int tid, char *buf, size_t len) { return vigil__thread_inspect(tid, NULL, 0, buf, len); }

uint64_t vigil__thread_cpu_ns(int tid) {
    HANDLE h = OpenThread(THREAD_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)tid);
    if (!h)
        return 0;
    FILETIME c, e, k, u;
    uint64_t ns = 0;
    if (GetThreadTimes(h, &c, &e, &k, &u)) {
        uint64_t kt = ((uint64_t)k.dwHighDateTime << 32) | k.dwLowDateTime;
        uint64_t ut = ((uint64_t)u.dwHighDateTime << 32) | u.dwLowDateTime;
        ns = (kt + ut) * 100; /* 100 ns units */
    }
    CloseHandle(h);
    return ns;
}

int vigil__fd_readable(int fd) {
    WSAPOLLFD p = {.fd = (SOCKET)fd, .events = POLLRDNORM};
    int n = WSAPoll(&p, 1, 0);
    if (n < 0)
        return wsa_err();
    return n > 0 && (p.revents & (POLLRDNORM | POLLHUP | POLLERR)) ? 1 : 0;
}

/* ------------------------------------------------------ stop requests */

/* The console control handler runs on a thread of its own; the request it
 * saw goes to the waiter through an event. For a console being closed, a
 * logoff or a shutdown, the process ends when the handler returns: it gives
 * the waiter time to end the loops first. */
static HANDLE stop_event;
static volatile LONG stop_type;

static BOOL WINAPI on_console_ctrl(DWORD type) {
    InterlockedExchange(&stop_type, (LONG)type + 1);
    SetEvent(stop_event);
    if (type == CTRL_CLOSE_EVENT || type == CTRL_LOGOFF_EVENT || type == CTRL_SHUTDOWN_EVENT)
        Sleep(5000);
    return TRUE;
}

int vigil__stop_requests_catch(vigil__stop_requests *st) {
    if (!stop_event && !(stop_event = CreateEventA(NULL, FALSE, FALSE, NULL)))
        return vigil__win_errno(GetLastError());
    st->event = stop_event;
    InterlockedExchange(&stop_type, 0);
    return SetConsoleCtrlHandler(on_console_ctrl, TRUE) ? 0 : vigil__win_errno(GetLastError());
}

int vigil__stop_request_wait(vigil__stop_requests *st, int timeout_ms) {
    if (WaitForSingleObject(st->event, (DWORD)timeout_ms) != WAIT_OBJECT_0)
        return 0;
    LONG t = InterlockedExchange(&stop_type, 0);
    return t == CTRL_C_EVENT + 1 || t == CTRL_BREAK_EVENT + 1 ? SIGINT : SIGTERM;
}

void vigil__stop_requests_release(vigil__stop_requests *st) {
    (void)st;
    SetConsoleCtrlHandler(on_console_ctrl, FALSE);
}

/* Windows keeps no count of time spent ready but waiting for a CPU. */
int vigil__thread_sched(int tid, vigil__sched_files *f, uint64_t *run_ns, bool *runnable) {
    (void)tid, (void)f, (void)run_ns, (void)runnable;
    return -ENOSYS;
}

void vigil__sched_files_close(vigil__sched_files *f) { (void)f; }
