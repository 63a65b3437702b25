/*
 * NAME
 *	server - listeners, the io_uring probe, starting and stopping workers
 * DESCRIPTION
 *	Everything that can fail at start-up fails here, in the main thread,
 *	with one line that names the cause: io_uring refused (and the likely
 *	reason), a port in use, an address that cannot be bound.  Workers then
 *	create their own rings (SINGLE_ISSUER binds a ring to the thread that
 *	creates it).
 *
 *	Port in use: every worker's socket sets SO_REUSEPORT, which would let
 *	a second sluiced (same user) silently share the port; so a plain
 *	socket without SO_REUSEPORT is bound first as a probe.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/base/log.h"
#include "net/net_int.h"

int net_probe_uring(char *err, size_t errlen)
{
    struct io_uring ring;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(8, &ring, &p);
    if (rc == -EPERM || rc == -EACCES) {
        snprintf(err, errlen,
                 "io_uring is not permitted: io_uring_setup: %s (disabled by the sysctl "
                 "kernel.io_uring_disabled, or blocked by a seccomp profile such as a container "
                 "runtime's default)",
                 strerror(-rc));
        return rc;
    }
    if (rc == -ENOSYS) {
        snprintf(err, errlen, "io_uring is not available: this kernel was built without it");
        return rc;
    }
    if (rc == -EINVAL) {
        snprintf(err, errlen,
                 "io_uring_setup refused SINGLE_ISSUER|DEFER_TASKRUN: %s (sluice needs Linux "
                 "6.1 or later)",
                 strerror(-rc));
        return rc;
    }
    if (rc < 0) {
        snprintf(err, errlen, "io_uring_setup: %s", strerror(-rc));
        return rc;
    }
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    static const struct {
        int op;
        const char *name;
    } need[] = {{IORING_OP_ACCEPT, "ACCEPT"}, {IORING_OP_RECV, "RECV"},
                {IORING_OP_SEND, "SEND"},     {IORING_OP_FSYNC, "FSYNC"},
                {IORING_OP_TIMEOUT, "TIMEOUT"}, {IORING_OP_READ, "READ"},
                {IORING_OP_CLOSE, "CLOSE"},     {IORING_OP_POLL_ADD, "POLL_ADD"},
                {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"}};
    rc = 0;
    for (size_t i = 0; probe && i < sizeof(need) / sizeof(need[0]); i++) {
        if (!io_uring_opcode_supported(probe, need[i].op)) {
            snprintf(err, errlen, "io_uring lacks IORING_OP_%s (kernel too old)", need[i].name);
            rc = -EOPNOTSUPP;
            break;
        }
    }
    if (probe)
        io_uring_free_probe(probe);
    io_uring_queue_exit(&ring);
    return rc;
}

static void net_addr_text(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(out, outlen, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(out, outlen, "%s:%u", host, ntohs(s4->sin_port));
    }
}

static int net_listen_socket(struct sockaddr_storage *ss, socklen_t len, bool reuseport,
                             char *err, size_t errlen, const char *text)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "listen %s: socket: %s", text, strerror(errno));
        return -errno;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)ss, len) < 0 || (reuseport && listen(fd, 4096) < 0)) {
        int e = errno;
        snprintf(err, errlen, "listen %s: %s%s", text, strerror(e),
                 e == EADDRINUSE ? " (another program, or another sluiced, has this port)"
                 : e == EACCES   ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                                 : "");
        close(fd);
        return -e;
    }
    return fd;
}

int net_server_create(const struct cfg *cfg, struct spool *sp, struct sched_pool *pool,
                      struct sink_engine *engine, struct net_server **out, char *err,
                      size_t errlen)
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
    const struct cfg_sockaddr *laddr[NET_MAX_LISTEN];
    enum smtp_listener lkind[NET_MAX_LISTEN];
    size_t nl = 0;
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        for (size_t j = 0; j < lists[k].n; j++) {
            if (nl == NET_MAX_LISTEN) {
                snprintf(err, errlen, "listen: at most %d addresses in all", NET_MAX_LISTEN);
                return -EINVAL;
            }
            laddr[nl] = &lists[k].v[j];
            lkind[nl++] = lists[k].kind;
        }
    }
    if (cfg->nlisten == 0) {
        snprintf(err, errlen, "listen: between 1 and %d addresses are needed", NET_MAX_LISTEN);
        return -EINVAL;
    }
    int rc = net_probe_uring(err, errlen);
    if (rc < 0)
        return rc;
    struct net_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return -ENOMEM;
    srv->cfg = cfg;
    srv->spool = sp;
    srv->engine = engine;
    srv->nworkers = cfg->workers ? cfg->workers : 1;
    srv->pool = pool;
    if (sched_pool_size(pool) < srv->nworkers) {
        snprintf(err, errlen, "net_server_create: a scheduler of %u workers for %u net workers",
                 sched_pool_size(pool), srv->nworkers);
        free(srv);
        return -EINVAL;
    }
    srv->nlisten = nl;
    memcpy(srv->listen_kind, lkind, nl * sizeof(lkind[0]));
    atomic_init(&srv->stop, false);
    atomic_init(&srv->stop_grace_ms, NET_STOP_GRACE_MS);
    atomic_init(&srv->fsyncs_done, 0);
    const char *fault = getenv("SLUICE_FAULT_FSYNC_AFTER");
    srv->fault_fsync_after = fault && *fault ? strtoll(fault, NULL, 10) : -1;
    if (srv->fault_fsync_after >= 0)
        log_msg(LOG_WARN, "fault injection: every fdatasync after the first %lld fails",
                srv->fault_fsync_after);
    pthread_mutex_init(&srv->start_lock, NULL);
    pthread_cond_init(&srv->start_cond, NULL);
    srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
    if (srv->workers == NULL) {
        free(srv);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct net_worker *w = &srv->workers[i];
        w->srv = srv;
        w->id = i;
        w->wake_fd = -1;
        for (size_t j = 0; j < NET_MAX_LISTEN; j++)
            w->listen_fd[j] = -1;
    }
    for (size_t j = 0; j < nl; j++) {
        struct sockaddr_storage ss = laddr[j]->ss;
        socklen_t len = laddr[j]->len;
        const char *text = laddr[j]->text;
        bool port0 = (ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port) == 0;
        if (!port0) {
            int probe = net_listen_socket(&ss, len, false, err, errlen, text);
            if (probe < 0) {
                net_server_destroy(srv);
                return probe;
            }
            close(probe);
        }
        for (unsigned i = 0; i < srv->nworkers; i++) {
            int fd = net_listen_socket(&ss, len, true, err, errlen, text);
            if (fd < 0) {
                net_server_destroy(srv);
                return fd;
            }
            srv->workers[i].listen_fd[j] = fd;
            if (i == 0) { /* port 0: the others bind the port the kernel chose */
                socklen_t l = sizeof(ss);
                getsockname(fd, (struct sockaddr *)&ss, &l);
                len = l;
                net_addr_text(&ss, srv->listen_text[j], sizeof(srv->listen_text[j]));
            }
        }
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        srv->workers[i].wake_fd = eventfd(0, EFD_CLOEXEC);
        if (srv->workers[i].wake_fd < 0) {
            rc = -errno;
            snprintf(err, errlen, "eventfd: %s", strerror(errno));
            net_server_destroy(srv);
            return rc;
        }
    }
    *out = srv;
    return 0;
}

