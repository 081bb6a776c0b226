/*
 * file_send: what sending a file's bytes to a TCP socket costs the sender,
 * by the way they get there. Issue 19 asked for large bodies "without
 * copying through user memory where the kernel allows" (splice through a
 * pipe with io_uring, sendfile); `vigil serve --root` sends them from a
 * shared mapping of the file instead. This measures the choices side by
 * side, one connection over loopback, the sender on CPU 0 and a reader
 * process that discards everything on CPU 1:
 *
 *   mmap      io_uring send straight from a MAP_SHARED mapping (vigil's way:
 *             no copy in user space; the kernel copies the page cache into
 *             the socket once)
 *   splice    io_uring splice file -> pipe, then pipe -> socket (no copy at
 *             all; io_uring runs every splice on an io-wq thread, since
 *             splice cannot be tried without blocking)
 *   sendfile  sendfile(2) on a non-blocking socket, poll(2) when it is full
 *             (no copy; no io_uring: what an epoll loop would do)
 *   read      pread into a buffer, then io_uring send from it (two copies)
 *
 * The sender's CPU is getrusage(RUSAGE_SELF): every thread of its process,
 * io-wq workers included. The modes take turns ROUNDS times; medians.
 *
 * usage: file_send [--bodies N (20000)] [--size BYTES (262144)] [--rounds R (5)]
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MODE_MMAP, MODE_SPLICE, MODE_SENDFILE, MODE_READ, NMODES };
static const char *mode_name[NMODES] = {"mmap", "splice", "sendfile", "read"};

static long bodies = 20000, size = 256 * 1024, rounds = 5;
static struct io_uring ring;

static void die(const char *what, int err) {
    fprintf(stderr, "file_send: %s: %s\n", what, strerror(err));
    exit(1);
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set); /* a 1-CPU host: best effort */
}

