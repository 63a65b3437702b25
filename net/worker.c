/*
 * NAME
 *	worker - one thread, one ring: the loop that drives connections
 * DESCRIPTION
 *	A loop turn: submit and wait for at least one completion, reap every
 *	completion ready (one switch on the op packed in user_data; the upper
 *	layer's own operations go to hooks->user_done), run up to a budget of
 *	scheduler tasks, then the end of the turn: hooks->after_tasks, send
 *	what the protocols produced (one send per connection at a time),
 *	re-arm receives that ran out of buffers, hooks->turn_end (where
 *	core/smtpd/worker.c starts its group commit), publish returned
 *	buffers and the counters.  Only this thread submits to its ring
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

#include "core/base/clock.h"
#include "core/base/log.h"
#include "net/net_int.h"

/* Owner.  Relaxed: independent counters read by net_server_stats, nothing
 * published through them; this thread is the only writer. */
static void net_live_set(_Atomic uint64_t *v, uint64_t x)
{
    atomic_store_explicit(v, x, memory_order_relaxed);
}

/* Owner, at the end of a loop turn: the counters for other threads. */
static void net_worker_publish(struct net_worker *w)
{
    net_live_set(&w->live.accepted, w->accepted);
    net_live_set(&w->live.open, w->active);
    net_live_set(&w->live.tasks, w->tasks_run);
    net_live_set(&w->live.refused_busy, w->refused_busy);
    net_live_set(&w->live.refused_per_ip, w->refused_per_ip);
    if (w->srv->hooks->publish)
        w->srv->hooks->publish(w->ws);
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
        clock_coarse_ms() + atomic_load_explicit(&w->srv->stop_grace_ms, memory_order_relaxed);
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
        net_conn_tick(w, &w->conns[i], clock_coarse_ms());
}

static void net_worker_on_accept(struct net_worker *w, struct io_uring_cqe *cqe)
{
    uint32_t i = net_ud_idx(cqe->user_data);
    if (!(cqe->flags & IORING_CQE_F_MORE))
        w->accept_armed[i] = false;
    if (cqe->res >= 0) {
        net_conn_accepted(w, cqe->res, i);
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
    uint64_t now = clock_coarse_ms();
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
    case NET_OP_USER:
        w->srv->hooks->user_done(w->ws, (uint8_t)net_ud_gen(ud), net_ud_idx(ud), cqe->res);
        break;
    case NET_OP_TICK:
        net_worker_on_tick(w);
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

static void net_worker_end_turn(struct net_worker *w)
{
    if (w->srv->hooks->after_tasks)
        w->srv->hooks->after_tasks(w->ws);
    /* output first: completions above (a group commit) made some of it */
    while (w->dirty) {
        struct net_conn *c = w->dirty;
        w->dirty = c->next_dirty;
        c->dirty = false;
        net_conn_flush(w, c);
    }
    w->srv->hooks->turn_end(w->ws);
    net_bufring_flush(w);
}

static bool net_worker_done(struct net_worker *w)
{
    if (!w->stopping || w->active > 0 || w->srv->hooks->busy(w->ws))
        return false;
    for (size_t i = 0; i < w->srv->nlisten; i++)
        if (w->accept_armed[i])
            return false;
    return true;
}

static int net_worker_setup(struct net_worker *w)
{
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
    w->sched = sched_pool_worker(w->srv->pool, w->id);
    sched_worker_attach(w->sched);
    w->nconns_cap = w->srv->set.max_connections + NET_CONN_SPARE;
    w->conns = calloc(w->nconns_cap, sizeof(*w->conns));
    if (w->conns == NULL) {
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
    rc = w->srv->hooks->start(w->srv->hooks_arg, w, &w->ws, w->start_msg, sizeof(w->start_msg));
    if (rc < 0)
        return rc;
    w->ws_ok = true;
    for (size_t i = 0; i < w->srv->nlisten; i++)
        net_worker_arm_accept(w, i);
    net_worker_arm_wake(w);
    net_worker_arm_sched(w);
    net_worker_arm_tick(w);
    return 0;
}

static void net_worker_teardown(struct net_worker *w)
{
    if (w->conns) /* every protocol object goes before the worker's state */
        for (uint32_t i = 0; i < w->nconns_cap; i++)
            net_conn_drop_proto(&w->conns[i]);
    if (w->ws_ok) {
        w->srv->hooks->stop(w->ws);
        w->ws_ok = false;
        w->ws = NULL;
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
 * task posted by another thread), or the upper layer's next deadline
 * (hooks->next_deadline: the earliest sink deadline). */
static void net_worker_wait(struct net_worker *w)
{
    int rc;
    if (sched_worker_has_work(w->sched) || !sched_worker_park_begin(w->sched)) {
        rc = io_uring_submit_and_get_events(&w->ring);
    } else {
        uint64_t dl =
            w->srv->hooks->next_deadline ? w->srv->hooks->next_deadline(w->ws) : UINT64_MAX;
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
        net_worker_end_turn(w);
        net_worker_publish(w);
        if (net_worker_done(w))
            break;
    }
    net_worker_teardown(w);
    return NULL;
}

/* ---- for the protocol and the worker hooks ---- */

unsigned net_worker_id(const struct net_worker *w)
{
    return w->id;
}

struct sched_worker *net_worker_sched(struct net_worker *w)
{
    return w->sched;
}

bool net_worker_stopping(const struct net_worker *w)
{
    return w->stopping;
}

struct io_uring_sqe *net_worker_sqe(struct net_worker *w)
{
    return net_sqe(w);
}

void net_sqe_set_user(struct io_uring_sqe *sqe, uint8_t tag, uint32_t arg)
{
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_USER, tag, arg));
}

void net_sqe_user_data(struct io_uring_sqe *sqe, uint8_t tag, uint32_t arg)
{
    sqe->addr = net_ud(NET_OP_USER, tag, arg);
}
