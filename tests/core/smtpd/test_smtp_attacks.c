/*
 * NAME
 *	test_smtp_attacks - ACCEPTANCE.md "Protocol and attacks" on the session
 */
#include "test_smtp_harness.h"

#define OV(...)                                                                                    \
    (const char *[]){__VA_ARGS__}, sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)

/* P1: CVE-2023-51764/-51765/-51766 */
static const struct {
    const char *s;
    size_t len;
    bool bare; /* refused with 550 5.6.0: a bare CR or LF, or a NUL */
} smuggle[] = {
#define V(lit, bare)                                                                               \
    {                                                                                              \
        lit, sizeof(lit) - 1, bare                                                                 \
    }
    V("\n.\n", true),       V("\r.\r", true),        V("\n.\r\n", true),      V("\r\n.\n", true),
    V("\r.\r\n", true),     V("\r\n.\r", true),      V("\r\n\0.\r\n", true), V("\n.\r", true),
    V("\r\n.\r\r\n", true), V("\r\n.\0\r\n", true),
#undef V
};

Test(smtp_attacks, p1_smuggling_never_ends_or_splits)
{
    for (size_t i = 0; i < sizeof(smuggle) / sizeof(smuggle[0]); i++) {
        for (size_t piece = 1; piece <= 4096; piece *= 4096) { /* byte by byte, then whole */
            struct h h;
            h_init(&h, "192.0.2.10", NULL, 0);
            h_expect(&h, "220 ");
            h_envelope(&h, "a@b.example", "u@example.test");
            h_send(&h, "DATA\r\n");
            h_expect(&h, "354 ");
            char in[512];
            size_t n = 0;
            const char head[] = "Subject: x\r\n\r\na";
            const char evil[] = "MAIL FROM:<evil@b.example>\r\nRCPT TO:<victim@example.test>\r\n"
                                "DATA\r\nsmuggled\r\n";
            memcpy(in + n, head, sizeof(head) - 1), n += sizeof(head) - 1;
            memcpy(in + n, smuggle[i].s, smuggle[i].len), n += smuggle[i].len;
            memcpy(in + n, evil, sizeof(evil) - 1), n += sizeof(evil) - 1;
            memcpy(in + n, ".\r\nQUIT\r\n", 9), n += 9;
            h_feed_split(&h, in, n, piece);
            if (smuggle[i].bare) {
                h_expect(&h, "550 5.6.0");
                h_expect(&h, "221 ");
                h_expect_none(&h);
                cr_assert_eq(h_live_count(&h, NULL), 0, "variant %zu", i);
            } else {
                h_expect_none(&h); /* no early end, no 250 before the sync */
                h_sync(&h);
                h_expect(&h, "250 2.0.0 Ok: queued as");
                uint64_t id = h_queued_id(&h);
                h_expect(&h, "221 ");
                h_expect_none(&h);
                struct h_live l;
                cr_assert_eq(h_live_count(&h, &l), 1, "variant %zu: a second message", i);
                size_t blen;
                char *body = h_body(&h, id, &blen);
                cr_assert(memmem(body, blen, "MAIL FROM:<evil@b.example>", 26) != NULL);
                free(body);
            }
            h_fini(&h);
        }
    }
}

Test(smtp_attacks, p1_bare_cr_lf_rejected)
{
    static const char *const bodies[] = {"a\rb\r\n.\r\n", "a\nb\r\n.\r\n", "a\r\n\nb\r\n.\r\n"};
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    for (size_t i = 0; i < 3; i++) {
        h_send(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n");
        h_expect(&h, "250 2.1.0");
        h_expect(&h, "250 2.1.5");
        h_expect(&h, "354 ");
        h_send(&h, bodies[i]);
        h_expect(&h, "550 5.6.0 Message contains bare CR or LF");
    }
    h_sync(&h);
    cr_assert_eq(h_live_count(&h, NULL), 0);
    cr_assert_eq(smtp_server_stats(h.srv)->rejected, 3);
    h_fini(&h);
}

/* A NUL in the content: a next hop that strips NULs would see
 * "\r\n\0.\r\n" as the end; refused after DATA and after BDAT LAST. */
Test(smtp_attacks, p1_nul_in_content_rejected)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_expect(&h, "354 ");
    h_feed(&h, "Subject: x\r\n\r\na\0b\r\n.\r\n", 22);
    h_expect(&h, "550 5.6.0 Message contains NUL characters");
    h_send(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\nBDAT 5 LAST\r\n");
    h_feed(&h, "a\0b\r\n", 5);
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_expect(&h, "550 5.6.0 Message contains NUL characters");
    h_sync(&h);
    cr_assert_eq(h_live_count(&h, NULL), 0);
    cr_assert_eq(smtp_server_stats(h.srv)->rejected, 2);
    h_fini(&h);
}

/* P2 */
Test(smtp_attacks, p2_content_before_354)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\n"
               "DATA\r\nSubject: early\r\n\r\nx\r\n.\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_expect(&h, "554 5.5.0 Error: SMTP protocol synchronization");
    h_expect_none(&h);
    cr_assert(smtp_session_closing(h.s));
    h_sync(&h);
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_fini(&h);
}