static double cpu_us(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 +
           (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Submits what is queued and returns the one completion's result. */
static int complete_one(void) {
    struct io_uring_cqe *cqe;
    int rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0)
        die("io_uring_submit_and_wait", -rc);
    if ((rc = io_uring_wait_cqe(&ring, &cqe)) < 0)
        die("io_uring_wait_cqe", -rc);
    int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    return res;
}

static void send_from(int sock, const char *p, long len) {
    for (long off = 0; off < len;) {
        io_uring_prep_send(io_uring_get_sqe(&ring), sock, p + off, (size_t)(len - off), 0);
        int r = complete_one();
        if (r <= 0)
            die("send", r ? -r : EPIPE);
        off += r;
    }
}

static void send_body(int mode, int sock, int file, const char *map, char *buf, const int pipe_fd[2]) {
    switch (mode) {
    case MODE_MMAP:
        send_from(sock, map, size);
        break;
    case MODE_SPLICE:
        for (long off = 0; off < size;) {
            io_uring_prep_splice(io_uring_get_sqe(&ring), file, off, pipe_fd[1], -1,
                                 (unsigned)(size - off), 0);
            int in = complete_one();
            if (in <= 0)
                die("splice file -> pipe", in ? -in : EIO);
            for (int out = 0; out < in;) {
                io_uring_prep_splice(io_uring_get_sqe(&ring), pipe_fd[0], -1, sock, -1,
                                     (unsigned)(in - out), 0);
                int r = complete_one();
                if (r <= 0)
                    die("splice pipe -> socket", r ? -r : EPIPE);
                out += r;
            }
            off += in;
        }
        break;
    case MODE_SENDFILE:
        for (off_t off = 0; off < size;) {
            ssize_t r = sendfile(sock, file, &off, (size_t)(size - off));
            if (r < 0 && errno == EAGAIN) {
                struct pollfd pfd = {.fd = sock, .events = POLLOUT};
                poll(&pfd, 1, -1);
            } else if (r <= 0) {
                die("sendfile", r ? errno : EPIPE);
            }
        }
        break;
    default:
        if (pread(file, buf, (size_t)size, 0) != size)
            die("pread", EIO);
        send_from(sock, buf, size);
    }
}

/* One run of one mode: the sender's CPU microseconds per body. */
static double run(int mode, int file, const char *map, char *buf) {
    int lst = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (lst < 0 || bind(lst, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lst, 1) < 0 ||
        getsockname(lst, (struct sockaddr *)&a, &alen) < 0)
        die("listen on 127.0.0.1", errno);
    pid_t reader = fork();
    if (reader < 0)
        die("fork", errno);
    if (reader == 0) { /* the reader: every byte read and counted, none kept */
        pin(1);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
            _exit(2);
        static char sink[1 << 20];
        long long got = 0;
        ssize_t r;
        while ((r = read(c, sink, sizeof(sink))) > 0)
            got += r;
        _exit(got == (long long)bodies * size ? 0 : 3);
    }
    pin(0);
    int sock = accept(lst, NULL, NULL);
    if (sock < 0)
        die("accept", errno);
    close(lst);
    int pipe_fd[2] = {-1, -1};
    if (mode == MODE_SPLICE) {
        if (pipe(pipe_fd) < 0)
            die("pipe", errno);
        /* as large as allowed (pipe-max-size, 1 MiB by default): fewer rounds */
        long want = size < (1 << 20) ? size : (1 << 20);
        if (fcntl(pipe_fd[1], F_SETPIPE_SZ, (int)want) < 0)
            fcntl(pipe_fd[1], F_SETPIPE_SZ, 1 << 20);
    }
    if (mode == MODE_SENDFILE) { /* as an event loop would: non-blocking, poll on EAGAIN */
        int fl = fcntl(sock, F_GETFL);
        fcntl(sock, F_SETFL, fl | O_NONBLOCK);
    }
    double c0 = cpu_us(), t0 = now_s();
    for (long i = 0; i < bodies; i++)
        send_body(mode, sock, file, map, buf, pipe_fd);
    double c1 = cpu_us(), t1 = now_s();
    close(sock);
    if (pipe_fd[0] >= 0) {
        close(pipe_fd[0]);
        close(pipe_fd[1]);
    }
    int st;
    if (waitpid(reader, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "file_send: %s: the reader did not get every byte\n", mode_name[mode]);
        exit(1);
    }
    printf("  %-9s %8.1f us CPU per body, %8.0f bodies/s\n", mode_name[mode], (c1 - c0) / (double)bodies,
           (double)bodies / (t1 - t0));
    fflush(stdout);
    return (c1 - c0) / (double)bodies;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        long v = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--bodies") && v > 0)
            bodies = v;
        else if (!strcmp(argv[i], "--size") && v > 0 && v <= (1 << 30))
            size = v;
        else if (!strcmp(argv[i], "--rounds") && v > 0 && v <= 99)
            rounds = v;
        else
            argc = -1;
    }
    if (argc < 0 || argc % 2 == 0) {
        fprintf(stderr, "usage: file_send [--bodies N] [--size BYTES] [--rounds R]\n");
        return 2;
    }
    char path[] = "/tmp/file_send.XXXXXX";
    int file = mkstemp(path);
    if (file < 0)
        die("mkstemp", errno);
    unlink(path);
    char *buf = malloc((size_t)size);
    if (!buf)
        die("malloc", ENOMEM);
    for (long i = 0; i < size; i++)
        buf[i] = (char)(i * 7);
    if (write(file, buf, (size_t)size) != size) /* now in the page cache */
        die("write", EIO);
    char *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, file, 0);
    if (map == MAP_FAILED)
        die("mmap", errno);
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
    if (io_uring_queue_init_params(8, &ring, &p) < 0) {
        memset(&p, 0, sizeof(p)); /* before 6.1 */
        int rc = io_uring_queue_init_params(8, &ring, &p);
        if (rc < 0)
            die("io_uring_queue_init", -rc);
    }
    printf("file_send: %ld bodies of %ld bytes per run, sender on CPU 0, reader on CPU 1, %ld rounds\n",
           bodies, size, rounds);
    double cost[NMODES][99];
    for (long r = 0; r < rounds; r++) {
        printf("round %ld\n", r + 1);
        for (int m = 0; m < NMODES; m++)
            cost[m][r] = run(m, file, map, buf);
    }
    printf("medians\n");
    double base = 0;
    for (int m = 0; m < NMODES; m++) {
        qsort(cost[m], (size_t)rounds, sizeof(double), cmp_double);
        double med = rounds % 2 ? cost[m][rounds / 2] : (cost[m][rounds / 2 - 1] + cost[m][rounds / 2]) / 2;
        if (m == MODE_MMAP)
            base = med;
        printf("  %-9s %8.1f us CPU per body  %.2fx mmap\n", mode_name[m], med, med / base);
    }
    return 0;
}
