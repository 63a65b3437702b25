/*
 * NAME
 *	ctl - the control socket server inside sluiced
 * SYNOPSIS
 *	#include "core/ops/ctl.h"
 * DESCRIPTION
 *	One thread: poll on the listening socket and a wake pipe, accept one
 *	client, read its request line (bounded in size and by
 *	CTL_IO_TIMEOUT_MS), check the peer's uid, run the verb, write the
 *	reply, close.  Verbs are a table (ctl_verbs): name, argument count,
 *	handler.  A handler returns the reply (malloc'd JSON text) and may
 *	name an action to run after the reply is written (stop: the client
 *	hears "ok" before the daemon goes).
 *
 *	Queue verbs go through qmgr_control() (the queue manager's own thread
 *	answers); status reads counters that are safe to read from any thread
 *	(qmgr_get_stats, smtpd_live_stats, spool_usage); the bindings verbs are in
 *	ctl_bindings.c.
 * DIAGNOSTICS
 *	Failures on one connection cost only
 *	that connection; the thread carries on.
 */
#include "core/ops/ctl.h"
#include "core/ops/ctl_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/base/clock.h"
#include "core/base/json.h"
#include "core/base/log.h"
#include "core/queue/qmgr.h"
#include "core/smtpd/worker.h"
#include "storage/spool.h"

struct ctl_verb {
    const char *name;
    size_t min_args, max_args;
    ctl_verb_fn *run;
    const char *qverb; /* for the queue verbs: qmgr_control's verb */
};

/* ---- verbs ---- */

static const struct ctl_verb *ctl_find_verb(const char *name);

/* "key": {"name": n, ...} */
static void ctl_counts(struct json_buf *b, const char *key, const char *const *names,
                       const uint64_t *v, size_t n)
{
    json_key(b, key);
    json_obj(b);
    for (size_t i = 0; i < n; i++) {
        json_key(b, names[i]);
        json_uint(b, v[i]);
    }
    json_end(b);
}

static char *ctl_status(struct ctl_server *cs, const struct ctl_request *rq, enum ctl_after *after)
{
    struct json_buf b;
    json_init_grow(&b);
    json_spaced(&b);
    json_obj(&b);
    json_key(&b, "version");
    json_str(&b, cs->h.version);
    json_key(&b, "pid");
    json_int(&b, (int64_t)getpid());
    json_key(&b, "uptime_s");
    json_uint(&b, (clock_mono_ms() - cs->started_ms) / 1000);
    json_key(&b, "workers");
    json_uint(&b, cs->h.workers);
    if (cs->h.qm != NULL) {
        static const char *const k[] = {"queued",      "active", "deferred",  "held",
                                        "delivered",   "failed", "deferrals", "bounces",
                                        "connections", "reused"};
        struct qmgr_stats q;
        qmgr_get_stats(cs->h.qm, &q);
        const uint64_t v[] = {q.queued, q.active,    q.deferred, q.held,        q.delivered,
                              q.failed, q.deferrals, q.bounces,  q.connections, q.reused};
        ctl_counts(&b, "queue", k, v, 10);
    }
    if (cs->h.srv != NULL) {
        static const char *const k[] = {"connections", "accepted", "sessions", "messages",
                                        "rejected"};
        struct smtpd_live_stats ns;
        smtpd_live_stats(cs->h.srv, &ns);
        const uint64_t v[] = {ns.open, ns.st.accepted, ns.st.sessions, ns.st.messages,
                              ns.st.rejected};
        ctl_counts(&b, "net", k, v, 5);
    }
    if (cs->h.spool != NULL) {
        static const char *const k[] = {"bytes", "segments", "live_bytes", "live_messages"};
        struct spool_usage u;
        spool_usage(cs->h.spool, &u);
        const uint64_t v[] = {u.bytes, u.segments, u.live_bytes, u.live_messages};
        ctl_counts(&b, "spool", k, v, 4);
    }
    json_end(&b);
    char *res = json_take(&b);
    char *r = res ? ctl_reply_ok(res) : NULL;
    free(res);
    return r;
}

