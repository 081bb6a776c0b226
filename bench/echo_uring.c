/*
 * echo_uring: raw liburing echo server, the io_uring baseline for vigil.
 *
 * Design (one thread, one ring, plain file descriptors):
 *  - ring: IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN with a CQ
 *    8x the SQ (IORING_SETUP_CQSIZE); on -EINVAL the flags are dropped one
 *    at a time.
 *  - one multishot accept on the listener, re-armed whenever a CQE arrives
 *    without IORING_CQE_F_MORE.
 *  - one multishot recv per connection that picks 16 KiB buffers from a
 *    provided buffer ring of 1024 buffers (ring memory mmap'ed here, since
 *    liburing 2.3 lacks io_uring_setup_buf_ring).
 *  - echo is zero-copy: the received provided buffer is queued on the
 *    connection and sent from directly.  One send per connection is in
 *    flight at a time (keeps byte order); a partial send is re-issued for
 *    the remainder; the buffer goes back to the buffer ring when its last
 *    byte has been sent.  Queues are linked lists threaded through a
 *    per-buffer `next` array, so there is no allocation on the data path.
 *  - if the buffer ring runs dry, the multishot recv ends with -ENOBUFS;
 *    the bytes stay in the socket, the connection is parked and its recv is
 *    re-armed once buffers have been recycled.
 *  - a connection that holds MAX_HELD unsent buffers (its peer reads slower
 *    than it writes) has its multishot recv cancelled until its queue is
 *    down to RESUME_HELD, so it cannot starve the others of buffers.
 *  - reaping is batched: io_uring_submit_and_wait(ring, 1), then every
 *    ready CQE is walked with io_uring_for_each_cqe and retired with one
 *    io_uring_cq_advance; recycled buffers are published with one
 *    io_uring_buf_ring_advance before the next submit.
 *  - SIGINT/SIGTERM are read from a signalfd through the ring.
 */
#include <liburing.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdint.h>
#include <sys/mman.h>

#include "bench_common.h"

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_CQE_BUFFER_SHIFT
#define IORING_CQE_BUFFER_SHIFT 16
#endif

#define SQ_ENTRIES 2048u
#define CQ_ENTRIES (SQ_ENTRIES * 8u)
#define NBUFS 1024u           /* power of two (buffer ring size) */
#define BUFSZ (16u * 1024u)
#define BGID 7
#define NO_BUF 0xffffu
/* A connection holding MAX_HELD unsent buffers stops receiving (its
 * multishot recv is cancelled) until it is down to RESUME_HELD, so one
 * slow reader cannot take the whole buffer ring from the others. */
#define MAX_HELD 32u
#define RESUME_HELD 8u

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_SIGNAL, OP_CANCEL };

static inline uint64_t ud(enum op op, int fd)
{
	return ((uint64_t)op << 32) | (uint32_t)fd;
}

struct conn {
	uint16_t head, tail;  /* send queue of buffer ids, NO_BUF when empty */
	uint16_t nheld;       /* buffers in the send queue */
	bool used;
	bool recv_armed;      /* multishot recv outstanding */
	bool send_inflight;
	bool parked;          /* recv ended with -ENOBUFS, waiting for buffers */
	bool eof;             /* peer closed: flush queue, then close */
	bool err;             /* fatal error: drop queue, close when idle */
	bool throttled;       /* too many held buffers: recv paused */
	bool cancel_sent;     /* cancel of the multishot recv submitted */
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static unsigned char *bufbase;
static uint16_t buf_next[NBUFS];
static uint32_t buf_len[NBUFS], buf_off[NBUFS];
static int pending_recycle;     /* buffers added to br but not yet published */
static unsigned bufs_held;      /* buffers owned by connection send queues */

static struct conn *conns;
static long maxfds;
static int *parked;             /* FIFO of parked fds (each fd at most once) */
static long park_head, nparked;

static int listen_fd, sig_fd;
static struct signalfd_siginfo siginfo;
static bool stopping;
static uint64_t n_accepted, n_enobufs, n_partial_sends, n_rearms, n_throttles;

static void publish_buffers(void)
{
	if (pending_recycle) {
		io_uring_buf_ring_advance(br, pending_recycle);
		pending_recycle = 0;
	}
}

static struct io_uring_sqe *get_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

	if (!sqe) {
		publish_buffers();
		io_uring_submit(&ring);
		sqe = io_uring_get_sqe(&ring);
		if (!sqe) {
			fprintf(stderr, "echo_uring: no SQE available\n");
			exit(1);
		}
	}
	return sqe;
}

static void recycle(uint16_t bid)
{
	io_uring_buf_ring_add(br, bufbase + (size_t)bid * BUFSZ, BUFSZ, bid,
			      io_uring_buf_ring_mask(NBUFS), pending_recycle);
	pending_recycle++;
}

static void arm_accept(void)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud(OP_ACCEPT, listen_fd));
}

