/*
 * NAME
 *	test_module - shared-object sinks: the two examples, refused modules
 * DESCRIPTION
 *	The modules are build/lib/NAME.so (sinks/CMakeLists.txt), found from
 *	this program's own directory, build/tests.  async_score completes on
 *	a thread of its own: run under ThreadSanitizer too.
 */
#include "tests/sinks/sink_test.h"

static struct sink_engine *module_engine(const char *fmt, const char *lib, char *err, size_t len)
{
    char path[PATH_MAX], conf[2048];
    st_lib_path(lib, path, sizeof(path));
    snprintf(conf, sizeof(conf), fmt, path, path);
    return st_engine_err(conf, err, len);
}

static void refused(const char *fmt, const char *lib, const char *want)
{
    char err[1024] = "";
    struct sink_engine *e = module_engine(fmt, lib, err, sizeof(err));
    cr_assert_null(e, "loaded");
    cr_assert(strstr(err, want) != NULL, "\"%s\" lacks \"%s\"", err, want);
}

static const char tag_conf[] =
    "binding tag-mail { event = mail; sink = \"%s\";"
    " properties { pattern = \"*@blocked.example\"; text = \"go away\"; } }\n"
    "binding tag-eod { event = eod; sink = \"%s\"; properties { header = X-Domain; } }\n";

Test(module, tag_sender)
{
    char err[1024] = "";
    st_setup();
    struct sink_engine *e = module_engine(tag_conf, "tag_sender", err, sizeof(err));
    cr_assert_not_null(e, "%s", err);
    cr_assert_str_eq(st_binding(e, "tag-mail")->mod->name, "tag_sender");
    struct st_rig r;
    st_rig_init(&r, e);
    struct st_session s = {.body = "Subject: x\r\n\r\nhi\r\n", .piece = 64};
    struct sink_event_data d = st_data(&s);
    struct sink_bag *msg = sink_bag_create();
    d.message_bag = msg;
    struct sink_result res;

    d.sender = "Spammer@BLOCKED.example";
    cr_assert(sink_dispatch(r.call, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_REJECT);
    cr_assert_eq(res.code, 550);
    cr_assert_str_eq(res.enhanced, "5.7.1");
    cr_assert_str_eq(res.text, "go away");
    cr_assert_str_eq(res.binding, "tag-mail");

    d.sender = "joe@example.org";
    cr_assert(sink_dispatch(r.call, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_CONTINUE);
    cr_assert_str_eq(sink_bag_get(msg, "tag_sender.domain"), "example.org");
    cr_assert(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_CONTINUE);
    cr_assert_eq(s.nedit, 1);
    cr_assert_str_eq(s.edit[0].name, "X-Domain");
    cr_assert_str_eq(s.edit[0].value, "example.org");

    sink_bag_clear(msg); /* next message, null sender */
    d.sender = "";
    cr_assert(sink_dispatch(r.call, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_str_eq(s.edit[1].value, "(null sender)");
    st_rig_fini(&r, e);
    sink_bag_destroy(msg);
}

static const char score_conf[] = "binding score { event = eod; sink = \"%s\"; deadline = 5s;"
                                 " properties { word = Viagra; threshold = 3; } }\n";

static int score(struct st_rig *r, const char *body, struct sink_result *out)
{
    struct st_session s = {.body = body, .piece = 7};
    struct sink_event_data d = st_data(&s);
    struct st_done done = {0};
    struct sink_result res;
    if (sink_dispatch(r->call, SINK_EV_EOD, &d, NULL, NULL, st_done_fn, &done, &res)) {
        *out = res;
        return 0;
    }
    cr_assert(st_run_until(r, atomic_load(&done.calls) == 1, 5000), "no completion");
    cr_assert(st_run_until(r, atomic_load(&s.released) == 1, 5000), "message not released");
    *out = done.res;
    return 1;
}

Test(module, async_score, .timeout = 30)
{
    char err[1024] = "";
    struct sink_engine *e = module_engine(score_conf, "async_score", err, sizeof(err));
    cr_assert_not_null(e, "%s", err);
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_result res;
    cr_assert_eq(score(&r, "Subject: viagra\r\n\r\nVIAGRA and viaGRA\r\n", &res), 1, "async");
    cr_assert_eq(res.verdict, SINK_REJECT);
    cr_assert_eq(res.code, 554);
    cr_assert_str_eq(res.text, "Message scored as spam");
    cr_assert_eq(score(&r, "Subject: viagra\r\n\r\nonly viagra twice\r\n", &res), 1);
    cr_assert_eq(res.verdict, SINK_CONTINUE);
    /* a word split across the module's 4 KiB reads still counts */
    static char big[9000];
    memset(big, 'x', sizeof(big) - 1);
    memcpy(big + 4094, "viagra", 6);
    memcpy(big + 100, "viagra", 6);
    memcpy(big + 8000, "viagra", 6);
    cr_assert_eq(score(&r, big, &res), 1);
    cr_assert_eq(res.verdict, SINK_REJECT);
    struct sink_stats *st = st_binding(e, "score")->stats;
    cr_assert_eq(st_stat(&st->verdicts[SINK_PENDING]), 3);
    cr_assert_eq(st_stat(&st->verdicts[SINK_REJECT]), 2);
    st_rig_fini(&r, e);
}

Test(module, async_score_without_body_continues)
{
    char err[1024] = "";
    struct sink_engine *e = module_engine(score_conf, "async_score", err, sizeof(err));
    cr_assert_not_null(e, "%s", err);
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_event_data d = st_data(NULL); /* no body_hold */
    struct sink_result res;
    cr_assert(sink_dispatch(r.call, SINK_EV_EOD, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_CONTINUE);
    st_rig_fini(&r, e);
}

Test(module, refused)
{
    refused("binding x { event = mail; sink = \"%s\"; }", "bad_abi",
            "bad_abi.so: built for sink ABI 2.1, this sluiced has 2.0 (rebuild the module "
            "against this sluiced's <sluice/sink.h>)");
    refused("binding x { event = rcpt; sink = \"%s\"; }", "tag_sender",
            "tag_sender.so (module \"tag_sender\") does not handle event \"rcpt\" (it handles: "
            "mail, eod)");
    refused("binding x { event = eod; sink = \"%s\"; }", "async_score",
            "(module \"async_score\"): create failed: property word is required");
    refused("binding x { event = eod; sink = \"%s\"; }", "no_such_module",
            "no_such_module.so: cannot load: ");
    char err[512] = "";
    cr_assert_null(st_engine_err("binding \"libc\" { event = mail; sink = \"libc.so.6\"; }", err,
                                 sizeof(err)));
    cr_assert(strstr(err, "binding \"libc\" (line 1): sink libc.so.6: no sluice_sink_module "
                          "symbol: not a sluice sink module") != NULL,
              "%s", err);
}

Test(module, print_bindings_names_the_module)
{
    char err[1024] = "";
    struct sink_engine *e = module_engine(tag_conf, "tag_sender", err, sizeof(err));
    cr_assert_not_null(e, "%s", err);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    sink_engine_print_bindings(e, f);
    fclose(f);
    cr_assert_not_null(strstr(out, "tag_sender.so (module \"tag_sender\")"), "%s", out);
    free(out);
    sink_engine_destroy(e);
}
