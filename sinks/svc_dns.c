/*
 * NAME
 *	svc_dns - the sink DNS service: c-ares on the worker's ring, a cache per worker
 * SYNOPSIS
 *	#include "sinks/sink.h"
 *
 *	int sink_dns_lookup(struct sink_ctx *ctx, const char *name,
 *			    enum sink_dns_type type, sink_dns_fn *fn, void *arg,
 *			    sink_svc_id *id);	(service.c checks, then here)
 * DESCRIPTION
 *	One c-ares channel per worker, made at the first lookup, with the
 *	daemon's dns_servers (or /etc/resolv.conf), 2 s per try, 2 tries,
 *	EDNS0 (1232 octets) so that DKIM keys fit in UDP; c-ares retries
 *	over TCP when an answer comes truncated.  Its sockets are watched
 *	with one-shot polls on the worker's ring (service.c's poll slots),
 *	re-armed after each readiness while c-ares still wants them; its
 *	retry timer is folded into the worker's next deadline.
 *
 *	The cache: answers keyed by (type, name in lower case, no final
 *	dot), kept for the smallest TTL of the records (at most a day; 0:
 *	not kept); NXDOMAIN and NODATA for the SOA's negative TTL
 *	(RFC 2308: min(SOA TTL, SOA minimum)), 60 s without an SOA;
 *	temporary failures are not kept.  At most SINK_DNS_CACHE_MAX
 *	entries: when full, the oldest entry goes (FIFO).  A lookup whose
 *	key is already being asked joins that query: one packet for any
 *	number of sessions asking the same thing.
 *
 *	Answers are parsed here from the wire format (RFC 1035 section 4):
 *	records of the asked type and class IN in the answer section, in
 *	order (a CNAME chain is followed implicitly: its target's records
 *	are in the same section).  A cached answer is delivered with each
 *	record's ttl set to the seconds the entry has left.
 *
 *	Owner thread only, like every service.
 * DIAGNOSTICS
 *	A malformed answer is SINK_DNS_TEMPFAIL "malformed answer".
 */
#include "sinks/sink_int.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/log.h"

#define SINK_DNS_CACHE_MAX 8192
#define SINK_DNS_BUCKETS 4096 /* power of two */
#define SINK_DNS_TTL_MAX 86400u
#define SINK_DNS_NEG_DEFAULT 60u
#define SINK_DNS_TRY_MS 2000
#define SINK_DNS_TRIES 2

/* A cached answer (or a query in flight: inflight true, no records yet). */
struct sink_dnsq {
    struct sink_dnsq *hnext;          /* bucket chain */
    struct sink_dnsq *fnext, *fprev;  /* cache FIFO (cached entries only) */
    struct sink_dns *d;
    int type;
    char name[256];
    bool inflight;
    struct sink_svc *waiters; /* in flight: the lookups waiting */
    /* cached */
    uint64_t expires_ms;
    enum sink_dns_status status;
    size_t n;
    struct sink_dns_rr *rr; /* text and data of each: malloc'd */
};

struct sink_dns_sock {
    int fd;
    bool want_r, want_w;
    bool armed;
    unsigned armed_what;
    uint32_t token;
};

struct sink_dns {
    struct sink_worker *sw;
    ares_channel ch;
    struct sink_dnsq *bucket[SINK_DNS_BUCKETS];
    struct sink_dnsq *fhead, *ftail; /* cached entries, oldest first */
    size_t ncached;
    struct sink_dns_sock *socks;
    size_t nsocks, capsocks;
    uint64_t due_ms; /* c-ares wants a process call by then; UINT64_MAX: no */
};

static pthread_once_t sink_ares_once = PTHREAD_ONCE_INIT;
static int sink_ares_status = ARES_SUCCESS;

