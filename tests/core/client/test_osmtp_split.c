/*
 * NAME
 *	test_osmtp_split - dot-stuffing, and one conversation cut every way
 * DESCRIPTION
 *	The same server bytes, cut at every byte boundary, at random points
 *	or with LF-only line ends, must give the same callbacks and the same
 *	client output.
 */
#include "test_osmtp_harness.h"

/* A session in OSMTP_BODY (DATA mode). */
static void o_in_body(struct o *o)
{
    o_init(o);
    o_ready(o, "250-mx\r\n250 PIPELINING\r\n");
    static const char *const r[] = {"r0@y.test"};
    struct osmtp_msg m = {.sender = "a@x.test", .nrcpt = 1, .rcpts = r, .size = 10};
    cr_assert_eq(osmtp_send(o->c, &m), 0);
    o_out(o);
    o_in(o, "250 ok\r\n250 ok\r\n354 go\r\n");
    cr_assert_eq(osmtp_state(o->c), OSMTP_BODY);
}

/* Stuffs the pieces (NULL-terminated) and ends the body. */
static const char *stuff(const char *const *pieces)
{
    static char all[4096];
    struct o o;
    o_in_body(&o);
    size_t n = 0;
    for (size_t k = 0; pieces[k] != NULL; k++) {
        size_t len = strlen(pieces[k]);
        char buf[512];
        cr_assert(2 * len + 2 <= sizeof(buf));
        size_t w = osmtp_stuff(o.c, pieces[k], len, buf, 2 * len + 2);
        cr_assert(w <= 2 * len);
        memcpy(all + n, buf, w);
        n += w;
    }
    osmtp_body_end(o.c);
    const char *tail = o_out(&o);
    memcpy(all + n, tail, strlen(tail) + 1);
    o_fini(&o);
    return all;
}

#define P(...) ((const char *const[]){__VA_ARGS__, NULL})

Test(osmtp_stuff, dots)
{
    cr_assert_str_eq(stuff(P("")), ".\r\n");
    cr_assert_str_eq(stuff(P(".")), "..\r\n.\r\n");
    cr_assert_str_eq(stuff(P(".\r\n")), "..\r\n.\r\n");
    cr_assert_str_eq(stuff(P(".a\r\n..b\r\nc.\r\n.")), "..a\r\n...b\r\nc.\r\n..\r\n.\r\n");
    cr_assert_str_eq(stuff(P("a\r\n.\r\n.\r\nb\r\n")), "a\r\n..\r\n..\r\nb\r\n.\r\n");
    /* only CRLF ends a line: a dot after a bare LF or CR is content */
    cr_assert_str_eq(stuff(P("a\n.b\r.c\r\n")), "a\n.b\r.c\r\n.\r\n");
    /* no final CRLF; a final CR gets its LF */
    cr_assert_str_eq(stuff(P("abc")), "abc\r\n.\r\n");
    cr_assert_str_eq(stuff(P("abc\r")), "abc\r\n.\r\n");
    cr_assert_str_eq(stuff(P("abc\n")), "abc\n\r\n.\r\n");
    /* across calls */
    cr_assert_str_eq(stuff(P("x\r", "\n.y\r\n")), "x\r\n..y\r\n.\r\n");
    cr_assert_str_eq(stuff(P("x\r\n", ".", "y")), "x\r\n..y\r\n.\r\n");
    cr_assert_str_eq(stuff(P("x\r\n", "", ".", ".")), "x\r\n...\r\n.\r\n");
    cr_assert_str_eq(stuff(P("x", "\r", "\n", ".", "\r", "\n")), "x\r\n..\r\n.\r\n");
    cr_assert_str_eq(stuff(P("x\r\n.", "\r\n")), "x\r\n..\r\n.\r\n");
    cr_assert_str_eq(stuff(P("\r\n", "\r\n", ".")), "\r\n\r\n..\r\n.\r\n");
}

