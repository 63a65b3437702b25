/*
 * NAME
 *	mbuf - refcounted message buffers and slices (see mbuf.h)
 */
#include "core/base/mbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

void mbuf_panic_underflow(struct mbuf *b)
{
    fprintf(stderr, "panic: mbuf_unref: buffer %u has no references\n", b->id);
    abort();
}

void mchain_init(struct mchain *c)
{
    c->v = NULL;
    c->n = c->cap = 0;
    c->bytes = 0;
}

void mchain_clear(struct mchain *c)
{
    for (uint32_t i = 0; i < c->n; i++)
        mbuf_unref(c->v[i].buf);
    c->n = 0;
    c->bytes = 0;
}

void mchain_fini(struct mchain *c)
{
    mchain_clear(c);
    free(c->v);
    c->v = NULL;
    c->cap = 0;
}

int mchain_push(struct mchain *c, struct mbuf *b, uint32_t off, uint32_t len)
{
    if (len == 0)
        return 0;
    if (c->n > 0) {
        struct mslice *last = &c->v[c->n - 1];
        if (last->buf == b && last->off + last->len == off) {
            last->len += len;
            c->bytes += len;
            return 0;
        }
    }
    if (c->n == c->cap) {
        uint32_t ncap = c->cap ? c->cap * 2 : 16;
        struct mslice *nv = realloc(c->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        c->v = nv;
        c->cap = ncap;
    }
    mbuf_ref(b);
    c->v[c->n++] = (struct mslice){b, off, len};
    c->bytes += len;
    return 0;
}

uint32_t mchain_iov(const struct mchain *c, uint32_t first, struct iovec *iov, uint32_t max)
{
    uint32_t k = 0;
    for (uint32_t i = first; i < c->n && k < max; i++, k++) {
        iov[k].iov_base = c->v[i].buf->data + c->v[i].off;
        iov[k].iov_len = c->v[i].len;
    }
    return k;
}

static void mbuf_heap_release(struct mbuf *b) { free(b); }

struct mbuf *mbuf_heap(size_t cap)
{
    struct mbuf *b = malloc(sizeof(*b) + cap);
    if (b == NULL)
        return NULL;
    b->data = (char *)(b + 1);
    b->cap = (uint32_t)cap;
    b->refs = 1;
    b->id = UINT32_MAX;
    b->release = mbuf_heap_release;
    b->owner = NULL;
    return b;
}
