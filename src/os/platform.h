/*
 * platform.h: the operating-system calls the loop needs besides its backend:
 * clocks, sockets, addresses, memory, threads. One implementation per OS
 * (os/linux, os/win); every function returns 0/positive or a negative
 * errno. Where a type differs per OS it is defined here, so the core that
 * uses it needs no #ifdef.
 */
#ifndef VIGIL_PLATFORM_H
#define VIGIL_PLATFORM_H

#include "vigil.h"
#include <pthread.h>
#ifndef _WIN32
#include <signal.h>
#endif
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint64_t vigil__clock_ns(void);

/* An address in a form the kernel takes; big enough for IPv6. */
typedef struct vigil__addr { uint8_t bytes[128]; uint32_t len; } vigil__addr;

/* Parses a numeric IPv4/IPv6 address. -EINVAL if it is not one. */
int vigil__addr_parse(const char *host, uint16_t port, vigil__addr *out);

/* A Unix-domain address: a path, or "@name" for Linux's abstract namespace.
 * -ENAMETOOLONG when it does not fit, -EINVAL when empty. */
int vigil__addr_unix(const char *path, vigil__addr *out);
/* What VIGIL_O_DIRECTORY becomes in an open's flags: the OS's O_DIRECTORY,
 * or itself where the C runtime has none (Windows: files.c checks it). */
extern const int vigil__o_directory;
/* A Unix socket address as text (its path; "@name" abstract, "" unnamed):
 * -EAFNOSUPPORT for any other family, -ENOSPC if it does not fit. */
int vigil__addr_unix_text(const uint8_t *bytes, uint32_t len, char *out, size_t cap);

/* A non-blocking, close-on-exec stream socket for the address's family
 * (TCP with TCP_NODELAY, or Unix-domain). */
int vigil__tcp_socket(const vigil__addr *a, vigil_socket *out);
/* A non-blocking, close-on-exec UDP socket bound to a. */
int vigil__udp_socket(const vigil__addr *a, int reuseport, vigil_socket *out);
/* One datagram to peer (peer_len bytes of sockaddr), never waiting:
 * bytes sent, -EAGAIN when the socket buffer is full, or -errno. */
int vigil__udp_sendto(vigil_socket fd, const void *data, size_t len, const void *peer, uint32_t peer_len);
/* Binds and listens; returns 0 or -errno. */
int vigil__tcp_bind_listen(vigil_socket fd, const vigil__addr *a, int backlog, int reuseport);
int vigil__socket_port(vigil_socket fd);
/* What an fd watcher waits on (vigil_poll_start): on Linux a duplicate of
 * fd of its own (*owned: close it when the watcher ends), so that the
 * caller may close fd, and a reused number is never mistaken for it; on
 * Windows the socket itself (a SOCKET cannot be duplicated for the same
 * process). -EBADF, -ENOTSOCK (Windows), -EMFILE. */
int vigil__watch_fd(vigil_socket fd, vigil_socket *out, bool *owned);
/* The peer's address (getpeername) or its own (getsockname) into out
 * (128 bytes); *len its length. */
int vigil__socket_name(vigil_socket fd, bool peer, uint8_t *out, uint32_t *len);
/* UDP options (VIGIL_UDP_*, values checked by the caller) and multicast
 * membership (group: a numeric address of the socket's family). */
int vigil__udp_setopt(vigil_socket fd, int opt, int value);
int vigil__udp_membership(vigil_socket fd, const char *group, uint32_t ifindex, bool join);
/* Makes the sockets non-blocking and close-on-exec (accepted sockets). */
int vigil__socket_prepare_accepted(vigil_socket fd);
int vigil__socket_shutdown(vigil_socket fd, int how); /* VIGIL_SHUT_* */
int vigil__socket_set_abortive(vigil_socket fd);      /* close sends RST */
void vigil__socket_close_now(vigil_socket fd);        /* last resort, never blocks */
int vigil__socket_reset(vigil_socket fd);             /* RST to the peer, fd stays open */
/* Bytes in the socket's send queue the peer has not acknowledged (or
 * -ENOTSUP): a peer still reading what the kernel holds is not idle. */
