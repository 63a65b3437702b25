/*
 * NAME
 *	test_inbox - MPSC inbox: order, and many producers against one consumer
 * DESCRIPTION
 *	Producers post numbered items while the consumer drains; every item
 *	must be seen exactly once and each producer's items in the order it
 *	posted them (the inbox promises that).
 */
#include "tests/sched/crit_tsan.h" /* Criterion; a stand-in under TSan */

#include "sched/sched.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct msg {
    struct sched_task task;
    unsigned producer;
    unsigned seq;
    unsigned seen; /* consumer only */
};

static void msg_run(struct sched_task *t)
{
    (void)t;
}

static _Alignas(SCHED_CACHELINE) struct sched_inbox ib;

Test(inbox, single_thread_fifo)
{
    struct msg m[5];
    sched_inbox_init(&ib);
    cr_assert(sched_inbox_empty(&ib));
    cr_assert_null(sched_inbox_drain_owner(&ib));
    for (unsigned i = 0; i < 3; i++) {
        m[i].task.fn = msg_run;
        sched_inbox_post(&ib, &m[i].task);
    }
    cr_assert_not(sched_inbox_empty(&ib));
    struct sched_task *t = sched_inbox_drain_owner(&ib);
    for (unsigned i = 0; i < 3; i++, t = t->next)
        cr_assert_eq(t, &m[i].task, "item %u", i);
    cr_assert_null(t);
    cr_assert(sched_inbox_empty(&ib));
    sched_inbox_post(&ib, &m[3].task);
    sched_inbox_post(&ib, &m[4].task);
    t = sched_inbox_drain_owner(&ib);
    cr_assert_eq(t, &m[3].task);
    cr_assert_eq(t->next, &m[4].task);
    cr_assert_null(t->next->next);
}

#define PRODUCERS 4
#define PER_PRODUCER (UNDER_TSAN ? 5000u : 50000u)

struct prod {
    struct msg *m;
    unsigned id;
};

static void *producer_main(void *arg)
{
    struct prod *p = arg;
    for (unsigned i = 0; i < PER_PRODUCER; i++)
        sched_inbox_post(&ib, &p->m[i].task);
    return NULL;
}

Test(inbox, producers_consumer, .timeout = 60)
{
    const unsigned total = PRODUCERS * PER_PRODUCER;
    struct msg *m = calloc(total, sizeof(*m));
    cr_assert_not_null(m);
    struct prod pr[PRODUCERS];
    pthread_t th[PRODUCERS];
    sched_inbox_init(&ib);
    for (unsigned p = 0; p < PRODUCERS; p++) {
        pr[p].m = m + p * PER_PRODUCER;
        pr[p].id = p;
        for (unsigned i = 0; i < PER_PRODUCER; i++) {
            pr[p].m[i].task.fn = msg_run;
            pr[p].m[i].producer = p;
            pr[p].m[i].seq = i;
        }
    }
    for (unsigned p = 0; p < PRODUCERS; p++)
        cr_assert_eq(pthread_create(&th[p], NULL, producer_main, &pr[p]), 0);

    unsigned next[PRODUCERS] = {0};
    unsigned got = 0, drains = 0;
    while (got < total) {
        struct sched_task *t = sched_inbox_drain_owner(&ib);
        if (t == NULL)
            continue;
        drains++;
        for (; t != NULL; t = t->next) {
            struct msg *x = (struct msg *)t;
            cr_assert_eq(x->seen, 0, "producer %u seq %u seen twice", x->producer, x->seq);
            x->seen = 1;
            cr_assert_eq(x->seq, next[x->producer], "producer %u: got %u, want %u", x->producer,
                         x->seq, next[x->producer]);
            next[x->producer]++;
            got++;
        }
    }
    for (unsigned p = 0; p < PRODUCERS; p++)
        pthread_join(th[p], NULL);
    cr_assert_null(sched_inbox_drain_owner(&ib));
    for (unsigned p = 0; p < PRODUCERS; p++)
        cr_assert_eq(next[p], PER_PRODUCER);
    cr_log_info("%u items in %u drains", total, drains);
    free(m);
}
