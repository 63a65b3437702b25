/*
 * NAME
 *	sink_faulty - a sink module that misbehaves on purpose (fault tests)
 * SYNOPSIS
 *	binding "f" {
 *	    event = "eod"; sink = "build/tests/sink_faulty.so"; deadline = "1s";
 *	    rule = "MAIL FROM=faulty@*";
 *	    properties { mode = "hang"; ms = 300; }
 *	}
 * DESCRIPTION
 *	Every call returns SINK_PENDING and is handed to the instance's own
 *	thread, which then, by `mode`:
 *
 *	hang	never answers (the ctx is kept until abandoned() says the
 *		engine gave up on it);
 *	slow	sleeps `ms` and completes with CONTINUE (an answer within
 *		the deadline when ms is below it);
 *	late	sleeps `ms` (meant to exceed the deadline) and completes
 *		with REJECT: the late answer must be ignored;
 *	twice	completes with CONTINUE and at once again with REJECT (a
 *		contract violation: sink_complete() is exactly once);
 *	die	the thread ends (pthread_exit) holding the call, without an
 *		answer, as a thread that failed would; later calls queue up
 *		for a thread that no longer exists;
 *	segv	the thread dereferences NULL (kills the process: sinks run
 *		in sluiced's address space).
 *
 *	No abandoned() hook in modes late and twice (a late sink_complete()
 *	is then allowed, sink.h); the others have one that forgets the ctx.
 *	Counters go to stderr as "sink_faulty: ..." lines.
 */
#include "sinks/sink.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum faulty_mode { F_HANG, F_SLOW, F_LATE, F_TWICE, F_DIE, F_SEGV };

struct faulty_job {
    struct faulty_job *next;
    struct sink_ctx *ctx;
};

struct faulty {
    enum faulty_mode mode;
    long long ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct faulty_job *head, **tail;
    struct sink_ctx *held[64]; /* hang: calls never answered */
    int stop, dead;
    pthread_t thread;
};

static void faulty_sleep_ms(long long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void faulty_run_one(struct faulty *f, struct sink_ctx *ctx)
{
    switch (f->mode) {
    case F_HANG:
        pthread_mutex_lock(&f->mu);
        for (size_t i = 0; i < sizeof(f->held) / sizeof(f->held[0]); i++)
            if (f->held[i] == NULL) {
                f->held[i] = ctx;
                break;
            }
        pthread_mutex_unlock(&f->mu);
        return;
    case F_SLOW:
        faulty_sleep_ms(f->ms);
        sink_complete(ctx, SINK_CONTINUE);
        return;
    case F_LATE:
        faulty_sleep_ms(f->ms);
        sink_set_reply(ctx, 554, "5.7.1", "late verdict that must be ignored");
        sink_complete(ctx, SINK_REJECT);
        fprintf(stderr, "sink_faulty: late completion done\n");
        return;
    case F_TWICE:
        sink_complete(ctx, SINK_CONTINUE);
        fprintf(stderr, "sink_faulty: completing a second time\n");
        sink_complete(ctx, SINK_REJECT);
        return;
    case F_DIE:
        pthread_mutex_lock(&f->mu);
        f->dead = 1;
        pthread_mutex_unlock(&f->mu);
        fprintf(stderr, "sink_faulty: thread exits holding a call\n");
        pthread_exit(NULL);
    case F_SEGV:
        fprintf(stderr, "sink_faulty: thread dereferences NULL\n");
        *(volatile int *)(uintptr_t)0 = 1;
        return;
    }
}

static void *faulty_thread(void *arg)
{
    struct faulty *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (f->head == NULL && !f->stop)
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->head == NULL)
            break;
        struct faulty_job *j = f->head;
        if ((f->head = j->next) == NULL)
            f->tail = &f->head;
        pthread_mutex_unlock(&f->mu);
        struct sink_ctx *ctx = j->ctx;
        free(j);
        if (f->stop && f->mode != F_HANG)
            sink_complete(ctx, SINK_CONTINUE);
        else
            faulty_run_one(f, ctx);
        pthread_mutex_lock(&f->mu);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static int faulty_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    static const char *const names[] = {"hang", "slow", "late", "twice", "die", "segv"};
    const char *m = sink_props_get(p, "mode");
    struct faulty *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -12;
    size_t i = 0;
    while (i < sizeof(names) / sizeof(names[0]) && (m == NULL || strcmp(m, names[i]) != 0))
        i++;
    if (i == sizeof(names) / sizeof(names[0])) {
        snprintf(err, errlen, "mode must be hang, slow, late, twice, die or segv");
        free(f);
        return -22;
    }
    f->mode = (enum faulty_mode)i;
    f->ms = sink_props_get_int(p, "ms", 100);
    f->tail = &f->head;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (pthread_create(&f->thread, NULL, faulty_thread, f) != 0) {
        snprintf(err, errlen, "cannot start a thread");
        free(f);
        return -11;
    }
    *instance = f;
    return 0;
}

static void faulty_destroy(void *instance)
{
    struct faulty *f = instance;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_signal(&f->cv);
    int dead = f->dead;
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL); /* an exited thread joins at once */
    if (dead)                      /* nobody answers what was queued for the dead thread */
        for (struct faulty_job *j = f->head, *n; j; j = n) {
            n = j->next;
            sink_complete(j->ctx, SINK_CONTINUE);
            free(j);
        }
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static enum sink_verdict faulty_handle(void *instance, struct sink_ctx *ctx)
{
    struct faulty *f = instance;
    struct faulty_job *j = malloc(sizeof(*j));
    if (j == NULL)
        return SINK_CONTINUE;
    j->ctx = ctx;
    j->next = NULL;
    pthread_mutex_lock(&f->mu);
    *f->tail = j;
    f->tail = &j->next;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return SINK_PENDING;
}

/* The engine gave up on ctx (deadline, client gone): forget it, wherever
 * it is (held by hang, queued for a dead thread). */
static void faulty_abandoned(void *instance, struct sink_ctx *ctx)
{
    struct faulty *f = instance;
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < sizeof(f->held) / sizeof(f->held[0]); i++)
        if (f->held[i] == ctx)
            f->held[i] = NULL;
    for (struct faulty_job **pp = &f->head; *pp; pp = &(*pp)->next)
        if ((*pp)->ctx == ctx) {
            struct faulty_job *j = *pp;
            *pp = j->next;
            if (*pp == NULL)
                f->tail = pp;
            free(j);
            break;
        }
    pthread_mutex_unlock(&f->mu);
}

#define FAULTY_EVENTS                                                                              \
    (SINK_EVMASK(SINK_EV_MAIL) | SINK_EVMASK(SINK_EV_RCPT) | SINK_EVMASK(SINK_EV_EOD))

static const struct sink_module faulty_module = {
    SINK_MODULE_HEAD,
    .name = "sink_faulty",
    .events = FAULTY_EVENTS,
    .create = faulty_create,
    .destroy = faulty_destroy,
    .handle = faulty_handle,
    .abandoned = faulty_abandoned,
};

/* late and twice: a module without abandoned(), so a late answer is legal */
static const struct sink_module faulty_module_nohook = {
    SINK_MODULE_HEAD,
    .name = "sink_faulty",
    .events = FAULTY_EVENTS,
    .create = faulty_create,
    .destroy = faulty_destroy,
    .handle = faulty_handle,
};

__attribute__((visibility("default"))) const struct sink_module *sluice_sink_module(void)
{
    const char *m = getenv("SINK_FAULTY_NOHOOK");
    return m && *m == '1' ? &faulty_module_nohook : &faulty_module;
}
