/*
 * NAME
 *	test_smtp_session - the SMTP session over a real spool: the protocol
 */
#include "test_smtp_harness.h"

#define OV(...)                                                                                    \
    (const char *[]){__VA_ARGS__}, sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)

Test(smtp_session, greeting_and_ehlo)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 mx.example.test ESMTP sluice");
    cr_assert_str_eq(h.reply, "220 mx.example.test ESMTP sluice");
    h_send(&h, "EHLO client.example\r\n");
    cr_assert(h_pop(&h));
    cr_assert_str_eq(h.reply, "250-mx.example.test\n250-PIPELINING\n250-SIZE 52428800\n"
                              "250-8BITMIME\n250-SMTPUTF8\n250-ENHANCEDSTATUSCODES\n"
                              "250 CHUNKING");
    h_send(&h, "helo client.example\r\n");
    cr_assert(h_pop(&h));
    cr_assert_str_eq(h.reply, "250 mx.example.test");
    h_expect_none(&h);
    cr_assert(!smtp_session_closing(h.s));
    h_fini(&h);
}

Test(smtp_session, refused_starts)
{
    static const struct {
        enum smtp_start how;
        const char *want;
    } t[] = {{SMTP_START_PER_IP, "421 4.7.0 mx.example.test"},
             {SMTP_START_FULL, "421 4.3.2 mx.example.test"},
             {SMTP_START_SHUTDOWN, "421 4.3.2 mx.example.test"}};
    for (size_t i = 0; i < 3; i++) {
        struct h h;
        h_init_how(&h, NULL, NULL, 0, t[i].how);
        h_expect(&h, t[i].want);
        cr_assert(smtp_session_closing(h.s));
        h_send(&h, "EHLO x\r\n"); /* ignored */
        h_expect_none(&h);
        h_fini(&h);
    }
}

Test(smtp_session, simple_commands)
{
    struct h h;
    h_init(&h, NULL, OV("max_errors=100"));
    h_expect(&h, "220 ");
    h_send(&h, "MAIL FROM:<a@b.example>\r\n");
    h_expect(&h, "503 5.5.1");
    h_send(&h, "EHLO\r\n");
    h_expect(&h, "501 5.5.4");
    h_send(&h, "EHLO bad;name\r\n");
    h_expect(&h, "501 5.5.4");
    h_send(&h, "ehlo client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "NOOP\r\nnoop anything\r\nRSET\r\nVRFY postmaster\r\nVRFY\r\nHELP\r\n");
    h_expect(&h, "250 2.0.0 Ok");
    h_expect(&h, "250 2.0.0 Ok");
    h_expect(&h, "250 2.0.0 Ok");
    h_expect(&h, "252 2.0.0");
    h_expect(&h, "501 5.5.4");
    h_expect(&h, "214 2.0.0");
    cr_assert(strncmp(h.reply, "214-2.0.0 ", 10) == 0);
    h_send(&h, "RCPT TO:<a@example.test>\r\n");
    h_expect(&h, "503 5.5.1");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "503 5.5.1");
    h_send(&h, "DATA foo\r\n");
    h_expect(&h, "501 5.5.4");
    h_send(&h, "RSET x\r\nQUIT now\r\n");
    h_expect(&h, "501 5.5.4");
    h_expect(&h, "501 5.5.4");
    h_send(&h, "NOOPX\r\nFOO\r\n\r\nMAIL\r\n");
    h_expect(&h, "500 5.5.2 Error: command not recognized");
    h_expect(&h, "500 5.5.2");
    h_expect(&h, "500 5.5.2");
    h_expect(&h, "501 5.5.4"); /* MAIL without FROM: */
    h_send(&h, "Mail From:<a@b.example>\r\n");
    h_expect(&h, "250 2.1.0 Ok");
    h_send(&h, "MAIL FROM:<a@b.example>\r\n");
    h_expect(&h, "503 5.5.1 Error: nested MAIL command");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "554 5.5.1");
    h_send(&h, "rcpt to: <user@example.test>\r\n");
    h_expect(&h, "250 2.1.5 Ok");
    h_send(&h, "RSET\r\nRCPT TO:<user@example.test>\r\n");
    h_expect(&h, "250 2.0.0");
    h_expect(&h, "503 5.5.1");
    h_send(&h, "QUIT\r\n");
    h_expect(&h, "221 2.0.0 Bye");
    cr_assert(smtp_session_closing(h.s));
    h_send(&h, "NOOP\r\n");
    h_expect_none(&h);
    h_fini(&h);
}

