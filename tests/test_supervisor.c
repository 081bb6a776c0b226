/* test_supervisor.c: stall detection, reports, unblocking, no false positives. */
#include "util.h"
#include "vt.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What the supervisor told us (written on its thread). */
typedef struct seen {
    pthread_mutex_t lock;
    int reports;
    vigil_stall_report first;
    int stall_lines;
} seen;

static void on_stall(const vigil_stall_report *r, void *ud) {
    seen *s = ud;
    pthread_mutex_lock(&s->lock);
    if (!s->reports++)
        s->first = *r;
    pthread_mutex_unlock(&s->lock);
}

static void on_log(const char *line, void *ud) {
    seen *s = ud;
    pthread_mutex_lock(&s->lock);
    if (strstr(line, "stall"))
        s->stall_lines++;
    pthread_mutex_unlock(&s->lock);
}

static vigil_supervisor *start_sv(seen *s, uint32_t stall_ms) {
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    /* Rebuilds off: these tests are about reports and unblocking, on loops
     * that stay on their thread (test_rebuild.c has the rest). */
    vigil_supervisor_options o = {.stall_ms = stall_ms, .fence_ms = UINT32_MAX, .on_stall = on_stall,
                                  .log = on_log, .ud = s};
    vigil_supervisor *sv;
    VT_OK(vigil_supervisor_start(&sv, &o));
    return sv;
}

static void finish(vigil_supervisor *sv, vigil_loop *loop) {
    VT_OK(vigil_supervisor_remove(sv, loop));
    VT_OK(vigil_supervisor_stop(sv));
    VT_OK(vigil_loop_destroy(loop));
}

/* Exported (not static) so the backtrace can name them. */
void vigil_test_spin_here(uint64_t ms);
__attribute__((noinline)) void vigil_test_spin_here(uint64_t ms) {
    uint64_t until = vigil_now_ns() + ms * 1000000ull;
    while (vigil_now_ns() < until)
        ;
}

int vigil_test_block_here(vt_blocker *b);
__attribute__((noinline)) int vigil_test_block_here(vt_blocker *b) {
    /* one wait, not retried: an interrupted wait ends the block */
    int r = vt_blocker_wait_once(b);
    __asm__ volatile("" ::: "memory"); /* not a tail call: this frame stays for the backtrace */
    return r;
}

typedef struct job {
    int done;
    vt_blocker *fd;
    int rc, err;
    uint64_t took_ms;
} job;

static void spin_timer(vigil_loop *loop, vigil_op t, int status, void *ud) {
    job *j = ud;
    if (status)
        return;
    vigil_test_spin_here(400);
    j->done = 1;
}

VT_TEST(supervisor, spin_in_callback_is_reported_with_backtrace, 15) {
    seen s;
    vigil_supervisor *sv = start_sv(&s, 100);
    vigil_loop *loop = vt_loop(NULL);
    VT_OK(vigil_supervisor_add(sv, loop));
    job j = {0};
    VT_OK(vigil_timer_start(loop, 10, 0, spin_timer, &j, NULL));
    VT_ASSERT(vt_run_until(loop, &j.done, 5000));
    vt_run_until(loop, &(int){0}, 100); /* let the supervisor see the recovery */
    pthread_mutex_lock(&s.lock);
    VT_EQ(s.reports, 1);
    VT_ASSERT(s.stall_lines >= 1, "no log line containing 'stall'");
    VT_ASSERT(!strcmp(s.first.where, "callback"), "where = %s", s.first.where);
    VT_ASSERT(!strcmp(s.first.op, "timer"), "op = %s", s.first.op);
    VT_EQ(s.first.loop_id, vigil_loop_get_id(loop));
    /* detected within stall_ms plus a tick (25 ms), with room for a loaded machine */
    VT_ASSERT(s.first.stalled_ms >= 100 && s.first.stalled_ms <= 100 + 25 + 100, "stalled_ms %llu",
              (unsigned long long)s.first.stalled_ms);
    VT_ASSERT(!strncmp(s.first.syscall, "running", 7), "syscall: %s", s.first.syscall);
    VT_ASSERT(strstr(s.first.backtrace, "vigil_test_spin_here") != NULL, "backtrace:\n%s", s.first.backtrace);
    pthread_mutex_unlock(&s.lock);
    vigil_supervisor_stats st;
    VT_OK(vigil_supervisor_get_stats(sv, &st));
    VT_EQ(st.stalls, 1);
    VT_EQ(st.threads_unblocked, 0); /* spinning in user code: a signal would not help */
    VT_ASSERT(st.detect_ms_max >= 100 && st.detect_ms_max <= 225, "detect_ms_max %llu",
              (unsigned long long)st.detect_ms_max);
    finish(sv, loop);
}

