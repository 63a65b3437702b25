/*
 * NAME
 *	auth - the credential table, its reloadable store, the service
 * SYNOPSIS
 *	#include "core/smtpd/auth.h"
 * DESCRIPTION
 *	See core/smtpd/auth.h.  A table is one sorted array of (user, hash) looked
 *	up with bsearch; the strings live in one block.  The store holds the
 *	current table under a mutex: get takes a reference under it, reload
 *	swaps the pointer under it and drops the store's reference on the
 *	old table outside it.  Readers are rare (one per AUTH), so a mutex is
 *	simpler than a lock-free scheme and costs nothing that matters.
 *
 *	The references are atomic counters: acq_rel on the decrement pairs
 *	the last release with the free (nothing written to the table after
 *	load, so relaxed increments are enough).
 * DIAGNOSTICS
 *	Load errors name the file and line.
 */
#include "core/smtpd/auth.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/log.h"
#include "core/cfg/cfg.h"

#define AUTH_FILE_MAX (64u * 1024 * 1024) /* a password file larger than this is a mistake */

struct auth_entry {
    const char *user;
    const char *hash;
};

struct auth_table {
    _Atomic unsigned refs;
    size_t n;
    struct auth_entry *v; /* sorted by user */
    char *mem;            /* the strings */
    size_t memlen;
    char dummy[CRYPT_OUTPUT_SIZE]; /* for unknown users: same settings as v[0] */
};

static int auth_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct auth_entry *)a)->user, ((const struct auth_entry *)b)->user);
}

static void auth_table_free(struct auth_table *t)
{
    if (t == NULL)
        return;
    if (t->mem != NULL) /* the hashes are not secrets, but no need to leave them about */
        explicit_bzero(t->mem, t->memlen);
    free(t->mem);
    free(t->v);
    free(t);
}

/* User names: printable ASCII without ':' or white space. */
static bool auth_user_ok(const char *u, size_t n)
{
    if (n == 0 || n > AUTH_USER_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (u[i] <= 0x20 || u[i] >= 0x7f || u[i] == ':')
            return false;
    return true;
}

/* The dummy hash: a random phrase under the first entry's settings, so
 * an unknown user costs what a known one does. */
static int auth_table_dummy(struct auth_table *t, const char *set)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (set == NULL) {
        if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof(setting)) == NULL)
            return -EINVAL;
        set = setting;
    }
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (cd == NULL)
        return -ENOMEM;
    int rc = -EINVAL;
    if (crypt_rn("sluice-dummy-password", set, cd, sizeof(*cd)) != NULL) {
        snprintf(t->dummy, sizeof(t->dummy), "%s", cd->output);
        rc = 0;
    }
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return rc;
}

struct auth_table *auth_table_parse(const char *text, size_t len, const char *name, char *err,
                                    size_t errlen)
{
    struct auth_table *t = calloc(1, sizeof(*t));
    size_t cap = 0;
    if (t == NULL || (t->mem = malloc(len + 1)) == NULL) {
        snprintf(err, errlen, "%s: out of memory", name);
        auth_table_free(t);
        return NULL;
    }
    atomic_init(&t->refs, 1);
    t->memlen = len;
    memcpy(t->mem, text, len);
    t->mem[len] = '\0';
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "%s: NUL character in the file", name);
        goto fail;
    }
    unsigned lineno = 0;
    for (char *p = t->mem, *next; p != NULL && *p != '\0'; p = next) {
        lineno++;
        char *nl = strchr(p, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl != NULL)
            *nl = '\0';
        size_t n = strlen(p);
        while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
            p[--n] = '\0';
        while (*p == ' ' || *p == '\t')
            p++, n--;
        if (n == 0 || *p == '#')
            continue;
        char *colon = strchr(p, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "%s:%u: expected user:hash", name, lineno);
            goto fail;
        }
        *colon = '\0';
        const char *hash = colon + 1;
        if (!auth_user_ok(p, (size_t)(colon - p))) {
            snprintf(err, errlen, "%s:%u: bad user name (1 to %d printable characters, no ':')",
                     name, lineno, AUTH_USER_MAX);
            goto fail;
        }
        int cs = crypt_checksalt(hash);
        if (hash[0] != '$' || strchr(hash, ':') != NULL ||
            (cs != CRYPT_SALT_OK && cs != CRYPT_SALT_TOO_CHEAP)) {
            snprintf(err, errlen, "%s:%u: user %s: not a supported crypt(3) hash%s", name, lineno,
                     p, cs == CRYPT_SALT_METHOD_LEGACY ? " (legacy method refused)" : "");
            goto fail;
        }
        if (t->n == cap) {
            cap = cap ? cap * 2 : 16;
            struct auth_entry *nv = realloc(t->v, cap * sizeof(*nv));
            if (nv == NULL) {
                snprintf(err, errlen, "%s: out of memory", name);
                goto fail;
            }
            t->v = nv;
        }
        t->v[t->n].user = p;
        t->v[t->n].hash = hash;
        t->n++;
    }
    const char *first = t->n > 0 ? t->v[0].hash : NULL; /* the file's first entry */
    if (t->n > 1)
        qsort(t->v, t->n, sizeof(*t->v), auth_entry_cmp);
    for (size_t i = 1; i < t->n; i++)
        if (strcmp(t->v[i - 1].user, t->v[i].user) == 0) {
            snprintf(err, errlen, "%s: user %s appears twice", name, t->v[i].user);
            goto fail;
        }
    if (auth_table_dummy(t, first) < 0) {
        snprintf(err, errlen, "%s: cannot make the dummy hash (%s)", name,
                 first ? "the first entry's settings" : "no yescrypt in libcrypt");
        goto fail;
    }
    return t;
