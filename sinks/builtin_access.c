/*
 * NAME
 *	builtin_access - accept or refuse a sender or recipient by rule
 * SYNOPSIS
 *	binding "no-spam" {
 *	    event = "mail"; sink = "builtin:access"; priority = 1000;
 *	    rule = "MAIL FROM=*@spam.example";
 *	    properties { action = "reject"; text = "sender refused"; }
 *	}
 * DESCRIPTION
 *	The binding's rule says whom it applies to; the sink says what
 *	happens to them (mail and rcpt events):
 *
 *	action = "reject"	550 5.7.1 TEXT (default text "Access denied")
 *	action = "tempfail"	450 4.7.1 TEXT (default "Try again later")
 *	action = "accept"	CONSUMED: the rest of the chain is skipped,
 *				the server's own checks (relay control
 *				included) among them, so bind it before the
 *				server (priority < 24575).  With text, the
 *				reply is 250 2.1.0 / 2.1.5 TEXT; without, the
 *				server's usual 250.
 *
 *	code and enhanced override the reply code (its class must fit the
 *	action) and the enhanced status code.
 * DIAGNOSTICS
 *	create() fails on an unknown action, a code or enhanced code of the
 *	wrong class, a malformed code, a text with control characters, or
 *	an unknown property.
 */
#include "sinks/sink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct access_inst {
    enum sink_verdict verdict;
    int code;
    char enhanced[16];
    char text[512];
};

static int access_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    static const char *const keys[] = {"action", "code", "enhanced", "text", NULL};
    long long code;
    int rc = sink_props_only(p, keys, err, errlen);
    if (rc < 0 || (rc = sink_props_int(p, "code", 0, &code, err, errlen)) < 0)
        return rc;
    const char *action = sink_props_get(p, "action");
    const char *text = sink_props_get(p, "text");
    const char *enh = sink_props_get(p, "enhanced");
    struct access_inst *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    if (action == NULL || strcasecmp(action, "reject") == 0) {
        a->verdict = SINK_REJECT;
        a->code = 550;
        snprintf(a->enhanced, sizeof(a->enhanced), "5.7.1");
        snprintf(a->text, sizeof(a->text), "%s", text ? text : "Access denied");
    } else if (strcasecmp(action, "tempfail") == 0) {
        a->verdict = SINK_TEMPFAIL;
        a->code = 450;
        snprintf(a->enhanced, sizeof(a->enhanced), "4.7.1");
        snprintf(a->text, sizeof(a->text), "%s", text ? text : "Try again later");
    } else if (strcasecmp(action, "accept") == 0) {
        a->verdict = SINK_CONSUMED;
        a->code = text ? 250 : 0;
        if (text)
            snprintf(a->text, sizeof(a->text), "%s", text);
    } else {
        snprintf(err, errlen, "action \"%s\": use \"reject\", \"tempfail\" or \"accept\"", action);
        free(a);
        return -EINVAL;
    }
    if (sink_props_get(p, "code") == NULL)
        code = a->code;
    int want = a->verdict == SINK_REJECT ? 5 : a->verdict == SINK_TEMPFAIL ? 4 : 2;
    if (code != a->code && (code / 100 != want || code > 599)) {
        snprintf(err, errlen, "code %lld does not fit action %s (%dxx)", code,
                 action ? action : "reject", want);
        free(a);
        return -EINVAL;
    }
    a->code = (int)code;
    if (enh != NULL) {
        unsigned c1, c2, c3;
        int end = 0;
        if (sscanf(enh, "%1u.%3u.%3u%n", &c1, &c2, &c3, &end) != 3 || enh[end] != '\0' ||
            c1 != (unsigned)want) {
            snprintf(err, errlen, "enhanced \"%s\" is not %d.x.y", enh, want);
            free(a);
            return -EINVAL;
        }
        snprintf(a->enhanced, sizeof(a->enhanced), "%s", enh);
    }
    for (const char *s = a->text; *s; s++) {
        if ((unsigned char)*s < 0x20) {
            snprintf(err, errlen, "text has a control character");
            free(a);
            return -EINVAL;
        }
    }
    *instance = a;
    return 0;
}

static void access_destroy(void *instance)
{
    free(instance);
}

static enum sink_verdict access_handle(void *instance, struct sink_ctx *ctx)
{
    const struct access_inst *a = instance;
    if (a->code != 0) {
        const char *enh = a->enhanced;
        if (a->verdict == SINK_CONSUMED && enh[0] == '\0')
            enh = sink_event(ctx) == SINK_EV_RCPT ? "2.1.5" : "2.1.0";
        sink_set_reply(ctx, a->code, enh[0] ? enh : NULL, a->text);
    }
    return a->verdict;
}

const struct sink_module sink_builtin_access = {
    SINK_MODULE_HEAD,
    .name = "access",
    .events = SINK_EVMASK(SINK_EV_MAIL) | SINK_EVMASK(SINK_EV_RCPT),
    .create = access_create,
    .destroy = access_destroy,
    .handle = access_handle,
};
