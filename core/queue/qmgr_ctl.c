/*
 * NAME
 *	qmgr_ctl - operator control of the queue (sluicectl's queue verbs)
 * DESCRIPTION
 *	qmgr_control() posts a task to the queue manager's scheduler worker
 *	and waits for it on a condition variable: every verb runs on the
 *	queue manager's own thread, so it sees and changes the queue with no
 *	lock.  The answer is JSON (core/base/json.h).  A waiter that gives up (the queue manager
 *	is stopping) leaves the request to the task, which frees it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/base/json.h"
#include "core/base/log.h"
#include "core/queue/qmgr_int.h"

struct qctl_req {
    struct sched_task task;
    struct qmgr *q;
    char verb[32];
    char arg[300];
    char *out;
    int rc;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, abandoned;
};

/* A time as an ISO 8601 string, or null when there is none. */
static void qctl_time(struct json_buf *b, int64_t ms)
{
    if (ms <= 0) {
        json_null(b);
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char s[40];
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_str(b, s);
}

/* ---- verbs ---- */

static const char *qctl_state(const struct qmsg *m)
{
    switch (m->st) {
    case QM_DEFERRED:
        return "deferred";
    case QM_HELD:
        return (m->qflags & SPOOL_Q_HELD) ? "held" : "hold-transport";
    case QM_QUARANTINE:
        return "quarantine";
    default:
        return "active";
    }
}

/* {"KEY":n} */
static void qctl_count(struct json_buf *b, const char *key, size_t n)
{
    json_obj(b);
    json_key(b, key);
    json_uint(b, n);
    json_end(b);
}

static void qctl_rcpts(struct json_buf *b, const struct qmsg *m)
{
    static const char *const rs[] = {"pending", "delivered", "failed"};
    json_key(b, "rcpts");
    json_arr(b);
    for (size_t i = 0; i < m->nrcpt; i++) {
        json_obj(b);
        json_key(b, "addr");
        json_str(b, m->rcpts[i]);
        json_key(b, "state");
        json_str(b, m->rstate[i] < 3 ? rs[m->rstate[i]] : "?");
        json_key(b, "diag");
        json_str(b, m->rdiag[i]);
        json_end(b);
    }
    json_end(b);
}

static void qctl_msg(struct json_buf *b, const struct qmsg *m, bool full)
{
    char id[17];
    spool_id_str(m->id, id);
    json_obj(b);
    json_key(b, "id");
    json_str(b, id);
    json_key(b, "state");
    json_str(b, qctl_state(m));
    json_key(b, "sender");
    json_str(b, m->sender);
    json_key(b, "size");
    json_uint(b, m->size);
    json_key(b, "arrival");
    qctl_time(b, m->arrival_ms);
    json_key(b, "attempts");
    json_uint(b, m->attempts);
    json_key(b, "next_attempt");
    qctl_time(b, m->st == QM_DEFERRED ? m->next_ms : 0);
    json_key(b, "last_error");
    json_str(b, m->last_error);
    qctl_rcpts(b, m);
    if (full) {
        const struct spool_msginfo *in = spool_msg_info(m->sm);
        json_key(b, "params");
        json_str(b, m->params);
        json_key(b, "client");
        json_str(b, in->client);
        json_key(b, "helo");
        json_str(b, in->helo);
        /* the header section, up to 64 KiB */
        size_t cap = 65536;
        uint64_t size = spool_msg_size(m->sm);
        size_t n = size < cap ? (size_t)size : cap;
        char *h = malloc(n + 1);
        if (h && spool_msg_read(m->sm, 0, h, n) == 0) {
            h[n] = '\0';
            char *end = strstr(h, "\r\n\r\n");
            if (end)
                end[2] = '\0';
            json_key(b, "headers");
            json_str(b, h);
        }
        free(h);
    }
    json_end(b);
}

static struct qmsg *qctl_find(struct qmgr *q, const char *arg)
{
    uint64_t id;
    if (!spool_id_parse(arg, &id))
        return NULL;
    for (struct qmsg *m = q->all; m; m = m->next)
        if (m->id == id)
            return m;
    return NULL;
}

static bool qctl_busy(const struct qmsg *m)
{
    return m->st == QM_ACTIVE || m->st == QM_SINKS;
}

/* Out of the retry heap (if deferred) into the given state. */
static void qctl_unqueue(struct qmgr *q, struct qmsg *m)
{
    if (m->st == QM_DEFERRED)
        qmgr_unheap(q, m);
}

static int qctl_run(struct qmgr *q, const char *verb, const char *arg, struct json_buf *b)
{
    if (strcmp(verb, "list") == 0) {
        json_arr(b);
        for (struct qmsg *m = q->all; m; m = m->next)
            qctl_msg(b, m, false);
        json_end(b);
        return 0;
    }
    if (strcmp(verb, "flush") == 0) {
        /* destinations backed off get another chance too */
        for (size_t i = 0; i < q->dcap; i++)
            for (struct qdest *d = q->dtab[i]; d; d = d->hnext)
                d->backoff_until = 0;
        size_t n = 0;
        struct qmsg *next;
        for (struct qmsg *m = q->all; m; m = next) {
            next = m->next;
            if (m->st != QM_DEFERRED)
                continue;
            bool match = arg[0] == '\0';
            if (!match && strchr(arg, '.') && !spool_id_parse(arg, &(uint64_t){0})) {
                for (size_t i = 0; i < m->nrcpt && !match; i++) {
                    const char *at = strrchr(m->rcpts[i], '@');
                    match = m->rstate[i] == SPOOL_R_PENDING && at && strcasecmp(at + 1, arg) == 0;
                }
            } else if (!match) {
                uint64_t id;
                match = spool_id_parse(arg, &id) && id == m->id;
            }
            if (!match)
                continue;
            qctl_unqueue(q, m);
            m->next_ms = 0;
            qmgr_msg_route(q, m);
            n++;
        }
        if (n == 0 && arg[0] != '\0' && spool_id_parse(arg, &(uint64_t){0}) &&
            qctl_find(q, arg) == NULL)
            return -ENOENT;
        qctl_count(b, "flushed", n);
        return 0;
    }
    if (strcmp(verb, "delete") == 0 && strcmp(arg, "--all") == 0) {
        size_t n = 0, busy = 0;
        struct qmsg *next;
        for (struct qmsg *m = q->all; m; m = next) {
            next = m->next;
            if (qctl_busy(m)) {
                busy++;
                continue;
            }
            spool_writer_remove(q->w, m->id);
            qmgr_msg_free(q, m);
            n++;
        }
        json_obj(b);
        json_key(b, "deleted");
        json_uint(b, n);
        json_key(b, "busy");
        json_uint(b, busy);
        json_end(b);
        return 0;
    }
    struct qmsg *m = qctl_find(q, arg);
    if (strcmp(verb, "show") != 0 && strcmp(verb, "delete") != 0 && strcmp(verb, "hold") != 0 &&
        strcmp(verb, "release") != 0 && strcmp(verb, "bounce") != 0)
        return -EINVAL;
    if (m == NULL) {
        uint64_t id;
        return spool_id_parse(arg, &id) ? -ENOENT : -EINVAL;
    }
    if (strcmp(verb, "show") == 0) {
        qctl_msg(b, m, true);
        return 0;
    }
    if (qctl_busy(m))
        return -EBUSY;
    if (strcmp(verb, "delete") == 0) {
        int rc = spool_writer_remove(q->w, m->id);
        if (rc < 0)
            return rc;
        log_msg(LOG_INFO, "qmgr: message %016llx: deleted by the operator",
                (unsigned long long)m->id);
        qmgr_msg_free(q, m);
        qctl_count(b, "deleted", 1);
        return 0;
    }
    if (strcmp(verb, "hold") == 0) {
        struct spool_state st = {.kind = SPOOL_ST_HOLD,
                                 .rcpt = SPOOL_RCPT_ALL,
                                 .when_ms = clock_wall_ms(),
                                 .reason = "operator"};
        int rc = spool_writer_state(q->w, m->id, &st);
        if (rc < 0)
            return rc;
        qctl_unqueue(q, m);
        m->qflags |= SPOOL_Q_HELD;
        qmgr_msg_hold(q, m);
        qctl_count(b, "held", 1);
        return 0;
    }
    if (strcmp(verb, "release") == 0) {
        if (m->st == QM_QUARANTINE)
            return -EINVAL;
        if (!(m->qflags & SPOOL_Q_HELD))
            return -EINVAL;
        struct spool_state st = {.kind = SPOOL_ST_RELEASE,
                                 .rcpt = SPOOL_RCPT_ALL,
                                 .when_ms = clock_wall_ms(),
                                 .reason = "operator"};
        int rc = spool_writer_state(q->w, m->id, &st);
        if (rc < 0)
            return rc;
        m->qflags &= ~SPOOL_Q_HELD;
        qmgr_msg_route(q, m);
        qctl_count(b, "released", 1);
        return 0;
    }
    /* bounce */
    size_t n = 0;
    for (size_t i = 0; i < m->nrcpt; i++)
        n += m->rstate[i] == SPOOL_R_PENDING;
    qctl_unqueue(q, m);
    log_msg(LOG_INFO, "qmgr: message %016llx: bounced by the operator", (unsigned long long)m->id);
    qmgr_msg_verdict(q, m, 550, "5.0.0", "bounced by the operator");
    qctl_count(b, "bounced", n);
    return 0;
}

static void qctl_task(struct sched_task *t)
{
    struct qctl_req *r = (struct qctl_req *)t;
    struct json_buf b;
    json_init_grow(&b);
    int rc = qctl_run(r->q, r->verb, r->arg, &b);
    if (b.full)
        rc = -ENOMEM;
    if (rc < 0) {
        json_fini(&b);
        json_init_grow(&b);
        const char *why = rc == -ENOENT   ? "no such message"
                          : rc == -EINVAL ? "bad verb or argument"
                          : rc == -EBUSY  ? "the message is being delivered right now; try again"
                                          : strerror(-rc);
        json_obj(&b);
        json_key(&b, "error");
        json_str(&b, why);
        json_end(&b);
    }
    pthread_mutex_lock(&r->mu);
    r->out = json_take(&b);
    r->rc = rc;
    r->done = true;
    bool abandoned = r->abandoned;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (abandoned) {
        free(r->out);
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        free(r);
    }
}

int qmgr_control(struct qmgr *q, const char *verb, const char *arg, char **out)
{
    *out = NULL;
    if (q == NULL || !q->started || atomic_load_explicit(&q->stop, memory_order_acquire))
        return -ESHUTDOWN;
    if (strlen(verb) >= sizeof(((struct qctl_req *)0)->verb) ||
        strlen(arg ? arg : "") >= sizeof(((struct qctl_req *)0)->arg))
        return -EINVAL;
    struct qctl_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->q = q;
    snprintf(r->verb, sizeof(r->verb), "%s", verb);
    snprintf(r->arg, sizeof(r->arg), "%s", arg ? arg : "");
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->task.fn = qctl_task;
    r->task.next = NULL;
    sched_post(q->pool, q->sched_index, &r->task);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    pthread_mutex_lock(&r->mu);
    while (!r->done)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) == ETIMEDOUT)
            break;
    if (!r->done) {
        r->abandoned = true; /* the task frees it if it ever runs */
        pthread_mutex_unlock(&r->mu);
        return -ETIMEDOUT;
    }
    pthread_mutex_unlock(&r->mu);
    int rc = r->rc;
    *out = r->out;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
    return rc;
}
