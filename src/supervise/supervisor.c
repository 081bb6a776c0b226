/*
 * supervisor.c: one thread that watches loops, reports stalls, unblocks a
 * loop thread stuck in a syscall, and fences a thread stuck in a callback so
 * that the loop is rebuilt on a new thread (rebuild.c), within a restart
 * budget. docs/supervisor.md has the state machine and why each step is safe.
 *
 * The supervisor only reads what the loop publishes for it (atomics: the
 * runner's state, the op and connection being handled, the time of the last
 * progress, the next deadline, posts waiting, the backend's poll fd). Its
 * actions on a loop thread are the OS's (os/supervise.h: on Linux two
 * signals, a backtrace, whose handler records frames into loop memory, and
 * an unblock, whose handler does nothing, so that a blocked syscall fails
 * with EINTR; on Windows a suspension for a stack walk and an APC) and one
 * compare-and-swap of the runner's state from CALLBACK to FENCED. It never
 * touches the loop's tables, ring or connections: the rebuild thread does,
 * once it owns them.
 */
#include "core/probe.h" /* with core/runner.h: all it may see of a loop */
#include "os/backends.h"
#include "os/platform.h"
#include "os/supervise.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct watched {
    vigil_loop *loop;
    vigil__probe *p;       /* what the loop publishes: all the supervisor reads */
    bool stalled;          /* in a stall we have counted */
    uint64_t stall_since;  /* last progress when the stall was found */
    uint64_t reported_ns;  /* last report (rate limit) */
    uint64_t unblocked_ns; /* last unblock signal */
    bool rebuilding;       /* a thread of rebuild.c is taking the loop over */
    bool no_rebuilds;      /* the budget ran out, action REPORT */
    int target;            /* backend of the next rebuild (VIGIL_BACKEND_AUTO: the same) */
    uint64_t *rebuilt_ns;  /* times of the last budget_rebuilds rebuilds, a ring */
    uint32_t timed_seen;   /* sv_rebuilds_timed last logged */
    uint32_t rebuilt_pos;
    vigil__thread_watch tw;   /* what the OS keeps of the loop thread between ticks */
    vigil__sched_files sched; /* Linux: the loop thread's schedstat and stat, kept open */
    uint64_t sched_at, sched_run; /* the last sample: when, and its CPU time then */
    uint64_t base_progress;   /* the stretch without progress being measured, */
    uint64_t starved_ns;      /* and how much of it the thread was ready but given no CPU */
    uint64_t starved_since;  /* the stretch last counted as starvation */
    uint64_t starved_reported_ns;
    bool gated;              /* its callbacks wait for a fenced one (as last seen) */
    uint64_t gate_t0, resets_seen;
} watched;

struct vigil_supervisor {
    vigil_supervisor_options o;
    pthread_t thread;
    _Atomic int tid; /* the supervisor thread's, once it runs (stats read it) */
    pthread_mutex_t lock; /* guards the list; held while a tick looks at loops */
    pthread_cond_t cond;
    watched *w;
    uint32_t n, cap;
    bool stop;
    struct {
        _Atomic uint64_t ticks, stalls, reports, reports_suppressed, threads_unblocked, recoveries,
            detect_ms_max, detect_ms_sum, detect_hist[8], fences, rebuilds, rebuild_failures,
            budget_exceeded, rebuild_us_max, rebuild_us_sum, rebuild_hist[8], starved;
    } st;
};

static void log_line(vigil_supervisor *s, const char *line) {
    if (s->o.log)
        s->o.log(line, s->o.ud);
    else
        fprintf(stderr, "%s\n", line);
}

static void stat_add(_Atomic uint64_t *c, uint64_t d) { atomic_fetch_add_explicit(c, d, memory_order_relaxed); }

/* What the loop thread is doing, into sc ("running", or the call it waits
 * in); true if it waits in a system call (as the OS can tell:
 * vigil__thread_in_syscall). */
static bool thread_waits(const watched *w, vigil__runner *runner, char *sc, size_t len) {
    if (vigil__thread_syscall(runner->tid, sc, len) < 0) {
        snprintf(sc, len, "?");
        return false;
    }
    return vigil__thread_in_syscall(&w->tw, sc, len);
}

