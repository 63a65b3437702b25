/*
 * NAME
 *	test_milter - the milter codec and session machine (sinks/milter_*.c)
 * DESCRIPTION
 *	The session machine is driven by hand: what it appends to s->out is
 *	decoded packet by packet and checked, replies are appended to s->in
 *	as a milter would send them.  The real milters (python3-milter,
 *	OpenDKIM) are exercised by tests/integration/test_milter.py.
 */
#include "tests/sinks/sink_test.h"

#include <arpa/inet.h>

#include "sinks/milter_sess.h"

/* ---- packets the MTA sent ---- */

struct pkt {
    int cmd;
    size_t len;
    const unsigned char *d;
};

/* The next packet of s->out, consumed; cmd 0 when there is none. */
static struct pkt next_pkt(struct milter_sess *s)
{
    struct pkt p = {0};
    if (milter_buf_left(&s->out) < 5)
        return p;
    uint32_t n;
    memcpy(&n, s->out.p + s->out.off, 4);
    n = ntohl(n);
    cr_assert_geq(milter_buf_left(&s->out), 4 + n, "packet %c of %u, have %zu", s->out.p[s->out.off + 4], n, milter_buf_left(&s->out));
    p.cmd = s->out.p[s->out.off + 4];
    p.d = s->out.p + s->out.off + 5;
    p.len = n - 1;
    s->out.off += 4 + n;
    return p;
}

/* The next packet that is not SMFIC_MACRO. */
static struct pkt next_cmd(struct milter_sess *s)
{
    struct pkt p;
    while ((p = next_pkt(s)).cmd == 'D')
        ;
    return p;
}

/* The i-th NUL-terminated string of a packet's data (after skip octets). */
static const char *pkt_str(struct pkt p, size_t skip, int i)
{
    const char *s = (const char *)p.d + skip, *end = (const char *)p.d + p.len;
    for (; i > 0 && s < end; i--)
        s += strlen(s) + 1;
    return s < end ? s : NULL;
}

/* A reply as a milter sends it. */
static void reply(struct milter_sess *s, int cmd, const void *data, size_t n)
{
    uint32_t len = htonl((uint32_t)n + 1);
    unsigned char c = (unsigned char)cmd;
    milter_buf_append(&s->in, &len, 4);
    milter_buf_append(&s->in, &c, 1);
    milter_buf_append(&s->in, data, n);
}

static void reply0(struct milter_sess *s, int cmd)
{
    reply(s, cmd, "", 0);
}

static void optneg_reply(struct milter_sess *s, uint32_t actions, uint32_t proto,
                         const char *symlist_eom)
{
    unsigned char b[256];
    uint32_t v[3] = {htonl(6), htonl(actions), htonl(proto)};
    memcpy(b, v, 12);
    size_t n = 12;
    if (symlist_eom != NULL) {
        uint32_t st = htonl(MILTER_M_EOM);
        memcpy(b + n, &st, 4);
        n += 4;
        memcpy(b + n, symlist_eom, strlen(symlist_eom) + 1);
        n += strlen(symlist_eom) + 1;
    }
    reply(s, MILTER_R_OPTNEG, b, n);
}

/* ---- the MTA side's callbacks ---- */

static const char *msg_text;
static char edits[1024];

static const char *macro(void *arg, const char *name)
{
    (void)arg;
    if (strcmp(name, "i") == 0)
        return "ABC123";
    if (strcmp(name, "j") == 0)
        return "mx.test";
    if (strcmp(name, "client_addr") == 0)
        return "192.0.2.7";
    return NULL;
}

static ssize_t msg_read(void *arg, uint64_t off, void *buf, size_t len)
{
    (void)arg;
    size_t n = strlen(msg_text);
    if (off >= n)
        return 0;
    if (len > 7) /* small pieces: the reader must gather */
        len = 7;
    if (len > n - off)
        len = n - off;
    memcpy(buf, msg_text + off, len);
    return (ssize_t)len;
}

static int edit(void *arg, enum milter_edit_op op, const char *name, const char *value)
{
    (void)arg;
    static const char *const ops[] = {"add", "change", "remove", "unsupported"};
    size_t l = strlen(edits);
    snprintf(edits + l, sizeof(edits) - l, "%s %s=%s;", ops[op], name, value ? value : "");
    return 0;
}

