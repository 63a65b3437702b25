/*
 * NAME
 *	fuzz_osmtp_reply - the outbound client's reply reader
 * DESCRIPTION
 *	What a next hop sends, read by osmtp_rx_feed() (core/client/
 *	osmtp_reply.c) twice: in pieces of 1..32 octets chosen by the first
 *	two input octets, as separate reads deliver it, and in one piece.
 *
 *	Invariants: every call uses at least one octet and no more than it
 *	was given, and stops after the first LF; the sequence of events and
 *	every reply (code, enhanced status, text) are the same for both
 *	splits; a reply's code is 200..559, its enhanced status and text are
 *	NUL-terminated inside their buffers, the enhanced status is of the
 *	code's class (2, 4, 5), and the text is printable (no
 *	CR, LF or NUL can reach a log line or a bounce from here).
 */
#include "tests/fuzz/fuzz.h"

#include <string.h>

#include "core/client/osmtp_int.h"

#define MAX_EVENTS 4096

struct run {
    size_t nev;
    uint8_t ev[MAX_EVENTS];
    struct osmtp_reply r[64]; /* the first replies (and errors) */
    size_t nr;
};

static void check_reply(const struct osmtp_reply *r, enum osmtp_rx_ev ev)
{
    size_t el = strnlen(r->enhanced, sizeof(r->enhanced));
    size_t tl = strnlen(r->text, sizeof(r->text));
    FUZZ_CHECK(el < sizeof(r->enhanced) && tl < sizeof(r->text), "unterminated reply");
    for (size_t i = 0; i < tl; i++)
        FUZZ_CHECK((unsigned char)r->text[i] >= 0x20 && r->text[i] != 0x7f,
                   "control octet 0x%02x in the text", (unsigned char)r->text[i]);
    if (ev == OSMTP_RX_REPLY) {
        FUZZ_CHECK(r->code >= 200 && r->code <= 559, "code %d", r->code);
        /* 3xx has no enhanced status class (RFC 3463) */
        if (r->code / 100 != 3)
            FUZZ_CHECK(el >= 5 && r->enhanced[0] == '0' + r->code / 100, "enhanced \"%s\" for %d",
                       r->enhanced, r->code);
    }
}

static void run(const char *p, size_t n, uint32_t seed, struct run *out)
{
    struct osmtp_rx rx;
    memset(&rx, 0, sizeof(rx));
    osmtp_rx_reset(&rx);
    memset(out, 0, sizeof(*out));
    size_t pos = 0;
    while (pos < n) {
        size_t k = seed == 0 ? n - pos : 1 + (seed >> 5) % 32;
        seed = seed * 1103515245u + 12345u;
        if (k > n - pos)
            k = n - pos;
        size_t off = 0;
        while (off < k) {
            size_t used = 0;
            enum osmtp_rx_ev ev = osmtp_rx_feed(&rx, p + pos + off, k - off, &used, true);
            FUZZ_CHECK(used >= 1 && used <= k - off, "used %zu of %zu", used, k - off);
            const char *lf = memchr(p + pos + off, '\n', used);
            FUZZ_CHECK(lf == NULL || lf == p + pos + off + used - 1, "read past a LF");
            off += used;
            if (ev == OSMTP_RX_MORE) {
                FUZZ_CHECK(lf == NULL, "MORE after a LF");
                continue;
            }
            if (out->nev < MAX_EVENTS)
                out->ev[out->nev++] = (uint8_t)ev;
            if (ev == OSMTP_RX_REPLY || ev == OSMTP_RX_ERROR) {
                check_reply(&rx.r, ev);
                if (out->nr < 64)
                    out->r[out->nr++] = rx.r;
            }
        }
        pos += k;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint32_t seed = fuzz_u8(&in) | (uint32_t)fuzz_u8(&in) << 8 | 1u << 16;
    size_t n;
    const char *p = (const char *)fuzz_take(&in, in.n, &n);
    static struct run a, b;
    run(p, n, seed, &a);
    run(p, n, 0, &b);
    FUZZ_CHECK(a.nev == b.nev && memcmp(a.ev, b.ev, a.nev) == 0, "events depend on the split");
    FUZZ_CHECK(a.nr == b.nr, "replies depend on the split");
    for (size_t i = 0; i < a.nr; i++)
        FUZZ_CHECK(a.r[i].code == b.r[i].code && strcmp(a.r[i].enhanced, b.r[i].enhanced) == 0 &&
                       strcmp(a.r[i].text, b.r[i].text) == 0,
                   "reply %zu depends on the split: \"%s\" / \"%s\"", i, a.r[i].text, b.r[i].text);
    return 0;
}
