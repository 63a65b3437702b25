/*
 * NAME
 *	qmgr_sinks - transport and outbound events for sinks
 * DESCRIPTION
 *	Message events (precategorize, categorize, postcategorize, then route
 *	once per pending recipient) run when a message first enters the
 *	queue, in that order, each possibly pending; the message waits in
 *	QM_SINKS meanwhile.  categorize may rewrite the recipient list: the
 *	new list is written as a RCPTS state before any delivery.  A route
 *	sink's choice, and a route sink's REJECT or TEMPFAIL, are kept per
 *	recipient as a transport value ("error:5.7.1 text" for a refusal).
 *
 *	Outbound events run on a connection (qmgr_conn.c asks, this file
 *	dispatches).  Outcome events (delivered, deferred, bounce) are
 *	notifications: each has its own copy of what it shows, so a pending
 *	one outlives the message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/queue/qmgr_int.h"

enum { QS_PRE, QS_CAT, QS_POST, QS_ROUTE };

bool qmgr_sinks_bound(const struct qmgr *q, enum sink_event ev)
{
    return q->sinks != NULL && q->engine != NULL && sink_engine_bound(q->engine, ev);
}

/* ---- categorize: recipient edits ---- */

static int qs_grow(struct qmsg *m, size_t n)
{
    void *v;
#define QS_GROW(field, sz)                                                                         \
    if ((v = realloc(m->field, n * (sz))) == NULL)                                                 \
        return -ENOMEM;                                                                            \
    m->field = v;
    QS_GROW(rcpts, sizeof(char *));
    QS_GROW(rstate, 1);
    QS_GROW(rtry, 1);
    QS_GROW(rdiag, sizeof(char *));
    QS_GROW(rhost, sizeof(char *));
    QS_GROW(rroute, sizeof(char *));
#undef QS_GROW
    return 0;
}

static int qs_rcpt_edit(void *arg, int op, size_t i, const char *addr)
{
    struct qmsg *m = arg;
    if (op == 1) {
        for (size_t k = 0; k < m->nrcpt; k++)
            if (strcasecmp(m->rcpts[k], addr) == 0)
                return 0; /* already there */
        char *a = strdup(addr);
        if (a == NULL || qs_grow(m, m->nrcpt + 1) < 0) {
            free(a);
            return -ENOMEM;
        }
        size_t k = m->nrcpt++;
        m->rcpts[k] = a;
        m->rstate[k] = SPOOL_R_PENDING;
        m->rtry[k] = 0;
        m->rdiag[k] = m->rhost[k] = m->rroute[k] = NULL;
    } else if (i >= m->nrcpt) {
        return -EINVAL;
    } else if (op == 0) {
        char *a = strdup(addr);
        if (a == NULL)
            return -ENOMEM;
        free(m->rcpts[i]);
        m->rcpts[i] = a;
    } else {
        free(m->rcpts[i]);
        free(m->rdiag[i]);
        free(m->rhost[i]);
        free(m->rroute[i]);
        size_t rest = m->nrcpt - i - 1;
        memmove(&m->rcpts[i], &m->rcpts[i + 1], rest * sizeof(char *));
        memmove(&m->rstate[i], &m->rstate[i + 1], rest);
        memmove(&m->rtry[i], &m->rtry[i + 1], rest);
        memmove(&m->rdiag[i], &m->rdiag[i + 1], rest * sizeof(char *));
        memmove(&m->rhost[i], &m->rhost[i + 1], rest * sizeof(char *));
        memmove(&m->rroute[i], &m->rroute[i + 1], rest * sizeof(char *));
        m->nrcpt--;
    }
    m->rcpts_changed = true;
    m->ev.rcpts = (const char *const *)m->rcpts;
    m->ev.nrcpt = m->nrcpt;
    return 0;
}

