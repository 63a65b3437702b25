/*
 * NAME
 *	net_int - what the files of net/ share
 * DESCRIPTION
 *	user_data packs op (8 bits), generation (24 bits) and index (32 bits)
 *	and is dispatched by one switch in worker.c.  A connection slot is
 *	reused with a new generation, so a late completion for a closed
 *	connection is recognised and dropped.  NET_OP_USER is an operation of
 *	the upper layer (net_sqe_set_user): its tag rides in the generation
 *	field, its argument in the index.
 */
#ifndef SLUICE_NET_NET_INT_H
#define SLUICE_NET_NET_INT_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/base/mbuf.h"
#include "net/net.h"
#include "net/tls.h"
#include "sched/sched.h"

#define NET_BGID 1
#define NET_CONN_SPARE 64      /* slots beyond max_connections, for the refusal (NET_ADMIT_BUSY) */
#define NET_LINGER_MS 5000     /* wait for the client's FIN after ours */
#define NET_STOP_GRACE_MS 5000 /* bound on a graceful stop */
#define NET_TASK_BUDGET 64     /* scheduler tasks per loop turn */
/* Flow control: a protocol that waits (for a group commit, a pending sink)
 * while its peer keeps sending stops being read above PAUSE unread octets
 * (proto->backlog) and is read again below RESUME, so a big pipelined BDAT
 * chunk waits in the kernel's socket buffer instead of the protocol's
 * backlog. */
#define NET_BACKLOG_PAUSE (256u * 1024)
#define NET_BACKLOG_RESUME (64u * 1024)

enum net_op {
    NET_OP_ACCEPT = 1, /* index = listener */
    NET_OP_RECV,
    NET_OP_SEND,
    NET_OP_USER, /* an operation of the upper layer; gen = its tag, index = its argument */
    NET_OP_TICK,
    NET_OP_WAKE,
    NET_OP_SCHED,  /* the scheduler's wake eventfd became readable (multishot poll) */
    NET_OP_CANCEL, /* the cancellation of a paused connection's recv */
    NET_OP_CLOSE,  /* a connection's close(2) through the ring */
};

static inline uint64_t net_ud(enum net_op op, uint32_t gen, uint32_t idx)
{
    return ((uint64_t)op << 56) | ((uint64_t)(gen & 0xffffff) << 32) | idx;
}
static inline enum net_op net_ud_op(uint64_t ud)
{
    return (enum net_op)(ud >> 56);
}
static inline uint32_t net_ud_gen(uint64_t ud)
{
    return (uint32_t)(ud >> 32) & 0xffffff;
}
static inline uint32_t net_ud_idx(uint64_t ud)
{
    return (uint32_t)ud;
}

enum net_conn_state {
    NET_CONN_FREE,
    NET_CONN_OPEN,    /* the protocol is running */
    NET_CONN_LINGER,  /* our side shut down; draining until the client's FIN */
    NET_CONN_CLOSING, /* shut down; freed when no operation is outstanding */
};

struct net_worker;

struct net_conn {
    struct net_worker *w;
    enum net_conn_state state;
    int fd;
    uint32_t gen;
    uint32_t idx;
    void *pc;             /* the protocol's (proto->open); NULL once destroyed */
    bool recv_armed;      /* a multishot recv is outstanding */
    bool recv_want;       /* re-arm when buffers are available */
    bool recv_paused;     /* not read: the protocol holds too much unread input */
    bool recv_cancelling; /* the cancel of the multishot recv is in flight */
    bool sending;         /* a send is outstanding */
    bool dirty;           /* on the worker's dirty list */
    bool counted_ip;      /* holds a per-IP count */
    const char *send_p;   /* the frozen output being sent */
    size_t send_left;
    uint64_t linger_until_ms;
    struct sockaddr_storage peer;
    socklen_t peerlen;
    struct net_conn *next_dirty;
    uint32_t next_free;
    /* TLS (NULL: plaintext; see docs/tls.md) */
    struct tls_conn *tls;
    bool implicit_tls;          /* the protocol starts after the handshake */
    enum net_admit start_admit; /* what proto->start gets then */
    bool tls_up;                /* the handshake is done */
    bool tls_bye;               /* close_notify queued */
    bool send_tx;               /* the send in flight is from tx (else the protocol's output) */
    uint64_t tls_deadline_ms;   /* the handshake must end by then */
    char *tx;                   /* ciphertext being sent */
    size_t tx_len, tx_cap;
};

