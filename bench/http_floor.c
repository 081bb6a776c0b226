/*
 * http_floor: the least an io_uring HTTP/1.1 client can spend, the floor
 * under `vigil bench --http`'s client CPU per request.
 *
 *   http_floor PORT PATH CONNS SECONDS [BATCH]
 *
 * CONNS keep-alive connections to 127.0.0.1:PORT, one GET PATH in flight on
 * each, for SECONDS; prints requests/s and this thread's CPU per request.
 * It does what vigil bench does in the kernel and nothing of what it does
 * in user space: one ring (SINGLE_ISSUER | DEFER_TASKRUN), a multishot
 * receive per connection into a provided-buffer ring, a send per request,
 * and waits batched as vigil bench's are (half the requests in flight, at
 * most BATCH, default 64, or 250 us; completions already in the CQ are not
 * counted). It does not parse: a response is taken to be as long as the
 * first one (read whole, Content-Length framing, before the clock starts),
 * so it is only for servers whose responses are all the same length, as a
 * static file's are. No latency, no checks: what is left between this and
 * vigil bench is vigil's own work (bench/README.md, "Third part").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

#define NBUF 1024  /* receive buffers, a power of two */
#define BUFSZ 4096
#define SEND_BIT 1 /* user_data: connection << 1, | 1 for its send */

