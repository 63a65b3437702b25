/*
 * NAME
 *	net - the io_uring network layer: workers, listeners, connections
 * SYNOPSIS
 *	#include "net/net.h"
 * DESCRIPTION
 *	net/ knows no protocol.  It accepts connections, reads them into a
 *	provided buffer ring and writes what a protocol hands it; what the
 *	bytes mean is the business of the protocol table (struct net_proto)
 *	the caller gives it, and what else a worker owns (a spool writer, a
 *	group commit, sinks) is the business of the worker hooks (struct
 *	net_worker_hooks).  core/smtpd/worker.c plugs the SMTP server in.
 *
 *	net_server_create() binds every listen address (one SO_REUSEPORT
 *	socket per address per worker) and checks that io_uring is usable, so
 *	that start-up errors are reported before anything runs.
 *	net_server_run() starts the workers and returns when they have stopped.
 *	Each worker owns one ring (SINGLE_ISSUER | DEFER_TASKRUN), a provided
 *	buffer ring feeding multishot recv, multishot accept on its listeners,
 *	its scheduler worker (driven from the ring loop), its connections, and a
 *	one-second tick timer; see docs/network.md.
 *
 *	net_server_stop() may be called from any thread (it writes to each
 *	worker's eventfd): listeners close, every connection's protocol is told
 *	to finish (proto->shutdown, at every tick from then on), the worker
 *	stays while hooks->busy says so, and exits once its connections are
 *	gone or after a bound (5 s).  net_server_stop_drain() is the same with
 *	the bound given (0: connections still open are closed at the next
 *	one-second tick).  At the bound the connections left are closed.
 *	Calling it again may shorten the bound, never lengthen it.
 *
 *	Ownership: the settings, the tables and their arg are borrowed; the
 *	settings are read during net_server_create only (the listen texts are
 *	copied), the tables must outlive the server.
 * DIAGNOSTICS
 *	net_server_create() returns -errno with one line in err naming the
 *	address or the facility ("listen 127.0.0.1:25: Address already in use").
 */
#ifndef SLUICE_NET_NET_H
#define SLUICE_NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/base/mbuf.h"

struct net_server;
struct net_worker;
struct net_conn;
struct sched_pool;
struct sched_worker;
struct tls_server;
struct io_uring_sqe;

#define NET_MAX_LISTEN 16 /* listen addresses in all */

/* One listen address. */
struct net_listen {
    struct sockaddr_storage ss;
    socklen_t len;
    const char *text;  /* as configured, for messages */
    int kind;          /* the caller's tag, handed to proto->open; net does not read it */
    bool implicit_tls; /* the TLS handshake starts at accept (needs net_server_set_tls) */
};

/* What net reads, filled by the caller (core/smtpd/worker.c, from cfg). */
struct net_settings {
    const struct net_listen *listen;
    size_t nlisten;
    unsigned workers;
    unsigned max_connections; /* per worker; beyond it, open() is told NET_ADMIT_BUSY */
    unsigned max_conn_per_ip; /* across workers; 0: no limit */
    /* Peers the per-IP limit does not apply to (NULL: none). */
    bool (*per_ip_exempt)(void *arg, const struct sockaddr *peer);
    void *per_ip_exempt_arg;
    unsigned buffer_count; /* provided buffers per worker, a power of two */
    unsigned buffer_size;
    uint64_t idle_timeout_ms; /* also bounds a TLS handshake (0: only NET_TLS_HANDSHAKE_MS) */
    /* Sent (once, without blocking) to a plaintext connection closed at
     * accept because no slot is left (max_connections and the spare ones
     * all in use) or the worker is stopping, so that no client is left
     * without an answer; borrowed, must outlive the server.  NULL: none. */
    const char *overload_reply;
    size_t overload_reply_len;
};

/* How a connection was admitted: the protocol says no politely when not OK. */
enum net_admit {
    NET_ADMIT_OK,
    NET_ADMIT_PER_IP, /* max_conn_per_ip reached for this peer */
    NET_ADMIT_BUSY,   /* max_connections reached on this worker */
};

/*
 * The protocol of a connection.  Every call runs on the connection's
 * worker thread.  `pc` is what open() returned; it stays the protocol's
 * until destroy().  A protocol that gains output or wants to close outside
 * a call from net (a group commit completed, a sink answered) calls
 * net_conn_kick() with the conn it was given at open().
 */
struct net_proto {
    /* A connection was accepted on a listener of `kind` (ws: the worker
     * state hooks->start returned; peer: borrowed for the call).  NULL:
     * out of memory, the connection is closed. */
    void *(*open)(void *ws, struct net_conn *c, const struct sockaddr *peer, socklen_t peerlen,
                  int kind);
    /* Begin (the greeting); after the handshake on an implicit-TLS listener. */
    void (*start)(void *pc, enum net_admit admit);
    /* Octets [off, off+len) of b were received; the protocol takes
     * references on b for what it keeps. */
    void (*input)(void *pc, struct mbuf *b, uint32_t off, uint32_t len);
    /* The peer closed its side, or the connection failed. */
    void (*eof)(void *pc);
    /* Output: take freezes the bytes for one send, valid until out_done. */
    bool (*out_take)(void *pc, const char **p, size_t *len);
    void (*out_done)(void *pc);
    /* Close once the pending output is sent. */
    bool (*closing)(const void *pc);
    /* Received octets held unprocessed: reading pauses above NET_BACKLOG_PAUSE. */
    size_t (*backlog)(const void *pc);
    /* About once a second (idle timeouts). */
    void (*tick)(void *pc, uint64_t now_ms);
    /* The server is stopping: finish at the next clean point. */
    void (*shutdown)(void *pc);
    /* The buffer ring is running dry: let go of every ring buffer held. */
    void (*release_buffers)(void *pc);
    /* The protocol agreed to start TLS: its pending output goes out in
     * plaintext, every later octet is TLS. */
    bool (*starttls_wanted)(const void *pc);
    /* The handshake is done; desc is borrowed for the call. */
    void (*tls_started)(void *pc, const char *desc);
    void (*destroy)(void *pc);
};

