#include <criterion/criterion.h>

#include "core/base/mbuf.h"

static int released;
static void count_release(struct mbuf *b) { released++; (void)b; }

Test(mbuf, chain_refs_and_merge)
{
    char data[64] = "hello, world";
    struct mbuf b = {.data = data, .cap = sizeof(data), .refs = 1, .release = count_release};
    struct mchain c;
    released = 0;
    mchain_init(&c);
    cr_assert_eq(mchain_push(&c, &b, 0, 5), 0);
    cr_assert_eq(mchain_push(&c, &b, 5, 2), 0); /* adjacent: merged */
    cr_assert_eq(c.n, 1);
    cr_assert_eq(mchain_push(&c, &b, 8, 4), 0);
    cr_assert_eq(c.n, 2);
    cr_assert_eq(c.bytes, 11);
    cr_assert_eq(b.refs, 3);
    struct iovec iov[4];
    cr_assert_eq(mchain_iov(&c, 0, iov, 4), 2);
    cr_assert_eq(iov[1].iov_len, 4);
    cr_assert_eq(memcmp(iov[1].iov_base, "orld", 4), 0);
    mchain_fini(&c);
    cr_assert_eq(b.refs, 1);
    cr_assert_eq(released, 0);
    mbuf_unref(&b);
    cr_assert_eq(released, 1);
}
