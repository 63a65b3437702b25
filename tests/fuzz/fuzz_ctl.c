/*
 * NAME
 *	fuzz_ctl - the control socket's request parser
 * DESCRIPTION
 *	The input is one request as sluicectl (or anyone who can reach the
 *	socket) sends it, parsed by ctl_request_parse() (core/ops/
 *	ctl_proto.c, on top of cfg_parse).
 *
 *	Invariants: a request that parses has a non-empty printable ASCII
 *	verb and at most CTL_MAX_ARGS arguments; formatted again with
 *	ctl_request_format() it parses to the same verb and arguments (what
 *	the server reads is what a client meant to send).
 */
#include "tests/fuzz/fuzz.h"

#include <string.h>

#include "core/ops/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *text = fuzz_str(data, size);
    struct ctl_request rq, again;
    char err[256];
    if (ctl_request_parse(text, size, &rq, err, sizeof(err)) != 0) {
        FUZZ_CHECK(strnlen(err, sizeof(err)) < sizeof(err) && err[0] != '\0', "no reason given");
        free(text);
        return 0;
    }
    size_t vl = strlen(rq.verb);
    FUZZ_CHECK(vl > 0, "empty verb");
    for (size_t i = 0; i < vl; i++)
        FUZZ_CHECK(rq.verb[i] >= 0x20 && rq.verb[i] < 0x7f, "verb octet 0x%02x",
                   (unsigned char)rq.verb[i]);
    FUZZ_CHECK(rq.nargs <= CTL_MAX_ARGS, "%zu args", rq.nargs);
    char *line = ctl_request_format(rq.verb, (const char *const *)rq.args, rq.nargs);
    FUZZ_CHECK(line != NULL, "format failed");
    FUZZ_CHECK(ctl_request_parse(line, strlen(line), &again, err, sizeof(err)) == 0,
               "formatted request does not parse: %s: %s", line, err);
    FUZZ_CHECK(strcmp(again.verb, rq.verb) == 0 && again.nargs == rq.nargs, "round trip: %s", line);
    for (size_t i = 0; i < rq.nargs; i++)
        FUZZ_CHECK(strcmp(again.args[i], rq.args[i]) == 0, "round trip arg %zu: %s", i, line);
    ctl_request_fini(&again);
    ctl_request_fini(&rq);
    free(line);
    free(text);
    return 0;
}
