/*
 * NAME
 *	smtp_sinkmsg - the message as eod and submission sinks see it
 * SYNOPSIS
 *	#include "core/smtpd/smtp_int.h"
 * DESCRIPTION
 *	Body access.  The message as stored is the Received: header the
 *	session prepends and the dot-unstuffed data.  At eod, body_at()
 *	serves the octets still held in the session's slices straight from
 *	the receive buffers (no copy) and reads those already appended to the
 *	spool (a message over SMTP_FLUSH_BYTES streams to disk) back with
 *	spool_txn_read() into a scratch buffer.  body_hold() makes a
 *	sink_msgref that any thread can read after the session has moved on:
 *	a spool body reference for the appended part (its own descriptors)
 *	and a heap copy of the held slices (the receive buffers are the
 *	worker's and go back to the ring).  Released from any thread.
 *
 *	Header edits.  edit() records an edit list on the message (at most
 *	SMTP_EDITS_MAX); at commit it goes to the spool as one EDITS record
 *	with the COMMIT (spool_txn_set_edits), and storage applies it
 *	whenever the body is read.  A message refused or discarded takes its
 *	edits with it.
 *
 *	Submission.  When the submission event is bound, the commit of a
 *	message prepares a job: a sink_call of its own, a copy of the
 *	envelope, the message property bag (it travels with the message; the
 *	session starts a new one) and a body reference.  Once the group
 *	commit says the message is durable (and its 250 is queued) the job
 *	runs: fire and forget.  It outlives the session if it goes pending,
 *	on the server's list; the server abandons what is left when it is
 *	destroyed.  Its verdict is only logged for now: the message stays in
 *	the spool whatever a submission sink answers (the queue manager will
 *	act on post-queue verdicts), and there is no session bag (the session
 *	may be gone).  A commit that fails, or a session destroyed before its
 *	commit completes, drops the job without an event.
 * DIAGNOSTICS
 *	The callbacks return -EINVAL (an edit that is not RFC 5322), -ENOMEM
 *	(too many edits, no memory) or what reading the spool returns.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/smtpd/smtp_int.h"

/* ---- holds ---- */

struct smtp_msgref {
    struct sink_msgref base;
    struct spool_bodyref *disk; /* octets [0, dsize) */
    uint64_t dsize;
    char *mem; /* octets [dsize, dsize + mlen) */
    size_t mlen;
};

static uint64_t smtp_ref_size(const struct sink_msgref *m)
{
    const struct smtp_msgref *r = (const struct smtp_msgref *)m;
    return r->dsize + r->mlen;
}

static ssize_t smtp_ref_read(struct sink_msgref *m, uint64_t off, void *buf, size_t len)
{
    struct smtp_msgref *r = (struct smtp_msgref *)m;
    uint64_t total = r->dsize + r->mlen;
    if (off >= total)
        return 0;
    if (len > total - off)
        len = (size_t)(total - off);
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    size_t done = 0;
    if (off < r->dsize) {
        done = r->dsize - off < len ? (size_t)(r->dsize - off) : len;
        int rc = spool_bodyref_read(r->disk, off, buf, done);
        if (rc < 0)
            return rc;
    }
    if (done < len)
        memcpy((char *)buf + done, r->mem + (off + done - r->dsize), len - done);
    return (ssize_t)len;
}

static void smtp_ref_release(struct sink_msgref *m)
{
    struct smtp_msgref *r = (struct smtp_msgref *)m;
    spool_bodyref_release(r->disk);
    free(r->mem);
    free(r);
}

static const struct sink_msgref_ops smtp_msgref_ops = {smtp_ref_size, smtp_ref_read,
                                                       smtp_ref_release};

