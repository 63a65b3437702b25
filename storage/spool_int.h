/*
 * NAME
 *	spool_int - internals shared by the files of storage/
 * SYNOPSIS
 *	#include "storage/spool_int.h"
 * DESCRIPTION
 *	The on-disk format of docs/spool-format.md as constants and codecs
 *	(record.c), CRC32C (crc32c.c), segment names and the sequential
 *	segment reader (segment.c), the recovery index (index.c), the scan
 *	engine (recover.c) and the spool handle (spool.c).  Nothing here is
 *	for other modules: they include storage/spool.h.
 */
#ifndef SLUICE_STORAGE_SPOOL_INT_H
#define SLUICE_STORAGE_SPOOL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "storage/spool.h"

/* ---- format constants ---- */

#define SPOOL_SEG_MAGIC "SLUICESG"
#define SPOOL_SEG_VERSION 3u      /* written; 2 added EDITS, 3 the STATE record */
#define SPOOL_SEG_VERSION_MIN 1u  /* oldest version read */
#define SPOOL_SEG_HDR 40u         /* segment header; records start here */
#define SPOOL_REC_HDR 24u         /* record header */
#define SPOOL_REC_MAGIC 0x5352u   /* high half of a record's type word */
#define SPOOL_REC_MAX (64u << 20) /* largest payload: longer is garbage */
#define SPOOL_COMMIT_LEN 16u      /* u64 body size, u32 body crc, u32 flags */
#define SPOOL_START_MIN (8u + 4u * 5u)
#define SPOOL_SEG_NAME_LEN 18u /* "seg-ww-ssssssss.sg" */
#define SPOOL_SEG_DEFAULT (64ull << 20)
#define SPOOL_WORKERS 256u

enum spool_rectype {
    SPOOL_REC_START = 1,
    SPOOL_REC_DATA = 2,
    SPOOL_REC_COMMIT = 3,
    SPOOL_REC_ABORT = 4,
    SPOOL_REC_REMOVE = 5,
    SPOOL_REC_EDITS = 6,
    SPOOL_REC_STATE = 7,
};
#define SPOOL_REC_TYPE_MAX SPOOL_REC_STATE
#define SPOOL_EDITS_MIN 4u                            /* u32 count */
#define SPOOL_STATE_MIN (8u + 4u + 4u + 8u + 4u + 4u) /* u64 seq .. str reason */
/* COMMIT flags: the low 24 bits are SPOOL_MSG_*, the top octet counts how
 * often compaction copied the message (recovery keeps the highest copy). */
#define SPOOL_MSG_MASK 0x00ffffffu
#define SPOOL_GEN_SHIFT 24
/* Octets a record with an n-octet payload takes in a segment. */
#define SPOOL_REC_SIZE(n) (SPOOL_REC_HDR + spool_pad8(n))