static struct milter_sess *sess(uint32_t actions)
{
    struct milter_sess_cfg cfg = {
        .actions = actions,
        .proto = MILTER_PROTO_OFFER,
        .skip_first_header = true,
        .macro = macro,
        .read = msg_read,
        .edit = edit,
    };
    edits[0] = '\0';
    struct milter_sess *s = milter_sess_new(&cfg);
    cr_assert_not_null(s);
    return s;
}

static void negotiate(struct milter_sess *s, uint32_t actions, uint32_t proto)
{
    milter_sess_start(s, MILTER_S_OPTNEG, NULL);
    cr_assert_eq(milter_sess_pump(s), MILTER_WAIT);
    struct pkt p = next_pkt(s);
    cr_assert_eq(p.cmd, 'O');
    cr_assert_eq(p.len, 12);
    uint32_t v[3];
    memcpy(v, p.d, 12);
    cr_assert_eq(ntohl(v[0]), 6);
    optneg_reply(s, actions, proto, "i {rcpt_addr}");
    cr_assert_eq(milter_sess_input(s), MILTER_DONE);
    cr_assert(s->negotiated);
}

/* Runs a step whose one command gets reply cmd; returns the verdict. */
static enum sink_verdict step(struct milter_sess *s, enum milter_step st,
                              const struct milter_step_in *in, int expect_cmd, int rcmd)
{
    milter_sess_start(s, st, in);
    cr_assert_eq(milter_sess_pump(s), MILTER_WAIT);
    struct pkt p;
    while ((p = next_pkt(s)).cmd == 'D' || p.cmd == 'A')
        ;
    cr_assert_eq(p.cmd, expect_cmd, "sent %c, expected %c", p.cmd, expect_cmd);
    reply0(s, rcmd);
    cr_assert_eq(milter_sess_input(s), MILTER_DONE);
    return s->res.verdict;
}

/* ---- tests ---- */

Test(milter, envelope_packets_carry_esmtp_args)
{
    struct milter_buf b = {0};
    cr_assert_eq(milter_put_envelope(&b, 'M', "a@b.test", "SIZE=100  BODY=8BITMIME"), 0);
    struct milter_sess s = {.out = b};
    struct pkt p = next_pkt(&s);
    cr_assert_eq(p.cmd, 'M');
    cr_assert_str_eq(pkt_str(p, 0, 0), "<a@b.test>");
    cr_assert_str_eq(pkt_str(p, 0, 1), "SIZE=100");
    cr_assert_str_eq(pkt_str(p, 0, 2), "BODY=8BITMIME");
    cr_assert_null(pkt_str(p, 0, 3));
    milter_buf_free(&s.out);
}

Test(milter, replies_parse_and_bad_ones_are_refused)
{
    struct milter_sess *s = sess(MILTER_ACTIONS_ALL);
    unsigned char ins[64];
    uint32_t idx = htonl(2);
    memcpy(ins, &idx, 4);
    memcpy(ins + 4, "X-A\0v 1", 8);
    reply(s, MILTER_R_INSHEADER, ins, 12);
    struct milter_reply r;
    ssize_t n = milter_parse(s->in.p, s->in.len, &r);
    cr_assert_eq(n, (ssize_t)s->in.len);
    cr_assert_eq(r.cmd, 'i');
    cr_assert_eq(r.index, 2);
    cr_assert_str_eq(r.s1, "X-A");
    cr_assert_str_eq(r.s2, "v 1");
    /* cut short: not complete yet */
    cr_assert_eq(milter_parse(s->in.p, s->in.len - 1, &r), 0);
    /* a header value without its NUL */
    s->in.len = 0;
    reply(s, MILTER_R_ADDHEADER, "X-A\0v", 5);
    cr_assert_eq(milter_parse(s->in.p, s->in.len, &r), -EPROTO);
    /* an unknown reply, an absurd length */
    s->in.len = 0;
    reply0(s, 'Z');
    cr_assert_eq(milter_parse(s->in.p, s->in.len, &r), -EPROTO);
    unsigned char huge[5] = {0x7f, 0xff, 0xff, 0xff, 'c'};
    cr_assert_eq(milter_parse(huge, 5, &r), -EPROTO);
    milter_sess_free(s);
}

