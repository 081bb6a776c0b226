/*
 * unavailable_win.c: the subcommands vigil.exe does not have. `vigil bench`
 * and `vigil profile` fork their peers and servers, pin CPUs and start the
 * Linux comparison servers; on Windows they refuse, and point at the way to
 * measure vigil.exe: run them on Linux against `vigil.exe serve`.
 */
#include <stdio.h>

#include "cli.h"

static int unavailable(const char *cmd) {
    fprintf(stderr, "vigil %s: not available on Windows: run it on Linux against `vigil.exe serve`, "
                    "see docs/windows.md\n", cmd);
    return 2;
}

int cmd_bench(int argc, char **argv) {
    (void)argc, (void)argv;
    return unavailable("bench");
}

int cmd_profile(int argc, char **argv) {
    (void)argc, (void)argv;
    return unavailable("profile");
}
