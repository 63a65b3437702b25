/*
 * NAME
 *	mbuf - refcounted message buffers and slices over them
 * SYNOPSIS
 *	#include "core/base/mbuf.h"
 * DESCRIPTION
 *	Received bytes stay in the buffer they landed in (a provided-buffer
 *	ring entry).  A message is a chain of slices (buffer, offset, length);
 *	each slice holds one reference on its buffer.  When the last reference
 *	goes, the buffer's release function hands it back to its owner (the
 *	ring).  References are plain integers: a buffer is referenced and
 *	released only on the thread of the worker that owns its ring.
 *
 *	An mchain is a growable array of slices (the body of a message as it
 *	arrives, before it is appended to the spool).
 * DIAGNOSTICS
 *	Releasing a buffer with no references left panics.
 */
#ifndef SLUICE_CORE_MBUF_H
#define SLUICE_CORE_MBUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct mbuf {
    char *data;
    uint32_t cap;
    uint32_t refs;                  /* owner thread only */
    uint32_t id;                    /* the owner's index (ring buffer id) */
    void (*release)(struct mbuf *); /* refs reached zero */
    void *owner;
};

struct mslice {
    struct mbuf *buf;
    uint32_t off;
    uint32_t len;
};

void mbuf_panic_underflow(struct mbuf *b);

static inline void mbuf_ref(struct mbuf *b) { b->refs++; }

static inline void mbuf_unref(struct mbuf *b)
{
    if (b->refs == 0)
        mbuf_panic_underflow(b);
    if (--b->refs == 0)
        b->release(b);
}

/* A chain of slices.  The chain owns one reference per slice. */
struct mchain {
    struct mslice *v;
    uint32_t n;
    uint32_t cap;
    uint64_t bytes;
};

void mchain_init(struct mchain *c);
/* Releases every slice and the array. */
void mchain_fini(struct mchain *c);
/* Releases every slice; keeps the array for reuse. */
void mchain_clear(struct mchain *c);
/* Appends (b, off, len), taking a new reference on b; adjacent slices of the
 * same buffer are merged.  Returns 0 or -ENOMEM. */
int mchain_push(struct mchain *c, struct mbuf *b, uint32_t off, uint32_t len);
/* Fills at most max iovecs from slice `first` on; returns how many. */
uint32_t mchain_iov(const struct mchain *c, uint32_t first, struct iovec *iov, uint32_t max);

/* A heap buffer with a release that frees it (for copies out of the ring,
 * tests and tools).  Starts with one reference owned by the caller. */
struct mbuf *mbuf_heap(size_t cap);

#endif