/* RFC 2920 3.1, Postfix smtpd_forbid_unauth_pipelining: no pipelining
 * before PIPELINING was offered; EHLO, HELO and DATA end a group. */
Test(smtp_attacks, p2_unauthorized_pipelining)
{
    static const char *const bad[] = {
        /* a client that talked before the greeting: its EHLO came with more */
        "EHLO early.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\n",
        "NOOP\r\nNOOP\r\n",
        "BOGUS\r\nEHLO x\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct h h;
        h_init(&h, NULL, NULL, 0);
        h_expect(&h, "220 ");
        h_send(&h, bad[i]);
        h_expect(&h, "554 5.5.0 Error: SMTP protocol synchronization");
        h_expect_none(&h);
        cr_assert(smtp_session_closing(h.s));
        h_fini(&h);
    }
    /* after HELO nothing was offered either */
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "HELO client.example\r\n");
    h_expect(&h, "250 mx.example.test");
    h_send(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\n");
    h_expect(&h, "554 5.5.0");
    h_fini(&h);
    /* after EHLO: pipelining is fine, but not behind EHLO itself */
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "NOOP\r\nRSET\r\nEHLO again.example\r\nNOOP\r\n");
    h_expect(&h, "250 2.0.0");
    h_expect(&h, "250 2.0.0");
    h_expect(&h, "554 5.5.0");
    h_expect_none(&h);
    h_fini(&h);
    /* a refused DATA with content behind it: the content is never read
     * as commands */
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@b.example>\r\nDATA\r\nRCPT TO:<u@example.test>\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "554 5.5.0");
    h_expect_none(&h);
    h_fini(&h);
}

Test(smtp_attacks, p2_talking_before_the_greeting)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    smtp_session_destroy(h.s);
    h.s = h_session(&h, "127.0.0.1");
    smtp_session_start(h.s, SMTP_START_OK);
    h.outlen = h.outpos = 0;
    h_send(&h, "EHLO early.example\r\n"); /* the greeting was never taken */
    h_expect(&h, "220 ");
    h_expect(&h, "554 5.5.0");
    h_expect_none(&h);
    cr_assert(smtp_session_closing(h.s));
    h_fini(&h);
}

/* P4 */
Test(smtp_attacks, p4_long_command_lines)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    char line[600];
    memcpy(line, "NOOP ", 5);
    memset(line + 5, 'x', sizeof(line) - 5);
    memcpy(line + 510, "\r\n", 2); /* 512 octets with the CRLF: the limit */
    h_feed(&h, line, 512);
    h_expect(&h, "250 2.0.0");
    line[510] = 'x';
    memcpy(line + 511, "\r\n", 2); /* 513 */
    h_feed(&h, line, 513);
    h_expect(&h, "500 5.5.2 Line too long");
    h_feed_split(&h, line, 513, 1);
    h_expect(&h, "500 5.5.2 Line too long");

    /* 1 MB and no newline: nothing held but the line buffer */
    char *mb = malloc(1 << 20);
    memset(mb, 'A', 1 << 20);
    h_feed_split(&h, mb, 1 << 20, 16384);
    free(mb);
    h_expect_none(&h);
    cr_assert_eq(smtp_session_backlog(h.s), 0);
    cr_assert_leq(h.s->linelen, SMTP_LINE_MAX);
    cr_assert_eq(h.s->inq.cap <= 16, true, "queue array grew to %u", h.s->inq.cap);
    h_send(&h, "\r\nNOOP\r\n");
    h_expect(&h, "500 5.5.2 Line too long");
    h_expect(&h, "250 2.0.0");
    h_fini(&h);
}

