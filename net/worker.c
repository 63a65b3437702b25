/*
 * NAME
 *	worker - one thread, one ring: the loop that drives connections
 * DESCRIPTION
 *	A loop turn: submit and wait for at least one completion, reap every
 *	completion ready (one switch on the op packed in user_data), then the
 *	end of the turn: send what the sessions produced (one send per
 *	connection at a time), start the group commit of the records appended
 *	during the turn (one IORING_OP_FSYNC with DATASYNC; its completion
 *	releases the 250 replies), re-arm receives that ran out of buffers,
 *	publish returned buffers.  Only this thread submits to its ring
 *	(SINGLE_ISSUER | DEFER_TASKRUN).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/base/log.h"
#include "net/net_int.h"

/* Fault injection for the durability tests (docs/network.md): with
 * SLUICE_FAULT_FSYNC_AFTER=K in the environment, every group commit after
 * the first K is reported as failed with EIO, as a dying disk would. */
static bool net_fault_fsync(struct net_server *srv)
{
    if (srv->fault_fsync_after < 0)
        return false;
    /* relaxed: a counter; which worker's sync is the K+1-th does not matter */
    return atomic_fetch_add_explicit(&srv->fsyncs_done, 1, memory_order_relaxed) >=
           (uint64_t)srv->fault_fsync_after;
}

/* fdatasync latency buckets (net.h): 50 us to 2.5 s */
const uint64_t net_fsync_bounds_ns[NET_FSYNC_BOUNDS] = {
    50000,    100000,    250000,    500000,    1000000,   2500000,   5000000,    10000000,
    25000000, 50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000,
};

static uint64_t net_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Owner.  Relaxed throughout: independent counters read by the metrics
 * endpoint (net_server_live_stats), nothing published through them; a
 * plain load and store suffice as this thread is the only writer. */
static void net_live_set(_Atomic uint64_t *v, uint64_t x)
{
    atomic_store_explicit(v, x, memory_order_relaxed);
}

static void net_live_add(_Atomic uint64_t *v, uint64_t x)
{
    net_live_set(v, atomic_load_explicit(v, memory_order_relaxed) + x);
}

static void net_worker_fsync_timed(struct net_worker *w)
{
    uint64_t ns = net_now_ns() - w->fsync_start_ns;
    unsigned b = 0;
    while (b < NET_FSYNC_BOUNDS && ns > net_fsync_bounds_ns[b])
        b++;
    net_live_add(&w->live.fsync_buckets[b], 1);
    net_live_add(&w->live.fsync_ns_sum, ns);
    net_live_add(&w->live.fsyncs, 1);
}

/* Owner, at the end of a loop turn: the counters for other threads. */
static void net_worker_publish(struct net_worker *w)
{
    const struct smtp_stats *ss = smtp_server_stats(w->smtp);
    struct spool_writer_stats ws;
    spool_writer_stats(w->spool, &ws);
    net_live_set(&w->live.accepted, w->accepted);
    net_live_set(&w->live.open, w->active);
    net_live_set(&w->live.sessions, ss->sessions);
    net_live_set(&w->live.messages, ss->messages);
    net_live_set(&w->live.rejected, ss->rejected);
    net_live_set(&w->live.tempfailed, ss->tempfailed);
    net_live_set(&w->live.discarded, ss->discarded);
    net_live_set(&w->live.quarantined, ss->quarantined);
    net_live_set(&w->live.timeouts, ss->timeouts);
    net_live_set(&w->live.protocol_errors, ss->protocol_errors);
    net_live_set(&w->live.rcpt_rejected, ss->rcpt_rejected);
    net_live_set(&w->live.ended_quit, ss->ended_quit);
    net_live_set(&w->live.ended_dropped, ss->ended_dropped);
    net_live_set(&w->live.ended_error, ss->ended_error);
    net_live_set(&w->live.ended_shutdown, ss->ended_shutdown);
    net_live_set(&w->live.commits, ws.commits);
    net_live_set(&w->live.syncs, ws.syncs);
    net_live_set(&w->live.sync_errors, ws.sync_errors);
    net_live_set(&w->live.tasks, w->tasks_run);
    net_live_set(&w->live.refused_busy, w->refused_busy);
    net_live_set(&w->live.refused_per_ip, w->refused_per_ip);
}

static void net_worker_arm_accept(struct net_worker *w, size_t i)
{
    struct io_uring_sqe *sqe = net_sqe(w);
    io_uring_prep_multishot_accept(sqe, w->listen_fd[i], NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_ACCEPT, 0, (uint32_t)i));
    w->accept_armed[i] = true;
}

static void net_worker_arm_wake(struct net_worker *w)
{
    struct io_uring_sqe *sqe = net_sqe(w);
    io_uring_prep_read(sqe, w->wake_fd, &w->wake_val, sizeof(w->wake_val), 0);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_WAKE, 0, 0));
}

