/*
 * NAME
 *	sink-bench - throughput benchmarks for the sink engine
 * SYNOPSIS
 *	sink-bench [--quick] [--section NAME]... [--list]
 * DESCRIPTION
 *	Runs a list of sections and prints one line per measurement: the
 *	median over several repetitions, the target, and PASS or MISS.  It is
 *	a benchmark, not a test: the exit status is 0 unless a section failed
 *	to run, whatever the numbers.
 *
 *	Sections (run in this order; --section picks some):
 *	sched-deque	owner push+pop cost (single thread), steal cost (one
 *			thief draining a pre-filled deque while the owner idles)
 *	sched-pool	tasks per second on 1 and 2 workers for independent
 *			CPU-bound tasks (~2 us of arithmetic each), and the
 *			speedup from 1 to 2
 *	sink-dispatch	sink_dispatch() of `mail` with 10 builtin:noop
 *			bindings (an engine built from a config file through
 *			sink_engine_load, a sink_worker on a 1-worker pool attached to
 *			this thread, a trivial server link): ns per dispatch
 *			and per sink invocation; the same dispatch with 1
 *			binding and with none (only the server link), and
 *			sink_engine_bound(), which is all a session pays for an
 *			event without bindings; for reference, the cost of
 *			clock_gettime() (the engine reads the clock twice per
 *			invocation) and the wall time of a pending round trip
 *			(builtin:delay ms = 0: handle, its timer thread's
 *			sink_complete(), sched_post() back, the completion)
 *
 *	dkim-sign	builtin:dkim_sign at eod: thread CPU per message for
 *			RSA-2048 and Ed25519 keys, 4 KiB and 100 KiB
 *			messages (the message served from memory in 16 KiB
 *			pieces, minus a noop binding's dispatch), and a
 *			keytable of 100,000 domains over 1,000 key files: its
 *			load time, and the Ed25519 4 KiB cost through it
 *			(keys made with openssl genpkey in /tmp)
 *
 *	To add a section: write `static int bench_NAME(const struct bench_cfg *)`
 *	and add it to bench_sections[].  Use bench_report() for result lines.
 *
 *	--quick uses fewer repetitions and smaller counts.
 */
#include "core/base/clock.h"
#include "sched/sched.h"
#include "sinks/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct bench_cfg {
    bool quick;
    unsigned reps;
};

static double bench_now(void)
{
    return (double)clock_mono_ns() * 1e-9;
}

/* CPU time of the calling thread: the deque micro-benchmarks charge an
 * operation only for the time its thread ran, so a busy machine that
 * preempts the thread does not inflate the cost (it still costs caches). */
static double bench_thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Share of CPU time spent idle over the next 300 ms (from /proc/stat), or
 * -1: other load on the machine makes every number here meaningless. */
static double bench_idle_share(void)
{
    unsigned long long v[2][8];
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen("/proc/stat", "r");
        if (f == NULL)
            return -1;
        int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[k][0], &v[k][1],
                       &v[k][2], &v[k][3], &v[k][4], &v[k][5], &v[k][6], &v[k][7]);
        fclose(f);
        if (n != 8)
            return -1;
        if (k == 0)
            usleep(300000);
    }
    unsigned long long total = 0, idle = (v[1][3] - v[0][3]) + (v[1][4] - v[0][4]);
    for (int i = 0; i < 8; i++)
        total += v[1][i] - v[0][i];
    return total ? (double)idle / (double)total : -1;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double bench_median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

enum bench_goal { BENCH_AT_MOST, BENCH_AT_LEAST, BENCH_INFO };

/* One result line: what, value, unit, and how it compares with its target. */
static void bench_report(const char *what, double value, const char *unit, enum bench_goal goal,
                         double target)
{
    char tgt[48] = "";
    const char *verdict = "";
    if (goal == BENCH_AT_MOST) {
        snprintf(tgt, sizeof(tgt), "target <= %g %s", target, unit);
        verdict = value <= target ? "PASS" : "MISS";
    } else if (goal == BENCH_AT_LEAST) {
        snprintf(tgt, sizeof(tgt), "target >= %g %s", target, unit);
        verdict = value >= target ? "PASS" : "MISS";
    }
    printf("  %-34s %12.2f %-8s %-22s %s\n", what, value, unit, tgt, verdict);
    fflush(stdout);
}

/*
 * sched-deque
 */
static void bench_nop(struct sched_task *t)
{
    (void)t;
}