static void sink_ares_init(void)
{
    sink_ares_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static uint32_t sink_dns_hash(int type, const char *name)
{
    uint32_t h = 2166136261u ^ (uint32_t)type;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h & (SINK_DNS_BUCKETS - 1);
}

/* ---- sockets ---- */

static void sink_dns_due(struct sink_dns *d)
{
    struct timeval tv;
    struct timeval *p = ares_timeout(d->ch, NULL, &tv);
    d->due_ms = p == NULL ? UINT64_MAX
                          : clock_mono_ms() + (uint64_t)p->tv_sec * 1000u + (uint64_t)p->tv_usec / 1000u;
}

static struct sink_dns_sock *sink_dns_sock_find(struct sink_dns *d, int fd)
{
    for (size_t i = 0; i < d->nsocks; i++)
        if (d->socks[i].fd == fd)
            return &d->socks[i];
    return NULL;
}

static void sink_dns_arm(struct sink_dns *d, struct sink_dns_sock *s);

static void sink_dns_ready(struct sink_worker *sw, void *arg, int res)
{
    struct sink_dns *d = sw->dns;
    int fd = (int)(intptr_t)arg;
    struct sink_dns_sock *s = sink_dns_sock_find(d, fd);
    if (s == NULL)
        return; /* closed meanwhile */
    s->armed = false;
    bool r = res < 0 || (res & (POLLIN | POLLERR | POLLHUP)) != 0;
    bool w = res >= 0 && (res & POLLOUT) != 0;
    ares_process_fd(d->ch, r ? fd : ARES_SOCKET_BAD, w ? fd : ARES_SOCKET_BAD);
    if ((s = sink_dns_sock_find(d, fd)) != NULL)
        sink_dns_arm(d, s);
    sink_dns_due(d);
}

static void sink_dns_arm(struct sink_dns *d, struct sink_dns_sock *s)
{
    unsigned what = (s->want_r ? SINK_FD_READ : 0) | (s->want_w ? SINK_FD_WRITE : 0);
    if (s->armed && s->armed_what == what)
        return;
    if (s->armed) {
        sink_poll_cancel(d->sw, s->token);
        s->armed = false;
    }
    if (what == 0)
        return;
    int rc = sink_poll_start(d->sw, s->fd, what, sink_dns_ready, (void *)(intptr_t)s->fd, &s->token);
    if (rc < 0) {
        log_msg(LOG_ERROR, "sinks: dns: cannot watch socket %d: %s", s->fd, strerror(-rc));
        return; /* c-ares' own timeout ends the query */
    }
    s->armed = true;
    s->armed_what = what;
}

static void sink_dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct sink_dns *d = data;
    struct sink_dns_sock *s = sink_dns_sock_find(d, fd);
    if (!readable && !writable) {
        if (s == NULL)
            return;
        if (s->armed)
            sink_poll_cancel(d->sw, s->token);
        *s = d->socks[--d->nsocks];
        return;
    }
    if (s == NULL) {
        if (d->nsocks == d->capsocks) {
            size_t cap = d->capsocks ? d->capsocks * 2 : 8;
            struct sink_dns_sock *v = realloc(d->socks, cap * sizeof(*v));
            if (v == NULL) {
                log_msg(LOG_ERROR, "sinks: dns: out of memory watching socket %d", fd);
                return;
            }
            d->socks = v;
            d->capsocks = cap;
        }
        s = &d->socks[d->nsocks++];
        memset(s, 0, sizeof(*s));
        s->fd = fd;
    }
    s->want_r = readable != 0;
    s->want_w = writable != 0;
    sink_dns_arm(d, s);
}

/* ---- the channel ---- */

static int sink_dns_open(struct sink_worker *sw)
{
    pthread_once(&sink_ares_once, sink_ares_init);
    if (sink_ares_status != ARES_SUCCESS)
        return -EIO;
    struct sink_dns *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->sw = sw;
    d->due_ms = UINT64_MAX;
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = sink_dns_sock_state;
    o.sock_state_cb_data = d;
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_EDNS;
    o.ednspsz = 1232;
    o.timeout = SINK_DNS_TRY_MS;
    o.tries = SINK_DNS_TRIES;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ | ARES_OPT_TIMEOUTMS |
               ARES_OPT_TRIES;
    int st = ares_init_options(&d->ch, &o, mask);
    if (st != ARES_SUCCESS) {
        log_msg(LOG_ERROR, "sinks: dns: c-ares: %s", ares_strerror(st));
        free(d);
        return -EIO;
    }
    if (sw->ndns_servers > 0) {
        char csv[2048];
        size_t len = 0;
        csv[0] = '\0';
        for (size_t i = 0; i < sw->ndns_servers; i++) {
            int w = snprintf(csv + len, sizeof(csv) - len, "%s%s", i ? "," : "",
                             sw->dns_servers[i]);
            if (w < 0 || (size_t)w >= sizeof(csv) - len)
                break;
            len += (size_t)w;
        }
        if ((st = ares_set_servers_ports_csv(d->ch, csv)) != ARES_SUCCESS) {
            log_msg(LOG_ERROR, "sinks: dns: servers \"%s\": %s", csv, ares_strerror(st));
            ares_destroy(d->ch);
            free(d);
            return -EINVAL;
        }
    }
    sw->dns = d;
    return 0;
}

static void sink_dnsq_free_rr(struct sink_dnsq *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free((void *)q->rr[i].text);
        free((void *)q->rr[i].data);
    }
    free(q->rr);
    q->rr = NULL;
    q->n = 0;
}

