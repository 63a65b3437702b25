/*
 * NAME
 *	test_examples_transport - the transport examples of writing-sinks.md,
 *	loaded as shared objects: strip_tag.so (categorize), route_by_sender.so
 *	(route)
 */
#include "tests/sinks/sink_test.h"

static struct sink_engine *lib_engine(const char *ev, const char *lib, const char *props)
{
    char path[PATH_MAX], conf[PATH_MAX + 512];
    st_lib_path(lib, path, sizeof(path));
    snprintf(conf, sizeof(conf), "binding x { event = %s; sink = \"%s\"; properties { %s } }", ev,
             path, props);
    return st_engine(conf);
}

Test(examples_transport, strip_tag)
{
    struct sink_engine *e = lib_engine("categorize", "strip_tag", "");
    struct st_rig r;
    st_rig_init(&r, e);
    static const char *const in[] = {"joe+lists@example.test", "ann@example.test",
                                     "JOE@example.test", "+odd@example.test", "joe+x@example.test"};
    struct st_qmgr q;
    st_qmgr_init(&q, in, 5);
    struct sink_result res;
    cr_assert(sink_dispatch(r.call, SINK_EV_CATEGORIZE, &q.d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_CONTINUE);
    cr_assert_str_eq(st_qmgr_list(&q), "joe@example.test,ann@example.test,+odd@example.test");
    st_qmgr_fini(&q);
    st_rig_fini(&r, e);
}

Test(examples_transport, route_by_sender)
{
    struct sink_engine *e =
        lib_engine("route", "route_by_sender",
                   "sender_domain = \"example.org\"; nexthop = \"smtp:192.0.2.50\";");
    struct st_rig r;
    st_rig_init(&r, e);
    static const char *const in[] = {"a@far.example", "b@localhost"};
    struct st_qmgr q;
    st_qmgr_init(&q, in, 2); /* sender@example.org */
    struct sink_result res;
    q.d.nexthop = "mx";
    cr_assert(sink_dispatch(r.call, SINK_EV_ROUTE, &q.d, NULL, NULL, NULL, NULL, &res));
    cr_assert_str_eq(q.route, "smtp:192.0.2.50");
    q.route[0] = '\0';
    q.d.rcpt_index = 1;
    q.d.nexthop = "maildir";
    cr_assert(sink_dispatch(r.call, SINK_EV_ROUTE, &q.d, NULL, NULL, NULL, NULL, &res));
    cr_assert_str_eq(q.route, "", "local mail stays local");
    q.d.sender = "other@example.net";
    q.d.rcpt_index = 0;
    q.d.nexthop = "mx";
    cr_assert(sink_dispatch(r.call, SINK_EV_ROUTE, &q.d, NULL, NULL, NULL, NULL, &res));
    cr_assert_str_eq(q.route, "", "another sender: the table decides");
    cr_assert_eq(q.nroute, 1);
    st_qmgr_fini(&q);
    st_rig_fini(&r, e);
}
