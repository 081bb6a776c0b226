/*
 * vigil.h: the whole public API of vigil, a completion-based event loop.
 *
 * Conventions
 * - Names: vigil_<object>_<verb> (vigil_conn_send, vigil_timer_start); getters
 *   and setters are _get_<what> and _set_<what>. Durations are milliseconds
 *   (_ms), times from vigil_now_ns nanoseconds.
 * - Option structs: zero-initialise and set what you need (0 is the
 *   default); their reserved tail must stay zero, so that fields added later
 *   keep old programs working. Result structs (info, stats) are zeroed
 *   whole, reserved tail included, before they are filled.
 * - Every call that can fail returns a negative errno (-EINVAL, -EBADF, ...);
 *   0 or a positive value means success. No call sets errno.
 * - Handles (vigil_conn, vigil_listener, vigil_op, vigil_udp) are small
 *   values, not pointers: a slot, a generation and their loop. A handle that
 *   was closed, finished, never valid or belongs to another loop is rejected
 *   with -EBADF; it can never reach freed memory.
 * - Threads: a loop belongs to one thread at a time, its owner: the first
 *   one that runs it or calls into it after create, the next one after
 *   vigil_loop_handover(), or a thread of vigil's (vigil_loop_start(),
 *   vigil_serve(), a rebuild). Only vigil_loop_post(), vigil_loop_wake(),
 *   vigil_loop_stop(), vigil_loop_join(), the get_stats, get_info, get_id,
 *   set_data and get_data calls of a loop or supervisor, and the calls that
 *   take no loop (vigil_now_ns, vigil_strerror, vigil_addr_*) may be called
 *   from other threads, and vigil_loop_destroy() of a loop run by a thread
 *   of vigil's; any other call from another thread returns -EPERM.
 * - Callbacks (every one in this header but the supervisor's) run on the
 *   loop's owner thread, inside vigil_loop_run() or vigil_loop_destroy(),
 *   never two at once: after a rebuild on vigil's new thread for the loop,
 *   and only once the fenced callback has returned (unless the loop has
 *   VIGIL_LOOP_INDEPENDENT_CALLBACKS: then they may run there beside it).
 *   The supervisor's callbacks (on_stall, on_budget, log) run on the
 *   supervisor's thread. Each operation gets exactly one final callback.
 *   No vigil call runs a callback before it returns: what a call causes
 *   (a cancel, a close's failed sends) is called back from the loop later,
 *   so a callback may call vigil while it walks its own lists.
 * - A supervised loop may be rebuilt on a thread of vigil's own when its
 *   thread is stuck (see the supervisor below): the loop, its handles and
 *   its connections go on there, and the stuck thread is fenced off. Every
 *   call on the loop that a fenced thread makes fails with -EOWNERDEAD and
 *   changes nothing (calls that take no loop, like vigil_now_ns, work as
 *   ever); a callback that sees -EOWNERDEAD should return at once.
 * - fork(): a loop does not survive fork(). The child must not use or
 *   destroy a loop inherited from the parent; it may create new ones.
 */
#ifndef VIGIL_H
#define VIGIL_H

