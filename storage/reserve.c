/*
 * NAME
 *	reserve - a full file system: the reserve file and the full flag
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	int spool_reserve_init(struct spool *sp, unsigned worker, uint64_t bytes);
 *	bool spool_full(const struct spool *sp);
 *	bool spool_writer_full(const struct spool_writer *w);
 *	int spool_space_check(struct spool *sp);
 * DESCRIPTION
 *	A spool whose file system is full must still let the queue manager
 *	write the REMOVE and STATE records of the mail it delivers, or that
 *	mail goes out again after a restart.  So the spool keeps `reserve`, a
 *	file of allocated blocks (fallocate; `bytes`, or 1/32 of a smaller file
 *	system but at least 64 KiB), and names one writer (the queue
 *	manager's) that may draw on it: when that writer cannot create a
 *	segment or append for lack of space, spool_reserve_release() gives
 *	back half of the reserve (all of it below 64 KiB) and the write is
 *	tried once more.  Halving keeps part of the reserve on disk for the
 *	next start, which needs room for the queue manager's first segment.
 *
 *	Any writer that meets ENOSPC marks the spool full (spool_full_set,
 *	logged at error level once per episode), and so does a start with
 *	less room than the reserve beside it; the SMTP service then
 *	refuses MAIL with 452 4.3.1, so the space the queue manager frees is
 *	not taken by new mail.  spool_space_check(), called every few seconds
 *	by the reserve writer's owner, ends the episode once the file system
 *	has room for the whole reserve and as much again: the reserve is made
 *	whole and the flag cleared.
 *
 *	The normal path costs nothing: the reserve is touched only after a
 *	write failed with ENOSPC, and the flag is one relaxed load per MAIL.
 * DIAGNOSTICS
 *	0 or -errno.  spool_reserve_init returns -ENOSPC when the file system
 *	has no room for the reserve (the spool is then marked full and the
 *	reserve stays as large as it could be made).
 */
#include "storage/spool_int.h"
#include "storage/writer_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/base/log.h"

#define RESERVE_NAME "reserve"
#define RESERVE_MIN (64u * 1024) /* below this a release gives back all of it */

void spool_full_set(struct spool *sp)
{
    /* relaxed: a flag; the log line is the only thing that depends on who
     * set it first */
    if (!atomic_exchange_explicit(&sp->full, true, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&sp->full_episodes, 1, memory_order_relaxed);
        log_msg(LOG_ERROR, "spool %s: spool full: accepting no mail, delivering what is queued",
                sp->dir);
    }
}

bool spool_full(const struct spool *sp)
{
    /* relaxed: see spool_full_set */
    return atomic_load_explicit(&sp->full, memory_order_relaxed);
}

bool spool_writer_full(const struct spool_writer *w)
{
    return spool_full(w->sp);
}

uint64_t spool_full_episodes(const struct spool *sp)
{
    /* relaxed: a counter */
    return atomic_load_explicit(&sp->full_episodes, memory_order_relaxed);
}

