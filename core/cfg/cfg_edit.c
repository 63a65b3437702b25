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
 *	The scan follows cfg_parse.c's lexical rules closely enough to find
 *	members of the top level: it tracks the nesting of { } and [ ],
 *	skips comments and strings, and knows where a member may start (the
 *	beginning, after ; or , or a newline, after a block).  A member whose
 *	key is KEY, followed by a label (quoted or a bare word) equal to
 *	LABEL and an opening brace, is the block: from its key to the
 *	matching brace and a `;` right after it, if any.
 *
 *	The result of an edit is checked by the caller (cfg_edit_block parses
 *	it) before it replaces anything on disk.
 */
#include "core/cfg/cfg_edit.h"

#include "core/cfg/cfg.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_EDIT_MAX (4u << 20) /* as cfg_parse: no bigger file is a configuration */

struct cfg_span {
    size_t start, end; /* [start, end): key .. closing brace (and `;`) */
};

/* Skips a comment at *i; false if there is none. */
static bool cfg_edit_comment(const char *s, size_t n, size_t *i)
{
    size_t k = *i;
    if (s[k] == '#' || (s[k] == '/' && k + 1 < n && s[k + 1] == '/')) {
        while (k < n && s[k] != '\n')
            k++;
    } else if (s[k] == '/' && k + 1 < n && s[k + 1] == '*') {
        int depth = 0; /* C comments nest in sluice.conf */
        while (k < n) {
            if (s[k] == '/' && k + 1 < n && s[k + 1] == '*') {
                depth++;
                k += 2;
            } else if (s[k] == '*' && k + 1 < n && s[k + 1] == '/') {
                k += 2;
                if (--depth == 0)
                    break;
            } else {
                k++;
            }
        }
    } else {
        return false;
    }
    *i = k;
    return true;
}

/* Skips the string at *i (its quote there); copies its value into buf
 * (NULL: not wanted).  Only \" \\ and \' are decoded: enough to compare
 * a label. */
static void cfg_edit_string(const char *s, size_t n, size_t *i, char *buf, size_t buflen)
{
    char q = s[*i];
    size_t k = *i + 1, o = 0;
    while (k < n && s[k] != q) {
        char c = s[k];
        if (c == '\\' && k + 1 < n) {
            char d = s[k + 1];
            if (d == '"' || d == '\\' || d == '\'')
                c = d, k++;
        }
        if (buf != NULL && o + 1 < buflen)
            buf[o++] = c;
        k++;
    }
    if (buf != NULL && buflen > 0)
        buf[o] = '\0';
    *i = k < n ? k + 1 : n;
}

static bool cfg_edit_wordch(char c)
{
    return c != ' ' && c != '\t' && c != '\r' && c != '\n' && !strchr(";,={}[]:\"'#", c);
}

/* Skips blanks, newlines and comments. */
static void cfg_edit_skip(const char *s, size_t n, size_t *i)
{
    while (*i < n) {
        char c = s[*i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            (*i)++;
        else if (!cfg_edit_comment(s, n, i))
            return;
    }
}

/* Reads a label (string or bare word) at *i into buf; false if none.  A
 * key ends at a '/' as in the parser (so "key/" "*" opens a comment); a
 * value word runs on over a single '/' ("a/b"). */
static bool cfg_edit_word(const char *s, size_t n, size_t *i, char *buf, size_t buflen, bool key)
{
    if (*i >= n)
        return false;
    if (s[*i] == '"' || s[*i] == '\'') {
        cfg_edit_string(s, n, i, buf, buflen);
        return true;
    }
    size_t k = *i;
    while (k < n && cfg_edit_wordch(s[k]) && !(s[k] == '/' && k + 1 < n && s[k + 1] == '/') &&
           !(key && s[k] == '/'))
        k++;
    if (k == *i)
        return false;
    snprintf(buf, buflen, "%.*s", (int)(k - *i), s + *i);
    *i = k;
    return true;
}

static bool cfg_edit_label(const char *s, size_t n, size_t *i, char *buf, size_t buflen)
{
    return cfg_edit_word(s, n, i, buf, buflen, false);
}

/* The brace matching the one at *i; *i past it.  false: unbalanced. */
static bool cfg_edit_close(const char *s, size_t n, size_t *i)
{
    int depth = 0;
    size_t k = *i;
    while (k < n) {
        char c = s[k];
        if (c == '"' || c == '\'') {
            cfg_edit_string(s, n, &k, NULL, 0);
            continue;
        }
        if (cfg_edit_comment(s, n, &k))
            continue;
        k++;
        if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0) {
            *i = k;
            return true;
        }
    }
    return false;
}

/*
 * Finds the block; *at: where to append one (the end, or the closing
 * brace of a braced file).  1 found, 0 not found, -EINVAL unbalanced.
 */
