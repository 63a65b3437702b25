/*
 * NAME
 *	qmgr_int - the queue manager's internals (core/qmgr*.c only)
 * DESCRIPTION
 *	Everything here belongs to the queue-manager thread, except the local
 *	delivery thread's queue (qmgr_local.c: its own mutex) and the stats
 *	(relaxed atomics read by other threads).
 *
 *	A message (qmsg) is in one place at a time: being categorized and
 *	routed (QM_SINKS), in an attempt (QM_ACTIVE: jobs queued at
 *	destinations or on connections; `jobs` counts them), waiting for its
 *	next attempt (QM_DEFERRED, in the retry heap), held by the operator,
 *	or quarantined.  An attempt ends when its last job reports: then the
 *	message is finished (REMOVE), failed recipients are bounced, and the
 *	rest is deferred.
 */
#ifndef SLUICE_CORE_QMGR_INT_H
#define QMGR_STOP_SYNC_MS 10000 /* bound on the last group commit at stop */
#define SLUICE_CORE_QMGR_INT_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/base/clock.h"
#include "core/cfg/cfg.h"
#include "core/client/dns.h"
#include "core/client/osmtp.h"
#include "core/queue/qmgr.h"
#include "core/queue/route.h"
#include "sched/sched.h"
#include "sinks/engine.h"
#include "storage/spool.h"

#define QMGR_TICK_MS 1000
#define QMGR_RCPTS_PER_TXN 500 /* recipients per outbound transaction */
#define QMGR_DNS_TTL_MS (300 * 1000)
#define QMGR_DNS_SLOTS 32
#define QMGR_RBUF 8192
#define QMGR_BODY_CHUNK 65536

/* io_uring user_data: op in the low 8 bits, a pointer or slot above. */
enum qmgr_op {
    QOP_CONNECT = 1,
    QOP_LTIMEOUT,  /* the link timeout of a connect */
    QOP_RECV,
    QOP_SEND,
    QOP_DNS,       /* poll on a c-ares socket: slot | gen << 16 */
    QOP_DNS_CANCEL,
    QOP_WAKE,      /* multishot poll on the scheduler's eventfd */
    QOP_FSYNC,     /* the writer's group commit */
    QOP_SPLICE_IN, /* BDAT body: spool segment -> the connection's pipe */
    QOP_SPLICE_OUT, /* the pipe -> the socket */
    QOP_SINK_POLL,  /* a sink service's poll (sinks/engine.h sink_io): its token above */
    QOP_SINK_CANCEL,
};

enum qmsg_state { QM_SINKS, QM_ACTIVE, QM_DEFERRED, QM_HELD, QM_QUARANTINE };

struct qmsg {
    uint64_t id;
    struct spool_msg *sm;
    char *sender;
    char *params;
    size_t nrcpt;
    char **rcpts;
    uint8_t *rstate;   /* SPOOL_R_* (durable view) */
    uint8_t *rtry;     /* this attempt: 0 not tried, 1 delivered, 2 failed, 3 deferred */
    char **rdiag;      /* per recipient: the latest reply or error, owned, may be NULL */
    char **rhost;      /* per recipient: who said it, owned, may be NULL */
    char **rroute;     /* per recipient: a route sink's next hop, owned, may be NULL */
    int64_t arrival_ms;
    uint32_t attempts;
    int64_t next_ms;   /* unix ms */
    int64_t not_before; /* unix ms: a destination backed off; the retry waits for it */
    char *last_error;
    uint32_t qflags;   /* SPOOL_Q_* */
    uint32_t mflags;   /* SPOOL_MSG_* */
    uint64_t size;
    bool body_8bit, smtputf8;
    enum qmsg_state st;
    unsigned jobs;     /* jobs of the current attempt not yet reported */
    size_t heap_idx;   /* retry heap position (QM_DEFERRED) */
    struct qmsg *prev, *next; /* every message */
    /* transport sinks (QM_SINKS) */
    struct sink_call *call;
    unsigned step;     /* next sink step */
    size_t route_i;    /* route event: the recipient */
    bool rcpts_changed;
    struct sink_event_data ev;
};

struct qdest;
struct qjob {
    struct qmsg *m;
    struct qdest *d;
    size_t n;
    uint32_t *ri;        /* recipient indices into m->rcpts */
    const char **addrs;  /* the same as strings (for osmtp) */
    uint8_t *sent;       /* per ri: 1 offered to the server (out_rcpt let it through) */
    struct qjob *next;
};