#include <stddef.h>
#include <stdint.h>

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks what the library exports. The shared library is built with hidden
 * visibility (meson: gnu_symbol_visibility), so on ELF only these names are
 * in its dynamic symbol table; elsewhere (mingw's static library) it is empty. */
#ifndef VIGIL_API
#if defined(__ELF__) && (defined(__GNUC__) || defined(__clang__))
#define VIGIL_API __attribute__((visibility("default")))
#else
#define VIGIL_API
#endif
#endif

#define VIGIL_VERSION_MAJOR 0
#define VIGIL_VERSION_MINOR 2
#define VIGIL_VERSION_PATCH 0
#define VIGIL_VERSION_STRING "0.2.0"

/* What a call that would start something new on a loop (a timer, a
 * listener, a connect, a file call, a lookup, work, a watcher) returns,
 * negated, from a final callback while the loop is being destroyed; what
 * acts on what exists (a send, a close) follows its own rules. ESHUTDOWN
 * where the C library has it; Windows' C runtime lacks it, and vigil defines
 * nothing in your namespace. */
#ifdef ESHUTDOWN
#define VIGIL_ESHUTDOWN ESHUTDOWN
#else
#define VIGIL_ESHUTDOWN 1058 /* WSAESHUTDOWN's number */
#endif

/* Returns VIGIL_VERSION_STRING of the library actually linked. */
VIGIL_API const char *vigil_version(void);

/* An operating-system socket: an fd on POSIX, a SOCKET on Windows. */
#ifdef _WIN32
typedef uintptr_t vigil_socket;
#else
typedef int vigil_socket;
#endif

typedef struct vigil_loop vigil_loop;
typedef struct vigil_conn { uint64_t id; } vigil_conn;         /* a TCP connection */
typedef struct vigil_listener { uint64_t id; } vigil_listener; /* a listening socket */
typedef struct vigil_op { uint64_t id; } vigil_op;             /* one operation */

/* ------------------------------------------------------------------ loop */

/* AUTO uses io_uring, and falls back to epoll when io_uring is missing or
 * denied (ENOSYS, EPERM, EINVAL, or a required feature missing), never on
 * ENOMEM or EMFILE. With AUTO, the environment variable VIGIL_BACKEND=uring|
 * epoll|auto forces one (any other value: -EINVAL). Forcing io_uring where it
 * is unavailable fails with its error. vigil_loop_info says what was chosen
 * and why. */
typedef enum vigil_backend {
    VIGIL_BACKEND_AUTO = 0,
    VIGIL_BACKEND_URING, /* io_uring, or fail */
    VIGIL_BACKEND_EPOLL, /* epoll (Linux) */
} vigil_backend;

/* Loop options. Zero-initialise and set what you need; 0 means the default. */
typedef struct vigil_loop_options {
    vigil_backend backend;
    uint32_t ring_entries; /* submission queue entries; default 1024 */
    uint32_t buf_size;     /* bytes per receive buffer; default 16384 */
    uint32_t buf_count;    /* receive buffers (a power of two); default 1024 */
    uint32_t flags;        /* VIGIL_LOOP_* below */
    uint32_t pool_threads; /* the loop's pool (lookups, vigil_work_queue, file calls on
                              epoll): threads; default 4, at most 64 */
    uint32_t pool_queue;   /* ... and jobs waiting for one; default 1024 (then -EAGAIN) */
    /* Batched waits (io_uring on Linux 6.12 and later; elsewhere ignored, see
     * VIGIL_FEATURE_BATCH_WAIT): a wait returns once wait_batch completions
     * have come since it began (those already there, such as the sends it
     * has just submitted, are handled with them), or wait_batch_us after it
     * began if at least one is there; an idle loop still sleeps until its
     * first one. Fewer wake-ups for a thread
     * handling many connections (a load generator: 0.6-0.75x the CPU per
     * request, bench/README.md), at the price of up to wait_batch_us of
     * delay on each completion (keep it well under a supervisor's stall_ms:
     * completions left waiting that long look like a stall). Both 0
     * (default: each completion wakes the loop) or both set: wait_batch
     * 2..4096, wait_batch_us 1..100000. vigil_loop_set_wait_batch changes
     * them as the loop runs. */
    uint32_t wait_batch;
    uint32_t wait_batch_us;
    uint64_t reserved[3];  /* zero: room for options to come (else -EINVAL) */
} vigil_loop_options;

/* Turn off kernel features, to exercise the degraded paths (tests, diagnosis). */
#define VIGIL_LOOP_NO_MULTISHOT_ACCEPT (1u << 0)
#define VIGIL_LOOP_NO_MULTISHOT_RECV   (1u << 1)
#define VIGIL_LOOP_NO_DEFER_TASKRUN    (1u << 2) /* also drops SINGLE_ISSUER */
/* The loop will be supervised: with AUTO, use io_uring only with
 * DEFER_TASKRUN (a stuck thread's ring then moves no bytes, so a rebuild is
 * exact), else epoll, and say so in vigil_loop_info.reason. */
#define VIGIL_LOOP_SUPERVISED          (1u << 3)
/* The program's callbacks may run on the rebuilt loop's thread while a
 * fenced callback of the loop still runs on its old one: its connections
 * share no state, or it locks what they share. Without it (the default) no
 * callback of the loop runs until the fenced one has returned (see the
 * supervisor below). Either way the fenced callback's own connection gets
 * no callback until it returned. */
#define VIGIL_LOOP_INDEPENDENT_CALLBACKS (1u << 4)

/* What the loop chose, and why. Strings are static or live as long as the loop. */
typedef struct vigil_loop_info {
    const char *backend;  /* "io_uring" or "epoll" */
    const char *reason;   /* why this backend, e.g. "auto: io_uring unavailable (EPERM: ...)" */
    uint32_t ring_flags;  /* setup flags that were accepted by the kernel */
    uint32_t features;    /* VIGIL_FEATURE_* in use */
    uint32_t ring_entries, cq_entries, buf_size, buf_count;
    uint64_t reserved[4];  /* zeroed: room for what is to come */
} vigil_loop_info;

#define VIGIL_FEATURE_MULTISHOT_ACCEPT (1u << 0)
#define VIGIL_FEATURE_MULTISHOT_RECV   (1u << 1)
#define VIGIL_FEATURE_BUF_RING         (1u << 2)
#define VIGIL_FEATURE_NODROP           (1u << 3)
#define VIGIL_FEATURE_CANCEL_FD        (1u << 4)
#define VIGIL_FEATURE_DEFER_TASKRUN    (1u << 5)
#define VIGIL_FEATURE_SINGLE_ISSUER    (1u << 6)
#define VIGIL_FEATURE_EXT_ARG          (1u << 7)
#define VIGIL_FEATURE_BATCH_WAIT       (1u << 8) /* wait_batch works here (the kernel's minimum wait) */

/* Creates a loop. opts may be NULL. Returns 0 and sets *out, or -errno:
 * -ENOSYS/-EPERM/-ENOTSUP when io_uring was forced and is unavailable,
 * -EINVAL for bad options, -ENOMEM, -EMFILE. */
VIGIL_API int vigil_loop_create(vigil_loop **out, const vigil_loop_options *opts);

typedef enum vigil_run_mode {
    VIGIL_RUN_DEFAULT = 0, /* until vigil_loop_stop() or no work is left */
    VIGIL_RUN_ONCE,        /* wait for at least one event (or the timeout), handle it */
    VIGIL_RUN_NOWAIT,      /* handle what is ready now, never wait */
} vigil_run_mode;

/* Runs the loop. timeout_ms < 0 means no limit; otherwise run returns after
 * about that long even if nothing happened. ONCE and NOWAIT deliver
 * everything that is ready after the wait (completions, timers, posts, file
 * calls, lookups, signals), and ONCE does not wait at all once a callback
 * ran in that call. Returns 1 if the loop still has work (ops, timers,
 * connections), 0 if it has none, or -errno; -EBUSY when called from inside
 * a callback. If the supervisor fences this thread in a callback (see
 * below), ONCE and NOWAIT return -EOWNERDEAD when the callback returns;
 * DEFAULT waits until the loop, rebuilt on a thread of vigil's, has ended
 * there (as vigil_loop_join) and returns that run's result, or -EOWNERDEAD
 * if timeout_ms passed first. */
VIGIL_API int vigil_loop_run(vigil_loop *loop, vigil_run_mode mode, int timeout_ms);

/* Makes vigil_loop_run() return soon. Safe from any thread and from signal
 * handlers that do not interrupt the loop thread itself. */
VIGIL_API int vigil_loop_stop(vigil_loop *loop);

/* Wakes a sleeping loop without posting anything. Safe from any thread. */
VIGIL_API int vigil_loop_wake(vigil_loop *loop);

/* Hands a loop that is not running over to another thread: the calling
 * thread, its owner, lets it go, and the next thread that calls into it owns
 * it from then on (its backend is made anew there: an io_uring ring answers
 * to one thread). So a loop can be created and set up on one thread and run
 * on another. 0 at once for a loop nobody owns yet; -EBUSY while it runs;
 * -EPERM from a thread that does not own it. */
VIGIL_API int vigil_loop_handover(vigil_loop *loop);

/* Runs the loop on a thread of vigil's ("vigil-loopN") as
 * vigil_loop_run(VIGIL_RUN_DEFAULT) would: until vigil_loop_stop() or until
 * it has no work. Hands it over first (the caller must own it, or nobody).
 * Then vigil_loop_join() waits for it and vigil_loop_destroy() may be called
 * from any thread. -EBUSY if a thread of vigil's runs it already; -EPERM
 * from a thread that does not own it. */
VIGIL_API int vigil_loop_start(vigil_loop *loop);

/* Waits until a loop run by a thread of vigil's (vigil_loop_start, or a
 * rebuild: see the supervisor) has ended, and no callback of it that the
 * supervisor fenced still runs (timeout_ms < 0: no limit; -ETIMEDOUT). 0 at
 * once for a loop that never ran on such a thread. Any thread, but not
 * while the loop is being destroyed. */
VIGIL_API int vigil_loop_join(vigil_loop *loop, int timeout_ms);

/* The main() of a program that must not go wrong (README): runs each loop on
 * a thread of vigil's (vigil_loop_start) and waits on the calling thread for
 * SIGINT or SIGTERM (Ctrl-C or closing the console on Windows), or for every
 * loop to end by itself. On a stop request, on_stop is posted to each loop
 * (a graceful end: close listeners, say goodbye; the loop then ends when it
 * has no work) or, without one, each loop is stopped; after stop_ms, or a
 * second request, each loop is stopped where it is. Returns once every loop
 * has ended: the signal that stopped them (SIGINT, SIGTERM), 0 if they ended
 * by themselves, or -errno: -EDEADLK if a callback the supervisor fenced did
 * not return (it gets 250 ms at most once its loop ended, within stop_ms), -ETIMEDOUT if a
 * loop did not end within stop_ms + 100 ms (its thread is stuck and was not
 * fenced); do not destroy the loops then: end the process (the README's
 * main() does). SIGINT and SIGTERM are blocked on the calling
 * thread (restored at the end) and on vigil's threads; block them on
 * threads of your own started earlier, or one of those may get them. */
typedef void (*vigil_post_cb)(vigil_loop *loop, int status, void *arg);
typedef struct vigil_serve_options {
    uint32_t stop_ms;      /* after a stop request; default 2000 */
    vigil_post_cb on_stop; /* posted to each loop at a stop request (a post: behind the gate it
                              waits like any callback); NULL: vigil_loop_stop */
    void *ud;              /* on_stop's arg */
    uint64_t reserved[4];  /* zero (else -EINVAL) */
} vigil_serve_options;
VIGIL_API int vigil_serve(vigil_loop *const *loops, size_t n, const vigil_serve_options *opts);

/* Destroys the loop, which must not be running (-EBUSY; also while a
 * callback the supervisor fenced has not returned: it may still use what
 * the final callbacks free; end the process instead). Everything still open gets
 * its final callback, in this order:
 *   1. timers (status -ECANCELED), in deadline order, then signal watchers,
 *      then fd watchers;
 *   2. listeners (accept callback, status -ECANCELED);
 *   3. each connection: its connect, then its sends in queue order, then its
 *      receive, each with -ECANCELED; then its close callback; then each
 *      UDP socket's receive and queued datagrams (-ECANCELED);
 *   4. file calls, lookups and work (-ECANCELED, or their result if they
 *      could not be called back: work that runs is waited for);
 *   5. posted callbacks not yet run (status -ECANCELED), in post order.
 * The kernel is then given time to finish every op before memory is freed.
 * Returns 0 or -errno (-EBUSY when called from a callback or while running).
 * A rebuilt loop may be destroyed from any thread (the fenced one too, once
 * its vigil_loop_run returned): it is stopped, and its own thread runs the
 * final callbacks and then ends. */
VIGIL_API int vigil_loop_destroy(vigil_loop *loop);

VIGIL_API int vigil_loop_get_info(const vigil_loop *loop, vigil_loop_info *out);

/* Progress counters, written by the loop thread, readable from any thread
 * without locks (each field is read atomically; the set is not a snapshot). */
typedef struct vigil_loop_stats {
    uint64_t iterations;       /* passes through the loop */
    uint64_t completions;      /* kernel completions handled */
    uint64_t ops_in_flight;    /* kernel ops submitted and not yet finished */
    uint64_t last_progress_ns; /* CLOCK_MONOTONIC time of the last pass */
    uint64_t stale_completions;/* completions for ops that no longer exist: dropped */
    uint64_t cq_overflows;     /* times the completion queue overflowed (nothing lost) */
    uint64_t enobufs_rearms;   /* receives re-armed after the buffer ring ran dry */
    uint64_t accept_emfile;    /* accepts paused because the process ran out of fds */
    uint64_t connections;      /* open connections */
    uint64_t deadlines_expired;/* connect, send and receive-idle deadlines that ended an op */
    uint64_t deadline_shutdowns;/* hung sockets shut down (FIN) because a deadline passed */
    /* rebuilds (see the supervisor) */
    uint64_t rebuilds;         /* times the loop was rebuilt on a new thread and backend */
    uint64_t conns_migrated;   /* connections carried over, summed over rebuilds */
    uint64_t bytes_carried;    /* received bytes the fenced loop had not delivered yet */
    uint64_t ops_reissued;     /* ops whose request died with a fenced backend, issued again */
    uint64_t stuck_returned;   /* fenced callbacks that came back (their connection moved over) */
    uint64_t stuck_reset;      /* connections reset because their callback stayed stuck */
    uint64_t refused_calls;    /* calls from fenced threads refused with -EOWNERDEAD */
    uint64_t last_rebuild_us;  /* time the last rebuild took, fence excluded */
    /* the gate: callbacks held while a fenced callback still runs */
    uint64_t gated;            /* 1 while the loop's callbacks wait for a fenced one */
    uint64_t events_held;      /* completions and events waiting behind the gate now */
    uint64_t events_held_total;/* ... held in all */
    uint64_t reserved[8];      /* zeroed: room for counters to come */
} vigil_loop_stats;

VIGIL_API int vigil_loop_get_stats(const vigil_loop *loop, vigil_loop_stats *out);

/* Changes the loop's batched waits (vigil_loop_options.wait_batch and
 * wait_batch_us, the same values; both 0: off), from its own thread. A
 * wait for more completions than can come sits out all of wait_batch_us
 * each time: a program that knows how many it awaits keeps wait_batch
 * below that (vigil bench --http: half the requests in flight, and off
 * under 4). Where batched waits do not work (no VIGIL_FEATURE_BATCH_WAIT)
 * the values are kept and change nothing. 0 or -EINVAL. */
VIGIL_API int vigil_loop_set_wait_batch(vigil_loop *loop, uint32_t wait_batch, uint32_t wait_batch_us);

/* Attaches the program's data to a loop, returned by vigil_loop_get_data
 * (NULL until set). Any thread (an atomic pointer). */
VIGIL_API int vigil_loop_set_data(vigil_loop *loop, void *data);
VIGIL_API void *vigil_loop_get_data(const vigil_loop *loop);

/* A monotonic clock in nanoseconds (the one timers and deadlines use). */
VIGIL_API uint64_t vigil_now_ns(void);

/* Runs fn(loop, 0, arg) on the loop thread soon. Safe from any thread; wakes
 * the loop. If the loop is destroyed first, fn(loop, -ECANCELED, arg) runs. */
VIGIL_API int vigil_loop_post(vigil_loop *loop, vigil_post_cb fn, void *arg);

/* ---------------------------------------------------------------- timers */

/* status: 0 when the timer fires; -ECANCELED when cancelled or on destroy
 * (final). A one-shot timer's firing is its final callback; a repeating
 * timer's final callback is always the -ECANCELED one. */
typedef void (*vigil_timer_cb)(vigil_loop *loop, vigil_op timer, int status, void *ud);

/* Fires after delay_ms, then every repeat_ms if repeat_ms > 0. Timers due at
 * the same millisecond fire in the order they were started. */
VIGIL_API int vigil_timer_start(vigil_loop *loop, uint64_t delay_ms, uint64_t repeat_ms,
                                vigil_timer_cb cb, void *ud, vigil_op *out);

/* Starts a live timer over: it fires next delay_ms from now, then every
 * repeat_ms (0: once), as if started now, with the same callback and
 * handle. A one-shot timer that fired has ended: -EBADF (start a new one). */
VIGIL_API int vigil_timer_restart(vigil_loop *loop, vigil_op timer, uint64_t delay_ms,
                                  uint64_t repeat_ms);

/* ------------------------------------------------------------ operations */

/* Cancels any operation: a timer (callback -ECANCELED), a connect (its
 * callback -ECANCELED, the connection is closed), a receive (final callback
 * -ECANCELED), a queued send that has not started (-ECANCELED). A send whose
 * bytes have partly gone out cannot be cut from the stream: -EBUSY (abort
 * the connection instead). Also a file call (see "files" for what cannot be
 * called back), a lookup or connect by name, a signal watcher, a UDP receive
 * or a datagram still queued. -EBADF if op is not live. The callback runs
 * later, never inside vigil_op_cancel(). */
VIGIL_API int vigil_op_cancel(vigil_loop *loop, vigil_op op);

/* Gives a file call or a lookup a deadline: ms from now it ends with
 * -ETIMEDOUT as vigil_op_cancel would end it (see "files" for what cannot
 * be called back). Setting it again replaces it; 0 removes it. -EINVAL for
 * other ops (a connect, a send and a receive take theirs when started),
 * -EBADF if op is not live. */
VIGIL_API int vigil_op_set_deadline(vigil_loop *loop, vigil_op op, uint32_t ms);

/* ------------------------------------------------------------- addresses */

/* A socket address: IPv4 or IPv6 address and port, or a Unix socket's path
 * (opaque bytes, as the kernel takes them). */
typedef struct vigil_addr { uint8_t bytes[128]; uint32_t len; } vigil_addr;
/* From a numeric host ("127.0.0.1", "::1") and a port; -EINVAL otherwise. */
VIGIL_API int vigil_addr_parse(vigil_addr *addr, const char *host, uint16_t port);
/* To text: the numeric host (a Unix socket: its path, "@name" for the
 * abstract namespace; "" unnamed) and the port (0 for a Unix socket).
 * -ENOSPC if cap is too small, -EAFNOSUPPORT for another family. */
VIGIL_API int vigil_addr_format(const vigil_addr *addr, char *host, size_t cap, uint16_t *port);

/* ------------------------------------------------------------------- TCP */

/* Socket addresses are passed as text, "127.0.0.1" or "::1", and a port. */
typedef struct vigil_listener_options {
    const char *host; /* numeric IPv4 or IPv6 address; NULL = "127.0.0.1" */
    uint16_t port;    /* 0 = any free port; see vigil_listener_get_port() */
    int backlog;      /* 0 = SOMAXCONN */
    int reuseport;    /* nonzero: SO_REUSEPORT, for one listener per loop/thread */
    const char *path; /* non-NULL: a Unix-domain socket at this path instead ("@name":
                         Linux's abstract namespace); the file is not removed on close */
    uint64_t reserved[4]; /* zero (else -EINVAL) */
} vigil_listener_options;

/* conn is valid when status == 0. status < 0 is final: -ECANCELED after
 * vigil_listener_close() or on destroy, or a fatal accept error. Running out
 * of file descriptors (EMFILE/ENFILE) is not reported here: accepting pauses
 * and retries (see vigil_loop_stats.accept_emfile). */
typedef void (*vigil_accept_cb)(vigil_loop *loop, vigil_listener l, int status,
                                vigil_conn conn, void *ud);

VIGIL_API int vigil_listener_open(vigil_loop *loop, const vigil_listener_options *opts,
                                  vigil_accept_cb cb, void *ud, vigil_listener *out);
/* Returns the bound port (> 0) or -errno. */
VIGIL_API int vigil_listener_get_port(vigil_loop *loop, vigil_listener l);
/* Stops accepting and closes the socket; the accept callback ends -ECANCELED. */
VIGIL_API int vigil_listener_close(vigil_loop *loop, vigil_listener l);

/* status 0: connected, and conn can be used. < 0 (final; the connection is
 * gone, its close callback does not run): -ECONNREFUSED, -ETIMEDOUT (the
 * deadline), -ECANCELED, ... */
typedef void (*vigil_connect_cb)(vigil_loop *loop, vigil_conn conn, int status, void *ud);

/* Connects to host:port (numeric address). deadline_ms 0 = none. The
 * callback brings the connection. *out, when out is not NULL, is valid at
 * once (it may be closed or aborted before the connect ends), usable after
 * the callback says 0. op may be NULL. */
VIGIL_API int vigil_conn_connect(vigil_loop *loop, const char *host, uint16_t port, uint32_t deadline_ms,
                                 vigil_connect_cb cb, void *ud, vigil_conn *out, vigil_op *op);

/* Connects to the Unix-domain stream socket at path ("@name": abstract
 * namespace), as vigil_conn_connect does otherwise. -ENAMETOOLONG if the path
 * does not fit (107 bytes). */
VIGIL_API int vigil_conn_connect_unix(vigil_loop *loop, const char *path, uint32_t deadline_ms,
                                      vigil_connect_cb cb, void *ud, vigil_conn *out, vigil_op *op);

/* Sockets the application already has (systemd socket activation's fd 3 on,
 * a socketpair, an inherited socket): vigil makes the socket non-blocking
 * and close-on-exec and owns it from then on; on an error it stays the
 * caller's. -ENOTSOCK, -EPROTOTYPE (not a stream socket), -EINVAL (not
 * listening, or listening when a connection was asked for), -ENOTCONN. */
VIGIL_API int vigil_listener_adopt(vigil_loop *loop, vigil_socket fd, vigil_accept_cb cb, void *ud,
                                   vigil_listener *out);
VIGIL_API int vigil_conn_adopt(vigil_loop *loop, vigil_socket fd,
                               vigil_conn *out); /* usable at once */

/* Socket options. -EOPNOTSUPP for TCP options on a Unix socket, -EINVAL for
 * an unknown option or a negative value. */
#define VIGIL_OPT_NODELAY 1 /* 1: small writes go out at once (vigil's default); 0: Nagle */
#define VIGIL_OPT_SNDBUF 2  /* bytes; Linux doubles what it is given, and reports that */
#define VIGIL_OPT_RCVBUF 3
VIGIL_API int vigil_conn_set_option(vigil_loop *loop, vigil_conn conn, int opt, int value);
VIGIL_API int vigil_conn_get_option(vigil_loop *loop, vigil_conn conn, int opt, int *value);

/* A received buffer, valid during the receive callback. */
typedef struct vigil_buf {
    const uint8_t *data;
    size_t len;
    uint32_t id;        /* for vigil_buf_keep() */
    uint32_t truncated; /* UDP: the datagram was longer than the buffer; the rest is gone */
} vigil_buf;

/* status > 0: buf holds status bytes. 0: the peer closed (EOF). < 0: an error
 * (-ECONNRESET, -ETIMEDOUT after the receive deadline, -ECANCELED after
 * vigil_op_cancel or close). 0 and < 0 are final; buf is NULL then. The buffer
 * goes back to the pool when the callback returns, unless it was kept. */
typedef void (*vigil_recv_cb)(vigil_loop *loop, vigil_conn conn, int status,
                              const vigil_buf *buf, void *ud);

/* Starts receiving (multishot where the kernel has it). idle_deadline_ms > 0
 * ends the receive with -ETIMEDOUT when nothing moved for that long: no byte
 * arrived and the peer's TCP acknowledged none of what was sent (paused or
 * not). A reader frees its window in steps of about two segments (128 KiB
 * on loopback, a few KiB on Ethernet): one reading less per deadline looks
 * idle. On Windows, where a send's progress shows only when it completes, a
 * send that takes longer than the deadline to go out counts as nothing
 * moving. A timed-out socket is treated as hung: unsent messages fail with
 * -ETIMEDOUT and both directions are shut down (the peer sees FIN); close
 * or abort the connection to release it. op may be NULL. -EALREADY if a
 * receive is running. */
VIGIL_API int vigil_conn_recv_start(vigil_loop *loop, vigil_conn conn, uint32_t idle_deadline_ms,
                                    vigil_recv_cb cb, void *ud, vigil_op *op);
/* Backpressure: stop taking bytes from the socket (they wait in the kernel)
 * and resume. No callback for either; bytes already received are delivered
 * after resume, in order. A paused receive still ends when the stream breaks
 * (a send failed: the peer reset; a deadline passed), with that error, after
 * the bytes already received (io_uring may have received some before the
 * pause took hold; epoll none). Closing or cancelling it drops them: no data
 * callback comes after vigil_conn_close. Pausing a paused receive or resuming
 * a running one does nothing (0). Both return -ENOTCONN once the receive has
 * ended (or none was started); after a break vigil_conn_send is -EPIPE. A
 * receive's end does not close the connection: it stays the program's until
 * vigil_conn_close or vigil_conn_abort. */
VIGIL_API int vigil_conn_recv_pause(vigil_loop *loop, vigil_conn conn);
VIGIL_API int vigil_conn_recv_resume(vigil_loop *loop, vigil_conn conn);

/* Keeps the buffer of the current receive callback past its return; give it
 * back with vigil_buf_release() and a copy of *buf. Kept buffers are not available to receive
 * into: keep few, or the loop runs out (it then waits, losing nothing). */
VIGIL_API int vigil_buf_keep(vigil_loop *loop, const vigil_buf *buf);
VIGIL_API int vigil_buf_release(vigil_loop *loop, const vigil_buf *kept);

/* status: bytes sent (the whole message) or -errno (-ECANCELED, -ETIMEDOUT,
 * -EPIPE, -ECONNRESET). Final. */
typedef void (*vigil_send_cb)(vigil_loop *loop, vigil_conn conn, int status, void *ud);

/* Queues len bytes (copied) behind earlier sends on this connection; they go
 * out in order, partial sends continue internally. Called from a callback,
 * the send starts when the loop is about to wait, with every other message
 * the pass queued on this connection (one vectored send for a head and its
 * body); called outside the loop's run, at once. cb may be NULL. len 0 is
 * a message too: its callback (status 0) comes once every earlier message
 * went out.
 * deadline_ms > 0: if the message has not fully gone out by then, the
 * stream is broken (the socket is shut down both ways, and the peer may
 * see a reset): every unsent message ends with -ETIMEDOUT (a stream cannot
 * skip bytes), and the handle stays valid until the program closes it.
 * op may be NULL. */
VIGIL_API int vigil_conn_send(vigil_loop *loop, vigil_conn conn, const void *data, size_t len,
                              uint32_t deadline_ms, vigil_send_cb cb, void *ud, vigil_op *op);

/* As vigil_conn_send, without the copy: data belongs to vigil until the
 * callback (status or error): keep it valid and unchanged until then, a
 * rebuild included. For large or long-lived buffers (a file's pages, a
 * static response). */
VIGIL_API int vigil_conn_send_nocopy(vigil_loop *loop, vigil_conn conn, const void *data,
                                     size_t len, uint32_t deadline_ms, vigil_send_cb cb, void *ud,
                                     vigil_op *op);

/* As vigil_conn_send, of n pieces gathered (copied) into one message: one
 * callback, no other message between the pieces. At most 1024 pieces. */
typedef struct vigil_iov { const void *base; size_t len; } vigil_iov;
VIGIL_API int vigil_conn_sendv(vigil_loop *loop, vigil_conn conn, const vigil_iov *iov, size_t n,
                               uint32_t deadline_ms, vigil_send_cb cb, void *ud, vigil_op *op);

/* As vigil_conn_send_nocopy, of len bytes of the file fd from offset: they
 * go from the file to the socket without passing through your memory or a
 * copy of vigil's. Windows: TransmitFile. Linux: sent from a read-only
 * mapping of the file; pages not in memory are read in on the loop's pool
 * first, so a cold disk never stalls the loop thread. The loop keeps a
 * file's mapping for its next messages until about a second after the last
 * one ends (at most 64 unused), so a file deleted meanwhile frees its disk
 * space that much later. Ordered with the connection's other messages,
 * carried across a rebuild, one callback. Keep fd open until the callback.
 * fd: a regular file open for reading (Windows: a C runtime fd, as
 * vigil_fs_open returns). At once: -EBADF, fd is not open; -ENODEV, not a
 * regular file; -EACCES, not open for reading; -EINVAL, offset < 0;
 * -EMSGSIZE, len > INT32_MAX (send a larger file as several messages);
 * -ENODATA, the file is shorter than offset + len. If it is cut short
 * later, before its bytes went, the message fails with -ENODATA and the
 * stream breaks (the peer gets a reset): a stream cannot skip bytes. The
 * checks and the mapping run on the loop thread without reading the file
 * (on a network file system they may wait for the server). Windows' client
 * editions run two TransmitFile calls at a time, system-wide (the rest
 * wait); its server editions have no such limit. */
VIGIL_API int vigil_conn_send_file(vigil_loop *loop, vigil_conn conn, int fd, int64_t offset, size_t len,
                                   uint32_t deadline_ms, vigil_send_cb cb, void *ud, vigil_op *op);

/* Bytes queued and not yet confirmed sent on conn, or -errno. */
VIGIL_API int64_t vigil_conn_send_queued(vigil_loop *loop, vigil_conn conn);

/* When the queue grows past high_bytes, vigil_conn_send still queues (nothing is
 * refused) and returns 1 instead of 0, each time while it stays past; when
 * it then drains to low_bytes or less, cb runs once. No drain callback comes
 * after the close callback. When the queue empties because the stream broke, cb
 * runs only if no receive is running (the receive's final callback says it
 * then; the sends' callbacks say it either way). high_bytes 0 turns this off. */
typedef void (*vigil_drain_cb)(vigil_loop *loop, vigil_conn conn, void *ud);
VIGIL_API int vigil_conn_set_watermark(vigil_loop *loop, vigil_conn conn, size_t high_bytes,
                                       size_t low_bytes, vigil_drain_cb cb, void *ud);

/* how: VIGIL_SHUT_WR sends FIN after the queued sends; VIGIL_SHUT_RD stops
 * the receive (final callback 0). */
#define VIGIL_SHUT_RD 1
#define VIGIL_SHUT_WR 2
VIGIL_API int vigil_conn_shutdown(vigil_loop *loop, vigil_conn conn, int how);

/* Final callback of a connection, after every op on it ended. status: 0 for a
 * graceful close that flushed everything; -ETIMEDOUT if the flush deadline
 * passed and the rest was discarded; -ECONNABORTED after an abort; the error
 * that broke the stream before the close (-ECONNRESET, -EPIPE, -ETIMEDOUT
 * after a deadline); -ECANCELED when vigil_loop_destroy ended it. */
typedef void (*vigil_close_cb)(vigil_loop *loop, vigil_conn conn, int status, void *ud);

/* Graceful: stops receiving (receive ends -ECANCELED), sends what is queued
 * (bounded by flush_deadline_ms; 0 = 30000), then FIN. It then reads and
 * discards until the peer's FIN, for at most 2 s (within the deadline), and
 * closes: closing with unread bytes would send RST, which can destroy the
 * last bytes before the peer reads them. cb may be NULL (here and for
 * abort). Until the close callback the handle is still the connection's: a
 * send then fails with -EPIPE, another close or an abort with -EBADF. */
VIGIL_API int vigil_conn_close(vigil_loop *loop, vigil_conn conn, uint32_t flush_deadline_ms,
                               vigil_close_cb cb, void *ud);
/* Abort: discards queued sends (-ECANCELED), closes with RST. */
VIGIL_API int vigil_conn_abort(vigil_loop *loop, vigil_conn conn, vigil_close_cb cb, void *ud);

/* Half-open ("zombie") connections. Keepalive probes a silent peer after
 * idle_ms, every interval_ms, count times (0, 0, 0 turns it off); Linux
 * counts in whole seconds, so both are rounded up to one. A user timeout
 * bounds how long sent data may stay unacknowledged (TCP_USER_TIMEOUT; 0 =
 * the kernel's default): a vanished host then fails the connection with
 * -ETIMEDOUT. A live but stuck peer keeps acknowledging: only an idle
 * deadline catches it (vigil_conn_recv_start's idle_deadline_ms). On Windows
 * before 10 1709 (and under wine) the count is the system's, 10: another
 * count returns -ENOTSUP; a user timeout needs TCP_MAXRTMS (10 1703) or a
 * whole number of seconds (TCP_MAXRT), else -ENOTSUP. */
VIGIL_API int vigil_conn_set_keepalive(vigil_loop *loop, vigil_conn conn, uint32_t idle_ms,
                                       uint32_t interval_ms, uint32_t count);
VIGIL_API int vigil_conn_set_user_timeout(vigil_loop *loop, vigil_conn conn, uint32_t ms);

/* The connection's addresses: its peer's and its own (getpeername and
 * getsockname). -ENOTCONN once the peer is gone (a reset). */
VIGIL_API int vigil_conn_get_peer(vigil_loop *loop, vigil_conn conn, vigil_addr *out);
VIGIL_API int vigil_conn_get_local(vigil_loop *loop, vigil_conn conn, vigil_addr *out);

/* The connection's socket (for setsockopt and the like; do not close it). */
VIGIL_API vigil_socket vigil_conn_get_socket(vigil_loop *loop, vigil_conn conn);

/* Attaches user data to a connection, returned by vigil_conn_get_data(). */
VIGIL_API int vigil_conn_set_data(vigil_loop *loop, vigil_conn conn, void *data);
VIGIL_API void *vigil_conn_get_data(vigil_loop *loop, vigil_conn conn);

/* ------------------------------------------------------------------- UDP */

typedef struct vigil_udp { uint64_t id; } vigil_udp; /* a datagram socket */


typedef struct vigil_udp_options {
    const char *host; /* numeric address to bind; NULL = "127.0.0.1" */
    uint16_t port;    /* 0 = any free port (vigil_udp_get_port) */
    int reuseport;
    uint64_t reserved[4]; /* zero (else -EINVAL) */
} vigil_udp_options;

/* A bound, non-blocking UDP socket. */
VIGIL_API int vigil_udp_open(vigil_loop *loop, const vigil_udp_options *opts, vigil_udp *out);
VIGIL_API int vigil_udp_get_port(vigil_loop *loop, vigil_udp u);

/* status >= 0: a datagram of status bytes (0 is a datagram too) in buf, from
 * *from, both valid during the callback (buf can be kept as for TCP); a
 * datagram longer than the loop's buf_size is cut, with buf->truncated set.
 * < 0, final: -ECANCELED after vigil_op_cancel or vigil_udp_close, or an error.
 * Datagrams the kernel dropped (a full socket buffer) are not seen here:
 * count them with the peer's sequence numbers. */
typedef void (*vigil_udp_recv_cb)(vigil_loop *loop, vigil_udp u, int status, const vigil_buf *buf,
                                  const vigil_addr *from, void *ud);
/* Receives with recvmsg into the loop's buffer pool (multishot where the
 * kernel has it). -EALREADY if a receive runs. */
VIGIL_API int vigil_udp_recv_start(vigil_loop *loop, vigil_udp u, vigil_udp_recv_cb cb, void *ud,
                                   vigil_op *op);

/* status: bytes sent (the whole datagram) or -errno. Final. */
typedef void (*vigil_udp_send_cb)(vigil_loop *loop, vigil_udp u, int status, void *ud);
/* Sends one datagram of len bytes (copied; at most 65507) to *to, in order
 * behind earlier ones; when the socket buffer is full it waits there (never
 * dropped by vigil). cb may be NULL; a queued datagram can be cancelled. */
VIGIL_API int vigil_udp_send(vigil_loop *loop, vigil_udp u, const vigil_addr *to, const void *data,
                             size_t len, vigil_udp_send_cb cb, void *ud, vigil_op *op);
/* Ends the receive and queued sends (-ECANCELED) and closes the socket. */
VIGIL_API int vigil_udp_close(vigil_loop *loop, vigil_udp u);

/* Socket options of a UDP socket; each applies to the socket's family
 * (IPv6: hop limits). -EINVAL for an unknown option or a value out of range
 * (TTLs 0-255, the others 0 or 1). */
#define VIGIL_UDP_BROADCAST      1 /* 1: may send to broadcast addresses (IPv4) */
#define VIGIL_UDP_TTL            2 /* hops for unicast datagrams */
#define VIGIL_UDP_MULTICAST_TTL  3 /* hops for multicast datagrams; default 1 */
#define VIGIL_UDP_MULTICAST_LOOP 4 /* 1 (default): this host's members get what it sends */
VIGIL_API int vigil_udp_set_option(vigil_loop *loop, vigil_udp u, int opt, int value);
/* Joins or leaves a multicast group (numeric address of the socket's
 * family) on the interface with index ifindex (0: the system's choice).
 * The socket must be bound to the group's port (vigil_udp_options). */
VIGIL_API int vigil_udp_join(vigil_loop *loop, vigil_udp u, const char *group, uint32_t ifindex);
VIGIL_API int vigil_udp_leave(vigil_loop *loop, vigil_udp u, const char *group, uint32_t ifindex);

/* ----------------------------------------------------------------- names */

/* Name lookups run getaddrinfo on the loop's worker pool (the one file calls
 * use on epoll; made on first use on every backend), so they see what the
 * system resolver sees: /etc/hosts, DNS per /etc/resolv.conf, nsswitch.
 * status > 0: that many addresses, numeric text for vigil_conn_connect, valid
 * during the callback, in getaddrinfo's order; < 0: -ENOENT (no such name,
 * or none of that family), -EAGAIN (the name server did not answer),
 * -ETIMEDOUT (the deadline), -ECANCELED, -EIO. Final. getaddrinfo cannot be
 * interrupted: a cancelled or timed-out lookup is answered at once, and its
 * pool thread finishes on its own (vigil_loop_destroy waits for it for 2 s
 * at most, then leaves it behind). */
typedef void (*vigil_resolve_cb)(vigil_loop *loop, vigil_op op, int status,
                                 const char *const *addrs, void *ud);

/* family: 0 any, 4 IPv4 only, 6 IPv6 only. At most 16 addresses. A
 * deadline: vigil_op_set_deadline on *op. */
VIGIL_API int vigil_resolve_start(vigil_loop *loop, const char *name, int family,
                                  vigil_resolve_cb cb, void *ud, vigil_op *op);

/* Looks name up, then connects to each address in turn until one answers,
 * all within deadline_ms (0 = none). The callback is vigil_conn_connect's:
 * it brings the connection, valid when status is 0 (there is none before); else the last address's error, -ENOENT from
 * the lookup, -ETIMEDOUT or -ECANCELED (vigil_op_cancel on *op). A numeric
 * address works too. */
VIGIL_API int vigil_conn_connect_name(vigil_loop *loop, const char *name, uint16_t port,
                                      uint32_t deadline_ms, vigil_connect_cb cb, void *ud, vigil_op *op);

/* ---------------------------------------------------------- fd readiness */

/* Watches an fd the loop does not own (a socket of libcurl's, c-ares', a
 * database client's; on Linux also a pipe, an eventfd, a terminal) and
 * calls back while it is ready, as poll(2) would say: status > 0 is the
 * VIGIL_POLL_* of events that are ready now (an error or hang-up shows as
 * ready: the next read or write says which); the program does the reading
 * or writing. Level-triggered: while the fd stays ready, a callback comes
 * each pass of the loop. < 0, final: -ECANCELED after vigil_op_cancel or on
 * destroy; an error of the fd's. After vigil_op_cancel no readiness
 * callback comes, only the final one (a library may close the fd at once). events 0 watches nothing until updated.
 * On Linux vigil watches a duplicate of fd of its own: closing fd does not
 * end the watcher, which goes on watching the open file until cancelled
 * (cancel it first). On Windows fd must be a socket, watched itself: cancel
 * the watcher before closing it. The watcher keeps the loop running, and
 * outlives a rebuild. */
#define VIGIL_POLL_READABLE 1u
#define VIGIL_POLL_WRITABLE 2u
typedef void (*vigil_poll_cb)(vigil_loop *loop, vigil_op watcher, int status, void *ud);
VIGIL_API int vigil_poll_start(vigil_loop *loop, vigil_socket fd, uint32_t events, vigil_poll_cb cb,
                               void *ud, vigil_op *op);
/* Changes what the watcher waits for (0: nothing, for now). */
VIGIL_API int vigil_poll_update(vigil_loop *loop, vigil_op watcher, uint32_t events);

/* ------------------------------------------------------------------ work */

/* The program's own blocking or CPU-heavy work, off the loop thread: work
 * runs on a thread of the loop's pool (the one lookups and, on epoll, file
 * calls use: vigil_loop_options.pool_threads; -EAGAIN once pool_queue items
 * wait), then done runs on the loop thread with work's return value as
 * status, or -ECANCELED if the item was cancelled before a pool thread took
 * it up. Work that has started runs to its end (vigil_op_cancel: -EBUSY),
 * and done always comes after it returned, so ud may be freed in done. A
 * rebuild leaves the pool alone: done then runs on the loop's new thread.
 * vigil_loop_destroy cancels what has not started and waits, without a
 * limit, for what runs. work may start before vigil_work_queue returns: set
 * up all it uses first. work runs on another thread: of vigil it may call
 * only what any thread may (vigil_loop_post, _wake, _stop). */
typedef int (*vigil_work_fn)(void *ud);
typedef void (*vigil_work_cb)(vigil_loop *loop, vigil_op op, int status, void *ud);
VIGIL_API int vigil_work_queue(vigil_loop *loop, vigil_work_fn work, vigil_work_cb done, void *ud,
                               vigil_op *op);

/* ----------------------------------------------------------------- files */

/* File calls that never block the loop thread. On io_uring they run on a
 * second ring of the loop's own; on epoll on a pool of the loop's own
 * threads (vigil_loop_options.pool_threads and .pool_queue). On Windows a
 * read or write of a file the loop opened is an overlapped request on its
 * completion port, the rest runs on the pool; fds are the C runtime's, and
 * paths UTF-8. All outlive a rebuild: a file call in flight when the loop is
 * fenced completes on the new thread. Paths are copied; buffers must stay
 * valid until the callback.
 *
 * status: open: the new fd (never inherited by a child); read, write: bytes moved
 * (short counts happen, as with pread and pwrite); fsync, stat, close: 0;
 * or -errno. Final.
 *
 * Cancel and deadlines: a call still waiting for the kernel or a pool
 * thread ends with -ECANCELED (or -ETIMEDOUT after its deadline), as does
 * one blocked on a pipe, socket or terminal. A call on a regular file that
 * has reached the disk, a FUSE server or NFS cannot be called back: it runs
 * to its end and reports its real result (an open may then still return an
 * fd: close it). vigil_loop_destroy waits for such calls for 2 s; then an
 * open, stat, fsync or close still running ends with -ECANCELED and its
 * thread is left to finish alone (it closes what it opened). A read or
 * write is waited for until it returns: it may still fill your buffer. */
typedef void (*vigil_fs_cb)(vigil_loop *loop, vigil_op op, int status, void *ud);

#define VIGIL_FS_CWD (-100)          /* dir_fd: relative to the working directory */
#define VIGIL_O_BENEATH 0x40000000   /* open flag: the path may not leave dir_fd (no
                                      * absolute paths, ".." or symlinks out): -EXDEV */
