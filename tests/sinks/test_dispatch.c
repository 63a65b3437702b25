/*
 * NAME
 *	test_dispatch - synchronous chains: order, verdicts, replies, stats
 */
#include "tests/sinks/sink_test.h"

#define SCRIPT(name, ev, prio, props)                                                              \
    "binding " name " { event = " ev "; sink = \"builtin:script\"; priority = " prio ";"           \
    " properties { tag = " name "; " props " } }\n"

struct fixture {
    struct sink_engine *e;
    struct st_rig r;
    struct st_server srv;
    struct sink_event_data d;
    struct sink_result res;
};

static void fx_init(struct fixture *f, const char *conf)
{
    st_setup();
    memset(f, 0, sizeof(*f));
    f->e = st_engine(conf);
    st_rig_init(&f->r, f->e);
    f->d = st_data(NULL);
}

static void fx_fini(struct fixture *f)
{
    st_rig_fini(&f->r, f->e);
}

static bool fx_run(struct fixture *f, enum sink_event ev)
{
    st_log[0] = '\0';
    return sink_dispatch(f->r.call, ev, &f->d, st_server_fn, &f->srv, st_done_fn, NULL, &f->res);
}

Test(dispatch, order_with_server)
{
    struct fixture f;
    fx_init(&f, SCRIPT("late", "mail", "30000", "") SCRIPT("a", "mail", "10", "")
                    SCRIPT("dflt", "mail", "24575", "") SCRIPT("b", "mail", "10", "")
                        SCRIPT("c", "mail", "24574", ""));
    cr_assert(fx_run(&f, SINK_EV_MAIL));
    cr_assert_str_eq(st_log, "a,b,c,server,dflt,late");
    cr_assert_eq(f.res.verdict, SINK_CONTINUE);
    cr_assert_null(f.res.binding);
    cr_assert_eq(f.res.code, 0);
    /* no server handler: no server link */
    st_log[0] = '\0';
    cr_assert(sink_dispatch(f.r.call, SINK_EV_MAIL, &f.d, NULL, NULL, NULL, NULL, &f.res));
    cr_assert_str_eq(st_log, "a,b,c,dflt,late");
    /* another event's chain is only the server */
    cr_assert(fx_run(&f, SINK_EV_RCPT));
    cr_assert_str_eq(st_log, "server");
    fx_fini(&f);
}

static void stops_with(const char *verdict, enum sink_verdict want, const char *reply, int code,
                       const char *text)
{
    char conf[1024];
    snprintf(conf, sizeof(conf),
             SCRIPT("a", "mail", "10", "") SCRIPT("stop", "mail", "20", "verdict = %s; %s")
                 SCRIPT("z", "mail", "30000", ""),
             verdict, reply);
    struct fixture f;
    fx_init(&f, conf);
    cr_assert(fx_run(&f, SINK_EV_MAIL));
    cr_assert_str_eq(st_log, "a,stop", "%s: %s", verdict, st_log);
    cr_assert_eq(f.res.verdict, want);
    cr_assert_str_eq(f.res.binding, "stop");
    cr_assert_eq(f.res.code, code, "%s: code %d", verdict, f.res.code);
    cr_assert_str_eq(f.res.text, text);
    cr_assert_eq(f.srv.calls, 0, "the server is after the deciding link");
    struct sink_stats *st = st_binding(f.e, "stop")->stats;
    cr_assert_eq(st_stat(&st->calls), 1);
    cr_assert_eq(st_stat(&st->verdicts[want]), 1);
    cr_assert_eq(st_stat(&st_binding(f.e, "z")->stats->calls), 0);
    fx_fini(&f);
}

Test(dispatch, sync_verdicts)
{
    stops_with("consumed", SINK_CONSUMED, "", 0, "");
    stops_with("consumed", SINK_CONSUMED, "code = 250; text = \"fine by me\";", 250, "fine by me");
    stops_with("reject", SINK_REJECT, "", 0, "");
    stops_with("reject", SINK_REJECT, "code = 550; enhanced = \"5.7.1\"; text = nope;", 550,
               "nope");
    stops_with("tempfail", SINK_TEMPFAIL, "code = 451; text = later;", 451, "later");
    stops_with("drop", SINK_DROP, "code = 421; text = bye;", 421, "bye");
    stops_with("drop", SINK_DROP, "code = 554; text = go;", 554, "go");
    stops_with("discard", SINK_DISCARD, "code = 250; text = gone;", 250, "gone");
    stops_with("quarantine", SINK_QUARANTINE, "", 0, "");
}