static void block_timer(vigil_loop *loop, vigil_op t, int status, void *ud) {
    job *j = ud;
    if (status)
        return;
    uint64_t t0 = vigil_now_ns();
    j->rc = vigil_test_block_here(j->fd);
    j->err = errno;
    j->took_ms = (vigil_now_ns() - t0) / 1000000;
    j->done = 1;
}

VT_TEST(supervisor, blocked_syscall_is_interrupted, 15) {
    seen s;
    vigil_supervisor *sv = start_sv(&s, 100);
    vigil_loop *loop = vt_loop(NULL);
    VT_OK(vigil_supervisor_add(sv, loop));
    vt_blocker bl;
    vt_blocker_open(&bl);
    job j = {.fd = &bl};
    VT_OK(vigil_timer_start(loop, 10, 0, block_timer, &j, NULL));
    VT_ASSERT(vt_run_until(loop, &j.done, 5000), "the blocked read was never interrupted");
    VT_EQ(j.rc, -1);
    VT_EQ(j.err, EINTR);
    /* reported after ~100 ms, interrupted unblock_ms (100) later */
    VT_ASSERT(j.took_ms >= 150 && j.took_ms < 1500, "blocked for %llu ms", (unsigned long long)j.took_ms);
    pthread_mutex_lock(&s.lock);
    VT_EQ(s.reports, 1);
    VT_ASSERT(strstr(s.first.syscall, VT_BLOCK_CALL) != NULL, "syscall: %s", s.first.syscall);
#ifndef __SANITIZE_THREAD__ /* TSan holds signals back while a syscall blocks */
    VT_ASSERT(strstr(s.first.backtrace, "vigil_test_block_here") != NULL, "backtrace:\n%s",
              s.first.backtrace);
#endif
    pthread_mutex_unlock(&s.lock);
    /* one interrupt ends the read; the supervisor counts it after sending it,
     * so the count may trail the EINTR by a moment: wait for it (1 s at most).
     * Under ThreadSanitizer, which holds a signal until the thread reaches a
     * safe point, a second may go out before the first lands (seen in CI). */
    vigil_supervisor_stats st;
    uint64_t w0 = vigil_now_ns();
    do {
        VT_OK(vigil_supervisor_get_stats(sv, &st));
    } while (st.threads_unblocked == 0 && vigil_now_ns() - w0 < 1000000000ull && !usleep(1000));
    VT_ASSERT(st.threads_unblocked >= 1 && st.threads_unblocked <= 2, "threads_unblocked %llu",
              (unsigned long long)st.threads_unblocked);
    vt_blocker_close(&bl);
    finish(sv, loop);
}

static void idle_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {}
static void idle_connected(vigil_loop *loop, vigil_conn c, int status, void *ud) { *(int *)ud = 1; }

