/*
 * NAME
 *	json - the one JSON writer (see json.h)
 * DESCRIPTION
 *	Every write asks json_room() for its octets plus one for each open
 *	container's closing bracket, the caller's reserve and the NUL, so
 *	json_end() never needs to ask.  A string asks for its closing quote
 *	with its opening one and then, unit by unit, for the unit plus that
 *	quote: a string that is cut still has room to close.  A write that
 *	fails goes back to the json_mark() taken before its separator.
 * DIAGNOSTICS
 *	log_panic() on a broken contract (see json.h).
 */
#include "core/base/json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/base/utf8.h"

void json_init(struct json_buf *b, char *p, size_t cap, size_t reserve)
{
    if (p == NULL || cap <= reserve)
        log_panic("json_init: %zu octets cannot keep %zu back", cap, reserve);
    memset(b, 0, sizeof(*b));
    b->p = p;
    b->cap = cap;
    b->reserve = reserve;
    p[0] = '\0';
}

void json_init_grow(struct json_buf *b)
{
    memset(b, 0, sizeof(*b));
    b->grow = true;
}

void json_spaced(struct json_buf *b)
{
    b->spaced = true;
}

void json_fini(struct json_buf *b)
{
    if (b->grow)
        free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Room for n more octets; grows a growing buffer. */
static bool json_room(struct json_buf *b, size_t n)
{
    if (b->full)
        return false;
    size_t need = b->len + n + b->depth + b->reserve + 1;
    if (need <= b->cap)
        return true;
    if (!b->grow) {
        b->full = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->full = true;
        return false;
    }
    p[b->len] = '\0';
    b->p = p;
    b->cap = cap;
    return true;
}

/* Octets that would still fit (a fixed buffer). */
static size_t json_avail(const struct json_buf *b)
{
    size_t used = b->len + b->depth + b->reserve + 1;
    return b->cap > used ? b->cap - used : 0;
}

/* Appends n octets that json_room() has allowed. */
static void json_raw(struct json_buf *b, const void *s, size_t n)
{
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static bool json_put(struct json_buf *b, const char *s, size_t n)
{
    if (!json_room(b, n))
        return false;
    json_raw(b, s, n);
    return true;
}

char *json_take(struct json_buf *b)
{
    if (!b->grow)
        log_panic("json_take: not a growing buffer");
    if (b->p == NULL)
        json_room(b, 0);
    char *p = b->p;
    if (b->full) {
        free(p);
        p = NULL;
    }
    memset(b, 0, sizeof(*b));
    b->grow = true;
    return p;
}

void json_drain(struct json_buf *b)
{
    b->len = 0;
    if (b->p != NULL)
        b->p[0] = '\0';
}

bool json_text(struct json_buf *b, const char *s, size_t n)
{
    return json_put(b, s, n);
}

bool json_textf(struct json_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    bool ok = n >= 0 && json_room(b, (size_t)n);
    if (ok) {
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    } else if (n < 0) {
        b->full = true;
    }
    va_end(ap2);
    return ok;
}

void json_break(struct json_buf *b, const char *ws)
{
    b->brk = ws;
}

void json_mark(const struct json_buf *b, struct json_mark *m)
{
    m->len = b->len;
    m->depth = b->depth;
    m->more = b->more;
    m->arr = b->arr;
    m->after_key = b->after_key;
}

void json_rewind(struct json_buf *b, const struct json_mark *m)
{
    b->len = m->len;
    if (b->p != NULL)
        b->p[b->len] = '\0';
    b->depth = m->depth;
    b->more = m->more;
    b->arr = m->arr;
    b->after_key = m->after_key;
}

static bool json_fail(struct json_buf *b, const struct json_mark *m)
{
    json_rewind(b, m->after_key ? &b->key : m); /* no key without its value */
    b->full = true;
    return false;
}

/* What goes before a member: a separator unless it is the first one (or
 * the value of a key), and the white space of json_break(). */
static bool json_sep(struct json_buf *b)
{
    if (b->after_key) {
        b->after_key = false;
        return true;
    }
    const char *ws = b->brk;
    b->brk = NULL;
    bool more = false;
    if (b->depth > 0) {
        more = (b->more >> b->depth) & 1;
        b->more |= UINT64_C(1) << b->depth;
    }
    if (more && !json_put(b, ",", 1))
        return false;
    if (ws != NULL)
        return json_put(b, ws, strlen(ws));
    return !(more && b->spaced) || json_put(b, " ", 1);
}

static bool json_open(struct json_buf *b, bool arr)
{
    struct json_mark m;
    json_mark(b, &m);
    if (b->depth + 1 >= JSON_DEPTH_MAX)
        log_panic("json_open: nested deeper than %d", JSON_DEPTH_MAX);
    if (!json_sep(b) || !json_room(b, 2)) /* 2: its closing bracket too */
        return json_fail(b, &m);
    json_raw(b, arr ? "[" : "{", 1);
    b->depth++;
    uint64_t bit = UINT64_C(1) << b->depth;
    b->more &= ~bit;
    b->arr = arr ? b->arr | bit : b->arr & ~bit;
    return true;
}

bool json_obj(struct json_buf *b)
{
    return json_open(b, false);
}

bool json_arr(struct json_buf *b)
{
    return json_open(b, true);
}

void json_end(struct json_buf *b)
{
    if (b->depth == 0)
        log_panic("json_end: nothing is open");
    uint64_t bit = UINT64_C(1) << b->depth;
    char c = (b->arr & bit) ? ']' : '}';
    b->more &= ~bit;
    b->arr &= ~bit;
    b->depth--;
    b->after_key = false;
    b->brk = NULL;
    b->p[b->len++] = c; /* json_room() kept it */
    b->p[b->len] = '\0';
}

/* Safe octets (copied as they are) from s: printable ASCII but '"', '\'. */
static size_t json_plain_run(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\')
        i++;
    return i;
}

/* The escape (or UTF-8 sequence) for the unit at s: into esc or, for a
 * sequence copied as it is, pointed at in *unit.  Returns its length and
 * sets *adv to the octets it consumes. */
static size_t json_unit(const unsigned char *s, size_t n, char esc[8], const char **unit,
                        size_t *adv)
{
    static const char shortesc[] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r',
                                    ['\t'] = 't', ['"'] = '"',  ['\\'] = '\\'};
    unsigned char c = s[0];
    *unit = esc;
    *adv = 1;
    if (c < sizeof(shortesc) && shortesc[c] != 0) {
        esc[0] = '\\';
        esc[1] = shortesc[c];
        return 2;
    }
    if (c < 0x20 || c == 0x7f) {
        snprintf(esc, 8, "\\u%04x", c);
        return 6;
    }
    size_t k = utf8_decode(s, n, NULL);
    if (k == 0) {
        memcpy(esc, "\\ufffd", 6);
        return 6;
    }
    *unit = (const char *)s;
    *adv = k;
    return k;
}

/* The string literal; cut: what does not fit is left out (at a unit
 * boundary) and the quotes are closed, else all or nothing.  Returns 1
 * (whole), 0 (cut, closed) or -1 (nothing fits; the caller rewinds). */
static int json_quote(struct json_buf *b, const char *str, size_t n, bool cut)
{
    const unsigned char *s = (const unsigned char *)str;
    if (!json_room(b, 2)) /* both quotes */
        return -1;
    json_raw(b, "\"", 1);
    size_t i = 0;
    bool whole = true;
    while (i < n) {
        size_t run = json_plain_run(s + i, n - i);
        if (run > 0) {
            if (!json_room(b, run + 1)) {
                if (!cut || b->grow)
                    return -1;
                run = json_avail(b) > 1 ? json_avail(b) - 1 : 0;
                json_raw(b, s + i, run);
                whole = false;
                break;
            }
            json_raw(b, s + i, run);
            i += run;
            continue;
        }
        char esc[8];
        const char *unit;
        size_t adv, ulen = json_unit(s + i, n - i, esc, &unit, &adv);
        if (!json_room(b, ulen + 1)) {
            if (!cut || b->grow)
                return -1;
            whole = false;
            break;
        }
        json_raw(b, unit, ulen);
        i += adv;
    }
    b->p[b->len++] = '"'; /* asked for with the opening quote */
    b->p[b->len] = '\0';
    return whole ? 1 : 0;
}

static bool json_string(struct json_buf *b, const char *s, size_t n, bool cut)
{
    struct json_mark m;
    json_mark(b, &m);
    int r = json_sep(b) ? json_quote(b, s, n, cut) : -1;
    if (r < 0)
        return json_fail(b, &m);
    return r > 0; /* cut: kept, closed, and b->full is set */
}

bool json_key(struct json_buf *b, const char *k)
{
    struct json_mark m;
    json_mark(b, &m);
    b->key = m;
    if (!json_sep(b) || json_quote(b, k, strlen(k), false) < 0 ||
        !json_put(b, b->spaced ? ": " : ":", b->spaced ? 2 : 1))
        return json_fail(b, &m);
    b->after_key = true;
    return true;
}

bool json_strn(struct json_buf *b, const char *s, size_t n)
{
    return json_string(b, s, n, false);
}

bool json_str(struct json_buf *b, const char *s)
{
    return json_string(b, s ? s : "", s ? strlen(s) : 0, false);
}

bool json_str_cut(struct json_buf *b, const char *s, size_t n)
{
    return json_string(b, s, n, true);
}

bool json_verbatim(struct json_buf *b, const char *json, size_t n)
{
    struct json_mark m;
    json_mark(b, &m);
    if (!json_sep(b) || !json_put(b, json, n))
        return json_fail(b, &m);
    return true;
}

bool json_int(struct json_buf *b, int64_t v)
{
    char s[24];
    int n = snprintf(s, sizeof(s), "%" PRId64, v);
    return json_verbatim(b, s, (size_t)n);
}

bool json_uint(struct json_buf *b, uint64_t v)
{
    char s[24];
    int n = snprintf(s, sizeof(s), "%" PRIu64, v);
    return json_verbatim(b, s, (size_t)n);
}

bool json_bool(struct json_buf *b, bool v)
{
    return json_verbatim(b, v ? "true" : "false", v ? 4 : 5);
}

bool json_null(struct json_buf *b)
{
    return json_verbatim(b, "null", 4);
}

int json_fput_str(FILE *f, const char *s)
{
    struct json_buf b;
    json_init_grow(&b);
    int rc = json_str(&b, s) ? 0 : -ENOMEM;
    if (rc == 0 && fwrite(b.p, 1, b.len, f) != b.len)
        rc = -EIO;
    json_fini(&b);
    return rc;
}
