/*
 * NAME
 *	test_ctx_transport - the queue manager's events: accessors at the
 *	right and wrong events, recipient and route edits (inside handle(),
 *	from a pending sink's thread, offloaded, after a deadline), dispatch
 *	without a server link, notifications, rules per recipient
 */
#include "tests/sinks/sink_test.h"

/* builtin:tx: runs tx_body(ctx) in handle(), answers tx_verdict. */
static void (*tx_body)(struct sink_ctx *ctx);
static enum sink_verdict tx_verdict;
static _Atomic(struct sink_ctx *) tx_ctx;

static enum sink_verdict tx_handle(void *inst, struct sink_ctx *ctx)
{
    (void)inst;
    atomic_store(&tx_ctx, ctx);
    if (tx_body != NULL)
        tx_body(ctx);
    return tx_verdict;
}

static const struct sink_module tx_module = {
    SINK_MODULE_HEAD,
    .name = "tx",
    .events = SINK_EVMASK(SINK_EV_COUNT) - 1,
    .handle = tx_handle,
};

static void tx_setup(void (*body)(struct sink_ctx *), enum sink_verdict v)
{
    st_setup();
    int rc = sink_builtin_register(&tx_module);
    cr_assert(rc == 0 || rc == -EEXIST);
    tx_body = body;
    tx_verdict = v;
    atomic_store(&tx_ctx, NULL);
}

static struct sink_engine *tx_engine(enum sink_event ev, const char *extra)
{
    char conf[512];
    snprintf(conf, sizeof(conf), "binding t { event = %s; sink = \"builtin:tx\"; %s }",
             sink_event_name(ev), extra ? extra : "");
    return st_engine(conf);
}

static const char *const three[] = {"a@one.example", "b@two.example", "c@three.example"};

static bool is_index_event(int ev)
{
    return ev == SINK_EV_ROUTE || ev == SINK_EV_OUT_RCPT || ev == SINK_EV_DELIVERED ||
           ev == SINK_EV_DEFERRED || ev == SINK_EV_BOUNCE;
}

static bool is_outcome(int ev)
{
    return ev == SINK_EV_DELIVERED || ev == SINK_EV_DEFERRED || ev == SINK_EV_BOUNCE;
}

static bool is_nexthop_event(int ev)
{
    return ev == SINK_EV_ROUTE || (ev >= SINK_EV_OUT_SESSION && ev <= SINK_EV_OUT_QUIT) ||
           is_outcome(ev);
}

/* ---- readers ---- */

Test(ctx_transport, readers_at_every_event)
{
    struct sink_binding b = {.name = "t"};
    struct st_qmgr q;
    st_qmgr_init(&q, three, 3);
    q.d.rcpt_index = 1;
    q.d.nexthop = "smtp:192.0.2.25:25";
    q.d.status = "4.4.1";
    q.d.reply_code = 451;
    q.d.reply_text = "4.4.1 try later";
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
        struct sink_ctx ctx = {.b = &b, .d = &q.d, .ev = ev};
        const char *name = sink_event_name(ev);
        if (is_index_event(ev)) {
            cr_assert_eq(sink_rcpt_index(&ctx), 1, "%s", name);
            cr_assert_str_eq(sink_rcpt(&ctx, sink_rcpt_index(&ctx)), "b@two.example");
        } else {
            cr_assert_eq(sink_rcpt_index(&ctx), SIZE_MAX, "%s: no recipient of its own", name);
            cr_assert_null(sink_rcpt(&ctx, sink_rcpt_index(&ctx)));
        }
        if (is_nexthop_event(ev))
            cr_assert_str_eq(sink_nexthop(&ctx), "smtp:192.0.2.25:25", "%s", name);
        else
            cr_assert_null(sink_nexthop(&ctx), "%s", name);
        if (is_outcome(ev))
            cr_assert_str_eq(sink_delivery_status(&ctx), "4.4.1", "%s", name);
        else
            cr_assert_null(sink_delivery_status(&ctx), "%s", name);
        if (ev >= SINK_EV_OUT_SESSION && ev <= SINK_EV_BOUNCE) {
            cr_assert_eq(sink_response_code(&ctx), 451, "%s: the next hop's reply", name);
            cr_assert_str_eq(sink_response_text(&ctx), "4.4.1 try later", "%s", name);
        }
        cr_assert_eq(sink_rcpt_count(&ctx), 3);
    }
    /* local delivery: no host answered */
    q.d.nexthop = NULL;
    struct sink_ctx ctx = {.b = &b, .d = &q.d, .ev = SINK_EV_DELIVERED};
    cr_assert_null(sink_nexthop(&ctx));
    st_qmgr_fini(&q);
}