VT_TEST(supervisor, idle_loop_is_never_stalled, 10) {
    seen s;
    vigil_supervisor *sv = start_sv(&s, 100); /* 50 ms once caught a scheduling hiccup under TSan */
    vigil_loop *loop = vt_loop(NULL);
    VT_OK(vigil_supervisor_add(sv, loop));
    int port, connected = 0;
    vt_listen(loop, idle_accept, NULL, &port);
    vigil_conn c;
    VT_OK(vigil_conn_connect(loop, "127.0.0.1", (uint16_t)port, 0, idle_connected, &connected, &c, NULL));
    VT_ASSERT(vt_run_until(loop, &connected, 2000));
    VT_OK(vigil_timer_start(loop, 60000, 0, spin_timer, &(job){0}, NULL));
    int never = 0;
    vt_run_until(loop, &never, 800); /* 8 stall periods with nothing to do */
    vigil_supervisor_stats st;
    VT_OK(vigil_supervisor_get_stats(sv, &st));
    VT_ASSERT(st.stalls == 0, "%llu stalls; the first in %s, op %s, thread %s, %llu ms",
              (unsigned long long)st.stalls, s.reports ? s.first.where : "-", s.reports ? s.first.op : "-",
              s.reports ? s.first.syscall : "-", (unsigned long long)(s.reports ? s.first.stalled_ms : 0));
    VT_ASSERT(st.ticks >= 10, "supervisor ticked %llu times", (unsigned long long)st.ticks);
    finish(sv, loop);
}

typedef struct busy {
    int n;
    int cooperative;
    int done;
} busy;

static void busy_timer(vigil_loop *loop, vigil_op t, int status, void *ud) {
    busy *b = ud;
    if (status)
        return;
    if (b->cooperative) {
        /* 400 ms of work in one callback, marking progress as it goes */
        for (int i = 0; i < 40; i++) {
            vigil_test_spin_here(10);
            vigil_loop_mark_progress(loop);
        }
        b->done = 1;
        return;
    }
    vigil_test_spin_here(5); /* busy, but back in the loop every 5 ms */
    if (++b->n == 100)
        b->done = 1;
}

VT_TEST(supervisor, busy_but_progressing_loop_is_not_stalled, 15) {
    seen s;
    vigil_supervisor *sv = start_sv(&s, 50);
    vigil_loop *loop = vt_loop(NULL);
    VT_OK(vigil_supervisor_add(sv, loop));
    busy b = {0};
    vigil_op t;
    VT_OK(vigil_timer_start(loop, 1, 1, busy_timer, &b, &t));
    VT_ASSERT(vt_run_until(loop, &b.done, 8000));
    VT_OK(vigil_op_cancel(loop, t));
    busy c = {.cooperative = 1};
    VT_OK(vigil_timer_start(loop, 1, 0, busy_timer, &c, NULL));
    VT_ASSERT(vt_run_until(loop, &c.done, 8000));
    vigil_supervisor_stats st;
    VT_OK(vigil_supervisor_get_stats(sv, &st));
    VT_EQ(st.stalls, 0);
    finish(sv, loop);
}

#ifndef _WIN32
static void app_handler(int sig) { (void)sig; }
#endif

VT_TEST(supervisor, lifecycle_and_foreign_handlers, 10) {
    vigil_supervisor *sv;
    vigil_loop *loop = vt_loop(NULL);
    VT_OK(vigil_supervisor_start(&sv, NULL));
    VT_OK(vigil_supervisor_add(sv, loop));
    VT_EQ(vigil_supervisor_add(sv, loop), -EEXIST);
    VT_EQ(vigil_supervisor_stop(sv), -EBUSY); /* loops first */
    VT_OK(vigil_supervisor_remove(sv, loop));
    VT_EQ(vigil_supervisor_remove(sv, loop), -ENOENT);
    VT_OK(vigil_supervisor_stop(sv));
    VT_EQ(vigil_supervisor_start(NULL, NULL), -EINVAL);
#ifdef _WIN32
    /* no signals on Windows, and no epoll to move a loop to */
    vigil_supervisor_options sig = {.backtrace_signal = 40};
    VT_EQ(vigil_supervisor_start(&sv, &sig), -ENOTSUP);
    vigil_supervisor_options to_epoll = {.budget_action = VIGIL_BUDGET_EPOLL};
    VT_EQ(vigil_supervisor_start(&sv, &to_epoll), -ENOTSUP);
#else
    vigil_supervisor_options same = {.backtrace_signal = SIGRTMIN + 3, .unblock_signal = SIGRTMIN + 3};
    VT_EQ(vigil_supervisor_start(&sv, &same), -EINVAL);
    /* the application's own handler on one of the signals is left alone */
    struct sigaction sa = {0}, old;
    sa.sa_handler = app_handler;
    VT_EQ(sigaction(SIGRTMIN + 4, &sa, &old), 0);
    vigil_supervisor_options theirs = {.backtrace_signal = SIGRTMIN + 4, .unblock_signal = SIGRTMIN + 5};
    VT_EQ(vigil_supervisor_start(&sv, &theirs), -EBUSY);
    struct sigaction now;
    VT_EQ(sigaction(SIGRTMIN + 4, NULL, &now), 0);
    VT_ASSERT(now.sa_handler == app_handler, "the application's handler was replaced");
#endif
    VT_OK(vigil_loop_destroy(loop));
}

