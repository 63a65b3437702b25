/*
 * NAME
 *	fuzz_rule - the binding rule compiler and matcher (sinks/rule.c)
 * DESCRIPTION
 *	The input is split at its first newline: before it the rule text
 *	(as a binding's `rule` setting gives it), after it the event data, one value per line:
 *sender, recipient, HELO name, client address, verb, then the recipients accepted so far.  The rule
 *is compiled; when it compiles it is matched against every event type with that data, and each of
 *its patterns is matched by sink_glob_match() against each value.
 *
 *	Invariants: a rule that does not compile says why; matching never
 *	crashes and terminates (the glob is linear-ish by construction:
 *	libFuzzer's -timeout catches a blow-up); a glob made of one `*`
 *	matches everything; a literal pattern matches itself.
 */
#include "tests/fuzz/fuzz.h"

#include <string.h>

#include "sinks/sink_int.h"

#define MAX_VALS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *buf = fuzz_str(data, size);
    char *vals[MAX_VALS] = {0};
    size_t nv = 0;
    char *nl = strchr(buf, '\n');
    if (nl != NULL) {
        *nl = '\0';
        char *p = nl + 1;
        while (nv < MAX_VALS) {
            vals[nv++] = p;
            char *e = strchr(p, '\n');
            if (e == NULL)
                break;
            *e = '\0';
            p = e + 1;
        }
    }
    char err[256] = "";
    struct sink_rule *r = sink_rule_compile(buf, err, sizeof(err));
    if (r == NULL) {
        FUZZ_CHECK(err[0] != '\0', "no reason for \"%s\"", buf);
    } else {
        const char *rcpts[MAX_VALS];
        size_t nr = 0;
        for (size_t i = 5; i < nv; i++)
            rcpts[nr++] = vals[i];
        struct sink_event_data d;
        memset(&d, 0, sizeof(d));
        d.sender = vals[0];
        d.rcpt = vals[1];
        d.helo = vals[2];
        d.client_addr = vals[3];
        d.verb = vals[4];
        d.rcpts = rcpts;
        d.nrcpt = nr;
        for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
            d.rcpt_index = (size_t)ev % (nr + 1);
            (void)sink_rule_match(r, (enum sink_event)ev, &d);
        }
        sink_rule_free(r);
    }
    for (size_t i = 0; i < nv; i++) {
        FUZZ_CHECK(sink_glob_match("*", vals[i]), "* does not match \"%s\"", vals[i]);
        if (strpbrk(vals[i], "*?") == NULL)
            FUZZ_CHECK(sink_glob_match(vals[i], vals[i]), "\"%s\" does not match itself", vals[i]);
        (void)sink_glob_match(buf, vals[i]);
    }
    free(buf);
    return 0;
}
