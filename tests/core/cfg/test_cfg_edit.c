/*
 * NAME
 *	test_cfg_edit - replacing, removing and appending one labelled block of
 *	sluice.conf as text: the rest byte for byte, the result reparses
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cfg/cfg.h"
#include "core/cfg/cfg_edit.h"
#include "core/cfg/cfg_int.h"

static const char conf[] = "# a comment that mentions binding \"a\" { }\n"
                           "listen = \"127.0.0.1:2525\";\n"
                           "/* binding \"a\" { event = \"x\"; }\n"
                           "   /* nested */ still a comment */\n"
                           "hostname = \"binding \\\"a\\\" {\";  // a string, not a block\n"
                           "\n"
                           "transport {\n"
                           "  binding \"a\" { inner = 1; }  # not top level\n"
                           "}\n"
                           "binding \"b\" { event = \"mail\"; }\n"
                           "   binding \"a\" {   # the one\n"
                           "     event = \"mail\"; properties { text = \"}\"; }\n"
                           "   };\n"
                           "binding 'c' { event = \"rcpt\"; } max_errors = 3\n";

static char *edit(const char *text, const char *label, const char *block, int want)
{
    char *out = NULL, err[256] = "";
    size_t len = 0;
    int rc =
        cfg_edit_text(text, strlen(text), "binding", label, block, &out, &len, err, sizeof(err));
    cr_assert_eq(rc, want, "%s: rc %d: %s", label, rc, err);
    if (rc == 0) {
        cr_assert_eq(strlen(out), len);
        struct cfg_node *tree = cfg_parse(out, len, "edited", err, sizeof(err));
        cr_assert_not_null(tree, "the result parses: %s\n%s", err, out);
        cfg_node_free(tree);
    }
    return out;
}

static const struct cfg_node *find(const struct cfg_node *tree, const char *label)
{
    for (size_t i = 0; i < cfg_node_count(tree); i++) {
        const struct cfg_node *n = cfg_node_at(tree, i);
        if (strcmp(cfg_node_key(n), "binding") == 0 && strcmp(cfg_node_label(n), label) == 0)
            return n;
    }
    return NULL;
}

Test(cfg_edit, replace_keeps_everything_else)
{
    const char *nb = "binding \"a\" {\n    event = \"rcpt\";\n}\n";
    char *out = edit(conf, "a", nb, 0);
    const char *at = strstr(conf, "binding \"a\" {   # the one");
    cr_assert_not_null(at);
    size_t pre = (size_t)(at - conf);
    cr_assert_eq(memcmp(out, conf, pre), 0, "before the block: the same bytes");
    cr_assert_eq(strncmp(out + pre, nb, strlen(nb) - 1), 0, "%s", out);
    const char *post = "\nbinding 'c' { event = \"rcpt\"; } max_errors = 3\n";
    cr_assert_str_eq(out + pre + strlen(nb) - 1, post, "the `;` went with the block");

    char err[256];
    struct cfg_node *tree = cfg_parse(out, strlen(out), "x", err, sizeof(err));
    const struct cfg_node *a = find(tree, "a");
    cr_assert_not_null(a);
    cr_assert_str_eq(cfg_node_str(cfg_node_get(a, "event")), "rcpt");
    cr_assert_null(cfg_node_get(a, "properties"));
    cr_assert_eq(cfg_node_int(cfg_node_get(cfg_node_get(cfg_node_get(tree, "transport"), "binding"),
                                           "inner")),
                 1);
    cr_assert_str_eq(cfg_node_str(cfg_node_get(tree, "hostname")), "binding \"a\" {");
    cfg_node_free(tree);
    free(out);

    /* a quoted label with single quotes, followed on its line by more */
    out = edit(conf, "c", "binding \"c\" { event = \"data\"; }", 0);
    cr_assert_not_null(strstr(out, "binding \"c\" { event = \"data\"; } max_errors = 3\n"), "%s",
                       out);
    free(out);
}

Test(cfg_edit, remove_takes_its_lines)
{
    char *out = edit(conf, "a", NULL, 0);
    const char *at = strstr(conf, "   binding \"a\" {   # the one");
    size_t pre = (size_t)(at - conf);
    cr_assert_eq(memcmp(out, conf, pre), 0);
    cr_assert_str_eq(out + pre, "binding 'c' { event = \"rcpt\"; } max_errors = 3\n", "%s", out);
    free(out);

    /* not alone on its line: only the block goes */
    out = edit(conf, "c", NULL, 0);
    cr_assert_not_null(strstr(out, "   };\n max_errors = 3\n"), "%s", out);
    free(out);

    edit(conf, "zz", NULL, -ENOENT);
}

