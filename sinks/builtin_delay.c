/*
 * NAME
 *	builtin_delay - an asynchronous sink that answers after a while
 * SYNOPSIS
 *	binding "slow" {
 *	    event = "eod"; sink = "builtin:delay"; deadline = "2s";
 *	    properties { ms = 50; }            # or: never = true;
 *	}
 * DESCRIPTION
 *	For tests and benchmarks of the asynchronous path.  Every event it
 *	gets returns SINK_PENDING; one timer thread shared by all delay
 *	instances calls sink_complete() ms milliseconds later (ms = 0: at
 *	once, from the timer thread), with verdict (default "continue"; also
 *	"reject", "tempfail", ...).  With never = true it never answers, so
 *	the binding's deadline decides; the held calls are completed when
 *	the instance is destroyed, which frees them.
 *
 *	The timer: a binary min-heap of due times under one mutex and a
 *	condition variable on CLOCK_MONOTONIC.  Completions are made under
 *	the mutex, so once destroy() has taken it no completion of that
 *	instance is in flight (the engine may free the binding right after).
 *	A test sink, so simple beats clever.
 * DIAGNOSTICS
 *	ms is a duration ("200ms", "2s"; a plain number is milliseconds).
 *	create() fails on a malformed ms or never, an unknown verdict or an
 *	unknown property.  When the heap cannot grow, the event CONTINUEs
 *	at once.
 */
#include "core/base/clock.h"
#include "sinks/sink.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct delay_inst {
    uint64_t ns;
    bool never;
    enum sink_verdict verdict;
};

struct delay_item {
    uint64_t due; /* CLOCK_MONOTONIC ns; UINT64_MAX: never */
    struct sink_ctx *ctx;
    const struct delay_inst *inst;
    enum sink_verdict verdict;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* initialised with the first instance */
    struct delay_item *heap;
    size_t n, cap;
    struct delay_item *never;
    size_t nnever, capnever;
    unsigned ninst;
    bool stop;
    pthread_t thread;
} delay_timer = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void delay_swap(size_t i, size_t j)
{
    struct delay_item t = delay_timer.heap[i];
    delay_timer.heap[i] = delay_timer.heap[j];
    delay_timer.heap[j] = t;
}

static void delay_up(size_t i)
{
    while (i > 0 && delay_timer.heap[(i - 1) / 2].due > delay_timer.heap[i].due) {
        delay_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void delay_down(size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < delay_timer.n && delay_timer.heap[l].due < delay_timer.heap[m].due)
            m = l;
        if (l + 1 < delay_timer.n && delay_timer.heap[l + 1].due < delay_timer.heap[m].due)
            m = l + 1;
        if (m == i)
            return;
        delay_swap(i, m);
        i = m;
    }
}

static void *delay_run(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&delay_timer.mu);
    while (!delay_timer.stop) {
        if (delay_timer.n == 0) {
            pthread_cond_wait(&delay_timer.cv, &delay_timer.mu);
            continue;
        }
        uint64_t now = clock_mono_ns(), due = delay_timer.heap[0].due;
        if (due > now) {
            struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
            pthread_cond_timedwait(&delay_timer.cv, &delay_timer.mu, &ts);
            continue;
        }
        struct delay_item it = delay_timer.heap[0];
        delay_timer.heap[0] = delay_timer.heap[--delay_timer.n];
        delay_down(0);
        sink_complete(it.ctx, it.verdict); /* under the mutex: see the top */
    }
    pthread_mutex_unlock(&delay_timer.mu);
    return NULL;
}

static int delay_push(struct delay_item **v, size_t *n, size_t *cap, struct delay_item it)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        struct delay_item *nv = realloc(*v, c * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = it;
    return 0;
}

