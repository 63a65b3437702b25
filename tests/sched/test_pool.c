/*
 * NAME
 *	test_pool - workers: spawning, posting, fairness, parking, external loops
 * DESCRIPTION
 *	Tasks spawned from outside and from inside tasks (recursive fan-out)
 *	each run exactly once; posted tasks run on their worker in order; the
 *	LIFO slot and the inbox cannot be starved; an idle pool burns no CPU
 *	and wakes promptly; the run_budget/park API drives workers from
 *	threads the pool did not make, as net/'s loops do.
 */
#include "tests/sched/crit_tsan.h" /* Criterion; a stand-in under TSan */

#include "sched/sched.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Tasks bump done (release) as their last act; waiters load it (acquire)
 * and then see everything the tasks wrote. */
static atomic_ulong done;

static bool wait_done(unsigned long want, double timeout_s)
{
    double end = now_s() + timeout_s;
    while (atomic_load_explicit(&done, memory_order_acquire) < want) {
        if (now_s() > end)
            return false;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 100000};
        nanosleep(&ts, NULL);
    }
    return true;
}

static void done_inc(void)
{
    atomic_fetch_add_explicit(&done, 1, memory_order_release);
}

struct item {
    struct sched_task task;
    unsigned payload; /* plain: written just before the spawn, read by the task */
    atomic_uint runs;
};

static atomic_uint bad_payloads; /* a task saw a payload its spawner did not write */

static void item_run(struct sched_task *t)
{
    struct item *it = (struct item *)t;
    if (it->payload != 1)
        atomic_fetch_add_explicit(&bad_payloads, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&it->runs, 1, memory_order_relaxed); /* checked after wait_done */
    done_inc();
}

static struct item *items_new(unsigned n, void (*fn)(struct sched_task *))
{
    struct item *v = calloc(n, sizeof(*v));
    cr_assert_not_null(v);
    for (unsigned i = 0; i < n; i++) {
        v[i].task.fn = fn;
        atomic_init(&v[i].runs, 0);
    }
    return v;
}

static void items_check(struct item *v, unsigned n)
{
    cr_assert_eq(atomic_load(&bad_payloads), 0);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(atomic_load_explicit(&v[i].runs, memory_order_relaxed), 1,
                     "task %u ran %u times", i, atomic_load(&v[i].runs));
}

static struct sched_pool *pool;

static void pool_setup(unsigned n)
{
    atomic_store(&done, 0);
    atomic_store(&bad_payloads, 0);
    pool = sched_pool_create(n, NULL);
    cr_assert_not_null(pool);
}

Test(pool, spawn_from_outside, .timeout = 60)
{
    const unsigned n = UNDER_TSAN ? 20000 : 50000;
    struct item *v = items_new(n, item_run);
    pool_setup(2);
    cr_assert_eq(sched_pool_start(pool), 0);
    for (unsigned i = 0; i < n; i++) {
        v[i].payload = 1;
        cr_assert_eq(sched_spawn(pool, &v[i].task), 0);
    }
    cr_assert(wait_done(n, 30), "only %lu of %u ran", atomic_load(&done), n);
    sched_pool_stop(pool);
    items_check(v, n);
    struct sched_worker_stats a, b;
    sched_worker_stats(sched_pool_worker(pool, 0), &a);
    sched_worker_stats(sched_pool_worker(pool, 1), &b);
    cr_assert_eq(a.ran + b.ran, n);
    sched_pool_destroy(pool);
    free(v);
}

/* A complete binary tree: node i spawns 2i+1 and 2i+2 from its worker. */
static struct item *tree;
static unsigned tree_n;

static void node_run(struct sched_task *t)
{
    struct item *it = (struct item *)t;
    unsigned i = (unsigned)(it - tree);
    if (it->payload != i + 1)
        atomic_fetch_add_explicit(&bad_payloads, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&it->runs, 1, memory_order_relaxed);
    for (unsigned c = 2 * i + 1; c <= 2 * i + 2 && c < tree_n; c++) {
        tree[c].payload = c + 1; /* published by the spawn (deque or LIFO slot) */
        cr_assert_eq(sched_spawn(pool, &tree[c].task), 0);
    }
    /* A little work, so that stealing pays and happens. */
    volatile unsigned x = 0;
    for (unsigned k = 0; k < 200; k++)
        x += k;
    (void)x;
    done_inc();
}

