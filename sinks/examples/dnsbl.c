/*
 * NAME
 *	dnsbl - example async sink: refuse clients a DNS blocklist lists
 * SYNOPSIS
 *	cc $(pkg-config --cflags sluice-sink) -shared -fPIC -fvisibility=hidden \
 *	    dnsbl.c -o dnsbl.so
 *
 *	binding "dnsbl" {
 *	    event = "connect"; sink = "/usr/lib/sluice/dnsbl.so";
 *	    deadline = 2s; on_deadline = continue;
 *	    properties { zone = "zen.example"; }
 *	}
 * DESCRIPTION
 *	At connect, looks up the client's address under `zone` (RFC 5782:
 *	127.0.0.1 becomes 1.0.0.127.zen.example; an IPv6 address its 32
 *	nibbles in reverse) through the daemon's resolver, without a thread:
 *	sink_dns_lookup() answers on the session's worker.  An A record in
 *	127.0.0.0/8 refuses the client with 554 5.7.1 and a text naming the
 *	zone; NXDOMAIN (or no A record) lets it in.  A lookup that fails
 *	(SERVFAIL, REFUSED) lets it in too, or answers 451 4.7.1 with
 *	`on_tempfail = tempfail`; a lookup that has not answered by the
 *	binding's deadline is the binding's on_deadline.
 *
 *	It includes only the sink header and libc.
 */
#include <sluice/sink.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dnsbl {
    char zone[256];
    int tempfail; /* on a failed lookup: 1 tempfail, 0 let the client in */
};

static int dnsbl_create(const struct sink_props *p, void **inst, char *err, size_t errlen)
{
    const char *zone = sink_props_get(p, "zone");
    if (zone == NULL || zone[0] == '\0' || strlen(zone) > 200) {
        snprintf(err, errlen, "property \"zone\": a DNS zone is required (e.g. zen.example)");
        return -EINVAL;
    }
    const char *tf = sink_props_get(p, "on_tempfail");
    if (tf != NULL && strcmp(tf, "tempfail") != 0 && strcmp(tf, "continue") != 0) {
        snprintf(err, errlen, "property \"on_tempfail\": \"%s\": continue or tempfail", tf);
        return -EINVAL;
    }
    struct dnsbl *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    snprintf(d->zone, sizeof(d->zone), "%s", zone);
    d->tempfail = tf != NULL && strcmp(tf, "tempfail") == 0;
    *inst = d;
    return 0;
}

static void dnsbl_destroy(void *inst)
{
    free(inst);
}

/* The query name for addr under zone; 0, or -1 for an address it cannot read. */
static int dnsbl_qname(const char *addr, const char *zone, char *out, size_t cap)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, addr, a) == 1) {
        snprintf(out, cap, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0], zone);
        return 0;
    }
    if (inet_pton(AF_INET6, addr, a) != 1)
        return -1;
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (int i = 15; i >= 0 && n + 4 < cap; i--) {
        out[n++] = hex[a[i] & 15];
        out[n++] = '.';
        out[n++] = hex[a[i] >> 4];
        out[n++] = '.';
    }
    snprintf(out + n, cap - n, "%s", zone);
    return 0;
}

static void dnsbl_answer(struct sink_ctx *ctx, void *arg, const struct sink_dns_answer *a)
{
    struct dnsbl *d = arg;
    if (a->status == SINK_DNS_CANCELLED)
        return; /* the deadline or the client came first: nothing to free */
    if (a->status == SINK_DNS_TEMPFAIL) {
        if (d->tempfail) {
            sink_set_reply(ctx, 451, "4.7.1", "DNS blocklist lookup failed; try again later");
            sink_complete(ctx, SINK_TEMPFAIL);
        } else {
            sink_complete(ctx, SINK_CONTINUE);
        }
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        const struct sink_dns_rr *rr = &a->rr[i];
        if (rr->type == SINK_DNS_A && rr->len == 4 && rr->data[0] == 127) {
            char text[400];
            snprintf(text, sizeof(text), "Client %s is listed in %s (%s)", sink_client_addr(ctx),
                     d->zone, rr->text);
            sink_set_reply(ctx, 554, "5.7.1", text);
            sink_complete(ctx, SINK_REJECT);
            return;
        }
    }
    sink_complete(ctx, SINK_CONTINUE); /* NXDOMAIN, NODATA, or not a listing */
}

static enum sink_verdict dnsbl_handle(void *inst, struct sink_ctx *ctx)
{
    struct dnsbl *d = inst;
    char name[512];
    const char *addr = sink_client_addr(ctx);
    if (addr == NULL || dnsbl_qname(addr, d->zone, name, sizeof(name)) < 0)
        return SINK_CONTINUE; /* not an IP client (a test harness): nothing to look up */
    if (sink_dns_lookup(ctx, name, SINK_DNS_A, dnsbl_answer, d, NULL) < 0)
        return d->tempfail ? SINK_TEMPFAIL : SINK_CONTINUE;
    return SINK_PENDING;
}

static const struct sink_module dnsbl_module = {
    SINK_MODULE_HEAD,
    .name = "dnsbl",
    .events = SINK_EVMASK(SINK_EV_CONNECT),
    .create = dnsbl_create,
    .destroy = dnsbl_destroy,
    .handle = dnsbl_handle,
};
SINK_MODULE(dnsbl_module)
