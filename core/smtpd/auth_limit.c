/*
 * NAME
 *	auth_limit - AUTH failures per client network or per user name,
 *	bounded and expiring
 * SYNOPSIS
 *	#include "core/smtpd/auth.h"
 *
 *	if (auth_limit_blocked(l, sa, now)) ... 421
 *	auth_limit_fail(l, sa, now);
 *	if (auth_limit_user_blocked(u, "bob", now)) ... 454
 *	n = auth_limit_user_fail(u, "bob", now);
 *	auth_limit_pair_add(k, "bob", sa, now); auth_limit_pair_seen(k, "bob", sa, now)
 *	auth_limit_pair_fail(l, "bob", sa, now); auth_limit_pair_blocked(l, "bob", sa, now)
 * DESCRIPTION
 *	See core/smtpd/auth.h.  A network key is the IPv4 address, or the
 *	first 64 bits of an IPv6 address (a v4-mapped address counts as the
 *	IPv4 one).  A user key is a seeded 64-bit FNV-1a hash of the name
 *	folded to ASCII lower case; a pair key hashes the name and then the
 *	network key (a pair's failures are counted in the network table under
 *	that key: its tag 'p' never meets a network's 4 or 6).  Every key is
 *	9 octets (a tag, 8 octets), so one table type serves all three uses.
 *	Sets of 4 slots chosen by a seeded hash of the key; a full set evicts
 *	its oldest window.  One mutex: a lookup is
 *	a few dozen instructions and happens a few times per AUTH.
 * DIAGNOSTICS
 *	None; an address of another family is never limited.
 */
#include "core/smtpd/auth.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define AUTH_LIMIT_WAYS 4

struct auth_slot {
    uint8_t key[9]; /* family tag, then 8 octets (v4 in the first 4) */
    bool used;
    uint32_t count;
    uint64_t start_ms; /* the window's start: the first failure */
};

struct auth_limit {
    pthread_mutex_t mu;
    unsigned max;
    uint64_t window_ms;
    size_t nsets;
    uint64_t seed;
    struct auth_slot *slots; /* nsets * AUTH_LIMIT_WAYS */
};

struct auth_limit *auth_limit_create(unsigned max_failures, uint64_t window_ms, size_t slots)
{
    struct auth_limit *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->nsets = slots < AUTH_LIMIT_WAYS ? 1 : (slots + AUTH_LIMIT_WAYS - 1) / AUTH_LIMIT_WAYS;
    l->slots = calloc(l->nsets * AUTH_LIMIT_WAYS, sizeof(*l->slots));
    if (l->slots == NULL) {
        free(l);
        return NULL;
    }
    l->max = max_failures;
    l->window_ms = window_ms;
    if (getrandom(&l->seed, sizeof(l->seed), GRND_NONBLOCK) != sizeof(l->seed))
        l->seed = (uint64_t)(uintptr_t)l ^ 0x9e3779b97f4a7c15ull; /* still unknown to a client */
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

void auth_limit_destroy(struct auth_limit *l)
{
    if (l == NULL)
        return;
    pthread_mutex_destroy(&l->mu);
    free(l->slots);
    free(l);
}

static bool auth_limit_key(const struct sockaddr *sa, uint8_t key[9])
{
    memset(key, 0, 9);
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            key[0] = 4;
            memcpy(key + 1, a->s6_addr + 12, 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, a->s6_addr, 8); /* the /64 */
        }
        return true;
    }
    return false;
}

static uint64_t auth_limit_fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static struct auth_slot *auth_limit_set(struct auth_limit *l, const uint8_t key[9])
{
    uint64_t h = auth_limit_fnv(1469598103934665603ull ^ l->seed, key, 9);
    h ^= h >> 29;
    return &l->slots[(h % l->nsets) * AUTH_LIMIT_WAYS];
}

static bool auth_slot_live(const struct auth_limit *l, const struct auth_slot *s, uint64_t now)
{
    return s->used && now - s->start_ms < l->window_ms && now >= s->start_ms;
}

/* The slot of key in its set, or NULL; expired ones are freed on the way. */
static struct auth_slot *auth_limit_find(struct auth_limit *l, const uint8_t key[9], uint64_t now)
{
    struct auth_slot *set = auth_limit_set(l, key);
    struct auth_slot *hit = NULL;
    for (int i = 0; i < AUTH_LIMIT_WAYS; i++) {
        if (set[i].used && !auth_slot_live(l, &set[i], now))
            set[i].used = false;
        if (set[i].used && memcmp(set[i].key, key, 9) == 0)
            hit = &set[i];
    }
    return hit;
}

bool auth_limit_blocked(struct auth_limit *l, const struct sockaddr *sa, uint64_t now_ms)
{
    uint8_t key[9];
    if (l == NULL || l->max == 0 || !auth_limit_key(sa, key))
        return false;
    pthread_mutex_lock(&l->mu);
    struct auth_slot *s = auth_limit_find(l, key, now_ms);
    bool blocked = s != NULL && s->count >= l->max;
    pthread_mutex_unlock(&l->mu);
    return blocked;
}

