/*
 * vigil: the command-line tool. One file per subcommand:
 *   serve    serve.c    an echo or HTTP server, supervised, with stall injection
 *   bench    bench.c    a throughput benchmark and load generator
 *   profile  profile.c  stall recovery, measured: the main job
 */
#include "vigil.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage_main(FILE *f) {
    fprintf(f, "usage: vigil <command> [options]\n"
               "commands:\n"
               "  profile   measure stall recovery: detection, rebuild, gaps, bytes lost\n"
               "            (vigil profile --help)\n"
               "  bench     benchmark throughput against vigil or any echo server\n"
               "            (vigil bench --help)\n"
               "  serve     run an echo or HTTP server (vigil serve --help)\n"
               "  version   print the library version\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "bench"))
        return cmd_bench(argc - 2, argv + 2);
    if (!strcmp(cmd, "profile"))
        return cmd_profile(argc - 2, argv + 2);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("vigil %s\n", vigil_version());
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage_main(stdout);
        return 0;
    }
    fprintf(stderr, "vigil: unknown command '%s'\n", cmd);
    usage_main(stderr);
    return 2;
}
