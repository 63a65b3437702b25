/*
 * NAME
 *	test_async - pending calls: completion from other threads, deadlines,
 *	abandoned calls, the delay sink (run under ThreadSanitizer too)
 */
#include "tests/sinks/sink_test.h"

struct completer {
    struct sink_ctx *ctx;
    enum sink_verdict v;
    int code;
    const char *enhanced, *text;
    pthread_t t;
};

static void *completer_run(void *arg)
{
    struct completer *c = arg;
    if (c->code != 0)
        sink_set_reply(c->ctx, c->code, c->enhanced, c->text);
    sink_complete(c->ctx, c->v);
    return NULL;
}

static void complete_on_thread(struct completer *c)
{
    cr_assert_eq(pthread_create(&c->t, NULL, completer_run, c), 0);
}

static struct sink_engine *async_engine(const char *pending_props)
{
    char conf[1024];
    st_setup();
    snprintf(conf, sizeof(conf),
             "binding first { event = eod; sink = \"builtin:script\"; priority = 10;"
             " properties { tag = first; } }\n"
             "binding p { event = eod; sink = \"builtin:script\"; priority = 20; %s"
             " properties { tag = p; pending = true; } }\n"
             "binding after { event = eod; sink = \"builtin:script\"; priority = 30000;"
             " properties { tag = after; } }\n",
             pending_props);
    return st_engine(conf);
}

Test(async, completed_from_another_thread, .timeout = 20)
{
    struct sink_engine *e = async_engine("");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_server srv = {0};
    struct st_done done = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;

    cr_assert_not(
        sink_dispatch(r.call, SINK_EV_EOD, &d, st_server_fn, &srv, st_done_fn, &done, &res));
    cr_assert_str_eq(st_log, "first,p");
    cr_assert_eq(atomic_load(&st_npend), 1);
    cr_assert(sink_worker_next_deadline(r.sw, sink_now_ms()) <= 5000);

    struct completer c = {.ctx = st_pend[0], .v = SINK_CONTINUE};
    complete_on_thread(&c);
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 5000));
    pthread_join(c.t, NULL);
    cr_assert(pthread_equal(done.thread, pthread_self()), "done runs on the worker");
    cr_assert_str_eq(st_log, "first,p,server,after", "the chain resumed after p");
    cr_assert_eq(done.res.verdict, SINK_CONTINUE);
    cr_assert_eq(sink_worker_next_deadline(r.sw, sink_now_ms()), UINT64_MAX);

    /* the call is free again: a second dispatch, completed with REJECT */
    st_log[0] = '\0';
    cr_assert_not(
        sink_dispatch(r.call, SINK_EV_EOD, &d, st_server_fn, &srv, st_done_fn, &done, &res));
    struct completer c2 = {.ctx = st_pend[1],
                           .v = SINK_REJECT,
                           .code = 554,
                           .enhanced = "5.7.1",
                           .text = "scored as spam"};
    complete_on_thread(&c2);
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 2, 5000));
    pthread_join(c2.t, NULL);
    cr_assert_str_eq(st_log, "first,p");
    cr_assert_eq(done.res.verdict, SINK_REJECT);
    cr_assert_eq(done.res.code, 554);
    cr_assert_str_eq(done.res.enhanced, "5.7.1");
    cr_assert_str_eq(done.res.text, "scored as spam");
    cr_assert_str_eq(done.res.binding, "p");

    sched_worker_run_budget(r.w, 64);
    cr_assert_eq(atomic_load(&done.calls), 2, "done once per dispatch");
    struct sink_stats *st = st_binding(e, "p")->stats;
    cr_assert_eq(st_stat(&st->calls), 2);
    cr_assert_eq(st_stat(&st->verdicts[SINK_PENDING]), 2);
    cr_assert_eq(st_stat(&st->verdicts[SINK_CONTINUE]), 1);
    cr_assert_eq(st_stat(&st->verdicts[SINK_REJECT]), 1);
    st_rig_fini(&r, e);
}

/* A sink that is answered before its handler even returns. */
static enum sink_verdict early_handle(void *inst, struct sink_ctx *ctx)
{
    struct completer c = {.ctx = ctx, .v = SINK_CONSUMED, .code = 250, .text = "early"};
    complete_on_thread(&c);
    pthread_join(c.t, NULL);
    return SINK_PENDING;
}

static const struct sink_module early_module = {
    SINK_MODULE_HEAD,
    .name = "early",
    .events = SINK_EVMASK(SINK_EV_EOD),
    .handle = early_handle,
};

Test(async, completed_before_handle_returns, .timeout = 20)
{
    st_setup();
    int rc = sink_builtin_register(&early_module);
    cr_assert(rc == 0 || rc == -EEXIST);
    struct sink_engine *e = st_engine("binding x { event = eod; sink = \"builtin:early\"; }");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_done done = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, st_done_fn, &done, &res));
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 5000));
    cr_assert_eq(done.res.verdict, SINK_CONSUMED);
    cr_assert_eq(done.res.code, 250);
    cr_assert_str_eq(done.res.text, "early");
    st_rig_fini(&r, e);
}

