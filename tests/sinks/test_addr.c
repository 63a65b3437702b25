/*
 * NAME
 *	test_addr - the address and next-hop syntax checks of transport edits
 */
#include "tests/sinks/sink_test.h"

Test(addr, mailboxes)
{
    static const char *const good[] = {
        "a@example.test",
        "first.last+tag@sub.example.test",
        "!#$%&'*+-/=?^_`{|}~@x.example",
        "\"quoted.local\"@example.test",
        "\"a\\\"b\"@example.test",
        "user@[192.0.2.1]",
        "user@[IPv6:2001:db8::1]",
        "j\xc3\xb6rg@b\xc3\xbc"
        "cher.example", /* SMTPUTF8 */
        "x@localhost",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert(sink_addr_ok(good[i]), "refused: %s", good[i]);
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
        "\"a b\"@example.test",
        "\"unterminated@example.test",
        "a@[]",
        "a@[192.0.2.1",
        "a\x7f@example.test",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(sink_addr_ok(bad[i]), "accepted: %s", bad[i] ? bad[i] : "NULL");
}

Test(addr, lengths)
{
    char a[400];
    /* local part: 64 fine, 65 not */
    memset(a, 'l', 64);
    snprintf(a + 64, sizeof(a) - 64, "@example.test");
    cr_assert(sink_addr_ok(a));
    memset(a, 'l', 65);
    snprintf(a + 65, sizeof(a) - 65, "@example.test");
    cr_assert_not(sink_addr_ok(a));
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
    cr_assert(sink_addr_ok(a), "%s", a);
    a[n] = 'x';
    a[n + 1] = '\0';
    cr_assert_not(sink_addr_ok(a));
    /* a label of 64 */
    memset(a, 0, sizeof(a));
    snprintf(a, sizeof(a), "u@");
    memset(a + 2, 'd', 64);
    cr_assert_not(sink_addr_ok(a));
}

Test(addr, nexthops)
{
    static const char *const good[] = {
        "smtp:127.0.0.1:2526",
        "smtp:relay.example",
        "smtp:[2001:db8::1]",
        "smtp:[::1]:2525",
        "SMTP:Relay.Example:25",
        "smtp:h tls=none",
        "smtp:h tls=may",
        "smtp:h:1 tls=encrypt",
        "mx",
        "mx:2525",
        "mx tls=verify",
        "maildir",
        "discard",
        "error:5.1.2",
        "error:4.4.1 try later",
        "error:5.7.1 no mail for you, sorry",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert(sink_nexthop_ok(good[i]), "refused: %s", good[i]);
    static const char *const bad[] = {
        NULL,
        "",
        "smtp",
        "smtp:",
        "smtp::25",
        "smtp:h:0",
        "smtp:h:65536",
        "smtp:h:x",
        "smtp:[]",
        "smtp:[zz]",
        "smtp:a b",
        "smtp:h tls=",
        "smtp:h tls=maybe",
        "mx:",
        "mx:0",
        "mxx",
        "maildir:x",
        "maildir tls=verify",
        "discard now",
        "error:",
        "error:2.0.0",
        "error:5.1",
        "error:5.1.2x",
        "error:5.1.2\ttext",
        "lmtp:x",
        "mx\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(sink_nexthop_ok(bad[i]), "accepted: %s", bad[i] ? bad[i] : "NULL");
}
