/*
 * NAME
 *	test_addr - the address and next-hop syntax checks of transport edits
 */
#include "tests/sinks/sink_test.h"

Test(addr, mailboxes_without_white_space)
{
    /* the grammar is core/base/addr.c (tests/core/base/test_addr.c); the
     * sink edits refuse white space and controls even where it allows them */
    cr_assert(sink_addr_ok("\"quoted.local\"@example.test"));
    cr_assert(sink_addr_ok("j\xc3\xb6rg@example.test"));
    cr_assert_not(sink_addr_ok(NULL));
    cr_assert_not(sink_addr_ok("\"a b\"@example.test"));
    cr_assert_not(sink_addr_ok("\"a\tb\"@example.test"));
    cr_assert_not(sink_addr_ok("a@example.test\r\n"));
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