Test(smtp_session, message_stored_byte_exact)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "sender@b.example", "user@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 End data with <CR><LF>.<CR><LF>");
    h_send(&h, "Subject: hi\r\n\r\nline1\r\n..dot\r\n");
    h_send(&h, ".\r\n");
    h_expect_none(&h); /* no 250 before the fdatasync */
    cr_assert_eq(h.kicks, 0);
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as ");
    cr_assert_eq(h.kicks, 1);
    uint64_t id = h_queued_id(&h);
    cr_assert_eq(strlen(h_last(&h)), strlen("250 2.0.0 Ok: queued as ") + 16);

    struct h_live l;
    cr_assert_eq(h_live_count(&h, &l), 1);
    cr_assert_eq(l.ids[0], id);
    char *body = h_body(&h, id, NULL);
    char idstr[17];
    spool_id_str(id, idstr);
    char want[256];
    snprintf(want, sizeof(want),
             "Received: from client.example ([127.0.0.1])\r\n"
             "\tby mx.example.test (sluice) with ESMTP id %s\r\n"
             "\tfor <user@example.test>; ",
             idstr);
    cr_assert(strncmp(body, want, strlen(want)) == 0, "%s", body);
    cr_assert(strstr(body, " +0000\r\n") != NULL);
    cr_assert_str_eq(h_after_received(body), "Subject: hi\r\n\r\nline1\r\n.dot\r\n");
    free(body);
    cr_assert_eq(smtp_server_stats(h.srv)->messages, 1);
    h_fini(&h);
}

struct env_check {
    int n;
    char sender[64], params[64], helo[64], client[64], rcpt1[64];
    uint32_t nrcpt;
};

static int env_cb(void *arg, const struct spool_msginfo *m)
{
    struct env_check *e = arg;
    e->n++;
    snprintf(e->sender, sizeof(e->sender), "%s", m->sender);
    snprintf(e->params, sizeof(e->params), "%s", m->params);
    snprintf(e->helo, sizeof(e->helo), "%s", m->helo);
    snprintf(e->client, sizeof(e->client), "%s", m->client);
    e->nrcpt = m->nrcpt;
    snprintf(e->rcpt1, sizeof(e->rcpt1), "%s", m->nrcpt > 1 ? m->rcpts[1] : "");
    return 0;
}

Test(smtp_session, pipelined_group_and_parking)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<> size=20 BODY=8BITMIME\r\n"
               "RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test> NOTIFY=NEVER\r\nDATA\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_expect(&h, "250 2.1.5");
    h_expect(&h, "354 ");
    /* the end of the data and the next commands in one piece */
    h_send(&h, "hello\r\n.\r\nMAIL FROM:<c@b.example>\r\nRCPT TO:<d@example.test>\r\nQUIT\r\n");
    h_expect_none(&h);
    cr_assert_gt(smtp_session_backlog(h.s), 0);
    h_send(&h, "NOOP\r\n"); /* queued behind the rest */
    h_expect_none(&h);
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    uint64_t id = h_queued_id(&h);
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_expect(&h, "221 2.0.0");
    h_expect_none(&h); /* the NOOP after QUIT is dropped */
    cr_assert(smtp_session_closing(h.s));
    cr_assert_eq(smtp_session_backlog(h.s), 0);

    struct env_check e = {0};
    cr_assert_eq(spool_scan(h.dir, env_cb, &e, NULL), 0);
    cr_assert_eq(e.n, 1);
    cr_assert_str_eq(e.sender, "");
    cr_assert_str_eq(e.params, "SIZE=20 BODY=8BITMIME");
    cr_assert_str_eq(e.helo, "client.example");
    cr_assert_str_eq(e.client, "127.0.0.1");
    cr_assert_eq(e.nrcpt, 2);
    cr_assert_str_eq(e.rcpt1, "b@example.test");
    char *body = h_body(&h, id, NULL);
    cr_assert(strstr(body, "\tfor ") == NULL, "one 'for' only with one recipient");
    cr_assert_str_eq(h_after_received(body), "hello\r\n");
    free(body);
    h_fini(&h);
}