/* A wait that is retried when interrupted: only outside help ends it. */
__attribute__((noinline)) int vigil_test_hang_here(vt_blocker *b);
__attribute__((noinline)) int vigil_test_hang_here(vt_blocker *b) {
    int r;
    while ((r = vt_blocker_wait_once(b)) < 0 && errno == EINTR)
        ;
    return r;
}

typedef struct hang {
    vt_blocker bl;
    int done;
    seen *s;
} hang;

static void hang_timer(vigil_loop *loop, vigil_op t, int status, void *ud) {
    hang *h = ud;
    if (status == 0 && vigil_test_hang_here(&h->bl) == 1)
        h->done = 1;
}

/* Releases the hung loop once the supervisor has reported and tried to unblock it. */
static void *hang_release(void *arg) {
    hang *h = arg;
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&h->s->lock);
        int reports = h->s->reports;
        pthread_mutex_unlock(&h->s->lock);
        if (reports)
            break;
        usleep(10000);
    }
    usleep(400000); /* long enough for at least one unblock attempt */
    vt_blocker_release(&h->bl);
    return NULL;
}

VT_TEST(supervisor, hang_is_reported_and_unblocking_does_not_free_it, 15) {
    seen s;
    vigil_supervisor *sv = start_sv(&s, 100);
    vigil_loop *loop = vt_loop(NULL);
    VT_OK(vigil_supervisor_add(sv, loop));
    hang h = {.s = &s};
    vt_blocker_open(&h.bl);
    pthread_t th;
    VT_EQ(pthread_create(&th, NULL, hang_release, &h), 0);
    uint64_t t0 = vigil_now_ns();
    VT_OK(vigil_timer_start(loop, 10, 0, hang_timer, &h, NULL));
    VT_ASSERT(vt_run_until(loop, &h.done, 8000));
    uint64_t took = (vigil_now_ns() - t0) / 1000000;
    pthread_join(th, NULL);
    VT_ASSERT(took >= 450, "the hang ended after %llu ms, before it was released",
              (unsigned long long)took);
    pthread_mutex_lock(&s.lock);
    VT_EQ(s.reports, 1);
    VT_ASSERT(!strcmp(s.first.where, "callback"), "where = %s", s.first.where);
    VT_ASSERT(strstr(s.first.syscall, VT_BLOCK_CALL) != NULL, "syscall: %s", s.first.syscall);
    pthread_mutex_unlock(&s.lock);
    vigil_supervisor_stats st;
    VT_OK(vigil_supervisor_get_stats(sv, &st));
    VT_ASSERT(st.threads_unblocked >= 1, "no unblock attempt");
    vt_blocker_close(&h.bl);
    finish(sv, loop);
}

/* 100 connections stream through an echo server in the loop while a
 * callback blocks in a read: the supervisor frees it, no byte is lost. */
enum { NSTREAM = 100, STREAM_BYTES = 256 * 1024, CHUNK = 16 * 1024 };

typedef struct sclient {
    vigil_conn c;
    uint32_t seed;
    uint64_t sent, got;
    size_t bad_at;
    int done;
    uint64_t *ndone;
} sclient;

