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
    } need[] = {{IORING_OP_ACCEPT, "ACCEPT"},
                {IORING_OP_RECV, "RECV"},
                {IORING_OP_SEND, "SEND"},
                {IORING_OP_FSYNC, "FSYNC"},
                {IORING_OP_TIMEOUT, "TIMEOUT"},
                {IORING_OP_READ, "READ"},
                {IORING_OP_CLOSE, "CLOSE"},
                {IORING_OP_POLL_ADD, "POLL_ADD"},
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

static int net_listen_socket(struct sockaddr_storage *ss, socklen_t len, bool reuseport, char *err,
                             size_t errlen, const char *text)
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

int net_server_create(const struct net_settings *set, const struct net_proto *proto,
                      const struct net_worker_hooks *hooks, void *hooks_arg,
                      struct sched_pool *pool, struct net_server **out, char *err, size_t errlen)
{
    *out = NULL;
    size_t nl = set->nlisten;
    if (nl > NET_MAX_LISTEN) {
        snprintf(err, errlen, "listen: at most %d addresses in all", NET_MAX_LISTEN);
        return -EINVAL;
    }
    if (nl == 0) {
        snprintf(err, errlen, "listen: between 1 and %d addresses are needed", NET_MAX_LISTEN);
        return -EINVAL;
    }
    int rc = net_probe_uring(err, errlen);
    if (rc < 0)
        return rc;
    struct net_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return -ENOMEM;
    srv->set = *set;
    srv->set.listen = NULL; /* not kept */
    srv->proto = proto;
    srv->hooks = hooks;
    srv->hooks_arg = hooks_arg;
    srv->nworkers = set->workers ? set->workers : 1;
    srv->pool = pool;
    if (sched_pool_size(pool) < srv->nworkers) {
        snprintf(err, errlen, "net_server_create: a scheduler of %u workers for %u net workers",
                 sched_pool_size(pool), srv->nworkers);
        free(srv);
        return -EINVAL;
    }
    srv->nlisten = nl;
    for (size_t j = 0; j < nl; j++) {
        srv->listen_kind[j] = set->listen[j].kind;
        srv->listen_tls[j] = set->listen[j].implicit_tls;
    }
    atomic_init(&srv->stop, false);
    atomic_init(&srv->stop_grace_ms, NET_STOP_GRACE_MS);
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
        w->proto = proto;
        w->id = i;
        w->wake_fd = -1;
        for (size_t j = 0; j < NET_MAX_LISTEN; j++)
            w->listen_fd[j] = -1;
    }
    for (size_t j = 0; j < nl; j++) {
        struct sockaddr_storage ss = set->listen[j].ss;
        socklen_t len = set->listen[j].len;
        const char *text = set->listen[j].text;
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

size_t net_server_listen_count(const struct net_server *srv)
{
    return srv->nlisten;
}

int net_server_listen_kind(const struct net_server *srv, size_t i)
{
    return i < srv->nlisten ? srv->listen_kind[i] : 0;
}

void net_server_set_tls(struct net_server *srv, struct tls_server *ts)
{
    srv->tls = ts;
}

const char *net_server_listen_addr(const struct net_server *srv, size_t i)
{
    return i < srv->nlisten ? srv->listen_text[i] : NULL;
}

void net_server_stop(struct net_server *srv)
{
    net_server_stop_drain(srv, NET_STOP_GRACE_MS);
}

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
        if (srv->listen_tls[j] && srv->tls == NULL) {
            snprintf(err, errlen, "listen %s: implicit TLS needs a TLS server",
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
        /* relaxed: pairs with the relaxed stores of net_worker_publish (a reading) */
        st->accepted += atomic_load_explicit(&w->live.accepted, memory_order_relaxed);
        st->open += atomic_load_explicit(&w->live.open, memory_order_relaxed);
        st->tasks += atomic_load_explicit(&w->live.tasks, memory_order_relaxed);
        st->refused_busy += atomic_load_explicit(&w->live.refused_busy, memory_order_relaxed);
        st->refused_per_ip += atomic_load_explicit(&w->live.refused_per_ip, memory_order_relaxed);
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
