/*
 * NAME
 *	auth - SMTP AUTH credentials: the password file, its verifier, the
 *	failure rate limit, and the SASL PLAIN/LOGIN decoding
 * SYNOPSIS
 *	#include "core/smtpd/auth.h"
 *
 *	struct auth_store *st = auth_store_create("./var/users", err, sizeof(err));
 *	struct auth_table *t = auth_store_get(st);
 *	bool ok = auth_table_verify(t, "bob", "secret");	(slow: a hash)
 *	auth_table_unref(t);
 * DESCRIPTION
 *	The password file (`auth_users`) has one `user:crypt-hash` line per
 *	user; `#` comments and blank lines are ignored.  The hash is anything
 *	libcrypt verifies (yescrypt `$y$`, SHA-512-crypt `$6$` from
 *	`openssl passwd -6`, ...), checked with crypt_checksalt() at load.
 *	A table is immutable once loaded and reference-counted;
 *	auth_store_reload() swaps in a new one atomically and the sessions
 *	that hold the old one keep it until they drop it.
 *
 *	auth_table_verify() always costs exactly one hash: an unknown user is
 *	checked against a dummy hash made with the settings of the table's
 *	first entry, so the time taken does not tell which names exist.  The
 *	hash result is compared in constant time.  It runs for tens of
 *	milliseconds with yescrypt: callers on an event loop run it as a
 *	scheduler task (core/smtpd/smtp_auth.c).
 *
 *	auth_limit counts failures per client network (IPv4 /32, IPv6 /64) in
 *	a fixed window starting at the first failure; once max_failures are
 *	reached within the window the network is blocked until the window
 *	ends.  The table has a fixed number of slots (set-associative, 4 per
 *	set, keyed with a per-process random seed); when a set is full the
 *	entry with the oldest window is evicted.  A mutex makes it safe for
 *	every worker.  The same table counts failures per user name (the
 *	authcid, ASCII case-insensitive; auth_limit_user_*) for the per-user
 *	budget, and remembers (user, client network) pairs that logged in
 *	(auth_limit_pair_*: a window from the latest success), which the
 *	budget exempts (docs/auth.md).
 *
 *	The service: the daemon installs one auth_service (the store, the
 *	limit, the scheduler pool for the hash tasks) for the process with
 *	auth_service_install(); the sessions find it with auth_service_get().
 *
 *	Ownership: auth_store_get() returns a reference the caller drops with
 *	auth_table_unref().  The installed service is borrowed and must
 *	outlive every session.
 * DIAGNOSTICS
 *	Loading fails with one line in err: "FILE:LINE: what is wrong" (or
 *	"FILE: strerror").  Decoders return -EINVAL for malformed input.
 */
#ifndef SLUICE_CORE_AUTH_H
#define SLUICE_CORE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define AUTH_USER_MAX 255                              /* octets of a user name */
#define AUTH_KNOWN_WINDOW_MS (7ull * 24 * 3600 * 1000) /* a login's network is remembered */

/* ---- the credential table ---- */

struct auth_table;

/* Parses text (name is used in messages).  NULL with err filled. */
struct auth_table *auth_table_parse(const char *text, size_t len, const char *name, char *err,
                                    size_t errlen);
/* Reads and parses path. */
struct auth_table *auth_table_load(const char *path, char *err, size_t errlen);
struct auth_table *auth_table_ref(struct auth_table *t);
void auth_table_unref(struct auth_table *t);
size_t auth_table_count(const struct auth_table *t);
/* One hash, whether or not user exists (see DESCRIPTION).  Any thread. */
bool auth_table_verify(const struct auth_table *t, const char *user, const char *pass);

/* ---- the reloadable store ---- */

struct auth_store;

/* Loads path; NULL with err filled. */
struct auth_store *auth_store_create(const char *path, char *err, size_t errlen);
/* Loads the file again and swaps the table in; on error the old table
 * stays and err is filled.  0 or -EINVAL/-errno.  Any thread. */