static void s_echo_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    if (status > 0)
        VT_OK(vigil_conn_send(loop, c, b->data, b->len, 0, NULL, NULL, NULL));
    else
        vigil_conn_close(loop, c, 1000, NULL, NULL);
}

static void s_echo_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    if (status == 0)
        VT_OK(vigil_conn_recv_start(loop, c, 0, s_echo_recv, NULL, NULL));
}

static void s_client_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    sclient *k = ud;
    if (status <= 0)
        return;
    size_t at = vt_check(b->data, b->len, k->seed, k->got);
    if (at != b->len && k->bad_at == (size_t)-1)
        k->bad_at = k->got + at;
    k->got += b->len;
    if (k->got == STREAM_BYTES && !k->done) {
        k->done = 1;
        (*k->ndone)++;
    }
}

static void s_client_connected(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    sclient *k = ud;
    VT_EQ(status, 0);
    VT_OK(vigil_conn_recv_start(loop, c, 0, s_client_recv, k, NULL));
    uint8_t chunk[CHUNK];
    while (k->sent < STREAM_BYTES) {
        vt_fill(chunk, CHUNK, k->seed, k->sent);
        VT_ASSERT(vigil_conn_send(loop, c, chunk, CHUNK, 0, NULL, NULL, NULL) >= 0);
        k->sent += CHUNK;
    }
}

VT_TEST(supervisor, block_is_cured_while_100_streams_stay_exact, 30) {
    seen s;
    vigil_supervisor *sv = start_sv(&s, 100);
    vigil_loop *loop = vt_loop(NULL);
    VT_OK(vigil_supervisor_add(sv, loop));
    int port;
    vt_listen(loop, s_echo_accept, NULL, &port);
    static sclient k[NSTREAM];
    uint64_t ndone = 0;
    for (int i = 0; i < NSTREAM; i++) {
        k[i] = (sclient){.seed = 500 + (uint32_t)i, .bad_at = (size_t)-1, .ndone = &ndone};
        VT_OK(vigil_conn_connect(loop, "127.0.0.1", (uint16_t)port, 0, s_client_connected, &k[i], &k[i].c, NULL));
    }
    vt_blocker bl;
    vt_blocker_open(&bl);
    job j = {.fd = &bl};
    VT_OK(vigil_timer_start(loop, 30, 0, block_timer, &j, NULL));
    VT_ASSERT(vt_run_until_count(loop, &ndone, NSTREAM, 20000), "only %llu of %d streams done",
              (unsigned long long)ndone, NSTREAM);
    VT_ASSERT(j.done, "the block never ended");
    VT_EQ(j.err, EINTR);
    for (int i = 0; i < NSTREAM; i++) {
        VT_EQ(k[i].got, STREAM_BYTES);
        VT_EQ(k[i].bad_at, (size_t)-1);
    }
    vigil_supervisor_stats st;
    VT_OK(vigil_supervisor_get_stats(sv, &st));
    VT_ASSERT(st.threads_unblocked >= 1, "the block was not cured by the supervisor");
    vt_blocker_close(&bl);
    finish(sv, loop);
}

/* ------------------------------------------ observation that does not disturb */

#include <stdatomic.h>
#include <time.h>

typedef struct sleeper {
    int done;
    uint64_t slept_ms;
    int rc;
} sleeper;

/* Exported, so the report can name them. */
void vt_test_sleep_here(sleeper *z, uint64_t ms);
__attribute__((noinline)) void vt_test_sleep_here(sleeper *z, uint64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    uint64_t t0 = vigil_now_ns();
    z->rc = nanosleep(&ts, NULL); /* once, not retried: an interruption would show */
    z->slept_ms = (vigil_now_ns() - t0) / 1000000;
    __asm__ volatile("" ::: "memory"); /* not a tail call: this frame stays on the stack */
}

void vt_test_sleep_timer(vigil_loop *loop, vigil_op t, int status, void *ud);
void vt_test_sleep_timer(vigil_loop *loop, vigil_op t, int status, void *ud) {
    sleeper *z = ud;
    if (status)
        return;
    vt_test_sleep_here(z, 2000);
    z->done = 1;
}

