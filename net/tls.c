/*
 * NAME
 *	tls - TLS engines over memory BIOs (OpenSSL 3)
 * DESCRIPTION
 *	Each tls_conn is an SSL with two memory BIOs: rbio gets the
 *	ciphertext the caller received, wbio collects the ciphertext to send.
 *	Memory BIOs grow as needed, so SSL_write always takes everything
 *	(the caller bounds it by taking plaintext only when the previous
 *	ciphertext went out).  See docs/tls.md for why memory BIOs and not
 *	kTLS.
 *
 *	The server context is swapped under a mutex: tls_conn_accept() takes
 *	it only for SSL_new (which holds its own reference on the SSL_CTX,
 *	OpenSSL's refcount is atomic), so a reload never frees a context a
 *	connection uses.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/tls.h"

struct tls_server {
    pthread_mutex_t lock;
    SSL_CTX *ctx; /* under lock */
    char *cert, *key, *ca_file, *min_protocol, *ciphers, *ciphersuites;
};

struct tls_client {
    SSL_CTX *ctx;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    bool ready;
    bool client;
    bool verify;
    char desc[128];
    char error[256];
};

/* The first queued OpenSSL error as text (and the queue emptied). */
static void tls_errtext(char *out, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        snprintf(out, len, "unknown error");
        return;
    }
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    const char *reason = ERR_reason_error_string(e);
    snprintf(out, len, "%s", reason ? reason : buf);
    ERR_clear_error();
}

static char *tls_dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int tls_min_version(const char *name, int *out)
{
    if (name == NULL || strcmp(name, "TLSv1.2") == 0)
        *out = TLS1_2_VERSION;
    else if (strcmp(name, "TLSv1.3") == 0)
        *out = TLS1_3_VERSION;
    else if (strcmp(name, "TLSv1.1") == 0) /* possible, never the default */
        *out = TLS1_1_VERSION;
    else
        return -EINVAL;
    return 0;
}

/* Protocol floor and cipher policy shared by both sides. */
static int tls_ctx_policy(SSL_CTX *ctx, const struct tls_opts *o, char *err, size_t errlen)
{
    int v;
    if (tls_min_version(o->min_protocol, &v) < 0) {
        snprintf(err, errlen, "tls: min_protocol %s: TLSv1.2 or TLSv1.3 expected", o->min_protocol);
        return -EINVAL;
    }
    SSL_CTX_set_min_proto_version(ctx, v);
    if (o->ciphers && SSL_CTX_set_cipher_list(ctx, o->ciphers) != 1) {
        snprintf(err, errlen, "tls: ciphers \"%s\": no usable cipher", o->ciphers);
        ERR_clear_error();
        return -EINVAL;
    }
    /* Default TLS 1.3 order: AES-128-GCM first (as Mozilla's and Postfix's
     * defaults), which costs about a third less per octet than OpenSSL's
     * own first choice, AES-256-GCM, with the same security margin for mail. */
    const char *suites = o->ciphersuites ? o->ciphersuites
                                         : "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                           "TLS_CHACHA20_POLY1305_SHA256";
    if (SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
        snprintf(err, errlen, "tls: ciphersuites \"%s\": not a valid TLS 1.3 suite list",
                 o->ciphersuites);
        ERR_clear_error();
        return -EINVAL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    return 0;
}

/* A regular file we can open, or an error naming it and why not.  The
 * open does not block (O_NONBLOCK): OpenSSL would wait for ever on a FIFO,
 * at start or in the signal thread at a reload (core/cfg's cfg_file_open
 * does the same for the files read there; net cannot include core/cfg). */
static int tls_file_check(const char *what, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "tls: %s %s: %s", what, path, strerror(e));
        return -e;
    }
    struct stat st;
    int e = fstat(fd, &st) < 0 ? errno : S_ISREG(st.st_mode) ? 0 : EINVAL;
    close(fd);
    if (e != 0) {
        snprintf(err, errlen, "tls: %s %s: %s", what, path,
                 e == EINVAL ? "not a regular file" : strerror(e));
        return -e;
    }
    return 0;
}

static SSL_CTX *tls_server_ctx(const struct tls_opts *o, char *err, size_t errlen)
{
    if (tls_file_check("cert", o->cert, err, errlen) < 0 ||
        tls_file_check("key", o->key, err, errlen) < 0)
        return NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "tls: SSL_CTX_new: out of memory");
        return NULL;
    }
    char why[200];
    if (tls_ctx_policy(ctx, o, err, errlen) < 0)
        goto fail;
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
        tls_errtext(why, sizeof(why));
        snprintf(err, errlen, "tls: cert %s: not a usable PEM certificate (%s)", o->cert, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            snprintf(err, errlen, "tls: key %s does not match the certificate %s", o->key, o->cert);
            goto fail;
        }
        tls_errtext(why, sizeof(why));
        snprintf(err, errlen, "tls: key %s: not a usable PEM private key (%s)", o->key, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "tls: key %s does not match the certificate %s", o->key, o->cert);
        goto fail;
    }
    static const unsigned char sid[] = "sluice";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    SSL_CTX_set_dh_auto(ctx, 1);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- the server ---- */

