/*
 * NAME
 *	test_builtin_route - builtin:route at route: precedence, refusals
 */
#include "tests/sinks/sink_test.h"

static const char *const rcpts[] = {
    "a@partner.example",          "b@mx1.partner.example",
    "c@deep.mx1.partner.example", "d@PARTNER.EXAMPLE",
    "e@elsewhere.example",        "f@x.internal.example",
    "g@internal.example",         "h@example",
};

#define ROUTES                                                                                     \
    "\"partner.example\" = \"smtp:192.0.2.1:2525\";"                                               \
    "\".partner.example\" = \"smtp:192.0.2.2\";"                                                   \
    "\".mx1.partner.example\" = \"smtp:[2001:db8::3]:25 tls=verify\";"                             \
    "\".internal.example\" = \"maildir\";"

/* The next hop the binding chose for recipient i ("" if none). */
static const char *routed(struct st_rig *r, size_t i, struct sink_result *res)
{
    struct st_qmgr q;
    st_qmgr_init(&q, rcpts, sizeof(rcpts) / sizeof(rcpts[0]));
    q.d.rcpt_index = i;
    q.d.nexthop = "mx";
    cr_assert(sink_dispatch(r->call, SINK_EV_ROUTE, &q.d, NULL, NULL, NULL, NULL, res));
    static char out[512];
    snprintf(out, sizeof(out), "%s", q.nroute ? q.route : "");
    st_qmgr_fini(&q);
    return out;
}

Test(route, precedence)
{
    struct sink_engine *e = st_engine("binding rt { event = route; sink = \"builtin:route\";"
                                      " properties { " ROUTES " \"*\" = \"mx:2525\"; } }");
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_result res;
    static const char *const want[] = {
        "smtp:192.0.2.1:2525",              /* exact */
        "smtp:192.0.2.2",                   /* .partner; .mx1.partner is not itself */
        "smtp:[2001:db8::3]:25 tls=verify", /* the longer suffix wins */
        "smtp:192.0.2.1:2525",              /* exact, any case */
        "mx:2525",                          /* the default */
        "maildir",                          /* suffix */
        "mx:2525",                          /* a suffix does not match itself */
        "mx:2525",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        cr_assert_str_eq(routed(&r, i, &res), want[i], "%s", rcpts[i]);
        cr_assert_eq(res.verdict, SINK_CONTINUE);
    }
    st_rig_fini(&r, e);
}

Test(route, no_match_no_default_leaves_the_table)
{
    struct sink_engine *e = st_engine("binding rt { event = route; sink = \"builtin:route\";"
                                      " properties { " ROUTES " } }");
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_result res;
    cr_assert_str_eq(routed(&r, 4, &res), "", "elsewhere.example: the transport table decides");
    cr_assert_eq(res.verdict, SINK_CONTINUE);
    cr_assert_str_eq(routed(&r, 0, &res), "smtp:192.0.2.1:2525");
    st_rig_fini(&r, e);
}

Test(route, later_binding_wins)
{
    struct sink_engine *e =
        st_engine("binding one { event = route; sink = \"builtin:route\"; priority = 10;"
                  " properties { \"*\" = \"mx\"; } }\n"
                  "binding two { event = route; sink = \"builtin:route\"; priority = 20;"
                  " properties { \"partner.example\" = \"discard\"; } }");
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_result res;
    cr_assert_str_eq(routed(&r, 0, &res), "discard");
    cr_assert_str_eq(routed(&r, 4, &res), "mx");
    st_rig_fini(&r, e);
}

Test(route, refused_by_the_queue_manager_defers)
{
    struct sink_engine *e = st_engine("binding rt { event = route; sink = \"builtin:route\";"
                                      " properties { \"*\" = \"smtp:relay.example\"; } }");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_qmgr q;
    st_qmgr_init(&q, rcpts, 2);
    q.d.rcpt_index = 1;
    q.fail = -EINVAL;
    struct sink_result res;
    cr_assert(sink_dispatch(r.call, SINK_EV_ROUTE, &q.d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_TEMPFAIL);
    cr_assert_eq(res.code, 451);
    cr_assert_str_eq(res.enhanced, "4.3.5");
    st_qmgr_fini(&q);
    st_rig_fini(&r, e);
}

Test(route, bad_configurations_refused)
{
    static const struct {
        const char *props, *want;
    } t[] = {
        {"\"a.example\" = \"ftp:x\";", "expected smtp:HOST[:PORT]"},
        {"\"a.example\" = \"smtp:\";", "expected smtp:HOST[:PORT]"},
        {"\"a.example\" = \"mx tls=maybe\";", "expected smtp:HOST[:PORT]"},
        {"\"a.example\" = \"error:2.0.0 ok\";", "expected smtp:HOST[:PORT]"},
        {"\"a b\" = \"mx\";", "\"a b\": not a domain"},
        {"\".\" = \"mx\";", "\".\": not a domain"},
        {"\"a..example\" = \"mx\";", "not a domain"},
        {"\"A.example\" = \"mx\"; \"a.EXAMPLE\" = \"maildir\";", "given twice"},
        {"\"*\" = \"mx\"; \"*\" = \"maildir\";", "given twice"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char conf[512], err[512] = "";
        snprintf(conf, sizeof(conf),
                 "binding rt { event = route; sink = \"builtin:route\"; properties { %s } }",
                 t[i].props);
        cr_assert_null(st_engine_err(conf, err, sizeof(err)), "accepted: %s", t[i].props);
        cr_assert_not_null(strstr(err, t[i].want), "%s: %s", t[i].props, err);
    }
    char err[512];
    cr_assert_null(
        st_engine_err("binding rt { event = categorize; sink = \"builtin:route\"; }", err, 512));
    cr_assert_not_null(strstr(err, "does not handle event \"categorize\""), "%s", err);
}
