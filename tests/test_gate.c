/* test_gate.c: the supervisor's contract for programs written from vigil.h
 * alone, which know nothing of threads: while a fenced callback still runs
 * on its old thread, no other callback of its loop runs (the gate), and the
 * rebuilt loop keeps the kernel side going meanwhile.
 *
 * The program here is a line chat server as a user would write it: a list of
 * clients that every line is broadcast over, client state freed in the close
 * callback, no locks. A "/spin" line walks the list for a while. Without the
 * gate, close callbacks on the rebuilt thread free what the spinning walk
 * reads (ASan: heap-use-after-free), and callbacks overlap. */
#include "compat.h"
#include "util.h"
#include "vt.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <poll.h>
#include <sys/socket.h>
#endif

static uint64_t ms_since(uint64_t t0) { return (vigil_now_ns() - t0) / 1000000ull; }
static void sleep_ms(int ms) { usleep((useconds_t)ms * 1000); }

/* ------------------------------------------------ the program under test */

typedef struct client {
    struct chat *chat;
    vigil_conn conn;
    struct client *prev, *next;
    char line[512];
    size_t len;
    uint64_t lines;
} client;

typedef struct chat {
    vigil_loop *loop;
    client *head;
    _Atomic int nclients, closed; /* atomic only because the test reads them */
    uint64_t spin_ms;
} chat;

/* Outside the program: what the test watches (the program itself uses none). */
static _Atomic int inside, overlaps, spin_started, spin_done;
static _Atomic uint64_t walked;

#define CALLBACK_BEGIN()                                                                    \
    do {                                                                                    \
        if (atomic_fetch_add(&inside, 1) > 0)                                               \
            atomic_fetch_add(&overlaps, 1);                                                 \
    } while (0)
#define CALLBACK_END() atomic_fetch_sub(&inside, 1)

static void on_sent(vigil_loop *loop, vigil_conn conn, int status, void *ud) {
    CALLBACK_BEGIN();
    client *c = vigil_conn_get_data(loop, conn);
    if (c && status < 0)
        c->lines += 0; /* a real program would log it; the state is read here */
    CALLBACK_END();
}

/* The busy part of a slow command: it walks every client's state. */
static void spin_over_clients(chat *ch) {
    atomic_store(&spin_started, 1);
    uint64_t until = vigil_now_ns() + ch->spin_ms * 1000000ull;
    while (vigil_now_ns() < until) {
        uint64_t sum = 0;
        for (client *o = ch->head; o; o = o->next)
            sum += o->lines + o->len;
        atomic_fetch_add(&walked, sum ? 1 : 1);
    }
    atomic_store(&spin_done, 1);
}

static void handle_line(client *c, const char *line, size_t n) {
    chat *ch = c->chat;
    c->lines++;
    if (n == 5 && !memcmp(line, "/spin", 5)) {
        spin_over_clients(ch);
        return;
    }
    if (n == 8 && !memcmp(line, "/spinsay", 8)) { /* then tell everyone: calls from a fenced thread */
        spin_over_clients(ch);
        for (client *o = ch->head; o; o = o->next)
            if (o != c)
                vigil_conn_send(ch->loop, o->conn, "spun\n", 5, 0, on_sent, NULL, NULL);
        return;
    }
    for (client *o = ch->head; o; o = o->next) {
        if (o == c)
            continue;
        char msg[600];
        int len = snprintf(msg, sizeof(msg), "%.*s\n", (int)n, line);
        vigil_conn_send(ch->loop, o->conn, msg, (size_t)len, 0, on_sent, NULL, NULL);
    }
}

static void on_close(vigil_loop *loop, vigil_conn conn, int status, void *ud) {
    CALLBACK_BEGIN();
    client *c = ud;
    chat *ch = c->chat;
    if (c->prev)
        c->prev->next = c->next;
    else
        ch->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ch->nclients--;
    ch->closed++;
    memset(c, 0xdd, sizeof(*c));
    free(c);
    CALLBACK_END();
}

