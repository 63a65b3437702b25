/*
 * NAME
 *	tag_sender - example synchronous sink: refuse some senders, tag the rest
 * SYNOPSIS
 *	cc -shared -fPIC -I/path/to/sluice tag_sender.c -o tag_sender.so
 *
 *	binding "tag-mail" {
 *	    event = "mail"; sink = "/usr/lib/sluice/tag_sender.so";
 *	    properties { pattern = "*@blocked.example"; }
 *	}
 *	binding "tag-eod" {
 *	    event = "eod"; sink = "/usr/lib/sluice/tag_sender.so";
 *	    properties { header = "X-Sender-Domain"; }
 *	}
 * DESCRIPTION
 *	At mail: a sender matching the glob in `pattern` (case-insensitive,
 *	`*` and `?`) is refused with 550 5.7.1 and `text` (default "Sender
 *	refused by tag_sender").  Any other sender's domain is kept in the
 *	message property "tag_sender.domain" ("" for the null sender).
 *
 *	At eod: adds the header `header` (default X-Sender-Domain) whose
 *	value is that property, when the mail binding set it.
 *
 *	One module, two bindings, one instance each: the property bag carries
 *	what the mail instance learned to the eod instance.  It includes only
 *	sinks/sink.h and libc.
 */
#include <sluice/sink.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAG_PROP "tag_sender.domain"

struct tag {
    char *refuse; /* glob, or NULL */
    char *text;
    char *header;
};

static int tag_glob(const char *pat, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = ++pat;
            resume = s;
        } else if (*pat == '?' ||
                   (*pat && tolower((unsigned char)*pat) == tolower((unsigned char)*s))) {
            pat++;
            s++;
        } else if (star) {
            pat = star;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

static void tag_destroy(void *instance)
{
    struct tag *t = instance;
    if (t == NULL)
        return;
    free(t->refuse);
    free(t->text);
    free(t->header);
    free(t);
}

static char *tag_dup(const char *s, const char *dflt)
{
    s = s ? s : dflt;
    return s ? strdup(s) : NULL;
}

static int tag_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    struct tag *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->refuse = tag_dup(sink_props_get(p, "pattern"), NULL);
    t->text = tag_dup(sink_props_get(p, "text"), "Sender refused by tag_sender");
    t->header = tag_dup(sink_props_get(p, "header"), "X-Sender-Domain");
    if (t->text == NULL || t->header == NULL) {
        tag_destroy(t);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    *instance = t;
    return 0;
}

static enum sink_verdict tag_mail(struct tag *t, struct sink_ctx *ctx)
{
    const char *sender = sink_sender(ctx);
    if (sender == NULL)
        return SINK_CONTINUE;
    if (t->refuse != NULL && tag_glob(t->refuse, sender)) {
        sink_set_reply(ctx, 550, "5.7.1", t->text);
        return SINK_REJECT;
    }
    const char *at = strrchr(sender, '@');
    sink_prop_set(ctx, SINK_SCOPE_MESSAGE, TAG_PROP, at ? at + 1 : "");
    return SINK_CONTINUE;
}

static enum sink_verdict tag_eod(struct tag *t, struct sink_ctx *ctx)
{
    const char *domain = sink_prop_get(ctx, SINK_SCOPE_MESSAGE, TAG_PROP);
    if (domain != NULL)
        sink_header_add(ctx, t->header, *domain ? domain : "(null sender)");
    return SINK_CONTINUE;
}

static enum sink_verdict tag_handle(void *instance, struct sink_ctx *ctx)
{
    switch (sink_event(ctx)) {
    case SINK_EV_MAIL:
        return tag_mail(instance, ctx);
    case SINK_EV_EOD:
        return tag_eod(instance, ctx);
    default:
        return SINK_CONTINUE;
    }
}

static const struct sink_module tag_module = {
    SINK_MODULE_HEAD,
    .name = "tag_sender",
    .events = SINK_EVMASK(SINK_EV_MAIL) | SINK_EVMASK(SINK_EV_EOD),
    .create = tag_create,
    .destroy = tag_destroy,
    .handle = tag_handle,
};

SINK_MODULE(tag_module)
