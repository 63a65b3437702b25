/*
 * NAME
 *	edits - header edit lists: the EDITS record and applying it on read
 * SYNOPSIS
 *	#include "storage/spool_int.h"
 *
 *	n = spool_edits_len(v, k); spool_edits_encode(v, k, payload);
 *	spool_edits_decode(payload, n, &dec);
 *	spool_ef_init(&f, dec.v, dec.n, out, arg);
 *	spool_ef_feed(&f, p, len); ... spool_ef_finish(&f);
 * DESCRIPTION
 *	Sinks edit a message's header as a list (docs/spool-format.md): the
 *	received octets are never rewritten.  The list is stored in one EDITS
 *	record written with the COMMIT, and applied when the body is read
 *	(spool_read_body): the filter buffers the header section - up to the
 *	empty line that ends it, or the whole message when there is none -
 *	cuts it into fields (a field is a line not starting with SP or HTAB,
 *	and the continuation lines after it), applies the edits in order and
 *	writes the result, then passes the rest through.  The header section
 *	is held in memory whole; the message size limit bounds it.
 *
 *	Payload: u32 count, then per edit u32 op, u32 name length, the name,
 *	u32 value length, the value (no terminators).
 * DIAGNOSTICS
 *	spool_edits_decode() returns -EBADMSG for a payload that does not
 *	parse or holds an invalid edit, -ENOMEM; the filter returns what the
 *	output function returns, or -ENOMEM.
 */
#include "storage/spool_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EDIT_LINE_MAX 998u /* RFC 5322 2.1.1, without the CRLF */

bool spool_edit_valid(const struct spool_edit *e)
{
    if (e == NULL || e->name == NULL)
        return false;
    if (e->op != SPOOL_EDIT_ADD && e->op != SPOOL_EDIT_REMOVE && e->op != SPOOL_EDIT_CHANGE)
        return false;
    size_t nl = strlen(e->name);
    if (nl == 0 || nl > EDIT_LINE_MAX - 2)
        return false;
    for (size_t i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)e->name[i];
        if (c < 33 || c > 126 || c == ':')
            return false;
    }
    if (e->op == SPOOL_EDIT_REMOVE)
        return true;
    if (e->value == NULL)
        return false;
    size_t vl = strcspn(e->value, "\r\n");
    if (e->value[vl] != '\0' || nl + 2 + vl > EDIT_LINE_MAX)
        return false;
    return true;
}

static const char *edit_value(const struct spool_edit *e)
{
    return e->op == SPOOL_EDIT_REMOVE || e->value == NULL ? "" : e->value;
}

uint64_t spool_edits_len(const struct spool_edit *v, size_t n)
{
    uint64_t len = 4;
    for (size_t i = 0; i < n; i++)
        len += 12 + strlen(v[i].name) + strlen(edit_value(&v[i]));
    return len;
}

void spool_edits_encode(const struct spool_edit *v, size_t n, unsigned char *p)
{
    spool_put32(p, (uint32_t)n);
    p += 4;
    for (size_t i = 0; i < n; i++) {
        const char *val = edit_value(&v[i]);
        size_t nl = strlen(v[i].name), vl = strlen(val);
        spool_put32(p, (uint32_t)v[i].op);
        spool_put32(p + 4, (uint32_t)nl);
        memcpy(p + 8, v[i].name, nl);
        p += 8 + nl;
        spool_put32(p, (uint32_t)vl);
        memcpy(p + 4, val, vl);
        p += 4 + vl;
    }
}

