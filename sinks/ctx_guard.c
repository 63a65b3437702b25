/*
 * NAME
 *	ctx_guard - signed header fields stay as signed; the edit journal
 * SYNOPSIS
 *	#include "sinks/sink_int.h"
 *
 *	int sink_header_protect(struct sink_ctx *ctx, const char *names);
 *	const char *sink_header_journal(struct sink_ctx *ctx);
 * DESCRIPTION
 *	A sink that signs a message (builtin:dkim_sign) names the header
 *	fields its signature covers with sink_header_protect() ("from:to:
 *	dkim-signature", any case).  From then on, for the rest of that
 *	message, an edit of such a field by any binding (add, remove, change)
 *	is refused with -EPERM and one log line naming the binding and the
 *	field: the signature would no longer verify.  The body cannot be
 *	edited by sinks at all (sink.h has no body edit), so nothing else can
 *	break a signature made at eod.
 *
 *	Every header edit that the session accepted is also appended to a
 *	journal, so that a signer bound later hashes the header as it will be
 *	stored, earlier sinks' edits included (sinks/auth_canon.c replays it
 *	with the storage's rules).  Journal lines: "<op><name>:<value>\n", op
 *	A, R or C; values have no CR or LF (checked before).
 *
 *	Both live in the message bag under keys a sink cannot set
 *	(sink_prop_set refuses the "sink." prefix: SINK_PROP_RESERVED):
 *	"sink.signed" and "sink.journal".  They go with the message bag, so a
 *	new message starts with neither.  An offloaded handler has no message
 *	bag: its edits are checked and journaled when they are replayed on the
 *	owner (offload.c); it cannot protect fields or read the journal
 *	itself (-ENOTSUP, NULL).
 * DIAGNOSTICS
 *	-EPERM (refused, logged), -ENOTSUP (no message bag), -EINVAL, -ENOMEM.
 */
#include "sinks/sink_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/log.h"

#define GUARD_SIGNED "sink.signed"
#define GUARD_JOURNAL "sink.journal"

/* name (any case) is one of the colon-separated names of list. */
static bool guard_listed(const char *list, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *c = strchr(p, ':');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        if (l == nl && strncasecmp(p, name, nl) == 0)
            return true;
        p = c ? c + 1 : p + l;
    }
    return false;
}

/* Appends "sep piece" to the bag value at key. */
static int guard_append(struct sink_bag *b, const char *key, const char *a, const char *bb,
                        const char *c, const char *d)
{
    const char *old = sink_bag_get(b, key);
    const char *parts[] = {old ? old : "", a, bb, c, d};
    size_t n = 1;
    for (size_t i = 0; i < 5; i++)
        n += strlen(parts[i]);
    char *v = malloc(n);
    if (v == NULL)
        return -ENOMEM;
    v[0] = '\0';
    for (size_t i = 0; i < 5; i++)
        strcat(v, parts[i]);
    int rc = sink_bag_set(b, key, v);
    free(v);
    return rc;
}

int sink_header_protect(struct sink_ctx *ctx, const char *names)
{
    struct sink_bag *b = ctx->d->message_bag;
    if (b == NULL)
        return -ENOTSUP;
    if (names == NULL || *names == '\0' || strpbrk(names, " \t\r\n") != NULL)
        return -EINVAL;
    const char *old = sink_bag_get(b, GUARD_SIGNED);
    return guard_append(b, GUARD_SIGNED, old && *old ? ":" : "", names, "", "");
}

const char *sink_header_journal(struct sink_ctx *ctx)
{
    struct sink_bag *b = ctx->d->message_bag;
    if (b == NULL)
        return NULL;
    const char *j = sink_bag_get(b, GUARD_JOURNAL);
    return j ? j : "";
}

int sink_edit_guard(const struct sink_ctx *ctx, const struct sink_event_data *d, const char *name)
{
    const char *signed_ = d->message_bag ? sink_bag_get(d->message_bag, GUARD_SIGNED) : NULL;
    if (signed_ == NULL || !guard_listed(signed_, name))
        return 0;
    log_msg(LOG_WARN,
            "sink %s: edit of header field %s refused: an earlier binding signed it "
            "(the signature would break)",
            ctx->b->name, name);
    return -EPERM;
}

void sink_edit_journal(const struct sink_event_data *d, enum sink_edit_op op, const char *name,
                       const char *value)
{
    if (d->message_bag == NULL)
        return;
    const char *o = op == SINK_EDIT_ADD ? "A" : op == SINK_EDIT_REMOVE ? "R" : "C";
    char tail[2] = ":";
    /* best effort: without memory a later signer misses an edit (logged) */
    size_t vl = value ? strlen(value) : 0;
    char *nv = malloc(vl + 2);
    if (nv == NULL)
        return;
    memcpy(nv, value ? value : "", vl);
    memcpy(nv + vl, "\n", 2);
    if (guard_append(d->message_bag, GUARD_JOURNAL, o, name, tail, nv) < 0)
        log_msg(LOG_ERROR,
                "sink: header edit journal: out of memory: a later signer misses the "
                "edit of %s",
                name);
    free(nv);
}
