/*
 * NAME
 *	worker - the SMTP server plugged into net: one composition per worker
 * DESCRIPTION
 *	net/ runs the ring loop and knows no SMTP; this file gives it the two
 *	tables of net/net.h.  The protocol table (smtpd_proto) maps each
 *	connection event to the SMTP session's call (open: a session on the
 *	worker's smtp_server; input, eof, output, ticks, STARTTLS ...).  The
 *	worker hooks (smtpd_hooks) build what a worker owns besides its
 *	connections when its ring exists (spool writer, smtp_server, sink
 *	worker), and drive the group commit:
 *
 *	The group commit adapts to the disk: at most one fdatasync is in
 *	flight per writer, and every commit that arrives while it runs rides
 *	the next one, which starts as soon as the one in flight completes.
 *	So a slow disk gets large batches and a fast one small, quick ones,
 *	with no fixed wait.  At the end of a loop turn (hooks->turn_end,
 *	after the sessions' output was queued), if no sync is in flight and
 *	commits are pending, the records get one IORING_OP_FSYNC with
 *	DATASYNC on the worker's own ring (a user op of net: its completion
 *	comes back to smtpd_worker_user_done).
 *
 *	One bounded, optional wait remains, because it was measured to help
 *	(bench/results/ingest.md, 2026-12-08: 40% fewer fdatasyncs per
 *	message at 32 sessions, throughput within noise): when other
 *	sessions on this worker are inside a transaction (between MAIL and
 *	their commit), the sync waits for their commits (PostgreSQL's
 *	commit_delay with commit_siblings), but no longer than
 *	commit_delay_us and no longer than the recent fdatasync latency
 *	(SMTPD_LAT_SHIFT: a moving average), so a fast disk is never kept
 *	idle for longer than one of its own syncs takes, and the wait ends at
 *	the first loop turn with no sibling left mid-transaction.  A full
 *	batch (64) does not wait; commit_delay_us = 0 turns the wait off.
 *	The completion releases the 250 replies (spool_writer_sync_done): no
 *	250 before the sync that covers its message; a failed sync refuses
 *	the batch with 451, never retried.  A stopping worker stays while a
 *	sync is in flight or the writer is busy (hooks->busy).
 *
 *	A worker that starts on a full spool (its writer cannot make a
 *	segment: ENOSPC) runs without a writer; its sessions answer MAIL with
 *	452 4.3.1, like every session while spool_full(), and the writer is
 *	made after a loop turn once the spool has space again.
 *
 *	Counters: the SMTP and spool counters and the fsync latency histogram
 *	are published here (hooks->publish), the network ones by net; the two
 *	halves meet in smtpd_live_stats().
 */
#include <errno.h>
#include <poll.h>
#include <liburing.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/base/clock.h"
#include "core/base/log.h"
#include "core/cfg/cfg.h"
#include "core/smtpd/smtp.h"
#include "core/smtpd/worker.h"
#include "net/net.h"
#include "sinks/engine.h"
#include "storage/spool.h"

#define SMTPD_BATCH_FULL 64                      /* pending commits that do not wait for siblings */
#define SMTPD_LAT_SHIFT 3 /* fdatasync latency average: each sync weighs 1/8 */
#define SMTPD_LAT_MIN_NS 20000ull /* a sibling wait shorter than this is not armed */
#define SMTPD_SPOOL_RETRY_NS (5ull * 1000000000) /* a writer that failed to start */

/* Tags of the operations this module puts on a worker's ring. */
enum smtpd_op {
    SMTPD_OP_FSYNC = 1, /* the group commit's fdatasync */
    SMTPD_OP_DELAY,     /* the commit-delay timer; arg = its generation */
    SMTPD_OP_SINK_POLL, /* a sink service's poll; arg = its token */
    SMTPD_OP_SINK_CANCEL, /* the cancel of one (its own completion: ignored) */
};

