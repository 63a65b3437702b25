/*
 * NAME
 *	qmgr_dest - destinations: job queues, connection limits, resolution, backoff
 * DESCRIPTION
 *	A destination is where a route leads: "smtp:HOST:PORT" (a fixed next
 *	hop), "mx:DOMAIN:PORT" (one per recipient domain), or "maildir".  It
 *	holds the jobs waiting for a connection, its idle connections, the
 *	addresses last resolved (kept QMGR_DNS_TTL_MS), and its failure count:
 *	destination_failure_limit failed connections in a row back the whole
 *	destination off (retry min doubling up to retry max), and every job
 *	waiting or arriving meanwhile is deferred with the reason, so one dead
 *	next hop costs one timeout, not one per message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/queue/qmgr_int.h"

static uint64_t qdest_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void qdest_key(const struct route *rt, const char *domain, char *key, size_t len)
{
    char lower[256];
    size_t i = 0;
    for (; domain[i] && i < sizeof(lower) - 1; i++)
        lower[i] = (char)((domain[i] >= 'A' && domain[i] <= 'Z') ? domain[i] + 32 : domain[i]);
    lower[i] = '\0';
    switch (rt->kind) {
    case ROUTE_SMTP:
        snprintf(key, len, "smtp:%s:%u:%d", rt->host, rt->port, (int)rt->tls);
        break;
    case ROUTE_MX:
        snprintf(key, len, "mx:%s:%u:%d", lower, rt->port, (int)rt->tls);
        break;
    default:
        snprintf(key, len, "maildir");
        break;
    }
}

struct qdest *qmgr_dest_get(struct qmgr *q, const struct route *rt, const char *domain)
{
    char key[320];
    qdest_key(rt, domain, key, sizeof(key));
    if (q->dcap == 0 || q->ndest * 2 >= q->dcap) {
        size_t nc = q->dcap ? q->dcap * 2 : 64;
        struct qdest **t = calloc(nc, sizeof(*t));
        if (t == NULL)
            return NULL;
        for (size_t i = 0; i < q->dcap; i++) {
            struct qdest *d = q->dtab[i], *n;
            for (; d; d = n) {
                n = d->hnext;
                size_t b = qdest_hash(d->key) & (nc - 1);
                d->hnext = t[b];
                t[b] = d;
            }
        }
        free(q->dtab);
        q->dtab = t;
        q->dcap = nc;
    }
    size_t b = qdest_hash(key) & (q->dcap - 1);
    for (struct qdest *d = q->dtab[b]; d; d = d->hnext)
        if (strcmp(d->key, key) == 0)
            return d;
    struct qdest *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    snprintf(d->key, sizeof(d->key), "%s", key);
    d->rt = *rt;
    snprintf(d->domain, sizeof(d->domain), "%s", domain);
    d->hnext = q->dtab[b];
    q->dtab[b] = d;
    q->ndest++;
    return d;
}

void qmgr_job_free(struct qjob *j)
{
    if (j == NULL)
        return;
    free(j->ri);
    free(j->addrs);
    free(j->sent);
    free(j);
}

/* Every recipient of j not yet answered gets a temporary failure. */
void qmgr_job_tempfail_all(struct qmgr *q, struct qjob *j, const char *status, const char *why,
                           const char *host)
{
    for (size_t k = 0; k < j->n; k++)
        if (j->m->rtry[j->ri[k]] == 0)
            qmgr_rcpt_result(q, j, k, 451, status, why, host);
    qmgr_job_done(q, j);
}

static void qdest_ready(struct qmgr *q, struct qdest *d)
{
    if (!d->ready && d->head) {
        d->ready = true;
        d->rnext = q->ready;
        q->ready = d;
    }
}

static int64_t qdest_unix_until(const struct qdest *d)
{
    return clock_wall_ms() + (int64_t)(d->backoff_until - clock_mono_ms());
}

