/*
 * NAME
 *	auth_canon - DKIM canonicalization, header fields, base64
 * SYNOPSIS
 *	#include "sinks/auth.h"
 *
 *	auth_bodyc_init(&b, AUTH_RELAXED); auth_bodyc_feed(&b, p, n); ...
 *	auth_bodyc_final(&b, hash);
 *	auth_hdr_canon(&out, AUTH_RELAXED, field, len, true);
 * DESCRIPTION
 *	Body (RFC 6376 3.4.3, 3.4.4), streamed: a line end is CRLF (a CR not
 *	followed by LF, and a bare LF, are ordinary octets).  Empty lines are
 *	held back as a count and emitted only when content follows, so the
 *	empty lines at the end vanish; relaxed also holds back white space,
 *	emitted as one SP when content follows in the same line.  A last line
 *	without CRLF gets one.  Simple turns an empty body into one CRLF;
 *	relaxed leaves it empty.  The canonical octets go through a 4 KiB
 *	buffer into one SHA-256 digest.
 *
 *	Header fields (3.4.1, 3.4.2): simple takes the field as it is;
 *	relaxed lower-cases the name, drops white space before and after the
 *	colon, unfolds, turns runs of white space into one SP and drops it at
 *	the end.
 *
 *	The header section is cut into fields exactly as storage/edits.c cuts
 *	it when it applies the edit list, and the journal of earlier edits is
 *	applied with the same rules (ADD after the leading Received field and
 *	earlier additions, REMOVE every instance, CHANGE the first or ADD), so
 *	the signer hashes the header as it will be stored.
 * DIAGNOSTICS
 *	-ENOMEM; auth_b64_dec: -EINVAL (not base64), -ENOSPC (cap too small).
 */
#include "sinks/auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- buffer ---- */

int auth_buf_reserve(struct auth_buf *b, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (np == NULL)
            return -ENOMEM;
        b->p = np;
        b->cap = nc;
    }
    return 0;
}

