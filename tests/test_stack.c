/* test_stack.c: describing a thread without stopping or signalling it
 * (src/os/stack.h): its system call, the frames on its stack, their
 * names, and that looking does not cut its wait short. */
#include "os/stack.h"
#include "util.h"
#include "vt.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int my_tid(void) { return (int)syscall(SYS_gettid); }

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Looks at tid until it waits in system call a or b (5 s at most). */
static bool wait_in(int tid, long a, long b, struct vigil__thread_look *lk) {
    for (int i = 0; i < 5000; i++) {
        if (vigil__thread_look(tid, 0, lk) == 0 && lk->in_syscall && (lk->nr == a || lk->nr == b))
            return true;
        sleep_ms(1);
    }
    return false;
}

/* Index of the first frame whose name contains fn, or -1; logs them all. */
static int find_frame(const struct vigil__thread_look *lk, const char *fn, bool log) {
    int found = -1;
    for (int i = 0; i < lk->nframes; i++) {
        char name[512];
        vigil__frame_name(lk->frames[i], name, sizeof(name));
        if (log)
            VT_LOG("  #%d %s%s", i, name, vigil__frame_is_system(lk->frames[i]) ? " [system]" : "");
        if (found < 0 && strstr(name, fn))
            found = i;
    }
    return found;
}

/* The innermost own frame must be fn itself. */
static void check_first_own(const struct vigil__thread_look *lk, const char *fn) {
    int own = vigil__first_own_frame(lk->frames, lk->nframes);
    VT_ASSERT(own >= 0, "no own frame among %d", lk->nframes);
    char name[512];
    vigil__frame_name(lk->frames[own], name, sizeof(name));
    VT_ASSERT(strstr(name, fn) != NULL, "first own frame #%d is %s, not %s", own, name, fn);
}

/* Exported and not inlined so that dladdr names them; each does something
 * after its call, so the call is not a tail call and its frame stays. */
ssize_t vt_stack_blocked_in_read(int fd, int *err);
__attribute__((noinline)) ssize_t vt_stack_blocked_in_read(int fd, int *err) {
    char c;
    ssize_t n = read(fd, &c, 1);
    *err = n < 0 ? errno : 0;
    __asm__ volatile("" ::: "memory");
    return n;
}

int vt_stack_sleeping(uint64_t *took_ns, int *err);
__attribute__((noinline)) int vt_stack_sleeping(uint64_t *took_ns, int *err) {
    struct timespec d = {1, 500000000};
    uint64_t t0 = mono_ns();
    int rc = nanosleep(&d, NULL);
    *err = rc < 0 ? errno : 0;
    *took_ns = mono_ns() - t0;
    __asm__ volatile("" ::: "memory");
    return rc;
}

typedef struct reader {
    int fd;
    _Atomic int tid;
    _Atomic uintptr_t stack_top; /* end of its stack mapping, for stack_limit */
    ssize_t rc;
    int err;
} reader;

static void *reader_main(void *arg) {
    reader *r = arg;
    pthread_attr_t a;
    void *lo;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        if (pthread_attr_getstack(&a, &lo, &size) == 0)
            atomic_store(&r->stack_top, (uintptr_t)lo + size);
        pthread_attr_destroy(&a);
    }
    atomic_store(&r->tid, my_tid());
    r->rc = vt_stack_blocked_in_read(r->fd, &r->err);
    return NULL;
}

/* Starts a thread blocked in read on a pipe; *w is the pipe's write end. */
static void start_reader(reader *r, pthread_t *th, int *w) {
    int p[2];
    VT_EQ(pipe(p), 0);
    memset(r, 0, sizeof(*r));
    r->fd = p[0];
    *w = p[1];
    VT_EQ(pthread_create(th, NULL, reader_main, r), 0);
    while (!atomic_load(&r->tid))
        sleep_ms(1);
}

static void finish_reader(reader *r, pthread_t th, int w) {
    VT_EQ(write(w, "x", 1), 1);
    VT_EQ(pthread_join(th, NULL), 0);
    close(r->fd);
    close(w);
}

