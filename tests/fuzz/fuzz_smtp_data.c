/*
 * NAME
 *	fuzz_smtp_data - the DATA and BDAT scanners under any split
 * DESCRIPTION
 *	The first octets choose the split: a seed for the lengths of the
 *	pieces the rest is fed in (1..64 octets, or 1 octet each), and the
 *	line limit.  The rest is fed to smtp_dscan_data() piece by piece, as
 *	the session does when the bytes arrive in separate reads, and once
 *	whole; then, as BDAT content, to smtp_dscan_raw().
 *
 *	Invariants (RFC 5321 4.1.1.4, 4.5.2; the smuggling cases P1):
 *	the data ends only at <CRLF>.<CRLF> (the start of the data counting
 *	as after a CRLF), and at the first one; the result does not depend
 *	on how the input was split (end, flags, content); the content is the
 *	input up to that end with the stuffing dots removed, computed here
 *	independently (a stuffed ".." line is a "." line of content, so the
 *	unstuffed content may hold "\r\n.\r\n"); BDAT flags agree with
 *	DATA flags for input without dots and terminator.
 */
#include "tests/fuzz/fuzz.h"

#include <string.h>

#include "core/smtpd/smtp_int.h"

struct out {
    const char *base; /* the piece being scanned */
    char *buf;
    size_t len;
};

static void emit(void *arg, size_t off, size_t n)
{
    struct out *o = arg;
    memcpy(o->buf + o->len, o->base + off, n);
    o->len += n;
}

/* Scans p[0..n) in pieces; returns the octets consumed (n if no end). */
static size_t scan_split(const char *p, size_t n, uint32_t seed, uint64_t maxline,
                         struct smtp_dscan *d, struct out *o, bool *done)
{
    size_t pos = 0;
    smtp_dscan_init(d);
    *done = false;
    while (pos < n && !*done) {
        size_t k = seed == 0 ? 1 : 1 + (seed >> 3) % 64;
        seed = seed * 1103515245u + 12345u;
        if (k > n - pos)
            k = n - pos;
        o->base = p + pos;
        size_t used = smtp_dscan_data(d, p + pos, k, maxline, emit, o, done);
        FUZZ_CHECK(used <= k && (used == k || *done), "used %zu of %zu", used, k);
        pos += used;
    }
    return pos;
}

/* The reference: the first <CRLF>.<CRLF> (the data starting at a line). */
static size_t ref_end(const char *p, size_t n)
{
    if (n >= 3 && memcmp(p, ".\r\n", 3) == 0)
        return 3;
    const char *m = memmem(p, n, "\r\n.\r\n", 5);
    return m ? (size_t)(m - p) + 5 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint32_t seed = fuzz_u8(&in) | (uint32_t)fuzz_u8(&in) << 8;
    uint64_t maxline = 8 + fuzz_u8(&in) * 4u;
    size_t n;
    const char *p = (const char *)fuzz_take(&in, in.n, &n);

    struct out a = {.buf = malloc(n + 1)}, b = {.buf = malloc(n + 1)};
    struct smtp_dscan da, db;
    bool done_a, done_b;
    size_t used_a = scan_split(p, n, seed, maxline, &da, &a, &done_a);
    size_t used_b = scan_split(p, n, 0x12345678u, maxline, &db, &b, &done_b);
    FUZZ_CHECK(done_a == done_b && used_a == used_b, "split changed the end: %zu/%zu", used_a,
               used_b);
    FUZZ_CHECK(da.bare == db.bare && da.nul == db.nul && da.longline == db.longline,
               "split changed the flags");
    FUZZ_CHECK(a.len == b.len && memcmp(a.buf, b.buf, a.len) == 0, "split changed the content");

    size_t end = ref_end(p, n);
    FUZZ_CHECK(done_a == (end != 0), "end %d, reference %zu", done_a, end);
    if (done_a)
        FUZZ_CHECK(used_a == end, "ended at %zu, reference %zu", used_a, end);

    /* the reference unstuffing: a dot at the start of a line is dropped */
    char *want = malloc(n + 1);
    size_t wl = 0, stop = done_a ? end - 3 : n; /* ".\r\n" of the terminator is not content */
    for (size_t i = 0; i < stop; i++) {
        bool bol = i == 0 || (i >= 2 && p[i - 2] == '\r' && p[i - 1] == '\n');
        if (bol && p[i] == '.')
            continue;
        want[wl++] = p[i];
    }
    /* a CR after a line-start dot is held back until the next octet says
     * whether it ends the data: at the end of the input it is pending */
    if (!done_a && da.state == SMTP_DS_DOT_CR)
        wl--;
    /* the scanner drops that CR when no LF follows ("." CR x), which it
     * flags bare: compare clean content only */
    if (!da.bare) {
        FUZZ_CHECK(a.len == wl && memcmp(a.buf, want, wl) == 0, "content %zu, reference %zu", a.len,
                   wl);
        /* the unstuffed content may well hold "\r\n.\r\n": a line ".." is a
         * line "." (RFC 5321 4.5.2); a client sending it on stuffs it again */
    }
    free(want);

    /* BDAT: every octet content, the same line rules */
    struct smtp_dscan dr;
    smtp_dscan_init(&dr);
    size_t pos = 0;
    uint32_t s = seed;
    while (pos < n) {
        size_t k = 1 + (s >> 3) % 64;
        s = s * 1103515245u + 12345u;
        if (k > n - pos)
            k = n - pos;
        smtp_dscan_raw(&dr, p + pos, k, maxline);
        pos += k;
    }
    smtp_dscan_raw_end(&dr);
    if (n > 0 && memchr(p, '.', n) == NULL) {
        /* without dots, DATA saw the same octets (and no end) */
        FUZZ_CHECK(!done_a, "an end without a dot");
        FUZZ_CHECK(dr.nul == da.nul && dr.longline == da.longline, "BDAT and DATA flags differ");
        if (p[n - 1] != '\r')
            FUZZ_CHECK(dr.bare == da.bare, "BDAT and DATA bare differ");
    }
    bool crlf_only = true;
    for (size_t i = 0; i < n && crlf_only; i++)
        if ((p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n')) ||
            (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')))
            crlf_only = false;
    FUZZ_CHECK(dr.bare == !crlf_only, "BDAT bare %d, reference %d", dr.bare, !crlf_only);
    free(a.buf);
    free(b.buf);
    return 0;
}