static void on_recv(vigil_loop *loop, vigil_conn conn, int status, const vigil_buf *b, void *ud) {
    CALLBACK_BEGIN();
    client *c = ud;
    if (status <= 0) {
        vigil_conn_close(loop, conn, 1000, on_close, c);
        CALLBACK_END();
        return;
    }
    for (size_t i = 0; i < b->len; i++) {
        if (b->data[i] == '\n') {
            handle_line(c, c->line, c->len);
            c->len = 0;
        } else if (c->len < sizeof(c->line)) {
            c->line[c->len++] = (char)b->data[i];
        }
    }
    CALLBACK_END();
}

static void on_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn conn, void *ud) {
    CALLBACK_BEGIN();
    chat *ch = ud;
    if (status == 0) {
        client *c = calloc(1, sizeof(*c));
        c->chat = ch;
        c->conn = conn;
        c->next = ch->head;
        if (ch->head)
            ch->head->prev = c;
        ch->head = c;
        ch->nclients++;
        vigil_conn_set_data(loop, conn, c);
        vigil_conn_recv_start(loop, conn, 0, on_recv, c, NULL);
    }
    CALLBACK_END();
}

/* ---------------------------------------------------------- the harness */

/* The supervisor's lines (its thread): the one that says the gate opened. */
static _Atomic long gate_released = -1;

static void quiet(const char *line, void *ud) {
    const char *p = strstr(line, "go to the loop's callbacks now");
    const char *n = p ? strstr(line, "; the ") : NULL;
    if (n)
        atomic_store(&gate_released, strtol(n + 6, NULL, 10));
    if (getenv("VIGIL_TEST_VERBOSE"))
        fprintf(stderr, "%s\n", line);
}

typedef struct server {
    chat ch;
    vigil_supervisor *sv;
    _Atomic int port;
    int run_rc;
    pthread_t thread;
} server;

/* The program's main thread: listen, then run until stopped, as a plain
 * main() would. */
static void *server_main(void *arg) {
    server *s = arg;
    int port;
    vt_listen(s->ch.loop, on_accept, &s->ch, &port);
    atomic_store(&s->port, port);
    s->run_rc = vigil_loop_run(s->ch.loop, VIGIL_RUN_DEFAULT, -1);
    return NULL;
}

static void server_start(server *s, uint32_t flags, uint64_t spin_ms, uint32_t grace_ms) {
    memset(s, 0, sizeof(*s));
    atomic_store(&inside, 0);
    atomic_store(&overlaps, 0);
    atomic_store(&spin_started, 0);
    atomic_store(&spin_done, 0);
    atomic_store(&gate_released, -1);
    s->ch.loop = vt_supervised_loop(flags);
    s->ch.spin_ms = spin_ms;
    vigil_supervisor_options so = {.stall_ms = 100, .grace_ms = grace_ms, .log = quiet};
    s->sv = vt_supervise(s->ch.loop, &so);
    VT_EQ(pthread_create(&s->thread, NULL, server_main, s), 0);
    while (!atomic_load(&s->port))
        sleep_ms(1);
}

static void server_stop(server *s) {
    VT_OK(vigil_loop_stop(s->ch.loop));
    pthread_join(s->thread, NULL);
    VT_ASSERT(s->run_rc >= 0, "run: %d", s->run_rc);
    VT_OK(vigil_supervisor_remove(s->sv, s->ch.loop));
    VT_OK(vigil_supervisor_stop(s->sv));
}

/* Reads lines from a socket until want lines came or timeout_ms passed. */
static int read_lines(int fd, char *out, size_t cap, int want, int timeout_ms) {
    size_t got = 0;
    int lines = 0;
    uint64_t t0 = vigil_now_ns();
    while (lines < want && ms_since(t0) < (uint64_t)timeout_ms && got + 1 < cap) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (vt_poll(&pf, 1, 50) <= 0)
            continue;
        int r = (int)recv(fd, out + got, (int)(cap - 1 - got), 0);
        if (r <= 0)
            break;
        for (int i = 0; i < r; i++)
            lines += out[got + (size_t)i] == '\n';
        got += (size_t)r;
    }
    out[got] = 0;
    return lines;
}

