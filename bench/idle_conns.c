/*
 * idle_conns: holds N idle TCP connections to HOST:PORT open, so the memory a
 * server spends per idle connection can be measured from outside.
 * usage: idle_conns --port P [--host H] [--conns N] [--hold SECONDS]
 * Prints "idle_conns: connected N" once all are up, then sleeps for --hold
 * seconds (default 10) or until SIGINT/SIGTERM, then closes everything.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0, conns = 10000;
    double hold = 10;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--port") && v) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && v) host = argv[++i];
        else if (!strcmp(argv[i], "--conns") && v) conns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--hold") && v) hold = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: idle_conns --port P [--host H] [--conns N] [--hold SECONDS]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || conns <= 0) {
        fprintf(stderr, "idle_conns: --port and --conns must be positive\n");
        return 2;
    }
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    int *fds = calloc((size_t)conns, sizeof(int));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (!fds || inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "idle_conns: bad host or out of memory\n");
        return 2;
    }
    int n = 0;
    for (; n < conns && !stop; n++) {
        fds[n] = socket(AF_INET, SOCK_STREAM, 0);
        int tries = 0;
        while (fds[n] >= 0 && connect(fds[n], (struct sockaddr *)&a, sizeof(a)) < 0) {
            if (++tries > 50 || (errno != EAGAIN && errno != ECONNREFUSED && errno != EINTR)) {
                fprintf(stderr, "idle_conns: connect %d: %s\n", n, strerror(errno));
                return 1;
            }
            close(fds[n]);
            fds[n] = socket(AF_INET, SOCK_STREAM, 0);
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
        if (fds[n] < 0) {
            fprintf(stderr, "idle_conns: socket: %s\n", strerror(errno));
            return 1;
        }
    }
    printf("idle_conns: connected %d\n", n);
    fflush(stdout);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (!stop && (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < hold);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    return 0;
}
