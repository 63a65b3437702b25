/*
 * NAME
 *	route_by_sender - a route sink: mail from one sender domain leaves
 *	through its own relay
 * SYNOPSIS
 *	binding "newsletters" {
 *	    event = "route"; sink = "/usr/lib/sluice/route_by_sender.so";
 *	    properties { sender_domain = "news.example"; nexthop = "smtp:192.0.2.50:25"; }
 *	}
 * DESCRIPTION
 *	An example for docs/writing-sinks.md: at route (once per recipient)
 *	a message whose sender is in sender_domain gets nexthop for every
 *	recipient except those the transport table delivers locally
 *	(sink_nexthop() is "maildir").  A next hop the queue manager refuses
 *	defers the recipient.
 */
#include <sluice/sink.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct by_sender {
    char domain[256];
    char nexthop[256];
};

static int bs_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    const char *d = sink_props_get(p, "sender_domain");
    const char *h = sink_props_get(p, "nexthop");
    if (d == NULL || h == NULL) {
        snprintf(err, errlen, "sender_domain and nexthop are required");
        return -EINVAL;
    }
    struct by_sender *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    snprintf(b->domain, sizeof(b->domain), "%s", d);
    snprintf(b->nexthop, sizeof(b->nexthop), "%s", h);
    *instance = b;
    return 0;
}

static void bs_destroy(void *instance)
{
    free(instance);
}

static enum sink_verdict bs_handle(void *instance, struct sink_ctx *ctx)
{
    const struct by_sender *b = instance;
    const char *sender = sink_sender(ctx);
    const char *at = sender ? strrchr(sender, '@') : NULL;
    if (at == NULL || strcasecmp(at + 1, b->domain) != 0)
        return SINK_CONTINUE;
    const char *table = sink_nexthop(ctx); /* the transport table's choice */
    if (table != NULL && strcmp(table, "maildir") == 0)
        return SINK_CONTINUE; /* local mail stays local */
    if (sink_route_set(ctx, b->nexthop) < 0) {
        sink_set_reply(ctx, 451, "4.3.5", "bad next hop for this sender");
        return SINK_TEMPFAIL;
    }
    return SINK_CONTINUE;
}

static const struct sink_module by_sender_module = {
    SINK_MODULE_HEAD,
    .name = "route_by_sender",
    .events = SINK_EVMASK(SINK_EV_ROUTE),
    .create = bs_create,
    .destroy = bs_destroy,
    .handle = bs_handle,
};
SINK_MODULE(by_sender_module)
