/*
 * NAME
 *	auth_keys - DKIM signing keys: PEM files and the keytable
 * SYNOPSIS
 *	#include "sinks/auth.h"
 *
 *	struct auth_keytable *t = auth_keytable_load(path, err, errlen);
 *	const struct auth_key *k = auth_keytable_find(t, "mail.example.org", &n, &d);
 *	EVP_PKEY *pk = auth_keyfile_pkey(k[0].kf, &alg);
 * DESCRIPTION
 *	A keytable is a text file of `domain selector keyfile` lines (white
 *	space between; `#` starts a comment; empty lines ignored).  A domain
 *	may have several lines: each is one more signature (e.g. an RSA and
 *	an Ed25519 selector).  `*.example.org` covers every subdomain of
 *	example.org (not example.org itself) and signs with
 *	d=example.org.
 *
 *	The entries sit in an open-addressing hash table (FNV-1a on the
 *	lower-cased name, linear probing, at most half full), so a lookup
 *	costs the same with 10 domains or 100,000: one probe sequence for the
 *	domain, then one per parent label for the wildcards.  Key files are
 *	deduplicated by path (many domains commonly share a key).
 *
 *	Each key file is read whole when the table is loaded (while sluiced
 *	still has its start-up privileges, so a root-only key is readable)
 *	and parsed on the first message that needs it: a table of 100,000
 *	keys costs reading small files at start, not 100,000 parses.  The
 *	parsed EVP_PKEY is published with a compare-and-swap (release; readers
 *	acquire), so two workers that race parse twice and one copy is freed;
 *	after that every signature shares it (OpenSSL allows concurrent
 *	signing with one key).  The PEM text (trimmed to its size) stays until
 *	the table goes, when it is wiped: a racer may still be reading it.
 *	A file that does not parse is logged once and stays unusable.
 * DIAGNOSTICS
 *	Load errors name the file and line: "keytable /etc/k:3: expected
 *	`domain selector keyfile`", "... cannot read /etc/x.pem: No such
 *	file or directory".
 */
#include "sinks/auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>

#include "core/base/log.h"

#define KEYFILE_MAX (64u * 1024)

struct auth_keyfile {
    char *path;
    char *pem; /* until parsed (owner: whoever wins the parse; see pkey) */
    size_t pemlen;
    _Atomic(EVP_PKEY *) pkey; /* NULL until parsed */
    _Atomic int bad;          /* 1: does not parse (logged once) */
    enum auth_alg alg;        /* written before pkey is published */
};

static int keyfile_read(struct auth_keyfile *kf, char *err, size_t errlen)
{
    FILE *f = fopen(kf->path, "re");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", kf->path, strerror(errno));
        return -errno;
    }
    kf->pem = malloc(KEYFILE_MAX);
    if (kf->pem == NULL) {
        fclose(f);
        return -ENOMEM;
    }
    kf->pemlen = fread(kf->pem, 1, KEYFILE_MAX, f);
    int bad = ferror(f) || kf->pemlen == KEYFILE_MAX || kf->pemlen == 0;
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: empty, unreadable or over 64 KiB", kf->path);
        return -EINVAL;
    }
    char *fit = malloc(kf->pemlen); /* trimmed; the big buffer is wiped */
    if (fit != NULL) {
        memcpy(fit, kf->pem, kf->pemlen);
        OPENSSL_cleanse(kf->pem, kf->pemlen);
        free(kf->pem);
        kf->pem = fit;
    }
    return 0;
}

void auth_keyfile_free(struct auth_keyfile *kf)
{
    if (kf == NULL)
        return;
    EVP_PKEY_free(atomic_load(&kf->pkey));
    if (kf->pem != NULL)
        OPENSSL_cleanse(kf->pem, kf->pemlen);
    free(kf->pem);
    free(kf->path);
    free(kf);
}

