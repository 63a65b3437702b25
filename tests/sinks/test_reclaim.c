/*
 * NAME
 *	test_reclaim - replaced chains and removed bindings are freed while
 *	the engine runs, once every worker has turned and nothing holds them
 *	(sinks/engine.c, "Freeing what a change retired"; run under ASan and
 *	TSan too)
 */
#include "tests/sinks/sink_test.h"

#include <unistd.h>

/* ---- builtin:reclaim: counts its instances, pends on request ---- */

static _Atomic int rc_live;   /* instances created and not destroyed */
static _Atomic int rc_q_runs; /* calls of bindings with tag "q" */

struct rc_inst {
    char tag[32];
    bool pending;
    size_t blob; /* the length of property blob: the instance keeps a copy */
    char *copy;
};

/* The pending calls, for the test (or its completer thread) to answer. */
#define RC_QMAX 4096
static struct sink_ctx *rc_q[RC_QMAX];
static size_t rc_qn;
static pthread_mutex_t rc_qmu = PTHREAD_MUTEX_INITIALIZER;

static struct sink_ctx *rc_pop(void)
{
    pthread_mutex_lock(&rc_qmu);
    struct sink_ctx *ctx = rc_qn > 0 ? rc_q[--rc_qn] : NULL;
    pthread_mutex_unlock(&rc_qmu);
    return ctx;
}

static int rc_create(const struct sink_props *p, void **inst, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    struct rc_inst *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    const char *tag = sink_props_get(p, "tag"), *blob = sink_props_get(p, "blob");
    snprintf(s->tag, sizeof(s->tag), "%s", tag ? tag : "?");
    s->pending = sink_props_get_bool(p, "pending", 0);
    if (blob != NULL) {
        s->blob = strlen(blob);
        s->copy = strdup(blob);
    }
    atomic_fetch_add(&rc_live, 1);
    *inst = s;
    return 0;
}

static void rc_destroy(void *inst)
{
    struct rc_inst *s = inst;
    atomic_fetch_sub(&rc_live, 1);
    free(s->copy);
    free(s);
}

static enum sink_verdict rc_handle(void *inst, struct sink_ctx *ctx)
{
    struct rc_inst *s = inst;
    if (strcmp(s->tag, "q") == 0)
        atomic_fetch_add(&rc_q_runs, 1);
    if (!s->pending)
        return SINK_CONTINUE;
    pthread_mutex_lock(&rc_qmu);
    bool room = rc_qn < RC_QMAX;
    if (room)
        rc_q[rc_qn++] = ctx;
    pthread_mutex_unlock(&rc_qmu);
    return room ? SINK_PENDING : SINK_TEMPFAIL;
}

static const struct sink_module rc_module = {
    SINK_MODULE_HEAD,
    .name = "reclaim",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .create = rc_create,
    .destroy = rc_destroy,
    .handle = rc_handle,
};

static void rc_setup(void)
{
    st_setup();
    int rc = sink_builtin_register(&rc_module);
    cr_assert(rc == 0 || rc == -EEXIST);
    atomic_store(&rc_live, 0);
    atomic_store(&rc_q_runs, 0);
    rc_qn = 0;
}

static const struct sink_event_data rc_mail = {
    .client_addr = "192.0.2.1",
    .helo = "client.example",
    .sender = "someone@example.org",
};

/* A turn of a worker's loop that does not try the reclaimer itself
 * (now_ms below its pace): the test decides when it runs. */
static void rc_turn(struct sink_worker *sw)
{
    sink_worker_expire(sw, 1);
}

static void rc_ok(int rc, const char *err)
{
    cr_assert_eq(rc, 0, "%s", err);
}

