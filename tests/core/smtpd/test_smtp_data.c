/*
 * NAME
 *	test_smtp_data - the DATA scanner alone: smuggling, stuffing, lines
 * DESCRIPTION
 *	Every input is scanned whole, at every two-piece split point and
 *	byte by byte; the content emitted and the end found must not depend
 *	on where the pieces were cut.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/smtpd/smtp_int.h"

struct sink {
    char buf[8192];
    size_t n;
    const char *base;
};

static void sink_emit(void *arg, size_t off, size_t n)
{
    struct sink *k = arg;
    cr_assert_leq(k->n + n, sizeof(k->buf));
    memcpy(k->buf + k->n, k->base + off, n);
    k->n += n;
}

struct result {
    struct sink out;
    size_t consumed; /* up to and including the end, or everything */
    bool done;
    struct smtp_dscan d;
};

/* Scans in pieces cut at cuts[0..ncuts); stops at the end like the session. */
static void scan_cut(const char *in, size_t len, const size_t *cuts, size_t ncuts, uint64_t maxline,
                     struct result *r)
{
    memset(r, 0, sizeof(*r));
    smtp_dscan_init(&r->d);
    size_t pos = 0;
    for (size_t i = 0; i <= ncuts && !r->done; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (end < pos)
            continue;
        r->out.base = in + pos;
        size_t used =
            smtp_dscan_data(&r->d, in + pos, end - pos, maxline, sink_emit, &r->out, &r->done);
        cr_assert(used == end - pos || r->done);
        r->consumed += used;
        pos = end;
    }
}

/* Checks that every way of cutting `in` gives `want`. */
static void scan_all(const char *in, size_t len, uint64_t maxline, struct result *want)
{
    scan_cut(in, len, NULL, 0, maxline, want);
    for (size_t c = 0; c <= len; c++) {
        struct result r;
        scan_cut(in, len, &c, 1, maxline, &r);
        cr_assert_eq(r.done, want->done, "split at %zu", c);
        cr_assert_eq(r.consumed, want->consumed, "split at %zu", c);
        cr_assert_eq(r.out.n, want->out.n, "split at %zu", c);
        cr_assert(memcmp(r.out.buf, want->out.buf, r.out.n) == 0, "split at %zu", c);
        cr_assert_eq(r.d.bare, want->d.bare, "split at %zu", c);
        cr_assert_eq(r.d.longline, want->d.longline, "split at %zu", c);
    }
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    struct result r;
    scan_cut(in, len, cuts, len, maxline, &r);
    free(cuts);
    cr_assert_eq(r.done, want->done);
    cr_assert_eq(r.consumed, want->consumed);
    cr_assert_eq(r.out.n, want->out.n);
    cr_assert(memcmp(r.out.buf, want->out.buf, r.out.n) == 0);
    cr_assert_eq(r.d.bare, want->d.bare);
}

#define S(lit) lit, sizeof(lit) - 1

Test(smtp_data, plain_end)
{
    struct result r;
    scan_all(S("Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n"), 998, &r);
    cr_assert(r.done);
    cr_assert_eq(r.consumed, sizeof("Subject: x\r\n\r\nhello\r\n.\r\n") - 1);
    cr_assert_eq(r.out.n, sizeof("Subject: x\r\n\r\nhello\r\n") - 1);
    cr_assert(memcmp(r.out.buf, "Subject: x\r\n\r\nhello\r\n", r.out.n) == 0);
    cr_assert(!r.d.bare && !r.d.longline);
}

Test(smtp_data, empty_message)
{
    struct result r;
    scan_all(S(".\r\n"), 998, &r);
    cr_assert(r.done);
    cr_assert_eq(r.consumed, 3);
    cr_assert_eq(r.out.n, 0);
}

Test(smtp_data, dot_unstuffing)
{
    struct result r;
    scan_all(S("..leading\r\n.\r\n..\r\nx.y\r\n...\r\n.\r\n"), 998, &r);
    /* the lone "." line above is the real end */
    cr_assert(r.done);
    cr_assert_eq(r.out.n, sizeof(".leading\r\n") - 1);
    cr_assert(memcmp(r.out.buf, ".leading\r\n", r.out.n) == 0);

    scan_all(S("a\r\n..\r\nx.y\r\n...\r\n.\r\n"), 998, &r);
    cr_assert(r.done);
    const char want[] = "a\r\n.\r\nx.y\r\n..\r\n";
    cr_assert_eq(r.out.n, sizeof(want) - 1);
    cr_assert(memcmp(r.out.buf, want, r.out.n) == 0);
}