static void deadline_case(const char *on_deadline, enum sink_verdict want, int code,
                          const char *enhanced, const char *log)
{
    char props[128];
    snprintf(props, sizeof(props), "deadline = 50ms; on_deadline = %s;", on_deadline);
    struct sink_engine *e = async_engine(props);
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_done done = {0};
    struct st_server srv = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    uint64_t t0 = sink_now_ms();
    cr_assert_not(
        sink_dispatch(r.call, SINK_EV_EOD, &d, st_server_fn, &srv, st_done_fn, &done, &res));
    uint64_t left = sink_worker_next_deadline(r.sw, sink_now_ms());
    cr_assert(left > 0 && left <= 50, "next deadline in %llu ms", (unsigned long long)left);
    sink_worker_expire(r.sw, t0 + 10); /* not yet */
    cr_assert_eq(atomic_load(&done.calls), 0);
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 5000));
    cr_assert_geq(sink_now_ms() - t0, 50);
    cr_assert_eq(done.res.verdict, want);
    cr_assert_eq(done.res.code, code);
    cr_assert_str_eq(done.res.enhanced, enhanced);
    cr_assert_str_eq(st_log, log);
    struct sink_stats *st = st_binding(e, "p")->stats;
    cr_assert_eq(st_stat(&st->deadline_misses), 1);

    /* the late answer is ignored, and frees the ctx (ASan: no leak) */
    struct completer c = {.ctx = st_pend[0], .v = SINK_REJECT, .code = 550, .text = "late"};
    complete_on_thread(&c);
    pthread_join(c.t, NULL);
    for (int i = 0; i < 10; i++)
        sched_worker_run_budget(r.w, 64);
    cr_assert_eq(atomic_load(&done.calls), 1);
    cr_assert_eq(st_stat(&st->late), 1);
    cr_assert_eq(st_stat(&st->verdicts[SINK_REJECT]), 0, "a late verdict does not count");
    st_rig_fini(&r, e);
}

Test(async, deadline_tempfail, .timeout = 20)
{
    deadline_case("tempfail", SINK_TEMPFAIL, 451, "4.7.1", "first,p");
}

Test(async, deadline_reject, .timeout = 20)
{
    deadline_case("reject", SINK_REJECT, 554, "5.7.1", "first,p");
}

Test(async, deadline_continue, .timeout = 20)
{
    deadline_case("continue", SINK_CONTINUE, 0, "", "first,p,server,after");
}

Test(async, call_destroyed_while_pending, .timeout = 20)
{
    struct sink_engine *e = async_engine("");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_done done = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, st_done_fn, &done, &res));
    sink_call_destroy(r.call); /* the session goes away */
    r.call = sink_call_create(r.sw);
    cr_assert_eq(sink_worker_next_deadline(r.sw, sink_now_ms()), UINT64_MAX, "not pending now");
    struct completer c = {.ctx = st_pend[0], .v = SINK_CONTINUE};
    complete_on_thread(&c);
    pthread_join(c.t, NULL);
    for (int i = 0; i < 10; i++)
        sched_worker_run_budget(r.w, 64);
    cr_assert_eq(atomic_load(&done.calls), 0, "done never runs for an abandoned call");
    cr_assert_eq(st_stat(&st_binding(e, "p")->stats->late), 1);
    st_rig_fini(&r, e);
}

Test(async, call_destroyed_with_completion_queued, .timeout = 20)
{
    struct sink_engine *e = async_engine("");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_done done = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, st_done_fn, &done, &res));
    struct completer c = {.ctx = st_pend[0], .v = SINK_CONTINUE};
    complete_on_thread(&c);
    pthread_join(c.t, NULL); /* completed; its task waits in the inbox */
    sink_call_destroy(r.call);
    r.call = NULL;
    /* the worker's destroy runs the queued task, which frees the ctx */
    sink_worker_destroy(r.sw);
    cr_assert_eq(atomic_load(&done.calls), 0);
    sched_worker_detach(r.w);
    sched_pool_destroy(r.pool);
    sink_engine_destroy(e);
}

#define NCALLS 64
#define NTHREADS 4

struct many {
    struct sink_ctx *ctx[NCALLS];
    int from, step;
    pthread_t t;
};

static void *many_run(void *arg)
{
    struct many *m = arg;
    for (int i = m->from; i < NCALLS; i += m->step) {
        if (i % 3 == 0)
            sink_set_reply(m->ctx[i], 550, NULL, "three");
        sink_complete(m->ctx[i], i % 3 == 0 ? SINK_REJECT : SINK_CONTINUE);
    }
    return NULL;
}