static void arm_signal(void)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_read(sqe, sig_fd, &siginfo, sizeof(siginfo), 0);
	io_uring_sqe_set_data64(sqe, ud(OP_SIGNAL, sig_fd));
}

static void arm_recv(int fd)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, ud(OP_RECV, fd));
	conns[fd].recv_armed = true;
	conns[fd].cancel_sent = false;
}

/* Re-arm the multishot recv if nothing stands in the way. */
static void maybe_rearm(int fd)
{
	struct conn *c = &conns[fd];

	if (c->recv_armed || c->parked || c->eof || c->err)
		return;
	if (c->throttled && c->nheld > RESUME_HELD)
		return;
	c->throttled = false;
	arm_recv(fd);
}

static void throttle(int fd)
{
	struct conn *c = &conns[fd];
	struct io_uring_sqe *sqe;

	c->throttled = true;
	if (!c->recv_armed || c->cancel_sent)
		return;
	sqe = get_sqe();
	io_uring_prep_cancel64(sqe, ud(OP_RECV, fd), 0);
	io_uring_sqe_set_data64(sqe, ud(OP_CANCEL, fd));
	c->cancel_sent = true;
	n_throttles++;
}

static void issue_send(int fd)
{
	struct conn *c = &conns[fd];
	uint16_t bid = c->head;
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_send(sqe, fd, bufbase + (size_t)bid * BUFSZ + buf_off[bid],
			   buf_len[bid] - buf_off[bid], MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud(OP_SEND, fd));
	c->send_inflight = true;
}

static void drop_queue(struct conn *c)
{
	while (c->head != NO_BUF) {
		uint16_t bid = c->head;
		c->head = buf_next[bid];
		recycle(bid);
		bufs_held--;
	}
	c->tail = NO_BUF;
	c->nheld = 0;
}

/* Close the connection once nothing refers to it any more. */
static void maybe_close(int fd)
{
	struct conn *c = &conns[fd];

	if (!(c->eof || c->err) || c->recv_armed || c->send_inflight || c->parked)
		return;
	if (c->eof && !c->err && c->head != NO_BUF)
		return; /* still flushing */
	drop_queue(c);
	close(fd);
	memset(c, 0, sizeof(*c));
}

static void fail_conn(int fd)
{
	struct conn *c = &conns[fd];

	if (!c->err) {
		c->err = true;
		/* wakes the multishot recv with EOF so it terminates */
		shutdown(fd, SHUT_RDWR);
	}
	if (!c->send_inflight)
		drop_queue(c);
}

static void on_accept(struct io_uring_cqe *cqe)
{
	int fd = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE) && !stopping)
		arm_accept();
	if (fd < 0) {
		if (fd != -ECANCELED)
			fprintf(stderr, "echo_uring: accept: %s\n", strerror(-fd));
		return;
	}
	if (fd >= maxfds) {
		close(fd);
		return;
	}
	memset(&conns[fd], 0, sizeof(conns[fd]));
	conns[fd].used = true;
	conns[fd].head = conns[fd].tail = NO_BUF;
	n_accepted++;
	bench_nodelay(fd);
	arm_recv(fd);
}

static void on_recv(struct io_uring_cqe *cqe, int fd)
{
	struct conn *c = &conns[fd];
	int res = cqe->res;
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (!more)
		c->recv_armed = false;
	if (res > 0) {
		uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);

		if (c->err) {
			recycle(bid);
		} else {
			buf_len[bid] = (uint32_t)res;
			buf_off[bid] = 0;
			buf_next[bid] = NO_BUF;
			if (c->tail == NO_BUF)
				c->head = bid;
			else
				buf_next[c->tail] = bid;
			c->tail = bid;
			c->nheld++;
			bufs_held++;
			if (!c->send_inflight)
				issue_send(fd);
			if (c->nheld >= MAX_HELD)
				throttle(fd);
			if (!more) {
				/* multishot ended for another reason */
				n_rearms++;
				maybe_rearm(fd);
			}
		}
	} else if (res == -ENOBUFS && !c->err) {
		n_enobufs++;
		if (!more && !(c->throttled && c->nheld > RESUME_HELD)) {
			/* (a throttled connection is resumed by on_send instead) */
			c->throttled = false;
			c->parked = true;
			parked[(park_head + nparked++) % maxfds] = fd;
		}
	} else if (res == -ECANCELED && c->cancel_sent && !c->err) {
		maybe_rearm(fd); /* throttle cancel done; resume if already drained */
	} else if (res == 0) {
		if (!more)
			c->eof = true;
	} else if (!more) {
		c->eof = true;
		fail_conn(fd);
	}
	maybe_close(fd);
}

