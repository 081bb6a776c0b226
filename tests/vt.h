/*
 * vt.h: the assertions and test declaration the suites use. On Linux they map
 * to Criterion (each test in its own process, with a time limit). Tests use
 * only these macros, so another runner can stand in where Criterion is not
 * packaged (Windows).
 */
#ifndef VIGIL_VT_H
#define VIGIL_VT_H

#include <criterion/criterion.h>
#include <stdint.h>

#include "vigil.h"

/* A test with a time limit in seconds. */
#define VT_TEST(suite, name, seconds) Test(suite, name, .timeout = (seconds))

#define VT_ASSERT(cond, ...) cr_assert(cond, __VA_ARGS__)
#define VT_EQ(a, b)                                                                         \
    do {                                                                                    \
        long long vt_a_ = (long long)(a), vt_b_ = (long long)(b);                           \
        cr_assert(vt_a_ == vt_b_, "%s == %s: %lld != %lld", #a, #b, vt_a_, vt_b_);          \
    } while (0)
/* A vigil call that must succeed (return >= 0). */
#define VT_OK(expr)                                                                         \
    do {                                                                                    \
        long long vt_rc_ = (long long)(expr);                                               \
        cr_assert(vt_rc_ >= 0, "%s failed: %lld (%s)", #expr, vt_rc_,                       \
                  vigil_strerror((int)vt_rc_));                                             \
    } while (0)

#endif