Test(async, many_calls_many_threads, .timeout = 30)
{
    struct sink_engine *e = async_engine("");
    struct st_rig r;
    st_rig_init(&r, e);
    static struct sink_call *calls[NCALLS];
    static struct st_done done[NCALLS];
    static struct sink_result res[NCALLS];
    struct sink_event_data d = st_data(NULL);
    for (int i = 0; i < NCALLS; i++) {
        calls[i] = sink_call_create(r.sw);
        cr_assert_not(
            sink_dispatch(calls[i], SINK_EV_EOD, &d, NULL, NULL, st_done_fn, &done[i], &res[i]));
    }
    cr_assert_eq(atomic_load(&st_npend), NCALLS);
    struct many m[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        m[t].from = t;
        m[t].step = NTHREADS;
        for (int i = 0; i < NCALLS; i++)
            m[t].ctx[i] = st_pend[i];
        cr_assert_eq(pthread_create(&m[t].t, NULL, many_run, &m[t]), 0);
    }
    int finished = 0;
    uint64_t until = sink_now_ms() + 10000;
    while (finished < NCALLS && sink_now_ms() < until) {
        sched_worker_run_budget(r.w, 64);
        finished = 0;
        for (int i = 0; i < NCALLS; i++)
            finished += atomic_load(&done[i].calls);
    }
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(m[t].t, NULL);
    sched_worker_run_budget(r.w, 64);
    for (int i = 0; i < NCALLS; i++) {
        cr_assert_eq(atomic_load(&done[i].calls), 1, "call %d", i);
        cr_assert_eq(done[i].res.verdict, i % 3 == 0 ? SINK_REJECT : SINK_CONTINUE);
        sink_call_destroy(calls[i]);
    }
    st_rig_fini(&r, e);
}

Test(async, no_pool_completions_polled, .timeout = 20)
{
    struct sink_engine *e = async_engine("");
    struct sink_worker *sw = sink_worker_create(e, NULL, 0);
    struct sink_call *call = sink_call_create(sw);
    struct st_done done = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    cr_assert_not(sink_dispatch(call, SINK_EV_EOD, &d, NULL, NULL, st_done_fn, &done, &res));
    struct completer c = {.ctx = st_pend[0], .v = SINK_DISCARD};
    complete_on_thread(&c);
    pthread_join(c.t, NULL);
    cr_assert_eq(sink_worker_next_deadline(sw, sink_now_ms()), 0, "a completion waits");
    sink_worker_expire(sw, sink_now_ms());
    cr_assert_eq(atomic_load(&done.calls), 1);
    cr_assert_eq(done.res.verdict, SINK_DISCARD);
    sink_call_destroy(call);
    sink_worker_destroy(sw);
    sink_engine_destroy(e);
}

Test(async, delay_sink, .timeout = 20)
{
    st_setup();
    struct sink_engine *e = st_engine(
        "binding slow { event = eod; sink = \"builtin:delay\"; properties { ms = 30; } }\n"
        "binding no { event = rcpt; sink = \"builtin:delay\"; properties { verdict = reject; } "
        "}\n");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_done done = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    uint64_t t0 = clock_mono_ns();
    cr_assert_not(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, st_done_fn, &done, &res));
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 5000));
    cr_assert_geq(clock_mono_ns() - t0, 30000000u);
    cr_assert_eq(done.res.verdict, SINK_CONTINUE);
    cr_assert_not(sink_dispatch(r.call, SINK_EV_RCPT, &d, NULL, NULL, st_done_fn, &done, &res));
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 2, 5000));
    cr_assert_eq(done.res.verdict, SINK_REJECT);
    cr_assert_str_eq(done.res.binding, "no");
    st_rig_fini(&r, e);
    char err[256];
    cr_assert_null(st_engine_err("binding s { event = eod; sink = \"builtin:delay\";"
                                 " properties { ms = -1; } }",
                                 err, sizeof(err)));
    cr_assert_null(st_engine_err("binding s { event = eod; sink = \"builtin:delay\";"
                                 " properties { verdict = maybe; } }",
                                 err, sizeof(err)));
    cr_assert(strstr(err, "verdict \"maybe\"") != NULL, "%s", err);
}

Test(async, delay_never_meets_the_deadline, .timeout = 20)
{
    st_setup();
    struct sink_engine *e =
        st_engine("binding hang { event = eod; sink = \"builtin:delay\"; deadline = 40ms;"
                  " properties { never = true; } }\n");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_done done = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    for (int i = 0; i < 3; i++) {
        cr_assert_not(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, st_done_fn, &done, &res));
        cr_assert(st_run_until(&r, atomic_load(&done.calls) == i + 1, 5000));
        cr_assert_eq(done.res.verdict, SINK_TEMPFAIL);
        cr_assert_eq(done.res.code, 451);
        cr_assert_str_eq(done.res.binding, "hang");
    }
    cr_assert_eq(st_stat(&st_binding(e, "hang")->stats->deadline_misses), 3);
    st_rig_fini(&r, e); /* completes the three held calls: they are freed */
}
