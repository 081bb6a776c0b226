/*
 * pool.c: worker threads for the blocking calls of one loop (see pool.h).
 *
 * One lock guards the queue, the done list and each job's state. A cancel
 * of a running job signals the worker's own cancel fd (platform.h: an
 * eventfd on Linux); the worker drains it before each job, so a cancel
 * meant for one job never ends the next. On Windows there is none (and no
 * call of ours would wait through one): a running job there is never
 * interrupted, cancel_fd is -1.
 *
 * Abandoning (destroy, pool.h): the loop and a worker race for a running
 * job's hand with one compare-and-swap each, so exactly one of them ends
 * it: the worker through the done list, or the loop with -ECANCELED while
 * the worker frees the block. An abandoned worker keeps its cancel_fd (it
 * closes it) and is detached at stop: it may outlive the pool.
 */
#include "core/pool.h"
#include "os/platform.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

typedef struct worker {
    vigil__pool *pool;
    pthread_t thread;
    int cancel_fd;
    vigil__job *job; /* running now, or NULL */
    bool abandoned;  /* its job was given up: detached at stop, its fd is its own */
} worker;

struct vigil__pool {
    vigil_loop *loop;
    pthread_mutex_t lock;
    pthread_cond_t work;  /* a job was queued, or stop */
    pthread_cond_t done;  /* a job finished (destroy waits on it) */
    vigil__job *queue_head, *queue_tail;
    vigil__job *done_head, *done_tail;
    _Atomic uint32_t ndone; /* on the done list: the loop looks here each pass without the lock */
    uint32_t queued, queue_max, running;
    uint32_t idle;        /* workers waiting for a job */
    uint32_t n, max;      /* workers started, at most */
    worker *w;
    bool stop;
};

int vigil__pool_new(vigil__pool **out, vigil_loop *loop, uint32_t threads, uint32_t queue) {
    vigil__pool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->w = calloc(threads, sizeof(*p->w));
    if (!p->w) {
        free(p);
        return -ENOMEM;
    }
    p->loop = loop;
    p->max = threads;
    p->queue_max = queue;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    *out = p;
    return 0;
}

static void finish_locked(vigil__pool *p, vigil__job *j, int res) {
    j->res = res;
    j->state = VIGIL__JOB_DONE;
    j->next = NULL;
    atomic_fetch_add_explicit(&p->ndone, 1, memory_order_release);
    if (p->done_tail)
        p->done_tail->next = j;
    else
        p->done_head = j;
    p->done_tail = j;
    pthread_cond_broadcast(&p->done);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    vigil__pool *p = w->pool;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->queue_head && !p->stop) {
            p->idle++;
            pthread_cond_wait(&p->work, &p->lock);
            p->idle--;
        }
        if (!p->queue_head)
            break; /* stop, and nothing left */
        vigil__job *j = p->queue_head;
        p->queue_head = j->next;
        if (!p->queue_head)
            p->queue_tail = NULL;
        p->queued--;
        p->running++;
        j->state = VIGIL__JOB_RUNNING;
        atomic_store_explicit(&j->hand, VIGIL__JOB_RUNNING, memory_order_relaxed);
        w->job = j;
        int cancel_fd = w->cancel_fd; /* a copy: once abandoned, w is not ours to read */
        pthread_mutex_unlock(&p->lock);

        vigil__cancel_fd_drain(cancel_fd); /* a cancel for an earlier job */
        int res = j->run(j, cancel_fd);

        int hand = VIGIL__JOB_RUNNING;
        if (!atomic_compare_exchange_strong_explicit(&j->hand, &hand, VIGIL__JOB_RETURNED, memory_order_acq_rel,
                                                     memory_order_acquire)) {
            /* Abandoned: its op was completed without us and the pool and
             * the loop may be freed already. Only j and cancel_fd are ours. */
            if (j->drop)
                j->drop(j, res);
            free(j);
            vigil__cancel_fd_close(cancel_fd);
            return NULL;
        }

        pthread_mutex_lock(&p->lock);
        w->job = NULL;
        p->running--;
        finish_locked(p, j, j->cancel && res == -EINTR ? -ECANCELED : res);
        pthread_mutex_unlock(&p->lock);
        vigil_loop_wake(p->loop);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Starts one more worker, with every signal blocked (the mask is inherited). */
static int start_worker_locked(vigil__pool *p) {
    worker *w = &p->w[p->n];
    w->pool = p;
    int rc = vigil__cancel_fd_open(&w->cancel_fd);
    if (rc < 0)
        return rc;
    rc = vigil__thread_start_unsignalled(&w->thread, worker_main, w); /* pool.h: every signal blocked */
    if (rc < 0) {
        vigil__cancel_fd_close(w->cancel_fd);
        return rc;
    }
    pthread_setname_np(w->thread, "vigil-pool");
    p->n++;
    return 0;
}