static void tls_server_free(struct tls_server *ts)
{
    free(ts->cert);
    free(ts->key);
    free(ts->ca_file);
    free(ts->min_protocol);
    free(ts->ciphers);
    free(ts->ciphersuites);
    free(ts);
}

static void tls_server_opts(const struct tls_server *ts, struct tls_opts *o)
{
    *o = (struct tls_opts){.cert = ts->cert,
                           .key = ts->key,
                           .ca_file = ts->ca_file,
                           .min_protocol = ts->min_protocol,
                           .ciphers = ts->ciphers,
                           .ciphersuites = ts->ciphersuites};
}

struct tls_server *tls_server_create(const struct tls_opts *o, char *err, size_t errlen)
{
    struct tls_server *ts = calloc(1, sizeof(*ts));
    if (ts == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        return NULL;
    }
    ts->cert = tls_dup(o->cert);
    ts->key = tls_dup(o->key);
    ts->ca_file = tls_dup(o->ca_file);
    ts->min_protocol = tls_dup(o->min_protocol);
    ts->ciphers = tls_dup(o->ciphers);
    ts->ciphersuites = tls_dup(o->ciphersuites);
    if (o->cert == NULL || o->key == NULL) {
        snprintf(err, errlen, "tls: cert and key are both required");
        tls_server_free(ts);
        return NULL;
    }
    struct tls_opts mine;
    tls_server_opts(ts, &mine);
    ts->ctx = tls_server_ctx(&mine, err, errlen);
    if (ts->ctx == NULL) {
        tls_server_free(ts);
        return NULL;
    }
    pthread_mutex_init(&ts->lock, NULL);
    return ts;
}

int tls_server_reload(struct tls_server *ts, char *err, size_t errlen)
{
    struct tls_opts o;
    tls_server_opts(ts, &o);
    SSL_CTX *ctx = tls_server_ctx(&o, err, errlen);
    if (ctx == NULL)
        return -EINVAL;
    pthread_mutex_lock(&ts->lock);
    SSL_CTX *old = ts->ctx;
    ts->ctx = ctx;
    pthread_mutex_unlock(&ts->lock);
    SSL_CTX_free(old); /* connections made with it hold their own references */
    return 0;
}

void tls_server_destroy(struct tls_server *ts)
{
    if (ts == NULL)
        return;
    SSL_CTX_free(ts->ctx);
    pthread_mutex_destroy(&ts->lock);
    tls_server_free(ts);
}

/* ---- the client ---- */

struct tls_client *tls_client_create(const struct tls_opts *o, char *err, size_t errlen)
{
    struct tls_client *tc = calloc(1, sizeof(*tc));
    if (tc == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        return NULL;
    }
    ERR_clear_error();
    tc->ctx = SSL_CTX_new(TLS_client_method());
    if (tc->ctx == NULL) {
        snprintf(err, errlen, "tls: SSL_CTX_new: out of memory");
        free(tc);
        return NULL;
    }
    if (tls_ctx_policy(tc->ctx, o, err, errlen) < 0)
        goto fail;
    SSL_CTX_clear_options(tc->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (o->ca_file) {
        if (tls_file_check("ca_file", o->ca_file, err, errlen) < 0)
            goto fail;
        if (SSL_CTX_load_verify_file(tc->ctx, o->ca_file) != 1) {
            char why[200];
            tls_errtext(why, sizeof(why));
            snprintf(err, errlen, "tls: ca_file %s: %s", o->ca_file, why);
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(tc->ctx) != 1) {
        ERR_clear_error(); /* no system store: verify will fail, the rest works */
    }
    return tc;
fail:
    SSL_CTX_free(tc->ctx);
    free(tc);
    return NULL;
}

void tls_client_destroy(struct tls_client *tc)
{
    if (tc == NULL)
        return;
    SSL_CTX_free(tc->ctx);
    free(tc);
}

/* ---- connections ---- */

static struct tls_conn *tls_conn_new(SSL *ssl)
{
    struct tls_conn *t = calloc(1, sizeof(*t));
    if (t == NULL || ssl == NULL) {
        SSL_free(ssl);
        free(t);
        return NULL;
    }
    t->ssl = ssl;
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(ssl);
        free(t);
        return NULL;
    }
    /* an empty read BIO means "no data yet", not the end of the stream */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(ssl, t->rbio, t->wbio);
    return t;
}

struct tls_conn *tls_conn_accept(struct tls_server *ts)
{
    pthread_mutex_lock(&ts->lock);
    SSL *ssl = SSL_new(ts->ctx); /* takes its own reference on the context */
    pthread_mutex_unlock(&ts->lock);
    struct tls_conn *t = tls_conn_new(ssl);
    if (t)
        SSL_set_accept_state(t->ssl);
    return t;
}

struct tls_conn *tls_conn_connect(struct tls_client *tc, const char *host, enum tls_verify policy)
{
    struct tls_conn *t = tls_conn_new(SSL_new(tc->ctx));
    if (t == NULL)
        return NULL;
    t->client = true;
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    bool literal =
        host && (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1);
    /* no SNI for an address literal (RFC 6066 section 3) */
    if (host && host[0] && !literal && SSL_set_tlsext_host_name(t->ssl, host) != 1)
        ERR_clear_error();
    if (policy == TLS_VERIFY_VERIFY) {
        t->verify = true;
        SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
        /* a literal is checked against the certificate's IP addresses */
        int ok = host == NULL ? 0
                 : literal    ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host)
                              : SSL_set1_host(t->ssl, host);
        if (ok != 1) {
            tls_conn_destroy(t);
            return NULL;
        }
    } else {
        SSL_set_verify(t->ssl, SSL_VERIFY_NONE, NULL);
    }
    return t;
}

