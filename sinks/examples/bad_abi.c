/*
 * NAME
 *	bad_abi - a module built for another sink ABI (for tests only)
 * DESCRIPTION
 *	Claims abi_version SINK_ABI_VERSION + 1, as a module compiled against
 *	a newer sink.h would.  sluiced must refuse to load it, naming both
 *	versions; tests/sinks/test_module.c checks the message.
 */
#include "sinks/sink.h"

static enum sink_verdict bad_abi_handle(void *instance, struct sink_ctx *ctx)
{
    (void)instance;
    (void)ctx;
    return SINK_CONTINUE;
}

static const struct sink_module bad_abi_module = {
    .abi_version = SINK_ABI_VERSION + 1,
    .name = "bad_abi",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .handle = bad_abi_handle,
};

SINK_MODULE(bad_abi_module)
