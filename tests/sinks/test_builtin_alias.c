/*
 * NAME
 *	test_builtin_alias - builtin:alias at categorize: map and file,
 *	expansion, duplicates, loops and depth, refused configurations
 */
#include "tests/sinks/sink_test.h"

#include <fcntl.h>

/* Runs categorize over rcpts with the alias binding of conf; the list after. */
static const char *expand(const char *props, const char *const *rcpts, size_t n,
                          struct sink_result *res)
{
    char conf[4096];
    snprintf(conf, sizeof(conf),
             "binding al { event = categorize; sink = \"builtin:alias\"; properties { %s } }",
             props);
    struct sink_engine *e = st_engine(conf);
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_qmgr q;
    st_qmgr_init(&q, rcpts, n);
    struct sink_result local;
    if (res == NULL)
        res = &local;
    cr_assert(sink_dispatch(r.call, SINK_EV_CATEGORIZE, &q.d, NULL, NULL, NULL, NULL, res));
    static char out[4096];
    snprintf(out, sizeof(out), "%s", st_qmgr_list(&q));
    st_qmgr_fini(&q);
    st_rig_fini(&r, e);
    return out;
}

static const char *refused(const char *props)
{
    char conf[4096];
    snprintf(conf, sizeof(conf),
             "binding al { event = categorize; sink = \"builtin:alias\"; properties { %s } }",
             props);
    static char err[512];
    err[0] = '\0';
    struct sink_engine *e = st_engine_err(conf, err, sizeof(err));
    cr_assert_null(e, "accepted: %s", props);
    return err;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

Test(alias, expands_from_the_properties)
{
    static const char *const in[] = {"sales@example.test", "x@other.example"};
    struct sink_result res;
    const char *out =
        expand("\"sales@example.test\" = \"a@example.test, b@example.test\";", in, N(in), &res);
    cr_assert_eq(res.verdict, SINK_CONTINUE);
    cr_assert_str_eq(out, "a@example.test,x@other.example,b@example.test",
                     "sales replaced in place by its first member, the rest added");
    /* any case, and no alias: untouched */
    static const char *const up[] = {"SALES@Example.Test"};
    cr_assert_str_eq(expand("\"sales@example.test\" = \"a@example.test\";", up, 1, NULL),
                     "a@example.test");
    static const char *const none[] = {"nobody@example.test", "x@y.example"};
    cr_assert_str_eq(expand("\"sales@example.test\" = \"a@example.test\";", none, 2, NULL),
                     "nobody@example.test,x@y.example");
}

Test(alias, duplicates_removed)
{
    static const char *const in[] = {"sales@example.test", "a@example.test", "team@example.test",
                                     "A@EXAMPLE.TEST"};
    const char *out = expand("\"sales@example.test\" = \"a@example.test, b@example.test\";"
                             "\"team@example.test\" = \"b@example.test, c@example.test\";",
                             in, N(in), NULL);
    /* sales -> a, b; a: a duplicate (removed); team -> c (b is one); A: gone */
    cr_assert_str_eq(out, "a@example.test,c@example.test,b@example.test");
}

Test(alias, nested_loops_and_depth)
{
    /* nested: list -> team -> people */
    static const char *const l[] = {"list@example.test"};
    cr_assert_str_eq(expand("\"list@example.test\" = \"team@example.test, z@example.test\";"
                            "\"team@example.test\" = \"p@example.test, q@example.test\";",
                            l, 1, NULL),
                     "p@example.test,q@example.test,z@example.test");
    /* an alias naming itself keeps its own mailbox */
    static const char *const a[] = {"a@example.test"};
    cr_assert_str_eq(expand("\"a@example.test\" = \"a@example.test, b@example.test\";", a, 1, NULL),
                     "a@example.test,b@example.test");
    /* a loop: a -> b -> a stops where it started */
    cr_assert_str_eq(expand("\"a@example.test\" = \"b@example.test\";"
                            "\"b@example.test\" = \"a@example.test, c@example.test\";",
                            a, 1, NULL),
                     "a@example.test,c@example.test");
    /* a chain l0 -> l1 -> ... -> l14: expanded 10 deep, then kept as is */
    char props[2048] = "";
    for (int i = 0; i < 14; i++) {
        size_t n = strlen(props);
        snprintf(props + n, sizeof(props) - n, "\"l%d@example.test\" = \"l%d@example.test\";", i,
                 i + 1);
    }
    static const char *const l0[] = {"l0@example.test"};
    cr_assert_str_eq(expand(props, l0, 1, NULL), "l10@example.test");
}

Test(alias, file)
{
    char path[] = "/tmp/sluice-aliases-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char text[] = "# the aliases\n"
                        "\n"
                        "postmaster@example.test: root@example.test\n"
                        "  Sales@Example.Test :  a@example.test,b@example.test , c@example.test\r\n"
                        "root@example.test: admin@example.test\n";
    cr_assert_eq(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
    close(fd);
    char props[512];
    snprintf(props, sizeof(props), "file = \"%s\"; \"x@example.test\" = \"y@example.test\";", path);
    static const char *const in[] = {"postmaster@example.test", "sales@example.test",
                                     "x@example.test"};
    cr_assert_str_eq(expand(props, in, N(in), NULL),
                     "admin@example.test,a@example.test,y@example.test,b@example.test,"
                     "c@example.test",
                     "file and properties together; nested through root");
    /* the same address in the file and the properties */
    snprintf(props, sizeof(props), "file = \"%s\"; \"ROOT@example.test\" = \"y@example.test\";",
             path);
    cr_assert_not_null(strstr(refused(props), "defined twice"));
    unlink(path);
    cr_assert_not_null(strstr(refused(props), "No such file"), "%s", refused(props));
}

Test(alias, bad_configurations_refused)
{
    const char *e;
    e = refused("\"sales\" = \"a@example.test\";");
    cr_assert_not_null(strstr(e, "alias \"sales\": not an address"), "%s", e);
    e = refused("\"sales@example.test\" = \"a@example.test, not an address\";");
    cr_assert_not_null(strstr(e, "member \"not an address\" is not an address"), "%s", e);
    e = refused("\"sales@example.test\" = \"<a@example.test>\";");
    cr_assert_not_null(strstr(e, "is not an address"), "%s", e);
    e = refused("\"sales@example.test\" = \" , \";");
    cr_assert_not_null(strstr(e, "is not an address"), "%s", e);
    e = refused("\"sales@example.test\" = \"\";");
    cr_assert_not_null(strstr(e, "empty list"), "%s", e);
    e = refused(
        "\"s@example.test\" = \"a@example.test\"; \"S@EXAMPLE.test\" = \"b@example.test\";");
    cr_assert_not_null(strstr(e, "defined twice"), "%s", e);

    char path[] = "/tmp/sluice-aliases-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char text[] = "a@example.test: b@example.test\n"
                        "no colon here\n";
    cr_assert_eq(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
    close(fd);
    char props[256];
    snprintf(props, sizeof(props), "file = \"%s\";", path);
    e = refused(props);
    cr_assert_not_null(strstr(e, "line 2: expected"), "%s", e);
    fd = open(path, O_WRONLY | O_TRUNC);
    const char t2[] = "\n\na@example.test: b@example.test, bad\x01@x.example\n";
    cr_assert_eq(write(fd, t2, sizeof(t2) - 1), (ssize_t)sizeof(t2) - 1);
    close(fd);
    e = refused(props);
    cr_assert_not_null(strstr(e, "line 3: alias \"a@example.test\": member"), "%s", e);
    unlink(path);

    /* only categorize */
    char err[512];
    cr_assert_null(
        st_engine_err("binding al { event = route; sink = \"builtin:alias\"; }", err, sizeof(err)));
    cr_assert_not_null(strstr(err, "does not handle event \"route\""), "%s", err);
}

Test(alias, failed_edit_defers)
{
    struct sink_engine *e =
        st_engine("binding al { event = categorize; sink = \"builtin:alias\";"
                  " properties { \"s@example.test\" = \"a@example.test, b@example.test\"; } }");
    struct st_rig r;
    st_rig_init(&r, e);
    static const char *const in[] = {"s@example.test"};
    struct st_qmgr q;
    st_qmgr_init(&q, in, 1);
    q.fail = -ENOMEM;
    struct sink_result res;
    cr_assert(sink_dispatch(r.call, SINK_EV_CATEGORIZE, &q.d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_TEMPFAIL);
    cr_assert_eq(res.code, 451);
    cr_assert_str_eq(res.enhanced, "4.3.0");
    st_qmgr_fini(&q);
    st_rig_fini(&r, e);
}
