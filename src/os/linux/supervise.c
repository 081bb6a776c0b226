/*
 * supervise.c: what the supervisor does to a loop thread on Linux
 * (os/supervise.h). Two signals reach it: the backtrace signal, whose
 * handler records its frames into loop memory (or, on a fenced thread,
 * acknowledges the fence), and the unblock signal, whose handler does
 * nothing, so that a blocked system call fails with EINTR. A thread
 * blocked in a system call is read from /proc and its stack (stack.c)
 * instead, never signalled, so the call it waits in goes on. Like
 * supervisor.c, this sees of a loop only what probe.h and runner.h show.
 */
#include "os/supervise.h"
#include "os/platform.h"
#include "os/stack.h"

#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void on_backtrace_signal(int sig) {
    (void)sig;
    vigil__runner *r = vigil__tls_runner;
    if (r && atomic_load_explicit(&r->state, memory_order_acquire) == VIGIL__AT_FENCED) {
        /* A fenced thread: what it wrote before now is visible to whoever
         * reads acked; its loop may already be elsewhere, so touch nothing. */
        atomic_store_explicit(&r->acked, 1, memory_order_release);
        return;
    }
    vigil_loop *loop = vigil__tls_loop;
    vigil__probe *pr = loop ? vigil__probe_of(loop) : NULL;
    if (!loop || atomic_load_explicit(&pr->bt_n, memory_order_acquire) != -1)
        return;
    int n = backtrace(pr->bt_frames, (int)(sizeof(pr->bt_frames) / sizeof(pr->bt_frames[0])));
    atomic_store_explicit(&pr->bt_n, n, memory_order_release);
}

static void on_unblock_signal(int sig) { (void)sig; /* its only job: EINTR */ }

/* Installs a handler for sig unless the application has one. */
static int install(int sig, void (*fn)(int), int flags) {
    struct sigaction old, sa;
    if (sigaction(sig, NULL, &old) < 0)
        return -errno;
    if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN && old.sa_handler != fn)
        return -EBUSY; /* the application's own handler: leave it alone */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL) < 0 ? -errno : 0;
}

int vigil__thread_reach_setup(vigil_supervisor_options *o) {
    if (!o->backtrace_signal)
        o->backtrace_signal = SIGRTMIN + 1;
    if (!o->unblock_signal)
        o->unblock_signal = SIGRTMIN + 2;
    if (o->backtrace_signal == o->unblock_signal || o->backtrace_signal <= 0 || o->unblock_signal <= 0 ||
        o->backtrace_signal >= NSIG || o->unblock_signal >= NSIG)
        return -EINVAL;
    /* backtrace() may load libgcc on first use: never let that happen in the handler */
    void *warm[2];
    backtrace(warm, 2);
    int rc = install(o->backtrace_signal, on_backtrace_signal, SA_RESTART);
    if (rc == 0)
        rc = install(o->unblock_signal, on_unblock_signal, 0); /* no SA_RESTART: EINTR */
    return rc;
}

/* /proc tells a running thread from a waiting one: nothing to sample. */
void vigil__thread_watch_tick(vigil__thread_watch *tw, int tid, uint64_t now) { (void)tw, (void)tid, (void)now; }

bool vigil__thread_in_syscall(const vigil__thread_watch *tw, char *sc, size_t len) {
    (void)tw, (void)len;
    return strncmp(sc, "running", 7) != 0;
}

/* Asks a running loop thread for its backtrace (a signal whose handler calls
 * backtrace()); waits at most 50 ms. The frames after the handler's own two,
 * innermost first, into frames; returns how many (0: none came). */
static int signal_backtrace(const vigil_supervisor_options *o, vigil__probe *pr, vigil__runner *runner,
                            void **frames, int max) {
    atomic_store_explicit(&pr->bt_n, -1, memory_order_release);
    if (pthread_kill(runner->thread, o->backtrace_signal) != 0)
        return 0;
    uint64_t until = vigil__clock_ns() + 50000000ull;
    int n;
    while ((n = atomic_load_explicit(&pr->bt_n, memory_order_acquire)) < 0 && vigil__clock_ns() < until) {
        struct timespec ts = {0, 1000000}; /* 1 ms: the thread may first have to be scheduled */
        nanosleep(&ts, NULL);
    }
    if (n <= 0) {
        atomic_store_explicit(&pr->bt_n, 0, memory_order_release);
        return 0;
    }
    int k = 0;
    for (int i = 2; i < n && k < max; i++) /* frames 0-1: the handler and the signal trampoline */
        frames[k++] = pr->bt_frames[i];
    return k;
}