/* The slot of key, made (evicting the set's oldest window) if absent. */
static struct auth_slot *auth_limit_get(struct auth_limit *l, const uint8_t key[9], uint64_t now)
{
    struct auth_slot *s = auth_limit_find(l, key, now);
    if (s != NULL)
        return s;
    struct auth_slot *set = auth_limit_set(l, key);
    s = &set[0];
    for (int i = 0; i < AUTH_LIMIT_WAYS; i++) {
        if (!set[i].used) {
            s = &set[i];
            break;
        }
        if (set[i].start_ms < s->start_ms)
            s = &set[i]; /* full: the oldest window goes */
    }
    memcpy(s->key, key, 9);
    s->used = true;
    s->count = 0;
    s->start_ms = now;
    return s;
}

/* Counts one event of key; the count within the window, this one included. */
static uint32_t auth_limit_add(struct auth_limit *l, const uint8_t key[9], uint64_t now)
{
    pthread_mutex_lock(&l->mu);
    struct auth_slot *s = auth_limit_get(l, key, now);
    if (s->count < UINT32_MAX)
        s->count++;
    uint32_t n = s->count;
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* The count of key within its window (0: none). */
static uint32_t auth_limit_count(struct auth_limit *l, const uint8_t key[9], uint64_t now)
{
    pthread_mutex_lock(&l->mu);
    struct auth_slot *s = auth_limit_find(l, key, now);
    uint32_t n = s != NULL ? s->count : 0;
    pthread_mutex_unlock(&l->mu);
    return n;
}

bool auth_limit_fail(struct auth_limit *l, const struct sockaddr *sa, uint64_t now_ms)
{
    uint8_t key[9];
    if (l == NULL || l->max == 0 || !auth_limit_key(sa, key))
        return false;
    return auth_limit_add(l, key, now_ms) >= l->max;
}

/* ---- user names, and (user, network) pairs ---- */

/* tag 'u' (a user) or 'p' (a pair: sa != NULL), then the hash. */
static void auth_limit_name_key(const struct auth_limit *l, const char *user,
                                const struct sockaddr *sa, uint8_t key[9])
{
    uint64_t h = 1469598103934665603ull ^ l->seed ^ 0x5bd1e995u;
    for (const char *p = user; *p != '\0'; p++) {
        uint8_t c = (uint8_t)*p;
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a'); /* ASCII only: no locale */
        h = auth_limit_fnv(h, &c, 1);
    }
    key[0] = 'u';
    if (sa != NULL) {
        uint8_t net[9];
        if (!auth_limit_key(sa, net))
            memset(net, 0, sizeof(net)); /* another family: one key per user */
        h = auth_limit_fnv(h ^ 0xff, net, sizeof(net));
        key[0] = 'p';
    }
    memcpy(key + 1, &h, 8);
}

bool auth_limit_user_blocked(struct auth_limit *l, const char *user, uint64_t now_ms)
{
    uint8_t key[9];
    if (l == NULL || l->max == 0)
        return false;
    auth_limit_name_key(l, user, NULL, key);
    return auth_limit_count(l, key, now_ms) >= l->max;
}

uint32_t auth_limit_user_fail(struct auth_limit *l, const char *user, uint64_t now_ms)
{
    uint8_t key[9];
    if (l == NULL || l->max == 0)
        return 0;
    auth_limit_name_key(l, user, NULL, key);
    return auth_limit_add(l, key, now_ms);
}

void auth_limit_pair_add(struct auth_limit *l, const char *user, const struct sockaddr *sa,
                         uint64_t now_ms)
{
    uint8_t key[9];
    if (l == NULL)
        return;
    auth_limit_name_key(l, user, sa, key);
    pthread_mutex_lock(&l->mu);
    struct auth_slot *s = auth_limit_get(l, key, now_ms);
    s->count = 1;
    s->start_ms = now_ms; /* remembered for a window from the latest one */
    pthread_mutex_unlock(&l->mu);
}

bool auth_limit_pair_seen(struct auth_limit *l, const char *user, const struct sockaddr *sa,
                          uint64_t now_ms)
{
    uint8_t key[9];
    if (l == NULL)
        return false;
    auth_limit_name_key(l, user, sa, key);
    return auth_limit_count(l, key, now_ms) > 0;
}

uint32_t auth_limit_pair_fail(struct auth_limit *l, const char *user, const struct sockaddr *sa,
                              uint64_t now_ms)
{
    uint8_t key[9];
    if (l == NULL || l->max == 0)
        return 0;
    auth_limit_name_key(l, user, sa, key); /* tag 'p': never a network's key */
    return auth_limit_add(l, key, now_ms);
}

bool auth_limit_pair_blocked(struct auth_limit *l, const char *user, const struct sockaddr *sa,
                             uint64_t now_ms)
{
    uint8_t key[9];
    if (l == NULL || l->max == 0)
        return false;
    auth_limit_name_key(l, user, sa, key);
    return auth_limit_count(l, key, now_ms) >= l->max;
}