/* Two open flags of vigil's own, so that one program builds on every OS and
 * under strict -std=c11 (the rest are the C library's O_RDONLY, O_CREAT,
 * ...; Windows' runtime lacks O_DIRECTORY and O_CLOEXEC, and vigil defines
 * nothing in your namespace). */
#define VIGIL_O_DIRECTORY 0x20000000 /* -ENOTDIR unless path is a directory */
#define VIGIL_O_CLOEXEC 0            /* what vigil opens is never inherited anyway */

/* Opens path relative to dir_fd (VIGIL_FS_CWD, or a directory's fd) with
 * open(2) flags and mode. op may be NULL (it is needed for a deadline:
 * vigil_op_set_deadline, here and for every file call).
 * Never waits for a peer, on every backend: the open itself runs with
 * O_NONBLOCK, which the fd keeps only if flags has it. A FIFO opens at
 * once for reading (reads then wait for data, cancellably) and fails
 * -ENXIO for writing while it has no reader; a device opens as with
 * O_NONBLOCK (no wait for a carrier); a socket fails -ENXIO; a file under
 * another process's lease fails -EAGAIN (its break has begun). Check the
 * type with vigil_fs_stat(loop, fd, "") to serve regular files only. On
 * Windows a named pipe with no free instance fails at once. */
