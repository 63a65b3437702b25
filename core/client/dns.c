/*
 * NAME
 *	dns - next-hop resolution through c-ares (see dns.h)
 * DESCRIPTION
 *	Every name is asked for with ares_query() as written (no search
 *	list, no hosts file): mail domains and MX exchanges are fully
 *	qualified.  A lookup keeps a count of its queries in flight, plus
 *	one while it is issuing them so that a query c-ares fails at once
 *	(its callback runs inside ares_query) cannot finish the lookup
 *	under our feet; the lookup finishes when the count drops to zero.
 */
#include "core/client/dns_int.h"
#include "core/base/log.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct dns {
    ares_channel ch;
    dns_sock_fn *sock_cb;
    void *sock_arg;
    struct dns_lookup *head; /* lookups in flight */
    size_t npending;
    bool closing;  /* dns_destroy is running: no new lookups */
    unsigned busy; /* inside c-ares (process or issue): destroying now is a bug */
    uint64_t rng;  /* splitmix64 state for the MX shuffle */
};

static pthread_once_t dns_lib_once = PTHREAD_ONCE_INIT;
static int dns_lib_status = ARES_SUCCESS;

static void dns_lib_init(void)
{
    dns_lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static uint64_t dns_rnd(void *arg)
{
    struct dns *d = arg;
    uint64_t z = (d->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = data;
    d->sock_cb(d->sock_arg, fd, readable != 0, writable != 0);
}

/* servers joined into the list ares_set_servers_ports_csv() takes; 0 or
 * -EINVAL with err filled. */
static int dns_servers_csv(const char *const *servers, size_t n, char *csv, size_t cap, char *err,
                           size_t errlen)
{
    size_t len = 0;
    csv[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *s = servers[i];
        if (s == NULL || s[0] == '\0' || strpbrk(s, ", \t") != NULL) {
            snprintf(err, errlen, "dns: bad server \"%s\"", s ? s : "(null)");
            return -EINVAL;
        }
        int w = snprintf(csv + len, cap - len, "%s%s", i ? "," : "", s);
        if (w < 0 || (size_t)w >= cap - len) {
            snprintf(err, errlen, "dns: server list too long");
            return -EINVAL;
        }
        len += (size_t)w;
    }
    return 0;
}

struct dns *dns_create(const char *const *servers, size_t nservers, unsigned timeout_ms,
                       unsigned tries, dns_sock_fn *sock_cb, void *sock_arg, char *err,
                       size_t errlen)
{
    if (sock_cb == NULL)
        log_panic("dns_create: NULL sock callback");
    if (nservers > 0 && servers == NULL)
        log_panic("dns_create: NULL server list with %zu entries", nservers);
    pthread_once(&dns_lib_once, dns_lib_init);
    if (dns_lib_status != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: c-ares: %s", ares_strerror(dns_lib_status));
        return NULL;
    }
    char csv[2048];
    if (nservers > 0 && dns_servers_csv(servers, nservers, csv, sizeof(csv), err, errlen) < 0)
        return NULL;
    struct dns *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, errlen, "dns: out of memory");
        return NULL;
    }
    d->sock_cb = sock_cb;
    d->sock_arg = sock_arg;
    if (getrandom(&d->rng, sizeof(d->rng), GRND_NONBLOCK) != (ssize_t)sizeof(d->rng))
        d->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)d;

    struct ares_options o;
    memset(&o, 0, sizeof(o));
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS;
    o.sock_state_cb = dns_sock_state;
    o.sock_state_cb_data = d;
    o.flags = ARES_FLAG_NOSEARCH;
    if (timeout_ms > 0) {
        o.timeout = (int)(timeout_ms > 3600000 ? 3600000 : timeout_ms);
        mask |= ARES_OPT_TIMEOUTMS;
    }
    if (tries > 0) {
        o.tries = (int)(tries > 100 ? 100 : tries);
        mask |= ARES_OPT_TRIES;
    }
    int st = ares_init_options(&d->ch, &o, mask);
    if (st != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: c-ares: %s", ares_strerror(st));
        free(d);
        return NULL;
    }
    if (nservers > 0 && (st = ares_set_servers_ports_csv(d->ch, csv)) != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: servers \"%s\": %s", csv, ares_strerror(st));
        ares_destroy(d->ch);
        free(d);
        return NULL;
    }
    return d;
}