static int qs_route_set(void *arg, const char *nexthop)
{
    struct qmsg *m = arg;
    struct route rt;
    char err[256];
    if (route_parse(nexthop, &rt, err, sizeof(err)) < 0)
        return -EINVAL;
    char *v = strdup(nexthop);
    if (v == NULL)
        return -ENOMEM;
    free(m->rroute[m->route_i]);
    m->rroute[m->route_i] = v;
    return 0;
}

/* ---- message events ---- */

static void qs_msg_step(struct qmgr *q, struct qmsg *m);

static void qs_fill(struct qmsg *m)
{
    const struct spool_msginfo *in = spool_msg_info(m->sm);
    memset(&m->ev, 0, sizeof(m->ev));
    m->ev.client_addr = in->client;
    m->ev.helo = in->helo;
    m->ev.sender = m->sender;
    m->ev.mail_params = m->params;
    m->ev.nrcpt = m->nrcpt;
    m->ev.rcpts = (const char *const *)m->rcpts;
    m->ev.msg_id = m->id;
    m->ev.body_size = m->size;
    m->ev.rcpt_edit = qs_rcpt_edit;
    m->ev.route_set = qs_route_set;
    m->ev.transport_arg = m;
}

/* Applies a message event's verdict.  true: go on with the next step. */
static bool qs_msg_verdict(struct qmgr *q, struct qmsg *m, const struct sink_result *r)
{
    const char *text = r->text[0] ? r->text : NULL;
    switch (r->verdict) {
    case SINK_REJECT:
        qmgr_msg_verdict(q, m, r->code >= 500 ? r->code : 550,
                         r->enhanced[0] ? r->enhanced : "5.7.1",
                         text ? text : "refused by a transport sink");
        return false;
    case SINK_TEMPFAIL:
    case SINK_DROP:
        qmgr_msg_verdict(q, m, r->code >= 400 && r->code < 500 ? r->code : 451,
                         r->enhanced[0] ? r->enhanced : "4.7.1",
                         text ? text : "deferred by a transport sink");
        return false;
    case SINK_DISCARD:
        log_msg(LOG_INFO, "qmgr: message %016llx: discarded by binding \"%s\"",
                (unsigned long long)m->id, r->binding ? r->binding : "?");
        qmgr_msg_verdict(q, m, 250, "2.0.0", "discarded by a transport sink");
        return false;
    case SINK_QUARANTINE:
        log_msg(LOG_INFO, "qmgr: message %016llx: quarantined by binding \"%s\"",
                (unsigned long long)m->id, r->binding ? r->binding : "?");
        qmgr_msg_quarantine(q, m);
        return false;
    default:
        return true;
    }
}

static void qs_route_verdict(struct qmsg *m, const struct sink_result *r)
{
    char v[600];
    if (r->verdict == SINK_REJECT)
        snprintf(v, sizeof(v), "error:%s %s", r->enhanced[0] ? r->enhanced : "5.7.1",
                 r->text[0] ? r->text : "refused by a route sink");
    else if (r->verdict == SINK_TEMPFAIL || r->verdict == SINK_DROP)
        snprintf(v, sizeof(v), "error:%s %s", r->enhanced[0] ? r->enhanced : "4.7.1",
                 r->text[0] ? r->text : "deferred by a route sink");
    else if (r->verdict == SINK_DISCARD)
        snprintf(v, sizeof(v), "discard");
    else
        return;
    free(m->rroute[m->route_i]);
    m->rroute[m->route_i] = strdup(v);
}

static void qs_msg_done(void *arg, const struct sink_result *r)
{
    struct qmsg *m = arg;
    struct qmgr *q = m->ev.body_arg; /* stashed: see qs_msg_step */
    if (m->step >= QS_ROUTE) {
        qs_route_verdict(m, r);
        m->route_i++;
    } else {
        if (!qs_msg_verdict(q, m, r))
            return;
        m->step++;
    }
    qs_msg_step(q, m);
}

