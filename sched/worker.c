/*
 * NAME
 *	worker - running, spawning, posting, stealing and parking
 * SYNOPSIS
 *	#include "sched/sched.h"
 *
 *	unsigned sched_worker_run_budget(struct sched_worker *w, unsigned budget);
 *	int sched_spawn(struct sched_pool *pool, struct sched_task *task);
 *	void sched_post(struct sched_pool *pool, unsigned i, struct sched_task *task);
 *	bool sched_worker_park_begin(struct sched_worker *w);
 *	void sched_worker_park_end(struct sched_worker *w);
 * DESCRIPTION
 *	Where a worker looks for its next task, in order: every 32nd time the
 *	inbox first; the LIFO slot (at most 3 times in a row while the deque or
 *	inbox has something); its deque (newest first); its inbox (oldest
 *	first); then a steal from each other worker in turn, starting at a
 *	random one (xorshift64 per worker), retrying a victim a few times on
 *	SCHED_ABORT.  A successful steal takes up to half of what the victim has
 *	left (at most 32 tasks) onto our own deque.
 *
 *	Parking is a Dekker handshake on two variables per side, each side
 *	"store mine; seq_cst fence; load theirs":
 *
 *	  parker (owner)                     poster / spawner (any thread)
 *	  nsleeping += 1                     make the task visible (inbox CAS,
 *	  w->sleeping = 1                      or deque bottom store)
 *	  fence(seq_cst)                     fence(seq_cst)
 *	  look at inbox, victims' deques,    load w->sleeping (post) or
 *	    stop flag: work -> unpark          pool->nsleeping (spawn):
 *	  else sleep on wake_fd                1 -> CAS it to 0, write wake_fd
 *
 *	Both fences are in the single total order S; the later one's loads see
 *	the other side's store.  So either the parker sees the task and does
 *	not sleep, or the poster sees the flag and wakes it: no lost wake-up.
 *	When the worker is awake the poster pays one fence and one load, no
 *	syscall.  The CAS on w->sleeping lets one waker per sleep write the fd,
 *	and whoever moves the flag 1 -> 0 takes the worker off nsleeping.
 * DIAGNOSTICS
 *	Driving a worker from a thread that is not attached to it panics.
 */
#include "sched/sched_int.h"

#include "core/base/log.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The worker this thread owns (attach/detach). */
static _Thread_local struct sched_worker *sched_self;

struct sched_worker *sched_worker_current(void)
{
    return sched_self;
}

unsigned sched_worker_index(const struct sched_worker *w)
{
    return w->index;
}

int sched_worker_wake_fd(const struct sched_worker *w)
{
    return w->wake_fd;
}

void sched_worker_attach(struct sched_worker *w)
{
    bool no = false;
    if (sched_self != NULL)
        log_panic("sched_worker_attach: thread already owns worker %u", sched_self->index);
    /* Acquire on success: pairs with the release store in detach, so the
     * previous owner's writes to the owner-only fields (LIFO slot, pending
     * inbox list, deque bottom) happen before ours.  Relaxed on failure: we
     * panic. */
    if (!atomic_compare_exchange_strong_explicit(&w->attached, &no, true, memory_order_acquire,
                                                 memory_order_relaxed))
        log_panic("sched_worker_attach: worker %u already has an owner", w->index);
    sched_self = w;
}

void sched_worker_detach(struct sched_worker *w)
{
    if (sched_self != w)
        log_panic("sched_worker_detach: thread does not own worker %u", w->index);
    sched_self = NULL;
    /* Release: pairs with the acquire CAS of the next attach. */
    atomic_store_explicit(&w->attached, false, memory_order_release);
}

static void sched_check_owner(const struct sched_worker *w, const char *fn)
{
    if (sched_self != w)
        log_panic("%s: thread does not own worker %u", fn, w->index);
}

/*
 * Waking.
 */
void sched_wake_fd_write(struct sched_worker *w)
{
    uint64_t one = 1;
    ssize_t n;
    while ((n = write(w->wake_fd, &one, sizeof(one))) < 0 && errno == EINTR)
        ;
    /* EAGAIN: the counter is saturated, so the fd is readable anyway. */
    if (n < 0 && errno != EAGAIN)
        log_panic("sched_wake_fd_write: worker %u: %s", w->index, strerror(errno));
}

