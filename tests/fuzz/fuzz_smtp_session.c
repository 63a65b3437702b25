/*
 * NAME
 *	fuzz_smtp_session - a whole SMTP server session from a byte stream
 * DESCRIPTION
 *	A real smtp_server with a real spool in a temporary directory and no
 *	socket (tests/core/smtpd/test_smtp_harness.h, its asserts turned into
 *	aborts by the shim).  The first octet chooses the client (inside or
 *	outside mynetworks) and how the clock moves, the next two seed the
 *	cuts; the rest is what the client sends, fed in pieces of 1..256
 *	octets with a group commit (and maybe a clock tick) between them,
 *	until the session closes.
 *
 *	Invariants: every reply line is three digits and ' ' or '-' with no
 *	NUL; unprocessed input stays within SMTP_BACKLOG_MAX; at the end
 *	every "250 2.0.0 ... queued as" the client got is a live message in
 *	the spool and there is no live message it did not get one for
 *	(RFC 5321 6.1: the 250 means stored, and nothing else is).
 */
#include "tests/core/smtpd/test_smtp_harness.h"
#include "tests/fuzz/fuzz.h"

#include "core/base/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_ERROR); /* a refused command is not news here */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t mode = fuzz_u8(&in);
    uint32_t seed = fuzz_u8(&in) | (uint32_t)fuzz_u8(&in) << 8 | 1u << 16;
    if (in.n > 64 * 1024)
        return 0;
    struct h h;
    const char *ov[] = {"max_errors=1000", "max_message_size=2048"};
    h_init(&h, (mode & 1) ? "127.0.0.1" : "192.0.2.10", ov, 2);
    uint64_t now = 1000000;
    size_t pos = 0;
    while (pos < in.n && !smtp_session_closing(h.s)) {
        size_t k = (mode & 2) ? 1 + (seed >> 4) % 256 : in.n;
        seed = seed * 1103515245u + 12345u;
        if (k > in.n - pos)
            k = in.n - pos;
        h_feed(&h, (const char *)in.p + pos, k);
        pos += k;
        FUZZ_CHECK(smtp_session_backlog(h.s) <= SMTP_BACKLOG_MAX, "backlog %zu",
                   (size_t)smtp_session_backlog(h.s));
        if ((mode & 4) && (seed & 0x100)) {
            now += (seed >> 9) % 4000;
            smtp_set_test_clock(now);
            smtp_session_tick(h.s, now);
            h_collect(&h);
        }
        if (!(mode & 8) || (seed & 0x200))
            h_sync(&h);
    }
    h_sync(&h);
    size_t queued = 0;
    for (size_t i = 0; i < h.outlen;) {
        char *eol = memmem(h.out + i, h.outlen - i, "\r\n", 2);
        FUZZ_CHECK(eol != NULL, "unterminated reply at %zu", i);
        size_t len = (size_t)(eol - (h.out + i));
        FUZZ_CHECK(len >= 3, "short reply line");
        for (int d = 0; d < 3; d++)
            FUZZ_CHECK(h.out[i + d] >= '0' && h.out[i + d] <= '9', "reply code");
        FUZZ_CHECK(len == 3 || h.out[i + 3] == ' ' || h.out[i + 3] == '-', "reply separator");
        FUZZ_CHECK(memchr(h.out + i, '\0', len) == NULL, "NUL in a reply");
        if (len > 9 && memcmp(h.out + i, "250 2.0.0", 9) == 0 &&
            memmem(h.out + i, len, "queued as", 9) != NULL)
            queued++;
        i += len + 2;
    }
    if (mode & 16)
        smtp_session_eof(h.s);
    smtp_session_destroy(h.s);
    h.s = NULL;
    h_sync(&h);
    uint64_t live = h_live_count(&h, NULL);
    FUZZ_CHECK(live == queued, "%llu live messages, %zu acknowledged", (unsigned long long)live,
               queued);
    h_fini(&h);
    return 0;
}