struct smtpd;

struct smtpd_worker {
    struct smtpd *d;
    unsigned id;
    struct net_worker *net;     /* the ring, the listeners, the connections */
    struct sched_worker *sched; /* driven by net's loop; borrowed from the pool */
    struct spool_writer *spool; /* this worker's segment */
    struct sink_worker *sinks;  /* NULL: no sink engine */
    struct smtp_server *smtp;   /* the sessions of this worker's connections */
    /* the group commit */
    bool fsync_inflight;
    bool delay_armed;   /* a commit-delay timer is pending */
    bool delay_done;    /* it fired: sync the batch now */
    uint32_t delay_gen; /* a timer of an older generation is stale */
    struct __kernel_timespec delay_ts;
    uint64_t fsync_start_ns; /* the fdatasync in flight was submitted then */
    uint64_t fsync_avg_ns;   /* moving average of the fdatasync latency, 0: none yet */
    uint64_t spool_retry_ns; /* no writer (spool full): not before then */
#ifdef SLUICE_TEST_HOOKS
    int plain_fsync_res; /* the plain fdatasync's result, reported by its NOP */
#endif
    /* final counters, taken when the worker stops */
    struct smtp_stats smtp_final;
    struct spool_writer_stats spool_final;
    /* Published for smtpd_live_stats(): written by this worker only
     * (relaxed: each is an independent reading, nothing is published
     * through them), read by any thread. */
    struct {
        _Atomic uint64_t sessions, messages, rejected, tempfailed, discarded, quarantined, timeouts,
            protocol_errors, rcpt_rejected, commits, syncs, sync_errors, fsyncs, fsync_ns_sum,
            ended_quit, ended_dropped, ended_error, ended_shutdown;
        _Atomic uint64_t fsync_buckets[SMTPD_FSYNC_BOUNDS + 1];
    } live;
};

struct smtpd {
    const struct cfg *cfg;
    struct spool *spool;
    struct sink_engine *engine; /* NULL: no sinks */
    struct sched_pool *pool;
    struct tls_server *tls; /* NULL: no STARTTLS, no listen_smtps */
    struct net_server *net;
    unsigned nworkers;
    struct smtpd_worker *workers;
    char overload[160]; /* net's answer when no connection slot is left */
#ifdef SLUICE_TEST_HOOKS
    long long fault_fsync_after; /* -1: off (SLUICE_FAULT_FSYNC_AFTER) */
    atomic_uint_least64_t fsyncs_done;
    bool plain_fsync; /* SLUICE_FAULT_PLAIN_FSYNC: fdatasync(2), not the ring op */
#endif
};

/* fdatasync latency buckets (worker.h): 50 us to 2.5 s */
const uint64_t smtpd_fsync_bounds_ns[SMTPD_FSYNC_BOUNDS] = {
    50000,    100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,
    25000000, 50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000,
};

#ifdef SLUICE_TEST_HOOKS
/* Fault injection for the durability tests (docs/network.md): with
 * SLUICE_FAULT_FSYNC_AFTER=K in the environment, every group commit after
 * the first K is reported as failed with EIO, as a dying disk would. */
static bool smtpd_fault_fsync(struct smtpd *d)
{
    if (d->fault_fsync_after < 0)
        return false;
    /* relaxed: a counter; which worker's sync is the K+1-th does not matter */
    return atomic_fetch_add_explicit(&d->fsyncs_done, 1, memory_order_relaxed) >=
           (uint64_t)d->fault_fsync_after;
}
#endif

/* ---- the protocol table: an SMTP session per connection ---- */

static void *smtpd_proto_open(void *ws, struct net_conn *c, const struct sockaddr *peer,
                              socklen_t peerlen, int kind)
{
    struct smtpd_worker *sw = ws;
    struct smtp_session *s = smtp_session_create(sw->smtp, c, peer, peerlen);
    if (s != NULL)
        smtp_session_set_listener(s, (enum smtp_listener)kind);
    return s;
}

