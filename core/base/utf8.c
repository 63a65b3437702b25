/*
 * NAME
 *	utf8 - the one UTF-8 validator (see utf8.h)
 * DESCRIPTION
 *	Table 3-7 of the Unicode standard (the same as RFC 3629's ABNF): the
 *	lead octet fixes the length and the allowed range of the second
 *	octet, which is where overlongs, surrogates and code points above
 *	U+10FFFF are refused; the third and fourth are plain continuations.
 *	ASCII runs take the short path, since most text is ASCII.
 * DIAGNOSTICS
 *	None.
 */
#include "core/base/utf8.h"

size_t utf8_decode(const void *p, size_t n, uint32_t *cp)
{
    const unsigned char *s = p;
    unsigned char c = s[0];
    if (c < 0x80) {
        if (cp != NULL)
            *cp = c;
        return 1;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second octet */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0; /* a continuation, C0/C1 (overlong), F5..FF */
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    uint32_t v = c & (0x7fu >> len);
    for (size_t i = 1; i < len; i++) {
        if (i >= 2 && (s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3fu);
    }
    if (cp != NULL)
        *cp = v;
    return len;
}

size_t utf8_valid_prefix(const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_decode(s + i, n - i, NULL);
        if (k == 0)
            return i;
        i += k;
    }
    return n;
}

bool utf8_valid(const void *p, size_t n)
{
    return utf8_valid_prefix(p, n) == n;
}