Test(dispatch, reply_of_wrong_class_dropped)
{
    stops_with("reject", SINK_REJECT, "code = 250; text = oops;", 0, "");
    stops_with("tempfail", SINK_TEMPFAIL, "code = 550; text = oops;", 0, "");
    stops_with("consumed", SINK_CONSUMED, "code = 550; text = oops;", 0, "");
    stops_with("discard", SINK_DISCARD, "code = 451; text = oops;", 0, "");
    struct fixture f;
    fx_init(&f, SCRIPT("bad", "mail", "10", "verdict = reject; code = 250; text = x;"));
    fx_run(&f, SINK_EV_MAIL);
    cr_assert_eq(st_stat(&st_binding(f.e, "bad")->stats->bad_reply), 1);
    cr_assert_eq(f.res.code, 0);
    cr_assert_eq(f.res.text[0], '\0');
    fx_fini(&f);
}

Test(dispatch, continue_carries_reply)
{
    struct fixture f;
    fx_init(&f, SCRIPT("a", "mail", "10", "code = 250; text = \"from a\";")
                    SCRIPT("b", "mail", "30000", ""));
    cr_assert(fx_run(&f, SINK_EV_MAIL));
    cr_assert_str_eq(st_log, "a,server,b");
    cr_assert_eq(f.res.verdict, SINK_CONTINUE);
    cr_assert_eq(f.res.code, 250, "kept across the server and later links");
    cr_assert_str_eq(f.res.text, "from a");
    /* a later link's verdict without a reply clears it */
    fx_fini(&f);
    fx_init(&f, SCRIPT("a", "mail", "10", "code = 250; text = \"from a\";")
                    SCRIPT("b", "mail", "30000", "verdict = reject;"));
    cr_assert(fx_run(&f, SINK_EV_MAIL));
    cr_assert_eq(f.res.verdict, SINK_REJECT);
    cr_assert_eq(f.res.code, 0);
    cr_assert_str_eq(f.res.binding, "b");
    fx_fini(&f);
}

Test(dispatch, server_decides)
{
    struct fixture f;
    fx_init(&f, SCRIPT("a", "rcpt", "10", "code = 250; text = carried;")
                    SCRIPT("b", "rcpt", "30000", ""));
    f.srv.verdict = SINK_REJECT;
    f.srv.code = 554;
    f.srv.text = "relay denied";
    cr_assert(fx_run(&f, SINK_EV_RCPT));
    cr_assert_str_eq(st_log, "a,server");
    cr_assert_eq(f.res.verdict, SINK_REJECT);
    cr_assert_str_eq(f.res.binding, "server");
    cr_assert_eq(f.res.code, 554);
    cr_assert_str_eq(f.res.text, "relay denied");
    /* the server refuses without a reply of its own: no stale text */
    f.srv.code = 0;
    cr_assert(fx_run(&f, SINK_EV_RCPT));
    cr_assert_eq(f.res.code, 0);
    cr_assert_eq(f.res.text[0], '\0');
    /* the server continues with its own reply: it replaces the carried one */
    f.srv.verdict = SINK_CONTINUE;
    f.srv.code = 250;
    f.srv.text = "server ok";
    cr_assert(fx_run(&f, SINK_EV_RCPT));
    cr_assert_eq(f.res.code, 250);
    cr_assert_str_eq(f.res.text, "server ok");
    fx_fini(&f);
}

Test(dispatch, consumed_skips_server)
{
    struct fixture f;
    fx_init(&f, SCRIPT("ok", "rcpt", "100", "verdict = consumed;"));
    f.srv.verdict = SINK_REJECT;
    cr_assert(fx_run(&f, SINK_EV_RCPT));
    cr_assert_eq(f.res.verdict, SINK_CONSUMED);
    cr_assert_eq(f.srv.calls, 0);
    fx_fini(&f);
}