static void on_send(struct io_uring_cqe *cqe, int fd)
{
	struct conn *c = &conns[fd];
	int res = cqe->res;

	c->send_inflight = false;
	if (c->err) {
		drop_queue(c);
	} else if (res >= 0) {
		uint16_t bid = c->head;

		buf_off[bid] += (uint32_t)res;
		if (buf_off[bid] < buf_len[bid])
			n_partial_sends++;
		if (buf_off[bid] >= buf_len[bid]) {
			c->head = buf_next[bid];
			if (c->head == NO_BUF)
				c->tail = NO_BUF;
			recycle(bid);
			bufs_held--;
			c->nheld--;
		}
		if (c->head != NO_BUF)
			issue_send(fd);
		if (c->throttled)
			maybe_rearm(fd);
	} else if (res == -EINTR || res == -EAGAIN) {
		issue_send(fd);
	} else {
		fail_conn(fd);
	}
	maybe_close(fd);
}

/*
 * Re-arm up to `n` parked receives, oldest first.  A parked connection has
 * data waiting, so each re-armed recv needs at least one buffer: callers
 * pass the number of buffers currently free in the ring.
 */
static void unpark(long n)
{
	if (n > nparked)
		n = nparked;
	for (long i = 0; i < n; i++) {
		int fd = parked[park_head];
		struct conn *c = &conns[fd];

		park_head = (park_head + 1) % maxfds;
		nparked--;

		c->parked = false;
		if (c->err || c->eof)
			maybe_close(fd);
		else
			maybe_rearm(fd);
	}
}

static int setup_ring(void)
{
	static const unsigned flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
		p.cq_entries = CQ_ENTRIES;
		ret = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
		if (ret == 0) {
			if (i != 0)
				fprintf(stderr, "echo_uring: ring flags fell back to 0x%x\n", p.flags);
			return 0;
		}
		if (ret != -EINVAL)
			break;
	}
	fprintf(stderr, "echo_uring: io_uring_queue_init_params: %s\n", strerror(-ret));
	return ret;
}

static void setup_buffers(void)
{
	size_t rsz = NBUFS * sizeof(struct io_uring_buf);
	struct io_uring_buf_reg reg;
	int ret;

	br = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bufbase = mmap(NULL, (size_t)NBUFS * BUFSZ, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (br == MAP_FAILED || bufbase == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)br;
	reg.ring_entries = NBUFS;
	reg.bgid = BGID;
	ret = io_uring_register_buf_ring(&ring, &reg, 0);
	if (ret != 0) {
		fprintf(stderr, "echo_uring: io_uring_register_buf_ring: %s\n", strerror(-ret));
		exit(1);
	}
	io_uring_buf_ring_init(br);
	for (unsigned i = 0; i < NBUFS; i++)
		recycle((uint16_t)i);
	publish_buffers();
}

int main(int argc, char **argv)
{
	struct bench_server_opts opts;

	bench_server_parse(argc, argv, &opts);
	maxfds = bench_raise_nofile();
	conns = calloc((size_t)maxfds, sizeof(*conns));
	parked = calloc((size_t)maxfds, sizeof(*parked));
	if (!conns || !parked) {
		perror("calloc");
		return 1;
	}
	sig_fd = bench_signalfd(0);
	listen_fd = bench_listen("echo_uring", &opts, 0);

	if (setup_ring() != 0)
		return 1;
	setup_buffers();
	arm_accept();
	arm_signal();

	while (!stopping) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int ret;

		publish_buffers();
		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			fprintf(stderr, "echo_uring: io_uring_submit_and_wait: %s\n", strerror(-ret));
			return 1;
		}
		io_uring_for_each_cqe(&ring, head, cqe) {
			uint64_t u = io_uring_cqe_get_data64(cqe);
			int fd = (int)(uint32_t)u;

			seen++;
			switch ((enum op)(u >> 32)) {
			case OP_ACCEPT:
				on_accept(cqe);
				break;
			case OP_RECV:
				on_recv(cqe, fd);
				break;
			case OP_SEND:
				on_send(cqe, fd);
				break;
			case OP_CANCEL:
				break; /* result of a throttle cancel: nothing to do */
			case OP_SIGNAL:
				if (cqe->res == (int)sizeof(siginfo))
					stopping = true;
				else
					arm_signal();
				break;
			}
		}
		io_uring_cq_advance(&ring, seen);
		/*
		 * Retry parked receives while buffers are free.  With
		 * DEFER_TASKRUN the kernel only takes buffers inside
		 * io_uring_enter, so after the walk NBUFS - bufs_held is the
		 * number of buffers sitting in the ring (an estimate without
		 * it; either way no parked connection waits forever, because
		 * every held buffer is recycled when its send completes).
		 */
		if (nparked && bufs_held < NBUFS)
			unpark((long)(NBUFS - bufs_held));
	}

	for (long fd = 0; fd < maxfds; fd++)
		if (conns[fd].used)
			close((int)fd);
	fprintf(stderr, "echo_uring: accepted=%" PRIu64 " enobufs=%" PRIu64 " partial_sends=%" PRIu64 " recv_rearms=%" PRIu64 " throttles=%" PRIu64 "\n",
		n_accepted, n_enobufs, n_partial_sends, n_rearms, n_throttles);
	close(listen_fd);
	io_uring_queue_exit(&ring);
	return 0;
}
