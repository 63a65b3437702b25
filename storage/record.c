/*
 * NAME
 *	record - spool record headers and payload codecs
 * SYNOPSIS
 *	#include "storage/spool_int.h"
 * DESCRIPTION
 *	A record is a 24-octet header { u32 type word, u32 payload length,
 *	u64 message id, u32 crc32c, u32 reserved } followed by the payload,
 *	zero-padded to a multiple of 8 (docs/spool-format.md).  The crc
 *	covers the payload and then the header with its crc field zeroed, so
 *	that the writer can compute a payload's crc once and use it both for
 *	the record and for the body crc in COMMIT.
 *
 *	START carries the envelope, every string as a u32 length and its
 *	octets (never delimited, never NUL-terminated); COMMIT carries the
 *	body size, the body's crc32c and the message flags.  DATA carries
 *	body octets as they are; EDITS a header edit list (edits.c); STATE
 *	a delivery state change (state.c); ABORT and REMOVE have no payload.
 * DIAGNOSTICS
 *	The decoders return NULL or a short text saying what is wrong; the
 *	envelope decoder returns -EBADMSG or -ENOMEM.
 */
#include "storage/spool_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void spool_rec_hdr_encode(unsigned char h[SPOOL_REC_HDR], uint32_t type, uint32_t len, uint64_t id,
                          uint32_t pcrc)
{
    spool_put32(h, SPOOL_REC_MAGIC << 16 | type);
    spool_put32(h + 4, len);
    spool_put64(h + 8, id);
    spool_put32(h + 16, 0);
    spool_put32(h + 20, 0);
    spool_put32(h + 16, spool_crc32c(pcrc, h, SPOOL_REC_HDR));
}

const char *spool_rec_hdr_decode(const unsigned char h[SPOOL_REC_HDR], struct spool_rec *rec)
{
    uint32_t word = spool_get32(h);
    if (word >> 16 != SPOOL_REC_MAGIC)
        return "bad record magic";
    rec->type = word & 0xffff;
    if (rec->type < SPOOL_REC_START || rec->type > SPOOL_REC_TYPE_MAX)
        return "unknown record type";
    rec->len = spool_get32(h + 4);
    rec->id = spool_get64(h + 8);
    rec->crc = spool_get32(h + 16);
    if (rec->len > SPOOL_REC_MAX)
        return "record length exceeds the limit";
    if (spool_get32(h + 20) != 0)
        return "non-zero reserved field";
    if (rec->id == 0)
        return "zero message id";
    switch (rec->type) {
    case SPOOL_REC_START:
        if (rec->len < SPOOL_START_MIN)
            return "START record too short";
        break;
    case SPOOL_REC_COMMIT:
        if (rec->len != SPOOL_COMMIT_LEN)
            return "COMMIT record of the wrong length";
        break;
    case SPOOL_REC_ABORT:
    case SPOOL_REC_REMOVE:
        if (rec->len != 0)
            return "ABORT or REMOVE record with a payload";
        break;
    case SPOOL_REC_EDITS:
        if (rec->len < SPOOL_EDITS_MIN)
            return "EDITS record too short";
        break;
    case SPOOL_REC_STATE:
        if (rec->len < SPOOL_STATE_MIN)
            return "STATE record too short";
        break;
    }
    return NULL;
}

const char *spool_rec_payload_check(const unsigned char h[SPOOL_REC_HDR], struct spool_rec *rec,
                                    const unsigned char *payload)
{
    unsigned char h0[SPOOL_REC_HDR];
    memcpy(h0, h, sizeof(h0));
    spool_put32(h0 + 16, 0);
    rec->pcrc = spool_crc32c(0, payload, rec->len);
    if (spool_crc32c(rec->pcrc, h0, sizeof(h0)) != rec->crc)
        return "crc mismatch";
    for (uint64_t i = rec->len; i < spool_pad8(rec->len); i++)
        if (payload[i] != 0)
            return "non-zero padding";
    return NULL;
}

/* ---- START: the envelope ---- */

static const char *env_str(const char *s)
{
    return s ? s : "";
}

uint64_t spool_env_len(const struct spool_env *env)
{
    uint64_t n = 8 + 4 * 4 + 4;
    n += strlen(env_str(env->client)) + strlen(env_str(env->helo));
    n += strlen(env_str(env->sender)) + strlen(env_str(env->params));
    for (uint32_t i = 0; i < env->nrcpt; i++)
        n += 4 + strlen(env_str(env->rcpts[i]));
    return n;
}

