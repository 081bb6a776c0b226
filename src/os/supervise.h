/*
 * supervise.h: what the supervisor does to a loop thread, which differs per
 * OS: os/linux/supervise.c reaches it with two signals (a backtrace, whose
 * handler records its frames into loop memory or acknowledges a fence; an
 * unblock, whose handler does nothing, so that a blocked system call fails
 * with EINTR) and reads a blocked one from /proc and its stack;
 * os/win/supervise.c suspends it to walk its stack (which also makes its
 * writes visible) and queues an APC to end an alertable wait. Like
 * supervisor.c, both see of a loop only what probe.h and runner.h show.
 */
#ifndef VIGIL_OS_SUPERVISE_H
#define VIGIL_OS_SUPERVISE_H

#include "core/probe.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sets up how this supervisor reaches loop threads, from its options, with
 * the defaults filled in: Linux installs the two signals' handlers (SIGRTMIN
 * + 1 and + 2 unless asked otherwise; -EINVAL for bad numbers, -EBUSY when
 * the application has a handler of its own); Windows has no signals and
 * refuses them (-ENOTSUP). 0 or -errno. */
int vigil__thread_reach_setup(vigil_supervisor_options *o);

/* What is kept of a watched loop thread between ticks. Windows: a thread's
 * CPU time moves in steps of 10 ms or more (under wine), so one tick of 25
 * ms cannot tell a spin from a wait; the window spans the last
 * VIGIL__CPU_SAMPLES ticks, a stall's length at the default tick. Linux
 * keeps nothing here: /proc says whether a thread runs. */
#define VIGIL__CPU_SAMPLES 4
typedef struct vigil__thread_watch {
    int cpu_tid;    /* the thread whose CPU time was taken at the last ticks, */
    uint64_t cpu_ns[VIGIL__CPU_SAMPLES], cpu_at[VIGIL__CPU_SAMPLES];
    unsigned cpu_n; /* samples taken of cpu_tid (the oldest at cpu_n % VIGIL__CPU_SAMPLES) */
    bool cpu_busy;  /* and whether it used a quarter of the time since the oldest */
} vigil__thread_watch;

/* Each tick, for each loop thread watched (Windows: a CPU time sample). */
void vigil__thread_watch_tick(vigil__thread_watch *tw, int tid, uint64_t now);

/* Given sc, what vigil__thread_syscall said thread tid is doing ("running",
 * or the call it waits in): true if it waits in a system call. Linux
 * believes /proc. On Windows the stack says which call, but a thread
 * spinning on a clock is often caught inside one (under wine
 * QueryPerformanceCounter is a system call), so a thread counts as waiting
 * only if it also used under a quarter of the CPU time over the last
 * VIGIL__CPU_SAMPLES ticks; sc becomes "running" when it did not. */
bool vigil__thread_in_syscall(const vigil__thread_watch *tw, char *sc, size_t len);

/* Where the loop thread is, for a stall report: r's syscall, backtrace, at
 * and callback, without disturbing the thread more than it must. where:
 * its runner's state (VIGIL__AT_*). No backtrace when o->flags has
 * VIGIL_SUPERVISOR_NO_BACKTRACE. */
void vigil__thread_describe(const vigil_supervisor_options *o, const vigil__thread_watch *tw, vigil__probe *pr,
                            vigil__runner *runner, int where, vigil_stall_report *r);

/* Just after the fence: makes what the fenced thread wrote so far visible
 * to the rebuild, as far as the OS can, and sets runner->acked when it did
 * (Linux: the backtrace signal's handler does, within 20 ms unless the
 * thread returned meanwhile; a thread in a call that holds signals back may
 * not run it. Windows: stopping the thread for a look orders its writes
 * before ours). */
void vigil__thread_sync_writes(const vigil_supervisor_options *o, vigil__runner *runner);

/* Ends the system call the loop thread waits in where the OS can (Linux:
 * the unblock signal, EINTR; Windows: an APC ends an alertable wait, and
 * CancelSynchronousIo synchronous I/O). 0 if it was asked, with how it was
 * ("signal 36", "an APC") in how; -errno if it could not be. */
int vigil__thread_unblock(const vigil_supervisor_options *o, vigil__runner *runner, char *how, size_t len);

#endif