static bool wait_flag(_Atomic int *f, int timeout_ms) {
    uint64_t t0 = vigil_now_ns();
    while (!atomic_load(f) && ms_since(t0) < (uint64_t)timeout_ms)
        sleep_ms(5);
    return atomic_load(f);
}

static void wait_fenced(vigil_loop *loop) {
    uint64_t t0 = vigil_now_ns();
    vigil_loop_stats ls;
    do {
        sleep_ms(5);
        vigil_loop_get_stats(loop, &ls);
    } while (!ls.rebuilds && ms_since(t0) < 5000);
    VT_EQ(ls.rebuilds, 1);
}

/* ----------------------------------------------------------------- tests */

/* The chat program: one client's "/spin" walks every client's state for
 * 1.5 s; meanwhile three clients hang up and four others talk. The rebuilt
 * loop runs none of the program's callbacks until the walk is over: nothing
 * is freed under it, no two callbacks overlap, and afterwards every line is
 * broadcast, in order, and every hang-up is seen. */
VT_TEST(gate, chat_broadcast_spin_while_peers_close, 30) {
    server s;
    server_start(&s, 0, 1500, 5000);
    enum { N = 8 };
    int fd[N];
    for (int i = 0; i < N; i++)
        fd[i] = vt_sock_connect(s.port);
    uint64_t t0 = vigil_now_ns();
    while (ms_since(t0) < 5000) { /* everyone is in the room */
        sleep_ms(5);
        if (atomic_load(&s.ch.nclients) == N)
            break;
    }
    VT_EQ(atomic_load(&s.ch.nclients), N);

    VT_OK(vt_sock_write_all(fd[0], "/spin\n", 6));
    VT_ASSERT(wait_flag(&spin_started, 5000), "the spin never started");
    wait_fenced(s.ch.loop);
    /* the walk goes on on the fenced thread: hang up and talk meanwhile */
    for (int i = 1; i <= 3; i++)
        vt_sock_close(fd[i]);
    for (int i = 4; i < N; i++) {
        char line[64];
        for (int k = 0; k < 3; k++) {
            int n = snprintf(line, sizeof(line), "client %d line %d\n", i, k);
            VT_OK(vt_sock_write_all(fd[i], line, (size_t)n));
        }
    }
    sleep_ms(300);
    vigil_loop_stats mid;
    VT_OK(vigil_loop_get_stats(s.ch.loop, &mid));
    VT_EQ(atomic_load(&spin_done), 0); /* still walking: the above happened during the walk */
    VT_EQ(mid.gated, 1);
    VT_ASSERT(mid.events_held > 0, "nothing held behind the gate");
    /* the kernel side goes on: a newcomer is accepted, held for the program
     * (its accept callback, which starts its receive, comes after the walk) */
    int late = vt_sock_connect(s.port);
    VT_OK(vt_sock_write_all(late, "newcomer\n", 9));
    sleep_ms(200);
    vigil_loop_stats mid2;
    VT_OK(vigil_loop_get_stats(s.ch.loop, &mid2));
    VT_EQ(atomic_load(&spin_done), 0);
    VT_ASSERT(mid2.events_held >= mid.events_held + 1, "the newcomer was not accepted behind the gate: "
              "%llu events held, %llu before", (unsigned long long)mid2.events_held,
              (unsigned long long)mid.events_held);

    VT_ASSERT(wait_flag(&spin_done, 5000), "the spin never ended");
    /* each talker gets the other talkers' lines, in each talker's order, and
     * the newcomer's */
    for (int i = 4; i < N; i++) {
        char got[4096];
        int lines = read_lines(fd[i], got, sizeof(got), 3 * 3 + 1, 5000);
        VT_EQ(lines, 10);
        VT_ASSERT(strstr(got, "newcomer\n"), "client %d missed the newcomer's line: %s", i, got);
        for (int j = 4; j < N; j++) {
            if (j == i)
                continue;
            char l0[32], l1[32], l2[32];
            snprintf(l0, sizeof(l0), "client %d line 0\n", j);
            snprintf(l1, sizeof(l1), "client %d line 1\n", j);
            snprintf(l2, sizeof(l2), "client %d line 2\n", j);
            char *p0 = strstr(got, l0), *p1 = strstr(got, l1), *p2 = strstr(got, l2);
            VT_ASSERT(p0 && p1 && p2 && p0 < p1 && p1 < p2, "client %d lost or reordered %d's lines: %s",
                      i, j, got);
        }
    }
    t0 = vigil_now_ns();
    while (atomic_load(&s.ch.closed) < 3 && ms_since(t0) < 5000)
        sleep_ms(5);
    VT_EQ(atomic_load(&s.ch.closed), 3);
    VT_EQ(atomic_load(&overlaps), 0); /* one callback at a time, always */

    vigil_loop_stats ls;
    VT_OK(vigil_loop_get_stats(s.ch.loop, &ls));
    VT_EQ(ls.rebuilds, 1);
    VT_EQ(ls.gated, 0);
    VT_EQ(ls.events_held, 0);
    VT_ASSERT(ls.events_held_total > 0, "nothing was held");
    VT_EQ(ls.stuck_returned, 1);
    VT_EQ(ls.stuck_reset, 0);
    /* the supervisor said how many events the gate let through: at least one
     * receive per talker, one end of stream per hang-up, the newcomer */
    uint64_t t1 = vigil_now_ns();
    while (atomic_load(&gate_released) < 0 && ms_since(t1) < 1000)
        sleep_ms(5);
    VT_ASSERT(atomic_load(&gate_released) >= 4 + 3 + 1, "the gate let %ld events through",
              atomic_load(&gate_released));
    server_stop(&s);
    vt_sock_close(late);
    for (int i = 0; i < N; i++)
        if (i < 1 || i > 3)
            vt_sock_close(fd[i]);
    VT_OK(vigil_loop_destroy(s.ch.loop)); /* frees the clients still in the room */
}