int64_t vigil__socket_unsent(vigil_socket fd);
/* A connecting socket's state: 1 connected, 0 still connecting, -1 neither
 * (*err: the error it failed with, or 0 if it never started). */
int vigil__socket_connect_state(vigil_socket fd, int *err);
/* An fd the application hands over: must be a stream socket (-ENOTSOCK,
 * -EPROTOTYPE), listening or connected as asked (-EINVAL, -ENOTCONN); it
 * is made non-blocking and close-on-exec. */
int vigil__socket_adopt(vigil_socket fd, bool listening);
/* Socket options by vigil's names (VIGIL_OPT_*): -EINVAL for others. */
int vigil__socket_setopt(vigil_socket fd, int opt, int value);
int vigil__socket_getopt(vigil_socket fd, int opt, int *value);

/* Receive-buffer memory: page-aligned, zeroed. */
void *vigil__mem_map(size_t len);
void vigil__mem_unmap(void *p, size_t len);
void vigil__mem_guard(void *p, size_t len); /* make inaccessible */

/* Cross-thread wake primitive (eventfd): */
int vigil__wakefd_open(int *out);
int vigil__wakefd_signal(int fd);
void vigil__wakefd_close(int fd);

/* Signal masks of vigil's threads (os/linux/threads.c, os/win/threads.c).
 * A thread of vigil's that runs a loop blocks what the loop's signal
 * watchers read from their signalfd and what vigil_serve waits for, and
 * nothing else (the supervisor's signals must reach it); pool workers and
 * the supervisor block every signal. Windows has no signals to mask: the
 * set is empty there and these change nothing. */
#ifdef _WIN32
typedef struct vigil__sigset { char none; } vigil__sigset;
#else
typedef sigset_t vigil__sigset;
#endif
void vigil__sigset_empty(vigil__sigset *s);
/* Adds what vigil__stop_requests_catch catches (SIGINT and SIGTERM). */
void vigil__sigset_add_stop_requests(vigil__sigset *s);
void vigil__sigset_union(vigil__sigset *out, const vigil__sigset *a, const vigil__sigset *b);
/* The calling thread blocks s as well (block), or exactly s (mask). */
void vigil__thread_signals_block(const vigil__sigset *s);
void vigil__thread_signals_mask(const vigil__sigset *s);
/* pthread_create of a thread that blocks every signal (blocked around the
 * create, so the thread starts with them blocked), so that no
 * process-directed signal, SIGINT say, and no supervisor signal lands on
 * it: 0 or -errno. */
int vigil__thread_start_unsignalled(pthread_t *t, void *(*fn)(void *), void *arg);

/* A pool worker's cancel fd (pool.c): a cancel of the job it runs signals
 * it, and a job's wait for a pipe or socket waits for it too, so the cancel
 * ends that wait. Linux: an eventfd (open: 0 or -errno); Windows: none,
 * -1 (a running job there is never interrupted), and the rest do nothing. */
int vigil__cancel_fd_open(int *out);
void vigil__cancel_fd_signal(int fd);
void vigil__cancel_fd_drain(int fd); /* a cancel meant for an earlier job */
void vigil__cancel_fd_close(int fd);

/* Threads, for the supervisor. */
int vigil__thread_id(void);
/* What thread tid of this process is doing: "running", or the system call
 * it waits in ("read(fd 5)", "clock_nanosleep"). Returns 0 or -errno. Linux:
 * os/linux/stack.c, which also reads a blocked thread's frames (stack.h). */
int vigil__thread_syscall(int tid, char *buf, size_t len);
/* CPU time of thread tid of this process, in ns (0 if unknown): exact from
 * schedstat where the kernel has it, else tick-sampled from stat. */