static void qs_msg_step(struct qmgr *q, struct qmsg *m)
{
    static const enum sink_event evs[] = {SINK_EV_PRECATEGORIZE, SINK_EV_CATEGORIZE,
                                          SINK_EV_POSTCATEGORIZE};
    struct sink_result r;
    while (m->step < QS_ROUTE) {
        enum sink_event ev = evs[m->step];
        if (qmgr_sinks_bound(q, ev)) {
            if (m->call == NULL && (m->call = sink_call_create(q->sinks)) == NULL)
                break;
            qs_fill(m);
            if (ev != SINK_EV_CATEGORIZE)
                m->ev.rcpt_edit = NULL;
            m->ev.route_set = NULL;
            m->ev.body_arg = q;
            if (!sink_dispatch(m->call, ev, &m->ev, NULL, NULL, qs_msg_done, m, &r))
                return;
            if (!qs_msg_verdict(q, m, &r))
                return;
        }
        m->step++;
    }
    if (m->step == QS_ROUTE && m->rcpts_changed) {
        struct spool_state st = {.kind = SPOOL_ST_RCPTS, .rcpt = SPOOL_RCPT_ALL,
                                 .when_ms = clock_wall_ms(), .reason = "",
                                 .nrcpt = (uint32_t)m->nrcpt,
                                 .rcpts = (const char *const *)m->rcpts};
        int rc = spool_writer_state(q->w, m->id, &st);
        if (rc < 0)
            log_msg(LOG_ERROR, "qmgr: message %016llx: storing the new recipients: %s",
                    (unsigned long long)m->id, strerror(-rc));
        m->rcpts_changed = false;
        m->step++; /* once */
    } else if (m->step == QS_ROUTE) {
        m->step++;
    }
    if (qmgr_sinks_bound(q, SINK_EV_ROUTE)) {
        for (; m->route_i < m->nrcpt; m->route_i++) {
            if (m->rstate[m->route_i] != SPOOL_R_PENDING)
                continue;
            if (m->call == NULL && (m->call = sink_call_create(q->sinks)) == NULL)
                break;
            qs_fill(m);
            m->ev.rcpt_edit = NULL;
            m->ev.rcpt_index = m->route_i;
            struct route rt;
            char nh[300];
            const char *at = strrchr(m->rcpts[m->route_i], '@');
            route_lookup(q->routes, at ? at + 1 : "", &rt);
            route_format(&rt, nh, sizeof(nh));
            m->ev.nexthop = nh; /* copied by sinks that keep it */
            m->ev.body_arg = q;
            if (!sink_dispatch(m->call, SINK_EV_ROUTE, &m->ev, NULL, NULL, qs_msg_done, m, &r))
                return;
            qs_route_verdict(m, &r);
        }
    }
    qmgr_msg_route(q, m);
}

void qmgr_sinks_message(struct qmgr *q, struct qmsg *m)
{
    m->step = QS_PRE;
    m->route_i = 0;
    if (!qmgr_sinks_bound(q, SINK_EV_PRECATEGORIZE) && !qmgr_sinks_bound(q, SINK_EV_CATEGORIZE) &&
        !qmgr_sinks_bound(q, SINK_EV_POSTCATEGORIZE) && !qmgr_sinks_bound(q, SINK_EV_ROUTE)) {
        qmgr_msg_route(q, m);
        return;
    }
    qs_msg_step(q, m);
}

/* ---- outcome notifications ---- */

struct qs_note {
    struct qmgr *q;
    struct qs_note *prev, *next; /* pending notes (q->notes) */
    struct sink_call *call;
    struct sink_event_data ev;
    char **rcpts;
    size_t nrcpt;
    char *strs[5];
};

static void qs_note_free(struct qs_note *n)
{
    if (n->call)
        sink_call_destroy(n->call);
    for (size_t i = 0; i < n->nrcpt; i++)
        free(n->rcpts[i]);
    free(n->rcpts);
    for (size_t i = 0; i < 5; i++)
        free(n->strs[i]);
    free(n);
}

static void qs_note_unlink(struct qs_note *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else if (n->q && n->q->notes == n)
        n->q->notes = n->next;
    if (n->next)
        n->next->prev = n->prev;
}