VT_TEST(stack, blocked_in_read_is_named_and_not_disturbed, 20) {
    reader r;
    pthread_t th;
    int w;
    start_reader(&r, &th, &w);
    int tid = atomic_load(&r.tid);
    struct vigil__thread_look lk;
    VT_ASSERT(wait_in(tid, SYS_read, SYS_read, &lk), "never seen in read: %s", lk.syscall);
    VT_OK(vigil__thread_look(tid, 0, &lk));
    VT_LOG("%s, %d frames:", lk.syscall, lk.nframes);
    VT_ASSERT(lk.in_syscall);
    VT_EQ(lk.nr, SYS_read);
    char want[32];
    snprintf(want, sizeof(want), "read(fd %d)", r.fd);
    VT_ASSERT(!strcmp(lk.syscall, want), "syscall %s, want %s", lk.syscall, want);
    VT_ASSERT(lk.nframes > 0);
    VT_ASSERT(vigil__frame_is_system(lk.frames[0]), "pc is not in the C library");
    VT_ASSERT(find_frame(&lk, "vt_stack_blocked_in_read", true) >= 0, "function not found");
    check_first_own(&lk, "vt_stack_blocked_in_read");

    /* The same up to the top of its stack, and nothing but pc with a limit
     * below its stack pointer. */
    uintptr_t top = atomic_load(&r.stack_top);
    VT_ASSERT(top != 0, "pthread_getattr_np failed");
    VT_OK(vigil__thread_look(tid, top, &lk));
    check_first_own(&lk, "vt_stack_blocked_in_read");
    VT_OK(vigil__thread_look(tid, 4096, &lk));
    VT_EQ(lk.nframes, 1);

    finish_reader(&r, th, w);
    VT_ASSERT(r.rc == 1, "read returned %zd (%s): looking disturbed it", r.rc, strerror(r.err));
}

typedef struct sleeper {
    _Atomic int tid;
    uint64_t took_ns;
    int rc, err;
} sleeper;

static void *sleeper_main(void *arg) {
    sleeper *s = arg;
    atomic_store(&s->tid, my_tid());
    s->rc = vt_stack_sleeping(&s->took_ns, &s->err);
    return NULL;
}

VT_TEST(stack, sleep_is_not_cut_short, 20) {
    sleeper s = {0};
    pthread_t th;
    VT_EQ(pthread_create(&th, NULL, sleeper_main, &s), 0);
    while (!atomic_load(&s.tid))
        sleep_ms(1);
    int tid = atomic_load(&s.tid);
    struct vigil__thread_look lk;
    VT_ASSERT(wait_in(tid, SYS_nanosleep, SYS_clock_nanosleep, &lk), "never seen asleep: %s",
              lk.syscall);
    VT_ASSERT(!strcmp(lk.syscall, "nanosleep") || !strcmp(lk.syscall, "clock_nanosleep"), "%s",
              lk.syscall);
    VT_LOG("%s, %d frames:", lk.syscall, lk.nframes);
    VT_ASSERT(find_frame(&lk, "vt_stack_sleeping", true) >= 0, "function not found");
    for (int i = 0; i < 10; i++) {
        VT_OK(vigil__thread_look(tid, 0, &lk));
        VT_ASSERT(lk.in_syscall, "look %d: %s", i, lk.syscall);
        check_first_own(&lk, "vt_stack_sleeping");
        sleep_ms(50);
    }
    VT_EQ(pthread_join(th, NULL), 0);
    VT_ASSERT(s.rc == 0, "nanosleep returned %d (%s)", s.rc, strerror(s.err));
    VT_ASSERT(s.took_ns >= 1400000000ull, "slept only %llu ms",
              (unsigned long long)(s.took_ns / 1000000));
}

typedef struct spinner {
    _Atomic int tid, stop;
    uint64_t count;
} spinner;

static void *spinner_main(void *arg) {
    spinner *s = arg;
    atomic_store(&s->tid, my_tid());
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed))
        s->count++; /* no system call in here */
    return NULL;
}

