/*
 * NAME
 *	powercut - an LD_PRELOAD shim that simulates a power loss
 * SYNOPSIS
 *	SLUICE_POWERCUT_DIR=/abs/spool SLUICE_POWERCUT_AT=N
 *	SLUICE_POWERCUT_OUT=/abs/outdir [SLUICE_POWERCUT_SEED=S]
 *	[SLUICE_POWERCUT_MODE=prefix|subset]
 *	LD_PRELOAD=libpowercut.so sluiced-test ...
 * DESCRIPTION
 *	Records, per regular file directly under SLUICE_POWERCUT_DIR, every
 *	write (write, pwrite, writev, pwritev, pwritev2 and their 64
 *	variants) and ftruncate since its last sync, and the file's content
 *	as of that sync (fsync or fdatasync of the file; a file that existed
 *	before the process touched it counts as synced as found).  A file
 *	created by this process (open/openat with O_CREAT) is not known to
 *	its directory until an fsync of the directory itself.
 *
 *	The N-th write under the directory (counted over all files, the
 *	N-th included) is the cut: the shim writes the state after a power
 *	loss into SLUICE_POWERCUT_OUT and calls _exit(99).  For each file:
 *	its synced content plus, chosen at random per file, none of the
 *	later operations, an in-order prefix of them whose last write may be
 *	torn at any octet (MODE prefix, the default), or a random subset of
 *	them, each applied whole or torn (MODE subset: page-cache writeback
 *	in any order).  A file never made durable in its directory vanishes
 *	with probability one half.  OUT/MANIFEST has a line per file:
 *	"NAME SYNCED_LEN WRITTEN_LEN" or "NAME vanished" (SYNCED_LEN without
 *	the synced content's trailing zeros: a spool writer's pre-zeroed
 *	space holds no records); OUT/NAME holds the
 *	content.  The harness copies the spool and overlays OUT on it.
 *
 *	The daemon's group commits sync through io_uring (IORING_OP_FSYNC),
 *	which a shim cannot see: run sluiced-test with
 *	SLUICE_FAULT_PLAIN_FSYNC=1 so that they call fdatasync(2) (see
 *	core/smtpd/worker.h).  Without SLUICE_POWERCUT_AT the shim only
 *	counts; SLUICE_POWERCUT_COUNT=FILE writes the count there at exit.
 * BUGS
 *	Not modelled (docs/faults.md): unlink and rename are durable at
 *	once; metadata other than size; writes through mmap, stdio's internal
 *	calls, copy_file_range, io_uring write ops; sync(2), syncfs(2),
 *	sync_file_range(2), O_SYNC/O_DSYNC opens; files in subdirectories.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* this file defines open() and friends: no fortified inline wrappers */
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define PC_MAX_FILES 256

enum pc_kind { PC_WRITE, PC_TRUNC };

struct pc_op {
    enum pc_kind kind;
    uint64_t off; /* PC_WRITE: where; PC_TRUNC: the new length */
    size_t len;
    unsigned char *data;
};

struct pc_file {
    char name[NAME_MAX + 1];
    unsigned char *img; /* content as of the last sync */
    size_t img_len;
    struct pc_op *ops; /* since the last sync, in order */
    size_t nops, cap;
    bool fresh; /* created here, its directory not synced since */
    bool removed;
};

static pthread_mutex_t pc_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pc_file pc_files[PC_MAX_FILES];
static size_t pc_nfiles;
static char pc_dir[PATH_MAX];
static size_t pc_dirlen;
static long long pc_at = -1; /* the cut: the N-th write; -1: never */
static long long pc_count;
static uint64_t pc_rng = 88172645463325252ull;
static bool pc_subset;
static bool pc_ready;

/* ---- the real functions ---- */

