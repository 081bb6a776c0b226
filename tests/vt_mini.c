/*
 * vt_mini.c: a small test runner for the VT_MINI build of the suites. Like
 * Criterion, it runs each test in its own child process with a time limit
 * and ends with a "Synthesis:" line in Criterion's format, which ./run reads.
 * VT_FILTER=suite/name (a prefix) picks tests.
 */
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

void vt_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[LOG ] ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

#ifdef _WIN32
/* No fork on Windows: the runner starts itself again for each test, with
 * VT_CHILD naming the one test the child runs, and the same time limit. */
int main(void) {
    WSADATA wd;
    WSAStartup(MAKEWORD(2, 2), &wd); /* the tests' plain sockets come before vigil's */
    const char *child = getenv("VT_CHILD");
    if (child) {
        for (vt_case *c = head; c; c = c->next) {
            char id[256];
            snprintf(id, sizeof(id), "%s/%s", c->suite, c->name);
            if (!strcmp(id, child)) {
                c->fn();
                fflush(NULL);
                _exit(0);
            }
        }
        _exit(3);
    }
    const char *filter = getenv("VT_FILTER");
    char self[MAX_PATH];
    GetModuleFileNameA(NULL, self, sizeof(self));
    int tested = 0, passing = 0, failing = 0, crashing = 0;
    for (vt_case *c = head; c; c = c->next) {
        char id[256];
        snprintf(id, sizeof(id), "%s/%s", c->suite, c->name);
        if (filter && strncmp(id, filter, strlen(filter)) != 0)
            continue;
        tested++;
        fflush(NULL);
        SetEnvironmentVariableA("VT_CHILD", id);
        STARTUPINFOA si = {.cb = sizeof(si)};
        PROCESS_INFORMATION pi;
        char cmd[MAX_PATH + 2];
        snprintf(cmd, sizeof(cmd), "\"%s\"", self);
        if (!CreateProcessA(self, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
            crashing++;
            fprintf(stderr, "[FAIL] %s::%s: cannot start (%lu)\n", c->suite, c->name, GetLastError());
            continue;
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
        if (w == WAIT_TIMEOUT) {
            crashing++;
            fprintf(stderr, "[FAIL] %s::%s: Timed out\n", c->suite, c->name);
        } else if (code == 0) {
            passing++;
        } else if (code == 1) {
            failing++;
            fprintf(stderr, "[FAIL] %s::%s\n", c->suite, c->name);
        } else {
            crashing++;
            fprintf(stderr, "[FAIL] %s::%s: CRASH! (exit %#lx)\n", c->suite, c->name, (unsigned long)code);
        }
    }
    SetEnvironmentVariableA("VT_CHILD", NULL);
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d\n", tested,
            passing, failing, crashing);
    return failing || crashing ? 1 : 0;
}
#else
int main(void) {
    const char *filter = getenv("VT_FILTER");
    int tested = 0, passing = 0, failing = 0, crashing = 0;
    for (vt_case *c = head; c; c = c->next) {
        char id[256];
        snprintf(id, sizeof(id), "%s/%s", c->suite, c->name);
        if (filter && strncmp(id, filter, strlen(filter)) != 0)
            continue;
        tested++;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            alarm((unsigned)c->timeout_s); /* the time limit: SIGALRM ends the child */
            c->fn();
            fflush(NULL);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            passing++;
        } else if (WIFEXITED(st)) {
            failing++;
            fprintf(stderr, "[FAIL] %s::%s\n", c->suite, c->name);
        } else {
            crashing++;
            int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
            fprintf(stderr, "[FAIL] %s::%s: %s\n", c->suite, c->name,
                    sig == SIGALRM ? "Timed out" : "CRASH!");
        }
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d\n", tested,
            passing, failing, crashing);
    return failing || crashing ? 1 : 0;
}
#endif
