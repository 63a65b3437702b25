/*
 * NAME
 *	test_offload - `offload = true`: the handler as a stealable task on
 *	another worker, with its own copy of the event (run under TSan too)
 */
#include "tests/sinks/sink_test.h"

#include <unistd.h>

static _Atomic int off_ran;           /* handlers finished */
static _Atomic pthread_t off_thread;  /* where the last one ran */
static _Atomic int off_sleep_ms;      /* how long a handler dawdles first */
static char off_subject[64];
static char off_sender[128];

static enum sink_verdict off_handle(void *inst, struct sink_ctx *ctx)
{
    (void)inst;
    int ms = atomic_load(&off_sleep_ms);
    if (ms > 0)
        usleep((useconds_t)ms * 1000);
    atomic_store(&off_thread, pthread_self());
    /* all of this reads the ctx's own copy, never the session */
    snprintf(off_sender, sizeof(off_sender), "%s|%zu|%s", sink_sender(ctx), sink_rcpt_count(ctx),
             sink_rcpt(ctx, 1));
    char buf[64];
    if (sink_header_get(ctx, "Subject", 0, buf, sizeof(buf)) >= 0)
        snprintf(off_subject, sizeof(off_subject), "%s", buf);
    sink_header_add(ctx, "X-Offloaded", "yes");
    sink_set_reply(ctx, 554, "5.7.1", "offloaded says no");
    atomic_fetch_add(&off_ran, 1);
    return SINK_REJECT;
}

static const struct sink_module off_module = {
    SINK_MODULE_HEAD,
    .name = "offl",
    .events = SINK_EVMASK(SINK_EV_EOD),
    .handle = off_handle,
};

/* Worker 1 of the pool, run by a thread of its own: a thief. */
struct thief {
    struct sched_pool *pool;
    _Atomic bool stop;
    pthread_t t;
};

static void *thief_run(void *arg)
{
    struct thief *th = arg;
    struct sched_worker *w = sched_pool_worker(th->pool, 1);
    sched_worker_attach(w);
    while (!atomic_load(&th->stop)) {
        if (sched_worker_run_budget(w, 16) == 0)
            usleep(100);
    }
    sched_worker_detach(w);
    return NULL;
}

struct rig2 {
    struct sched_pool *pool;
    struct sched_worker *w0;
    struct sink_worker *sw;
    struct sink_call *call;
    struct thief th;
    struct sink_engine *e;
};

static void rig2_init(struct rig2 *r, const char *binding_extra)
{
    st_setup();
    int rc = sink_builtin_register(&off_module);
    cr_assert(rc == 0 || rc == -EEXIST);
    atomic_store(&off_ran, 0);
    atomic_store(&off_sleep_ms, 0);
    off_subject[0] = off_sender[0] = '\0';
    char conf[512];
    snprintf(conf, sizeof(conf),
             "binding o { event = eod; sink = \"builtin:offl\"; offload = true; %s }\n",
             binding_extra);
    r->e = st_engine(conf);
    r->pool = sched_pool_create(2, NULL);
    cr_assert_not_null(r->pool);
    r->w0 = sched_pool_worker(r->pool, 0);
    sched_worker_attach(r->w0);
    r->sw = sink_worker_create(r->e, r->pool, 0);
    r->call = sink_call_create(r->sw);
    r->th.pool = r->pool;
    atomic_store(&r->th.stop, false);
    cr_assert_eq(pthread_create(&r->th.t, NULL, thief_run, &r->th), 0);
}

static void rig2_fini(struct rig2 *r)
{
    if (r->call)
        sink_call_destroy(r->call);
    atomic_store(&r->th.stop, true);
    pthread_join(r->th.t, NULL);
    /* completions that arrived after the test stopped looking */
    sched_worker_run_budget(r->w0, 64);
    sink_worker_destroy(r->sw);
    sink_engine_destroy(r->e);
    sched_worker_detach(r->w0);
    sched_pool_destroy(r->pool);
}

/* Owner-side loop, without touching the deque until the thief has run
 * the handler (so that the test proves it was stolen). */
static bool owner_wait(struct rig2 *r, bool (*cond)(void *), void *arg, int timeout_ms)
{
    uint64_t until = sink_now_ms() + (uint64_t)timeout_ms;
    while (!cond(arg) && sink_now_ms() < until) {
        if (atomic_load(&off_ran) > 0)
            sched_worker_run_budget(r->w0, 64);
        sink_worker_expire(r->sw, sink_now_ms());
        usleep(200);
    }
    return cond(arg);
}

