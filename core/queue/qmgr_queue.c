/*
 * NAME
 *	qmgr_queue - messages, attempts, outcomes and retries
 * DESCRIPTION
 *	A message's attempt routes every pending recipient, groups them into
 *	one job per destination and waits for all its jobs.  Recipient
 *	outcomes are kept for the attempt (rtry) and made durable when the
 *	attempt ends: one REMOVE when nothing is left; otherwise FAILED and
 *	DELIVERED states and one DEFERRED with the next attempt's time.  A
 *	message with several recipients records each DELIVERED at once, so a
 *	crash re-sends only to recipients whose reply was not yet recorded.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/log.h"
#include "core/queue/qmgr_int.h"

/* ---- the retry heap (by next_ms) ---- */

static void qheap_swap(struct qmgr *q, size_t a, size_t b)
{
    struct qmsg *t = q->heap[a];
    q->heap[a] = q->heap[b];
    q->heap[b] = t;
    q->heap[a]->heap_idx = a;
    q->heap[b]->heap_idx = b;
}

static void qheap_up(struct qmgr *q, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (q->heap[p]->next_ms <= q->heap[i]->next_ms)
            break;
        qheap_swap(q, i, p);
        i = p;
    }
}

static void qheap_down(struct qmgr *q, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->nheap && q->heap[l]->next_ms < q->heap[m]->next_ms)
            m = l;
        if (r < q->nheap && q->heap[r]->next_ms < q->heap[m]->next_ms)
            m = r;
        if (m == i)
            return;
        qheap_swap(q, i, m);
        i = m;
    }
}

static bool qheap_push(struct qmgr *q, struct qmsg *m)
{
    if (q->nheap == q->capheap) {
        size_t nc = q->capheap ? q->capheap * 2 : 256;
        struct qmsg **v = realloc(q->heap, nc * sizeof(*v));
        if (v == NULL)
            return false;
        q->heap = v;
        q->capheap = nc;
    }
    m->heap_idx = q->nheap;
    q->heap[q->nheap++] = m;
    qheap_up(q, m->heap_idx);
    return true;
}

static void qheap_remove(struct qmgr *q, struct qmsg *m)
{
    size_t i = m->heap_idx;
    if (i >= q->nheap || q->heap[i] != m)
        return;
    q->nheap--;
    if (i != q->nheap) {
        q->heap[i] = q->heap[q->nheap];
        q->heap[i]->heap_idx = i;
        qheap_down(q, i);
        qheap_up(q, i);
    }
    m->heap_idx = SIZE_MAX;
}

/* ---- messages ---- */

static char *qstrdup(const char *s)
{
    return strdup(s ? s : "");
}

static bool qparam(const char *params, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = params; p && *p;) {
        while (*p == ' ')
            p++;
        if (strncasecmp(p, word, n) == 0 && (p[n] == ' ' || p[n] == '\0'))
            return true;
        p = strchr(p, ' ');
    }
    return false;
}