void tls_conn_destroy(struct tls_conn *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    free(t);
}

int tls_conn_feed(struct tls_conn *t, const void *p, size_t n)
{
    while (n > 0) {
        int k = n > (1u << 30) ? (1 << 30) : (int)n;
        int w = BIO_write(t->rbio, p, k);
        if (w <= 0)
            return -ENOMEM;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return 0;
}

/* The reason for a fatal SSL error, verification first. */
static void tls_conn_fail(struct tls_conn *t, int sslerr)
{
    long v = SSL_get_verify_result(t->ssl);
    if (t->verify && v != X509_V_OK) {
        snprintf(t->error, sizeof(t->error), "certificate verification failed: %s",
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
    } else if (sslerr == SSL_ERROR_SSL) {
        tls_errtext(t->error, sizeof(t->error));
    } else if (sslerr == SSL_ERROR_ZERO_RETURN) {
        snprintf(t->error, sizeof(t->error), "closed by the peer");
    } else {
        snprintf(t->error, sizeof(t->error), "SSL error %d", sslerr);
        ERR_clear_error();
    }
}

static void tls_conn_describe(struct tls_conn *t)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    int alg = 0, bits = c ? SSL_CIPHER_get_bits(c, &alg) : 0;
    snprintf(t->desc, sizeof(t->desc), "%s with cipher %s (%d/%d bits)", SSL_get_version(t->ssl),
             c ? SSL_CIPHER_get_name(c) : "unknown", bits, alg);
}

enum tls_status tls_conn_handshake(struct tls_conn *t)
{
    if (t->ready)
        return TLS_OK;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->ready = true;
        tls_conn_describe(t);
        return TLS_OK;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return TLS_WANT;
    tls_conn_fail(t, e);
    return TLS_FAILED;
}

ssize_t tls_conn_read(struct tls_conn *t, void *buf, size_t cap)
{
    if (cap == 0)
        return 0;
    ERR_clear_error();
    size_t got = 0;
    int r = SSL_read_ex(t->ssl, buf, cap, &got);
    if (r == 1)
        return (ssize_t)got;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return -EPIPE;
    tls_conn_fail(t, e);
    return -EPROTO;
}

int tls_conn_write(struct tls_conn *t, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    ERR_clear_error();
    size_t done = 0;
    if (SSL_write_ex(t->ssl, p, n, &done) == 1 && done == n)
        return 0;
    tls_conn_fail(t, SSL_get_error(t->ssl, 0));
    return -EPROTO;
}

void tls_conn_shutdown(struct tls_conn *t)
{
    ERR_clear_error();
    if (t->ready)
        SSL_shutdown(t->ssl); /* queues close_notify; the peer's is not awaited */
    ERR_clear_error();
}

size_t tls_conn_out_pending(const struct tls_conn *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t tls_conn_out_take(struct tls_conn *t, void *buf, size_t cap)
{
    size_t got = 0;
    if (cap > 0 && BIO_read_ex(t->wbio, buf, cap, &got) != 1)
        return 0;
    return got;
}

const char *tls_conn_desc(const struct tls_conn *t)
{
    return t->desc;
}

const char *tls_conn_protocol(const struct tls_conn *t)
{
    return SSL_get_version(t->ssl);
}

const char *tls_conn_error(const struct tls_conn *t)
{
    return t->error;
}

bool tls_conn_verified(const struct tls_conn *t)
{
    return t->ready && t->verify && SSL_get_verify_result(t->ssl) == X509_V_OK;
}