Test(reclaim, waits_for_every_worker_to_turn)
{
    rc_setup();
    struct sink_engine *e = st_engine("binding a { event = mail; sink = \"builtin:reclaim\"; }\n"
                                      "binding b { event = mail; sink = \"builtin:reclaim\"; }\n");
    struct sink_worker *w1 = sink_worker_create(e, NULL, 0);
    struct sink_worker *w2 = sink_worker_create(e, NULL, 1);
    cr_assert_eq(atomic_load(&rc_live), 2);
    char err[256] = "";
    rc_ok(sink_engine_remove(e, "a", err, sizeof(err)), err);
    cr_assert_eq(e->nold_b, 1);
    cr_assert_eq(e->nold_chain, 1);
    sink_reclaim(e);
    rc_turn(w1);
    sink_reclaim(e);
    cr_assert_eq(e->nold_b, 1, "freed before worker 2 turned");
    cr_assert_eq(atomic_load(&rc_live), 2);
    rc_turn(w2);
    sink_reclaim(e); /* quiet now: one more grace period for the last holder */
    cr_assert_eq(e->nold_b, 1);
    rc_turn(w1);
    sink_reclaim(e);
    cr_assert_eq(e->nold_b, 1, "freed before worker 2 turned again");
    rc_turn(w2);
    sink_reclaim(e);
    cr_assert_eq(e->nold_b, 0);
    cr_assert_eq(e->nold_chain, 0);
    cr_assert_eq(atomic_load(&rc_live), 1, "the removed instance was not destroyed");
    /* a worker that goes away is not waited for */
    rc_ok(sink_engine_remove(e, "b", err, sizeof(err)), err);
    sink_worker_destroy(w2);
    for (int i = 0; i < 3; i++) {
        rc_turn(w1);
        sink_reclaim(e);
    }
    cr_assert_eq(e->nold_b, 0);
    cr_assert_eq(atomic_load(&rc_live), 0);
    sink_worker_destroy(w1);
    sink_engine_destroy(e);
}

/* n turns of w, each followed by the reclaimer. */
static void rc_turns(struct sink_worker *w, struct sink_engine *e, int n)
{
    for (int i = 0; i < n; i++) {
        rc_turn(w);
        sink_reclaim(e);
    }
}

Test(reclaim, a_pending_call_holds_its_binding)
{
    rc_setup();
    struct sink_engine *e = st_engine(
        "binding p { event = mail; sink = \"builtin:reclaim\"; deadline = \"10s\";"
        " properties { pending = true; } }\n");
    struct sink_worker *w = sink_worker_create(e, NULL, 0);
    struct sink_call *c = sink_call_create(w);
    struct st_done done = {0};
    struct sink_result res;
    cr_assert_not(sink_dispatch(c, SINK_EV_MAIL, &rc_mail, NULL, NULL, st_done_fn, &done, &res));
    struct sink_ctx *ctx = rc_pop();
    cr_assert_not_null(ctx);
    char err[256] = "";
    rc_ok(sink_engine_remove(e, "p", err, sizeof(err)), err);
    rc_turns(w, e, 10);
    cr_assert_eq(e->nold_b, 1, "a binding with a pending call was freed");
    cr_assert_eq(e->nold_chain, 1, "the chain of a pending dispatch was freed");
    cr_assert_eq(atomic_load(&rc_live), 1);
    sink_set_reply(ctx, 550, "5.7.1", "no from a removed binding");
    sink_complete(ctx, SINK_REJECT);
    rc_turns(w, e, 1); /* runs the completion (pool NULL: the inbox) */
    cr_assert_eq(done.calls, 1);
    cr_assert_eq(done.res.verdict, SINK_REJECT);
    cr_assert_str_eq(done.res.binding, "p");
    cr_assert_str_eq(done.res.text, "no from a removed binding");
    rc_turns(w, e, 3);
    cr_assert_eq(e->nold_b, 0);
    cr_assert_eq(e->nold_chain, 0);
    cr_assert_eq(atomic_load(&rc_live), 0);
    sink_call_destroy(c);
    sink_worker_destroy(w);
    sink_engine_destroy(e);
}

static void *rc_late(void *arg)
{
    sink_complete(arg, SINK_CONTINUE); /* after the deadline: counted late */
    return NULL;
}

