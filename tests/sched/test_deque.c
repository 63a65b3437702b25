/*
 * NAME
 *	test_deque - Chase-Lev deque: single-thread semantics and a stress test
 * DESCRIPTION
 *	The stress tests run one owner that pushes and pops against 1-3
 *	thieves that steal, with a small initial array so that it grows while
 *	thieves read it.  Every task carries a counter; at the end each must be
 *	exactly 1 (run once, none lost).  Under ThreadSanitizer the task count
 *	is scaled down.
 */
#include "tests/sched/crit_tsan.h" /* Criterion; a stand-in under TSan */

#include "sched/sched.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define STRESS_TASKS (UNDER_TSAN ? 50000 : 200000)

struct item {
    struct sched_task task;
    unsigned id;
    unsigned payload; /* plain: written by the owner just before the push */
    atomic_uint runs;
};

static atomic_uint bad_payloads;

static void item_run(struct sched_task *t)
{
    struct item *it = (struct item *)t;
    /* A plain read of what the pusher wrote: the deque must publish it (and
     * TSan checks that it does). */
    if (it->payload != it->id * 7 + 1)
        atomic_fetch_add_explicit(&bad_payloads, 1, memory_order_relaxed);
    /* Relaxed: the checker reads after joining every thread. */
    atomic_fetch_add_explicit(&it->runs, 1, memory_order_relaxed);
}

static struct item *items_new(unsigned n)
{
    struct item *v = calloc(n, sizeof(*v));
    cr_assert_not_null(v);
    for (unsigned i = 0; i < n; i++) {
        v[i].task.fn = item_run;
        v[i].id = i;
        atomic_init(&v[i].runs, 0);
    }
    return v;
}

static _Alignas(SCHED_CACHELINE) struct sched_deque dq;

Test(deque, init_bounds)
{
    cr_assert_eq(sched_deque_init(&dq, 0), -EINVAL);
    cr_assert_eq(sched_deque_init(&dq, 31), -EINVAL);
    cr_assert_eq(sched_deque_init(&dq, 1), 0);
    cr_assert_null(sched_deque_pop_owner(&dq));
    cr_assert_null(sched_deque_steal(&dq));
    cr_assert_eq(sched_deque_size(&dq), 0);
    sched_deque_fini(&dq);
}

Test(deque, owner_is_lifo)
{
    struct item *v = items_new(8);
    cr_assert_eq(sched_deque_init(&dq, 3), 0);
    for (unsigned i = 0; i < 8; i++)
        cr_assert_eq(sched_deque_push_owner(&dq, &v[i].task), 0);
    cr_assert_eq(sched_deque_size(&dq), 8);
    for (int i = 7; i >= 0; i--)
        cr_assert_eq(sched_deque_pop_owner(&dq), &v[i].task, "pop %d", i);
    cr_assert_null(sched_deque_pop_owner(&dq));
    cr_assert_null(sched_deque_pop_owner(&dq)); /* empty twice: bottom stays sane */
    cr_assert_eq(sched_deque_push_owner(&dq, &v[0].task), 0);
    cr_assert_eq(sched_deque_pop_owner(&dq), &v[0].task);
    sched_deque_fini(&dq);
    free(v);
}

Test(deque, thieves_are_fifo)
{
    struct item *v = items_new(8);
    cr_assert_eq(sched_deque_init(&dq, 3), 0);
    for (unsigned i = 0; i < 8; i++)
        cr_assert_eq(sched_deque_push_owner(&dq, &v[i].task), 0);
    for (unsigned i = 0; i < 8; i++)
        cr_assert_eq(sched_deque_steal(&dq), &v[i].task, "steal %u", i);
    cr_assert_null(sched_deque_steal(&dq));
    cr_assert_null(sched_deque_pop_owner(&dq));
    sched_deque_fini(&dq);
    free(v);
}

Test(deque, both_ends_meet)
{
    struct item *v = items_new(5);
    cr_assert_eq(sched_deque_init(&dq, 2), 0);
    for (unsigned i = 0; i < 5; i++)
        cr_assert_eq(sched_deque_push_owner(&dq, &v[i].task), 0);
    cr_assert_eq(sched_deque_steal(&dq), &v[0].task);
    cr_assert_eq(sched_deque_pop_owner(&dq), &v[4].task);
    cr_assert_eq(sched_deque_steal(&dq), &v[1].task);
    cr_assert_eq(sched_deque_pop_owner(&dq), &v[3].task);
    cr_assert_eq(sched_deque_pop_owner(&dq), &v[2].task); /* the last one, via the CAS */
    cr_assert_null(sched_deque_steal(&dq));
    cr_assert_null(sched_deque_pop_owner(&dq));
    sched_deque_fini(&dq);
    free(v);
}

