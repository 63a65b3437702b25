/*
 * NAME
 *	test_smtp_spoolerr - spool writes that fail while a message streams
 * DESCRIPTION
 *	RLIMIT_FSIZE (with SIGXFSZ ignored) makes a write past the limit fail
 *	with EFBIG, in this test's process only (Criterion forks per test).
 */
#include <signal.h>
#include <sys/resource.h>

#include "test_smtp_harness.h"

static void limit_file_size(rlim_t bytes)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {bytes, bytes};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void data_of(struct h *h, size_t bytes)
{
    char line[1000];
    memset(line, 'q', 998);
    memcpy(line + 998, "\r\n", 2);
    for (size_t n = 0; n < bytes; n += 1000)
        h_feed(h, line, 1000);
}

/* An append fails in the middle of the data: 452 after the dot. */
Test(smtp_spoolerr, append_fails_midway)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    limit_file_size(1 << 20);
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    data_of(&h, 3 << 20);
    h_expect_none(&h); /* the client is still sending: nothing to say yet */
    cr_assert_eq(h.s->txn.body.n, 0, "nothing held once the message failed");
    h_send(&h, ".\r\n");
    h_expect(&h, "452 4.3.1 Insufficient system storage"); /* a short write is ENOSPC */
    cr_assert_eq(smtp_server_stats(h.srv)->tempfailed, 1);
    h_sync(&h);
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_fini(&h);
}

/* The commit itself fails synchronously: 452 at once, no parking. */
Test(smtp_spoolerr, commit_fails)
{
    struct h h;
    h_init(&h, NULL, NULL, 0);
    h_expect(&h, "220 ");
    limit_file_size(100 << 10);
    h_envelope(&h, "a@b.example", "u@example.test");
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    data_of(&h, 200 << 10); /* under the flush size: all of it goes with the commit */
    h_send(&h, ".\r\nNOOP\r\n");
    h_expect(&h, "452 4.3.1");
    h_expect(&h, "250 2.0.0 Ok"); /* not parked */
    cr_assert(!spool_writer_busy(h.w));
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_fini(&h);
}