static void smtpd_proto_start(void *pc, enum net_admit admit)
{
    smtp_session_start(pc, admit == NET_ADMIT_BUSY     ? SMTP_START_FULL
                           : admit == NET_ADMIT_PER_IP ? SMTP_START_PER_IP
                                                       : SMTP_START_OK);
}

static void smtpd_proto_input(void *pc, struct mbuf *b, uint32_t off, uint32_t len)
{
    smtp_session_input(pc, b, off, len);
}

static void smtpd_proto_eof(void *pc)
{
    smtp_session_eof(pc);
}

static bool smtpd_proto_out_take(void *pc, const char **p, size_t *len)
{
    return smtp_session_out_take(pc, p, len);
}

static void smtpd_proto_out_done(void *pc)
{
    smtp_session_out_done(pc);
}

static bool smtpd_proto_closing(const void *pc)
{
    return smtp_session_closing(pc);
}

static size_t smtpd_proto_backlog(const void *pc)
{
    return smtp_session_backlog(pc);
}

static void smtpd_proto_tick(void *pc, uint64_t now_ms)
{
    smtp_session_tick(pc, now_ms);
}

static void smtpd_proto_shutdown(void *pc)
{
    smtp_session_shutdown(pc);
}

static void smtpd_proto_release_buffers(void *pc)
{
    smtp_session_release_buffers(pc);
}

static bool smtpd_proto_starttls_wanted(const void *pc)
{
    return smtp_session_starttls_wanted(pc);
}

static void smtpd_proto_tls_started(void *pc, const char *desc)
{
    smtp_session_tls_started(pc, desc);
}

static void smtpd_proto_destroy(void *pc)
{
    smtp_session_destroy(pc);
}

static const struct net_proto smtpd_proto = {
    .open = smtpd_proto_open,
    .start = smtpd_proto_start,
    .input = smtpd_proto_input,
    .eof = smtpd_proto_eof,
    .out_take = smtpd_proto_out_take,
    .out_done = smtpd_proto_out_done,
    .closing = smtpd_proto_closing,
    .backlog = smtpd_proto_backlog,
    .tick = smtpd_proto_tick,
    .shutdown = smtpd_proto_shutdown,
    .release_buffers = smtpd_proto_release_buffers,
    .starttls_wanted = smtpd_proto_starttls_wanted,
    .tls_started = smtpd_proto_tls_started,
    .destroy = smtpd_proto_destroy,
};

/* ---- the worker hooks ---- */

static void smtpd_worker_stop(void *ws)
{
    struct smtpd_worker *sw = ws;
    if (sw->smtp) {
        sw->smtp_final = *smtp_server_stats(sw->smtp);
        smtp_server_destroy(sw->smtp);
        sw->smtp = NULL;
    }
    if (sw->spool) {
        spool_writer_stats(sw->spool, &sw->spool_final);
        spool_writer_destroy(sw->spool);
        sw->spool = NULL;
    }
    if (sw->sinks) { /* after the server: it abandons the submissions still running */
        sink_worker_destroy(sw->sinks);
        sw->sinks = NULL;
    }
}

/* The sink services' polls on this worker's ring (sinks/engine.h: sink_io). */
static int smtpd_sink_poll(void *arg, int fd, unsigned what, uint32_t token)
{
    struct smtpd_worker *sw = arg;
    struct io_uring_sqe *sqe = net_worker_sqe(sw->net);
    unsigned mask = ((what & SINK_FD_READ) ? POLLIN : 0) | ((what & SINK_FD_WRITE) ? POLLOUT : 0);
    io_uring_prep_poll_add(sqe, fd, mask);
    net_sqe_set_user(sqe, SMTPD_OP_SINK_POLL, token);
    return 0;
}