VIGIL_API int vigil_fs_open(vigil_loop *loop, int dir_fd, const char *path, int flags,
                            uint32_t mode, vigil_fs_cb cb, void *ud, vigil_op *op);
/* Reads or writes len bytes at offset; offset -1 uses and moves the file
 * position (pipes, terminals). len is capped at 2 GiB - 4 KiB. */
VIGIL_API int vigil_fs_read(vigil_loop *loop, int fd, void *buf, size_t len, int64_t offset,
                            vigil_fs_cb cb, void *ud, vigil_op *op);
VIGIL_API int vigil_fs_write(vigil_loop *loop, int fd, const void *buf, size_t len, int64_t offset,
                             vigil_fs_cb cb, void *ud, vigil_op *op);
#define VIGIL_FSYNC_DATA 1u /* fdatasync: data, and only the metadata needed to read it */
VIGIL_API int vigil_fs_fsync(vigil_loop *loop, int fd, uint32_t flags, vigil_fs_cb cb, void *ud,
                             vigil_op *op);

typedef struct vigil_stat {
    uint64_t size, blocks, ino, dev, nlink;
    uint32_t mode, uid, gid; /* mode: type and permission bits, as st_mode */
    int64_t atime_ns, mtime_ns, ctime_ns;
} vigil_stat;
/* Stats path relative to dir_fd, or dir_fd itself when path is "" (fstat).
 * Symlinks are followed. *out is written before the callback. */
