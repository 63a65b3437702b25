/*
 * NAME
 *	cfg_file - opening a file the configuration is read from
 * SYNOPSIS
 *	#include "core/cfg/cfg.h"
 *
 *	int cfg_file_open(const char *path, char *err, size_t errlen);
 *	FILE *cfg_file_fopen(const char *path, char *err, size_t errlen);
 * DESCRIPTION
 *	Every reader of sluice.conf and of the files it names (auth_users,
 *	alias files, the file sluicectl edits) opens them here.  The open is
 *	O_NONBLOCK, so a FIFO without a writer (or a device) cannot hang it,
 *	and anything but a regular file is refused: a daemon reading a FIFO
 *	at start waits for ever, and a reload from one would hold the signal
 *	thread.  A regular file ignores O_NONBLOCK; it is cleared anyway, so
 *	the descriptor behaves as a plain one.
 * DIAGNOSTICS
 *	cfg_file_open() returns the descriptor (O_CLOEXEC) or -errno, and
 *	cfg_file_fopen() the stream or NULL, with one line in err:
 *	"PATH: not a regular file" or "PATH: strerror".
 */
#include "core/cfg/cfg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cfg_file_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0)
        rc = -errno;
    else if (!S_ISREG(st.st_mode))
        rc = -EINVAL;
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
        rc = -errno;
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, rc == -EINVAL ? "not a regular file" : strerror(-rc));
        close(fd);
        return rc;
    }
    return fd;
}

FILE *cfg_file_fopen(const char *path, char *err, size_t errlen)
{
    int fd = cfg_file_open(path, err, errlen);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}