void qmgr_dest_push(struct qmgr *q, struct qdest *d, struct qjob *j)
{
    if (d->backoff_until > clock_mono_ms()) {
        if (j->m->not_before < qdest_unix_until(d))
            j->m->not_before = qdest_unix_until(d);
        qmgr_job_tempfail_all(q, j, "4.4.1", d->backoff_reason, NULL);
        return;
    }
    j->next = NULL;
    if (d->tail)
        d->tail->next = j;
    else
        d->head = j;
    d->tail = j;
    d->njobs++;
    qdest_ready(q, d);
}

static struct qjob *qdest_pop(struct qdest *d)
{
    struct qjob *j = d->head;
    if (j) {
        d->head = j->next;
        if (d->head == NULL)
            d->tail = NULL;
        d->njobs--;
        j->next = NULL;
    }
    return j;
}

/* A connection to d failed before it could deliver anything (every
 * address tried). */
void qmgr_dest_conn_failed(struct qmgr *q, struct qdest *d, const char *reason)
{
    d->fails++;
    if (d->fails < q->cfg->destination_failure_limit && d->active > 0)
        return;
    if (d->fails < q->cfg->destination_failure_limit && d->head == NULL)
        return;
    /* back the whole destination off: its waiting jobs are deferred */
    const struct route_retry *rr = route_retry(q->routes);
    d->backoffs++;
    uint64_t wait = route_backoff_ms(rr, d->backoffs);
    d->backoff_until = clock_mono_ms() + wait;
    snprintf(d->backoff_reason, sizeof(d->backoff_reason), "%s", reason);
    log_msg(LOG_WARN, "qmgr: destination %s: %u failed connections: backed off for %llu s: %s",
            d->key, d->fails, (unsigned long long)(wait / 1000), reason);
    d->fails = 0;
    struct qjob *j;
    while ((j = qdest_pop(d)) != NULL) {
        if (j->m->not_before < qdest_unix_until(d))
            j->m->not_before = qdest_unix_until(d);
        qmgr_job_tempfail_all(q, j, "4.4.1", reason, NULL);
    }
}

void qmgr_dest_conn_ok(struct qmgr *q, struct qdest *d)
{
    d->fails = 0;
    d->backoffs = 0;
    d->backoff_until = 0;
}

static void qdest_resolved(void *arg, const struct dns_result *r);

struct qresolve {
    struct qmgr *q;
    struct qdest *d;
};

static void qdest_resolve(struct qmgr *q, struct qdest *d)
{
    struct qresolve *x = malloc(sizeof(*x));
    if (x == NULL)
        return;
    x->q = q;
    x->d = d;
    d->resolving = true;
    int rc = d->rt.kind == ROUTE_MX
                 ? dns_resolve_mx(q->dns, d->domain, d->rt.port, qdest_resolved, x)
                 : dns_resolve_host(q->dns, d->rt.host, d->rt.port, qdest_resolved, x);
    if (rc < 0) {
        free(x);
        d->resolving = false;
        d->dns_status = DNS_TEMP;
        snprintf(d->dns_error, sizeof(d->dns_error), "DNS lookup failed to start: %s",
                 strerror(-rc));
        d->addrs_expire = clock_mono_ms() + 1000;
    }
}

static void qdest_resolved(void *arg, const struct dns_result *r)
{
    struct qresolve *x = arg;
    struct qmgr *q = x->q;
    struct qdest *d = x->d;
    free(x);
    d->resolving = false;
    free(d->addrs);
    d->addrs = NULL;
    d->naddr = 0;
    d->dns_status = r->status;
    snprintf(d->dns_error, sizeof(d->dns_error), "%s", r->error);
    if (r->status == DNS_OK && r->naddr > 0) {
        d->addrs = malloc(r->naddr * sizeof(*d->addrs));
        if (d->addrs) {
            memcpy(d->addrs, r->addrs, r->naddr * sizeof(*d->addrs));
            d->naddr = r->naddr;
        }
        d->addrs_expire = clock_mono_ms() + QMGR_DNS_TTL_MS;
    } else {
        if (r->status == DNS_OK) {
            d->dns_status = DNS_TEMP;
            snprintf(d->dns_error, sizeof(d->dns_error), "%.200s: no address found", d->domain);
        }
        /* failures are not cached long: the next attempt asks again */
        d->addrs_expire = clock_mono_ms() + 1000;
    }
    qdest_ready(q, d);
}

