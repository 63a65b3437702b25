/*
 * NAME
 *	lifecycle - signals, reload, graceful stop and privileges of sluiced
 * SYNOPSIS
 *	#include "core/ops/lifecycle.h"
 *
 *	int sluiced_reload(char *err, size_t errlen);
 *	void sluiced_stop(bool drain);
 * DESCRIPTION
 *	sluiced_reload() reads the configuration file again (with the same
 *	-o overrides).  If it does not load (syntax, a bad value, a binding
 *	whose sink cannot be created, TLS files that do not load, an
 *	auth_users file that does not parse) nothing changes and err says
 *	why.  Otherwise it applies what can change while running: the log
 *	settings (log_level, log_format, log_file, log_syslog), drain_timeout,
 *	the TLS certificate and key (the files named at start, read again),
 *	the auth_users file (the file named at start, read again) and the
 *	bindings (sink_engine_reload).  Every other setting keeps
 *	its start-up value until a restart; a changed one is named in a
 *	warning line.  docs/operations.md has the list.  SIGHUP calls it.
 *
 *	sluiced_stop(drain) stops accepting and ends the daemon: with drain,
 *	sessions get drain_timeout to finish what they are doing (then the
 *	connections left are closed); without, they get 421 at their next
 *	command boundary and are closed within a second.  Group commits in
 *	flight complete and the queue manager stops (deliveries in flight are
 *	retried at the next start); sluiced then exits 0.  It returns at once.
 *	SIGTERM and SIGINT call sluiced_stop(true), a second one
 *	sluiced_stop(false).
 *
 *	Both may be called from any thread once lifecycle_start() ran (before
 *	that, and after lifecycle_fini(), they fail / do nothing).
 *
 *	For core/cmd/sluiced.c: lifecycle_log_apply() applies the log settings of
 *	a configuration; lifecycle_user_check() resolves `user` and checks
 *	that it can be used (root needed; warns when started as root without
 *	one); lifecycle_drop() switches to that user (initgroups, setgid,
 *	setuid) and checks that it can write the spool directory;
 *	lifecycle_start() takes the running objects (borrowed until
 *	lifecycle_fini) and starts the signal thread, which also reopens the
 *	log file on SIGUSR1 and prints the binding statistics on SIGUSR2.
 * DIAGNOSTICS
 *	Functions returning int return 0, or -1 with one line in err.
 */
#ifndef SLUICE_CORE_LIFECYCLE_H
#define SLUICE_CORE_LIFECYCLE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

int sluiced_reload(char *err, size_t errlen);
void sluiced_stop(bool drain);

struct cfg;
struct net_server;
struct sink_engine;
struct tls_server;
struct auth_store;

struct lifecycle_user {
    bool set; /* a switch is due */
    char name[64];
    uid_t uid;
    gid_t gid;
};

struct lifecycle_objs {
    const char *conf;      /* the -c path (NULL: defaults) */
    const char *const *ov; /* the -o overrides */
    size_t nov;
    const struct cfg *cfg; /* the running configuration */
    struct net_server *srv;
    struct sink_engine *engine;
    struct tls_server *tls;  /* NULL: no TLS */
    struct auth_store *auth; /* NULL: no auth_users */
};

int lifecycle_log_apply(const struct cfg *cfg, char *err, size_t errlen);
int lifecycle_user_check(const struct cfg *cfg, struct lifecycle_user *u, char *err, size_t errlen);
int lifecycle_drop(const struct cfg *cfg, const struct lifecycle_user *u, char *err, size_t errlen);
/* set: the signals the signal thread takes (blocked in every thread). */
int lifecycle_start(const struct lifecycle_objs *o, const sigset_t *set);
/* After the server stopped: reload and stop do nothing from now on. */
void lifecycle_fini(void);
/* SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT write one line naming the
 * signal and, when a sink's code was running on that thread, its binding
 * and event (sink_crash_describe) to stderr and the log file; then the
 * handler that was there before (the default: a core dump) takes the
 * signal.  Call once, early. */
void lifecycle_crash_handlers(void);

#endif
