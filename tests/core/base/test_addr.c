/*
 * NAME
 *	test_addr - the one RFC 5321 path and mailbox parser
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/base/addr.h"

static enum addr_err parse(const char *in, bool allow_null, struct addr_path *out,
                           const char **rest)
{
    const char *p = in;
    enum addr_err e = addr_path_parse(&p, allow_null, out);
    if (rest)
        *rest = p;
    return e;
}

Test(addr, path_good_paths)
{
    struct addr_path pa;
    const char *rest;
    cr_assert_eq(parse("<a@b.example> SIZE=1", false, &pa, &rest), ADDR_OK);
    cr_assert_str_eq(pa.addr, "a@b.example");
    cr_assert_eq(pa.local_len, 1);
    cr_assert(pa.has_domain && !pa.literal && !pa.non_ascii);
    cr_assert_str_eq(rest, " SIZE=1");

    cr_assert_eq(parse("<>", true, &pa, &rest), ADDR_OK);
    cr_assert_str_eq(pa.addr, "");
    cr_assert_eq(pa.len, 0);

    cr_assert_eq(parse("<@r1.example,@r2.example:u.v@d.example>", false, &pa, NULL), ADDR_OK);
    cr_assert_str_eq(pa.addr, "u.v@d.example"); /* the route is dropped */

    cr_assert_eq(parse("<\"x y;z\\\"\"@d.example>", false, &pa, NULL), ADDR_OK);
    cr_assert_str_eq(pa.addr, "\"x y;z\\\"\"@d.example");
    cr_assert_eq(pa.local_len, 9);

    cr_assert_eq(parse("<u@[192.0.2.1]>", false, &pa, NULL), ADDR_OK);
    cr_assert(pa.literal);
    cr_assert_eq(parse("<u@[IPv6:2001:db8::1]>", false, &pa, NULL), ADDR_OK);
    cr_assert(pa.literal);

    cr_assert_eq(parse("<Postmaster>", false, &pa, NULL), ADDR_OK);
    cr_assert(!pa.has_domain);
    cr_assert_str_eq(pa.addr, "Postmaster");

    cr_assert_eq(parse("<user+tag!x%y@sub-1.d.example>", false, &pa, NULL), ADDR_OK);
    cr_assert_eq(parse("<üser@dömain.example>", false, &pa, NULL), ADDR_OK);
    cr_assert(pa.non_ascii);
}

Test(addr, path_bad_paths)
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
    struct addr_path pa;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse(bad[i], false, &pa, NULL), ADDR_SYNTAX, "accepted %s", bad[i]);
}

Test(addr, path_lengths)
{
    char in[600], local[80];
    struct addr_path pa;
    memset(local, 'l', 64);
    local[64] = '\0';
    snprintf(in, sizeof(in), "<%s@d.example>", local);
    cr_assert_eq(parse(in, false, &pa, NULL), ADDR_OK);
    local[64] = 'l';
    local[65] = '\0';
    snprintf(in, sizeof(in), "<%s@d.example>", local);
    cr_assert_eq(parse(in, false, &pa, NULL), ADDR_TOO_LONG);

    /* a path of exactly 256 octets (with <>) is the limit */
    char dom[300];
    size_t dl = 256 - 2 - 2; /* "a@" */
    for (size_t i = 0; i < dl; i++)
        dom[i] = (i % 50 == 49) ? '.' : 'd';
    dom[dl] = '\0';
    snprintf(in, sizeof(in), "<a@%s>", dom);
    cr_assert_eq(strlen(in), 256);
    cr_assert_eq(parse(in, false, &pa, NULL), ADDR_OK);
    cr_assert_eq(pa.len, 254);
    snprintf(in, sizeof(in), "<ab@%s>", dom);
    cr_assert_eq(parse(in, false, &pa, NULL), ADDR_TOO_LONG);

    /* a label over 63 octets */
    char lab[80];
    memset(lab, 'x', 64);
    lab[64] = '\0';
    snprintf(in, sizeof(in), "<a@%s.example>", lab);
    cr_assert_eq(parse(in, false, &pa, NULL), ADDR_SYNTAX);
}

Test(addr, mailbox_ok)
{
    static const char *const good[] = {
        "a@example.test",
        "first.last+tag@sub.example.test",
        "!#$%&'*+-/=?^_`{|}~@x.example",
        "\"quoted.local\"@example.test",
        "\"a\\\"b\"@example.test",
        "user@[192.0.2.1]",
        "user@[IPv6:2001:db8::1]",
        ("j\xc3\xb6rg@b\xc3\xbc"
         "cher.example"), /* SMTPUTF8 (split: \xbc would eat the c) */
        "x@localhost",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert(addr_mailbox_ok(good[i]), "refused: %s", good[i]);
    static const char *const bad[] = {
        NULL,
        "",
        "@",
        "user",
        "user@",
        "@example.test",
        "a b@example.test",
        "a@exa mple.test",
        "<a@example.test>",
        "a<@example.test",
        "a@example.test>",
        "a@example.test\r\n",
        "a\n@example.test",
        "a\t@example.test",
        ".a@example.test",
        "a.@example.test",
        "a..b@example.test",
        "a@.example.test",
        "a@example..test",
        "a@example.test.",
        "a@exam_ple.test",
        "a(comment)@example.test",
        "\"unterminated@example.test",
        "a@[]",
        "a@[192.0.2.1",
        "a\x7f@example.test",
        "a@-example.test", /* sinks/ took these before the parsers were one */
        "a@example-.test",
        "a@[not an address]",
        "\xff@example.test",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(addr_mailbox_ok(bad[i]), "accepted: %s", bad[i] ? bad[i] : "NULL");
}

Test(addr, mailbox_lengths)
{
    char a[400];
    /* local part: 64 fine, 65 not */
    memset(a, 'l', 64);
    snprintf(a + 64, sizeof(a) - 64, "@example.test");
    cr_assert(addr_mailbox_ok(a));
    memset(a, 'l', 65);
    snprintf(a + 65, sizeof(a) - 65, "@example.test");
    cr_assert_not(addr_mailbox_ok(a));
    /* the whole address: 254 fine, 255 not (labels of 50) */
    size_t n = (size_t)snprintf(a, sizeof(a), "u@");
    while (n < 254) {
        size_t room = 254 - n;
        size_t label = room > 51 ? 50 : room;
        if (n > 2) {
            a[n++] = '.';
            if (label == room)
                label--;
        }
        memset(a + n, 'd', label);
        n += label;
    }
    a[n] = '\0';
    cr_assert_eq(strlen(a), 254);
    cr_assert(addr_mailbox_ok(a), "%s", a);
    a[n] = 'x';
    a[n + 1] = '\0';
    cr_assert_not(addr_mailbox_ok(a));
    /* a label of 64 */
    memset(a, 0, sizeof(a));
    snprintf(a, sizeof(a), "u@");
    memset(a + 2, 'd', 64);
    cr_assert_not(addr_mailbox_ok(a));
}