VT_TEST(stack, spinning_thread_is_running, 10) {
    spinner s = {0};
    pthread_t th;
    VT_EQ(pthread_create(&th, NULL, spinner_main, &s), 0);
    while (!atomic_load(&s.tid))
        sleep_ms(1);
    for (int i = 0; i < 20; i++) {
        struct vigil__thread_look lk;
        VT_OK(vigil__thread_look(atomic_load(&s.tid), 0, &lk));
        VT_ASSERT(!lk.in_syscall && lk.nr == -1, "look %d: %s (%ld)", i, lk.syscall, lk.nr);
        VT_ASSERT(!strcmp(lk.syscall, "running"), "look %d: %s", i, lk.syscall);
        VT_EQ(lk.nframes, 0);
        sleep_ms(2);
    }
    atomic_store(&s.stop, 1);
    VT_EQ(pthread_join(th, NULL), 0);
}

typedef struct quick {
    _Atomic int tid, done;
    int sleep_us;
} quick;

static void *quick_main(void *arg) {
    quick *q = arg;
    atomic_store(&q->tid, my_tid());
    struct timespec ts = {0, q->sleep_us * 1000L};
    nanosleep(&ts, NULL);
    atomic_store(&q->done, 1);
    return NULL;
}

/* A result a look may give: 0 or a negative errno, nothing else. */
#define VT_LOOK_RC(rc) VT_ASSERT((rc) == 0 || ((rc) < 0 && (rc) > -4096), "look returned %d", (rc))

VT_TEST(stack, exiting_threads_give_errors_not_crashes, 30) {
    struct vigil__thread_look lk;
    int rc = vigil__thread_look(0x3fffffff, 0, &lk); /* no such thread */
    VT_ASSERT(rc == -ENOENT || rc == -ESRCH, "rc %d", rc);
    long looks = 0, errors = 0, frames = 0, enoent = 0, esrch = 0, efault = 0;
    uint64_t until = mono_ns() + 3000000000ull;
    int threads = 0;
    for (; threads < 300 && mono_ns() < until; threads++) {
        quick q = {.sleep_us = (threads % 4) * 200};
        pthread_t th;
        VT_EQ(pthread_create(&th, NULL, quick_main, &q), 0);
        while (!atomic_load(&q.tid))
            ;
        int tid = atomic_load(&q.tid);
        /* while it sleeps, while it exits, and after */
        for (int after = 0; after < 200; after += atomic_load(&q.done)) {
            rc = vigil__thread_look(tid, 0, &lk);
            VT_LOOK_RC(rc);
            looks++;
            errors += rc < 0;
            enoent += rc == -ENOENT, esrch += rc == -ESRCH, efault += rc == -EFAULT;
            frames += rc == 0 ? lk.nframes : 0;
        }
        VT_EQ(pthread_join(th, NULL), 0);
        /* gone for good: an error (the kernel may take a moment to reap it) */
        int tries = 0;
        while ((rc = vigil__thread_look(tid, 0, &lk)) == 0 && tries++ < 100)
            sleep_ms(1);
        VT_ASSERT(rc < 0 && rc > -4096, "thread %d gone, look returned %d (%s)", tid, rc,
                  lk.syscall);
    }
    VT_LOG("%d threads, %ld looks, %ld frames, %ld errors (ENOENT %ld, ESRCH %ld, EFAULT %ld)",
           threads, looks, frames, errors, enoent, esrch, efault);
    VT_ASSERT(threads >= 20, "only %d threads", threads);
}

/* Not exported: dladdr finds no symbol for it. */
static __attribute__((noinline, used)) int vt_stack_hidden(int x) { return x * 3 + 1; }

void vt_stack_named(volatile int *p);
/* more than a ret, so that +1 is still inside it */
__attribute__((noinline)) void vt_stack_named(volatile int *p) { *p += 1; }

