/*
 * NAME
 *	inbox - multi-producer single-consumer intrusive task queue
 * SYNOPSIS
 *	#include "sched/sched.h"
 *
 *	void sched_inbox_post(struct sched_inbox *in, struct sched_task *t);
 *	struct sched_task *sched_inbox_drain_owner(struct sched_inbox *in);
 * DESCRIPTION
 *	A Treiber stack: producers link the task to the current head and CAS
 *	the head to it; the consumer takes the whole stack with one exchange
 *	and reverses it.  Posting is lock-free (a CAS loop that fails only when
 *	another producer succeeded); draining is wait-free and O(tasks).
 *
 *	There is no ABA problem: producers only push, and the consumer never
 *	pops one node, it swaps the head with NULL.
 *
 *	Ordering: the pushes are totally ordered by the modification order of
 *	head; a drain returns a suffix of that order, oldest first, and later
 *	drains return later pushes.  So the tasks of one producer come out in
 *	the order it posted them.
 */
#include "sched/sched_int.h"

#include <stddef.h>

void sched_inbox_init(struct sched_inbox *in)
{
    atomic_init(&in->head, NULL); /* not yet shared */
}

void sched_inbox_post(struct sched_inbox *in, struct sched_task *task)
{
    /* Relaxed: only a guess for the CAS, which rereads it on failure; we do
     * not dereference it. */
    struct sched_task *old = atomic_load_explicit(&in->head, memory_order_relaxed);
    do {
        task->next = old; /* unpublished until the CAS succeeds */
        /* Release on success: pairs with the acquire exchange in drain, which
         * then sees task->next and whatever the caller wrote into the task.
         * Later producers' CASes continue our release sequence (RMWs), so a
         * drain that reads their head still synchronizes with us.  Relaxed
         * on failure: old is only the next guess. */
    } while (!atomic_compare_exchange_weak_explicit(&in->head, &old, task, memory_order_release,
                                                    memory_order_relaxed));
}

struct sched_task *sched_inbox_drain_owner(struct sched_inbox *in)
{
    /* Relaxed pre-check: the common case in a busy loop is an empty inbox,
     * and a load does not take the line exclusive as the exchange would.  A
     * post we miss is seen by the next drain (park_begin orders its check
     * with a seq_cst fence). */
    if (atomic_load_explicit(&in->head, memory_order_relaxed) == NULL)
        return NULL;
    /* Acquire: pairs with the release CAS of every post in the stack. */
    struct sched_task *t = atomic_exchange_explicit(&in->head, NULL, memory_order_acquire);
    struct sched_task *fifo = NULL;
    while (t != NULL) { /* newest first -> oldest first */
        struct sched_task *next = t->next;
        t->next = fifo;
        fifo = t;
        t = next;
    }
    return fifo;
}

bool sched_inbox_empty(const struct sched_inbox *in)
{
    /* Relaxed: a snapshot; callers that need an order fence first. */
    return atomic_load_explicit(&in->head, memory_order_relaxed) == NULL;
}