struct net_bufring {
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    char *mem;
    size_t mem_bytes;
    struct mbuf *bufs;
    unsigned count;
    unsigned size;
    unsigned mask;
    unsigned pending_adds; /* returned since the last advance */
    unsigned free;         /* in the kernel's hands or pending */
};

struct net_server;

struct net_worker {
    struct net_server *srv;
    const struct net_proto *proto; /* srv->proto, one load closer */
    unsigned id;
    pthread_t thread;
    struct io_uring ring;
    bool ring_ok;
    int wake_fd;
    uint64_t wake_val;
    int listen_fd[NET_MAX_LISTEN];
    bool accept_armed[NET_MAX_LISTEN];
    struct net_bufring bufs;
    struct net_conn *conns;
    uint32_t nconns_cap;
    uint32_t free_head;
    uint32_t active;
    struct net_conn *dirty;
    struct sched_worker *sched;
    bool sched_poll_armed;
    uint64_t tasks_run;
    void *ws;               /* the upper layer's (hooks->start) */
    bool ws_ok;             /* hooks->start succeeded: hooks->stop is owed */
    struct mbuf *tls_spare; /* a plaintext buffer no protocol references, for the next read */
    bool stopping;
    uint64_t stop_deadline_ms;
    struct __kernel_timespec tick_ts;
    uint64_t accepted;
    int start_err;
    char start_msg[256];
    uint64_t refused_busy, refused_per_ip;
    /* Published for net_server_stats(): written by this worker only
     * (relaxed: each is an independent reading, nothing is published
     * through them), read by any thread. */
    struct {
        _Atomic uint64_t accepted, open, tasks, refused_busy, refused_per_ip;
    } live;
};

struct net_server {
    struct net_settings set; /* set.listen: NULL after create (the table is not kept) */
    const struct net_proto *proto;
    const struct net_worker_hooks *hooks;
    void *hooks_arg;
    struct sched_pool *pool; /* one scheduler worker per net worker, driven by our loop */
    unsigned nworkers;
    struct net_worker *workers;
    size_t nlisten;
    char listen_text[NET_MAX_LISTEN][64];
    int listen_kind[NET_MAX_LISTEN];
    bool listen_tls[NET_MAX_LISTEN]; /* implicit TLS */
    struct tls_server *tls;          /* borrowed; NULL: no TLS */
    atomic_bool stop; /* release in net_server_stop pairs with acquire in the worker's wake */
    _Atomic uint64_t stop_grace_ms; /* the drain's bound, set before stop */
    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    unsigned started; /* workers past set-up, under start_lock */
};

/* bufring.c */
int net_bufring_init(struct net_worker *w, char *err, size_t errlen);
void net_bufring_fini(struct net_worker *w);
void net_bufring_flush(struct net_worker *w);

/* iplimit.c: per-client-address connection counts across all workers */
bool net_iplimit_acquire(const struct sockaddr *sa, unsigned limit);
void net_iplimit_release(const struct sockaddr *sa);

#define NET_TLS_HANDSHAKE_MS 60000 /* bound on a handshake (also idle_timeout) */
#define NET_TLS_READ 16384         /* plaintext octets per heap buffer */
#define NET_TLS_TX 32768           /* ciphertext octets per send */

/* conn_tls.c: the TLS side of a connection */
bool net_tls_begin(struct net_worker *w, struct net_conn *c);
void net_tls_input(struct net_worker *w, struct net_conn *c, const char *p, size_t n);
/* The output step of net_conn_flush for a TLS connection: true if a send
 * was started or the connection must wait. */
bool net_tls_flush(struct net_worker *w, struct net_conn *c);
void net_tls_free(struct net_conn *c);

/* conn.c */
void net_conn_submit_send(struct net_worker *w, struct net_conn *c);
void net_conn_mark(struct net_worker *w, struct net_conn *c);
void net_conn_accepted(struct net_worker *w, int fd, size_t listener);
void net_conn_recv_cqe(struct net_worker *w, struct net_conn *c, struct io_uring_cqe *cqe);
void net_conn_send_cqe(struct net_worker *w, struct net_conn *c, int res);
void net_conn_flush(struct net_worker *w, struct net_conn *c);
void net_conn_close_now(struct net_worker *w, struct net_conn *c);
void *net_worker_main(void *arg);
void net_conn_arm_recv(struct net_worker *w, struct net_conn *c);
void net_conn_tick(struct net_worker *w, struct net_conn *c, uint64_t now_ms);
void net_conn_release_buffers(struct net_worker *w);
struct io_uring_sqe *net_sqe(struct net_worker *w);
/* The protocol is done with c: destroy its object (once). */
void net_conn_drop_proto(struct net_conn *c);

#endif
