/*
 * NAME
 *	lifecycle - signals, reload, graceful stop and privileges (see lifecycle.h)
 * DESCRIPTION
 *	One mutex (lc.lock) serialises reload, stop and the end: the objects
 *	lifecycle_start() borrowed are used only under it and only while
 *	lc.running, which lifecycle_fini() clears before sluiced.c destroys
 *	them.
 *
 *	A reload checks everything before it changes anything: the file
 *	loads, the TLS files load (a throw-away context), the auth_users
 *	file parses, the log file opens.  Only then are the bindings
 *	replaced (sink_engine_reload: all or nothing, so a binding that
 *	cannot be created refuses the reload) and the other run-time
 *	settings applied.
 *
 *	A fatal signal (lifecycle_crash_handlers) writes one plain line with
 *	write(2) to stderr and the log file, naming the binding and event
 *	whose sink code the crashing thread ran (the thread's note, kept by
 *	sinks/observe.c), then hands the signal to the handler that was
 *	there before (the default: a core dump; a sanitizer's report).  A
 *	stack overflow has no stack left for the handler (no sigaltstack on
 *	the workers): the process dies without the line.
 */
#include "core/client/tls_cfg.h"
#include "core/ops/lifecycle.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/smtpd/auth.h"
#include "core/cfg/cfg.h"
#include "core/base/log.h"
#include "net/net.h"
#include "net/tls.h"
#include "sinks/engine.h"

static struct {
    pthread_mutex_t lock;
    bool running; /* under lock */
    struct lifecycle_objs o;
    sigset_t set;
    pthread_t thread;
    bool thread_started;
    _Atomic uint64_t drain_ms; /* relaxed: read when a stop starts, any value is valid */
    atomic_int stops;          /* stop requests so far */
} lc = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- log settings ---- */

static int lifecycle_log_opts(const struct cfg *cfg, enum log_format *fmt, enum log_output *out,
                              enum log_level *lv, char *err, size_t errlen)
{
    if (log_format_parse(cfg->log_format, fmt) < 0 || log_level_parse(cfg->log_level, lv) < 0) {
        snprintf(err, errlen, "log_format or log_level: not a known value");
        return -1;
    }
    if (cfg->log_syslog || strcmp(cfg->log_file, "syslog") == 0)
        *out = LOG_OUT_SYSLOG;
    else if (cfg->log_file[0] != '\0')
        *out = LOG_OUT_FILE;
    else
        *out = LOG_OUT_STDERR;
    return 0;
}

int lifecycle_log_apply(const struct cfg *cfg, char *err, size_t errlen)
{
    enum log_format fmt;
    enum log_output out;
    enum log_level lv;
    if (lifecycle_log_opts(cfg, &fmt, &out, &lv, err, errlen) < 0)
        return -1;
    if (log_configure(fmt, out, cfg->log_file, err, errlen) < 0)
        return -1;
    log_set_level(lv);
    return 0;
}

/* ---- privileges ---- */

int lifecycle_user_check(const struct cfg *cfg, struct lifecycle_user *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    if (cfg->user == NULL) {
        if (geteuid() == 0)
            log_msg(LOG_WARN, "running as root: set user = \"NAME\"; in the configuration so that "
                              "sluiced binds its ports and then runs unprivileged");
        return 0;
    }
    struct passwd pw, *res = NULL;
    char buf[4096];
    int rc = getpwnam_r(cfg->user, &pw, buf, sizeof(buf), &res);
    if (res == NULL) {
        snprintf(err, errlen, "user \"%s\": %s", cfg->user,
                 rc == 0 ? "no such user" : strerror(rc));
        return -1;
    }
    if (geteuid() != 0) {
        if (pw.pw_uid == geteuid())
            return 0; /* already that user */
        snprintf(err, errlen,
                 "user \"%s\": switching to it needs sluiced to start as root (it runs as uid %u)",
                 cfg->user, (unsigned)geteuid());
        return -1;
    }
    u->set = true;
    snprintf(u->name, sizeof(u->name), "%s", cfg->user);
    u->uid = pw.pw_uid;
    u->gid = pw.pw_gid;
    return 0;
}

