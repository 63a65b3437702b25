/*
 * NAME
 *	test_builtin - builtin:access, builtin:header, builtin:command
 *	(builtin:delay is in test_async.c)
 */
#include "tests/sinks/sink_test.h"

struct fixture {
    struct sink_engine *e;
    struct st_rig r;
    struct st_server srv;
    struct st_session s;
    struct sink_event_data d;
    struct sink_result res;
};

static void fx_init(struct fixture *f, const char *conf)
{
    st_setup();
    memset(f, 0, sizeof(*f));
    f->e = st_engine(conf);
    st_rig_init(&f->r, f->e);
    f->s.body = "Subject: hi\r\n\r\nbody\r\n";
    f->s.piece = 100;
    f->d = st_data(&f->s);
}

static void fx_fini(struct fixture *f)
{
    st_rig_fini(&f->r, f->e);
}

static void fx_run(struct fixture *f, enum sink_event ev)
{
    st_log[0] = '\0';
    f->srv.calls = 0;
    cr_assert(sink_dispatch(f->r.call, ev, &f->d, st_server_fn, &f->srv, NULL, NULL, &f->res));
}

static void create_fails(const char *conf, const char *want)
{
    char err[512] = "";
    struct sink_engine *e = st_engine_err(conf, err, sizeof(err));
    cr_assert_null(e, "accepted: %s", conf);
    cr_assert(strstr(err, want) != NULL, "\"%s\" lacks \"%s\"", err, want);
}

#define ACCESS(ev, rule, props)                                                                    \
    "binding acc { event = " ev "; sink = \"builtin:access\"; priority = 1000; rule = \"" rule     \
    "\"; properties { " props " } }"

Test(access, reject)
{
    struct fixture f;
    fx_init(&f, ACCESS("mail", "MAIL FROM=*@spam.example",
                       "action = \"reject\"; text = \"sender refused\";"));
    fx_run(&f, SINK_EV_MAIL);
    cr_assert_eq(f.res.verdict, SINK_CONTINUE, "rule does not match");
    cr_assert_eq(f.srv.calls, 1);
    f.d.sender = "x@spam.example";
    fx_run(&f, SINK_EV_MAIL);
    cr_assert_eq(f.res.verdict, SINK_REJECT);
    cr_assert_eq(f.res.code, 550);
    cr_assert_str_eq(f.res.enhanced, "5.7.1");
    cr_assert_str_eq(f.res.text, "sender refused");
    cr_assert_str_eq(f.res.binding, "acc");
    cr_assert_eq(f.srv.calls, 0);
    fx_fini(&f);
}

Test(access, defaults_and_overrides)
{
    struct fixture f;
    fx_init(&f, ACCESS("rcpt", "RCPT TO=*@b.example,*@c.example", ""));
    fx_run(&f, SINK_EV_RCPT); /* candidate carol@c.example */
    cr_assert_eq(f.res.verdict, SINK_REJECT, "action defaults to reject");
    cr_assert_str_eq(f.res.text, "Access denied");
    fx_fini(&f);
    fx_init(&f, ACCESS("rcpt", "RCPT TO=*", "action = tempfail;"));
    fx_run(&f, SINK_EV_RCPT);
    cr_assert_eq(f.res.verdict, SINK_TEMPFAIL);
    cr_assert_eq(f.res.code, 450);
    cr_assert_str_eq(f.res.enhanced, "4.7.1");
    cr_assert_str_eq(f.res.text, "Try again later");
    fx_fini(&f);
    fx_init(&f, ACCESS("rcpt", "RCPT TO=*",
                       "action = reject; code = 554; enhanced = \"5.7.26\"; text = dmarc;"));
    fx_run(&f, SINK_EV_RCPT);
    cr_assert_eq(f.res.code, 554);
    cr_assert_str_eq(f.res.enhanced, "5.7.26");
    fx_fini(&f);
    create_fails(ACCESS("mail", "MAIL FROM=*", "action = maybe;"), "action \"maybe\"");
    create_fails(ACCESS("mail", "MAIL FROM=*", "action = reject; code = 450;"),
                 "code 450 does not fit action reject (5xx)");
    create_fails(ACCESS("mail", "MAIL FROM=*", "action = tempfail; enhanced = \"5.7.1\";"),
                 "enhanced \"5.7.1\" is not 4.x.y");
    create_fails("binding a { event = eod; sink = \"builtin:access\"; }",
                 "does not handle event \"eod\" (it handles: mail, rcpt)");
}

