/*
 * NAME
 *	fiu_spool - libfiu failure points for the calls sluiced makes on its spool
 * SYNOPSIS
 *	fiu-run -f CTRL env LD_PRELOAD="/usr/lib/fiu/fiu_run_preload.so libfiu_spool.so" \
 *	    sluiced-test ...
 *	fiu-ctrl -f CTRL -c 'enable name=posix/io/rw/pwritev,failinfo=5' PID
 *	fiu-ctrl -f CTRL -c 'disable name=posix/io/rw/pwritev' PID
 * DESCRIPTION
 *	fiu-run (fiu_run_preload.so) sets libfiu up and answers fiu-ctrl; this
 *	shim puts a libfiu failure point in front of each call the spool and
 *	local delivery make, under libfiu's own names where libfiu's POSIX
 *	preload has one:
 *
 *	posix/io/rw/pwrite	pwrite (a new segment's header)
 *	posix/io/rw/pwritev	pwritev (every append)
 *	posix/io/rw/write	write to a regular file (Maildir delivery)
 *	posix/io/rw/ftruncate	ftruncate (a failed append cut back)
 *	posix/io/sync/fdatasync	fdatasync (group commits with
 *				SLUICE_FAULT_PLAIN_FSYNC=1, rotation, reserve)
 *	posix/io/sync/fsync	fsync (the spool directory, recovery, Maildir)
 *	posix/io/oc/open	open (Maildir's tmp file)
 *	posix/io/dir/rename	rename (Maildir tmp -> new)
 *	posix/io/dir/unlink	unlink
 *	sluice/io/openat	every openat (segments: created and read)
 *	sluice/io/openat/creat	openat with O_CREAT only (a new segment)
 *	sluice/io/unlinkat	unlinkat (a removed segment)
 *	sluice/io/posix_fallocate  posix_fallocate (the full-disk reserve)
 *
 *	A failing call sets errno to the failinfo given to fiu (failinfo=5
 *	for EIO, 28 for ENOSPC), EIO without one; posix_fallocate returns it.
 *
 *	Why not fiu-run -x (libfiu's fiu_posix_preload.so, which wraps most
 *	of these and also malloc, read, mmap ...): under it sluiced-test died
 *	of SIGSEGV at a graceful stop about one run in five (in OpenSSL's
 *	ASN1_OBJECT_free on the queue manager's thread), with no fault
 *	enabled; with fiu_run_preload.so and this shim, none in the same
 *	runs (docs/faults.md).  It also lacks the *at() calls and
 *	posix_fallocate, which the spool uses.  mmap is not wrapped: the
 *	spool does not map files (only net/'s buffer ring maps anonymous
 *	memory, at start).
 *
 *	Signals: fiu-run's preload starts its remote-control thread before
 *	main(), with no signal blocked, so a SIGTERM meant for sluiced's
 *	sigwait() would kill the process there.  The shim's pthread_create()
 *	starts every thread with the asynchronous signals blocked (sluiced
 *	blocks them before it starts its own threads anyway), so the graceful
 *	stop is tested under fiu too.
 * BUGS
 *	Without fiu-run (no libfiu in the process) every point stays off.
 *	A point fails every such call of the process, on any file: the
 *	queue manager's spool writes as much as the workers'.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/types.h>
#include <unistd.h>

/* libfiu's own entry points, from the libfiu.so.0 that fiu-run's preload
 * loaded (looked up, not linked: a second, static copy of libfiu would
 * have a state of its own that fiu-ctrl never reaches). */
typedef int fiu_fail_fn(const char *);
typedef void *fiu_failinfo_fn(void);

static int fiu_fail(const char *name)
{
    static fiu_fail_fn *f;
    static int looked;
    if (!looked) {
        f = (fiu_fail_fn *)dlsym(RTLD_DEFAULT, "fiu_fail");
        looked = 1;
    }
    return f != NULL && f(name);
}

static int fiu_spool_errno(void)
{
    fiu_failinfo_fn *fi = (fiu_failinfo_fn *)dlsym(RTLD_DEFAULT, "fiu_failinfo");
    void *v = fi ? fi() : NULL;
    return v ? (int)(intptr_t)v : EIO;
}

typedef int openat_fn(int, const char *, int, ...);
typedef int unlinkat_fn(int, const char *, int);
typedef int fallocate_fn(int, off_t, off_t);