/* Report only (no unblock, no fence): the report must not cut the sleep
 * short. A signal would (nanosleep is never restarted after a handler,
 * whatever SA_RESTART says): the thread is read from /proc and its stack
 * instead, and the report still names the callback and the frame it sleeps
 * in. */
VT_TEST(supervisor, report_only_does_not_shorten_a_sleep, 15) {
    seen s;
    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.lock, NULL);
    vigil_supervisor_options o = {.stall_ms = 100, .unblock_ms = UINT32_MAX, .fence_ms = UINT32_MAX,
                                  .on_stall = on_stall, .log = on_log, .ud = &s};
    vigil_loop *loop = vt_loop(NULL);
    vigil_supervisor *sv = vt_supervise(loop, &o);
    sleeper z = {0};
    VT_OK(vigil_timer_start(loop, 10, 0, vt_test_sleep_timer, &z, NULL));
    VT_ASSERT(vt_run_until(loop, &z.done, 5000));
    VT_EQ(z.rc, 0);
    VT_ASSERT(z.slept_ms >= 1990, "the sleep was cut short: %llu ms", (unsigned long long)z.slept_ms);
    pthread_mutex_lock(&s.lock);
    VT_ASSERT(s.reports >= 1, "no report");
#ifndef _WIN32 /* Windows names the call and frames its own way (docs/supervisor.md) */
    VT_ASSERT(strstr(s.first.syscall, "nanosleep"), "syscall: %s", s.first.syscall);
    VT_ASSERT(strstr(s.first.callback, "vt_test_sleep_timer"), "callback: %s", s.first.callback);
    VT_ASSERT(strstr(s.first.at, "vt_test_sleep_here"), "at: %s; backtrace:\n%s", s.first.at,
              s.first.backtrace);
#endif
    pthread_mutex_unlock(&s.lock);
    vigil_supervisor_stats st;
    VT_OK(vigil_supervisor_get_stats(sv, &st));
    VT_EQ(st.threads_unblocked, 0);
    finish(sv, loop);
}

/* ------------------------------------------------- starvation is not a stall */

#ifdef _WIN32
VT_TEST(supervisor, starved_loop_is_not_a_stall, 5) {
    VT_SKIP("Windows keeps no count of time spent waiting for a CPU, nor SCHED_FIFO to starve a thread");
}
#else
#include <sched.h>

/* The loop thread and a CPU hog share one core; the hog is a real-time
 * thread (SCHED_FIFO), so while it spins (400 ms at a time) the loop waits
 * for a CPU with work in hand. That is starvation, not a stall: no report,
 * no fence, no reset, every byte echoed. The client and the supervisor run
 * on the other core. */
typedef struct starve {
    vigil_loop *loop;
    _Atomic int stop, ready, port, hog_rc;
    _Atomic uint64_t echoed;
    uint64_t sent, back, bad;
    int run_rc;
} starve;

static int pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void starve_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    starve *z = ud;
    if (status <= 0) {
        vigil_conn_close(loop, c, 1000, NULL, NULL);
        return;
    }
    vigil_conn_send(loop, c, b->data, b->len, 0, NULL, NULL, NULL);
    atomic_fetch_add(&z->echoed, b->len);
}

static void starve_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    if (status == 0)
        vigil_conn_recv_start(loop, c, 0, starve_recv, ud, NULL);
}

static void starve_check_stop(vigil_loop *loop, vigil_op t, int status, void *ud) {
    starve *z = ud;
    if (status == 0 && atomic_load(&z->stop))
        vigil_loop_stop(loop);
}

static void *starve_loop_main(void *arg) {
    starve *z = arg;
    pin_to(0);
    int port;
    vt_listen(z->loop, starve_accept, z, &port);
    vigil_timer_start(z->loop, 20, 20, starve_check_stop, z, NULL);
    atomic_store(&z->port, port);
    z->run_rc = vigil_loop_run(z->loop, VIGIL_RUN_DEFAULT, 30000);
    if (z->run_rc >= 0)
        z->run_rc = vigil_loop_handover(z->loop); /* the test's thread destroys it */
    return NULL;
}

