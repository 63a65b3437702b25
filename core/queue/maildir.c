/*
 * NAME
 *	maildir - local delivery into Maildir directories
 * SYNOPSIS
 *	#include "core/queue/maildir.h"
 * DESCRIPTION
 *	The Maildir protocol (cr.yp.to/proto/maildir.html): write the file
 *	under tmp/ with a name no other delivery uses, make it durable, then
 *	rename(2) it into new/, where readers look.  A reader never sees a
 *	partial message, and a crash leaves at most a stale file in tmp/.
 *
 *	The unique name is time.M<usec>P<pid>Q<n>.host: n comes from a
 *	process-wide atomic counter, so threads of one process never collide;
 *	O_EXCL catches anything else (another program delivering into the
 *	same directory) and we pick the next n.
 *
 *	The message is streamed from the spool_msg pieces: memory pieces as
 *	they are, file pieces through one 64 KiB pread buffer; CRLF becomes LF
 *	on the way, a CR that ends one chunk being held until the next shows
 *	whether an LF follows.  A bare CR is kept.
 * DIAGNOSTICS
 *	0, -EINVAL for a local part that names no mailbox, otherwise -errno
 *	with err "maildir: OPERATION PATH: strerror".  Whatever fails, the
 *	file in tmp/ is unlinked.
 */
#include "core/queue/maildir.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define MAILDIR_BUF (64 * 1024)
#define MAILDIR_PATH 4096
#define MAILDIR_TRIES 16 /* O_EXCL collisions before giving up */

/* Uniqueness only: no other memory is published through it, so relaxed. */
static atomic_ulong maildir_seq;

static int maildir_fail(char *err, size_t errlen, int e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Fills err with "maildir: WHAT: strerror(e)" and returns -e. */
static int maildir_fail(char *err, size_t errlen, int e, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        int n = snprintf(err, errlen, "maildir: ");
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < errlen)
            n += vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n, ": %s", strerror(e));
    }
    return -e;
}

int maildir_user(const char *rcpt, char *out, size_t len)
{
    if (rcpt == NULL || out == NULL || len == 0)
        return -EINVAL;
    const char *at = strrchr(rcpt, '@');
    size_t llen = at != NULL ? (size_t)(at - rcpt) : strlen(rcpt);
    size_t n = 0;
    bool quoted = llen >= 2 && rcpt[0] == '"' && rcpt[llen - 1] == '"';
    const char *p = rcpt + (quoted ? 1 : 0);
    const char *end = rcpt + llen - (quoted ? 1 : 0);
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (quoted && c == '\\' && p + 1 < end) /* quoted-pair */
            c = (unsigned char)*++p;
        if (c == '+')
            break; /* "+detail" */
        if (c < 0x20 || c == 0x7f || c == '/')
            return -EINVAL;
        if (n + 1 >= len)
            return -EINVAL; /* too long to name a directory */
        out[n++] = (char)tolower(c);
    }
    out[n] = '\0';
    if (n == 0 || out[0] == '.' || n > 255)
        return -EINVAL; /* "", ".", "..", dot files (a Maildir++ folder is ".name") */
    return 0;
}

static int maildir_fsync_dir(const char *path)
{
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    int r = fsync(dfd) < 0 ? -errno : 0;
    close(dfd);
    return r;
}

/* mkdir -p: every missing component of path, mode 0700.  The parent of a
 * directory made here is fsynced, so the new entry survives a crash. */
static int maildir_mkdirs(char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : maildir_fail(err, errlen, ENOTDIR, "%s", path);
    if (errno != ENOENT)
        return maildir_fail(err, errlen, errno, "stat %s", path);
    char *slash = strrchr(path, '/');
    if (slash != NULL && slash != path) {
        *slash = '\0';
        int r = maildir_mkdirs(path, err, errlen);
        *slash = '/';
        if (r < 0)
            return r;
    }
    if (mkdir(path, 0700) < 0) {
        if (errno != EEXIST) /* another delivery made it meanwhile: fine */
            return maildir_fail(err, errlen, errno, "mkdir %s", path);
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
            return maildir_fail(err, errlen, ENOTDIR, "%s", path);
        return 0;
    }
    /* the new entry in the parent is durable only once the parent is synced */
    char parent[MAILDIR_PATH];
    if (slash == NULL)
        snprintf(parent, sizeof(parent), ".");
    else if (slash == path)
        snprintf(parent, sizeof(parent), "/");
    else
        snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
    int r = maildir_fsync_dir(parent);
    if (r < 0)
        return maildir_fail(err, errlen, -r, "fsync %s", parent);
    return 0;
}

