/*
 * NAME
 *	writer_int - the writer and transaction structures (writer.c, txn.c)
 * SYNOPSIS
 *	#include "storage/writer_int.h"
 * DESCRIPTION
 *	A writer appends to one open segment (cur).  Every append is built
 *	in the writer's scratch arrays first (spool_wb_*: record headers,
 *	the caller's iovecs, padding) and then goes out as one vectored write
 *	(spool_wb_flush), so a message's records never interleave with
 *	another's half-written record and a failed write can be cut back.
 *
 *	Transactions live on one of three lists: active (begun, not yet
 *	committed), pending (committed, waiting for the next sync) and
 *	flight (committed, covered by the sync in flight).
 */
#ifndef SLUICE_STORAGE_WRITER_INT_H
#define SLUICE_STORAGE_WRITER_INT_H

#include "storage/spool_int.h"

/* Pre-zeroing ahead of the records (writer.c): 1 MiB at a time, written
 * from a 64 KiB block of zeros. */
#define SPOOL_PREZERO (1u << 20)
#define SPOOL_PREZERO_IOV (64u << 10)
/* Only appends up to this size are pre-zeroed: measured, 100 KiB messages
 * lost a third of their throughput to the doubled copy and writeback
 * (bench/results/ingest.md, 2026-12-08), 4 KiB ones gain a faster sync. */
#define SPOOL_PREZERO_APPEND_MAX (16u << 10)

/* Why a segment takes no more records. */
enum spool_poison {
    SPOOL_SEG_OK = 0,
    SPOOL_SEG_CUT,  /* a failed write could not be cut back: its tail is garbage */
    SPOOL_SEG_SYNC, /* a sync failed: nothing in it can be trusted to be durable */
};

struct spool_wseg {
    int fd;
    uint64_t seq;
    uint64_t size;   /* octets written (and not cut back) */
    uint64_t synced; /* octets covered by a successful sync */
    uint64_t zeroed; /* the file's size: [size, zeroed) is pre-zeroed space */
    bool no_prezero; /* pre-zeroing failed (no space): plain appends */
    enum spool_poison poison;
    struct spool_sacct *acct; /* its accounting entry (under sp->amu), NULL if untracked */
    char name[SPOOL_SEG_NAME_LEN + 1];
};

struct spool_txn;

/* Where one DATA record's payload went: segment, file offset, octets, and
 * the body offset of its first octet (spool_txn_read, body refs). */
struct spool_extent {
    uint64_t seq;
    uint64_t off;
    uint64_t len;
    uint64_t boff;
};

/* A txn's extents, and a read fd cached for a segment that is no longer
 * the writer's current one (-1: none).  Allocated with the first DATA
 * record; mutable through a const txn (reading caches the fd). */
struct spool_extents {
    size_t n, cap;
    int rfd;
    uint64_t rseq;
    struct spool_extent v[];
};

/* A DATA payload's place inside the append being built (spool_wb_data). */
struct spool_dpos {
    uint64_t rel; /* offset from the start of the append */
    uint32_t len;
};

struct spool_tlist {
    struct spool_txn *head, *tail;
    size_t n;
};

/* One record header plus a small payload (COMMIT) that travels with it. */
struct spool_whdr {
    unsigned char b[SPOOL_REC_HDR + SPOOL_COMMIT_LEN];
};

/* A REMOVE record appended and not yet known durable (wstate.c). */
struct spool_wrm {
    uint64_t id;
    uint64_t seq; /* the segment it went to (pinned there) */
    bool redo;    /* that segment's sync failed: append it again */
};

/* A compaction copy appended and not yet known durable (compact.c). */
struct spool_wcp {
    uint64_t id;
    uint64_t from_key; /* the segment copied from */
    uint64_t to_seq;   /* the segment the copy went to */
    bool lost;         /* that segment's sync failed */
};

struct spool_writer {
    struct spool *sp;
    unsigned worker;
    struct spool_wseg *cur;        /* never NULL: poisoned until a successor exists */
    struct spool_wseg *flight_seg; /* segment whose fd the sync in flight uses, or NULL */
    uint64_t flight_mark;          /* its size when that sync was issued */
    struct spool_tlist active, pending, flight;
    uint64_t next_seq;
    uint32_t id_sec, id_ctr;
    uint64_t max_id;
    uint32_t data_max;       /* largest DATA payload (SPOOL_REC_MAX; tests lower it) */
    int (*datasync)(int fd); /* the writer's own syncs: fdatasync, 0 or -errno (tests inject) */
    /* scratch for one append: iov[i] is a header iff slot[i] >= 0 */
    struct iovec *iov;
    int32_t *slot;
    size_t niov, iovcap;
    struct spool_whdr *hdr;
    size_t nhdr, hdrcap;
    uint64_t wlen;          /* octets the append will write */
    bool reserve;           /* may draw on the spool's reserve (reserve.c) */
    struct iovec *iov_keep; /* the reserve writer's copy of iov for a retry */
    size_t keepcap;
    struct spool_dpos *dpos; /* DATA payloads of the append being built */
    size_t ndpos, dposcap;
    struct spool_writer_stats st;
    /* the queue manager's records: counts and lists waiting for a sync;
     * [0, n*_flight) of each are covered by the sync in flight */
    size_t nstate, nstate_flight;
    struct spool_wrm *rm;
    size_t nrm, nrm_flight, rmcap;
    struct spool_wcp *cp;
    size_t ncp, ncp_flight, cpcap;
    bool redo;            /* some REMOVE must be appended again */
    unsigned char *stbuf; /* STATE payload scratch */
    size_t stcap;
    /* durable messages (spool_set_durable, copied at creation) */
    spool_durable_fn *durable;
    void *durable_arg;
    struct spool_envdec envdec; /* spool_msg_from_txn's scratch */
    struct spool_fh *rfh;       /* the current segment's shared handle, or NULL */
    uint64_t rfh_seq;
};

