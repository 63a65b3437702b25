/*
 * NAME
 *	qmgr_ctl - operator control of the queue (sluicectl's queue verbs)
 * DESCRIPTION
 *	qmgr_control() posts a task to the queue manager's scheduler worker
 *	and waits for it on a condition variable: every verb runs on the
 *	queue manager's own thread, so it sees and changes the queue with no
 *	lock.  The answer is JSON.  A waiter that gives up (the queue manager
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

/* ---- a small JSON writer ---- */

struct jbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *p = realloc(b->p, nc);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void jb_fmt(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jb_fmt(struct jbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        jb_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void jb_str(struct jbuf *b, const char *s)
{
    jb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            jb_put(b, e, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            jb_fmt(b, "\\u%04x", *p);
        } else {
            jb_put(b, (const char *)p, 1);
        }
    }
    jb_put(b, "\"", 1);
}

static void jb_time(struct jbuf *b, int64_t ms)
{
    if (ms <= 0) {
        jb_put(b, "null", 4);
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char s[40];
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
    jb_str(b, s);
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

static void qctl_msg(struct jbuf *b, const struct qmsg *m, bool full)
{
    char id[17];
    spool_id_str(m->id, id);
    jb_put(b, "{\"id\":", 6);
    jb_str(b, id);
    jb_put(b, ",\"state\":", 9);
    jb_str(b, qctl_state(m));
    jb_put(b, ",\"sender\":", 10);
    jb_str(b, m->sender);
    jb_fmt(b, ",\"size\":%" PRIu64 ",\"arrival\":", m->size);
    jb_time(b, m->arrival_ms);
    jb_fmt(b, ",\"attempts\":%u,\"next_attempt\":", m->attempts);
    jb_time(b, m->st == QM_DEFERRED ? m->next_ms : 0);
    jb_put(b, ",\"last_error\":", 14);
    jb_str(b, m->last_error);
    jb_put(b, ",\"rcpts\":[", 10);
    static const char *const rs[] = {"pending", "delivered", "failed"};
    for (size_t i = 0; i < m->nrcpt; i++) {
        jb_put(b, i ? ",{\"addr\":" : "{\"addr\":", i ? 9 : 8);
        jb_str(b, m->rcpts[i]);
        jb_put(b, ",\"state\":", 9);
        jb_str(b, m->rstate[i] < 3 ? rs[m->rstate[i]] : "?");
        jb_put(b, ",\"diag\":", 8);
        jb_str(b, m->rdiag[i] ? m->rdiag[i] : "");
        jb_put(b, "}", 1);
    }
    jb_put(b, "]", 1);
    if (full) {
        const struct spool_msginfo *in = spool_msg_info(m->sm);
        jb_put(b, ",\"params\":", 10);
        jb_str(b, m->params);
        jb_put(b, ",\"client\":", 10);
        jb_str(b, in->client);
        jb_put(b, ",\"helo\":", 8);
        jb_str(b, in->helo);
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
            jb_put(b, ",\"headers\":", 11);
            jb_str(b, h);
        }
        free(h);
    }
    jb_put(b, "}", 1);
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

static int qctl_run(struct qmgr *q, const char *verb, const char *arg, struct jbuf *b)
{
    if (strcmp(verb, "list") == 0) {
        jb_put(b, "[", 1);
        bool first = true;
        for (struct qmsg *m = q->all; m; m = m->next) {
            if (!first)
                jb_put(b, ",", 1);
            first = false;
            qctl_msg(b, m, false);
        }
        jb_put(b, "]", 1);
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
        jb_fmt(b, "{\"flushed\":%zu}", n);
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
        jb_fmt(b, "{\"deleted\":%zu,\"busy\":%zu}", n, busy);
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
        jb_put(b, "{\"deleted\":1}", 13);
        return 0;
    }
    if (strcmp(verb, "hold") == 0) {
        struct spool_state st = {.kind = SPOOL_ST_HOLD, .rcpt = SPOOL_RCPT_ALL,
                                 .when_ms = qmgr_now_unix(), .reason = "operator"};
        int rc = spool_writer_state(q->w, m->id, &st);
        if (rc < 0)
            return rc;
        qctl_unqueue(q, m);
        m->qflags |= SPOOL_Q_HELD;
        qmgr_msg_hold(q, m);
        jb_put(b, "{\"held\":1}", 10);
        return 0;
    }
    if (strcmp(verb, "release") == 0) {
        if (m->st == QM_QUARANTINE)
            return -EINVAL;
        if (!(m->qflags & SPOOL_Q_HELD))
            return -EINVAL;
        struct spool_state st = {.kind = SPOOL_ST_RELEASE, .rcpt = SPOOL_RCPT_ALL,
                                 .when_ms = qmgr_now_unix(), .reason = "operator"};
        int rc = spool_writer_state(q->w, m->id, &st);
        if (rc < 0)
            return rc;
        m->qflags &= ~SPOOL_Q_HELD;
        qmgr_msg_route(q, m);
        jb_put(b, "{\"released\":1}", 14);
        return 0;
    }
    /* bounce */
    size_t n = 0;
    for (size_t i = 0; i < m->nrcpt; i++)
        n += m->rstate[i] == SPOOL_R_PENDING;
    qctl_unqueue(q, m);
    log_msg(LOG_INFO, "qmgr: message %016llx: bounced by the operator", (unsigned long long)m->id);
    qmgr_msg_verdict(q, m, 550, "5.0.0", "bounced by the operator");
    jb_fmt(b, "{\"bounced\":%zu}", n);
    return 0;
}

static void qctl_task(struct sched_task *t)
{
    struct qctl_req *r = (struct qctl_req *)t;
    struct jbuf b = {0};
    int rc = qctl_run(r->q, r->verb, r->arg, &b);
    if (b.oom)
        rc = -ENOMEM;
    if (rc < 0) {
        free(b.p);
        b = (struct jbuf){0};
        const char *why = rc == -ENOENT   ? "no such message"
                          : rc == -EINVAL ? "bad verb or argument"
                          : rc == -EBUSY  ? "the message is being delivered right now; try again"
                                          : strerror(-rc);
        jb_put(&b, "{\"error\":", 9);
        jb_str(&b, why);
        jb_put(&b, "}", 1);
    }
    pthread_mutex_lock(&r->mu);
    r->out = b.p;
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
