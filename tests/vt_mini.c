/*
 * vt_mini.c: a small test runner for the VT_MINI build of the suites. Like
 * Criterion, it runs each test in its own child process with a time limit
 * and ends with a "Synthesis:" line in Criterion's format, which ./run reads,
 * with "| Skipped: N" after it: a test that calls VT_SKIP exits with
 * VT_EXIT_SKIP and is counted there, not in Tested or Passing (as
 * Criterion counts them). VT_FILTER=suite/name (a prefix) picks tests.
 *
 * With --tap it also writes a TAP report on stdout, as Criterion's
 * --tap=/dev/stdout does (meson's protocol : 'tap'): the plan, then one line
 * per test, "ok - suite::name", "not ok - suite::name (why)", or
 * "ok - suite::name # SKIP reason" (written by the child that skipped). A
 * child's own stdout goes to stderr meanwhile, so nothing else lands in the
 * report.
 */
#ifdef _WIN32
#define __USE_MINGW_ANSI_STDIO 1 /* C99 formats (%zu, %llu) whatever the CRT: see VT_PRINTF */
#endif
#include "vt.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <winsock2.h>
#include <windows.h>
#else
#include <sys/wait.h>
#include <unistd.h>
#endif

static vt_case *head, *tail;
static vt_case *current; /* in a child: the test it runs */
static FILE *tap;        /* the TAP report (--tap), or NULL */

#define VT_EXIT_SKIP 77 /* a child's exit code: the test skipped itself */

void vt_register(vt_case *c) {
    c->next = NULL;
    if (tail)
        tail->next = c;
    else
        head = c;
    tail = c;
}

void vt_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "[----] %s:%d: Assertion Failed: %s\n[----]   ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    _exit(1);
}

void vt_skip(const char *fmt, ...) {
    const char *suite = current ? current->suite : "?", *name = current ? current->name : "?";
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    fprintf(stderr, "[SKIP] %s::%s: %s\n", suite, name, why);
    if (tap) /* the parent prints nothing for a skipped test: only here is the reason */
        fprintf(tap, "ok - %s::%s # SKIP %s\n", suite, name, why);
    fflush(NULL);
    _exit(VT_EXIT_SKIP);
}

void vt_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[LOG ] ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* How one test ended. */
enum { VT_PASS, VT_FAILED, VT_TIMEOUT, VT_CRASH, VT_SKIPPED };

#ifdef _WIN32
/* No fork on Windows: the runner starts itself again for each test, with
 * VT_CHILD naming the one test the child runs, and kills it at the limit. */
static char self[MAX_PATH];

static int run_one(vt_case *c, const char *id, unsigned long *detail) {
    SetEnvironmentVariableA("VT_CHILD", id);
    STARTUPINFOA si = {.cb = sizeof(si)};
    PROCESS_INFORMATION pi;
    char cmd[MAX_PATH + 2];
    snprintf(cmd, sizeof(cmd), "\"%s\"", self);
    BOOL ok = CreateProcessA(self, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi);
    SetEnvironmentVariableA("VT_CHILD", NULL);
    if (!ok) {
        *detail = GetLastError();
        return VT_CRASH;
    }
    DWORD w = WaitForSingleObject(pi.hProcess, (DWORD)c->timeout_s * 1000);
    DWORD code = 1;
    if (w == WAIT_TIMEOUT) {
        TerminateProcess(pi.hProcess, 124);
        WaitForSingleObject(pi.hProcess, 5000);
    }
    GetExitCodeProcess(pi.hProcess, &code);
    CloseHandle(pi.hProcess);
    CloseHandle(pi.hThread);
    *detail = code;
    return w == WAIT_TIMEOUT          ? VT_TIMEOUT
           : code == 0                ? VT_PASS
           : code == 1                ? VT_FAILED
           : code == VT_EXIT_SKIP     ? VT_SKIPPED
                                      : VT_CRASH;
}