/* The same transcript cut at every point of the data gives the same body. */
Test(smtp_session, every_split_point)
{
    const char data[] = "From: a\r\n\r\n..x\r\nb\r\n\r\n.\r\n";
    size_t n = sizeof(data) - 1;
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    for (size_t cut = 0; cut <= n + 1; cut++) {
        const char *cmds = "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n";
        h_feed_split(&h, cmds, strlen(cmds), cut ? cut : 1); /* commands cut too */
        h_expect(&h, "250 2.1.0");
        h_expect(&h, "250 2.1.5");
        h_expect(&h, "354 ");
        if (cut > n) {
            h_feed_split(&h, data, n, 1);
        } else {
            h_feed(&h, data, cut);
            h_feed(&h, data + cut, n - cut);
        }
        h_expect_none(&h);
        h_sync(&h);
        h_expect(&h, "250 2.0.0 Ok: queued as");
        char *body = h_body(&h, h_queued_id(&h), NULL);
        cr_assert_str_eq(h_after_received(body), "From: a\r\n\r\n.x\r\nb\r\n\r\n", "cut %zu", cut);
        free(body);
    }
    cr_assert_eq(h_live_count(&h, NULL), n + 2);
    h_fini(&h);
}

Test(smtp_session, bdat_chunks)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "BDAT 5\r\nhel");
    h_expect_none(&h);
    h_send(&h, "lo");
    h_expect(&h, "250 2.0.0 5 octets received");
    /* a pipelined chunk, LAST, and a command behind it */
    h_send(&h, "BDAT 8\r\n world\r\nBDAT 0 LAST\r\nNOOP\r\n");
    h_expect(&h, "250 2.0.0 8 octets received");
    h_expect_none(&h);
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    char *body = h_body(&h, h_queued_id(&h), NULL);
    cr_assert_str_eq(h_after_received(body), "hello world\r\n");
    free(body);
    h_expect(&h, "250 2.0.0 Ok"); /* the NOOP, after the commit */

    /* DATA after BDAT; BDAT without MAIL or RCPT eats its octets */
    h_send(&h, "MAIL FROM:<a@b.example>\r\nBDAT 4\r\nRSETRCPT TO:<u@example.test>\r\n"
               "BDAT 2\r\nab"
               "DATA\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "554 5.5.1");
    h_expect(&h, "250 2.1.5");
    h_expect(&h, "250 2.0.0 2 octets");
    h_expect(&h, "503 5.5.1");
    h_send(&h, "RSET\r\nBDAT 3 LAST\r\nxyzNOOP\r\n");
    h_expect(&h, "250 2.0.0");
    h_expect(&h, "503 5.5.1");
    h_expect(&h, "250 2.0.0 Ok");
    /* BDAT 0 LAST alone: an empty message */
    h_send(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\nBDAT 0 LAST\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    body = h_body(&h, h_queued_id(&h), NULL);
    cr_assert_str_eq(h_after_received(body), "");
    free(body);
    cr_assert_eq(h_live_count(&h, NULL), 2);
    h_fini(&h);
}

Test(smtp_session, bdat_refusals)
{
    struct h h;
    h_init(&h, NULL, OV("max_message_size=4096"));
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "BDAT 7 LAST\r\nab\ncd\r\n"); /* bare LF */
    h_expect(&h, "550 5.6.0");
    h_send(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\nBDAT 3\r\nab\r");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_expect(&h, "250 2.0.0 3 octets");
    h_send(&h, "BDAT 0 LAST\r\n"); /* ends in a CR */
    h_expect(&h, "550 5.6.0");
    /* too big: the chunk fails the transaction */
    char big[5000];
    memset(big, 'x', sizeof(big));
    h_send(&h, "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\nBDAT 5000\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_feed(&h, big, sizeof(big));
    h_expect(&h, "552 5.3.4");
    h_send(&h, "BDAT 1 LAST\r\nx");
    h_expect(&h, "503 5.5.1");
    cr_assert_eq(h_live_count(&h, NULL), 0);
    /* a size we cannot parse: the stream cannot be followed */
    h_send(&h, "BDAT 99999999999999999999999 LAST\r\n");
    h_expect(&h, "501 5.5.4");
    cr_assert(smtp_session_closing(h.s));
    h_fini(&h);
}

Test(smtp_session, commit_failure_is_451)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    h_send(&h, "x\r\n.\r\n");
    h_sync_res(&h, -EIO);
    h_expect(&h, "451 4.3.0");
    cr_assert_eq(smtp_server_stats(h.srv)->tempfailed, 1);
    /* the transaction is over; a new one works */
    h_send(&h, "RCPT TO:<u@example.test>\r\n");
    h_expect(&h, "503 5.5.1");
    smtp_session_destroy(h.s);
    h.s = NULL;
    spool_writer_destroy(h.w);
    spool_close(h.sp);
    struct spool_scan_report rep;
    cr_assert_eq(spool_open(h.dir, NULL, NULL, &rep, &h.sp), 0);
    cr_assert_eq(rep.live, 0);
    cr_assert_eq(spool_writer_create(h.sp, 0, &h.w), 0);
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_fini(&h);
}

Test(smtp_session, destroyed_while_parked)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    h_send(&h, "x\r\n.\r\nQUIT\r\n");
    smtp_session_eof(h.s); /* the client went away */
    smtp_session_destroy(h.s);
    h.s = NULL;
    h_sync(&h);
    cr_assert_eq(h_live_count(&h, NULL), 1, "committed before the client left");
    cr_assert_eq(h.kicks, 0);
    h_fini(&h);
}

