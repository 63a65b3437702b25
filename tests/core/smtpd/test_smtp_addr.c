/*
 * NAME
 *	test_smtp_addr - paths, ESMTP parameters, HELO names
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/smtpd/smtp_int.h"

static enum smtp_addr_err parse(const char *in, bool allow_null, struct smtp_path *out,
                                const char **rest)
{
    const char *p = in;
    enum smtp_addr_err e = smtp_path_parse(&p, allow_null, out);
    if (rest)
        *rest = p;
    return e;
}

Test(smtp_addr, good_paths)
{
    struct smtp_path pa;
    const char *rest;
    cr_assert_eq(parse("<a@b.example> SIZE=1", false, &pa, &rest), SMTP_ADDR_OK);
    cr_assert_str_eq(pa.addr, "a@b.example");
    cr_assert_eq(pa.local_len, 1);
    cr_assert(pa.has_domain && !pa.literal && !pa.non_ascii);
    cr_assert_str_eq(rest, " SIZE=1");

    cr_assert_eq(parse("<>", true, &pa, &rest), SMTP_ADDR_OK);
    cr_assert_str_eq(pa.addr, "");
    cr_assert_eq(pa.len, 0);

    cr_assert_eq(parse("<@r1.example,@r2.example:u.v@d.example>", false, &pa, NULL), SMTP_ADDR_OK);
    cr_assert_str_eq(pa.addr, "u.v@d.example"); /* the route is dropped */

    cr_assert_eq(parse("<\"x y;z\\\"\"@d.example>", false, &pa, NULL), SMTP_ADDR_OK);
    cr_assert_str_eq(pa.addr, "\"x y;z\\\"\"@d.example");
    cr_assert_eq(pa.local_len, 9);

    cr_assert_eq(parse("<u@[192.0.2.1]>", false, &pa, NULL), SMTP_ADDR_OK);
    cr_assert(pa.literal);
    cr_assert_eq(parse("<u@[IPv6:2001:db8::1]>", false, &pa, NULL), SMTP_ADDR_OK);
    cr_assert(pa.literal);

    cr_assert_eq(parse("<Postmaster>", false, &pa, NULL), SMTP_ADDR_OK);
    cr_assert(!pa.has_domain);
    cr_assert_str_eq(pa.addr, "Postmaster");

    cr_assert_eq(parse("<user+tag!x%y@sub-1.d.example>", false, &pa, NULL), SMTP_ADDR_OK);
    cr_assert_eq(parse("<üser@dömain.example>", false, &pa, NULL), SMTP_ADDR_OK);
    cr_assert(pa.non_ascii);
}

Test(smtp_addr, bad_paths)
{
    static const char *const bad[] = {
        "a@b.example",  /* no brackets */
        "<a@b.example", /* unterminated */
        "<;sleep 5;>",  /* CVE-2020-7247 */
        "<;sleep 5;@x.example>",
        "<a@b@c.example>", /* user@dom@host */
        "<a..b@c.example>",
        "<.a@c.example>",
        "<a.@c.example>",
        "<a@-b.example>",
        "<a@b-.example>",
        "<a@b..example>",
        "<a@>",
        "<a@[192.0.2]>",
        "<a@[192.0.2.256]>",
        "<a@[IPv6:zz::1]>",
        "<a@[tag:general]>",
        "<a@[192.0.2.1>",
        "<a b@c.example>",
        "<\"unterminated@c.example>",
        "<\"a\x01\"@c.example>",
        "<@r1.example:>",
        "<@r1.example,r2:a@b.example>",
        "<a@b_c.example>",
        "<>", /* not allowed for a recipient */
        "",
        "<",
    };
    struct smtp_path pa;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse(bad[i], false, &pa, NULL), SMTP_ADDR_SYNTAX, "accepted %s", bad[i]);
}

Test(smtp_addr, lengths)
{
    char in[600], local[80];
    struct smtp_path pa;
    memset(local, 'l', 64);
    local[64] = '\0';
    snprintf(in, sizeof(in), "<%s@d.example>", local);
    cr_assert_eq(parse(in, false, &pa, NULL), SMTP_ADDR_OK);
    local[64] = 'l';
    local[65] = '\0';
    snprintf(in, sizeof(in), "<%s@d.example>", local);
    cr_assert_eq(parse(in, false, &pa, NULL), SMTP_ADDR_TOO_LONG);

    /* a path of exactly 256 octets (with <>) is the limit */
    char dom[300];
    size_t dl = 256 - 2 - 2; /* "a@" */
    for (size_t i = 0; i < dl; i++)
        dom[i] = (i % 50 == 49) ? '.' : 'd';
    dom[dl] = '\0';
    snprintf(in, sizeof(in), "<a@%s>", dom);
    cr_assert_eq(strlen(in), 256);
    cr_assert_eq(parse(in, false, &pa, NULL), SMTP_ADDR_OK);
    cr_assert_eq(pa.len, 254);
    snprintf(in, sizeof(in), "<ab@%s>", dom);
    cr_assert_eq(parse(in, false, &pa, NULL), SMTP_ADDR_TOO_LONG);

    /* a label over 63 octets */
    char lab[80];
    memset(lab, 'x', 64);
    lab[64] = '\0';
    snprintf(in, sizeof(in), "<a@%s.example>", lab);
    cr_assert_eq(parse(in, false, &pa, NULL), SMTP_ADDR_SYNTAX);
}