/* P5 */
Test(smtp_attacks, p5_text_line_lengths)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    char line[1100];
    for (int i = 0; i < 998; i++)
        line[i] = (char)('!' + i % 90);
    line[0] = 'X';
    memcpy(line + 998, "\r\n.\r\n", 5);
    h_feed_split(&h, line, 1003, 100);
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    size_t blen;
    char *body = h_body(&h, h_queued_id(&h), &blen);
    const char *content = h_after_received(body);
    cr_assert_eq(blen - (size_t)(content - body), 1000);
    cr_assert(memcmp(content, line, 1000) == 0, "byte-exact");
    free(body);

    h_send(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_expect(&h, "354 ");
    for (int i = 0; i < 999; i++)
        line[i] = 'y';
    memcpy(line + 999, "\r\n.\r\n", 5);
    h_feed(&h, line, 1004);
    h_expect(&h, "550 5.5.2 Message line too long");
    h_sync(&h);
    cr_assert_eq(h_live_count(&h, NULL), 1);
    h_fini(&h);
}

/* A line over the limit stops the message going to disk at once. */
Test(smtp_attacks, p5_long_line_dropped_early)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    char *y = malloc(1 << 20);
    memset(y, 'y', 1 << 20);
    h_feed(&h, y, 1 << 20);
    free(y);
    cr_assert_null(h.s->txn.st, "still writing a message that will be refused");
    cr_assert_eq(h.s->txn.body.n, 0);
    h_send(&h, "\r\n.\r\n");
    h_expect(&h, "550 5.5.2");
    h_sync(&h);
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_fini(&h);
}

