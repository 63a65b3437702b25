/*
 * NAME
 *	test_smtp_addr - ESMTP parameters, HELO names (paths: tests/core/base/test_addr.c)
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/smtpd/smtp_int.h"

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
