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
};

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
    uint64_t max_id;     /* largest message id seen, 0 if none */
};

struct spool_writer_stats {
    uint64_t commits;   /* messages committed (COMMIT records written) */
    uint64_t syncs;     /* fdatasync batches issued */
    uint64_t sync_errors;
    uint64_t bytes;     /* bytes appended */
    uint64_t segments;  /* segments created */
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
/* Checks every record of every segment.  0, or -EBADMSG with a line naming
 * the segment, offset and what is wrong in msg. */
int spool_verify(const char *dir, char *msg, size_t msglen);

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
/* Messages begun (spool_txn_begin) and not yet committed or aborted: the
 * siblings whose commits a short group-commit delay can catch. */
size_t spool_writer_open_txns(const struct spool_writer *w);
/* Commits queued for the next sync (not counting one in flight). */
size_t spool_writer_pending(const struct spool_writer *w);
/* True while commits wait for a sync (queued or in flight). */
bool spool_writer_busy(const struct spool_writer *w);

#endif