static const char *where_name(int where) {
    return where == VIGIL__AT_CALLBACK ? "callback" : where == VIGIL__AT_WAIT ? "kernel wait" : "library";
}

static void report(vigil_supervisor *s, watched *w, vigil__runner *runner, uint64_t now,
                   uint64_t age_ns) {
    vigil_loop *loop = w->loop;
    vigil__probe *pr = w->p;
    vigil_stall_report r;
    memset(&r, 0, sizeof(r));
    r.loop_id = pr->id;
    r.stalled_ms = age_ns / 1000000;
    int where = atomic_load_explicit(&runner->state, memory_order_acquire);
    r.where = where_name(where);
    r.op = vigil__op_kind_name(atomic_load_explicit(&pr->op_kind, memory_order_relaxed));
    r.conn.id = atomic_load_explicit(&pr->conn, memory_order_relaxed);
    vigil__thread_describe(&s->o, &w->tw, pr, runner, where, &r);
    vigil_loop_stats ls;
    vigil_loop_get_stats(loop, &ls);
    r.ops_in_flight = ls.ops_in_flight;
    r.completions = ls.completions;
    r.iterations = ls.iterations;
    r.cq_overflows = ls.cq_overflows;
    r.events_held = ls.events_held;
    w->reported_ns = now;
    stat_add(&s->st.reports, 1);
    char held[48] = "";
    if (r.events_held)
        snprintf(held, sizeof(held), ", %llu events held", (unsigned long long)r.events_held);
    char line[768];
    snprintf(line, sizeof(line),
             "vigil: stall: loop %u stalled %llu ms in %s%s%s (op %s, conn %#llx), thread %s, %llu ops in "
             "flight%s; at %s",
             r.loop_id, (unsigned long long)r.stalled_ms, r.where, *r.callback ? " " : "", r.callback,
             *r.op ? r.op : "-", (unsigned long long)r.conn.id, r.syscall,
             (unsigned long long)r.ops_in_flight, held, *r.at ? r.at : "?");
    log_line(s, line);
    if (s->o.on_stall)
        s->o.on_stall(&r, s->o.ud);
}

/* ------------------------------------------------------ fence and rebuild */

static void hist_add(_Atomic uint64_t *hist, uint64_t us) {
    static const uint64_t edges_us[7] = {1000, 2000, 5000, 10000, 20000, 50000, 100000};
    int b = 0;
    while (b < 7 && us >= edges_us[b])
        b++;
    stat_add(&hist[b], 1);
}

/* Nothing sane is left to do with the loop: say so and end the process. */
static _Noreturn void give_up(vigil_supervisor *s, const char *line) {
    log_line(s, line);
    fflush(NULL);
    _exit(70);
}

/* The loop was rebuilt R times in the last T: on_budget, then the action.
 * Returns true if a rebuild may go ahead (on *target). */
static bool budget_allows(vigil_supervisor *s, watched *w, uint64_t now) {
    uint32_t r = s->o.budget_rebuilds;
    uint64_t oldest = w->rebuilt_ns[w->rebuilt_pos]; /* the R-th last rebuild */
    if (!oldest || now - oldest > (uint64_t)s->o.budget_window_ms * 1000000ull)
        return true;
    vigil__probe *pr = w->p;
    stat_add(&s->st.budget_exceeded, 1);
    if (s->o.on_budget)
        s->o.on_budget(pr->id, s->o.ud);
    char line[256];
    bool on_epoll = atomic_load_explicit(&pr->backend, memory_order_relaxed) == VIGIL_BACKEND_EPOLL ||
                    w->target == VIGIL_BACKEND_EPOLL;
    if (s->o.budget_action == VIGIL_BUDGET_EPOLL && !on_epoll) {
        snprintf(line, sizeof(line), "vigil: loop %u rebuilt %u times in %u ms: restart budget "
                 "exhausted; rebuilding it on epoll, with a fresh budget", pr->id, r,
                 s->o.budget_window_ms);
        log_line(s, line);
        w->target = VIGIL_BACKEND_EPOLL;
        memset(w->rebuilt_ns, 0, r * sizeof(*w->rebuilt_ns));
        return true;
    }
    if (s->o.budget_action == VIGIL_BUDGET_REPORT) {
        snprintf(line, sizeof(line), "vigil: loop %u rebuilt %u times in %u ms: restart budget "
                 "exhausted; no more rebuilds, stalls are only reported", pr->id, r,
                 s->o.budget_window_ms);
        log_line(s, line);
        w->no_rebuilds = true;
        return false;
    }
    snprintf(line, sizeof(line), "vigil: loop %u rebuilt %u times in %u ms: restart budget "
             "exhausted; exiting (status 70)", pr->id, r, s->o.budget_window_ms);
    give_up(s, line);
}

