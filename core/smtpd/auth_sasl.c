/*
 * NAME
 *	auth_sasl - base64 (RFC 4648) and the PLAIN message (RFC 4616)
 * SYNOPSIS
 *	#include "core/smtpd/auth.h"
 *
 *	ssize_t n = auth_b64_decode(line, len, buf, sizeof(buf));
 *	auth_plain_split(buf, (size_t)n, &authzid, &authcid, &passwd);
 * DESCRIPTION
 *	The decoder is strict about the alphabet (no white space, no
 *	characters outside A-Z a-z 0-9 + /) and about padding ("=" only at
 *	the end, at most two, and only where it belongs); missing padding is
 *	tolerated, a lone trailing character is not.
 * DIAGNOSTICS
 *	-EINVAL for malformed input or an output buffer that is too small.
 */
#include "core/smtpd/auth.h"

#include <errno.h>
#include <string.h>

static int auth_b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

ssize_t auth_b64_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t pad = 0;
    while (pad < 2 && len > 0 && in[len - 1] == '=')
        len--, pad++;
    if (pad > 0 && (len + pad) % 4 != 0)
        return -EINVAL;
    if (len % 4 == 1)
        return -EINVAL;
    size_t need = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
    if (need + 1 > cap)
        return -EINVAL;
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = auth_b64_val((unsigned char)in[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    return (ssize_t)o;
}

size_t auth_b64_encode(const void *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = in;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

int auth_plain_split(char *buf, size_t len, const char **authzid, const char **authcid,
                     const char **passwd)
{
    char *a = memchr(buf, '\0', len);
    if (a == NULL)
        return -EINVAL;
    char *b = memchr(a + 1, '\0', len - (size_t)(a + 1 - buf));
    if (b == NULL || memchr(b + 1, '\0', len - (size_t)(b + 1 - buf)) != NULL)
        return -EINVAL;
    if (b == a + 1)
        return -EINVAL; /* an empty authcid */
    *authzid = buf;
    *authcid = a + 1;
    *passwd = b + 1;
    return 0;
}