int spool_edits_decode(const unsigned char *p, size_t len, struct spool_editdec *d)
{
    const unsigned char *end = p + len;
    memset(d, 0, sizeof(*d));
    if (len < 4)
        return -EBADMSG;
    uint32_t n = spool_get32(p);
    p += 4;
    if (n > (len - 4) / 12)
        return -EBADMSG;
    /* names and values lose 4-octet prefixes and gain a NUL each: len suffices */
    d->v = calloc(n ? n : 1, sizeof(*d->v));
    d->mem = malloc(len);
    if (d->v == NULL || d->mem == NULL) {
        spool_editdec_fini(d);
        return -ENOMEM;
    }
    char *out = d->mem;
    for (uint32_t i = 0; i < n; i++) {
        const char *s[2];
        if (end - p < 4)
            goto bad;
        uint32_t op = spool_get32(p);
        p += 4;
        for (int k = 0; k < 2; k++) {
            if (end - p < 4)
                goto bad;
            uint32_t sl = spool_get32(p);
            p += 4;
            if ((uint64_t)(end - p) < sl || memchr(p, '\0', sl) != NULL)
                goto bad;
            memcpy(out, p, sl);
            out[sl] = '\0';
            s[k] = out;
            out += sl + 1;
            p += sl;
        }
        d->v[i] = (struct spool_edit){(enum spool_edit_op)op, s[0], s[1]};
        if (!spool_edit_valid(&d->v[i]))
            goto bad;
    }
    if (p != end)
        goto bad;
    d->n = n;
    return 0;
bad:
    spool_editdec_fini(d);
    return -EBADMSG;
}

void spool_editdec_fini(struct spool_editdec *d)
{
    free(d->v);
    free(d->mem);
    memset(d, 0, sizeof(*d));
}

/* ---- applying a list to a header section ---- */

struct ef_field {
    const char *p; /* the field with its continuation lines and CRLF */
    size_t len;
    const char *name;
    size_t namelen; /* 0: a line without a colon, never matched */
    char *own;      /* p when the field was made by an edit */
};

struct ef_list {
    struct ef_field *v;
    size_t n, cap;
};

static int ef_insert(struct ef_list *l, size_t at, const struct ef_field *f)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        struct ef_field *nv = realloc(l->v, nc * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        l->v = nv;
        l->cap = nc;
    }
    memmove(l->v + at + 1, l->v + at, (l->n - at) * sizeof(*l->v));
    l->v[at] = *f;
    l->n++;
    return 0;
}

static void ef_delete(struct ef_list *l, size_t at)
{
    free(l->v[at].own);
    memmove(l->v + at, l->v + at + 1, (l->n - at - 1) * sizeof(*l->v));
    l->n--;
}

static bool ef_is(const struct ef_field *f, const char *name)
{
    size_t n = strlen(name);
    return f->namelen == n && strncasecmp(f->name, name, n) == 0;
}

/* Cuts hdr into fields (see DESCRIPTION). */
static int ef_parse(const char *hdr, size_t len, struct ef_list *l)
{
    size_t i = 0;
    while (i < len) {
        const char *crlf = memmem(hdr + i, len - i, "\r\n", 2);
        size_t next = crlf ? (size_t)(crlf - hdr) + 2 : len;
        if ((hdr[i] == ' ' || hdr[i] == '\t') && l->n > 0) {
            l->v[l->n - 1].len = next - (size_t)(l->v[l->n - 1].p - hdr);
        } else {
            struct ef_field f = {hdr + i, next - i, hdr + i, 0, NULL};
            const char *colon = memchr(hdr + i, ':', next - i);
            if (colon != NULL) {
                f.namelen = (size_t)(colon - (hdr + i));
                while (f.namelen > 0 &&
                       (f.name[f.namelen - 1] == ' ' || f.name[f.namelen - 1] == '\t'))
                    f.namelen--;
            }
            if (ef_insert(l, l->n, &f) < 0)
                return -ENOMEM;
        }
        i = next;
    }
    return 0;
}

/* A new field "name: value\r\n" (name as given, or as the field it replaces spells it). */
static int ef_make(struct ef_field *f, const char *name, size_t namelen, const char *value)
{
    size_t vl = strlen(value), n = namelen + 2 + vl + 2;
    char *p = malloc(n + 1);
    if (p == NULL)
        return -ENOMEM;
    memcpy(p, name, namelen);
    memcpy(p + namelen, ": ", 2);
    memcpy(p + namelen + 2, value, vl);
    memcpy(p + n - 2, "\r\n", 2);
    p[n] = '\0';
    *f = (struct ef_field){p, n, p, namelen, p};
    return 0;
}