/* Owner push+pop: batches of 32 pushes then 32 pops (the deque is rarely
 * empty in use, so most pops take no CAS), and single push-pop pairs
 * (every pop is the last task: fence plus CAS on top). */
static double bench_push_pop_ns(unsigned batch, unsigned long pairs)
{
    static _Alignas(SCHED_CACHELINE) struct sched_deque q;
    struct sched_task t[64];
    for (unsigned i = 0; i < 64; i++)
        t[i] = (struct sched_task){bench_nop, NULL};
    if (sched_deque_init(&q, 8) < 0)
        return -1;
    unsigned long rounds = pairs / batch;
    double t0 = bench_thread_cpu();
    for (unsigned long r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < batch; i++)
            sched_deque_push_owner(&q, &t[i]);
        for (unsigned i = 0; i < batch; i++) {
            struct sched_task *x = sched_deque_pop_owner(&q);
            __asm__ volatile("" : : "r"(x) : "memory"); /* keep the pop */
        }
    }
    double ns = (bench_thread_cpu() - t0) * 1e9 / (double)(rounds * batch);
    sched_deque_fini(&q);
    return ns;
}

struct steal_arg {
    struct sched_deque *q;
    unsigned long n;
    double ns;
};

static void *bench_thief(void *arg)
{
    struct steal_arg *a = arg;
    unsigned long got = 0;
    double t0 = bench_thread_cpu();
    while (got < a->n) {
        struct sched_task *x = sched_deque_steal(a->q);
        if (x != NULL && x != SCHED_ABORT)
            got++;
    }
    a->ns = (bench_thread_cpu() - t0) * 1e9 / (double)a->n;
    return NULL;
}

static double bench_steal_ns(unsigned long n)
{
    static _Alignas(SCHED_CACHELINE) struct sched_deque q;
    static struct sched_task task = {bench_nop, NULL};
    unsigned log_cap = 1;
    while ((1UL << log_cap) < n)
        log_cap++;
    if (sched_deque_init(&q, log_cap) < 0)
        return -1;
    for (unsigned long i = 0; i < n; i++)
        sched_deque_push_owner(&q, &task); /* the owner fills it, then idles */
    struct steal_arg a = {&q, n, 0};
    pthread_t th;
    if (pthread_create(&th, NULL, bench_thief, &a) != 0)
        return -1;
    pthread_join(th, NULL);
    sched_deque_fini(&q);
    return a.ns;
}

static int bench_sched_deque(const struct bench_cfg *cfg)
{
    unsigned long pairs = cfg->quick ? 2000000 : 10000000;
    unsigned long steals = cfg->quick ? 1UL << 18 : 1UL << 20;
    double pp32[16], pp1[16], st[16];
    printf("  (thread CPU time per operation)\n");
    bench_push_pop_ns(32, pairs / 4); /* warm up */
    for (unsigned r = 0; r < cfg->reps; r++) {
        pp32[r] = bench_push_pop_ns(32, pairs);
        pp1[r] = bench_push_pop_ns(1, pairs);
        st[r] = bench_steal_ns(steals);
        if (pp32[r] < 0 || pp1[r] < 0 || st[r] < 0)
            return -1;
    }
    bench_report("owner push+pop (batches of 32)", bench_median(pp32, cfg->reps), "ns/pair",
                 BENCH_AT_MOST, 20);
    bench_report("owner push+pop (one at a time)", bench_median(pp1, cfg->reps), "ns/pair",
                 BENCH_INFO, 0);
    bench_report("steal (owner idle)", bench_median(st, cfg->reps), "ns/task", BENCH_AT_MOST, 150);
    return 0;
}

/*
 * sched-pool
 */
struct work {
    struct sched_task task;
    uint64_t out;
};

static unsigned bench_iters; /* calibrated: ~2 us of arithmetic */
static struct work *bench_works;
static unsigned bench_nworks;
static struct sched_pool *bench_pool;

static uint64_t bench_crunch(uint64_t x, unsigned iters)
{
    for (unsigned i = 0; i < iters; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        x ^= x >> 29;
    }
    return x;
}

static void bench_work_run(struct sched_task *t)
{
    struct work *w = (struct work *)t;
    w->out = bench_crunch(w->out, bench_iters);
}

/* The root spawns every task from its worker: they land in its deque and
 * the other workers steal them, which is the path sink work takes. */
static void bench_root_run(struct sched_task *t)
{
    (void)t;
    for (unsigned i = 0; i < bench_nworks; i++)
        if (sched_spawn(bench_pool, &bench_works[i].task) < 0)
            abort();
}