static void smtpd_sink_poll_cancel(void *arg, uint32_t token)
{
    struct smtpd_worker *sw = arg;
    struct io_uring_sqe *sqe = net_worker_sqe(sw->net);
    io_uring_prep_poll_remove(sqe, 0);
    net_sqe_user_data(sqe, SMTPD_OP_SINK_POLL, token);
    net_sqe_set_user(sqe, SMTPD_OP_SINK_CANCEL, 0);
}

static int smtpd_worker_start(void *arg, struct net_worker *nw, void **ws, char *err, size_t errlen)
{
    struct smtpd *d = arg;
    unsigned id = net_worker_id(nw);
    struct smtpd_worker *sw = &d->workers[id];
    sw->d = d;
    sw->id = id;
    sw->net = nw;
    sw->sched = net_worker_sched(nw);
    int rc = spool_writer_create(d->spool, id, &sw->spool);
    if (rc == -ENOSPC) { /* the spool is full: MAIL is refused until it is not */
        sw->spool = NULL;
        log_msg(LOG_WARN, "worker %u: spool %s full: no segment until space comes back", id,
                spool_dir(d->spool));
    } else if (rc < 0) {
        snprintf(err, errlen, "worker %u: spool %s: %s", id, spool_dir(d->spool), strerror(-rc));
        return rc;
    }
    sw->smtp = smtp_server_create(d->cfg, sw->spool, net_conn_kick);
    if (sw->smtp == NULL)
        goto oom;
    if (d->engine) {
        sw->sinks = sink_worker_create(d->engine, d->pool, id);
        if (sw->sinks == NULL)
            goto oom;
        const struct sink_io io = {smtpd_sink_poll, smtpd_sink_poll_cancel, sw};
        if (sink_worker_set_io(sw->sinks, &io, (const char *const *)d->cfg->dns_servers,
                               d->cfg->ndns_servers) < 0)
            goto oom;
        smtp_server_set_sinks(sw->smtp, sw->sinks);
    }
    smtp_server_set_tls(sw->smtp, d->tls != NULL);
    *ws = sw;
    return 0;
oom:
    snprintf(err, errlen, "worker %u: out of memory", id);
    smtpd_worker_stop(sw);
    return -ENOMEM;
}

/* A worker that started on a full spool makes its writer once the spool
 * has space again (spool_space_check, run by the queue manager); a
 * failure other than ENOSPC is retried after SMTPD_SPOOL_RETRY_NS. */
static void smtpd_worker_spool_retry(struct smtpd_worker *sw)
{
    uint64_t now = clock_mono_ns();
    if (spool_full(sw->d->spool) || now < sw->spool_retry_ns)
        return;
    int rc = spool_writer_create(sw->d->spool, sw->id, &sw->spool);
    if (rc < 0) {
        sw->spool = NULL;
        sw->spool_retry_ns = now + SMTPD_SPOOL_RETRY_NS;
        if (rc != -ENOSPC)
            log_msg(LOG_ERROR, "worker %u: spool %s: %s", sw->id, spool_dir(sw->d->spool),
                    strerror(-rc));
        return;
    }
    smtp_server_set_spool(sw->smtp, sw->spool);
    log_msg(LOG_INFO, "worker %u: accepting mail again", sw->id);
}

static void smtpd_worker_after_tasks(void *ws)
{
    struct smtpd_worker *sw = ws;
    if (sw->spool == NULL)
        smtpd_worker_spool_retry(sw);
    if (sw->sinks)
        sink_worker_expire(sw->sinks, sink_now_ms());
}

/* Starts the fdatasync for the commits queued so far, or the commit-delay
 * timer when siblings may join the batch (see DESCRIPTION). */