/* A callback that comes back after the grace period and then writes to other
 * clients: its calls are refused (it was fenced), so those clients are reset
 * rather than left without the line, never a silent gap; the stuck client
 * itself was reset when the grace period passed. */
VT_TEST(gate, late_return_resets_the_streams_its_calls_named, 30) {
    server s;
    server_start(&s, 0, 1200, 300);
    int a = vt_sock_connect(s.port), b = vt_sock_connect(s.port), c = vt_sock_connect(s.port);
    uint64_t t0 = vigil_now_ns();
    while (atomic_load(&s.ch.nclients) < 3 && ms_since(t0) < 5000)
        sleep_ms(5);
    VT_EQ(atomic_load(&s.ch.nclients), 3);
    VT_OK(vt_sock_write_all(a, "/spinsay\n", 9));
    VT_ASSERT(wait_flag(&spin_done, 5000), "the spin never ended");
    int others[2] = {b, c};
    for (int i = 0; i < 2; i++) {
        char got[64];
        int r = 0;
        t0 = vigil_now_ns();
        while (ms_since(t0) < 3000) { /* the line, or the end of the stream: not silence */
            struct pollfd pf = {.fd = others[i], .events = POLLIN};
            if (vt_poll(&pf, 1, 50) <= 0)
                continue;
            r = (int)recv(others[i], got, sizeof(got) - 1, 0);
            break;
        }
        VT_ASSERT(r <= 0 || (r == 5 && !memcmp(got, "spun\n", 5)), "client %d: %d bytes", i, r);
        VT_ASSERT(ms_since(t0) < 3000, "client %d heard nothing: a silent gap", i);
    }
    vigil_loop_stats ls;
    VT_OK(vigil_loop_get_stats(s.ch.loop, &ls));
    VT_EQ(ls.stuck_reset, 1);
    VT_ASSERT(ls.refused_calls >= 2, "refused calls %llu", (unsigned long long)ls.refused_calls);
    server_stop(&s);
    vt_sock_close(a);
    vt_sock_close(b);
    vt_sock_close(c);
    VT_OK(vigil_loop_destroy(s.ch.loop));
}

