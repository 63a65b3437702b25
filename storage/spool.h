/*
 * NAME
 *	spool - the append-only message spool
 * SYNOPSIS
 *	#include "storage/spool.h"
 * DESCRIPTION
 *	A spool is a directory of segment files.  Each worker appends to its own
 *	open segment through a spool_writer; nothing is ever rewritten in place.
 *	Every record is length-prefixed and carries a CRC32C and its message id
 *	(the format is in docs/spool-format.md).  A message is live once its
 *	COMMIT record is durable and no later REMOVE record names it.
 *
 *	Receiving a message: spool_txn_begin() with the complete envelope, any
 *	number of spool_txn_append() calls while DATA streams in (each is one
 *	vectored write of the caller's slices: no copy), then spool_txn_commit()
 *	with the last slices.  The COMMIT record joins the writer's group-commit
 *	batch; the owner of the writer calls spool_writer_sync_fd() once per loop
 *	turn, fdatasyncs that fd (through its io_uring ring), and reports the
 *	result with spool_writer_sync_done(), which calls every batch member's
 *	done callback: res 0 means durable (send 250), a negative errno means
 *	the message must be refused (451 4.3.0).  A failed sync is never
 *	retried: the segment is abandoned, the batch's messages are recorded as
 *	aborted in a fresh segment, and later messages go to that segment.
 *
 *	All functions of one writer and its txns run on the writer's owner
 *	thread.  The scan, read and verify functions need no writer and take no
 *	lock; sluice-spool uses them on a live spool.
 * DIAGNOSTICS
 *	0 or a negative errno: -ENOSPC (disk full: 452 4.3.1), -EIO and others
 *	(451 4.3.0), -EBADMSG (verify: a bad record).
 */
#ifndef SLUICE_STORAGE_SPOOL_H
#define SLUICE_STORAGE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

struct spool;
struct spool_writer;
struct spool_txn;
struct spool_msg;

/* The envelope, borrowed for the duration of spool_txn_begin() (encoded into
 * the txn's START record there).  Strings are NUL-terminated; they never hold
 * CR, LF or NUL (the SMTP layer refuses those), and records are
 * length-prefixed in any case. */
struct spool_env {
    int64_t arrival_ms;  /* unix time in milliseconds */
    const char *client;  /* client address as text, "192.0.2.1" */
    const char *helo;    /* HELO/EHLO argument */
    const char *sender;  /* reverse-path without <>, "" for the null sender */
    const char *params;  /* MAIL FROM parameters, space separated, "" if none */
    uint32_t nrcpt;
    const char *const *rcpts; /* forward-paths without <> */
};

/* A live message as scan/recovery reports it; valid during the callback. */
struct spool_msginfo {
    uint64_t id;
    int64_t arrival_ms;
    uint64_t size; /* body octets stored */
    const char *client;
    const char *helo;
    const char *sender;
    const char *params;
    uint32_t nrcpt;
    const char *const *rcpts;
    uint32_t flags;  /* SPOOL_MSG_* from its COMMIT record */
    uint32_t nedits; /* header edits stored with it (EDITS record) */
    /* Delivery state folded from the STATE records (all zero for a message
     * the queue manager has not touched).  rcpts above are the latest
     * SPOOL_ST_RCPTS list when one was written, else START's. */
    const uint8_t *rstate;  /* nrcpt entries, enum spool_rstate */
    uint32_t attempts;      /* delivery attempts so far */
    int64_t next_ms;        /* unix ms of the next attempt, 0: as soon as possible */
    const char *last_error; /* the latest DEFERRED/FAILED reason, "" if none */
    uint32_t qflags;        /* SPOOL_Q_* */
};

/* Per-recipient delivery state. */
enum spool_rstate { SPOOL_R_PENDING = 0, SPOOL_R_DELIVERED = 1, SPOOL_R_FAILED = 2 };
/* Message-level queue flags. */
#define SPOOL_Q_HELD 0x1u   /* held by the operator (HOLD without a later RELEASE) */
#define SPOOL_Q_WARNED 0x2u /* a delay warning was sent */

