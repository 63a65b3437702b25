/*
 * NAME
 *	sb_tls - TLS for the load generator over memory BIOs
 * SYNOPSIS
 *	#include "bench/sb/sb.h"
 * DESCRIPTION
 *	The ring does every read and write on the socket; OpenSSL only turns
 *	plaintext into ciphertext and back.  Received bytes are fed to the
 *	read BIO (sb_tls_feed); records to send collect in the write BIO
 *	(sb_tls_outlen / sb_tls_take: the caller copies them out, since
 *	a later write may move the BIO's memory).  One SSL_CTX for the process:
 *	OpenSSL's defaults (TLS 1.2 or 1.3), no certificate verification (a
 *	benchmark talks to a test certificate), no session resumption, so
 *	every connection pays a full handshake, as a new client would.
 * DIAGNOSTICS
 *	sb_tls_error(): OpenSSL's last error as text.
 */
#include "bench/sb/sb.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>

struct sb_tls {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
};

static SSL_CTX *sb_ctx;

int sb_tls_global_init(char *err, size_t errlen)
{
    if (sb_ctx != NULL)
        return 0;
    sb_ctx = SSL_CTX_new(TLS_client_method());
    if (sb_ctx == NULL) {
        snprintf(err, errlen, "SSL_CTX_new: %s", sb_tls_error());
        return -1;
    }
    SSL_CTX_set_verify(sb_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(sb_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(sb_ctx, SSL_OP_NO_TICKET);
    return 0;
}

struct sb_tls *sb_tls_new(void)
{
    struct sb_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->ssl = SSL_new(sb_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty: "retry", not EOF */
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    return t;
}

void sb_tls_free(struct sb_tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t);
}

int sb_tls_feed(struct sb_tls *t, const void *p, size_t n)
{
    return BIO_write(t->rbio, p, (int)n) == (int)n ? 0 : -1;
}

int sb_tls_handshake(struct sb_tls *t)
{
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1)
        return 1;
    int e = SSL_get_error(t->ssl, rc);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

int sb_tls_write(struct sb_tls *t, const void *p, size_t n)
{
    size_t done = 0;
    if (n == 0)
        return 0;
    /* the write BIO grows as needed: a write never blocks on it */
    return SSL_write_ex(t->ssl, p, n, &done) == 1 && done == n ? 0 : -1;
}

long sb_tls_read(struct sb_tls *t, void *buf, size_t n)
{
    size_t got = 0;
    if (SSL_read_ex(t->ssl, buf, n, &got) == 1)
        return (long)got;
    int e = SSL_get_error(t->ssl, 0);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

size_t sb_tls_outlen(struct sb_tls *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t sb_tls_take(struct sb_tls *t, void *buf, size_t cap)
{
    int k = BIO_read(t->wbio, buf, (int)(cap > (1u << 30) ? 1u << 30 : cap));
    return k > 0 ? (size_t)k : 0;
}

const char *sb_tls_error(void)
{
    static _Thread_local char buf[160];
    unsigned long e = ERR_get_error();
    if (e == 0)
        return "no OpenSSL error queued (the peer closed the connection?)";
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}
