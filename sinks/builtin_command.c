/*
 * NAME
 *	builtin_command - an example protocol extension: a verb of its own
 * SYNOPSIS
 *	binding "xhello" {
 *	    event = "command"; sink = "builtin:command";
 *	    properties { verb = "XHELLO"; code = 250; text = "hello from a sink"; }
 *	}
 * DESCRIPTION
 *	At the command event, a command whose verb is VERB (any case) is
 *	answered with CODE ENHANCED TEXT and the chain stops there: CONSUMED
 *	for 2xx and 3xx (the server never sees the verb, so it is not a 500
 *	"command not recognized"), TEMPFAIL for 4xx, REJECT for 5xx.  Every
 *	other verb CONTINUEs.
 *
 *	verb is required; code defaults to 250, text to "Ok", enhanced to
 *	none.  Bind it before the server (priority < 24575) so that it
 *	answers before the server's own command table.
 * DIAGNOSTICS
 *	create() fails without a verb, with a code outside 200..599 or not
 *	a number, or an unknown property.
 */
#include "sinks/sink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct command_inst {
    char verb[32];
    int code;
    enum sink_verdict verdict;
    char enhanced[16];
    char text[512];
};

static int command_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    static const char *const keys[] = {"verb", "code", "enhanced", "text", NULL};
    long long code;
    int rc = sink_props_only(p, keys, err, errlen);
    if (rc < 0 || (rc = sink_props_int(p, "code", 250, &code, err, errlen)) < 0)
        return rc;
    const char *verb = sink_props_get(p, "verb");
    if (verb == NULL || *verb == '\0' || strlen(verb) >= sizeof(((struct command_inst *)0)->verb)) {
        snprintf(err, errlen, "property verb is required (a word of up to 31 letters)");
        return -EINVAL;
    }
    if (code < 200 || code > 599) {
        snprintf(err, errlen, "code %lld is not 200..599", code);
        return -EINVAL;
    }
    struct command_inst *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    snprintf(c->verb, sizeof(c->verb), "%s", verb);
    c->code = (int)code;
    c->verdict = code >= 500 ? SINK_REJECT : code >= 400 ? SINK_TEMPFAIL : SINK_CONSUMED;
    const char *enh = sink_props_get(p, "enhanced");
    snprintf(c->enhanced, sizeof(c->enhanced), "%s", enh ? enh : "");
    const char *text = sink_props_get(p, "text");
    snprintf(c->text, sizeof(c->text), "%s", text ? text : "Ok");
    *instance = c;
    return 0;
}

static void command_destroy(void *instance)
{
    free(instance);
}

static enum sink_verdict command_handle(void *instance, struct sink_ctx *ctx)
{
    const struct command_inst *c = instance;
    const char *verb = sink_command_verb(ctx);
    if (verb == NULL || strcasecmp(verb, c->verb) != 0)
        return SINK_CONTINUE;
    sink_set_reply(ctx, c->code, c->enhanced[0] ? c->enhanced : NULL, c->text);
    return c->verdict;
}

const struct sink_module sink_builtin_command = {
    SINK_MODULE_HEAD,
    .name = "command",
    .events = SINK_EVMASK(SINK_EV_COMMAND),
    .create = command_create,
    .destroy = command_destroy,
    .handle = command_handle,
};