static void smtpd_group_commit(struct smtpd_worker *sw)
{
    /* the sibling wait: commit_delay_us, but never longer than a sync takes */
    uint64_t delay = (uint64_t)sw->d->cfg->commit_delay_us * 1000;
    if (sw->fsync_avg_ns > 0 && sw->fsync_avg_ns < delay)
        delay = sw->fsync_avg_ns;
    if (delay >= SMTPD_LAT_MIN_NS && !sw->delay_done && !net_worker_stopping(sw->net) &&
        spool_writer_pending(sw->spool) < SMTPD_BATCH_FULL && smtp_server_open_txns(sw->smtp) > 0) {
        if (!sw->delay_armed) {
            struct io_uring_sqe *sqe = net_worker_sqe(sw->net);
            sw->delay_ts.tv_sec = 0;
            sw->delay_ts.tv_nsec = (long long)delay;
            io_uring_prep_timeout(sqe, &sw->delay_ts, 0, 0);
            net_sqe_set_user(sqe, SMTPD_OP_DELAY, sw->delay_gen);
            sw->delay_armed = true;
        }
        return;
    }
    int fd = spool_writer_sync_fd(sw->spool);
    if (fd < 0)
        return;
    struct io_uring_sqe *sqe = net_worker_sqe(sw->net);
#ifdef SLUICE_TEST_HOOKS
    if (sw->d->plain_fsync) {
        /* the power-loss shim (tests/faults/powercut.c) sees no ring op:
         * sync here, and let a NOP complete the group commit as usual */
        sw->plain_fsync_res = fdatasync(fd) < 0 ? -errno : 0;
        io_uring_prep_nop(sqe);
    } else
#endif
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    net_sqe_set_user(sqe, SMTPD_OP_FSYNC, 0);
    sw->fsync_inflight = true;
    sw->fsync_start_ns = clock_mono_ns();
    sw->delay_done = false;
    if (sw->delay_armed) { /* its completion is stale now */
        sw->delay_armed = false;
        sw->delay_gen++;
    }
}

static void smtpd_worker_turn_end(void *ws)
{
    struct smtpd_worker *sw = ws;
    if (!sw->fsync_inflight && sw->spool != NULL && spool_writer_pending(sw->spool) > 0)
        smtpd_group_commit(sw);
}

static bool smtpd_worker_busy(void *ws)
{
    struct smtpd_worker *sw = ws;
    return sw->fsync_inflight || (sw->spool != NULL && spool_writer_busy(sw->spool));
}

static uint64_t smtpd_worker_next_deadline(void *ws)
{
    struct smtpd_worker *sw = ws;
    return sw->sinks ? sink_worker_next_deadline(sw->sinks, sink_now_ms()) : UINT64_MAX;
}

/* Owner.  Relaxed throughout: independent counters read by
 * smtpd_live_stats, nothing published through them; a plain load and
 * store suffice as this thread is the only writer. */
static void smtpd_live_set(_Atomic uint64_t *v, uint64_t x)
{
    atomic_store_explicit(v, x, memory_order_relaxed);
}

static void smtpd_live_add(_Atomic uint64_t *v, uint64_t x)
{
    smtpd_live_set(v, atomic_load_explicit(v, memory_order_relaxed) + x);
}

static void smtpd_fsync_timed(struct smtpd_worker *sw)
{
    uint64_t ns = clock_mono_ns() - sw->fsync_start_ns;
    /* owner only: the moving average that bounds the sibling wait */
    if (sw->fsync_avg_ns == 0)
        sw->fsync_avg_ns = ns;
    else
        sw->fsync_avg_ns = sw->fsync_avg_ns - (sw->fsync_avg_ns >> SMTPD_LAT_SHIFT) +
                           (ns >> SMTPD_LAT_SHIFT);
    unsigned b = 0;
    while (b < SMTPD_FSYNC_BOUNDS && ns > smtpd_fsync_bounds_ns[b])
        b++;
    smtpd_live_add(&sw->live.fsync_buckets[b], 1);
    smtpd_live_add(&sw->live.fsync_ns_sum, ns);
    smtpd_live_add(&sw->live.fsyncs, 1);
}