int auth_buf_put(struct auth_buf *b, const void *p, size_t n)
{
    if (auth_buf_reserve(b, n) < 0)
        return -ENOMEM;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int auth_buf_puts(struct auth_buf *b, const char *s)
{
    return auth_buf_put(b, s, strlen(s));
}

void auth_buf_free(struct auth_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- body ---- */

int auth_bodyc_init(struct auth_bodyc *b, enum auth_canon c)
{
    memset(b, 0, sizeof(*b));
    b->c = c;
    b->md = EVP_MD_CTX_new();
    if (b->md == NULL || EVP_DigestInit_ex(b->md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(b->md);
        b->md = NULL;
        return -ENOMEM;
    }
    return 0;
}

static void bodyc_flush(struct auth_bodyc *b)
{
    if (b->n > 0)
        EVP_DigestUpdate(b->md, b->out, b->n);
    b->emitted += b->n;
    b->n = 0;
}

static inline void bodyc_put(struct auth_bodyc *b, char c)
{
    if (b->n == sizeof(b->out))
        bodyc_flush(b);
    b->out[b->n++] = c;
}

static void bodyc_content(struct auth_bodyc *b, char c)
{
    if (b->c == AUTH_RELAXED && (c == ' ' || c == '\t')) {
        b->wsp = true;
        return;
    }
    for (; b->empty > 0; b->empty--) {
        bodyc_put(b, '\r');
        bodyc_put(b, '\n');
    }
    if (b->wsp) {
        bodyc_put(b, ' ');
        b->wsp = false;
    }
    bodyc_put(b, c);
    b->line = true;
}

static void bodyc_eol(struct auth_bodyc *b)
{
    b->wsp = false; /* white space at the end of a line goes */
    if (b->line) {
        bodyc_put(b, '\r');
        bodyc_put(b, '\n');
        b->line = false;
    } else {
        b->empty++;
    }
}

/* Octets that are plain content: anything but CR, and in relaxed mode SP
 * and HTAB (a table: the scan below runs over every body octet). */
static bool bodyc_plain(enum auth_canon c, unsigned char ch)
{
    return ch != '\r' && (c == AUTH_SIMPLE || (ch != ' ' && ch != '\t'));
}

void auth_bodyc_feed(struct auth_bodyc *b, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        /* fast path: a run of plain octets with nothing held back is
         * copied as it is */
        if (!b->cr && b->empty == 0 && !b->wsp && bodyc_plain(b->c, (unsigned char)p[i])) {
            size_t j = i + 1;
            while (j < len && bodyc_plain(b->c, (unsigned char)p[j]))
                j++;
            for (size_t k = i; k < j;) {
                if (b->n == sizeof(b->out))
                    bodyc_flush(b);
                size_t m = j - k < sizeof(b->out) - b->n ? j - k : sizeof(b->out) - b->n;
                memcpy(b->out + b->n, p + k, m);
                b->n += m;
                k += m;
            }
            b->line = true;
            i = j - 1;
            continue;
        }
        char c = p[i];
        if (b->cr) {
            b->cr = false;
            if (c == '\n') {
                bodyc_eol(b);
                continue;
            }
            bodyc_content(b, '\r');
        }
        if (c == '\r')
            b->cr = true;
        else
            bodyc_content(b, c);
    }
}

int auth_bodyc_final(struct auth_bodyc *b, unsigned char hash[32])
{
    if (b->cr) {
        b->cr = false;
        bodyc_content(b, '\r');
    }
    if (b->line)
        bodyc_eol(b);
    if (b->c == AUTH_SIMPLE && b->emitted + b->n == 0) {
        bodyc_put(b, '\r');
        bodyc_put(b, '\n');
    }
    bodyc_flush(b);
    unsigned int n = 0;
    int ok = EVP_DigestFinal_ex(b->md, hash, &n) == 1 && n == 32;
    auth_bodyc_fini(b);
    return ok ? 0 : -EINVAL;
}

void auth_bodyc_fini(struct auth_bodyc *b)
{
    EVP_MD_CTX_free(b->md);
    b->md = NULL;
}

/* ---- header fields ---- */

int auth_hdr_canon(struct auth_buf *out, enum auth_canon c, const char *field, size_t len,
                   bool crlf)
{
    if (len >= 2 && field[len - 2] == '\r' && field[len - 1] == '\n')
        len -= 2;
    if (c == AUTH_SIMPLE) {
        if (auth_buf_put(out, field, len) < 0)
            return -ENOMEM;
        return crlf ? auth_buf_put(out, "\r\n", 2) : 0;
    }
    const char *colon = memchr(field, ':', len);
    size_t nl = colon ? (size_t)(colon - field) : len;
    while (nl > 0 && (field[nl - 1] == ' ' || field[nl - 1] == '\t'))
        nl--;
    if (auth_buf_reserve(out, len + 3) < 0) /* canonical is never longer, + CRLF */
        return -ENOMEM;
    char *o = out->p + out->len;
    for (size_t i = 0; i < nl; i++)
        *o++ = (char)tolower((unsigned char)field[i]);
    *o++ = ':';
    bool wsp = false, started = false;
    for (size_t i = colon ? (size_t)(colon - field) + 1 : len; i < len; i++) {
        char ch = field[i];
        if (ch == '\r' || ch == '\n')
            continue; /* unfolding */
        if (ch == ' ' || ch == '\t') {
            wsp = true;
            continue;
        }
        if (wsp && started)
            *o++ = ' ';
        wsp = false;
        started = true;
        *o++ = ch;
    }
    if (crlf) {
        *o++ = '\r';
        *o++ = '\n';
    }
    out->len = (size_t)(o - out->p);
    out->p[out->len] = '\0';
    return 0;
}

bool auth_field_is(const struct auth_field *f, const char *name, size_t namelen)
{
    return f->namelen == namelen && namelen > 0 && strncasecmp(f->name, name, namelen) == 0;
}

void auth_field_value(const struct auth_field *f, const char **v, size_t *len)
{
    size_t skip = f->namelen;
    while (skip < f->len && f->p[skip] != ':')
        skip++;
    if (skip < f->len)
        skip++;
    size_t l = f->len - skip;
    if (l >= 2 && f->p[f->len - 2] == '\r' && f->p[f->len - 1] == '\n')
        l -= 2;
    *v = f->p + skip;
    *len = l;
}

static int hdrs_insert(struct auth_hdrs *h, size_t at, const struct auth_field *f)
{
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 32;
        struct auth_field *nv = realloc(h->v, nc * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        h->v = nv;
        h->cap = nc;
    }
    memmove(h->v + at + 1, h->v + at, (h->n - at) * sizeof(*h->v));
    h->v[at] = *f;
    h->n++;
    return 0;
}

static void hdrs_delete(struct auth_hdrs *h, size_t at)
{
    free(h->v[at].own);
    memmove(h->v + at, h->v + at + 1, (h->n - at - 1) * sizeof(*h->v));
    h->n--;
}

int auth_hdrs_parse(struct auth_hdrs *h, const char *hdr, size_t len)
{
    size_t i = 0;
    while (i < len) {
        const char *crlf = memmem(hdr + i, len - i, "\r\n", 2);
        size_t next = crlf ? (size_t)(crlf - hdr) + 2 : len;
        if ((hdr[i] == ' ' || hdr[i] == '\t') && h->n > 0) {
            h->v[h->n - 1].len = next - (size_t)(h->v[h->n - 1].p - hdr);
        } else {
            struct auth_field f = {hdr + i, next - i, hdr + i, 0, NULL};
            const char *colon = memchr(hdr + i, ':', next - i);
            if (colon != NULL) {
                f.namelen = (size_t)(colon - (hdr + i));
                while (f.namelen > 0 &&
                       (f.name[f.namelen - 1] == ' ' || f.name[f.namelen - 1] == '\t'))
                    f.namelen--;
            }
            if (hdrs_insert(h, h->n, &f) < 0)
                return -ENOMEM;
        }
        i = next;
    }
    return 0;
}

void auth_hdrs_free(struct auth_hdrs *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i].own);
    free(h->v);
    memset(h, 0, sizeof(*h));
}