static void bench_calibrate(void)
{
    unsigned iters = 100000;
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        double t0 = bench_now();
        volatile uint64_t sink = bench_crunch((uint64_t)r, iters);
        (void)sink;
        double dt = bench_now() - t0;
        if (dt < best)
            best = dt;
    }
    double ns_per_iter = best * 1e9 / iters;
    bench_iters = (unsigned)(2000.0 / ns_per_iter);
    if (bench_iters == 0)
        bench_iters = 1;
}

static uint64_t bench_pool_ran(struct sched_pool *p)
{
    uint64_t ran = 0;
    for (unsigned i = 0; i < sched_pool_size(p); i++) {
        struct sched_worker_stats s;
        sched_worker_stats(sched_pool_worker(p, i), &s);
        ran += s.ran;
    }
    return ran;
}

static double bench_process_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Tasks per second with n workers, or -1.  *share: the CPU time the process
 * got during the run over n x wall time (below ~0.9: other load took the
 * CPUs from the workers and the rate says little). */
static double bench_pool_rate(unsigned nworkers, unsigned ntasks, uint64_t *stolen, double *share)
{
    struct sched_pool *p = sched_pool_create(nworkers, NULL);
    if (p == NULL || sched_pool_start(p) < 0)
        return -1;
    for (unsigned i = 0; i < ntasks; i++)
        bench_works[i] = (struct work){{bench_work_run, NULL}, i};
    bench_pool = p;
    bench_nworks = ntasks;
    struct sched_task root = {bench_root_run, NULL};
    usleep(10000); /* let the workers park: start from idle */
    double c0 = bench_process_cpu();
    double t0 = bench_now();
    sched_spawn(p, &root);
    /* Poll the workers' counters (single-writer: no cache line shared by
     * the workers is written per task).  1 ms granularity on a run of
     * 100 ms or more; polling more often would take CPU from the workers. */
    struct timespec nap = {0, 1000000};
    while (bench_pool_ran(p) < (uint64_t)ntasks + 1)
        nanosleep(&nap, NULL);
    double dt = bench_now() - t0;
    *share = (bench_process_cpu() - c0) / (dt * nworkers);
    *stolen = 0;
    for (unsigned i = 0; i < nworkers; i++) {
        struct sched_worker_stats s;
        sched_worker_stats(sched_pool_worker(p, i), &s);
        *stolen += s.stolen;
    }
    sched_pool_destroy(p);
    return ntasks / dt;
}

static int bench_sched_pool(const struct bench_cfg *cfg)
{
    unsigned ntasks = cfg->quick ? 50000 : 200000;
    bench_works = calloc(ntasks, sizeof(*bench_works));
    if (bench_works == NULL)
        return -1;
    bench_calibrate();
    double t0 = bench_now();
    volatile uint64_t sink = bench_crunch(1, bench_iters * 1000);
    (void)sink;
    double task_us = (bench_now() - t0) * 1e6 / 1000;
    printf("  (%u tasks of %u iterations, %.2f us each; %ld CPUs online)\n", ntasks, bench_iters,
           task_us, sysconf(_SC_NPROCESSORS_ONLN));
    double r1[16], r2[16], sh1[16], sh2[16];
    uint64_t st1 = 0, st2 = 0;
    for (unsigned r = 0; r < cfg->reps; r++) {
        r1[r] = bench_pool_rate(1, ntasks, &st1, &sh1[r]);
        r2[r] = bench_pool_rate(2, ntasks, &st2, &sh2[r]);
        if (r1[r] < 0 || r2[r] < 0) {
            free(bench_works);
            return -1;
        }
    }
    double m1 = bench_median(r1, cfg->reps), m2 = bench_median(r2, cfg->reps);
    bench_report("1 worker", m1, "tasks/s", BENCH_INFO, 0);
    bench_report("2 workers", m2, "tasks/s", BENCH_INFO, 0);
    double s1 = bench_median(sh1, cfg->reps), s2 = bench_median(sh2, cfg->reps);
    printf("  (CPU share the workers got, median: %.0f%% with 1, %.0f%% with 2%s)\n", s1 * 100,
           s2 * 100, s1 < 0.9 || s2 < 0.9 ? " -- disturbed by other load" : "");
    printf("  (2 workers: %llu of %u tasks stolen in the last run)\n", (unsigned long long)st2,
           ntasks);
    bench_report("speedup 1 -> 2 workers", m2 / m1, "x", BENCH_AT_LEAST, 1.8);
    free(bench_works);
    return 0;
}

