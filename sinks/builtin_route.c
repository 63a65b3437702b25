/*
 * NAME
 *	builtin_route - choose a recipient's next hop by its domain
 * SYNOPSIS
 *	binding "routes" {
 *	    event = "route"; sink = "builtin:route";
 *	    properties {
 *	        "partner.example" = "smtp:192.0.2.7:2525";
 *	        ".internal.example" = "smtp:[2001:db8::25]";
 *	        "*" = "mx";
 *	    }
 *	}
 * DESCRIPTION
 *	Each property maps a domain to a next hop in transport-table syntax
 *	(core/queue/route.h: smtp:HOST[:PORT], mx, mx:PORT, maildir, discard,
 *	error:X.Y.Z TEXT, with " tls=..." after smtp and mx).  A key is a
 *	domain (exact, any case), ".suffix" (every domain below it, not the
 *	suffix itself) or "*" (any other domain, and an address without
 *	one).  The same precedence as the transport table: an exact key wins,
 *	then the longest suffix, then "*".
 *
 *	At route, the recipient sink_rcpt(ctx, sink_rcpt_index(ctx)) is
 *	looked up by the part after its last '@'; when a key matches, its next
 *	hop replaces the transport table's choice (sink_route_set) and the
 *	chain continues (a later route binding may still change it).  When
 *	nothing matches the sink does nothing.  When the queue manager refuses
 *	the next hop, the recipient is deferred (TEMPFAIL, 451 4.3.5): a
 *	configuration error should not send mail somewhere else.
 * DIAGNOSTICS
 *	create() fails on a key that is not a domain, ".suffix" or "*", on a
 *	malformed next hop, and on a key given twice (any case).
 */
#include "sinks/sink_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/log.h"

struct route_ent {
    const char *key; /* borrowed from the instance's copy of the properties */
    const char *hop;
    size_t klen;
    bool suffix;
};

struct route_inst {
    struct route_ent *e;
    size_t n;
    const char *dflt; /* "*", or NULL */
    char *mem;        /* the keys and next hops */
};

static bool route_key_ok(const char *k)
{
    const char *s = k[0] == '.' ? k + 1 : k;
    if (*s == '\0')
        return false;
    char probe[300];
    if (snprintf(probe, sizeof(probe), "x@%s", s) >= (int)sizeof(probe))
        return false;
    return sink_addr_ok(probe); /* the domain rules of an address */
}

static void route_destroy(void *instance)
{
    struct route_inst *r = instance;
    if (r == NULL)
        return;
    free(r->e);
    free(r->mem);
    free(r);
}

static int route_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    size_t n = sink_props_count(p), need = 0;
    for (size_t i = 0; i < n; i++)
        need += strlen(sink_props_key(p, i)) + strlen(sink_props_value(p, i)) + 2;
    struct route_inst *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->e = calloc(n ? n : 1, sizeof(*r->e))) == NULL ||
        (r->mem = malloc(need ? need : 1)) == NULL) {
        route_destroy(r);
        return -ENOMEM;
    }
    char *at = r->mem;
    for (size_t i = 0; i < n; i++) {
        const char *k = sink_props_key(p, i), *v = sink_props_value(p, i);
        if (strcmp(k, "*") != 0 && !route_key_ok(k)) {
            snprintf(err, errlen, "\"%s\": not a domain, \".suffix\" or \"*\"", k);
            goto bad;
        }
        if (!sink_nexthop_ok(v)) {
            snprintf(err, errlen,
                     "\"%s\" = \"%s\": expected smtp:HOST[:PORT], mx, mx:PORT, maildir, discard "
                     "or error:X.Y.Z TEXT",
                     k, v);
            goto bad;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcasecmp(sink_props_key(p, j), k) == 0) {
                snprintf(err, errlen, "\"%s\" given twice", k);
                goto bad;
            }
        }
        size_t kl = strlen(k) + 1, vl = strlen(v) + 1;
        memcpy(at, k, kl);
        memcpy(at + kl, v, vl);
        if (strcmp(k, "*") == 0) {
            r->dflt = at + kl;
        } else {
            r->e[r->n] = (struct route_ent){at, at + kl, kl - 1, k[0] == '.'};
            r->n++;
        }
        at += kl + vl;
    }
    *instance = r;
    return 0;
bad:
    route_destroy(r);
    return -EINVAL;
}

/* The next hop for domain (may be NULL: no domain), or NULL. */
static const char *route_find(const struct route_inst *r, const char *domain)
{
    const struct route_ent *best = NULL;
    size_t dl = domain ? strlen(domain) : 0;
    for (size_t i = 0; domain != NULL && i < r->n; i++) {
        const struct route_ent *e = &r->e[i];
        if (!e->suffix) {
            if (strcasecmp(e->key, domain) == 0)
                return e->hop; /* exact wins */
        } else if (dl > e->klen && strcasecmp(domain + dl - e->klen, e->key) == 0 &&
                   (best == NULL || e->klen > best->klen)) {
            best = e;
        }
    }
    return best ? best->hop : r->dflt;
}

static enum sink_verdict route_handle(void *instance, struct sink_ctx *ctx)
{
    const struct route_inst *r = instance;
    const char *rcpt = sink_rcpt(ctx, sink_rcpt_index(ctx));
    const char *at = rcpt ? strrchr(rcpt, '@') : NULL;
    const char *hop = route_find(r, at ? at + 1 : NULL);
    if (hop == NULL)
        return SINK_CONTINUE;
    int rc = sink_route_set(ctx, hop);
    if (rc < 0) {
        log_msg(LOG_WARN, "sinks: binding \"%s\": next hop \"%s\" for %s refused: %s",
                sink_binding_name(ctx), hop, rcpt ? rcpt : "?", strerror(-rc));
        sink_set_reply(ctx, 451, "4.3.5", "next hop refused (route sink)");
        return SINK_TEMPFAIL;
    }
    return SINK_CONTINUE;
}

const struct sink_module sink_builtin_route = {
    SINK_MODULE_HEAD,
    .name = "route",
    .events = SINK_EVMASK(SINK_EV_ROUTE),
    .create = route_create,
    .destroy = route_destroy,
    .handle = route_handle,
};