/* ---- edits inside handle() ---- */

static int rc_set, rc_add, rc_remove, rc_route;

static void edit_all(struct sink_ctx *ctx)
{
    rc_set = sink_rcpt_set(ctx, 0, "x@new.example");
    rc_add = sink_rcpt_add(ctx, "y@new.example");
    rc_remove = sink_rcpt_remove(ctx, 0);
    rc_route = sink_route_set(ctx, "smtp:127.0.0.1:2526");
}

Test(ctx_transport, edits_refused_at_other_events)
{
    tx_setup(edit_all, SINK_CONTINUE);
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
        if (ev == SINK_EV_AUTH)
            continue;
        struct sink_engine *e = tx_engine(ev, NULL);
        struct st_rig r;
        st_rig_init(&r, e);
        struct st_qmgr q;
        st_qmgr_init(&q, three, 3);
        struct sink_result res;
        rc_set = rc_add = rc_remove = rc_route = 1;
        cr_assert(sink_dispatch(r.call, ev, &q.d, NULL, NULL, NULL, NULL, &res));
        const char *name = sink_event_name(ev);
        if (ev == SINK_EV_CATEGORIZE) {
            cr_assert_eq(rc_set, 0, "%s", name);
            cr_assert_eq(rc_add, 0);
            cr_assert_eq(rc_remove, 0);
            cr_assert_str_eq(st_qmgr_list(&q), "b@two.example,c@three.example,y@new.example");
        } else {
            cr_assert_eq(rc_set, -ENOTSUP, "%s", name);
            cr_assert_eq(rc_add, -ENOTSUP, "%s", name);
            cr_assert_eq(rc_remove, -ENOTSUP, "%s", name);
            cr_assert_eq(q.nedit, 0, "%s: nothing reached the queue manager", name);
        }
        if (ev == SINK_EV_ROUTE) {
            cr_assert_eq(rc_route, 0);
            cr_assert_str_eq(q.route, "smtp:127.0.0.1:2526");
        } else {
            cr_assert_eq(rc_route, -ENOTSUP, "%s", name);
            cr_assert_eq(q.nroute, 0);
        }
        st_qmgr_fini(&q);
        st_rig_fini(&r, e);
    }
}

static char seen[8][128];
static size_t seen_count[8];
static int rcs[16];

static void categorize_body(struct sink_ctx *ctx)
{
    int k = 0;
    seen_count[0] = sink_rcpt_count(ctx);
    rcs[k++] = sink_rcpt_add(ctx, "d@four.example");
    seen_count[1] = sink_rcpt_count(ctx);
    snprintf(seen[1], sizeof(seen[1]), "%s", sink_rcpt(ctx, 3));
    rcs[k++] = sink_rcpt_set(ctx, 1, "B@Two.Example");
    snprintf(seen[2], sizeof(seen[2]), "%s", sink_rcpt(ctx, 1));
    rcs[k++] = sink_rcpt_remove(ctx, 0);
    seen_count[3] = sink_rcpt_count(ctx);
    snprintf(seen[3], sizeof(seen[3]), "%s", sink_rcpt(ctx, 0));
    /* refused: malformed addresses, indices out of range */
    rcs[k++] = sink_rcpt_add(ctx, "no-domain");
    rcs[k++] = sink_rcpt_add(ctx, "a b@x.example");
    rcs[k++] = sink_rcpt_add(ctx, "<a@x.example>");
    rcs[k++] = sink_rcpt_add(ctx, "a@x.example\r\nRCPT TO:<evil@x.example>");
    rcs[k++] = sink_rcpt_add(ctx, NULL);
    rcs[k++] = sink_rcpt_set(ctx, 0, "");
    rcs[k++] = sink_rcpt_set(ctx, 3, "e@five.example");
    rcs[k++] = sink_rcpt_remove(ctx, 3);
    rcs[k++] = sink_route_set(ctx, "mx");
    seen_count[4] = sink_rcpt_count(ctx);
}

