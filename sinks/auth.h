/*
 * NAME
 *	auth.h - mail authentication pieces shared by the DKIM sinks
 * SYNOPSIS
 *	#include "sinks/auth.h"
 * DESCRIPTION
 *	Internal to sinks/ (not part of the sink ABI).
 *
 *	auth_canon.c: RFC 6376 3.4 canonicalization.  auth_bodyc is a
 *	streaming body canonicalizer (simple or relaxed) that feeds a SHA-256
 *	digest: any piece size, the state carries across pieces.
 *	auth_hdr_canon() appends one header field, canonicalized, to a
 *	growing buffer.  auth_hdrs_parse() cuts a header section into fields
 *	(the way storage/edits.c does, so that what is signed is what is
 *	stored); auth_hdrs_journal() applies the edit journal earlier sinks
 *	left in the message bag (sinks/ctx.c: SINK_JOURNAL_PROP) with the
 *	storage's semantics.  auth_b64_*: base64 (RFC 4648, no line breaks;
 *	decoding skips white space).
 *
 *	auth_keys.c: signing keys: one PEM file, or a keytable of
 *	`domain selector keyfile` lines in a hash table, keys parsed once on
 *	first use and shared (see the file).
 * DIAGNOSTICS
 *	int functions: 0 or a negative errno (-ENOMEM, -EINVAL).
 */
#ifndef SLUICE_SINKS_AUTH_H
#define SLUICE_SINKS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>

/* ---- growing buffer ---- */
struct auth_buf {
    char *p;
    size_t len, cap;
};
int auth_buf_reserve(struct auth_buf *b, size_t n); /* room for n more and a NUL */
int auth_buf_put(struct auth_buf *b, const void *p, size_t n);
int auth_buf_puts(struct auth_buf *b, const char *s);
void auth_buf_free(struct auth_buf *b);

/* ---- canonicalization ---- */
enum auth_canon { AUTH_SIMPLE, AUTH_RELAXED };

struct auth_bodyc {
    enum auth_canon c;
    EVP_MD_CTX *md;
    uint64_t empty;   /* empty lines held back (only emitted if content follows) */
    bool wsp;         /* relaxed: white space held back in the line */
    bool line;        /* the current line has content */
    bool cr;          /* a CR held back (a CRLF may be under way) */
    uint64_t emitted; /* canonical octets hashed */
    size_t n;
    char out[4096];
};
int auth_bodyc_init(struct auth_bodyc *b, enum auth_canon c);
void auth_bodyc_feed(struct auth_bodyc *b, const char *p, size_t len);
/* Writes the SHA-256 of the canonical body (32 octets) and frees the digest. */
int auth_bodyc_final(struct auth_bodyc *b, unsigned char hash[32]);
void auth_bodyc_fini(struct auth_bodyc *b);

/* One field (name, colon, value, continuation lines, with or without its
 * final CRLF), canonicalized; crlf: end it with CRLF. */
int auth_hdr_canon(struct auth_buf *out, enum auth_canon c, const char *field, size_t len,
                   bool crlf);

/* ---- the header section ---- */
struct auth_field {
    const char *p; /* the field with its continuation lines and CRLF */
    size_t len;
    const char *name;
    size_t namelen; /* 0: a line without a colon, never matched */
    char *own;      /* p when the field was made by an edit */
};
struct auth_hdrs {
    struct auth_field *v;
    size_t n, cap;
};
int auth_hdrs_parse(struct auth_hdrs *h, const char *hdr, size_t len);
/* journal: lines "<op><name>:<value>\n", op A (add), R (remove), C (change) */
int auth_hdrs_journal(struct auth_hdrs *h, const char *journal);
bool auth_field_is(const struct auth_field *f, const char *name, size_t namelen);
void auth_hdrs_free(struct auth_hdrs *h);
/* The value of a field (after the colon), without the final CRLF. */
void auth_field_value(const struct auth_field *f, const char **v, size_t *len);

/* ---- base64 ---- */
size_t auth_b64_enc(const unsigned char *in, size_t n, char *out); /* out: 4*((n+2)/3)+1 */
/* Skips white space; -EINVAL on anything else that is not base64. */
ssize_t auth_b64_dec(const char *in, size_t n, unsigned char *out, size_t cap);

/* ---- keys (auth_keys.c) ---- */
enum auth_alg { AUTH_RSA_SHA256, AUTH_ED25519_SHA256 };
struct auth_keyfile; /* one PEM file, parsed on first use, shared */
struct auth_key {
    const char *selector;
    struct auth_keyfile *kf;
};
/* Reads a PEM private key file now (for the single-domain form). */
struct auth_keyfile *auth_keyfile_load(const char *path, char *err, size_t errlen);
void auth_keyfile_free(struct auth_keyfile *kf);
/* The parsed key (parsed on the first call; thread-safe), its algorithm;
 * NULL when the file does not hold an RSA or Ed25519 private key (the
 * reason is logged once). */
EVP_PKEY *auth_keyfile_pkey(struct auth_keyfile *kf, enum auth_alg *alg);
const char *auth_keyfile_path(const struct auth_keyfile *kf);

struct auth_keytable;
/* NULL with one line in err ("keytable FILE:LINE: ..."). */
struct auth_keytable *auth_keytable_load(const char *path, char *err, size_t errlen);
void auth_keytable_free(struct auth_keytable *t);
size_t auth_keytable_domains(const struct auth_keytable *t);
/* The keys for domain (any case; the exact entry first, then `*.parent`
 * entries from the nearest parent up): *n keys, NULL if none.  *d is the
 * signing domain, the entry's (for `*.example.org`: example.org, which a
 * DMARC check of a subdomain finds aligned in relaxed mode). */
const struct auth_key *auth_keytable_find(const struct auth_keytable *t, const char *domain,
                                          size_t *n, const char **d);

#endif