static void lookup_finish(struct dns_lookup *l)
{
    struct dns *d = l->d;
    if (l->prev)
        l->prev->next = l->next;
    else
        d->head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    d->npending--;

    struct dns_result r;
    struct dns_addr *buf = NULL;
    if (d->closing) {
        memset(&r, 0, sizeof(r));
        r.status = DNS_TEMP;
        dns_fmt(r.error, sizeof(r.error), "%s: shutting down", l->name);
    } else {
        dns_result_build(l, &r, &buf);
    }
    l->cb(l->arg, &r);
    free(buf);
    free(l);
}

static void lookup_release(struct dns_lookup *l)
{
    if (--l->inflight == 0)
        lookup_finish(l);
}

static void lookup_decide(struct dns_lookup *l, enum dns_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lookup_decide(struct dns_lookup *l, enum dns_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->error, sizeof(l->error), fmt, ap); /* a long name may be cut */
    va_end(ap);
    l->status = st;
    l->decided = true;
}

int dns_addr_reply(struct dns_xchg *x, int family, const unsigned char *abuf, int alen)
{
    int status;
    if (family == AF_INET) {
        struct ares_addrttl t[DNS_MAX_ADDRS];
        int n = DNS_MAX_ADDRS;
        status = ares_parse_a_reply(abuf, alen, NULL, t, &n);
        if (status == ARES_SUCCESS && n <= 0)
            status = ARES_ENODATA;
        for (int i = 0; status == ARES_SUCCESS && i < n; i++)
            x->a4[x->n4++] = t[i].ipaddr;
    } else {
        struct ares_addr6ttl t[DNS_MAX_ADDRS];
        int n = DNS_MAX_ADDRS;
        status = ares_parse_aaaa_reply(abuf, alen, NULL, t, &n);
        if (status == ARES_SUCCESS && n <= 0)
            status = ARES_ENODATA;
        for (int i = 0; status == ARES_SUCCESS && i < n; i++)
            memcpy(&x->a6[x->n6++], &t[i].ip6addr, sizeof(x->a6[0]));
    }
    return status;
}

static void on_addr(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_query_ctx *q = arg;
    struct dns_lookup *l = q->l;
    struct dns_xchg *x = &l->x[q->xi];
    if (status == ARES_SUCCESS)
        status = dns_addr_reply(x, q->family, abuf, alen);
    if (q->family == AF_INET)
        x->st4 = status;
    else
        x->st6 = status;
    lookup_release(l);
}

/* A and AAAA for every exchange of l; the caller holds a reference. */
static void lookup_addresses(struct dns_lookup *l)
{
    for (unsigned i = 0; i < l->nx; i++) {
        struct dns_xchg *x = &l->x[i];
        x->st4 = x->st6 = ARES_ENODATA;
        x->q4 = (struct dns_query_ctx){.l = l, .xi = i, .family = AF_INET};
        x->q6 = (struct dns_query_ctx){.l = l, .xi = i, .family = AF_INET6};
        l->inflight += 2;
        ares_query(l->d->ch, x->host, ns_c_in, ns_t_a, on_addr, &x->q4);
        ares_query(l->d->ch, x->host, ns_c_in, ns_t_aaaa, on_addr, &x->q6);
    }
}

static void xchg_set(struct dns_xchg *x, const char *host, uint16_t pref)
{
    memset(x, 0, sizeof(*x));
    snprintf(x->host, sizeof(x->host), "%s", host);
    x->pref = pref;
}

/* The MX records of a reply into l's exchanges: null MX entries set
 * aside, the DNS_MX_COLLECT lowest preferences ordered, duplicates
 * dropped, the first DNS_MAX_EXCHANGES kept. */
