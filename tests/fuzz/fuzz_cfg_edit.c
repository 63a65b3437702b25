/*
 * NAME
 *	fuzz_cfg_edit - text-level edits of sluice.conf (core/cfg/cfg_edit.c)
 * DESCRIPTION
 *	The first octet chooses the edit: which label (a bare word, one that
 *	needs quotes, or one with an escape) and whether the block is
 *	replaced (or appended) or removed; the rest is the file's text.
 *
 *	Invariants: an edit that fails says why; when the text parses
 *	(cfg_parse), the edited text parses too (the scan that finds the
 *	block follows the parser's lexical rules, so an edit never lands in
 *	a comment or a string), a replaced or appended block is then in the
 *	tree as a top-level `binding` with that label, and a removed one is
 *	not.
 */
#include "tests/fuzz/fuzz.h"

#include <string.h>

#include "core/cfg/cfg.h"
#include "core/cfg/cfg_edit.h"

static const char *const labels[] = {"a", "fuzz", "two words", "x-1.y"};

static size_t count_label(const struct cfg_node *t, const char *label)
{
    size_t k = 0, n = cfg_node_count(t);
    for (size_t i = 0; i < n; i++) {
        const struct cfg_node *c = cfg_node_at(t, i);
        const char *key = cfg_node_key(c), *l = cfg_node_label(c);
        if (key && l && strcmp(key, "binding") == 0 && strcmp(l, label) == 0)
            k++;
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t mode = fuzz_u8(&in);
    if (in.n > 65536)
        return 0;
    const char *label = labels[mode % 4];
    bool remove = (mode & 4) != 0;
    char block[128];
    snprintf(block, sizeof(block), "binding \"%s\" {\n    sink = \"noop\"\n}", label);
    size_t len;
    const char *text = (const char *)fuzz_take(&in, in.n, &len);

    char err[512] = "";
    char *out = NULL;
    size_t outlen = 0;
    int rc = cfg_edit_text(text, len, "binding", label, remove ? NULL : block, &out, &outlen, err,
                           sizeof(err));
    if (rc != 0) {
        FUZZ_CHECK(rc < 0 && err[0] != '\0', "rc %d without a reason", rc);
        return 0;
    }
    FUZZ_CHECK(out != NULL && out[outlen] == '\0', "out %zu", outlen);
    struct cfg_node *before = cfg_parse(text, len, "before", err, sizeof(err));
    if (before != NULL && memchr(text, '\0', len) == NULL) {
        size_t had = count_label(before, label);
        struct cfg_node *after = cfg_parse(out, outlen, "after", err, sizeof(err));
        FUZZ_CHECK(after != NULL, "the edited text does not parse: %s", err);
        size_t has = count_label(after, label);
        if (remove)
            FUZZ_CHECK(has + 1 == had, "removed: %zu blocks before, %zu after", had, has);
        else
            FUZZ_CHECK(has >= 1 && has <= had + 1, "set: %zu blocks before, %zu after", had, has);
        cfg_node_free(after);
    }
    cfg_node_free(before);
    free(out);
    return 0;
}