/* Fences a thread stuck in a callback and starts the rebuild. */
static void fence(vigil_supervisor *s, watched *w, vigil__runner *runner, uint64_t now, uint64_t age,
                  const char *why) {
    vigil_loop *loop = w->loop;
    vigil__probe *pr = w->p;
    if (!budget_allows(s, w, now))
        return;
    int expect = VIGIL__AT_CALLBACK;
    if (!atomic_compare_exchange_strong_explicit(&runner->state, &expect, VIGIL__AT_FENCED,
                                                 memory_order_acq_rel, memory_order_acquire))
        return; /* it left the callback meanwhile: it is not stuck there */
    stat_add(&s->st.fences, 1);
    /* What the stuck thread wrote so far becomes visible to the rebuild
     * (runner->acked says it did), as far as the OS can make it. */
    vigil__thread_sync_writes(&s->o, runner);
    /* A callback that still spins would halve the rebuilt loop, on the same
     * CPU: the stuck thread yields it (never killed), until it returns. */
    int yielded = vigil__runner_yield_cpu(runner);
    w->rebuilt_ns[w->rebuilt_pos] = now;
    w->rebuilt_pos = (w->rebuilt_pos + 1) % s->o.budget_rebuilds;
    atomic_store_explicit(&pr->rebuilt, 0, memory_order_relaxed);
    atomic_store_explicit(&pr->fenced_ns, now, memory_order_relaxed);
    /* what the stuck thread was handling, read before the rebuild publishes its own */
    const char *op = vigil__op_kind_name(atomic_load_explicit(&pr->op_kind, memory_order_relaxed));
    unsigned long long conn = atomic_load_explicit(&pr->conn, memory_order_relaxed);
    int target = w->target;
    w->target = VIGIL_BACKEND_AUTO;
    int rc = vigil__rebuild_start(loop, target, s->o.grace_ms);
    char line[300];
    if (rc < 0) {
        stat_add(&s->st.rebuild_failures, 1);
        snprintf(line, sizeof(line), "vigil: loop %u fenced but no thread could be started (%s); exiting "
                 "(status 70)", pr->id, vigil_strerror(rc));
        give_up(s, line);
    }
    w->rebuilding = true;
    char yield[96] = "";
    if (yielded == 0)
        snprintf(yield, sizeof(yield), "; the stuck thread yields its CPU (idle priority) until it returns");
    else if (yielded != -ESRCH)
        snprintf(yield, sizeof(yield), "; the stuck thread's priority could not be lowered (%s)",
                 vigil_err_name(yielded));
    snprintf(line, sizeof(line), "vigil: loop %u stuck %llu ms %s (op %s, conn %#llx): fenced; "
             "rebuilding it on a new thread%s%s", pr->id, (unsigned long long)(age / 1000000), why, op,
             conn, target == VIGIL_BACKEND_EPOLL ? " on epoll" : "", yield);
    log_line(s, line);
}

/* A rebuild thread took the loop over: watch it again. Its time is known
 * once its first pass issued every op again (rebuild_timed). */
static void rebuilt(vigil_supervisor *s, watched *w, int result) {
    vigil__probe *pr = w->p;
    w->rebuilding = false;
    w->stalled = false;
    w->unblocked_ns = 0;
    char line[300];
    if (result < 0) {
        stat_add(&s->st.rebuild_failures, 1);
        snprintf(line, sizeof(line), "vigil: loop %u could not be rebuilt (%s): nothing can run it; "
                 "exiting (status 70)", pr->id, vigil_strerror(result));
        give_up(s, line);
    }
    stat_add(&s->st.rebuilds, 1);
}

