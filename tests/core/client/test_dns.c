/*
 * Unit tests for core/client/dns.h: MX ordering, literals, bad arguments, and
 * the driving contract (sock callback, timeouts, destroy) against a closed
 * loopback port.  Lookups against a real server are in
 * tests/integration/test_dns.py (dnsmasq).
 */
#include <criterion/criterion.h>

#include "core/client/dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- dns_mx_order ---------------------------------------------------- */

static struct dns_mx mx(const char *h, uint16_t pref)
{
    struct dns_mx m;
    memset(&m, 0, sizeof(m));
    strcpy(m.host, h);
    m.pref = pref;
    return m;
}

static uint64_t fixed_rnd(void *arg)
{
    return *(uint64_t *)arg;
}

static uint64_t xorshift(void *arg)
{
    uint64_t *s = arg;
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

Test(dns_mx_order, sorts_by_preference_stable_without_rnd)
{
    struct dns_mx v[] = {mx("c", 30),  mx("a1", 10), mx("b", 20),
                         mx("a2", 10), mx("z", 0),   mx("a3", 10)};
    dns_mx_order(v, 6, NULL, NULL);
    const char *want[] = {"z", "a1", "a2", "a3", "b", "c"};
    for (int i = 0; i < 6; i++)
        cr_assert_str_eq(v[i].host, want[i], "position %d", i);
    dns_mx_order(NULL, 0, NULL, NULL); /* nothing to do */
}

Test(dns_mx_order, deterministic_with_a_fixed_source)
{
    struct dns_mx a[] = {mx("x", 5), mx("p", 10), mx("q", 10), mx("r", 10), mx("s", 10)};
    struct dns_mx b[5];
    memcpy(b, a, sizeof(a));
    uint64_t k = 12345;
    dns_mx_order(a, 5, fixed_rnd, &k);
    dns_mx_order(b, 5, fixed_rnd, &k);
    for (int i = 0; i < 5; i++)
        cr_assert_str_eq(a[i].host, b[i].host);
    cr_assert_str_eq(a[0].host, "x");
}

/* Index 0..5 of the permutation of {p,q,r} in v[1..3]. */
static int perm_index(const struct dns_mx *v)
{
    static const char *const perms[6] = {"pqr", "prq", "qpr", "qrp", "rpq", "rqp"};
    char s[4] = {v[0].host[0], v[1].host[0], v[2].host[0], 0};
    for (int i = 0; i < 6; i++)
        if (strcmp(s, perms[i]) == 0)
            return i;
    return -1;
}

Test(dns_mx_order, every_permutation_of_equal_preferences_reachable)
{
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    int seen[6] = {0};
    for (int t = 0; t < 1200; t++) {
        struct dns_mx v[] = {mx("s", 20), mx("p", 10), mx("low", 1), mx("q", 10), mx("r", 10)};
        dns_mx_order(v, 5, xorshift, &seed);
        cr_assert_str_eq(v[0].host, "low");
        cr_assert_str_eq(v[4].host, "s");
        for (int i = 1; i < 4; i++)
            cr_assert_eq(v[i].pref, 10);
        int p = perm_index(&v[1]);
        cr_assert_geq(p, 0, "lost or duplicated an exchange");
        seen[p]++;
    }
    /* 200 expected each; a biased shuffle would starve some */
    for (int i = 0; i < 6; i++)
        cr_assert(seen[i] > 120 && seen[i] < 280, "permutation %d seen %d times", i, seen[i]);
}

Test(dns_mx_order, null_vector_with_entries_panics, .signal = SIGABRT)
{
    dns_mx_order(NULL, 2, NULL, NULL);
}

/* ---- a dns on a closed loopback port -------------------------------- */

#define MAX_FDS 8

struct watch {
    struct pollfd fds[MAX_FDS];
    int nfds;
    int calls; /* sock callback invocations */
    int stops; /* ... with both interests false */
};

static void watch_sock(void *arg, int fd, bool r, bool w)
{
    struct watch *ws = arg;
    ws->calls++;
    int i = 0;
    while (i < ws->nfds && ws->fds[i].fd != fd)
        i++;
    if (!r && !w) {
        ws->stops++;
        if (i < ws->nfds)
            ws->fds[i] = ws->fds[--ws->nfds];
        return;
    }
    cr_assert_lt(i, MAX_FDS);
    if (i == ws->nfds)
        ws->nfds++;
    ws->fds[i].fd = fd;
    ws->fds[i].events = (short)((r ? POLLIN : 0) | (w ? POLLOUT : 0));
}

struct got {
    int calls;
    enum dns_status status;
    char error[256];
    size_t naddr;
    struct dns_addr addr[4];
    struct dns *d; /* when set: try a lookup from inside the callback */
    int nested_rc;
};

static void got_cb(void *arg, const struct dns_result *r)
{
    struct got *g = arg;
    g->calls++;
    g->status = r->status;
    strcpy(g->error, r->error);
    g->naddr = r->naddr;
    for (size_t i = 0; i < r->naddr && i < 4; i++)
        g->addr[i] = r->addrs[i];
    static struct got nested;
    if (g->d)
        g->nested_rc = dns_resolve_host(g->d, "again.invalid", 25, got_cb, &nested);
}

static struct dns *closed_dns(struct watch *ws)
{
    /* a loopback UDP port that was free a moment ago: nothing answers */
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    cr_assert_eq(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(getsockname(s, (struct sockaddr *)&sin, &len), 0);
    close(s);
    static char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%u", ntohs(sin.sin_port));
    const char *servers[] = {server};
    char err[256] = "";
    memset(ws, 0, sizeof(*ws));
    struct dns *d = dns_create(servers, 1, 200, 1, watch_sock, ws, err, sizeof(err));
    cr_assert_not_null(d, "%s", err);
    return d;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs d until nothing is pending or limit_ms passes. */
static void drive(struct dns *d, struct watch *ws, uint64_t limit_ms)
{
    uint64_t end = now_ms() + limit_ms;
    while (dns_pending(d) > 0 && now_ms() < end) {
        struct pollfd fds[MAX_FDS];
        int n = ws->nfds;
        memcpy(fds, ws->fds, sizeof(fds));
        int k = poll(fds, (nfds_t)n, (int)dns_timeout_ms(d, 100));
        if (k <= 0) {
            dns_process(d, -1, -1);
            continue;
        }
        for (int i = 0; i < n; i++)
            if (fds[i].revents)
                dns_process(d, fds[i].revents & (POLLIN | POLLERR) ? fds[i].fd : -1,
                            fds[i].revents & POLLOUT ? fds[i].fd : -1);
    }
}

Test(dns, literals_resolve_at_once)
{
    struct watch ws;
    struct dns *d = closed_dns(&ws);
    struct got g = {0};
    cr_assert_eq(dns_resolve_host(d, "192.0.2.7", 2525, got_cb, &g), 0);
    cr_assert_eq(g.calls, 1, "the callback ran inside the call");
    cr_assert_eq(g.status, DNS_OK);
    cr_assert_eq(g.naddr, 1);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&g.addr[0].ss;
    cr_assert_eq(sin->sin_family, AF_INET);
    cr_assert_eq(ntohs(sin->sin_port), 2525);
    cr_assert_eq(sin->sin_addr.s_addr, htonl(0xc0000207));
    cr_assert_eq(g.addr[0].len, sizeof(struct sockaddr_in));
    cr_assert_str_eq(g.addr[0].host, "192.0.2.7");
    cr_assert_eq(g.addr[0].pref, 0);

    const char *v6[] = {"::1", "[::1]", "2001:db8::25"};
    for (int i = 0; i < 3; i++) {
        memset(&g, 0, sizeof(g));
        cr_assert_eq(dns_resolve_host(d, v6[i], 25, got_cb, &g), 0, "%s", v6[i]);
        cr_assert_eq(g.calls, 1);
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&g.addr[0].ss;
        cr_assert_eq(s6->sin6_family, AF_INET6);
        cr_assert_eq(ntohs(s6->sin6_port), 25);
        cr_assert_eq(g.addr[0].len, sizeof(struct sockaddr_in6));
    }
    /* domain literals for MX */
    memset(&g, 0, sizeof(g));
    cr_assert_eq(dns_resolve_mx(d, "[IPv6:::1]", 25, got_cb, &g), 0);
    cr_assert_eq(g.calls, 1);
    cr_assert_eq(g.addr[0].ss.ss_family, AF_INET6);
    memset(&g, 0, sizeof(g));
    cr_assert_eq(dns_resolve_mx(d, "[127.0.0.1]", 587, got_cb, &g), 0);
    cr_assert_eq(g.calls, 1);
    cr_assert_eq(g.addr[0].ss.ss_family, AF_INET);
    cr_assert_eq(dns_pending(d), 0);
    cr_assert_eq(ws.calls, 0, "no socket was opened for literals");
    dns_destroy(d);
}

Test(dns, bad_arguments)
{
    struct watch ws;
    struct dns *d = closed_dns(&ws);
    struct got g = {0};
    char big[300];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char longlabel[80];
    memset(longlabel, 'b', 70);
    strcpy(longlabel + 70, ".test");
    const char *bad[] = {
        "",  ".",       "a..b",     ".a",          "sp ace.test",   "tab\t.test", "comma,x.test",
        big, longlabel, "[1.2.3.4", "[not-an-ip]", "[IPv6:1.2.3.4]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(dns_resolve_mx(d, bad[i], 25, got_cb, &g), -EINVAL, "mx \"%s\"", bad[i]);
        cr_assert_eq(dns_resolve_host(d, bad[i], 25, got_cb, &g), -EINVAL, "host \"%s\"", bad[i]);
    }
    cr_assert_eq(dns_resolve_mx(d, "ok.test", 0, got_cb, &g), -EINVAL);
    cr_assert_eq(dns_resolve_host(d, "127.0.0.1", 0, got_cb, &g), -EINVAL);
    cr_assert_eq(g.calls, 0);
    cr_assert_eq(dns_pending(d), 0);
    dns_destroy(d);

    char err[256] = "";
    const char *comma[] = {"127.0.0.1:53,127.0.0.2"};
    cr_assert_null(dns_create(comma, 1, 0, 0, watch_sock, &ws, err, sizeof(err)));
    cr_assert(strstr(err, "bad server") != NULL, "%s", err);
    const char *junk[] = {"not-an-address"};
    err[0] = '\0';
    cr_assert_null(dns_create(junk, 1, 0, 0, watch_sock, &ws, err, sizeof(err)));
    cr_assert_neq(err[0], '\0');
}

Test(dns, null_callback_panics, .signal = SIGABRT)
{
    struct watch ws;
    struct dns *d = closed_dns(&ws);
    dns_resolve_host(d, "a.test", 25, NULL, NULL);
}

Test(dns, unreachable_server_is_temporary)
{
    struct watch ws;
    struct dns *d = closed_dns(&ws);
    struct got g = {0};
    cr_assert_eq(dns_timeout_ms(d, 777), 777, "nothing pending: the max");
    cr_assert_eq(dns_resolve_mx(d, "example.test.", 25, got_cb, &g), 0);
    cr_assert_eq(dns_pending(d), 1);
    cr_assert_eq(g.calls, 0);
    cr_assert_gt(ws.nfds, 0, "a socket to watch");
    cr_assert_leq(dns_timeout_ms(d, 60000), 200, "at most the per-try timeout");
    uint64_t t0 = now_ms();
    drive(d, &ws, 5000);
    cr_assert_eq(g.calls, 1);
    cr_assert_eq(g.status, DNS_TEMP, "%s", g.error);
    cr_assert(strncmp(g.error, "example.test:", 13) == 0, "%s", g.error);
    cr_assert_eq(g.naddr, 0);
    cr_assert_lt(now_ms() - t0, 3000);
    cr_assert_eq(dns_pending(d), 0);
    dns_destroy(d);
}

Test(dns, destroy_fails_pending_lookups)
{
    struct watch ws;
    struct dns *d = closed_dns(&ws);
    struct got a = {0}, b = {0};
    b.d = d;
    cr_assert_eq(dns_resolve_mx(d, "one.test", 25, got_cb, &a), 0);
    cr_assert_eq(dns_resolve_host(d, "two.test", 25, got_cb, &b), 0);
    cr_assert_eq(dns_pending(d), 2);
    int watched = ws.nfds;
    cr_assert_gt(watched, 0);
    dns_destroy(d);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.status, DNS_TEMP);
    cr_assert(strstr(a.error, "shutting down") != NULL, "%s", a.error);
    cr_assert_eq(b.calls, 1);
    cr_assert_eq(b.status, DNS_TEMP);
    cr_assert_eq(b.nested_rc, -ESHUTDOWN, "no new lookups while destroying");
    cr_assert_eq(ws.nfds, 0, "told to stop watching every socket");
    cr_assert_geq(ws.stops, watched);
}

/* ---- assembling a result (dns_int.h) --------------------------------- */

#include "core/client/dns_int.h"

#include <ares.h>

static void xfill(struct dns_xchg *x, const char *host, uint16_t pref, unsigned n4, unsigned n6)
{
    memset(x, 0, sizeof(*x));
    strcpy(x->host, host);
    x->pref = pref;
    x->n4 = n4;
    x->n6 = n6;
    x->st4 = n4 ? ARES_SUCCESS : ARES_ENODATA;
    x->st6 = n6 ? ARES_SUCCESS : ARES_ENODATA;
    for (unsigned i = 0; i < n4; i++)
        x->a4[i].s_addr = htonl(0x7f000000u | (pref << 8) | (i + 1));
    for (unsigned i = 0; i < n6; i++)
        x->a6[i].s6_addr[15] = (uint8_t)(i + 1);
}

Test(dns_result, order_and_caps)
{
    static struct dns_lookup l; /* large: not on the stack */
    memset(&l, 0, sizeof(l));
    l.kind = DNS_KIND_MX;
    strcpy(l.name, "caps.test");
    l.port = 25;
    xfill(&l.x[0], "both.caps.test", 10, 8, 8); /* 4 + 4 */
    xfill(&l.x[1], "few4.caps.test", 20, 2, 8); /* 2 + 6 */
    xfill(&l.x[2], "none.caps.test", 30, 0, 0); /* skipped */
    xfill(&l.x[3], "only4.caps.test", 40, 8, 0);
    l.nx = 4;
    struct dns_result r;
    struct dns_addr *buf;
    dns_result_build(&l, &r, &buf);
    cr_assert_eq(r.status, DNS_OK);
    cr_assert_eq(r.naddr, 8 + 8 + 8);
    cr_assert(strstr(r.error, "none.caps.test") != NULL, "%s", r.error);
    const int fam[] = {AF_INET,  AF_INET,  AF_INET,  AF_INET, AF_INET6, AF_INET6,
                       AF_INET6, AF_INET6, AF_INET,  AF_INET, AF_INET6, AF_INET6,
                       AF_INET6, AF_INET6, AF_INET6, AF_INET6};
    for (size_t i = 0; i < 16; i++)
        cr_assert_eq(r.addrs[i].ss.ss_family, fam[i], "address %zu", i);
    cr_assert_str_eq(r.addrs[0].host, "both.caps.test");
    cr_assert_str_eq(r.addrs[8].host, "few4.caps.test");
    cr_assert_str_eq(r.addrs[16].host, "only4.caps.test");
    cr_assert_eq(r.addrs[16].pref, 40);
    free(buf);

    /* nothing anywhere: permanent when every lookup said no data */
    xfill(&l.x[0], "a.caps.test", 10, 0, 0);
    xfill(&l.x[1], "b.caps.test", 20, 0, 0);
    l.x[1].st4 = ARES_ENOTFOUND;
    l.nx = 2;
    dns_result_build(&l, &r, &buf);
    cr_assert_eq(r.status, DNS_PERM, "%s", r.error);
    cr_assert_eq(r.naddr, 0);
    cr_assert_null(buf);
    /* ... temporary when one of them timed out */
    l.x[1].st6 = ARES_ETIMEOUT;
    dns_result_build(&l, &r, &buf);
    cr_assert_eq(r.status, DNS_TEMP, "%s", r.error);
}

Test(dns_result, names_and_literals)
{
    cr_assert(dns_name_ok("a.test"));
    cr_assert(dns_name_ok("a.test."));
    cr_assert(dns_name_ok("_srv.x-y.test"));
    cr_assert_not(dns_name_ok("a.test.."));
    struct dns_addr a;
    cr_assert(dns_literal("fe80::1%lo", 25, &a));
    cr_assert_neq(((struct sockaddr_in6 *)&a.ss)->sin6_scope_id, 0);
    cr_assert_not(dns_literal("127.1", 25, &a), "inet_aton shorthand is not a literal");
    cr_assert_not(dns_literal("a.test", 25, &a));
    cr_assert(dns_literal("[IPv6:::1]", 25, &a));
    cr_assert_str_eq(a.host, "[IPv6:::1]");
}