/* The size of the reserve on disk, 0 if there is none. */
static uint64_t reserve_size(struct spool *sp)
{
    struct stat st;
    if (fstatat(sp->dirfd, RESERVE_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return 0;
    return (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size ? (uint64_t)st.st_blocks * 512
                                                               : (uint64_t)st.st_size;
}

/* Grows the reserve to sp->reserve_bytes.  0 or -errno (-ENOSPC: it keeps
 * the size it had). */
static int reserve_fill(struct spool *sp)
{
    int fd = openat(sp->dirfd, RESERVE_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int r = posix_fallocate(fd, 0, (off_t)sp->reserve_bytes);
    if (r != 0) {
        /* what a failed fallocate left allocated past the old size goes */
        if (ftruncate(fd, (off_t)sp->reserve_have) < 0)
            log_msg(LOG_WARN, "spool %s: reserve: truncate: %s", sp->dir, strerror(errno));
        r = r == EDQUOT || r == EFBIG ? -ENOSPC : -r;
    } else {
        r = fdatasync(fd) < 0 ? -errno : 0;
        if (r == 0)
            sp->reserve_have = sp->reserve_bytes;
    }
    close(fd);
    if (r == 0)
        r = spool_fsync_dir(sp->dirfd);
    return r;
}

/* Octets free for an unprivileged writer, or UINT64_MAX if unknown. */
static uint64_t space_avail(struct spool *sp)
{
    struct statvfs vfs;
    if (fstatvfs(sp->dirfd, &vfs) < 0)
        return UINT64_MAX;
    return (uint64_t)vfs.f_bavail * vfs.f_frsize;
}

int spool_reserve_init(struct spool *sp, unsigned worker, uint64_t bytes)
{
    if (worker >= SPOOL_WORKERS || bytes == 0)
        log_panic("spool_reserve_init: worker %u, %llu octets", worker, (unsigned long long)bytes);
    /* a small file system gets a small reserve: 1/32 of it, 64 KiB at least */
    struct statvfs vfs;
    if (fstatvfs(sp->dirfd, &vfs) == 0) {
        uint64_t part = (uint64_t)vfs.f_blocks * vfs.f_frsize / 32 / 4096 * 4096;
        if (part < bytes)
            bytes = part > RESERVE_MIN ? part : RESERVE_MIN;
    }
    sp->reserve_worker = (int)worker;
    sp->reserve_bytes = bytes;
    sp->reserve_have = reserve_size(sp);
    int r = sp->reserve_have >= bytes ? 0 : reserve_fill(sp);
    if (r == -ENOSPC)
        log_msg(LOG_ERROR, "spool %s: no room for the %llu-octet reserve (%llu there)", sp->dir,
                (unsigned long long)bytes, (unsigned long long)sp->reserve_have);
    /* the rule that ends an episode (spool_space_check) starts one too:
     * less room than the reserve again is a full spool */
    if (r == -ENOSPC || space_avail(sp) < bytes)
        spool_full_set(sp);
    return r;
}

bool spool_reserve_release(struct spool *sp)
{
    spool_full_set(sp);
    if (sp->reserve_have == 0)
        return false;
    uint64_t keep = sp->reserve_have > RESERVE_MIN ? sp->reserve_have / 2 : 0;
    int r = 0;
    if (keep == 0) {
        r = unlinkat(sp->dirfd, RESERVE_NAME, 0) < 0 ? -errno : 0;
    } else {
        int fd = openat(sp->dirfd, RESERVE_NAME, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        r = fd < 0 || ftruncate(fd, (off_t)keep) < 0 ? -errno : 0;
        if (fd >= 0)
            close(fd);
    }
    if (r < 0) {
        log_msg(LOG_ERROR, "spool %s: reserve: cannot give back space: %s", sp->dir, strerror(-r));
        sp->reserve_have = 0; /* do not try again until it is remade */
        return false;
    }
    log_msg(LOG_WARN,
            "spool %s: reserve: %llu octets given to the queue manager's records, "
            "%llu left",
            sp->dir, (unsigned long long)(sp->reserve_have - keep), (unsigned long long)keep);
    sp->reserve_have = keep;
    return true;
}

int spool_space_check(struct spool *sp)
{
    if (!spool_full(sp) || sp->reserve_bytes == 0)
        return 0;
    uint64_t avail = space_avail(sp);
    uint64_t need = sp->reserve_bytes - sp->reserve_have + sp->reserve_bytes;
    if (avail < need)
        return 0;
    int r = reserve_fill(sp);
    if (r < 0)
        return r == -ENOSPC ? 0 : r;
    /* relaxed: see spool_full_set */
    atomic_store_explicit(&sp->full, false, memory_order_relaxed);
    log_msg(LOG_INFO, "spool %s: space again (%llu octets free): accepting mail", sp->dir,
            (unsigned long long)avail);
    return 1;
}