static void lookup_take_mx(struct dns_lookup *l, const struct ares_mx_reply *mx)
{
    struct dns_mx *v = malloc(DNS_MX_COLLECT * sizeof(*v));
    if (v == NULL) {
        lookup_decide(l, DNS_TEMP, "%s: out of memory", l->name);
        return;
    }
    size_t n = 0, nnull = 0;
    for (; mx != NULL; mx = mx->next) {
        const char *h = mx->host ? mx->host : "";
        if (h[0] == '\0' || strcmp(h, ".") == 0) {
            nnull++;
            continue;
        }
        if (strlen(h) >= sizeof(v[0].host))
            continue;
        size_t at = n;
        if (n == DNS_MX_COLLECT) { /* replace the worst one if this is better */
            size_t worst = 0;
            for (size_t i = 1; i < n; i++)
                if (v[i].pref > v[worst].pref)
                    worst = i;
            if (v[worst].pref <= mx->priority)
                continue;
            at = worst;
        } else {
            n++;
        }
        snprintf(v[at].host, sizeof(v[at].host), "%s", h);
        v[at].pref = mx->priority;
    }
    if (n == 0) {
        if (nnull > 0)
            lookup_decide(l, DNS_PERM, "%s: null MX: the domain accepts no mail (RFC 7505)",
                          l->name);
        else
            lookup_decide(l, DNS_TEMP, "%s: MX reply without usable exchange", l->name);
        free(v);
        return;
    }
    dns_mx_order(v, n, l->d ? dns_rnd : NULL, l->d); /* no resolver: a test, no shuffle */
    l->nx = 0;
    for (size_t i = 0; i < n && l->nx < DNS_MAX_EXCHANGES; i++) {
        bool dup = false;
        for (unsigned j = 0; j < l->nx && !dup; j++)
            dup = strcasecmp(l->x[j].host, v[i].host) == 0;
        if (!dup)
            xchg_set(&l->x[l->nx++], v[i].host, v[i].pref);
    }
    free(v);
}

void dns_mx_reply(struct dns_lookup *l, int status, const unsigned char *abuf, int alen)
{
    struct ares_mx_reply *mx = NULL;
    if (status == ARES_SUCCESS) {
        int ps = ares_parse_mx_reply(abuf, alen, &mx);
        if (ps == ARES_ENODATA || (ps == ARES_SUCCESS && mx == NULL))
            status = ARES_ENODATA; /* only CNAMEs or nothing: no MX */
        else if (ps != ARES_SUCCESS)
            status = ps;
    }
    if (status == ARES_SUCCESS) {
        lookup_take_mx(l, mx);
    } else if (status == ARES_ENODATA) {
        l->implicit = true;
        l->nx = 1;
        xchg_set(&l->x[0], l->name, 0);
    } else if (status == ARES_ENOTFOUND) {
        lookup_decide(l, DNS_PERM, "%s: domain not found (NXDOMAIN)", l->name);
    } else if (status == ARES_EBADNAME) {
        lookup_decide(l, DNS_PERM, "%s: bad domain name", l->name);
    } else {
        lookup_decide(l, DNS_TEMP, "%s: MX lookup: %s", l->name, dns_ares_text(status));
    }
    if (mx != NULL)
        ares_free_data(mx);
}

static void on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_lookup *l = arg;
    if (l->d->closing) {
        lookup_release(l);
        return;
    }
    dns_mx_reply(l, status, abuf, alen);
    if (!l->decided)
        lookup_addresses(l);
    lookup_release(l);
}

static void dns_check_args(struct dns *d, const char *name, dns_done_fn *cb, const char *fn)
{
    if (d == NULL || name == NULL || cb == NULL)
        log_panic("%s: NULL %s", fn, d == NULL ? "dns" : name == NULL ? "name" : "callback");
}

static struct dns_lookup *lookup_new(struct dns *d, enum dns_kind kind, const char *name,
                                     uint16_t port, dns_done_fn *cb, void *arg)
{
    struct dns_lookup *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->d = d;
    l->kind = kind;
    snprintf(l->name, sizeof(l->name), "%s", name);
    size_t len = strlen(l->name);
    if (len > 1 && l->name[len - 1] == '.')
        l->name[len - 1] = '\0';
    l->port = port;
    l->cb = cb;
    l->arg = arg;
    l->inflight = 1; /* the issuing reference, dropped by the caller */
    l->next = d->head;
    if (d->head)
        d->head->prev = l;
    d->head = l;
    d->npending++;
    return l;
}