VIGIL_API int vigil_fs_stat(vigil_loop *loop, int dir_fd, const char *path, vigil_stat *out,
                            vigil_fs_cb cb, void *ud, vigil_op *op);
/* Closes fd. cb may be NULL (here and for every call but open). */
VIGIL_API int vigil_fs_close(vigil_loop *loop, int fd, vigil_fs_cb cb, void *ud, vigil_op *op);

/* --------------------------------------------------------------- signals */

/* status > 0: the signal arrived (once or more since the last callback:
 * Linux merges a standard signal that is already pending). < 0, final:
 * -ECANCELED after vigil_op_cancel or on destroy. */
typedef void (*vigil_signal_cb)(vigil_loop *loop, vigil_op watcher, int status, void *ud);

/* Delivers signo as a loop event, through a signalfd the loop reads, so the
 * signal never interrupts a callback or a syscall. The signal is blocked
 * on the calling thread (threads it creates later inherit that) and on
 * vigil's own threads (supervisor, rebuilt loops, pool); block it yourself
 * on threads that already exist, or the kernel may deliver it to one of
 * them. It stays blocked when the watcher ends. Several watchers of one
 * signal each get it; a signal watched by two loops goes to one of them.
 * -EINVAL: no callback, or signo is not a signal that can be watched
 * (SIGKILL, SIGSTOP, and SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, which
 * belong to the thread that faults). Do not watch the supervisor's two
 * signals. The watcher keeps the loop running until cancelled. */
