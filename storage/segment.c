/*
 * NAME
 *	segment - segment names, headers and the sequential record reader
 * SYNOPSIS
 *	#include "storage/spool_int.h"
 *
 *	spool_seg_list(dirfd, &segs, &n);
 *	spool_rd_open(dirfd, &segs[i], false, &rd, &why, &torn);
 *	while ((r = spool_rd_next(&rd, &rec, &why)) > 0)
 *		...;
 *	spool_rd_close(&rd);
 * DESCRIPTION
 *	A segment is named seg-<worker:02x>-<seq:08x>.sg and begins with a
 *	40-octet header: "SLUICESG", u32 version, u32 worker, u64 sequence,
 *	i64 creation time in ms, u32 reserved, u32 crc32c of the first 36
 *	octets.  Records follow at offset 40.
 *
 *	The reader reads through a window buffer (one pread per window, not
 *	per record) up to the size the file had when it was opened, so a
 *	segment that a live writer is appending to reads as a consistent
 *	prefix.  Every record is checked whole (magic, type, length, crc,
 *	padding) before it is handed out; the first one that fails ends the
 *	usable part of the segment.
 *
 *	A writer pre-zeroes its segment ahead of the records (writer.c), so
 *	zeros from a record boundary to the end of the file are the end of
 *	the records, not a bad record: spool_rd_next() returns 0 there, cuts
 *	rd->size to the boundary and puts the zeros' length in rd->zero_tail
 *	(recovery decides what a zero tail means in a sealed segment).
 * DIAGNOSTICS
 *	-EBADMSG with a short reason for a bad header or record; -errno for
 *	I/O errors.
 */
#include "storage/spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RD_WINDOW (1u << 20)

