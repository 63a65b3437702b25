/*
 * NAME
 *	fuzz_cfg - the configuration parser and loader
 * DESCRIPTION
 *	The input is a sluice.conf.  cfg_parse() reads it into a tree, which
 *	is walked (every node's label, type accessors and children); then
 *	cfg_load() loads it the way sluiced does (the settings table, the
 *	checks, the binding blocks), from a memfd.
 *
 *	Invariants: an error says why in one NUL-terminated line; the tree
 *	has no more nodes than the text has octets (plus the root); a text
 *	that cfg_parse() refuses cfg_load() refuses too.
 */
#include "tests/fuzz/fuzz.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/base/log.h"
#include "core/cfg/cfg.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_ERROR);
    return 0;
}

static size_t walk(const struct cfg_node *n, unsigned depth)
{
    size_t count = 1;
    FUZZ_CHECK(depth < 10000, "tree deeper than the text");
    (void)cfg_node_label(n);
    (void)cfg_node_bool(n);
    (void)cfg_node_int(n);
    (void)cfg_node_float(n);
    (void)cfg_node_str(n);
    size_t k = cfg_node_count(n);
    for (size_t i = 0; i < k; i++) {
        const struct cfg_node *c = cfg_node_at(n, i);
        FUZZ_CHECK(c != NULL, "child %zu of %zu missing", i, k);
        count += walk(c, depth + 1);
    }
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char err[512] = "";
    struct cfg_node *t = cfg_parse((const char *)data, size, "fuzz.conf", err, sizeof(err));
    if (t == NULL) {
        FUZZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL, "reason \"%s\"", err);
    } else {
        size_t nodes = walk(t, 0);
        FUZZ_CHECK(nodes <= size + 1, "%zu nodes from %zu octets", nodes, size);
        cfg_node_free(t);
    }

    int fd = memfd_create("fuzz.conf", 0);
    FUZZ_CHECK(fd >= 0, "memfd");
    FUZZ_CHECK(write(fd, data, size) == (ssize_t)size, "write");
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    err[0] = '\0';
    struct cfg *c = cfg_load(path, NULL, 0, err, sizeof(err));
    close(fd);
    if (c == NULL)
        FUZZ_CHECK(err[0] != '\0', "cfg_load refused without a reason");
    else
        cfg_destroy(c);
    FUZZ_CHECK(t != NULL || c == NULL, "cfg_load took what cfg_parse refused");
    return 0;
}