int lifecycle_drop(const struct cfg *cfg, const struct lifecycle_user *u, char *err, size_t errlen)
{
    if (!u->set)
        return 0;
    /* glibc applies these to every thread of the process (setxid broadcast) */
    if (initgroups(u->name, u->gid) < 0) {
        snprintf(err, errlen, "user \"%s\": initgroups: %s", u->name, strerror(errno));
        return -1;
    }
    if (setgid(u->gid) < 0 || setuid(u->uid) < 0) {
        snprintf(err, errlen, "user \"%s\": setgid/setuid: %s", u->name, strerror(errno));
        return -1;
    }
    if (u->uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
        snprintf(err, errlen, "user \"%s\": root privileges could be regained", u->name);
        return -1;
    }
    if (access(cfg->spool_dir, R_OK | W_OK | X_OK) < 0) {
        snprintf(err, errlen,
                 "spool_dir %s is not writable by user \"%s\" (uid %u): %s (chown the directory "
                 "and its files to that user)",
                 cfg->spool_dir, u->name, (unsigned)u->uid, strerror(errno));
        return -1;
    }
    log_msg(LOG_INFO, "running as user %s (uid %u, gid %u)", u->name, (unsigned)u->uid,
            (unsigned)u->gid);
    return 0;
}

/* ---- reload ---- */

static bool lifecycle_str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool lifecycle_addrs_eq(const struct cfg_sockaddr *a, size_t na,
                               const struct cfg_sockaddr *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].text, b[i].text) != 0)
            return false;
    return true;
}

/* Names, in one warning, the settings that changed but need a restart. */
static void lifecycle_warn_restart(const char *who, const struct cfg *old, const struct cfg *new)
{
    char list[512] = "";
    size_t n = 0;
#define LC_DIFF(cond, name)                                                                        \
    do {                                                                                           \
        if (cond)                                                                                  \
            n += (size_t)snprintf(list + n, n < sizeof(list) ? sizeof(list) - n : 0, "%s%s",       \
                                  n ? ", " : "", name);                                            \
    } while (0)
    LC_DIFF(!lifecycle_addrs_eq(old->listen, old->nlisten, new->listen, new->nlisten), "listen");
    LC_DIFF(!lifecycle_addrs_eq(old->listen_smtps, old->nlisten_smtps, new->listen_smtps,
                                new->nlisten_smtps),
            "listen_smtps");
    LC_DIFF(!lifecycle_addrs_eq(old->listen_submission, old->nlisten_submission,
                                new->listen_submission, new->nlisten_submission),
            "listen_submission");
    LC_DIFF(!lifecycle_str_eq(old->spool_dir, new->spool_dir), "spool_dir");
    LC_DIFF(old->workers != new->workers, "workers");
    LC_DIFF(!lifecycle_str_eq(old->hostname, new->hostname), "hostname");
    LC_DIFF(!lifecycle_str_eq(old->user, new->user), "user");
    LC_DIFF(!lifecycle_str_eq(old->auth_users, new->auth_users), "auth_users (the path)");
    LC_DIFF(!lifecycle_str_eq(old->relayhost, new->relayhost), "relayhost");
    LC_DIFF(!lifecycle_str_eq(old->maildir_root, new->maildir_root), "maildir_root");
    LC_DIFF(old->max_message_size != new->max_message_size, "max_message_size");
    LC_DIFF(old->max_connections != new->max_connections, "max_connections");
    LC_DIFF(old->max_conn_per_ip != new->max_conn_per_ip, "max_conn_per_ip");
    LC_DIFF(old->max_recipients != new->max_recipients, "max_recipients");
    LC_DIFF(old->idle_timeout_ms != new->idle_timeout_ms, "idle_timeout");
    LC_DIFF(old->nrelay_domains != new->nrelay_domains, "relay_domains");
    LC_DIFF(old->nmynetworks != new->nmynetworks, "mynetworks");
    LC_DIFF(!lifecycle_str_eq(old->admin_listen, new->admin_listen), "admin_listen");
    LC_DIFF(!lifecycle_str_eq(old->control_socket, new->control_socket), "control_socket");
#undef LC_DIFF
    if (n > 0)
        log_msg(LOG_WARN, "%s: changed settings that need a restart (the running values stay): %s",
                who, list);
}

