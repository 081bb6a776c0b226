/* test_signal.c: signals as loop events, on every backend. Signals sent to
 * the whole process (kill) run in a child process of one thread, since the
 * test runner's own threads do not block them; signals sent to the loop's
 * thread (pthread_kill) run in the test itself. */
#include "util.h"
#include "vt.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>


typedef struct seen {
    _Atomic int count, last, final, finals;
    pthread_t thread;
} seen;

static void on_signal(vigil_loop *loop, vigil_op w, int status, void *ud) {
    seen *s = ud;
    s->thread = pthread_self();
    if (status > 0) {
        atomic_store(&s->last, status);
        atomic_fetch_add(&s->count, 1);
    } else {
        atomic_store(&s->final, status);
        atomic_fetch_add(&s->finals, 1);
    }
}

VT_TEST(signal, each_watcher_gets_its_signals, 20) {
    vigil_loop *loop = vt_loop(NULL);
    seen a = {0}, b = {0}, c = {0};
    VT_OK(vigil_signal_start(loop, SIGUSR1, on_signal, &a, NULL));
    VT_OK(vigil_signal_start(loop, SIGUSR1, on_signal, &b, NULL));
    VT_OK(vigil_signal_start(loop, SIGUSR2, on_signal, &c, NULL));
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    VT_ASSERT(sigismember(&cur, SIGUSR1) && sigismember(&cur, SIGUSR2), "watched signals are blocked");
    VT_EQ(pthread_kill(pthread_self(), SIGUSR1), 0);
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&b.count, 5000));
    VT_EQ(atomic_load(&a.count), 1);
    VT_EQ(atomic_load(&a.last), SIGUSR1);
    VT_EQ(atomic_load(&c.count), 0);
    VT_ASSERT(pthread_equal(a.thread, pthread_self()));
    VT_EQ(pthread_kill(pthread_self(), SIGUSR2), 0);
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&c.count, 5000));
    VT_EQ(atomic_load(&c.last), SIGUSR2);
    VT_EQ(atomic_load(&a.count), 1);
    /* again: the wait was re-armed */
    VT_EQ(pthread_kill(pthread_self(), SIGUSR1), 0);
    uint64_t t0 = vigil_now_ns();
    while (atomic_load(&a.count) < 2 && vigil_now_ns() - t0 < 5000000000ull)
        vigil_loop_run(loop, VIGIL_RUN_ONCE, 50);
    VT_EQ(atomic_load(&a.count), 2);
    VT_EQ(atomic_load(&b.count), 2);
    VT_OK(vigil_loop_destroy(loop));
    VT_EQ(atomic_load(&a.finals), 1);
    VT_EQ(atomic_load(&a.final), -ECANCELED);
    VT_EQ(atomic_load(&c.finals), 1);
}

/* The signal arrives while a callback sleeps in a syscall: the syscall is
 * not interrupted, and the watcher runs after the callback. */
typedef struct nap {
    int poll_rc, poll_errno, seen_during;
    seen *s;
    _Atomic int done;
} nap;

static void nap_timer(vigil_loop *loop, vigil_op t, int status, void *ud) {
    nap *n = ud;
    if (status)
        return;
    pthread_kill(pthread_self(), SIGINT); /* without vigil: death, or EINTR below */
    n->poll_rc = poll(NULL, 0, 200);
    n->poll_errno = errno;
    n->seen_during = atomic_load(&n->s->count);
    atomic_store(&n->done, 1);
}

VT_TEST(signal, never_interrupts_a_callback, 20) {
    vigil_loop *loop = vt_loop(NULL);
    seen s = {0};
    VT_OK(vigil_signal_start(loop, SIGINT, on_signal, &s, NULL));
    nap n = {.s = &s};
    VT_OK(vigil_timer_start(loop, 10, 0, nap_timer, &n, NULL));
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&s.count, 5000));
    VT_EQ(atomic_load(&n.done), 1);
    VT_ASSERT(n.poll_rc == 0, "poll in the callback: %d (%s)", n.poll_rc, strerror(n.poll_errno));
    VT_EQ(n.seen_during, 0);
    VT_EQ(atomic_load(&s.last), SIGINT);
    VT_OK(vigil_loop_destroy(loop));
}

/* A cancelled watcher ends once with -ECANCELED and hears nothing more; with
 * no watcher left the loop has no work and VIGIL_RUN_DEFAULT returns. */
VT_TEST(signal, cancel_ends_a_watcher, 20) {
    vigil_loop *loop = vt_loop(NULL);
    seen a = {0}, b = {0};
    vigil_op wa, wb;
    VT_OK(vigil_signal_start(loop, SIGUSR1, on_signal, &a, &wa));
    VT_OK(vigil_signal_start(loop, SIGUSR1, on_signal, &b, &wb));
    VT_OK(vigil_op_cancel(loop, wa));
    VT_EQ(vigil_op_cancel(loop, wa), -EBADF);
    VT_EQ(pthread_kill(pthread_self(), SIGUSR1), 0);
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&b.count, 5000));
    VT_EQ(atomic_load(&a.count), 0);
    VT_EQ(atomic_load(&a.finals), 1);
    VT_EQ(atomic_load(&a.final), -ECANCELED);
    VT_OK(vigil_op_cancel(loop, wb));
    uint64_t t0 = vigil_now_ns();
    VT_EQ(vigil_loop_run(loop, VIGIL_RUN_DEFAULT, 5000), 0);
    VT_ASSERT(vigil_now_ns() - t0 < 2000000000ull, "the loop kept running with no watcher");
    VT_EQ(atomic_load(&b.finals), 1);
    /* watching again after everything ended */
    VT_OK(vigil_signal_start(loop, SIGUSR1, on_signal, &a, NULL));
    VT_EQ(pthread_kill(pthread_self(), SIGUSR1), 0);
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&a.count, 5000));
    VT_OK(vigil_loop_destroy(loop));
    VT_EQ(atomic_load(&a.finals), 2);
}