VIGIL_API int vigil_signal_start(vigil_loop *loop, int signo, vigil_signal_cb cb, void *ud,
                                 vigil_op *op);

/* ------------------------------------------------------------ supervisor */

/* One supervisor thread watches any number of loops. A loop is stalled when
 * its thread has been away from the kernel wait for longer than stall_ms (in
 * a callback, or in library code), or waits there while work is ready that
 * it has not taken up. An idle loop is never stalled; long cooperative work
 * calls vigil_loop_mark_progress() and is not stalled either.
 *
 * On a stall the supervisor, on its own thread: reports it (a backtrace of
 * the loop thread, taken with a signal and a bounded wait; the syscall it is
 * in, from /proc; the op and connection it is handling; counters) to
 * on_stall and to the log hook (default: one line on stderr containing
 * "stall"), at most once per report_interval_ms per loop; then, if the
 * thread is blocked in a syscall, unblocks it after unblock_ms with a signal
 * whose handler is installed without SA_RESTART (the syscall fails with
 * EINTR). It installs handlers only for its two signal numbers and refuses
 * (-EBUSY) if the application already handles them.
 *
 * If the loop is still stalled fence_ms after detection, with its thread in
 * a callback (spinning, or blocked again), the supervisor fences the thread
 * and rebuilds the loop on a new thread with a new backend, carrying every
 * listener, timer, connection, received byte and queued send over. Until
 * the stuck callback returns, none of the loop's callbacks runs there (the
 * gate: your callbacks never run on two threads at once); the rebuilt
 * thread keeps the kernel side going (sends go out, receives fill the
 * buffer pool, connections are accepted) and delivers everything, in order,
 * once it returned. VIGIL_LOOP_INDEPENDENT_CALLBACKS lets them run beside
 * it. The fenced thread, still spinning perhaps, gets the least CPU the OS
 * gives (Linux: SCHED_IDLE; Windows: idle thread priority) so that it does
 * not halve the rebuilt loop on a shared CPU, and its own scheduling back
 * when its callback returns (on Linux only where a thread may raise itself
 * again: CAP_SYS_NICE or an RLIMIT_NICE of 20; else it stays idle). The
 * fence's log line says that it yielded.
 * If the stuck callback does not return within grace_ms of the fence,
 * its connection is reset (RST to the peer, -EOWNERDEAD to its receive and unsent
 * messages). The stuck thread is never killed. Reports describe a thread
 * blocked in a system call from /proc and its stack, without a signal, so
 * watching never cuts a call short; time a thread spent ready to run but
 * without a CPU is not a stall. docs/supervisor.md opens with the whole
 * contract. A thread stuck in vigil's own code or in the
 * kernel wait is reported and interrupted but not fenced (its tables may be
 * mid-change). At most budget_rebuilds rebuilds per budget_window_ms and
 * loop: past that, on_budget runs, then budget_action. Supervised io_uring
 * loops need DEFER_TASKRUN (Linux 6.1+), the guarantee that a stuck thread's
 * ring moves no bytes; create loops you supervise with VIGIL_LOOP_SUPERVISED,
 * which picks epoll where DEFER_TASKRUN is missing. An io_uring loop without
 * it is watched, reported and interrupted, but never rebuilt (logged once,
 * at vigil_supervisor_add). */
