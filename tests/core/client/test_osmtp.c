/*
 * NAME
 *	test_osmtp - the outbound SMTP client against a scripted server
 */
#include "test_osmtp_harness.h"

Test(osmtp, greeting_refused)
{
    struct o o;
    o_init(&o);
    cr_assert_eq(osmtp_state(o.c), OSMTP_GREETING);
    o_in(&o, "554 5.7.1 go away\r\n");
    cr_assert_str_eq(o_log_take(&o), "fail 554 5.7.1 go away\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_FAILED);
    cr_assert_str_eq(o_out(&o), "QUIT\r\n"); /* RFC 5321 3.1 */
    o_in(&o, "250 late\r\n");                /* ignored */
    osmtp_eof(o.c);
    cr_assert_str_eq(o_log_take(&o), "");
    o_fini(&o);

    o_init(&o);
    o_in(&o, "421 busy\r\n");
    cr_assert_str_eq(o_log_take(&o), "fail 421 4.0.0 busy\n");
    cr_assert_str_eq(o_out(&o), ""); /* the server is closing */
    o_fini(&o);

    o_init(&o);
    o_in(&o, "250 hello?\r\n");
    cr_assert_str_eq(o_log_take(&o),
                     "fail 0 4.5.0 protocol error: unexpected greeting: 250 hello?\n");
    o_fini(&o);

    o_init(&o);
    o_in(&o, "SSH-2.0-OpenSSH_9.2\r\n");
    cr_assert_str_eq(o_log_take(&o),
                     "fail 0 4.5.0 protocol error: not an SMTP reply: SSH-2.0-OpenSSH_9.2\n");
    o_fini(&o);
}

Test(osmtp, multiline_greeting_banner)
{
    struct o o;
    o_init(&o);
    o_in(&o, "220-mx.example.test ESMTP\r\n220-no UCE\r\n220 \r\n");
    cr_assert_str_eq(osmtp_banner(o.c), "mx.example.test ESMTP; no UCE");
    cr_assert_str_eq(o_out(&o), "EHLO client.test\r\n");
    o_fini(&o);
}

Test(osmtp, ehlo_refused_helo)
{
    static const char *const refusals[] = {"500 what?\r\n", "502 5.5.1 no\r\n", "504 no\r\n",
                                           "550 no ehlo for you\r\n", "554 no\r\n"};
    for (size_t k = 0; k < sizeof(refusals) / sizeof(refusals[0]); k++) {
        struct o o;
        o_init(&o);
        o_in(&o, "220 old.example.test\r\n");
        cr_assert_str_eq(o_out(&o), "EHLO client.test\r\n");
        o_in(&o, refusals[k]);
        cr_assert_str_eq(o_out(&o), "HELO client.test\r\n");
        cr_assert_eq(osmtp_state(o.c), OSMTP_HELLO);
        o_in(&o, "250 old.example.test\r\n");
        cr_assert_eq(osmtp_state(o.c), OSMTP_READY);
        cr_assert_eq(osmtp_ext(o.c), 0);
        cr_assert_str_eq(o_log_take(&o), "");
        o_fini(&o);
    }

    struct o o;
    o_init(&o);
    o_in(&o, "220 x\r\n502 no\r\n");
    cr_assert_str_eq(o_out(&o), "EHLO client.test\r\nHELO client.test\r\n");
    o_in(&o, "501 5.5.4 bad name\r\n");
    cr_assert_str_eq(o_log_take(&o), "fail 501 5.5.4 bad name\n");
    cr_assert_str_eq(o_out(&o), "QUIT\r\n");
    o_fini(&o);

    o_init(&o);
    o_in(&o, "220 x\r\n451 try later\r\n"); /* 4xx to EHLO: no HELO */
    cr_assert_str_eq(o_log_take(&o), "fail 451 4.0.0 try later\n");
    cr_assert_str_eq(o_out(&o), "EHLO client.test\r\nQUIT\r\n");
    o_fini(&o);
}

Test(osmtp, extensions)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250-mx.example.test\r\n250-SIZE 1000\r\n250-PIPELINING\r\n250-chunking\r\n"
                "250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN LOGIN\r\n250-STARTTLS\r\n"
                "250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n");
    cr_assert_eq(osmtp_ext(o.c), OSMTP_EXT_PIPELINING | OSMTP_EXT_SIZE | OSMTP_EXT_8BITMIME |
                                     OSMTP_EXT_SMTPUTF8 | OSMTP_EXT_CHUNKING | OSMTP_EXT_STARTTLS |
                                     OSMTP_EXT_ENHANCED);
    cr_assert_eq(osmtp_max_size(o.c), 1000);
    cr_assert_str_eq(osmtp_banner(o.c), "mx.example.test ESMTP test");
    o_fini(&o);

    /* the first line is the name, not a keyword; lookalikes do not count */
    o_init(&o);
    o_ready(&o, "250-PIPELINING\r\n250-SIZE\r\n250-PIPELININGX\r\n250-XCHUNKING\r\n"
                "250 8BITMIMEX\r\n");
    cr_assert_eq(osmtp_ext(o.c), OSMTP_EXT_SIZE);
    cr_assert_eq(osmtp_max_size(o.c), 0);
    o_fini(&o);

    /* a single-line EHLO reply: no extensions; huge SIZE saturates */
    o_init(&o);
    o_ready(&o, "250 mx.example.test\r\n");
    cr_assert_eq(osmtp_ext(o.c), 0);
    o_fini(&o);
    o_init(&o);
    o_ready(&o, "250-mx\r\n250 SIZE 99999999999999999999999\r\n");
    cr_assert_eq(osmtp_max_size(o.c), UINT64_MAX);
    o_fini(&o);
}