/* The scheduler's wake fd: readable when another thread posted a task
 * (a sink completion) while this worker was parked in the ring's wait. */
static void net_worker_arm_sched(struct net_worker *w)
{
    struct io_uring_sqe *sqe = net_sqe(w);
    io_uring_prep_poll_multishot(sqe, sched_worker_wake_fd(w->sched), POLLIN);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_SCHED, 0, 0));
    w->sched_poll_armed = true;
}

static void net_worker_arm_tick(struct net_worker *w)
{
    struct io_uring_sqe *sqe = net_sqe(w);
    w->tick_ts.tv_sec = 1;
    w->tick_ts.tv_nsec = 0;
    io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_TICK, 0, 0));
}

static void net_worker_begin_stop(struct net_worker *w)
{
    /* relaxed: the grace is ordered by the stop flag's release/acquire */
    uint64_t deadline =
        net_now_ms() + atomic_load_explicit(&w->srv->stop_grace_ms, memory_order_relaxed);
    if (w->stopping) { /* a second stop may only shorten the drain */
        if (deadline < w->stop_deadline_ms)
            w->stop_deadline_ms = deadline;
        return;
    }
    w->stopping = true;
    w->stop_deadline_ms = deadline;
    for (size_t i = 0; i < w->srv->nlisten; i++)
        shutdown(w->listen_fd[i], SHUT_RDWR); /* ends the multishot accept */
    for (uint32_t i = 0; i < w->nconns_cap; i++)
        net_conn_tick(w, &w->conns[i], net_now_ms());
}

static void net_worker_on_accept(struct net_worker *w, struct io_uring_cqe *cqe)
{
    uint32_t i = net_ud_idx(cqe->user_data);
    if (!(cqe->flags & IORING_CQE_F_MORE))
        w->accept_armed[i] = false;
    if (cqe->res >= 0) {
        net_conn_accepted(w, cqe->res, w->srv->listen_kind[i]);
    } else if (!w->stopping && cqe->res != -EINTR && cqe->res != -ECONNABORTED) {
        log_msg(LOG_WARN, "accept on %s: %s", w->srv->listen_text[i], strerror(-cqe->res));
    }
    /* EMFILE and friends: re-armed by the next tick, not in a hot loop */
    if (!w->accept_armed[i] && !w->stopping &&
        (cqe->res >= 0 || cqe->res == -EINTR || cqe->res == -ECONNABORTED))
        net_worker_arm_accept(w, i);
}

static void net_worker_on_tick(struct net_worker *w)
{
    uint64_t now = net_now_ms();
    for (uint32_t i = 0; i < w->nconns_cap; i++)
        net_conn_tick(w, &w->conns[i], now);
    if (!w->stopping) {
        for (size_t i = 0; i < w->srv->nlisten; i++)
            if (!w->accept_armed[i])
                net_worker_arm_accept(w, i);
    } else if (now >= w->stop_deadline_ms) {
        for (uint32_t i = 0; i < w->nconns_cap; i++)
            if (w->conns[i].state == NET_CONN_OPEN || w->conns[i].state == NET_CONN_LINGER)
                net_conn_close_now(w, &w->conns[i]);
    }
    net_worker_arm_tick(w);
}

static void net_worker_dispatch(struct net_worker *w, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    enum net_op op = net_ud_op(ud);
    struct net_conn *c = NULL;
    if (op == NET_OP_RECV || op == NET_OP_SEND) {
        uint32_t idx = net_ud_idx(ud);
        c = idx < w->nconns_cap ? &w->conns[idx] : NULL;
        if (c == NULL || c->gen != net_ud_gen(ud) || c->state == NET_CONN_FREE) {
            if (cqe->flags & IORING_CQE_F_BUFFER) { /* stale: give the buffer back */
                struct mbuf *b = &w->bufs.bufs[cqe->flags >> IORING_CQE_BUFFER_SHIFT];
                w->bufs.free--;
                b->refs = 1;
                mbuf_unref(b);
            }
            return;
        }
    }
    switch (op) {
    case NET_OP_ACCEPT:
        net_worker_on_accept(w, cqe);
        break;
    case NET_OP_RECV:
        net_conn_recv_cqe(w, c, cqe);
        break;
    case NET_OP_SEND:
        net_conn_send_cqe(w, c, cqe->res);
        break;
    case NET_OP_FSYNC: {
        int res = cqe->res;
        w->fsync_inflight = false;
        net_worker_fsync_timed(w);
        if (res == 0 && net_fault_fsync(w->srv))
            res = -EIO;
        if (res < 0)
            log_msg(LOG_ERROR, "spool: fdatasync failed: %s; the batch is refused with 451",
                    strerror(-res));
        spool_writer_sync_done(w->spool, res);
        break;
    }
    case NET_OP_TICK:
        net_worker_on_tick(w);
        break;
    case NET_OP_DELAY:
        if (net_ud_idx(ud) == w->delay_gen) {
            w->delay_armed = false;
            w->delay_done = true;
        }
        break;
    case NET_OP_CANCEL:
        break; /* the recv's own completion (-ECANCELED) does the work */
    case NET_OP_CLOSE:
        if (cqe->res < 0)
            log_msg(LOG_DEBUG, "close: %s", strerror(-cqe->res));
        break;
    case NET_OP_SCHED:
        /* the tasks run after this batch of completions */
        sched_worker_wake_reset(w->sched);
        if (!(cqe->flags & IORING_CQE_F_MORE))
            net_worker_arm_sched(w);
        break;
    case NET_OP_WAKE:
        /* acquire: pairs with the release store in net_server_stop_drain */
        if (atomic_load_explicit(&w->srv->stop, memory_order_acquire))
            net_worker_begin_stop(w);
        net_worker_arm_wake(w); /* a later stop may shorten the drain */
        break;
    default:
        log_panic("net_worker_dispatch: unknown op %d", (int)op);
    }
}