Test(osmtp_stuff, every_split_of_a_body)
{
    static const char body[] = ".a\r\n..\r\nb.\r\n.\r\n\r\n.c\rd\n.e\r\n.";
    char whole[256];
    snprintf(whole, sizeof(whole), "%s", stuff(P(body)));
    size_t n = strlen(body);
    for (size_t i = 0; i <= n; i++)
        for (size_t j = i; j <= n; j++) {
            char a[64], b[64], c[64];
            memcpy(a, body, i), a[i] = '\0';
            memcpy(b, body + i, j - i), b[j - i] = '\0';
            snprintf(c, sizeof(c), "%s", body + j);
            cr_assert_str_eq(stuff(P(a, b, c)), whole, "split %zu %zu", i, j);
        }
}

Test(osmtp_stuff, outside_body, .signal = SIGABRT)
{
    struct o o;
    o_init(&o);
    char buf[8];
    osmtp_stuff(o.c, "x", 1, buf, sizeof(buf));
}

/* ---- one conversation, every way it can be cut ---- */

static const char *const rcpts3[] = {"r0@y.test", "r1@y.test", "r2@y.test"};
static const char *const rcpts2[] = {"s0@y.test", "s1@y.test"};

enum act { A_NONE, A_SEND1, A_SEND2, A_BODY, A_QUIT };

static const struct phase {
    const char *server;
    enum act then;
} script[] = {
    {"220-mx.example.test ESMTP\r\n220 welcome\r\n"
     "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n"
     "250 ENHANCEDSTATUSCODES\r\n",
     A_SEND1},
    {"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n250 2.1.5 ok\r\n"
     "354 go ahead\r\n",
     A_BODY},
    {"250 2.0.0 queued as A\r\n", A_SEND2},
    {"250 2.1.0 ok\r\n450 4.2.1 busy\r\n550 5.1.1 gone\r\n554 5.5.1 no valid recipients\r\n",
     A_SEND1},
    {"250 2.0.0 reset\r\n250 2.1.0 ok\r\n250 ok\r\n250 ok\r\n250-2.1.5 fine\r\n250 2.1.5 ok\r\n"
     "354 go\r\n",
     A_BODY},
    {"550-5.7.1 rejected\r\n550 5.7.1 as spam\r\n", A_QUIT},
    {"221 2.0.0 bye\r\n", A_NONE},
};

struct conv {
    char log[16384];
    char out[16384];
};

static void conv_act(struct o *o, enum act a, char *out, size_t *outlen)
{
    struct osmtp_msg m1 = {.sender = "a@x.test", .nrcpt = 3, .rcpts = rcpts3, .size = 40};
    struct osmtp_msg m2 = {.sender = "", .nrcpt = 2, .rcpts = rcpts2, .size = 20};
    const char *s = "";
    switch (a) {
    case A_NONE:
        break;
    case A_SEND1:
        cr_assert_eq(osmtp_send(o->c, &m1), 0);
        s = o_out(o);
        break;
    case A_SEND2:
        cr_assert_eq(osmtp_send(o->c, &m2), 0);
        s = o_out(o);
        break;
    case A_BODY:
        s = o_body(o, ".hidden\r\nline\r\n.\r\nend");
        break;
    case A_QUIT:
        osmtp_quit(o->c);
        s = o_out(o);
        break;
    }
    size_t n = strlen(s);
    cr_assert(*outlen + n < 16384);
    memcpy(out + *outlen, s, n + 1);
    *outlen += n;
}

static uint64_t rng_state;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)rng_state;
}

/* mode 0: whole phases; 1: byte by byte; 2: random cuts; 3: LF only. */
static void conv_run(struct conv *cv, int mode)
{
    struct o o;
    o_init(&o);
    size_t outlen = 0;
    cv->out[0] = '\0';
    char lf[1024];
    for (size_t k = 0; k < sizeof(script) / sizeof(script[0]); k++) {
        const char *s = script[k].server;
        size_t n = strlen(s);
        if (mode == 3) { /* drop every CR */
            size_t j = 0;
            for (size_t i = 0; i < n; i++)
                if (s[i] != '\r')
                    lf[j++] = s[i];
            s = lf;
            n = j;
        }
        const char *prev = o_out(&o);
        size_t pl = strlen(prev);
        memcpy(cv->out + outlen, prev, pl + 1);
        outlen += pl;
        for (size_t i = 0; i < n;) {
            size_t step = mode == 1 ? 1 : mode == 2 ? 1 + rng() % 9 : n - i;
            if (step > n - i)
                step = n - i;
            o_inn(&o, s + i, step);
            i += step;
        }
        conv_act(&o, script[k].then, cv->out, &outlen);
    }
    cr_assert_eq(osmtp_state(o.c), OSMTP_CLOSED);
    memcpy(cv->log, o.log, o.loglen + 1);
    o_fini(&o);
}