/* CVE-2023-51764/-51765/-51766: none of these ends the data. */
static const struct {
    const char *s;
    size_t len;
    bool bare;
} smuggle[] = {
    {S("\n.\n"), true},        {S("\r.\r"), true},       {S("\n.\r\n"), true},
    {S("\r\n.\n"), true},      {S("\r.\r\n"), true},     {S("\r\n.\r"), true},
    {S("\r\n\0.\r\n"), false}, {S("\n.\r"), true},       {S("\r\n.\r\r\n"), true},
    {S("\r\n.\n\r\n"), true},  {S("\r\n .\r\n"), false}, {S("\r\n.\0\r\n"), false},
    {S("\n\n.\n\n"), true},    {S("\r\r.\r\r"), true},   {S("\r\n.\r.\r\n"), true},
};

Test(smtp_data, smuggling_never_ends)
{
    for (size_t i = 0; i < sizeof(smuggle) / sizeof(smuggle[0]); i++) {
        char in[256];
        size_t n = 0;
        memcpy(in + n, "a", 1), n += 1;
        memcpy(in + n, smuggle[i].s, smuggle[i].len), n += smuggle[i].len;
        const char tail[] = "MAIL FROM:<x@y.example>\r\nRCPT TO:<z@y.example>\r\nDATA\r\n"
                            "evil\r\n";
        memcpy(in + n, tail, sizeof(tail) - 1), n += sizeof(tail) - 1;
        size_t real_end = n;
        memcpy(in + n, ".\r\nQUIT\r\n", 9), n += 9;

        struct result r;
        scan_all(in, n, 998, &r);
        cr_assert(r.done, "variant %zu", i);
        cr_assert_eq(r.consumed, real_end + 3, "variant %zu ended early", i);
        cr_assert_eq(r.d.bare, smuggle[i].bare, "variant %zu", i);
    }
}

Test(smtp_data, bare_cr_lf_flagged)
{
    struct result r;
    scan_all(S("a\rb\r\n.\r\n"), 998, &r);
    cr_assert(r.done && r.d.bare);
    scan_all(S("a\nb\r\n.\r\n"), 998, &r);
    cr_assert(r.done && r.d.bare);
    scan_all(S("a\r\r\nb\r\n.\r\n"), 998, &r);
    cr_assert(r.done && r.d.bare);
    scan_all(S("a\r\nb\r\n.\r\n"), 998, &r);
    cr_assert(r.done && !r.d.bare);
}

static void long_line(size_t n, bool stuffed, bool *longline, size_t *stored)
{
    size_t len = n + (stuffed ? 1 : 0) + 2 + 3;
    char *in = malloc(len);
    size_t k = 0;
    if (stuffed)
        in[k++] = '.';
    for (size_t i = 0; i < n; i++)
        in[k++] = (char)('a' + i % 26);
    memcpy(in + k, "\r\n.\r\n", 5);
    struct result *r = malloc(sizeof(*r));
    scan_cut(in, len, NULL, 0, 998, r);
    cr_assert(r->done);
    *longline = r->d.longline;
    *stored = r->out.n;
    free(r);
    free(in);
}

Test(smtp_data, line_length)
{
    bool ll;
    size_t stored;
    long_line(998, false, &ll, &stored);
    cr_assert(!ll);
    cr_assert_eq(stored, 1000);
    long_line(999, false, &ll, &stored);
    cr_assert(ll);
    long_line(998, true, &ll, &stored); /* "." + 998: the content is 998 */
    cr_assert(!ll);
    cr_assert_eq(stored, 1000);
}

Test(smtp_data, raw_checks)
{
    struct smtp_dscan d;
    smtp_dscan_init(&d);
    smtp_dscan_raw(&d, S("a\r"), 998);
    smtp_dscan_raw(&d, S("\nb\r\n"), 998);
    smtp_dscan_raw_end(&d);
    cr_assert(!d.bare);

    smtp_dscan_init(&d);
    smtp_dscan_raw(&d, S("a\nb"), 998);
    cr_assert(d.bare);

    smtp_dscan_init(&d);
    smtp_dscan_raw(&d, S("a\r"), 998);
    smtp_dscan_raw_end(&d);
    cr_assert(d.bare);

    smtp_dscan_init(&d);
    smtp_dscan_raw(&d, S("a\rb\r\n"), 998);
    cr_assert(d.bare);

    char big[1003];
    memset(big, 'x', 999);
    memcpy(big + 999, "\r\n", 2);
    smtp_dscan_init(&d);
    smtp_dscan_raw(&d, big, 1001, 998);
    cr_assert(d.longline && !d.bare);
}