static int cfg_edit_find(const char *s, size_t n, const char *key, const char *label,
                         struct cfg_span *sp, size_t *at)
{
    size_t i = 0;
    cfg_edit_skip(s, n, &i);
    int base = i < n && s[i] == '{' ? 1 : 0, depth = 0;
    bool expect_key = true;
    /* a word where the parser reads a key (in an object, after { ; , or a
     * newline) ends at '/'; inside a list items are values.  inlist: one
     * bit per depth (the parser refuses nesting deeper than 32). */
    uint64_t inlist = 0;
    bool keypos = true;
    char word[256];
    *at = n;
    while (i < n) {
        char c = s[i];
        if (c == '\n') {
            if (depth == base)
                expect_key = true;
            keypos = depth < 64 && !(inlist >> depth & 1);
            i++;
        } else if (c == ' ' || c == '\t' || c == '\r' || cfg_edit_comment(s, n, &i)) {
            if (c == ' ' || c == '\t' || c == '\r')
                i++;
        } else if (c == '{' || c == '[') {
            depth++;
            if (depth < 64)
                inlist = (inlist & ~(UINT64_C(1) << depth)) | (uint64_t)(c == '[') << depth;
            keypos = c == '{';
            i++;
        } else if (c == '}' || c == ']') {
            if (--depth < 0)
                return -EINVAL;
            if (depth == 0 && base == 1)
                *at = i; /* a braced file: new blocks go before its brace */
            if (depth == base)
                expect_key = true;
            keypos = false;
            i++;
        } else if (c == ';' || c == ',') {
            if (depth == base)
                expect_key = true;
            keypos = depth < 64 && !(inlist >> depth & 1);
            i++;
        } else {
            size_t start = i;
            bool candidate = depth == base && expect_key;
            if (depth == base)
                expect_key = false;
            bool atkey = keypos;
            keypos = false;
            if (!cfg_edit_word(s, n, &i, word, sizeof(word), atkey)) {
                i++; /* a stray character (= or :): the parser judges it */
                continue;
            }
            if (!candidate || strcmp(word, key) != 0)
                continue;
            size_t k = i;
            cfg_edit_skip(s, n, &k);
            if (!cfg_edit_label(s, n, &k, word, sizeof(word)) || strcmp(word, label) != 0)
                continue;
            cfg_edit_skip(s, n, &k);
            if (k >= n || s[k] != '{')
                continue;
            if (!cfg_edit_close(s, n, &k))
                return -EINVAL;
            size_t e = k;
            while (e < n && (s[e] == ' ' || s[e] == '\t'))
                e++;
            sp->start = start;
            sp->end = e < n && s[e] == ';' ? e + 1 : k;
            return 1;
        }
    }
    return depth == 0 ? 0 : -EINVAL;
}

int cfg_edit_text(const char *text, size_t len, const char *key, const char *label,
                  const char *block, char **out, size_t *outlen, char *err, size_t errlen)
{
    struct cfg_span sp;
    size_t at;
    int found = cfg_edit_find(text, len, key, label, &sp, &at);
    if (found < 0) {
        snprintf(err, errlen, "unbalanced braces: cannot find %s \"%s\"", key, label);
        return found;
    }
    if (!found && block == NULL) {
        snprintf(err, errlen, "no %s \"%s\" block", key, label);
        return -ENOENT;
    }
    size_t blen = block ? strlen(block) : 0;
    while (blen > 0 && (block[blen - 1] == '\n' || block[blen - 1] == '\r'))
        blen--;
    const char *pre = "", *post = "";
    size_t cut0, cut1; /* text[cut0, cut1) is replaced by pre, block, post */
    if (found && block != NULL) {
        cut0 = sp.start;
        cut1 = sp.end;
    } else if (found) {
        /* the whole lines of the block when it has them to itself */
        cut0 = sp.start;
        cut1 = sp.end;
        size_t a = cut0, z = cut1;
        while (a > 0 && (text[a - 1] == ' ' || text[a - 1] == '\t'))
            a--;
        while (z < len && (text[z] == ' ' || text[z] == '\t' || text[z] == '\r'))
            z++;
        if ((a == 0 || text[a - 1] == '\n') && (z == len || text[z] == '\n')) {
            cut0 = a;
            cut1 = z < len ? z + 1 : z;
        }
    } else {
        cut0 = cut1 = at;
        if (at > 0 && text[at - 1] != '\n')
            pre = "\n";
        post = "\n";
    }
    size_t n = cut0 + strlen(pre) + blen + strlen(post) + (len - cut1);
    char *o = malloc(n + 1);
    if (o == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t k = 0;
    memcpy(o + k, text, cut0), k += cut0;
    memcpy(o + k, pre, strlen(pre)), k += strlen(pre);
    if (blen > 0)
        memcpy(o + k, block, blen), k += blen;
    memcpy(o + k, post, strlen(post)), k += strlen(post);
    memcpy(o + k, text + cut1, len - cut1), k += len - cut1;
    o[k] = '\0';
    *out = o;
    *outlen = k;
    return 0;
}

int cfg_edit_read(const char *path, char **text, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int rc = -errno;
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
