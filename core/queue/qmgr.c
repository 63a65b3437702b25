/*
 * NAME
 *	qmgr - the queue-manager thread: its ring, its loop, its inputs
 * DESCRIPTION
 *	The loop mirrors a net worker's (net/worker.c): wait on the ring
 *	(parked through the scheduler, woken by a multishot poll on its
 *	eventfd, bounded by the next timer), dispatch completions, run a budget
 *	of scheduler tasks (new messages posted by the spool's durable hook,
 *	local delivery results, sink completions), expire sink deadlines,
 *	start retries that are due, start connections for destinations with
 *	work, and at the end of the turn submit one fdatasync for the STATE
 *	records (and bounces) of the turn.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/client/tls_cfg.h"
#include "core/base/clock.h"
#include "core/base/log.h"
#include "core/queue/qmgr_int.h"
#include "net/tls.h"

#ifdef SLUICE_TEST_HOOKS
/* sluiced-test only: with SLUICE_FAULT_PLAIN_FSYNC=1 the group commit of
 * the STATE and REMOVE records calls fdatasync(2) itself (the power-loss
 * shim, tests/faults/powercut.c, sees no ring op) and a NOP completes it.
 * One queue manager per process: its thread alone touches the result. */
static int qmgr_plain_fsync_res;

static bool qmgr_plain_fsync_on(void)
{
    const char *v = getenv("SLUICE_FAULT_PLAIN_FSYNC");
    return v != NULL && *v == '1';
}
#endif

#define QMGR_RING_ENTRIES 1024
#define QMGR_TASK_BUDGET 256

struct qmgr_newmsg {
    struct sched_task task;
    struct qmgr *q;
    struct spool_msg *m;
};

struct io_uring_sqe *qmgr_sqe(struct qmgr *q)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
    if (sqe == NULL) {
        io_uring_submit(&q->ring);
        sqe = io_uring_get_sqe(&q->ring);
        if (sqe == NULL)
            log_panic("qmgr: io_uring submission queue full");
    }
    return sqe;
}

/* ---- c-ares sockets on the ring ---- */

static void qmgr_dns_arm(struct qmgr *q, unsigned slot)
{
    struct qmgr_dnsfd *f = &q->dnsfd[slot];
    if (f->armed || f->fd < 0 || (!f->want_r && !f->want_w))
        return;
    unsigned mask = (f->want_r ? POLLIN : 0) | (f->want_w ? POLLOUT : 0);
    struct io_uring_sqe *sqe = qmgr_sqe(q);
    io_uring_prep_poll_add(sqe, f->fd, mask);
    io_uring_sqe_set_data64(sqe, ((uint64_t)(slot | (f->gen << 16)) << 8) | QOP_DNS);
    f->armed = true;
}

static void qmgr_dns_sock(void *arg, int fd, bool r, bool w)
{
    struct qmgr *q = arg;
    int slot = -1, free_slot = -1;
    for (unsigned i = 0; i < QMGR_DNS_SLOTS; i++) {
        if (q->dnsfd[i].fd == fd)
            slot = (int)i;
        else if (q->dnsfd[i].fd < 0 && free_slot < 0)
            free_slot = (int)i;
    }
    if (slot < 0) {
        if (!r && !w)
            return;
        if (free_slot < 0) {
            log_msg(LOG_ERROR, "qmgr: more than %d DNS sockets", QMGR_DNS_SLOTS);
            return;
        }
        slot = free_slot;
        q->dnsfd[slot].fd = fd;
        q->dnsfd[slot].armed = false;
    }
    struct qmgr_dnsfd *f = &q->dnsfd[slot];
    bool changed = f->want_r != r || f->want_w != w;
    f->want_r = r;
    f->want_w = w;
    if (f->armed && changed) {
        /* re-armed with the new mask when the old poll completes */
        struct io_uring_sqe *sqe = qmgr_sqe(q);
        io_uring_prep_poll_remove(sqe, ((uint64_t)(slot | (f->gen << 16)) << 8) | QOP_DNS);
        io_uring_sqe_set_data64(sqe, QOP_DNS_CANCEL);
    }
    if (!r && !w) {
        /* c-ares closes the socket after this: forget it (a poll still in
         * flight completes with its old generation and is ignored) */
        f->fd = -1;
        f->gen = (f->gen + 1) & 0xffff;
        f->armed = false;
        return;
    }
    if (q->ring_ok)
        qmgr_dns_arm(q, (unsigned)slot);
}