static struct auth_keyfile *keyfile_new(const char *path, char *err, size_t errlen)
{
    struct auth_keyfile *kf = calloc(1, sizeof(*kf));
    if (kf == NULL || (kf->path = strdup(path)) == NULL) {
        free(kf);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (keyfile_read(kf, err, errlen) < 0) {
        auth_keyfile_free(kf);
        return NULL;
    }
    return kf;
}

static EVP_PKEY *keyfile_parse(const struct auth_keyfile *kf, enum auth_alg *alg, char *why,
                               size_t whylen)
{
    BIO *bio = BIO_new_mem_buf(kf->pem, (int)kf->pemlen);
    EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (pk == NULL) {
        snprintf(why, whylen, "not a PEM private key");
        return NULL;
    }
    int id = EVP_PKEY_get_base_id(pk);
    if (id == EVP_PKEY_RSA) {
        if (EVP_PKEY_get_bits(pk) < 1024) {
            snprintf(why, whylen, "RSA key of %d bits (at least 1024)", EVP_PKEY_get_bits(pk));
            EVP_PKEY_free(pk);
            return NULL;
        }
        *alg = AUTH_RSA_SHA256;
    } else if (id == EVP_PKEY_ED25519) {
        *alg = AUTH_ED25519_SHA256;
    } else {
        snprintf(why, whylen, "neither an RSA nor an Ed25519 key");
        EVP_PKEY_free(pk);
        return NULL;
    }
    return pk;
}

struct auth_keyfile *auth_keyfile_load(const char *path, char *err, size_t errlen)
{
    struct auth_keyfile *kf = keyfile_new(path, err, errlen);
    if (kf == NULL)
        return NULL;
    enum auth_alg alg;
    if (auth_keyfile_pkey(kf, &alg) == NULL) {
        snprintf(err, errlen, "%s: not an RSA (>= 1024 bits) or Ed25519 PEM private key", path);
        auth_keyfile_free(kf);
        return NULL;
    }
    return kf;
}

EVP_PKEY *auth_keyfile_pkey(struct auth_keyfile *kf, enum auth_alg *alg)
{
    EVP_PKEY *pk = atomic_load_explicit(&kf->pkey, memory_order_acquire);
    if (pk != NULL) {
        *alg = kf->alg;
        return pk;
    }
    if (atomic_load_explicit(&kf->bad, memory_order_relaxed))
        return NULL;
    char why[128];
    enum auth_alg a = AUTH_RSA_SHA256;
    EVP_PKEY *mine = keyfile_parse(kf, &a, why, sizeof(why));
    if (mine == NULL) {
        int was = 0;
        if (atomic_compare_exchange_strong(&kf->bad, &was, 1))
            log_msg(LOG_ERROR, "dkim: key %s: %s: messages needing it are not signed", kf->path,
                    why);
        return NULL;
    }
    EVP_PKEY *none = NULL;
    kf->alg = a; /* same value from every racer: the file is the same */
    if (!atomic_compare_exchange_strong_explicit(&kf->pkey, &none, mine, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        EVP_PKEY_free(mine); /* another worker won: use its copy */
        *alg = kf->alg;
        return none;
    }
    *alg = a;
    return mine;
}

const char *auth_keyfile_path(const struct auth_keyfile *kf)
{
    return kf->path;
}

/* ---- the table ---- */

struct kt_entry {
    char *name; /* lower case; "*.example.org" for a wildcard */
    const char *d;
    struct auth_key *keys;
    size_t nkeys;
};

struct auth_keytable {
    struct kt_entry *slot; /* nslot, power of two; name NULL = free */
    size_t nslot, n;
    struct auth_keyfile **files; /* distinct files */
    size_t nfiles, capfiles;
    char **strs; /* selectors, owned */
    size_t nstrs, capstrs;
};

static uint64_t kt_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)tolower((unsigned char)s[i]);
        h *= 1099511628211ull;
    }
    return h;
}