typedef struct vigil_supervisor vigil_supervisor;

typedef struct vigil_stall_report {
    uint32_t loop_id;          /* vigil_loop_get_id() */
    uint64_t stalled_ms;       /* since the loop last made progress (time it waited
                                  for a CPU not counted) */
    const char *where;         /* "callback", "library" or "kernel wait" */
    const char *op;            /* kind of op being handled: "recv", "timer", ... or "" */
    vigil_conn conn;           /* its connection, or {0} */
    char callback[160];        /* in a callback: the function vigil called, named (a
                                  function of an executable linked with -rdynamic, or of
                                  a shared library, by its name; a static one as
                                  module+offset with the addr2line command that names it) */
    char at[256];              /* the innermost frame outside libc and, in a callback,
                                  outside the vigil functions it called: "symbol+0x1f (module)" or
                                  "module+0x1234 (addr2line -f -e PATH 0x1234)"; "" if unknown */
    char syscall[96];          /* "running", or the call it waits in: "read(fd 5)" */
    char backtrace[2048];      /* one frame per line, innermost first ("" if none) */
    uint64_t ops_in_flight, completions, iterations, cq_overflows;
    uint64_t events_held;      /* behind the gate (a fenced callback still runs) */
} vigil_stall_report;

typedef enum vigil_budget_action {
    VIGIL_BUDGET_EXIT = 0, /* log it and exit the process with status 70 */
    VIGIL_BUDGET_EPOLL,    /* rebuild once more, on epoll, with a fresh budget */
    VIGIL_BUDGET_REPORT,   /* stop rebuilding this loop; keep reporting */
} vigil_budget_action;