/*
 * sink-dispatch
 */
#define BENCH_NOOPS 10

/* The session's side of a dispatch: the server's own handler as a link
 * (it checks nothing here) and the event data of a MAIL command. */
static enum sink_verdict bench_server(void *arg, struct sink_result *res)
{
    (void)res;
    (*(unsigned long *)arg)++;
    return SINK_CONTINUE;
}

static const struct sink_event_data bench_mail_data = {
    .client_addr = "192.0.2.1",
    .helo = "client.bench.test",
    .verb = "MAIL",
    .args = "FROM:<bench@client.bench.test> SIZE=4096",
    .sender = "bench@client.bench.test",
    .mail_params = "SIZE=4096",
};

/* An engine as sluiced builds it: the configuration written to a file and
 * read by sink_engine_load() (the whole configuration reader, then the
 * engine).  nmail noop bindings on mail (default priority: after the server
 * link), or the binding text given. */
static struct sink_engine *bench_engine(unsigned nmail, const char *text)
{
    char path[] = "/tmp/sink-bench-conf.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("sink-bench: mkstemp");
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        unlink(path);
        return NULL;
    }
    fprintf(f, "# sink-bench sink-dispatch\n");
    for (unsigned i = 0; i < nmail; i++)
        fprintf(f, "binding \"noop%u\" { event = \"mail\"; sink = \"builtin:noop\"; }\n", i);
    if (text != NULL)
        fputs(text, f);
    /* something bound elsewhere, so the engine is never empty */
    fprintf(f, "binding \"other\" { event = \"eod\"; sink = \"builtin:noop\"; }\n");
    int bad = fclose(f) != 0;
    char err[512] = "";
    struct sink_engine *e = bad ? NULL : sink_engine_load(path, err, sizeof(err));
    unlink(path);
    if (e == NULL)
        fprintf(stderr, "sink-bench: sink_engine_load: %s\n", err[0] ? err : "write failed");
    return e;
}

struct bench_rig {
    struct sink_engine *e;
    struct sched_pool *pool;
    struct sched_worker *w;
    struct sink_worker *sw;
    struct sink_call *call;
};

static void bench_rig_fini(struct bench_rig *r)
{
    /* The daemon's shutdown order (engine.h): calls, sink workers, the
     * engine, then the pool. */
    if (r->call != NULL)
        sink_call_destroy(r->call);
    if (r->sw != NULL)
        sink_worker_destroy(r->sw);
    if (r->e != NULL)
        sink_engine_destroy(r->e);
    if (r->w != NULL)
        sched_worker_detach(r->w);
    if (r->pool != NULL)
        sched_pool_destroy(r->pool);
    memset(r, 0, sizeof(*r));
}

static int bench_rig_init(struct bench_rig *r, unsigned nmail, const char *text)
{
    memset(r, 0, sizeof(*r));
    if ((r->e = bench_engine(nmail, text)) == NULL)
        return -1;
    if ((r->pool = sched_pool_create(1, NULL)) == NULL)
        goto fail;
    r->w = sched_pool_worker(r->pool, 0);
    sched_worker_attach(r->w); /* this thread is worker 0, as a ring loop is */
    if ((r->sw = sink_worker_create(r->e, r->pool, 0)) == NULL)
        goto fail;
    if ((r->call = sink_call_create(r->sw)) == NULL)
        goto fail;
    return 0;
fail:
    fprintf(stderr, "sink-bench: cannot set up a sink worker\n");
    bench_rig_fini(r);
    return -1;
}

/* Thread CPU ns per sink_dispatch(ev) over n calls; -1 on a wrong result. */
static double bench_dispatch_ns(struct bench_rig *r, enum sink_event ev, unsigned long n)
{
    struct sink_result res;
    unsigned long server_calls = 0;
    double t0 = bench_thread_cpu();
    for (unsigned long i = 0; i < n; i++) {
        if (!sink_dispatch(r->call, ev, &bench_mail_data, bench_server, &server_calls, NULL, NULL,
                           &res) ||
            res.verdict != SINK_CONTINUE)
            return -1;
    }
    double ns = (bench_thread_cpu() - t0) * 1e9 / (double)n;
    return server_calls == n ? ns : -1;
}

