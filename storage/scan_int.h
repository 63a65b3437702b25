/*
 * NAME
 *	scan_int - the recovery scan's working state (recover.c, recover_live.c, read.c)
 * SYNOPSIS
 *	#include "storage/scan_int.h"
 * DESCRIPTION
 *	One pass over every segment fills an index entry per message id
 *	(index.c).  In full mode (a callback wants the live messages, or an
 *	open spool rebuilds its accounting) it also keeps, in pools shared
 *	by all messages, each copy's DATA extents, the segments holding any
 *	copy's body records, every STATE payload and every REMOVE/ABORT
 *	record's place, so that nothing has to be read twice.
 */
#ifndef SLUICE_STORAGE_SCAN_INT_H
#define SLUICE_STORAGE_SCAN_INT_H

#include "storage/spool_int.h"

/* A DATA payload (seg, off, len) or a segment (len 0) in a list. */
struct scan_xnode {
    uint64_t off;
    uint32_t seg;
    uint32_t len;
    uint32_t next; /* index + 1, 0: end */
};

struct scan_state {
    uint64_t id;
    uint64_t seq;
    uint64_t poff; /* payload in scan.pool */
    uint32_t seg;
    uint32_t len;
    bool keep; /* the one copy of this (id, seq) that is accounted */
};

struct scan_rm {
    uint64_t id;
    uint32_t seg;
};

/* Where one DATA record's payload is (spool_read_body). */
struct body_loc {
    uint32_t seg;
    uint64_t off;
    uint32_t len;
};

enum { SCAN_SEG_GONE = 0, SCAN_SEG_READ = 1, SCAN_SEG_UNREADABLE = 2 };

struct scan {
    int dirfd;
    bool repair;
    bool full;
    struct spool *sp; /* the spool being opened, or NULL */
    struct spool_seg *segs;
    size_t nseg;
    uint64_t *segsize; /* octets usable after the scan */
    uint8_t *segstate; /* SCAN_SEG_* */
    struct spool_index ix;
    uint64_t only;  /* spool_read_body: the one id of interest, else 0 */
    bool skip_copy; /* only: inside a second copy of it */
    struct body_loc *locs;
    size_t nloc, loccap;
    struct body_loc edits; /* only: its EDITS payload (len 0: none) */
    struct scan_xnode *x;
    size_t nx, xcap;
    struct scan_state *st;
    size_t nst, stcap;
    unsigned char *pool;
    size_t npool, poolcap;
    struct scan_rm *rm;
    size_t nrm, rmcap;
    struct spool_icopy *dups;
    size_t ndup, dupcap;
    bool unreadable;      /* a segment could not be read: keep what may guard it */
    uint64_t max_seq;     /* largest STATE seq */
    struct spool_fh **fh; /* per segment, opened for spool_msg_from_info */
    struct spool_scan_report rep;
};

/* recover_live.c */
int scan_report_live(struct scan *sc, struct spool_ient **live, size_t n, spool_scan_fn *cb,
                     void *arg);
void scan_build_acct(struct scan *sc, struct spool_ient **live, size_t n);
void scan_fh_fini(struct scan *sc);

/* recover.c */
int scan_all(struct scan *sc);
void scan_fini(struct scan *sc);
int scan_open_dir(const char *dir);

#endif
