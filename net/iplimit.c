/*
 * NAME
 *	iplimit - connections per client address, across all workers
 * DESCRIPTION
 *	A client's connections land on any worker (SO_REUSEPORT hashes the
 *	4-tuple), so the count is shared.  It is taken once per accept and
 *	once per close, never per byte, so a mutex around a small chained hash
 *	table is the right tool here: contention is bounded by the connection
 *	rate, and an entry disappears when its count reaches zero.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"

#define IPL_BUCKETS 4096

struct ipl_entry {
    uint8_t key[16];
    unsigned count;
    struct ipl_entry *next;
};

static pthread_mutex_t ipl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ipl_entry *ipl_table[IPL_BUCKETS];

/* IPv4 and IPv4-mapped IPv6 share a key. */
static void ipl_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static unsigned ipl_hash(const uint8_t key[16])
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ULL;
    return (unsigned)(h % IPL_BUCKETS);
}

/* limit >= 1; the caller skips exempt clients and a limit of 0. */
bool net_iplimit_acquire(const struct sockaddr *sa, unsigned limit)
{
    uint8_t key[16];
    ipl_key(sa, key);
    unsigned b = ipl_hash(key);
    bool ok = true;
    pthread_mutex_lock(&ipl_lock);
    struct ipl_entry *e = ipl_table[b];
    while (e && memcmp(e->key, key, 16) != 0)
        e = e->next;
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        if (e == NULL) {
            ok = false; /* refuse rather than count wrongly */
        } else {
            memcpy(e->key, key, 16);
            e->next = ipl_table[b];
            ipl_table[b] = e;
        }
    }
    if (ok && e->count >= limit)
        ok = false;
    if (ok)
        e->count++;
    pthread_mutex_unlock(&ipl_lock);
    return ok;
}

void net_iplimit_release(const struct sockaddr *sa)
{
    uint8_t key[16];
    ipl_key(sa, key);
    unsigned b = ipl_hash(key);
    pthread_mutex_lock(&ipl_lock);
    struct ipl_entry **pp = &ipl_table[b];
    while (*pp && memcmp((*pp)->key, key, 16) != 0)
        pp = &(*pp)->next;
    struct ipl_entry *e = *pp;
    if (e && e->count > 0 && --e->count == 0) {
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&ipl_lock);
}
