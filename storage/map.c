/*
 * NAME
 *	map - u64 key to pointer, for the space accounting
 * SYNOPSIS
 *	#include "storage/spool_int.h"
 *
 *	spool_map_put(&m, key, p); spool_map_get(&m, key);
 *	spool_map_del(&m, key); spool_map_fini(&m);
 * DESCRIPTION
 *	Open addressing with linear probing, at most half full; deletion
 *	shifts the following entries back, so there are no tombstones and a
 *	lookup never walks further than the cluster it hashes into.  Key 0
 *	marks an empty slot (message ids and segment keys are never 0).
 * DIAGNOSTICS
 *	spool_map_put() returns -ENOMEM when the table cannot grow.
 */
#include "storage/spool_int.h"

#include <errno.h>
#include <stdlib.h>

static size_t map_slot(uint64_t k, size_t cap)
{
    return (size_t)((k * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

void *spool_map_get(const struct spool_map *m, uint64_t k)
{
    if (m->cap == 0)
        return NULL;
    for (size_t j = map_slot(k, m->cap); m->k[j] != 0; j = (j + 1) & (m->cap - 1))
        if (m->k[j] == k)
            return m->v[j];
    return NULL;
}

static void map_insert(uint64_t *ks, void **vs, size_t cap, uint64_t k, void *v)
{
    size_t j = map_slot(k, cap);
    while (ks[j] != 0)
        j = (j + 1) & (cap - 1);
    ks[j] = k;
    vs[j] = v;
}

static int map_grow(struct spool_map *m)
{
    size_t nc = m->cap ? m->cap * 2 : 64;
    uint64_t *nk = calloc(nc, sizeof(*nk));
    void **nv = malloc(nc * sizeof(*nv));
    if (nk == NULL || nv == NULL) {
        free(nk);
        free(nv);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->k[i] != 0)
            map_insert(nk, nv, nc, m->k[i], m->v[i]);
    free(m->k);
    free(m->v);
    m->k = nk;
    m->v = nv;
    m->cap = nc;
    return 0;
}

int spool_map_put(struct spool_map *m, uint64_t k, void *v)
{
    if (m->cap) {
        for (size_t j = map_slot(k, m->cap); m->k[j] != 0; j = (j + 1) & (m->cap - 1)) {
            if (m->k[j] == k) {
                m->v[j] = v;
                return 0;
            }
        }
    }
    if ((m->n + 1) * 2 > m->cap && map_grow(m) < 0)
        return -ENOMEM;
    map_insert(m->k, m->v, m->cap, k, v);
    m->n++;
    return 0;
}

void **spool_map_slot(struct spool_map *m, uint64_t k)
{
    if ((m->n + 1) * 2 > m->cap && map_grow(m) < 0)
        return NULL;
    size_t j = map_slot(k, m->cap);
    for (; m->k[j] != 0; j = (j + 1) & (m->cap - 1))
        if (m->k[j] == k)
            return &m->v[j];
    m->k[j] = k;
    m->v[j] = NULL;
    m->n++;
    return &m->v[j];
}

void *spool_map_del(struct spool_map *m, uint64_t k)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1, j = map_slot(k, m->cap);
    while (m->k[j] != k) {
        if (m->k[j] == 0)
            return NULL;
        j = (j + 1) & mask;
    }
    void *v = m->v[j];
    /* backward shift: move each later entry of the cluster into the hole
     * unless its home slot lies cyclically in (hole, its slot] */
    size_t hole = j;
    for (size_t i = (j + 1) & mask; m->k[i] != 0; i = (i + 1) & mask) {
        size_t home = map_slot(m->k[i], m->cap);
        bool stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
        if (stays)
            continue;
        m->k[hole] = m->k[i];
        m->v[hole] = m->v[i];
        hole = i;
    }
    m->k[hole] = 0;
    m->n--;
    return v;
}

void spool_map_fini(struct spool_map *m)
{
    free(m->k);
    free(m->v);
    m->k = NULL;
    m->v = NULL;
    m->cap = m->n = 0;
}