Test(milter, negotiation_refuses_actions_not_offered)
{
    struct milter_sess *s = sess(MILTER_F_ADDHDRS);
    milter_sess_start(s, MILTER_S_OPTNEG, NULL);
    cr_assert_eq(milter_sess_pump(s), MILTER_WAIT);
    optneg_reply(s, MILTER_F_ADDHDRS | MILTER_F_CHGBODY, 0, NULL);
    cr_assert_eq(milter_sess_input(s), MILTER_FAIL);
    cr_assert(strstr(s->why, "0x2") != NULL, "%s", s->why);
    /* and every later step fails at once */
    milter_sess_start(s, MILTER_S_HELO, NULL);
    cr_assert_eq(milter_sess_pump(s), MILTER_FAIL);
    milter_sess_free(s);
}

Test(milter, a_whole_transaction)
{
    struct milter_sess *s = sess(MILTER_ACTIONS_ALL);
    negotiate(s, MILTER_F_ADDHDRS | MILTER_F_CHGHDRS | MILTER_F_QUARANTINE, 0);

    /* connect: the macros first, then family, port, address */
    struct milter_step_in in = {.host = "[192.0.2.7]", .family = '4', .port = 4321,
                                .addr = "192.0.2.7"};
    milter_sess_start(s, MILTER_S_CONNECT, &in);
    cr_assert_eq(milter_sess_pump(s), MILTER_WAIT);
    struct pkt p = next_pkt(s);
    cr_assert_eq(p.cmd, 'D');
    cr_assert_eq(p.d[0], 'C');
    cr_assert_str_eq(pkt_str(p, 1, 0), "j");
    cr_assert_str_eq(pkt_str(p, 1, 1), "mx.test");
    cr_assert_str_eq(pkt_str(p, 1, 2), "{client_addr}");
    cr_assert_str_eq(pkt_str(p, 1, 3), "192.0.2.7");
    p = next_pkt(s);
    cr_assert_eq(p.cmd, 'C');
    cr_assert_str_eq(pkt_str(p, 0, 0), "[192.0.2.7]");
    const unsigned char *f = (const unsigned char *)pkt_str(p, 0, 1);
    cr_assert_eq(f[0], '4');
    cr_assert_eq(f[1] << 8 | f[2], 4321);
    cr_assert_str_eq((const char *)f + 3, "192.0.2.7");
    reply0(s, MILTER_R_PROGRESS); /* alive: keeps waiting */
    cr_assert_eq(milter_sess_input(s), MILTER_WAIT);
    cr_assert(s->waiting);
    reply0(s, MILTER_R_CONTINUE);
    cr_assert_eq(milter_sess_input(s), MILTER_DONE);
    cr_assert_eq(s->progress, 1);

    in = (struct milter_step_in){.helo = "client.test"};
    cr_assert_eq(step(s, MILTER_S_HELO, &in, 'H', MILTER_R_CONTINUE), SINK_CONTINUE);
    in = (struct milter_step_in){.addr = "a@b.test", .params = "SIZE=10"};
    cr_assert_eq(step(s, MILTER_S_MAIL, &in, 'M', MILTER_R_CONTINUE), SINK_CONTINUE);
    in = (struct milter_step_in){.addr = "x@y.test"};
    cr_assert_eq(step(s, MILTER_S_RCPT, &in, 'R', MILTER_R_REJECT), SINK_REJECT);
    in = (struct milter_step_in){.addr = "z@y.test"};
    cr_assert_eq(step(s, MILTER_S_RCPT, &in, 'R', MILTER_R_CONTINUE), SINK_CONTINUE);
    cr_assert_eq(step(s, MILTER_S_DATA, NULL, 'T', MILTER_R_CONTINUE), SINK_CONTINUE);

    /* eom: the first field (our Received:) is not shown; folded values
     * joined with "\n"; one space after the colon eaten; a body over one
     * chunk goes in two */
    static char msg[80000];
    char *m = msg;
    m += sprintf(m, "Received: from x\r\n\tby y\r\nSubject: hi\r\n  there\r\nX-Two:  2\r\n"
                    "X-Two: two\r\n\r\n");
    size_t body_at = (size_t)(m - msg);
    memset(m, 'b', 70000);
    m[69998] = '\r';
    m[69999] = '\n';
    m[70000] = '\0';
    msg_text = msg;
    milter_sess_start(s, MILTER_S_EOM, NULL);
    static const char *const hn[] = {"Subject", "X-Two", "X-Two"};
    static const char *const hv[] = {"hi\n  there", " 2", "two"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(milter_sess_pump(s), MILTER_WAIT);
        p = next_cmd(s);
        cr_assert_eq(p.cmd, 'L', "header %d: %c", i, p.cmd);
        cr_assert_str_eq(pkt_str(p, 0, 0), hn[i]);
        cr_assert_str_eq(pkt_str(p, 0, 1), hv[i]);
        reply0(s, MILTER_R_CONTINUE);
        cr_assert_eq(milter_sess_input(s), MILTER_WAIT);
    }
    cr_assert_eq(milter_sess_pump(s), MILTER_WAIT);
    cr_assert_eq(next_cmd(s).cmd, 'N');
    reply0(s, MILTER_R_CONTINUE);
    cr_assert_eq(milter_sess_input(s), MILTER_WAIT);
    size_t body = 0;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(milter_sess_pump(s), MILTER_WAIT);
        p = next_cmd(s);
        cr_assert_eq(p.cmd, 'B');
        cr_assert_eq(memcmp(p.d, msg + body_at + body, p.len), 0);
        body += p.len;
        reply0(s, MILTER_R_CONTINUE);
        cr_assert_eq(milter_sess_input(s), MILTER_WAIT);
    }
    cr_assert_eq(body, 70000);
    cr_assert_eq(milter_sess_pump(s), MILTER_WAIT);
    p = next_pkt(s);
    cr_assert_eq(p.cmd, 'D'); /* the eom list the milter asked for: i, {rcpt_addr} */
    cr_assert_eq(p.d[0], 'E');
    cr_assert_str_eq(pkt_str(p, 1, 0), "i");
    cr_assert_str_eq(pkt_str(p, 1, 1), "ABC123");
    cr_assert_null(pkt_str(p, 1, 2));
    cr_assert_eq(next_pkt(s).cmd, 'E');
    /* the edits, then the final reply */
    reply(s, MILTER_R_ADDHEADER, "X-Scan\0clean", 13);
    unsigned char chg[32];
    uint32_t one = htonl(1);
    memcpy(chg, &one, 4);
    memcpy(chg + 4, "Subject\0new", 12);
    reply(s, MILTER_R_CHGHEADER, chg, 16);
    memcpy(chg + 4, "X-Two\0", 7); /* delete the first of two: not expressible */
    reply(s, MILTER_R_CHGHEADER, chg, 11);
    reply(s, MILTER_R_QUARANTINE, "held", 5);
    reply0(s, MILTER_R_ACCEPT);
    cr_assert_eq(milter_sess_input(s), MILTER_DONE);
    cr_assert_eq(s->res.verdict, SINK_QUARANTINE);
    cr_assert_str_eq(edits, "add X-Scan=clean;change Subject=new;unsupported X-Two=changing "
                            "field 1 of 2 called X-Two is not supported;");
    cr_assert_not(s->in_txn);
    milter_sess_free(s);
}