fail:
    auth_table_free(t);
    return NULL;
}

struct auth_table *auth_table_load(const char *path, char *err, size_t errlen)
{
    FILE *f = cfg_file_fopen(path, err, errlen); /* a FIFO would block */
    if (f == NULL)
        return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > AUTH_FILE_MAX) {
        snprintf(err, errlen, "%s: not a regular file of at most %u octets", path, AUTH_FILE_MAX);
        fclose(f);
        return NULL;
    }
    size_t len = (size_t)st.st_size;
    char *buf = malloc(len + 1);
    if (buf == NULL || fread(buf, 1, len, f) != len || ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, buf == NULL ? "out of memory" : "read error");
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    struct auth_table *t = auth_table_parse(buf, len, path, err, errlen);
    explicit_bzero(buf, len);
    free(buf);
    return t;
}

struct auth_table *auth_table_ref(struct auth_table *t)
{
    /* relaxed: the caller already holds a reference, nothing to publish */
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void auth_table_unref(struct auth_table *t)
{
    /* acq_rel: every holder's reads happen before the last one frees */
    if (t != NULL && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        auth_table_free(t);
}

size_t auth_table_count(const struct auth_table *t)
{
    return t->n;
}

/* Constant time in the stored hash's length; out must be NUL after it. */
static bool auth_hash_equal(const char *stored, const char *out)
{
    size_t n = strlen(stored);
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(stored[i] ^ out[i]);
    diff |= (unsigned char)out[n];
    return diff == 0;
}

bool auth_table_verify(const struct auth_table *t, const char *user, const char *pass)
{
    struct auth_entry key = {user, NULL};
    const struct auth_entry *e =
        t->n > 0 ? bsearch(&key, t->v, t->n, sizeof(*t->v), auth_entry_cmp) : NULL;
    const char *hash = e != NULL ? e->hash : t->dummy;
    struct crypt_data *cd = calloc(1, sizeof(*cd)); /* 32 KiB: not on a task's stack */
    if (cd == NULL)
        return false;
    bool ok = false;
    if (crypt_rn(pass, hash, cd, sizeof(*cd)) != NULL) /* output is zero-filled past the result */
        ok = auth_hash_equal(hash, cd->output) && e != NULL;
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return ok;
}

/* ---- the store ---- */

struct auth_store {
    pthread_mutex_t mu;
    struct auth_table *cur; /* the store's reference */
    char *path;
};

struct auth_store *auth_store_create(const char *path, char *err, size_t errlen)
{
    struct auth_store *st = calloc(1, sizeof(*st));
    if (st == NULL || (st->path = strdup(path)) == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        free(st);
        return NULL;
    }
    st->cur = auth_table_load(path, err, errlen);
    if (st->cur == NULL) {
        free(st->path);
        free(st);
        return NULL;
    }
    pthread_mutex_init(&st->mu, NULL);
    return st;
}

int auth_store_reload(struct auth_store *st, char *err, size_t errlen)
{
    struct auth_table *t = auth_table_load(st->path, err, errlen);
    if (t == NULL)
        return -EINVAL;
    pthread_mutex_lock(&st->mu);
    struct auth_table *old = st->cur;
    st->cur = t;
    pthread_mutex_unlock(&st->mu);
    auth_table_unref(old);
    return 0;
}

struct auth_table *auth_store_get(struct auth_store *st)
{
    pthread_mutex_lock(&st->mu);
    struct auth_table *t = auth_table_ref(st->cur);
    pthread_mutex_unlock(&st->mu);
    return t;
}

void auth_store_destroy(struct auth_store *st)
{
    if (st == NULL)
        return;
    auth_table_unref(st->cur);
    pthread_mutex_destroy(&st->mu);
    free(st->path);
    free(st);
}

/* ---- the service ---- */

static _Atomic(const struct auth_service *) auth_svc;

void auth_service_install(const struct auth_service *svc)
{
    /* release: pairs with the acquire in auth_service_get (the service's
     * fields are written before it is installed) */
    atomic_store_explicit(&auth_svc, svc, memory_order_release);
}

const struct auth_service *auth_service_get(void)
{
    return atomic_load_explicit(&auth_svc, memory_order_acquire);
}