static char *ctl_queue(struct ctl_server *cs, const struct ctl_request *rq, enum ctl_after *after)
{
    const struct ctl_verb *v = ctl_find_verb(rq->verb);
    const char *arg = rq->nargs > 0 ? rq->args[0] : "";
    if (cs->h.qm == NULL)
        return ctl_reply_error("%s: no queue manager in this daemon", rq->verb);
    char *out = NULL;
    int rc = qmgr_control(cs->h.qm, v->qverb, arg, &out);
    char *r;
    if (rc == 0 && out != NULL)
        r = ctl_reply_ok(out);
    else if (rc == -ENOENT)
        r = ctl_reply_error("%s: no such message: %s", rq->verb, arg);
    else if (rc == -EINVAL)
        r = ctl_reply_error("%s: bad argument '%s'%s", rq->verb, arg,
                            strcmp(v->qverb, "release") == 0 ? " (or the message is not held)"
                                                             : " (an ID is 16 hex digits)");
    else if (rc == -EBUSY)
        r = ctl_reply_error("%s: %s is being delivered right now; try again", rq->verb, arg);
    else if (rc == -ESHUTDOWN)
        r = ctl_reply_error("%s: the queue manager is not running", rq->verb);
    else if (rc == -ETIMEDOUT)
        r = ctl_reply_error("%s: the queue manager did not answer in time", rq->verb);
    else
        r = ctl_reply_error("%s: %s", rq->verb, strerror(rc < 0 ? -rc : ENOMEM));
    free(out);
    return r;
}

static char *ctl_reload(struct ctl_server *cs, const struct ctl_request *rq, enum ctl_after *after)
{
    if (cs->h.reload == NULL) {
        if (kill(getpid(), SIGHUP) < 0)
            return ctl_reply_error("reload: %s", strerror(errno));
        return ctl_reply_ok("{\"reloaded\": \"signalled\"}");
    }
    char err[512] = "";
    if (cs->h.reload(err, sizeof(err)) < 0)
        return ctl_reply_error("reload: the new configuration was rejected (the old one stays): %s",
                               err[0] ? err : "no reason given");
    return ctl_reply_ok("{\"reloaded\": true}");
}

static char *ctl_stop(struct ctl_server *cs, const struct ctl_request *rq, enum ctl_after *after)
{
    bool drain = false;
    for (size_t i = 0; i < rq->nargs; i++) {
        if (strcmp(rq->args[i], "--drain") != 0)
            return ctl_reply_error("stop: unknown argument '%s'", rq->args[i]);
        drain = true;
    }
    *after = drain ? CTL_AFTER_DRAIN : CTL_AFTER_STOP;
    return ctl_reply_ok(drain ? "{\"stopping\": \"drain\"}" : "{\"stopping\": true}");
}

/* clang-format off */
static const struct ctl_verb ctl_verbs[] = {
    {"status", 0, 0, ctl_status, NULL},
    {"queue list", 0, 0, ctl_queue, "list"},
    {"queue show", 1, 1, ctl_queue, "show"},
    {"queue flush", 0, 1, ctl_queue, "flush"},
    {"queue delete", 1, 1, ctl_queue, "delete"},
    {"queue hold", 1, 1, ctl_queue, "hold"},
    {"queue release", 1, 1, ctl_queue, "release"},
    {"queue bounce", 1, 1, ctl_queue, "bounce"},
    {"reload", 0, 0, ctl_reload, NULL},
    {"stop", 0, 1, ctl_stop, NULL},
    {"bindings list", 0, 0, ctl_bindings_list, NULL},
    {"bindings enable", 1, 1, ctl_bindings_enable, NULL},
    {"bindings disable", 1, 1, ctl_bindings_enable, NULL},
    {"bindings add", 1, CTL_MAX_ARGS, ctl_bindings_add, NULL},
    {"bindings remove", 1, 1, ctl_bindings_remove, NULL},
    {"bindings setprop", 2, 3, ctl_bindings_setprop, NULL},
};
/* clang-format on */

static const struct ctl_verb *ctl_find_verb(const char *name)
{
    for (size_t i = 0; i < sizeof(ctl_verbs) / sizeof(ctl_verbs[0]); i++)
        if (strcmp(ctl_verbs[i].name, name) == 0)
            return &ctl_verbs[i];
    return NULL;
}

/* ---- one connection ---- */

/* Reads up to the first newline (or EOF); -1 on timeout, error or a line
 * too long.  *len excludes nothing: the caller's parser strips it. */