/* ------------------------------------------- whole programs, their main() */

#ifdef _WIN32
VT_TEST(gate, whole_programs_run_on_linux_only, 5) {
    VT_SKIP("the programs are started with fork and stopped with signals");
}
#else
#include <signal.h>
#include <sys/wait.h>

/* Reads one line from a pipe (the program's stdout). */
static bool read_line_fd(int fd, char *out, size_t cap, int timeout_ms) {
    size_t got = 0;
    uint64_t t0 = vigil_now_ns();
    while (ms_since(t0) < (uint64_t)timeout_ms && got + 1 < cap) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        if (read(fd, out + got, 1) != 1)
            break;
        if (out[got++] == '\n')
            break;
    }
    out[got] = 0;
    return got && out[got - 1] == '\n';
}

/* tests/prog_echo.c, run as a process of its own. */
typedef struct proc {
    pid_t pid;
    int out, err; /* its stdout and stderr */
    int port;
} proc;

/* sigint_ignored: started as a shell starts a background job (SIGINT ignored). */
static void proc_start(proc *p, const char *mode, bool sigint_ignored) {
    int o[2], e[2];
    VT_EQ(pipe(o), 0);
    VT_EQ(pipe(e), 0);
    fflush(NULL);
    p->pid = fork();
    VT_ASSERT(p->pid >= 0);
    if (p->pid == 0) {
        /* the program's own choice is AUTO: the backend under test through the environment */
        setenv("VIGIL_BACKEND", vt_backend() == VT_BACKEND_EPOLL ? "epoll" : "auto", 1);
        /* ThreadSanitizer waits 1 s at exit for threads to finish by default */
        char tsan[512];
        snprintf(tsan, sizeof(tsan), "%s:atexit_sleep_ms=0", getenv("TSAN_OPTIONS") ? getenv("TSAN_OPTIONS") : "");
        setenv("TSAN_OPTIONS", tsan, 1);
        dup2(o[1], 1);
        dup2(e[1], 2);
        if (sigint_ignored)
            signal(SIGINT, SIG_IGN); /* kept across exec */
        execl(VT_PROG_ECHO, VT_PROG_ECHO, mode, (char *)NULL);
        _exit(127);
    }
    close(o[1]);
    close(e[1]);
    p->out = o[0];
    p->err = e[0];
    char line[64];
    bool got = read_line_fd(p->out, line, sizeof(line), 5000);
    VT_ASSERT(got && sscanf(line, "port %d", &p->port) == 1, "%s did not start: '%s'", mode, line);
}

/* Waits up to timeout_ms for it to end: its wait status, or -1 (then it is killed). */
static int proc_wait(proc *p, int timeout_ms) {
    uint64_t t0 = vigil_now_ns();
    int st = 0;
    while (ms_since(t0) < (uint64_t)timeout_ms) {
        if (waitpid(p->pid, &st, WNOHANG) == p->pid)
            return st;
        sleep_ms(5);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &st, 0);
    return -1;
}

static void proc_stderr(proc *p, char *buf, size_t cap) {
    size_t got = 0;
    for (ssize_t n; got + 1 < cap && (n = read(p->err, buf + got, cap - 1 - got)) > 0;)
        got += (size_t)n;
    buf[got] = 0;
    close(p->err);
    close(p->out);
}

/* Sends line (with its newline) and reads the echo back. */
static bool echoes(int fd, const char *line, int timeout_ms) {
    size_t n = strlen(line);
    if (vt_sock_write_all(fd, line, n) < 0)
        return false;
    char got[256];
    return vt_sock_read_n(fd, got, n, timeout_ms) == n && !memcmp(got, line, n);
}

/* The README's main() with a callback that never returns: SIGINT ends the
 * process within 2 s, and its status and last line say why, also when it
 * was started the way a shell starts a background job (SIGINT ignored).
 * Meanwhile the gate holds every other callback. */