/* Thread CPU ns per clock_gettime(CLOCK_MONOTONIC): the engine reads the
 * clock twice per sink invocation (the latency histogram). */
static double bench_clock_ns(unsigned long n)
{
    struct timespec ts;
    double t0 = bench_thread_cpu();
    for (unsigned long i = 0; i < n; i++) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        __asm__ volatile("" : : "r"(&ts) : "memory");
    }
    return (bench_thread_cpu() - t0) * 1e9 / (double)n;
}

static void bench_pending_done(void *arg, const struct sink_result *res)
{
    *(int *)arg = res->verdict == SINK_CONTINUE ? 1 : -1;
}

/* Wall us per pending round trip: dispatch -> builtin:delay ms=0 returns
 * PENDING -> its timer thread calls sink_complete() -> sched_post() to this
 * worker's inbox -> the completion task runs here -> done.  The bench
 * thread polls its worker (a ring loop would be parked and woken by the
 * eventfd: a little more). */
static double bench_pending_us(struct bench_rig *r, unsigned long n)
{
    struct sink_result res;
    unsigned long server_calls = 0;
    double t0 = bench_now();
    for (unsigned long i = 0; i < n; i++) {
        volatile int done = 0;
        if (sink_dispatch(r->call, SINK_EV_MAIL, &bench_mail_data, bench_server, &server_calls,
                          bench_pending_done, (void *)&done, &res))
            return -1; /* it did not go pending */
        double until = bench_now() + 5;
        while (done == 0 && bench_now() < until)
            sched_worker_run_budget(r->w, 64);
        if (done != 1)
            return -1;
    }
    return (bench_now() - t0) * 1e6 / (double)n;
}

/* Thread CPU ns per sink_engine_bound() (the session's test before it
 * calls the engine at all). */
static double bench_bound_ns(const struct sink_engine *e, enum sink_event ev, unsigned long n)
{
    unsigned long hits = 0;
    double t0 = bench_thread_cpu();
    for (unsigned long i = 0; i < n; i++) {
        bool b = sink_engine_bound(e, ev);
        __asm__ volatile("" : "+r"(b)); /* keep every call */
        hits += b;
    }
    double ns = (bench_thread_cpu() - t0) * 1e9 / (double)n;
    return hits == 0 ? ns : -1;
}

static int bench_sink_dispatch(const struct bench_cfg *cfg)
{
    unsigned long n = cfg->quick ? 200000 : 1000000;
    struct bench_rig r10, r1;
    if (bench_rig_init(&r10, BENCH_NOOPS, NULL) < 0)
        return -1;
    if (!sink_engine_bound(r10.e, SINK_EV_MAIL) || sink_engine_bound(r10.e, SINK_EV_RCPT)) {
        fprintf(stderr, "sink-bench: the engine's bindings are not what was configured\n");
        bench_rig_fini(&r10);
        return -1;
    }
    double d10[16], d0[16], d1[16], bd[16];
    int rc = 0;
    bench_dispatch_ns(&r10, SINK_EV_MAIL, n / 10); /* warm up */
    for (unsigned k = 0; k < cfg->reps && rc == 0; k++) {
        d10[k] = bench_dispatch_ns(&r10, SINK_EV_MAIL, n);
        /* rcpt has no binding: the engine runs only the server link */
        d0[k] = bench_dispatch_ns(&r10, SINK_EV_RCPT, n);
        bd[k] = bench_bound_ns(r10.e, SINK_EV_RCPT, n * 10);
        if (d10[k] < 0 || d0[k] < 0 || bd[k] < 0)
            rc = -1;
    }
    bench_rig_fini(&r10);
    /* One binding (a separate engine: one attached worker at a time). */
    if (rc == 0 && bench_rig_init(&r1, 1, NULL) == 0) {
        bench_dispatch_ns(&r1, SINK_EV_MAIL, n / 10);
        for (unsigned k = 0; k < cfg->reps && rc == 0; k++)
            if ((d1[k] = bench_dispatch_ns(&r1, SINK_EV_MAIL, n)) < 0)
                rc = -1;
        bench_rig_fini(&r1);
    } else {
        rc = -1;
    }
    if (rc < 0) {
        fprintf(stderr, "sink-bench: a dispatch did not continue synchronously\n");
        return -1;
    }
    /* The asynchronous path, for comparison (not a target). */
    double pu[16], ck[16];
    struct bench_rig rp;
    const char *delay0 = "binding \"d\" { event = \"mail\"; sink = \"builtin:delay\"; "
                         "properties { ms = 0; } }\n";
    if (rc == 0 && bench_rig_init(&rp, 0, delay0) == 0) {
        unsigned long np = cfg->quick ? 5000 : 20000;
        bench_pending_us(&rp, np / 10);
        for (unsigned k = 0; k < cfg->reps && rc == 0; k++)
            if ((pu[k] = bench_pending_us(&rp, np)) < 0)
                rc = -1;
        bench_rig_fini(&rp);
    } else {
        rc = -1;
    }
    for (unsigned k = 0; k < cfg->reps; k++)
        ck[k] = bench_clock_ns(n);
    if (rc < 0) {
        fprintf(stderr, "sink-bench: a pending dispatch did not complete\n");
        return -1;
    }
    double m10 = bench_median(d10, cfg->reps), m0 = bench_median(d0, cfg->reps);
    double m1 = bench_median(d1, cfg->reps), mb = bench_median(bd, cfg->reps);
    printf("  (thread CPU time; %lu dispatches of `mail` per run, a trivial server link)\n", n);
    bench_report("dispatch, 10 noop bindings", m10, "ns", BENCH_INFO, 0);
    bench_report("per sink invocation (/10)", m10 / BENCH_NOOPS, "ns", BENCH_AT_MOST, 1000);
    bench_report("  marginal ((10 - none) / 10)", (m10 - m0) / BENCH_NOOPS, "ns", BENCH_INFO, 0);
    bench_report("dispatch, 1 noop binding", m1, "ns", BENCH_INFO, 0);
    bench_report("dispatch, no binding (server only)", m0, "ns", BENCH_INFO, 0);
    bench_report("sink_engine_bound (no binding)", mb, "ns", BENCH_INFO, 0);
    bench_report("clock_gettime (2 per invocation)", bench_median(ck, cfg->reps), "ns", BENCH_INFO,
                 0);
    bench_report("pending round trip, wall (delay 0)", bench_median(pu, cfg->reps), "us",
                 BENCH_INFO, 0);
    printf("  (a session skips the engine when sink_engine_bound() is false: an event\n"
           "   without bindings costs that test and nothing else)\n");
    return 0;
}