static void fanout(unsigned nworkers, unsigned depth)
{
    tree_n = (1u << (depth + 1)) - 1;
    tree = items_new(tree_n, node_run);
    pool_setup(nworkers);
    cr_assert_eq(sched_pool_start(pool), 0);
    tree[0].payload = 1;
    cr_assert_eq(sched_spawn(pool, &tree[0].task), 0);
    cr_assert(wait_done(tree_n, 30), "only %lu of %u ran", atomic_load(&done), tree_n);
    sched_pool_stop(pool);
    items_check(tree, tree_n);
    uint64_t ran = 0, stolen = 0;
    for (unsigned i = 0; i < nworkers; i++) {
        struct sched_worker_stats s;
        sched_worker_stats(sched_pool_worker(pool, i), &s);
        ran += s.ran;
        stolen += s.stolen;
    }
    cr_assert_eq(ran, tree_n);
    cr_log_info("fan-out: %u tasks on %u workers, %llu stolen", tree_n, nworkers,
                (unsigned long long)stolen);
    sched_pool_destroy(pool);
    free(tree);
}

Test(pool, recursive_fanout_2, .timeout = 60)
{
    fanout(2, UNDER_TSAN ? 13 : 15);
}
Test(pool, recursive_fanout_3, .timeout = 60)
{
    fanout(3, UNDER_TSAN ? 12 : 14);
}
/* More workers than CPUs: thieves preempted in the middle of a steal. */
Test(pool, recursive_fanout_4, .timeout = 60)
{
    fanout(4, UNDER_TSAN ? 12 : 14);
}

/* Outside threads spawning while tasks spawn from inside. */
struct spawner {
    struct item *v;
    unsigned n;
};

static struct item *mixed;
static unsigned mixed_n;

static void mixed_run(struct sched_task *t)
{
    struct item *it = (struct item *)t;
    if (it->payload != 1)
        atomic_fetch_add_explicit(&bad_payloads, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&it->runs, 1, memory_order_relaxed);
    /* Even tasks spawn the next (odd) one from inside. */
    unsigned i = (unsigned)(it - mixed);
    if (i % 2 == 0 && i + 1 < mixed_n) {
        mixed[i + 1].payload = 1;
        cr_assert_eq(sched_spawn(pool, &mixed[i + 1].task), 0);
    }
    done_inc();
}

static void *spawner_main(void *arg)
{
    struct spawner *s = arg;
    for (unsigned i = 0; i < s->n; i += 2) {
        s->v[i].payload = 1;
        sched_spawn(pool, &s->v[i].task);
    }
    return NULL;
}

Test(pool, mixed_outside_and_inside, .timeout = 60)
{
    mixed_n = UNDER_TSAN ? 20000 : 80000;
    mixed = items_new(mixed_n, mixed_run);
    pool_setup(2);
    cr_assert_eq(sched_pool_start(pool), 0);
    struct spawner sp[2] = {{mixed, mixed_n / 2}, {mixed + mixed_n / 2, mixed_n / 2}};
    pthread_t th[2];
    for (unsigned i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, spawner_main, &sp[i]), 0);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    cr_assert(wait_done(mixed_n, 30), "only %lu of %u ran", atomic_load(&done), mixed_n);
    sched_pool_stop(pool);
    items_check(mixed, mixed_n);
    sched_pool_destroy(pool);
    free(mixed);
}

/* sched_post pins a task to its worker, and one producer's posts run in
 * the order it made them. */
struct pinned {
    struct sched_task task;
    unsigned seq;
    unsigned want_worker;
};

static unsigned pin_next[2];   /* worker i's tasks only: no sharing */
static atomic_uint pin_errors; /* wrong worker or out of order */

static void pinned_run(struct sched_task *t)
{
    struct pinned *p = (struct pinned *)t;
    struct sched_worker *w = sched_worker_current();
    if (w == NULL || sched_worker_index(w) != p->want_worker ||
        p->seq != pin_next[p->want_worker]++)
        atomic_fetch_add_explicit(&pin_errors, 1, memory_order_relaxed);
    done_inc();
}