/* Message flags, carried in the COMMIT record. */
#define SPOOL_MSG_QUARANTINE 0x1u /* accepted, to be kept apart (a sink's verdict) */

/* A header edit, applied when the body is read (never by rewriting it):
 * ADD inserts "name: value" after the Received: field the receiving server
 * prepended (at the top if the message does not start with one), after
 * earlier additions; REMOVE deletes every field called name (any case),
 * continuation lines included; CHANGE replaces the value of the first field
 * called name, or adds it like ADD.  Edits apply in order. */
enum spool_edit_op { SPOOL_EDIT_ADD = 1, SPOOL_EDIT_REMOVE = 2, SPOOL_EDIT_CHANGE = 3 };
struct spool_edit {
    enum spool_edit_op op;
    const char *name;  /* printable ASCII without ':' (RFC 5322 ftext), 1..996 octets */
    const char *value; /* no CR, LF or NUL; NULL for REMOVE; the field fits 998 octets */
};

struct spool_scan_report {
    uint64_t segments;
    uint64_t records;
    uint64_t live;       /* committed and not removed */
    uint64_t incomplete; /* started but never committed (dropped) */
    uint64_t torn;       /* segments whose tail was torn */
    uint64_t damaged;    /* damaged regions skipped (records after them read on) */
    uint64_t damaged_octets;
    uint64_t kept;       /* damaged segments copied aside (NAME.damaged) now */
    uint64_t mismatched; /* messages neither removed nor aborted whose records do not match */
    uint64_t max_id;     /* largest message id seen, 0 if none */
    uint64_t live_bytes; /* octets of the live messages' records (their STATE
                          * records included only when a callback was given) */
};

struct spool_writer_stats {
    uint64_t commits;   /* messages committed (COMMIT records written) */
    uint64_t syncs;     /* fdatasync batches issued */
    uint64_t sync_errors;
    uint64_t bytes;     /* bytes appended */
    uint64_t segments;  /* segments created */
    uint64_t prezeroed; /* octets of zeros written ahead of the records */
};

/* ---- the spool directory ---- */

/* Opens (creating if missing) the spool directory `dir` for a daemon: takes
 * an exclusive lock (a second daemon on the same spool gets -EBUSY), runs
 * recovery (truncating torn tails), calling cb for every live message if cb
 * is not NULL, and fills rep if not NULL.  *out owns the directory handle. */
typedef int spool_scan_fn(void *arg, const struct spool_msginfo *m);
int spool_open(const char *dir, spool_scan_fn *cb, void *arg, struct spool_scan_report *rep,
               struct spool **out);
void spool_close(struct spool *sp);
const char *spool_dir(const struct spool *sp);
/* Segment size at which a writer starts a new segment (default 64 MiB). */
void spool_set_segment_size(struct spool *sp, uint64_t bytes);

/* ---- read-only access (no lock, no repair) ---- */

/* Calls cb for every live message; a non-zero return from cb stops the scan
 * and is returned.  A torn tail is skipped, not repaired. */
int spool_scan(const char *dir, spool_scan_fn *cb, void *arg, struct spool_scan_report *rep);
/* Writes the body of message id to fd, its header edits applied.  -ENOENT
 * if not live. */
int spool_read_body(const char *dir, uint64_t id, int fd);
/* The body exactly as received (without the edits). */
int spool_read_body_raw(const char *dir, uint64_t id, int fd);
/* Checks every record of every segment, reading on past damage as
 * recovery does.  0, or -EBADMSG; msg holds a line per damaged region or
 * torn tail (segment, offset, what is wrong, octets) and a summary line. */
int spool_verify(const char *dir, char *msg, size_t msglen);