bool sched_wake_if_sleeping(struct sched_worker *w)
{
    /* Relaxed: ordered after the caller's publication by its seq_cst fence
     * (the handshake above); this load only avoids a CAS when awake. */
    if (atomic_load_explicit(&w->sleeping, memory_order_relaxed) == 0)
        return false;
    int one = 1;
    /* Acquire on success: pairs with the release store of sleeping = 1 in
     * park_begin, so the parker's nsleeping increment comes before our
     * decrement in its modification order (it never goes below zero).
     * Relaxed on failure: someone else woke it, or it woke up. */
    if (!atomic_compare_exchange_strong_explicit(&w->sleeping, &one, 0, memory_order_acquire,
                                                 memory_order_relaxed))
        return false;
    /* Relaxed: a count, read by spawners after their own fence; the handshake
     * is on the flag, the count only saves spawners a scan. */
    atomic_fetch_sub_explicit(&w->pool->nsleeping, 1, memory_order_relaxed);
    /* Relaxed: a statistic. */
    atomic_fetch_add_explicit(&w->st_wakes, 1, memory_order_relaxed);
    sched_wake_fd_write(w);
    return true;
}

/* A task went onto self's deque: if a worker sleeps, wake one to steal it. */
static void sched_notify_thieves(struct sched_worker *self)
{
    struct sched_pool *p = self->pool;
    /* seq_cst fence: our deque push (bottom store) before the load of
     * nsleeping; pairs with the fence in park_begin. */
    atomic_thread_fence(memory_order_seq_cst);
    /* Relaxed: ordered by the fence above. */
    if (atomic_load_explicit(&p->nsleeping, memory_order_relaxed) == 0)
        return;
    for (unsigned i = 1; i < p->n; i++) {
        /* One thief is enough: the next push wakes the next one. */
        if (sched_wake_if_sleeping(&p->w[(self->index + i) % p->n]))
            return;
    }
}

/*
 * Spawning and posting.
 */
void sched_post(struct sched_pool *pool, unsigned i, struct sched_task *task)
{
    if (i >= pool->n)
        log_panic("sched_post: worker %u of %u", i, pool->n);
    struct sched_worker *w = &pool->w[i];
    sched_inbox_post(&w->inbox, task);
    /* seq_cst fence: the inbox CAS before the load of w->sleeping; pairs with
     * the fence in park_begin. */
    atomic_thread_fence(memory_order_seq_cst);
    sched_wake_if_sleeping(w);
}

static int sched_spawn_owner(struct sched_worker *w, struct sched_task *task)
{
    struct sched_task *old = w->lifo;
    if (old == NULL) {
        w->lifo = task;
        return 0;
    }
    /* The newest task keeps the slot (hot in cache, run next); the one it
     * displaces becomes stealable. */
    int err = sched_deque_push_owner(&w->deque, old);
    if (err < 0)
        return err;
    w->lifo = task;
    sched_notify_thieves(w);
    return 0;
}

int sched_spawn_shared(struct sched_pool *pool, struct sched_task *task)
{
    struct sched_worker *w = sched_self;
    if (w == NULL || w->pool != pool)
        return sched_spawn(pool, task);
    /* Straight onto the deque, not the LIFO slot: stealable at once, and
     * a parked worker is woken to take it while this one goes on. */
    int err = sched_deque_push_owner(&w->deque, task);
    if (err < 0)
        return err;
    sched_notify_thieves(w);
    return 0;
}

int sched_spawn(struct sched_pool *pool, struct sched_task *task)
{
    struct sched_worker *w = sched_self;
    if (w != NULL && w->pool == pool)
        return sched_spawn_owner(w, task);
    /* Relaxed: any spread will do; the inbox CAS publishes the task. */
    unsigned i = atomic_fetch_add_explicit(&pool->rr, 1, memory_order_relaxed) % pool->n;
    sched_post(pool, i, task);
    return 0;
}

/*
 * Running.
 */
static uint64_t sched_rand_owner(struct sched_worker *w)
{
    uint64_t x = w->rng; /* xorshift64 (Marsaglia 2003) */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return w->rng = x;
}

