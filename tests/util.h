/*
 * util.h: helpers shared by the suites: loops for the backend under test,
 * running a loop until a condition holds, deterministic byte patterns, and a
 * plain blocking peer (a thread with ordinary sockets) for tests that need a
 * peer vigil does not control.
 */
#ifndef VIGIL_TEST_UTIL_H
#define VIGIL_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vigil.h"

/* The backend under test: VIGIL_TEST_BACKEND, read here and nowhere else.
 * Unset (or empty) is DEFAULT: the library's own choice (AUTO: io_uring
 * where it can, IOCP on Windows). uring (or io_uring): io_uring with
 * everything the kernel has; uring-compat: io_uring as on an older kernel
 * (one-shot accept and receive, no DEFER_TASKRUN); epoll; AUTO: auto asked
 * for by name (the runs with io_uring denied, where it means epoll), and any
 * other value. */
typedef enum vt_backend_id {
    VT_BACKEND_DEFAULT,
    VT_BACKEND_URING,
    VT_BACKEND_URING_COMPAT,
    VT_BACKEND_EPOLL,
    VT_BACKEND_AUTO,
} vt_backend_id;
vt_backend_id vt_backend(void);

/* Whether this build has io_uring (VIGIL_HAVE_URING: -During=disabled, or
 * no liburing, builds on epoll alone). Where it has not, DEFAULT and AUTO
 * mean epoll, and a test on uring or uring-compat is skipped. */
bool vt_have_uring(void);
/* Skips the test where the backend under test is not built in. vt_loop
 * calls it; a test that makes its loops in a child process calls it first
 * (a skip in the child would not end the test). */
void vt_need_backend_built(void);

/* A loop on the backend under test (vt_backend), with extra options (may be
 * NULL). Asserts on failure. */
vigil_loop *vt_loop(const vigil_loop_options *extra);

/* A loop to supervise, VIGIL_LOOP_SUPERVISED | flags, on the backend under
 * test; for uring-compat (no DEFER_TASKRUN, never rebuilt) AUTO, which picks
 * epoll, as it says. */
vigil_loop *vt_supervised_loop(uint32_t flags);

/* Starts a supervisor with opts (NULL: the defaults) and adds loop to it;
 * asserts. */
vigil_supervisor *vt_supervise(vigil_loop *loop, const vigil_supervisor_options *opts);

/* Skips the test (VT_SKIP) where the loop under test is never rebuilt:
 * uring-compat, a ring without DEFER_TASKRUN. */
void vt_need_rebuilds(void);

/* For a test that fences its loop (vt_fence_timer) and wants it rebuilt:
 * skips where that never happens (vt_need_rebuilds), else returns a loop
 * created with VIGIL_LOOP_SUPERVISED on the backend under test and watched
 * by *sv, a quiet supervisor (stall_ms 1000, tick_ms 1). */
vigil_loop *vt_fenceable_loop(vigil_supervisor **sv);

/* Runs the loop until *flag becomes nonzero or timeout_ms passes. Returns
 * true if the flag was set. */
bool vt_run_until(vigil_loop *loop, const volatile int *flag, int timeout_ms);
/* Runs until *count >= want. */
bool vt_run_until_count(vigil_loop *loop, const volatile uint64_t *count, uint64_t want, int timeout_ms);

/* Byte i of stream `seed`: a deterministic pattern to check order and content. */
static inline uint8_t vt_pattern(uint32_t seed, uint64_t i) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed << 32 | seed);
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    return (uint8_t)(x >> 56);
}
void vt_fill(uint8_t *p, size_t n, uint32_t seed, uint64_t offset);
/* Index of the first byte that does not match the pattern, or n. */
size_t vt_check(const uint8_t *p, size_t n, uint32_t seed, uint64_t offset);

/* A timer callback that asks the supervisor to fence this thread now, as if
 * it were stuck, and waits (5 s at most) until it is; ud, if not NULL, is an
 * _Atomic int set to whether it was. The loop then goes on on a new thread
 * and this one leaves its vigil_loop_run (at once with VIGIL_RUN_ONCE, see
 * vt_run_until_fenced). */
void vt_fence_timer(vigil_loop *loop, vigil_op timer, int status, void *ud);

/* Runs the loop pass by pass (VIGIL_RUN_ONCE, which returns -EOWNERDEAD to
 * a fenced thread at once, where VIGIL_RUN_DEFAULT would wait for the loop to
 * end wherever it runs) until a run fails or timeout_ms passed; returns the
 * last run's result. */
int vt_run_until_fenced(vigil_loop *loop, int timeout_ms);

/* A listener on 127.0.0.1, any port. */
vigil_listener vt_listen(vigil_loop *loop, vigil_accept_cb cb, void *ud, int *port);

/* Plain blocking sockets for a peer outside the loop. */
int vt_sock_connect(int port);            /* returns fd; asserts */
int vt_sock_listen(int *port);            /* returns listening fd on 127.0.0.1 */
int vt_sock_accept(int lfd, int timeout_ms); /* -1 on timeout */
int vt_sock_write_all(int fd, const void *p, size_t n);  /* 0 or -errno */
/* Reads exactly n bytes within timeout_ms; returns bytes read (< n on EOF/timeout). */
size_t vt_sock_read_n(int fd, void *p, size_t n, int timeout_ms);
void vt_sock_reset(int fd);               /* close with RST */
void vt_sock_close(int fd);

/* Something a test callback blocks in, as an application's callback might:
 * a pipe read on Linux (a signal interrupts it: EINTR), an alertable event
 * wait on Windows (an APC interrupts it). VT_BLOCK_CALL names the call as
 * a stall report's thread state shows it. */
typedef struct vt_blocker { intptr_t r, w; } vt_blocker;
void vt_blocker_open(vt_blocker *b);      /* asserts */
/* Waits once: 1 once released, -1 with errno EINTR when interrupted. */
int vt_blocker_wait_once(vt_blocker *b);
void vt_blocker_release(vt_blocker *b);
void vt_blocker_close(vt_blocker *b);
#ifdef _WIN32
#define VT_BLOCK_CALL "WaitForSingleObjectEx"
#else
#define VT_BLOCK_CALL "read"
#endif

/* The peer's sockets without waiting, as Winsock and POSIX both can:
 * vt_sock_nonblock asserts; vt_sock_error is the last socket call's error
 * as an errno value (Winsock keeps it apart from errno); vt_poll is poll()
 * (WSAPoll on Windows; struct pollfd comes from <poll.h> or <winsock2.h>). */
struct pollfd;
void vt_sock_nonblock(int fd);
int vt_sock_error(void);
int vt_poll(struct pollfd *p, unsigned n, int timeout_ms);

/* Leak checks: open descriptors (handles on Windows) and threads of this
 * process; vt_count_threads_named counts those whose name starts with prefix
 * (-1 where names cannot be read: Windows). */
int vt_count_fds(void);
int vt_count_threads(void);
int vt_count_threads_named(const char *prefix);

/* Raises the soft RLIMIT_NOFILE to at least want (up to the hard limit);
 * returns the new soft limit. */
long vt_raise_nofile(long want);

#endif
