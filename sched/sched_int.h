/*
 * NAME
 *	sched_int - details shared by the files of sched/
 * SYNOPSIS
 *	#include "sched/sched_int.h"
 * DESCRIPTION
 *	The deque's circular array, the worker and pool structures, and the
 *	wake-up helpers that worker.c and pool.c share.  Nothing here is part
 *	of the module's interface.
 */
#ifndef SLUICE_SCHED_SCHED_INT_H
#define SLUICE_SCHED_SCHED_INT_H

#include "sched/sched.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ThreadSanitizer does not model atomic_thread_fence (GCC warns with
 * -Wtsan).  The fences stay in every build, because the algorithm needs
 * them; SCHED_TSAN only adds an equivalent, stronger order on the one store
 * whose fence publishes non-atomic data, so TSan can see that edge too. */
#if defined(__SANITIZE_THREAD__)
#define SCHED_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SCHED_TSAN 1
#endif
#endif
#ifndef SCHED_TSAN
#define SCHED_TSAN 0
#endif
#if SCHED_TSAN && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic ignored "-Wtsan"
#endif

/* The deque's circular array: 2^k slots, each an atomic task pointer
 * because the owner's writes race with thieves' reads of other indices
 * of the same array. */
struct sched_deque_array {
    int64_t mask;                   /* capacity - 1; immutable once published */
    struct sched_deque_array *prev; /* next older array on the retired list */
    _Atomic(struct sched_task *) slot[];
};

/* Tuning. */
#define SCHED_INBOX_INTERVAL 32 /* every Nth task looks at the inbox first */
#define SCHED_LIFO_MAX 3        /* LIFO slot runs in a row before the deque gets one */
#define SCHED_STEAL_RETRIES 4   /* SCHED_ABORTs tolerated per victim per pass */
#define SCHED_STEAL_BATCH 32    /* most tasks taken from one victim at a time */

struct sched_worker {
    struct sched_deque deque; /* cache-line aligned inside */
    struct sched_inbox inbox; /* its own line: producers CAS it */

    /* Wakers' line.  sleeping: 1 while the owner is (about to be) parked;
     * whoever moves it 1 -> 0 also takes the worker off pool->nsleeping,
     * and when that is a waker it writes wake_fd. */
    _Alignas(SCHED_CACHELINE) atomic_int sleeping;
    int wake_fd;
    _Atomic uint64_t st_wakes; /* wakers' RMW, slow path only */

    /* Owner's line: touched by the owner thread only (stats are single-
     * writer atomics so other threads may read them). */
    _Alignas(SCHED_CACHELINE) struct sched_task *lifo;
    unsigned lifo_streak;         /* LIFO runs in a row */
    unsigned tick;                /* tasks taken, for the inbox interval */
    struct sched_task *pend_head; /* drained inbox, oldest first */
    uint64_t rng;                 /* xorshift64 state for victims */
    _Atomic uint64_t st_ran;      /* single writer: load + store */
    _Atomic uint64_t st_stolen;
    _Atomic uint64_t st_parked;

    /* Set up once, read-only after. */
    struct sched_pool *pool;
    unsigned index;
    atomic_bool attached; /* contract check only */
    pthread_t thread;
};

struct sched_pool {
    /* Read-mostly line. */
    struct sched_worker *w; /* n workers, cache-line aligned */
    unsigned n;
    unsigned budget;
    bool started;     /* controlling thread only */
    atomic_bool stop; /* set once by sched_pool_stop */
    /* Workers whose sleeping flag is 1.  Read by every spawn that pushes to
     * a deque, written only around parking. */
    _Alignas(SCHED_CACHELINE) atomic_uint nsleeping;
    /* Round-robin cursor for spawns from outside the pool. */
    _Alignas(SCHED_CACHELINE) atomic_uint rr;
};

/* deque.c, owner only: how many more tasks fit without growing the array. */
int64_t sched_deque_room_owner(const struct sched_deque *q);

/* worker.c: wake w if it is parked (claims its sleeping flag, writes its
 * eventfd); true if this call woke it.  The caller has made its work
 * visible and then issued a seq_cst fence (the Dekker handshake in
 * worker.c and docs/scheduler.md). */
bool sched_wake_if_sleeping(struct sched_worker *w);
/* worker.c: write w's eventfd unconditionally. */
void sched_wake_fd_write(struct sched_worker *w);
/* worker.c: the body of a pool thread. */
void *sched_worker_thread(void *arg);

/* Single-writer counter bump: only the owner writes, so a relaxed load and
 * store (no RMW) is enough; readers want a value, not an order. */
static inline void sched_stat_inc(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

#endif