/* "name: value\r\n", as storage/edits.c makes it. */
static int hdrs_make(struct auth_field *f, const char *name, size_t nl, const char *v, size_t vl)
{
    size_t n = nl + 2 + vl + 2;
    char *p = malloc(n + 1);
    if (p == NULL)
        return -ENOMEM;
    memcpy(p, name, nl);
    memcpy(p + nl, ": ", 2);
    memcpy(p + nl + 2, v, vl);
    memcpy(p + n - 2, "\r\n", 2);
    p[n] = '\0';
    *f = (struct auth_field){p, n, p, nl, p};
    return 0;
}

int auth_hdrs_journal(struct auth_hdrs *h, const char *j)
{
    size_t ins = h->n > 0 && auth_field_is(&h->v[0], "Received", 8) ? 1 : 0;
    while (j != NULL && *j != '\0') {
        const char *eol = strchr(j, '\n');
        size_t ll = eol ? (size_t)(eol - j) : strlen(j);
        const char *colon = memchr(j, ':', ll);
        if (ll < 2 || colon == NULL)
            return -EINVAL;
        char op = j[0];
        const char *name = j + 1, *val = colon + 1;
        size_t nl = (size_t)(colon - name), vl = ll - (size_t)(val - j);
        struct auth_field f;
        bool done = false;
        if (op == 'R') {
            for (size_t k = h->n; k-- > 0;) {
                if (!auth_field_is(&h->v[k], name, nl))
                    continue;
                hdrs_delete(h, k);
                if (k < ins)
                    ins--;
            }
            done = true;
        } else if (op == 'C') {
            for (size_t k = 0; k < h->n && !done; k++) {
                if (!auth_field_is(&h->v[k], name, nl))
                    continue;
                if (hdrs_make(&f, h->v[k].name, h->v[k].namelen, val, vl) < 0)
                    return -ENOMEM;
                free(h->v[k].own);
                h->v[k] = f;
                done = true;
            }
        } else if (op != 'A') {
            return -EINVAL;
        }
        if (!done) {
            if (hdrs_make(&f, name, nl, val, vl) < 0)
                return -ENOMEM;
            if (hdrs_insert(h, ins, &f) < 0) {
                free(f.own);
                return -ENOMEM;
            }
            ins++;
        }
        j = eol ? eol + 1 : j + ll;
    }
    return 0;
}

/* ---- base64 ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t auth_b64_enc(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

ssize_t auth_b64_dec(const char *in, size_t n, unsigned char *out, size_t cap)
{
    uint32_t acc = 0;
    unsigned bits = 0, pad = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        const char *at = c ? strchr(b64, c) : NULL;
        if (at == NULL || pad > 0)
            return -EINVAL;
        acc = acc << 6 | (uint32_t)(at - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -ENOSPC;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (pad > 2 || bits >= 6)
        return -EINVAL;
    return (ssize_t)o;
}
