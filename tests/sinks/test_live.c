/*
 * NAME
 *	test_live - live binding changes (enable, disable, setprop, add,
 *	remove, reload), dispatch concurrent with them, pending calls of a
 *	removed binding, and writing the changes back to the configuration
 *	(run under ThreadSanitizer too)
 */
#include "tests/sinks/sink_test.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "core/cfg/cfg_edit.h"

static const char live_conf[] = "binding \"a\" { event = \"mail\"; sink = \"builtin:script\"; "
                                "priority = 100; properties { tag = \"a\"; } }\n"
                                "binding \"b\" { event = \"mail\"; sink = \"builtin:script\"; "
                                "priority = 200; enabled = false; properties { tag = \"b\"; } }\n";

/* Runs the mail chain synchronously; the verdict. */
static enum sink_verdict live_mail(struct sink_call *c)
{
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    cr_assert(sink_dispatch(c, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    return res.verdict;
}

Test(live, enable_disable_next_dispatch)
{
    st_setup();
    struct sink_engine *e = st_engine(live_conf);
    struct sink_worker *sw = sink_worker_create(e, NULL, 0);
    struct sink_call *c = sink_call_create(sw);
    char err[256] = "";

    live_mail(c);
    cr_assert_str_eq(st_log, "a", "b is disabled in the file");
    cr_assert_eq(sink_engine_set_enabled(e, "b", true, err, sizeof(err)), 0, "%s", err);
    st_log[0] = '\0';
    live_mail(c);
    cr_assert_str_eq(st_log, "a,b", "a binding never loaded is loaded when enabled");
    cr_assert_eq(sink_engine_set_enabled(e, "a", false, err, sizeof(err)), 0, "%s", err);
    st_log[0] = '\0';
    live_mail(c);
    cr_assert_str_eq(st_log, "b");
    cr_assert_eq(sink_engine_set_enabled(e, "a", true, err, sizeof(err)), 0);
    cr_assert_eq(sink_engine_set_enabled(e, "a", true, err, sizeof(err)), 0, "twice is fine");
    st_log[0] = '\0';
    live_mail(c);
    cr_assert_str_eq(st_log, "a,b");

    cr_assert_eq(sink_engine_set_enabled(e, "zz", true, err, sizeof(err)), -ENOENT);
    cr_assert_str_eq(err, "no binding \"zz\"");

    /* every binding of an event off: nothing bound (the worker takes
     * the new mask at its next turn) */
    cr_assert(sink_engine_bound(e, SINK_EV_MAIL));
    cr_assert_eq(sink_engine_set_enabled(e, "a", false, err, sizeof(err)), 0);
    cr_assert_eq(sink_engine_set_enabled(e, "b", false, err, sizeof(err)), 0);
    cr_assert(sink_engine_bound(e, SINK_EV_MAIL), "a worker thread's answer holds for its turn");
    sink_worker_expire(sw, sink_now_ms());
    cr_assert_not(sink_engine_bound(e, SINK_EV_MAIL));
    st_log[0] = '\0';
    cr_assert_eq(live_mail(c), SINK_CONTINUE);
    cr_assert_str_eq(st_log, "");

    sink_call_destroy(c);
    sink_worker_destroy(sw);
    cr_assert_not(sink_engine_bound(e, SINK_EV_MAIL), "another thread reads the mask");
    sink_engine_destroy(e);
}

Test(live, disable_during_a_dispatch)
{
    st_setup();
    /* a dispatch that loaded the chain before the change still obeys the
     * flag at the next link: a pending first link, then b is disabled */
    struct sink_engine *e =
        st_engine("binding \"p\" { event = \"mail\"; sink = \"builtin:script\"; priority = 1; "
                  "properties { tag = \"p\"; pending = true; } }\n"
                  "binding \"b\" { event = \"mail\"; sink = \"builtin:script\"; priority = 2; "
                  "properties { tag = \"b\"; } }\n");
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_event_data d = st_data(NULL);
    struct st_done done = {0};
    struct sink_result res;
    char err[256];
    cr_assert_not(sink_dispatch(r.call, SINK_EV_MAIL, &d, NULL, NULL, st_done_fn, &done, &res));
    cr_assert_eq(sink_engine_set_enabled(e, "b", false, err, sizeof(err)), 0, "%s", err);
    sink_complete(st_pend[0], SINK_CONTINUE);
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 2000));
    cr_assert_str_eq(st_log, "p", "b was skipped");
    st_rig_fini(&r, e);
}