struct qconn;
struct qdest {
    char key[320];
    struct route rt;
    char domain[256];    /* MX: the domain */
    struct qjob *head, *tail;
    size_t njobs;
    unsigned active;     /* connections (any state) */
    struct qconn *idle;  /* idle connections, newest first */
    unsigned fails;      /* connection failures in a row */
    uint32_t backoffs;
    uint64_t backoff_until; /* monotonic ms */
    char backoff_reason[256];
    /* resolution */
    struct dns_addr *addrs;
    size_t naddr;
    uint64_t addrs_expire; /* monotonic ms */
    bool resolving;
    enum dns_status dns_status;
    char dns_error[256];
    size_t next_addr;    /* round robin start for new connections */
    struct qdest *hnext; /* hash chain */
    struct qdest *rnext; /* ready list */
    bool ready;
};

enum qconn_state { QC_CONNECTING, QC_OPEN, QC_IDLE, QC_CLOSING };

struct qconn {
    struct qmgr *q;
    struct qdest *d;
    int fd;
    enum qconn_state st;
    struct osmtp *c;
    size_t ai;             /* address being tried (index into d->addrs snapshot) */
    size_t ai_tried;
    struct dns_addr *addrs; /* snapshot of the destination's addresses */
    size_t naddr;
    char peer[320];        /* "host[addr]:port" */
    char host[256];
    struct qjob *job;
    unsigned inflight;     /* io_uring ops not yet completed */
    bool recv_armed, send_busy, sent_osmtp, greeted, used;
    char rbuf[QMGR_RBUF];
    const char *out;
    size_t outlen, outoff;
    /* body */
    bool body_on;
    size_t piece;
    uint64_t poff;
    char *bbuf;            /* 2 * QMGR_BODY_CHUNK + 8 */
    char *rdbuf;           /* QMGR_BODY_CHUNK */
    uint64_t deadline;     /* monotonic ms, 0 none */
    uint64_t idle_since;
    unsigned msgs;
    struct qconn *inext;   /* idle list */
    struct qconn *anext, *aprev; /* every connection */
    /* the transaction */
    struct osmtp_msg om;
    const char **om_rcpts;
    size_t *om_map;        /* osmtp recipient i -> job index */
    size_t om_n;
    bool txn_on;           /* osmtp_send() done for c->job */
    bool timed_out;
    bool reconnect;        /* the next address, once no op is in flight */
    /* STARTTLS (net/tls.h client engine over memory BIOs) */
    struct tls_conn *tls;
    bool tls_on;           /* handshake done: every byte goes through tls */
    bool plain_retry;      /* tls=may and the handshake failed: this connection goes plain */
    char *cbuf;            /* ciphertext to send */
    size_t cbuf_cap;
    char *pbuf;            /* plaintext read out of tls */
    /* BDAT bodies from the spool, kernel to kernel (splice through a pipe) */
    int pipe_r, pipe_w;
    size_t pipe_fill;
    /* outbound sinks: the event being waited for (pending), its result */
    struct sink_call *call;
    bool sink_wait;
    bool session_seen, data_seen;
    int msg_step;          /* 0 out_message next, 1.. out_rcpt for job index msg_step-1 */
    struct sink_result sres; /* a pending event's result, replayed once */
    bool sres_ready;
    enum sink_event sres_ev;
    size_t sres_k;
    struct sink_event_data ev;
};

struct qmgr_dnsfd {
    int fd;
    bool want_r, want_w;
    bool armed;
    uint32_t gen;
};

struct qlocal; /* qmgr_local.c */
struct tls_client;
struct tls_conn;
struct qs_note; /* qmgr_sinks.c */

struct qmgr {
    const struct cfg *cfg;
    struct sink_engine *engine;
    struct sched_pool *pool;
    unsigned sched_index;
    struct sched_worker *sched;
    struct sink_worker *sinks;
    struct route_table *routes;
    struct spool *sp;
    struct spool_writer *w;
    unsigned writer_id;
    struct io_uring ring;
    bool ring_ok;
    bool wake_armed;
    bool fsync_inflight;
    pthread_t thread;
    bool started;
    _Atomic bool stop;
    int start_err;
    char start_msg[512];
    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    bool start_done;

    struct dns *dns;
    struct qmgr_dnsfd dnsfd[QMGR_DNS_SLOTS];

    /* messages */
    struct qmsg *all;
    size_t nmsg;
    struct qmsg **heap; /* retry heap by next_ms */
    size_t nheap, capheap;
    /* recovered before start, submitted at start */
    struct spool_msg **early;
    size_t nearly, capearly;

    /* destinations */
    struct qdest **dtab;
    size_t dcap, ndest;
    struct qdest *ready;
    struct qconn *conns;
    unsigned nconns;
    bool conn_starved; /* a destination waits for delivery_connections, not its own limit */
    uint64_t last_sweep;
    uint64_t last_compact;
    uint64_t last_space; /* the last spool_space_check while full */
    bool compact_behind; /* the spool is over its space bound: compact without pause */

