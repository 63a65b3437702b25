/*
 * NAME
 *	cfg - the sluice.conf configuration
 * SYNOPSIS
 *	#include "core/cfg/cfg.h"
 * DESCRIPTION
 *	sluice.conf is UCL (the nginx-like syntax of libucl: `key = value;`,
 *	nested `name "label" { ... }` blocks, arrays, # // and C comments,
 *	size and time suffixes) and JSON is accepted as well.  Debian ships no
 *	libucl, so cfg_parse.c implements the subset sluice needs (see
 *	docs/config.md).  The parse yields a tree of cfg_node; cfg_load() then
 *	maps the top-level keys onto struct cfg through one declarative table
 *	(cfg_table.c): name, type, default, bounds.  An unknown key or a bad
 *	value is an error naming the key and the line.
 *
 *	`-o key=value` overrides are parsed as `key = value;` and applied after
 *	the file, before the table is checked.
 *	sluice.conf and every file it names that is read (auth_users, alias
 *	files) are opened with cfg_file_open(): a FIFO, a device or a
 *	directory is refused at once instead of blocking the reader.
 * DIAGNOSTICS
 *	cfg_load() returns NULL and writes one line into err:
 *	"FILE:LINE: KEY: what is wrong", or "FILE: not a regular file".
 */
#ifndef SLUICE_CORE_CFG_H
#define SLUICE_CORE_CFG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* ---- the generic tree (the binding, transport, retry and tls blocks are read from it) ---- */

enum cfg_type { CFG_NULL, CFG_BOOL, CFG_INT, CFG_FLOAT, CFG_STRING, CFG_ARRAY, CFG_OBJECT };

struct cfg_node; /* opaque, owned by the tree */

enum cfg_type cfg_node_type(const struct cfg_node *n);
unsigned cfg_node_line(const struct cfg_node *n);
const char *cfg_node_key(const struct cfg_node *n);   /* NULL for array items */
const char *cfg_node_label(const struct cfg_node *n); /* `binding "x" {}` -> "x", else NULL */
bool cfg_node_bool(const struct cfg_node *n);
int64_t cfg_node_int(const struct cfg_node *n); /* sizes/durations already scaled */
double cfg_node_float(const struct cfg_node *n);
const char *cfg_node_str(const struct cfg_node *n);
/* Children of an object or items of an array, in file order. */
size_t cfg_node_count(const struct cfg_node *n);
const struct cfg_node *cfg_node_at(const struct cfg_node *n, size_t i);
/* First child of an object with this key (case-sensitive), or NULL. */
const struct cfg_node *cfg_node_get(const struct cfg_node *n, const char *key);

/* A file the configuration is read from (cfg_file.c): opened without
 * blocking and refused unless it is a regular file ("PATH: not a regular
 * file").  The descriptor (O_CLOEXEC) or -errno, the stream or NULL; err
 * holds one line on failure.  The caller closes what it gets. */
int cfg_file_open(const char *path, char *err, size_t errlen);
FILE *cfg_file_fopen(const char *path, char *err, size_t errlen);

/* Parses text (name is used in messages).  NULL and err filled on error. */
struct cfg_node *cfg_parse(const char *text, size_t len, const char *name, char *err,
                           size_t errlen);
void cfg_node_free(struct cfg_node *n);

/* ---- the resolved configuration ---- */

struct cfg_sockaddr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64]; /* "127.0.0.1:2525", "[::1]:2525" */
};

struct cfg_cidr {
    sa_family_t family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint8_t prefix;
};