#define PC_REAL(ret, name, ...)                                                                    \
    static ret (*real_##name)(__VA_ARGS__);                                                        \
    static ret (*get_##name(void))(__VA_ARGS__)                                                    \
    {                                                                                              \
        if (real_##name == NULL)                                                                   \
            real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);                            \
        return real_##name;                                                                        \
    }

PC_REAL(ssize_t, write, int, const void *, size_t)
PC_REAL(ssize_t, pwrite, int, const void *, size_t, off_t)
PC_REAL(ssize_t, pwrite64, int, const void *, size_t, off_t)
PC_REAL(ssize_t, writev, int, const struct iovec *, int)
PC_REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t)
PC_REAL(ssize_t, pwritev64, int, const struct iovec *, int, off_t)
PC_REAL(ssize_t, pwritev2, int, const struct iovec *, int, off_t, int)
PC_REAL(int, ftruncate, int, off_t)
PC_REAL(int, ftruncate64, int, off_t)
PC_REAL(int, fsync, int)
PC_REAL(int, fdatasync, int)
PC_REAL(int, open, const char *, int, ...)
PC_REAL(int, open64, const char *, int, ...)
PC_REAL(int, openat, int, const char *, int, ...)
PC_REAL(int, openat64, int, const char *, int, ...)
PC_REAL(int, unlink, const char *)
PC_REAL(int, unlinkat, int, const char *, int)

static uint64_t pc_rand(void)
{
    pc_rng ^= pc_rng << 13;
    pc_rng ^= pc_rng >> 7;
    pc_rng ^= pc_rng << 17;
    return pc_rng;
}

static void pc_init(void)
{
    if (pc_ready)
        return;
    pc_ready = true;
    const char *d = getenv("SLUICE_POWERCUT_DIR");
    if (d == NULL || realpath(d, pc_dir) == NULL) {
        pc_dir[0] = '\0';
        return;
    }
    pc_dirlen = strlen(pc_dir);
    const char *at = getenv("SLUICE_POWERCUT_AT");
    pc_at = at && *at ? strtoll(at, NULL, 10) : -1;
    const char *seed = getenv("SLUICE_POWERCUT_SEED");
    if (seed && *seed)
        pc_rng ^= strtoull(seed, NULL, 10) * 0x9e3779b97f4a7c15ull;
    const char *mode = getenv("SLUICE_POWERCUT_MODE");
    pc_subset = mode && strcmp(mode, "subset") == 0;
}

/* The name of the file fd refers to when it lies directly under the
 * directory ("" for the directory itself); NULL otherwise. */
static const char *pc_name_of_path(const char *path)
{
    if (pc_dirlen == 0 || strncmp(path, pc_dir, pc_dirlen) != 0)
        return NULL;
    if (path[pc_dirlen] == '\0')
        return "";
    if (path[pc_dirlen] != '/' || strchr(path + pc_dirlen + 1, '/') != NULL)
        return NULL;
    return path + pc_dirlen + 1;
}

static const char *pc_name_of_fd(int fd, char *buf, size_t len)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, len - 1);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    return pc_name_of_path(buf);
}

static struct pc_file *pc_find(const char *name)
{
    for (size_t i = 0; i < pc_nfiles; i++)
        if (!pc_files[i].removed && strcmp(pc_files[i].name, name) == 0)
            return &pc_files[i];
    return NULL;
}

/* The file's record, made on first sight: what is there now counts as
 * synced (it was written before this process, or fresh and empty). */
static struct pc_file *pc_track(const char *name, bool fresh)
{
    struct pc_file *f = pc_find(name);
    if (f != NULL || pc_nfiles == PC_MAX_FILES || strlen(name) > NAME_MAX)
        return f;
    f = &pc_files[pc_nfiles++];
    memset(f, 0, sizeof(*f));
    strcpy(f->name, name);
    f->fresh = fresh;
    char path[PATH_MAX + NAME_MAX + 2];
    snprintf(path, sizeof(path), "%s/%s", pc_dir, name);
    int fd = get_open()(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
        f->img = malloc((size_t)st.st_size);
        ssize_t k = f->img ? pread(fd, f->img, (size_t)st.st_size, 0) : -1;
        f->img_len = k > 0 ? (size_t)k : 0;
    }
    if (fd >= 0)
        close(fd);
    return f;
}

static void pc_apply(unsigned char **img, size_t *len, const struct pc_op *op, size_t part)
{
    size_t end = op->kind == PC_TRUNC ? op->off : op->off + part;
    if (op->kind == PC_TRUNC || end > *len) {
        unsigned char *p = realloc(*img, end ? end : 1);
        if (p == NULL)
            abort();
        if (end > *len)
            memset(p + *len, 0, end - *len);
        *img = p;
        if (op->kind == PC_TRUNC || end > *len)
            *len = end;
    }
    if (op->kind == PC_WRITE)
        memcpy(*img + op->off, op->data, part);
}

