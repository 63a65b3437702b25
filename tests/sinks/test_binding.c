/*
 * NAME
 *	test_binding - bindings from configuration text, errors, chain order
 */
#include "tests/sinks/sink_test.h"

static void fails(const char *text, const char *want)
{
    char err[512] = "";
    st_setup();
    struct sink_engine *e = st_engine_err(text, err, sizeof(err));
    if (e != NULL)
        sink_engine_destroy(e);
    cr_assert_null(e, "accepted: %s", text);
    cr_assert(strstr(err, want) != NULL, "\"%s\" lacks \"%s\"", err, want);
}

Test(binding, the_issue_example)
{
    struct sink_engine *e = st_engine("binding \"no-spam\" {\n"
                                      "  event = \"mail\"; sink = \"builtin:access\";"
                                      " priority = 1000; rule = \"MAIL FROM=*@spam.example\";\n"
                                      "  enabled = true; deadline = \"2s\"; on_deadline = "
                                      "\"tempfail\";\n"
                                      "  properties { action = \"reject\"; text = \"sender "
                                      "refused\"; }\n"
                                      "}\n");
    cr_assert_eq(e->nb, 1);
    struct sink_binding *b = e->b[0];
    cr_assert_str_eq(b->name, "no-spam");
    cr_assert_eq(b->line, 1);
    cr_assert_eq(b->ev, SINK_EV_MAIL);
    cr_assert_str_eq(b->sink, "builtin:access");
    cr_assert_eq(b->priority, 1000);
    cr_assert_str_eq(b->rule_text, "MAIL FROM=*@spam.example");
    cr_assert(b->enabled);
    cr_assert_eq(b->deadline_ms, 2000);
    cr_assert_eq(b->on_deadline, SINK_TEMPFAIL);
    cr_assert_eq(sink_props_count(b->props), 2);
    cr_assert_str_eq(sink_props_get(b->props, "action"), "reject");
    cr_assert_str_eq(sink_props_get(b->props, "text"), "sender refused");
    cr_assert(sink_engine_bound(e, SINK_EV_MAIL));
    cr_assert_not(sink_engine_bound(e, SINK_EV_RCPT));
    sink_engine_destroy(e);
}

Test(binding, defaults)
{
    st_setup();
    struct sink_engine *e = st_engine("binding x { event = eod; sink = \"builtin:script\"; }");
    struct sink_binding *b = e->b[0];
    cr_assert_eq(b->priority, SINK_PRIORITY_DEFAULT);
    cr_assert(b->enabled);
    cr_assert_eq(b->deadline_ms, 5000);
    cr_assert_eq(b->on_deadline, SINK_TEMPFAIL);
    cr_assert_null(b->rule);
    cr_assert_eq(sink_props_count(b->props), 0);
    sink_engine_destroy(e);
}

static uint64_t deadline_of(const char *v)
{
    char text[256];
    snprintf(text, sizeof(text),
             "binding x { event = eod; sink = \"builtin:script\"; deadline = %s; }", v);
    struct sink_engine *e = st_engine(text);
    uint64_t ms = e->b[0]->deadline_ms;
    sink_engine_destroy(e);
    return ms;
}

Test(binding, deadlines)
{
    st_setup();
    cr_assert_eq(deadline_of("\"2s\""), 2000);
    cr_assert_eq(deadline_of("2s"), 2000);
    cr_assert_eq(deadline_of("1500ms"), 1500);
    cr_assert_eq(deadline_of("\"250ms\""), 250);
    cr_assert_eq(deadline_of("3"), 3000, "a plain number is seconds");
    cr_assert_eq(deadline_of("\"3\""), 3000);
    cr_assert_eq(deadline_of("1.5"), 1500);
    cr_assert_eq(deadline_of("1min"), 60000);
    cr_assert_eq(deadline_of("1h"), 3600000);
    fails("binding x { event = eod; sink = \"builtin:script\"; deadline = 0; }",
          "binding \"x\" (line 1): bad deadline 0");
    fails("binding x { event = eod; sink = \"builtin:script\"; deadline = 2h; }", "bad deadline");
    fails("binding x { event = eod; sink = \"builtin:script\"; deadline = \"soon\"; }",
          "bad deadline soon");
    fails("binding x { event = eod; sink = \"builtin:script\"; deadline = \"2 parsecs\"; }",
          "bad deadline");
}

