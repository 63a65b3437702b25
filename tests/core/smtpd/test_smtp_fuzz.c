/*
 * NAME
 *	test_smtp_fuzz - random transcripts cut at random points
 * DESCRIPTION
 *	A deterministic generator mixes valid commands, message data, the
 *	smuggling sequences and random octets; pieces are cut at random and
 *	group commits and ticks happen between them.  The session must not
 *	crash (run it under ASan/UBSan), must answer with well-formed reply
 *	lines only, and must hold no input it cannot account for.
 */
#include "test_smtp_harness.h"

static uint64_t rng_state;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)rng_state;
}

static const char *const tokens[] = {
    "MAIL FROM:<a@b.example>\r\n",
    "MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
    "MAIL FROM:<\xc3\xbc@b.example> SMTPUTF8\r\n",
    "RCPT TO:<u@example.test>\r\n",
    "RCPT TO:<u@foreign.example>\r\n",
    "RCPT TO:<postmaster>\r\n",
    "DATA\r\n",
    "BDAT 5\r\n",
    "BDAT 3 LAST\r\n",
    "BDAT 0 LAST\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "VRFY x\r\n",
    "HELP\r\n",
    "hello world\r\n",
    ".\r\n",
    "..\r\n",
    "\r\n.\r\n",
    "\n.\n",
    "\r.\r",
    "\r\n",
    "\n",
    "\r",
    ".",
    "\0",
    "\xc0\x80",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "BDAT 99999999999999999999999\r\n",
    "QUIT\r\n",
};

static void fuzz_one(uint64_t seed)
{
    struct h h;
    const char *ov[] = {"max_errors=1000", "max_message_size=2048"};
    rng_state = seed * 2654435761u + 1;
    h_init(&h, (rng() & 1) ? "127.0.0.1" : "192.0.2.10", ov, 2);
    /* EHLO alone first: the RFC 2920 checks would end most sessions early */
    h_send(&h, "EHLO client.example\r\n");
    size_t cap = 8192, n = 0, ncuts = 0, cuts[512];
    char *buf = malloc(cap);
    while (n < cap - 600) {
        uint32_t r = rng() % 10;
        if (r < 7) {
            const char *t = tokens[rng() % (sizeof(tokens) / sizeof(tokens[0]))];
            size_t len = t[0] ? strlen(t) : 1; /* the "\0" token is one NUL */
            memcpy(buf + n, t, len);
            n += len;
            /* a client that waits for the 354 (mostly) */
            if (strcmp(t, "DATA\r\n") == 0 && ncuts < 512 && rng() % 8 != 0)
                cuts[ncuts++] = n;
        } else if (r < 9) {
            size_t k = rng() % 40;
            for (size_t i = 0; i < k; i++)
                buf[n++] = (char)rng();
        } else {
            size_t k = 400 + rng() % 200; /* a long line */
            memset(buf + n, 'L', k);
            n += k;
        }
    }
    size_t pos = 0, c = 0;
    uint64_t now = 1000000;
    while (pos < n && !smtp_session_closing(h.s)) {
        size_t k = 1 + rng() % 300;
        if (k > n - pos)
            k = n - pos;
        while (c < ncuts && cuts[c] <= pos)
            c++;
        if (c < ncuts && pos + k > cuts[c])
            k = cuts[c] - pos;
        h_feed(&h, buf + pos, k);
        pos += k;
        cr_assert_leq(smtp_session_backlog(h.s), SMTP_BACKLOG_MAX);
        switch (rng() % 4) {
        case 0:
            h_sync(&h);
            break;
        case 1:
            now += rng() % 2000;
            smtp_set_test_clock(now);
            smtp_session_tick(h.s, now);
            h_collect(&h);
            break;
        case 2:
            if (rng() % 50 == 0)
                smtp_session_release_buffers(h.s);
            break;
        default:
            break;
        }
    }
    h_sync(&h);
    free(buf);
    /* every reply line: three digits, then ' ' or '-' */
    for (size_t i = 0; i < h.outlen;) {
        char *eol = memmem(h.out + i, h.outlen - i, "\r\n", 2);
        cr_assert_not_null(eol, "seed %llu: unterminated reply", (unsigned long long)seed);
        size_t len = (size_t)(eol - (h.out + i));
        cr_assert_geq(len, 3);
        for (int d = 0; d < 3; d++)
            cr_assert(h.out[i + d] >= '0' && h.out[i + d] <= '9');
        cr_assert(len == 3 || h.out[i + 3] == ' ' || h.out[i + 3] == '-');
        cr_assert_null(memchr(h.out + i, '\0', len));
        i += len + 2;
    }
    if (rng() & 1)
        smtp_session_eof(h.s);
    h_fini(&h);
}

Test(smtp_fuzz, random_transcripts, .timeout = 300)
{
    for (uint64_t seed = 1; seed <= 500; seed++)
        fuzz_one(seed);
}