/* P6 */
Test(smtp_attacks, p6_recipient_limit)
{
    struct h h;
    h_init(&h, NULL, OV("max_recipients=100"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@b.example>\r\n");
    h_expect(&h, "250 2.1.0");
    for (int i = 0; i < 105; i++) {
        char line[64];
        snprintf(line, sizeof(line), "RCPT TO:<u%d@example.test>\r\n", i);
        h_send(&h, line);
        h_expect(&h, i < 100 ? "250 2.1.5" : "452 4.5.3 Too many recipients");
    }
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    h_send(&h, "x\r\n.\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued");
    cr_assert(!smtp_session_closing(h.s), "452 is not a protocol error");
    h_fini(&h);
}

Test(smtp_attacks, p6_million_rcpt_flood_is_flat)
{
    struct h h;
    h_init(&h, NULL, OV("max_recipients=100"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@b.example>\r\n");
    h_expect(&h, "250 2.1.0");
    const char rc[] = "RCPT TO:<someone@example.test>\r\n";
    size_t per = 1024, rl = sizeof(rc) - 1;
    char *piece = malloc(per * rl);
    for (size_t i = 0; i < per; i++)
        memcpy(piece + i * rl, rc, rl);
    size_t total = 0, accepted = 0, refused = 0;
    while (total < 1000000) {
        h_feed(&h, piece, per * rl);
        total += per;
        while (h_pop(&h)) {
            if (strncmp(h.reply, "250 2.1.5", 9) == 0)
                accepted++;
            else if (strncmp(h.reply, "452 4.5.3", 9) == 0)
                refused++;
            else
                cr_assert_fail("reply %s", h.reply);
        }
        h.outlen = h.outpos = 0; /* keep the harness flat too */
        cr_assert_leq(h.s->txn.nrcpt, 100);
        cr_assert_leq(h.s->txn.rcap, 128);
        cr_assert_eq(smtp_session_backlog(h.s), 0);
        cr_assert_leq(h.s->out[0].cap + h.s->out[1].cap, 4 * SMTP_OUT_HIWAT);
    }
    free(piece);
    cr_assert_eq(accepted, 100);
    cr_assert_eq(accepted + refused, total);
    h_fini(&h);
}

/* P7 */
Test(smtp_attacks, p7_size)
{
    struct h h;
    h_init(&h, NULL, OV("max_message_size=4096"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    cr_assert(strstr(h.reply, "250-SIZE 4096\n") != NULL);
    h_send(&h, "MAIL FROM:<a@b.example> SIZE=4097\r\n");
    h_expect(&h, "552 5.3.4 Message size exceeds fixed maximum message size");
    h_send(&h, "MAIL FROM:<a@b.example> SIZE=99999999999999999999999999\r\n");
    h_expect(&h, "501 5.5.4");
    h_send(&h, "MAIL FROM:<a@b.example> SIZE=18446744073709551616\r\n");
    h_expect(&h, "501 5.5.4");
    h_send(&h, "MAIL FROM:<a@b.example> SIZE=4096\r\n");
    h_expect(&h, "250 2.1.0");
    h_send(&h, "RCPT TO:<u@example.test>\r\nDATA\r\n");
    h_expect(&h, "250 2.1.5");
    h_expect(&h, "354 ");
    char buf[902];
    memset(buf, 'z', 900);
    memcpy(buf + 900, "\r\n", 2);
    for (int i = 0; i < 5; i++) /* 4510 octets: a liar */
        h_feed(&h, buf, 902);
    h_expect_none(&h);
    h_send(&h, ".\r\n");
    h_expect(&h, "552 5.3.4");
    h_sync(&h);
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_fini(&h);
}

/* Memory per session stays bounded while a large message streams. */
Test(smtp_attacks, large_message_streams)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    char *chunk = malloc(65536);
    for (size_t i = 0; i < 65536; i += 64) {
        memset(chunk + i, 'a' + (int)(i / 64) % 26, 62);
        memcpy(chunk + i + 62, "\r\n", 2);
    }
    for (int i = 0; i < 160; i++) { /* 10 MiB */
        h_feed(&h, chunk, 65536);
        cr_assert_lt(h.s->txn.body.bytes, SMTP_FLUSH_BYTES + 65536);
    }
    free(chunk);
    h_send(&h, ".\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued");
    size_t blen;
    char *body = h_body(&h, h_queued_id(&h), &blen);
    cr_assert_eq(blen - (size_t)(h_after_received(body) - body), 160 * 65536);
    free(body);
    h_fini(&h);
}

/* P9 */
Test(smtp_attacks, p9_too_many_errors)
{
    struct h h;
    h_init(&h, NULL, OV("max_errors=3"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "BOGUS\r\nBOGUS\r\nBOGUS\r\nBOGUS\r\nNOOP\r\n");
    h_expect(&h, "500 5.5.2");
    h_expect(&h, "500 5.5.2");
    h_expect(&h, "500 5.5.2");
    h_expect(&h, "500 5.5.2");
    h_expect(&h, "421 4.7.0 mx.example.test Too many errors");
    h_expect_none(&h);
    cr_assert(smtp_session_closing(h.s));
    cr_assert_eq(smtp_server_stats(h.srv)->protocol_errors, 4);
    h_fini(&h);
}

/* P11: each form from a client outside mynetworks */
Test(smtp_attacks, p11_open_relay)
{
    static const struct {
        const char *rcpt;
        const char *want;
    } t[] = {
        {"<user@foreign.example>", "554 5.7.1 Relay access denied"},
        {"<user%foreign.example@example.test>", "554 5.7.1"},
        {"<foreign.example!user@example.test>", "554 5.7.1"},
        {"<\"user@foreign.example\"@example.test>", "554 5.7.1"},
        {"<user@[192.0.2.1]>", "554 5.7.1"},
        {"<user%foreign.example@[192.0.2.1]>", "554 5.7.1"},
        {"<\"user@foreign.example\"@[192.0.2.1]>", "554 5.7.1"},
        {"<@example.test:user@foreign.example>", "554 5.7.1"},
        {"<user@foreign.example@example.test>", "501 5.1.3"},
        {"<foreign.example!user>", "501 5.1.3"},
        {"<user@example.test.foreign.example>", "554 5.7.1"},
        {"<user@example.test>", "250 2.1.5"},
        {"<user@EXAMPLE.test>", "250 2.1.5"},
        {"<user@deep.sub.example.test>", "250 2.1.5"},
        {"<user@mx.example.test>", "250 2.1.5"},
        {"<postmaster>", "250 2.1.5"},
        {"<@foreign.example:user@example.test>", "250 2.1.5"},
    };
    struct h h;
    h_init(&h, "192.0.2.10", NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@b.example>\r\n");
    h_expect(&h, "250 2.1.0");
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char line[300];
        snprintf(line, sizeof(line), "RCPT TO:%s\r\n", t[i].rcpt);
        h_send(&h, line);
        cr_assert(h_pop(&h));
        cr_assert(strncmp(h.reply, t[i].want, strlen(t[i].want)) == 0, "%s: got %s", t[i].rcpt,
                  h.reply);
        if (smtp_session_closing(h.s))
            break;
    }
    cr_assert(!smtp_session_closing(h.s));
    h_fini(&h);

    /* from mynetworks the same forms relay */
    h_init(&h, "127.0.0.1", NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "user@foreign.example");
    h_send(&h, "RCPT TO:<user%x.example@[192.0.2.1]>\r\n");
    h_expect(&h, "250 2.1.5");
    h_fini(&h);

    h_init(&h, "::1", NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "user@foreign.example");
    h_fini(&h);
}

/* P12, P13, P14, P15 */
Test(smtp_attacks, p13_p15_command_line_attacks)
{
    struct h h;
    h_init(&h, "192.0.2.10", OV("max_errors=100"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<;sleep 5;>\r\n");
    h_expect(&h, "501 5.1.7");
    h_send(&h, "MAIL FROM:<a@b.example;reboot>\r\n");
    h_expect(&h, "501 5.1.7");
    h_send(&h, "MAIL FROM:a@b.example\r\n");
    h_expect(&h, "501 5.1.7");
    h_feed(&h, "MAIL FROM:<a@b.example>\0 SIZE=1\r\n", 33);
    h_expect(&h, "500 5.5.2");
    h_feed(&h, "NO\0OP\r\n", 7);
    h_expect(&h, "500 5.5.2");
    h_send(&h, "NOOP\rX\r\n");
    h_expect(&h, "501 5.5.2");
    h_send(&h, "EHLO a\rb\r\n");
    h_expect(&h, "501 5.5.2");
    h_send(&h, "NOOP\n");
    h_expect(&h, "500 5.5.2");
    h_send(&h, "MAIL FROM:<a@b.example> ENVID=x\ry\r\n");
    h_expect(&h, "501 5.5.2");
    h_send(&h, "MAIL FROM:<a@b.example> ENVID=x\ny\r\n");
    h_expect(&h, "500 5.5.2"); /* the bare LF ended the line */
    h_expect(&h, "500 5.5.2"); /* "y" */
    h_send(&h, "MAIL FROM:<a@b.example> ENVID=x+0Dy\r\n");
    h_expect(&h, "250 2.1.0");
    h_send(&h, "RCPT TO:<`reboot`>\r\n");
    h_expect(&h, "501 5.1.3");
    h_send(&h, "RCPT TO:u@example.test\r\n");
    h_expect(&h, "501 5.1.3");
    h_send(&h, "RCPT TO:<u@example.test> FOO=1\r\n");
    h_expect(&h, "555 5.5.4");
    h_send(&h, "RCPT TO:<u@example.test>\r\n");
    h_expect(&h, "250 2.1.5");
    h_send(&h, "MAIL FROM:<a@b.example>\r\n");
    h_expect(&h, "503 5.5.1");
    h_send(&h, "RSET\r\nMAIL FROM:<a@b.example> XYZ\r\n");
    h_expect(&h, "250 2.0.0");
    h_expect(&h, "555 5.5.4 unsupported parameter");
    h_send(&h, "MAIL FROM:<a@b.example> BODY=9BIT\r\n");
    h_expect(&h, "501 5.5.4");
    h_send(&h, "HELO client.example\r\n");
    h_expect(&h, "250 mx.example.test");
    h_send(&h, "MAIL FROM:<a@b.example> SIZE=10\r\n");
    h_expect(&h, "555 5.5.4"); /* no parameters after HELO */
    h_fini(&h);
}

Test(smtp_attacks, p14_received_stays_one_header)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "HELO evil\r\n");
    h_expect(&h, "250 mx.example.test");
    h_send(&h, "X-Injected: yes\r\n");
    h_expect(&h, "500 5.5.2");
    h_send(&h, "HELO evil\rX-Injected: yes\r\n");
    h_expect(&h, "501 5.5.2");
    h_send(&h, "MAIL FROM:<a@b.example>\r\n"); /* no pipelining after HELO */
    h_expect(&h, "250 2.1.0");
    h_send(&h, "RCPT TO:<u@example.test>\r\n");
    h_expect(&h, "250 2.1.5");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    h_send(&h, "Subject: s\r\n\r\nb\r\n.\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok");
    char *body = h_body(&h, h_queued_id(&h), NULL);
    const char *want = "Received: from evil ([127.0.0.1])\r\n"
                       "\tby mx.example.test (sluice) with SMTP id ";
    cr_assert(strncmp(body, want, strlen(want)) == 0, "%s", body);
    cr_assert(strstr(body, "X-Injected") == NULL);
    cr_assert_str_eq(h_after_received(body), "Subject: s\r\n\r\nb\r\n");
    free(body);
    h_fini(&h);
}

/* P16 */
Test(smtp_attacks, p16_smtputf8)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<j\xc3\xb6rg@b.example>\r\n");
    h_expect(&h, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
    h_send(&h, "MAIL FROM:<j\xc0\xafrg@b.example> SMTPUTF8\r\n");
    h_expect(&h, "501 5.5.2 Malformed UTF-8");
    h_send(&h, "MAIL FROM:<j\xed\xa0\x80rg@b.example> SMTPUTF8\r\n");
    h_expect(&h, "501 5.5.2");
    h_send(&h, "MAIL FROM:<jrg@b.example\xf4\x90\x80\x80> SMTPUTF8\r\n");
    h_expect(&h, "501 5.5.2");
    h_send(&h, "MAIL FROM:<jrg@b.example> SMTPUTF8 X\xe2\x82\r\n");
    h_expect(&h, "501 5.5.2");
    h_send(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<\xc3\xbc@example.test>\r\nRSET\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "553 5.6.7");
    h_expect(&h, "250 2.0.0");
    h_send(&h, "MAIL FROM:<j\xc3\xb6rg@b\xc3\xbc.example> SMTPUTF8\r\n");
    h_expect(&h, "250 2.1.0");
    h_send(&h, "RCPT TO:<\xc3\xbc@example.test>\r\nDATA\r\n");
    h_expect(&h, "250 2.1.5");
    h_expect(&h, "354 ");
    h_send(&h, "Subject: \xc3\xbc\r\n\r\n.\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok");
    char *body = h_body(&h, h_queued_id(&h), NULL);
    cr_assert(strstr(body, " with UTF8SMTP id ") != NULL, "%s", body);
    cr_assert(strstr(body, "\tfor <\xc3\xbc@example.test>; ") != NULL, "%s", body);
    free(body);
    h_fini(&h);
}

/* A client that queues input while its message commits. */
Test(smtp_attacks, backlog_bound_while_parked)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    h_send(&h, "x\r\n.\r\n");
    char *junk = malloc(65536);
    memset(junk, 'N', 65536);
    for (int i = 0; i < 17; i++) /* 1.06 MiB */
        h_feed(&h, junk, 65536);
    free(junk);
    cr_assert_eq(smtp_session_backlog(h.s), 0, "dropped once over the bound");
    h_expect_none(&h);
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued");
    h_expect(&h, "421 4.7.0");
    cr_assert(smtp_session_closing(h.s));
    cr_assert_eq(h_live_count(&h, NULL), 1);
    h_fini(&h);
}

/* The ring is short of buffers: the session lets go of every one. */
static int ring_released;
static void ring_release(struct mbuf *b)
{
    ring_released++;
}

Test(smtp_attacks, release_buffers)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    char data[64] = "body line\r\n";
    struct mbuf ring = {.data = data, .cap = sizeof(data), .refs = 1, .release = ring_release};
    smtp_session_input(h.s, &ring, 0, (uint32_t)strlen(data));
    cr_assert_gt(ring.refs, 1, "the body is a slice of the ring buffer");
    smtp_session_release_buffers(h.s);
    cr_assert_eq(ring.refs, 1);
    /* parked, with pipelined input queued in a ring buffer */
    char tail[64] = ".\r\nNOOP\r\n";
    struct mbuf ring2 = {.data = tail, .cap = sizeof(tail), .refs = 1, .release = ring_release};
    h_send(&h, "more\r\n");
    smtp_session_input(h.s, &ring2, 0, (uint32_t)strlen(tail));
    cr_assert_gt(ring2.refs, 1);
    smtp_session_release_buffers(h.s);
    cr_assert_eq(ring2.refs, 1);
    memset(tail, 'Z', sizeof(tail)); /* the ring reuses it */
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued");
    char *body = h_body(&h, h_queued_id(&h), NULL);
    cr_assert_str_eq(h_after_received(body), "body line\r\nmore\r\n");
    free(body);
    h_expect(&h, "250 2.0.0 Ok"); /* the NOOP, from the copy */
    cr_assert_eq(ring_released, 0);
    h_fini(&h);
}