static void rebuild_timed(vigil_supervisor *s, watched *w) {
    vigil_loop *loop = w->loop;
    vigil__probe *pr = w->p;
    char line[300];
    vigil_loop_stats ls;
    vigil_loop_get_stats(loop, &ls);
    stat_add(&s->st.rebuild_us_sum, ls.last_rebuild_us);
    if (ls.last_rebuild_us > atomic_load(&s->st.rebuild_us_max))
        atomic_store(&s->st.rebuild_us_max, ls.last_rebuild_us);
    hist_add(s->st.rebuild_hist, ls.last_rebuild_us);
    vigil_loop_info info; /* a rebuild writes it under the loop's lock */
    vigil_loop_get_info(loop, &info);
    snprintf(line, sizeof(line), "vigil: loop %u rebuilt on %s in %.1f ms: %llu connections carried "
             "over (%llu in all), %llu bytes received and not yet delivered carried, %llu ops "
             "re-issued in all%s", pr->id, info.backend, ls.last_rebuild_us / 1000.0,
             (unsigned long long)ls.connections, (unsigned long long)ls.conns_migrated,
             (unsigned long long)ls.bytes_carried, (unsigned long long)ls.ops_reissued,
             ls.gated ? "; its callbacks wait until the fenced one returns" : "");
    log_line(s, line);
}

/* How long the loop thread has been ready to run but given no CPU since its
 * last progress (Linux; 0 where unknown): each tick, a thread that is ready
 * (state R) and got less than a quarter of the time since the previous tick
 * on a CPU was starved for that time. (schedstat's own wait count is only
 * added up when the thread gets a CPU again: too late to tell.) Starvation
 * is not the loop's doing, and is not a stall. */
static uint64_t starved_since(watched *w, int tid, uint64_t last, uint64_t now) {
    uint64_t run;
    bool ready;
    if (vigil__thread_sched(tid, &w->sched, &run, &ready) < 0)
        return 0;
    if (w->base_progress != last) { /* progress: a new stretch begins */
        w->base_progress = last;
        w->starved_ns = 0;
    } else if (w->sched_at && now > w->sched_at && ready && (run - w->sched_run) * 4 < now - w->sched_at) {
        w->starved_ns += now - w->sched_at;
    }
    w->sched_at = now;
    w->sched_run = run;
    return w->starved_ns;
}

/* What the loop itself says about the gate and the stuck connection. */
static void follow_gate(vigil_supervisor *s, watched *w, uint64_t now) {
    vigil__probe *pr = w->p;
    bool gated = atomic_load_explicit(&pr->stats.gated, memory_order_relaxed);
    uint64_t resets = atomic_load_explicit(&pr->stats.stuck_reset, memory_order_relaxed);
    char line[300];
    if (gated && !w->gated) {
        w->gate_t0 = now;
    } else if (!gated && w->gated) {
        snprintf(line, sizeof(line), "vigil: loop %u: the fenced callback returned after about %llu ms; the %u "
                 "events held meanwhile go to the loop's callbacks now, in order", pr->id,
                 (unsigned long long)((now - w->gate_t0) / 1000000),
                 atomic_load_explicit(&pr->gate_released, memory_order_relaxed));
        log_line(s, line);
    }
    w->gated = gated;
    if (resets > w->resets_seen) {
        snprintf(line, sizeof(line), "vigil: loop %u: a fenced callback did not return within %u ms: its "
                 "connection was reset%s", pr->id, s->o.grace_ms,
                 gated ? "; the loop's callbacks still wait for it" : "");
        log_line(s, line);
    }
    w->resets_seen = resets;
}