Test(binding, on_deadline_and_enabled)
{
    st_setup();
    struct sink_engine *e = st_engine(
        "binding a { event = eod; sink = \"builtin:script\"; on_deadline = continue; }\n"
        "binding b { event = eod; sink = \"builtin:script\"; on_deadline = \"reject\"; }\n"
        "binding c { event = eod; sink = \"builtin:script\"; enabled = false; }\n"
        "binding d { event = eod; sink = \"builtin:script\"; enabled = \"true\"; }\n"
        "binding f { event = eod; sink = \"builtin:script\"; enabled = no; }\n");
    cr_assert_eq(st_binding(e, "a")->on_deadline, SINK_CONTINUE);
    cr_assert_eq(st_binding(e, "b")->on_deadline, SINK_REJECT);
    cr_assert_not(st_binding(e, "c")->enabled);
    cr_assert(st_binding(e, "d")->enabled);
    cr_assert_not(st_binding(e, "f")->enabled);
    cr_assert_eq(sink_engine_chain(e, SINK_EV_EOD)->n, 3, "disabled bindings are not in the chain");
    sink_engine_destroy(e);
    fails("binding a { event = eod; sink = \"builtin:script\"; on_deadline = later; }",
          "on_deadline must be \"tempfail\", \"continue\" or \"reject\"");
    fails("binding a { event = eod; sink = \"builtin:script\"; enabled = 3; }",
          "enabled must be true or false");
}

Test(binding, properties)
{
    st_setup();
    struct sink_engine *e = st_engine("binding p { event = eod; sink = \"builtin:script\";\n"
                                      "  properties { s = \"str\"; n = 12; b = true; f = 1.5;"
                                      " big = 64kb; t = 2s; w = bare; z = null; } }");
    struct sink_props *p = e->b[0]->props;
    cr_assert_str_eq(sink_props_get(p, "s"), "str");
    cr_assert_str_eq(sink_props_get(p, "n"), "12");
    cr_assert_eq(sink_props_get_int(p, "n", 0), 12);
    cr_assert_str_eq(sink_props_get(p, "b"), "true");
    cr_assert_eq(sink_props_get_bool(p, "b", 0), 1);
    cr_assert_str_eq(sink_props_get(p, "f"), "1.5");
    cr_assert_str_eq(sink_props_get(p, "big"), "65536");
    cr_assert_str_eq(sink_props_get(p, "t"), "2000");
    cr_assert_str_eq(sink_props_get(p, "w"), "bare");
    cr_assert_str_eq(sink_props_get(p, "z"), "");
    cr_assert_null(sink_props_get(p, "absent"));
    cr_assert_eq(sink_props_get_int(p, "s", -7), -7, "not a number: the default");
    cr_assert_eq(sink_props_get_bool(p, "s", 1), 1);
    cr_assert_eq(sink_props_count(p), 8);
    cr_assert_str_eq(sink_props_key(p, 0), "s");
    cr_assert_str_eq(sink_props_value(p, 1), "12");
    cr_assert_null(sink_props_key(p, 8));
    sink_engine_destroy(e);
    fails("binding p { event = eod; sink = \"builtin:script\";\n properties { a { b = 1; } } }",
          "binding \"p\" (line 2): property \"a\" must be a string, number or boolean");
    fails("binding p { event = eod; sink = \"builtin:script\"; properties { a = [1]; } }",
          "property \"a\" must be");
    fails("binding p { event = eod; sink = \"builtin:script\"; properties { a = 1; a = 2; } }",
          "property \"a\" given twice");
    fails("binding p { event = eod; sink = \"builtin:script\"; properties = 3; }",
          "properties must be a block");
}