static void qs_note_done(void *arg, const struct sink_result *r)
{
    (void)r;
    struct qs_note *n = arg; /* done may destroy the call (sinks/dispatch.c) */
    qs_note_unlink(n);
    qs_note_free(n);
}

/* At stop: pending notifications are abandoned. */
void qmgr_sinks_stop(struct qmgr *q)
{
    while (q->notes) {
        struct qs_note *n = q->notes;
        qs_note_unlink(n);
        qs_note_free(n);
    }
}

void qmgr_sinks_note(struct qmgr *q, enum sink_event ev, struct qmsg *m, size_t i, int code,
                     const char *status, const char *text, const char *host)
{
    if (!qmgr_sinks_bound(q, ev))
        return;
    struct qs_note *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return;
    n->rcpts = calloc(m->nrcpt, sizeof(*n->rcpts));
    n->call = sink_call_create(q->sinks);
    if (n->rcpts == NULL || n->call == NULL) {
        qs_note_free(n);
        return;
    }
    n->nrcpt = m->nrcpt;
    for (size_t k = 0; k < m->nrcpt; k++)
        n->rcpts[k] = strdup(m->rcpts[k] ? m->rcpts[k] : "");
    n->strs[0] = strdup(m->sender);
    n->strs[1] = strdup(status ? status : "");
    n->strs[2] = strdup(text ? text : "");
    n->strs[3] = host ? strdup(host) : NULL;
    n->strs[4] = strdup(m->params);
    n->ev.sender = n->strs[0];
    n->ev.mail_params = n->strs[4];
    n->ev.status = n->strs[1];
    n->ev.reply_code = code;
    n->ev.reply_text = n->strs[2];
    n->ev.nexthop = n->strs[3];
    n->ev.nrcpt = n->nrcpt;
    n->ev.rcpts = (const char *const *)n->rcpts;
    n->ev.rcpt_index = i;
    n->ev.msg_id = m->id;
    n->ev.body_size = m->size;
    struct sink_result r;
    if (sink_dispatch(n->call, ev, &n->ev, NULL, NULL, qs_note_done, n, &r)) {
        qs_note_free(n);
        return;
    }
    /* pending: it lives until its completion (or its deadline) */
    n->q = q;
    n->next = q->notes;
    if (q->notes)
        q->notes->prev = n;
    q->notes = n;
}

/* ---- outbound events ---- */

static void qs_out_done(void *arg, const struct sink_result *r)
{
    struct qconn *c = arg;
    c->sres = *r;
    c->sres_ready = true;
    qmgr_conn_sink_done(c);
}

bool qmgr_sinks_out(struct qconn *c, enum sink_event ev, size_t k, struct sink_result *res)
{
    if (c->sres_ready && c->sres_ev == ev && c->sres_k == k) {
        *res = c->sres;
        c->sres_ready = false;
        return true;
    }
    struct qmgr *q = c->q;
    if (c->call == NULL && (c->call = sink_call_create(q->sinks)) == NULL) {
        memset(res, 0, sizeof(*res));
        res->verdict = SINK_CONTINUE;
        return true;
    }
    memset(&c->ev, 0, sizeof(c->ev));
    c->ev.helo = q->cfg->hostname;
    c->ev.nexthop = c->peer;
    c->ev.reply_text = c->c ? osmtp_banner(c->c) : NULL;
    if (c->job) {
        struct qmsg *m = c->job->m;
        c->ev.sender = m->sender;
        c->ev.mail_params = m->params;
        c->ev.nrcpt = c->job->n;
        c->ev.rcpts = c->job->addrs;
        c->ev.rcpt_index = k == SIZE_MAX ? 0 : k;
        c->ev.rcpt = k == SIZE_MAX ? NULL : c->job->addrs[k];
        c->ev.msg_id = m->id;
        c->ev.body_size = m->size;
    }
    if (sink_dispatch(c->call, ev, &c->ev, NULL, NULL, qs_out_done, c, res))
        return true;
    c->sink_wait = true;
    c->sres_ev = ev;
    c->sres_k = k;
    return false;
}