Test(ctx_transport, categorize_edits_show_at_once)
{
    tx_setup(categorize_body, SINK_CONTINUE);
    struct sink_engine *e = tx_engine(SINK_EV_CATEGORIZE, NULL);
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_qmgr q;
    st_qmgr_init(&q, three, 3);
    struct sink_result res;
    cr_assert(sink_dispatch(r.call, SINK_EV_CATEGORIZE, &q.d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_CONTINUE);
    cr_assert_eq(seen_count[0], 3);
    cr_assert_eq(seen_count[1], 4, "sink_rcpt_count follows the add");
    cr_assert_str_eq(seen[1], "d@four.example");
    cr_assert_str_eq(seen[2], "B@Two.Example");
    cr_assert_eq(seen_count[3], 3);
    cr_assert_str_eq(seen[3], "B@Two.Example", "index 0 after the removal");
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 0);
    cr_assert_eq(rcs[2], 0);
    for (int k = 3; k <= 8; k++)
        cr_assert_eq(rcs[k], -EINVAL, "check %d", k);
    cr_assert_eq(rcs[9], -ENOENT, "set past the end");
    cr_assert_eq(rcs[10], -ENOENT, "remove past the end");
    cr_assert_eq(rcs[11], -ENOTSUP, "no route at categorize");
    cr_assert_eq(seen_count[4], 3, "nothing refused changed the list");
    cr_assert_eq(q.nedit, 3, "refused edits never reach the queue manager");
    cr_assert_str_eq(st_qmgr_list(&q), "B@Two.Example,c@three.example,d@four.example");
    st_qmgr_fini(&q);

    /* the queue manager without callbacks, or failing */
    st_qmgr_init(&q, three, 3);
    q.d.rcpt_edit = NULL;
    cr_assert(sink_dispatch(r.call, SINK_EV_CATEGORIZE, &q.d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(rcs[0], -ENOTSUP);
    cr_assert_eq(rcs[2], -ENOTSUP);
    q.d.rcpt_edit = st_qmgr_edit;
    q.fail = -ENOMEM;
    cr_assert(sink_dispatch(r.call, SINK_EV_CATEGORIZE, &q.d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(rcs[0], -ENOMEM, "the queue manager's error comes back");
    cr_assert_str_eq(st_qmgr_list(&q), "a@one.example,b@two.example,c@three.example");
    st_qmgr_fini(&q);
    st_rig_fini(&r, e);
}

static const char *route_try;

static void route_body(struct sink_ctx *ctx)
{
    rcs[0] = sink_route_set(ctx, route_try);
}

Test(ctx_transport, route_set_checks_the_next_hop)
{
    static const struct {
        const char *hop;
        int rc;
    } t[] = {
        {"smtp:127.0.0.1:2526", 0},
        {"smtp:[2001:db8::1]:25 tls=verify", 0},
        {"smtp:relay.example", 0},
        {"mx", 0},
        {"mx:2525", 0},
        {"maildir", 0},
        {"discard", 0},
        {"error:5.1.2 no such domain", 0},
        {"error:4.4.1", 0},
        {"", -EINVAL},
        {"smtp:", -EINVAL},
        {"smtp:host:99999", -EINVAL},
        {"smtp:bad host", -EINVAL},
        {"ftp:example", -EINVAL},
        {"error:2.0.0 fine", -EINVAL},
        {"maildir tls=verify", -EINVAL},
        {"mx\r\nQUIT", -EINVAL},
        {NULL, -EINVAL},
    };
    tx_setup(route_body, SINK_CONTINUE);
    struct sink_engine *e = tx_engine(SINK_EV_ROUTE, NULL);
    struct st_rig r;
    st_rig_init(&r, e);
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct st_qmgr q;
        st_qmgr_init(&q, three, 3);
        q.d.rcpt_index = 2;
        q.d.nexthop = "mx";
        route_try = t[i].hop;
        struct sink_result res;
        cr_assert(sink_dispatch(r.call, SINK_EV_ROUTE, &q.d, NULL, NULL, NULL, NULL, &res));
        cr_assert_eq(rcs[0], t[i].rc, "%s: %d", t[i].hop ? t[i].hop : "NULL", rcs[0]);
        cr_assert_eq(q.nroute, t[i].rc == 0 ? 1 : 0);
        if (t[i].rc == 0)
            cr_assert_str_eq(q.route, t[i].hop);
        st_qmgr_fini(&q);
    }
    st_rig_fini(&r, e);
}

/* ---- edits after handle() returned: recorded, applied with the answer ---- */

struct late {
    struct sink_ctx *ctx;
    enum sink_event ev;
    int rc[4];
    int wait_ms; /* sleep before editing (a deadline may pass) */
};

static void *late_thread(void *arg)
{
    struct late *l = arg;
    if (l->wait_ms)
        usleep((useconds_t)l->wait_ms * 1000);
    if (l->ev == SINK_EV_CATEGORIZE) {
        l->rc[0] = sink_rcpt_add(l->ctx, "late@four.example");
        l->rc[1] = sink_rcpt_add(l->ctx, "not an address");
        l->rc[2] = sink_rcpt_remove(l->ctx, 0);
        l->rc[3] = sink_rcpt_set(l->ctx, 9, "x@nine.example"); /* checked when applied */
    } else {
        l->rc[0] = sink_route_set(l->ctx, "smtp:192.0.2.9:2525");
        l->rc[1] = sink_route_set(l->ctx, "smtp:");
        l->rc[2] = sink_rcpt_add(l->ctx, "x@y.example");
    }
    sink_complete(l->ctx, SINK_CONTINUE);
    return NULL;
}

static void pending_edits(enum sink_event ev)
{
    tx_setup(NULL, SINK_PENDING);
    struct sink_engine *e = tx_engine(ev, "deadline = 10s;");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_qmgr q;
    st_qmgr_init(&q, three, 3);
    q.d.rcpt_index = 0;
    struct st_done done = {0};
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, ev, &q.d, NULL, NULL, st_done_fn, &done, &res), "pending");
    struct late l = {.ctx = atomic_load(&tx_ctx), .ev = ev};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, late_thread, &l), 0);
    pthread_join(th, NULL);
    /* answered, not yet taken by the owner: nothing applied yet */
    cr_assert_eq(q.nedit + q.nroute, 0, "recorded, not applied from the sink's thread");
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 5000));
    cr_assert_eq(done.res.verdict, SINK_CONTINUE);
    if (ev == SINK_EV_CATEGORIZE) {
        cr_assert_eq(l.rc[0], 0);
        cr_assert_eq(l.rc[1], -EINVAL, "the address is still checked at once");
        cr_assert_eq(l.rc[2], 0);
        cr_assert_eq(l.rc[3], 0, "the index is checked when applied");
        cr_assert_str_eq(st_qmgr_list(&q), "b@two.example,c@three.example,late@four.example",
                         "applied in order on the owner");
    } else {
        cr_assert_eq(l.rc[0], 0);
        cr_assert_eq(l.rc[1], -EINVAL);
        cr_assert_eq(l.rc[2], -ENOTSUP);
        cr_assert_eq(q.nroute, 1);
        cr_assert_str_eq(q.route, "smtp:192.0.2.9:2525");
    }
    st_qmgr_fini(&q);
    st_rig_fini(&r, e);
}