/* A thread blocked in a system call is read from /proc and its stack
 * (stack.c), never signalled, so the call it waits in goes on; only a
 * running thread is asked for a backtrace (unless they are off), which no
 * call of its can notice. In a callback, the scan stops at vigil's frame
 * that called it, so what it finds is the callback's own. */
void vigil__thread_describe(const vigil_supervisor_options *o, const vigil__thread_watch *tw, vigil__probe *pr,
                            vigil__runner *runner, int where, vigil_stall_report *r) {
    (void)tw;
    struct vigil__thread_look lk;
    uintptr_t limit = where == VIGIL__AT_CALLBACK ? atomic_load_explicit(&pr->cb_sp, memory_order_relaxed) : 0;
    int rc = vigil__thread_look(runner->tid, limit, &lk);
    snprintf(r->syscall, sizeof(r->syscall), "%s", lk.syscall);
    void *frames[VIGIL__LOOK_FRAMES];
    int n = 0;
    const char *note = "";
    (void)rc; /* what could be read is in lk: the call, and frames if it is blocked */
    if (lk.nframes) {
        memcpy(frames, lk.frames, (size_t)lk.nframes * sizeof(frames[0]));
        n = lk.nframes;
        note = "(read from its stack without stopping it: stale frames may be among these)\n";
    } else if (!strcmp(lk.syscall, "running") && !(o->flags & VIGIL_SUPERVISOR_NO_BACKTRACE)) {
        n = signal_backtrace(o, pr, runner, frames, VIGIL__LOOK_FRAMES);
        if (!n)
            note = "(no backtrace within 50 ms)\n";
    }
    size_t used = (size_t)snprintf(r->backtrace, sizeof(r->backtrace), "%s", note);
    for (int i = 0; i < n && used + 2 < sizeof(r->backtrace); i++) {
        char name[300];
        vigil__frame_name(frames[i], name, sizeof(name));
        int w = snprintf(r->backtrace + used, sizeof(r->backtrace) - used, "%s\n", name);
        if (w < 0)
            break;
        used += (size_t)w < sizeof(r->backtrace) - used ? (size_t)w : sizeof(r->backtrace) - used - 1;
    }
    /* "at": the innermost frame outside libc and, in a callback, outside the
     * vigil functions that callback called (vigil_now_ns in a spin, say):
     * the program's own code, where the time goes. */
    for (int i = 0; i < n && !r->at[0]; i++) {
        if (vigil__frame_is_system(frames[i]))
            continue;
        char name[sizeof(r->at)];
        vigil__frame_name(frames[i], name, sizeof(name));
        if (where == VIGIL__AT_CALLBACK && !strncmp(name, "vigil_", 6))
            continue;
        memcpy(r->at, name, sizeof(r->at));
    }
    void *cb = atomic_load_explicit(&pr->cb, memory_order_relaxed);
    if (where == VIGIL__AT_CALLBACK && cb)
        vigil__frame_name(cb, r->callback, sizeof(r->callback));
}

/* The backtrace signal's handler, on a fenced thread, publishes with a
 * release store. A thread in a syscall that holds signals back may not run
 * it: wait a little only. */
void vigil__thread_sync_writes(const vigil_supervisor_options *o, vigil__runner *runner) {
    if (pthread_kill(runner->thread, o->backtrace_signal) != 0)
        return;
    uint64_t until = vigil__clock_ns() + 20000000ull;
    while (!atomic_load_explicit(&runner->acked, memory_order_acquire) &&
           !atomic_load_explicit(&runner->returned, memory_order_acquire) && vigil__clock_ns() < until) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

int vigil__thread_unblock(const vigil_supervisor_options *o, vigil__runner *runner, char *how, size_t len) {
    int rc = pthread_kill(runner->thread, o->unblock_signal);
    if (rc != 0)
        return -rc;
    snprintf(how, len, "signal %d", o->unblock_signal);
    return 0;
}