typedef struct vigil_supervisor_options {
    uint32_t stall_ms;           /* default 100 */
    uint32_t tick_ms;            /* how often loops are checked; default stall_ms / 4 */
    uint32_t unblock_ms;         /* after the report; default stall_ms; UINT32_MAX = never */
    uint32_t report_interval_ms; /* per loop; default 1000 */
    uint32_t fence_ms;           /* after the report: fence and rebuild; default stall_ms;
                                    UINT32_MAX = never rebuild */
    uint32_t grace_ms;           /* for the stuck callback to return; default 1000 */
    uint32_t budget_rebuilds;    /* at most this many rebuilds per loop ... default 5 */
    uint32_t budget_window_ms;   /* ... in this long; default 10000 */
    vigil_budget_action budget_action;
    int backtrace_signal;        /* default SIGRTMIN + 1 */
    int unblock_signal;          /* default SIGRTMIN + 2 */
    uint32_t flags;              /* VIGIL_SUPERVISOR_* below */
    /* All run on the supervisor thread. */
    void (*on_stall)(const vigil_stall_report *r, void *ud);
    void (*on_budget)(uint32_t loop_id, void *ud); /* before budget_action */
    void (*log)(const char *line, void *ud); /* NULL: stderr */
    void *ud;
    uint64_t reserved[4];        /* zero (else -EINVAL) */
} vigil_supervisor_options;

/* Reports take no backtrace of a running thread (no signal is sent to it):
 * they name the callback and, for a thread blocked in a system call, what
 * its stack shows, as always. */
#define VIGIL_SUPERVISOR_NO_BACKTRACE (1u << 0)

typedef struct vigil_supervisor_stats {
    uint64_t ticks, stalls, reports, reports_suppressed, threads_unblocked, recoveries;
    uint64_t fences, rebuilds, rebuild_failures, budget_exceeded;
    uint64_t rebuild_us_max, rebuild_us_sum; /* fence to every op re-issued */
    uint64_t rebuild_hist[8]; /* rebuild time in ms: <1, <2, <5, <10, <20, <50, <100, more */
    uint64_t detect_ms_max, detect_ms_sum; /* detection latency: stall start to report */
    uint64_t detect_hist[8]; /* detection latency in units of stall_ms/4: <=4, 5, 6, 8, 12, 16, 32, more */
    uint64_t cpu_ns;         /* the supervisor thread's own CPU time */
    uint64_t starved;        /* times a loop was late only for want of a CPU: not stalls */
    uint64_t reserved[8];    /* zeroed: room for counters to come */
} vigil_supervisor_stats;

/* Starts the supervisor thread. opts may be NULL. */
VIGIL_API int vigil_supervisor_start(vigil_supervisor **out, const vigil_supervisor_options *opts);
/* Watch or stop watching a loop. Any thread. remove returns once the
 * supervisor no longer touches the loop; destroy a loop only after that. */
VIGIL_API int vigil_supervisor_add(vigil_supervisor *s, vigil_loop *loop);
VIGIL_API int vigil_supervisor_remove(vigil_supervisor *s, vigil_loop *loop);
VIGIL_API int vigil_supervisor_get_stats(vigil_supervisor *s, vigil_supervisor_stats *out);
/* Stops and joins the thread, frees it. Loops must have been removed. */
VIGIL_API int vigil_supervisor_stop(vigil_supervisor *s);

/* Marks progress from long cooperative work on the loop thread. */
VIGIL_API int vigil_loop_mark_progress(vigil_loop *loop);
/* A small number naming the loop in reports and logs. */
VIGIL_API uint32_t vigil_loop_get_id(const vigil_loop *loop);

/* ---------------------------------------------------------------- errors */

/* A short, static description of a negative errno value from vigil, true
 * for every way vigil returns it (the kernel's reasons included). */
VIGIL_API const char *vigil_strerror(int err);
/* Its name: "EINVAL" for -EINVAL, "OK" for 0, "EUNKNOWN" for what vigil
 * does not know by name. Static. */
VIGIL_API const char *vigil_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif /* VIGIL_H */