Test(ctx_transport, pending_categorize_edits_from_another_thread)
{
    pending_edits(SINK_EV_CATEGORIZE);
}

Test(ctx_transport, pending_route_from_another_thread)
{
    pending_edits(SINK_EV_ROUTE);
}

Test(ctx_transport, edits_after_the_deadline_are_dropped)
{
    tx_setup(NULL, SINK_PENDING);
    struct sink_engine *e =
        tx_engine(SINK_EV_CATEGORIZE, "deadline = 20ms; on_deadline = continue;");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_qmgr q;
    st_qmgr_init(&q, three, 3);
    struct st_done done = {0};
    struct sink_result res;
    cr_assert_not(
        sink_dispatch(r.call, SINK_EV_CATEGORIZE, &q.d, NULL, NULL, st_done_fn, &done, &res));
    struct late l = {.ctx = atomic_load(&tx_ctx), .ev = SINK_EV_CATEGORIZE, .wait_ms = 0};
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 5000), "the deadline settles it");
    /* the queue manager moves on: its event data is gone */
    st_qmgr_fini(&q);
    memset(&q, 0xa5, sizeof(q));
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, late_thread, &l), 0);
    pthread_join(th, NULL);
    cr_assert_eq(l.rc[0], 0, "recorded into the ctx, never through the stale data");
    for (int i = 0; i < 20; i++) {
        sched_worker_run_budget(r.w, 64);
        usleep(500);
    }
    cr_assert_eq(atomic_load(&done.calls), 1);
    cr_assert_eq(st_stat(&st_binding(e, "t")->stats->late), 1);
    st_rig_fini(&r, e);
}