    struct qlocal *local;
    struct tls_client *tlsc; /* outbound STARTTLS; NULL: none could be made (logged) */
    struct qs_note *notes; /* pending outcome notifications (qmgr_sinks.c) */

    /* stats (relaxed atomics: read by other threads) */
    _Atomic uint64_t st_delivered, st_failed, st_deferrals, st_bounces, st_conns, st_reused;
    _Atomic uint64_t st_queued, st_active, st_deferred, st_held;
    _Atomic uint64_t st_spliced; /* body octets sent by splice (not through user space) */
};

/* qmgr.c */
struct io_uring_sqe *qmgr_sqe(struct qmgr *q);
static inline uint64_t qmgr_ud(const void *p, enum qmgr_op op)
{
    return ((uint64_t)(uintptr_t)p << 8) | (uint64_t)op;
}

/* qmgr_queue.c */
void qmgr_msg_add(struct qmgr *q, struct spool_msg *sm);
void qmgr_msg_free(struct qmgr *q, struct qmsg *m);
void qmgr_msg_route(struct qmgr *q, struct qmsg *m);
void qmgr_msg_verdict(struct qmgr *q, struct qmsg *m, int code, const char *status,
                      const char *text);
void qmgr_msg_quarantine(struct qmgr *q, struct qmsg *m);
void qmgr_msg_hold(struct qmgr *q, struct qmsg *m);
void qmgr_unheap(struct qmgr *q, struct qmsg *m); /* out of the retry heap */
int qmgr_msg_rcpts_alloc(struct qmsg *m, size_t n);
void qmgr_job_done(struct qmgr *q, struct qjob *j);
void qmgr_rcpt_result(struct qmgr *q, struct qjob *j, size_t k, int code, const char *status,
                      const char *text, const char *host);
void qmgr_retry_due(struct qmgr *q);
uint64_t qmgr_retry_wait(struct qmgr *q, uint64_t max);
void qmgr_sweep(struct qmgr *q);

/* qmgr_dest.c */
struct qdest *qmgr_dest_get(struct qmgr *q, const struct route *rt, const char *domain);
void qmgr_dest_push(struct qmgr *q, struct qdest *d, struct qjob *j);
void qmgr_dest_run(struct qmgr *q);
void qmgr_dest_destroy_all(struct qmgr *q);
void qmgr_dest_conn_failed(struct qmgr *q, struct qdest *d, const char *reason);
void qmgr_dest_conn_ok(struct qmgr *q, struct qdest *d);
void qmgr_dest_wake(struct qmgr *q, struct qdest *d);
void qmgr_job_free(struct qjob *j);
void qmgr_job_tempfail_all(struct qmgr *q, struct qjob *j, const char *status, const char *why,
                           const char *host);

/* qmgr_conn.c */
struct qconn *qmgr_conn_open(struct qmgr *q, struct qdest *d);
void qmgr_conn_give(struct qconn *c, struct qjob *j);
void qmgr_conn_cqe(struct qmgr *q, struct qconn *c, enum qmgr_op op, int res);
void qmgr_conn_tick(struct qmgr *q, uint64_t now);
bool qmgr_conn_retire_idle(struct qmgr *q, const struct qdest *except);
void qmgr_conn_close(struct qconn *c);
void qmgr_conn_destroy_all(struct qmgr *q);

/* qmgr_local.c */
int qmgr_local_start(struct qmgr *q);
void qmgr_local_stop(struct qmgr *q);
void qmgr_local_push(struct qmgr *q, struct qjob *j);

/* qmgr_sinks.c */
void qmgr_sinks_message(struct qmgr *q, struct qmsg *m);
void qmgr_sinks_note(struct qmgr *q, enum sink_event ev, struct qmsg *m, size_t i, int code,
                     const char *status, const char *text, const char *host);
bool qmgr_sinks_bound(const struct qmgr *q, enum sink_event ev);
/* An outbound event for connection c (k: the job's recipient for out_rcpt).
 * true: finished, *res filled; false: pending, qmgr_conn_sink_done(c)
 * runs when it finishes (c->sres then holds the result). */
bool qmgr_sinks_out(struct qconn *c, enum sink_event ev, size_t k, struct sink_result *res);
void qmgr_conn_sink_done(struct qconn *c);
void qmgr_sinks_stop(struct qmgr *q);

/* qmgr_bounce.c */
void qmgr_bounce(struct qmgr *q, struct qmsg *m, const size_t *idx, size_t n, bool delayed);

#endif