size_t net_server_listen_count(const struct net_server *srv) { return srv->nlisten; }

enum smtp_listener net_server_listen_kind(const struct net_server *srv, size_t i)
{
    return i < srv->nlisten ? srv->listen_kind[i] : SMTP_L_PLAIN;
}

void net_server_set_tls(struct net_server *srv, struct tls_server *ts) { srv->tls = ts; }

const char *net_server_listen_addr(const struct net_server *srv, size_t i)
{
    return i < srv->nlisten ? srv->listen_text[i] : NULL;
}

void net_server_stop(struct net_server *srv) { net_server_stop_drain(srv, NET_STOP_GRACE_MS); }

void net_server_stop_drain(struct net_server *srv, uint64_t grace_ms)
{
    /* relaxed: published by the release store of stop just below */
    atomic_store_explicit(&srv->stop_grace_ms, grace_ms, memory_order_relaxed);
    /* release: pairs with the acquire load in the worker's WAKE handler */
    atomic_store_explicit(&srv->stop, true, memory_order_release);
    for (unsigned i = 0; i < srv->nworkers; i++) {
        uint64_t one = 1;
        if (srv->workers[i].wake_fd >= 0) {
            ssize_t r = write(srv->workers[i].wake_fd, &one, sizeof(one));
            (void)r;
        }
    }
}