/* The owner itself, after dispatch returned (not inside handle()). */
Test(ctx_transport, edit_on_the_owner_after_handle_returned_is_recorded)
{
    tx_setup(NULL, SINK_PENDING);
    struct sink_engine *e = tx_engine(SINK_EV_CATEGORIZE, NULL);
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_qmgr q;
    st_qmgr_init(&q, three, 3);
    struct st_done done = {0};
    struct sink_result res;
    cr_assert_not(
        sink_dispatch(r.call, SINK_EV_CATEGORIZE, &q.d, NULL, NULL, st_done_fn, &done, &res));
    struct sink_ctx *ctx = atomic_load(&tx_ctx);
    cr_assert_eq(sink_rcpt_add(ctx, "z@z.example"), 0);
    cr_assert_eq(q.nedit, 0, "not applied outside handle()");
    cr_assert_eq(q.n, 3);
    sink_complete(ctx, SINK_CONTINUE);
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 5000));
    cr_assert_eq(q.nedit, 1);
    cr_assert_str_eq(st_qmgr_list(&q), "a@one.example,b@two.example,c@three.example,z@z.example");
    st_qmgr_fini(&q);
    st_rig_fini(&r, e);
}

static void offload_body(struct sink_ctx *ctx)
{
    rcs[0] = sink_rcpt_add(ctx, "off@load.example");
    rcs[1] = (int)sink_rcpt_count(ctx); /* the copy: the add is not in it */
    snprintf(seen[0], sizeof(seen[0]), "%s", sink_sender(ctx));
}

Test(ctx_transport, offloaded_categorize_edits_applied_on_the_owner)
{
    tx_setup(offload_body, SINK_CONTINUE);
    struct sink_engine *e = tx_engine(SINK_EV_CATEGORIZE, "offload = true;");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_qmgr q;
    st_qmgr_init(&q, three, 3);
    struct st_done done = {0};
    struct sink_result res;
    rcs[0] = rcs[1] = 99;
    if (sink_dispatch(r.call, SINK_EV_CATEGORIZE, &q.d, NULL, NULL, st_done_fn, &done, &res))
        done.res = res, atomic_store(&done.calls, 1);
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 5000));
    cr_assert_eq(done.res.verdict, SINK_CONTINUE);
    cr_assert_eq(rcs[0], 0);
    cr_assert_eq(rcs[1], 3);
    cr_assert_str_eq(seen[0], "sender@example.org");
    cr_assert_str_eq(st_qmgr_list(&q),
                     "a@one.example,b@two.example,c@three.example,off@load.example");
    st_qmgr_fini(&q);
    st_rig_fini(&r, e);
}

/* ---- dispatch without a server link ---- */

