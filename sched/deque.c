/*
 * NAME
 *	deque - Chase-Lev work-stealing deque in C11 atomics
 * SYNOPSIS
 *	#include "sched/sched.h"
 *
 *	int sched_deque_init(struct sched_deque *q, unsigned log_cap);
 *	int sched_deque_push_owner(struct sched_deque *q, struct sched_task *t);
 *	struct sched_task *sched_deque_pop_owner(struct sched_deque *q);
 *	struct sched_task *sched_deque_steal(struct sched_deque *q);
 * DESCRIPTION
 *	The algorithm and every memory order are those of Le, Pop, Cohen and
 *	Zappa Nardelli, "Correct and Efficient Work-Stealing for Weak Memory
 *	Models", PPoPP 2013, figure 1 (push, take = pop_owner, steal), which
 *	they prove correct for the C11 model.  Differences (only the last one
 *	touches an order, and only in TSan builds):
 *	-  indices are signed 64-bit, so that take on an empty deque computes
 *	   b = -1 < t instead of wrapping to SIZE_MAX (the paper's size_t);
 *	-  push continues with the new array after growing it (the figure
 *	   omits the reload);
 *	-  the paper's consume load of the array is written acquire, which is
 *	   what compilers make of consume anyway;
 *	-  the new array is published with a release store, the order the
 *	   consume load in steal pairs with (the figure leaves resize out),
 *	   and the outgrown one is retired, not freed;
 *	-  under ThreadSanitizer push's bottom store is also a release (see
 *	   sched_int.h; TSan cannot see fences).
 *
 *	The two seq_cst fences are the heart of it: in pop_owner between
 *	"bottom = b - 1" and "read top", in steal between "read top" and "read
 *	bottom".  Without them the owner and a thief can both miss each other's
 *	claim on the last task (a store-load reordering that release/acquire
 *	does not forbid) and run it twice.  With them, of the two fences the
 *	one later in the single total order S sees the other side's store, so
 *	at most one of them proceeds without the CAS on top, and the CAS
 *	decides the rest.
 *
 *	Growing: push doubles the array when it is full and copies the live
 *	range [top, bottom) into it.  A thief that loaded the old pointer may
 *	still read from the old array: the slots it can read there were copied,
 *	not changed, and its CAS on top decides whether what it read is its
 *	task.  So old arrays are never freed while thieves may run; they wait
 *	on the retired list for fini (their total size is less than the current
 *	array's).
 * DIAGNOSTICS
 *	push returns -ENOMEM if the array cannot grow (the task is not queued).
 */
#include "sched/sched_int.h"

#include <errno.h>
#include <stdlib.h>

static struct sched_deque_array *sched_deque_array_new(int64_t cap)
{
    struct sched_deque_array *a =
        malloc(sizeof(*a) + (size_t)cap * sizeof(_Atomic(struct sched_task *)));
    if (a == NULL)
        return NULL;
    a->mask = cap - 1;
    a->prev = NULL;
    for (int64_t i = 0; i < cap; i++)
        atomic_init(&a->slot[i], NULL); /* not yet shared */
    return a;
}

int sched_deque_init(struct sched_deque *q, unsigned log_cap)
{
    if (log_cap < 1 || log_cap > 30)
        return -EINVAL;
    struct sched_deque_array *a = sched_deque_array_new((int64_t)1 << log_cap);
    if (a == NULL)
        return -ENOMEM;
    /* Not yet shared: publishing q to other threads (thread creation, or
     * a release store of the caller's) orders these. */
    atomic_init(&q->top, 0);
    atomic_init(&q->bottom, 0);
    atomic_init(&q->array, a);
    q->retired = NULL;
    return 0;
}

void sched_deque_fini(struct sched_deque *q)
{
    /* Relaxed: the caller guarantees no other thread uses q any more (the
     * thieves were joined, which orders their accesses before ours). */
    struct sched_deque_array *a = atomic_load_explicit(&q->array, memory_order_relaxed);
    free(a);
    while ((a = q->retired) != NULL) {
        q->retired = a->prev;
        free(a);
    }
    atomic_store_explicit(&q->array, NULL, memory_order_relaxed);
}

/* Owner only: store task at index b and publish it. */
static inline void sched_deque_publish_owner(struct sched_deque *q, struct sched_deque_array *a,
                                             int64_t b, struct sched_task *task)
{
    /* Relaxed: published by the release fence + bottom store below. */
    atomic_store_explicit(&a->slot[b & a->mask], task, memory_order_relaxed);
    /* Release fence: pairs with the acquire load of bottom in steal; a thief
     * that sees bottom = b + 1 sees the slot and everything the caller wrote
     * into *task before pushing it. */
    atomic_thread_fence(memory_order_release);
    /* Relaxed after the fence, as in the paper (release under TSan, which
     * cannot see the fence; same order). */
    atomic_store_explicit(&q->bottom, b + 1,
                          SCHED_TSAN ? memory_order_release : memory_order_relaxed);
}

/* Owner only: push when the array is full.  Copies the live range [t, b)
 * into an array twice as large, publishes it, retires the old one, then
 * pushes.  Out of line and cold, so push's fast path saves no registers. */