/*
 * What a worker owns besides its connections.  Every call runs on the
 * worker's thread; `ws` is what start() returned.
 */
struct net_worker_hooks {
    /* The ring and the scheduler worker exist.  0 and *ws, or -errno with
     * one line in err ("worker 0: spool ./spool: Permission denied"). */
    int (*start)(void *arg, struct net_worker *w, void **ws, char *err, size_t errlen);
    /* The turn's completions and tasks have run, its output is not yet
     * flushed: settle what is due (sink deadlines).  NULL: nothing. */
    void (*after_tasks)(void *ws);
    /* The connections' output for the turn is queued: start what batches
     * per turn (the group commit). */
    void (*turn_end)(void *ws);
    /* A stopping worker stays while this is true (a commit in flight). */
    bool (*busy)(void *ws);
    /* Milliseconds the worker may sleep at most (UINT64_MAX: no bound). */
    uint64_t (*next_deadline)(void *ws);
    /* The end of every turn: publish counters for other threads. */
    void (*publish)(void *ws);
    /* An operation queued with net_sqe_set_user completed with res. */
    void (*user_done)(void *ws, uint8_t tag, uint32_t arg, int res);
    /* The worker ends: its connections are closed (or were never opened),
     * the ring and the scheduler worker still exist. */
    void (*stop)(void *ws);
};

/* pool (borrowed, must outlive the server) must have one scheduler worker
 * per net worker; each net worker attaches itself to its own and drives it
 * from its ring loop. */
int net_server_create(const struct net_settings *set, const struct net_proto *proto,
                      const struct net_worker_hooks *hooks, void *hooks_arg,
                      struct sched_pool *pool, struct net_server **out, char *err, size_t errlen);
/* The address each listen entry is bound to ("127.0.0.1:41234" after port 0). */
size_t net_server_listen_count(const struct net_server *srv);
const char *net_server_listen_addr(const struct net_server *srv, size_t i);
int net_server_listen_kind(const struct net_server *srv, size_t i);
/* TLS for STARTTLS and the implicit-TLS listeners (borrowed, must outlive
 * the server; NULL: none).  Before net_server_run. */
void net_server_set_tls(struct net_server *srv, struct tls_server *ts);
/* Runs the workers until they stop.  0, or -errno with err filled when a
 * worker could not start (its ring, buffer ring or hooks->start failed). */
int net_server_run(struct net_server *srv, char *err, size_t errlen);
void net_server_stop(struct net_server *srv);
void net_server_stop_drain(struct net_server *srv, uint64_t grace_ms);
void net_server_destroy(struct net_server *srv);

/* ---- counters ----
 * Any thread, between net_server_create and net_server_destroy: each
 * worker publishes them at the end of every loop turn (relaxed stores; a
 * reader wants each value to be one it had, not a snapshot consistent
 * across counters).  After net_server_run returned they are final. */
struct net_stats {
    uint64_t accepted;
    uint64_t open;           /* connections open now (open and lingering) */
    uint64_t refused_busy;   /* admitted NET_ADMIT_BUSY */
    uint64_t refused_per_ip; /* admitted NET_ADMIT_PER_IP */
    uint64_t tasks;          /* scheduler tasks run by the workers */
};
void net_server_stats(const struct net_server *srv, struct net_stats *st);

/* ---- for the protocol and the worker hooks (the worker's thread) ---- */

/* The protocol of c has output or wants to close: flushed at the end of
 * this loop turn.  conn is the struct net_conn given to proto->open (void
 * so that it can be a kick callback). */
void net_conn_kick(void *conn);
unsigned net_worker_id(const struct net_worker *w);
struct sched_worker *net_worker_sched(struct net_worker *w);
bool net_worker_stopping(const struct net_worker *w);
/* A submission entry on w's ring, for an operation of the upper layer:
 * prepare it, then net_sqe_set_user() so that its completion reaches
 * hooks->user_done(ws, tag, arg, cqe->res).  Submitted with the turn. */
struct io_uring_sqe *net_worker_sqe(struct net_worker *w);
void net_sqe_set_user(struct io_uring_sqe *sqe, uint8_t tag, uint32_t arg);
/* For a cancel (io_uring_prep_poll_remove, io_uring_prep_cancel64 with 0
 * as the target): aims sqe at the operation queued with (tag, arg); the
 * cancel's own completion is set with net_sqe_set_user as usual. */
void net_sqe_user_data(struct io_uring_sqe *sqe, uint8_t tag, uint32_t arg);

/* Checks that this kernel lets us set up the rings sluice needs.  0, or
 * -errno with an explanation in err. */
int net_probe_uring(char *err, size_t errlen);

#endif
