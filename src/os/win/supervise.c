/*
 * supervise.c: what the supervisor does to a loop thread on Windows
 * (os/supervise.h): no signals. The thread is suspended for as long as a
 * stack walk takes (vigil__thread_inspect, platform.c), which no call of
 * its can notice and which also makes what it wrote visible; an APC ends
 * an alertable wait (vigil__thread_interrupt). Like supervisor.c, this
 * sees of a loop only what probe.h and runner.h show.
 */
#include "os/supervise.h"
#include "os/platform.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int vigil__thread_reach_setup(vigil_supervisor_options *o) {
    if (o->backtrace_signal || o->unblock_signal)
        return -ENOTSUP; /* no signals: threads are reached by suspension and APCs */
    return 0;
}

void vigil__thread_watch_tick(vigil__thread_watch *tw, int tid, uint64_t now) {
    uint64_t cpu = vigil__thread_cpu_ns(tid);
    if (tw->cpu_tid != tid) {
        tw->cpu_tid = tid;
        tw->cpu_n = 0;
    }
    unsigned slot = tw->cpu_n % VIGIL__CPU_SAMPLES; /* the oldest sample, replaced by this one */
    unsigned first = tw->cpu_n < VIGIL__CPU_SAMPLES ? 0 : slot;
    tw->cpu_busy = tw->cpu_n == 0 || now <= tw->cpu_at[first] ||
                   (cpu - tw->cpu_ns[first]) * 4 >= now - tw->cpu_at[first];
    tw->cpu_ns[slot] = cpu;
    tw->cpu_at[slot] = now;
    tw->cpu_n++;
}

bool vigil__thread_in_syscall(const vigil__thread_watch *tw, char *sc, size_t len) {
    if (tw->cpu_busy)
        snprintf(sc, len, "running");
    return !tw->cpu_busy;
}

void vigil__thread_describe(const vigil_supervisor_options *o, const vigil__thread_watch *tw, vigil__probe *pr,
                            vigil__runner *runner, int where, vigil_stall_report *r) {
    (void)where;
    if (!(o->flags & VIGIL_SUPERVISOR_NO_BACKTRACE)) {
        if (vigil__thread_inspect(runner->tid, r->backtrace, sizeof(r->backtrace), NULL, 0) < 0)
            snprintf(r->backtrace, sizeof(r->backtrace), "(no backtrace: the thread could not be stopped)");
        const char *nl = strchr(r->backtrace, '\n');
        snprintf(r->at, sizeof(r->at), "%.*s", nl ? (int)(nl - r->backtrace) : (int)strlen(r->backtrace),
                 r->backtrace);
        void *cb = atomic_load_explicit(&pr->cb, memory_order_relaxed);
        if (cb)
            snprintf(r->callback, sizeof(r->callback), "%p", cb);
    }
    /* the call it waits in, from a second look: "running" if it used the CPU */
    if (vigil__thread_syscall(runner->tid, r->syscall, sizeof(r->syscall)) < 0)
        snprintf(r->syscall, sizeof(r->syscall), "?");
    else
        vigil__thread_in_syscall(tw, r->syscall, sizeof(r->syscall));
}

void vigil__thread_sync_writes(const vigil_supervisor_options *o, vigil__runner *runner) {
    (void)o;
    /* Stopping the thread for a look at it orders its writes before ours. */
    if (vigil__thread_inspect(runner->tid, NULL, 0, NULL, 0) == 0)
        atomic_store_explicit(&runner->acked, 1, memory_order_release);
}

int vigil__thread_unblock(const vigil_supervisor_options *o, vigil__runner *runner, char *how, size_t len) {
    (void)o;
    int rc = vigil__thread_interrupt(runner->tid);
    if (rc < 0)
        return rc;
    snprintf(how, len, "an APC");
    return 0;
}