__attribute__((noinline, cold)) static int sched_deque_grow_push_owner(struct sched_deque *q,
                                                                       struct sched_deque_array *a,
                                                                       int64_t t, int64_t b,
                                                                       struct sched_task *task)
{
    struct sched_deque_array *na = sched_deque_array_new(2 * (a->mask + 1));
    if (na == NULL)
        return -ENOMEM;
    /* Relaxed loads: the owner wrote these slots itself.  Relaxed stores:
     * na is published below by a release store. */
    for (int64_t i = t; i < b; i++)
        atomic_store_explicit(&na->slot[i & na->mask],
                              atomic_load_explicit(&a->slot[i & a->mask], memory_order_relaxed),
                              memory_order_relaxed);
    /* Release: pairs with the acquire (paper: consume) load of q->array in
     * steal, so a thief that sees na also sees its mask and copied slots. */
    atomic_store_explicit(&q->array, na, memory_order_release);
    /* Thieves that loaded a before the store may still read it. */
    a->prev = q->retired;
    q->retired = a;
    sched_deque_publish_owner(q, na, b, task);
    return 0;
}

int sched_deque_push_owner(struct sched_deque *q, struct sched_task *task)
{
    /* Relaxed: only the owner writes bottom. */
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
    /* Acquire: pairs with the seq_cst CAS on top in steal (and pop_owner).
     * Once we see top past index i, the thief's read of slot i happened
     * before, so overwriting that slot below cannot change what it took. */
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    /* Relaxed: only the owner writes q->array. */
    struct sched_deque_array *a = atomic_load_explicit(&q->array, memory_order_relaxed);
    if (b - t > a->mask) /* full: b - t > size - 1 */
        return sched_deque_grow_push_owner(q, a, t, b, task);
    sched_deque_publish_owner(q, a, b, task);
    return 0;
}

struct sched_task *sched_deque_pop_owner(struct sched_deque *q)
{
    /* Relaxed: only the owner writes bottom and array. */
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed) - 1;
    struct sched_deque_array *a = atomic_load_explicit(&q->array, memory_order_relaxed);
    /* Relaxed store, ordered before the load of top by the fence below:
     * this is our claim on slot b, which thieves read in steal. */
    atomic_store_explicit(&q->bottom, b, memory_order_relaxed);
    /* seq_cst fence: pairs with the seq_cst fence in steal (store bottom ->
     * load top here, load top -> load bottom there).  Whichever fence comes
     * later in S sees the other side's value, so a thief cannot take slot b
     * unnoticed while we take it without a CAS. */
    atomic_thread_fence(memory_order_seq_cst);
    /* Relaxed: ordered by the fence above; the CAS below rechecks it. */
    int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);
    struct sched_task *x;
    if (t <= b) {
        /* Non-empty.  Relaxed: the owner wrote the slot (or copied it). */
        x = atomic_load_explicit(&a->slot[b & a->mask], memory_order_relaxed);
        if (t == b) {
            /* The last task: race the thieves for it on top.  seq_cst on
             * success, as in the paper: it is in S with the steals' CASes;
             * relaxed on failure: we then return NULL and read nothing. */
            if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1, memory_order_seq_cst,
                                                         memory_order_relaxed))
                x = NULL; /* a thief got it */
            /* Relaxed: only the owner reads bottom without the fence/acquire
             * protocol; thieves that read the old b - 1 see t + 1 > b - 1
             * and back off, or lose the CAS. */
            atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
        }
    } else {
        /* Empty: undo the decrement.  Relaxed, as above. */
        x = NULL;
        atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
    }
    return x;
}

struct sched_task *sched_deque_steal(struct sched_deque *q)
{
    /* Acquire: pairs with the seq_cst CAS that last advanced top (another
     * thief's, or the owner's last pop), so we read slots no older than
     * that steal. */
    int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);
    /* seq_cst fence: pairs with the one in pop_owner (see there). */
    atomic_thread_fence(memory_order_seq_cst);
    /* Acquire: pairs with the release fence before push's bottom store; we
     * see the task in slot t and the contents of the task. */
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_acquire);
    if (t >= b)
        return NULL; /* empty */
    /* Acquire (the paper's consume): pairs with the release store of a
     * grown array in sched_deque_grow_owner. */
    struct sched_deque_array *a = atomic_load_explicit(&q->array, memory_order_acquire);
    /* Relaxed: ordered by the acquires above; whether the value is ours is
     * decided by the CAS. */
    struct sched_task *x = atomic_load_explicit(&a->slot[t & a->mask], memory_order_relaxed);
    /* seq_cst, as in the paper: totally ordered with the owner's fence and
     * CAS and the other thieves' CASes.  Relaxed on failure: we return
     * SCHED_ABORT and read nothing more. */
    if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return SCHED_ABORT;
    return x;
}

int64_t sched_deque_room_owner(const struct sched_deque *q)
{
    /* Relaxed: the owner wrote array and bottom itself; top only grows, so
     * an old value can only understate the room. */
    const struct sched_deque_array *a = atomic_load_explicit(&q->array, memory_order_relaxed);
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);
    return a->mask + 1 - (b - t);
}

int64_t sched_deque_size(const struct sched_deque *q)
{
    /* Relaxed: a snapshot for has_work and park decisions; the callers that
     * need an order issue their own fence (park_begin) or are the owner. */
    int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);
    return b > t ? b - t : 0;
}