Test(smtp_session, eof_aborts_open_message)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    h_send(&h, "partial message\r\n");
    smtp_session_eof(h.s);
    cr_assert(smtp_session_closing(h.s));
    h_sync(&h);
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_fini(&h);
}

Test(smtp_session, idle_timeout)
{
    struct h h;
    h_init(&h, NULL, OV("idle_timeout=60s"));
    h_expect(&h, "220 ");
    smtp_session_tick(h.s, 1000000 + 59000);
    h_collect(&h);
    h_expect_none(&h);
    smtp_set_test_clock(1000000 + 30000);
    h_send(&h, "NOOP\r\n");
    h_expect(&h, "250 ");
    smtp_session_tick(h.s, 1000000 + 30000 + 60000);
    h_collect(&h);
    h_expect_none(&h);
    smtp_session_tick(h.s, 1000000 + 30000 + 60001);
    h_collect(&h);
    h_expect(&h, "421 4.4.2 mx.example.test Error: timeout exceeded");
    cr_assert(smtp_session_closing(h.s));
    cr_assert_eq(smtp_server_stats(h.srv)->timeouts, 1);
    h_fini(&h);
}

Test(smtp_session, no_timeout_while_parked)
{
    struct h h;
    h_init(&h, NULL, OV("idle_timeout=60s"));
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    h_send(&h, "x\r\n.\r\n");
    smtp_session_tick(h.s, 1000000 + 600000);
    h_collect(&h);
    h_expect_none(&h);
    smtp_set_test_clock(1000000 + 600000);
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued");
    smtp_session_tick(h.s, 1000000 + 600000 + 1000); /* the clock restarted */
    h_collect(&h);
    h_expect_none(&h);
    h_fini(&h);
}

Test(smtp_session, minimum_data_rate)
{
    struct h h;
    h_init(&h, NULL, OV("min_data_rate=1000", "data_rate_grace=10s"));
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    for (int i = 1; i <= 9; i++) { /* 9 s, 100 bytes per second: within the grace */
        char line[101];
        memset(line, 'x', 98);
        memcpy(line + 98, "\r\n", 3);
        smtp_set_test_clock(1000000 + (uint64_t)i * 1000);
        h_send(&h, line);
        smtp_session_tick(h.s, 1000000 + (uint64_t)i * 1000);
        h_collect(&h);
        h_expect_none(&h);
    }
    smtp_session_tick(h.s, 1000000 + 11000);
    h_collect(&h);
    h_expect(&h, "421 4.4.2 mx.example.test Error: minimum data rate not met");
    cr_assert(smtp_session_closing(h.s));
    h_sync(&h);
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_fini(&h);
}