static int ctl_read_line(int fd, char *buf, size_t cap, size_t *len, uint64_t deadline)
{
    size_t n = 0;
    for (;;) {
        uint64_t now = clock_mono_ms();
        if (now >= deadline)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return -1;
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        n += (size_t)r;
        if (memchr(buf, '\n', n) != NULL)
            break;
        if (n == cap)
            return -1;
    }
    *len = n;
    return 0;
}

static void ctl_write_all(int fd, const char *s, size_t n, uint64_t deadline)
{
    while (n > 0) {
        uint64_t now = clock_mono_ms();
        if (now >= deadline)
            return;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int pr = poll(&p, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return;
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Whatever the client sent beyond what was read (bounded): closing with
 * unread data would reset the connection before it reads the reply. */
static void ctl_drain(int fd)
{
    char scratch[4096];
    for (int i = 0; i < 64; i++)
        if (recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) <= 0)
            break;
}

static char *ctl_dispatch(struct ctl_server *cs, const char *line, size_t len,
                          enum ctl_after *after)
{
    struct ctl_request rq;
    char err[256];
    if (ctl_request_parse(line, len, &rq, err, sizeof(err)) < 0)
        return ctl_reply_error("bad request: %s", err);
    const struct ctl_verb *v = ctl_find_verb(rq.verb);
    char *r;
    if (v == NULL)
        r = ctl_reply_error("unknown verb '%s'", rq.verb);
    else if (rq.nargs < v->min_args || rq.nargs > v->max_args)
        r = ctl_reply_error("%s: wrong number of arguments (%zu)", rq.verb, rq.nargs);
    else
        r = v->run(cs, &rq, after);
    if (v != NULL && strcmp(rq.verb, "status") != 0 && strcmp(rq.verb, "queue list") != 0 &&
        strcmp(rq.verb, "queue show") != 0 && strcmp(rq.verb, "bindings list") != 0)
        log_msg(LOG_INFO, "control: %s%s%s", rq.verb, rq.nargs ? " " : "",
                rq.nargs ? rq.args[0] : "");
    ctl_request_fini(&rq);
    return r;
}

static void ctl_serve(struct ctl_server *cs, int fd)
{
    uint64_t deadline = clock_mono_ms() + CTL_IO_TIMEOUT_MS;
    char *buf = malloc(CTL_MAX_REQUEST + 2);
    size_t len = 0;
    enum ctl_after after = CTL_AFTER_NONE;
    char *reply = NULL;
    struct ucred cred;
    socklen_t cl = sizeof(cred);
    /* the request is read before the peer is checked: closing with unread
     * data would reset the connection, and a refused client could not read
     * why */
    int rd = buf != NULL ? ctl_read_line(fd, buf, CTL_MAX_REQUEST + 2, &len, deadline) : -1;
    if (buf == NULL) {
        reply = NULL;
    } else if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
        reply = ctl_reply_error("cannot identify the client: %s", strerror(errno));
    } else if (cred.uid != 0 && cred.uid != geteuid()) {
        log_msg(LOG_WARN, "control: refused uid %ld (pid %ld)", (long)cred.uid, (long)cred.pid);
        reply = ctl_reply_error("permission denied: uid %ld is neither root nor the daemon's "
                                "user (uid %ld)",
                                (long)cred.uid, (long)geteuid());
    } else if (rd < 0) {
        reply = ctl_reply_error("bad request: no complete line within %d ms or longer than %d "
                                "bytes",
                                CTL_IO_TIMEOUT_MS, CTL_MAX_REQUEST);
    } else {
        reply = ctl_dispatch(cs, buf, len, &after);
    }
    if (reply == NULL && buf != NULL)
        reply = ctl_reply_error("out of memory");
    if (rd < 0)
        ctl_drain(fd);
    if (reply != NULL)
        ctl_write_all(fd, reply, strlen(reply), clock_mono_ms() + CTL_IO_TIMEOUT_MS);
    free(reply);
    free(buf);
    if (after == CTL_AFTER_NONE)
        return;
    shutdown(fd, SHUT_RDWR); /* the client sees the end of the reply before we go */
    if (cs->h.stop != NULL)
        cs->h.stop(after == CTL_AFTER_DRAIN);
    else
        kill(getpid(), SIGTERM);
}

static void *ctl_thread(void *arg)
{
    struct ctl_server *cs = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = cs->fd, .events = POLLIN},
                              {.fd = cs->wake[0], .events = POLLIN}};
        int pr = poll(p, 2, -1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0 || p[1].revents != 0)
            break;
        int cfd = accept4(cs->fd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
            continue; /* the client went away first, or EMFILE: poll again */
        ctl_serve(cs, cfd);
        close(cfd);
    }
    return NULL;
}

