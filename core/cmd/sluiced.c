/*
 * NAME
 *	sluiced - the sluice mail transfer agent daemon
 * SYNOPSIS
 *	sluiced [-c FILE] [-o key=value ...] [--check] [--bindings] [--help] [--version]
 * DESCRIPTION
 *	Loads the configuration (defaults when no file is named), opens and
 *	recovers the spool, binds the listeners, switches to the configured
 *	`user` when started as root, runs the workers in the foreground and
 *	stops on SIGTERM or SIGINT (core/ops/lifecycle.h): listeners close,
 *	sessions get drain_timeout to finish their message, then 421; group
 *	commits in flight finish, then it exits 0 after one line of counters
 *	on stderr:
 *	  sluiced stats: sessions=N messages=N commits=N syncs=N rejected=N
 *	                 tempfailed=N discarded=N quarantined=N tasks=N
 *	--check loads the configuration (bindings and their sinks included),
 *	prints any error, and exits; --bindings prints the resolved chain of
 *	every event and exits.  SIGUSR2 prints the per-binding statistics to
 *	stderr (they are printed at exit too, when bindings exist); SIGUSR1
 *	reopens the log file (log_file).
 *	With a `tls { cert; key; }` block, STARTTLS is offered and the
 *	listen_smtps addresses speak implicit TLS; a missing, unreadable or
 *	mismatched key is a start-up error naming the file.  SIGHUP reloads
 *	the configuration: what can change at run time (log settings, the
 *	certificate and key, auth_users, drain_timeout) is applied, a file
 *	that does not load is refused with the reason and the old settings
 *	stay (docs/operations.md).
 *
 *	main() is its steps in order: parse the arguments, load the
 *	configuration and what it names, answer --check or --bindings, open
 *	the scheduler, queue manager and spool, start the servers, run, stop.
 *	The signals the signal thread takes are blocked only once the files
 *	are read, just before the first thread starts, so a start that hangs
 *	still ends on SIGTERM; those files must be regular files (a FIFO is
 *	refused: "configuration: PATH: not a regular file").
 *
 *	A full spool file system does not stop the start: the spool keeps a
 *	reserve for the queue manager's records (spool_reserve_init), the SMTP
 *	service answers MAIL with 452 4.3.1 and queued mail is delivered
 *	until space comes back (docs/spool-format.md, Full disk).
 *	Everything the daemon owns is in one struct sluiced, and one
 *	sluiced_teardown() frees what exists in the reverse order of creation,
 *	whichever step failed.
 * DIAGNOSTICS
 *	Start-up errors are one line on stderr naming the cause; exit 1 (bad
 *	usage 2).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ops/admin.h"
#include "core/smtpd/auth.h"
#include "core/cfg/cfg.h"
#include "core/ops/ctl.h"
#include "core/ops/lifecycle.h"
#include "net/tls.h"
#include "core/base/log.h"
#include "core/queue/qmgr.h"
#include "core/queue/route.h"
#include "net/net.h"
#include "core/client/tls_cfg.h"
#include "core/smtpd/smtp.h"
#include "core/smtpd/worker.h"
#include "sched/sched.h"
#include "sinks/engine.h"
#include "storage/spool.h"

#define SLUICE_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "usage: sluiced [-c FILE] [-o key=value ...] [--check] [--bindings]\n"
               "  -c FILE       configuration file (UCL or JSON); without it, defaults\n"
               "  -o key=value  override one setting (repeatable)\n"
               "  --check       load the configuration, report errors, exit\n"
               "  --bindings    print the resolved event-sink chains, exit\n"
               "  --version     print the version\n"
               "See docs/config.md for every setting.\n");
}

/* The queue manager's spool writer: its segments are seg-ff-*. */
#define SLUICE_QMGR_WRITER 255

/* Everything the daemon owns, in the order it is created; a NULL member
 * was not (or not yet) created. */
struct sluiced {
    /* arguments */
    const char *conf; /* -c FILE (borrowed from argv), NULL: defaults */
    const char **ov;  /* -o key=value (the strings borrowed from argv) */
    size_t nov;
    bool check, bindings;
    sigset_t sigs; /* the signals only the signal thread takes */
    /* configuration and what it names */
    struct cfg *cfg;
    struct lifecycle_user user;
    bool auth_ready; /* sluiced_auth holds a store or limit */
    struct sink_engine *engine;
    struct tls_opts topts;
    struct tls_server *tls;
    unsigned nworkers;
    /* the machine */
    struct sched_pool *pool;
    struct qmgr *qm;
    struct spool *sp;
    /* the servers */
    struct smtpd *srv; /* the inbound SMTP service (core/smtpd/worker.h) */
    struct admin_server *admin;
    struct ctl_server *ctl;
    bool running; /* lifecycle_start() was called */
    char err[512];
};

