/*
 * NAME
 *	qmgr_local - the local delivery thread (Maildir)
 * DESCRIPTION
 *	maildir_deliver() blocks on two fsyncs per recipient, so local jobs
 *	run on a thread of their own: the queue manager appends jobs to a
 *	mutex-protected list, the thread delivers each recipient and posts
 *	the job back to the queue manager's scheduler worker with the
 *	outcomes, where they are recorded like any other delivery's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/queue/maildir.h"
#include "core/queue/qmgr_int.h"

struct qlocal_res {
    int code;
    char status[8];
    char text[400];
};

struct qlocal_job {
    struct sched_task task;
    struct qmgr *q;
    struct qjob *j;
    struct qlocal_res *res;
    struct qlocal_job *next;
};

struct qlocal {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct qlocal_job *head, *tail;
    bool stop;
    bool running;
};

static void qlocal_report(struct sched_task *t)
{
    struct qlocal_job *lj = (struct qlocal_job *)t;
    struct qjob *j = lj->j;
    for (size_t k = 0; k < j->n; k++)
        qmgr_rcpt_result(lj->q, j, k, lj->res[k].code, lj->res[k].status, lj->res[k].text,
                         NULL);
    qmgr_job_done(lj->q, j);
    free(lj->res);
    free(lj);
}

static void qlocal_deliver(struct qmgr *q, struct qlocal_job *lj)
{
    struct qjob *j = lj->j;
    struct qmsg *m = j->m;
    for (size_t k = 0; k < j->n; k++) {
        struct qlocal_res *r = &lj->res[k];
        char path[512], err[300];
        int rc = maildir_deliver(q->cfg->maildir_root, q->cfg->hostname, j->addrs[k], m->sender,
                                 m->sm, path, sizeof(path), err, sizeof(err));
        if (rc == 0) {
            r->code = 250;
            snprintf(r->status, sizeof(r->status), "2.0.0");
            snprintf(r->text, sizeof(r->text), "delivered to maildir %.300s", path);
        } else if (rc == -EINVAL) {
            r->code = 550;
            snprintf(r->status, sizeof(r->status), "5.1.1");
            snprintf(r->text, sizeof(r->text), "no such mailbox: %.300s", err);
        } else {
            r->code = rc == -ENOSPC || rc == -EDQUOT ? 452 : 451;
            snprintf(r->status, sizeof(r->status), rc == -ENOSPC ? "4.3.1" : "4.3.0");
            snprintf(r->text, sizeof(r->text), "local delivery failed: %.300s", err);
        }
    }
}

static void *qlocal_main(void *arg)
{
    struct qmgr *q = arg;
    struct qlocal *l = q->local;
    log_set_thread_tag("local");
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (l->head == NULL && !l->stop)
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop)
            break;
        struct qlocal_job *lj = l->head;
        l->head = lj->next;
        if (l->head == NULL)
            l->tail = NULL;
        pthread_mutex_unlock(&l->mu);
        qlocal_deliver(q, lj);
        lj->task.fn = qlocal_report;
        lj->task.next = NULL;
        sched_post(q->pool, q->sched_index, &lj->task);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int qmgr_local_start(struct qmgr *q)
{
    struct qlocal *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    q->local = l;
    int rc = pthread_create(&l->thread, NULL, qlocal_main, q);
    if (rc != 0)
        return -rc;
    l->running = true;
    return 0;
}

void qmgr_local_stop(struct qmgr *q)
{
    struct qlocal *l = q->local;
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (l->running)
        pthread_join(l->thread, NULL);
    /* jobs never started: their messages are retried at the next start */
    while (l->head) {
        struct qlocal_job *lj = l->head;
        l->head = lj->next;
        qmgr_job_free(lj->j);
        free(lj->res);
        free(lj);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
    q->local = NULL;
}

void qmgr_local_push(struct qmgr *q, struct qjob *j)
{
    struct qlocal *l = q->local;
    struct qlocal_job *lj = calloc(1, sizeof(*lj));
    if (lj == NULL || (lj->res = calloc(j->n, sizeof(*lj->res))) == NULL) {
        free(lj);
        qmgr_job_tempfail_all(q, j, "4.3.0", "out of memory", NULL);
        return;
    }
    lj->q = q;
    lj->j = j;
    pthread_mutex_lock(&l->mu);
    if (l->tail)
        l->tail->next = lj;
    else
        l->head = lj;
    l->tail = lj;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}