Test(reclaim, a_late_answer_after_the_deadline_still_finds_its_binding)
{
    rc_setup();
    struct sink_engine *e = st_engine(
        "binding p { event = mail; sink = \"builtin:reclaim\"; deadline = \"20ms\";"
        " on_deadline = \"tempfail\"; properties { pending = true; } }\n");
    struct sink_worker *w = sink_worker_create(e, NULL, 0);
    struct sink_call *c = sink_call_create(w);
    struct st_done done = {0};
    struct sink_result res;
    cr_assert_not(sink_dispatch(c, SINK_EV_MAIL, &rc_mail, NULL, NULL, st_done_fn, &done, &res));
    struct sink_ctx *ctx = rc_pop();
    cr_assert_not_null(ctx);
    struct sink_binding *b = st_binding(e, "p");
    uint64_t until = sink_now_ms() + 5000;
    while (done.calls == 0 && sink_now_ms() < until) {
        usleep(5000);
        sink_worker_expire(w, sink_now_ms());
    }
    cr_assert_eq(done.calls, 1);
    cr_assert_eq(done.res.verdict, SINK_TEMPFAIL);
    char err[256] = "";
    rc_ok(sink_engine_remove(e, "p", err, sizeof(err)), err);
    rc_turns(w, e, 10);
    cr_assert_eq(e->nold_b, 1, "the expired ctx's binding was freed under it");
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, rc_late, ctx), 0);
    pthread_join(t, NULL);
    cr_assert_eq(st_stat(&b->stats->late), 1);
    rc_turns(w, e, 3);
    cr_assert_eq(e->nold_b, 0);
    cr_assert_eq(atomic_load(&rc_live), 0);
    sink_call_destroy(c);
    sink_worker_destroy(w);
    sink_engine_destroy(e);
}

Test(reclaim, a_pending_dispatch_holds_its_chain_and_the_links_after)
{
    rc_setup();
    struct sink_engine *e = st_engine(
        "binding p { event = mail; sink = \"builtin:reclaim\"; priority = 10;"
        " properties { pending = true; } }\n"
        "binding q { event = mail; sink = \"builtin:reclaim\"; priority = 20;"
        " properties { tag = q; } }\n");
    struct sink_worker *w = sink_worker_create(e, NULL, 0);
    struct sink_call *c = sink_call_create(w);
    struct st_done done = {0};
    struct sink_result res;
    cr_assert_not(sink_dispatch(c, SINK_EV_MAIL, &rc_mail, NULL, NULL, st_done_fn, &done, &res));
    struct sink_ctx *ctx = rc_pop();
    cr_assert_not_null(ctx);
    char err[256] = "";
    rc_ok(sink_engine_remove(e, "q", err, sizeof(err)), err);
    rc_ok(sink_engine_setprop(e, "p", "tag", "p2", err, sizeof(err)), err); /* replaced */
    rc_turns(w, e, 10);
    cr_assert_eq(e->nold_b, 2, "q or the old p freed under a pending dispatch");
    cr_assert_eq(atomic_load(&rc_live), 3);
    sink_complete(ctx, SINK_CONTINUE);
    rc_turns(w, e, 1);
    cr_assert_eq(done.calls, 1);
    cr_assert_eq(done.res.verdict, SINK_CONTINUE);
    cr_assert_eq(atomic_load(&rc_q_runs), 1, "the dispatch did not go on to q");
    rc_turns(w, e, 3);
    cr_assert_eq(e->nold_b, 0);
    cr_assert_eq(e->nold_chain, 0);
    cr_assert_eq(atomic_load(&rc_live), 1); /* the new p */
    sink_call_destroy(c);
    sink_worker_destroy(w);
    sink_engine_destroy(e);
}

