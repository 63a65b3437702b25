/*
 * NAME
 *	generation - a test module built twice (SINK_GENERATION 1 and 2)
 * DESCRIPTION
 *	At mail it rejects with "generation N" (N fixed at build time): a
 *	test copies gen1.so to a path, loads it, renames gen2.so over the
 *	path and checks which code the next load runs
 *	(tests/sinks/test_abi.c).  Its create() publishes a counter "calls"
 *	and reads the strict property "tries".
 */
#include <sluice/sink.h>

#include <stdlib.h>

struct gen {
    struct sink_counter *calls;
    long long tries;
};

static int gen_create(const struct sink_props *p, void **inst, char *err, size_t errlen)
{
    struct gen *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return -12;
    int rc = sink_props_int(p, "tries", 3, &g->tries, err, errlen);
    if (rc < 0) {
        free(g);
        return rc;
    }
    g->calls = sink_counter(p, "calls", "mail events seen");
    *inst = g;
    return 0;
}

static void gen_destroy(void *inst)
{
    free(inst);
}

static enum sink_verdict gen_handle(void *inst, struct sink_ctx *ctx)
{
    struct gen *g = inst;
    sink_counter_add(g->calls, 1);
    sink_set_reply(ctx, 550, "5.7.1", SINK_GENERATION == 1 ? "generation 1" : "generation 2");
    return SINK_REJECT;
}

static const struct sink_module gen_module = {
    SINK_MODULE_HEAD,     .name = "generation",   .events = SINK_EVMASK(SINK_EV_MAIL),
    .create = gen_create, .destroy = gen_destroy, .handle = gen_handle,
};

SINK_MODULE(gen_module)
