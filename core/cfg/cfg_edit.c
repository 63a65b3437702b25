/*
 * NAME
 *	cfg_edit - text-level edits of sluice.conf: one labelled block at a time
 * SYNOPSIS
 *	#include "core/cfg/cfg_edit.h"
 *
 *	int cfg_edit_text(const char *text, size_t len, const char *key,
 *			  const char *label, const char *block, char **out,
 *			  size_t *outlen, char *err, size_t errlen);
 *	int cfg_edit_block(const char *path, const char *key, const char *label,
 *			   const char *block, char *err, size_t errlen);
 * DESCRIPTION
 *	One lexer: the text is parsed with cfg_parse.c's parser, which records
 *	for every node the span of its entry in the text (cfg_int.h): the
 *	block to replace or remove is found in the tree, not by a scan of its
 *	own, so comments, strings and escapes mean here what they mean to
 *	the daemon.  A block is the first top-level node with key KEY and
 *	label LABEL; its entry runs from the key through the closing brace and
 *	a `;` or `,` on the same line.  A JSON file's `"KEY": {"LABEL": {...}}`
 *	counts too (cfg_node_lift): there only the braces of LABEL's value
 *	are replaced, so the file keeps its `"LABEL":`.
 *
 *	The result of an edit is checked by the caller (cfg_edit_block parses
 *	it) before it replaces anything on disk.
 */
#include "core/cfg/cfg_edit.h"

#include "core/cfg/cfg_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_EDIT_MAX (4u << 20) /* as cfg_parse: no bigger file is a configuration */

/* The first top-level KEY "LABEL" block of tree, or NULL. */
static const struct cfg_node *cfg_edit_find(const struct cfg_node *tree, const char *key,
                                            const char *label)
{
    for (size_t i = 0; i < tree->nkid; i++) {
        const struct cfg_node *n = tree->kid[i];
        if (n->type == CFG_OBJECT && n->label != NULL && strcmp(n->key, key) == 0 &&
            strcmp(n->label, label) == 0)
            return n;
    }
    return NULL;
}

/*
 * The new text of a lifted block: `"NAME": { ... }` keeps its key and takes
 * the braces of block (`KEY "NAME" { ... }`, parsed for them).  *v0, *v1:
 * the braces in block.  0 or -EINVAL.
 */
static int cfg_edit_braces(const char *block, size_t blen, size_t *v0, size_t *v1, char *err,
                           size_t errlen)
{
    char perr[256];
    struct cfg_node *b = cfg_parse_lines(block, blen, perr, sizeof(perr));
    if (b == NULL) {
        snprintf(err, errlen, "the new block does not parse: %s", perr);
        return -EINVAL;
    }
    int rc = 0;
    if (b->nkid == 1 && b->kid[0]->type == CFG_OBJECT) {
        *v0 = b->kid[0]->vstart;
        *v1 = b->kid[0]->vend;
    } else {
        snprintf(err, errlen, "the new text is not one block");
        rc = -EINVAL;
    }
    cfg_node_free(b);
    return rc;
}

/* Widens [*cut0, *cut1) to its whole lines when nothing else is on them. */
static void cfg_edit_lines(const char *text, size_t len, size_t *cut0, size_t *cut1)
{
    size_t a = *cut0, z = *cut1;
    while (a > 0 && (text[a - 1] == ' ' || text[a - 1] == '\t'))
        a--;
    while (z < len && (text[z] == ' ' || text[z] == '\t' || text[z] == '\r'))
        z++;
    if ((a == 0 || text[a - 1] == '\n') && (z == len || text[z] == '\n')) {
        *cut0 = a;
        *cut1 = z < len ? z + 1 : z;
    }
}