uint64_t vigil__thread_cpu_ns(int tid);
/* Thread tid's time on a CPU in ns, and whether it is ready to run (on a
 * CPU or waiting for one) rather than blocked (Linux: schedstat and stat;
 * elsewhere -ENOSYS). The files stay open in *f (first: {-1, -1, 0}) between
 * calls; vigil__sched_files_close when done. */
typedef struct vigil__sched_files { int schedstat, stat, tid; } vigil__sched_files;
int vigil__thread_sched(int tid, vigil__sched_files *f, uint64_t *run_ns, bool *runnable);
void vigil__sched_files_close(vigil__sched_files *f);
/* A fenced thread's CPU share (issue 19): the supervisor lowers a fenced
 * thread's scheduling to the least there is, so that a callback that still
 * spins leaves its CPU to the rebuilt loop (Linux: SCHED_IDLE; Windows:
 * THREAD_PRIORITY_IDLE), saving what it had in *saved; the thread itself
 * puts that back when its callback returns. lower: 0 or -errno. restore
 * (on the thread itself): 0, or -errno when the OS refuses a thread to raise
 * itself again (Linux: EPERM without CAP_SYS_NICE or a RLIMIT_NICE of 20). */
typedef struct vigil__sched_saved { int policy, priority; } vigil__sched_saved;
int vigil__thread_sched_lower(int tid, vigil__sched_saved *saved);
int vigil__thread_sched_restore(const vigil__sched_saved *saved);
/* 1 if fd polls readable now, 0 if not, -errno. */
int vigil__fd_readable(int fd);

/* Stop requests, for vigil_serve: SIGINT and SIGTERM on POSIX (blocked on
 * the calling thread, which the threads it starts inherit, and read from a
 * signalfd; a handler passes on those that land on a thread of the program's
 * that does not block them; the old handlers come back at release); Ctrl-C,
 * Ctrl-Break and closing the console on Windows (a console control handler).
 * wait returns the request as a signal number (SIGINT, SIGTERM), or 0 when
 * timeout_ms passed. One at a time per process. */
typedef struct vigil__stop_requests {
#ifdef _WIN32
    void *event;
#else
    sigset_t set, old;
    int sfd, pipe_r;
    struct sigaction act[2]; /* SIGINT's and SIGTERM's before */
#endif
} vigil__stop_requests;
int vigil__stop_requests_catch(vigil__stop_requests *st);
int vigil__stop_request_wait(vigil__stop_requests *st, int timeout_ms);
void vigil__stop_requests_release(vigil__stop_requests *st);

/* Half-open connections. Keepalive: idle_s, interval_s, count all nonzero
 * turn SO_KEEPALIVE on with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT; all zero turn it
 * off; a mix, or values the kernel rejects, give -EINVAL and leave the socket
 * as it was. User timeout: TCP_USER_TIMEOUT in ms, 0 = the kernel's default. */
int vigil__socket_keepalive(vigil_socket fd, uint32_t idle_s, uint32_t interval_s, uint32_t count);
int vigil__socket_user_timeout(vigil_socket fd, uint32_t ms);

#ifdef _WIN32
/* A Windows or Winsock error code (GetLastError, WSAGetLastError) as the
 * library's negative errno; 0 stays 0. */
int vigil__win_errno(unsigned long e);
/* Stops thread tid for as long as a stack walk takes (no allocation while
 * it is stopped), then: its frames, innermost first, one
 * "module!symbol+0xoff" per line, into bt; what it does into what:
 * "running", or "SleepEx (system call ZwDelayExecution)" (the call the
 * program made and the system call it waits in). Whatever the thread
 * wrote before it was stopped is visible afterwards (bt and what both
 * NULL: only that, no walk). 0 or -errno. */
int vigil__thread_inspect(int tid, char *bt, size_t btlen, char *what, size_t whatlen);
/* Ends what thread tid waits in where Windows can: an alertable wait (a
 * queued APC) and synchronous I/O (CancelSynchronousIo; not under wine).
 * 0 if either could be asked. */
int vigil__thread_interrupt(int tid);
#endif

#endif