static void pc_sync_file(struct pc_file *f)
{
    for (size_t i = 0; i < f->nops; i++) {
        pc_apply(&f->img, &f->img_len, &f->ops[i], f->ops[i].len);
        free(f->ops[i].data);
    }
    f->nops = 0;
}

static void pc_put(const char *dir, const char *name, const unsigned char *p, size_t n)
{
    char path[PATH_MAX + NAME_MAX + 2];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = get_open()(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        _exit(98);
    while (n > 0) {
        ssize_t k = get_write()(fd, p, n);
        if (k <= 0)
            _exit(98);
        p += k;
        n -= (size_t)k;
    }
    close(fd);
}

/* The power loss: every file as the disk may hold it now, then exit. */
static void pc_cut(void)
{
    const char *out = getenv("SLUICE_POWERCUT_OUT");
    if (out == NULL)
        _exit(98);
    char manifest[1 << 14];
    size_t m = 0;
    for (size_t i = 0; i < pc_nfiles; i++) {
        struct pc_file *f = &pc_files[i];
        if (f->removed)
            continue;
        if (f->fresh && pc_rand() % 2 == 0) {
            m += (size_t)snprintf(manifest + m, sizeof(manifest) - m, "%s vanished\n", f->name);
            continue;
        }
        unsigned char *img = malloc(f->img_len ? f->img_len : 1);
        if (img == NULL)
            _exit(98);
        memcpy(img, f->img, f->img_len);
        size_t len = f->img_len;
        /* how many of the operations since the sync reached the disk */
        size_t keep = f->nops ? (size_t)(pc_rand() % (f->nops + 1)) : 0;
        for (size_t k = 0; k < f->nops; k++) {
            const struct pc_op *op = &f->ops[k];
            bool whole = pc_subset ? pc_rand() % 2 == 0 : k < keep;
            bool torn = !whole && (pc_subset ? pc_rand() % 4 == 0 : k == keep);
            if (whole)
                pc_apply(&img, &len, op, op->len);
            else if (torn && op->kind == PC_WRITE && op->len > 0 && pc_rand() % 2 == 0)
                pc_apply(&img, &len, op, (size_t)(pc_rand() % op->len));
        }
        pc_put(out, f->name, img, len);
        /* zeros at the end of the synced content are a writer's
         * pre-zeroed space (storage/writer.c), not synced records */
        size_t synced = f->img_len;
        while (synced > 0 && f->img[synced - 1] == 0)
            synced--;
        m += (size_t)snprintf(manifest + m, sizeof(manifest) - m, "%s %zu %zu\n", f->name,
                              synced, len);
        free(img);
        if (m >= sizeof(manifest))
            _exit(98);
    }
    pc_put(out, "MANIFEST", (const unsigned char *)manifest, m);
    _exit(99);
}

/* Called with pc_lock held before a write or truncate of fd: its file's
 * record (the content as found if first seen), NULL when not tracked. */
static struct pc_file *pc_before(int fd)
{
    char buf[PATH_MAX];
    const char *name = pc_name_of_fd(fd, buf, sizeof(buf));
    if (name == NULL || *name == '\0')
        return NULL;
    return pc_track(name, false);
}

/* Called with pc_lock held, after the real call wrote n octets of iov at
 * off (or truncated to off when iov is NULL). */
static void pc_record(struct pc_file *f, const struct iovec *iov, int iovcnt, uint64_t off,
                      size_t n)
{
    if (f->nops == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        struct pc_op *p = realloc(f->ops, cap * sizeof(*p));
        if (p == NULL)
            abort();
        f->ops = p;
        f->cap = cap;
    }
    struct pc_op *op = &f->ops[f->nops++];
    op->kind = iov ? PC_WRITE : PC_TRUNC;
    op->off = off;
    op->len = iov ? n : 0;
    op->data = NULL;
    if (iov) {
        op->data = malloc(n ? n : 1);
        if (op->data == NULL)
            abort();
        size_t at = 0;
        for (int i = 0; i < iovcnt && at < n; i++) {
            size_t c = iov[i].iov_len < n - at ? iov[i].iov_len : n - at;
            memcpy(op->data + at, iov[i].iov_base, c);
            at += c;
        }
    }
    if (++pc_count == pc_at)
        pc_cut();
}

/* ---- the interposed calls ---- */

static ssize_t pc_writev_at(int fd, const struct iovec *iov, int iovcnt, off_t off, bool has_off,
                            ssize_t (*call)(void *), void *arg)
{
    pthread_mutex_lock(&pc_lock);
    pc_init();
    off_t at = off;
    if (!has_off) {
        int fl = fcntl(fd, F_GETFL);
        struct stat st;
        if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &st) == 0)
            at = st.st_size;
        else
            at = lseek(fd, 0, SEEK_CUR);
    }
    struct pc_file *f = pc_before(fd);
    ssize_t k = call(arg);
    int saved = errno;
    if (f != NULL && k > 0 && at >= 0)
        pc_record(f, iov, iovcnt, (uint64_t)at, (size_t)k);
    pthread_mutex_unlock(&pc_lock);
    errno = saved;
    return k;
}