static void sink_dnsq_unhash(struct sink_dns *d, struct sink_dnsq *q)
{
    struct sink_dnsq **pp = &d->bucket[sink_dns_hash(q->type, q->name)];
    while (*pp != NULL && *pp != q)
        pp = &(*pp)->hnext;
    if (*pp == q)
        *pp = q->hnext;
}

static void sink_dnsq_evict(struct sink_dns *d, struct sink_dnsq *q)
{
    sink_dnsq_unhash(d, q);
    if (q->fprev != NULL)
        q->fprev->fnext = q->fnext;
    else
        d->fhead = q->fnext;
    if (q->fnext != NULL)
        q->fnext->fprev = q->fprev;
    else
        d->ftail = q->fprev;
    d->ncached--;
    sink_dnsq_free_rr(q);
    free(q);
}

void sink_dns_fini(struct sink_worker *sw)
{
    struct sink_dns *d = sw->dns;
    if (d == NULL)
        return;
    ares_destroy(d->ch); /* in-flight queries end with ARES_EDESTRUCTION */
    for (size_t i = 0; i < d->nsocks; i++)
        if (d->socks[i].armed)
            sink_poll_cancel(sw, d->socks[i].token);
    while (d->fhead != NULL)
        sink_dnsq_evict(d, d->fhead);
    free(d->socks);
    free(d);
    sw->dns = NULL;
}

void sink_dns_expire(struct sink_worker *sw, uint64_t now_ms)
{
    struct sink_dns *d = sw->dns;
    if (d->due_ms > now_ms)
        return;
    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    sink_dns_due(d);
}

uint64_t sink_dns_next_ms(const struct sink_worker *sw, uint64_t now_ms)
{
    (void)now_ms;
    return sw->dns->due_ms;
}

/* ---- answers ---- */

static uint16_t sink_get16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t sink_get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The name at p, expanded into out (no final dot); the octets it takes
 * at p in *used.  false: malformed. */
static bool sink_dns_name(const unsigned char *p, const unsigned char *abuf, int alen, char *out,
                          size_t cap, long *used)
{
    char *s = NULL;
    if (ares_expand_name(p, abuf, alen, &s, used) != ARES_SUCCESS)
        return false;
    snprintf(out, cap, "%s", s);
    ares_free_string(s);
    size_t n = strlen(out);
    if (n > 0 && out[n - 1] == '.')
        out[n - 1] = '\0';
    return true;
}

/* One record's text and data, malloc'd into rr.  false: malformed or
 * out of memory. */
static bool sink_dns_rdata(struct sink_dns_rr *rr, const unsigned char *rd, size_t rdlen,
                           const unsigned char *abuf, int alen)
{
    char buf[1024];
    unsigned char *data = NULL;
    size_t len = 0;
    long used;
    switch (rr->type) {
    case SINK_DNS_A:
    case SINK_DNS_AAAA: {
        size_t want = rr->type == SINK_DNS_A ? 4 : 16;
        if (rdlen != want ||
            inet_ntop(rr->type == SINK_DNS_A ? AF_INET : AF_INET6, rd, buf, sizeof(buf)) == NULL)
            return false;
        if ((data = malloc(want)) == NULL)
            return false;
        memcpy(data, rd, want);
        len = want;
        break;
    }
    case SINK_DNS_MX:
    case SINK_DNS_PTR: {
        size_t off = rr->type == SINK_DNS_MX ? 2 : 0;
        if (rdlen < off + 1)
            return false;
        if (off)
            rr->pref = sink_get16(rd);
        if (!sink_dns_name(rd + off, abuf, alen, buf, sizeof(buf), &used))
            return false;
        len = strlen(buf);
        if ((data = malloc(len + 1)) == NULL)
            return false;
        memcpy(data, buf, len + 1);
        break;
    }
    case SINK_DNS_TXT: {
        if ((data = malloc(rdlen + 1)) == NULL)
            return false;
        for (size_t i = 0; i < rdlen;) {
            size_t k = rd[i++];
            if (i + k > rdlen) {
                free(data);
                return false;
            }
            memcpy(data + len, rd + i, k);
            len += k;
            i += k;
        }
        data[len] = '\0';
        rr->text = strdup((char *)data);
        rr->data = data;
        rr->len = len;
        return rr->text != NULL;
    }
    case SINK_DNS_TLSA: {
        if (rdlen < 3 || (rdlen - 3) * 2 + 1 > sizeof(buf))
            return false;
        rr->pref = (uint16_t)(rd[0] << 8 | rd[1]);
        rr->mtype = rd[2];
        len = rdlen - 3;
        if ((data = malloc(len ? len : 1)) == NULL)
            return false;
        memcpy(data, rd + 3, len);
        for (size_t i = 0; i < len; i++)
            snprintf(buf + 2 * i, 3, "%02x", data[i]);
        buf[2 * len] = '\0';
        break;
    }
    default:
        return false;
    }
    rr->text = strdup(buf);
    rr->data = data;
    rr->len = len;
    if (rr->text == NULL) {
        free(data);
        return false;
    }
    return true;
}

