/*
 * NAME
 *	maildir - local delivery into Maildir directories
 * SYNOPSIS
 *	#include "core/queue/maildir.h"
 * DESCRIPTION
 *	maildir_deliver() delivers one message to one local recipient: the
 *	mailbox is ROOT/USER/ (cur/, new/, tmp/ created 0700 as needed), USER
 *	the recipient's local part lower-cased, without a "+detail" suffix.
 *	The file is written in tmp/ with a unique name (time.M<usec>P<pid>Q<n>.
 *	host), "Return-Path: <sender>" and "Delivered-To: rcpt" first, then the
 *	message (from the spool, pieces read with pread),
 *	LF line ends as Maildir readers expect (CRLF of the message converted),
 *	fsynced, renamed into new/, and new/ fsynced: once it returns 0 the
 *	mail is durable.  Blocking: the queue manager runs it on its local
 *	delivery thread.
 * DIAGNOSTICS
 *	0; -EINVAL for a local part that cannot name a mailbox ("", ".", "..",
 *	'/' or a control character: a permanent failure, 550 5.1.3); any
 *	other -errno is temporary (ENOSPC, EIO, EACCES: 451 4.3.0 / 452
 *	4.3.1).  err says what failed with the path.
 */
#ifndef SLUICE_CORE_MAILDIR_H
#define SLUICE_CORE_MAILDIR_H

#include <stddef.h>

#include "storage/spool.h"

/* hostname: for the unique file name.  path (may be NULL): the delivered
 * file's path under new/. */
int maildir_deliver(const char *root, const char *hostname, const char *rcpt,
                    const char *sender, const struct spool_msg *m, char *path, size_t pathlen,
                    char *err, size_t errlen);
/* The mailbox directory name for a recipient, or -EINVAL. */
int maildir_user(const char *rcpt, char *out, size_t len);

#endif