static int ef_edit(struct ef_list *l, size_t *ins, const struct spool_edit *e)
{
    struct ef_field f;
    if (e->op == SPOOL_EDIT_REMOVE) {
        for (size_t j = l->n; j-- > 0;) {
            if (!ef_is(&l->v[j], e->name))
                continue;
            ef_delete(l, j);
            if (j < *ins)
                (*ins)--;
        }
        return 0;
    }
    if (e->op == SPOOL_EDIT_CHANGE) {
        for (size_t j = 0; j < l->n; j++) {
            if (!ef_is(&l->v[j], e->name))
                continue;
            if (ef_make(&f, l->v[j].name, l->v[j].namelen, e->value) < 0)
                return -ENOMEM;
            free(l->v[j].own);
            l->v[j] = f;
            return 0;
        }
    }
    if (ef_make(&f, e->name, strlen(e->name), e->value) < 0)
        return -ENOMEM;
    if (ef_insert(l, *ins, &f) < 0) {
        free(f.own);
        return -ENOMEM;
    }
    (*ins)++;
    return 0;
}

int spool_edits_apply(const char *hdr, size_t len, const struct spool_edit *v, size_t n,
                      spool_out_fn *out, void *arg)
{
    struct ef_list l = {0};
    int r = ef_parse(hdr, len, &l);
    size_t ins = l.n > 0 && ef_is(&l.v[0], "Received") ? 1 : 0;
    for (size_t i = 0; r == 0 && i < n; i++)
        r = ef_edit(&l, &ins, &v[i]);
    for (size_t i = 0; r == 0 && i < l.n; i++)
        r = out(arg, l.v[i].p, l.v[i].len);
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i].own);
    free(l.v);
    return r;
}

/* ---- the streaming filter ---- */

void spool_ef_init(struct spool_efilter *f, const struct spool_edit *v, size_t n, spool_out_fn *out,
                   void *arg)
{
    memset(f, 0, sizeof(*f));
    f->v = v;
    f->n = n;
    f->out = out;
    f->arg = arg;
}

/* The header section is buf[0, hlen): apply, then pass the rest. */
static int ef_flush(struct spool_efilter *f, size_t hlen)
{
    int r = spool_edits_apply(f->buf, hlen, f->v, f->n, f->out, f->arg);
    if (r == 0 && f->len > hlen)
        r = f->out(f->arg, f->buf + hlen, f->len - hlen);
    free(f->buf);
    f->buf = NULL;
    f->len = f->cap = 0;
    f->passing = true;
    return r;
}

int spool_ef_feed(struct spool_efilter *f, const void *p, size_t n)
{
    if (f->passing)
        return n ? f->out(f->arg, p, n) : 0;
    if (f->len + n > f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 4096;
        while (nc < f->len + n)
            nc *= 2;
        char *nb = realloc(f->buf, nc);
        if (nb == NULL)
            return -ENOMEM;
        f->buf = nb;
        f->cap = nc;
    }
    memcpy(f->buf + f->len, p, n);
    f->len += n;
    if (f->len >= 2 && f->buf[0] == '\r' && f->buf[1] == '\n')
        return ef_flush(f, 0); /* no header fields at all */
    size_t from = f->scanned > 3 ? f->scanned - 3 : 0;
    const char *end = memmem(f->buf + from, f->len - from, "\r\n\r\n", 4);
    f->scanned = f->len;
    if (end != NULL)
        return ef_flush(f, (size_t)(end - f->buf) + 2);
    return 0;
}

int spool_ef_finish(struct spool_efilter *f)
{
    if (f->passing)
        return 0;
    return ef_flush(f, f->len); /* no empty line: it is all header */
}

void spool_ef_fini(struct spool_efilter *f)
{
    free(f->buf);
    f->buf = NULL;
}