Test(access, accept_skips_the_server)
{
    struct fixture f;
    fx_init(&f, ACCESS("rcpt", "CLIENT=192.0.2.*", "action = accept;"));
    f.srv.verdict = SINK_REJECT; /* e.g. relay denied */
    f.srv.code = 554;
    fx_run(&f, SINK_EV_RCPT);
    cr_assert_eq(f.res.verdict, SINK_CONSUMED);
    cr_assert_eq(f.srv.calls, 0, "relay control skipped");
    cr_assert_eq(f.res.code, 0, "no text: the server's usual 250");
    fx_fini(&f);
    fx_init(&f, ACCESS("rcpt", "CLIENT=*", "action = accept; text = \"welcome\";"));
    fx_run(&f, SINK_EV_RCPT);
    cr_assert_eq(f.res.code, 250);
    cr_assert_str_eq(f.res.enhanced, "2.1.5");
    cr_assert_str_eq(f.res.text, "welcome");
    fx_fini(&f);
    fx_init(&f, ACCESS("mail", "CLIENT=*", "action = accept; text = \"welcome\";"));
    fx_run(&f, SINK_EV_MAIL);
    cr_assert_str_eq(f.res.enhanced, "2.1.0");
    fx_fini(&f);
}

Test(header, adds_at_eod)
{
    struct fixture f;
    fx_init(&f, "binding h { event = eod; sink = \"builtin:header\";"
                " properties { name = \"X-Scanned\"; value = \"yes\"; } }");
    fx_run(&f, SINK_EV_EOD);
    cr_assert_eq(f.res.verdict, SINK_CONTINUE);
    cr_assert_eq(f.s.nedit, 1);
    cr_assert_eq(f.s.edit[0].op, SINK_EDIT_ADD);
    cr_assert_str_eq(f.s.edit[0].name, "X-Scanned");
    cr_assert_str_eq(f.s.edit[0].value, "yes");
    cr_assert_eq(f.srv.calls, 1);
    fx_fini(&f);
    create_fails("binding h { event = eod; sink = \"builtin:header\"; properties { value = v; } }",
                 "properties name and value are required");
    create_fails("binding h { event = eod; sink = \"builtin:header\";"
                 " properties { name = \"X Bad\"; value = v; } }",
                 "name \"X Bad\" is not a header field name");
    create_fails("binding h { event = eod; sink = \"builtin:header\";"
                 " properties { name = X; value = \"a\\nb\"; } }",
                 "value has a control character");
}

#define COMMAND(props)                                                                             \
    "binding cmd { event = command; sink = \"builtin:command\"; priority = 100; properties "       \
    "{ " props " } }"

Test(command, answers_its_verb)
{
    struct fixture f;
    fx_init(&f, COMMAND("verb = \"XHELLO\"; code = 250; text = \"hello from a sink\";"));
    f.d.verb = "XHELLO";
    f.d.args = "";
    fx_run(&f, SINK_EV_COMMAND);
    cr_assert_eq(f.res.verdict, SINK_CONSUMED);
    cr_assert_eq(f.res.code, 250);
    cr_assert_str_eq(f.res.text, "hello from a sink");
    cr_assert_eq(f.srv.calls, 0, "the server never sees the verb");
    f.d.verb = "NOOP";
    fx_run(&f, SINK_EV_COMMAND);
    cr_assert_eq(f.res.verdict, SINK_CONTINUE);
    cr_assert_eq(f.srv.calls, 1);
    f.d.verb = "xhello";
    fx_run(&f, SINK_EV_COMMAND);
    cr_assert_eq(f.res.verdict, SINK_CONSUMED, "any case");
    fx_fini(&f);
}

Test(command, codes_make_verdicts)
{
    struct fixture f;
    fx_init(&f, COMMAND("verb = XNO; code = 550; enhanced = \"5.5.1\"; text = \"not here\";"));
    f.d.verb = "XNO";
    fx_run(&f, SINK_EV_COMMAND);
    cr_assert_eq(f.res.verdict, SINK_REJECT);
    cr_assert_eq(f.res.code, 550);
    cr_assert_str_eq(f.res.enhanced, "5.5.1");
    fx_fini(&f);
    fx_init(&f, COMMAND("verb = XLATER; code = 421;"));
    f.d.verb = "XLATER";
    fx_run(&f, SINK_EV_COMMAND);
    cr_assert_eq(f.res.verdict, SINK_TEMPFAIL);
    cr_assert_str_eq(f.res.text, "Ok");
    fx_fini(&f);
    create_fails(COMMAND("code = 250;"), "property verb is required");
    create_fails(COMMAND("verb = X; code = 700;"), "code 700 is not 200..599");
}