int auth_store_reload(struct auth_store *st, char *err, size_t errlen);
/* The current table, referenced.  Any thread. */
struct auth_table *auth_store_get(struct auth_store *st);
void auth_store_destroy(struct auth_store *st);

/* ---- the failure rate limit ---- */

struct auth_limit;

/* max_failures within window_ms; slots bounds the memory (rounded up to
 * a multiple of 4).  NULL when out of memory. */
struct auth_limit *auth_limit_create(unsigned max_failures, uint64_t window_ms, size_t slots);
void auth_limit_destroy(struct auth_limit *l);
/* Whether sa's network has used up its failures.  Any thread. */
bool auth_limit_blocked(struct auth_limit *l, const struct sockaddr *sa, uint64_t now_ms);
/* Counts one failure; true when the network is now blocked. */
bool auth_limit_fail(struct auth_limit *l, const struct sockaddr *sa, uint64_t now_ms);
/* Whether user (case-insensitive) has used up its failures.  Any thread. */
bool auth_limit_user_blocked(struct auth_limit *l, const char *user, uint64_t now_ms);
/* Counts one failure of user; the failures in its window, this one
 * included (0 when l is NULL or has no limit). */
uint32_t auth_limit_user_fail(struct auth_limit *l, const char *user, uint64_t now_ms);
/* Remembers that user logged in from sa's network, for a window from now. */
void auth_limit_pair_add(struct auth_limit *l, const char *user, const struct sockaddr *sa,
                         uint64_t now_ms);
/* Whether user logged in from sa's network within the window. */
bool auth_limit_pair_seen(struct auth_limit *l, const char *user, const struct sockaddr *sa,
                          uint64_t now_ms);
/* The failures of (user, sa's network) in a table of failure windows (the
 * network limit's): counts one and returns the count in its window, this
 * one included; and whether the pair has used up its failures.  A known
 * pair may go on trying within this budget of its own while its network
 * is blocked (docs/auth.md: one user behind a NAT guessed from). */
uint32_t auth_limit_pair_fail(struct auth_limit *l, const char *user, const struct sockaddr *sa,
                              uint64_t now_ms);
bool auth_limit_pair_blocked(struct auth_limit *l, const char *user, const struct sockaddr *sa,
                             uint64_t now_ms);

/* ---- the process's service ---- */

struct sched_pool;

struct auth_service {
    struct auth_store *store; /* NULL: no password file (only auth sinks) */
    struct auth_limit *limit; /* NULL: no rate limit */
    struct auth_limit *users; /* per-user failure budget; NULL: none */
    struct auth_limit *known; /* (user, network) pairs that logged in; NULL: none */
    uint64_t delay_ms;        /* a failure's reply held this long, doubling; 0: none */
    struct sched_pool *pool;  /* NULL: hashes run inline (tools, tests) */
};

/* svc is borrowed (NULL: uninstall).  Call before the workers start. */
void auth_service_install(const struct auth_service *svc);
const struct auth_service *auth_service_get(void);

/* ---- SASL (RFC 4648 base64, RFC 4616 PLAIN) ---- */

/* Decodes base64 (padding optional, no white space) into out (cap
 * octets; at most len * 3 / 4 are written) and NUL-terminates it: cap
 * must leave room for that.  The length, or -EINVAL. */
ssize_t auth_b64_decode(const char *in, size_t len, char *out, size_t cap);
/* Encodes; out needs 4 * ((len + 2) / 3) + 1 octets.  Returns the length. */
size_t auth_b64_encode(const void *in, size_t len, char *out);
/* Splits a decoded PLAIN message [authzid] NUL authcid NUL passwd in
 * place (buf[len] must be NUL).  0 or -EINVAL (not exactly two NULs,
 * an empty authcid). */
int auth_plain_split(char *buf, size_t len, const char **authzid, const char **authcid,
                     const char **passwd);

#endif