static void smtpd_worker_user_done(void *ws, uint8_t tag, uint32_t arg, int res)
{
    struct smtpd_worker *sw = ws;
    switch ((enum smtpd_op)tag) {
    case SMTPD_OP_FSYNC:
        sw->fsync_inflight = false;
        smtpd_fsync_timed(sw);
#ifdef SLUICE_TEST_HOOKS
        if (sw->d->plain_fsync)
            res = sw->plain_fsync_res;
        if (res == 0 && smtpd_fault_fsync(sw->d))
            res = -EIO;
#endif
        if (res < 0)
            log_msg(LOG_ERROR, "spool: fdatasync failed: %s; the batch is refused with 451",
                    strerror(-res));
        spool_writer_sync_done(sw->spool, res);
        break;
    case SMTPD_OP_DELAY:
        if (arg == sw->delay_gen) {
            sw->delay_armed = false;
            sw->delay_done = true;
        }
        break;
    case SMTPD_OP_SINK_POLL:
        if (sw->sinks != NULL) /* else the worker is ending: nobody waits */
            sink_worker_poll_done(sw->sinks, arg, res);
        break;
    case SMTPD_OP_SINK_CANCEL:
        break;
    default:
        log_panic("smtpd_worker_user_done: unknown op %u", (unsigned)tag);
    }
}

/* Owner, at the end of a loop turn: the counters for other threads. */
static void smtpd_worker_publish(void *ws)
{
    struct smtpd_worker *sw = ws;
    const struct smtp_stats *ss = smtp_server_stats(sw->smtp);
    struct spool_writer_stats wst = {0};
    if (sw->spool != NULL)
        spool_writer_stats(sw->spool, &wst);
    smtpd_live_set(&sw->live.sessions, ss->sessions);
    smtpd_live_set(&sw->live.messages, ss->messages);
    smtpd_live_set(&sw->live.rejected, ss->rejected);
    smtpd_live_set(&sw->live.tempfailed, ss->tempfailed);
    smtpd_live_set(&sw->live.discarded, ss->discarded);
    smtpd_live_set(&sw->live.quarantined, ss->quarantined);
    smtpd_live_set(&sw->live.timeouts, ss->timeouts);
    smtpd_live_set(&sw->live.protocol_errors, ss->protocol_errors);
    smtpd_live_set(&sw->live.rcpt_rejected, ss->rcpt_rejected);
    smtpd_live_set(&sw->live.ended_quit, ss->ended_quit);
    smtpd_live_set(&sw->live.ended_dropped, ss->ended_dropped);
    smtpd_live_set(&sw->live.ended_error, ss->ended_error);
    smtpd_live_set(&sw->live.ended_shutdown, ss->ended_shutdown);
    smtpd_live_set(&sw->live.commits, wst.commits);
    smtpd_live_set(&sw->live.syncs, wst.syncs);
    smtpd_live_set(&sw->live.sync_errors, wst.sync_errors);
}

static const struct net_worker_hooks smtpd_hooks = {
    .start = smtpd_worker_start,
    .after_tasks = smtpd_worker_after_tasks,
    .turn_end = smtpd_worker_turn_end,
    .busy = smtpd_worker_busy,
    .next_deadline = smtpd_worker_next_deadline,
    .publish = smtpd_worker_publish,
    .user_done = smtpd_worker_user_done,
    .stop = smtpd_worker_stop,
};

/* ---- the service ---- */

static bool smtpd_per_ip_exempt(void *arg, const struct sockaddr *peer)
{
    const struct cfg *cfg = arg;
    return cfg_cidr_match(cfg->conn_limit_exceptions, cfg->nconn_limit_exceptions, peer);
}