Test(osmtp_split, conversation_every_cut)
{
    static struct conv whole, other;
    conv_run(&whole, 0);
    cr_assert_str_eq(whole.log, "rcpt 0 250 2.1.5 ok\n"
                                "rcpt 1 550 5.1.1 no such; user\n"
                                "rcpt 2 250 2.1.5 ok\n"
                                "done 250 2.0.0 queued as A\n"
                                "rcpt 0 450 4.2.1 busy\n"
                                "rcpt 1 550 5.1.1 gone\n"
                                "done 550 5.1.1 no valid recipients: gone\n"
                                "rcpt 0 250 2.0.0 ok\n"
                                "rcpt 1 250 2.0.0 ok\n"
                                "rcpt 2 250 2.1.5 fine; ok\n"
                                "done 550 5.7.1 rejected; as spam\n");
    cr_assert_str_eq(whole.out, "EHLO client.test\r\n"
                                "MAIL FROM:<a@x.test> SIZE=40\r\n"
                                "RCPT TO:<r0@y.test>\r\nRCPT TO:<r1@y.test>\r\n"
                                "RCPT TO:<r2@y.test>\r\nDATA\r\n"
                                "..hidden\r\nline\r\n..\r\nend\r\n.\r\n"
                                "MAIL FROM:<> SIZE=20\r\n"
                                "RCPT TO:<s0@y.test>\r\nRCPT TO:<s1@y.test>\r\nDATA\r\n"
                                "RSET\r\nMAIL FROM:<a@x.test> SIZE=40\r\n"
                                "RCPT TO:<r0@y.test>\r\nRCPT TO:<r1@y.test>\r\n"
                                "RCPT TO:<r2@y.test>\r\nDATA\r\n"
                                "..hidden\r\nline\r\n..\r\nend\r\n.\r\n"
                                "QUIT\r\n");
    conv_run(&other, 1);
    cr_assert_str_eq(other.log, whole.log);
    cr_assert_str_eq(other.out, whole.out);
    conv_run(&other, 3);
    cr_assert_str_eq(other.log, whole.log);
    cr_assert_str_eq(other.out, whole.out);
    rng_state = 0x9e3779b97f4a7c15ULL;
    for (int k = 0; k < 300; k++) {
        conv_run(&other, 2);
        cr_assert_str_eq(other.log, whole.log, "random cut run %d", k);
        cr_assert_str_eq(other.out, whole.out, "random cut run %d", k);
    }
}

Test(osmtp_split, ehlo_reply_cut_at_every_byte)
{
    static const char ehlo[] = "250-mx.example.test Hello\r\n250-SIZE 52428800\r\n"
                               "250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                               "250-CHUNKING\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n";
    size_t n = strlen(ehlo);
    for (size_t cut = 0; cut <= n; cut++) {
        struct o o;
        o_init(&o);
        o_in(&o, "220 mx\r\n");
        o_inn(&o, ehlo, cut);
        cr_assert_eq(osmtp_state(o.c), cut == n ? OSMTP_READY : OSMTP_HELLO);
        o_inn(&o, ehlo + cut, n - cut);
        cr_assert_eq(osmtp_state(o.c), OSMTP_READY);
        cr_assert_eq(osmtp_ext(o.c), 0x7f, "cut %zu", cut);
        cr_assert_eq(osmtp_max_size(o.c), 52428800);
        o_fini(&o);
    }
}