/* The child's side: run the test VT_CHILD names; 0, or vt_fail's 1. */
static void child_side(void) {
    WSADATA wd;
    WSAStartup(MAKEWORD(2, 2), &wd); /* the tests' plain sockets come before vigil's */
    GetModuleFileNameA(NULL, self, sizeof(self));
    const char *child = getenv("VT_CHILD");
    if (!child)
        return;
    if (getenv("VT_TAP"))
        tap = stdout;
    for (vt_case *c = head; c; c = c->next) {
        char id[256];
        snprintf(id, sizeof(id), "%s/%s", c->suite, c->name);
        if (!strcmp(id, child)) {
            current = c;
            c->fn();
            fflush(NULL);
            _exit(0);
        }
    }
    _exit(3);
}
#else
/* A child process per test, ended by SIGALRM at the limit. */
static int run_one(vt_case *c, const char *id, unsigned long *detail) {
    (void)id;
    pid_t pid = fork();
    if (pid == 0) {
        alarm((unsigned)c->timeout_s);
        current = c;
        if (tap) { /* the report keeps stdout; what the test prints goes to stderr */
            int fd = dup(1);
            tap = fd >= 0 ? fdopen(fd, "w") : NULL;
            dup2(2, 1);
        }
        c->fn();
        fflush(NULL);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    *detail = WIFSIGNALED(st) ? (unsigned long)WTERMSIG(st) : 0;
    if (WIFEXITED(st))
        return WEXITSTATUS(st) == 0 ? VT_PASS : WEXITSTATUS(st) == VT_EXIT_SKIP ? VT_SKIPPED : VT_FAILED;
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? VT_TIMEOUT : VT_CRASH;
}

static void child_side(void) {}
#endif

static int picked(const vt_case *c, const char *filter) {
    char id[256];
    snprintf(id, sizeof(id), "%s/%s", c->suite, c->name);
    return !filter || strncmp(id, filter, strlen(filter)) == 0;
}

int main(int argc, char **argv) {
    child_side(); /* Windows: a child runs its one test here and does not return */
    const char *filter = getenv("VT_FILTER");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tap")) {
            tap = stdout;
#ifdef _WIN32
            SetEnvironmentVariableA("VT_TAP", "1"); /* for the children, which skip themselves */
#endif
        } else {
            fprintf(stderr, "usage: %s [--tap]   (VT_FILTER=suite/name picks tests)\n", argv[0]);
            return 2;
        }
    }
    if (tap) {
        int n = 0;
        for (vt_case *c = head; c; c = c->next)
            n += picked(c, filter);
        fprintf(tap, "TAP version 13\n1..%d\n", n);
    }
    int tested = 0, passing = 0, failing = 0, crashing = 0, skipped = 0;
    for (vt_case *c = head; c; c = c->next) {
        char id[256];
        snprintf(id, sizeof(id), "%s/%s", c->suite, c->name);
        if (!picked(c, filter))
            continue;
        tested++;
        fflush(NULL);
        unsigned long detail = 0;
        char why[64] = "";
        int result = run_one(c, id, &detail);
        switch (result) {
        case VT_PASS:
            passing++;
            break;
        case VT_SKIPPED: /* the child said why */
            tested--;
            skipped++;
            break;
        case VT_FAILED:
            failing++;
            fprintf(stderr, "[FAIL] %s::%s\n", c->suite, c->name);
            break;
        case VT_TIMEOUT:
            crashing++;
            fprintf(stderr, "[FAIL] %s::%s: Timed out\n", c->suite, c->name);
            snprintf(why, sizeof(why), " (timed out after %d s)", c->timeout_s);
            break;
        default:
            crashing++;
            fprintf(stderr, "[FAIL] %s::%s: CRASH! (%#lx)\n", c->suite, c->name, detail);
            snprintf(why, sizeof(why), " (crashed: %#lx)", detail);
        }
        if (tap && result == VT_PASS)
            fprintf(tap, "ok - %s::%s\n", c->suite, c->name);
        else if (tap && result != VT_SKIPPED)
            fprintf(tap, "not ok - %s::%s%s\n", c->suite, c->name, why);
        if (tap)
            fflush(tap);
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d | Skipped: %d\n",
            tested, passing, failing, crashing, skipped);
    return failing || crashing ? 1 : 0;
}
