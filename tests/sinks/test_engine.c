/*
 * NAME
 *	test_engine - sink_engine_load(): an engine from a configuration file
 *	alone (what sink-bench uses instead of reading the configuration itself)
 */
#include "tests/sinks/sink_test.h"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fputs(text, f) >= 0, true);
    cr_assert_eq(fclose(f), 0);
}

Test(engine, load_reads_the_bindings_of_a_file)
{
    st_setup();
    char path[] = "/tmp/sluice-engine-load.XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    write_file(path, "log_level = \"error\";\n"
                     "binding \"a\" { event = \"mail\"; sink = \"builtin:noop\"; }\n"
                     "binding \"b\" { event = \"rcpt\"; sink = \"builtin:noop\"; enabled = false; }\n");
    char err[512] = "";
    struct sink_engine *e = sink_engine_load(path, err, sizeof(err));
    unlink(path); /* the engine keeps nothing of the file */
    cr_assert_not_null(e, "%s", err);
    cr_assert_eq(sink_engine_binding_count(e), 2);
    cr_assert(sink_engine_bound(e, SINK_EV_MAIL));
    cr_assert(!sink_engine_bound(e, SINK_EV_RCPT)); /* disabled */
    cr_assert(!sink_engine_bound(e, SINK_EV_EOD));
    sink_engine_destroy(e);
}

Test(engine, load_without_a_file_has_no_bindings)
{
    st_setup();
    char err[512] = "";
    struct sink_engine *e = sink_engine_load(NULL, err, sizeof(err));
    cr_assert_not_null(e, "%s", err);
    cr_assert(!sink_engine_has_bindings(e));
    sink_engine_destroy(e);
}

Test(engine, load_names_what_is_wrong)
{
    st_setup();
    char path[] = "/tmp/sluice-engine-load.XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    char err[512] = "";

    /* the configuration's own message: a setting of the wrong type */
    write_file(path, "workers = \"many\";\n");
    cr_assert_null(sink_engine_load(path, err, sizeof(err)));
    cr_assert_neq(err[0], '\0');

    /* the engine's: a sink that does not exist */
    err[0] = '\0';
    write_file(path, "binding \"x\" { event = \"mail\"; sink = \"builtin:no-such\"; }\n");
    cr_assert_null(sink_engine_load(path, err, sizeof(err)));
    cr_assert(strstr(err, "binding \"x\"") != NULL, "%s", err);
    unlink(path);

    err[0] = '\0';
    cr_assert_null(sink_engine_load("/nonexistent/sluice.conf", err, sizeof(err)));
    cr_assert_neq(err[0], '\0');
}