Test(binding, errors)
{
    fails("\n\nbinding \"x\" {\n event = mail; sink = \"builtin:access\";\n prio = 3;\n}",
          "binding \"x\" (line 5): unknown key \"prio\"");
    fails("binding x { event = \"mial\"; sink = \"builtin:access\"; }",
          "binding \"x\" (line 1): unknown event \"mial\"");
    fails("binding x { event = mail; sink = \"builtin:access\"; priority = 40000; }",
          "binding \"x\" (line 1): bad priority 40000 (0-32767)");
    fails("binding x { event = mail; sink = \"builtin:access\"; priority = -1; }",
          "bad priority -1");
    fails("binding x { event = mail; sink = \"builtin:access\"; priority = \"high\"; }",
          "bad priority high");
    fails("binding x { sink = \"builtin:access\"; }", "binding \"x\" (line 1): no event");
    fails("binding x { event = mail; }", "binding \"x\" (line 1): no sink");
    fails("binding x { event = mail; sink = \"\"; }", "sink must be");
    fails("binding { event = mail; sink = \"builtin:access\"; }",
          "binding (line 1): a binding needs a name");
    fails("binding x { event = mail; event = rcpt; sink = \"builtin:access\"; }",
          "\"event\" given twice");
    fails("binding x { event = mail; sink = \"builtin:access\"; }\n"
          "binding x { event = rcpt; sink = \"builtin:access\"; }",
          "binding \"x\" (line 2): duplicate binding name (first at line 1)");
    fails("binding x { event = mail; sink = \"builtin:access\"; rule = \"MAIL FROM\"; }",
          "binding \"x\" (line 1): rule \"MAIL FROM\": condition 1 (\"MAIL FROM\"): no '='");
    fails("binding x { event = mail; sink = \"builtin:access\"; rule = \"SUBJECT=x\"; }",
          "unknown key \"SUBJECT\"");
    fails("binding x { event = mail; sink = \"builtin:nope\"; }",
          "binding \"x\" (line 1): sink builtin:nope: no such builtin sink (builtins: access, "
          "alias, command, delay, dkim_sign, header, noop, route)");
    fails("binding x { event = mail; sink = \"./no/such/module.so\"; }",
          "binding \"x\" (line 1): sink ./no/such/module.so: cannot load: ");
    fails("binding x { event = mail; sink = \"builtin:header\"; properties { name = a; value = "
          "b; } }",
          "binding \"x\" (line 1): sink builtin:header (module \"header\") does not handle event "
          "\"mail\" (it handles: eod)");
    fails("binding x { event = mail; sink = \"builtin:access\"; properties { action = maybe; } }",
          "binding \"x\" (line 1): sink builtin:access (module \"access\"): create failed: "
          "action \"maybe\"");
}

Test(binding, disabled_is_not_loaded)
{
    /* A disabled binding is checked but its sink not loaded: an operator
     * can switch off a binding whose module is missing. */
    struct sink_engine *e =
        st_engine("binding x { event = mail; sink = \"./missing.so\"; enabled = false; }");
    cr_assert_null(e->b[0]->mod);
    cr_assert_not(sink_engine_bound(e, SINK_EV_MAIL));
    sink_engine_destroy(e);
    fails("binding x { event = mail; sink = \"./missing.so\"; enabled = false; prio = 1; }",
          "unknown key \"prio\"");
}

Test(binding, chain_order)
{
    st_setup();
    struct sink_engine *e = st_engine(
        "binding late   { event = mail; sink = \"builtin:script\"; priority = 30000; }\n"
        "binding first  { event = mail; sink = \"builtin:script\"; priority = 1000; }\n"
        "binding deflt  { event = mail; sink = \"builtin:script\"; }\n"
        "binding second { event = mail; sink = \"builtin:script\"; priority = 1000; }\n"
        "binding just   { event = mail; sink = \"builtin:script\"; priority = 24574; }\n"
        "binding off    { event = mail; sink = \"builtin:script\"; priority = 1; enabled = no; }\n"
        "binding zero   { event = mail; sink = \"builtin:script\"; priority = 0; }\n"
        "binding other  { event = rcpt; sink = \"builtin:script\"; }\n");
    const struct sink_chain *c = sink_engine_chain(e, SINK_EV_MAIL);
    const char *want[] = {"zero", "first", "second", "just", "deflt", "late"};
    cr_assert_eq(c->n, 6);
    for (unsigned i = 0; i < c->n; i++)
        cr_assert_str_eq(c->link[i]->name, want[i], "link %u", i);
    cr_assert_eq(c->server_at, 4, "server after < 24575, before >= 24575");
    cr_assert_eq(sink_engine_chain(e, SINK_EV_RCPT)->server_at, 0, "a default binding runs after the server");

    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    sink_engine_print_bindings(e, f);
    fclose(f);
    const char *mail = strstr(out, "mail:");
    cr_assert_not_null(mail);
    const char *order[] = {"zero", "first", "second", "just", "server", "deflt", "late", "off"};
    const char *p = mail;
    for (unsigned i = 0; i < 8; i++) {
        const char *q = strstr(p, order[i]);
        cr_assert_not_null(q, "%s after %s in:\n%s", order[i], i ? order[i - 1] : "mail:", out);
        p = q;
    }
    cr_assert_not_null(strstr(out, "(disabled, line 6)"));
    cr_assert_not_null(strstr(out, "connect: no bindings"));
    free(out);
    sink_engine_destroy(e);
}

