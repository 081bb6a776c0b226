/* consumer.c: a program built against an installed vigil, by pkg-config
 * and by CMake (tests/install.sh), from vigil.h alone: a loop, a timer that
 * fires once, the loop run until no work is left, destroyed. Prints "ok"
 * when all of that went as the header says; exits 1 with what went wrong
 * otherwise. */
#include <stdio.h>
#include <stdlib.h>

#include <vigil.h>

static void fired(vigil_loop *loop, vigil_op timer, int status, void *ud) {
    (void)loop, (void)timer;
    if (status == 0)
        (*(int *)ud)++;
}

static int fail(const char *what, int rc) {
    printf("%s: %s (%d)\n", what, vigil_strerror(rc), rc);
    return 1;
}

int main(void) {
    vigil_loop *loop;
    int rc = vigil_loop_create(&loop, NULL);
    if (rc < 0)
        return fail("vigil_loop_create", rc);
    int fires = 0;
    if ((rc = vigil_timer_start(loop, 10, 0, fired, &fires, NULL)) < 0)
        return fail("vigil_timer_start", rc);
    /* returns when no work is left: the timer done (5 s at most) */
    if ((rc = vigil_loop_run(loop, VIGIL_RUN_DEFAULT, 5000)) < 0)
        return fail("vigil_loop_run", rc);
    if ((rc = vigil_loop_destroy(loop)) < 0)
        return fail("vigil_loop_destroy", rc);
    if (fires != 1) {
        printf("the timer fired %d times, not once\n", fires);
        return 1;
    }
    printf("ok\n");
    return 0;
}
