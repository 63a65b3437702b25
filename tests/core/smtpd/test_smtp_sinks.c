/*
 * NAME
 *	test_smtp_sinks - event sinks in the SMTP session: events, verdicts,
 *	waiting for a sink
 * DESCRIPTION
 *	Engines come from configuration text with binding blocks (cfg_load
 *	of a temporary file, as the daemon does): the builtins (access,
 *	header, delay, command) and builtin:ts (test_smtp_ts.h).  The message
 *	side (eod, body access, holds, edits, submission) is in
 *	test_smtp_sinkmsg.c.
 */
#include "test_smtp_ts.h"

TestSuite(smtp_sinks, .init = ts_setup);

Test(smtp_sinks, no_bindings_no_cost)
{
    struct h h;
    /* a binding of a queue manager event (route) binds no session event */
    start(&h, NULL, B("later", "event = \"route\"; sink = \"builtin:ts\";"));
    envelope(&h);
    message(&h, "Subject: plain\r\n\r\nhi\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    cr_assert_null(h.s->sk, "no sink state without a bound event");
    cr_assert_str_eq(ts_logged(), "");
    h_fini(&h);
}

/* ---- connect ---- */

Test(smtp_sinks, connect_verdicts)
{
    static const struct {
        const char *props, *want;
        bool closes;
    } t[] = {
        {"verdict = \"reject\";", "554 5.7.1 mx.example.test Rejected by policy", true},
        {"verdict = \"tempfail\";", "421 4.7.1 mx.example.test Try again later", true},
        {"verdict = \"drop\";", "421 4.7.0 mx.example.test Closing connection", true},
        {"verdict = \"continue\";", "220 mx.example.test ESMTP sluice", false},
        {"verdict = \"consumed\"; code = 220; text = \"welcome, friend\";", "220 welcome, friend",
         false},
        {"verdict = \"reject\"; code = 554; enhanced = \"5.7.1\"; text = \"go away\";",
         "554 5.7.1 go away", true},
        {"verdict = \"tempfail\"; code = 450; text = \"later\";", "421 later", true},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char conf[512];
        snprintf(conf, sizeof(conf),
                 B("c", "event = \"connect\"; sink = \"builtin:ts\"; properties { %s }"),
                 t[i].props);
        struct h h;
        start(&h, NULL, conf);
        cr_assert(h_pop(&h), "case %zu: no reply", i);
        cr_assert_str_eq(h.reply, t[i].want, "case %zu", i);
        cr_assert_eq(smtp_session_closing(h.s), t[i].closes, "case %zu", i);
        h_fini(&h);
    }
}

/* ---- helo, mail, rcpt, data ---- */

static enum sink_verdict hook_helo(struct sink_ctx *ctx, const struct ts_inst *t)
{
    ts_logf("helo=%s verb=%s args=%s", sink_helo(ctx), sink_command_verb(ctx),
            sink_command_args(ctx));
    return strcmp(sink_helo(ctx), "bad.example") == 0 ? SINK_REJECT : SINK_CONTINUE;
}

Test(smtp_sinks, helo_event)
{
    struct h h;
    ts_hooks[1] = hook_helo;
    start(&h, NULL, B("h", "event = \"helo\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    h_expect(&h, "220 ");
    h_send(&h, "ehlo bad.example\r\n");
    h_expect(&h, "550 5.7.1 Rejected by policy");
    h_send(&h, "MAIL FROM:<a@example.org>\r\n");
    h_expect(&h, "503 5.5.1"); /* the refused EHLO did not count */
    h_send(&h, "HELO good.example\r\n");
    h_expect(&h, "250 mx.example.test");
    cr_assert_str_eq(ts_logged(), "ts:helo,helo=bad.example verb=EHLO args=bad.example,ts:helo,"
                                  "helo=good.example verb=HELO args=good.example");
    h_fini(&h);
}

static enum sink_verdict hook_mail(struct sink_ctx *ctx, const struct ts_inst *t)
{
    ts_logf("sender=%s params=%s", sink_sender(ctx), sink_mail_params(ctx));
    return SINK_CONTINUE;
}

Test(smtp_sinks, mail_and_rcpt_default_replies)
{
    struct h h;
    ts_hooks[1] = hook_mail;
    start(&h, NULL,
          B("look", "event = \"mail\"; sink = \"builtin:ts\"; priority = 10; "
                    "properties { hook = 1; tag = \"look\"; }")
              B("no", "event = \"mail\"; sink = \"builtin:ts\"; rule = \"MAIL FROM=*@bad.example\";"
                      "properties { verdict = \"reject\"; tag = \"no\"; }")
                  B("later", "event = \"rcpt\"; sink = \"builtin:ts\"; "
                             "rule = \"RCPT TO=later@example.test\";"
                             "properties { verdict = \"tempfail\"; tag = \"later\"; }")
                      B("custom",
                        "event = \"rcpt\"; sink = \"builtin:ts\"; "
                        "rule = \"RCPT TO=custom@example.test\"; properties { verdict = "
                        "\"reject\"; code = 553; enhanced = \"5.1.8\"; text = \"Nope\"; }"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<x@bad.example> SIZE=100\r\n");
    h_expect(&h, "550 5.7.1 Rejected by policy");
    h_send(&h, "MAIL FROM:<x@good.example> SIZE=100\r\n");
    h_expect(&h, "250 2.1.0 Ok");
    h_send(&h, "RCPT TO:<later@example.test>\r\n");
    h_expect(&h, "451 4.7.1 Try again later");
    h_send(&h, "RCPT TO:<custom@example.test>\r\n");
    h_expect(&h, "553 5.1.8 Nope");
    h_send(&h, "RCPT TO:<fine@example.test>\r\n");
    h_expect(&h, "250 2.1.5 Ok");
    cr_assert(strstr(ts_logged(), "sender=x@bad.example params=SIZE=100") != NULL, "%s",
              ts_logged());
    cr_assert_eq(h.srv->stats.sink_refused, 3);
    cr_assert_eq(h.srv->stats.rcpt_rejected, 2);
    h_fini(&h);
}

/* Relay control is the server's link: a sink before it may accept what it
 * refuses, a sink after it sees only what it accepted. */
Test(smtp_sinks, rcpt_chain_around_relay_control)
{
    struct h h;
    start(&h, "192.0.2.10",
          B("allow", "event = \"rcpt\"; sink = \"builtin:access\"; priority = 1000; "
                     "rule = \"RCPT TO=*@foreign.example\"; properties { action = \"accept\"; }")
              B("after", "event = \"rcpt\"; sink = \"builtin:ts\"; priority = 30000; "
                         "properties { tag = \"after\"; }"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@elsewhere.example>\r\n");
    h_expect(&h, "250 2.1.0");
    h_send(&h, "RCPT TO:<x@foreign.example>\r\n");
    h_expect(&h, "250 2.1.5 Ok"); /* relay control would refuse it */
    h_send(&h, "RCPT TO:<y@other.example>\r\n");
    h_expect(&h, "554 5.7.1 Relay access denied");
    h_send(&h, "RCPT TO:<z@example.test>\r\n");
    h_expect(&h, "250 2.1.5 Ok");
    cr_assert_str_eq(ts_logged(), "after:rcpt", "only what the server accepted");
    cr_assert_eq(h.s->txn.nrcpt, 2);
    h_fini(&h);
}

Test(smtp_sinks, server_refusal_keeps_its_reply)
{
    struct h h;
    const char *ov[] = {"max_message_size=2000"};
    h_init_conf(&h, NULL, B("after", "event = \"mail\"; sink = \"builtin:ts\"; priority = 30000;"),
                ov, 1, SMTP_START_OK);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@example.org> SIZE=5000\r\n");
    h_expect(&h, "552 5.3.4");
    h_send(&h, "MAIL FROM:<a@example.org\r\n");
    h_expect(&h, "501 5.1.7"); /* a syntax error never reaches the event */
    cr_assert_str_eq(ts_logged(), "");
    h_fini(&h);
}

Test(smtp_sinks, data_refused_resets_the_transaction)
{
    struct h h;
    start(&h, NULL,
          B("d", "event = \"data\"; sink = \"builtin:ts\"; properties { verdict = \"reject\"; }"));
    envelope(&h);
    h_send(&h, "DATA\r\n");
    h_expect(&h, "550 5.7.1 Rejected by policy");
    h_send(&h, "RCPT TO:<b@example.test>\r\n");
    h_expect(&h, "503 5.5.1");
    /* BDAT: the chunk's octets are read and dropped, then the refusal */
    h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_send(&h, "BDAT 8 LAST\r\nNOOP\r\n\r\n");
    h_expect(&h, "550 5.7.1 Rejected by policy");
    h_expect_none(&h);
    h_send(&h, "NOOP\r\n");
    h_expect(&h, "250 2.0.0 Ok");
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_fini(&h);
}

/* ---- pending ---- */

Test(smtp_sinks, delayed_eod_then_250)
{
    struct h h;
    start(&h, NULL,
          B("slow", "event = \"eod\"; sink = \"builtin:delay\"; deadline = \"3s\"; "
                    "properties { ms = 100; }"));
    envelope(&h);
    message(&h, "Subject: slow\r\n\r\nx\r\n");
    h_sync(&h);
    h_expect_none(&h); /* never a 250 before the verdict */
    cr_assert_eq(h.s->phase, SMTP_P_SINK);
    h_send(&h, "NOOP\r\n"); /* pipelined meanwhile: waits */
    h_expect_none(&h);
    cr_assert(h_wait(&h, 3000), "no reply");
    h_expect(&h, "250 2.0.0 Ok: queued as");
    cr_assert(h_wait(&h, 1000));
    h_expect(&h, "250 2.0.0 Ok");
    cr_assert_eq(h_live_count(&h, NULL), 1);
    cr_assert_gt(h.kicks, 0, "the net layer is kicked after a completion");
    h_fini(&h);
}

Test(smtp_sinks, hung_sink_costs_a_451_at_the_deadline)
{
    struct h h;
    start(&h, NULL,
          B("hung", "event = \"eod\"; sink = \"builtin:delay\"; deadline = \"300ms\"; "
                    "properties { never = true; }"));
    envelope(&h);
    message(&h, "Subject: hung\r\n\r\nx\r\n");
    uint64_t t0 = sink_now_ms();
    cr_assert(h_wait(&h, 3000), "no reply");
    uint64_t waited = sink_now_ms() - t0;
    h_expect(&h, "451 4.7.1");
    cr_assert_geq(waited, 290);
    cr_assert_lt(waited, 1500, "%llu ms", (unsigned long long)waited);
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_send(&h, "RSET\r\n");
    h_expect(&h, "250 2.0.0 Ok");
    h_fini(&h);
}

/* Group commit waits only for sessions about to commit: one parked on a
 * sink is not a sibling until the sink answers. */
Test(smtp_sinks, waiting_on_a_sink_is_not_a_group_commit_sibling)
{
    struct h h;
    start(&h, NULL,
          B("slow", "event = \"eod\"; sink = \"builtin:delay\"; deadline = \"3s\"; "
                    "properties { ms = 100; }"));
    cr_assert_eq(smtp_server_open_txns(h.srv), 0);
    envelope(&h);
    cr_assert_eq(smtp_server_open_txns(h.srv), 1, "MAIL makes a sibling");
    message(&h, "Subject: slow\r\n\r\nx\r\n");
    h_sync(&h);
    cr_assert_eq(h.s->phase, SMTP_P_SINK);
    cr_assert_eq(smtp_server_open_txns(h.srv), 0, "parked on a sink: not a sibling");
    cr_assert(h_wait(&h, 3000), "no reply");
    h_expect(&h, "250 2.0.0 Ok: queued as");
    cr_assert_eq(smtp_server_open_txns(h.srv), 0, "committed: not a sibling");
    h_fini(&h);
}

Test(smtp_sinks, pipelined_commands_wait_their_turn)
{
    struct h h;
    start(&h, NULL,
          B("slow", "event = \"rcpt\"; sink = \"builtin:delay\"; properties { ms = 20; }"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n"
               "RCPT TO:<c@example.test>\r\nDATA\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect_none(&h);
    cr_assert(h_wait(&h, 2000));
    h_expect(&h, "250 2.1.5");
    cr_assert(h_wait(&h, 2000));
    h_expect(&h, "250 2.1.5");
    cr_assert(h_wait(&h, 2000));
    h_expect(&h, "354 ");
    h_fini(&h);
}

/* Content sent before the 354 while a data sink decides is smuggling. */
Test(smtp_sinks, input_before_354_while_pending)
{
    struct h h;
    start(&h, NULL,
          B("slow", "event = \"data\"; sink = \"builtin:delay\"; properties { ms = 50; }"));
    envelope(&h);
    h_send(&h, "DATA\r\n");
    h_expect_none(&h);
    h_send(&h, "Subject: early\r\n");
    cr_assert(h_wait(&h, 2000));
    h_expect(&h, "554 5.5.0");
    cr_assert(smtp_session_closing(h.s));
    h_fini(&h);
}

Test(smtp_sinks, destroyed_while_pending)
{
    struct h h;
    start(&h, NULL,
          B("hung", "event = \"mail\"; sink = \"builtin:delay\"; properties { never = true; }")
              B("bye", "event = \"disconnect\"; sink = \"builtin:delay\"; "
                       "properties { never = true; }"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@example.org>\r\n");
    h_expect_none(&h);
    smtp_session_eof(h.s);
    h_poll(&h);
    smtp_session_destroy(h.s); /* both pending calls are abandoned */
    h.s = NULL;
    h_poll(&h);
    h_fini(&h);
}

/* ---- command, response, disconnect ---- */

static enum sink_verdict hook_vrfy(struct sink_ctx *ctx, const struct ts_inst *t)
{
    return strcmp(sink_command_verb(ctx), "VRFY") == 0 ? SINK_REJECT : SINK_CONTINUE;
}

Test(smtp_sinks, command_sink_adds_a_verb)
{
    struct h h;
    ts_hooks[1] = hook_vrfy;
    start(&h, NULL,
          B("xhello", "event = \"command\"; sink = \"builtin:command\"; priority = 1000; "
                      "properties { verb = \"XHELLO\"; code = 250; text = \"hello from a sink\"; }")
              B("novrfy", "event = \"command\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    h_expect(&h, "220 ");
    h_send(&h, "XHELLO\r\n");
    h_expect(&h, "250 hello from a sink");
    cr_assert_str_eq(h.reply, "250 hello from a sink");
    h_send(&h, "xhello there\r\n");
    h_expect(&h, "250 hello from a sink");
    h_send(&h, "VRFY postmaster\r\n");
    h_expect(&h, "550 5.7.1 Rejected by policy");
    h_send(&h, "NOOP\r\n");
    h_expect(&h, "250 2.0.0 Ok");
    h_send(&h, "XBYE\r\n");
    h_expect(&h, "500 5.5.2");
    cr_assert_eq(h.s->errors, 1, "only the unknown verb was a protocol error");
    /* novrfy runs after the server's link: it saw VRFY and NOOP, not the
     * verbs a sink before the server answered, nor the one it refused */
    cr_assert_str_eq(ts_logged(), "ts:command,ts:command");
    h_fini(&h);
}

static enum sink_verdict hook_response(struct sink_ctx *ctx, const struct ts_inst *t)
{
    const char *text = sink_response_text(ctx);
    if (sink_response_code(ctx) == 250 && strstr(text, " 2.1.5 ") != NULL)
        cr_assert_eq(sink_set_reply(ctx, 250, "2.1.5", "Recipient noted"), 0);
    if (strstr(text, "PIPELINING") != NULL)
        cr_assert_eq(sink_set_reply(ctx, 250, NULL, "no extensions for you"), 0);
    if (strncmp(text, "252 ", 4) == 0)
        return SINK_DROP;
    return SINK_CONTINUE;
}

Test(smtp_sinks, response_changes_a_reply)
{
    struct h h;
    ts_hooks[1] = hook_response;
    start(&h, NULL,
          B("resp", "event = \"response\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    h_expect(&h, "220 mx.example.test ESMTP sluice");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING"); /* multi-line: shown to the sink, not changed */
    h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n");
    h_expect(&h, "250 2.1.0 Ok");
    h_expect(&h, "250 2.1.5 Recipient noted");
    cr_assert_str_eq(h.reply, "250 2.1.5 Recipient noted");
    cr_assert_eq(h.s->txn.nrcpt, 1, "what the client is told changes, not the session's state");
    h_send(&h, "VRFY x\r\n");
    h_expect(&h, "421 4.7.0 mx.example.test Closing connection");
    cr_assert(smtp_session_closing(h.s));
    h_fini(&h);
}

static enum sink_verdict hook_disc(struct sink_ctx *ctx, const struct ts_inst *t)
{
    ts_logf("helo=%s", sink_helo(ctx));
    return SINK_REJECT; /* a notification: ignored */
}

Test(smtp_sinks, disconnect_notifies)
{
    struct h h;
    ts_hooks[1] = hook_disc;
    start(&h, NULL,
          B("bye", "event = \"disconnect\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    h_expect(&h, "220 ");
    h_send(&h, "HELO client.example\r\n");
    h_expect(&h, "250 ");
    h_send(&h, "QUIT\r\n");
    h_expect(&h, "221 ");
    cr_assert_str_eq(ts_logged(), "");
    smtp_session_destroy(h.s);
    h.s = NULL;
    cr_assert_str_eq(ts_logged(), "ts:disconnect,helo=client.example");
    h_fini(&h);
}

Test(smtp_sinks, pending_connect)
{
    struct h h;
    const char *conf =
        B("slow", "event = \"connect\"; sink = \"builtin:delay\"; properties { ms = 30; }");
    start(&h, NULL, conf);
    h_expect_none(&h); /* no greeting before the verdict */
    cr_assert(h_wait(&h, 2000));
    h_expect(&h, "220 mx.example.test ESMTP sluice");
    h_fini(&h);
    /* talking before the greeting, while the connect sink decides */
    start(&h, NULL, conf);
    h_send(&h, "EHLO early.example\r\n");
    h_expect(&h, "554 5.5.0");
    cr_assert(smtp_session_closing(h.s));
    h_poll(&h);
    h_fini(&h);
}

/* A pending response sink holds the reply until it answers; what the
 * session writes meanwhile waits behind it. */
Test(smtp_sinks, pending_response_sink_holds_the_reply)
{
    struct h h;
    start(&h, NULL,
          B("slow", "event = \"response\"; sink = \"builtin:delay\"; "
                    "properties { ms = 20; verdict = \"tempfail\"; }"));
    h_expect_none(&h); /* the greeting waits for the sink */
    cr_assert(h_wait(&h, 2000));
    h_expect(&h, "451 4.7.1");
    h_fini(&h);
}