/*
 * dkim-sign
 */
struct bench_msg {
    const char *p;
    size_t len;
    unsigned long adds;
};

static int bench_msg_at(void *arg, uint64_t off, const char **p, size_t *len)
{
    const struct bench_msg *m = arg;
    size_t piece = 16384; /* about a receive buffer */
    if (off >= m->len) {
        *len = 0;
        return 0;
    }
    *p = m->p + off;
    *len = m->len - off < piece ? m->len - off : piece;
    return 0;
}

static int bench_msg_edit(void *arg, enum sink_edit_op op, const char *name, const char *value)
{
    (void)op, (void)name, (void)value;
    ((struct bench_msg *)arg)->adds++;
    return 0;
}

/* A message of about size octets: a Received field, the usual header
 * fields (From at domain), lines of text. */
static char *bench_dkim_msg(size_t size, const char *domain, size_t *len)
{
    char *m = malloc(size + 1024);
    if (m == NULL)
        return NULL;
    int n = snprintf(m, 1024,
                     "Received: from client.bench.test by mx.bench.test; "
                     "Tue, 8 Dec 2026 01:00:00 +0000\r\n"
                     "From: Bench <bench@%s>\r\nTo: rcpt@example.test\r\n"
                     "Subject: sink-bench dkim-sign\r\nDate: Tue, 08 Dec 2026 01:00:00 +0000\r\n"
                     "Message-ID: <bench@%s>\r\nMIME-Version: 1.0\r\n"
                     "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
                     domain, domain);
    size_t o = (size_t)n;
    while (o < size) {
        o += (size_t)snprintf(m + o, 80, "%.*s\r\n", 72,
                              "The quick brown fox jumps over the lazy dog, again and again "
                              "and again.");
    }
    *len = o;
    return m;
}