static struct kt_entry *kt_slot(const struct auth_keytable *t, const char *name, size_t n)
{
    size_t mask = t->nslot - 1;
    for (size_t i = kt_hash(name, n) & mask;; i = (i + 1) & mask) {
        struct kt_entry *e = &t->slot[i];
        if (e->name == NULL || (strlen(e->name) == n && strncasecmp(e->name, name, n) == 0))
            return e;
    }
}

static int kt_grow(struct auth_keytable *t)
{
    size_t nn = t->nslot ? t->nslot * 2 : 1024;
    struct kt_entry *ns = calloc(nn, sizeof(*ns));
    if (ns == NULL)
        return -ENOMEM;
    struct auth_keytable old = *t;
    t->slot = ns;
    t->nslot = nn;
    for (size_t i = 0; i < old.nslot; i++)
        if (old.slot[i].name != NULL)
            *kt_slot(t, old.slot[i].name, strlen(old.slot[i].name)) = old.slot[i];
    free(old.slot);
    return 0;
}

static char *kt_own(struct auth_keytable *t, const char *s)
{
    if (t->nstrs == t->capstrs) {
        size_t nc = t->capstrs ? t->capstrs * 2 : 64;
        char **nv = realloc(t->strs, nc * sizeof(*nv));
        if (nv == NULL)
            return NULL;
        t->strs = nv;
        t->capstrs = nc;
    }
    char *d = strdup(s);
    if (d != NULL)
        t->strs[t->nstrs++] = d;
    return d;
}

/* The file, read once per distinct path (a second table, by path). */
static struct auth_keyfile *kt_file(struct auth_keytable *t, struct kt_entry **byp, size_t *nbyp,
                                    const char *path, char *err, size_t errlen)
{
    size_t mask = *nbyp - 1;
    size_t i = kt_hash(path, strlen(path)) & mask;
    for (; byp[0][i].name != NULL; i = (i + 1) & mask)
        if (strcmp(byp[0][i].name, path) == 0)
            return (struct auth_keyfile *)(void *)byp[0][i].keys;
    struct auth_keyfile *kf = keyfile_new(path, err, errlen);
    if (kf == NULL)
        return NULL;
    if (t->nfiles == t->capfiles) {
        size_t nc = t->capfiles ? t->capfiles * 2 : 64;
        struct auth_keyfile **nv = realloc(t->files, nc * sizeof(*nv));
        if (nv == NULL) {
            auth_keyfile_free(kf);
            return NULL;
        }
        t->files = nv;
        t->capfiles = nc;
    }
    t->files[t->nfiles++] = kf;
    byp[0][i].name = kf->path;
    byp[0][i].keys = (struct auth_key *)(void *)kf;
    if (t->nfiles * 2 > *nbyp) { /* rehash the path table */
        size_t nn = *nbyp * 2;
        struct kt_entry *ns = calloc(nn, sizeof(*ns));
        if (ns == NULL)
            return NULL;
        for (size_t k = 0; k < *nbyp; k++) {
            if (byp[0][k].name == NULL)
                continue;
            size_t j = kt_hash(byp[0][k].name, strlen(byp[0][k].name)) & (nn - 1);
            while (ns[j].name != NULL)
                j = (j + 1) & (nn - 1);
            ns[j] = byp[0][k];
        }
        free(*byp);
        *byp = ns;
        *nbyp = nn;
    }
    return kf;
}