static void qmgr_dns_cqe(struct qmgr *q, uint64_t v, int res)
{
    unsigned slot = (unsigned)(v & 0xffff), gen = (unsigned)((v >> 16) & 0xffff);
    if (slot >= QMGR_DNS_SLOTS)
        return;
    struct qmgr_dnsfd *f = &q->dnsfd[slot];
    if (f->gen != gen || f->fd < 0)
        return;
    f->armed = false;
    if (res > 0 || res == -ECANCELED) {
        int fd = f->fd;
        if (res > 0)
            dns_process(q->dns, (res & (POLLIN | POLLERR | POLLHUP)) ? fd : -1,
                        (res & POLLOUT) ? fd : -1);
    }
    if (f->gen == gen && f->fd >= 0)
        qmgr_dns_arm(q, slot);
}

/* ---- inputs from other threads ---- */

static void qmgr_newmsg_run(struct sched_task *t)
{
    struct qmgr_newmsg *n = (struct qmgr_newmsg *)t;
    qmgr_msg_add(n->q, n->m);
    free(n);
}

void qmgr_durable(void *arg, struct spool_msg *m)
{
    struct qmgr *q = arg;
    struct qmgr_newmsg *n = malloc(sizeof(*n));
    if (n == NULL) {
        /* it is safe in the spool; the next start delivers it */
        log_msg(LOG_ERROR, "qmgr: out of memory: a message waits for the next start");
        spool_msg_free(m);
        return;
    }
    n->task.fn = qmgr_newmsg_run;
    n->task.next = NULL;
    n->q = q;
    n->m = m;
    sched_post(q->pool, q->sched_index, &n->task);
}

int qmgr_recovered(void *arg, const struct spool_msginfo *mi)
{
    struct qmgr *q = arg;
    struct spool_msg *m = spool_msg_from_info(NULL, mi);
    if (m == NULL) {
        log_msg(LOG_ERROR, "qmgr: message %016llx: cannot read it back; left in the spool",
                (unsigned long long)mi->id);
        return 0;
    }
    if (q->nearly == q->capearly) {
        size_t nc = q->capearly ? q->capearly * 2 : 256;
        struct spool_msg **v = realloc(q->early, nc * sizeof(*v));
        if (v == NULL) {
            spool_msg_free(m);
            return -ENOMEM;
        }
        q->early = v;
        q->capearly = nc;
    }
    q->early[q->nearly++] = m;
    return 0;
}

/* ---- the sink services' polls (sinks/engine.h: sink_io) ---- */

static int qmgr_sink_poll(void *arg, int fd, unsigned what, uint32_t token)
{
    struct qmgr *q = arg;
    struct io_uring_sqe *sqe = qmgr_sqe(q);
    io_uring_prep_poll_add(sqe, fd,
                           ((what & SINK_FD_READ) ? POLLIN : 0) | ((what & SINK_FD_WRITE) ? POLLOUT : 0));
    io_uring_sqe_set_data64(sqe, ((uint64_t)token << 8) | QOP_SINK_POLL);
    return 0;
}

static void qmgr_sink_poll_cancel(void *arg, uint32_t token)
{
    struct qmgr *q = arg;
    struct io_uring_sqe *sqe = qmgr_sqe(q);
    io_uring_prep_poll_remove(sqe, ((uint64_t)token << 8) | QOP_SINK_POLL);
    io_uring_sqe_set_data64(sqe, QOP_SINK_CANCEL);
}

/* ---- the loop ---- */

