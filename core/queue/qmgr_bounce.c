/*
 * NAME
 *	qmgr_bounce - delivery status notifications into the spool
 * DESCRIPTION
 *	A bounce (or delay warning) is built by dsn_build() and committed
 *	through the queue manager's own spool writer as a new message from
 *	<> to the original sender; the durable hook then queues it like any
 *	other message.  The caller appends the FAILED states after it, so
 *	one group commit makes both durable (a torn tail can only lose the
 *	states: the bounce may then be sent twice, never lost).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/queue/dsn.h"
#include "core/base/log.h"
#include "core/queue/qmgr_int.h"

static void qmgr_bounce_done(void *arg, uint64_t id, int res)
{
    (void)arg;
    if (res < 0)
        log_msg(LOG_ERROR, "qmgr: bounce %016llx: not stored: %s (sent again after a restart)",
                (unsigned long long)id, strerror(-res));
}

/* "550 5.1.1 text" -> "5.1.1" */
static void qmgr_diag_status(const char *diag, bool delayed, char *out, size_t len)
{
    unsigned a, b, c;
    int code;
    if (diag && sscanf(diag, "%d %u.%u.%u", &code, &a, &b, &c) == 4 && (a == 4 || a == 5) &&
        b < 1000 && c < 1000) {
        /* a temporary reason in a failure report becomes permanent (RFC 3464 2.3.4) */
        snprintf(out, len, "%u.%u.%u", delayed ? a : 5, b, c);
        if (!delayed && a == 4 && b == 4 && c == 7)
            snprintf(out, len, "4.4.7"); /* expired: the status says so */
        return;
    }
    snprintf(out, len, delayed ? "4.0.0" : "5.0.0");
}

void qmgr_bounce(struct qmgr *q, struct qmsg *m, const size_t *idx, size_t n, bool delayed)
{
    struct dsn_rcpt *r = calloc(n, sizeof(*r));
    char(*st)[16] = calloc(n, sizeof(*st));
    char(*mta)[256] = calloc(n, sizeof(*mta));
    if (r == NULL || st == NULL || mta == NULL) {
        log_msg(LOG_ERROR, "qmgr: message %016llx: out of memory: bounce not sent",
                (unsigned long long)m->id);
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        size_t i = idx[k];
        qmgr_diag_status(m->rdiag[i], delayed, st[k], sizeof(st[k]));
        r[k].addr = m->rcpts[i];
        r[k].status = st[k];
        r[k].diagnostic = m->rdiag[i];
        if (m->rhost[i]) {
            snprintf(mta[k], sizeof(mta[k]), "%s", m->rhost[i]);
            char *b = strchr(mta[k], '[');
            if (b && b != mta[k])
                *b = '\0';
            r[k].remote_mta = mta[k];
        }
    }
    const struct route_retry *rr = route_retry(q->routes);
    struct dsn_info info = {
        .hostname = q->cfg->hostname,
        .sender = m->sender,
        .msg_id = m->id,
        .arrival_ms = m->arrival_ms,
        .now_ms = clock_wall_ms(),
        .delayed = delayed,
        .retry_until_ms = m->arrival_ms + (int64_t)rr->max_age_ms,
        .nrcpt = n,
        .rcpts = r,
    };
    char *buf = NULL;
    size_t len = 0;
    int rc = dsn_build(&info, m->sm, &buf, &len);
    if (rc < 0) {
        log_msg(LOG_ERROR, "qmgr: message %016llx: building the bounce: %s",
                (unsigned long long)m->id, strerror(-rc));
        goto out;
    }
    const char *to[1] = {m->sender};
    struct spool_env env = {.arrival_ms = info.now_ms,
                            .client = "127.0.0.1",
                            .helo = q->cfg->hostname,
                            .sender = "",
                            .params = "",
                            .nrcpt = 1,
                            .rcpts = to};
    struct spool_txn *t = spool_txn_begin(q->w, &env);
    if (t == NULL) {
        free(buf);
        goto out;
    }
    struct iovec iov = {buf, len};
    rc = spool_txn_commit(t, &iov, 1, qmgr_bounce_done, NULL);
    free(buf);
    if (rc < 0) {
        log_msg(LOG_ERROR, "qmgr: message %016llx: storing the bounce: %s",
                (unsigned long long)m->id, strerror(-rc));
        goto out;
    }
    atomic_fetch_add_explicit(&q->st_bounces, 1, memory_order_relaxed);
    log_msg(LOG_INFO, "qmgr: message %016llx: %s for %zu recipient(s) sent to <%s>",
            (unsigned long long)m->id, delayed ? "delay warning" : "bounce", n, m->sender);
out:
    free(r);
    free(st);
    free(mta);
}