/* Fills q (status, records, expiry) from a c-ares status and answer. */
static void sink_dns_parse(struct sink_dnsq *q, int status, const unsigned char *abuf, int alen)
{
    uint32_t ttl = SINK_DNS_TTL_MAX, neg = SINK_DNS_NEG_DEFAULT;
    q->status = status == ARES_SUCCESS    ? SINK_DNS_OK
                : status == ARES_ENOTFOUND ? SINK_DNS_NXDOMAIN
                : status == ARES_ENODATA   ? SINK_DNS_NODATA
                                           : SINK_DNS_TEMPFAIL;
    if (q->status == SINK_DNS_TEMPFAIL || abuf == NULL || alen < 12) {
        if (q->status != SINK_DNS_TEMPFAIL)
            q->expires_ms = clock_mono_ms() + neg * 1000u;
        return;
    }
    const unsigned char *end = abuf + alen;
    unsigned qd = sink_get16(abuf + 4), an = sink_get16(abuf + 6), ns = sink_get16(abuf + 8);
    const unsigned char *p = abuf + 12;
    char name[1024];
    long used;
    for (unsigned i = 0; i < qd; i++) {
        if (!sink_dns_name(p, abuf, alen, name, sizeof(name), &used) || p + used + 4 > end)
            goto bad;
        p += used + 4;
    }
    size_t cap = an;
    if (cap > 0 && (q->rr = calloc(cap, sizeof(*q->rr))) == NULL)
        goto bad;
    for (unsigned i = 0; i < an + ns; i++) {
        if (!sink_dns_name(p, abuf, alen, name, sizeof(name), &used) || p + used + 10 > end)
            goto bad;
        p += used;
        uint16_t type = sink_get16(p), cls = sink_get16(p + 2);
        uint32_t rttl = sink_get32(p + 4);
        size_t rdlen = sink_get16(p + 8);
        p += 10;
        if (p + rdlen > end)
            goto bad;
        if (i >= an) { /* authority: the SOA of a negative answer */
            if (type == 6 && cls == 1) {
                long u1, u2;
                char s[1024];
                if (sink_dns_name(p, abuf, alen, s, sizeof(s), &u1) &&
                    sink_dns_name(p + u1, abuf, alen, s, sizeof(s), &u2) &&
                    (size_t)(u1 + u2 + 20) <= rdlen) {
                    uint32_t min = sink_get32(p + u1 + u2 + 16);
                    neg = min < rttl ? min : rttl;
                }
            }
        } else if (type == q->type && cls == 1 && q->n < cap) {
            struct sink_dns_rr *rr = &q->rr[q->n];
            rr->type = type;
            if (!sink_dns_rdata(rr, p, rdlen, abuf, alen))
                goto bad;
            q->n++;
            if (rttl < ttl)
                ttl = rttl;
        }
        p += rdlen;
    }
    if (q->status == SINK_DNS_OK && q->n == 0)
        q->status = SINK_DNS_NODATA; /* e.g. only a CNAME came back */
    if (q->status != SINK_DNS_OK)
        ttl = neg < SINK_DNS_TTL_MAX ? neg : SINK_DNS_TTL_MAX;
    q->expires_ms = clock_mono_ms() + (uint64_t)ttl * 1000u;
    for (size_t i = 0; i < q->n; i++)
        q->rr[i].ttl = ttl;
    return;
bad:
    sink_dnsq_free_rr(q);
    q->status = SINK_DNS_TEMPFAIL;
}

static void sink_dns_deliver(struct sink_dnsq *q, struct sink_svc *s, const char *error)
{
    struct sink_dns_answer a = {
        .status = q->status,
        .name = q->name,
        .type = (enum sink_dns_type)q->type,
        .n = q->status == SINK_DNS_OK ? q->n : 0,
        .rr = q->status == SINK_DNS_OK ? q->rr : NULL,
        .error = error,
    };
    sink_svc_dns_done(s, &a);
}

/* Whether q goes into the cache (OK, NXDOMAIN, NODATA with a TTL). */
static bool sink_dns_cacheable(const struct sink_dnsq *q)
{
    return q->status != SINK_DNS_TEMPFAIL && q->expires_ms > clock_mono_ms();
}