/* Starts the fdatasync for the commits queued so far, unless other
 * sessions on this worker are inside a transaction: then it waits up to commit_delay_us for their
 * commits to join the batch (PostgreSQL's commit_delay with
 * commit_siblings: here, sessions between MAIL and their commit), which is what keeps fdatasync per message low when
 * many sessions send at once.  A full batch does not wait. */
static void net_worker_group_commit(struct net_worker *w)
{
    unsigned delay = w->srv->cfg->commit_delay_us;
    if (delay > 0 && !w->delay_done && !w->stopping && spool_writer_pending(w->spool) < 64 &&
        smtp_server_open_txns(w->smtp) > 0) {
        if (!w->delay_armed) {
            struct io_uring_sqe *sqe = net_sqe(w);
            w->delay_ts.tv_sec = 0;
            w->delay_ts.tv_nsec = (long long)delay * 1000;
            io_uring_prep_timeout(sqe, &w->delay_ts, 0, 0);
            io_uring_sqe_set_data64(sqe, net_ud(NET_OP_DELAY, 0, w->delay_gen));
            w->delay_armed = true;
        }
        return;
    }
    int fd = spool_writer_sync_fd(w->spool);
    if (fd < 0)
        return;
    struct io_uring_sqe *sqe = net_sqe(w);
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_FSYNC, 0, 0));
    w->fsync_inflight = true;
    w->fsync_start_ns = net_now_ns();
    w->delay_done = false;
    if (w->delay_armed) { /* its completion is stale now */
        w->delay_armed = false;
        w->delay_gen++;
    }
}

static void net_worker_end_turn(struct net_worker *w)
{
    /* replies first: group-commit completions above made some of them */
    while (w->dirty) {
        struct net_conn *c = w->dirty;
        w->dirty = c->next_dirty;
        c->dirty = false;
        net_conn_flush(w, c);
    }
    if (!w->fsync_inflight && spool_writer_pending(w->spool) > 0)
        net_worker_group_commit(w);
    net_bufring_flush(w);
}

static bool net_worker_done(struct net_worker *w)
{
    if (!w->stopping || w->active > 0 || w->fsync_inflight || spool_writer_busy(w->spool))
        return false;
    for (size_t i = 0; i < w->srv->nlisten; i++)
        if (w->accept_armed[i])
            return false;
    return true;
}

static int net_worker_setup(struct net_worker *w)
{
    const struct cfg *cfg = w->srv->cfg;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = 16384;
    int rc = io_uring_queue_init_params(1024, &w->ring, &p);
    if (rc < 0) {
        snprintf(w->start_msg, sizeof(w->start_msg), "worker %u: io_uring_queue_init: %s", w->id,
                 strerror(-rc));
        return rc;
    }
    w->ring_ok = true;
    rc = net_bufring_init(w, w->start_msg, sizeof(w->start_msg));
    if (rc < 0)
        return rc;
    rc = spool_writer_create(w->srv->spool, w->id, &w->spool);
    if (rc < 0) {
        snprintf(w->start_msg, sizeof(w->start_msg), "worker %u: spool %s: %s", w->id,
                 spool_dir(w->srv->spool), strerror(-rc));
        return rc;
    }
    w->sched = sched_pool_worker(w->srv->pool, w->id);
    sched_worker_attach(w->sched);
    w->smtp = smtp_server_create(cfg, w->spool, net_conn_kick);
    if (w->srv->engine) {
        w->sinks = sink_worker_create(w->srv->engine, w->srv->pool, w->id);
        if (w->sinks == NULL) {
            snprintf(w->start_msg, sizeof(w->start_msg), "worker %u: out of memory", w->id);
            return -ENOMEM;
        }
        if (w->smtp)
            smtp_server_set_sinks(w->smtp, w->sinks);
    }
    if (w->smtp)
        smtp_server_set_tls(w->smtp, w->srv->tls != NULL);
    w->nconns_cap = cfg->max_connections + NET_CONN_SPARE;
    w->conns = calloc(w->nconns_cap, sizeof(*w->conns));
    if (w->smtp == NULL || w->conns == NULL) {
        snprintf(w->start_msg, sizeof(w->start_msg), "worker %u: out of memory", w->id);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < w->nconns_cap; i++) {
        w->conns[i].idx = i;
        w->conns[i].fd = -1;
        w->conns[i].w = w;
        w->conns[i].next_free = i + 1 < w->nconns_cap ? i + 1 : UINT32_MAX;
    }
    w->free_head = 0;
    for (size_t i = 0; i < w->srv->nlisten; i++)
        net_worker_arm_accept(w, i);
    net_worker_arm_wake(w);
    net_worker_arm_sched(w);
    net_worker_arm_tick(w);
    return 0;
}

