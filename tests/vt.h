/*
 * vt.h: the assertions and test declaration the suites use. On Linux they map
 * to Criterion (each test in its own process, with a time limit). With
 * VT_MINI they map to vt_mini.c, a small runner of our own, used where
 * Criterion cannot go: under ThreadSanitizer (Criterion's arena cannot be
 * mapped there) and, later, on Windows. Tests use only these macros.
 */
#ifndef VIGIL_VT_H
#define VIGIL_VT_H

#include <stdint.h>

#include "vigil.h"

#ifndef VT_MINI
#include <criterion/criterion.h>
#include <criterion/logging.h>

/* A test with a time limit in seconds. Under AddressSanitizer each test
 * ends with a leak check of its own process (util.c: vt_leak_check): what
 * the test or the library left unreachable fails the test. */
void vt_leak_check(void);
#define VT_TEST(suite, name, seconds)                                                       \
    static void vt_fn_##suite##_##name(void);                                               \
    Test(suite, name, .timeout = (seconds)) {                                               \
        vt_fn_##suite##_##name();                                                           \
        vt_leak_check();                                                                    \
    }                                                                                       \
    static void vt_fn_##suite##_##name(void)
#define VT_ASSERT(cond, ...) cr_assert(cond, __VA_ARGS__)
#define VT_LOG(...) cr_log_info(__VA_ARGS__)
/* Ends the test as skipped, with the reason (a printf format): Criterion
 * counts it apart (not in Tested or Passing; --verbose shows [SKIP]). */
#define VT_SKIP(...) cr_skip_test(__VA_ARGS__)

#else /* VT_MINI */

/* mingw's printf archetype is Microsoft's (no %zu); vt_mini.c formats with
 * mingw's own C99 printf (__USE_MINGW_ANSI_STDIO), so it checks as GNU's. */
#ifdef __MINGW32__
#define VT_PRINTF gnu_printf
#else
#define VT_PRINTF printf
#endif

typedef struct vt_case {
    const char *suite, *name;
    int timeout_s;
    void (*fn)(void);
    struct vt_case *next;
} vt_case;
void vt_register(vt_case *c);
void vt_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(VT_PRINTF, 4, 5)));
void vt_log(const char *fmt, ...) __attribute__((format(VT_PRINTF, 1, 2)));
void vt_skip(const char *fmt, ...) __attribute__((noreturn, format(VT_PRINTF, 1, 2)));

#define VT_TEST(suite, name, seconds)                                                       \
    static void vt_fn_##suite##_##name(void);                                               \
    static vt_case vt_case_##suite##_##name = {#suite, #name, (seconds),                    \
                                               vt_fn_##suite##_##name, 0};                  \
    __attribute__((constructor)) static void vt_reg_##suite##_##name(void) {                \
        vt_register(&vt_case_##suite##_##name);                                             \
    }                                                                                       \
    static void vt_fn_##suite##_##name(void)
#define VT_ASSERT(cond, ...)                                                                \
    do {                                                                                    \
        if (!(cond))                                                                        \
            vt_fail(__FILE__, __LINE__, #cond, " " __VA_ARGS__);                            \
    } while (0)
#define VT_LOG(...) vt_log(__VA_ARGS__)
/* Ends the test as skipped, with the reason: "[SKIP] suite::name: reason";
 * the Synthesis line counts it as Skipped, never as Passing. */
#define VT_SKIP(...) vt_skip(__VA_ARGS__)

#endif /* VT_MINI */

/* What only Linux has (signals, /proc, descriptor limits, Unix sockets):
 * the test is skipped on Windows, saying why, and runs everywhere else. */
#ifdef _WIN32
#define VT_SKIP_ON_WINDOWS(...) VT_SKIP(__VA_ARGS__)
#else
#define VT_SKIP_ON_WINDOWS(...) ((void)0)
#endif

#define VT_EQ(a, b)                                                                         \
    do {                                                                                    \
        long long vt_a_ = (long long)(a), vt_b_ = (long long)(b);                           \
        VT_ASSERT(vt_a_ == vt_b_, "%s == %s: %lld != %lld", #a, #b, vt_a_, vt_b_);          \
    } while (0)
/* A vigil call that must succeed (return >= 0). */
#define VT_OK(expr)                                                                         \
    do {                                                                                    \
        long long vt_rc_ = (long long)(expr);                                               \
        VT_ASSERT(vt_rc_ >= 0, "%s failed: %lld (%s)", #expr, vt_rc_,                       \
                  vigil_strerror((int)vt_rc_));                                             \
    } while (0)

#endif