Test(ctx_transport, every_transport_event_dispatches_without_a_server)
{
    st_setup();
    for (int ev = SINK_EV_PRECATEGORIZE; ev <= SINK_EV_BOUNCE; ev++) {
        const char *name = sink_event_name(ev);
        char conf[1024];
        snprintf(conf, sizeof(conf),
                 "binding first { event = %s; sink = \"builtin:script\"; priority = 100;"
                 "  properties { tag = first; verdict = reject; code = 550; enhanced = \"5.7.1\";"
                 "  text = \"no\"; } }\n"
                 "binding second { event = %s; sink = \"builtin:script\";"
                 "  properties { tag = second; } }\n",
                 name, name);
        struct sink_engine *e = st_engine(conf);
        cr_assert(sink_engine_bound(e, ev), "%s", name);
        struct st_rig r;
        st_rig_init(&r, e);
        struct st_qmgr q;
        st_qmgr_init(&q, three, 3);
        struct sink_result res;
        st_log[0] = '\0';
        cr_assert(sink_dispatch(r.call, ev, &q.d, NULL, NULL, NULL, NULL, &res), "%s", name);
        bool notifies = ev == SINK_EV_OUT_QUIT || is_outcome(ev);
        if (notifies) {
            cr_assert_eq(res.verdict, SINK_CONTINUE, "%s: a notification", name);
            cr_assert_str_eq(st_log, "first,second", "%s: every binding runs", name);
            cr_assert_null(res.binding);
        } else {
            cr_assert_eq(res.verdict, SINK_REJECT, "%s", name);
            cr_assert_str_eq(res.binding, "first");
            cr_assert_eq(res.code, 550);
            cr_assert_str_eq(res.text, "no");
            cr_assert_str_eq(st_log, "first", "%s: the chain ends", name);
        }
        cr_assert_eq(st_stat(&st_binding(e, "first")->stats->verdicts[SINK_REJECT]), 1, "%s", name);
        st_qmgr_fini(&q);
        st_rig_fini(&r, e);
    }
}

/* A pending link at a transport event completes on the worker, as at
 * the SMTP events, with server == NULL. */
Test(ctx_transport, pending_without_a_server)
{
    st_setup();
    struct sink_engine *e =
        st_engine("binding p { event = out_rcpt; sink = \"builtin:script\";"
                  "  properties { tag = p; pending = true; } }\n"
                  "binding q { event = out_rcpt; sink = \"builtin:script\"; priority = 30000;"
                  "  properties { tag = q; verdict = tempfail; } }\n");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_qmgr q;
    st_qmgr_init(&q, three, 3);
    q.d.rcpt_index = 1;
    struct st_done done = {0};
    struct sink_result res;
    st_log[0] = '\0';
    cr_assert_not(
        sink_dispatch(r.call, SINK_EV_OUT_RCPT, &q.d, NULL, NULL, st_done_fn, &done, &res));
    cr_assert_eq(atomic_load(&st_npend), 1);
    sink_complete(st_pend[0], SINK_CONTINUE);
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 5000));
    cr_assert_eq(done.res.verdict, SINK_TEMPFAIL);
    cr_assert_str_eq(done.res.binding, "q");
    cr_assert_str_eq(st_log, "p,q");
    st_qmgr_fini(&q);
    st_rig_fini(&r, e);
}

/* ---- rules: RCPT TO is the event's own recipient ---- */

Test(ctx_transport, rcpt_rule_matches_the_current_recipient)
{
    st_setup();
    struct sink_engine *e =
        st_engine("binding r { event = route; sink = \"builtin:script\"; rule = \"RCPT "
                  "TO=*@two.example\"; properties { tag = r; } }\n"
                  "binding c { event = categorize; sink = \"builtin:script\"; rule = \"RCPT "
                  "TO=*@two.example\"; properties { tag = c; } }\n");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_qmgr q;
    st_qmgr_init(&q, three, 3);
    struct sink_result res;
    st_log[0] = '\0';
    for (size_t i = 0; i < 3; i++) {
        q.d.rcpt_index = i;
        cr_assert(sink_dispatch(r.call, SINK_EV_ROUTE, &q.d, NULL, NULL, NULL, NULL, &res));
    }
    cr_assert_str_eq(st_log, "r", "only for b@two.example");
    cr_assert_eq(st_stat(&st_binding(e, "r")->stats->skipped), 2);
    q.d.rcpt_index = 0;
    cr_assert(sink_dispatch(r.call, SINK_EV_CATEGORIZE, &q.d, NULL, NULL, NULL, NULL, &res));
    cr_assert_str_eq(st_log, "r,c", "categorize: any recipient of the message");
    st_qmgr_fini(&q);
    st_rig_fini(&r, e);
}
