/*
 * NAME
 *	test_utf8 - the one UTF-8 validator: RFC 3629, strict
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/utf8.h"

Test(utf8, rfc3629_tables)
{
    static const char *const good[] = {
        "plain",        "caf\xc3\xa9",      "\xe2\x82\xac", "\xf0\x9d\x84\x9e",
        "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf"};
    static const char *const bad[] = {
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\x80",     /* overlong */
        "\xe0\x9f\xbf",     /* overlong */
        "\xf0\x80\x80\x80", /* overlong */
        "\xf0\x8f\xbf\xbf", /* overlong */
        "\xed\xa0\x80",     /* surrogate */
        "\xed\xbf\xbf",     /* surrogate */
        "\xf4\x90\x80\x80", /* > U+10FFFF */
        "\xf5\x80\x80\x80",
        "\xff",
        "\xfe",
        "\x80", /* stray continuation */
        "a\xbf",
        "\xe2\x82", /* truncated */
        "\xc3",
        "\xf0\x9d\x84",
        "\xe2\x28\xa1", /* bad continuation */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert(utf8_valid(good[i], strlen(good[i])), "%zu", i);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert(!utf8_valid(bad[i], strlen(bad[i])), "%zu", i);
}

Test(utf8, prefix_and_decode)
{
    cr_assert_eq(utf8_valid_prefix("ab\xc3\xa9x\xff", 6), 5);
    cr_assert_eq(utf8_valid_prefix("ab\xe2\x82", 4), 2, "a cut sequence is not valid");
    cr_assert_eq(utf8_valid_prefix("", 0), 0);
    cr_assert(utf8_valid("a\0b", 3), "NUL is valid UTF-8 (callers refuse it themselves)");
    uint32_t cp = 0;
    cr_assert_eq(utf8_decode("\xf0\x9f\x98\x80", 4, &cp), 4);
    cr_assert_eq(cp, 0x1f600);
    cr_assert_eq(utf8_decode("\xc3\xa9", 2, &cp), 2);
    cr_assert_eq(cp, 0xe9);
    cr_assert_eq(utf8_decode("\xe2\x82\xac", 3, &cp), 3);
    cr_assert_eq(cp, 0x20ac);
    cr_assert_eq(utf8_decode("A", 1, &cp), 1);
    cr_assert_eq(cp, 'A');
    cp = 7;
    cr_assert_eq(utf8_decode("\xed\xa0\x80", 3, &cp), 0);
    cr_assert_eq(cp, 7, "untouched on failure");
    cr_assert_eq(utf8_decode("\xf4\x8f\xbf\xbf", 3, NULL), 0, "cut by n");
}

/* Every code point encodes to a sequence utf8_decode() reads back, and
 * every 1..3 octet string is judged as a reference decoder would. */
static size_t ref_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t k = c < 0x80             ? 1
               : (c & 0xe0) == 0xc0 ? 2
               : (c & 0xf0) == 0xe0 ? 3
               : (c & 0xf8) == 0xf0 ? 4
                                    : 0;
    if (k == 0 || k > n)
        return 0;
    uint32_t v = k == 1 ? c : c & (0xffu >> (k + 1));
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[k] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    return k;
}

Test(utf8, exhaustive_against_a_reference)
{
    unsigned char s[4];
    size_t bad = 0;
    for (uint32_t a = 0; a < 256; a++)
        for (uint32_t b = 0; b < 256; b++)
            for (uint32_t c = 0x70; c < 0xd0; c++) {
                s[0] = (unsigned char)a, s[1] = (unsigned char)b, s[2] = (unsigned char)c;
                s[3] = 0x80;
                for (size_t n = 1; n <= 4; n++)
                    if (utf8_decode(s, n, NULL) != ref_len(s, n) && bad++ == 0)
                        cr_log_error("%02x %02x %02x n=%zu", a, b, c, n);
            }
    cr_assert_eq(bad, 0);
}