static void qmgr_cqe(struct qmgr *q, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    enum qmgr_op op = (enum qmgr_op)(ud & 0xff);
    uint64_t v = ud >> 8;
    switch (op) {
    case QOP_CONNECT:
    case QOP_LTIMEOUT:
    case QOP_RECV:
    case QOP_SEND:
    case QOP_SPLICE_IN:
    case QOP_SPLICE_OUT:
        qmgr_conn_cqe(q, (struct qconn *)(uintptr_t)v, op, cqe->res);
        break;
    case QOP_DNS:
        qmgr_dns_cqe(q, v, cqe->res);
        break;
    case QOP_SINK_POLL:
        if (q->sinks != NULL)
            sink_worker_poll_done(q->sinks, (uint32_t)v, cqe->res);
        break;
    case QOP_WAKE:
        sched_worker_wake_reset(q->sched);
        if (!(cqe->flags & IORING_CQE_F_MORE))
            q->wake_armed = false;
        break;
    case QOP_FSYNC:
        q->fsync_inflight = false;
#ifdef SLUICE_TEST_HOOKS
        if (qmgr_plain_fsync_on()) {
            spool_writer_sync_done(q->w, qmgr_plain_fsync_res);
            break;
        }
#endif
        spool_writer_sync_done(q->w, cqe->res);
        break;
    default:
        break;
    }
}

static void qmgr_arm_wake(struct qmgr *q)
{
    if (q->wake_armed)
        return;
    struct io_uring_sqe *sqe = qmgr_sqe(q);
    io_uring_prep_poll_multishot(sqe, sched_worker_wake_fd(q->sched), POLLIN);
    io_uring_sqe_set_data64(sqe, QOP_WAKE);
    q->wake_armed = true;
}

static void qmgr_wait(struct qmgr *q)
{
    int rc;
    if (sched_worker_has_work(q->sched) || !sched_worker_park_begin(q->sched)) {
        rc = io_uring_submit_and_get_events(&q->ring);
    } else {
        uint64_t wait = QMGR_TICK_MS;
        if (q->sinks) {
            uint64_t dl = sink_worker_next_deadline(q->sinks, sink_now_ms());
            if (dl < wait)
                wait = dl;
        }
        wait = dns_timeout_ms(q->dns, wait);
        wait = qmgr_retry_wait(q, wait);
        struct __kernel_timespec ts = {.tv_sec = (long long)(wait / 1000),
                                       .tv_nsec = (long long)(wait % 1000) * 1000000};
        struct io_uring_cqe *cqe;
        rc = io_uring_submit_and_wait_timeout(&q->ring, &cqe, 1, &ts, NULL);
        sched_worker_park_end_nofd(q->sched);
    }
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME)
        log_panic("qmgr: io_uring wait: %s", strerror(-rc));
}

static void qmgr_end_turn(struct qmgr *q)
{
    if (!q->fsync_inflight) {
        int fd = spool_writer_sync_fd(q->w);
        if (fd >= 0) {
            struct io_uring_sqe *sqe = qmgr_sqe(q);
#ifdef SLUICE_TEST_HOOKS
            if (qmgr_plain_fsync_on()) {
                /* as in core/smtpd/worker.c: a sync the shim can see */
                qmgr_plain_fsync_res = fdatasync(fd) < 0 ? -errno : 0;
                io_uring_prep_nop(sqe);
            } else
#endif
                io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
            io_uring_sqe_set_data64(sqe, QOP_FSYNC);
            q->fsync_inflight = true;
        }
    }
}

