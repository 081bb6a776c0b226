/*
 * check.h: the reporting of the Windows test programs, until the suites run
 * there: one line "PREFIX: NAME: ok|FAIL: detail" per check, counted in
 * check_failures; each program ends with "PREFIX: N failed" and exits with
 * N. tests/win/probe.sh counts the lines.
 */
#ifndef VIGIL_TESTS_WIN_CHECK_H
#define VIGIL_TESTS_WIN_CHECK_H

#include <stdarg.h>
#include <stdio.h>

static int check_failures;
static const char *check_prefix = "check";

static void check(const char *name, int ok, const char *fmt, ...) {
    char detail[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    printf("%s: %s: %s%s%s\n", check_prefix, name, ok ? "ok" : "FAIL", detail[0] ? ": " : "", detail);
    fflush(stdout);
    check_failures += !ok;
}

static int check_done(void) {
    printf("%s: %d failed\n", check_prefix, check_failures);
    return check_failures;
}

#endif