/* A hold on disk (a new reference, or NULL) followed by a copy of mem. */
static struct sink_msgref *smtp_ref_make(struct spool_bodyref *disk, const struct mchain *mem)
{
    struct smtp_msgref *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        spool_bodyref_release(disk);
        return NULL;
    }
    r->base.ops = &smtp_msgref_ops;
    r->disk = disk;
    r->dsize = disk != NULL ? spool_bodyref_size(disk) : 0;
    if (mem != NULL && mem->bytes > 0) {
        if ((r->mem = malloc((size_t)mem->bytes)) == NULL) {
            smtp_ref_release(&r->base);
            return NULL;
        }
        for (uint32_t i = 0; i < mem->n; i++) {
            memcpy(r->mem + r->mlen, mem->v[i].buf->data + mem->v[i].off, mem->v[i].len);
            r->mlen += mem->v[i].len;
        }
    }
    return &r->base;
}

/* ---- eod ---- */

static int smtp_body_at(void *arg, uint64_t off, const char **p, size_t *len)
{
    struct smtp_session *s = arg;
    struct smtp_txn *t = &s->txn;
    struct smtp_sk *k = s->sk;
    uint64_t disk = t->st != NULL ? spool_txn_size(t->st) : 0;
    *p = NULL;
    *len = 0;
    if (off < disk) {
        if (k->scratch == NULL && (k->scratch = malloc(SMTP_BODY_CHUNK)) == NULL)
            return -ENOMEM;
        size_t n = disk - off < SMTP_BODY_CHUNK ? (size_t)(disk - off) : SMTP_BODY_CHUNK;
        int r = spool_txn_read(t->st, off, k->scratch, n);
        if (r < 0)
            return r;
        *p = k->scratch;
        *len = n;
        return 0;
    }
    off -= disk;
    if (off >= t->body.bytes)
        return 0; /* the end */
    uint32_t i = 0;
    uint64_t base = 0;
    if (k->cur_disk == disk && k->cur_i < t->body.n && k->cur_base <= off) {
        i = k->cur_i; /* reading on from the last piece: no walk from the start */
        base = k->cur_base;
    }
    for (; i < t->body.n; i++) {
        const struct mslice *sl = &t->body.v[i];
        if (off < base + sl->len) {
            k->cur_i = i;
            k->cur_base = base;
            k->cur_disk = disk;
            *p = sl->buf->data + sl->off + (off - base);
            *len = sl->len - (size_t)(off - base);
            return 0;
        }
        base += sl->len;
    }
    return 0;
}

static struct sink_msgref *smtp_body_hold(void *arg)
{
    struct smtp_session *s = arg;
    struct smtp_txn *t = &s->txn;
    struct spool_bodyref *disk = NULL;
    if (t->st != NULL && spool_txn_size(t->st) > 0 && (disk = spool_txn_bodyref(t->st)) == NULL)
        return NULL;
    return smtp_ref_make(disk, &t->body);
}