static void die(const char *what, int err) {
    fprintf(stderr, "http_floor: %s: %s\n", what, strerror(err));
    exit(1);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double thread_cpu_s(void) {
    struct rusage r;
    getrusage(RUSAGE_THREAD, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) * 1e-6;
}

/* One blocking request and response before the run: its length (the head
 * to its empty line, plus Content-Length). */
static int response_length(int fd, const char *req, size_t req_len) {
    char buf[8192];
    size_t got = 0;
    if (send(fd, req, req_len, 0) != (ssize_t)req_len)
        die("first send", errno);
    for (;;) {
        ssize_t k = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (k <= 0)
            die("first response", k < 0 ? errno : ECONNRESET);
        got += (size_t)k;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n"), *cl = strcasestr(buf, "\r\ncontent-length:");
        if (end && cl && cl < end) {
            size_t want = (size_t)(end + 4 - buf) + strtoul(cl + 17, NULL, 10);
            if (got == want)
                return (int)want;
            if (got > want || want >= sizeof(buf))
                die("first response: not one whole response under 8 KiB", EPROTO);
        }
    }
}

static struct io_uring_sqe *sqe_of(struct io_uring *ring) {
    struct io_uring_sqe *s = io_uring_get_sqe(ring);
    if (!s) {
        io_uring_submit(ring);
        s = io_uring_get_sqe(ring);
    }
    return s;
}

static void arm_recv(struct io_uring *ring, int fd, int conn) {
    struct io_uring_sqe *s = sqe_of(ring);
    io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = 0;
    io_uring_sqe_set_data64(s, (uint64_t)conn << 1);
}

static void send_request(struct io_uring *ring, int fd, int conn, const char *req, size_t len) {
    struct io_uring_sqe *s = sqe_of(ring);
    io_uring_prep_send(s, fd, req, len, 0);
    io_uring_sqe_set_data64(s, (uint64_t)conn << 1 | SEND_BIT);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: http_floor PORT PATH CONNS SECONDS [BATCH]\n");
        return 2;
    }
    int port = atoi(argv[1]), conns = atoi(argv[3]);
    double seconds = atof(argv[4]);
    unsigned batch_cap = argc > 5 ? (unsigned)atoi(argv[5]) : 64;
    if (port <= 0 || port > 65535 || conns <= 0 || conns > 10000 || seconds <= 0) {
        fprintf(stderr, "http_floor: bad arguments\n");
        return 2;
    }
    char req[512];
    int req_len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", argv[2], port);
    if (req_len <= 0 || (size_t)req_len >= sizeof(req))
        die("path", ENAMETOOLONG);

    struct io_uring ring;
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_CQSIZE,
                                .cq_entries = 8192};
    int rc = io_uring_queue_init_params(1024, &ring, &p);
    if (rc < 0)
        die("io_uring_queue_init_params", -rc);
    struct io_uring_buf_ring *br; /* liburing 2.3 has no io_uring_setup_buf_ring */
    if (posix_memalign((void **)&br, 4096, NBUF * sizeof(struct io_uring_buf)))
        die("buffer ring", ENOMEM);
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = NBUF, .bgid = 0};
    if ((rc = io_uring_register_buf_ring(&ring, &reg, 0)) < 0)
        die("io_uring_register_buf_ring", -rc);
    char *bufs = malloc((size_t)NBUF * BUFSZ);
    int *fd = calloc((size_t)conns, sizeof(int)), *pending = calloc((size_t)conns, sizeof(int));
    if (!bufs || !fd || !pending)
        die("memory", ENOMEM);
    for (int i = 0; i < NBUF; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * BUFSZ, BUFSZ, (unsigned short)i, NBUF - 1, i);
    io_uring_buf_ring_advance(br, NBUF);

    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int resp_len = 0;
    for (int i = 0; i < conns; i++) {
        int one = 1;
        if ((fd[i] = socket(AF_INET, SOCK_STREAM, 0)) < 0)
            die("socket", errno);
        setsockopt(fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd[i], (struct sockaddr *)&a, sizeof(a)) < 0)
            die("connect", errno);
        if (i == 0)
            resp_len = response_length(fd[0], req, (size_t)req_len);
    }
    for (int i = 0; i < conns; i++) {
        arm_recv(&ring, fd[i], i);
        send_request(&ring, fd[i], i, req, (size_t)req_len);
    }

    long responses = 0;
    unsigned in_flight = (unsigned)conns;
    double t0 = now_s(), c0 = thread_cpu_s(), t_end = t0 + seconds;
    while (now_s() < t_end) {
        /* As vigil's batched wait: submit, then wait for a batch beyond
         * what is already in the CQ (the sends just done), or 250 us. */
        unsigned batch = in_flight / 2 < batch_cap ? in_flight / 2 : batch_cap;
        if (in_flight < 32)
            batch = 1;
        if ((rc = io_uring_submit(&ring)) < 0)
            die("submit", -rc);
        struct __kernel_timespec ts = {.tv_nsec = 100000000};
        struct io_uring_getevents_arg arg = {.sigmask_sz = _NSIG / 8, .pad = 250, .ts = (uint64_t)(uintptr_t)&ts};
        rc = io_uring_enter2((unsigned)ring.ring_fd, 0, io_uring_cq_ready(&ring) + batch,
                             IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, (sigset_t *)&arg, sizeof(arg));
        if (rc < 0 && rc != -ETIME && rc != -EINTR)
            die("wait", -rc);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            int i = (int)(cqe->user_data >> 1);
            if (cqe->user_data & SEND_BIT) {
                if (cqe->res != req_len)
                    die("send", cqe->res < 0 ? -cqe->res : EIO);
                continue;
            }
            if (cqe->res <= 0)
                die("receive", cqe->res < 0 ? -cqe->res : ECONNRESET);
            unsigned short bid = (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            io_uring_buf_ring_add(br, bufs + (size_t)bid * BUFSZ, BUFSZ, bid, NBUF - 1, 0);
            io_uring_buf_ring_advance(br, 1);
            for (pending[i] += cqe->res; pending[i] >= resp_len; pending[i] -= resp_len) {
                responses++;
                send_request(&ring, fd[i], i, req, (size_t)req_len);
            }
            if (!(cqe->flags & IORING_CQE_F_MORE))
                arm_recv(&ring, fd[i], i);
        }
        io_uring_cq_advance(&ring, seen);
    }
    double t = now_s() - t0, cpu = thread_cpu_s() - c0;
    printf("http_floor: %ld responses in %.2f s: %.0f req/s, client %.3f us/req\n", responses, t,
           (double)responses / t, responses ? cpu * 1e6 / (double)responses : 0.0);
    return 0;
}