static void check(vigil_supervisor *s, watched *w, uint64_t now) {
    vigil__probe *pr = w->p;
    if (w->rebuilding) { /* the loop is changing hands: only wait for that */
        int result = atomic_load_explicit(&pr->rebuilt, memory_order_acquire);
        if (!result)
            return;
        rebuilt(s, w, result);
    }
    follow_gate(s, w, now);
    uint32_t timed = atomic_load_explicit(&pr->rebuilds_timed, memory_order_acquire);
    if (timed != w->timed_seen) {
        w->timed_seen = timed;
        rebuild_timed(s, w);
    }
    vigil__runner *runner = atomic_load_explicit(&pr->runner, memory_order_acquire);
    if (!runner || !atomic_load_explicit(&pr->attached, memory_order_acquire))
        return;
    vigil__thread_watch_tick(&w->tw, runner->tid, now);
    bool may_fence = s->o.fence_ms != UINT32_MAX && !w->no_rebuilds;
    if (may_fence && atomic_load_explicit(&pr->fence_request, memory_order_acquire) == runner &&
        atomic_load_explicit(&runner->state, memory_order_acquire) == VIGIL__AT_CALLBACK) {
        atomic_store_explicit(&pr->fence_request, NULL, memory_order_relaxed);
        fence(s, w, runner, now, 0, "at its own request (test hook)");
        return;
    }
    uint64_t last = atomic_load_explicit(&pr->stats.last_progress_ns, memory_order_relaxed);
    uint64_t wall = now > last ? now - last : 0;
    /* age: the time without progress that the thread had a CPU for (or slept) */
    uint64_t waited = starved_since(w, runner->tid, last, now);
    uint64_t age = wall > waited ? wall - waited : 0;
    uint64_t stall_ns = (uint64_t)s->o.stall_ms * 1000000ull;
    bool late = false; /* no progress for stall_ms of wall time, with work to do */
    if (wall >= stall_ns) {
        int where = atomic_load_explicit(&runner->state, memory_order_acquire);
        if (where == VIGIL__AT_OUTSIDE) {
            late = false; /* the application is not running the loop right now */
        } else if (where != VIGIL__AT_WAIT) {
            late = true; /* away from the kernel wait for too long */
        } else if (atomic_load_explicit(&pr->gated, memory_order_relaxed)) {
            late = false; /* it holds its work back on purpose, behind the gate */
        } else {
            /* In the wait: late only if work is ready that it has not taken up. */
            uint64_t due = atomic_load_explicit(&pr->next_due_ns, memory_order_relaxed);
            late = (due != UINT64_MAX && due + stall_ns <= now) ||
                   atomic_load_explicit(&pr->posts, memory_order_relaxed) ||
                   vigil__fd_readable(atomic_load(&pr->poll_fd)) > 0;
        }
    }
    bool stuck = late && age >= stall_ns;
    if (late && !stuck) {
        /* Starved: ready to run, and not given a CPU. Never a stall. */
        if (w->starved_since != last) {
            w->starved_since = last;
            stat_add(&s->st.starved, 1);
        }
        if (!w->starved_reported_ns || now - w->starved_reported_ns >= (uint64_t)s->o.report_interval_ms * 1000000ull) {
            w->starved_reported_ns = now;
            char line[200];
            snprintf(line, sizeof(line), "vigil: loop %u starved: ready to run but given no CPU for %llu of "
                     "the last %llu ms (not a stall)", pr->id, (unsigned long long)(waited / 1000000),
                     (unsigned long long)(wall / 1000000));
            log_line(s, line);
        }
        return;
    }
    if (!stuck) {
        if (w->stalled) {
            char line[128];
            snprintf(line, sizeof(line), "vigil: loop %u made progress again after a %llu ms stall",
                     pr->id, (unsigned long long)((last - w->stall_since) / 1000000));
            log_line(s, line);
            stat_add(&s->st.recoveries, 1);
            w->stalled = false;
        }
        return;
    }
    if (!w->stalled || w->stall_since != last) {
        /* a new stall: count it and its detection latency */
        w->stalled = true;
        w->stall_since = last;
        w->unblocked_ns = 0;
        stat_add(&s->st.stalls, 1);
        uint64_t ms = age / 1000000;
        stat_add(&s->st.detect_ms_sum, ms);
        uint64_t max = atomic_load(&s->st.detect_ms_max);
        if (ms > max)
            atomic_store(&s->st.detect_ms_max, ms);
        uint64_t quarter = s->o.stall_ms / 4 ? s->o.stall_ms / 4 : 1;
        uint64_t q = ms / quarter;
        static const uint64_t edges[7] = {4, 5, 6, 8, 12, 16, 32};
        int b = 0;
        while (b < 7 && q > edges[b])
            b++;
        stat_add(&s->st.detect_hist[b], 1);
        if (w->reported_ns && now - w->reported_ns < (uint64_t)s->o.report_interval_ms * 1000000ull)
            stat_add(&s->st.reports_suppressed, 1);
        else
            report(s, w, runner, now, age);
        return;
    }
    /* Still stalled. A thread stuck in a callback for fence_ms more, spinning
     * or blocked again after an unblock, is fenced and the loop rebuilt. */
    bool unblock_on = s->o.unblock_ms != UINT32_MAX;
    bool fence_due = may_fence && age >= stall_ns + (uint64_t)s->o.fence_ms * 1000000ull;
    bool unblock_due = unblock_on && age >= stall_ns + (uint64_t)s->o.unblock_ms * 1000000ull;
    if (!fence_due && !unblock_due)
        return; /* nothing to do yet: no need to read /proc */
    char sc[96];
    bool in_syscall = thread_waits(w, runner, sc, sizeof(sc));
    uint64_t tick_ns = (uint64_t)s->o.tick_ms * 1000000ull;
    if (fence_due &&
        atomic_load_explicit(&runner->state, memory_order_acquire) == VIGIL__AT_CALLBACK &&
        (!in_syscall || !unblock_on || (w->unblocked_ns && now - w->unblocked_ns >= tick_ns))) {
        fence(s, w, runner, now, age, in_syscall ? "in a callback, blocked again after an unblock"
                                                  : "in a callback, running");
        return;
    }
    /* A thread blocked in a syscall is interrupted, once per unblock_ms. */
    if (!unblock_due)
        return;
    if (w->unblocked_ns && now - w->unblocked_ns < (uint64_t)s->o.unblock_ms * 1000000ull)
        return;
    if (!in_syscall)
        return; /* spinning: a signal would not help (a rebuild does) */
    w->unblocked_ns = now;
    char how[32];
    if (vigil__thread_unblock(&s->o, runner, how, sizeof(how)) == 0) {
        stat_add(&s->st.threads_unblocked, 1);
        char line[200];
        snprintf(line, sizeof(line), "vigil: loop %u stalled %llu ms in %s: interrupting it (%s)",
                 pr->id, (unsigned long long)(age / 1000000), sc, how);
        log_line(s, line);
    }
}