int vigil__pool_submit(vigil__pool *p, vigil__job *j) {
    pthread_mutex_lock(&p->lock);
    if (p->queued >= p->queue_max) {
        pthread_mutex_unlock(&p->lock);
        return -EAGAIN;
    }
    if (p->idle <= p->queued && p->n < p->max) {
        int rc = start_worker_locked(p);
        if (rc < 0 && p->n == 0) {
            pthread_mutex_unlock(&p->lock);
            return rc; /* nobody would ever run it */
        }
    }
    j->next = NULL;
    j->state = VIGIL__JOB_QUEUED;
    j->cancel = false;
    if (p->queue_tail)
        p->queue_tail->next = j;
    else
        p->queue_head = j;
    p->queue_tail = j;
    p->queued++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* Takes j out of the queue, done with -ECANCELED, if it is there. Under
 * the lock. */
static bool unqueue_locked(vigil__pool *p, vigil__job *j) {
    if (j->state != VIGIL__JOB_QUEUED)
        return false;
    vigil__job **pp = &p->queue_head, *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return false;
    *pp = j->next;
    if (p->queue_tail == j)
        p->queue_tail = prev;
    p->queued--;
    finish_locked(p, j, -ECANCELED);
    return true;
}

bool vigil__pool_cancel_queued(vigil__pool *p, vigil__job *j) {
    pthread_mutex_lock(&p->lock);
    bool done = unqueue_locked(p, j);
    pthread_mutex_unlock(&p->lock);
    if (done)
        vigil_loop_wake(p->loop);
    return done;
}

void vigil__pool_cancel(vigil__pool *p, vigil__job *j) {
    pthread_mutex_lock(&p->lock);
    if (unqueue_locked(p, j)) {
        pthread_mutex_unlock(&p->lock);
        vigil_loop_wake(p->loop);
        return;
    }
    if (j->state == VIGIL__JOB_RUNNING && !j->cancel) {
        j->cancel = true;
        for (uint32_t i = 0; i < p->n; i++) {
            if (p->w[i].job == j)
                vigil__cancel_fd_signal(p->w[i].cancel_fd);
        }
    }
    pthread_mutex_unlock(&p->lock);
}

bool vigil__pool_abandon(vigil__pool *p, vigil__job *j) {
    bool gone = false;
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 0; i < p->n && j->detachable; i++) {
        worker *w = &p->w[i];
        if (w->job != j)
            continue;
        int hand = VIGIL__JOB_RUNNING;
        if (atomic_compare_exchange_strong_explicit(&j->hand, &hand, VIGIL__JOB_ABANDONED, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            w->job = NULL;
            w->abandoned = true;
            p->running--;
            gone = true;
        } /* else run returned: the worker puts it on the done list soon */
        break;
    }
    pthread_mutex_unlock(&p->lock);
    return gone;
}

uint32_t vigil__pool_running(vigil__pool *p) {
    pthread_mutex_lock(&p->lock);
    uint32_t n = p->running;
    pthread_mutex_unlock(&p->lock);
    return n;
}

vigil__job *vigil__pool_take(vigil__pool *p) {
    if (!atomic_load_explicit(&p->ndone, memory_order_acquire))
        return NULL; /* the common case, a worker's wake brings the loop back */
    pthread_mutex_lock(&p->lock);
    vigil__job *j = p->done_head;
    if (j) {
        atomic_fetch_sub_explicit(&p->ndone, 1, memory_order_relaxed);
        p->done_head = j->next;
        if (!p->done_head)
            p->done_tail = NULL;
        j->next = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    return j;
}

bool vigil__pool_has_done(vigil__pool *p) { return atomic_load_explicit(&p->ndone, memory_order_acquire) != 0; }

bool vigil__pool_wait_done(vigil__pool *p, int timeout_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000l;
    until.tv_sec += timeout_ms / 1000 + until.tv_nsec / 1000000000l;
    until.tv_nsec %= 1000000000l;
    pthread_mutex_lock(&p->lock);
    while (!p->done_head && (p->queued || p->running))
        if (pthread_cond_timedwait(&p->done, &p->lock, &until) != 0)
            break;
    bool any = p->done_head != NULL;
    pthread_mutex_unlock(&p->lock);
    return any;
}

void vigil__pool_stop(vigil__pool *p) {
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (uint32_t i = 0; i < p->n; i++) {
        if (p->w[i].abandoned) { /* still in its call, maybe for ever: it ends on its own */
            pthread_detach(p->w[i].thread);
            continue;
        }
        pthread_join(p->w[i].thread, NULL);
        vigil__cancel_fd_close(p->w[i].cancel_fd);
    }
    p->n = 0;
}

void vigil__pool_free(vigil__pool *p) {
    if (!p)
        return;
    vigil__pool_stop(p);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    free(p->w);
    free(p);
}
