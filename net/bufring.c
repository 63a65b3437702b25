/*
 * NAME
 *	bufring - the worker's provided-buffer ring
 * DESCRIPTION
 *	`count` buffers of `size` bytes in one anonymous mapping (touched only
 *	when the kernel first fills them), registered as buffer group NET_BGID.
 *	Each buffer is an mbuf whose release puts it back on the ring; returns
 *	are batched and published once per loop turn (net_bufring_flush), with
 *	the store-release in io_uring_buf_ring_advance ordering the entries'
 *	contents before the new tail the kernel reads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/base/log.h"
#include "net/net_int.h"

static void net_bufring_release(struct mbuf *b)
{
    struct net_worker *w = b->owner;
    struct net_bufring *r = &w->bufs;
    io_uring_buf_ring_add(r->br, b->data, r->size, (unsigned short)b->id, (int)r->mask,
                          (int)r->pending_adds);
    r->pending_adds++;
    r->free++;
}

void net_bufring_flush(struct net_worker *w)
{
    struct net_bufring *r = &w->bufs;
    if (r->pending_adds) {
        io_uring_buf_ring_advance(r->br, (int)r->pending_adds);
        r->pending_adds = 0;
    }
}

int net_bufring_init(struct net_worker *w, char *err, size_t errlen)
{
    struct net_bufring *r = &w->bufs;
    r->count = w->srv->set.buffer_count;
    r->size = w->srv->set.buffer_size;
    r->mask = r->count - 1;
    r->br_bytes = r->count * sizeof(struct io_uring_buf);
    r->br = mmap(NULL, r->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (r->br == MAP_FAILED) {
        r->br = NULL;
        snprintf(err, errlen, "buffer ring: mmap: %s", strerror(errno));
        return -ENOMEM;
    }
    r->mem_bytes = (size_t)r->count * r->size;
    r->mem = mmap(NULL, r->mem_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    r->bufs = calloc(r->count, sizeof(*r->bufs));
    if (r->mem == MAP_FAILED || r->bufs == NULL) {
        if (r->mem == MAP_FAILED)
            r->mem = NULL;
        snprintf(err, errlen, "buffer ring: out of memory for %u x %u bytes", r->count, r->size);
        return -ENOMEM;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)(uintptr_t)r->br;
    reg.ring_entries = r->count;
    reg.bgid = NET_BGID;
    int rc = io_uring_register_buf_ring(&w->ring, &reg, 0);
    if (rc < 0) {
        snprintf(err, errlen,
                 "io_uring_register_buf_ring: %s (provided buffer rings need Linux 5.19 or later)",
                 strerror(-rc));
        return rc;
    }
    io_uring_buf_ring_init(r->br);
    for (unsigned i = 0; i < r->count; i++) {
        struct mbuf *b = &r->bufs[i];
        b->data = r->mem + (size_t)i * r->size;
        b->cap = r->size;
        b->refs = 0;
        b->id = i;
        b->release = net_bufring_release;
        b->owner = w;
        io_uring_buf_ring_add(r->br, b->data, r->size, (unsigned short)i, (int)r->mask, (int)i);
    }
    io_uring_buf_ring_advance(r->br, (int)r->count);
    r->free = r->count;
    r->pending_adds = 0;
    return 0;
}

void net_bufring_fini(struct net_worker *w)
{
    struct net_bufring *r = &w->bufs;
    if (r->br && w->ring_ok)
        io_uring_unregister_buf_ring(&w->ring, NET_BGID);
    if (r->br)
        munmap(r->br, r->br_bytes);
    if (r->mem)
        munmap(r->mem, r->mem_bytes);
    free(r->bufs);
    memset(r, 0, sizeof(*r));
}