int openat(int dirfd, const char *path, int flags, ...)
{
    static openat_fn *real;
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (fiu_fail("sluice/io/openat") || ((flags & O_CREAT) && fiu_fail("sluice/io/openat/creat"))) {
        errno = fiu_spool_errno();
        return -1;
    }
    if (real == NULL)
        real = (openat_fn *)dlsym(RTLD_NEXT, "openat");
    return real(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int unlinkat(int dirfd, const char *path, int flags)
{
    static unlinkat_fn *real;
    if (fiu_fail("sluice/io/unlinkat")) {
        errno = fiu_spool_errno();
        return -1;
    }
    if (real == NULL)
        real = (unlinkat_fn *)dlsym(RTLD_NEXT, "unlinkat");
    return real(dirfd, path, flags);
}

int posix_fallocate(int fd, off_t off, off_t len)
{
    static fallocate_fn *real;
    if (fiu_fail("sluice/io/posix_fallocate"))
        return fiu_spool_errno(); /* it returns the error, errno untouched */
    if (real == NULL)
        real = (fallocate_fn *)dlsym(RTLD_NEXT, "posix_fallocate");
    return real(fd, off, len);
}

int posix_fallocate64(int fd, off_t off, off_t len) __attribute__((alias("posix_fallocate")));

typedef int pthread_create_fn(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    static pthread_create_fn *real;
    if (real == NULL)
        real = (pthread_create_fn *)dlsym(RTLD_NEXT, "pthread_create");
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE};
    sigset_t block, old;
    sigemptyset(&block);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&block, sigs[i]);
    pthread_sigmask(SIG_BLOCK, &block, &old); /* the new thread inherits it */
    int r = real(t, attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

/* ---- libfiu's own names ---- */

#define FIU_SPOOL_REAL(name, type)                                                                 \
    static type *real;                                                                             \
    if (real == NULL)                                                                              \
    real = (type *)dlsym(RTLD_NEXT, name)

#define FIU_SPOOL_FAIL(point)                                                                      \
    do {                                                                                           \
        if (fiu_fail(point)) {                                                                     \
            errno = fiu_spool_errno();                                                             \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

typedef ssize_t pwrite_fn(int, const void *, size_t, off_t);
typedef ssize_t pwritev_fn(int, const struct iovec *, int, off_t);
typedef ssize_t write_fn(int, const void *, size_t);
typedef int fd_fn(int);
typedef int ftruncate_fn(int, off_t);
typedef int open_fn(const char *, int, ...);
typedef int rename_fn(const char *, const char *);
typedef int unlink_fn(const char *);

ssize_t pwrite(int fd, const void *p, size_t n, off_t off)
{
    FIU_SPOOL_REAL("pwrite", pwrite_fn);
    FIU_SPOOL_FAIL("posix/io/rw/pwrite");
    return real(fd, p, n, off);
}
ssize_t pwrite64(int fd, const void *p, size_t n, off_t off) __attribute__((alias("pwrite")));

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    FIU_SPOOL_REAL("pwritev", pwritev_fn);
    FIU_SPOOL_FAIL("posix/io/rw/pwritev");
    return real(fd, iov, cnt, off);
}
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
    __attribute__((alias("pwritev")));

/* Regular files only: the log (stderr) and pipes keep working. */
ssize_t write(int fd, const void *p, size_t n)
{
    FIU_SPOOL_REAL("write", write_fn);
    struct stat st;
    if (fiu_fail("posix/io/rw/write")) {
        int e = fiu_spool_errno();
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            errno = e;
            return -1;
        }
    }
    return real(fd, p, n);
}

int ftruncate(int fd, off_t len)
{
    FIU_SPOOL_REAL("ftruncate", ftruncate_fn);
    FIU_SPOOL_FAIL("posix/io/rw/ftruncate");
    return real(fd, len);
}
int ftruncate64(int fd, off_t len) __attribute__((alias("ftruncate")));

int fdatasync(int fd)
{
    FIU_SPOOL_REAL("fdatasync", fd_fn);
    FIU_SPOOL_FAIL("posix/io/sync/fdatasync");
    return real(fd);
}

int fsync(int fd)
{
    FIU_SPOOL_REAL("fsync", fd_fn);
    FIU_SPOOL_FAIL("posix/io/sync/fsync");
    return real(fd);
}

int open(const char *path, int flags, ...)
{
    FIU_SPOOL_REAL("open", open_fn);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    FIU_SPOOL_FAIL("posix/io/oc/open");
    return real(path, flags, mode);
}
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int rename(const char *from, const char *to)
{
    FIU_SPOOL_REAL("rename", rename_fn);
    FIU_SPOOL_FAIL("posix/io/dir/rename");
    return real(from, to);
}

int unlink(const char *path)
{
    FIU_SPOOL_REAL("unlink", unlink_fn);
    FIU_SPOOL_FAIL("posix/io/dir/unlink");
    return real(path);
}
