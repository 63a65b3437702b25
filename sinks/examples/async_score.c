/*
 * NAME
 *	async_score - example asynchronous sink: score a message off the worker
 * SYNOPSIS
 *	cc -shared -fPIC -pthread -I/path/to/sluice async_score.c -o async_score.so
 *
 *	binding "score" {
 *	    event = "eod"; sink = "/usr/lib/sluice/async_score.so";
 *	    deadline = "2s"; on_deadline = "continue";
 *	    properties { word = "viagra"; threshold = 3; }
 *	}
 * DESCRIPTION
 *	At eod the handler holds the message (sink_message_hold), queues it
 *	for the instance's scoring thread and returns SINK_PENDING, so the
 *	worker goes on with other sessions meanwhile.  The thread reads the
 *	held message in 4 KiB pieces (sink_msgref_read) and counts the
 *	occurrences of `word` in any case, headers included.  When the count
 *	reaches `threshold` (default 1) it sets 554 5.7.1 `text` (default
 *	"Message scored as spam") and completes with SINK_REJECT, otherwise
 *	with SINK_CONTINUE.  Then it releases the message.
 *
 *	The rules it follows (docs/writing-sinks.md, "when you must call
 *	blocking code"): after returning PENDING only sink_set_reply(),
 *	sink_complete() and the held message may be used, from any thread;
 *	sink_complete() exactly once; a call abandoned (deadline, client gone)
 *	is forgotten in abandoned(), after which the engine frees its ctx.
 *	destroy() completes whatever is still queued (CONTINUE) before it
 *	returns.
 *	It includes only sinks/sink.h, libc and pthreads.
 */
#include <sluice/sink.h>

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct score_job {
    struct score_job *next;
    struct sink_ctx *ctx;
    struct sink_msgref *msg;
};

struct score {
    char word[64];
    size_t wlen;
    long long threshold;
    char text[256];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct score_job *head, **tail;
    struct sink_ctx *current; /* the job the thread is scoring (NULL: none) */
    int current_dead;         /* its call was abandoned: do not complete it */
    int stop;
    pthread_t thread;
};

/* Occurrences of the word in the message, case-insensitive, across pieces. */
static long long score_count(const struct score *s, struct sink_msgref *m)
{
    char buf[4096 + 64];
    size_t keep = 0; /* the tail of the last piece, for a word split across two */
    uint64_t off = 0;
    long long n = 0;
    for (;;) {
        ssize_t got = sink_msgref_read(m, off, buf + keep, sizeof(buf) - 64);
        if (got <= 0)
            break;
        off += (uint64_t)got;
        size_t len = keep + (size_t)got;
        size_t i = 0;
        for (; i + s->wlen <= len; i++) {
            size_t k = 0;
            while (k < s->wlen && tolower((unsigned char)buf[i + k]) == s->word[k])
                k++;
            if (k == s->wlen) {
                n++;
                i += s->wlen - 1;
            }
        }
        keep = len - i; /* < wlen: a possible start of the word */
        memmove(buf, buf + i, keep);
    }
    return n;
}

static void *score_run(void *arg)
{
    struct score *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->head == NULL && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->head == NULL)
            break; /* stopping, nothing left */
        struct score_job *j = s->head;
        if ((s->head = j->next) == NULL)
            s->tail = &s->head;
        int stopping = s->stop;
        s->current = j->ctx;
        s->current_dead = 0;
        pthread_mutex_unlock(&s->mu);
        int spam = !stopping && score_count(s, j->msg) >= s->threshold;
        sink_msgref_release(j->msg);
        /* Completed under the lock: score_abandoned() (same lock) then
         * knows the ctx is no longer touched once it has the lock. */
        pthread_mutex_lock(&s->mu);
        if (!s->current_dead) {
            if (spam)
                sink_set_reply(j->ctx, 554, "5.7.1", s->text);
            sink_complete(j->ctx, spam ? SINK_REJECT : SINK_CONTINUE);
        }
        s->current = NULL;
        free(j);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int score_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    const char *word = sink_props_get(p, "word");
    if (word == NULL || *word == '\0' || strlen(word) >= 64) {
        snprintf(err, errlen, "property word is required (1 to 63 characters)");
        return -EINVAL;
    }
    struct score *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    for (s->wlen = 0; word[s->wlen]; s->wlen++)
        s->word[s->wlen] = (char)tolower((unsigned char)word[s->wlen]);
    s->threshold = sink_props_get_int(p, "threshold", 1);
    const char *text = sink_props_get(p, "text");
    snprintf(s->text, sizeof(s->text), "%s", text ? text : "Message scored as spam");
    s->tail = &s->head;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = pthread_create(&s->thread, NULL, score_run, s);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the scoring thread: %s", strerror(rc));
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return -rc;
    }
    *instance = s;
    return 0;
}

static void score_destroy(void *instance)
{
    struct score *s = instance;
    pthread_mutex_lock(&s->mu);
    s->stop = 1; /* the thread completes what is queued, then exits */
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* The call ended without our answer (deadline, client gone): on the
 * worker.  Afterwards ctx is freed, so make sure the thread forgets it. */
static void score_abandoned(void *instance, struct sink_ctx *ctx)
{
    struct score *s = instance;
    pthread_mutex_lock(&s->mu);
    if (s->current == ctx)
        s->current_dead = 1;
    for (struct score_job **pp = &s->head; *pp != NULL; pp = &(*pp)->next) {
        struct score_job *j = *pp;
        if (j->ctx != ctx)
            continue;
        if ((*pp = j->next) == NULL)
            s->tail = pp;
        sink_msgref_release(j->msg);
        free(j);
        break;
    }
    pthread_mutex_unlock(&s->mu);
}

static enum sink_verdict score_handle(void *instance, struct sink_ctx *ctx)
{
    struct score *s = instance;
    struct score_job *j = malloc(sizeof(*j));
    if (j == NULL)
        return SINK_CONTINUE;
    if ((j->msg = sink_message_hold(ctx)) == NULL) {
        free(j); /* no body to read here: nothing to score */
        return SINK_CONTINUE;
    }
    j->ctx = ctx;
    j->next = NULL;
    pthread_mutex_lock(&s->mu);
    *s->tail = j;
    s->tail = &j->next;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return SINK_PENDING;
}

static const struct sink_module score_module = {
    SINK_MODULE_HEAD,
    .name = "async_score",
    .events = SINK_EVMASK(SINK_EV_EOD),
    .create = score_create,
    .destroy = score_destroy,
    .handle = score_handle,
    .abandoned = score_abandoned,
};

SINK_MODULE(score_module)