static unsigned char *env_put_str(unsigned char *p, const char *s)
{
    size_t n = strlen(env_str(s));
    spool_put32(p, (uint32_t)n);
    memcpy(p + 4, env_str(s), n);
    return p + 4 + n;
}

void spool_env_encode(const struct spool_env *env, unsigned char *p)
{
    spool_put64(p, (uint64_t)env->arrival_ms);
    p += 8;
    p = env_put_str(p, env->client);
    p = env_put_str(p, env->helo);
    p = env_put_str(p, env->sender);
    p = env_put_str(p, env->params);
    spool_put32(p, env->nrcpt);
    p += 4;
    for (uint32_t i = 0; i < env->nrcpt; i++)
        p = env_put_str(p, env->rcpts[i]);
}

/* Copies the length-prefixed string at *p into *out, NUL-terminated. */
static bool env_get_str(const unsigned char **p, const unsigned char *end, char **out)
{
    if (end - *p < 4)
        return false;
    uint32_t n = spool_get32(*p);
    *p += 4;
    if ((uint64_t)(end - *p) < n)
        return false;
    memcpy(*out, *p, n);
    (*out)[n] = '\0';
    *p += n;
    *out += n + 1;
    return true;
}

int spool_env_decode(const unsigned char *p, size_t len, struct spool_msginfo *m,
                     struct spool_envdec *d)
{
    const unsigned char *end = p + len;
    if (len < SPOOL_START_MIN)
        return -EBADMSG;
    /* each string loses a 4-octet prefix and gains one NUL: len suffices */
    if (d->memcap < len) {
        char *nm = realloc(d->mem, len);
        if (nm == NULL)
            return -ENOMEM;
        d->mem = nm;
        d->memcap = len;
    }
    char *out = d->mem;
    m->arrival_ms = (int64_t)spool_get64(p);
    p += 8;
    const char *s[4];
    for (int i = 0; i < 4; i++) {
        s[i] = out;
        if (!env_get_str(&p, end, &out))
            return -EBADMSG;
    }
    m->client = s[0];
    m->helo = s[1];
    m->sender = s[2];
    m->params = s[3];
    if (end - p < 4)
        return -EBADMSG;
    uint32_t nrcpt = spool_get32(p);
    p += 4;
    if (nrcpt > (uint64_t)(end - p) / 4)
        return -EBADMSG;
    if (d->rcptcap < (size_t)nrcpt + 1) {
        const char **nr = realloc(d->rcpts, ((size_t)nrcpt + 1) * sizeof(*nr));
        if (nr == NULL)
            return -ENOMEM;
        d->rcpts = nr;
        d->rcptcap = (size_t)nrcpt + 1;
    }
    for (uint32_t i = 0; i < nrcpt; i++) {
        d->rcpts[i] = out;
        if (!env_get_str(&p, end, &out))
            return -EBADMSG;
    }
    d->rcpts[nrcpt] = NULL;
    if (p != end)
        return -EBADMSG;
    m->nrcpt = nrcpt;
    m->rcpts = d->rcpts;
    return 0;
}

void spool_envdec_fini(struct spool_envdec *d)
{
    free(d->mem);
    free(d->rcpts);
    memset(d, 0, sizeof(*d));
}

/* ---- COMMIT ---- */

void spool_commit_encode(unsigned char out[SPOOL_COMMIT_LEN], uint64_t size, uint32_t crc)
{
    spool_put64(out, size);
    spool_put32(out + 8, crc);
    spool_put32(out + 12, 0);
}

bool spool_commit_decode(const unsigned char *p, size_t len, uint64_t *size, uint32_t *crc)
{
    if (len != SPOOL_COMMIT_LEN)
        return false;
    *size = spool_get64(p);
    *crc = spool_get32(p + 8);
    return true;
}

void spool_commit_set_flags(unsigned char out[SPOOL_COMMIT_LEN], uint32_t flags)
{
    spool_put32(out + 12, flags);
}

uint32_t spool_commit_flags(const unsigned char p[SPOOL_COMMIT_LEN])
{
    return spool_get32(p + 12);
}