/* Jobs of d meet connections: idle ones first, then new ones within the
 * limits.  What cannot start now (resolving, limits) waits for a wake. */
static void qdest_run_one(struct qmgr *q, struct qdest *d)
{
    while (d->head && d->idle) {
        struct qconn *c = d->idle;
        d->idle = c->inext;
        c->inext = NULL;
        qmgr_conn_give(c, qdest_pop(d));
    }
    if (d->head == NULL)
        return;
    uint64_t now = clock_mono_ms();
    if (d->resolving)
        return;
    if (d->addrs_expire <= now || (d->naddr == 0 && d->dns_status == DNS_OK)) {
        qdest_resolve(q, d);
        if (d->resolving)
            return;
    }
    if (d->naddr == 0) {
        /* resolution failed: every waiting job gets its verdict */
        bool perm = d->dns_status == DNS_PERM;
        struct qjob *j;
        while ((j = qdest_pop(d)) != NULL) {
            for (size_t k = 0; k < j->n; k++)
                if (j->m->rtry[j->ri[k]] == 0)
                    qmgr_rcpt_result(q, j, k, perm ? 550 : 451, perm ? "5.1.2" : "4.4.3",
                                     d->dns_error, NULL);
            qmgr_job_done(q, j);
        }
        return;
    }
    unsigned waiting = (unsigned)d->njobs;
    while (d->head && waiting > 0 && d->active < q->cfg->delivery_concurrency &&
           q->nconns < q->cfg->delivery_connections) {
        struct qconn *c = qmgr_conn_open(q, d);
        if (c == NULL)
            break;
        qmgr_conn_give(c, qdest_pop(d));
        waiting--;
    }
    /* held back by the global limit, not its own: any connection that goes
     * away must give it another look (qmgr_dest_wake) */
    if (d->head && d->active < q->cfg->delivery_concurrency &&
        q->nconns >= q->cfg->delivery_connections) {
        q->conn_starved = true;
        qmgr_conn_retire_idle(q, d); /* its close wakes the waiting destinations */
    }
}

void qmgr_dest_run(struct qmgr *q)
{
    struct qdest *list = q->ready;
    q->ready = NULL;
    while (list) {
        struct qdest *d = list;
        list = d->rnext;
        d->ready = false;
        d->rnext = NULL;
        qdest_run_one(q, d);
        /* still waiting for a free connection: a connection that becomes
         * idle or closes marks it ready again */
    }
}

/* A connection of d is free again or gone: d may have work for it. */
void qmgr_dest_wake(struct qmgr *q, struct qdest *d)
{
    qdest_ready(q, d);
    if (q->conn_starved && q->nconns < q->cfg->delivery_connections) {
        /* a connection slot is free: every destination with waiting jobs
         * gets a look at the next qmgr_dest_run() */
        q->conn_starved = false;
        for (size_t i = 0; i < q->dcap; i++)
            for (struct qdest *x = q->dtab[i]; x; x = x->hnext)
                qdest_ready(q, x);
    }
}

void qmgr_dest_destroy_all(struct qmgr *q)
{
    for (size_t i = 0; i < q->dcap; i++) {
        struct qdest *d = q->dtab[i], *n;
        for (; d; d = n) {
            n = d->hnext;
            struct qjob *j;
            while ((j = qdest_pop(d)) != NULL)
                qmgr_job_free(j);
            free(d->addrs);
            free(d);
        }
        q->dtab[i] = NULL;
    }
    q->ndest = 0;
    q->ready = NULL;
}