static int delay_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    static const char *const keys[] = {"ms", "verdict", "never", NULL};
    uint64_t ms;
    int never;
    int rc = sink_props_only(p, keys, err, errlen);
    if (rc < 0 || (rc = sink_props_ms(p, "ms", 0, &ms, err, errlen)) < 0 ||
        (rc = sink_props_bool(p, "never", 0, &never, err, errlen)) < 0)
        return rc;
    if (ms > 3600 * 1000) {
        snprintf(err, errlen, "property \"ms\": %llu is more than an hour", (unsigned long long)ms);
        return -EINVAL;
    }
    static const char *const names[] = {"continue", "consumed", "reject",    "tempfail",
                                        "drop",     "discard",  "quarantine"};
    const char *vs = sink_props_get(p, "verdict");
    int verdict = vs ? -1 : SINK_CONTINUE;
    for (int i = 0; vs && i < 7; i++)
        if (strcasecmp(vs, names[i]) == 0)
            verdict = i;
    if (verdict < 0) {
        snprintf(err, errlen,
                 "verdict \"%s\": continue, consumed, reject, tempfail, drop, "
                 "discard or quarantine",
                 vs);
        return -EINVAL;
    }
    struct delay_inst *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->ns = (uint64_t)ms * 1000000u;
    d->never = never;
    d->verdict = (enum sink_verdict)verdict;

    pthread_mutex_lock(&delay_timer.mu);
    if (delay_timer.ninst == 0) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&delay_timer.cv, &ca);
        pthread_condattr_destroy(&ca);
        delay_timer.stop = false;
        int rc = pthread_create(&delay_timer.thread, NULL, delay_run, NULL);
        if (rc != 0) {
            pthread_cond_destroy(&delay_timer.cv);
            pthread_mutex_unlock(&delay_timer.mu);
            free(d);
            snprintf(err, errlen, "timer thread: %s", strerror(rc));
            return -rc;
        }
    }
    delay_timer.ninst++;
    pthread_mutex_unlock(&delay_timer.mu);
    *instance = d;
    return 0;
}

/* Removes inst's items from v, completing each (under the mutex). */
static void delay_flush(struct delay_item *v, size_t *n, const struct delay_inst *inst)
{
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        if (v[i].inst == inst)
            sink_complete(v[i].ctx, SINK_CONTINUE);
        else
            v[k++] = v[i];
    }
    *n = k;
}

static void delay_destroy(void *instance)
{
    struct delay_inst *d = instance;
    pthread_mutex_lock(&delay_timer.mu);
    delay_flush(delay_timer.heap, &delay_timer.n, d);
    for (size_t i = delay_timer.n / 2; i-- > 0;)
        delay_down(i); /* re-heapify what is left */
    delay_flush(delay_timer.never, &delay_timer.nnever, d);
    bool last = --delay_timer.ninst == 0;
    if (last) {
        delay_timer.stop = true;
        pthread_cond_signal(&delay_timer.cv);
    }
    pthread_mutex_unlock(&delay_timer.mu);
    if (last) {
        pthread_join(delay_timer.thread, NULL);
        pthread_mutex_lock(&delay_timer.mu);
        pthread_cond_destroy(&delay_timer.cv);
        free(delay_timer.heap);
        free(delay_timer.never);
        delay_timer.heap = delay_timer.never = NULL;
        delay_timer.n = delay_timer.cap = delay_timer.nnever = delay_timer.capnever = 0;
        pthread_mutex_unlock(&delay_timer.mu);
    }
    free(d);
}

static enum sink_verdict delay_handle(void *instance, struct sink_ctx *ctx)
{
    const struct delay_inst *d = instance;
    struct delay_item it = {d->never ? UINT64_MAX : clock_mono_ns() + d->ns, ctx, d, d->verdict};
    pthread_mutex_lock(&delay_timer.mu);
    int rc;
    if (d->never) {
        rc = delay_push(&delay_timer.never, &delay_timer.nnever, &delay_timer.capnever, it);
    } else {
        rc = delay_push(&delay_timer.heap, &delay_timer.n, &delay_timer.cap, it);
        if (rc == 0) {
            delay_up(delay_timer.n - 1);
            if (delay_timer.heap[0].ctx == ctx)
                pthread_cond_signal(&delay_timer.cv); /* a new earliest: re-arm */
        }
    }
    pthread_mutex_unlock(&delay_timer.mu);
    return rc == 0 ? SINK_PENDING : SINK_CONTINUE;
}

const struct sink_module sink_builtin_delay = {
    SINK_MODULE_HEAD,
    .name = "delay",
    .events = SINK_EVMASK(SINK_EV_COUNT) - 1, /* every event */
    .create = delay_create,
    .destroy = delay_destroy,
    .handle = delay_handle,
};