struct cfg {
    struct cfg_sockaddr *listen; /* default 127.0.0.1:2525 */
    size_t nlisten;
    struct cfg_sockaddr *listen_smtps; /* implicit TLS (RFC 8314), default none */
    size_t nlisten_smtps;
    char *spool_dir;             /* default ./var/spool */
    unsigned workers;            /* default 0 = number of CPUs (resolved) */
    char *hostname;              /* default gethostname(); mail for it is local */
    char *postmaster;            /* where <postmaster> goes; default postmaster@localhost */
    struct cfg_cidr *mynetworks; /* default 127.0.0.0/8, ::1/128 */
    size_t nmynetworks;
    char **relay_domains; /* domains mail is accepted for; default none */
    size_t nrelay_domains;
    uint64_t max_message_size;              /* default 52428800 (SIZE) */
    unsigned max_recipients;                /* default 1000, at least 100 */
    unsigned max_errors;                    /* default 10: then 421 4.7.0 */
    unsigned max_line_length;               /* text line limit, default 998 */
    unsigned max_connections;               /* per worker, default 4096 */
    unsigned max_conn_per_ip;               /* default 50, 0 = no limit */
    struct cfg_cidr *conn_limit_exceptions; /* default: mynetworks */
    size_t nconn_limit_exceptions;
    uint64_t idle_timeout_ms;    /* default 300s (RFC 5321 4.5.3.2); also bounds a command line */
    uint64_t max_session_ms;     /* default 1h; 0: unbounded */
    uint64_t min_data_rate;      /* bytes/s during DATA, default 128, 0 = off */
    uint64_t data_rate_grace_ms; /* default 30s before the rate is checked */
    unsigned buffer_count;       /* provided buffers per worker, default 512 */
    unsigned buffer_size;        /* bytes each, default 16384 */
    uint64_t segment_size;       /* spool segment size, default 64 MiB */
    unsigned commit_delay_us;    /* group commit: wait this long for siblings, default 1000 */
    char *log_level;             /* a name log_level_parse() accepts, in lower case
                                  * ("warning" stays "warning"), default info */
    /* delivery (core/queue/qmgr.c; transport { } and retry { } are read by core/queue/route.c) */
    char *relayhost;    /* default next hop, "" = MX */
    char *maildir_root; /* local delivery root, default ./var/mail */
    char **dns_servers; /* "127.0.0.1:5353"; default none = /etc/resolv.conf */
    size_t ndns_servers;
    unsigned delivery_concurrency; /* connections per destination, default 20 */
    unsigned delivery_connections; /* outbound connections in all, default 200 */
    uint64_t connect_timeout_ms;   /* default 30s */
    uint64_t command_timeout_ms;   /* per reply, default 300s */
    uint64_t connection_cache_ms;  /* an idle outbound connection is kept this long, default 2s */
    unsigned destination_failure_limit;     /* failed connections in a row before the whole
                                             * destination backs off, default 3 */
    struct cfg_sockaddr *listen_submission; /* RFC 6409 listeners (AUTH required); default none */
    size_t nlisten_submission;
    char *auth_users;                /* the user:crypt-hash file; default NULL (none) */
    unsigned auth_max_failures;      /* AUTH failures per client network per window, default 5 */
    uint64_t auth_failure_window_ms; /* default 60s */
    unsigned auth_user_max_failures; /* AUTH failures per user name per window, default 10 */
    uint64_t auth_failure_delay_ms;  /* a failed AUTH's reply held, doubling; default 1s */
    /* operations (core/base/log.c, core/ops/lifecycle.c; docs/operations.md) */
    char *log_format; /* "text" | "json", default text */
    char *log_file;   /* "" = stderr (default), "syslog", or a path (reopened on SIGUSR1) */
    bool log_syslog;  /* default false; true = syslog, as log_file = "syslog" */
    char *user;       /* run as this user after binding (started as root); NULL: none */
    uint64_t drain_timeout_ms; /* graceful stop: sessions get this long, default 30s */
    char *control_socket;      /* sluicectl's unix socket, default ./var/sluice.sock, "" = none */
    char *admin_listen;        /* metrics HTTP listener (core/ops/admin.h), default
                                * "127.0.0.1:9025"; "" = off */
    struct cfg_node *tree;     /* the parsed file: the blocks outside this table */
};

/* Loads path (NULL: defaults only) with overrides ("key=value" each). */
struct cfg *cfg_load(const char *path, const char *const *overrides, size_t noverrides, char *err,
                     size_t errlen);
void cfg_destroy(struct cfg *c);

/* Parsing helpers shared with other modules. */
int cfg_parse_cidr(const char *s, struct cfg_cidr *out);         /* 0 or -EINVAL */
int cfg_parse_hostport(const char *s, struct cfg_sockaddr *out); /* 0 or -EINVAL */
bool cfg_cidr_match(const struct cfg_cidr *v, size_t n, const struct sockaddr *sa);
/* Case-insensitive match of a domain against a list ("example.test" exact,
 * ".example.test" any subdomain). */
bool cfg_domain_match(char *const *v, size_t n, const char *domain);

#endif