int cfg_edit_text(const char *text, size_t len, const char *key, const char *label,
                  const char *block, char **out, size_t *outlen, char *err, size_t errlen)
{
    char perr[256];
    struct cfg_node *tree = cfg_parse_lines(text, len, perr, sizeof(perr));
    if (tree == NULL) {
        snprintf(err, errlen, "cannot find %s \"%s\": the file does not parse: %s", key, label,
                 perr);
        return -EINVAL;
    }
    int rc = cfg_node_lift(tree, key);
    const struct cfg_node *n = rc == 0 ? cfg_edit_find(tree, key, label) : NULL;
    size_t blen = block ? strlen(block) : 0, b0 = 0;
    while (blen > 0 && (block[blen - 1] == '\n' || block[blen - 1] == '\r'))
        blen--;
    const char *pre = "", *post = "";
    size_t cut0, cut1; /* text[cut0, cut1) is replaced by pre, block[b0, blen), post */
    if (rc < 0) {
        snprintf(err, errlen, "out of memory");
    } else if (n == NULL && block == NULL) {
        snprintf(err, errlen, "no %s \"%s\" block", key, label);
        rc = -ENOENT;
    } else if (n == NULL) {
        /* appended: at the end, or before the closing brace of a braced file */
        cut0 = cut1 = tree->braced ? tree->vend - 1 : len;
        if (cut0 > 0 && text[cut0 - 1] != '\n')
            pre = "\n";
        post = "\n";
    } else if (block == NULL) {
        cut0 = n->start;
        cut1 = n->end;
        cfg_edit_lines(text, len, &cut0, &cut1);
    } else if (n->lifted) {
        cut0 = n->vstart;
        cut1 = n->vend;
        rc = cfg_edit_braces(block, blen, &b0, &blen, err, errlen);
    } else {
        cut0 = n->start;
        cut1 = n->end;
    }
    cfg_node_free(tree);
    if (rc < 0)
        return rc;
    size_t npre = strlen(pre), npost = strlen(post), nb = blen - b0;
    size_t total = cut0 + npre + nb + npost + (len - cut1);
    char *o = malloc(total + 1);
    if (o == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t k = 0;
    memcpy(o + k, text, cut0), k += cut0;
    memcpy(o + k, pre, npre), k += npre;
    if (nb > 0)
        memcpy(o + k, block + b0, nb), k += nb;
    memcpy(o + k, post, npost), k += npost;
    memcpy(o + k, text + cut1, len - cut1), k += len - cut1;
    o[k] = '\0';
    *out = o;
    *outlen = k;
    return 0;
}

int cfg_edit_read(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
    int fd = cfg_file_open(path, err, errlen);
    if (fd < 0)
        return fd;
    FILE *f = fdopen(fd, "rb");
    if (f == NULL) {
        int rc = -errno;
        close(fd);
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    size_t cap = 4096, n = 0;
    char *s = malloc(cap + 1);
    int rc = 0;
    while (s != NULL) {
        if (n == cap) {
            char *t = cap < CFG_EDIT_MAX ? realloc(s, 2 * cap + 1) : NULL;
            if (t == NULL) {
                rc = cap < CFG_EDIT_MAX ? -ENOMEM : -EFBIG;
                break;
            }
            s = t;
            cap *= 2;
        }
        size_t r = fread(s + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f))
                rc = -EIO;
            break;
        }
    }
    fclose(f);
    if (s == NULL)
        rc = -ENOMEM;
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path,
                 rc == -EFBIG ? "too big for a configuration" : strerror(-rc));
        free(s);
        return rc;
    }
    s[n] = '\0';
    *text = s;
    *len = n;
    return 0;
}

static int cfg_edit_fail(char *err, size_t errlen, const char *path, const char *what)
{
    int rc = -errno;
    snprintf(err, errlen, "%s: %s: %s", path, what, strerror(-rc));
    return rc;
}

int cfg_edit_write(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    /* A symbolic link stays one: write its target. */
    char real[PATH_MAX];
    const char *target = realpath(path, real) != NULL ? real : path;
    char tmp[PATH_MAX + 16], dir[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", target) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    snprintf(dir, sizeof(dir), "%s", target);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    struct stat st;
    bool had = stat(target, &st) == 0;
    int fd = mkstemp(tmp);
    if (fd < 0)
        return cfg_edit_fail(err, errlen, path, "temporary file");
    int rc = 0;
    const char *what = NULL;
    if (had && fchmod(fd, st.st_mode & 07777) < 0)
        what = "chmod";
    if (had && what == NULL && fchown(fd, st.st_uid, st.st_gid) < 0 && errno != EPERM)
        what = "chown";
    for (size_t off = 0; what == NULL && off < len;) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            what = "write";
        else
            off += (size_t)w;
    }
    if (what == NULL && fsync(fd) < 0)
        what = "fsync";
    if (what != NULL) {
        rc = cfg_edit_fail(err, errlen, path, what);
        close(fd);
        unlink(tmp);
        return rc;
    }
    if (close(fd) < 0 || rename(tmp, target) < 0) {
        rc = cfg_edit_fail(err, errlen, path, "rename");
        unlink(tmp);
        return rc;
    }
    /* The rename is durable once the directory is. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        rc = cfg_edit_fail(err, errlen, dir, "fsync");
        if (dfd >= 0)
            close(dfd);
        return rc;
    }
    close(dfd);
    return 0;
}

int cfg_edit_block(const char *path, const char *key, const char *label, const char *block,
                   char *err, size_t errlen)
{
    char *text = NULL, *out = NULL;
    size_t len, outlen;
    int rc = cfg_edit_read(path, &text, &len, err, errlen);
    if (rc < 0)
        return rc;
    char perr[512];
    rc = cfg_edit_text(text, len, key, label, block, &out, &outlen, perr, sizeof(perr));
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, perr);
    } else {
        struct cfg_node *tree = cfg_parse(out, outlen, path, perr, sizeof(perr));
        if (tree == NULL) {
            snprintf(err, errlen, "%s: the edited file would not parse: %s", path, perr);
            rc = -EINVAL;
        } else {
            cfg_node_free(tree);
            rc = cfg_edit_write(path, out, outlen, err, errlen);
        }
    }
    free(text);
    free(out);
    return rc;
}