VT_TEST(stack, frame_names, 10) {
    char name[512];
    void *libc_fn = (void *)getpid;
    vigil__frame_name(libc_fn, name, sizeof(name));
    VT_LOG("getpid: %s", name);
    VT_ASSERT(strstr(name, "getpid+0x0 (libc.") != NULL, "%s", name);
    VT_ASSERT(vigil__frame_is_system(libc_fn));

    vigil__frame_name((char *)vt_stack_named + 1, name, sizeof(name));
    VT_LOG("own: %s", name);
    VT_ASSERT(!strcmp(name, "vt_stack_named+0x1 (test_stack)"), "%s", name);
    VT_ASSERT(!vigil__frame_is_system((void *)vt_stack_named));

    /* No symbol: the module, the offset, and a command that names it. */
    void *hidden = (char *)vt_stack_hidden + 2;
    vigil__frame_name(hidden, name, sizeof(name));
    VT_LOG("hidden: %s", name);
    VT_ASSERT(!strncmp(name, "test_stack+0x", 13), "%s", name);
    const char *cmd = strstr(name, "(addr2line -f -e /");
    VT_ASSERT(cmd != NULL && name[strlen(name) - 1] == ')', "%s", name);
    VT_ASSERT(!vigil__frame_is_system(hidden));
    if (access("/usr/bin/addr2line", X_OK) == 0) {
        char run[600], line[256] = "";
        snprintf(run, sizeof(run), "%.*s 2>/dev/null", (int)strlen(cmd + 1) - 1, cmd + 1);
        FILE *p = popen(run, "r");
        VT_ASSERT(p != NULL);
        char *got = fgets(line, sizeof(line), p);
        pclose(p);
        VT_LOG("%s: %s", run, line);
        VT_ASSERT(got && !strncmp(line, "vt_stack_hidden", 15), "addr2line says %s", line);
    } else {
        VT_LOG("no addr2line: the hint is not run");
    }

    /* The vDSO is system; an address in no module has no name. */
    unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
    if (vdso)
        VT_ASSERT(vigil__frame_is_system((void *)vdso));
    int local = 0;
    vigil__frame_name(&local, name, sizeof(name));
    VT_ASSERT(strstr(name, " (?)") != NULL, "%s", name);
    VT_ASSERT(!vigil__frame_is_system(&local));

    void *frames[] = {libc_fn, (void *)vt_stack_named, hidden};
    VT_EQ(vigil__first_own_frame(frames, 3), 1);
    VT_EQ(vigil__first_own_frame(frames, 1), -1);
    VT_EQ(vigil__first_own_frame(frames, 0), -1);
}

VT_TEST(stack, syscall_names, 5) {
    VT_ASSERT(vigil__syscall_name(SYS_read) && !strcmp(vigil__syscall_name(SYS_read), "read"));
    VT_ASSERT(!strcmp(vigil__syscall_name(SYS_clock_nanosleep), "clock_nanosleep"));
    VT_ASSERT(!strcmp(vigil__syscall_name(SYS_io_uring_enter), "io_uring_enter"));
    VT_ASSERT(!strcmp(vigil__syscall_name(SYS_epoll_pwait), "epoll_pwait"));
    VT_ASSERT(vigil__syscall_name(100000) == NULL);
    VT_ASSERT(vigil__syscall_name(-1) == NULL);
}

/* What a look costs: a thread blocked in read, looked at 1000 times. */
VT_TEST(stack, look_cost, 30) {
    reader r;
    pthread_t th;
    int w;
    start_reader(&r, &th, &w);
    int tid = atomic_load(&r.tid);
    struct vigil__thread_look lk;
    VT_ASSERT(wait_in(tid, SYS_read, SYS_read, &lk), "never seen in read: %s", lk.syscall);
    uint64_t t0 = mono_ns();
    for (int i = 0; i < 1000; i++) {
        VT_OK(vigil__thread_look(tid, 0, &lk));
        VT_ASSERT(lk.in_syscall);
    }
    uint64_t ns = mono_ns() - t0;
    VT_LOG("1000 looks: %llu us each, %d frames", (unsigned long long)(ns / 1000000), lk.nframes);
    finish_reader(&r, th, w);
    VT_EQ(r.rc, 1);
}