static struct sched_task *sched_inbox_next_owner(struct sched_worker *w)
{
    if (w->pend_head == NULL)
        w->pend_head = sched_inbox_drain_owner(&w->inbox);
    struct sched_task *t = w->pend_head;
    if (t != NULL)
        w->pend_head = t->next;
    return t;
}

/* After a successful steal from q: take up to half of what q still holds
 * (at most SCHED_STEAL_BATCH - 1 more, and no more than fit in our deque
 * without growing it, so the push cannot fail) onto our own deque.  The
 * victim's top and bottom lines then change hands once per batch instead of
 * once per task.  Each one is an ordinary steal. */
static void sched_steal_more_owner(struct sched_worker *w, struct sched_deque *q)
{
    int64_t more = sched_deque_size(q) / 2;
    int64_t room = sched_deque_room_owner(&w->deque);
    if (more > SCHED_STEAL_BATCH - 1)
        more = SCHED_STEAL_BATCH - 1;
    if (more > room)
        more = room;
    int64_t got = 0;
    while (got < more) {
        struct sched_task *t = sched_deque_steal(q);
        if (t == NULL || t == SCHED_ABORT)
            break;
        if (sched_deque_push_owner(&w->deque, t) < 0) /* cannot happen: room */
            log_panic("sched_steal_more_owner: push failed within room");
        got++;
    }
    if (got > 0) {
        atomic_store_explicit(&w->st_stolen,
                              atomic_load_explicit(&w->st_stolen, memory_order_relaxed) +
                                  (uint64_t)got,
                              memory_order_relaxed); /* single writer, see sched_stat_inc */
        sched_notify_thieves(w);                     /* stealable again, from us */
    }
}

static struct sched_task *sched_steal_owner(struct sched_worker *w)
{
    struct sched_pool *p = w->pool;
    if (p->n < 2)
        return NULL;
    unsigned start = (unsigned)(sched_rand_owner(w) % p->n);
    for (unsigned i = 0; i < p->n; i++) {
        unsigned v = start + i < p->n ? start + i : start + i - p->n;
        if (v == w->index)
            continue;
        for (unsigned tries = 0; tries < SCHED_STEAL_RETRIES; tries++) {
            struct sched_task *t = sched_deque_steal(&p->w[v].deque);
            if (t == NULL)
                break;
            if (t != SCHED_ABORT) {
                sched_stat_inc(&w->st_stolen);
                sched_steal_more_owner(w, &p->w[v].deque);
                return t;
            }
        }
    }
    return NULL;
}

static struct sched_task *sched_next_owner(struct sched_worker *w)
{
    struct sched_task *t;
    if (++w->tick % SCHED_INBOX_INTERVAL == 0 && (t = sched_inbox_next_owner(w)) != NULL) {
        w->lifo_streak = 0;
        return t;
    }
    if (w->lifo != NULL) {
        if (w->lifo_streak >= SCHED_LIFO_MAX) {
            /* A task that keeps respawning itself must not starve the
             * others: give the deque and the inbox a turn. */
            if ((t = sched_deque_pop_owner(&w->deque)) != NULL ||
                (t = sched_inbox_next_owner(w)) != NULL) {
                w->lifo_streak = 0;
                return t;
            }
        }
        t = w->lifo;
        w->lifo = NULL;
        w->lifo_streak++;
        return t;
    }
    w->lifo_streak = 0;
    if ((t = sched_deque_pop_owner(&w->deque)) != NULL)
        return t;
    if ((t = sched_inbox_next_owner(w)) != NULL)
        return t;
    return sched_steal_owner(w);
}

unsigned sched_worker_run_budget(struct sched_worker *w, unsigned budget)
{
    sched_check_owner(w, "sched_worker_run_budget");
    unsigned ran = 0;
    while (ran < budget) {
        struct sched_task *t = sched_next_owner(w);
        if (t == NULL)
            break;
        t->fn(t); /* t may be gone after this */
        ran++;
    }
    if (ran > 0)
        atomic_store_explicit(&w->st_ran,
                              atomic_load_explicit(&w->st_ran, memory_order_relaxed) + ran,
                              memory_order_relaxed); /* single writer, see sched_stat_inc */
    return ran;
}