static void *starve_hog_main(void *arg) {
    starve *z = arg;
    pin_to(0);
    struct sched_param sp = {.sched_priority = 1};
    int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp); /* ahead of every normal thread */
    atomic_store(&z->hog_rc, rc ? -rc : 1);
    while (!rc && !atomic_load(&z->stop)) {
        uint64_t until = vigil_now_ns() + 400000000ull;
        while (vigil_now_ns() < until && !atomic_load(&z->stop))
            ;
        usleep(100000); /* the loop catches up */
    }
    return NULL;
}

VT_TEST(supervisor, starved_loop_is_not_a_stall, 30) {
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        VT_SKIP("needs two CPUs: the loop and a hog on one, the client on the other");
    pin_to(1); /* this thread (the client) and the supervisor it starts */
    seen s;
    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.lock, NULL);
    vigil_supervisor_options o = {.stall_ms = 100, .on_stall = on_stall, .log = on_log, .ud = &s};
    vigil_supervisor *sv;
    VT_OK(vigil_supervisor_start(&sv, &o));
    static starve z;
    memset(&z, 0, sizeof(z));
    z.loop = vt_supervised_loop(0);
    pthread_t lt, ht;
    VT_EQ(pthread_create(&lt, NULL, starve_loop_main, &z), 0);
    while (!atomic_load(&z.port))
        usleep(1000);
    VT_OK(vigil_supervisor_add(sv, z.loop));
    VT_EQ(pthread_create(&ht, NULL, starve_hog_main, &z), 0);
    while (!atomic_load(&z.hog_rc))
        usleep(1000);
    if (atomic_load(&z.hog_rc) < 0) {
        atomic_store(&z.stop, 1);
        pthread_join(ht, NULL);
        pthread_join(lt, NULL);
        VT_SKIP("a real-time hog needs CAP_SYS_NICE: %s", strerror(-atomic_load(&z.hog_rc)));
    }
    /* the client, on the other core: a pattern, echoed and checked */
    int fd = vt_sock_connect(atomic_load(&z.port));
    uint8_t out[4096], in[4096];
    uint64_t t0 = vigil_now_ns();
    while (vigil_now_ns() - t0 < 4000000000ull) {
        vt_fill(out, sizeof(out), 7, z.sent);
        VT_OK(vt_sock_write_all(fd, out, sizeof(out)));
        z.sent += sizeof(out);
        size_t got = vt_sock_read_n(fd, in, sizeof(in), 5000);
        VT_EQ(got, sizeof(in));
        z.bad += vt_check(in, got, 7, z.back) != got;
        z.back += got;
    }
    atomic_store(&z.stop, 1);
    pthread_join(ht, NULL);
    pthread_join(lt, NULL);
    vt_sock_close(fd);
    vigil_supervisor_stats st;
    VT_OK(vigil_supervisor_get_stats(sv, &st));
    vigil_loop_stats ls;
    VT_OK(vigil_loop_get_stats(z.loop, &ls));
    VT_LOG("starved %llu times; %llu stalls, %llu fences; %llu bytes echoed",
           (unsigned long long)st.starved, (unsigned long long)st.stalls, (unsigned long long)st.fences,
           (unsigned long long)z.back);
    VT_ASSERT(z.run_rc >= 0, "run: %d", z.run_rc);
    VT_EQ(z.bad, 0);
    VT_EQ(z.back, z.sent);
    VT_ASSERT(st.starved >= 1, "the loop was never starved: the test did not test anything");
    VT_ASSERT(st.stalls == 0, "%llu stalls; the first in %s, thread %s, %llu ms", (unsigned long long)st.stalls,
              s.reports ? s.first.where : "-", s.reports ? s.first.syscall : "-",
              (unsigned long long)(s.reports ? s.first.stalled_ms : 0));
    VT_EQ(st.fences, 0);
    VT_EQ(ls.rebuilds, 0);
    VT_EQ(ls.stuck_reset, 0);
    finish(sv, z.loop);
}
#endif
