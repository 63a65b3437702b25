/*
 * NAME
 *	test_rule - binding rules: syntax, globs, keys, missing data
 */
#include "tests/sinks/sink_test.h"

static struct sink_rule *compile(const char *text)
{
    char err[256] = "";
    struct sink_rule *r = sink_rule_compile(text, err, sizeof(err));
    cr_assert_not_null(r, "%s: %s", text, err);
    return r;
}

static void compile_fails(const char *text, const char *want)
{
    char err[256] = "";
    struct sink_rule *r = sink_rule_compile(text, err, sizeof(err));
    cr_assert_null(r, "%s compiled", text);
    cr_assert(strstr(err, want) != NULL, "%s: \"%s\" lacks \"%s\"", text, err, want);
}

static bool matches(const char *rule, enum sink_event ev, const struct sink_event_data *d)
{
    struct sink_rule *r = compile(rule);
    bool m = sink_rule_match(r, ev, d);
    sink_rule_free(r);
    return m;
}

Test(rule, glob)
{
    cr_assert(sink_glob_match("*", ""));
    cr_assert(sink_glob_match("*", "anything"));
    cr_assert(sink_glob_match("", ""));
    cr_assert_not(sink_glob_match("", "x"));
    cr_assert(sink_glob_match("abc", "ABC"));
    cr_assert(sink_glob_match("a?c", "aXc"));
    cr_assert_not(sink_glob_match("a?c", "ac"));
    cr_assert(sink_glob_match("*@example.com", "joe@EXAMPLE.com"));
    cr_assert_not(sink_glob_match("*@example.com", "joe@example.com.evil"));
    cr_assert(sink_glob_match("*example.com", "example.com"), "* matches nothing too");
    cr_assert(sink_glob_match("*example.com", "sub.example.com"));
    cr_assert(sink_glob_match("a*b", "aXbYb"), "backtracking");
    cr_assert_not(sink_glob_match("a*b", "aXbYc"));
    cr_assert(sink_glob_match("*a*b*", "xxaxxbxx"));
    cr_assert(sink_glob_match("**?", "z"));
    cr_assert_not(sink_glob_match("**?", ""));
    cr_assert(sink_glob_match("?*@*.example", "j@mx.example"));
    cr_assert_not(sink_glob_match("?*@*.example", "@mx.example"));
}

Test(rule, syntax_errors)
{
    compile_fails("", "empty rule");
    compile_fails("   ", "empty rule");
    compile_fails("FOO=x", "condition 1: unknown key \"FOO\"");
    compile_fails("MAIL FROM=*;TO=x", "condition 2: unknown key \"TO\"");
    compile_fails("MAIL FROM", "condition 1 (\"MAIL FROM\"): no '='");
    compile_fails("MAIL FROM=", "empty pattern");
    compile_fails("MAIL FROM=a,,b", "empty pattern");
    compile_fails("MAIL FROM=a, ", "empty pattern");
    compile_fails("MAIL FROM=a;;RCPT TO=b", "condition 2 is empty");
    compile_fails(";MAIL FROM=a", "condition 1 is empty");
    compile_fails("MAILFROM=a", "unknown key \"MAILFROM\"");
}

Test(rule, syntax_forms)
{
    sink_rule_free(compile("MAIL FROM=a;")); /* a trailing ; */
    sink_rule_free(compile("  mail   from = *@x.example , *@y.example ; rcpt to=*  "));
    sink_rule_free(compile("HELO=*;EHLO=*;CLIENT=192.0.2.*;VERB=XHELLO"));
}

Test(rule, mail_from)
{
    struct sink_event_data d = st_data(NULL);
    cr_assert(matches("MAIL FROM=*@example.org", SINK_EV_MAIL, &d));
    cr_assert(matches("mail from=*@EXAMPLE.ORG", SINK_EV_MAIL, &d), "key and value any case");
    cr_assert_not(matches("MAIL FROM=*@example.com", SINK_EV_MAIL, &d));
    cr_assert(matches("MAIL FROM=*@example.com,*@example.org", SINK_EV_MAIL, &d),
              "any alternative");
    cr_assert(matches("MAIL  FROM = x@y , sender@*", SINK_EV_MAIL, &d), "spaces");
    d.sender = "";
    cr_assert(matches("MAIL FROM=<>", SINK_EV_MAIL, &d), "the null sender");
    cr_assert(matches("MAIL FROM=*", SINK_EV_MAIL, &d));
    cr_assert_not(matches("MAIL FROM=?*", SINK_EV_MAIL, &d));
    d.sender = "x@y";
    cr_assert_not(matches("MAIL FROM=<>", SINK_EV_MAIL, &d));
    d.sender = NULL;
    cr_assert_not(matches("MAIL FROM=*", SINK_EV_HELO, &d), "no sender yet: false");
}

Test(rule, rcpt_to)
{
    struct sink_event_data d = st_data(NULL); /* candidate carol, accepted alice, bob */
    cr_assert(matches("RCPT TO=carol@*", SINK_EV_RCPT, &d), "at rcpt: the candidate");
    cr_assert_not(matches("RCPT TO=alice@*", SINK_EV_RCPT, &d), "not the accepted ones");
    cr_assert(matches("RCPT TO=*@b.example", SINK_EV_EOD, &d), "later: any accepted");
    cr_assert(matches("RCPT TO=*@a.example,*@z.example", SINK_EV_DATA, &d));
    cr_assert_not(matches("RCPT TO=carol@*", SINK_EV_EOD, &d));
    d.rcpt = NULL;
    cr_assert_not(matches("RCPT TO=*", SINK_EV_RCPT, &d));
    d.nrcpt = 0;
    cr_assert_not(matches("RCPT TO=*", SINK_EV_MAIL, &d), "no recipient yet: false");
}

Test(rule, helo_client_verb)
{
    struct sink_event_data d = st_data(NULL);
    cr_assert(matches("HELO=*.example", SINK_EV_MAIL, &d));
    cr_assert(matches("EHLO=CLIENT.example", SINK_EV_MAIL, &d), "EHLO is HELO");
    cr_assert(matches("CLIENT=192.0.2.?", SINK_EV_CONNECT, &d));
    cr_assert_not(matches("CLIENT=10.*", SINK_EV_CONNECT, &d));
    cr_assert(matches("VERB=mail", SINK_EV_COMMAND, &d));
    d.helo = NULL;
    d.verb = NULL;
    cr_assert_not(matches("HELO=*", SINK_EV_CONNECT, &d));
    cr_assert_not(matches("VERB=*", SINK_EV_CONNECT, &d));
}

Test(rule, all_conditions_must_hold)
{
    struct sink_event_data d = st_data(NULL);
    cr_assert(matches("MAIL FROM=*@example.org;RCPT TO=*@a.example,*@b.example", SINK_EV_EOD, &d));
    cr_assert_not(matches("MAIL FROM=*@example.org;RCPT TO=*@x.example", SINK_EV_EOD, &d));
    cr_assert_not(matches("MAIL FROM=*@example.org;RCPT TO=*@a.example", SINK_EV_MAIL,
                          &(struct sink_event_data){.sender = "a@example.org"}),
                  "RCPT TO at mail: no data, false");
    cr_assert(matches("CLIENT=*;CLIENT=192.*", SINK_EV_MAIL, &d), "a key may repeat");
}