static void net_worker_teardown(struct net_worker *w)
{
    if (w->smtp) {
        w->smtp_final = *smtp_server_stats(w->smtp);
        smtp_server_destroy(w->smtp);
        w->smtp = NULL;
    }
    if (w->spool) {
        spool_writer_stats(w->spool, &w->spool_final);
        spool_writer_destroy(w->spool);
        w->spool = NULL;
    }
    if (w->conns)
        for (uint32_t i = 0; i < w->nconns_cap; i++)
            net_tls_free(&w->conns[i]);
    free(w->conns);
    w->conns = NULL;
    if (w->tls_spare) {
        mbuf_unref(w->tls_spare);
        w->tls_spare = NULL;
    }
    if (w->sinks) {
        sink_worker_destroy(w->sinks);
        w->sinks = NULL;
    }
    if (w->sched) {
        /* tasks still queued (late sink completions) are dropped with the pool */
        sched_worker_detach(w->sched);
        w->sched = NULL;
    }
    net_bufring_fini(w);
    if (w->ring_ok) {
        io_uring_submit(&w->ring); /* the last connections' closes */
        io_uring_queue_exit(&w->ring);
    }
    w->ring_ok = false;
}

/* Submits and waits for completions.  With tasks runnable it only reaps
 * (DEFER_TASKRUN needs GETEVENTS to post completions); otherwise it parks
 * in the ring's wait, woken by a completion, the scheduler's eventfd (a
 * task posted by another thread), or the earliest sink deadline. */
static void net_worker_wait(struct net_worker *w)
{
    int rc;
    if (sched_worker_has_work(w->sched) || !sched_worker_park_begin(w->sched)) {
        rc = io_uring_submit_and_get_events(&w->ring);
    } else {
        uint64_t dl = w->sinks ? sink_worker_next_deadline(w->sinks, sink_now_ms()) : UINT64_MAX;
        struct io_uring_cqe *cqe;
        if (dl == UINT64_MAX) {
            rc = io_uring_submit_and_wait(&w->ring, 1);
        } else {
            struct __kernel_timespec ts = {.tv_sec = (long long)(dl / 1000),
                                           .tv_nsec = (long long)(dl % 1000) * 1000000};
            rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        }
        sched_worker_park_end_nofd(w->sched); /* the fd: reset on its poll CQE */
    }
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME)
        log_panic("worker %u: io_uring wait: %s", w->id, strerror(-rc));
}

void *net_worker_main(void *arg)
{
    struct net_worker *w = arg;
    char tag[16];
    snprintf(tag, sizeof(tag), "w%u", w->id);
    log_set_thread_tag(tag);

    int rc = net_worker_setup(w);
    pthread_mutex_lock(&w->srv->start_lock);
    w->start_err = rc;
    w->srv->started++;
    pthread_cond_broadcast(&w->srv->start_cond);
    pthread_mutex_unlock(&w->srv->start_lock);
    if (rc < 0) {
        net_worker_teardown(w);
        return NULL;
    }

    for (;;) {
        net_worker_wait(w);
        unsigned head, n = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            net_worker_dispatch(w, cqe);
            n++;
        }
        io_uring_cq_advance(&w->ring, n);
        /* fairness: completions first, then at most a budget of tasks, so a
         * busy sink chain cannot starve the sockets this worker owns */
        w->tasks_run += sched_worker_run_budget(w->sched, NET_TASK_BUDGET);
        if (w->sinks)
            sink_worker_expire(w->sinks, sink_now_ms());
        net_worker_end_turn(w);
        net_worker_publish(w);
        if (net_worker_done(w))
            break;
    }
    net_worker_teardown(w);
    return NULL;
}