Test(binding, builtin_names_list_the_table)
{
    const char *names = sink_builtin_names();
    cr_assert_str_eq(names, "access, alias, command, delay, dkim_sign, header, noop, route");
    /* every name listed is found, and nothing else is */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", names);
    char *save = NULL;
    int n = 0;
    for (char *t = strtok_r(buf, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save), n++)
        cr_assert_not_null(sink_builtin_find(t), "%s listed but not found", t);
    cr_assert_eq(n, 8);
}

Test(binding, transport_events_fire_without_a_server_link)
{
    st_setup();
    struct sink_engine *e =
        st_engine("binding r { event = route; sink = \"builtin:script\"; deadline = 1500ms;"
                  " rule = \"RCPT TO=*@x.example\"; properties { k = v; } }\n"
                  "binding a { event = auth; sink = \"builtin:script\"; }");
    cr_assert(sink_engine_bound(e, SINK_EV_ROUTE));
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    sink_engine_print_bindings(e, f);
    fclose(f);
    cr_assert_not_null(strstr(out, "\nroute:\n"), "route fires: not reserved:\n%s", out);
    cr_assert_not_null(strstr(out, "precategorize: no bindings"), "%s", out);
    cr_assert_not_null(strstr(out, "\nauth:\n"), "auth fires (core/smtpd/smtp_auth.c):\n%s", out);
    cr_assert_null(strstr(out, "(reserved"), "no event is reserved any more:\n%s", out);
    cr_assert_null(strstr(out, "bounce: (reserved"), "%s", out);
    cr_assert_not_null(strstr(out, "deadline 1500ms on_deadline tempfail"), "%s", out);
    cr_assert_not_null(strstr(out, "rule \"RCPT TO=*@x.example\""), "%s", out);
    cr_assert_not_null(strstr(out, "properties k=\"v\""), "%s", out);
    char *route = strstr(out, "route:"), *next = strstr(route, "out_session:");
    cr_assert_not_null(next);
    *next = '\0';
    cr_assert_null(strstr(route, "server's own handler"), "no server link at a transport event");
    cr_assert_not_null(strstr(route, "  24575  r "), "the binding itself: %s", route);
    free(out);
    sink_engine_destroy(e);
}

Test(binding, no_bindings)
{
    char err[64];
    struct sink_engine *e = sink_engine_create(NULL, err, sizeof(err));
    cr_assert_not_null(e);
    for (int ev = 0; ev < SINK_EV_COUNT; ev++)
        cr_assert_not(sink_engine_bound(e, ev));
    sink_engine_destroy(e);
    e = st_engine("workers = 2; other { x = 1; }");
    cr_assert_eq(e->nb, 0);
    sink_engine_destroy(e);
}

Test(binding, event_names)
{
    const char *names[] = {
        "connect",        "helo",      "mail",        "rcpt",        "data",          "eod",
        "command",        "response",  "disconnect",  "submission",  "precategorize", "categorize",
        "postcategorize", "route",     "out_session", "out_message", "out_rcpt",      "out_data",
        "out_quit",       "delivered", "deferred",    "bounce",      "auth"};
    cr_assert_eq(sizeof(names) / sizeof(names[0]), SINK_EV_COUNT);
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
        cr_assert_str_eq(sink_event_name(ev), names[ev]);
        cr_assert_eq(sink_event_parse(names[ev]), ev);
    }
    cr_assert_eq(sink_event_parse("MAIL"), -1, "event names are lower case");
    cr_assert_str_eq(sink_event_name(SINK_EV_COUNT), "?");
}