/* ---- start and stop ---- */

static int ctl_fail(bool best_effort, char *err, size_t errlen, const char *path, const char *why,
                    int e)
{
    snprintf(err, errlen, "control socket %s: %s%s%s", path, why, e ? ": " : "",
             e ? strerror(e) : "");
    if (!best_effort)
        return -1;
    log_msg(LOG_WARN, "%s; running without a control socket (set control_socket to fix this)", err);
    return 0;
}

/* 1: a daemon accepts on path; 0: nobody (stale); -errno: cannot tell. */
static int ctl_probe(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ? 1 : -errno;
    close(fd);
    return rc == -ECONNREFUSED ? 0 : rc;
}

int ctl_server_start(const char *path, bool best_effort, const struct ctl_hooks *hooks,
                     struct ctl_server **out, char *err, size_t errlen)
{
    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return ctl_fail(best_effort, err, errlen, path, "path longer than 107 bytes", 0);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return ctl_fail(best_effort, err, errlen, path, "exists and is not a socket", 0);
        int pr = ctl_probe(&sa);
        if (pr == 1)
            return ctl_fail(best_effort, err, errlen, path,
                            "another sluiced is listening on it (stop it first)", 0);
        if (pr < 0)
            return ctl_fail(best_effort, err, errlen, path, "cannot probe the existing socket",
                            -pr);
        if (unlink(path) < 0 && errno != ENOENT)
            return ctl_fail(best_effort, err, errlen, path, "cannot remove the stale socket",
                            errno);
    } else if (errno != ENOENT) {
        return ctl_fail(best_effort, err, errlen, path, "", errno);
    }
    struct ctl_server *cs = calloc(1, sizeof(*cs));
    if (cs == NULL || (cs->path = strdup(path)) == NULL) {
        free(cs);
        return ctl_fail(best_effort, err, errlen, path, "", ENOMEM);
    }
    cs->h = *hooks;
    cs->wake[0] = cs->wake[1] = -1;
    cs->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int e = 0;
    const char *what = "";
    if (cs->fd < 0) {
        e = errno, what = "socket";
    } else if (bind(cs->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        e = errno, what = "bind";
    } else if (chmod(path, 0600) < 0 || stat(path, &st) < 0) {
        e = errno, what = "chmod";
        unlink(path);
    } else if (listen(cs->fd, 16) < 0 || pipe2(cs->wake, O_CLOEXEC) < 0) {
        e = errno, what = "listen";
        unlink(path);
    }
    if (e == 0) {
        cs->dev = st.st_dev;
        cs->ino = st.st_ino;
        cs->started_ms = clock_mono_ms();
        e = pthread_create(&cs->thread, NULL, ctl_thread, cs);
        what = "thread";
        if (e != 0)
            unlink(path);
    }
    if (e != 0) {
        if (cs->fd >= 0)
            close(cs->fd);
        if (cs->wake[0] >= 0) {
            close(cs->wake[0]);
            close(cs->wake[1]);
        }
        free(cs->path);
        free(cs);
        return ctl_fail(best_effort, err, errlen, path, what, e);
    }
    log_msg(LOG_INFO, "control socket %s", path);
    *out = cs;
    return 0;
}

int ctl_server_chown(struct ctl_server *cs, uid_t uid, gid_t gid)
{
    if (cs == NULL)
        return 0;
    return chown(cs->path, uid, gid) < 0 ? -errno : 0;
}

void ctl_server_stop(struct ctl_server *cs)
{
    if (cs == NULL)
        return;
    char c = 1;
    while (write(cs->wake[1], &c, 1) < 0 && errno == EINTR)
        ;
    pthread_join(cs->thread, NULL);
    struct stat st;
    /* only our own file: a newer daemon may have replaced a stale one */
    if (lstat(cs->path, &st) == 0 && st.st_dev == cs->dev && st.st_ino == cs->ino)
        unlink(cs->path);
    close(cs->fd);
    close(cs->wake[0]);
    close(cs->wake[1]);
    free(cs->path);
    free(cs);
}