Test(cfg_edit, append)
{
    char *out = edit(conf, "new", "binding \"new\" { event = \"eod\"; }\n", 0);
    size_t n = strlen(conf);
    cr_assert_eq(memcmp(out, conf, n), 0);
    cr_assert_str_eq(out + n, "binding \"new\" { event = \"eod\"; }\n");
    free(out);

    /* no newline at the end of the file; an empty file */
    out = edit("max_errors = 3", "n", "binding \"n\" { }", 0);
    cr_assert_str_eq(out, "max_errors = 3\nbinding \"n\" { }\n");
    free(out);
    out = edit("", "n", "binding \"n\" { }", 0);
    cr_assert_str_eq(out, "binding \"n\" { }\n");
    free(out);

    /* a braced (JSON-like) file: before its closing brace */
    out = edit("{\n  \"max_errors\": 3\n}\n", "n", "binding \"n\" { }", 0);
    cr_assert_str_eq(out, "{\n  \"max_errors\": 3\nbinding \"n\" { }\n}\n", "%s", out);
    free(out);
}

Test(cfg_edit, unbalanced)
{
    edit("binding \"a\" { event = 1;\n", "a", "binding \"a\" { }", -EINVAL);
    edit("x = 1; }\n", "a", "binding \"a\" { }", -EINVAL);
}

Test(cfg_edit, file_atomic)
{
    char dir[] = "/tmp/sluice-cfgedit-XXXXXX", path[256], link[256], err[256] = "";
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/real.conf", dir);
    snprintf(link, sizeof(link), "%s/sluice.conf", dir);
    FILE *f = fopen(path, "w");
    fputs(conf, f);
    fclose(f);
    chmod(path, 0600);
    cr_assert_eq(symlink("real.conf", link), 0);

    cr_assert_eq(cfg_edit_block(link, "binding", "b", NULL, err, sizeof(err)), 0, "%s", err);
    struct stat st;
    cr_assert_eq(lstat(link, &st), 0);
    cr_assert(S_ISLNK(st.st_mode), "the link stays a link");
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    char *text;
    size_t len;
    cr_assert_eq(cfg_edit_read(path, &text, &len, err, sizeof(err)), 0);
    cr_assert_null(strstr(text, "binding \"b\""));
    free(text);

    /* a block that would not parse is refused, the file untouched */
    cr_assert_eq(cfg_edit_block(link, "binding", "a", "binding \"a\" { event = ", err, sizeof(err)),
                 -EINVAL);
    cr_assert(strstr(err, "would not parse") != NULL, "%s", err);
    cr_assert_eq(cfg_edit_read(path, &text, &len, err, sizeof(err)), 0);
    cr_assert_not_null(strstr(text, "# the one"));
    free(text);

    /* no temporary file left behind */
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) -eq 2", dir);
    cr_assert_eq(system(cmd), 0);
    unlink(link);
    unlink(path);
    rmdir(dir);
}

/* out is text with text's only occurrence of old replaced by new: every
 * byte outside the edited entry is the same. */
static void only_changed(const char *text, const char *out, const char *old, const char *new)
{
    const char *at = strstr(text, old);
    cr_assert_not_null(at, "[%s] not in the text", old);
    cr_assert_null(strstr(at + 1, old), "[%s] twice in the text", old);
    size_t pre = (size_t)(at - text), olen = strlen(old), nlen = strlen(new);
    cr_assert_eq(strlen(out), strlen(text) - olen + nlen, "%s", out);
    cr_assert_eq(memcmp(out, text, pre), 0, "before the entry: %s", out);
    cr_assert_eq(memcmp(out + pre, new, nlen), 0, "the entry: %s", out);
    cr_assert_str_eq(out + pre + nlen, at + olen, "after the entry");
}

/* The event of binding LABEL once the edited text is parsed (and lifted,
 * as cfg_load does), or NULL when there is no such binding; *count: how
 * many bindings have that label. */
static const char *event_after(const char *out, const char *label, int *count)
{
    static char ev[64];
    char e[256];
    struct cfg_node *t = cfg_parse(out, strlen(out), "edited", e, sizeof(e));
    cr_assert_not_null(t, "%s", e);
    cr_assert_eq(cfg_node_lift(t, "binding"), 0);
    const char *r = NULL;
    *count = 0;
    for (size_t i = 0; i < cfg_node_count(t); i++) {
        const struct cfg_node *n = cfg_node_at(t, i);
        if (strcmp(cfg_node_key(n), "binding") != 0 || cfg_node_label(n) == NULL ||
            strcmp(cfg_node_label(n), label) != 0)
            continue;
        ++*count;
        snprintf(ev, sizeof(ev), "%s", cfg_node_str(cfg_node_get(n, "event")));
        r = ev;
    }
    cfg_node_free(t);
    return r;
}

/* What the edit scan of old read differently from the parser: labels
 * with escapes, `//` inside a bare word, comments with quotes and braces. */