Test(milter, replycode_and_accept_then_abort_before_next_mail)
{
    struct milter_sess *s = sess(MILTER_ACTIONS_ALL);
    negotiate(s, 0, 0);
    struct milter_step_in in = {.addr = "a@b.test"};
    cr_assert_eq(step(s, MILTER_S_MAIL, &in, 'M', MILTER_R_CONTINUE), SINK_CONTINUE);
    /* accept at rcpt: nothing more of this message goes to the milter */
    in.addr = "r@b.test";
    cr_assert_eq(step(s, MILTER_S_RCPT, &in, 'R', MILTER_R_ACCEPT), SINK_CONTINUE);
    milter_sess_start(s, MILTER_S_DATA, NULL);
    cr_assert_eq(milter_sess_pump(s), MILTER_DONE);
    milter_sess_start(s, MILTER_S_EOM, NULL);
    cr_assert_eq(milter_sess_pump(s), MILTER_DONE);
    cr_assert_eq(milter_buf_left(&s->out), 0);
    /* the next MAIL: an abort first */
    milter_sess_start(s, MILTER_S_MAIL, &in);
    cr_assert_eq(milter_sess_pump(s), MILTER_WAIT);
    cr_assert_eq(next_pkt(s).cmd, 'A');
    struct pkt p;
    while ((p = next_pkt(s)).cmd == 'D')
        ;
    cr_assert_eq(p.cmd, 'M');
    static const char rc[] = "451 4.7.1 try later\r\n451 4.7.1 second line";
    reply(s, MILTER_R_REPLYCODE, rc, sizeof(rc));
    cr_assert_eq(milter_sess_input(s), MILTER_DONE);
    cr_assert_eq(s->res.verdict, SINK_TEMPFAIL);
    cr_assert_eq(s->res.code, 451);
    cr_assert_str_eq(s->res.enhanced, "4.7.1");
    cr_assert_str_eq(s->res.text, "try later");
    milter_sess_free(s);
}