VT_TEST(gate, readme_main_ends_on_sigint_while_a_callback_hangs, 30) {
    proc p;
    proc_start(&p, "readme", true);
    int a = vt_sock_connect(p.port);
    VT_ASSERT(echoes(a, "hello\n", 5000), "no echo before the hang");
    VT_ASSERT(echoes(a, "hang\n", 5000), "the echo sent before the hang did not go out");
    sleep_ms(600); /* detected, fenced, rebuilt */
    int b = vt_sock_connect(p.port); /* the kernel accepts; its callbacks wait behind the gate */
    VT_OK(vt_sock_write_all(b, "x\n", 2));
    char got[8];
    VT_EQ(vt_sock_read_n(b, got, 2, 300), 0);
    uint64_t t0 = vigil_now_ns();
    VT_EQ(kill(p.pid, SIGINT), 0);
    int st = proc_wait(&p, 2000);
    uint64_t took = ms_since(t0);
    char err[8192];
    proc_stderr(&p, err, sizeof(err));
    VT_LOG("SIGINT to exit: %llu ms; stderr: %s", (unsigned long long)took, err);
    VT_ASSERT(st != -1, "still running 2 s after SIGINT; stderr: %s", err);
    VT_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status %#x; stderr: %s", st, err);
    VT_ASSERT(strstr(err, "echo: ") && strstr(err, "did not return"), "stderr: %s", err);
    VT_ASSERT(strstr(err, "stall"), "no stall report: %s", err);
    vt_sock_close(a);
    vt_sock_close(b);
}

/* The README's main() and a callback that spins 0.9 s (within the grace
 * period, 1 s from the fence): the loop is rebuilt, goes on once the
 * callback returned, and SIGTERM then ends it cleanly. */
VT_TEST(gate, readme_main_keeps_the_rescue_and_ends_cleanly, 30) {
    proc p;
    proc_start(&p, "readme", false);
    int a = vt_sock_connect(p.port);
    VT_ASSERT(echoes(a, "spin 900\n", 5000), "no echo of the spin line");
    sleep_ms(1100);
    int b = vt_sock_connect(p.port);
    VT_ASSERT(echoes(b, "after the spin\n", 5000), "the rebuilt loop does not serve");
    VT_ASSERT(echoes(a, "again\n", 5000), "the spinning connection did not move over");
    VT_EQ(kill(p.pid, SIGTERM), 0);
    int st = proc_wait(&p, 3000);
    char err[8192];
    proc_stderr(&p, err, sizeof(err));
    VT_ASSERT(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x; stderr: %s", st, err);
    VT_ASSERT(strstr(err, "rebuilt"), "no rebuild line: %s", err);
    vt_sock_close(a);
    vt_sock_close(b);
}

/* A plain run-then-destroy main(): the fenced thread's vigil_loop_run waits
 * for the loop to end where it was rebuilt, so the rescue is not thrown away
 * (it used to return -EOWNERDEAD at once, and main() destroyed the loop). */
VT_TEST(gate, naive_main_keeps_the_rescue, 30) {
    proc p;
    proc_start(&p, "naive", false);
    int a = vt_sock_connect(p.port);
    VT_ASSERT(echoes(a, "spin 900\n", 5000), "no echo of the spin line");
    sleep_ms(1100);
    int b = vt_sock_connect(p.port);
    VT_ASSERT(echoes(b, "after the spin\n", 5000), "the rescued loop is gone");
    VT_EQ(waitpid(p.pid, NULL, WNOHANG), 0); /* still running */
    VT_OK(vt_sock_write_all(b, "quit\n", 5)); /* its echo may be cut by the destroy that follows */
    int st = proc_wait(&p, 3000);
    char err[8192];
    proc_stderr(&p, err, sizeof(err));
    VT_ASSERT(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x; stderr: %s", st, err);
    vt_sock_close(a);
    vt_sock_close(b);
}
#endif