static bool done_called(void *arg) { return ((struct st_done *)arg)->calls > 0; }

Test(offload, stolen_by_another_worker_with_its_own_copy, .timeout = 20)
{
    struct rig2 r;
    rig2_init(&r, "");
    struct st_session s = {.body = "Subject: hello there\r\nFrom: a@b\r\n\r\nbody\r\n",
                           .piece = 7};
    struct sink_event_data d = st_data(&s);
    struct st_done done = {0};
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, st_done_fn, &done, &res));
    cr_assert(owner_wait(&r, done_called, &done, 5000));
    cr_assert_neq(atomic_load(&off_thread), pthread_self(), "the handler ran on the owner");
    cr_assert_eq(done.res.verdict, SINK_REJECT);
    cr_assert_eq(done.res.code, 554);
    cr_assert_str_eq(done.res.text, "offloaded says no");
    cr_assert_str_eq(off_subject, "hello there");
    cr_assert_str_eq(off_sender, "sender@example.org|2|bob@b.example");
    /* the edit was recorded on the thief and replayed on the owner */
    cr_assert_eq(s.nedit, 1);
    cr_assert_str_eq(s.edit[0].name, "X-Offloaded");
    cr_assert_eq(atomic_load(&s.released), 1); /* the held body went back */
    rig2_fini(&r);
}

Test(offload, deadline_wins_and_the_session_can_go, .timeout = 20)
{
    struct rig2 r;
    rig2_init(&r, "deadline = \"50ms\";");
    atomic_store(&off_sleep_ms, 300);
    /* the session's strings on the heap, freed as soon as the chain is
     * settled: the handler still running must not read them (ASan) */
    char *sender = strdup("late@example.org");
    struct st_session s = {.body = "Subject: x\r\n\r\n", .piece = 64};
    struct sink_event_data d = st_data(&s);
    d.sender = sender;
    struct st_done done = {0};
    struct sink_result res;
    uint64_t t0 = sink_now_ms();
    cr_assert_not(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, st_done_fn, &done, &res));
    while (!done_called(&done) && sink_now_ms() < t0 + 5000) {
        sink_worker_expire(r.sw, sink_now_ms());
        usleep(200);
    }
    cr_assert(done_called(&done));
    cr_assert_lt(sink_now_ms() - t0, 250, "the deadline waited for the handler");
    cr_assert_eq(done.res.verdict, SINK_TEMPFAIL);
    cr_assert_eq(done.res.code, 451);
    free(sender);
    memset(&d, 0, sizeof(d));
    /* the handler finishes later: a late answer, its edits dropped */
    uint64_t until = sink_now_ms() + 5000;
    while (atomic_load(&off_ran) == 0 && sink_now_ms() < until)
        usleep(1000);
    cr_assert_eq(atomic_load(&off_ran), 1);
    cr_assert_str_eq(off_sender, "late@example.org|2|bob@b.example");
    struct sink_binding *b = st_binding(r.e, "o");
    until = sink_now_ms() + 2000;
    while (st_stat(&b->stats->late) == 0 && sink_now_ms() < until)
        usleep(1000);
    cr_assert_eq(st_stat(&b->stats->late), 1);
    cr_assert_eq(st_stat(&b->stats->deadline_misses), 1);
    cr_assert_eq(s.nedit, 0);
    rig2_fini(&r);
}

Test(offload, call_destroyed_while_the_handler_runs, .timeout = 20)
{
    struct rig2 r;
    rig2_init(&r, "");
    atomic_store(&off_sleep_ms, 100);
    struct st_session s = {.body = "Subject: y\r\n\r\n", .piece = 64};
    struct sink_event_data d = st_data(&s);
    struct st_done done = {0};
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, st_done_fn, &done, &res));
    usleep(20 * 1000); /* the thief has it by now, and is sleeping in it */
    sink_call_destroy(r.call);
    r.call = NULL;
    uint64_t until = sink_now_ms() + 5000;
    while (atomic_load(&off_ran) == 0 && sink_now_ms() < until)
        usleep(1000);
    cr_assert_eq(atomic_load(&off_ran), 1);
    cr_assert_eq(done.calls, 0);
    rig2_fini(&r);
}