static void *supervisor_main(void *arg) {
    vigil_supervisor *s = arg;
    atomic_store_explicit(&s->tid, vigil__thread_id(), memory_order_relaxed);
    pthread_setname_np(pthread_self(), "vigil-sv");
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        uint64_t now = vigil__clock_ns();
        stat_add(&s->st.ticks, 1);
        for (uint32_t i = 0; i < s->n; i++)
            check(s, &s->w[i], now);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)s->o.tick_ms * 1000000ull;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        if (!s->stop)
            pthread_cond_timedwait(&s->cond, &s->lock, &until);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int vigil_supervisor_start(vigil_supervisor **out, const vigil_supervisor_options *opts) {
    if (!out)
        return -EINVAL;
    *out = NULL;
    vigil_supervisor_options o = {0};
    if (opts)
        o = *opts;
    if (!VIGIL__RESERVED_ZERO(o))
        return -EINVAL;
    if (!o.stall_ms)
        o.stall_ms = 100;
    if (!o.tick_ms)
        o.tick_ms = o.stall_ms / 4 ? o.stall_ms / 4 : 1;
    if (!o.unblock_ms)
        o.unblock_ms = o.stall_ms;
    if (!o.report_interval_ms)
        o.report_interval_ms = 1000;
    if (!o.fence_ms)
        o.fence_ms = o.stall_ms;
    if (!o.grace_ms)
        o.grace_ms = 1000;
    if (!o.budget_rebuilds)
        o.budget_rebuilds = 5;
    if (!o.budget_window_ms)
        o.budget_window_ms = 10000;
    if (o.budget_action != VIGIL_BUDGET_EXIT && o.budget_action != VIGIL_BUDGET_EPOLL &&
        o.budget_action != VIGIL_BUDGET_REPORT)
        return -EINVAL;
    if (o.budget_rebuilds > 1000000)
        return -EINVAL;
    if (o.budget_action == VIGIL_BUDGET_EPOLL && !vigil__backend_fallback())
        return -ENOTSUP; /* no epoll (Windows) */
    int rc = vigil__thread_reach_setup(&o); /* Linux: the two signals' handlers */
    if (rc < 0)
        return rc;
    vigil_supervisor *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->o = o;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    /* Its thread blocks every signal (set around the create, inherited), so
     * that a process-directed signal, SIGINT say, never lands on it. */
    int created = vigil__thread_start_unsignalled(&s->thread, supervisor_main, s);
    if (created != 0) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        free(s);
        return -EAGAIN;
    }
    *out = s;
    return 0;
}

