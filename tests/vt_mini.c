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
#include <sys/wait.h>
#include <unistd.h>

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