static void sink_dns_cache_put(struct sink_dns *d, struct sink_dnsq *q)
{
    q->inflight = false;
    q->fprev = d->ftail;
    q->fnext = NULL;
    if (d->ftail != NULL)
        d->ftail->fnext = q;
    else
        d->fhead = q;
    d->ftail = q;
    if (++d->ncached > SINK_DNS_CACHE_MAX)
        sink_dnsq_evict(d, d->fhead); /* the oldest: never q, the newest */
}

static const char *sink_ares_error(int status)
{
    switch (status) {
    case ARES_SUCCESS:
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
        return NULL;
    case ARES_ETIMEOUT:
        return "timeout";
    case ARES_ESERVFAIL:
        return "SERVFAIL";
    case ARES_EREFUSED:
        return "REFUSED";
    case ARES_ECONNREFUSED:
        return "connection refused";
    default:
        return ares_strerror(status);
    }
}

static void sink_dns_answered(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct sink_dnsq *q = arg;
    struct sink_dns *d = q->d;
    struct sink_svc *s = q->waiters;
    q->waiters = NULL;
    const char *error;
    bool keep;
    if (status == ARES_EDESTRUCTION) { /* sink_dns_fini */
        q->status = SINK_DNS_CANCELLED;
        error = "shutting down";
        keep = false;
    } else {
        sink_dns_parse(q, status, abuf, alen);
        error = q->status != SINK_DNS_TEMPFAIL ? NULL
                : sink_ares_error(status)      ? sink_ares_error(status)
                                               : "malformed answer";
        keep = sink_dns_cacheable(q);
    }
    /* Settled before any callback runs: a callback that asks the same
     * again finds the answer cached, or starts a query of its own. */
    if (keep)
        sink_dns_cache_put(d, q);
    else
        sink_dnsq_unhash(d, q);
    while (s != NULL) {
        struct sink_svc *next = s->qnext;
        s->qnext = NULL;
        if (status == ARES_ETIMEOUT)
            sink_stats_dns_timeout(s->ctx->b->stats);
        sink_dns_deliver(q, s, error);
        s = next;
    }
    if (!keep) {
        sink_dnsq_free_rr(q);
        free(q);
    }
}

/* ---- lookups ---- */

void sink_dns_detach(struct sink_svc *svc)
{
    struct sink_dnsq *q = svc->q;
    if (q == NULL)
        return;
    struct sink_svc **pp = &q->waiters;
    while (*pp != NULL && *pp != svc)
        pp = &(*pp)->qnext;
    if (*pp == svc)
        *pp = svc->qnext;
    svc->q = NULL;
    svc->qnext = NULL;
    /* the query goes on: its answer is cached for the next asker */
}

int sink_dns_start(struct sink_worker *sw, struct sink_svc *svc, const char *name, int type)
{
    if (sw->dns == NULL) {
        int rc = sink_dns_open(sw);
        if (rc < 0)
            return rc;
    }
    struct sink_dns *d = sw->dns;
    char key[256];
    size_t n = strlen(name);
    if (n > 0 && name[n - 1] == '.')
        n--;
    if (n == 0 || n >= sizeof(key))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        key[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    key[n] = '\0';
    uint32_t h = sink_dns_hash(type, key);
    uint64_t now = clock_mono_ms();
    for (struct sink_dnsq *q = d->bucket[h]; q != NULL; q = q->hnext) {
        if (q->type != type || strcmp(q->name, key) != 0)
            continue;
        if (q->inflight) {
            svc->q = q;
            svc->qnext = q->waiters;
            q->waiters = svc;
            return 0;
        }
        if (q->expires_ms > now) {
            uint32_t left = (uint32_t)((q->expires_ms - now + 999) / 1000);
            for (size_t i = 0; i < q->n; i++)
                q->rr[i].ttl = left;
            sink_stats_dns_cached(svc->ctx->b->stats);
            sink_dns_deliver(q, svc, NULL);
            return 0;
        }
        sink_dnsq_evict(d, q); /* expired */
        break;
    }
    struct sink_dnsq *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -ENOMEM;
    q->d = d;
    q->type = type;
    memcpy(q->name, key, n + 1);
    q->inflight = true;
    q->hnext = d->bucket[h];
    d->bucket[h] = q;
    svc->q = q;
    q->waiters = svc;
    /* The callback may run inside ares_query (a name c-ares refuses):
     * then svc has had its answer already. */
    ares_query(d->ch, key, 1 /* C_IN */, type, sink_dns_answered, q);
    sink_dns_due(d);
    return 0;
}
