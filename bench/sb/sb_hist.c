/*
 * NAME
 *	sb_hist - a log-linear histogram of latencies (HdrHistogram's layout)
 * SYNOPSIS
 *	#include "bench/sb/sb.h"
 *	struct sb_hist h; sb_hist_init(&h); sb_hist_add(&h, us);
 *	sb_hist_quantile(&h, 0.99);
 * DESCRIPTION
 *	Values below 128 have a bucket each; above, every power of two
 *	[2^k, 2^(k+1)) is cut into 64 equal buckets, so a bucket is at most
 *	1/64 of its values wide (1.6%) whatever the magnitude, in a fixed
 *	array (30 KiB) with no allocation: adding is a shift, a count and a
 *	store.  A quantile is the upper bound of the bucket that holds it.
 *	Single-threaded: each load thread has its own, merged at the end.
 */
#include "bench/sb/sb.h"

#include <string.h>

static unsigned hist_index(uint64_t v)
{
    if (v < 2 * SB_HIST_HALF)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned e = msb - (SB_HIST_SUB_BITS - 1); /* >= 1: (v >> e) in [64, 128) */
    return e * SB_HIST_HALF + (unsigned)(v >> e);
}

/* The largest value bucket i holds. */
static uint64_t hist_upper(unsigned i)
{
    if (i < 2 * SB_HIST_HALF)
        return i;
    unsigned e = i / SB_HIST_HALF - 1;
    uint64_t m = i % SB_HIST_HALF + SB_HIST_HALF;
    return ((m + 1) << e) - 1;
}

void sb_hist_init(struct sb_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void sb_hist_add(struct sb_hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
    if (v < h->min)
        h->min = v;
}

void sb_hist_merge(struct sb_hist *into, const struct sb_hist *from)
{
    for (unsigned i = 0; i < SB_HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
    if (from->min < into->min)
        into->min = from->min;
}

uint64_t sb_hist_quantile(const struct sb_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q >= 1)
        return h->max;
    /* the rank of the value: ceil(q * count), at least 1 */
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < SB_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t u = hist_upper(i);
            return u > h->max ? h->max : u;
        }
    }
    return h->max;
}

double sb_hist_mean(const struct sb_hist *h)
{
    return h->count ? h->sum / (double)h->count : 0;
}