static const char *sluiced_conf_name(const struct sluiced *d)
{
    return d->conf ? d->conf : "(defaults)";
}

/* SMTP AUTH: the password file and the failure limit, for every worker;
 * the pool is set once the scheduler exists. */
static struct auth_service sluiced_auth;

static void sluiced_auth_fini(void)
{
    auth_service_install(NULL);
    auth_store_destroy(sluiced_auth.store);
    auth_limit_destroy(sluiced_auth.limit);
    auth_limit_destroy(sluiced_auth.users);
    auth_limit_destroy(sluiced_auth.known);
    memset(&sluiced_auth, 0, sizeof(sluiced_auth));
}

static int sluiced_auth_init(const struct cfg *cfg, char *err, size_t errlen)
{
    if (cfg->auth_users != NULL &&
        (sluiced_auth.store = auth_store_create(cfg->auth_users, err, errlen)) == NULL)
        return -1;
    sluiced_auth.limit =
        auth_limit_create(cfg->auth_max_failures, cfg->auth_failure_window_ms, 16384);
    if (cfg->auth_user_max_failures > 0)
        sluiced_auth.users =
            auth_limit_create(cfg->auth_user_max_failures, cfg->auth_failure_window_ms, 16384);
    /* the pairs that logged in: exempt from the per-user budget, and go on
     * (within a budget of their own) from a blocked network */
    bool known = cfg->auth_user_max_failures > 0 || cfg->auth_max_failures > 0;
    if (known)
        sluiced_auth.known = auth_limit_create(1, AUTH_KNOWN_WINDOW_MS, 16384);
    sluiced_auth.delay_ms = cfg->auth_failure_delay_ms;
    if (sluiced_auth.limit == NULL || (known && sluiced_auth.known == NULL) ||
        (cfg->auth_user_max_failures > 0 && sluiced_auth.users == NULL)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Before any thread exists (sinks start their own at creation): every
 * thread inherits this mask, and only the signal thread takes them.  Not
 * earlier than that: until the files the configuration names are read, a
 * SIGTERM must still end the process (timeout(1) on a start that hangs). */
static void sluiced_block_signals(struct sluiced *d)
{
    sigemptyset(&d->sigs);
    sigaddset(&d->sigs, SIGTERM);
    sigaddset(&d->sigs, SIGINT);
    sigaddset(&d->sigs, SIGHUP);
    sigaddset(&d->sigs, SIGUSR1);
    sigaddset(&d->sigs, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &d->sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* -1: go on; otherwise the exit status (--help, --version, bad usage). */
static int sluiced_parse_args(struct sluiced *d, int argc, char **argv)
{
    d->ov = calloc((size_t)argc + 1, sizeof(*d->ov));
    if (d->ov == NULL) {
        fprintf(stderr, "sluiced: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            d->conf = argv[++i];
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            d->ov[d->nov++] = argv[++i];
        } else if (strncmp(argv[i], "-o", 2) == 0 && argv[i][2]) {
            d->ov[d->nov++] = argv[i] + 2;
        } else if (strcmp(argv[i], "--check") == 0) {
            d->check = true;
        } else if (strcmp(argv[i], "--bindings") == 0) {
            d->bindings = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("sluiced %s\n", SLUICE_VERSION);
            return 0;
        } else {
            fprintf(stderr, "sluiced: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    return -1;
}

/* The configuration and what it names: log settings, user, AUTH, the
 * bindings and their sinks, TLS.  0, or -1 after printing the error. */
static int sluiced_load_config(struct sluiced *d)
{
    char *err = d->err;
    size_t errlen = sizeof(d->err);
    const char *what = "";
    int trc;
    if ((d->cfg = cfg_load(d->conf, d->ov, d->nov, err, errlen)) == NULL) {
        what = "configuration: ";
        goto fail;
    }
    if (!d->check && !d->bindings && lifecycle_log_apply(d->cfg, err, errlen) < 0)
        goto fail;
    if (lifecycle_user_check(d->cfg, &d->user, err, errlen) < 0)
        goto fail;
    d->auth_ready = true;
    if (sluiced_auth_init(d->cfg, err, errlen) < 0) {
        what = "auth_users: ";
        goto fail;
    }
    sluiced_block_signals(d); /* the sinks' threads start here */
    if ((d->engine = sink_engine_create(d->cfg, err, errlen)) == NULL)
        goto fail;
    if ((trc = tls_cfg_opts(d->cfg, &d->topts, err, errlen)) < 0)
        goto fail;
    if (trc > 0 && (d->tls = tls_server_create(&d->topts, err, errlen)) == NULL)
        goto fail;
    if (trc == 0 && d->cfg->nlisten_smtps > 0) {
        snprintf(err, errlen, "listen_smtps needs a tls { cert = ...; key = ...; } block");
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "sluiced: %s%s\n", what, err);
    return -1;
}

/* --check and --bindings: the transport table and retry block are read by
 * the queue manager at start, so they are read here too.  The exit status. */
static int sluiced_check_mode(struct sluiced *d)
{
    struct route_table *rt = route_table_create(d->cfg, d->err, sizeof(d->err));
    if (rt == NULL) {
        fprintf(stderr, "sluiced: %s: %s\n", sluiced_conf_name(d), d->err);
        return 1;
    }
    route_table_destroy(rt);
    if (d->bindings)
        sink_engine_print_bindings(d->engine, stdout);
    else
        printf("sluiced: configuration %s is valid\n", sluiced_conf_name(d));
    return 0;
}

struct recovered_ctx {
    struct qmgr *qm;
    uint64_t *live;
};

static int recovered_cb(void *arg, const struct spool_msginfo *m)
{
    struct recovered_ctx *c = arg;
    (*c->live)++;
    return qmgr_recovered(c->qm, m);
}

/* The scheduler (one worker per net worker, and the queue manager's), the
 * queue manager, and the spool, recovered into it.  0, or -1 after
 * printing the error. */
static int sluiced_open_spool(struct sluiced *d)
{
    const struct cfg *cfg = d->cfg;
    d->nworkers = cfg->workers ? cfg->workers : 1;
    d->pool = sched_pool_create(d->nworkers + 1, NULL);
    if (d->pool == NULL) {
        fprintf(stderr, "sluiced: scheduler: out of memory or descriptors\n");
        return -1;
    }
    d->qm = qmgr_create(cfg, d->engine, d->pool, d->nworkers, d->err, sizeof(d->err));
    if (d->qm == NULL) {
        fprintf(stderr, "sluiced: %s: %s\n", sluiced_conf_name(d), d->err);
        return -1;
    }
    struct spool_scan_report rep;
    uint64_t live = 0;
    memset(&rep, 0, sizeof(rep));
    struct recovered_ctx rc_ctx = {d->qm, &live};
    int rc = spool_open(cfg->spool_dir, recovered_cb, &rc_ctx, &rep, &d->sp);
    if (rc < 0) {
        d->sp = NULL;
        fprintf(stderr, "sluiced: spool %s: %s%s\n", cfg->spool_dir, strerror(-rc),
                rc == -EBUSY ? " (another sluiced is using this spool)" : "");
        return -1;
    }
    spool_set_segment_size(d->sp, cfg->segment_size);
    spool_set_durable(d->sp, qmgr_durable, d->qm);
    log_msg(LOG_INFO,
            "spool %s: %llu messages recovered (%llu segments, %llu incomplete dropped, "
            "%llu torn tails repaired)",
            cfg->spool_dir, (unsigned long long)live, (unsigned long long)rep.segments,
            (unsigned long long)rep.incomplete, (unsigned long long)rep.torn);
    if (rep.damaged > 0)
        log_msg(LOG_ERROR,
                "spool %s: %llu damaged regions (%llu octets) skipped: the messages whose records "
                "they held are lost, every other record was read (sluice-spool %s verify; "
                "salvage)",
                cfg->spool_dir, (unsigned long long)rep.damaged,
                (unsigned long long)rep.damaged_octets, cfg->spool_dir);
    return 0;
}

/* The metrics listener (admin_listen; "" = off).  A failed bind is an
 * error in the log, not a failed start: mail matters more than its
 * metrics, and a second daemon on one host must not die of the default
 * port being taken. */
static void sluiced_admin_start(const struct cfg *cfg, const struct admin_sources *src,
                                struct admin_server **out)
{
    char err[256];
    *out = NULL;
    if (cfg->admin_listen == NULL || cfg->admin_listen[0] == '\0')
        return;
    if (admin_start(src, cfg->admin_listen, out, err, sizeof(err)) < 0)
        log_msg(LOG_ERROR, "%s; metrics are off", err);
    else
        log_msg(LOG_INFO, "metrics at http://%s/metrics", admin_listen_addr(*out));
}

/* The control socket (sluicectl), owned by `user` when one is set. */
static int sluiced_ctl_start(struct sluiced *d)
{
    struct ctl_hooks ch = {.qm = d->qm,
                           .spool = d->sp,
                           .srv = d->srv,
                           .engine = d->engine,
                           .version = SLUICE_VERSION,
                           .workers = d->nworkers,
                           .conf_path = d->conf,
                           .reload = sluiced_reload,
                           .stop = sluiced_stop};
    const struct cfg *cfg = d->cfg;
    bool dflt = strcmp(cfg->control_socket, CTL_DEFAULT_PATH) == 0;
    if (ctl_server_start(cfg->control_socket, dflt, &ch, &d->ctl, d->err, sizeof(d->err)) < 0)
        return -1;
    if (d->user.set && ctl_server_chown(d->ctl, d->user.uid, d->user.gid) < 0)
        log_msg(LOG_WARN, "control socket %s: chown to %s failed", cfg->control_socket,
                d->user.name);
    return 0;
}

/* The listeners, the metrics and control servers (still root: they may
 * bind and create sockets), then the switch to `user` and the queue
 * manager's thread.  0, or -1 with the line to print in d->err. */
static int sluiced_start_servers(struct sluiced *d)
{
    const struct cfg *cfg = d->cfg;
    struct smtpd *srv = NULL;
    int rc = smtpd_create(d->cfg, d->sp, d->pool, d->engine, &srv, d->err, sizeof(d->err));
    if (rc < 0)
        return -1;
    d->srv = srv;
    sluiced_admin_start(
        cfg,
        &(struct admin_sources){
            .smtpd = srv, .qmgr = d->qm, .spool = d->sp, .pool = d->pool, .engine = d->engine},
        &d->admin);
    if (sluiced_ctl_start(d) < 0)
        return -1;
    if (lifecycle_drop(cfg, &d->user, d->err, sizeof(d->err)) < 0)
        return -1;
    /* room for the queue manager's records on a full disk, made as `user`
     * (a file of the spool like the segments); without room for it the
     * spool starts full (logged by storage) and still delivers */
    rc = spool_reserve_init(d->sp, SLUICE_QMGR_WRITER, SPOOL_RESERVE_DEFAULT);
    if (rc < 0 && rc != -ENOSPC)
        log_msg(LOG_WARN, "spool %s: reserve: %s", cfg->spool_dir, strerror(-rc));
    if (qmgr_start(d->qm, d->sp, SLUICE_QMGR_WRITER, d->err, sizeof(d->err)) < 0)
        return -1;
    smtpd_set_tls(srv, d->tls);
    sluiced_auth.pool = d->pool; /* the hashes run as scheduler tasks */
    auth_service_install(&sluiced_auth);
    return 0;
}

static void sluiced_log_started(const struct sluiced *d)
{
    const struct cfg *cfg = d->cfg;
    if (sluiced_auth.store != NULL) {
        struct auth_table *at = auth_store_get(sluiced_auth.store);
        log_msg(LOG_INFO, "AUTH: %zu users from %s", auth_table_count(at), cfg->auth_users);
        auth_table_unref(at);
    }
    struct net_server *net = smtpd_net(d->srv);
    for (size_t i = 0; i < net_server_listen_count(net); i++)
        log_msg(LOG_INFO, "listening on %s%s", net_server_listen_addr(net, i),
                net_server_listen_kind(net, i) == SMTP_L_SMTPS        ? " (implicit TLS)"
                : net_server_listen_kind(net, i) == SMTP_L_SUBMISSION ? " (submission)"
                                                                      : "");
    if (d->tls)
        log_msg(LOG_INFO, "TLS: certificate %s, STARTTLS offered", d->topts.cert);
    log_msg(LOG_INFO, "sluiced %s: %u workers, hostname %s", SLUICE_VERSION, cfg->workers,
            cfg->hostname);
}

/* Until sluiced_stop() (a signal or sluicectl).  0, or -1 with the line to
 * print in d->err. */
static int sluiced_run(struct sluiced *d)
{
    sluiced_log_started(d);
    struct lifecycle_objs lo = {.conf = d->conf,
                                .ov = d->ov,
                                .nov = d->nov,
                                .cfg = d->cfg,
                                .srv = smtpd_net(d->srv),
                                .engine = d->engine,
                                .tls = d->tls,
                                .auth = sluiced_auth.store};
    d->running = true;
    if (lifecycle_start(&lo, &d->sigs) < 0)
        log_msg(LOG_ERROR, "the signal thread did not start: SIGTERM, SIGHUP are ignored");
    return smtpd_run(d->srv, d->err, sizeof(d->err));
}

/* After a run: the servers go and the counters are printed, the net
 * server's before it is destroyed (its last commits reach the queue
 * manager's inbox), the queue manager's after. */
static void sluiced_stop_servers(struct sluiced *d)
{
    lifecycle_fini(); /* no reload or stop touches the objects from now on */
    d->running = false;
    admin_stop(d->admin); /* its sources go below */
    d->admin = NULL;
    ctl_server_stop(d->ctl); /* before the queue manager and the spool go */
    d->ctl = NULL;
    struct smtpd_stats ns;
    smtpd_stats(d->srv, &ns);
    fprintf(stderr,
            "sluiced stats: sessions=%llu messages=%llu commits=%llu syncs=%llu rejected=%llu "
            "tempfailed=%llu discarded=%llu quarantined=%llu tasks=%llu\n",
            (unsigned long long)ns.sessions, (unsigned long long)ns.messages,
            (unsigned long long)ns.commits, (unsigned long long)ns.syncs,
            (unsigned long long)ns.rejected, (unsigned long long)ns.tempfailed,
            (unsigned long long)ns.discarded, (unsigned long long)ns.quarantined,
            (unsigned long long)ns.tasks);
    if (sink_engine_has_bindings(d->engine))
        sink_engine_print_stats(d->engine, stderr);
    smtpd_destroy(d->srv);
    d->srv = NULL;
    struct qmgr_stats qs;
    qmgr_get_stats(d->qm, &qs);
    fprintf(stderr,
            "sluiced queue: queued=%llu deferred=%llu delivered=%llu failed=%llu bounces=%llu "
            "connections=%llu reused=%llu spliced=%llu\n",
            (unsigned long long)qs.queued, (unsigned long long)qs.deferred,
            (unsigned long long)qs.delivered, (unsigned long long)qs.failed,
            (unsigned long long)qs.bounces, (unsigned long long)qs.connections,
            (unsigned long long)qs.reused, (unsigned long long)qs.spliced);
}

/* Frees what exists, in the reverse order of creation, whichever step
 * stopped: the one clean-up of every way out of main(). */
static void sluiced_teardown(struct sluiced *d)
{
    if (d->running)
        lifecycle_fini();
    admin_stop(d->admin);
    ctl_server_stop(d->ctl);
    if (d->srv != NULL)
        smtpd_destroy(d->srv);
    if (d->qm != NULL)
        qmgr_destroy(d->qm);
    if (d->sp != NULL)
        spool_close(d->sp);
    sink_engine_destroy(d->engine); /* joins the sinks' own threads before the pool goes */
    if (d->pool != NULL)
        sched_pool_destroy(d->pool);
    tls_server_destroy(d->tls); /* after the signal thread can no longer reload it */
    if (d->auth_ready)
        sluiced_auth_fini();
    cfg_destroy(d->cfg);
    free(d->ov);
}

/* The steps after the arguments, in order; the exit status. */
static int sluiced_steps(struct sluiced *d)
{
    if (sluiced_load_config(d) < 0)
        return 1;
    if (d->check || d->bindings)
        return sluiced_check_mode(d);
    if (sluiced_open_spool(d) < 0)
        return 1;
    if (sluiced_start_servers(d) < 0) {
        fprintf(stderr, "sluiced: %s\n", d->err);
        return 1;
    }
    int rc = sluiced_run(d);
    sluiced_stop_servers(d);
    if (rc < 0) {
        fprintf(stderr, "sluiced: %s\n", d->err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct sluiced d; /* static: zeroed, and off the stack */
    lifecycle_crash_handlers(); /* a crash in a sink names the binding */
    int status = sluiced_parse_args(&d, argc, argv);
    if (status < 0)
        status = sluiced_steps(&d);
    sluiced_teardown(&d);
    return status;
}