/* who: "SIGHUP" or "reload" (sluicectl), the prefix of the log lines. */
static int lifecycle_reload_locked(const char *who, char *err, size_t errlen)
{
    const struct lifecycle_objs *o = &lc.o;
    struct cfg *nc = cfg_load(o->conf, o->ov, o->nov, err, errlen);
    if (nc == NULL)
        return -1;
    int rc = -1;
    char why[512];
    /* bindings */
    /* TLS: the running context re-reads its files; a new block or new
     * paths need a restart, but the files named must load all the same */
    struct tls_opts topts;
    int trc = tls_cfg_opts(nc, &topts, why, sizeof(why));
    if (trc < 0) {
        snprintf(err, errlen, "%s", why);
        goto out;
    }
    if (trc > 0) {
        struct tls_server *t = tls_server_create(&topts, why, sizeof(why));
        if (t == NULL) {
            snprintf(err, errlen, "%s; the previous certificate stays in use", why);
            goto out;
        }
        tls_server_destroy(t);
    }
    /* auth_users */
    if (nc->auth_users != NULL) {
        struct auth_store *a = auth_store_create(nc->auth_users, why, sizeof(why));
        if (a == NULL) {
            snprintf(err, errlen, "auth_users: %s; the previous users stay", why);
            goto out;
        }
        auth_store_destroy(a);
    }
    /* log: the file must open */
    enum log_format fmt;
    enum log_output lout;
    enum log_level lv;
    if (lifecycle_log_opts(nc, &fmt, &lout, &lv, err, errlen) < 0)
        goto out;
    if (lout == LOG_OUT_FILE) {
        int fd = open(nc->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd < 0) {
            snprintf(err, errlen, "log_file %s: %s", nc->log_file, strerror(errno));
            goto out;
        }
        close(fd);
    }

    /* everything checked: apply */
    if (sink_engine_reload(o->engine, nc, err, errlen) < 0)
        goto out;
    if (log_configure(fmt, lout, nc->log_file, why, sizeof(why)) < 0)
        log_msg(LOG_ERROR, "reload: %s; the previous log output stays", why);
    log_set_level(lv);
    atomic_store_explicit(&lc.drain_ms, nc->drain_timeout_ms, memory_order_relaxed);
    if (o->tls != NULL && tls_server_reload(o->tls, why, sizeof(why)) < 0)
        log_msg(LOG_ERROR, "%s: %s; the previous certificate stays in use", who, why);
    else if (o->tls != NULL)
        log_msg(LOG_INFO, "%s: TLS certificate and key reloaded", who);
    if ((o->tls != NULL) != (trc > 0))
        log_msg(LOG_WARN, "%s: the tls block was %s: that needs a restart", who,
                trc > 0 ? "added" : "removed");
    if (o->auth != NULL && lifecycle_str_eq(o->cfg->auth_users, nc->auth_users)) {
        if (auth_store_reload(o->auth, why, sizeof(why)) < 0)
            log_msg(LOG_ERROR, "%s: auth_users: %s; the previous users stay", who, why);
        else
            log_msg(LOG_INFO, "%s: auth_users reloaded", who);
    }
    lifecycle_warn_restart(who, o->cfg, nc);
    log_msg(LOG_INFO, "%s: configuration %s reloaded (log settings, drain_timeout%s%s, bindings)",
            who, o->conf ? o->conf : "(defaults)", o->tls ? ", TLS certificate and key" : "",
            o->auth ? ", auth_users" : "");
    rc = 0;
out:
    cfg_destroy(nc);
    return rc;
}

static int lifecycle_reload(const char *who, char *err, size_t errlen)
{
    pthread_mutex_lock(&lc.lock);
    int rc = -1;
    if (!lc.running)
        snprintf(err, errlen, "sluiced is not running (starting or stopping)");
    else
        rc = lifecycle_reload_locked(who, err, errlen);
    pthread_mutex_unlock(&lc.lock);
    if (rc < 0)
        log_msg(LOG_ERROR, "%s: %s (reload refused: the running configuration stays)", who, err);
    return rc;
}

int sluiced_reload(char *err, size_t errlen)
{
    return lifecycle_reload("reload", err, errlen);
}

/* ---- stop ---- */

void sluiced_stop(bool drain)
{
    pthread_mutex_lock(&lc.lock);
    if (lc.running) {
        /* relaxed: a plain setting, no data is published through it */
        uint64_t ms = drain ? atomic_load_explicit(&lc.drain_ms, memory_order_relaxed) : 0;
        atomic_fetch_add_explicit(&lc.stops, 1, memory_order_relaxed); /* a count only */
        char msbuf[24];
        snprintf(msbuf, sizeof(msbuf), "%llu", (unsigned long long)ms);
        log_kv(LOG_INFO, drain ? "stopping: listeners closed, sessions drain" : "stopping now",
               "drain_ms", msbuf, NULL);
        net_server_stop_drain(lc.o.srv, ms);
    }
    pthread_mutex_unlock(&lc.lock);
}