Test(pool, post_pins_and_keeps_order, .timeout = 60)
{
    const unsigned n = UNDER_TSAN ? 5000 : 20000;
    struct pinned *v = calloc(2 * n, sizeof(*v));
    cr_assert_not_null(v);
    pool_setup(2);
    pin_next[0] = pin_next[1] = 0;
    atomic_store(&pin_errors, 0);
    cr_assert_eq(sched_pool_start(pool), 0);
    for (unsigned i = 0; i < n; i++) {
        for (unsigned w = 0; w < 2; w++) {
            struct pinned *p = &v[2 * i + w];
            p->task.fn = pinned_run;
            p->seq = i;
            p->want_worker = w;
            sched_post(pool, w, &p->task);
        }
    }
    cr_assert(wait_done(2 * n, 30));
    cr_assert_eq(atomic_load(&pin_errors), 0);
    cr_assert_eq(pin_next[0], n);
    cr_assert_eq(pin_next[1], n);
    sched_pool_destroy(pool);
    free(v);
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

struct stamped {
    struct sched_task task;
    _Atomic double ran_at;
};

static void stamped_run(struct sched_task *t)
{
    struct stamped *s = (struct stamped *)t;
    atomic_store_explicit(&s->ran_at, now_s(), memory_order_relaxed);
    done_inc();
}

Test(pool, idle_parks_and_wakes_promptly, .timeout = 60)
{
    pool_setup(2);
    cr_assert_eq(sched_pool_start(pool), 0);
    struct item *v = items_new(100, item_run);
    for (unsigned i = 0; i < 100; i++) {
        v[i].payload = 1;
        sched_spawn(pool, &v[i].task);
    }
    cr_assert(wait_done(100, 10));
    sleep_ms(30); /* let both park */

    double c0 = cpu_s(), t0 = now_s();
    sleep_ms(200);
    double cpu = cpu_s() - c0, wall = now_s() - t0;
    /* Two spinning workers would use ~2 x wall; parked ones ~0. */
    cr_assert_lt(cpu, 0.1 * wall, "idle pool used %.1f ms CPU in %.1f ms", cpu * 1e3, wall * 1e3);
    for (unsigned i = 0; i < 2; i++) {
        struct sched_worker_stats s;
        sched_worker_stats(sched_pool_worker(pool, i), &s);
        cr_assert_gt(s.parked, 0, "worker %u never parked", i);
    }

    /* Posted and spawned tasks wake a parked worker at once. */
    struct stamped st[6];
    double worst = 0;
    for (unsigned i = 0; i < 6; i++) {
        unsigned long before = atomic_load(&done);
        st[i].task.fn = stamped_run;
        atomic_init(&st[i].ran_at, 0);
        double t = now_s();
        if (i % 2)
            sched_post(pool, i % 2, &st[i].task);
        else
            sched_spawn(pool, &st[i].task);
        cr_assert(wait_done(before + 1, 5));
        double lat = atomic_load(&st[i].ran_at) - t;
        if (lat > worst)
            worst = lat;
        sleep_ms(20); /* park again */
    }
    cr_assert_lt(worst, 0.050, "wake-up took %.2f ms", worst * 1e3);
    cr_log_info("worst wake-up latency %.1f us", worst * 1e6);
    sched_pool_destroy(pool);
    items_check(v, 100);
    free(v);
}

/*
 * The owner API on the calling thread (a pool that is never started).
 */
static char order[16];
static unsigned order_n;

struct named {
    struct sched_task task;
    char name;
    unsigned respawn; /* times left to spawn itself again */
};

static void named_run(struct sched_task *t)
{
    struct named *x = (struct named *)t;
    if (order_n < sizeof(order) - 1)
        order[order_n++] = x->name;
    if (x->respawn > 0) {
        x->respawn--;
        cr_assert_eq(sched_spawn(pool, &x->task), 0);
    }
}

Test(pool, owner_order_lifo_slot_then_deque)
{
    pool_setup(1);
    struct sched_worker *w = sched_pool_worker(pool, 0);
    sched_worker_attach(w);
    cr_assert_eq(sched_worker_current(), w);
    cr_assert_not(sched_worker_has_work(w));
    struct named a = {{named_run, NULL}, 'A', 0}, b = {{named_run, NULL}, 'B', 0},
                 c = {{named_run, NULL}, 'C', 0}, d = {{named_run, NULL}, 'D', 0};
    order_n = 0;
    sched_spawn(pool, &a.task); /* attached: LIFO slot */
    sched_spawn(pool, &b.task); /* B in the slot, A to the deque */
    sched_spawn(pool, &c.task);
    sched_post(pool, 0, &d.task); /* inbox: after the local work */
    cr_assert(sched_worker_has_work(w));
    cr_assert_not(sched_worker_park_begin(w));
    cr_assert_eq(sched_worker_run_budget(w, 2), 2);
    cr_assert_eq(sched_worker_run_budget(w, 10), 2);
    cr_assert_eq(sched_worker_run_budget(w, 10), 0);
    order[order_n] = 0;
    cr_assert_str_eq(order, "CBAD");
    cr_assert_not(sched_worker_has_work(w));
    cr_assert(sched_worker_park_begin(w));
    sched_worker_park_end(w);
    sched_worker_detach(w);
    cr_assert_null(sched_worker_current());
    sched_pool_destroy(pool);
}

Test(pool, lifo_slot_cannot_starve_the_deque)
{
    pool_setup(1);
    struct sched_worker *w = sched_pool_worker(pool, 0);
    sched_worker_attach(w);
    struct named other = {{named_run, NULL}, 'o', 0}, spin = {{named_run, NULL}, 's', 100};
    order_n = 0;
    sched_spawn(pool, &other.task);
    sched_spawn(pool, &spin.task); /* other -> deque; spin keeps the slot */
    sched_worker_run_budget(w, 1000);
    order[order_n] = 0;
    /* Three runs from the slot, then the deque gets its turn. */
    cr_assert_eq(strncmp(order, "sssos", 5), 0, "order %s", order);
    sched_worker_detach(w);
    sched_pool_destroy(pool);
}

/* A single-thread fork bomb keeps the LIFO slot and the deque busy; a task
 * posted to the inbox must still run within SCHED_INBOX_INTERVAL (32). */
#define BOMB 4095
static struct sched_task bomb[BOMB];
static unsigned spins;
static unsigned inbox_seen_at;

static void bomb_run(struct sched_task *t)
{
    unsigned i = (unsigned)(t - bomb);
    spins++;
    for (unsigned c = 2 * i + 1; c <= 2 * i + 2 && c < BOMB; c++)
        cr_assert_eq(sched_spawn(pool, &bomb[c]), 0);
}

static void inbox_run(struct sched_task *t)
{
    (void)t;
    inbox_seen_at = spins;
}

Test(pool, inbox_cannot_be_starved)
{
    pool_setup(1);
    struct sched_worker *w = sched_pool_worker(pool, 0);
    sched_worker_attach(w);
    struct sched_task msg = {inbox_run, NULL};
    for (unsigned i = 0; i < BOMB; i++)
        bomb[i].fn = bomb_run;
    spins = 0;
    inbox_seen_at = ~0u;
    sched_spawn(pool, &bomb[0]);
    cr_assert_eq(sched_worker_run_budget(w, 40), 40); /* local work piles up */
    sched_post(pool, 0, &msg);
    while (sched_worker_run_budget(w, 64) > 0)
        ;
    cr_assert_eq(spins, BOMB);
    cr_assert_lt(inbox_seen_at, 40 + 32, "inbox task waited until run %u", inbox_seen_at);
    cr_assert_geq(inbox_seen_at, 40);
    sched_worker_detach(w);
    sched_pool_destroy(pool);
}

Test(pool, run_budget_from_a_non_owner_panics, .signal = SIGABRT)
{
    pool_setup(1);
    sched_worker_run_budget(sched_pool_worker(pool, 0), 1);
}

/*
 * External loops: threads of ours drive the workers through run_budget and
 * park_begin / poll(wake fd) / park_end, as net/'s ring loops do.
 */
static atomic_bool ext_quit;

static void *ext_loop(void *arg)
{
    struct sched_worker *w = arg;
    sched_worker_attach(w);
    /* Acquire: pairs with the release store in the test; no data, but it
     * keeps the loop's exit after the test's last post. */
    while (!atomic_load_explicit(&ext_quit, memory_order_acquire)) {
        /* (reap ring completions here) */
        if (sched_worker_run_budget(w, 16) > 0)
            continue;
        if (sched_worker_park_begin(w)) {
            struct pollfd pfd = {.fd = sched_worker_wake_fd(w), .events = POLLIN};
            poll(&pfd, 1, -1); /* (io_uring_submit_and_wait with a POLL_ADD on the fd) */
            sched_worker_park_end(w);
        }
    }
    sched_worker_detach(w);
    return NULL;
}

static void nop_run(struct sched_task *t)
{
    (void)t;
}

Test(pool, external_loops, .timeout = 60)
{
    tree_n = (1u << ((UNDER_TSAN ? 12 : 13) + 1)) - 1;
    tree = items_new(tree_n, node_run);
    pool_setup(2);
    atomic_store(&ext_quit, false);
    pthread_t th[2];
    for (unsigned i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, ext_loop, sched_pool_worker(pool, i)), 0);
    sleep_ms(10); /* let them park first */
    tree[0].payload = 1;
    cr_assert_eq(sched_spawn(pool, &tree[0].task), 0);
    cr_assert(wait_done(tree_n, 30), "only %lu of %u ran", atomic_load(&done), tree_n);
    items_check(tree, tree_n);
    atomic_store_explicit(&ext_quit, true, memory_order_release);
    struct sched_task wake[2] = {{nop_run, NULL}, {nop_run, NULL}};
    for (unsigned i = 0; i < 2; i++)
        sched_post(pool, i, &wake[i]);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    sched_pool_destroy(pool);
    free(tree);
}

Test(pool, create_bounds)
{
    cr_assert_null(sched_pool_create(100000, NULL));
    struct sched_pool_opts o = {.deque_log_cap = 40};
    cr_assert_null(sched_pool_create(1, &o));
    struct sched_pool *p = sched_pool_create(0, NULL); /* one per CPU */
    cr_assert_not_null(p);
    cr_assert_geq(sched_pool_size(p), 1);
    sched_pool_stop(p); /* never started: no-op */
    sched_pool_destroy(p);
}
