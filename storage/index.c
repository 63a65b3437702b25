/*
 * NAME
 *	index - message id to recovery state, for the scan
 * SYNOPSIS
 *	#include "storage/spool_int.h"
 *
 *	struct spool_index ix;
 *	spool_index_init(&ix);
 *	struct spool_ient *e = spool_index_get(&ix, id, true);
 *	spool_index_fini(&ix);
 * DESCRIPTION
 *	An open-addressing hash table (linear probing, at most half full) of
 *	40-octet entries: the flags seen for a message, its body size and
 *	running crc, and where its START record is, so that the envelope is
 *	read again only for live messages.  A million messages cost about
 *	80 MB at worst.  Id 0 marks an empty slot (the reader refuses records
 *	with id 0).  Entries are never deleted.
 * DIAGNOSTICS
 *	spool_index_get() returns NULL when it cannot grow the table.
 */
#include "storage/spool_int.h"

#include <stdlib.h>
#include <string.h>

static size_t ix_slot(uint64_t id, size_t cap)
{
    /* Fibonacci hashing: ids share their high bits within a second */
    return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

void spool_index_init(struct spool_index *ix)
{
    memset(ix, 0, sizeof(*ix));
}

void spool_index_fini(struct spool_index *ix)
{
    free(ix->v);
    memset(ix, 0, sizeof(*ix));
}

static int ix_grow(struct spool_index *ix)
{
    size_t ncap = ix->cap ? ix->cap * 2 : 1024;
    struct spool_ient *nv = calloc(ncap, sizeof(*nv));
    if (nv == NULL)
        return -1;
    for (size_t i = 0; i < ix->cap; i++) {
        if (ix->v[i].id == 0)
            continue;
        size_t j = ix_slot(ix->v[i].id, ncap);
        while (nv[j].id != 0)
            j = (j + 1) & (ncap - 1);
        nv[j] = ix->v[i];
    }
    free(ix->v);
    ix->v = nv;
    ix->cap = ncap;
    return 0;
}

struct spool_ient *spool_index_get(struct spool_index *ix, uint64_t id, bool create)
{
    if (ix->cap) {
        size_t j = ix_slot(id, ix->cap);
        while (ix->v[j].id != 0) {
            if (ix->v[j].id == id)
                return &ix->v[j];
            j = (j + 1) & (ix->cap - 1);
        }
    }
    if (!create || id == 0)
        return NULL;
    if ((ix->n + 1) * 2 > ix->cap && ix_grow(ix) < 0)
        return NULL;
    size_t j = ix_slot(id, ix->cap);
    while (ix->v[j].id != 0)
        j = (j + 1) & (ix->cap - 1);
    ix->n++;
    memset(&ix->v[j], 0, sizeof(ix->v[j]));
    ix->v[j].id = id;
    return &ix->v[j];
}
