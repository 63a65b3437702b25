/*
 * NAME
 *	builtin_noop - a sink that does nothing and continues
 * SYNOPSIS
 *	binding "nothing" { event = "mail"; sink = "builtin:noop"; }
 * DESCRIPTION
 *	For any event: answers SINK_CONTINUE and does nothing else (no
 *	instance, no properties, no access to the context).  It is the unit
 *	of dispatch overhead: what a binding costs when its sink costs
 *	nothing (bench/sink-bench --section sink-dispatch, bench/sinks.sh).
 *	Properties, if given, are ignored.
 */
#include "sinks/sink.h"

static enum sink_verdict noop_handle(void *instance, struct sink_ctx *ctx)
{
    (void)instance;
    (void)ctx;
    return SINK_CONTINUE;
}

const struct sink_module sink_builtin_noop = {
    SINK_MODULE_HEAD,
    .name = "noop",
    .events = SINK_EVMASK(SINK_EV_COUNT) - 1, /* every event */
    .handle = noop_handle,
};
