/*
 * NAME
 *	dsn - delivery status notifications (RFC 3464 bounces and delay warnings)
 * SYNOPSIS
 *	#include "core/queue/dsn.h"
 * DESCRIPTION
 *	dsn_build() writes a complete message (CRLF line ends, dot-unstuffed,
 *	ready for the spool) sent from MAILER-DAEMON@hostname with an empty
 *	envelope sender: a multipart/report; report-type=delivery-status
 *	(RFC 6522) with three parts: a human-readable text/plain explanation
 *	listing each recipient and its reply; message/delivery-status (RFC 3464
 *	section 2: Reporting-MTA: dns; hostname, Arrival-Date, X-Sluice-Queue-ID,
 *	then one block per recipient with Final-Recipient: rfc822; addr,
 *	Action: failed|delayed, Status: X.Y.Z, Remote-MTA: dns; host when
 *	known, Diagnostic-Code: smtp; reply, Last-Attempt-Date, and for a delay
 *	Will-Retry-Until); and text/rfc822-headers with the original message's
 *	header section (read from the spool message, at most 64 KiB).  Subject
 *	"Undelivered Mail Returned to Sender" or "Delayed Mail (still being
 *	retried)"; Auto-Submitted: auto-replied (RFC 3834); a fresh Message-ID
 *	and Date.  The caller never builds one for a message whose sender is
 *	empty (RFC 5321 section 4.5.5).
 */
#ifndef SLUICE_CORE_DSN_H
#define SLUICE_CORE_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/spool.h"

struct dsn_rcpt {
    const char *addr;        /* the recipient */
    const char *status;      /* "5.1.1" */
    const char *remote_mta;  /* next hop host name or address, NULL if none */
    const char *diagnostic;  /* "550 5.1.1 no such user", NULL if none */
};

struct dsn_info {
    const char *hostname;    /* reporting MTA */
    const char *sender;      /* the original sender: the DSN goes there */
    uint64_t msg_id;
    int64_t arrival_ms;      /* unix ms */
    int64_t now_ms;          /* unix ms: Date, Last-Attempt-Date */
    bool delayed;            /* a delay warning, not a failure */
    int64_t retry_until_ms;  /* delayed: until when retries go on */
    size_t nrcpt;
    const struct dsn_rcpt *rcpts;
};

/* *out: malloc'd message (the caller frees), *len its size.  0 or -ENOMEM
 * (or -errno reading m). m may be NULL (no original headers part then). */
int dsn_build(const struct dsn_info *i, const struct spool_msg *m, char **out, size_t *len);

#endif