Test(live, setprop_recreates_the_instance)
{
    st_setup();
    struct sink_engine *e = st_engine(live_conf);
    struct sink_worker *sw = sink_worker_create(e, NULL, 0);
    struct sink_call *c = sink_call_create(sw);
    char err[256] = "";
    struct sink_stats *st = st_binding(e, "a")->stats;

    cr_assert_eq(live_mail(c), SINK_CONTINUE);
    void *inst = st_binding(e, "a")->inst;
    cr_assert_eq(sink_engine_setprop(e, "a", "verdict", "reject", err, sizeof(err)), 0, "%s", err);
    cr_assert_neq(st_binding(e, "a")->inst, inst, "a new instance");
    cr_assert_eq(live_mail(c), SINK_REJECT);
    cr_assert_str_eq(sink_props_get(st_binding(e, "a")->props, "verdict"), "reject");
    cr_assert_str_eq(sink_props_get(st_binding(e, "a")->props, "tag"), "a", "others kept");
    cr_assert_eq(st_binding(e, "a")->stats, st, "the same counters");
    cr_assert_eq(st_stat(&st->calls), 2);
    cr_assert_eq(st_binding(e, "a")->priority, 100);

    /* create() refuses: one line, nothing changed */
    cr_assert_eq(sink_engine_setprop(e, "a", "verdict", "maybe", err, sizeof(err)), -ENOEXEC);
    cr_assert(strstr(err, "create failed: bad verdict maybe") != NULL, "%s", err);
    cr_assert_eq(strncmp(err, "binding \"a\": sink builtin:script", 31), 0, "%s", err);
    cr_assert_null(strchr(err, '\n'));
    cr_assert_eq(live_mail(c), SINK_REJECT);

    /* delprop */
    cr_assert_eq(sink_engine_setprop(e, "a", "verdict", NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(live_mail(c), SINK_CONTINUE);
    cr_assert_eq(sink_engine_setprop(e, "a", "verdict", NULL, err, sizeof(err)), -ENOENT);
    cr_assert_eq(sink_engine_setprop(e, "nope", "k", "v", err, sizeof(err)), -ENOENT);
    cr_assert_eq(sink_engine_setprop(e, "a", "", "v", err, sizeof(err)), -EINVAL);

    /* values that need quoting survive the round trip */
    cr_assert_eq(sink_engine_setprop(e, "a", "odd key", "say \"hi\"\\\n", err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_str_eq(sink_props_get(st_binding(e, "a")->props, "odd key"), "say \"hi\"\\\n");

    /* a disabled binding stays disabled (and unloaded) */
    cr_assert_eq(sink_engine_setprop(e, "b", "tag", "B", err, sizeof(err)), 0, "%s", err);
    cr_assert_not(sink_binding_enabled(st_binding(e, "b")));
    cr_assert_eq(sink_engine_set_enabled(e, "b", true, err, sizeof(err)), 0, "%s", err);
    st_log[0] = '\0';
    live_mail(c);
    cr_assert_str_eq(st_log, "a,B");

    sink_call_destroy(c);
    sink_worker_destroy(sw);
    sink_engine_destroy(e);
}

Test(live, setprop_on_a_builtin)
{
    st_setup();
    struct sink_engine *e =
        st_engine("binding \"acc\" { event = \"mail\"; sink = \"builtin:access\"; "
                  "properties { action = \"reject\"; text = \"go away\"; } }\n");
    struct sink_worker *sw = sink_worker_create(e, NULL, 0);
    struct sink_call *c = sink_call_create(sw);
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    char err[256] = "";
    cr_assert(sink_dispatch(c, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_REJECT);
    cr_assert_eq(res.code, 550);
    cr_assert_eq(sink_engine_setprop(e, "acc", "action", "tempfail", err, sizeof(err)), 0, "%s",
                 err);
    cr_assert(sink_dispatch(c, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_TEMPFAIL);
    cr_assert_eq(res.code, 450);
    cr_assert_str_eq(res.text, "go away");
    cr_assert_eq(sink_engine_setprop(e, "acc", "action", "explode", err, sizeof(err)), -ENOEXEC);
    cr_assert(sink_dispatch(c, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_TEMPFAIL, "unchanged after a failed setprop");
    sink_call_destroy(c);
    sink_worker_destroy(sw);
    sink_engine_destroy(e);
}

Test(live, add_and_remove)
{
    st_setup();
    struct sink_engine *e = st_engine(live_conf);
    struct sink_worker *sw = sink_worker_create(e, NULL, 0);
    struct sink_call *c = sink_call_create(sw);
    char err[512] = "";

    cr_assert_not(sink_engine_bound(e, SINK_EV_RCPT));
    cr_assert_eq(sink_engine_add(e,
                                 "binding \"first\" { event = \"mail\"; sink = \"builtin:script\";"
                                 " priority = 1; properties { tag = \"first\"; } }",
                                 err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(sink_engine_add(e,
                                 "binding \"r\" { event = \"rcpt\"; sink = \"builtin:script\";"
                                 " properties { tag = \"r\"; } }",
                                 err, sizeof(err)),
                 0, "%s", err);
    sink_worker_expire(sw, sink_now_ms());
    cr_assert(sink_engine_bound(e, SINK_EV_RCPT));
    live_mail(c);
    cr_assert_str_eq(st_log, "first,a", "by priority");

    /* errors: one line each, nothing changed */
    cr_assert_eq(sink_engine_add(e, "binding \"a\" { event = \"mail\"; sink = \"builtin:noop\"; }",
                                 err, sizeof(err)),
                 -EEXIST);
    cr_assert(strstr(err, "duplicate binding name") != NULL, "%s", err);
    cr_assert_eq(sink_engine_add(e, "binding \"x\" { event = \"mial\"; sink = \"builtin:noop\"; }",
                                 err, sizeof(err)),
                 -EINVAL);
    cr_assert(strstr(err, "unknown event \"mial\"") != NULL, "%s", err);
    cr_assert_eq(sink_engine_add(e, "binding \"x\" { event = \"mail\"; ", err, sizeof(err)),
                 -EINVAL);
    cr_assert(strstr(err, "unterminated") != NULL, "%s", err);
    cr_assert_eq(sink_engine_add(e, "listen = \"1.2.3.4:25\";", err, sizeof(err)), -EINVAL);
    cr_assert_eq(
        sink_engine_add(e, "binding \"x\" { event = \"mail\"; sink = \"/nonexistent/x.so\"; }", err,
                        sizeof(err)),
        -ENOEXEC);
    cr_assert(strstr(err, "cannot load") != NULL, "%s", err);
    cr_assert_eq(sink_engine_add(e,
                                 "binding \"x\" { event = \"mail\"; sink = \"builtin:script\"; "
                                 "properties { verdict = \"bogus\"; } }",
                                 err, sizeof(err)),
                 -ENOEXEC);
    cr_assert(strstr(err, "create failed") != NULL, "%s", err);
    cr_assert_eq(e->nb, 4);

    st_log[0] = '\0';
    cr_assert_eq(sink_engine_remove(e, "first", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sink_engine_remove(e, "first", err, sizeof(err)), -ENOENT);
    live_mail(c);
    cr_assert_str_eq(st_log, "a");
    cr_assert_eq(sink_engine_remove(e, "r", err, sizeof(err)), 0);
    sink_worker_expire(sw, sink_now_ms());
    cr_assert_not(sink_engine_bound(e, SINK_EV_RCPT));

    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    sink_engine_print_bindings(e, f);
    sink_engine_print_stats(e, f);
    fclose(f);
    cr_assert(strstr(out, "rcpt: no bindings") != NULL, "%s", out);
    cr_assert_null(strstr(out, "first"), "%s", out);
    free(out);

    sink_call_destroy(c);
    sink_worker_destroy(sw);
    sink_engine_destroy(e);
}

Test(live, removed_binding_pending_call_completes)
{
    st_setup();
    struct sink_engine *e =
        st_engine("binding \"p\" { event = \"mail\"; sink = \"builtin:script\"; "
                  "properties { tag = \"p\"; pending = true; } }\n"
                  "binding \"q\" { event = \"mail\"; sink = \"builtin:script\"; "
                  "properties { tag = \"q\"; pending = true; } }\n");
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_call *c2 = sink_call_create(r.sw);
    struct sink_event_data d = st_data(NULL);
    struct st_done done = {0}, done2 = {0};
    struct sink_result res;
    char err[256];
    cr_assert_not(sink_dispatch(r.call, SINK_EV_MAIL, &d, NULL, NULL, st_done_fn, &done, &res));
    cr_assert_not(sink_dispatch(c2, SINK_EV_MAIL, &d, NULL, NULL, st_done_fn, &done2, &res));
    cr_assert_eq(atomic_load(&st_npend), 2);
    /* both pending in p; p is removed, then replaced by a setprop of q */
    cr_assert_eq(sink_engine_remove(e, "p", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sink_engine_setprop(e, "q", "tag", "q2", err, sizeof(err)), 0, "%s", err);
    sink_set_reply(st_pend[0], 550, "5.7.1", "refused by a removed binding");
    sink_complete(st_pend[0], SINK_REJECT);
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 2000));
    cr_assert_eq(done.res.verdict, SINK_REJECT);
    cr_assert_str_eq(done.res.binding, "p");
    /* the other call goes on along the chain it started with: the old q */
    sink_complete(st_pend[1], SINK_CONTINUE);
    cr_assert(st_run_until(&r, atomic_load(&st_npend) == 3, 2000));
    cr_assert_str_eq(st_log, "p,p,q");
    sink_complete(st_pend[2], SINK_CONTINUE);
    cr_assert(st_run_until(&r, atomic_load(&done2.calls) == 1, 2000));
    cr_assert_eq(done2.res.verdict, SINK_CONTINUE);
    /* a new dispatch sees the new chain */
    struct st_done done3 = {0};
    cr_assert_not(sink_dispatch(c2, SINK_EV_MAIL, &d, NULL, NULL, st_done_fn, &done3, &res));
    cr_assert_str_eq(st_log, "p,p,q,q2");
    sink_complete(st_pend[3], SINK_CONTINUE);
    cr_assert(st_run_until(&r, atomic_load(&done3.calls) == 1, 2000));
    sink_call_destroy(c2);
    st_rig_fini(&r, e);
}

/* ---- a dispatching thread while another changes the bindings ---- */

struct live_disp {
    struct sink_engine *e;
    _Atomic bool stop;
    _Atomic int n, bad;
};

static void *live_dispatcher(void *arg)
{
    struct live_disp *ld = arg;
    struct sink_worker *sw = sink_worker_create(ld->e, NULL, 0);
    struct sink_call *c = sink_call_create(sw);
    struct sink_event_data d = st_data(NULL);
    for (int i = 0; i < 500000 && !atomic_load(&ld->stop); i++) {
        struct sink_result res;
        if (!sink_dispatch(c, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res))
            atomic_fetch_add(&ld->bad, 1);
        else if (res.verdict != SINK_REJECT && res.verdict != SINK_TEMPFAIL &&
                 res.verdict != SINK_CONTINUE)
            atomic_fetch_add(&ld->bad, 1);
        (void)sink_engine_bound(ld->e, SINK_EV_RCPT);
        if (i % 64 == 0)
            sink_worker_expire(sw, sink_now_ms());
        atomic_fetch_add(&ld->n, 1);
    }
    sink_call_destroy(c);
    sink_worker_destroy(sw);
    return NULL;
}

Test(live, dispatch_concurrent_with_changes, .timeout = 60)
{
    st_setup();
    struct sink_engine *e =
        st_engine("binding \"acc\" { event = \"mail\"; sink = \"builtin:access\"; "
                  "properties { action = \"reject\"; } }\n"
                  "binding \"n\" { event = \"mail\"; sink = \"builtin:noop\"; priority = 1; }\n");
    struct live_disp ld = {.e = e};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, live_dispatcher, &ld), 0);
    char err[256];
    /* the dispatchers are under way before the first change (bounded) */
    for (int i = 0; i < 5000 && atomic_load(&ld.n) < 200; i++)
        usleep(1000);
    cr_assert_geq(atomic_load(&ld.n), 200);
    for (int i = 0; i < 150; i++) {
        cr_assert_eq(sink_engine_set_enabled(e, "acc", i % 2 == 0, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(sink_engine_setprop(e, "acc", "action", i % 3 ? "tempfail" : "reject", err,
                                         sizeof(err)),
                     0, "%s", err);
        if (i % 2 == 0)
            cr_assert_eq(sink_engine_add(e,
                                         "binding \"x\" { event = \"mail\"; "
                                         "sink = \"builtin:noop\"; }",
                                         err, sizeof(err)),
                         0, "%s", err);
        else
            cr_assert_eq(sink_engine_remove(e, "x", err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(sink_engine_add(e,
                                     "binding \"r\" { event = \"rcpt\"; sink = \"builtin:noop\"; }",
                                     err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(sink_engine_remove(e, "r", err, sizeof(err)), 0, "%s", err);
        FILE *f = fopen("/dev/null", "w");
        sink_engine_print_bindings(e, f);
        sink_engine_print_stats(e, f);
        fclose(f);
    }
    atomic_store(&ld.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&ld.bad), 0);
    cr_assert_gt(atomic_load(&ld.n), 0);
    sink_engine_destroy(e);
}

/* ---- reload ---- */

Test(live, reload_all_or_nothing)
{
    st_setup();
    struct sink_engine *e = st_engine(live_conf);
    struct sink_worker *sw = sink_worker_create(e, NULL, 0);
    struct sink_call *c = sink_call_create(sw);
    char err[512] = "";
    live_mail(c);
    struct sink_stats *st = st_binding(e, "a")->stats;

    struct cfg cfg = {0};
    const char *bad = "binding \"a\" { event = \"mail\"; sink = \"builtin:script\"; }\n"
                      "binding \"z\" { event = \"mail\"; sink = \"builtin:nosuch\"; }\n";
    cfg.tree = cfg_parse(bad, strlen(bad), "new.conf", err, sizeof(err));
    cr_assert_not_null(cfg.tree);
    cr_assert_eq(sink_engine_reload(e, &cfg, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "no such builtin sink") != NULL, "%s", err);
    cfg_node_free(cfg.tree);
    st_log[0] = '\0';
    live_mail(c);
    cr_assert_str_eq(st_log, "a", "the old bindings stay");

    const char *good = "binding \"a\" { event = \"mail\"; sink = \"builtin:script\"; "
                       "priority = 300; properties { tag = \"A\"; } }\n"
                       "binding \"c\" { event = \"mail\"; sink = \"builtin:script\"; "
                       "priority = 10; properties { tag = \"c\"; } }\n";
    cfg.tree = cfg_parse(good, strlen(good), "new.conf", err, sizeof(err));
    cr_assert_eq(sink_engine_reload(e, &cfg, err, sizeof(err)), 0, "%s", err);
    cfg_node_free(cfg.tree);
    st_log[0] = '\0';
    live_mail(c);
    cr_assert_str_eq(st_log, "c,A");
    cr_assert_eq(st_binding(e, "a")->stats, st, "the same name keeps its counters");
    cr_assert_eq(st_stat(&st->calls), 3);
    cr_assert_eq(e->nb, 2);

    sink_call_destroy(c);
    sink_worker_destroy(sw);
    sink_engine_destroy(e);
}

/* ---- save ---- */

static const char save_conf[] =
    "# sluice.conf for the save test\n"
    "listen = \"127.0.0.1:2525\";   # trailing comment\n"
    "\n"
    "/* the access rules */\n"
    "binding \"a\" {\n"
    "  event = \"mail\";   // kept?\n"
    "  sink = \"builtin:script\";\n"
    "  priority = 100;\n"
    "  properties { tag = \"a\"; }\n"
    "}\n"
    "\n"
    "# b stays exactly as written\n"
    "binding \"b\" { event = \"mail\"; sink = \"builtin:script\"; priority = 200; enabled = false;"
    " properties { tag = \"b\"; } }\n"
    "\n"
    "binding \"gone\" {\n"
    "    event = \"rcpt\"; sink = \"builtin:noop\";\n"
    "}\n"
    "max_errors = 10; # the end\n";

static char *live_slurp(const char *path)
{
    char *text = NULL, err[256];
    size_t len;
    cr_assert_eq(cfg_edit_read(path, &text, &len, err, sizeof(err)), 0, "%s", err);
    return text;
}

Test(live, save_writes_back)
{
    st_setup();
    char dir[] = "/tmp/sluice-live-XXXXXX", path[256], err[512] = "";
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/sluice.conf", dir);
    FILE *f = fopen(path, "w");
    fputs(save_conf, f);
    fclose(f);
    chmod(path, 0640);

    struct sink_engine *e = st_engine(save_conf);
    cr_assert_eq(sink_engine_save(e, path, err, sizeof(err)), 0, "nothing to save: %s", err);
    char *same = live_slurp(path);
    cr_assert_str_eq(same, save_conf);
    free(same);

    cr_assert_eq(sink_engine_setprop(e, "a", "verdict", "reject", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sink_engine_remove(e, "gone", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sink_engine_add(e,
                                 "binding \"new\" { event = \"eod\"; sink = \"builtin:script\"; "
                                 "deadline = 1500ms; on_deadline = \"continue\"; "
                                 "rule = \"MAIL FROM=*@x.example\"; offload = true; }",
                                 err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(sink_engine_add(e, "binding \"tmp\" { event = \"eod\"; sink = \"builtin:noop\"; }",
                                 err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(sink_engine_remove(e, "tmp", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sink_engine_save(e, path, err, sizeof(err)), 0, "%s", err);

    char *text = live_slurp(path);
    /* what is not a changed block is byte for byte what it was */
    const char *head = "# sluice.conf for the save test\n"
                       "listen = \"127.0.0.1:2525\";   # trailing comment\n"
                       "\n"
                       "/* the access rules */\n"
                       "binding \"a\" {\n";
    cr_assert_eq(strncmp(text, head, strlen(head)), 0, "%s", text);
    const char *mid = "}\n"
                      "\n"
                      "# b stays exactly as written\n"
                      "binding \"b\" { event = \"mail\"; sink = \"builtin:script\"; priority = 200;"
                      " enabled = false; properties { tag = \"b\"; } }\n"
                      "\n"
                      "max_errors = 10; # the end\n"
                      "binding \"new\" {\n";
    cr_assert_not_null(strstr(text, mid), "%s", text);
    cr_assert_null(strstr(text, "gone"), "%s", text);
    cr_assert_null(strstr(text, "tmp"), "%s", text);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0640, "the mode is kept");

    /* it parses back to the same bindings */
    struct sink_engine *e2 = st_engine(text);
    cr_assert_eq(e2->nb, 3);
    cr_assert_str_eq(sink_props_get(st_binding(e2, "a")->props, "verdict"), "reject");
    cr_assert_str_eq(sink_props_get(st_binding(e2, "a")->props, "tag"), "a");
    cr_assert_eq(st_binding(e2, "a")->priority, 100);
    cr_assert_not(sink_binding_enabled(st_binding(e2, "b")));
    struct sink_binding *n = st_binding(e2, "new");
    cr_assert_eq(n->ev, SINK_EV_EOD);
    cr_assert_eq(n->deadline_ms, 1500);
    cr_assert_eq(n->on_deadline, SINK_CONTINUE);
    cr_assert(n->offload);
    cr_assert_str_eq(n->rule_text, "MAIL FROM=*@x.example");
    sink_engine_destroy(e2);
    free(text);

    /* enable b: only b's block changes */
    cr_assert_eq(sink_engine_set_enabled(e, "b", true, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sink_engine_save(e, path, err, sizeof(err)), 0, "%s", err);
    text = live_slurp(path);
    cr_assert_not_null(strstr(text, "# b stays exactly as written\nbinding \"b\" {\n"), "%s", text);
    e2 = st_engine(text);
    cr_assert(sink_binding_enabled(st_binding(e2, "b")));
    sink_engine_destroy(e2);
    free(text);

    /* a file that cannot be written: an error, the change stays marked */
    cr_assert_eq(sink_engine_set_enabled(e, "b", false, err, sizeof(err)), 0);
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/no/such.conf", dir);
    cr_assert_lt(sink_engine_save(e, missing, err, sizeof(err)), 0);
    cr_assert(strstr(err, "no/such.conf") != NULL, "%s", err);
    cr_assert_eq(sink_engine_save(e, path, err, sizeof(err)), 0, "%s", err);
    text = live_slurp(path);
    cr_assert_not_null(strstr(text, "enabled = false;"), "%s", text);
    free(text);

    sink_engine_destroy(e);
    unlink(path);
    rmdir(dir);
}
