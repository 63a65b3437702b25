/*
 * NAME
 *	test_route - the transport table: values, lookup precedence, retry
 */
#include <criterion/criterion.h>

#include "core/queue/route.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static char err[512];

/* A table from configuration text, as cfg_load() would leave cfg->tree. */
static struct route_table *table(const char *text, struct cfg_node **tree)
{
    char perr[256];
    *tree = cfg_parse(text, strlen(text), "sluice.conf", perr, sizeof(perr));
    cr_assert_not_null(*tree, "cfg_parse: %s", perr);
    struct cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.tree = *tree;
    err[0] = '\0';
    return route_table_create(&cfg, err, sizeof(err));
}

static void table_fails(const char *text, const char *want)
{
    struct cfg_node *tree;
    struct route_table *t = table(text, &tree);
    cr_assert_null(t, "accepted: %s", text);
    cr_assert(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
    cfg_node_free(tree);
}

static void parse_ok(const char *spec, struct route *r)
{
    err[0] = '\0';
    cr_assert_eq(route_parse(spec, r, err, sizeof(err)), 0, "%s: %s", spec, err);
}

static void parse_fails(const char *spec)
{
    struct route r;
    err[0] = '\0';
    cr_assert_eq(route_parse(spec, &r, err, sizeof(err)), -EINVAL, "accepted: %s", spec);
    cr_assert_neq(err[0], '\0', "no message for %s", spec);
}

static void roundtrip(const char *spec, const char *want)
{
    struct route r;
    char out[600];
    parse_ok(spec, &r);
    route_format(&r, out, sizeof(out));
    cr_assert_str_eq(out, want, "%s", spec);
}

Test(route, parse_smtp)
{
    struct route r;
    parse_ok("smtp:127.0.0.1:2526", &r);
    cr_assert_eq(r.kind, ROUTE_SMTP);
    cr_assert_str_eq(r.host, "127.0.0.1");
    cr_assert_eq(r.port, 2526);
    cr_assert_eq(r.tls, ROUTE_TLS_MAY);

    parse_ok("smtp:mail.example.test", &r);
    cr_assert_str_eq(r.host, "mail.example.test");
    cr_assert_eq(r.port, 25);

    parse_ok("smtp:[::1]:2525 tls=verify", &r);
    cr_assert_str_eq(r.host, "::1");
    cr_assert_eq(r.port, 2525);
    cr_assert_eq(r.tls, ROUTE_TLS_VERIFY);

    parse_ok("  SMTP:[2001:db8::1]  tls=none ", &r);
    cr_assert_str_eq(r.host, "2001:db8::1");
    cr_assert_eq(r.port, 25);
    cr_assert_eq(r.tls, ROUTE_TLS_NONE);
}

Test(route, parse_others)
{
    struct route r;
    parse_ok("mx", &r);
    cr_assert_eq(r.kind, ROUTE_MX);
    cr_assert_eq(r.port, 25);
    cr_assert_str_eq(r.host, "");
    parse_ok("mx:2600 tls=encrypt", &r);
    cr_assert_eq(r.kind, ROUTE_MX);
    cr_assert_eq(r.port, 2600);
    cr_assert_eq(r.tls, ROUTE_TLS_ENCRYPT);
    parse_ok("maildir", &r);
    cr_assert_eq(r.kind, ROUTE_MAILDIR);
    parse_ok("discard", &r);
    cr_assert_eq(r.kind, ROUTE_DISCARD);

    parse_ok("error:5.1.2 no mail for this domain", &r);
    cr_assert_eq(r.kind, ROUTE_ERROR);
    cr_assert_eq(r.error_code, 550);
    cr_assert_str_eq(r.error_status, "5.1.2");
    cr_assert_str_eq(r.error_text, "no mail for this domain");
    parse_ok("error:4.3.2", &r);
    cr_assert_eq(r.error_code, 450);
    cr_assert_str_eq(r.error_status, "4.3.2");
    cr_assert_str_eq(r.error_text, "mail for this domain is not accepted");
    /* the text is the text, even when it looks like an option */
    parse_ok("error:5.7.1 tls=verify is not a thing here", &r);
    cr_assert_str_eq(r.error_text, "tls=verify is not a thing here");
}

Test(route, parse_rejects)
{
    parse_fails("");
    parse_fails("   ");
    parse_fails("smtp:");
    parse_fails("smtp:host:0");
    parse_fails("smtp:host:65536");
    parse_fails("smtp:host:25x");
    parse_fails("smtp:host:");
    parse_fails("smtp:::1");         /* IPv6 without brackets */
    parse_fails("smtp:[::1");        /* no ']' */
    parse_fails("smtp:[::1]x");      /* junk after ']' */
    parse_fails("smtp:[not-v6]:25"); /* brackets hold IPv6 only */
    parse_fails("smtp:bad host");    /* "host" is no option */
    parse_fails("smtp:bad..host");
    parse_fails("smtp:h/x");
    parse_fails("smtp:h tls=sometimes");
    parse_fails("smtp:h tls=may tls=verify");
    parse_fails("mx:0");
    parse_fails("mx:x");
    parse_fails("maildir tls=verify"); /* tls only for smtp and mx */
    parse_fails("discard now");
    parse_fails("error:2.0.0 fine");
    parse_fails("error:5.1");
    parse_fails("error:5.1.1234");
    parse_fails("error:");
    parse_fails("error:5.1.1 bad\x01text");
    parse_fails("lmtp:host");
    parse_fails("maildirx");
}

Test(route, format_roundtrip)
{
    roundtrip("smtp:127.0.0.1:2526", "smtp:127.0.0.1:2526");
    roundtrip("smtp:relay.example.test", "smtp:relay.example.test:25");
    roundtrip("smtp:[::1]:2525 tls=verify", "smtp:[::1]:2525 tls=verify");
    roundtrip("smtp:h tls=may", "smtp:h:25");
    roundtrip("mx", "mx");
    roundtrip("mx:2600 tls=none", "mx:2600 tls=none");
    roundtrip("maildir", "maildir");
    roundtrip("discard", "discard");
    roundtrip("error:5.1.2 go away", "error:5.1.2 go away");
    roundtrip("error:4.7.0", "error:4.7.0 mail for this domain is not accepted");
    /* a short buffer is cut, not overrun */
    struct route r;
    char small[6];
    parse_ok("smtp:relay.example.test", &r);
    memset(small, 'x', sizeof(small));
    route_format(&r, small, sizeof(small));
    cr_assert_str_eq(small, "smtp:");
}

static const char conf[] =
    "listen = \"127.0.0.1:2525\";\n"
    "relayhost = \"relay.example.test:2526\";\n"
    "transport {\n"
    "  \"localhost\" = \"maildir\";\n"
    "  \".example.test\" = \"smtp:127.0.0.1:2526\";\n"
    "  \".deep.example.test\" = \"smtp:127.0.0.2\";\n"
    "  \"Exact.Example.Test\" = \"discard\";\n"
    "  \"example.org\" = \"mx tls=verify\";\n"
    "  \"bad.test\" = \"error:5.1.2 no mail for this domain\";\n"
    "}\n"
    "retry { min = 5m; max = \"4h\"; max_age = \"5d\"; delay_warning = 4h }\n";

Test(route, lookup_precedence)
{
    struct cfg_node *tree;
    struct route_table *t = table(conf, &tree);
    cr_assert_not_null(t, "%s", err);
    struct route r;

    route_lookup(t, "localhost", &r);
    cr_assert_eq(r.kind, ROUTE_MAILDIR);
    route_lookup(t, "LocalHost", &r); /* any case */
    cr_assert_eq(r.kind, ROUTE_MAILDIR);

    /* a suffix covers the domains below it, not itself */
    route_lookup(t, "a.example.test", &r);
    cr_assert_eq(r.kind, ROUTE_SMTP);
    cr_assert_str_eq(r.host, "127.0.0.1");
    cr_assert_eq(r.port, 2526);
    route_lookup(t, "example.test", &r);
    cr_assert_eq(r.kind, ROUTE_SMTP);
    cr_assert_str_eq(r.host, "relay.example.test", "example.test itself goes to relayhost");
    route_lookup(t, "notexample.test", &r);
    cr_assert_str_eq(r.host, "relay.example.test", "a suffix matches at a dot only");

    /* the longest suffix wins, whatever the order in the file */
    route_lookup(t, "x.deep.example.test", &r);
    cr_assert_str_eq(r.host, "127.0.0.2");
    cr_assert_eq(r.port, 25);
    route_lookup(t, "deep.example.test", &r);
    cr_assert_str_eq(r.host, "127.0.0.1", "deep.example.test is under .example.test");

    /* exact beats any suffix */
    route_lookup(t, "exact.example.test", &r);
    cr_assert_eq(r.kind, ROUTE_DISCARD);
    route_lookup(t, "exact.example.test.", &r); /* the root dot */
    cr_assert_eq(r.kind, ROUTE_DISCARD);

    route_lookup(t, "example.org", &r);
    cr_assert_eq(r.kind, ROUTE_MX);
    cr_assert_eq(r.tls, ROUTE_TLS_VERIFY);
    route_lookup(t, "bad.test", &r);
    cr_assert_eq(r.kind, ROUTE_ERROR);
    cr_assert_eq(r.error_code, 550);

    /* nothing matches: relayhost */
    route_lookup(t, "elsewhere.test", &r);
    cr_assert_eq(r.kind, ROUTE_SMTP);
    cr_assert_str_eq(r.host, "relay.example.test");
    cr_assert_eq(r.port, 2526);

    cr_assert(route_is_local(t, "localhost"));
    cr_assert(route_is_local(t, "LOCALHOST"));
    cr_assert_not(route_is_local(t, "a.example.test"));
    cr_assert_not(route_is_local(t, "elsewhere.test"));

    const struct route_retry *rr = route_retry(t);
    cr_assert_eq(rr->min_ms, 5 * 60 * 1000ull, "5m is five minutes: %llu",
                 (unsigned long long)rr->min_ms);
    cr_assert_eq(rr->max_ms, 4 * 3600 * 1000ull);
    cr_assert_eq(rr->max_age_ms, 5 * 86400 * 1000ull);
    cr_assert_eq(rr->delay_warning_ms, 4 * 3600 * 1000ull);
    route_table_destroy(t);
    cfg_node_free(tree);
}

Test(route, defaults_and_mx)
{
    struct cfg_node *tree;
    struct route_table *t = table("workers = 1;\n", &tree);
    cr_assert_not_null(t, "%s", err);
    struct route r;
    route_lookup(t, "example.test", &r);
    cr_assert_eq(r.kind, ROUTE_MX);
    cr_assert_eq(r.port, 25);
    cr_assert_eq(r.tls, ROUTE_TLS_MAY);
    /* built in: localhost is delivered to Maildir unless the table names it */
    cr_assert(route_is_local(t, "localhost"));
    cr_assert(route_is_local(t, "LocalHost"));
    cr_assert_not(route_is_local(t, "x.localhost"));
    const struct route_retry *rr = route_retry(t);
    cr_assert_eq(rr->min_ms, 5 * 60 * 1000ull);
    cr_assert_eq(rr->max_ms, 4 * 3600 * 1000ull);
    cr_assert_eq(rr->max_age_ms, 5 * 86400 * 1000ull);
    cr_assert_eq(rr->delay_warning_ms, 0);
    route_table_destroy(t);
    cfg_node_free(tree);

    /* relayhost "" is by MX too; no tree at all is the defaults */
    t = table("relayhost = \"\";\n", &tree);
    cr_assert_not_null(t, "%s", err);
    route_lookup(t, "example.test", &r);
    cr_assert_eq(r.kind, ROUTE_MX);
    route_table_destroy(t);
    cfg_node_free(tree);
    struct cfg empty;
    memset(&empty, 0, sizeof(empty));
    t = route_table_create(&empty, err, sizeof(err));
    cr_assert_not_null(t);
    route_table_destroy(t);
}

Test(route, relayhost_forms)
{
    static const struct {
        const char *conf;
        enum route_kind kind;
        const char *host;
        unsigned port;
    } cases[] = {
        {"relayhost = \"10.0.0.1\";", ROUTE_SMTP, "10.0.0.1", 25},
        {"relayhost = \"[::1]:2526\";", ROUTE_SMTP, "::1", 2526},
        {"relayhost = \"smtp:relay.test:587 tls=encrypt\";", ROUTE_SMTP, "relay.test", 587},
        {"relayhost = \"mx:2600\";", ROUTE_MX, "", 2600},
        {"relayhost = \"discard\";", ROUTE_DISCARD, "", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cfg_node *tree;
        struct route_table *t = table(cases[i].conf, &tree);
        cr_assert_not_null(t, "%s: %s", cases[i].conf, err);
        struct route r;
        route_lookup(t, "anything.test", &r);
        cr_assert_eq(r.kind, cases[i].kind, "%s", cases[i].conf);
        cr_assert_str_eq(r.host, cases[i].host, "%s", cases[i].conf);
        cr_assert_eq(r.port, cases[i].port, "%s", cases[i].conf);
        route_table_destroy(t);
        cfg_node_free(tree);
    }
}

Test(route, bad_entries_name_line_and_key)
{
    table_fails(
        "workers = 1;\ntransport {\n  \"ok.test\" = \"mx\";\n  \"x.test\" = \"smtp:h:99999\";\n}\n",
        "line 4: transport \"x.test\": ");
    table_fails("transport {\n\"x.test\" = \"smtp:h:99999\"; }", "not a port");
    table_fails("transport {\n\n \"bad domain\" = \"mx\";\n}", "line 3: transport \"bad domain\"");
    table_fails("transport { \"..x\" = \"mx\"; }", "not a domain");
    table_fails("transport { \".\" = \"mx\"; }", "not a domain");
    table_fails("transport {\n\"a.test\" = \"mx\";\n\"A.TEST\" = \"maildir\";\n}",
                "line 3: transport \"A.TEST\": given twice");
    table_fails("transport { \"a.test\" = 25; }", "expected a string");
    table_fails("transport = \"mx\";", "transport: expected a block");
    table_fails("transport { \"a.test\" = \"lmtp:x\"; }", "transport \"a.test\": \"lmtp:x\"");
    table_fails("\n\nrelayhost = \"host:0\";", "line 3: relayhost: ");
    table_fails("relayhost = \"a:1\";\nrelayhost = \"b:2\";", "line 2: relayhost given twice");
    table_fails("relayhost = 5;", "relayhost: expected a string");
    table_fails("retry {\n min = \"5 minutes\";\n}", "line 2: retry: min: expected a duration");
    table_fails("retry {\n min = 5mb;\n}", "retry: min: expected a duration");
    table_fails("retry {\n often = 5s;\n}", "line 2: retry: unknown key \"often\"");
    table_fails("retry { min = 0; }", "retry: min must be above 0");
    table_fails("retry { min = 1h; max = 5m; }", "max is below min");
    table_fails("retry { max_age = 400d; }", "more than a year");
    table_fails("retry { min = 1s; min = 2s; }", "min given twice");
    table_fails("retry = 5;", "retry: expected a block");
}

Test(route, retry_units)
{
    static const struct {
        const char *v;
        uint64_t ms;
    } cases[] = {
        {"300", 300000},   {"\"300\"", 300000}, {"1500ms", 1500},  {"\"90s\"", 90000},
        {"2min", 120000},  {"\"2m\"", 120000},  {"1.5h", 5400000}, {"1d", 86400000},
        {"1w", 604800000}, {"\"0.5s\"", 500},   {"2H", 7200000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "retry { min = %s; max = 2w; }", cases[i].v);
        struct cfg_node *tree;
        struct route_table *t = table(text, &tree);
        cr_assert_not_null(t, "%s: %s", text, err);
        cr_assert_eq(route_retry(t)->min_ms, cases[i].ms, "%s: %llu", cases[i].v,
                     (unsigned long long)route_retry(t)->min_ms);
        route_table_destroy(t);
        cfg_node_free(tree);
    }
}

Test(route, backoff)
{
    struct route_retry r = {.min_ms = 300000, .max_ms = 4 * 3600000ull};
    cr_assert_eq(route_backoff_ms(&r, 1), 300000);
    cr_assert_eq(route_backoff_ms(&r, 2), 600000);
    cr_assert_eq(route_backoff_ms(&r, 3), 1200000);
    cr_assert_eq(route_backoff_ms(&r, 4), 2400000);
    cr_assert_eq(route_backoff_ms(&r, 6), 9600000);
    cr_assert_eq(route_backoff_ms(&r, 7), 4 * 3600000ull, "capped at max");
    cr_assert_eq(route_backoff_ms(&r, 50), 4 * 3600000ull);
    /* no overflow past 2^64: still the cap */
    cr_assert_eq(route_backoff_ms(&r, 64), 4 * 3600000ull);
    cr_assert_eq(route_backoff_ms(&r, 65), 4 * 3600000ull);
    cr_assert_eq(route_backoff_ms(&r, UINT32_MAX), 4 * 3600000ull);
    /* attempts 0 is treated as the first */
    cr_assert_eq(route_backoff_ms(&r, 0), 300000);
    /* nondecreasing all the way */
    uint64_t prev = 0;
    for (uint32_t a = 1; a < 200; a++) {
        uint64_t d = route_backoff_ms(&r, a);
        cr_assert_geq(d, prev);
        cr_assert_leq(d, r.max_ms);
        prev = d;
    }
    struct route_retry big = {.min_ms = UINT64_MAX / 2 + 1, .max_ms = UINT64_MAX};
    cr_assert_eq(route_backoff_ms(&big, 2), UINT64_MAX);
}

Test(route, localhost_can_be_routed_elsewhere)
{
    struct cfg_node *tree;
    struct route_table *t = table("transport { \"localhost\" = \"smtp:127.0.0.1:2526\"; }\n", &tree);
    cr_assert_not_null(t, "%s", err);
    cr_assert_not(route_is_local(t, "localhost"));
    route_table_destroy(t);
    cfg_node_free(tree);
}