Test(reclaim, statistics_outlive_the_binding_that_owned_them)
{
    rc_setup();
    struct sink_engine *e = st_engine(
        "binding p { event = mail; sink = \"builtin:reclaim\"; properties { pending = true; } }\n");
    struct sink_worker *w = sink_worker_create(e, NULL, 0);
    struct sink_call *c = sink_call_create(w);
    struct st_done done = {0};
    struct sink_result res;
    cr_assert_not(sink_dispatch(c, SINK_EV_MAIL, &rc_mail, NULL, NULL, st_done_fn, &done, &res));
    struct sink_ctx *ctx = rc_pop();
    char err[256] = "";
    /* the old p lends its counters to the new one, which is then removed
     * and freed first: the old one, still pending, owns them from then */
    rc_ok(sink_engine_setprop(e, "p", "tag", "x", err, sizeof(err)), err);
    rc_ok(sink_engine_remove(e, "p", err, sizeof(err)), err);
    rc_turns(w, e, 5);
    cr_assert_eq(e->nold_b, 1);
    sink_complete(ctx, SINK_CONTINUE); /* counts into the shared statistics (ASan) */
    rc_turns(w, e, 4);
    cr_assert_eq(done.calls, 1);
    cr_assert_eq(e->nold_b, 0);
    sink_call_destroy(c);
    sink_worker_destroy(w);
    sink_engine_destroy(e);
}

Test(reclaim, a_metrics_reader_holds_the_binding_it_reads)
{
    rc_setup();
    struct sink_engine *e = st_engine("binding m { event = mail; sink = \"builtin:reclaim\"; }\n");
    struct sink_worker *w = sink_worker_create(e, NULL, 0);
    cr_assert_eq(sink_engine_binding_count(e), 1);
    struct sink_binding_stats bs;
    cr_assert(sink_engine_binding_stats(e, 0, &bs));
    char err[256] = "";
    rc_ok(sink_engine_remove(e, "m", err, sizeof(err)), err);
    rc_turns(w, e, 5);
    cr_assert_eq(e->nold_b, 1, "freed under the metrics reader");
    cr_assert_str_eq(bs.name, "m"); /* still the binding's (ASan) */
    sink_engine_binding_stats_release(&bs);
    rc_turns(w, e, 3);
    cr_assert_eq(e->nold_b, 0);
    cr_assert_eq(atomic_load(&rc_live), 0);
    sink_worker_destroy(w);
    sink_engine_destroy(e);
}

/* ---- 10,000 live changes ---- */

static long rc_rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RC_SANITIZED 1 /* freed memory is quarantined: RSS says nothing */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define RC_SANITIZED 1
#endif
#endif
#ifndef RC_SANITIZED
#define RC_SANITIZED 0
#endif

#define RC_BLOB 4000

/* Change i: disable, enable, or a new 4 KB property (a new instance). */
static void rc_change(struct sink_engine *e, unsigned i, char *blob)
{
    char err[256] = "";
    int rc;
    switch (i % 3) {
    case 0:
        rc = sink_engine_set_enabled(e, "t", false, err, sizeof(err));
        break;
    case 1:
        rc = sink_engine_set_enabled(e, "t", true, err, sizeof(err));
        break;
    default:
        blob[i % RC_BLOB] = (char)('a' + i % 26);
        rc = sink_engine_setprop(e, "t", "blob", blob, err, sizeof(err));
        break;
    }
    cr_assert_eq(rc, 0, "change %u: %s", i, err);
}