VT_TEST(signal, bad_input_is_refused, 10) {
    vigil_loop *loop = vt_loop(NULL);
    seen s = {0};
    int bad[] = {0, -1, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGRTMAX + 1, 1000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        VT_ASSERT(vigil_signal_start(loop, bad[i], on_signal, &s, NULL) == -EINVAL, "signal %d", bad[i]);
    VT_EQ(vigil_signal_start(loop, SIGUSR1, NULL, NULL, NULL), -EINVAL);
    VT_EQ(vigil_signal_start(NULL, SIGUSR1, on_signal, &s, NULL) < 0, 1);
    VT_OK(vigil_loop_destroy(loop));
    VT_EQ(atomic_load(&s.finals), 0);
}

/* kill() on the whole process, in a child with one thread: SIGTERM ends the
 * loop cleanly through a watcher. The child says what it saw by exit code. */
static void child_term(vigil_loop *loop, vigil_op w, int status, void *ud) {
    if (status == SIGTERM) {
        *(int *)ud = 1;
        vigil_op_cancel(loop, w);
    }
}

VT_TEST(signal, sigterm_to_the_process_stops_the_loop, 20) {
    vt_need_backend_built(); /* the loop is the child's */
    int ready[2];
    VT_EQ(pipe(ready), 0);
    pid_t pid = fork();
    VT_ASSERT(pid >= 0);
    if (pid == 0) {
        vigil_loop *loop = vt_loop(NULL);
        int got = 0;
        if (vigil_signal_start(loop, SIGTERM, child_term, &got, NULL) < 0)
            _exit(3);
        (void)!write(ready[1], "r", 1);
        int rc = vigil_loop_run(loop, VIGIL_RUN_DEFAULT, 10000);
        if (rc != 0)
            _exit(4);
        vigil_loop_destroy(loop);
        _exit(got ? 0 : 5);
    }
    char c;
    VT_EQ(read(ready[0], &c, 1), 1);
    usleep(20000);
    VT_EQ(kill(pid, SIGTERM), 0);
    int st = 0;
    VT_EQ(waitpid(pid, &st, 0), pid);
    VT_ASSERT(WIFEXITED(st), "the child died of signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    VT_EQ(WEXITSTATUS(st), 0);
}

/* After a rebuild the new thread reads the signalfd: a signal sent to the
 * process reaches the watcher there. In a child, for kill(). */
static _Atomic int child_got;
static pthread_t child_main_thread;

static void child_usr1(vigil_loop *loop, vigil_op w, int status, void *ud) {
    if (status != SIGUSR1)
        return;
    atomic_store(&child_got, pthread_equal(pthread_self(), child_main_thread) ? 2 : 1);
    vigil_op_cancel(loop, w); /* the rebuilt loop has nothing left and ends */
}

static void quiet(const char *line, void *ud) {}

VT_TEST(signal, rebuilt_loop_keeps_its_watchers, 30) {
    vt_need_rebuilds();
    vt_need_backend_built(); /* the loop is the child's */
    pid_t pid = fork();
    VT_ASSERT(pid >= 0);
    if (pid == 0) {
        child_main_thread = pthread_self();
        vigil_loop_options o = {.flags = VIGIL_LOOP_SUPERVISED};
        vigil_loop *loop = vt_loop(&o);
        vigil_supervisor_options so = {.stall_ms = 1000, .tick_ms = 1, .log = quiet};
        vigil_supervisor *sv;
        if (vigil_supervisor_start(&sv, &so) < 0 || vigil_supervisor_add(sv, loop) < 0)
            _exit(3);
        if (vigil_signal_start(loop, SIGUSR1, child_usr1, NULL, NULL) < 0)
            _exit(4);
        vigil_timer_start(loop, 10, 0, vt_fence_timer, NULL, NULL);
        if (vt_run_until_fenced(loop, 10000) != -EOWNERDEAD)
            _exit(5);
        kill(getpid(), SIGUSR1); /* blocked here, on the supervisor and on the rebuilt thread */
        if (vigil_loop_join(loop, 10000) != 0)
            _exit(6);
        int got = atomic_load(&child_got);
        vigil_supervisor_remove(sv, loop);
        vigil_supervisor_stop(sv);
        vigil_loop_destroy(loop);
        _exit(got == 1 ? 0 : 10 + got);
    }
    int st = 0;
    VT_EQ(waitpid(pid, &st, 0), pid);
    VT_ASSERT(WIFEXITED(st), "the child died of signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    VT_EQ(WEXITSTATUS(st), 0);
}