/* ---- signals ---- */

static void *lifecycle_signal_thread(void *arg)
{
    (void)arg;
    log_set_thread_tag("sig");
    int terms = 0;
    for (;;) {
        int sig = 0;
        if (sigwait(&lc.set, &sig) != 0)
            continue;
        char err[512];
        switch (sig) {
        case SIGTERM:
        case SIGINT:
            log_msg(LOG_INFO, "%s received%s", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                    terms ? " again: stopping without waiting for sessions" : "");
            sluiced_stop(terms++ == 0);
            break;
        case SIGHUP:
            lifecycle_reload("SIGHUP", err, sizeof(err)); /* logs the outcome */
            break;
        case SIGUSR1:
            if (log_reopen(err, sizeof(err)) < 0)
                log_msg(LOG_ERROR, "SIGUSR1: %s", err);
            else
                log_msg(LOG_INFO, "SIGUSR1: log file reopened");
            break;
        case SIGUSR2:
            pthread_mutex_lock(&lc.lock);
            if (lc.running && lc.o.engine != NULL)
                sink_engine_print_stats(lc.o.engine, stderr);
            pthread_mutex_unlock(&lc.lock);
            break;
        default:
            break;
        }
    }
    return NULL;
}

int lifecycle_start(const struct lifecycle_objs *o, const sigset_t *set)
{
    pthread_mutex_lock(&lc.lock);
    lc.o = *o;
    lc.set = *set;
    atomic_store_explicit(&lc.drain_ms, o->cfg->drain_timeout_ms, memory_order_relaxed);
    lc.running = true;
    pthread_mutex_unlock(&lc.lock);
    if (!lc.thread_started) {
        int rc = pthread_create(&lc.thread, NULL, lifecycle_signal_thread, NULL);
        if (rc != 0)
            return -1;
        pthread_detach(lc.thread); /* it waits for signals until the process ends */
        lc.thread_started = true;
    }
    return 0;
}

void lifecycle_fini(void)
{
    pthread_mutex_lock(&lc.lock);
    lc.running = false;
    pthread_mutex_unlock(&lc.lock);
}

/* ---- a fatal signal's last line ---- */

static const int lifecycle_crash_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
#define LIFECYCLE_NCRASH (sizeof(lifecycle_crash_sigs) / sizeof(lifecycle_crash_sigs[0]))
/* What was there before ours: written once before any thread exists, then
 * only read (by the handler, which puts it back). */
static struct sigaction lifecycle_crash_old[LIFECYCLE_NCRASH];

static size_t lifecycle_put(char *buf, size_t len, size_t at, const char *s)
{
    while (*s != '\0' && at + 1 < len)
        buf[at++] = *s++;
    return at;
}

/* Async-signal-safe throughout: no stdio, no malloc, no locks. */
static void lifecycle_crash(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    static const char *const names[] = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT"};
    unsigned i = 0;
    while (i < LIFECYCLE_NCRASH - 1 && lifecycle_crash_sigs[i] != sig)
        i++;
    char line[640], where[512];
    size_t n = lifecycle_put(line, sizeof(line), 0, "sluiced: fatal signal ");
    n = lifecycle_put(line, sizeof(line), n, names[i]);
    if (sink_crash_describe(where, sizeof(where)) > 0) {
        n = lifecycle_put(line, sizeof(line), n, " in sink code: ");
        n = lifecycle_put(line, sizeof(line), n, where);
    } else {
        n = lifecycle_put(line, sizeof(line), n, " (not in a sink's code)");
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    int fd = log_crash_fd();
    if (fd >= 0 && fd != STDERR_FILENO)
        w = write(fd, line, n);
    (void)w;
    sigaction(sig, &lifecycle_crash_old[i], NULL);
    /* A fault the kernel raised happens again when we return, now for the
     * old handler (the default: a core dump) with its real context; a
     * signal sent or raised (abort) is raised again. */
    if (si != NULL && si->si_code > 0 && sig != SIGABRT)
        return;
    raise(sig);
}

void lifecycle_crash_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = lifecycle_crash;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < LIFECYCLE_NCRASH; i++)
        sigaction(lifecycle_crash_sigs[i], &sa, &lifecycle_crash_old[i]);
}