int smtpd_create(const struct cfg *cfg, struct spool *sp, struct sched_pool *pool,
                 struct sink_engine *engine, struct smtpd **out, char *err, size_t errlen)
{
    *out = NULL;
    /* every listener with the kind of session it starts */
    const struct {
        const struct cfg_sockaddr *v;
        size_t n;
        enum smtp_listener kind;
    } lists[] = {
        {cfg->listen, cfg->nlisten, SMTP_L_PLAIN},
        {cfg->listen_smtps, cfg->nlisten_smtps, SMTP_L_SMTPS},
        {cfg->listen_submission, cfg->nlisten_submission, SMTP_L_SUBMISSION},
    };
    struct net_listen l[NET_MAX_LISTEN];
    size_t nl = 0;
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        for (size_t j = 0; j < lists[k].n; j++) {
            if (nl == NET_MAX_LISTEN) {
                snprintf(err, errlen, "listen: at most %d addresses in all", NET_MAX_LISTEN);
                return -EINVAL;
            }
            l[nl].ss = lists[k].v[j].ss;
            l[nl].len = lists[k].v[j].len;
            l[nl].text = lists[k].v[j].text;
            l[nl].kind = (int)lists[k].kind;
            l[nl++].implicit_tls = lists[k].kind == SMTP_L_SMTPS;
        }
    }
    if (cfg->nlisten == 0) {
        snprintf(err, errlen, "listen: between 1 and %d addresses are needed", NET_MAX_LISTEN);
        return -EINVAL;
    }
    struct smtpd *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->cfg = cfg;
    d->spool = sp;
    d->engine = engine;
    d->pool = pool;
    d->nworkers = cfg->workers ? cfg->workers : 1;
    d->workers = calloc(d->nworkers, sizeof(*d->workers));
    if (d->workers == NULL) {
        free(d);
        return -ENOMEM;
    }
    struct net_settings set = {
        .listen = l,
        .nlisten = nl,
        .workers = d->nworkers,
        .max_connections = cfg->max_connections,
        .max_conn_per_ip = cfg->max_conn_per_ip,
        .per_ip_exempt = smtpd_per_ip_exempt,
        .per_ip_exempt_arg = (void *)cfg,
        .buffer_count = cfg->buffer_count,
        .buffer_size = cfg->buffer_size,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .overload_reply = d->overload,
    };
    int olen = snprintf(d->overload, sizeof(d->overload),
                        "421 4.3.2 %s Error: server busy, try again later\r\n", cfg->hostname);
    set.overload_reply_len = olen > 0 && (size_t)olen < sizeof(d->overload) ? (size_t)olen : 0;
    if (set.overload_reply_len == 0)
        set.overload_reply = NULL;
    int rc = net_server_create(&set, &smtpd_proto, &smtpd_hooks, d, pool, &d->net, err, errlen);
    if (rc < 0) {
        free(d->workers);
        free(d);
        return rc;
    }
#ifdef SLUICE_TEST_HOOKS
    atomic_init(&d->fsyncs_done, 0);
    const char *fault = getenv("SLUICE_FAULT_FSYNC_AFTER");
    d->fault_fsync_after = fault && *fault ? strtoll(fault, NULL, 10) : -1;
    if (d->fault_fsync_after >= 0)
        log_msg(LOG_WARN, "fault injection: every fdatasync after the first %lld fails",
                d->fault_fsync_after);
    const char *plain = getenv("SLUICE_FAULT_PLAIN_FSYNC");
    d->plain_fsync = plain && *plain == '1';
    if (d->plain_fsync)
        log_msg(LOG_WARN, "fault injection: group commits call fdatasync(2), not the ring");
#endif
    *out = d;
    return 0;
}

struct net_server *smtpd_net(const struct smtpd *d)
{
    return d->net;
}

void smtpd_set_tls(struct smtpd *d, struct tls_server *ts)
{
    d->tls = ts;
    net_server_set_tls(d->net, ts);
}

