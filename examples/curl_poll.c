/* curl_poll: libcurl's multi-socket API driven by a vigil loop.   usage: curl_poll URL...
 *
 * Fetches every URL at once and prints "URL: STATUS, N bytes" for each as it
 * ends; exits 0 if every one answered 200. libcurl owns its sockets and does
 * the I/O; vigil tells it when they are ready (vigil_poll_start/_update,
 * level-triggered like poll(2)) and when its timeout is due (a timer):
 *   - CURLMOPT_SOCKETFUNCTION: curl says which events a socket wants, or
 *     that it is done with it: start, update or cancel a watcher;
 *   - CURLMOPT_TIMERFUNCTION: curl asks to be called in N ms (-1: never);
 *   - from either callback we call curl_multi_socket_action. */
#include <vigil.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>

struct xfer { const char *url; size_t bytes; };
/* One per socket curl watches; freed once curl said REMOVE *and* the
 * watcher had its final callback (-ECANCELED after our cancel, or an error). */
struct sock { curl_socket_t fd; vigil_op watcher; int ended, removed; };

static vigil_loop *loop;
static CURLM *multi;
static vigil_op timer;
static int timer_live, running, left, failures;

static void die(const char *what, int err) {
    fprintf(stderr, "curl_poll: %s: %s\n", what, vigil_strerror(err));
    exit(1);
}
/* Reports the transfers that have ended; after the last one, lets curl go:
 * that closes its cached connections (REMOVE for each socket) and its timer
 * (-1), so the loop runs out of work and vigil_loop_run returns. */
static void check_done(void) {
    CURLMsg *m;
    int queued;
    while (multi && (m = curl_multi_info_read(multi, &queued))) {
        if (m->msg != CURLMSG_DONE) continue;
        struct xfer *x;
        long code = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        if (m->data.result != CURLE_OK)
            printf("%s: error: %s\n", x->url, curl_easy_strerror(m->data.result));
        else
            printf("%s: %ld, %zu bytes\n", x->url, code, x->bytes);
        fflush(stdout);
        failures += m->data.result != CURLE_OK || code != 200;
        curl_multi_remove_handle(multi, m->easy_handle);
        curl_easy_cleanup(m->easy_handle);
        if (--left == 0) {
            curl_multi_cleanup(multi);
            multi = NULL;
        }
    }
}
/* status > 0: VIGIL_POLL_* ready now (an error or hang-up shows as ready).
 * < 0: final. s may be freed inside curl_multi_socket_action (REMOVE). */
static void on_poll(vigil_loop *l, vigil_op w, int status, void *ud) {
    struct sock *s = ud;
    curl_socket_t fd = s->fd;
    if (status < 0 && (s->ended = 1, s->removed)) { /* our cancel after REMOVE */
        free(s);
        return;
    }
    int flags = status < 0 ? CURL_CSELECT_ERR /* the watcher failed: tell curl */
                           : ((status & VIGIL_POLL_READABLE) ? CURL_CSELECT_IN : 0) |
                                 ((status & VIGIL_POLL_WRITABLE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(multi, fd, flags, &running);
    check_done();
}
static int sock_cb(CURL *e, curl_socket_t fd, int what, void *ud, void *sockp) {
    struct sock *s = sockp;
    int rc = 0;
    if (what == CURL_POLL_REMOVE) { /* curl will close fd: stop watching first */
        if (!s) return 0;
        curl_multi_assign(multi, fd, NULL);
        s->removed = 1;
        if (s->ended) free(s);
        else if ((rc = vigil_op_cancel(loop, s->watcher)) < 0) die("vigil_op_cancel", rc);
        return 0;
    }
    uint32_t ev = (what & CURL_POLL_IN ? VIGIL_POLL_READABLE : 0) |
                  (what & CURL_POLL_OUT ? VIGIL_POLL_WRITABLE : 0);
    if (s && !s->ended) {
        rc = vigil_poll_update(loop, s->watcher, ev);
    } else { /* a new socket, or its watcher failed: (re)start one */
        if (!s && !(s = calloc(1, sizeof *s))) die("calloc", -ENOMEM);
        *s = (struct sock){.fd = fd};
        rc = vigil_poll_start(loop, fd, ev, on_poll, s, &s->watcher);
        curl_multi_assign(multi, fd, s);
    }
    if (rc < 0) die("vigil_poll_start/update", rc);
    return 0;
}
static void on_timer(vigil_loop *l, vigil_op t, int status, void *ud) {
    if (status < 0) return; /* -ECANCELED: replaced or no longer wanted */
    timer_live = 0;         /* a one-shot timer that fired has ended */
    curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done();
}
/* curl wants to be called in ms milliseconds (0: soon, but not from inside
 * this callback: a 0 ms timer does that), or never (-1). */
static int timer_cb(CURLM *m, long ms, void *ud) {
    int rc = 0;
    if (ms < 0) {
        if (timer_live) rc = vigil_op_cancel(loop, timer);
        timer_live = 0;
    } else if (!timer_live || vigil_timer_restart(loop, timer, (uint64_t)ms, 0) < 0) {
        rc = vigil_timer_start(loop, (uint64_t)ms, 0, on_timer, NULL, &timer);
        timer_live = rc == 0;
    }
    if (rc < 0) die("timer", rc);
    return 0;
}
static size_t on_data(char *p, size_t size, size_t n, void *ud) {
    ((struct xfer *)ud)->bytes += size * n;
    return size * n;
}
int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: curl_poll URL...\n  fetches every URL concurrently\n");
        return 2;
    }
    int rc = vigil_loop_create(&loop, NULL);
    if (rc < 0) die("vigil_loop_create", rc);
    struct xfer *x = calloc((size_t)argc, sizeof *x);
    if (!x || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(multi = curl_multi_init())) {
        fprintf(stderr, "curl_poll: cannot initialise libcurl\n");
        return 1;
    }
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    for (int i = 1; i < argc; i++, left++) {
        CURL *e = curl_easy_init();
        if (!e) die("curl_easy_init", -ENOMEM);
        x[i].url = argv[i];
        curl_easy_setopt(e, CURLOPT_URL, argv[i]);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &x[i]);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &x[i]);
        curl_multi_add_handle(multi, e); /* asks for a timer: curl starts from there */
    }
    /* Until nothing is left: no watcher, no timer. */
    if ((rc = vigil_loop_run(loop, VIGIL_RUN_DEFAULT, -1)) < 0) die("vigil_loop_run", rc);
    if ((rc = vigil_loop_destroy(loop)) < 0) die("vigil_loop_destroy", rc);
    free(x);
    curl_global_cleanup();
    return failures ? 1 : 0;
}