bool sched_worker_has_work(struct sched_worker *w)
{
    sched_check_owner(w, "sched_worker_has_work");
    return w->lifo != NULL || w->pend_head != NULL || sched_deque_size(&w->deque) > 0 ||
           !sched_inbox_empty(&w->inbox);
}

/*
 * Parking.
 */

/* Clears our sleeping flag; if a waker cleared it first, it also took us
 * off nsleeping (and has written or will write the fd). */
static void sched_unpark_owner(struct sched_worker *w)
{
    /* Relaxed: the exchange only decides who decrements nsleeping; no data
     * is published through the flag. */
    if (atomic_exchange_explicit(&w->sleeping, 0, memory_order_relaxed) == 1)
        atomic_fetch_sub_explicit(&w->pool->nsleeping, 1, memory_order_relaxed); /* a count */
}

bool sched_worker_park_begin(struct sched_worker *w)
{
    sched_check_owner(w, "sched_worker_park_begin");
    struct sched_pool *p = w->pool;
    /* Our own LIFO slot, pending list and deque only change on this thread
     * (thieves only take), so one look before announcing is enough. */
    if (w->lifo != NULL || w->pend_head != NULL || sched_deque_size(&w->deque) > 0)
        return false;
    /* Relaxed: a count; its order with the flag is given by the release
     * store below, its order with spawners' loads by the fence. */
    atomic_fetch_add_explicit(&p->nsleeping, 1, memory_order_relaxed);
    /* Release: pairs with the acquire CAS in sched_wake_if_sleeping (the
     * waker's decrement then follows our increment). */
    atomic_store_explicit(&w->sleeping, 1, memory_order_release);
    /* seq_cst fence: the two stores above before the loads below; pairs
     * with the fences in sched_post and sched_notify_thieves. */
    atomic_thread_fence(memory_order_seq_cst);
    /* Relaxed loads, ordered by the fence. */
    bool work =
        !sched_inbox_empty(&w->inbox) || atomic_load_explicit(&p->stop, memory_order_relaxed);
    for (unsigned i = 0; !work && i < p->n; i++)
        work = i != w->index && sched_deque_size(&p->w[i].deque) > 0;
    if (work) {
        sched_unpark_owner(w);
        return false;
    }
    sched_stat_inc(&w->st_parked);
    return true;
}

void sched_worker_park_end_nofd(struct sched_worker *w)
{
    sched_check_owner(w, "sched_worker_park_end_nofd");
    sched_unpark_owner(w);
}

void sched_worker_wake_reset(struct sched_worker *w)
{
    uint64_t v;
    while (read(w->wake_fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
}

void sched_worker_park_end(struct sched_worker *w)
{
    sched_check_owner(w, "sched_worker_park_end");
    sched_unpark_owner(w);
    /* Reset the eventfd.  Always, not only when a waker claimed us: a
     * waker that claimed an earlier sleep may write after that one ended,
     * and a count left behind would make every later sleep return at once. */
    uint64_t v;
    while (read(w->wake_fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
}

/*
 * The pool's threads.
 */
void *sched_worker_thread(void *arg)
{
    struct sched_worker *w = arg;
    struct sched_pool *p = w->pool;
    char tag[16];
    snprintf(tag, sizeof(tag), "w%u", w->index);
    log_set_thread_tag(tag);
    sched_worker_attach(w);
    /* Relaxed: stop is a request; sched_pool_stop writes every wake fd after
     * setting it, and the join orders everything else. */
    while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
        if (sched_worker_run_budget(w, p->budget) > 0)
            continue;
        if (!sched_worker_park_begin(w))
            continue;
        struct pollfd pfd = {.fd = w->wake_fd, .events = POLLIN};
        while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
            ;
        sched_worker_park_end(w);
    }
    sched_worker_detach(w);
    return NULL;
}

void sched_worker_stats(const struct sched_worker *w, struct sched_worker_stats *out)
{
    /* Relaxed: counters, no order wanted. */
    out->ran = atomic_load_explicit(&w->st_ran, memory_order_relaxed);
    out->stolen = atomic_load_explicit(&w->st_stolen, memory_order_relaxed);
    out->parked = atomic_load_explicit(&w->st_parked, memory_order_relaxed);
    out->wakes = atomic_load_explicit(&w->st_wakes, memory_order_relaxed);
}
