/*
 * NAME
 *	ctl - the daemon's control socket (what sluicectl talks to)
 * SYNOPSIS
 *	#include "core/ops/ctl.h"
 *
 *	struct ctl_hooks h = { .qm = qm, .spool = sp, ... };
 *	struct ctl_server *cs;
 *	if (ctl_server_start(cfg->control_socket, false, &h, &cs, err, sizeof(err)) < 0) ...
 *	...
 *	ctl_server_stop(cs);
 * DESCRIPTION
 *	A unix stream socket, mode 0600, served by one thread of its own: one
 *	client at a time, each bounded by CTL_IO_TIMEOUT_MS for reading its
 *	request and writing the reply.  A client whose SO_PEERCRED uid is
 *	neither 0 nor the daemon's effective uid gets an error and is closed.
 *
 *	The protocol (docs/sluicectl.md): the client writes one line,
 *	  {"verb": "queue list", "args": []}
 *	and the server answers with one JSON object and closes:
 *	  {"ok": true, "result": ...}   or   {"ok": false, "error": "..."}
 *
 *	ctl_proto.c holds the parsing and formatting (no I/O), ctl.c the
 *	socket, the thread and the verbs.
 *
 *	Threads: start/stop/chown on the main thread.  The hooks are called on
 *	the control thread; whatever they point to must outlive the server.
 * DIAGNOSTICS
 *	ctl_server_start() writes one line into err: the path and the cause
 *	("another sluiced is listening on it", "not a socket", bind errors).
 */
#ifndef SLUICE_CORE_CTL_H
#define SLUICE_CORE_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CTL_IO_TIMEOUT_MS 5000
#define CTL_MAX_REQUEST 8192 /* bytes of one request line */
#define CTL_MAX_ARGS 16
/* control_socket's default: only a warning when it cannot be created */
#define CTL_DEFAULT_PATH "./var/sluice.sock"

struct qmgr;
struct spool;
struct smtpd;
struct sink_engine;
struct ctl_server;

struct ctl_hooks {
    struct qmgr *qm;            /* borrowed; NULL: queue verbs fail */
    struct spool *spool;        /* borrowed; NULL: no spool figures */
    struct smtpd *srv;          /* borrowed; may be NULL */
    struct sink_engine *engine; /* borrowed; NULL: no bindings */
    const char *version;        /* borrowed, static */
    const char *conf_path;      /* borrowed; where binding changes are written; NULL: none */
    unsigned workers;
    /* `reload`: 0, or -1 with the reason the new configuration was
     * rejected in err.  NULL: kill(getpid(), SIGHUP). */
    int (*reload)(char *err, size_t errlen);
    /* `stop [--drain]`: returns at once, the daemon exits later.
     * NULL: kill(getpid(), SIGTERM). */
    void (*stop)(bool drain);
};

/* path "" or NULL: no control socket (0, *out = NULL).  A stale socket
 * file (nobody accepts on it) is replaced; a live one is an error.
 * best_effort (the default path, not configured): failures are logged as
 * warnings, 0 is returned and *out is NULL.  hooks is copied. */
int ctl_server_start(const char *path, bool best_effort, const struct ctl_hooks *hooks,
                     struct ctl_server **out, char *err, size_t errlen);
/* Gives the socket file to uid:gid (before the daemon drops privileges,
 * so the new user can still connect).  0 or -errno. */
int ctl_server_chown(struct ctl_server *cs, uid_t uid, gid_t gid);
/* Wakes and joins the thread (a request in progress finishes first),
 * removes the socket file if it is still ours.  NULL is a no-op. */
void ctl_server_stop(struct ctl_server *cs);

/* ---- the protocol (ctl_proto.c; no I/O, for the server and sluicectl) ---- */

struct ctl_request {
    char *verb;               /* owned */
    char *args[CTL_MAX_ARGS]; /* owned */
    size_t nargs;
};

/* Parses one request line (trailing newline allowed).  0, or -EINVAL
 * with the reason in err.  On success req owns its strings. */
int ctl_request_parse(const char *text, size_t len, struct ctl_request *req, char *err,
                      size_t errlen);
void ctl_request_fini(struct ctl_request *req);
/* The request line for verb and args, newline-terminated; malloc'd (the
 * caller frees), NULL on ENOMEM. */
char *ctl_request_format(const char *verb, const char *const *args, size_t nargs);

/* Replies, malloc'd (NULL on ENOMEM).  result is JSON text (borrowed). */
char *ctl_reply_ok(const char *result);
char *ctl_reply_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* ctl_reply_ok() of {"k1": "v1", "k2": "v2"} (the values quoted as JSON
 * strings; borrowed). */
char *ctl_result_pair(const char *k1, const char *v1, const char *k2, const char *v2);

#endif