struct spool_salvage_report {
    uint64_t written;     /* messages written out (ID.env and ID.eml) */
    uint64_t no_envelope; /* committed, but their START is gone: only counted */
    uint64_t damaged;     /* damaged regions met */
};
/* Writes what is left of every message that is neither live nor aborted
 * nor removed into outdir (salvage.c).  0 or -errno. */
int spool_salvage(const char *dir, const char *outdir, struct spool_salvage_report *rep);

/* Message ids print as 16 lower-case hex digits. */
void spool_id_str(uint64_t id, char out[17]);
bool spool_id_parse(const char *s, uint64_t *id);

/* ---- appending (owner thread of the writer only) ---- */

/* worker: 0..255, part of segment names and message ids. */
int spool_writer_create(struct spool *sp, unsigned worker, struct spool_writer **out);
/* Syncs and closes the open segment.  Panics if a sync is in flight. */
void spool_writer_destroy(struct spool_writer *w);
void spool_writer_stats(const struct spool_writer *w, struct spool_writer_stats *st);

/* Starts a message.  Writes nothing yet (the START record goes out with the
 * first append or the commit).  NULL on out of memory. */
struct spool_txn *spool_txn_begin(struct spool_writer *w, const struct spool_env *env);
uint64_t spool_txn_id(const struct spool_txn *t);
/* Appends body bytes as one DATA record (one vectored write).  On an error
 * the file is cut back to where it was, and the txn must be aborted. */
int spool_txn_append(struct spool_txn *t, const struct iovec *iov, int iovcnt);
/* Appends the last body bytes (iovcnt may be 0) and the COMMIT record, and
 * queues the txn for the next group commit.  On 0 the writer owns the txn
 * until done(arg, id, res) has run (it is then freed).  On an error the txn
 * has been aborted and freed and done is never called. */
typedef void spool_done_fn(void *arg, uint64_t id, int res);
int spool_txn_commit(struct spool_txn *t, const struct iovec *iov, int iovcnt,
                     spool_done_fn *done, void *arg);
/* Before commit: gives the message up (an ABORT record is appended if
 * anything was written) and frees the txn. */
void spool_txn_abort(struct spool_txn *t);
/* After a successful commit, before done ran: done will not be called (the
 * receiver is gone); the message stays committed. */
void spool_txn_orphan(struct spool_txn *t);

/* Before commit: the header edits to store with the message (an EDITS
 * record written with COMMIT; a later call replaces the list; n 0 clears
 * it).  The strings are copied.  0, -EINVAL (an edit that is not
 * spool_edit_valid) or -ENOMEM. */
int spool_txn_set_edits(struct spool_txn *t, const struct spool_edit *v, size_t n);
bool spool_edit_valid(const struct spool_edit *e);
/* Before commit: SPOOL_MSG_* flags for the COMMIT record. */
void spool_txn_set_flags(struct spool_txn *t, uint32_t flags);

/* Body octets appended so far (DATA records written, the commit's included
 * once it returned 0). */
uint64_t spool_txn_size(const struct spool_txn *t);
/* Reads body octets [off, off+len) of those back from the segments (owner
 * thread, until the txn is freed: after abort, or after done ran).
 * 0, -ERANGE past spool_txn_size(), or -errno. */
int spool_txn_read(const struct spool_txn *t, uint64_t off, void *buf, size_t len);

/* A read-only reference to the body octets a txn has appended so far,
 * usable on any thread and independent of the txn and its writer (it holds
 * its own descriptors of the segments).  NULL on out of memory or when a
 * segment cannot be opened.  References are counted: _ref adds one, any
 * thread may release. */
struct spool_bodyref;
struct spool_bodyref *spool_txn_bodyref(const struct spool_txn *t);
struct spool_bodyref *spool_bodyref_ref(struct spool_bodyref *r);
void spool_bodyref_release(struct spool_bodyref *r);
uint64_t spool_bodyref_size(const struct spool_bodyref *r);
/* 0, -ERANGE past the size, or -errno.  Any thread, concurrently. */
int spool_bodyref_read(const struct spool_bodyref *r, uint64_t off, void *buf, size_t len);