Test(milter, no_reply_steps_and_skipped_steps)
{
    struct milter_sess *s = sess(MILTER_ACTIONS_ALL);
    negotiate(s, 0, MILTER_P_NOHELO | MILTER_P_NR_MAIL | MILTER_P_NR_HDR | MILTER_P_NOBODY);
    char steps[128];
    milter_sess_steps(s, steps, sizeof(steps));
    cr_assert_str_eq(steps, "connect mail rcpt data header eoh eom");
    struct milter_step_in in = {.helo = "h"};
    milter_sess_start(s, MILTER_S_HELO, &in);
    cr_assert_eq(milter_sess_pump(s), MILTER_DONE);
    cr_assert_eq(milter_buf_left(&s->out), 0);
    in = (struct milter_step_in){.addr = "a@b.test"};
    milter_sess_start(s, MILTER_S_MAIL, &in);
    cr_assert_eq(milter_sess_pump(s), MILTER_DONE); /* sent, no reply awaited */
    struct pkt p;
    while ((p = next_pkt(s)).cmd == 'D')
        ;
    cr_assert_eq(p.cmd, 'M');
    msg_text = "Received: x\r\nA: 1\r\nB: 2\r\n\r\nbody\r\n";
    milter_sess_start(s, MILTER_S_EOM, NULL);
    cr_assert_eq(milter_sess_pump(s), MILTER_WAIT); /* headers go at once, eoh waits */
    int seen[2] = {0};
    while ((p = next_pkt(s)).cmd != 0)
        seen[p.cmd == 'L' ? 0 : p.cmd == 'N' ? 1 : 0] += p.cmd == 'L' || p.cmd == 'N';
    cr_assert_eq(seen[0], 2);
    cr_assert_eq(seen[1], 1);
    reply0(s, MILTER_R_CONTINUE);
    cr_assert_eq(milter_sess_input(s), MILTER_WAIT);
    cr_assert_eq(milter_sess_pump(s), MILTER_WAIT); /* no body: end of body */
    while ((p = next_pkt(s)).cmd == 'D')
        ;
    cr_assert_eq(p.cmd, 'E');
    reply0(s, MILTER_R_DISCARD);
    cr_assert_eq(milter_sess_input(s), MILTER_DONE);
    cr_assert_eq(s->res.verdict, SINK_DISCARD);
    milter_sess_free(s);
}

Test(milter, an_edit_before_end_of_message_is_a_protocol_error)
{
    struct milter_sess *s = sess(MILTER_ACTIONS_ALL);
    negotiate(s, MILTER_F_ADDHDRS, 0);
    struct milter_step_in in = {.addr = "a@b.test"};
    milter_sess_start(s, MILTER_S_MAIL, &in);
    cr_assert_eq(milter_sess_pump(s), MILTER_WAIT);
    reply(s, MILTER_R_ADDHEADER, "X\0y", 4);
    cr_assert_eq(milter_sess_input(s), MILTER_FAIL);
    cr_assert(strstr(s->why, "before end of message") != NULL, "%s", s->why);
    milter_sess_free(s);
}