static int qmgr_setup(struct qmgr *q)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(QMGR_RING_ENTRIES, &q->ring, &p);
    if (rc < 0) {
        snprintf(q->start_msg, sizeof(q->start_msg), "queue manager: io_uring: %s", strerror(-rc));
        return rc;
    }
    q->ring_ok = true;
    q->sched = sched_pool_worker(q->pool, q->sched_index);
    sched_worker_attach(q->sched);
    if (q->engine) {
        q->sinks = sink_worker_create(q->engine, q->pool, q->sched_index);
        const struct sink_io io = {qmgr_sink_poll, qmgr_sink_poll_cancel, q};
        if (q->sinks == NULL ||
            sink_worker_set_io(q->sinks, &io, (const char *const *)q->cfg->dns_servers,
                               q->cfg->ndns_servers) < 0) {
            snprintf(q->start_msg, sizeof(q->start_msg), "queue manager: out of memory");
            return -ENOMEM;
        }
    }
    rc = spool_writer_create(q->sp, q->writer_id, &q->w);
    if (rc == -ENOSPC) {
        /* full before any reserve was made (a spool that had one starts in
         * read-and-deliver mode): no room for the segment the records of
         * deliveries need, so nothing could be delivered without going
         * out again after a restart */
        snprintf(q->start_msg, sizeof(q->start_msg),
                 "queue manager: spool %.200s: file system full before a reserve was ever "
                 "made there: no room for a segment of delivery records; free some space "
                 "(the reserve wants up to %u KiB) and start again",
                 spool_dir(q->sp), SPOOL_RESERVE_DEFAULT >> 10);
        return rc;
    }
    if (rc < 0) {
        snprintf(q->start_msg, sizeof(q->start_msg), "queue manager: spool writer: %s",
                 strerror(-rc));
        return rc;
    }
    char err[256];
    const char *const *srv = (const char *const *)q->cfg->dns_servers;
    /* 2 s a try, 2 tries (c-ares doubles the timeout each round: about 6 s
     * before a lookup is a temporary failure) */
    q->dns = dns_create(srv, q->cfg->ndns_servers, 2000, 2, qmgr_dns_sock, q, err, sizeof(err));
    if (q->dns == NULL) {
        snprintf(q->start_msg, sizeof(q->start_msg), "queue manager: DNS: %.200s", err);
        return -EINVAL;
    }
    struct tls_opts to;
    if (tls_cfg_opts(q->cfg, &to, err, sizeof(err)) < 0)
        memset(&to, 0, sizeof(to));
    q->tlsc = tls_client_create(&to, err, sizeof(err));
    if (q->tlsc == NULL)
        log_msg(LOG_WARN, "queue manager: no outbound TLS: %s", err);
    rc = qmgr_local_start(q);
    if (rc < 0) {
        snprintf(q->start_msg, sizeof(q->start_msg), "queue manager: local delivery thread: %s",
                 strerror(-rc));
        return rc;
    }
    for (unsigned i = 0; i < QMGR_DNS_SLOTS; i++)
        qmgr_dns_arm(q, i);
    qmgr_arm_wake(q);
    return 0;
}

/* The group commit's fdatasync of the last turn.  qmgr_end_turn() only
 * prepares its SQE: the next wait submits it.  When the stop came in that
 * very turn, nothing has submitted it yet, and waiting for its completion
 * without submitting (io_uring_wait_cqe) waits forever -- the stop that
 * never ended.  So: submit and wait, each wait bounded, the whole bounded
 * (QMGR_STOP_SYNC_MS); past the bound the writer's destroy syncs. */
static void qmgr_teardown_fsync(struct qmgr *q)
{
    uint64_t until = clock_mono_ms() + QMGR_STOP_SYNC_MS;
    while (q->fsync_inflight) {
        struct __kernel_timespec ts = {.tv_sec = 1, .tv_nsec = 0};
        struct io_uring_cqe *cqe;
        int rc = io_uring_submit_and_wait_timeout(&q->ring, &cqe, 1, &ts, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            log_msg(LOG_ERROR, "qmgr: stop: waiting for the last sync: %s", strerror(-rc));
            return;
        }
        unsigned head, n = 0;
        io_uring_for_each_cqe(&q->ring, head, cqe)
        {
            qmgr_cqe(q, cqe);
            n++;
        }
        io_uring_cq_advance(&q->ring, n);
        if (q->fsync_inflight && clock_mono_ms() >= until) {
            log_msg(LOG_ERROR, "qmgr: stop: the last sync did not complete in %d ms",
                    QMGR_STOP_SYNC_MS);
            return;
        }
    }
}

