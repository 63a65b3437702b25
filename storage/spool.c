/*
 * NAME
 *	spool - the spool directory handle
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	int spool_open(const char *dir, spool_scan_fn *cb, void *arg,
 *		struct spool_scan_report *rep, struct spool **out);
 *	void spool_close(struct spool *sp);
 * DESCRIPTION
 *	spool_open() creates the directory if needed (mode 0700, like
 *	mkdir -p, fsyncing the parent of every directory it creates), takes
 *	flock(LOCK_EX|LOCK_NB) on <dir>/lock for as long as the handle lives,
 *	and runs recovery in repair mode (recover.c), which also rebuilds the
 *	space accounting (acct.c) and unlinks segments that hold nothing
 *	needed.  The handle remembers the largest message id and, per
 *	worker, the next segment sequence, so that writers continue them.
 *	*out is set before the recovery callbacks run (and reset on
 *	failure), so that they may pass it to spool_msg_from_info().
 *	spool_msg objects may outlive the handle (their descriptors are
 *	then closed by the last spool_msg_free), but must not be freed
 *	concurrently with spool_close().
 * DIAGNOSTICS
 *	-EBUSY when another process (or another handle) holds the lock;
 *	otherwise -errno.  spool_close() panics while writers are open.
 */
#include "storage/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/log.h"

/* fsync the directory that holds path (after creating path in it). */
static int fsync_parent(const char *path)
{
    char *p = strdup(path);
    if (p == NULL)
        return -ENOMEM;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    char *slash = strrchr(p, '/');
    const char *parent = ".";
    if (slash == p)
        parent = "/";
    else if (slash) {
        *slash = '\0';
        parent = p;
    }
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = fd < 0 ? -errno : spool_fsync_dir(fd);
    if (fd >= 0)
        close(fd);
    free(p);
    return r;
}

static int mkdir_one(const char *path)
{
    if (mkdir(path, 0700) == 0)
        return fsync_parent(path);
    if (errno != EEXIST)
        return -errno;
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int mkdir_p(const char *dir)
{
    char *p = strdup(dir);
    if (p == NULL)
        return -ENOMEM;
    int r = 0;
    for (char *s = p + 1; r == 0 && *s; s++) {
        if (*s != '/' || s[-1] == '/')
            continue;
        *s = '\0';
        r = mkdir_one(p);
        *s = '/';
    }
    if (r == 0)
        r = mkdir_one(p);
    free(p);
    return r;
}

static int spool_lock(struct spool *sp)
{
    sp->lockfd = openat(sp->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (sp->lockfd < 0)
        return -errno;
    if (flock(sp->lockfd, LOCK_EX | LOCK_NB) < 0)
        return errno == EWOULDBLOCK ? -EBUSY : -errno;
    return 0;
}

static void spool_free(struct spool *sp)
{
    if (sp->lockfd >= 0)
        close(sp->lockfd); /* releases the lock */
    if (sp->dirfd >= 0)
        close(sp->dirfd);
    free(sp->dir);
    free(sp);
}

int spool_open(const char *dir, spool_scan_fn *cb, void *arg, struct spool_scan_report *rep,
               struct spool **out)
{
    *out = NULL;
    if (rep)
        memset(rep, 0, sizeof(*rep));
    struct spool *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return -ENOMEM;
    sp->dirfd = sp->lockfd = -1;
    sp->dir = strdup(dir);
    if (sp->dir == NULL) {
        spool_free(sp);
        return -ENOMEM;
    }
    int r = mkdir_p(dir);
    if (r == 0) {
        sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = sp->dirfd < 0 ? -errno : 0;
    }
    if (r == 0)
        r = spool_lock(sp);
    struct spool_scan_report lrep;
    memset(&lrep, 0, sizeof(lrep));
    atomic_init(&sp->seg_size, SPOOL_SEG_DEFAULT);
    atomic_init(&sp->full, false);
    atomic_init(&sp->full_episodes, 0);
    sp->reserve_worker = -1;
    atomic_init(&sp->state_seq, 1);
    atomic_init(&sp->ncand_hint, 0);
    pthread_mutex_init(&sp->mu, NULL);
    pthread_mutex_init(&sp->amu, NULL);
    *out = sp; /* the callback may hand it to spool_msg_from_info() */
    if (r == 0)
        r = spool_recover_open(sp, cb, arg, &lrep);
    if (rep)
        *rep = lrep;
    if (r != 0) {
        *out = NULL;
        spool_acct_fini(sp);
        pthread_mutex_destroy(&sp->mu);
        pthread_mutex_destroy(&sp->amu);
        spool_free(sp);
        return r;
    }
    sp->max_id = lrep.max_id;
    return 0;
}

void spool_close(struct spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->nwriters)
        log_panic("spool_close: %u writers still open", sp->nwriters);
    spool_acct_fini(sp);
    pthread_mutex_destroy(&sp->mu);
    pthread_mutex_destroy(&sp->amu);
    spool_free(sp);
}

const char *spool_dir(const struct spool *sp)
{
    return sp->dir;
}

void spool_set_segment_size(struct spool *sp, uint64_t bytes)
{
    if (bytes == 0)
        bytes = SPOOL_SEG_DEFAULT;
    /* relaxed: no data is published with it; writers read it at their next append */
    atomic_store_explicit(&sp->seg_size, bytes, memory_order_relaxed);
}

void spool_id_str(uint64_t id, char out[17])
{
    snprintf(out, 17, "%016" PRIx64, id);
}

bool spool_id_parse(const char *s, uint64_t *id)
{
    uint64_t v = 0;
    int i;
    for (i = 0; s[i]; i++) {
        char c = s[i];
        int h;
        if (c >= '0' && c <= '9')
            h = c - '0';
        else if (c >= 'a' && c <= 'f')
            h = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            h = c - 'A' + 10;
        else
            return false;
        if (i >= 16)
            return false;
        v = v << 4 | (uint64_t)h;
    }
    if (i != 16)
        return false;
    *id = v;
    return true;
}
