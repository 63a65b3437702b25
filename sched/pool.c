/*
 * NAME
 *	pool - a set of workers, and threads to run them
 * SYNOPSIS
 *	#include "sched/sched.h"
 *
 *	struct sched_pool *sched_pool_create(unsigned n, const struct sched_pool_opts *o);
 *	int sched_pool_start(struct sched_pool *pool);
 *	void sched_pool_stop(struct sched_pool *pool);
 *	void sched_pool_destroy(struct sched_pool *pool);
 * DESCRIPTION
 *	sched_pool_create() makes n workers, each with its deque, inbox and
 *	eventfd; the pool owns them all.  Either sched_pool_start() gives each
 *	worker a thread (worker.c, sched_worker_thread), or the caller's own
 *	threads attach to the workers and drive them.
 *
 *	sched_pool_stop() sets the stop flag and writes every worker's eventfd
 *	unconditionally (no handshake needed: a worker that parks after the
 *	write finds the fd readable, one that parks before is woken), then
 *	joins the threads.
 * DIAGNOSTICS
 *	Destroying a pool whose workers are still attached panics.
 */
#include "sched/sched_int.h"

#include "core/base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define SCHED_MAX_WORKERS 1024

/* aligned_alloc wants the size to be a multiple of the alignment. */
static void *sched_alloc_lines(size_t size)
{
    size = (size + SCHED_CACHELINE - 1) / SCHED_CACHELINE * SCHED_CACHELINE;
    void *p = aligned_alloc(SCHED_CACHELINE, size);
    if (p != NULL)
        memset(p, 0, size);
    return p;
}

static uint64_t sched_seed(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL; /* splitmix64: distinct, nonzero seeds */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x != 0 ? x : 1;
}

static void sched_pool_free(struct sched_pool *p, unsigned made)
{
    for (unsigned i = 0; i < made; i++) {
        sched_deque_fini(&p->w[i].deque);
        close(p->w[i].wake_fd);
    }
    free(p->w);
    free(p);
}

struct sched_pool *sched_pool_create(unsigned n, const struct sched_pool_opts *opts)
{
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned)c : 1;
    }
    if (n > SCHED_MAX_WORKERS)
        return NULL;
    unsigned log_cap = opts != NULL && opts->deque_log_cap != 0 ? opts->deque_log_cap : 8;
    struct sched_pool *p = sched_alloc_lines(sizeof(*p));
    if (p == NULL)
        return NULL;
    p->w = sched_alloc_lines((size_t)n * sizeof(*p->w));
    if (p->w == NULL) {
        free(p);
        return NULL;
    }
    p->n = n;
    p->budget = opts != NULL && opts->budget != 0 ? opts->budget : 64;
    /* Plain initialisation: the pool is not shared until it is returned
     * (and the threads that use it are created after that). */
    atomic_init(&p->nsleeping, 0);
    atomic_init(&p->rr, 0);
    atomic_init(&p->stop, false);
    for (unsigned i = 0; i < n; i++) {
        struct sched_worker *w = &p->w[i];
        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->wake_fd < 0) {
            sched_pool_free(p, i);
            return NULL;
        }
        if (sched_deque_init(&w->deque, log_cap) < 0) {
            close(w->wake_fd);
            sched_pool_free(p, i);
            return NULL;
        }
        sched_inbox_init(&w->inbox);
        atomic_init(&w->sleeping, 0);
        atomic_init(&w->st_wakes, 0);
        atomic_init(&w->st_ran, 0);
        atomic_init(&w->st_stolen, 0);
        atomic_init(&w->st_parked, 0);
        atomic_init(&w->attached, false);
        w->rng = sched_seed(i);
        w->pool = p;
        w->index = i;
    }
    return p;
}

static void sched_pool_join(struct sched_pool *p, unsigned nthreads)
{
    /* seq_cst: a plain "please stop"; the fd writes below are what wake the
     * workers, and the joins order everything else. */
    atomic_store_explicit(&p->stop, true, memory_order_seq_cst);
    for (unsigned i = 0; i < p->n; i++)
        sched_wake_fd_write(&p->w[i]);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(p->w[i].thread, NULL);
}

int sched_pool_start(struct sched_pool *p)
{
    /* Relaxed: start and stop are called by the pool's one controlling
     * thread. */
    if (p->started || atomic_load_explicit(&p->stop, memory_order_relaxed))
        return -EINVAL;
    for (unsigned i = 0; i < p->n; i++) {
        int err = pthread_create(&p->w[i].thread, NULL, sched_worker_thread, &p->w[i]);
        if (err != 0) {
            sched_pool_join(p, i);
            return -err;
        }
    }
    p->started = true;
    return 0;
}

void sched_pool_stop(struct sched_pool *p)
{
    if (!p->started)
        return;
    sched_pool_join(p, p->n);
    p->started = false;
}

void sched_pool_destroy(struct sched_pool *p)
{
    if (p == NULL)
        return;
    sched_pool_stop(p);
    for (unsigned i = 0; i < p->n; i++) {
        /* Acquire: pairs with the release in detach; the owner's last
         * writes come before our fini. */
        if (atomic_load_explicit(&p->w[i].attached, memory_order_acquire))
            log_panic("sched_pool_destroy: worker %u is still attached", i);
    }
    sched_pool_free(p, p->n);
}

unsigned sched_pool_size(const struct sched_pool *p)
{
    return p->n;
}

struct sched_worker *sched_pool_worker(struct sched_pool *p, unsigned i)
{
    if (i >= p->n)
        log_panic("sched_pool_worker: worker %u of %u", i, p->n);
    return &p->w[i];
}
