/*
 * NAME
 *	svc-bench - many pending sink services on one worker: memory and loss
 * SYNOPSIS
 *	svc-bench [PENDING [MS]]
 * DESCRIPTION
 *	One sink worker (the engine of a one-binding configuration made on
 *	the fly), PENDING calls (default 10,000) each starting a one-shot
 *	timer of MS milliseconds (default 1000) and returning SINK_PENDING:
 *	all pending at once.  Prints the heap in use per pending service
 *	(mallinfo2 before and after starting them: the ctx of the call and
 *	its service), the time to start them, then runs the worker until
 *	every timer fired and every call finished, and prints how many did
 *	(a miss is a failure: exit 1), the spread of firing times, and the
 *	heap left afterwards.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/base/clock.h"
#include "sinks/engine.h"
#include "sinks/sink.h"

static uint64_t fire_min = UINT64_MAX, fire_max;
static long fired;

static void on_timer(struct sink_ctx *ctx, void *arg, int status)
{
    (void)arg;
    if (status != 0)
        return;
    uint64_t now = clock_mono_ms();
    fire_min = now < fire_min ? now : fire_min;
    fire_max = now > fire_max ? now : fire_max;
    fired++;
    sink_complete(ctx, SINK_CONTINUE);
}

static long ms_prop = 1000;

static enum sink_verdict handle(void *inst, struct sink_ctx *ctx)
{
    (void)inst;
    if (sink_timer_start(ctx, (uint64_t)ms_prop, on_timer, NULL, NULL) < 0)
        return SINK_TEMPFAIL;
    return SINK_PENDING;
}

static const struct sink_module timer_module = {
    SINK_MODULE_HEAD,
    .name = "bench_timer",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .handle = handle,
};

static long done_calls;
static void on_done(void *arg, const struct sink_result *res)
{
    (void)arg, (void)res;
    done_calls++;
}

static size_t heap(void)
{
    return mallinfo2().uordblks;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000;
    ms_prop = argc > 2 ? atol(argv[2]) : 1000;
    if (n < 1 || n > 10000000 || ms_prop < 0) {
        fprintf(stderr, "usage: svc-bench [PENDING [MS]]\n");
        return 2;
    }
    sink_builtin_register(&timer_module);
    char path[] = "/tmp/svc-bench-XXXXXX";
    int fd = mkstemp(path);
    const char conf[] = "binding \"t\" { event = mail; sink = \"builtin:bench_timer\";"
                        " deadline = \"60s\"; }\n";
    if (fd < 0 || write(fd, conf, sizeof(conf) - 1) != (ssize_t)(sizeof(conf) - 1)) {
        perror("svc-bench: temp file");
        return 2;
    }
    close(fd);
    char err[512];
    struct sink_engine *e = sink_engine_load(path, err, sizeof(err));
    unlink(path);
    if (e == NULL) {
        fprintf(stderr, "svc-bench: %s\n", err);
        return 2;
    }
    struct sink_worker *sw = sink_worker_create(e, NULL, 0);
    struct sink_call **calls = calloc((size_t)n, sizeof(*calls));
    struct sink_event_data d = {.client_addr = "127.0.0.1", .sender = "a@example.org"};
    size_t hpre = heap();
    for (long i = 0; i < n; i++)
        calls[i] = sink_call_create(sw);
    size_t h0 = heap();
    uint64_t t0 = clock_mono_ns();
    for (long i = 0; i < n; i++) {
        struct sink_result res;
        if (sink_dispatch(calls[i], SINK_EV_MAIL, &d, NULL, NULL, on_done, NULL, &res))
            done_calls++;
    }
    uint64_t t1 = clock_mono_ns();
    size_t h1 = heap();
    size_t pending = sink_worker_services(sw);
    printf("svc-bench: %ld calls, %zu services pending on one worker\n", n, pending);
    printf("svc-bench: started in %.1f ms (%.0f ns each)\n", (double)(t1 - t0) / 1e6,
           (double)(t1 - t0) / (double)n);
    printf("svc-bench: memory per pending service: %.0f octets (the timer and its share of the "
           "worker's heap), plus %.0f per call (its ctx and call, there with or without it)\n",
           (double)(h1 - h0) / (double)n, (double)(h0 - hpre) / (double)n);
    uint64_t start = clock_mono_ms(), limit = start + (uint64_t)ms_prop + 30000;
    while (done_calls < n && clock_mono_ms() < limit) {
        uint64_t w = sink_worker_next_deadline(sw, clock_mono_ms());
        if (w > 0)
            usleep((useconds_t)(w > 50 ? 50000 : w * 1000));
        sink_worker_expire(sw, clock_mono_ms());
    }
    printf("svc-bench: %ld of %ld timers fired, %ld calls finished, spread %llu ms\n", fired, n,
           done_calls, fired ? (unsigned long long)(fire_max - fire_min) : 0ULL);
    for (long i = 0; i < n; i++)
        sink_call_destroy(calls[i]);
    free(calls);
    sink_worker_destroy(sw);
    sink_engine_destroy(e);
    printf("svc-bench: heap after: %+lld octets against before the calls\n",
           (long long)heap() - (long long)hpre);
    if (fired != n || done_calls != n) {
        printf("svc-bench: LOST %ld\n", n - done_calls);
        return 1;
    }
    return 0;
}
