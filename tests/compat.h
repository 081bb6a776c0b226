/*
 * compat.h: the system's socket headers for the suites' plain peers (the
 * test-side clients and servers vigil does not control), and the few calls
 * whose POSIX and Winsock forms differ, under names of their own. The
 * peers' sockets stay ints: a Winsock SOCKET is a handle that fits one
 * (INVALID_SOCKET becomes -1). Also in util.h, already shared: vt_poll
 * (poll or WSAPoll), vt_sock_nonblock (O_NONBLOCK or FIONBIO),
 * vt_sock_error (errno, or WSAGetLastError() as an errno value) and
 * vt_sock_close (close or closesocket).
 *
 * What Winsock simply lacks and means nothing there is defined away below
 * (no SIGPIPE: MSG_NOSIGNAL is 0; sockets are created without the
 * close-on-exec flag: SOCK_CLOEXEC is 0), and SHUT_* are Winsock's SD_*.
 * Nothing else is #defined onto a POSIX name.
 */
#ifndef VIGIL_TEST_COMPAT_H
#define VIGIL_TEST_COMPAT_H

#include <stdbool.h>
#include <stddef.h>
#include <unistd.h> /* usleep: mingw-w64 has it too */

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>

#define MSG_NOSIGNAL 0
#define SOCK_CLOEXEC 0
#define SHUT_RD SD_RECEIVE
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH

/* After connect() on a non-blocking socket: true if it is under way
 * (EINPROGRESS; Winsock says WSAEWOULDBLOCK). */
static inline bool vt_connect_pending(void) { return WSAGetLastError() == WSAEWOULDBLOCK; }

/* Bytes waiting to be read (FIONREAD), or -1. */
static inline int vt_sock_pending(int fd) {
    u_long n = 0;
    return ioctlsocket((SOCKET)fd, FIONREAD, &n) ? -1 : (int)n;
}

/* recv() that does not wait (MSG_DONTWAIT): Winsock has no such flag, so
 * the socket is non-blocking for the one call. */
static inline int vt_recv_now(int fd, void *p, size_t n) {
    u_long on = 1, off = 0;
    ioctlsocket((SOCKET)fd, FIONBIO, &on);
    int r = recv((SOCKET)fd, p, (int)n, 0);
    int e = WSAGetLastError();
    ioctlsocket((SOCKET)fd, FIONBIO, &off);
    WSASetLastError(e);
    return r;
}

/* A receive time limit (SO_RCVTIMEO: a DWORD of ms on Winsock). */
static inline int vt_sock_recv_timeout(int fd, int ms) {
    DWORD t = (DWORD)ms;
    return setsockopt((SOCKET)fd, SOL_SOCKET, SO_RCVTIMEO, (const char *)&t, sizeof(t));
}

#else /* POSIX */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>

static inline bool vt_connect_pending(void) { return errno == EINPROGRESS; }

static inline int vt_sock_pending(int fd) {
    int n = 0;
    return ioctl(fd, FIONREAD, &n) ? -1 : n;
}

static inline int vt_recv_now(int fd, void *p, size_t n) { return (int)recv(fd, p, n, MSG_DONTWAIT); }

static inline int vt_sock_recv_timeout(int fd, int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}
#endif

#endif
