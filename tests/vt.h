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

/* A test with a time limit in seconds. */
#define VT_TEST(suite, name, seconds) Test(suite, name, .timeout = (seconds))
#define VT_ASSERT(cond, ...) cr_assert(cond, __VA_ARGS__)
#define VT_LOG(...) cr_log_info(__VA_ARGS__)

#else /* VT_MINI */

typedef struct vt_case {
    const char *suite, *name;
    int timeout_s;
    void (*fn)(void);
    struct vt_case *next;
} vt_case;
void vt_register(vt_case *c);
void vt_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
void vt_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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

#endif /* VT_MINI */

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