static int smtp_body_edit(void *arg, enum sink_edit_op op, const char *name, const char *value)
{
    struct smtp_session *s = arg;
    struct smtp_sk *k = s->sk;
    struct spool_edit e = {op == SINK_EDIT_ADD      ? SPOOL_EDIT_ADD
                           : op == SINK_EDIT_REMOVE ? SPOOL_EDIT_REMOVE
                                                    : SPOOL_EDIT_CHANGE,
                           name, op == SINK_EDIT_REMOVE ? NULL : value};
    if ((unsigned)op > SINK_EDIT_CHANGE || !spool_edit_valid(&e))
        return -EINVAL;
    if (k->nedits >= SMTP_EDITS_MAX)
        return -ENOMEM;
    if (k->nedits == k->editcap) {
        uint32_t nc = k->editcap ? k->editcap * 2 : 4;
        struct smtp_edit *nv = realloc(k->edits, nc * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        k->edits = nv;
        k->editcap = nc;
    }
    struct smtp_edit *x = &k->edits[k->nedits];
    x->op = e.op;
    x->name = strdup(name);
    x->value = e.value != NULL ? strdup(e.value) : NULL;
    if (x->name == NULL || (e.value != NULL && x->value == NULL)) {
        free(x->name);
        free(x->value);
        return -ENOMEM;
    }
    k->nedits++;
    return 0;
}

void smtp_sinkmsg_eod(struct smtp_session *s, struct sink_event_data *d)
{
    struct smtp_txn *t = &s->txn;
    struct smtp_sk *k = s->sk;
    d->msg_id = t->st != NULL ? spool_txn_id(t->st) : 0;
    d->body_size = (t->st != NULL ? spool_txn_size(t->st) : 0) + t->body.bytes;
    d->body_at = smtp_body_at;
    d->body_hold = smtp_body_hold;
    d->edit = smtp_body_edit;
    d->body_arg = s;
    k->cur_i = 0;
    k->cur_base = 0;
    k->cur_disk = UINT64_MAX;
}

int smtp_sinkmsg_edits(struct smtp_session *s, struct spool_txn *st)
{
    struct smtp_sk *k = s->sk;
    if (k == NULL || k->nedits == 0)
        return 0;
    struct spool_edit *v = malloc(k->nedits * sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < k->nedits; i++)
        v[i] = (struct spool_edit){k->edits[i].op, k->edits[i].name, k->edits[i].value};
    int r = spool_txn_set_edits(st, v, k->nedits);
    free(v);
    return r;
}

void smtp_sinks_txn_reset(struct smtp_session *s)
{
    struct smtp_sk *k = s->sk;
    if (k == NULL)
        return;
    sink_bag_clear(k->mbag);
    for (uint32_t i = 0; i < k->nedits; i++) {
        free(k->edits[i].name);
        free(k->edits[i].value);
    }
    k->nedits = 0;
    free(k->scratch); /* a big message's; the next may be small */
    k->scratch = NULL;
}

/* ---- submission ---- */

struct smtp_subjob {
    struct smtp_subjob *prev, *next; /* srv->subjobs, once it runs */
    struct smtp_server *srv;
    struct sink_call *call;
    struct sink_event_data d;
    struct sink_bag *mbag;
    struct spool_bodyref *body;
    char *scratch;
    char *mem; /* the envelope's strings */
    const char **rcpts;
    bool listed;
};

static int smtp_sub_body_at(void *arg, uint64_t off, const char **p, size_t *len)
{
    struct smtp_subjob *j = arg;
    *p = NULL;
    *len = 0;
    if (j->body == NULL)
        return -ENOMEM; /* the reference could not be taken at commit */
    uint64_t size = spool_bodyref_size(j->body);
    if (off >= size)
        return 0;
    if (j->scratch == NULL && (j->scratch = malloc(SMTP_BODY_CHUNK)) == NULL)
        return -ENOMEM;
    size_t n = size - off < SMTP_BODY_CHUNK ? (size_t)(size - off) : SMTP_BODY_CHUNK;
    int r = spool_bodyref_read(j->body, off, j->scratch, n);
    if (r < 0)
        return r;
    *p = j->scratch;
    *len = n;
    return 0;
}

static struct sink_msgref *smtp_sub_hold(void *arg)
{
    struct smtp_subjob *j = arg;
    return j->body != NULL ? smtp_ref_make(spool_bodyref_ref(j->body), NULL) : NULL;
}

void smtp_sub_free(struct smtp_subjob *j)
{
    if (j == NULL)
        return;
    if (j->listed) {
        if (j->prev)
            j->prev->next = j->next;
        else
            j->srv->subjobs = j->next;
        if (j->next)
            j->next->prev = j->prev;
    }
    sink_call_destroy(j->call); /* abandons a pending link */
    sink_bag_destroy(j->mbag);
    spool_bodyref_release(j->body);
    free(j->scratch);
    free(j->rcpts);
    free(j->mem);
    free(j);
}

/* Copies the envelope into one block. */
static int smtp_sub_envelope(struct smtp_subjob *j, const struct smtp_session *s)
{
    const struct smtp_txn *t = &s->txn;
    const char *str[4] = {s->client, s->helo, t->sender, t->params};
    size_t n = 0;
    for (int i = 0; i < 4; i++)
        n += strlen(str[i]) + 1;
    for (uint32_t i = 0; i < t->nrcpt; i++)
        n += strlen(t->rcpts[i]) + 1;
    j->mem = malloc(n);
    j->rcpts = malloc((t->nrcpt + 1) * sizeof(*j->rcpts));
    if (j->mem == NULL || j->rcpts == NULL)
        return -ENOMEM;
    char *p = j->mem;
    const char *out[4];
    for (int i = 0; i < 4; i++) {
        out[i] = p;
        p = stpcpy(p, str[i]) + 1;
    }
    for (uint32_t i = 0; i < t->nrcpt; i++) {
        j->rcpts[i] = p;
        p = stpcpy(p, t->rcpts[i]) + 1;
    }
    j->rcpts[t->nrcpt] = NULL;
    j->d.client_addr = out[0];
    j->d.helo = out[1];
    j->d.sender = out[2];
    j->d.mail_params = out[3];
    j->d.nrcpt = t->nrcpt;
    j->d.rcpts = j->rcpts;
    return 0;
}

void smtp_sub_prepare(struct smtp_session *s, struct spool_txn *st)
{
    struct smtp_sk *k;
    if (!smtp_sink_bound(s, SINK_EV_SUBMISSION) || (k = smtp_sk_get(s)) == NULL)
        return;
    struct smtp_subjob *j = calloc(1, sizeof(*j));
    if (j == NULL || (j->call = sink_call_create(s->srv->sinks)) == NULL ||
        smtp_sub_envelope(j, s) < 0) {
        log_msg(LOG_WARN, "smtp %s: out of memory: no submission event for this message",
                s->client);
        smtp_sub_free(j);
        return;
    }
    j->srv = s->srv;
    j->body = spool_txn_bodyref(st); /* NULL: body access fails, the event still runs */
    j->mbag = k->mbag;               /* the message's properties go with it */
    k->mbag = NULL;
    j->d.body_size = spool_txn_size(st);
    j->d.body_at = smtp_sub_body_at;
    j->d.body_hold = smtp_sub_hold;
    j->d.body_arg = j;
    j->d.message_bag = j->mbag;
    smtp_sub_free(k->sub);
    k->sub = j;
}

static void smtp_sub_finish(struct smtp_subjob *j, const struct sink_result *res)
{
    if (res->verdict != SINK_CONTINUE && res->binding != NULL) {
        char ids[17], rep[560] = "";
        spool_id_str(j->d.msg_id, ids);
        if (res->code != 0)
            snprintf(rep, sizeof(rep), ": %d %s %s", res->code, res->enhanced, res->text);
        log_msg(LOG_INFO,
                "smtp: message %s: submission: binding \"%s\": %s%s (logged only: the message "
                "stays queued)",
                ids, res->binding, smtp_verdict_name(res->verdict), rep);
    }
    smtp_sub_free(j);
}

static void smtp_sub_done(void *arg, const struct sink_result *res)
{
    smtp_sub_finish(arg, res);
}

void smtp_sub_commit_done(struct smtp_session *s, uint64_t id, int res)
{
    struct smtp_subjob *j = s->sk != NULL ? s->sk->sub : NULL;
    if (j == NULL)
        return;
    s->sk->sub = NULL;
    if (res != 0) {
        smtp_sub_free(j);
        return;
    }
    j->d.msg_id = id;
    j->next = s->srv->subjobs;
    if (j->next)
        j->next->prev = j;
    s->srv->subjobs = j;
    j->listed = true;
    struct sink_result r;
    if (sink_dispatch(j->call, SINK_EV_SUBMISSION, &j->d, NULL, NULL, smtp_sub_done, j, &r))
        smtp_sub_finish(j, &r);
}

void smtp_sub_destroy_all(struct smtp_server *srv)
{
    while (srv->subjobs != NULL)
        smtp_sub_free(srv->subjobs);
}