void spool_seg_name(char out[SPOOL_SEG_NAME_LEN + 1], unsigned worker, uint64_t seq)
{
    snprintf(out, SPOOL_SEG_NAME_LEN + 1, "seg-%02x-%08" PRIx32 ".sg", worker & 0xffu,
             (uint32_t)seq);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool spool_seg_parse(const char *name, unsigned *worker, uint64_t *seq)
{
    if (strlen(name) != SPOOL_SEG_NAME_LEN || memcmp(name, "seg-", 4) != 0 || name[6] != '-' ||
        strcmp(name + 15, ".sg") != 0)
        return false;
    uint64_t v = 0;
    for (int i = 4; i < 15; i++) {
        if (i == 6)
            continue;
        int h = hexval(name[i]);
        if (h < 0)
            return false;
        v = v << 4 | (uint64_t)h;
    }
    *worker = (unsigned)(v >> 32);
    *seq = v & 0xffffffffu;
    return true;
}

static int seg_cmp(const void *a, const void *b)
{
    const struct spool_seg *x = a, *y = b;
    if (x->worker != y->worker)
        return x->worker < y->worker ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int spool_seg_list(int dirfd, struct spool_seg **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int r = -errno;
        close(fd);
        return r;
    }
    struct spool_seg *v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    int r = 0;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        struct spool_seg s;
        if (!spool_seg_parse(de->d_name, &s.worker, &s.seq))
            continue;
        memcpy(s.name, de->d_name, sizeof(s.name));
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct spool_seg *nv = realloc(v, nc * sizeof(*nv));
            if (nv == NULL) {
                r = -ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        v[cnt++] = s;
        errno = 0;
    }
    if (r == 0 && errno != 0)
        r = -errno;
    closedir(d);
    if (r < 0) {
        free(v);
        return r;
    }
    if (cnt > 1)
        qsort(v, cnt, sizeof(*v), seg_cmp);
    *out = v;
    *n = cnt;
    return 0;
}

void spool_seg_hdr_encode(unsigned char h[SPOOL_SEG_HDR], unsigned worker, uint64_t seq,
                          int64_t created_ms)
{
    memcpy(h, SPOOL_SEG_MAGIC, 8);
    spool_put32(h + 8, SPOOL_SEG_VERSION);
    spool_put32(h + 12, worker);
    spool_put64(h + 16, seq);
    spool_put64(h + 24, (uint64_t)created_ms);
    spool_put32(h + 32, 0);
    spool_put32(h + 36, spool_crc32c(0, h, 36));
}

const char spool_why_version[] = "unsupported segment version";
const char spool_why_name[] = "segment header does not match the file name";

static const char *seg_hdr_check(const unsigned char h[SPOOL_SEG_HDR], const struct spool_seg *s)
{
    if (memcmp(h, SPOOL_SEG_MAGIC, 8) != 0)
        return "bad segment magic";
    if (spool_crc32c(0, h, 36) != spool_get32(h + 36))
        return "segment header crc mismatch";
    uint32_t version = spool_get32(h + 8);
    if (version < SPOOL_SEG_VERSION_MIN || version > SPOOL_SEG_VERSION)
        return spool_why_version;
    if (spool_get32(h + 12) != s->worker || spool_get64(h + 16) != s->seq)
        return spool_why_name;
    if (spool_get32(h + 32) != 0)
        return "non-zero reserved field in segment header";
    return NULL;
}

/* Makes [off, off+n) of the file available; *p points at off.  -ENODATA if
 * the file is shorter than it was at open (cut by someone else). */
static int rd_fill(struct spool_rd *rd, uint64_t off, size_t n, const unsigned char **p)
{
    if (off >= rd->boff && off + n <= rd->boff + rd->blen) {
        *p = rd->buf + (off - rd->boff);
        return 0;
    }
    size_t want = n > RD_WINDOW ? n : RD_WINDOW;
    if (want > rd->cap) {
        unsigned char *nb = realloc(rd->buf, want);
        if (nb == NULL)
            return -ENOMEM;
        rd->buf = nb;
        rd->cap = want;
    }
    uint64_t avail = rd->size > off ? rd->size - off : 0;
    size_t get = rd->cap < avail ? rd->cap : (size_t)avail;
    size_t got = 0;
    rd->blen = 0;
    while (got < get) {
        ssize_t k = pread(rd->fd, rd->buf + got, get - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    rd->boff = off;
    rd->blen = got;
    if (got < n)
        return -ENODATA;
    *p = rd->buf;
    return 0;
}

int spool_rd_open(int dirfd, const struct spool_seg *s, bool rw, struct spool_rd *rd,
                  const char **why, bool *torn)
{
    memset(rd, 0, sizeof(*rd));
    rd->fd = -1;
    *why = NULL;
    *torn = false;
    int fd = openat(dirfd, s->name, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    rd->fd = fd;
    rd->size = (uint64_t)st.st_size;
    if (rd->size < SPOOL_SEG_HDR) {
        *why = "short segment header";
        *torn = true;
        return -EBADMSG;
    }
    const unsigned char *h;
    int r = rd_fill(rd, 0, SPOOL_SEG_HDR, &h);
    if (r == -ENODATA) {
        *why = "short segment header";
        *torn = true;
        return -EBADMSG;
    }
    if (r < 0)
        return r;
    *why = seg_hdr_check(h, s);
    if (*why) {
        /* a creation whose header never reached the disk reads as zeros */
        bool zero = true;
        for (unsigned i = 0; i < SPOOL_SEG_HDR; i++)
            zero = zero && h[i] == 0;
        *torn = zero;
        return -EBADMSG;
    }
    rd->off = SPOOL_SEG_HDR;
    return 0;
}

/* 1 if [off, rd->size) holds only zeros, 0 if not, -errno. */
static int rd_zero_from(struct spool_rd *rd, uint64_t off)
{
    while (off < rd->size) {
        uint64_t left = rd->size - off;
        size_t n = left < RD_WINDOW ? (size_t)left : RD_WINDOW;
        const unsigned char *p;
        int r = rd_fill(rd, off, n, &p);
        if (r < 0)
            return r == -ENODATA ? 0 : r;
        for (size_t i = 0; i < n; i++)
            if (p[i] != 0)
                return 0;
        off += n;
    }
    return 1;
}

int spool_rd_next(struct spool_rd *rd, struct spool_rec *rec, const char **why)
{
    const unsigned char *h;
    *why = NULL;
    if (rd->off >= rd->size)
        return 0;
    /* a record starts with its magic: a zero octet here is either the
     * pre-zeroed tail (zeros to the end) or a bad record */
    if (rd_fill(rd, rd->off, 1, &h) == 0 && h[0] == 0) {
        int z = rd_zero_from(rd, rd->off);
        if (z < 0)
            return z;
        if (z > 0) {
            rd->zero_tail = rd->size - rd->off;
            rd->size = rd->off;
            return 0;
        }
    }
    if (rd->size - rd->off < SPOOL_REC_HDR) {
        *why = "truncated record header";
        return -EBADMSG;
    }
    int r = rd_fill(rd, rd->off, SPOOL_REC_HDR, &h);
    if (r == -ENODATA) {
        *why = "segment shrank while being read";
        return -EBADMSG;
    }
    if (r < 0)
        return r;
    *why = spool_rec_hdr_decode(h, rec);
    if (*why)
        return -EBADMSG;
    uint64_t whole = SPOOL_REC_HDR + spool_pad8(rec->len);
    if (rd->size - rd->off < whole) {
        *why = "truncated record";
        return -EBADMSG;
    }
    r = rd_fill(rd, rd->off, (size_t)whole, &h);
    if (r == -ENODATA) {
        *why = "segment shrank while being read";
        return -EBADMSG;
    }
    if (r < 0)
        return r;
    *why = spool_rec_payload_check(h, rec, h + SPOOL_REC_HDR);
    if (*why)
        return -EBADMSG;
    rec->off = rd->off;
    rec->payload = h + SPOOL_REC_HDR;
    rd->off += whole;
    return 1;
}

/* 1 if a whole record that passes every check starts at off (nothing is
 * consumed), 0 if not, -errno. */
static int rd_valid_at(struct spool_rd *rd, uint64_t off)
{
    const unsigned char *h;
    struct spool_rec rec;
    if (off >= rd->size || rd->size - off < SPOOL_REC_HDR)
        return 0;
    int r = rd_fill(rd, off, SPOOL_REC_HDR, &h);
    if (r < 0)
        return r == -ENODATA ? 0 : r;
    if (spool_rec_hdr_decode(h, &rec) != NULL)
        return 0;
    uint64_t whole = SPOOL_REC_HDR + spool_pad8(rec.len);
    if (rd->size - off < whole)
        return 0;
    r = rd_fill(rd, off, (size_t)whole, &h);
    if (r < 0)
        return r == -ENODATA ? 0 : r;
    return spool_rec_payload_check(h, &rec, h + SPOOL_REC_HDR) == NULL;
}

int spool_rd_resync(struct spool_rd *rd, uint64_t from)
{
    const unsigned char *h;
    struct spool_rec rec;
    /* a damaged payload under an intact header: the next record starts
     * where the header says */
    if (from == rd->off && rd->size - rd->off >= SPOOL_REC_HDR &&
        rd_fill(rd, rd->off, SPOOL_REC_HDR, &h) == 0 && spool_rec_hdr_decode(h, &rec) == NULL) {
        uint64_t next = rd->off + SPOOL_REC_HDR + spool_pad8(rec.len);
        int r = rd_valid_at(rd, next);
        if (r < 0)
            return r;
        if (r > 0) {
            rd->off = next;
            return 1;
        }
    }
    for (uint64_t off = from == rd->off ? from + 8 : from; off + SPOOL_REC_HDR <= rd->size;
         off += 8) {
        /* cheap test first: the record magic */
        if (rd_fill(rd, off, SPOOL_REC_HDR, &h) == 0 && spool_get32(h) >> 16 != SPOOL_REC_MAGIC)
            continue;
        int r = rd_valid_at(rd, off);
        if (r < 0)
            return r;
        if (r > 0) {
            rd->off = off;
            return 1;
        }
    }
    return 0;
}

void spool_rd_close(struct spool_rd *rd)
{
    if (rd->fd >= 0)
        close(rd->fd);
    free(rd->buf);
    memset(rd, 0, sizeof(*rd));
    rd->fd = -1;
}

int spool_fsync_dir(int dirfd)
{
    return fsync(dirfd) < 0 ? -errno : 0;
}
