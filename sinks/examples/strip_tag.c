/*
 * NAME
 *	strip_tag - a categorize sink: user+tag@domain becomes user@domain
 * SYNOPSIS
 *	binding "untag" {
 *	    event = "categorize"; sink = "/usr/lib/sluice/strip_tag.so";
 *	    properties { separator = "+"; }
 *	}
 * DESCRIPTION
 *	An example for docs/writing-sinks.md: every recipient whose local
 *	part holds the separator (default "+") is rewritten without the tag
 *	(sink_rcpt_set), and a recipient that then repeats an earlier one is
 *	removed (sink_rcpt_remove, from the end so the indices hold).
 *	Synchronous: the edits show at once in sink_rcpt().
 */
#include <sluice/sink.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct strip_tag {
    char sep;
};

static int st_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    const char *sep = sink_props_get(p, "separator");
    if (sep != NULL && strlen(sep) != 1) {
        snprintf(err, errlen, "separator must be one character");
        return -EINVAL;
    }
    struct strip_tag *s = malloc(sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->sep = sep ? sep[0] : '+';
    *instance = s;
    return 0;
}

static void st_destroy(void *instance)
{
    free(instance);
}

static enum sink_verdict st_handle(void *instance, struct sink_ctx *ctx)
{
    const struct strip_tag *s = instance;
    for (size_t i = 0; i < sink_rcpt_count(ctx); i++) {
        const char *r = sink_rcpt(ctx, i);
        const char *at = strrchr(r, '@');
        const char *tag = at ? memchr(r, s->sep, (size_t)(at - r)) : NULL;
        if (tag == NULL || tag == r)
            continue;
        char plain[256];
        snprintf(plain, sizeof(plain), "%.*s%s", (int)(tag - r), r, at);
        if (sink_rcpt_set(ctx, i, plain) < 0) /* r is stale from here on */
            return SINK_TEMPFAIL;
    }
    /* duplicates, last first: removing j leaves the indices below it */
    for (size_t j = sink_rcpt_count(ctx); j-- > 1;) {
        for (size_t i = 0; i < j; i++) {
            if (strcasecmp(sink_rcpt(ctx, i), sink_rcpt(ctx, j)) == 0) {
                sink_rcpt_remove(ctx, j);
                break;
            }
        }
    }
    return SINK_CONTINUE;
}

static const struct sink_module strip_tag_module = {
    SINK_MODULE_HEAD,
    .name = "strip_tag",
    .events = SINK_EVMASK(SINK_EV_CATEGORIZE),
    .create = st_create,
    .destroy = st_destroy,
    .handle = st_handle,
};
SINK_MODULE(strip_tag_module)
