/*
 * NAME
 *	bad_abi - a module built for another sink ABI (for tests only)
 * DESCRIPTION
 *	Claims the next minor of this sink ABI (2.1 for a sluiced of 2.0),
 *	as a module compiled against a newer sink.h would: it may use calls
 *	or descriptor fields this sluiced does not have.  sluiced must refuse
 *	to load it, naming both versions; tests/sinks/test_module.c and
 *	tests/integration/test_sinks.py check the message.
 */
#include <sluice/sink.h>

static enum sink_verdict bad_abi_handle(void *instance, struct sink_ctx *ctx)
{
    (void)instance;
    (void)ctx;
    return SINK_CONTINUE;
}

static const struct sink_module bad_abi_module = {
    .abi_version = (uint32_t)SINK_ABI_MAJOR << 16 | (SINK_ABI_MINOR + 1),
    .size = sizeof(struct sink_module),
    .name = "bad_abi",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .handle = bad_abi_handle,
};

SINK_MODULE(bad_abi_module)