Test(osmtp, pipelined_mixed_recipients)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250-mx\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n");
    struct osmtp_msg m = O_MSG("a@x.test", 10, "r0@y.test", "r1@y.test", "r2@y.test");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert_eq(osmtp_state(o.c), OSMTP_ENVELOPE);
    cr_assert_eq(osmtp_send(o.c, &m), -EBUSY);
    cr_assert_str_eq(o_out(&o), "MAIL FROM:<a@x.test>\r\nRCPT TO:<r0@y.test>\r\n"
                                "RCPT TO:<r1@y.test>\r\nRCPT TO:<r2@y.test>\r\nDATA\r\n");
    cr_assert_eq(o.takes, 1, "one write");
    o_in(&o, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 250 2.1.5 ok\nrcpt 1 550 5.1.1 no such user\n");
    o_in(&o, "452 4.5.3 too many\r\n354 go ahead\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 2 452 4.5.3 too many\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_BODY);
    cr_assert_str_eq(o_body(&o, "Subject: x\r\n\r\nhi\r\n"), "Subject: x\r\n\r\nhi\r\n.\r\n");
    o_in(&o, "250 2.0.0 queued as X1\r\n");
    cr_assert_str_eq(o_log_take(&o), "done 250 2.0.0 queued as X1\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_READY);

    /* a second message on the same connection: no RSET after a success */
    struct osmtp_msg m2 = O_MSG("", 5, "r3@y.test");
    cr_assert_eq(osmtp_send(o.c, &m2), 0);
    cr_assert_str_eq(o_out(&o), "MAIL FROM:<>\r\nRCPT TO:<r3@y.test>\r\nDATA\r\n");
    o_in(&o, "250 ok\r\n250 ok\r\n354 go\r\n");
    o_body(&o, "hello\r\n");
    o_in(&o, "554 5.7.1 spam\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 250 2.0.0 ok\ndone 554 5.7.1 spam\n");
    /* a refused end of data ends the transaction too: still no RSET */
    cr_assert_eq(osmtp_send(o.c, &m2), 0);
    cr_assert_str_eq(o_out(&o), "MAIL FROM:<>\r\nRCPT TO:<r3@y.test>\r\nDATA\r\n");
    o_fini(&o);
}

Test(osmtp, pipelined_no_valid_recipient)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250-mx\r\n250 PIPELINING\r\n");
    struct osmtp_msg m = O_MSG("a@x.test", 10, "r0@y.test", "r1@y.test");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    o_out(&o);
    o_in(&o, "250 ok\r\n550 no r0\r\n550 no r1\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 550 5.0.0 no r0\nrcpt 1 550 5.0.0 no r1\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_ENVELOPE); /* the DATA reply is still due */
    o_in(&o, "554 5.5.1 no valid recipients\r\n");  /* swallowed */
    cr_assert_str_eq(o_log_take(&o), "done 550 5.0.0 no valid recipients: no r1\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_READY);
    cr_assert_str_eq(o_out(&o), "");

    /* the next transaction starts with RSET, pipelined */
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert_str_eq(o_out(&o), "RSET\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<r0@y.test>\r\n"
                                "RCPT TO:<r1@y.test>\r\nDATA\r\n");
    /* a server that accepts DATA without recipients gets a lone dot */
    o_in(&o, "250 ok\r\n250 ok\r\n550 no\r\n550 no\r\n354 go\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_ENVELOPE);
    cr_assert_str_eq(o_out(&o), ".\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 550 5.0.0 no\nrcpt 1 550 5.0.0 no\n");
    o_in(&o, "250 empty message accepted\r\n");
    cr_assert_str_eq(o_log_take(&o), "done 550 5.0.0 no valid recipients: no\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_READY);
    o_fini(&o);
}

Test(osmtp, sequential_no_valid_recipient_sends_no_data)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250 mx\r\n");
    struct osmtp_msg m = O_MSG("a@x.test", 10, "r0@y.test", "r1@y.test");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert_str_eq(o_out(&o), "MAIL FROM:<a@x.test>\r\n");
    o_in(&o, "250 ok\r\n");
    cr_assert_str_eq(o_out(&o), "RCPT TO:<r0@y.test>\r\n");
    o_in(&o, "550 no\r\n");
    cr_assert_str_eq(o_out(&o), "RCPT TO:<r1@y.test>\r\n");
    o_in(&o, "551 not here\r\n");
    cr_assert_str_eq(o_out(&o), "");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 550 5.0.0 no\nrcpt 1 551 5.0.0 not here\n"
                                     "done 551 5.0.0 no valid recipients: not here\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_READY);
    o_fini(&o);
}

Test(osmtp, sequential_transaction)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
    o_fini(&o);
    /* pipelining offered but not wanted */
    o_init_opts(&o, OSMTP_TLS_NONE, true, false);
    o_ready(&o, "250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
    struct osmtp_msg m = O_MSG("a@x.test", 10, "r0@y.test", "r1@y.test");
    m.body_8bit = true;
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert_str_eq(o_out(&o), "MAIL FROM:<a@x.test> BODY=8BITMIME\r\n");
    o_in(&o, "250 ok\r\n");
    cr_assert_str_eq(o_out(&o), "RCPT TO:<r0@y.test>\r\n");
    o_in(&o, "250 ok\r\n");
    cr_assert_str_eq(o_out(&o), "RCPT TO:<r1@y.test>\r\n");
    o_in(&o, "550 no\r\n");
    cr_assert_str_eq(o_out(&o), "DATA\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_ENVELOPE);
    o_in(&o, "354 go\r\n");
    cr_assert_str_eq(o_body(&o, "x"), "x\r\n.\r\n");
    o_in(&o, "250 ok\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 250 2.0.0 ok\nrcpt 1 550 5.0.0 no\n"
                                     "done 250 2.0.0 ok\n");

    /* DATA refused: the transaction fails, RSET before the next */
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    o_in(&o, "250 ok\r\n250 ok\r\n250 ok\r\n");
    cr_assert_str_eq(o_out(&o), "MAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<r0@y.test>\r\n"
                                "RCPT TO:<r1@y.test>\r\nDATA\r\n");
    o_in(&o, "451 4.3.0 later\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 250 2.0.0 ok\nrcpt 1 250 2.0.0 ok\n"
                                     "done 451 4.3.0 later\n");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert_str_eq(o_out(&o), "RSET\r\n");
    o_in(&o, "250 reset\r\n");
    cr_assert_str_eq(o_out(&o), "MAIL FROM:<a@x.test> BODY=8BITMIME\r\n");
    o_fini(&o);
}

Test(osmtp, mail_refused)
{
    /* pipelined: every recipient gets the MAIL reply; on_done only once the
     * rest of the group was read */
    struct o o;
    o_init(&o);
    o_ready(&o, "250-mx\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n");
    struct osmtp_msg m = O_MSG("bad@x.test", 10, "r0@y.test", "r1@y.test");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    o_out(&o);
    o_in(&o, "553 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n");
    cr_assert_str_eq(o_log_take(&o),
                     "rcpt 0 553 5.7.1 sender refused\nrcpt 1 553 5.7.1 sender refused\n");
    o_in(&o, "503 5.5.1 need MAIL\r\n");
    cr_assert_str_eq(o_log_take(&o), "");
    o_in(&o, "503 5.5.1 need MAIL\r\n");
    cr_assert_str_eq(o_log_take(&o), "done 553 5.7.1 sender refused\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_READY);
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert(strncmp(o_out(&o), "RSET\r\nMAIL FROM:<bad@x.test>\r\n", 30) == 0);
    o_fini(&o);

    /* sequential: no RCPT sent */
    o_init(&o);
    o_ready(&o, "250 mx\r\n");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert_str_eq(o_out(&o), "MAIL FROM:<bad@x.test>\r\n");
    o_in(&o, "451 later\r\n");
    cr_assert_str_eq(o_out(&o), "");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 451 4.0.0 later\nrcpt 1 451 4.0.0 later\n"
                                     "done 451 4.0.0 later\n");
    o_fini(&o);
}

Test(osmtp, bdat)
{
    struct o o;
    o_init(&o);
    o_ready(&o, O_EHLO_ALL);
    struct osmtp_msg m = O_MSG("a@x.test", 12, "r0@y.test", "r1@y.test");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert_eq(osmtp_body_mode(o.c), OSMTP_BODY_BDAT);
    cr_assert_str_eq(o_out(&o), "MAIL FROM:<a@x.test> SIZE=12\r\nRCPT TO:<r0@y.test>\r\n"
                                "RCPT TO:<r1@y.test>\r\n");
    o_in(&o, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_ENVELOPE); /* BDAT waits for every RCPT reply */
    cr_assert_str_eq(o_out(&o), "");
    o_in(&o, "550 5.1.1 no\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_BODY);
    cr_assert_str_eq(o_out(&o), "BDAT 12 LAST\r\n");
    o_in(&o, "250 early\r\n"); /* no reply is due before the chunk */
    cr_assert_str_eq(o_log_take(&o),
                     "rcpt 0 250 2.1.5 ok\nrcpt 1 550 5.1.1 no\n"
                     "done 0 4.5.0 protocol error: unexpected reply (in state body): 250 early\n"
                     "fail 0 4.5.0 protocol error: unexpected reply (in state body): 250 early\n");
    o_fini(&o);

    o_init(&o);
    o_ready(&o, O_EHLO_ALL);
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    o_out(&o);
    o_in(&o, "250 ok\r\n250 ok\r\n250 ok\r\n");
    cr_assert_str_eq(o_out(&o), "BDAT 12 LAST\r\n");
    osmtp_body_end(o.c); /* the caller sent 12 octets */
    cr_assert_eq(osmtp_state(o.c), OSMTP_FINAL);
    cr_assert_str_eq(o_out(&o), "");
    o_in(&o, "552 5.3.4 too big after all\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_READY);
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 250 2.0.0 ok\nrcpt 1 250 2.0.0 ok\n"
                                     "done 552 5.3.4 too big after all\n");
    /* a refused BDAT leaves the server's transaction open: RSET */
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert(strncmp(o_out(&o), "RSET\r\nMAIL", 10) == 0);
    o_in(&o, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n");
    cr_assert_str_eq(o_out(&o), "BDAT 12 LAST\r\n");
    osmtp_body_end(o.c);
    o_in(&o, "250 2.0.0 queued\r\n");
    o_log_take(&o);
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert(strncmp(o_out(&o), "MAIL", 4) == 0);
    o_fini(&o);

    /* every RCPT refused: no BDAT */
    o_init(&o);
    o_ready(&o, O_EHLO_ALL);
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    o_out(&o);
    o_in(&o, "250 ok\r\n550 no\r\n550 no\r\n");
    cr_assert_str_eq(o_out(&o), "");
    cr_assert_eq(osmtp_state(o.c), OSMTP_READY);
    o_fini(&o);

    /* chunking offered but not wanted: DATA */
    o_init_opts(&o, OSMTP_TLS_NONE, false, true);
    o_ready(&o, O_EHLO_ALL);
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert_eq(osmtp_body_mode(o.c), OSMTP_BODY_DATA);
    cr_assert(strstr(o_out(&o), "\r\nDATA\r\n") != NULL);
    o_fini(&o);
}

Test(osmtp, local_refusals)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250-mx\r\n250-PIPELINING\r\n250 SIZE 1000\r\n");
    struct osmtp_msg m = O_MSG("a@x.test", 1001, "r0@y.test", "r1@y.test");
    cr_assert_eq(osmtp_send(o.c, &m), -EMSGSIZE);
    cr_assert_str_eq(o_log_take(&o),
                     "rcpt 0 552 5.3.4 message too big for the next hop (1001 octets, the limit "
                     "is 1000)\nrcpt 1 552 5.3.4 message too big for the next hop (1001 octets, "
                     "the limit is 1000)\ndone 552 5.3.4 message too big for the next hop (1001 "
                     "octets, the limit is 1000)\n");
    cr_assert_str_eq(o_out(&o), "");
    cr_assert_eq(osmtp_state(o.c), OSMTP_READY);

    m.size = 1000;
    m.body_8bit = true;
    cr_assert_eq(osmtp_send(o.c, &m), -EPROTONOSUPPORT);
    cr_assert(strstr(o_log_take(&o), "done 550 5.6.3 the next hop lacks 8BITMIME") != NULL);
    m.body_8bit = false;
    m.smtputf8 = true;
    cr_assert_eq(osmtp_send(o.c, &m), -EPROTONOSUPPORT);
    cr_assert(strstr(o_log_take(&o), "done 553 5.6.7 the next hop lacks SMTPUTF8") != NULL);
    cr_assert_str_eq(o_out(&o), "");

    /* an address that would break the command line */
    m.smtputf8 = false;
    struct osmtp_msg bad = O_MSG("a@x.test", 10, "r0@y.test\r\nDATA", "r1@y.test");
    cr_assert_eq(osmtp_send(o.c, &bad), 0);
    cr_assert_str_eq(o_out(&o), "MAIL FROM:<a@x.test> SIZE=10\r\nRCPT TO:<r1@y.test>\r\n"
                                "DATA\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 553 5.1.3 bad recipient address\n");
    o_in(&o, "250 ok\r\n250 ok\r\n354 go\r\n");
    o_body(&o, "");
    o_in(&o, "250 ok\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 1 250 2.0.0 ok\ndone 250 2.0.0 ok\n");
    struct osmtp_msg bads = O_MSG("a>@x", 10, "r0@y.test");
    cr_assert_eq(osmtp_send(o.c, &bads), -EINVAL);
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 553 5.1.7 bad sender address\n"
                                     "done 553 5.1.7 bad sender address\n");
    cr_assert_str_eq(o_out(&o), "");
    o_fini(&o);

    /* with the extensions: the parameters */
    o_init(&o);
    o_ready(&o, O_EHLO_ALL);
    m.size = 999;
    m.body_8bit = m.smtputf8 = true;
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    cr_assert(strncmp(o_out(&o), "MAIL FROM:<a@x.test> SIZE=999 BODY=8BITMIME SMTPUTF8\r\n", 54) ==
              0);
    o_fini(&o);
}

Test(osmtp, code_421_mid_transaction)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250-mx\r\n250 PIPELINING\r\n");
    struct osmtp_msg m = O_MSG("a@x.test", 10, "r0", "r1", "r2");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    o_out(&o);
    o_in(&o, "250 ok\r\n250 ok\r\n421 4.3.2 shutting down\r\n250 ignored\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 250 2.0.0 ok\n"
                                     "rcpt 1 421 4.3.2 shutting down\n"
                                     "rcpt 2 421 4.3.2 shutting down\n"
                                     "done 421 4.3.2 shutting down\n"
                                     "fail 421 4.3.2 shutting down\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_FAILED);
    cr_assert_eq(osmtp_send(o.c, &m), -EBUSY);
    osmtp_eof(o.c);
    cr_assert_str_eq(o_log_take(&o), "");
    o_fini(&o);

    /* 421 while idle */
    o_init(&o);
    o_ready(&o, "250 mx\r\n");
    o_in(&o, "421 idle timeout\r\n");
    cr_assert_str_eq(o_log_take(&o), "fail 421 4.0.0 idle timeout\n");
    o_fini(&o);
}

Test(osmtp, eof_mid_data)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250-mx\r\n250 PIPELINING\r\n");
    struct osmtp_msg m = O_MSG("a@x.test", 10, "r0", "r1");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    o_in(&o, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    char buf[16];
    osmtp_stuff(o.c, "abc", 3, buf, sizeof(buf));
    osmtp_eof(o.c);
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 250 2.0.0 ok\nrcpt 1 250 2.0.0 ok\n"
                                     "done 0 4.4.2 connection lost (in state body)\n"
                                     "fail 0 4.4.2 connection lost (in state body)\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_FAILED);
    o_fini(&o);

    /* a reply during a DATA body is a protocol error; eof in HELLO */
    o_init(&o);
    o_ready(&o, "250-mx\r\n250 PIPELINING\r\n");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    o_in(&o, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 what\r\n");
    cr_assert(strstr(o_log_take(&o), "fail 0 4.5.0 protocol error: unexpected reply (in state "
                                     "body): 250 what\n") != NULL);
    o_fini(&o);
    o_init(&o);
    o_in(&o, "220 x\r\n");
    osmtp_eof(o.c);
    cr_assert_str_eq(o_log_take(&o), "fail 0 4.4.2 connection lost (in state hello)\n");
    o_fini(&o);
}

Test(osmtp, reuse_from_on_done)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250-mx\r\n250 PIPELINING\r\n");
    struct osmtp_msg m1 = O_MSG("a@x.test", 10, "r0");
    struct osmtp_msg m2 = O_MSG("b@x.test", 10, "r1");
    cr_assert_eq(osmtp_send(o.c, &m1), 0);
    o_out(&o);
    o.next = &m2; /* on_done starts the next one */
    o.next_rc = 1;
    o_in(&o, "550 no\r\n503 no\r\n503 no\r\n");
    cr_assert_eq(o.next_rc, 0);
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 550 5.0.0 no\ndone 550 5.0.0 no\n");
    cr_assert_str_eq(o_out(&o), "RSET\r\nMAIL FROM:<b@x.test>\r\nRCPT TO:<r1>\r\nDATA\r\n");
    o_in(&o, "250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_BODY);
    o_body(&o, "x\r\n");
    o_in(&o, "250 sent\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 250 2.0.0 ok\ndone 250 2.0.0 sent\n");
    /* an RSET refused means the server lost track: the session fails */
    cr_assert_eq(osmtp_send(o.c, &m1), 0);
    o_in(&o, "550 no\r\n503 no\r\n503 no\r\n");
    o_log_take(&o);
    cr_assert_eq(osmtp_send(o.c, &m1), 0);
    o_out(&o);
    o_in(&o, "500 what RSET\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 0 4.5.0 protocol error: RSET refused: 500 what RSET\n"
                                     "done 0 4.5.0 protocol error: RSET refused: 500 what RSET\n"
                                     "fail 0 4.5.0 protocol error: RSET refused: 500 what RSET\n");
    cr_assert_str_eq(o_out(&o), "QUIT\r\n");
    o_fini(&o);
}

Test(osmtp, starttls)
{
    struct o o;
    o_init_opts(&o, OSMTP_TLS_MAY, true, true);
    o_in(&o, "220 mx\r\n");
    o_out(&o);
    o_in(&o, "250-mx\r\n250-SIZE 5000\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_STARTTLS);
    cr_assert_str_eq(o_out(&o), "STARTTLS\r\n");
    o_in(&o, "220 2.0.0 ready\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_TLS_HANDSHAKE);
    osmtp_tls_done(o.c, true, NULL);
    cr_assert_eq(osmtp_state(o.c), OSMTP_HELLO);
    cr_assert_eq(osmtp_ext(o.c), 0);
    cr_assert_eq(osmtp_max_size(o.c), 0);
    cr_assert_str_eq(o_out(&o), "EHLO client.test\r\n");
    o_in(&o, "250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n"); /* offered again: not again */
    cr_assert_eq(osmtp_state(o.c), OSMTP_READY);
    cr_assert_eq(osmtp_ext(o.c), OSMTP_EXT_PIPELINING | OSMTP_EXT_STARTTLS);
    cr_assert_str_eq(o_out(&o), "");
    cr_assert_str_eq(o_log_take(&o), "");
    o_fini(&o);

    /* ENCRYPT and no STARTTLS offered: temporary failure, QUIT */
    o_init_opts(&o, OSMTP_TLS_ENCRYPT, true, true);
    o_in(&o, "220 mx\r\n250-mx\r\n250 PIPELINING\r\n");
    cr_assert_str_eq(o_log_take(&o),
                     "fail 454 4.7.4 TLS is required but the server does not offer STARTTLS\n");
    cr_assert_str_eq(o_out(&o), "EHLO client.test\r\nQUIT\r\n");
    o_fini(&o);
    /* ... nor after a HELO fallback */
    o_init_opts(&o, OSMTP_TLS_VERIFY, true, true);
    o_in(&o, "220 mx\r\n502 no\r\n250 mx\r\n");
    cr_assert(strstr(o_log_take(&o), "fail 454 4.7.4") != NULL);
    o_fini(&o);

    /* STARTTLS refused: MAY goes on in plaintext, ENCRYPT fails */
    o_init_opts(&o, OSMTP_TLS_MAY, true, true);
    o_in(&o, "220 mx\r\n250-mx\r\n250 STARTTLS\r\n454 4.7.0 not now\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_READY);
    cr_assert_eq(osmtp_ext(o.c), OSMTP_EXT_STARTTLS);
    o_fini(&o);
    o_init_opts(&o, OSMTP_TLS_ENCRYPT, true, true);
    o_in(&o, "220 mx\r\n250-mx\r\n250 STARTTLS\r\n454 4.7.0 not now\r\n");
    cr_assert_str_eq(o_log_take(&o), "fail 454 4.7.4 TLS is required but STARTTLS was refused: "
                                     "454 4.7.0 not now\n");
    o_fini(&o);

    /* handshake failure */
    o_init_opts(&o, OSMTP_TLS_MAY, true, true);
    o_in(&o, "220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n");
    osmtp_tls_done(o.c, false, "certificate verify failed");
    cr_assert_str_eq(o_log_take(&o),
                     "fail 454 4.7.5 TLS handshake failed: certificate verify failed\n");
    o_fini(&o);

    /* plaintext after the 220: response injection */
    o_init_opts(&o, OSMTP_TLS_MAY, true, true);
    o_in(&o, "220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n250-injected\r\n");
    cr_assert_str_eq(o_log_take(&o),
                     "fail 0 4.5.0 protocol error: plaintext after the STARTTLS reply\n");
    o_fini(&o);

    /* NONE never says STARTTLS */
    o_init(&o);
    o_ready(&o, "250-mx\r\n250 STARTTLS\r\n");
    o_fini(&o);
}

Test(osmtp, enhanced_status_codes)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250-mx\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n");
    struct osmtp_msg m = O_MSG("a@x.test", 10, "r0", "r1", "r2", "r3", "r4");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    o_in(&o, "250 2.1.0\r\n"                                      /* MAIL */
             "550-5.1.1 first\r\n550 5.1.1 second\r\n"            /* r0 */
             "550 4.1.1 wrong class\r\n"                          /* r1: not taken */
             "250 \r\n"                                           /* r2: no text */
             "250\n"                                              /* r3: bare, LF only */
             "450-4.2.1 busy\r\n450-\r\n450 4.2.1  try again\r\n" /* r4 */
             "354 go\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 550 5.1.1 first; second\n"
                                     "rcpt 1 550 5.0.0 4.1.1 wrong class\n"
                                     "rcpt 2 250 2.0.0 \n"
                                     "rcpt 3 250 2.0.0 \n"
                                     "rcpt 4 450 4.2.1 busy; try again\n");
    o_fini(&o);

    /* without ENHANCEDSTATUSCODES the text is kept whole */
    o_init(&o);
    o_ready(&o, "250-mx\r\n250 PIPELINING\r\n");
    struct osmtp_msg m1 = O_MSG("a@x.test", 10, "r0");
    cr_assert_eq(osmtp_send(o.c, &m1), 0);
    o_in(&o, "250 ok\r\n550-5.1.1 first\r\n550 5.1.1 sec\tond\x01\r\n503 x\r\n");
    cr_assert_str_eq(o_log_take(&o), "rcpt 0 550 5.1.1 first; sec ond?\n"
                                     "done 550 5.1.1 no valid recipients: first; sec ond?\n");
    o_fini(&o);
}

Test(osmtp, malformed_replies)
{
    static const char *const bad[] = {
        "250-mx\r\n251 other code\r\n",
        "25\r\n",
        "250x\r\n",
        "650 no\r\n",
        "260 no\r\n",
        "\r\n",
        "hello\r\n",
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        struct o o;
        o_init(&o);
        o_in(&o, "220 mx\r\n");
        o_in(&o, bad[k]);
        cr_assert_eq(osmtp_state(o.c), OSMTP_FAILED, "%s", bad[k]);
        cr_assert(strncmp(o_log_take(&o), "fail 0 4.5.0 protocol error: ", 29) == 0);
        o_fini(&o);
    }
    /* an unexpected reply when idle */
    struct o o;
    o_init(&o);
    o_ready(&o, "250 mx\r\n");
    o_in(&o, "250 surprise\r\n");
    cr_assert_str_eq(o_log_take(&o), "fail 0 4.5.0 protocol error: unexpected reply (in state "
                                     "ready): 250 surprise\n");
    o_fini(&o);
    /* a 3xx to MAIL */
    o_init(&o);
    o_ready(&o, "250 mx\r\n");
    struct osmtp_msg m = O_MSG("a@x.test", 10, "r0");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    o_in(&o, "354 huh\r\n");
    cr_assert(strstr(o_log_take(&o), "done 0 4.5.0 protocol error: unexpected reply to MAIL: "
                                     "354 huh\n") != NULL);
    o_fini(&o);
}

Test(osmtp, reply_caps)
{
    /* one line over the whole cap, before its LF */
    struct o o;
    o_init(&o);
    o_in(&o, "220 mx\r\n250-");
    static char big[70000];
    memset(big, 'x', sizeof(big));
    o_inn(&o, big, sizeof(big));
    cr_assert_str_eq(o_log_take(&o),
                     "fail 0 4.5.0 protocol error: reply longer than 65536 octets\n");
    o_fini(&o);

    /* many lines over the cap */
    o_init(&o);
    o_in(&o, "220 mx\r\n");
    for (int i = 0; i < 7000 && osmtp_state(o.c) != OSMTP_FAILED; i++)
        o_in(&o, "250-XFEATURE\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_FAILED);
    o_fini(&o);

    /* a long line under the cap: kept, text cut at 511 */
    o_init(&o);
    o_in(&o, "220 ");
    o_inn(&o, big, 5000);
    o_in(&o, "\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_HELLO);
    cr_assert_eq(strlen(osmtp_banner(o.c)), 511);
    o_in(&o, "250-mx\r\n250-");
    o_inn(&o, big, 3000);
    o_in(&o, "\r\n250 PIPELINING\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_READY);
    cr_assert_eq(osmtp_ext(o.c), OSMTP_EXT_PIPELINING);
    o_fini(&o);
}

Test(osmtp, quit)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250 mx\r\n");
    osmtp_quit(o.c);
    cr_assert_eq(osmtp_state(o.c), OSMTP_QUIT);
    cr_assert_str_eq(o_out(&o), "QUIT\r\n");
    o_in(&o, "221 2.0.0 bye\r\n");
    cr_assert_eq(osmtp_state(o.c), OSMTP_CLOSED);
    osmtp_eof(o.c);
    cr_assert_eq(osmtp_state(o.c), OSMTP_CLOSED);
    cr_assert_str_eq(o_log_take(&o), "");
    o_fini(&o);

    /* the server closes without 221 */
    o_init(&o);
    o_ready(&o, "250 mx\r\n");
    osmtp_quit(o.c);
    osmtp_eof(o.c);
    cr_assert_eq(osmtp_state(o.c), OSMTP_CLOSED);
    cr_assert_str_eq(o_log_take(&o), "");
    o_fini(&o);

    /* quit inside a transaction: the session fails */
    o_init(&o);
    o_ready(&o, "250 mx\r\n");
    struct osmtp_msg m = O_MSG("a@x.test", 10, "r0");
    cr_assert_eq(osmtp_send(o.c, &m), 0);
    osmtp_quit(o.c);
    cr_assert_str_eq(o_log_take(&o),
                     "rcpt 0 0 4.3.0 session ended by the client (in state envelope)\n"
                     "done 0 4.3.0 session ended by the client (in state envelope)\n"
                     "fail 0 4.3.0 session ended by the client (in state envelope)\n");
    o_fini(&o);
}

Test(osmtp, output_double_buffer)
{
    struct o o;
    o_init(&o);
    o_in(&o, "220 mx\r\n");
    const char *p;
    size_t len;
    cr_assert(osmtp_out_take(o.c, &p, &len));
    cr_assert_eq(len, 18);
    const char *frozen = p;
    cr_assert(!osmtp_out_take(o.c, &p, &len)); /* one take at a time */
    o_in(&o, "502 no\r\n");                    /* HELO goes to the other buffer */
    cr_assert(memcmp(frozen, "EHLO client.test\r\n", 18) == 0);
    osmtp_out_done(o.c);
    cr_assert(osmtp_out_take(o.c, &p, &len));
    cr_assert(len == 18 && memcmp(p, "HELO client.test\r\n", 18) == 0);
    osmtp_out_done(o.c);
    cr_assert(!osmtp_out_take(o.c, &p, &len));
    o_fini(&o);
}

Test(osmtp, out_done_without_take, .signal = SIGABRT)
{
    struct o o;
    o_init(&o);
    osmtp_out_done(o.c);
}

Test(osmtp, body_end_outside_body, .signal = SIGABRT)
{
    struct o o;
    o_init(&o);
    o_ready(&o, "250 mx\r\n");
    osmtp_body_end(o.c);
}
