/*
 * NAME
 *	test_crc32c - CRC-32C check values, both code paths, combine
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "storage/spool_int.h"

typedef uint32_t crc_fn(uint32_t, const void *, size_t);

static void check_vectors(crc_fn *f)
{
    unsigned char b[32];
    cr_assert_eq(f(0, "123456789", 9), 0xe3069283u);
    cr_assert_eq(f(0, "", 0), 0u);
    /* RFC 3720 B.4 */
    memset(b, 0, sizeof(b));
    cr_assert_eq(f(0, b, 32), 0x8a9136aau);
    memset(b, 0xff, sizeof(b));
    cr_assert_eq(f(0, b, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)i;
    cr_assert_eq(f(0, b, 32), 0x46dd794eu);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)(31 - i);
    cr_assert_eq(f(0, b, 32), 0x113fdb5cu);
    /* continuing equals computing at once */
    cr_assert_eq(f(f(0, "1234", 4), "56789", 5), 0xe3069283u);
}

Test(crc32c, check_value_software)
{
    check_vectors(spool_crc32c_sw);
}

Test(crc32c, check_value_hardware)
{
    if (!spool_crc32c_hw_ok())
        cr_skip_test("CPU without SSE4.2");
    check_vectors(spool_crc32c_hw);
}

Test(crc32c, check_value_dispatch)
{
    check_vectors(spool_crc32c);
}

Test(crc32c, paths_agree_on_every_length_and_alignment)
{
    enum { N = 4096 + 64 };
    unsigned char *buf = malloc(N);
    srand(42);
    for (int i = 0; i < N; i++)
        buf[i] = (unsigned char)rand();
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len < 300; len++)
            cr_assert_eq(spool_crc32c_sw(7, buf + off, len), spool_crc32c_hw(7, buf + off, len),
                         "off %zu len %zu", off, len);
    cr_assert_eq(spool_crc32c_sw(0, buf, 4096), spool_crc32c_hw(0, buf, 4096));
    free(buf);
}

Test(crc32c, combine)
{
    enum { N = 3000 };
    unsigned char *buf = malloc(N);
    srand(7);
    for (int i = 0; i < N; i++)
        buf[i] = (unsigned char)rand();
    uint32_t whole = spool_crc32c(0, buf, N);
    size_t cuts[] = {0, 1, 7, 8, 9, 100, 1023, 1024, 2999, 3000};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        size_t c = cuts[i];
        uint32_t a = spool_crc32c(0, buf, c), b = spool_crc32c(0, buf + c, N - c);
        cr_assert_eq(spool_crc32c_combine(a, b, N - c), whole, "cut %zu", c);
    }
    /* a long run of combines, like a body of many DATA records */
    uint32_t acc = 0;
    for (size_t off = 0; off < N; off += 37) {
        size_t n = N - off < 37 ? N - off : 37;
        acc = spool_crc32c_combine(acc, spool_crc32c(0, buf + off, n), n);
    }
    cr_assert_eq(acc, whole);
    free(buf);
}
