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

#include "core/client/tls_cfg.h"
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
#include "core/smtpd/smtp.h"
#include "core/smtpd/worker.h"
#include "sched/sched.h"
#include "sinks/engine.h"
#include "storage/spool.h"

#define SLUICE_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "usage: sluiced [-c FILE] [-o key=value ...] [--check]\n"
               "  -c FILE       configuration file (UCL or JSON); without it, defaults\n"
               "  -o key=value  override one setting (repeatable)\n"
               "  --check       load the configuration, report errors, exit\n"
               "  --bindings    print the resolved event-sink chains, exit\n"
               "  --version     print the version\n"
               "See docs/config.md for every setting.\n");
}

/* SMTP AUTH: the password file and the failure limit, for every worker;
 * the pool is set once the scheduler exists.  Freed at exit (atexit: every
 * return from main). */
static struct auth_service sluiced_auth;

static void sluiced_auth_fini(void)
{
    auth_service_install(NULL);
    auth_store_destroy(sluiced_auth.store);
    auth_limit_destroy(sluiced_auth.limit);
}

static int sluiced_auth_init(const struct cfg *cfg, char *err, size_t errlen)
{
    atexit(sluiced_auth_fini);
    if (cfg->auth_users != NULL &&
        (sluiced_auth.store = auth_store_create(cfg->auth_users, err, errlen)) == NULL)
        return -1;
    sluiced_auth.limit =
        auth_limit_create(cfg->auth_max_failures, cfg->auth_failure_window_ms, 16384);
    if (sluiced_auth.limit == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
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

/* The queue manager's spool writer: its segments are seg-ff-*. */
#define SLUICE_QMGR_WRITER 255

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

int main(int argc, char **argv)
{
    /* Before any thread exists (sinks start their own at creation): every
     * thread inherits this mask, and only the signal thread takes them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *conf = NULL;
    const char **ov = calloc((size_t)argc + 1, sizeof(*ov));
    size_t nov = 0;
    bool check = false, bindings = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            conf = argv[++i];
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            ov[nov++] = argv[++i];
        } else if (strncmp(argv[i], "-o", 2) == 0 && argv[i][2]) {
            ov[nov++] = argv[i] + 2;
        } else if (strcmp(argv[i], "--check") == 0) {
            check = true;
        } else if (strcmp(argv[i], "--bindings") == 0) {
            bindings = true;
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

    char err[512];
    struct cfg *cfg = cfg_load(conf, ov, nov, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "sluiced: configuration: %s\n", err);
        return 1;
    }
    struct lifecycle_user user;
    if (!check && !bindings && lifecycle_log_apply(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluiced: %s\n", err);
        cfg_destroy(cfg);
        return 1;
    }
    if (lifecycle_user_check(cfg, &user, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluiced: %s\n", err);
        cfg_destroy(cfg);
        return 1;
    }
    if (sluiced_auth_init(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluiced: auth_users: %s\n", err);
        cfg_destroy(cfg);
        return 1;
    }
    struct sink_engine *engine = sink_engine_create(cfg, err, sizeof(err));
    if (engine == NULL) {
        fprintf(stderr, "sluiced: %s\n", err);
        cfg_destroy(cfg);
        return 1;
    }
    struct tls_opts topts;
    struct tls_server *tls = NULL;
    int trc = tls_cfg_opts(cfg, &topts, err, sizeof(err));
    if (trc > 0)
        tls = tls_server_create(&topts, err, sizeof(err));
    if (trc < 0 || (trc > 0 && tls == NULL) || (trc == 0 && cfg->nlisten_smtps > 0)) {
        if (trc == 0)
            snprintf(err, sizeof(err), "listen_smtps needs a tls { cert = ...; key = ...; } block");
        fprintf(stderr, "sluiced: %s\n", err);
        sink_engine_destroy(engine);
        cfg_destroy(cfg);
        return 1;
    }
    if (check || bindings) {
        tls_server_destroy(tls);
        /* the transport table and retry block are read by the queue
         * manager at start: --check reads them too */
        struct route_table *rt = route_table_create(cfg, err, sizeof(err));
        if (rt == NULL) {
            fprintf(stderr, "sluiced: %s: %s\n", conf ? conf : "(defaults)", err);
            sink_engine_destroy(engine);
            cfg_destroy(cfg);
            free(ov);
            return 1;
        }
        route_table_destroy(rt);
        if (bindings)
            sink_engine_print_bindings(engine, stdout);
        else
            printf("sluiced: configuration %s is valid\n", conf ? conf : "(defaults)");
        sink_engine_destroy(engine);
        cfg_destroy(cfg);
        free(ov);
        return 0;
    }


    /* the scheduler: one worker per net worker, and the queue manager's */
    unsigned nworkers = cfg->workers ? cfg->workers : 1;
    struct sched_pool *pool = sched_pool_create(nworkers + 1, NULL);
    if (pool == NULL) {
        fprintf(stderr, "sluiced: scheduler: out of memory or descriptors\n");
        sink_engine_destroy(engine);
        tls_server_destroy(tls);
        cfg_destroy(cfg);
        return 1;
    }
    struct qmgr *qm = qmgr_create(cfg, engine, pool, nworkers, err, sizeof(err));
    if (qm == NULL) {
        fprintf(stderr, "sluiced: %s: %s\n", conf ? conf : "(defaults)", err);
        sched_pool_destroy(pool);
        sink_engine_destroy(engine);
        tls_server_destroy(tls);
        cfg_destroy(cfg);
        return 1;
    }

    struct spool *sp = NULL;
    struct spool_scan_report rep;
    uint64_t live = 0;
    memset(&rep, 0, sizeof(rep));
    struct recovered_ctx rc_ctx = {qm, &live};
    int rc = spool_open(cfg->spool_dir, recovered_cb, &rc_ctx, &rep, &sp);
    if (rc < 0) {
        fprintf(stderr, "sluiced: spool %s: %s%s\n", cfg->spool_dir, strerror(-rc),
                rc == -EBUSY ? " (another sluiced is using this spool)" : "");
        qmgr_destroy(qm);
        sched_pool_destroy(pool);
        sink_engine_destroy(engine);
        tls_server_destroy(tls);
        cfg_destroy(cfg);
        return 1;
    }
    spool_set_segment_size(sp, cfg->segment_size);
    spool_set_durable(sp, qmgr_durable, qm);
    log_msg(LOG_INFO, "spool %s: %llu messages recovered (%llu segments, %llu incomplete dropped, "
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

    struct smtpd *srv = NULL; /* the inbound SMTP service (core/smtpd/worker.h) */
    rc = smtpd_create(cfg, sp, pool, engine, &srv, err, sizeof(err));
    /* COORD6: start admin servers here (still root: they may bind and create sockets) */
    struct admin_server *admin = NULL; /* build-metrics: GET /metrics (core/ops/admin.h) */
    if (rc == 0)
        sluiced_admin_start(cfg, &(struct admin_sources){.smtpd = srv, .qmgr = qm, .spool = sp,
                                                         .pool = pool, .engine = engine},
                            &admin);
    struct ctl_server *ctl = NULL; /* build-ctl: the control socket (core/ops/ctl.h) */
    if (rc == 0) {
        struct ctl_hooks ch = {.qm = qm, .spool = sp, .srv = srv, .engine = engine,
                               .version = SLUICE_VERSION, .workers = nworkers, .conf_path = conf,
                               .reload = sluiced_reload, .stop = sluiced_stop};
        bool dflt = strcmp(cfg->control_socket, CTL_DEFAULT_PATH) == 0;
        if (ctl_server_start(cfg->control_socket, dflt, &ch, &ctl, err, sizeof(err)) < 0)
            rc = -1;
        else if (user.set && ctl_server_chown(ctl, user.uid, user.gid) < 0)
            log_msg(LOG_WARN, "control socket %s: chown to %s failed", cfg->control_socket,
                    user.name);
    }
    if (rc == 0)
        rc = lifecycle_drop(cfg, &user, err, sizeof(err));
    if (rc == 0)
        rc = qmgr_start(qm, sp, SLUICE_QMGR_WRITER, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "sluiced: %s\n", err);
        admin_stop(admin);
        ctl_server_stop(ctl);
        if (srv)
            smtpd_destroy(srv);
        qmgr_destroy(qm);
        spool_close(sp);
        sink_engine_destroy(engine);
        tls_server_destroy(tls);
        sched_pool_destroy(pool);
        cfg_destroy(cfg);
        return 1;
    }
    smtpd_set_tls(srv, tls);
    sluiced_auth.pool = pool; /* the hashes run as scheduler tasks */
    auth_service_install(&sluiced_auth);
    if (sluiced_auth.store != NULL) {
        struct auth_table *at = auth_store_get(sluiced_auth.store);
        log_msg(LOG_INFO, "AUTH: %zu users from %s", auth_table_count(at), cfg->auth_users);
        auth_table_unref(at);
    }
    struct net_server *net = smtpd_net(srv);
    for (size_t i = 0; i < net_server_listen_count(net); i++)
        log_msg(LOG_INFO, "listening on %s%s", net_server_listen_addr(net, i),
                net_server_listen_kind(net, i) == SMTP_L_SMTPS        ? " (implicit TLS)"
                : net_server_listen_kind(net, i) == SMTP_L_SUBMISSION ? " (submission)"
                                                                      : "");
    if (tls)
        log_msg(LOG_INFO, "TLS: certificate %s, STARTTLS offered", topts.cert);
    log_msg(LOG_INFO, "sluiced %s: %u workers, hostname %s", SLUICE_VERSION, cfg->workers,
            cfg->hostname);

    struct lifecycle_objs lo = {.conf = conf, .ov = ov, .nov = nov, .cfg = cfg, .srv = net,
                                .engine = engine, .tls = tls, .auth = sluiced_auth.store};
    if (lifecycle_start(&lo, &sigs) < 0)
        log_msg(LOG_ERROR, "the signal thread did not start: SIGTERM, SIGHUP are ignored");
    rc = smtpd_run(srv, err, sizeof(err));
    lifecycle_fini(); /* no reload or stop touches the objects from now on */
    /* COORD6: stop admin servers here */
    admin_stop(admin); /* its sources go below */
    ctl_server_stop(ctl); /* before the queue manager and the spool go */
    if (rc < 0)
        fprintf(stderr, "sluiced: %s\n", err);

    struct smtpd_stats ns;
    smtpd_stats(srv, &ns);
    fprintf(stderr,
            "sluiced stats: sessions=%llu messages=%llu commits=%llu syncs=%llu rejected=%llu "
            "tempfailed=%llu discarded=%llu quarantined=%llu tasks=%llu\n",
            (unsigned long long)ns.sessions, (unsigned long long)ns.messages,
            (unsigned long long)ns.commits, (unsigned long long)ns.syncs,
            (unsigned long long)ns.rejected, (unsigned long long)ns.tempfailed,
            (unsigned long long)ns.discarded, (unsigned long long)ns.quarantined,
            (unsigned long long)ns.tasks);
    if (sink_engine_has_bindings(engine))
        sink_engine_print_stats(engine, stderr);
    smtpd_destroy(srv); /* the last commits reach the queue manager's inbox */
    struct qmgr_stats qs;
    qmgr_get_stats(qm, &qs);
    fprintf(stderr,
            "sluiced queue: queued=%llu deferred=%llu delivered=%llu failed=%llu bounces=%llu "
            "connections=%llu reused=%llu spliced=%llu\n",
            (unsigned long long)qs.queued, (unsigned long long)qs.deferred,
            (unsigned long long)qs.delivered, (unsigned long long)qs.failed,
            (unsigned long long)qs.bounces, (unsigned long long)qs.connections,
            (unsigned long long)qs.reused, (unsigned long long)qs.spliced);
    qmgr_destroy(qm);
    spool_close(sp);
    sink_engine_destroy(engine); /* joins the sinks' own threads before the pool goes */
    sched_pool_destroy(pool);
    tls_server_destroy(tls); /* after the signal thread can no longer reload it */
    cfg_destroy(cfg);
    free(ov);
    return rc < 0 ? 1 : 0;
}