struct spool_txn {
    struct spool_writer *w;
    struct spool_txn *prev, *next;
    uint64_t id;
    uint64_t first_seq, last_seq; /* segments holding its records, if started */
    uint64_t pin_lo, pin_hi;      /* sealed segments it pins (rotation), 0: none */
    uint64_t body_size;
    uint32_t body_crc;
    int err; /* set when its records can no longer be trusted */
    bool started, committed, orphan;
    spool_done_fn *done;
    void *arg;
    struct spool_extents *ext; /* its DATA records, or NULL */
    unsigned char *edits;      /* the EDITS payload, or NULL */
    uint32_t edits_len;
    uint32_t mflags; /* COMMIT flags (SPOOL_MSG_*) */
    uint32_t start_len;
    unsigned char start[]; /* the START payload */
};

void spool_tl_push(struct spool_tlist *l, struct spool_txn *t);
void spool_tl_remove(struct spool_tlist *l, struct spool_txn *t);
struct spool_txn *spool_tl_pop(struct spool_tlist *l);

/* writer.c: building and writing one append */
void spool_wb_reset(struct spool_writer *w);
/* A record whose payload is `len` octets at p (kept by reference: it must
 * stay valid until the flush), or copied if copy (len <= SPOOL_COMMIT_LEN). */
int spool_wb_rec(struct spool_writer *w, uint32_t type, uint64_t id, const void *p, uint32_t len,
                 bool copy);
/* DATA records for iov (split at w->data_max); *size and *crc are advanced
 * over the body octets added.  0 or -ENOMEM. */
int spool_wb_data(struct spool_writer *w, uint64_t id, const struct iovec *iov, int iovcnt,
                  uint64_t *size, uint32_t *crc);
/* Writes what was built as one vectored write, rotating first if needed.
 * t (may be NULL) owns the records: if t->err is set by a rotation,
 * nothing is written and t->err is returned.  On success the DATA
 * payloads of the append are added to t's extents.  0 or -errno. */
int spool_wb_flush(struct spool_writer *w, struct spool_txn *t);

/* txn.c: frees what a txn owns besides itself (extents, edits). */
void spool_txn_free(struct spool_txn *t);

void spool_wseg_close(struct spool_wseg *s);
/* Marks every transaction whose records seg holds as failed with err
 * (writer.c; commit.c calls it when a group-commit sync fails). */
void spool_writer_poison(struct spool_writer *w, struct spool_wseg *seg, int err);

uint64_t spool_writer_next_id(struct spool_writer *w);

/* wstate.c: the writer's side of the accounting */
/* A new segment of w (current). */
void spool_wacct_segment(struct spool_writer *w, struct spool_wseg *s);
/* old stops being current: its size, and pins for the txns with records in it. */
void spool_wacct_rotate(struct spool_writer *w, struct spool_wseg *old);
/* w's current segment is sealed for good (writer destroy). */
void spool_wacct_close(struct spool_writer *w);
/* Releases t's pins (txn free). */
void spool_wacct_unpin(struct spool_txn *t);
/* In sync_done: ok's messages are live; REMOVEs and copies in flight are
 * settled (res: the sync's result). */
void spool_wacct_settle(struct spool_writer *w, struct spool_tlist *ok, int res);
/* Guards for the ABORT records of failed, written to w's current segment. */
void spool_wacct_aborts(struct spool_writer *w, const struct spool_tlist *failed);
/* Appends again the REMOVE records whose segment's sync failed. */
void spool_wstate_redo(struct spool_writer *w);
/* Marks the queue manager's records in seg as not durable (poison). */
void spool_wstate_poison(struct spool_writer *w, uint64_t seq);
/* Anything of the queue manager's waiting for a sync (not in flight). */
static inline size_t spool_wstate_pending(const struct spool_writer *w)
{
    return w->nstate + (w->nrm - w->nrm_flight) + (w->ncp - w->ncp_flight);
}

#endif