static inline uint64_t spool_pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* Little-endian fields, byte by byte: the format does not depend on the host. */
static inline void spool_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void spool_put64(unsigned char *p, uint64_t v)
{
    spool_put32(p, (uint32_t)v);
    spool_put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t spool_get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t spool_get64(const unsigned char *p)
{
    return (uint64_t)spool_get32(p) | (uint64_t)spool_get32(p + 4) << 32;
}

/* ---- crc32c.c ---- */

/* crc continues a previous value (0 to start), like zlib's crc32(). */
uint32_t spool_crc32c(uint32_t crc, const void *p, size_t n);
uint32_t spool_crc32c_sw(uint32_t crc, const void *p, size_t n);
/* SSE4.2; falls back to the table when the CPU lacks it. */
uint32_t spool_crc32c_hw(uint32_t crc, const void *p, size_t n);
bool spool_crc32c_hw_ok(void);
/* The crc of A||B from crc(A), crc(B) and len(B). */
uint32_t spool_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/* ---- record.c ---- */

/* A record as the reader hands it out; payload valid until the next read. */
struct spool_rec {
    uint32_t type;
    uint32_t len; /* payload octets, padding excluded */
    uint64_t id;
    uint32_t crc;  /* as stored */
    uint32_t pcrc; /* crc32c of the payload alone */
    uint64_t off;  /* offset of the record header in its segment */
    const unsigned char *payload;
};

/* Fills a record header; pcrc is the crc32c of the payload. */
void spool_rec_hdr_encode(unsigned char h[SPOOL_REC_HDR], uint32_t type, uint32_t len, uint64_t id,
                          uint32_t pcrc);
/* Plausibility of a header alone: NULL, or what is wrong. */
const char *spool_rec_hdr_decode(const unsigned char h[SPOOL_REC_HDR], struct spool_rec *rec);
/* The payload (and its padding) against the header's crc: NULL or why not. */
const char *spool_rec_payload_check(const unsigned char h[SPOOL_REC_HDR], struct spool_rec *rec,
                                    const unsigned char *payload);

/* START payload: the length spool_env_encode() writes (may exceed
 * SPOOL_REC_MAX: the caller refuses such an envelope). */
uint64_t spool_env_len(const struct spool_env *env);
void spool_env_encode(const struct spool_env *env, unsigned char *out);
/* Decoded envelope storage, reused from message to message. */
struct spool_envdec {
    char *mem;
    size_t memcap;
    const char **rcpts;
    size_t rcptcap;
};
/* Fills m's envelope fields (pointing into d) from a START payload:
 * 0, -EBADMSG or -ENOMEM. */
int spool_env_decode(const unsigned char *p, size_t len, struct spool_msginfo *m,
                     struct spool_envdec *d);
void spool_envdec_fini(struct spool_envdec *d);

void spool_commit_encode(unsigned char out[SPOOL_COMMIT_LEN], uint64_t size, uint32_t crc);
bool spool_commit_decode(const unsigned char *p, size_t len, uint64_t *size, uint32_t *crc);
/* The flags word of a COMMIT payload (SPOOL_MSG_*). */
void spool_commit_set_flags(unsigned char out[SPOOL_COMMIT_LEN], uint32_t flags);
uint32_t spool_commit_flags(const unsigned char p[SPOOL_COMMIT_LEN]);

/* ---- edits.c: the EDITS record and applying it ---- */

uint64_t spool_edits_len(const struct spool_edit *v, size_t n);
void spool_edits_encode(const struct spool_edit *v, size_t n, unsigned char *out);
/* A decoded list; the strings point into mem. */
struct spool_editdec {
    struct spool_edit *v;
    size_t n;
    char *mem;
};
/* 0, -EBADMSG or -ENOMEM. */
int spool_edits_decode(const unsigned char *p, size_t len, struct spool_editdec *d);
void spool_editdec_fini(struct spool_editdec *d);

typedef int spool_out_fn(void *arg, const void *p, size_t n); /* 0 or -errno */
/* Writes the header section hdr[0, len) with v applied (docs/spool-format.md). */
int spool_edits_apply(const char *hdr, size_t len, const struct spool_edit *v, size_t n,
                      spool_out_fn *out, void *arg);
/* A body passed through in pieces, the edits applied to its header section. */
struct spool_efilter {
    const struct spool_edit *v;
    size_t n;
    spool_out_fn *out;
    void *arg;
    char *buf; /* the header section so far */
    size_t len, cap, scanned;
    bool passing; /* the header section is done: pass everything on */
};
void spool_ef_init(struct spool_efilter *f, const struct spool_edit *v, size_t n, spool_out_fn *out,
                   void *arg);
int spool_ef_feed(struct spool_efilter *f, const void *p, size_t n);
int spool_ef_finish(struct spool_efilter *f);
void spool_ef_fini(struct spool_efilter *f);

/* ---- segment.c ---- */

struct spool_seg {
    unsigned worker;
    uint64_t seq;
    char name[SPOOL_SEG_NAME_LEN + 1];
};

void spool_seg_name(char out[SPOOL_SEG_NAME_LEN + 1], unsigned worker, uint64_t seq);
bool spool_seg_parse(const char *name, unsigned *worker, uint64_t *seq);
/* Every segment file of the directory, sorted by (worker, seq); *out is
 * the caller's to free.  0 or -errno. */
int spool_seg_list(int dirfd, struct spool_seg **out, size_t *n);
void spool_seg_hdr_encode(unsigned char h[SPOOL_SEG_HDR], unsigned worker, uint64_t seq,
                          int64_t created_ms);

/* Sequential reader of one segment, bounded by its size at open. */
struct spool_rd {
    int fd;
    uint64_t size;
    uint64_t off; /* the next record */
    unsigned char *buf;
    size_t cap;
    uint64_t boff; /* file offset of buf[0] */
    size_t blen;
    uint64_t zero_tail; /* octets of zeros that ended the segment (size was cut) */
};

/* The two bad-header reasons that are not damage: a header that is whole
 * (its crc holds) but of a version this reader does not know, or naming
 * another file.  spool_rd_open() returns these very pointers. */
extern const char spool_why_version[];
extern const char spool_why_name[];

/* 0; -EBADMSG for a bad header (*why says what, *torn whether it looks
 * like a segment whose creation never reached the disk); -errno. */
int spool_rd_open(int dirfd, const struct spool_seg *s, bool rw, struct spool_rd *rd,
                  const char **why, bool *torn);
/* 1 and *rec; 0 at a clean end; -EBADMSG with *why for a bad record at
 * rd->off (the end of the usable segment); -errno. */
int spool_rd_next(struct spool_rd *rd, struct spool_rec *rec, const char **why);
/* After a bad record at rd->off (or a bad header, from = SPOOL_SEG_HDR):
 * finds the next whole record that passes every check, at or after from
 * (after rd->off when from is rd->off), first where the bad record's own
 * length points, then at every 8-octet boundary.  1 with rd->off at it,
 * 0 when there is none (rd->off unchanged), -errno.  Message bodies
 * cannot hold a record header (NUL octets are refused at DATA and a
 * header has at least four), so a record found is one the writer wrote. */
int spool_rd_resync(struct spool_rd *rd, uint64_t from);
void spool_rd_close(struct spool_rd *rd);

/* 0 or -errno. */
int spool_fsync_dir(int dirfd);

/* ---- index.c: message id -> what recovery learnt about it ---- */

enum {
    SPOOL_IX_START = 1,
    SPOOL_IX_COMMIT = 2,
    SPOOL_IX_ABORT = 4,
    SPOOL_IX_REMOVE = 8,
    SPOOL_IX_BAD = 16, /* records out of order, or the body does not match COMMIT */
    SPOOL_IX_EDITS = 32,
    SPOOL_IX_COMMITTED = 64, /* some copy had a COMMIT record (ABORT/REMOVE then matter) */
    SPOOL_IX_MISMATCH = 128, /* a copy's records did not match: said once the scan is done,
                              * unless the id was removed or aborted (then it is expected) */
};
/* Flags of one copy of the message; the others are the id's. */
#define SPOOL_IX_COPY (SPOOL_IX_START | SPOOL_IX_COMMIT | SPOOL_IX_BAD | SPOOL_IX_EDITS)

/* One copy of a message's body records as recovery found them. */
struct spool_icopy {
    uint64_t size;
    uint64_t start_off; /* START record's header */
    uint64_t edits_off; /* EDITS payload */
    uint32_t start_seg; /* index into the segment list */
    uint32_t start_len;
    uint32_t commit_seg;
    uint32_t edits_seg, edits_len;
    uint32_t crc;                /* running body crc */
    uint64_t rbytes;             /* octets of its records */
    uint32_t ext_head, ext_tail; /* its DATA payloads: spool_xnode indices + 1, 0: none */
    uint16_t nedits;             /* edits in its EDITS record (saturating) */
    uint8_t flags;               /* SPOOL_IX_COPY bits */
    uint8_t gen;                 /* compaction copy generation (COMMIT's top octet) */
    uint8_t mflags;              /* COMMIT's flags (SPOOL_MSG_*, the low octet) */
};

struct spool_ient {
    uint64_t id; /* 0: empty slot */
    struct spool_icopy c;
    uint32_t seg_head; /* segments with body records of any copy (spool_xnode + 1) */
    uint32_t seg_last; /* the last segment pushed there + 1 */
    uint32_t dup;      /* a complete earlier copy in scan's dup list + 1, 0: none */
    uint8_t flags;     /* SPOOL_IX_* of the id (ABORT, REMOVE, COMMITTED) */
};

struct spool_index {
    struct spool_ient *v;
    size_t cap; /* power of two, or 0 */
    size_t n;
};

void spool_index_init(struct spool_index *ix);
void spool_index_fini(struct spool_index *ix);
/* The entry for id, created if create; NULL when absent or out of memory. */
struct spool_ient *spool_index_get(struct spool_index *ix, uint64_t id, bool create);
static inline bool spool_ient_live(const struct spool_ient *e)
{
    return (e->flags & (SPOOL_IX_ABORT | SPOOL_IX_REMOVE)) == 0 &&
           (e->c.flags & (SPOOL_IX_START | SPOOL_IX_COMMIT | SPOOL_IX_BAD)) ==
               (SPOOL_IX_START | SPOOL_IX_COMMIT);
}

/* ---- map.c: u64 key -> pointer (open addressing, deletable) ---- */

struct spool_map {
    uint64_t *k; /* 0: empty */
    void **v;
    size_t cap, n;
};
void *spool_map_get(const struct spool_map *m, uint64_t k);
/* 0 or -ENOMEM; replaces an existing value. */
int spool_map_put(struct spool_map *m, uint64_t k, void *v);
/* The value slot of k, the key inserted (value NULL) if absent; NULL out
 * of memory.  The slot is valid until the next insertion or deletion. */
void **spool_map_slot(struct spool_map *m, uint64_t k);
void *spool_map_del(struct spool_map *m, uint64_t k);
void spool_map_fini(struct spool_map *m);

/* ---- state.c: the STATE record ---- */

/* A decoded STATE payload; strings point into the payload's copy. */
struct spool_stdec {
    uint64_t seq;
    struct spool_state st;
};
uint64_t spool_state_len(const struct spool_state *st);
void spool_state_encode(const struct spool_state *st, uint64_t seq, unsigned char *out);
/* 0 or -EBADMSG; *d's strings are decoded into mem (len + nrcpt + 2 octets)
 * and rcpts (nrcpt + 1 pointers), both the caller's. */
int spool_state_decode(const unsigned char *p, size_t len, struct spool_stdec *d, char *mem,
                       const char **rcpts, size_t rcptcap);
/* nrcpt of a well-formed payload (0 unless RCPTS), to size the buffers. */
uint32_t spool_state_nrcpt(const unsigned char *p, size_t len);

/* Folding STATE records, in seq order, into a message's state. */
struct spool_fold {
    uint32_t nrcpt;
    const char *const *rcpts; /* START's or the latest RCPTS's (borrowed) */
    uint8_t *rstate;          /* nrcpt, owned */
    size_t rcap;
    uint32_t attempts;
    int64_t next_ms;
    const char *last_error; /* borrowed, "" if none */
    uint32_t qflags;
};
/* Starts a fold for a message with START's recipients: 0 or -ENOMEM. */
int spool_fold_begin(struct spool_fold *f, uint32_t nrcpt, const char *const *rcpts);
/* Applies one record (its strings must live as long as the fold is used). */
int spool_fold_apply(struct spool_fold *f, const struct spool_stdec *d);
void spool_fold_fini(struct spool_fold *f);

/* ---- acct.c: shared segment descriptors, space accounting, reclaim ---- */

/* A read-only descriptor of a segment, shared by every spool_msg reading
 * it.  Cached in its segment's entry while anyone holds it (sp != NULL). */
struct spool_fh {
    _Atomic unsigned refs;
    int fd;
    struct spool *sp;          /* NULL: uncached (read-only scan) or the spool closed */
    struct spool_sacct *owner; /* the cache slot, NULL once unlinked (under sp->amu) */
};
/* A descriptor of segment (worker, seq) of sp: one reference for the caller.
 * NULL with *err on failure. */
struct spool_fh *spool_fh_get(struct spool *sp, unsigned worker, uint64_t seq, int *err);
/* An uncached descriptor of dirfd/name. */
struct spool_fh *spool_fh_open(int dirfd, const char *name, int *err);
struct spool_fh *spool_fh_ref(struct spool_fh *h);
void spool_fh_release(struct spool_fh *h);

/* Guard: this segment's existence keeps a REMOVE/ABORT record in seg needed. */
struct spool_guard {
    struct spool_sacct *seg;
    uint32_t n;
};

enum {
    SPOOL_SA_CURRENT = 1, /* a writer appends to it */
    SPOOL_SA_DYING = 2,   /* being unlinked */
    SPOOL_SA_COMPACT = 4, /* a compaction reads it */
    SPOOL_SA_STUCK = 8,   /* holds a message that also has body records elsewhere */
    SPOOL_SA_KEEP = 16,   /* never reclaimed (unreadable, or its records could not be placed) */
    SPOOL_SA_CAND = 32,   /* on the candidate list */
};

struct spool_sacct {
    uint64_t key; /* worker << 32 | seq */
    uint64_t size;
    uint64_t live_bytes;
    uint32_t nlive;             /* live messages with records here */
    uint32_t nguard;            /* other segments' guards on REMOVE/ABORT records here */
    uint32_t pins;              /* unfinished txns, REMOVE records not yet durable */
    uint32_t flags;             /* SPOOL_SA_* */
    uint32_t copying;           /* compaction copies out of it not yet durable */
    struct spool_guard *guards; /* segments whose records need this one's removal first */
    uint32_t ng, gcap;
    struct spool_fh *fh;
    char name[SPOOL_SEG_NAME_LEN + 1];
};

/* A live message's reference to a segment holding records of it. */
struct spool_lref {
    struct spool_sacct *seg;
    uint64_t bytes;
    bool body; /* START/DATA/EDITS/COMMIT (else only STATE records) */
};
struct spool_live {
    uint64_t id;
    uint32_t n, cap;
    struct spool_lref *v; /* in, or allocated beyond 2 */
    struct spool_lref in[2];
};

static inline uint64_t spool_seg_key(unsigned worker, uint64_t seq)
{
    return (uint64_t)worker << 32 | (seq & 0xffffffffu);
}

/* Under sp->amu. */
struct spool_sacct *spool_acct_seg(struct spool *sp, uint64_t key, bool create);
/* Adds bytes of id's records in seg (a new live message if create). */
int spool_acct_add(struct spool *sp, uint64_t id, struct spool_sacct *seg, uint64_t bytes,
                   bool body, bool create);
bool spool_acct_live(struct spool *sp, uint64_t id);
/* Where id's records are, seen from seg: SPOOL_AW_* bits. */
enum { SPOOL_AW_HERE = 1, SPOOL_AW_BODY_HERE = 2, SPOOL_AW_BODY_ELSEWHERE = 4 };
unsigned spool_acct_where(struct spool *sp, uint64_t id, const struct spool_sacct *seg);
/* id's reference to seg is gone (compaction moved it). */
void spool_acct_drop(struct spool *sp, uint64_t id, struct spool_sacct *seg);
/* id is removed, the REMOVE record durable in rm (NULL: not placed). */
void spool_acct_remove(struct spool *sp, uint64_t id, struct spool_sacct *rm);
/* A REMOVE/ABORT record in rm is needed while body segment s exists. */
int spool_acct_guard(struct spool_sacct *s, struct spool_sacct *rm);
/* Puts s on the list of segments to look at (if it may be reclaimable). */
void spool_acct_cand(struct spool *sp, struct spool_sacct *s);
void spool_acct_unpin(struct spool *sp, uint64_t key, uint32_t n);
/* Without the lock: unlinks every candidate that holds nothing needed,
 * fsyncing the directory before the guards it held are released. */
void spool_reclaim(struct spool *sp);
void spool_acct_fini(struct spool *sp);

/* ---- msg.c: building a spool_msg ---- */

/* A body extent of a message (the fh borrowed: the builder refs it). */
struct spool_mext {
    struct spool_fh *fh;
    uint64_t off, len;
};
/* NULL on out of memory or a read error.  info is copied; the edits
 * payload (NULL: none) is read here. */
struct spool_msg *spool_msg_build(const struct spool_msginfo *info, const struct spool_mext *v,
                                  size_t n, const unsigned char *edits, size_t edits_len);

/* ---- recover.c ---- */

/* Reads exactly n octets at off: 0, -errno, or -EIO when the file ends
 * first (a segment shorter than its records say). */
int spool_pread_all(int fd, void *buf, size_t n, uint64_t off);

/* Scans dirfd: repairs torn tails when repair (the caller holds the lock),
 * calls cb for live messages, fills rep, and next_seq[w] with one more than
 * the largest segment sequence of worker w (if next_seq is not NULL). */
int spool_recover(int dirfd, bool repair, spool_scan_fn *cb, void *arg,
                  struct spool_scan_report *rep, uint64_t next_seq[SPOOL_WORKERS]);
/* The same for an open spool (repair mode): also rebuilds sp's accounting,
 * reclaims segments with nothing needed and seeds sp->state_seq. */
int spool_recover_open(struct spool *sp, spool_scan_fn *cb, void *arg,
                       struct spool_scan_report *rep);

/* ---- spool.c ---- */

struct spool {
    char *dir;
    int dirfd;
    int lockfd;
    /* relaxed: a tuning knob; writers pick it up at their next append */
    _Atomic uint64_t seg_size;
    /* The mutex guards writer creation and destruction only (a rare control
     * path), never an append. */
    pthread_mutex_t mu;
    uint64_t max_id;
    uint64_t next_seq[SPOOL_WORKERS];
    bool busy[SPOOL_WORKERS];
    unsigned nwriters;
    spool_durable_fn *durable; /* copied by writers at creation (under mu) */
    void *durable_arg;
    /* relaxed: unique increasing numbers, nothing published with them */
    _Atomic uint64_t state_seq;
    /* amu guards the accounting (acct.c): segments, live messages, handles.
     * Taken per batch of messages, never per byte. */
    pthread_mutex_t amu;
    struct spool_map segs;        /* key -> struct spool_sacct */
    struct spool_map live;        /* id -> struct spool_live */
    struct spool_live *live_free; /* recycled entries (linked through v) */
    void **slabs;                 /* entries come in slabs: freed at close */
    size_t nslab, slabcap;
    struct spool_sacct **cand;
    size_t ncand, candcap;
    /* relaxed: a hint that reclaim has work; the list itself is under amu */
    _Atomic size_t ncand_hint;
    uint64_t unlinked;
    uint64_t live_bytes;
    /* A full file system (reserve.c).  full: relaxed, a flag read per MAIL
     * and set by any writer that met ENOSPC; nothing is published with it.
     * The reserve itself (reserve_*) is touched only before the reserve
     * writer exists and then on that writer's owner thread. */
    _Atomic bool full;
    _Atomic uint64_t full_episodes; /* relaxed: a counter */
    int reserve_worker;             /* the writer that may draw on it, -1: none */
    uint64_t reserve_bytes;         /* its size when whole */
    uint64_t reserve_have;          /* its size now */
};

/* reserve.c: marks the spool full (logged once per episode); for the
 * reserve writer, gives back part of the reserve: true if there was some
 * to give, and the failed write may be retried. */
void spool_full_set(struct spool *sp);
bool spool_reserve_release(struct spool *sp);

#endif
