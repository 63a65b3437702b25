/*
 * NAME
 *	fuzz_spool - the spool's segment reader, scan and recovery
 * DESCRIPTION
 *	The input (after one mode octet) is written as the segment file
 *	seg-00-00000001.sg of an empty spool directory.  With mode bit 0
 *	the harness first repairs the checksums it can find (the segment
 *	header's, every record's that has the record magic and fits, and
 *	each COMMIT's body size and CRC from the DATA records before it), so
 *	that mutations reach the envelope, state and edit decoders instead
 *	of stopping at the CRC.  Then, as `sluice-spool` and sluiced do:
 *	spool_scan() (read-only), spool_read_body_raw() of every live
 *	message, spool_verify(), spool_open() (recovery: it may cut a torn
 *	tail and keep a damaged file aside), spool_scan() again.
 *
 *	Invariants: nothing crashes; a message reported live has a START and
 *	a COMMIT record in the file whose checksums hold (checked here by an
 *	independent walk over every 8-aligned offset), and its body reads
 *	back with the size and CRC that COMMIT names; recovery reports the
 *	same live messages as the read-only scan, and a scan after recovery
 *	the same again (D4, D8: no live message is lost or made up).
 */
#include "tests/fuzz/fuzz.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/base/log.h"
#include "storage/spool_int.h"

#define MAX_LIVE 256
#define MAX_IDS 64

static char dir[64];

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* The record at off has a valid header shape and CRC (padding aside). */
static bool rec_ok(const uint8_t *f, size_t n, size_t off, uint32_t *type, uint32_t *len,
                   uint64_t *id)
{
    if (off + SPOOL_REC_HDR > n || get32(f + off) >> 16 != SPOOL_REC_MAGIC)
        return false;
    *type = get32(f + off) & 0xffff;
    *len = get32(f + off + 4);
    *id = get64(f + off + 8);
    if (*len > n - off - SPOOL_REC_HDR)
        return false;
    uint8_t h0[SPOOL_REC_HDR];
    memcpy(h0, f + off, sizeof(h0));
    put32(h0 + 16, 0);
    uint32_t crc = spool_crc32c(spool_crc32c(0, f + off + SPOOL_REC_HDR, *len), h0, sizeof(h0));
    return crc == get32(f + off + 16);
}

struct acc {
    uint64_t id, size;
    uint32_t crc;
};

static struct acc *acc_of(struct acc *v, size_t *nv, uint64_t id)
{
    for (size_t i = 0; i < *nv; i++)
        if (v[i].id == id)
            return &v[i];
    if (*nv == MAX_IDS)
        return NULL;
    v[*nv] = (struct acc){.id = id};
    return &v[(*nv)++];
}

/* Walks the records in order and makes their checksums hold. */
static void repair(uint8_t *f, size_t n)
{
    struct acc v[MAX_IDS];
    size_t nv = 0;
    if (n >= SPOOL_SEG_HDR)
        put32(f + 36, spool_crc32c(0, f, 36));
    for (size_t off = SPOOL_SEG_HDR; off + SPOOL_REC_HDR <= n;) {
        uint32_t word = get32(f + off), len = get32(f + off + 4);
        if (word >> 16 != SPOOL_REC_MAGIC || len > n - off - SPOOL_REC_HDR) {
            off += 8;
            continue;
        }
        uint32_t type = word & 0xffff;
        uint64_t id = get64(f + off + 8);
        uint8_t *pl = f + off + SPOOL_REC_HDR;
        struct acc *a = acc_of(v, &nv, id);
        if (type == SPOOL_REC_DATA && a != NULL) {
            a->crc = spool_crc32c(a->crc, pl, len);
            a->size += len;
        } else if (type == SPOOL_REC_COMMIT && len >= SPOOL_COMMIT_LEN && a != NULL) {
            put64(pl, a->size);
            put32(pl + 8, a->crc);
        }
        put32(f + off + 16, 0);
        put32(f + off + 16, spool_crc32c(spool_crc32c(0, pl, len), f + off, SPOOL_REC_HDR));
        off += SPOOL_REC_HDR + pad8(len);
    }
}

struct live {
    size_t n;
    uint64_t id[MAX_LIVE], size[MAX_LIVE];
};