struct pc_args {
    int fd;
    const void *p;
    const struct iovec *iov;
    size_t n;
    int cnt;
    off_t off;
    int flags;
    int which;
};

static ssize_t pc_call(void *a)
{
    struct pc_args *x = a;
    switch (x->which) {
    case 0:
        return get_write()(x->fd, x->p, x->n);
    case 1:
        return get_pwrite()(x->fd, x->p, x->n, x->off);
    case 2:
        return get_pwrite64()(x->fd, x->p, x->n, x->off);
    case 3:
        return get_writev()(x->fd, x->iov, x->cnt);
    case 4:
        return get_pwritev()(x->fd, x->iov, x->cnt, x->off);
    case 5:
        return get_pwritev64()(x->fd, x->iov, x->cnt, x->off);
    default:
        return get_pwritev2()(x->fd, x->iov, x->cnt, x->off, x->flags);
    }
}

ssize_t write(int fd, const void *p, size_t n)
{
    struct iovec v = {(void *)p, n};
    struct pc_args a = {.fd = fd, .p = p, .n = n, .which = 0};
    return pc_writev_at(fd, &v, 1, 0, false, pc_call, &a);
}

ssize_t pwrite(int fd, const void *p, size_t n, off_t off)
{
    struct iovec v = {(void *)p, n};
    struct pc_args a = {.fd = fd, .p = p, .n = n, .off = off, .which = 1};
    return pc_writev_at(fd, &v, 1, off, true, pc_call, &a);
}

ssize_t pwrite64(int fd, const void *p, size_t n, off_t off)
{
    struct iovec v = {(void *)p, n};
    struct pc_args a = {.fd = fd, .p = p, .n = n, .off = off, .which = 2};
    return pc_writev_at(fd, &v, 1, off, true, pc_call, &a);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    struct pc_args a = {.fd = fd, .iov = iov, .cnt = cnt, .which = 3};
    return pc_writev_at(fd, iov, cnt, 0, false, pc_call, &a);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    struct pc_args a = {.fd = fd, .iov = iov, .cnt = cnt, .off = off, .which = 4};
    return pc_writev_at(fd, iov, cnt, off, true, pc_call, &a);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    struct pc_args a = {.fd = fd, .iov = iov, .cnt = cnt, .off = off, .which = 5};
    return pc_writev_at(fd, iov, cnt, off, true, pc_call, &a);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    struct pc_args a = {.fd = fd, .iov = iov, .cnt = cnt, .off = off, .flags = flags, .which = 6};
    return pc_writev_at(fd, iov, cnt, off, off != -1, pc_call, &a);
}

static int pc_truncate(int fd, off_t len, int (*call)(int, off_t))
{
    pthread_mutex_lock(&pc_lock);
    pc_init();
    struct pc_file *f = pc_before(fd);
    int r = call(fd, len);
    int saved = errno;
    if (f != NULL && r == 0)
        pc_record(f, NULL, 0, (uint64_t)len, 0);
    pthread_mutex_unlock(&pc_lock);
    errno = saved;
    return r;
}

int ftruncate(int fd, off_t len)
{
    return pc_truncate(fd, len, get_ftruncate());
}

int ftruncate64(int fd, off_t len)
{
    return pc_truncate(fd, len, get_ftruncate64());
}

static int pc_sync(int fd, int (*call)(int))
{
    pthread_mutex_lock(&pc_lock);
    pc_init();
    int r = call(fd);
    int saved = errno;
    char buf[PATH_MAX];
    const char *name = r == 0 ? pc_name_of_fd(fd, buf, sizeof(buf)) : NULL;
    if (name != NULL && *name == '\0') {
        for (size_t i = 0; i < pc_nfiles; i++) /* the directory: its entries */
            pc_files[i].fresh = false;
    } else if (name != NULL) {
        struct pc_file *f = pc_track(name, false);
        if (f != NULL)
            pc_sync_file(f);
    }
    pthread_mutex_unlock(&pc_lock);
    errno = saved;
    return r;
}