/* Group commit.  Returns the fd whose fdatasync makes every commit queued so
 * far durable and marks that batch in flight; -1 when nothing is queued or
 * a sync is already in flight (one at a time per writer: commits queued
 * meanwhile form the next batch). */
int spool_writer_sync_fd(struct spool_writer *w);
/* The in-flight sync finished with res (0 or -errno).  Calls done for each
 * member of the batch. */
void spool_writer_sync_done(struct spool_writer *w, int res);
/* Commits queued for the next sync (not counting one in flight). */
size_t spool_writer_pending(const struct spool_writer *w);
/* True while commits wait for a sync (queued or in flight). */
bool spool_writer_busy(const struct spool_writer *w);

/* ---- delivery state (the queue manager's writer) ----
 *
 * STATE records (type 7) are appended by the queue manager, usually to its
 * own writer's segment, and folded by recovery into spool_msginfo.  They
 * join the writer's group commit like COMMIT records (spool_writer_sync_fd
 * covers them; nothing calls back).  A REMOVE record ends the message:
 * once it is durable the message's space is released, and a segment that
 * holds nothing live any more (no live message's records, no record that
 * a live message's state or a removal still depends on) is unlinked. */
enum spool_state_kind {
    SPOOL_ST_DELIVERED = 1, /* recipient rcpt delivered (reason: the reply) */
    SPOOL_ST_FAILED = 2,    /* recipient rcpt failed for good (reason); the bounce is handled */
    SPOOL_ST_DEFERRED = 3,  /* next attempt at when_ms (reason); rcpt is SPOOL_RCPT_ALL */
    SPOOL_ST_HOLD = 4,      /* operator hold (SPOOL_RCPT_ALL) */
    SPOOL_ST_RELEASE = 5,   /* end of a hold */
    SPOOL_ST_RCPTS = 6,     /* the recipient list replaced (categorize sinks): nrcpt/rcpts;
                             * every recipient's state restarts at PENDING */
    SPOOL_ST_WARNED = 7,    /* a delay warning was sent */
};
#define SPOOL_RCPT_ALL UINT32_MAX
struct spool_state {
    enum spool_state_kind kind;
    uint32_t rcpt;        /* recipient index, or SPOOL_RCPT_ALL */
    int64_t when_ms;      /* unix ms: DEFERRED the next attempt, otherwise when it happened */
    uint32_t attempts;    /* DEFERRED: attempts made so far */
    const char *reason;   /* NUL-terminated, no CR/LF; "" or NULL if none */
    uint32_t nrcpt;       /* RCPTS only */
    const char *const *rcpts;
};
/* Appends a STATE record for message id (owner thread of w).  0 or -errno. */
int spool_writer_state(struct spool_writer *w, uint64_t id, const struct spool_state *st);
/* Appends a REMOVE record: the message is delivered or bounced, all done. */
int spool_writer_remove(struct spool_writer *w, uint64_t id);
/* Copies up to about `budget` octets of live messages out of the sparsest
 * sealed segment (less than half live) into w, so that segment can go.
 * Returns the octets copied (0: nothing worth compacting) or -errno.  The
 * copies join the next group commit; the old segment goes once they are
 * durable. */
int64_t spool_writer_compact(struct spool_writer *w, uint64_t budget);
/* Space accounting: segments and octets on disk, octets of live messages. */
struct spool_usage {
    uint64_t segments;
    uint64_t bytes;
    uint64_t live_bytes;
    uint64_t live_messages;
    uint64_t unlinked;   /* segments reclaimed since open */
    uint64_t segment_size;
};
/* True when the spool holds more than twice its live octets plus four
 * segments of slack: compaction is behind and should run without pause
 * (docs/spool-format.md, Compaction).  Cheap: one pass over the segment
 * table under the accounting lock. */
bool spool_compact_behind(struct spool *sp);
void spool_usage(struct spool *sp, struct spool_usage *u);