int smtpd_run(struct smtpd *d, char *err, size_t errlen)
{
    struct net_server *n = d->net;
    for (size_t j = 0; j < net_server_listen_count(n); j++) {
        if (net_server_listen_kind(n, j) == SMTP_L_SMTPS && d->tls == NULL) {
            snprintf(err, errlen, "listen_smtps %s: needs a tls { cert = ...; key = ...; } block",
                     net_server_listen_addr(n, j));
            return -EINVAL;
        }
    }
    return net_server_run(n, err, errlen);
}

void smtpd_destroy(struct smtpd *d)
{
    if (d == NULL)
        return;
    net_server_destroy(d->net);
    free(d->workers);
    free(d);
}

void smtpd_stats(const struct smtpd *d, struct smtpd_stats *st)
{
    struct net_stats ns;
    net_server_stats(d->net, &ns);
    memset(st, 0, sizeof(*st));
    st->accepted = ns.accepted;
    st->tasks = ns.tasks;
    for (unsigned i = 0; i < d->nworkers; i++) {
        const struct smtpd_worker *sw = &d->workers[i];
        st->sessions += sw->smtp_final.sessions;
        st->messages += sw->smtp_final.messages;
        st->commits += sw->spool_final.commits;
        st->syncs += sw->spool_final.syncs;
        st->sync_errors += sw->spool_final.sync_errors;
        st->rejected += sw->smtp_final.rejected;
        st->tempfailed += sw->smtp_final.tempfailed;
        st->discarded += sw->smtp_final.discarded;
        st->quarantined += sw->smtp_final.quarantined;
    }
}

static uint64_t smtpd_live_get(const _Atomic uint64_t *v)
{
    /* relaxed: pairs with the relaxed stores of smtpd_worker_publish (a reading) */
    return atomic_load_explicit(v, memory_order_relaxed);
}

void smtpd_live_stats(const struct smtpd *d, struct smtpd_live_stats *out)
{
    struct net_stats ns;
    net_server_stats(d->net, &ns);
    memset(out, 0, sizeof(*out));
    out->st.accepted = ns.accepted;
    out->st.tasks = ns.tasks;
    out->open = ns.open;
    out->refused_busy = ns.refused_busy;
    out->refused_per_ip = ns.refused_per_ip;
    for (unsigned i = 0; i < d->nworkers; i++) {
        const struct smtpd_worker *w = &d->workers[i];
        out->st.sessions += smtpd_live_get(&w->live.sessions);
        out->st.messages += smtpd_live_get(&w->live.messages);
        out->st.commits += smtpd_live_get(&w->live.commits);
        out->st.syncs += smtpd_live_get(&w->live.syncs);
        out->st.sync_errors += smtpd_live_get(&w->live.sync_errors);
        out->st.rejected += smtpd_live_get(&w->live.rejected);
        out->st.tempfailed += smtpd_live_get(&w->live.tempfailed);
        out->st.discarded += smtpd_live_get(&w->live.discarded);
        out->st.quarantined += smtpd_live_get(&w->live.quarantined);
        out->timeouts += smtpd_live_get(&w->live.timeouts);
        out->protocol_errors += smtpd_live_get(&w->live.protocol_errors);
        out->rcpt_rejected += smtpd_live_get(&w->live.rcpt_rejected);
        out->ended_quit += smtpd_live_get(&w->live.ended_quit);
        out->ended_dropped += smtpd_live_get(&w->live.ended_dropped);
        out->ended_error += smtpd_live_get(&w->live.ended_error);
        out->ended_shutdown += smtpd_live_get(&w->live.ended_shutdown);
        out->fsyncs += smtpd_live_get(&w->live.fsyncs);
        out->fsync_ns_sum += smtpd_live_get(&w->live.fsync_ns_sum);
        for (unsigned b = 0; b <= SMTPD_FSYNC_BOUNDS; b++)
            out->fsync_buckets[b] += smtpd_live_get(&w->live.fsync_buckets[b]);
    }
}