/* Thread CPU us per eod dispatch of msg through r (each a new message bag). */
static double bench_eod_us(struct bench_rig *r, struct bench_msg *msg, unsigned long n,
                           unsigned long want_adds)
{
    struct sink_bag *bag = sink_bag_create();
    if (bag == NULL)
        return -1;
    struct sink_event_data d = bench_mail_data;
    d.verb = NULL;
    d.args = NULL;
    d.body_at = bench_msg_at;
    d.edit = bench_msg_edit;
    d.body_arg = msg;
    d.body_size = msg->len;
    d.message_bag = bag;
    struct sink_result res;
    unsigned long server_calls = 0;
    msg->adds = 0;
    double t0 = bench_thread_cpu();
    for (unsigned long i = 0; i < n; i++) {
        sink_bag_clear(bag);
        if (!sink_dispatch(r->call, SINK_EV_EOD, &d, bench_server, &server_calls, NULL, NULL,
                           &res) ||
            res.verdict != SINK_CONTINUE)
            break;
    }
    double us = (bench_thread_cpu() - t0) * 1e6 / (double)n;
    sink_bag_destroy(bag);
    return msg->adds == n * want_adds ? us : -1;
}

static int bench_dkim_case(const struct bench_cfg *cfg, const char *what, const char *binding,
                           struct bench_msg *msg, unsigned long n, double base_us)
{
    struct bench_rig r;
    if (bench_rig_init(&r, 0, binding) < 0)
        return -1;
    double v[16];
    bench_eod_us(&r, msg, n / 10 + 1, 1); /* warm up: the key is parsed here */
    for (unsigned k = 0; k < cfg->reps; k++) {
        if ((v[k] = bench_eod_us(&r, msg, n, 1)) < 0) {
            fprintf(stderr, "sink-bench: %s: not every message was signed\n", what);
            bench_rig_fini(&r);
            return -1;
        }
    }
    bench_rig_fini(&r);
    bench_report(what, bench_median(v, cfg->reps) - base_us, "us", BENCH_INFO, 0);
    return 0;
}

static int bench_dkim_sign(const struct bench_cfg *cfg)
{
    char dir[] = "/tmp/sink-bench-dkim.XXXXXX", cmd[512], rsa[128], ed[128], kt[128];
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(rsa, sizeof(rsa), "%s/rsa.pem", dir);
    snprintf(ed, sizeof(ed), "%s/ed.pem", dir);
    snprintf(kt, sizeof(kt), "%s/keytable", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null &&"
             " openssl genpkey -algorithm ed25519 -out %s 2>/dev/null",
             rsa, ed);
    int rc = system(cmd) == 0 ? 0 : -1;
    if (rc < 0)
        fprintf(stderr, "sink-bench: openssl genpkey failed (openssl installed?)\n");
    /* 100,000 domains over 1,000 key files (copies of the Ed25519 key) */
    unsigned ndom = cfg->quick ? 20000 : 100000, nfiles = 1000;
    FILE *f = rc == 0 ? fopen(kt, "w") : NULL;
    for (unsigned i = 0; f != NULL && i < nfiles && rc == 0; i++) {
        snprintf(cmd, sizeof(cmd), "%s/k%u.pem", dir, i);
        if (link(ed, cmd) < 0)
            rc = -1;
    }
    for (unsigned i = 0; f != NULL && i < ndom; i++)
        fprintf(f, "d%u.bench.test s1 %s/k%u.pem\n", i, dir, i % nfiles);
    if (f == NULL || fclose(f) != 0)
        rc = -1;
    const size_t sizes[2] = {4096, 100 * 1024};
    unsigned long counts[2] = {cfg->quick ? 200 : 1000, cfg->quick ? 50 : 300};
    struct bench_msg msg[2] = {{0}};
    char *mem[2] = {NULL, NULL}, *kmem = NULL;
    for (int i = 0; i < 2 && rc == 0; i++)
        if ((mem[i] = bench_dkim_msg(sizes[i], "bench.test", &msg[i].len)) == NULL)
            rc = -1;
    char mid[64];
    snprintf(mid, sizeof(mid), "d%u.bench.test", ndom / 2);
    struct bench_msg kmsg = {0};
    if (rc == 0 && (kmem = bench_dkim_msg(sizes[0], mid, &kmsg.len)) == NULL)
        rc = -1;
    char b[1024];
    printf("  (thread CPU time per message at eod, minus the same dispatch with a noop\n"
           "   binding: canonicalization, hashes, the signature, the header edit)\n");
    for (int i = 0; i < 2 && rc == 0; i++) {
        msg[i].p = mem[i];
        struct bench_rig r0;
        const char *noop = "binding \"n\" { event = eod; sink = \"builtin:noop\"; }\n";
        double base[16];
        if (bench_rig_init(&r0, 0, noop) < 0)
            rc = -1;
        for (unsigned k = 0; rc == 0 && k < cfg->reps; k++)
            base[k] = bench_eod_us(&r0, &msg[i], counts[i] * 10, 0);
        if (rc == 0)
            bench_rig_fini(&r0);
        double bu = rc == 0 ? bench_median(base, cfg->reps) : 0;
        const char *keys[2] = {rsa, ed}, *names[2] = {"RSA-2048", "Ed25519"};
        for (int k = 0; k < 2 && rc == 0; k++) {
            snprintf(b, sizeof(b),
                     "binding \"s\" { event = eod; sink = \"builtin:dkim_sign\"; properties { "
                     "domain = \"bench.test\"; selector = \"s1\"; key = \"%s\"; } }\n",
                     keys[k]);
            char what[64];
            snprintf(what, sizeof(what), "sign %s, %zu KiB", names[k], sizes[i] / 1024);
            rc = bench_dkim_case(cfg, what, b, &msg[i], counts[i], bu);
        }
        if (rc == 0 && i == 0) {
            snprintf(b, sizeof(b),
                     "binding \"s\" { event = eod; sink = \"builtin:dkim_sign\"; properties { "
                     "keytable = \"%s\"; } }\n",
                     kt);
            double t0 = bench_now();
            struct bench_rig rk;
            if (bench_rig_init(&rk, 0, b) < 0) {
                rc = -1;
                break;
            }
            double load = bench_now() - t0;
            bench_rig_fini(&rk);
            char what[64];
            snprintf(what, sizeof(what), "keytable of %u domains: load", ndom);
            bench_report(what, load * 1e3, "ms", BENCH_INFO, 0);
            kmsg.p = kmem;
            snprintf(what, sizeof(what), "sign Ed25519, 4 KiB, via that table");
            rc = bench_dkim_case(cfg, what, b, &kmsg, counts[i], bu);
        }
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "sink-bench: could not remove %s\n", dir);
    free(mem[0]);
    free(mem[1]);
    free(kmem);
    return rc;
}