Test(reclaim, ten_thousand_live_changes_leave_rss_flat, .timeout = 120)
{
    rc_setup();
    struct sink_engine *e =
        st_engine("binding t { event = mail; sink = \"builtin:reclaim\"; }\n"
                  "binding u { event = mail; sink = \"builtin:reclaim\"; priority = 30000; }\n");
    struct sink_worker *w = sink_worker_create(e, NULL, 0);
    struct sink_call *c = sink_call_create(w);
    char *blob = malloc(RC_BLOB + 1);
    memset(blob, 'x', RC_BLOB);
    blob[RC_BLOB] = '\0';
    long before = 0;
    size_t most_b = 0, most_c = 0;
    for (unsigned i = 0; i < 11000; i++) {
        if (i == 1000) /* warmed up: the allocator has its arenas */
            before = rc_rss_kib();
        rc_change(e, i, blob);
        struct sink_result res;
        cr_assert(sink_dispatch(c, SINK_EV_MAIL, &rc_mail, NULL, NULL, NULL, NULL, &res));
        cr_assert_eq(res.verdict, SINK_CONTINUE);
        rc_turn(w);
        if (e->nold_b > most_b)
            most_b = e->nold_b;
        if (e->nold_chain > most_c)
            most_c = e->nold_chain;
    }
    rc_turns(w, e, 3);
    long after = rc_rss_kib();
    fprintf(stderr, "reclaim: 10000 changes: RSS %ld KiB -> %ld KiB (%+ld)%s\n", before, after,
            after - before, RC_SANITIZED ? " (sanitizer build: not checked)" : "");
    /* without reclamation: about 3,333 instances with 4 KB each and their
     * properties, over 25 MB */
    if (!RC_SANITIZED)
        cr_assert_lt(after - before, 2048, "RSS grew by %ld KiB", after - before);
    cr_assert_eq(e->nold_b, 0);
    cr_assert_eq(e->nold_chain, 0);
    cr_assert_eq(atomic_load(&rc_live), 2);
    /* each change frees what the one before the last retired */
    cr_assert(most_b <= 3, "retired bindings piled up: %zu", most_b);
    cr_assert(most_c <= 3, "retired chains piled up: %zu", most_c);
    free(blob);
    sink_call_destroy(c);
    sink_worker_destroy(w);
    sink_engine_destroy(e);
}

/* ---- threads: two workers dispatching, a completer, live changes ---- */

struct rc_worker {
    struct sched_pool *pool;
    struct sink_engine *e;
    unsigned index;
    _Atomic bool *stopping;
    _Atomic bool busy;
    _Atomic unsigned long dispatches;
    pthread_t t;
};

static void rc_worker_done(void *arg, const struct sink_result *res)
{
    struct rc_worker *rw = arg;
    (void)res;
    atomic_store(&rw->busy, false);
}

static void *rc_worker_run(void *arg)
{
    struct rc_worker *rw = arg;
    struct sched_worker *w = sched_pool_worker(rw->pool, rw->index);
    sched_worker_attach(w);
    struct sink_worker *sw = sink_worker_create(rw->e, rw->pool, rw->index);
    struct sink_call *c = sink_call_create(sw);
    uint64_t give_up = 0;
    for (;;) {
        bool stop = atomic_load(rw->stopping);
        if (stop && give_up == 0)
            give_up = sink_now_ms() + 10000;
        if (!atomic_load(&rw->busy)) {
            if (stop)
                break;
            struct sink_result res;
            atomic_store(&rw->busy, true);
            if (sink_dispatch(c, SINK_EV_MAIL, &rc_mail, NULL, NULL, rc_worker_done, rw, &res))
                atomic_store(&rw->busy, false);
            atomic_fetch_add(&rw->dispatches, 1);
        }
        unsigned ran = sched_worker_run_budget(w, 16);
        sink_worker_expire(sw, sink_now_ms()); /* the turn */
        if (give_up != 0 && sink_now_ms() > give_up)
            break; /* the call is abandoned below; the test sees it */
        if (ran == 0)
            usleep(100);
    }
    sink_call_destroy(c);
    sink_worker_destroy(sw);
    sched_worker_detach(w);
    return NULL;
}

static _Atomic bool rc_completer_stop;

static void *rc_completer(void *arg)
{
    (void)arg;
    while (!atomic_load(&rc_completer_stop)) {
        struct sink_ctx *ctx = rc_pop();
        if (ctx != NULL)
            sink_complete(ctx, SINK_CONTINUE);
        else
            usleep(100);
    }
    return NULL;
}

static size_t rc_retired(struct sink_engine *e)
{
    pthread_mutex_lock(&e->mu);
    size_t n = e->nold_b + e->nold_chain;
    pthread_mutex_unlock(&e->mu);
    return n;
}