static void qmgr_teardown(struct qmgr *q)
{
    qmgr_local_stop(q);
    qmgr_conn_destroy_all(q);
    qmgr_sinks_stop(q);
    if (q->dns) {
        dns_destroy(q->dns);
        q->dns = NULL;
    }
    while (q->all)
        qmgr_msg_free(q, q->all);
    qmgr_dest_destroy_all(q);
    if (q->w) {
        qmgr_teardown_fsync(q);
        spool_writer_destroy(q->w); /* syncs what is left */
        q->w = NULL;
    }
    if (q->sinks) {
        sink_worker_destroy(q->sinks);
        q->sinks = NULL;
    }
    if (q->tlsc) {
        tls_client_destroy(q->tlsc);
        q->tlsc = NULL;
    }
    if (q->sched) {
        sched_worker_detach(q->sched);
        q->sched = NULL;
    }
    if (q->ring_ok)
        io_uring_queue_exit(&q->ring);
    q->ring_ok = false;
}

/* Sparse sealed segments: their live messages move into this writer's
 * segment so the old file can go.  At rest, every 5 s and 8 MiB at a
 * time; when the spool holds more than twice its live octets (plus
 * slack: spool_compact_behind), every 100 ms and 32 MiB at a time, for
 * as long as something is worth compacting, so space under churn stays
 * bounded instead of growing at one segment per 5 s.  Never while the
 * spool is full: its copies would eat the reserve kept for the records
 * that say mail was delivered (docs/spool-format.md, Full disk). */
static void qmgr_compact(struct qmgr *q, uint64_t now)
{
    uint64_t every = q->compact_behind ? 100 : 5000;
    if (now - q->last_compact < every || spool_full(q->sp))
        return; /* full: the reserve is for this writer's REMOVE and STATE records */
    q->last_compact = now;
    q->compact_behind = spool_compact_behind(q->sp);
    int64_t moved = spool_writer_compact(q->w, q->compact_behind ? 32u << 20 : 8u << 20);
    if (moved > 0)
        log_msg(LOG_DEBUG, "qmgr: compaction moved %lld octets", (long long)moved);
    else if (moved < 0)
        log_msg(LOG_WARN, "qmgr: compaction: %s", strerror((int)-moved));
    if (moved <= 0)
        q->compact_behind = false; /* nothing worth it now: back to the slow pace */
}

/* A full spool (docs/spool-format.md, Full disk): every 5 s, whether
 * there is room again; then the reserve is whole and mail is accepted. */
static void qmgr_space(struct qmgr *q, uint64_t now)
{
    if (now - q->last_space < 5000 || !spool_full(q->sp))
        return;
    q->last_space = now;
    int rc = spool_space_check(q->sp);
    if (rc < 0)
        log_msg(LOG_WARN, "qmgr: spool space check: %s", strerror(-rc));
}

static void *qmgr_main(void *arg)
{
    struct qmgr *q = arg;
    log_set_thread_tag("qmgr");
    int rc = qmgr_setup(q);
    pthread_mutex_lock(&q->start_lock);
    q->start_err = rc;
    q->start_done = true;
    pthread_cond_broadcast(&q->start_cond);
    pthread_mutex_unlock(&q->start_lock);
    if (rc < 0) {
        qmgr_teardown(q);
        return NULL;
    }
    for (size_t i = 0; i < q->nearly; i++)
        qmgr_msg_add(q, q->early[i]);
    free(q->early);
    q->early = NULL;
    q->nearly = q->capearly = 0;

    while (!atomic_load_explicit(&q->stop, memory_order_acquire)) {
        qmgr_wait(q);
        unsigned head, n = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&q->ring, head, cqe)
        {
            qmgr_cqe(q, cqe);
            n++;
        }
        io_uring_cq_advance(&q->ring, n);
        sched_worker_run_budget(q->sched, QMGR_TASK_BUDGET);
        if (q->sinks)
            sink_worker_expire(q->sinks, sink_now_ms());
        dns_process(q->dns, -1, -1);
        uint64_t now = clock_mono_ms();
        qmgr_conn_tick(q, now);
        qmgr_retry_due(q);
        if (now - q->last_sweep >= 60 * 1000) {
            q->last_sweep = now;
            qmgr_sweep(q);
        }
        qmgr_compact(q, now);
        qmgr_space(q, now);
        qmgr_dest_run(q);
        qmgr_arm_wake(q);
        qmgr_end_turn(q);
    }
    qmgr_teardown(q);
    return NULL;
}