Test(smtp_session, shutdown_at_command_boundary)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    smtp_session_shutdown(h.s); /* mid-DATA: the message is finished first */
    smtp_session_shutdown(h.s); /* the worker calls it every tick */
    h_collect(&h);
    h_expect_none(&h);
    h_send(&h, "x\r\n.\r\n");
    h_expect_none(&h);
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued");
    h_expect(&h, "421 4.3.2 mx.example.test");
    cr_assert(smtp_session_closing(h.s));
    h_fini(&h);

    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    smtp_session_shutdown(h.s);
    h_collect(&h);
    h_expect(&h, "421 4.3.2");
    h_expect_none(&h);
    h_fini(&h);
}

Test(smtp_session, output_is_double_buffered)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h.manual = true;
    const char *p1, *p2;
    size_t n1, n2;
    h_send(&h, "NOOP\r\n");
    cr_assert(smtp_session_out_take(h.s, &p1, &n1));
    cr_assert(!smtp_session_out_take(h.s, &p2, &n2), "one send at a time");
    h_send(&h, "RSET\r\n"); /* goes to the other buffer */
    cr_assert_eq(n1, strlen("250 2.0.0 Ok\r\n"));
    cr_assert(memcmp(p1, "250 2.0.0 Ok\r\n", n1) == 0, "frozen bytes are stable");
    smtp_session_out_done(h.s);
    cr_assert(smtp_session_out_take(h.s, &p2, &n2));
    cr_assert(p2 != p1);
    cr_assert(memcmp(p2, "250 2.0.0 Ok\r\n", n2) == 0);
    smtp_session_out_done(h.s);
    cr_assert(!smtp_session_out_take(h.s, &p2, &n2));
    h_fini(&h);
}

/* The next message, pipelined behind the dot, is committed from inside
 * the first one's done callback (spool_writer_sync_done is on the stack). */
Test(smtp_session, next_message_from_the_done_callback)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    h_send(&h, "one\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.test>\r\n"
               "BDAT 5 LAST\r\ntwo\r\nQUIT\r\n");
    h_expect_none(&h);
    int fd = spool_writer_sync_fd(h.w);
    cr_assert_geq(fd, 0);
    cr_assert_eq(fdatasync(fd), 0);
    spool_writer_sync_done(h.w, 0); /* 250, then MAIL RCPT BDAT: parked again */
    h_collect(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    uint64_t id1 = h_queued_id(&h);
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_expect_none(&h);
    cr_assert(spool_writer_busy(h.w));
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    uint64_t id2 = h_queued_id(&h);
    h_expect(&h, "221 ");
    cr_assert_neq(id1, id2);
    char *b1 = h_body(&h, id1, NULL), *b2 = h_body(&h, id2, NULL);
    cr_assert_str_eq(h_after_received(b1), "one\r\n");
    cr_assert_str_eq(h_after_received(b2), "two\r\n");
    free(b1);
    free(b2);
    cr_assert_eq(h.kicks, 2);

    const struct smtp_stats *st = smtp_server_stats(h.srv);
    cr_assert_eq(st->sessions, 1);
    cr_assert_eq(st->messages, 2);
    cr_assert_eq(st->rejected + st->tempfailed + st->rcpt_rejected + st->protocol_errors, 0);
    h_fini(&h);
}

/* A client that never reads its replies stops being read at the
 * output high-water mark instead of growing the output without end. */
Test(smtp_session, output_high_water)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h.manual = true;
    char *many = malloc(6 * 20000);
    for (int i = 0; i < 20000; i++)
        memcpy(many + i * 6, "NOOP\r\n", 6);
    h_feed(&h, many, 6 * 20000); /* 20000 x 14 octets of replies */
    free(many);
    size_t pending = h.s->out[h.s->out_cur].len;
    cr_assert_geq(pending, SMTP_OUT_HIWAT);
    cr_assert_lt(pending, SMTP_OUT_HIWAT + 64);
    cr_assert_gt(smtp_session_backlog(h.s), 0);
    h.manual = false;
    h_collect(&h); /* take/done resumes the pump */
    cr_assert_eq(smtp_session_backlog(h.s), 0);
    size_t n = 0;
    while (h_pop(&h)) {
        cr_assert_str_eq(h.reply, "250 2.0.0 Ok");
        n++;
    }
    cr_assert_eq(n, 20000);
    h_fini(&h);
}