static int on_live(void *arg, const struct spool_msginfo *m)
{
    struct live *l = arg;
    if (l->n < MAX_LIVE) {
        l->id[l->n] = m->id;
        l->size[l->n++] = m->size;
    }
    return 0;
}

static bool same_ids(const struct live *a, const struct live *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        bool found = false;
        for (size_t j = 0; j < b->n && !found; j++)
            found = a->id[i] == b->id[j];
        if (!found)
            return false;
    }
    return true;
}

/* A live message is backed by valid START and COMMIT records, and its
 * body is what the COMMIT says. */
static void check_live(const uint8_t *f, size_t n, uint64_t id, uint64_t size)
{
    bool start = false, commit = false;
    int fd = memfd_create("body", 0);
    FUZZ_CHECK(fd >= 0, "memfd");
    FUZZ_CHECK(spool_read_body_raw(dir, id, fd) == 0, "live %016llx: body unreadable",
               (unsigned long long)id);
    off_t blen = lseek(fd, 0, SEEK_END);
    FUZZ_CHECK(blen >= 0 && (uint64_t)blen == size, "live %016llx: body %lld, size %llu",
               (unsigned long long)id, (long long)blen, (unsigned long long)size);
    uint8_t *body = malloc((size_t)blen + 1);
    FUZZ_CHECK(pread(fd, body, (size_t)blen, 0) == blen, "pread");
    close(fd);
    uint32_t bcrc = spool_crc32c(0, body, (size_t)blen);
    free(body);
    for (size_t off = SPOOL_SEG_HDR; off + SPOOL_REC_HDR <= n; off += 8) {
        uint32_t type, len;
        uint64_t rid;
        if (!rec_ok(f, n, off, &type, &len, &rid) || rid != id)
            continue;
        if (type == SPOOL_REC_START)
            start = true;
        else if (type == SPOOL_REC_COMMIT && len == SPOOL_COMMIT_LEN &&
                 get64(f + off + SPOOL_REC_HDR) == size &&
                 get32(f + off + SPOOL_REC_HDR + 8) == bcrc)
            commit = true;
    }
    FUZZ_CHECK(start && commit, "live %016llx without a valid START (%d) or COMMIT (%d)",
               (unsigned long long)id, start, commit);
}

static void clean(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[600];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d != NULL)
        closedir(d);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    log_set_level(LOG_ERROR);
    strcpy(dir, "/tmp/sluice-fuzz-spool-XXXXXX");
    FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == '\0')
        LLVMFuzzerInitialize(NULL, NULL);
    struct fuzz_in in = {data, size};
    uint8_t mode = fuzz_u8(&in);
    if (in.n > (1u << 20))
        return 0;
    size_t n = in.n;
    uint8_t *f = malloc(n + 1);
    memcpy(f, in.p, n);
    if (mode & 1)
        repair(f, n);

    clean();
    char path[600];
    snprintf(path, sizeof(path), "%s/seg-00-00000001.sg", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK(fd >= 0, "open %s", path);
    FUZZ_CHECK(write(fd, f, n) == (ssize_t)n, "write");
    close(fd);

    static struct live scan1, rec, scan2;
    memset(&scan1, 0, sizeof(scan1));
    memset(&rec, 0, sizeof(rec));
    memset(&scan2, 0, sizeof(scan2));
    struct spool_scan_report rep;
    int rc = spool_scan(dir, on_live, &scan1, &rep);
    if (rc == 0)
        for (size_t i = 0; i < scan1.n; i++)
            check_live(f, n, scan1.id[i], scan1.size[i]);
    char msg[4096];
    (void)spool_verify(dir, msg, sizeof(msg));
    struct spool *sp = NULL;
    int orc = spool_open(dir, on_live, &rec, &rep, &sp);
    if (orc == 0) {
        spool_close(sp);
        if (rc == 0)
            FUZZ_CHECK(same_ids(&scan1, &rec), "scan %zu live, recovery %zu", scan1.n, rec.n);
        FUZZ_CHECK(spool_scan(dir, on_live, &scan2, &rep) == 0, "scan after recovery failed");
        FUZZ_CHECK(same_ids(&rec, &scan2), "recovery %zu live, scan after it %zu", rec.n, scan2.n);
    }
    free(f);
    return 0;
}