int fsync(int fd)
{
    return pc_sync(fd, get_fsync());
}

int fdatasync(int fd)
{
    return pc_sync(fd, get_fdatasync());
}

/* An open that may create: a file new under the directory is fresh.
 * Exactly one of at (openat) and plain (open) is the real call. */
static int pc_open(int dirfd, const char *path, int flags, mode_t mode,
                   int (*at)(int, const char *, int, ...), int (*plain)(const char *, int, ...))
{
    if (!(flags & O_CREAT))
        return at ? at(dirfd, path, flags) : plain(path, flags);
    pthread_mutex_lock(&pc_lock);
    pc_init();
    struct stat st;
    bool existed = fstatat(at ? dirfd : AT_FDCWD, path, &st, 0) == 0;
    int fd = at ? at(dirfd, path, flags, mode) : plain(path, flags, mode);
    int saved = errno;
    char buf[PATH_MAX];
    const char *name = fd >= 0 && !existed ? pc_name_of_fd(fd, buf, sizeof(buf)) : NULL;
    if (name != NULL && *name != '\0')
        pc_track(name, true);
    pthread_mutex_unlock(&pc_lock);
    errno = saved;
    return fd;
}

#define PC_MODE(flags)                                                                             \
    mode_t mode = 0;                                                                               \
    if ((flags)&O_CREAT) {                                                                         \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode = (mode_t)va_arg(ap, int);                                                            \
        va_end(ap);                                                                                \
    }

int open(const char *path, int flags, ...)
{
    PC_MODE(flags);
    return pc_open(AT_FDCWD, path, flags, mode, NULL, get_open());
}

int open64(const char *path, int flags, ...)
{
    PC_MODE(flags);
    return pc_open(AT_FDCWD, path, flags, mode, NULL, get_open64());
}

int openat(int dirfd, const char *path, int flags, ...)
{
    PC_MODE(flags);
    return pc_open(dirfd, path, flags, mode, get_openat(), NULL);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    PC_MODE(flags);
    return pc_open(dirfd, path, flags, mode, get_openat64(), NULL);
}

/* A removed file is forgotten (unlink is taken as durable at once). */
static void pc_forget(int dirfd, const char *path)
{
    char full[2 * PATH_MAX + 2], dir[PATH_MAX];
    if (path[0] == '/') {
        snprintf(full, sizeof(full), "%s", path);
    } else {
        char link[64];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
        ssize_t n = dirfd == AT_FDCWD ? (getcwd(dir, sizeof(dir)) ? (ssize_t)strlen(dir) : -1)
                                      : readlink(link, dir, sizeof(dir) - 1);
        if (n <= 0)
            return;
        dir[n] = '\0';
        snprintf(full, sizeof(full), "%s/%s", dir, path);
    }
    const char *name = pc_name_of_path(full);
    struct pc_file *f = name && *name ? pc_find(name) : NULL;
    if (f != NULL)
        f->removed = true;
}

int unlink(const char *path)
{
    pthread_mutex_lock(&pc_lock);
    pc_init();
    int r = get_unlink()(path);
    int saved = errno;
    if (r == 0)
        pc_forget(AT_FDCWD, path);
    pthread_mutex_unlock(&pc_lock);
    errno = saved;
    return r;
}

int unlinkat(int dirfd, const char *path, int flags)
{
    pthread_mutex_lock(&pc_lock);
    pc_init();
    int r = get_unlinkat()(dirfd, path, flags);
    int saved = errno;
    if (r == 0)
        pc_forget(dirfd, path);
    pthread_mutex_unlock(&pc_lock);
    errno = saved;
    return r;
}

/* Without a cut, the count of writes seen (to choose cut points). */
__attribute__((destructor)) static void pc_report(void)
{
    const char *p = getenv("SLUICE_POWERCUT_COUNT");
    if (p == NULL || !pc_ready)
        return;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%lld\n", pc_count);
    int fd = get_open()(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        get_write()(fd, buf, (size_t)n);
        close(fd);
    }
}