int net_server_run(struct net_server *srv, char *err, size_t errlen)
{
    unsigned created = 0;
    int rc = 0;
    for (size_t j = 0; j < srv->nlisten; j++) {
        if (srv->listen_kind[j] == SMTP_L_SMTPS && srv->tls == NULL) {
            snprintf(err, errlen, "listen_smtps %s: needs a tls { cert = ...; key = ...; } block",
                     srv->listen_text[j]);
            return -EINVAL;
        }
    }
    for (; created < srv->nworkers; created++) {
        rc = -pthread_create(&srv->workers[created].thread, NULL, net_worker_main,
                             &srv->workers[created]);
        if (rc < 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(-rc));
            break;
        }
    }
    pthread_mutex_lock(&srv->start_lock);
    while (srv->started < created)
        pthread_cond_wait(&srv->start_cond, &srv->start_lock);
    pthread_mutex_unlock(&srv->start_lock);
    for (unsigned i = 0; i < created; i++) {
        if (srv->workers[i].start_err < 0 && rc == 0) {
            rc = srv->workers[i].start_err;
            snprintf(err, errlen, "%s", srv->workers[i].start_msg);
        }
    }
    if (rc < 0)
        net_server_stop(srv);
    for (unsigned i = 0; i < created; i++)
        pthread_join(srv->workers[i].thread, NULL);
    return rc;
}

void net_server_stats(const struct net_server *srv, struct net_stats *st)
{
    memset(st, 0, sizeof(*st));
    for (unsigned i = 0; i < srv->nworkers; i++) {
        const struct net_worker *w = &srv->workers[i];
        st->accepted += w->accepted;
        st->sessions += w->smtp_final.sessions;
        st->messages += w->smtp_final.messages;
        st->commits += w->spool_final.commits;
        st->syncs += w->spool_final.syncs;
        st->sync_errors += w->spool_final.sync_errors;
        st->tasks += w->tasks_run;
        st->rejected += w->smtp_final.rejected;
        st->tempfailed += w->smtp_final.tempfailed;
        st->discarded += w->smtp_final.discarded;
        st->quarantined += w->smtp_final.quarantined;
    }
}

static uint64_t net_live_get(const _Atomic uint64_t *v)
{
    /* relaxed: pairs with the relaxed stores of net_worker_publish (a reading) */
    return atomic_load_explicit(v, memory_order_relaxed);
}

void net_server_live_stats(const struct net_server *srv, struct net_live_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < srv->nworkers; i++) {
        const struct net_worker *w = &srv->workers[i];
        out->st.accepted += net_live_get(&w->live.accepted);
        out->st.sessions += net_live_get(&w->live.sessions);
        out->st.messages += net_live_get(&w->live.messages);
        out->st.commits += net_live_get(&w->live.commits);
        out->st.syncs += net_live_get(&w->live.syncs);
        out->st.sync_errors += net_live_get(&w->live.sync_errors);
        out->st.tasks += net_live_get(&w->live.tasks);
        out->st.rejected += net_live_get(&w->live.rejected);
        out->st.tempfailed += net_live_get(&w->live.tempfailed);
        out->st.discarded += net_live_get(&w->live.discarded);
        out->st.quarantined += net_live_get(&w->live.quarantined);
        out->open += net_live_get(&w->live.open);
        out->refused_busy += net_live_get(&w->live.refused_busy);
        out->refused_per_ip += net_live_get(&w->live.refused_per_ip);
        out->timeouts += net_live_get(&w->live.timeouts);
        out->protocol_errors += net_live_get(&w->live.protocol_errors);
        out->rcpt_rejected += net_live_get(&w->live.rcpt_rejected);
        out->ended_quit += net_live_get(&w->live.ended_quit);
        out->ended_dropped += net_live_get(&w->live.ended_dropped);
        out->ended_error += net_live_get(&w->live.ended_error);
        out->ended_shutdown += net_live_get(&w->live.ended_shutdown);
        out->fsyncs += net_live_get(&w->live.fsyncs);
        out->fsync_ns_sum += net_live_get(&w->live.fsync_ns_sum);
        for (unsigned b = 0; b <= NET_FSYNC_BOUNDS; b++)
            out->fsync_buckets[b] += net_live_get(&w->live.fsync_buckets[b]);
    }
}

void net_server_destroy(struct net_server *srv)
{
    if (srv == NULL)
        return;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        struct net_worker *w = &srv->workers[i];
        for (size_t j = 0; j < NET_MAX_LISTEN; j++)
            if (w->listen_fd[j] >= 0)
                close(w->listen_fd[j]);
        if (w->wake_fd >= 0)
            close(w->wake_fd);
    }
    pthread_mutex_destroy(&srv->start_lock);
    pthread_cond_destroy(&srv->start_cond);
    free(srv->workers);
    free(srv);
}