Test(deque, grows_past_initial_capacity)
{
    enum { N = 10000 };
    struct item *v = items_new(N);
    cr_assert_eq(sched_deque_init(&dq, 1), 0); /* 2 slots */
    /* Advance top first so the live range wraps the array when it grows. */
    for (unsigned i = 0; i < 3; i++) {
        cr_assert_eq(sched_deque_push_owner(&dq, &v[0].task), 0);
        cr_assert_eq(sched_deque_steal(&dq), &v[0].task);
    }
    for (unsigned i = 0; i < N; i++)
        cr_assert_eq(sched_deque_push_owner(&dq, &v[i].task), 0);
    cr_assert_eq(sched_deque_size(&dq), N);
    for (unsigned i = 0; i < N / 2; i++)
        cr_assert_eq(sched_deque_steal(&dq), &v[i].task, "steal %u", i);
    for (unsigned i = N; i-- > N / 2;)
        cr_assert_eq(sched_deque_pop_owner(&dq), &v[i].task, "pop %u", i);
    cr_assert_null(sched_deque_pop_owner(&dq));
    sched_deque_fini(&dq);
    free(v);
}

/*
 * Stress.
 */
struct stress {
    struct sched_deque *q;
    atomic_bool done;
    atomic_uint ready; /* thieves running: the owner starts after them all */
    atomic_ulong stolen;
    atomic_ulong aborts;
};

static void *thief_main(void *arg)
{
    struct stress *s = arg;
    unsigned long n = 0, ab = 0;
    atomic_fetch_add_explicit(&s->ready, 1, memory_order_relaxed); /* a start signal only */
    for (;;) {
        struct sched_task *t = sched_deque_steal(s->q);
        if (t == SCHED_ABORT) {
            ab++;
            continue;
        }
        if (t != NULL) {
            t->fn(t);
            n++;
            continue;
        }
        /* Acquire: pairs with the owner's release store of done, after its
         * last push; an empty deque seen after that stays empty. */
        if (atomic_load_explicit(&s->done, memory_order_acquire)) {
            if (sched_deque_steal(s->q) == NULL)
                break;
        }
    }
    /* Relaxed: read after the join. */
    atomic_fetch_add_explicit(&s->stolen, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->aborts, ab, memory_order_relaxed);
    return NULL;
}

/* pop_every: the owner pops after every pop_every-th push (1: push, pop,
 * push, pop... which fights the thieves for the last task each time). */
static void stress_run(unsigned nthieves, unsigned pop_every)
{
    const unsigned n = STRESS_TASKS;
    struct item *v = items_new(n);
    struct stress s = {.q = &dq};
    atomic_init(&s.done, false);
    atomic_init(&s.ready, 0);
    atomic_init(&s.stolen, 0);
    atomic_init(&s.aborts, 0);
    cr_assert_eq(sched_deque_init(&dq, 2), 0);
    pthread_t th[3];
    for (unsigned i = 0; i < nthieves; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, thief_main, &s), 0);
    while (atomic_load_explicit(&s.ready, memory_order_relaxed) < nthieves)
        sched_yield();

    unsigned long popped = 0;
    struct sched_task *t;
    atomic_store(&bad_payloads, 0);
    for (unsigned i = 0; i < n; i++) {
        v[i].payload = i * 7 + 1; /* after the thieves started */
        cr_assert_eq(sched_deque_push_owner(&dq, &v[i].task), 0);
        if (i % pop_every == 0 && (t = sched_deque_pop_owner(&dq)) != NULL) {
            t->fn(t);
            popped++;
        }
    }
    while ((t = sched_deque_pop_owner(&dq)) != NULL) {
        t->fn(t);
        popped++;
    }
    /* Release: pairs with the thieves' acquire load. */
    atomic_store_explicit(&s.done, true, memory_order_release);
    for (unsigned i = 0; i < nthieves; i++)
        pthread_join(th[i], NULL);

    unsigned long stolen = atomic_load_explicit(&s.stolen, memory_order_relaxed);
    cr_assert_eq(popped + stolen, n, "popped %lu + stolen %lu != %u", popped, stolen, n);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(atomic_load_explicit(&v[i].runs, memory_order_relaxed), 1,
                     "task %u ran %u times", i, atomic_load(&v[i].runs));
    cr_assert_eq(atomic_load(&bad_payloads), 0);
    cr_assert_null(sched_deque_steal(&dq));
    cr_log_info("%u tasks, %u thieves: %lu popped, %lu stolen, %lu aborts", n, nthieves, popped,
                stolen, atomic_load(&s.aborts));
    sched_deque_fini(&dq);
    free(v);
}

Test(deque_stress, one_thief, .timeout = 60)
{
    stress_run(1, 3);
}
Test(deque_stress, two_thieves, .timeout = 60)
{
    stress_run(2, 3);
}
Test(deque_stress, three_thieves, .timeout = 60)
{
    stress_run(3, 5);
}
Test(deque_stress, last_task_races, .timeout = 60)
{
    stress_run(2, 1);
}