Test(cfg_edit, one_lexer_escapes_and_comments)
{
    static const char text[] = "# it's a \"quote\" and a { brace\n"
                               "/* ' } \" { */ relayhost = smtp//relay.test; "
                               "binding \"a\" { event = \"mail\"; }\n"
                               "binding \"caf\\u00e9\" { event = \"rcpt\"; }\n"
                               "binding \"tab\\tbed\" { event = \"rcpt\"; }\n"
                               "binding \"sl\\/ash\" { event = \"rcpt\"; } ; x = 'C:\\\\'\n"
                               "binding 'q\\'uote' { event = \"rcpt\"; }\n";
    static const struct {
        const char *label, *entry;
    } cases[] = {
        {"a", "binding \"a\" { event = \"mail\"; }"},
        {"caf\xc3\xa9", "binding \"caf\\u00e9\" { event = \"rcpt\"; }"},
        {"tab\tbed", "binding \"tab\\tbed\" { event = \"rcpt\"; }"},
        {"sl/ash", "binding \"sl\\/ash\" { event = \"rcpt\"; } ;"},
        {"q'uote", "binding 'q\\'uote' { event = \"rcpt\"; }"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char nb[128];
        snprintf(nb, sizeof(nb), "binding \"x\" { event = \"data\"; }"); /* label: the caller's */
        char *out = edit(text, cases[i].label, nb, 0);
        only_changed(text, out, cases[i].entry, nb);
        int count;
        cr_assert_eq(event_after(out, cases[i].label, &count), NULL, "replaced, not appended");
        cr_assert_eq(count, 0);
        free(out);
    }
    /* removed: the rest of the line stays when the block shares it */
    char *out = edit(text, "a", NULL, 0);
    only_changed(text, out, "binding \"a\" { event = \"mail\"; }", "");
    free(out);
    out = edit(text, "caf\xc3\xa9", NULL, 0);
    only_changed(text, out, "binding \"caf\\u00e9\" { event = \"rcpt\"; }\n", "");
    free(out);
    /* a label as it is written (escaped) is not the label */
    edit(text, "caf\\u00e9", NULL, -ENOENT);
}

/* A JSON file: "binding": {"NAME": {...}} is binding "NAME" { } (as libucl
 * reads it); an edit keeps the key and the JSON around the braces. */
Test(cfg_edit, json_file_round_trip)
{
    static const char json[] =
        "{\n"
        "  \"max_errors\": 3,\n"
        "  \"binding\": {\n"
        "    \"tag\": {\"event\": \"mail\", \"sink\": \"builtin:noop\"},\n"
        "    \"caf\\u00e9\": {\"event\": \"rcpt\", \"sink\": \"builtin:noop\", \"x\": \"}\\\"{\"}\n"
        "  },\n"
        "  \"hostname\": \"mx.example.test\"\n"
        "}\n";
    int count;
    cr_assert_str_eq(event_after(json, "tag", &count), "mail");

    char *out = edit(json, "tag", "binding \"tag\" {\n  event = \"data\";\n}\n", 0);
    only_changed(json, out, "{\"event\": \"mail\", \"sink\": \"builtin:noop\"}",
                 "{\n  event = \"data\";\n}");
    cr_assert_str_eq(event_after(out, "tag", &count), "data");
    cr_assert_eq(count, 1);
    cr_assert_str_eq(event_after(out, "caf\xc3\xa9", &count), "rcpt");
    free(out);

    out = edit(json, "caf\xc3\xa9", NULL, 0);
    only_changed(json, out,
                 "    \"caf\\u00e9\": {\"event\": \"rcpt\", \"sink\": \"builtin:noop\", \"x\": "
                 "\"}\\\"{\"}\n",
                 "");
    cr_assert_null(event_after(out, "caf\xc3\xa9", &count));
    cr_assert_str_eq(event_after(out, "tag", &count), "mail");
    /* and the last one: an empty "binding": {} is no binding at all */
    char *out2 = edit(out, "tag", NULL, 0);
    cr_assert_null(event_after(out2, "tag", &count));
    cr_assert_not_null(strstr(out2, "\"binding\": {\n  },"), "%s", out2);
    free(out2);
    free(out);

    /* a new one goes before the file's closing brace */
    out = edit(json, "new", "binding \"new\" { event = \"eod\"; }\n", 0);
    size_t n = strlen(json) - 2; /* "}\n" */
    cr_assert_eq(memcmp(out, json, n), 0);
    cr_assert_str_eq(out + n, "binding \"new\" { event = \"eod\"; }\n}\n");
    cr_assert_str_eq(event_after(out, "new", &count), "eod");
    free(out);

    /* a replacement that is not a block is refused, not half-applied */
    edit(json, "tag", "event = 1", -EINVAL);
    edit(json, "tag", "binding \"tag\" { event = ", -EINVAL);
}

Test(cfg_edit, unparsable_file_says_where)
{
    char *out = NULL, e[256] = "";
    size_t len;
    const char *bad = "a = 1\nbinding \"a\" { event = \"x\n";
    cr_assert_eq(cfg_edit_text(bad, strlen(bad), "binding", "a", NULL, &out, &len, e, sizeof(e)),
                 -EINVAL);
    cr_assert_str_eq(e, "cannot find binding \"a\": the file does not parse: line 2: "
                        "unterminated string");
}
