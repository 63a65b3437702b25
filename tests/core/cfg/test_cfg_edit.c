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