Test(dispatch, disconnect_is_a_notification)
{
    struct fixture f;
    fx_init(&f, SCRIPT("a", "disconnect", "10", "verdict = reject; code = 550; text = x;")
                    SCRIPT("b", "disconnect", "30000", "verdict = drop;"));
    f.srv.verdict = SINK_TEMPFAIL;
    cr_assert(fx_run(&f, SINK_EV_DISCONNECT));
    cr_assert_str_eq(st_log, "a,server,b");
    cr_assert_eq(f.res.verdict, SINK_CONTINUE);
    cr_assert_eq(f.res.code, 0);
    cr_assert_eq(st_stat(&st_binding(f.e, "a")->stats->verdicts[SINK_REJECT]), 1, "still counted");
    fx_fini(&f);
}

Test(dispatch, response_may_rewrite_any_class)
{
    struct fixture f;
    fx_init(&f, SCRIPT("rw", "response", "10", "code = 550; enhanced = \"5.7.1\"; text = nope;"));
    f.d.reply_code = 250;
    f.d.reply_text = "2.0.0 Ok";
    cr_assert(sink_dispatch(f.r.call, SINK_EV_RESPONSE, &f.d, NULL, NULL, NULL, NULL, &f.res));
    cr_assert_eq(f.res.verdict, SINK_CONTINUE);
    cr_assert_eq(f.res.code, 550);
    cr_assert_str_eq(f.res.enhanced, "5.7.1");
    fx_fini(&f);
}

Test(dispatch, rule_skips_and_counts)
{
    struct fixture f;
    fx_init(&f,
            "binding r { event = mail; sink = \"builtin:script\"; priority = 1;"
            " rule = \"MAIL FROM=*@spam.example\"; properties { tag = r; verdict = reject; } }");
    cr_assert(fx_run(&f, SINK_EV_MAIL));
    cr_assert_str_eq(st_log, "server");
    cr_assert_eq(f.res.verdict, SINK_CONTINUE);
    f.d.sender = "bulk@SPAM.example";
    cr_assert(fx_run(&f, SINK_EV_MAIL));
    cr_assert_eq(f.res.verdict, SINK_REJECT);
    struct sink_stats *st = st_binding(f.e, "r")->stats;
    cr_assert_eq(st_stat(&st->skipped), 1);
    cr_assert_eq(st_stat(&st->calls), 1);
    fx_fini(&f);
}

Test(dispatch, ctx_knows_binding_and_event)
{
    struct fixture f;
    fx_init(&f, SCRIPT("who", "helo", "10", "verdict = continue;"));
    cr_assert(fx_run(&f, SINK_EV_HELO));
    struct sink_ctx *ctx = f.r.call->ctx; /* reused: still describes the last link */
    cr_assert_str_eq(sink_binding_name(ctx), "who");
    cr_assert_eq(sink_event(ctx), SINK_EV_HELO);
    cr_assert_str_eq(sink_helo(ctx), "client.example");
    fx_fini(&f);
}

/* The cost of one dispatch with one no-op sink: the sync path allocates
 * nothing and takes no lock.  Generous bound: sanitizers and busy hosts. */
Test(dispatch, cost)
{
    struct fixture f;
    fx_init(&f, "binding nop { event = command; sink = \"builtin:command\"; priority = 1;"
                " properties { verb = XNOP; } }");
    const int n = 200000;
    uint64_t t0 = clock_mono_ns();
    for (int i = 0; i < n; i++)
        sink_dispatch(f.r.call, SINK_EV_COMMAND, &f.d, NULL, NULL, NULL, NULL, &f.res);
    uint64_t per = (clock_mono_ns() - t0) / (uint64_t)n;
    cr_log_info("sink_dispatch with one no-op sink: %llu ns", (unsigned long long)per);
    cr_assert_lt(per, 20000);
    cr_assert_eq(st_stat(&st_binding(f.e, "nop")->stats->calls), (uint64_t)n);
    fx_fini(&f);
}
