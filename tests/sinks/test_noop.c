/*
 * NAME
 *	test_noop - builtin:noop loads for any event and always continues
 */
#include "tests/sinks/sink_test.h"

Test(noop, loads_for_every_event)
{
    st_setup();
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
        const char *name = sink_event_name(ev);
        char conf[256];
        snprintf(conf, sizeof(conf),
                 "binding n { event = %s; sink = \"builtin:noop\"; properties { ignored = 1; } }",
                 name);
        struct sink_engine *e = st_engine(conf);
        struct sink_binding *b = st_binding(e, "n");
        cr_assert_not_null(b->mod);
        cr_assert_str_eq(b->mod->name, "noop");
        cr_assert_eq(b->mod->abi_version, SINK_ABI_VERSION);
        cr_assert(b->created, "%s: created", name);
        sink_engine_destroy(e);
    }
}

Test(noop, continues_and_sets_nothing)
{
    st_setup();
    struct sink_engine *e =
        st_engine("binding n1 { event = mail; sink = \"builtin:noop\"; priority = 10; }\n"
                  "binding n2 { event = mail; sink = \"builtin:noop\"; priority = 30000; }\n"
                  "binding n3 { event = disconnect; sink = \"builtin:noop\"; }\n");
    cr_assert(sink_engine_bound(e, SINK_EV_MAIL));
    cr_assert(!sink_engine_bound(e, SINK_EV_RCPT));
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_server srv = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    for (int i = 0; i < 3; i++) {
        st_log[0] = '\0';
        cr_assert(sink_dispatch(r.call, SINK_EV_MAIL, &d, st_server_fn, &srv, NULL, NULL, &res),
                  "synchronous");
        cr_assert_eq(res.verdict, SINK_CONTINUE);
        cr_assert_eq(res.code, 0, "no reply set");
        cr_assert_null(res.binding);
        cr_assert_str_eq(st_log, "server", "the server still runs, between the two");
    }
    cr_assert_eq(srv.calls, 3);
    /* without a server link the chain still continues */
    cr_assert(sink_dispatch(r.call, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_CONTINUE);
    cr_assert(sink_dispatch(r.call, SINK_EV_DISCONNECT, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_CONTINUE);
    struct sink_binding *b = st_binding(e, "n1");
    cr_assert_eq(st_stat(&b->stats->calls), 4);
    cr_assert_eq(st_stat(&b->stats->verdicts[SINK_CONTINUE]), 4);
    cr_assert_eq(st_stat(&b->stats->verdicts[SINK_PENDING]), 0);
    cr_assert_eq(st_stat(&st_binding(e, "n2")->stats->calls), 4);
    st_rig_fini(&r, e);
}