static int kt_add(struct auth_keytable *t, const char *domain, const char *sel,
                  struct auth_keyfile *kf)
{
    if ((t->n + 1) * 2 > t->nslot && kt_grow(t) < 0)
        return -ENOMEM;
    struct kt_entry *e = kt_slot(t, domain, strlen(domain));
    if (e->name == NULL) {
        if ((e->name = kt_own(t, domain)) == NULL)
            return -ENOMEM;
        for (char *c = e->name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        e->d = e->name[0] == '*' ? e->name + 2 : e->name;
        t->n++;
    }
    struct auth_key *nk = realloc(e->keys, (e->nkeys + 1) * sizeof(*nk));
    if (nk == NULL)
        return -ENOMEM;
    e->keys = nk;
    const char *s = kt_own(t, sel);
    if (s == NULL)
        return -ENOMEM;
    e->keys[e->nkeys++] = (struct auth_key){s, kf};
    return 0;
}

static bool kt_domain_ok(const char *d)
{
    const char *s = strncmp(d, "*.", 2) == 0 ? d + 2 : d;
    size_t n = strlen(s);
    if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
            return false;
    return true;
}

struct auth_keytable *auth_keytable_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        snprintf(err, errlen, "keytable %s: %s", path, strerror(errno));
        return NULL;
    }
    struct auth_keytable *t = calloc(1, sizeof(*t));
    size_t nbyp = 256;
    struct kt_entry *byp = calloc(nbyp, sizeof(*byp));
    char line[4096], why[512];
    unsigned lineno = 0;
    bool ok = t != NULL && byp != NULL && kt_grow(t) == 0;
    if (!ok)
        snprintf(err, errlen, "keytable %s: out of memory", path);
    while (ok && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save = NULL;
        char *dom = strtok_r(line, " \t\r\n", &save);
        if (dom == NULL)
            continue;
        char *sel = strtok_r(NULL, " \t\r\n", &save);
        char *file = strtok_r(NULL, " \t\r\n", &save);
        if (sel == NULL || file == NULL || strtok_r(NULL, " \t\r\n", &save) != NULL) {
            snprintf(err, errlen, "keytable %s:%u: expected `domain selector keyfile`", path,
                     lineno);
            ok = false;
        } else if (!kt_domain_ok(dom)) {
            snprintf(err, errlen, "keytable %s:%u: \"%s\" is not a domain", path, lineno, dom);
            ok = false;
        } else {
            struct auth_keyfile *kf = kt_file(t, &byp, &nbyp, file, why, sizeof(why));
            if (kf == NULL) {
                snprintf(err, errlen, "keytable %s:%u: %s", path, lineno, why);
                ok = false;
            } else if (kt_add(t, dom, sel, kf) < 0) {
                snprintf(err, errlen, "keytable %s: out of memory", path);
                ok = false;
            }
        }
    }
    fclose(f);
    free(byp);
    if (ok && t->n == 0) {
        snprintf(err, errlen, "keytable %s: no entries", path);
        ok = false;
    }
    if (!ok) {
        auth_keytable_free(t);
        return NULL;
    }
    return t;
}

void auth_keytable_free(struct auth_keytable *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nslot; i++)
        free(t->slot[i].keys);
    free(t->slot);
    for (size_t i = 0; i < t->nfiles; i++)
        auth_keyfile_free(t->files[i]);
    free(t->files);
    for (size_t i = 0; i < t->nstrs; i++)
        free(t->strs[i]);
    free(t->strs);
    free(t);
}

size_t auth_keytable_domains(const struct auth_keytable *t)
{
    return t->n;
}

const struct auth_key *auth_keytable_find(const struct auth_keytable *t, const char *domain,
                                          size_t *n, const char **d)
{
    size_t len = strlen(domain);
    while (len > 0 && domain[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return NULL;
    const struct kt_entry *e = kt_slot(t, domain, len);
    if (e->name == NULL) {
        char w[256];
        e = NULL;
        for (size_t i = 0; i < len && e == NULL; i++) {
            if (domain[i] != '.')
                continue;
            w[0] = '*';
            memcpy(w + 1, domain + i, len - i); /* "*.parent" */
            const struct kt_entry *c = kt_slot(t, w, len - i + 1);
            if (c->name != NULL)
                e = c;
        }
        if (e == NULL)
            return NULL;
    }
    *n = e->nkeys;
    *d = e->d;
    return e->keys;
}
