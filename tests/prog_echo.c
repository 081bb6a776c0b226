/* prog_echo.c: an echo server written from vigil.h alone, as a user would,
 * run by test_gate.c as a process of its own. Each line is echoed; then
 * "spin MS" busy-loops MS milliseconds in the receive callback, "hang"
 * blocks there for good (a read nobody answers, retried on EINTR), "quit"
 * stops the loop. It prints "port N" once it listens.
 *
 *   prog_echo readme   main() is the README's pattern (vigil_serve)
 *   prog_echo naive    main() runs the loop, then destroys it
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vigil.h"

static int never[2]; /* a pipe nobody writes to */

static void spin(int ms) {
    uint64_t until = vigil_now_ns() + (uint64_t)ms * 1000000ull;
    while (vigil_now_ns() < until)
        ;
}

static void on_recv(vigil_loop *loop, vigil_conn conn, int status, const vigil_buf *buf, void *ud) {
    if (status <= 0) {
        vigil_conn_close(loop, conn, 1000, NULL, NULL);
        return;
    }
    vigil_conn_send(loop, conn, buf->data, buf->len, 0, NULL, NULL, NULL);
    char line[64] = "";
    memcpy(line, buf->data, buf->len < sizeof(line) - 1 ? buf->len : sizeof(line) - 1);
    if (!strncmp(line, "spin ", 5)) {
        spin(atoi(line + 5));
    } else if (!strncmp(line, "hang", 4)) {
        char c;
        while (read(never[0], &c, 1) < 0 && errno == EINTR)
            ;
    } else if (!strncmp(line, "quit", 4)) {
        vigil_loop_stop(loop);
    }
}

static void on_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn conn, void *ud) {
    if (status == 0)
        vigil_conn_recv_start(loop, conn, 0, on_recv, NULL, NULL);
}

static int start_echo(vigil_loop *loop) {
    vigil_listener_options lo = {.host = "127.0.0.1"};
    vigil_listener l;
    int rc = vigil_listener_open(loop, &lo, on_accept, NULL, &l);
    if (rc < 0)
        return rc;
    printf("port %d\n", vigil_listener_get_port(loop, l));
    fflush(stdout);
    return 0;
}

/* The README's main(), word for word but for the name of start_echo. */
static int readme_main(void) {
    vigil_loop *loop;
    vigil_supervisor *sv;
    vigil_loop_options lo = {.flags = VIGIL_LOOP_SUPERVISED};
    if (vigil_loop_create(&loop, &lo) < 0 || vigil_supervisor_start(&sv, NULL) < 0 ||
        vigil_supervisor_add(sv, loop) < 0 || start_echo(loop) < 0)
        return 1;
    /* Runs the loop on a thread of vigil's until SIGINT or SIGTERM. */
    int end = vigil_serve(&loop, 1, &(vigil_serve_options){.stop_ms = 1000});
    vigil_supervisor_remove(sv, loop);
    vigil_supervisor_stop(sv);
    int rc = end < 0 ? end : vigil_loop_destroy(loop);
    if (rc < 0) { /* a callback never returned: the exit ends it */
        fprintf(stderr, "echo: %s\n", vigil_strerror(rc));
        return 3;
    }
    return 0;
}

/* What a user writes first: run, then destroy. */
static int naive_main(void) {
    vigil_loop *loop;
    vigil_supervisor *sv;
    vigil_loop_options lo = {.flags = VIGIL_LOOP_SUPERVISED};
    if (vigil_loop_create(&loop, &lo) < 0 || vigil_supervisor_start(&sv, NULL) < 0 ||
        vigil_supervisor_add(sv, loop) < 0 || start_echo(loop) < 0)
        return 1;
    int rc = vigil_loop_run(loop, VIGIL_RUN_DEFAULT, -1);
    vigil_supervisor_remove(sv, loop);
    vigil_supervisor_stop(sv);
    vigil_loop_destroy(loop);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
    if (pipe(never) < 0)
        return 1;
    if (argc > 1 && !strcmp(argv[1], "naive"))
        return naive_main();
    return readme_main();
}