Test(offload, listed_by_bindings_and_checked)
{
    st_setup();
    int rc = sink_builtin_register(&off_module);
    cr_assert(rc == 0 || rc == -EEXIST);
    char err[256];
    struct sink_engine *e =
        st_engine_err("binding o { event = eod; sink = \"builtin:offl\"; offload = maybe; }\n",
                      err, sizeof(err));
    cr_assert_null(e);
    cr_assert(strstr(err, "offload must be true or false") != NULL, "%s", err);
    e = st_engine("binding o { event = eod; sink = \"builtin:offl\"; offload = true; }\n");
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    sink_engine_print_bindings(e, f);
    fclose(f);
    cr_assert(strstr(out, "offload") != NULL, "%s", out);
    free(out);
    sink_engine_destroy(e);
}

/*
 * The race of issue 10: an offloaded handler that returns PENDING while its
 * completion has already arrived.  The handler takes a server-bag value
 * (which puts a copy on ctx->copies), answers with sink_complete() as a
 * sink's own thread may do before handle() returns, and then stays in
 * handle() until the owner has run the completion and the session's done
 * has destroyed the call, freeing the ctx.  After handle() returns
 * PENDING, the thief must not touch the ctx any more: reading
 * ctx->copies there is a heap-use-after-free (ASan) or a race with the
 * free (TSan).
 */
static _Atomic int race_started;  /* the handler is running (on the thief) */
static _Atomic int race_gone;     /* done ran and destroyed the call */
static _Atomic int race_returned; /* the handler is about to return PENDING */
static _Atomic int race_value_ok; /* the server-bag copy read right */

static enum sink_verdict race_handle(void *inst, struct sink_ctx *ctx)
{
    (void)inst;
    atomic_store(&race_started, 1);
    const char *v = sink_prop_get(ctx, SINK_SCOPE_SERVER, "shared");
    atomic_store(&race_value_ok, v != NULL && strcmp(v, "a server value") == 0);
    sink_complete(ctx, SINK_CONTINUE); /* ctx is the owner's now */
    uint64_t until = sink_now_ms() + 3000;
    while (atomic_load(&race_gone) == 0 && sink_now_ms() < until)
        usleep(200);
    atomic_store(&race_returned, 1);
    return SINK_PENDING;
}

static const struct sink_module race_module = {
    SINK_MODULE_HEAD,
    .name = "offrace",
    .events = SINK_EVMASK(SINK_EV_EOD),
    .handle = race_handle,
};

static void race_done(void *arg, const struct sink_result *res)
{
    struct rig2 *r = arg;
    cr_assert_eq(res->verdict, SINK_CONTINUE);
    sink_call_destroy(r->call); /* frees the ctx the handler still "has" */
    r->call = NULL;
    atomic_store(&race_gone, 1);
}

Test(offload, pending_answer_completed_before_handle_returns, .timeout = 30)
{
    int rc = sink_builtin_register(&race_module);
    cr_assert(rc == 0 || rc == -EEXIST);
    atomic_store(&race_started, 0);
    atomic_store(&race_gone, 0);
    atomic_store(&race_returned, 0);
    atomic_store(&race_value_ok, 0);
    struct rig2 r;
    rig2_init(&r, "");
    /* the same rig, bound to the racing sink instead */
    sink_call_destroy(r.call);
    sink_worker_destroy(r.sw);
    sink_engine_destroy(r.e);
    r.e = st_engine("binding o { event = eod; sink = \"builtin:offrace\"; offload = true; }\n");
    cr_assert_eq(sink_bag_set(&r.e->server_bag, "shared", "a server value"), 0);
    r.sw = sink_worker_create(r.e, r.pool, 0);
    r.call = sink_call_create(r.sw);
    struct st_session s = {.body = "Subject: z\r\n\r\n", .piece = 64};
    struct sink_event_data d = st_data(&s);
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, race_done, &r, &res));
    /* the owner leaves its deque alone until the thief has the handler */
    uint64_t until = sink_now_ms() + 5000;
    while (atomic_load(&race_started) == 0 && sink_now_ms() < until)
        usleep(200);
    cr_assert_eq(atomic_load(&race_started), 1, "the thief never ran the handler");
    while (atomic_load(&race_gone) == 0 && sink_now_ms() < until) {
        sched_worker_run_budget(r.w0, 64);
        sink_worker_expire(r.sw, sink_now_ms());
        usleep(200);
    }
    cr_assert_eq(atomic_load(&race_gone), 1, "the completion never ran on the owner");
    cr_assert_eq(atomic_load(&race_value_ok), 1);
    while (atomic_load(&race_returned) == 0 && sink_now_ms() < until)
        usleep(200);
    cr_assert_eq(atomic_load(&race_returned), 1);
    /* the thief finishes the task (and its use of the ctx) before it stops */
    rig2_fini(&r);
}