/*
 * Driver.
 */
struct bench_section {
    const char *name;
    const char *title;
    int (*run)(const struct bench_cfg *cfg);
};

static const struct bench_section bench_sections[] = {
    {"sched-deque", "scheduler: Chase-Lev deque", bench_sched_deque},
    {"sched-pool", "scheduler: worker pool throughput", bench_sched_pool},
    {"sink-dispatch", "sinks: dispatch overhead", bench_sink_dispatch},
    {"dkim-sign", "sinks: builtin:dkim_sign cost per message", bench_dkim_sign},
};
#define BENCH_NSECTIONS (sizeof(bench_sections) / sizeof(bench_sections[0]))

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: sink-bench [--quick] [--section NAME]... [--list]\n");
}

int main(int argc, char **argv)
{
    struct bench_cfg cfg = {.quick = false};
    bool want[BENCH_NSECTIONS] = {false};
    bool any = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            cfg.quick = true;
        } else if (strcmp(argv[i], "--section") == 0 && i + 1 < argc) {
            const char *name = argv[++i];
            size_t k;
            for (k = 0; k < BENCH_NSECTIONS; k++)
                if (strcmp(bench_sections[k].name, name) == 0)
                    break;
            if (k == BENCH_NSECTIONS) {
                fprintf(stderr, "sink-bench: no section %s (--list)\n", name);
                return 2;
            }
            want[k] = any = true;
        } else if (strcmp(argv[i], "--list") == 0) {
            for (size_t k = 0; k < BENCH_NSECTIONS; k++)
                printf("%-14s %s\n", bench_sections[k].name, bench_sections[k].title);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            bench_usage(stdout);
            return 0;
        } else {
            bench_usage(stderr);
            return 2;
        }
    }
    cfg.reps = cfg.quick ? 3 : 7;
    printf("sink-bench%s: medians of %u runs\n", cfg.quick ? " --quick" : "", cfg.reps);
    double idle = bench_idle_share();
    if (idle >= 0)
        printf("CPUs idle before the run: %.0f%%%s\n", idle * 100,
               idle < 0.8 ? " -- the machine is busy: numbers are unreliable" : "");
    int status = 0;
    for (size_t k = 0; k < BENCH_NSECTIONS; k++) {
        if (any && !want[k])
            continue;
        printf("\n== %s (%s)\n", bench_sections[k].title, bench_sections[k].name);
        if (bench_sections[k].run(&cfg) < 0) {
            fprintf(stderr, "sink-bench: %s: failed to run\n", bench_sections[k].name);
            status = 1;
        }
    }
    return status;
}
