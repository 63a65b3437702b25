/*
 * NAME
 *	builtin_header - add a header field to every message
 * SYNOPSIS
 *	binding "scanned" {
 *	    event = "eod"; sink = "builtin:header";
 *	    properties { name = "X-Scanned"; value = "yes"; }
 *	}
 * DESCRIPTION
 *	At eod, adds `NAME: VALUE` to the message's edit list (applied when
 *	the message is written; the received bytes are never rewritten) and
 *	answers CONTINUE.  Both properties are required.
 * DIAGNOSTICS
 *	create() fails when name is not a field name (printable ASCII without
 *	':'), value has a control character, or a property is unknown.  An edit the session refuses
 *	at eod is ignored: the message goes on without the field.
 */
#include "sinks/sink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct header_inst {
    char *name;
    char *value;
};

static void header_destroy(void *instance)
{
    struct header_inst *h = instance;
    if (h == NULL)
        return;
    free(h->name);
    free(h->value);
    free(h);
}

static int header_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    static const char *const keys[] = {"name", "value", NULL};
    int rc = sink_props_only(p, keys, err, errlen);
    if (rc < 0)
        return rc;
    const char *name = sink_props_get(p, "name");
    const char *value = sink_props_get(p, "value");
    if (name == NULL || *name == '\0' || value == NULL) {
        snprintf(err, errlen, "properties name and value are required");
        return -EINVAL;
    }
    for (const char *s = name; *s; s++) {
        if ((unsigned char)*s < 33 || (unsigned char)*s > 126 || *s == ':') {
            snprintf(err, errlen, "name \"%s\" is not a header field name", name);
            return -EINVAL;
        }
    }
    for (const char *s = value; *s; s++) {
        if ((unsigned char)*s < 0x20 && *s != '\t') {
            snprintf(err, errlen, "value has a control character");
            return -EINVAL;
        }
    }
    struct header_inst *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->name = strdup(name)) == NULL || (h->value = strdup(value)) == NULL) {
        header_destroy(h);
        return -ENOMEM;
    }
    *instance = h;
    return 0;
}

static enum sink_verdict header_handle(void *instance, struct sink_ctx *ctx)
{
    const struct header_inst *h = instance;
    (void)sink_header_add(ctx, h->name, h->value);
    return SINK_CONTINUE;
}

const struct sink_module sink_builtin_header = {
    SINK_MODULE_HEAD,
    .name = "header",
    .events = SINK_EVMASK(SINK_EV_EOD),
    .create = header_create,
    .destroy = header_destroy,
    .handle = header_handle,
};