/* Literal answers: the callback runs now, with nothing pending. */
static void dns_answer_literal(const struct dns_addr *a, dns_done_fn *cb, void *arg)
{
    struct dns_result r;
    memset(&r, 0, sizeof(r));
    r.status = DNS_OK;
    r.naddr = 1;
    r.addrs = a;
    cb(arg, &r);
}

int dns_resolve_mx(struct dns *d, const char *domain, uint16_t port, dns_done_fn *cb, void *arg)
{
    dns_check_args(d, domain, cb, "dns_resolve_mx");
    if (d->closing)
        return -ESHUTDOWN;
    if (port == 0)
        return -EINVAL;
    struct dns_addr a;
    if (domain[0] == '[') {
        if (!dns_literal(domain, port, &a))
            return -EINVAL;
        dns_answer_literal(&a, cb, arg);
        return 0;
    }
    if (!dns_name_ok(domain))
        return -EINVAL;
    struct dns_lookup *l = lookup_new(d, DNS_KIND_MX, domain, port, cb, arg);
    if (l == NULL)
        return -ENOMEM;
    d->busy++;
    l->inflight++;
    ares_query(d->ch, l->name, ns_c_in, ns_t_mx, on_mx, l);
    lookup_release(l);
    d->busy--;
    return 0;
}

int dns_resolve_host(struct dns *d, const char *host, uint16_t port, dns_done_fn *cb, void *arg)
{
    dns_check_args(d, host, cb, "dns_resolve_host");
    if (d->closing)
        return -ESHUTDOWN;
    if (port == 0)
        return -EINVAL;
    struct dns_addr a;
    if (dns_literal(host, port, &a)) {
        dns_answer_literal(&a, cb, arg);
        return 0;
    }
    if (host[0] == '[' || !dns_name_ok(host))
        return -EINVAL;
    struct dns_lookup *l = lookup_new(d, DNS_KIND_HOST, host, port, cb, arg);
    if (l == NULL)
        return -ENOMEM;
    d->busy++;
    l->nx = 1;
    xchg_set(&l->x[0], l->name, 0);
    lookup_addresses(l);
    lookup_release(l);
    d->busy--;
    return 0;
}

void dns_process(struct dns *d, int rfd, int wfd)
{
    if (d == NULL)
        log_panic("dns_process: NULL dns");
    d->busy++;
    ares_process_fd(d->ch, rfd < 0 ? ARES_SOCKET_BAD : rfd, wfd < 0 ? ARES_SOCKET_BAD : wfd);
    d->busy--;
}

uint64_t dns_timeout_ms(struct dns *d, uint64_t max)
{
    if (d == NULL)
        log_panic("dns_timeout_ms: NULL dns");
    if (d->npending == 0)
        return max;
    const uint64_t day = 86400000;
    uint64_t cap = max < day ? max : day;
    struct timeval maxtv = {.tv_sec = (time_t)(cap / 1000),
                            .tv_usec = (suseconds_t)(cap % 1000) * 1000};
    struct timeval tv;
    struct timeval *p = ares_timeout(d->ch, &maxtv, &tv);
    /* round up: waking before the deadline would only spin */
    uint64_t ms = (uint64_t)p->tv_sec * 1000 + ((uint64_t)p->tv_usec + 999) / 1000;
    return ms < max ? ms : max;
}

size_t dns_pending(const struct dns *d)
{
    if (d == NULL)
        log_panic("dns_pending: NULL dns");
    return d->npending;
}

void dns_destroy(struct dns *d)
{
    if (d == NULL)
        return;
    if (d->busy)
        log_panic("dns_destroy: called from inside a dns callback");
    d->closing = true;
    d->busy++; /* a callback destroying again panics */
    /* Ends every query with ARES_EDESTRUCTION: each lookup finishes with
     * "shutting down" as its last query is called back. */
    ares_destroy(d->ch);
    if (d->head != NULL)
        log_panic("dns_destroy: %zu lookups survived ares_destroy", d->npending);
    free(d);
}