/* ---- a full file system (reserve.c; docs/spool-format.md, Full disk) ---- */

/* The reserve's usual size. */
#define SPOOL_RESERVE_DEFAULT (4u << 20)
/* Makes the file `reserve` of `bytes` allocated octets in the spool (1/32
 * of a file system smaller than 32 times that, 64 KiB at least), or grows
 * it back to that, and names writer `worker` as the one that may
 * draw on it: when that writer cannot create a segment or append for lack
 * of space, part of the reserve is given back and the write tried again.
 * Before that writer is created.  0, or -ENOSPC when there is no room for
 * it (the spool is then marked full), or -errno. */
int spool_reserve_init(struct spool *sp, unsigned worker, uint64_t bytes);
/* True while the spool is full: a writer met ENOSPC (or the reserve could
 * not be made) and space has not come back since.  New mail is to be
 * refused (452 4.3.1); the queue manager goes on delivering.  Any thread;
 * a relaxed load. */
bool spool_full(const struct spool *sp);
bool spool_writer_full(const struct spool_writer *w);
/* Times the spool became full since it was opened. */
uint64_t spool_full_episodes(const struct spool *sp);
/* While full: when the file system has room for the whole reserve and as
 * much again (statvfs), makes the reserve whole and clears the flag.
 * 1 when it did (logged), 0 when there is nothing to do yet, or -errno.
 * On the reserve writer's owner thread, every few seconds. */
int spool_space_check(struct spool *sp);

/* Every message whose commit becomes durable, on any writer of sp created
 * after this call, is handed to fn as a spool_msg (which fn owns), on the
 * writer's owner thread inside spool_writer_sync_done() before the txns'
 * done callbacks run, orphaned txns included.  This is how the queue
 * manager learns of new mail.  NULL: none (spool_msg not built). */
typedef void spool_durable_fn(void *arg, struct spool_msg *m);
void spool_set_durable(struct spool *sp, spool_durable_fn *fn, void *arg);

/* ---- a stored message for delivery ----
 *
 * A spool_msg is a message as the queue manager delivers it: its envelope
 * and state (a spool_msginfo of its own), and its body with the header
 * edits applied, as pieces that are either memory or an extent of a segment
 * file (so a sender can splice them to a socket).  It shares refcounted
 * segment descriptors with other messages (no descriptor per message), and
 * stays readable after its segment is compacted or unlinked.  Any thread;
 * one owner. */
struct spool_msg;
/* After spool_txn_commit() returned 0 and before its done ran, on the
 * writer's owner thread.  NULL on out of memory. */
struct spool_msg *spool_msg_from_txn(struct spool_txn *t);
/* Inside a spool_open() or spool_scan() callback.  sp may be NULL in both:
 * inside spool_open()'s callback the message then uses the spool being
 * opened (its shared descriptors and accounting: the caller has no sp yet),
 * inside spool_scan() it opens descriptors of its own.  NULL on out of
 * memory or an unreadable segment. */
struct spool_msg *spool_msg_from_info(struct spool *sp, const struct spool_msginfo *m);
void spool_msg_free(struct spool_msg *m);
/* The envelope and state when it was made (rstate etc. as recovered; the
 * queue manager keeps the live state itself). */
const struct spool_msginfo *spool_msg_info(const struct spool_msg *m);
/* Size of the message as sent: the body with the header edits applied. */
uint64_t spool_msg_size(const struct spool_msg *m);
struct spool_piece {
    int fd;          /* >= 0: octets [off, off+len) of this file; -1: mem */
    uint64_t off;
    const char *mem;
    size_t len;
};
/* The pieces in order; valid while m lives. */
size_t spool_msg_pieces(const struct spool_msg *m, const struct spool_piece **v);
/* Octets [off, off+len) of the message as sent.  0, -ERANGE, or -errno. */
int spool_msg_read(const struct spool_msg *m, uint64_t off, void *buf, size_t len);

#endif