/* ---- the main thread's side ---- */

struct qmgr *qmgr_create(const struct cfg *cfg, struct sink_engine *engine, struct sched_pool *pool,
                         unsigned sched_index, char *err, size_t errlen)
{
    struct qmgr *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        snprintf(err, errlen, "queue manager: out of memory");
        return NULL;
    }
    q->cfg = cfg;
    q->engine = engine;
    q->pool = pool;
    q->sched_index = sched_index;
    q->routes = route_table_create(cfg, err, errlen);
    if (q->routes == NULL) {
        free(q);
        return NULL;
    }
    for (unsigned i = 0; i < QMGR_DNS_SLOTS; i++)
        q->dnsfd[i].fd = -1;
    pthread_mutex_init(&q->start_lock, NULL);
    pthread_cond_init(&q->start_cond, NULL);
    q->last_sweep = clock_mono_ms();
    return q;
}

int qmgr_start(struct qmgr *q, struct spool *sp, unsigned writer_id, char *err, size_t errlen)
{
    q->sp = sp;
    q->writer_id = writer_id;
    int rc = -pthread_create(&q->thread, NULL, qmgr_main, q);
    if (rc < 0) {
        snprintf(err, errlen, "queue manager: thread: %s", strerror(-rc));
        return rc;
    }
    q->started = true;
    pthread_mutex_lock(&q->start_lock);
    while (!q->start_done)
        pthread_cond_wait(&q->start_cond, &q->start_lock);
    rc = q->start_err;
    pthread_mutex_unlock(&q->start_lock);
    if (rc < 0) {
        snprintf(err, errlen, "%s", q->start_msg);
        pthread_join(q->thread, NULL);
        q->started = false;
    }
    return rc;
}

void qmgr_stop(struct qmgr *q)
{
    if (!q->started)
        return;
    atomic_store_explicit(&q->stop, true, memory_order_release);
    /* wake it: an empty task through its inbox */
    struct sched_task *t = malloc(sizeof(*t));
    if (t) {
        t->fn = (void (*)(struct sched_task *))free;
        t->next = NULL;
        sched_post(q->pool, q->sched_index, t);
    }
    pthread_join(q->thread, NULL);
    q->started = false;
}

void qmgr_destroy(struct qmgr *q)
{
    if (q == NULL)
        return;
    qmgr_stop(q);
    for (size_t i = 0; i < q->nearly; i++)
        spool_msg_free(q->early[i]);
    free(q->early);
    route_table_destroy(q->routes);
    free(q->heap);
    free(q->dtab);
    pthread_mutex_destroy(&q->start_lock);
    pthread_cond_destroy(&q->start_cond);
    free(q);
}

void qmgr_get_stats(const struct qmgr *q, struct qmgr_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->queued = atomic_load_explicit(&q->st_queued, memory_order_relaxed);
    st->active = atomic_load_explicit(&q->st_active, memory_order_relaxed);
    st->deferred = atomic_load_explicit(&q->st_deferred, memory_order_relaxed);
    st->held = atomic_load_explicit(&q->st_held, memory_order_relaxed);
    st->delivered = atomic_load_explicit(&q->st_delivered, memory_order_relaxed);
    st->failed = atomic_load_explicit(&q->st_failed, memory_order_relaxed);
    st->deferrals = atomic_load_explicit(&q->st_deferrals, memory_order_relaxed);
    st->bounces = atomic_load_explicit(&q->st_bounces, memory_order_relaxed);
    st->connections = atomic_load_explicit(&q->st_conns, memory_order_relaxed);
    st->reused = atomic_load_explicit(&q->st_reused, memory_order_relaxed);
    st->spliced = atomic_load_explicit(&q->st_spliced, memory_order_relaxed);
}