static void qmgr_set_state(struct qmgr *q, struct qmsg *m, enum qmsg_state st)
{
    static const size_t off[] = {
        [QM_SINKS] = offsetof(struct qmgr, st_active),
        [QM_ACTIVE] = offsetof(struct qmgr, st_active),
        [QM_DEFERRED] = offsetof(struct qmgr, st_deferred),
        [QM_HELD] = offsetof(struct qmgr, st_held),
        [QM_QUARANTINE] = offsetof(struct qmgr, st_held),
    };
    atomic_fetch_sub_explicit((_Atomic uint64_t *)((char *)q + off[m->st]), 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit((_Atomic uint64_t *)((char *)q + off[st]), 1,
                              memory_order_relaxed);
    m->st = st;
}

void qmgr_msg_free(struct qmgr *q, struct qmsg *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        q->all = m->next;
    if (m->next)
        m->next->prev = m->prev;
    if (m->st == QM_DEFERRED)
        qheap_remove(q, m);
    atomic_fetch_sub_explicit(&q->st_queued, 1, memory_order_relaxed);
    qmgr_set_state(q, m, QM_SINKS);
    atomic_fetch_sub_explicit(&q->st_active, 1, memory_order_relaxed);
    q->nmsg--;
    if (m->call)
        sink_call_destroy(m->call);
    for (size_t i = 0; i < m->nrcpt; i++) {
        free(m->rcpts[i]);
        if (m->rdiag)
            free(m->rdiag[i]);
        if (m->rhost)
            free(m->rhost[i]);
        if (m->rroute)
            free(m->rroute[i]);
    }
    free(m->rcpts);
    free(m->rdiag);
    free(m->rhost);
    free(m->rroute);
    free(m->rstate);
    free(m->rtry);
    free(m->sender);
    free(m->params);
    free(m->last_error);
    spool_msg_free(m->sm);
    free(m);
}

/* Recipient arrays sized n (rcpts themselves set by the caller). */
int qmgr_msg_rcpts_alloc(struct qmsg *m, size_t n)
{
    m->rcpts = calloc(n ? n : 1, sizeof(*m->rcpts));
    m->rstate = calloc(n ? n : 1, 1);
    m->rtry = calloc(n ? n : 1, 1);
    m->rdiag = calloc(n ? n : 1, sizeof(*m->rdiag));
    m->rhost = calloc(n ? n : 1, sizeof(*m->rhost));
    m->rroute = calloc(n ? n : 1, sizeof(*m->rroute));
    m->nrcpt = n;
    return m->rcpts && m->rstate && m->rtry && m->rdiag && m->rhost && m->rroute ? 0 : -ENOMEM;
}

static void qmgr_msg_finish(struct qmgr *q, struct qmsg *m)
{
    int rc = spool_writer_remove(q->w, m->id);
    if (rc < 0)
        log_msg(LOG_ERROR, "qmgr: message %016llx: REMOVE record: %s (it will be sent again "
                           "after a restart)",
                (unsigned long long)m->id, strerror(-rc));
    qmgr_msg_free(q, m);
}

void qmgr_msg_add(struct qmgr *q, struct spool_msg *sm)
{
    const struct spool_msginfo *in = spool_msg_info(sm);
    struct qmsg *m = calloc(1, sizeof(*m));
    if (m == NULL || qmgr_msg_rcpts_alloc(m, in->nrcpt) < 0) {
        log_msg(LOG_ERROR, "qmgr: out of memory: message %016llx waits for the next start",
                (unsigned long long)in->id);
        if (m) {
            free(m->rcpts);
            free(m->rstate);
            free(m->rtry);
            free(m->rdiag);
            free(m->rhost);
            free(m->rroute);
            free(m);
        }
        spool_msg_free(sm);
        return;
    }
    m->id = in->id;
    m->sm = sm;
    m->heap_idx = SIZE_MAX;
    m->sender = qstrdup(in->sender);
    m->params = qstrdup(in->params);
    bool done_any = false, all_done = in->nrcpt > 0;
    for (size_t i = 0; i < in->nrcpt; i++) {
        m->rcpts[i] = qstrdup(in->rcpts[i]);
        m->rstate[i] = in->rstate ? in->rstate[i] : SPOOL_R_PENDING;
        if (m->rstate[i] != SPOOL_R_PENDING)
            done_any = true;
        else
            all_done = false;
    }
    m->arrival_ms = in->arrival_ms;
    m->attempts = in->attempts;
    m->next_ms = in->next_ms;
    m->last_error = qstrdup(in->last_error);
    m->qflags = in->qflags;
    m->mflags = in->flags;
    m->size = spool_msg_size(sm);
    m->body_8bit = qparam(m->params, "BODY=8BITMIME");
    m->smtputf8 = qparam(m->params, "SMTPUTF8");
    m->st = QM_SINKS;
    m->next = q->all;
    if (q->all)
        q->all->prev = m;
    q->all = m;
    q->nmsg++;
    atomic_fetch_add_explicit(&q->st_queued, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&q->st_active, 1, memory_order_relaxed);

    if (all_done || in->nrcpt == 0) {
        qmgr_msg_finish(q, m);
        return;
    }
    if (m->mflags & SPOOL_MSG_QUARANTINE) {
        qmgr_set_state(q, m, QM_QUARANTINE);
        log_msg(LOG_INFO, "qmgr: message %016llx: quarantined: kept in the spool, not delivered",
                (unsigned long long)m->id);
        return;
    }
    if (m->qflags & SPOOL_Q_HELD) {
        qmgr_set_state(q, m, QM_HELD);
        return;
    }
    if (m->next_ms > clock_wall_ms()) {
        qmgr_set_state(q, m, QM_DEFERRED);
        if (!qheap_push(q, m))
            m->next_ms = 0; /* no memory for the heap: try now */
        else
            return;
        qmgr_set_state(q, m, QM_SINKS);
    }
    if (m->attempts == 0 && !done_any)
        qmgr_sinks_message(q, m); /* calls qmgr_msg_route when the sinks are done */
    else
        qmgr_msg_route(q, m);
}

/* ---- an attempt ---- */

static const char *qdomain(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : "";
}

static void qmgr_set_diag(struct qmsg *m, size_t i, const char *diag, const char *host)
{
    /* copies first: diag or host may be the strings being replaced */
    char *d = qstrdup(diag), *h = host ? strdup(host) : NULL;
    free(m->rdiag[i]);
    free(m->rhost[i]);
    m->rdiag[i] = d;
    m->rhost[i] = h;
}

static void qmgr_attempt_end(struct qmgr *q, struct qmsg *m);

/* An outcome decided without a job (error routes, discard, route sinks). */
static void qmgr_decide(struct qmgr *q, struct qmsg *m, size_t i, int code, const char *status,
                        const char *text)
{
    char diag[600];
    snprintf(diag, sizeof(diag), "%d %s %s", code, status, text);
    qmgr_set_diag(m, i, diag, NULL);
    m->rtry[i] = code < 400 ? 1 : code < 500 ? 3 : 2;
    enum sink_event ev = code < 400 ? SINK_EV_DELIVERED : code < 500 ? SINK_EV_DEFERRED
                                                                     : SINK_EV_BOUNCE;
    if (code < 400)
        atomic_fetch_add_explicit(&q->st_delivered, 1, memory_order_relaxed);
    qmgr_sinks_note(q, ev, m, i, code, status, text, NULL);
}

void qmgr_msg_route(struct qmgr *q, struct qmsg *m)
{
    if (m->st != QM_ACTIVE)
        qmgr_set_state(q, m, QM_ACTIVE);
    memset(m->rtry, 0, m->nrcpt);
    m->not_before = 0;
    m->jobs = 0;
    struct qjob **jobs = calloc(m->nrcpt ? m->nrcpt : 1, sizeof(*jobs));
    size_t njobs = 0, held = 0;
    if (jobs == NULL) {
        log_msg(LOG_ERROR, "qmgr: out of memory routing %016llx", (unsigned long long)m->id);
        for (size_t i = 0; i < m->nrcpt; i++)
            if (m->rstate[i] == SPOOL_R_PENDING)
                qmgr_decide(q, m, i, 451, "4.3.0", "out of memory");
        qmgr_attempt_end(q, m);
        return;
    }
    for (size_t i = 0; i < m->nrcpt; i++) {
        if (m->rstate[i] != SPOOL_R_PENDING)
            continue;
        struct route rt;
        const char *dom = qdomain(m->rcpts[i]);
        if (m->rroute[i] != NULL) {
            char err[256];
            if (route_parse(m->rroute[i], &rt, err, sizeof(err)) < 0) {
                log_msg(LOG_WARN, "qmgr: message %016llx: route sink's next hop \"%s\": %s; "
                                  "the transport table decides",
                        (unsigned long long)m->id, m->rroute[i], err);
                route_lookup(q->routes, dom, &rt);
            }
        } else {
            route_lookup(q->routes, dom, &rt);
        }
        switch (rt.kind) {
        case ROUTE_DISCARD:
            log_msg(LOG_INFO, "qmgr: message %016llx: <%s> discarded (transport)",
                    (unsigned long long)m->id, m->rcpts[i]);
            qmgr_decide(q, m, i, 250, "2.0.0", "discarded by the transport table");
            continue;
        case ROUTE_ERROR:
            qmgr_decide(q, m, i, rt.error_code, rt.error_status, rt.error_text);
            continue;
        case ROUTE_HOLD:
            held++;
            continue;
        default:
            break;
        }
        struct qdest *d = qmgr_dest_get(q, &rt, dom);
        if (d == NULL) {
            qmgr_decide(q, m, i, 451, "4.3.0", "out of memory");
            continue;
        }
        struct qjob *j = NULL;
        for (size_t k = 0; k < njobs; k++)
            if (jobs[k]->d == d && jobs[k]->n < QMGR_RCPTS_PER_TXN)
                j = jobs[k];
        if (j == NULL) {
            j = calloc(1, sizeof(*j));
            if (j == NULL || (j->ri = calloc(m->nrcpt, sizeof(*j->ri))) == NULL ||
                (j->addrs = calloc(m->nrcpt, sizeof(*j->addrs))) == NULL ||
                (j->sent = calloc(m->nrcpt, 1)) == NULL) {
                qmgr_job_free(j);
                qmgr_decide(q, m, i, 451, "4.3.0", "out of memory");
                continue;
            }
            j->m = m;
            j->d = d;
            jobs[njobs++] = j;
        }
        j->ri[j->n] = (uint32_t)i;
        j->addrs[j->n] = m->rcpts[i];
        j->n++;
    }
    m->jobs = (unsigned)njobs;
    if (njobs == 0) {
        free(jobs);
        bool decided = false;
        for (size_t i = 0; i < m->nrcpt; i++)
            decided |= m->rtry[i] != 0;
        if (held && !decided) {
            /* transport "hold": it waits untouched (nothing written) */
            qmgr_set_state(q, m, QM_HELD);
            return;
        }
        qmgr_attempt_end(q, m);
        return;
    }
    /* pushing may finish a job at once (a backed-off destination): the
     * count is set first so the message cannot end early */
    m->jobs++;
    for (size_t k = 0; k < njobs; k++) {
        if (jobs[k]->d->rt.kind == ROUTE_MAILDIR)
            qmgr_local_push(q, jobs[k]);
        else
            qmgr_dest_push(q, jobs[k]->d, jobs[k]);
    }
    free(jobs);
    if (--m->jobs == 0)
        qmgr_attempt_end(q, m);
}

/* A transport sink decided for the whole message: every pending
 * recipient gets code/status/text and the attempt ends. */
void qmgr_msg_verdict(struct qmgr *q, struct qmsg *m, int code, const char *status,
                      const char *text)
{
    if (m->st != QM_ACTIVE)
        qmgr_set_state(q, m, QM_ACTIVE);
    memset(m->rtry, 0, m->nrcpt);
    for (size_t i = 0; i < m->nrcpt; i++)
        if (m->rstate[i] == SPOOL_R_PENDING)
            qmgr_decide(q, m, i, code, status, text);
    qmgr_attempt_end(q, m);
}

void qmgr_unheap(struct qmgr *q, struct qmsg *m)
{
    qheap_remove(q, m);
}

void qmgr_msg_hold(struct qmgr *q, struct qmsg *m)
{
    qmgr_set_state(q, m, QM_HELD);
}

void qmgr_msg_quarantine(struct qmgr *q, struct qmsg *m)
{
    m->mflags |= SPOOL_MSG_QUARANTINE;
    qmgr_set_state(q, m, QM_QUARANTINE);
}

void qmgr_rcpt_result(struct qmgr *q, struct qjob *j, size_t k, int code, const char *status,
                      const char *text, const char *host)
{
    struct qmsg *m = j->m;
    size_t i = j->ri[k];
    char diag[700];
    snprintf(diag, sizeof(diag), "%d %s %s", code, status, text);
    char idstr[17];
    snprintf(idstr, sizeof(idstr), "%016llx", (unsigned long long)m->id);
    const char *via = host ? host : "local";
#define LOGF "id", idstr, "recipient", m->rcpts[i], "relay", via, "reply", diag, NULL
    qmgr_set_diag(m, i, diag, host);
    enum sink_event ev;
    if (code >= 200 && code < 300) {
        m->rtry[i] = 1;
        ev = SINK_EV_DELIVERED;
        atomic_fetch_add_explicit(&q->st_delivered, 1, memory_order_relaxed);
        if (m->nrcpt > 1) {
            struct spool_state st = {.kind = SPOOL_ST_DELIVERED, .rcpt = (uint32_t)i,
                                     .when_ms = clock_wall_ms(), .reason = diag};
            if (spool_writer_state(q->w, m->id, &st) == 0)
                m->rstate[i] = SPOOL_R_DELIVERED;
        }
        log_fields(LOG_INFO, (const char *[]){"event", "delivered", LOGF},
                   "qmgr: message %s: <%s> delivered via %s: %s", idstr, m->rcpts[i], via, diag);
    } else if (code >= 500) {
        m->rtry[i] = 2;
        ev = SINK_EV_BOUNCE;
        log_fields(LOG_INFO, (const char *[]){"event", "failed", LOGF},
                   "qmgr: message %s: <%s> failed via %s: %s", idstr, m->rcpts[i], via, diag);
    } else {
        m->rtry[i] = 3;
        ev = SINK_EV_DEFERRED;
        log_fields(LOG_INFO, (const char *[]){"event", "deferred", LOGF},
                   "qmgr: message %s: <%s> deferred via %s: %s", idstr, m->rcpts[i], via, diag);
    }
    qmgr_sinks_note(q, ev, m, i, code, status, text, host);
}
#undef LOGF

void qmgr_job_done(struct qmgr *q, struct qjob *j)
{
    struct qmsg *m = j->m;
    qmgr_job_free(j);
    if (--m->jobs == 0)
        qmgr_attempt_end(q, m);
}

static void qmgr_defer(struct qmgr *q, struct qmsg *m, const char *why)
{
    const struct route_retry *rr = route_retry(q->routes);
    int64_t now = clock_wall_ms();
    m->attempts++;
    int64_t next = now + (int64_t)route_backoff_ms(rr, m->attempts);
    if (m->not_before > next)
        next = m->not_before;
    m->next_ms = next;
    free(m->last_error);
    m->last_error = qstrdup(why);
    struct spool_state st = {.kind = SPOOL_ST_DEFERRED, .rcpt = SPOOL_RCPT_ALL,
                             .when_ms = next, .attempts = m->attempts, .reason = why};
    int rc = spool_writer_state(q->w, m->id, &st);
    if (rc < 0)
        log_msg(LOG_ERROR, "qmgr: message %016llx: DEFERRED record: %s",
                (unsigned long long)m->id, strerror(-rc));
    if (rr->delay_warning_ms && !(m->qflags & SPOOL_Q_WARNED) && m->sender[0] &&
        now - m->arrival_ms >= (int64_t)rr->delay_warning_ms) {
        size_t *idx = calloc(m->nrcpt, sizeof(*idx));
        size_t n = 0;
        for (size_t i = 0; idx && i < m->nrcpt; i++)
            if (m->rstate[i] == SPOOL_R_PENDING)
                idx[n++] = i;
        if (n) {
            qmgr_bounce(q, m, idx, n, true);
            m->qflags |= SPOOL_Q_WARNED;
            struct spool_state w = {.kind = SPOOL_ST_WARNED, .rcpt = SPOOL_RCPT_ALL,
                                    .when_ms = now, .reason = ""};
            spool_writer_state(q->w, m->id, &w);
        }
        free(idx);
    }
    qmgr_set_state(q, m, QM_DEFERRED);
    if (!qheap_push(q, m)) {
        log_msg(LOG_ERROR, "qmgr: out of memory: message %016llx retried at the next start",
                (unsigned long long)m->id);
        qmgr_set_state(q, m, QM_HELD);
    }
}

static void qmgr_attempt_end(struct qmgr *q, struct qmsg *m)
{
    const struct route_retry *rr = route_retry(q->routes);
    int64_t now = clock_wall_ms();
    bool expired = now - m->arrival_ms >= (int64_t)rr->max_age_ms;
    size_t *failed = calloc(m->nrcpt ? m->nrcpt : 1, sizeof(*failed));
    size_t nfailed = 0, left = 0;
    const char *why = NULL;
    for (size_t i = 0; i < m->nrcpt; i++) {
        if (m->rstate[i] != SPOOL_R_PENDING)
            continue;
        if (m->rtry[i] == 1) {
            m->rstate[i] = SPOOL_R_DELIVERED;
            continue;
        }
        if (m->rtry[i] != 2 && expired) {
            char diag[800];
            int64_t age = (now - m->arrival_ms) / 1000;
            char ages[32];
            if (age >= 2 * 86400)
                snprintf(ages, sizeof(ages), "%lld days", (long long)(age / 86400));
            else if (age >= 2 * 3600)
                snprintf(ages, sizeof(ages), "%lld hours", (long long)(age / 3600));
            else
                snprintf(ages, sizeof(ages), "%lld seconds", (long long)age);
            snprintf(diag, sizeof(diag), "451 4.4.7 message expired after %s in the queue; last "
                                         "error: %s",
                     ages, m->rdiag[i] ? m->rdiag[i] : m->last_error);
            qmgr_set_diag(m, i, diag, m->rhost[i]);
            m->rtry[i] = 2;
            qmgr_sinks_note(q, SINK_EV_BOUNCE, m, i, 451, "4.4.7", diag, m->rhost[i]);
        }
        if (m->rtry[i] == 2) {
            if (failed)
                failed[nfailed++] = i;
            continue;
        }
        left++;
        if (why == NULL)
            why = m->rdiag[i] ? m->rdiag[i] : "not attempted";
    }
    if (nfailed) {
        atomic_fetch_add_explicit(&q->st_failed, nfailed, memory_order_relaxed);
        if (m->sender[0] != '\0')
            qmgr_bounce(q, m, failed, nfailed, false);
        else
            log_msg(LOG_INFO, "qmgr: message %016llx: from <>: no bounce for %zu failed "
                              "recipient(s)",
                    (unsigned long long)m->id, nfailed);
        for (size_t k = 0; k < nfailed; k++) {
            size_t i = failed[k];
            m->rstate[i] = SPOOL_R_FAILED;
            if (left) {
                struct spool_state st = {.kind = SPOOL_ST_FAILED, .rcpt = (uint32_t)i,
                                         .when_ms = now, .reason = m->rdiag[i]};
                spool_writer_state(q->w, m->id, &st);
            }
        }
    }
    free(failed);
    if (left == 0) {
        qmgr_msg_finish(q, m);
        return;
    }
    /* delivered in this attempt and not yet recorded (single-recipient
     * messages record nothing until the end) */
    for (size_t i = 0; i < m->nrcpt; i++) {
        if (m->rtry[i] == 1 && m->nrcpt == 1) {
            struct spool_state st = {.kind = SPOOL_ST_DELIVERED, .rcpt = (uint32_t)i,
                                     .when_ms = now, .reason = m->rdiag[i]};
            spool_writer_state(q->w, m->id, &st);
        }
    }
    atomic_fetch_add_explicit(&q->st_deferrals, left, memory_order_relaxed);
    qmgr_defer(q, m, why);
}

/* ---- timers ---- */

void qmgr_retry_due(struct qmgr *q)
{
    int64_t now = clock_wall_ms();
    unsigned budget = 1000; /* per turn: a big backlog is spread over turns */
    while (q->nheap > 0 && q->heap[0]->next_ms <= now && budget-- > 0) {
        struct qmsg *m = q->heap[0];
        qheap_remove(q, m);
        qmgr_msg_route(q, m);
    }
}

uint64_t qmgr_retry_wait(struct qmgr *q, uint64_t max)
{
    if (q->nheap == 0)
        return max;
    int64_t d = q->heap[0]->next_ms - clock_wall_ms();
    if (d <= 0)
        return 0;
    return (uint64_t)d < max ? (uint64_t)d : max;
}

/* Every minute: a message in any state but in a delivery is checked
 * against the maximum age (quarantined mail is kept apart, not bounced). */
void qmgr_sweep(struct qmgr *q)
{
    const struct route_retry *rr = route_retry(q->routes);
    int64_t now = clock_wall_ms();
    struct qmsg *next;
    for (struct qmsg *m = q->all; m; m = next) {
        next = m->next;
        if (m->st != QM_DEFERRED && m->st != QM_HELD)
            continue;
        if (now - m->arrival_ms < (int64_t)rr->max_age_ms)
            continue;
        if (m->st == QM_DEFERRED)
            qheap_remove(q, m);
        qmgr_set_state(q, m, QM_ACTIVE);
        memset(m->rtry, 0, m->nrcpt);
        qmgr_attempt_end(q, m);
    }
}