Test(smtp_addr, mail_params)
{
    struct smtp_mail_params m;
    cr_assert_eq(smtp_mail_params_parse("", true, &m), SMTP_R_NONE);
    cr_assert_str_eq(m.norm, "");
    cr_assert_eq(
        smtp_mail_params_parse("envid=a+2Bb ret=hdrs smtputf8 body=8bitmime SIZE=0100", true, &m),
        SMTP_R_NONE);
    cr_assert_str_eq(m.norm, "SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=a+2Bb");
    cr_assert(m.has_size && m.size == 100 && m.smtputf8);
    cr_assert_eq(smtp_mail_params_parse("SIZE=18446744073709551615", true, &m), SMTP_R_NONE);
    cr_assert_eq(m.size, UINT64_MAX);
    cr_assert_eq(smtp_mail_params_parse("BODY=7BIT", true, &m), SMTP_R_NONE);
    cr_assert_str_eq(m.norm, "BODY=7BIT");

    static const char *const syntax[] = {
        "SIZE=18446744073709551616",
        "SIZE=123456789012345678901",
        "SIZE=99999999999999999999999",
        "SIZE=-1",
        "SIZE=1x",
        "SIZE=",
        "SIZE",
        "SIZE=1 SIZE=2",
        "BODY=BINARYMIME",
        "BODY",
        "SMTPUTF8=yes",
        "RET=NONE",
        "ENVID=a+2b",
        "ENVID=a+2",
        "ENVID=",
        "=x",
        "-X=1",
        "SIZE=1=2",
    };
    for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++)
        cr_assert_eq(smtp_mail_params_parse(syntax[i], true, &m), SMTP_R_PARAM_SYNTAX, "%s",
                     syntax[i]);
    char envid[200];
    memset(envid, 'e', sizeof(envid));
    memcpy(envid, "ENVID=", 6);
    envid[6 + 101] = '\0';
    cr_assert_eq(smtp_mail_params_parse(envid, true, &m), SMTP_R_PARAM_SYNTAX);
    envid[6 + 100] = '\0';
    cr_assert_eq(smtp_mail_params_parse(envid, true, &m), SMTP_R_NONE);

    cr_assert_eq(smtp_mail_params_parse("FOO=bar", true, &m), SMTP_R_PARAM_UNKNOWN);
    cr_assert_eq(smtp_mail_params_parse("AUTH=<>", true, &m), SMTP_R_PARAM_UNKNOWN);
    cr_assert_eq(smtp_mail_params_parse("SIZE=10", false, &m), SMTP_R_PARAM_UNKNOWN);
}

Test(smtp_addr, xtext_never_carries_controls)
{
    cr_assert(smtp_xtext_valid("abc+2B+3D", 9));
    cr_assert(!smtp_xtext_valid("a\rb", 3));
    cr_assert(!smtp_xtext_valid("a\nb", 3));
    cr_assert(!smtp_xtext_valid("a\0b", 3));
    cr_assert(!smtp_xtext_valid("a b", 3));
    cr_assert(!smtp_xtext_valid("a=b", 3));
    cr_assert(!smtp_xtext_valid("a+0", 3));
    cr_assert(!smtp_xtext_valid("\xc3\xa9", 2));
}

Test(smtp_addr, rcpt_params)
{
    cr_assert_eq(smtp_rcpt_params_parse("", true), SMTP_R_NONE);
    cr_assert_eq(smtp_rcpt_params_parse("NOTIFY=SUCCESS,FAILURE,DELAY", true), SMTP_R_NONE);
    cr_assert_eq(smtp_rcpt_params_parse("notify=never ORCPT=rfc822;a+40b", true), SMTP_R_NONE);
    cr_assert_eq(smtp_rcpt_params_parse("NOTIFY=SUCCESS,", true), SMTP_R_PARAM_SYNTAX);
    cr_assert_eq(smtp_rcpt_params_parse("NOTIFY=BOGUS", true), SMTP_R_PARAM_SYNTAX);
    cr_assert_eq(smtp_rcpt_params_parse("ORCPT=rfc822", true), SMTP_R_PARAM_SYNTAX);
    cr_assert_eq(smtp_rcpt_params_parse("ORCPT=;x", true), SMTP_R_PARAM_SYNTAX);
    cr_assert_eq(smtp_rcpt_params_parse("X-FOO=1", true), SMTP_R_PARAM_UNKNOWN);
    cr_assert_eq(smtp_rcpt_params_parse("NOTIFY=NEVER", false), SMTP_R_PARAM_UNKNOWN);
}

Test(smtp_addr, helo_names)
{
    static const char *const good[] = {"mx.example.test", "[192.0.2.1]", "[IPv6:::1]",
                                       "host_1",          "localhost",   "192.0.2.1"};
    static const char *const bad[] = {"foo bar", "",      "h\xc3\xa9llo", "[a]b",
                                      "[]",      "a;b",   "a<b>",         "[a\\b]",
                                      "[[a]]",   "[a;b]", "[a(b)]",       "[a b]"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert(smtp_helo_valid(good[i], strlen(good[i])), "%s", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert(!smtp_helo_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
    char big[300];
    memset(big, 'a', sizeof(big));
    cr_assert(smtp_helo_valid(big, 255));
    cr_assert(!smtp_helo_valid(big, 256));
}
