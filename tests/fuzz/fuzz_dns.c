/*
 * NAME
 *	fuzz_dns - DNS answers as c-ares hands them to core/client/dns.c
 * DESCRIPTION
 *	The input is three raw DNS responses, each but the last preceded by
 *	its length (two octets, big-endian): the answer to the MX query, the
 *	answer to every exchange's A query, the answer to every exchange's
 *	AAAA query.  They go through what the c-ares callbacks do
 *	(dns_mx_reply, dns_addr_reply: ares_parse_mx_reply,
 *	ares_parse_a_reply, ares_parse_aaaa_reply and what is made of their
 *	results) and the lookup's result is built (dns_result_build), as for
 *	a lookup of "example.test" port 25.
 *
 *	Invariants: at most DNS_MAX_EXCHANGES exchanges, no two the same
 *	(case-insensitively), ordered by preference; every exchange name is
 *	a NUL-terminated string inside its buffer; at most DNS_MAX_ADDRS
 *	addresses per exchange kind; an OK result has addresses, each of
 *	the family its length says, port 25, and an exchange it names; a
 *	result that is not OK has none and says why.
 */
#include "tests/fuzz/fuzz.h"

#include <arpa/inet.h>
#include <ares.h>
#include <string.h>
#include <strings.h>

#include "core/base/log.h"
#include "core/client/dns_int.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_ERROR);
    ares_library_init(ARES_LIB_INIT_ALL);
    return 0;
}

static const uint8_t *part(struct fuzz_in *in, size_t *n, bool last)
{
    size_t want = in->n;
    if (!last)
        want = (size_t)fuzz_u8(in) << 8 | fuzz_u8(in);
    return fuzz_take(in, want, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    size_t nmx, na, naaaa;
    const uint8_t *mx = part(&in, &nmx, false);
    const uint8_t *a = part(&in, &na, false);
    const uint8_t *aaaa = part(&in, &naaaa, true);
    /* copies of exactly their size, so a read past one is seen */
    uint8_t *bmx = malloc(nmx + 1), *ba = malloc(na + 1), *baaaa = malloc(naaaa + 1);
    memcpy(bmx, mx, nmx);
    memcpy(ba, a, na);
    memcpy(baaaa, aaaa, naaaa);

    struct dns_lookup *l = calloc(1, sizeof(*l));
    l->kind = DNS_KIND_MX;
    strcpy(l->name, "example.test");
    l->port = 25;
    dns_mx_reply(l, ARES_SUCCESS, bmx, (int)nmx);
    FUZZ_CHECK(l->nx <= DNS_MAX_EXCHANGES, "%u exchanges", l->nx);
    FUZZ_CHECK(!l->decided || l->error[0] != '\0', "decided without a reason");
    if (!l->decided) {
        FUZZ_CHECK(l->nx >= 1, "undecided without an exchange");
        for (unsigned i = 0; i < l->nx; i++) {
            struct dns_xchg *x = &l->x[i];
            FUZZ_CHECK(strnlen(x->host, sizeof(x->host)) < sizeof(x->host), "host unterminated");
            FUZZ_CHECK(i == 0 || l->x[i - 1].pref <= x->pref, "exchanges out of order");
            for (unsigned j = 0; j < i; j++)
                FUZZ_CHECK(strcasecmp(l->x[j].host, x->host) != 0, "duplicate %s", x->host);
            x->st4 = dns_addr_reply(x, AF_INET, ba, (int)na);
            x->st6 = dns_addr_reply(x, AF_INET6, baaaa, (int)naaaa);
            FUZZ_CHECK(x->n4 <= DNS_MAX_ADDRS && x->n6 <= DNS_MAX_ADDRS, "%u/%u addresses", x->n4,
                       x->n6);
            FUZZ_CHECK((x->st4 == ARES_SUCCESS) == (x->n4 > 0), "A status %d with %u", x->st4,
                       x->n4);
            FUZZ_CHECK((x->st6 == ARES_SUCCESS) == (x->n6 > 0), "AAAA status %d with %u", x->st6,
                       x->n6);
        }
    }
    struct dns_result r;
    struct dns_addr *buf = NULL;
    dns_result_build(l, &r, &buf);
    FUZZ_CHECK(strnlen(r.error, sizeof(r.error)) < sizeof(r.error), "error unterminated");
    if (r.status == DNS_OK) {
        FUZZ_CHECK(r.naddr > 0 && r.naddr <= (size_t)l->nx * 2 * DNS_MAX_ADDRS, "%zu addresses",
                   r.naddr);
        for (size_t i = 0; i < r.naddr; i++) {
            const struct dns_addr *d = &r.addrs[i];
            int fam = d->ss.ss_family;
            FUZZ_CHECK((fam == AF_INET && d->len == sizeof(struct sockaddr_in)) ||
                           (fam == AF_INET6 && d->len == sizeof(struct sockaddr_in6)),
                       "family %d len %u", fam, (unsigned)d->len);
            uint16_t port = fam == AF_INET ? ((const struct sockaddr_in *)&d->ss)->sin_port
                                           : ((const struct sockaddr_in6 *)&d->ss)->sin6_port;
            FUZZ_CHECK(ntohs(port) == 25, "port %u", ntohs(port));
            bool known = false;
            for (unsigned j = 0; j < l->nx && !known; j++)
                known = strcmp(l->x[j].host, d->host) == 0;
            FUZZ_CHECK(known, "address of an unknown exchange %s", d->host);
        }
    } else {
        FUZZ_CHECK(r.naddr == 0 && buf == NULL && r.error[0] != '\0', "failed: %zu, \"%s\"",
                   r.naddr, r.error);
    }
    free(buf);
    free(l);
    free(bmx);
    free(ba);
    free(baaaa);
    return 0;
}