int vigil_supervisor_add(vigil_supervisor *s, vigil_loop *loop) {
    if (!s || !loop)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    for (uint32_t i = 0; i < s->n; i++)
        if (s->w[i].loop == loop)
            rc = -EEXIST;
    /* A ring without DEFER_TASKRUN keeps receiving into a stuck thread's
     * buffers: a rebuild could not be exact. Such a loop is watched,
     * reported and interrupted, never rebuilt (VIGIL_LOOP_SUPERVISED picks
     * epoll instead at creation). */
    vigil__probe *pr = vigil__probe_of(loop);
    bool inexact = s->o.fence_ms != UINT32_MAX &&
                   atomic_load_explicit(&pr->backend, memory_order_relaxed) == VIGIL_BACKEND_URING &&
                   !(atomic_load_explicit(&pr->features, memory_order_relaxed) & VIGIL_FEATURE_DEFER_TASKRUN);
    uint64_t *ring = rc ? NULL : calloc(s->o.budget_rebuilds, sizeof(uint64_t));
    if (!rc && !ring)
        rc = -ENOMEM;
    if (!rc && s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 8;
        watched *w = realloc(s->w, cap * sizeof(*w));
        if (!w)
            rc = -ENOMEM;
        else {
            s->w = w;
            s->cap = cap;
        }
    }
    if (!rc)
        s->w[s->n++] = (watched){.loop = loop, .p = pr, .rebuilt_ns = ring, .no_rebuilds = inexact,
                                 .sched = {.schedstat = -1, .stat = -1}};
    else
        free(ring);
    pthread_mutex_unlock(&s->lock);
    if (!rc && inexact) {
        char line[256];
        snprintf(line, sizeof(line), "vigil: loop %u is io_uring without DEFER_TASKRUN: a rebuild could "
                 "not be exact, so its stalls are reported and interrupted only (create it with "
                 "VIGIL_LOOP_SUPERVISED to run it on epoll)", pr->id);
        log_line(s, line);
    }
    return rc;
}

int vigil_supervisor_remove(vigil_supervisor *s, vigil_loop *loop) {
    if (!s || !loop)
        return -EINVAL;
    /* The lock is held for a whole tick, so once we have it the supervisor is
     * not looking at the loop, and will not again. */
    pthread_mutex_lock(&s->lock);
    int rc = -ENOENT;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->w[i].loop == loop) {
            free(s->w[i].rebuilt_ns);
            vigil__sched_files_close(&s->w[i].sched);
            s->w[i] = s->w[--s->n];
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int vigil_supervisor_get_stats(vigil_supervisor *s, vigil_supervisor_stats *out) {
    if (!s || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out)); /* the reserved tail too */
#define LD(f) out->f = atomic_load_explicit(&s->st.f, memory_order_relaxed)
    LD(ticks);
    LD(stalls);
    LD(reports);
    LD(reports_suppressed);
    LD(threads_unblocked);
    LD(recoveries);
    LD(detect_ms_max);
    LD(detect_ms_sum);
    LD(fences);
    LD(rebuilds);
    LD(rebuild_failures);
    LD(budget_exceeded);
    LD(rebuild_us_max);
    LD(rebuild_us_sum);
    LD(starved);
#undef LD
    for (int i = 0; i < 8; i++) {
        out->detect_hist[i] = atomic_load_explicit(&s->st.detect_hist[i], memory_order_relaxed);
        out->rebuild_hist[i] = atomic_load_explicit(&s->st.rebuild_hist[i], memory_order_relaxed);
    }
    int tid = atomic_load_explicit(&s->tid, memory_order_relaxed);
    out->cpu_ns = tid ? vigil__thread_cpu_ns(tid) : 0;
    return 0;
}

int vigil_supervisor_stop(vigil_supervisor *s) {
    if (!s)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    if (s->n) {
        pthread_mutex_unlock(&s->lock);
        return -EBUSY;
    }
    s->stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->w);
    free(s);
    return 0;
}