Test(reclaim, live_changes_under_two_dispatching_workers, .timeout = 120)
{
    rc_setup();
    struct sink_engine *e = st_engine(
        "binding s { event = mail; sink = \"builtin:reclaim\"; priority = 10; }\n"
        "binding p { event = mail; sink = \"builtin:reclaim\"; priority = 20; deadline = \"20s\";"
        " properties { pending = true; } }\n"
        "binding o { event = mail; sink = \"builtin:reclaim\"; priority = 30; offload = true; }\n"
        "binding q { event = mail; sink = \"builtin:reclaim\"; priority = 40; }\n");
    struct sched_pool *pool = sched_pool_create(2, NULL);
    cr_assert_not_null(pool);
    _Atomic bool stopping = false;
    atomic_store(&rc_completer_stop, false);
    struct rc_worker rw[2];
    for (unsigned i = 0; i < 2; i++) {
        memset(&rw[i], 0, sizeof(rw[i]));
        rw[i].pool = pool;
        rw[i].e = e;
        rw[i].index = i;
        rw[i].stopping = &stopping;
        cr_assert_eq(pthread_create(&rw[i].t, NULL, rc_worker_run, &rw[i]), 0);
    }
    pthread_t comp;
    cr_assert_eq(pthread_create(&comp, NULL, rc_completer, NULL), 0);
    size_t most = 0;
    uint64_t until = sink_now_ms() + 60000;
    unsigned i;
    for (i = 0; i < 2000 && sink_now_ms() < until; i++) {
        char err[256] = "", v[32];
        snprintf(v, sizeof(v), "v%u", i);
        int rc = 0;
        switch (i % 6) {
        case 0:
            rc = sink_engine_setprop(e, "s", "tag", v, err, sizeof(err));
            break;
        case 1:
            rc = sink_engine_set_enabled(e, "p", false, err, sizeof(err));
            break;
        case 2:
            rc = sink_engine_set_enabled(e, "p", true, err, sizeof(err));
            break;
        case 3:
            rc = sink_engine_setprop(e, "o", "blob", v, err, sizeof(err));
            break;
        case 4:
            rc = sink_engine_remove(e, "q", err, sizeof(err));
            break;
        default:
            rc = sink_engine_add(e,
                                 "binding q { event = mail; sink = \"builtin:reclaim\";"
                                 " priority = 40; properties { tag = q; } }",
                                 err, sizeof(err));
            break;
        }
        cr_assert_eq(rc, 0, "change %u: %s", i, err);
        size_t n = rc_retired(e);
        if (n > most)
            most = n;
        usleep(200);
    }
    cr_assert_eq(i, 2000, "only %u changes in a minute", i);
    /* the workers' own turns free what the changes retired */
    until = sink_now_ms() + 20000;
    while (rc_retired(e) > 0 && sink_now_ms() < until)
        usleep(1000);
    size_t left = rc_retired(e);
    atomic_store(&stopping, true);
    for (unsigned k = 0; k < 2; k++)
        pthread_join(rw[k].t, NULL);
    atomic_store(&rc_completer_stop, true);
    pthread_join(comp, NULL);
    struct sink_ctx *ctx;
    while ((ctx = rc_pop()) != NULL) /* calls abandoned by a worker that gave up */
        sink_complete(ctx, SINK_CONTINUE);
    fprintf(stderr, "reclaim: 2000 changes under %lu + %lu dispatches: at most %zu retired, %zu left\n",
            atomic_load(&rw[0].dispatches), atomic_load(&rw[1].dispatches), most, left);
    cr_assert_eq(left, 0, "the running workers did not reclaim: %zu retired left", left);
    cr_assert_gt(atomic_load(&rw[0].dispatches) + atomic_load(&rw[1].dispatches), 100);
    sink_reclaim(e);
    cr_assert_eq(rc_retired(e), 0);
    cr_assert_eq(atomic_load(&rc_live), 4);
    sink_engine_destroy(e);
    sched_pool_destroy(pool);
}