/* The output side: a buffer written out with write(2) in a loop. */
struct maildir_out {
    int fd;
    size_t n;
    bool cr;   /* a CR ended the previous chunk */
    char *buf; /* MAILDIR_BUF */
};

static int maildir_flush(struct maildir_out *o)
{
    size_t off = 0;
    while (off < o->n) {
        ssize_t w = write(o->fd, o->buf + off, o->n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        off += (size_t)w;
    }
    o->n = 0;
    return 0;
}

static int maildir_put(struct maildir_out *o, const char *s, size_t len)
{
    while (len > 0) {
        if (o->n == MAILDIR_BUF) {
            int r = maildir_flush(o);
            if (r < 0)
                return r;
        }
        size_t k = MAILDIR_BUF - o->n < len ? MAILDIR_BUF - o->n : len;
        memcpy(o->buf + o->n, s, k);
        o->n += k;
        s += k;
        len -= k;
    }
    return 0;
}

/* Message octets with CRLF turned into LF. */
static int maildir_put_lf(struct maildir_out *o, const char *s, size_t len)
{
    int r;
    if (len == 0)
        return 0;
    if (o->cr) {
        o->cr = false;
        if (s[0] != '\n' && (r = maildir_put(o, "\r", 1)) < 0)
            return r;
    }
    size_t start = 0;
    for (;;) {
        const char *cr = memchr(s + start, '\r', len - start);
        if (cr == NULL)
            return maildir_put(o, s + start, len - start);
        size_t i = (size_t)(cr - s);
        if ((r = maildir_put(o, s + start, i - start)) < 0)
            return r;
        if (i + 1 == len) {
            o->cr = true; /* decided by the next chunk */
            return 0;
        }
        if (s[i + 1] != '\n' && (r = maildir_put(o, "\r", 1)) < 0)
            return r;
        start = i + 1;
    }
}

static int maildir_copy(struct maildir_out *o, const struct spool_msg *m, char *rbuf)
{
    const struct spool_piece *v;
    size_t np = spool_msg_pieces(m, &v);
    int r;
    for (size_t i = 0; i < np; i++) {
        if (v[i].fd < 0) {
            if ((r = maildir_put_lf(o, v[i].mem, v[i].len)) < 0)
                return r;
            continue;
        }
        uint64_t off = v[i].off;
        size_t left = v[i].len;
        while (left > 0) {
            size_t want = left < MAILDIR_BUF ? left : MAILDIR_BUF;
            ssize_t got = pread(v[i].fd, rbuf, want, (off_t)off);
            if (got < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            if (got == 0)
                return -EIO; /* the segment is shorter than the piece says */
            if ((r = maildir_put_lf(o, rbuf, (size_t)got)) < 0)
                return r;
            off += (uint64_t)got;
            left -= (size_t)got;
        }
    }
    if (o->cr) {
        o->cr = false;
        if ((r = maildir_put(o, "\r", 1)) < 0)
            return r;
    }
    return maildir_flush(o);
}

/* The host part of the unique name: '/' and ':' encoded as the spec says. */
static void maildir_host(const char *hostname, char *out, size_t len)
{
    size_t n = 0;
    for (const char *p = hostname && *hostname ? hostname : "localhost"; *p && n + 5 < len; p++) {
        if (*p == '/')
            n += (size_t)snprintf(out + n, len - n, "\\057");
        else if (*p == ':')
            n += (size_t)snprintf(out + n, len - n, "\\072");
        else if ((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
            out[n++] = *p;
    }
    out[n] = '\0';
}

/* Opens a fresh file in dir/tmp/; its name (without the directory) in name. */
static int maildir_create(const char *dir, const char *host, char *name, size_t namelen, char *tmp,
                          size_t tmplen, char *err, size_t errlen)
{
    for (int i = 0; i < MAILDIR_TRIES; i++) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        unsigned long q = atomic_fetch_add_explicit(&maildir_seq, 1, memory_order_relaxed);
        snprintf(name, namelen, "%lld.M%ldP%ldQ%lu.%s", (long long)tv.tv_sec, (long)tv.tv_usec,
                 (long)getpid(), q, host);
        if (snprintf(tmp, tmplen, "%s/tmp/%s", dir, name) >= (int)tmplen)
            return maildir_fail(err, errlen, ENAMETOOLONG, "%s/tmp", dir);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST)
            return maildir_fail(err, errlen, errno, "open %s", tmp);
    }
    return maildir_fail(err, errlen, EEXIST, "open %s", tmp);
}

int maildir_deliver(const char *root, const char *hostname, const char *rcpt, const char *sender,
                    const struct spool_msg *m, char *path, size_t pathlen, char *err, size_t errlen)
{
    char user[256], dir[MAILDIR_PATH / 2], sub[MAILDIR_PATH], name[512], tmp[MAILDIR_PATH],
        dst[MAILDIR_PATH], host[256];
    if (path != NULL && pathlen > 0)
        path[0] = '\0';
    if (root == NULL || *root == '\0' || m == NULL || rcpt == NULL)
        return maildir_fail(err, errlen, EINVAL, "no root, recipient or message");
    if (maildir_user(rcpt, user, sizeof(user)) < 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "maildir: \"%s\" names no mailbox", rcpt);
        return -EINVAL;
    }
    if (snprintf(dir, sizeof(dir), "%s/%s", root, user) >= (int)sizeof(dir))
        return maildir_fail(err, errlen, ENAMETOOLONG, "%s/%s", root, user);
    static const char *const subs[] = {"cur", "new", "tmp"};
    for (int i = 0; i < 3; i++) {
        snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
        int r = maildir_mkdirs(sub, err, errlen);
        if (r < 0)
            return r;
    }
    maildir_host(hostname, host, sizeof(host));
    int fd = maildir_create(dir, host, name, sizeof(name), tmp, sizeof(tmp), err, errlen);
    if (fd < 0)
        return fd;

    int r = 0;
    struct maildir_out o = {.fd = fd, .buf = malloc(2 * MAILDIR_BUF)};
    if (o.buf == NULL) {
        r = maildir_fail(err, errlen, ENOMEM, "buffer for %s", tmp);
        goto fail;
    }
    char head[1200];
    int hn = snprintf(head, sizeof(head), "Return-Path: <%s>\nDelivered-To: %s\n",
                      sender ? sender : "", rcpt);
    if (hn < 0 || (size_t)hn >= sizeof(head)) {
        r = maildir_fail(err, errlen, ENAMETOOLONG, "address for %s", tmp);
        goto fail;
    }
    if ((r = maildir_put(&o, head, (size_t)hn)) < 0 ||
        (r = maildir_copy(&o, m, o.buf + MAILDIR_BUF)) < 0) {
        maildir_fail(err, errlen, -r, "write %s", tmp);
        goto fail;
    }
    if (fsync(fd) < 0) {
        r = maildir_fail(err, errlen, errno, "fsync %s", tmp);
        goto fail;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) < 0) {
        r = maildir_fail(err, errlen, errno, "close %s", tmp);
        goto fail;
    }
    snprintf(dst, sizeof(dst), "%s/new/%s", dir, name);
    if (rename(tmp, dst) < 0) {
        r = maildir_fail(err, errlen, errno, "rename %s", dst);
        goto fail;
    }
    snprintf(sub, sizeof(sub), "%s/new", dir);
    if ((r = maildir_fsync_dir(sub)) < 0) {
        /* not durable: take it back, the retry delivers it once */
        maildir_fail(err, errlen, -r, "fsync %s", sub);
        unlink(dst);
        free(o.buf);
        return r;
    }
    free(o.buf);
    if (path != NULL && pathlen > 0)
        snprintf(path, pathlen, "%s", dst);
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(o.buf);
    return r;
}
