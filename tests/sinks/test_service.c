/*
 * Sink services (sinks/service.c): timers, descriptor watches through an
 * event loop given to the sink_worker (here poll(2), in sluiced the
 * worker's ring), cancellation when the call ends, the abandoned() hook,
 * and what an abandoned call costs afterwards (nothing).
 */
#include "tests/sinks/sink_test.h"

#include <malloc.h>
#include <poll.h>

/* ---- the test sink: builtin:svc, driven by its properties ---- */

struct svc_inst {
    char mode[16];
    long ms, count;
    bool hook;
};
static _Atomic int svc_fired, svc_cancelled, svc_hooked, svc_fd_status;
static int svc_order[64];
static _Atomic int svc_norder;

static int svc_create(const struct sink_props *p, void **inst, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    struct svc_inst *s = calloc(1, sizeof(*s));
    const char *m = sink_props_get(p, "mode");
    snprintf(s->mode, sizeof(s->mode), "%s", m ? m : "timer");
    s->ms = sink_props_get_int(p, "ms", 0);
    s->count = sink_props_get_int(p, "count", 1);
    s->hook = sink_props_get_bool(p, "hook", 0);
    *inst = s;
    return 0;
}

static void svc_destroy(void *inst)
{
    free(inst);
}

static void svc_timer_cb(struct sink_ctx *ctx, void *arg, int status)
{
    if (status == SINK_SVC_CANCELLED) {
        atomic_fetch_add(&svc_cancelled, 1);
        return;
    }
    int n = atomic_fetch_add(&svc_fired, 1);
    if (n < 64)
        svc_order[atomic_fetch_add(&svc_norder, 1)] = (int)(intptr_t)arg;
    (void)ctx;
}

static void svc_last_cb(struct sink_ctx *ctx, void *arg, int status)
{
    svc_timer_cb(ctx, arg, status);
    if (status == 0) {
        sink_set_reply(ctx, 250, "2.0.0", "timer done");
        sink_complete(ctx, SINK_CONTINUE);
    }
}

static void svc_fd_cb(struct sink_ctx *ctx, void *arg, int fd, int status)
{
    (void)arg, (void)fd;
    if (status == SINK_SVC_CANCELLED) {
        atomic_fetch_add(&svc_cancelled, 1);
        return;
    }
    atomic_store(&svc_fd_status, status);
    sink_complete(ctx, SINK_REJECT);
}

static void svc_dns_cb(struct sink_ctx *ctx, void *arg, const struct sink_dns_answer *a)
{
    (void)ctx, (void)arg, (void)a;
}

static int svc_pipe[2] = {-1, -1};

static enum sink_verdict svc_handle(void *inst, struct sink_ctx *ctx)
{
    struct svc_inst *s = inst;
    if (strcmp(s->mode, "timer") == 0) { /* count timers, ms apart, the last completes */
        for (long i = 0; i < s->count; i++) {
            uint64_t ms = (uint64_t)(s->ms * (s->count - i));
            int rc = sink_timer_start(ctx, ms, i == 0 ? svc_last_cb : svc_timer_cb,
                                      (void *)(intptr_t)(s->count - i), NULL);
            cr_assert_eq(rc, 0, "timer %ld: %d", i, rc);
        }
        return SINK_PENDING;
    }
    if (strcmp(s->mode, "hang") == 0) { /* waits on services that never end */
        for (long i = 0; i < s->count; i++)
            cr_assert_eq(sink_timer_start(ctx, 3600 * 1000, svc_timer_cb, NULL, NULL), 0);
        return SINK_PENDING;
    }
    if (strcmp(s->mode, "sync") == 0) { /* starts a service, answers at once anyway */
        cr_assert_eq(sink_timer_start(ctx, 10, svc_timer_cb, NULL, NULL), 0);
        return SINK_CONTINUE;
    }
    if (strcmp(s->mode, "cancel") == 0) { /* one cancelled by the sink, one fires */
        sink_svc_id id = 0;
        cr_assert_eq(sink_timer_start(ctx, 1, svc_timer_cb, (void *)1, &id), 0);
        cr_assert_neq(id, 0);
        cr_assert_eq(sink_timer_start(ctx, 5, svc_last_cb, (void *)2, NULL), 0);
        cr_assert_eq(sink_svc_cancel(ctx, id), 0);
        cr_assert_eq(sink_svc_cancel(ctx, id), -ENOENT);
        return SINK_PENDING;
    }
    if (strcmp(s->mode, "fd") == 0) {
        int rc = sink_fd_watch(ctx, svc_pipe[0], SINK_FD_READ, svc_fd_cb, NULL, NULL);
        cr_assert_eq(rc, 0, "%d", rc);
        return SINK_PENDING;
    }
    return SINK_TEMPFAIL;
}

static void svc_abandoned(void *inst, struct sink_ctx *ctx)
{
    (void)inst, (void)ctx;
    atomic_fetch_add(&svc_hooked, 1);
}

static const struct sink_module svc_module = {
    SINK_MODULE_HEAD,
    .name = "svc",
    .events = SINK_EVMASK(SINK_EV_COUNT) - 1,
    .create = svc_create,
    .destroy = svc_destroy,
    .handle = svc_handle,
};
static const struct sink_module svc_hook_module = {
    SINK_MODULE_HEAD,
    .name = "svchook",
    .events = SINK_EVMASK(SINK_EV_COUNT) - 1,
    .create = svc_create,
    .destroy = svc_destroy,
    .handle = svc_handle,
    .abandoned = svc_abandoned,
};

/* ---- an event loop of poll(2) for the sink_worker's io ---- */

#define IO_MAX 64
static struct {
    int fd;
    unsigned what;
    uint32_t token;
    bool live, cancelled;
} io_v[IO_MAX];

static int io_poll(void *arg, int fd, unsigned what, uint32_t token)
{
    (void)arg;
    for (int i = 0; i < IO_MAX; i++)
        if (!io_v[i].live) {
            io_v[i].fd = fd, io_v[i].what = what, io_v[i].token = token;
            io_v[i].live = true, io_v[i].cancelled = false;
            return 0;
        }
    return -EBUSY;
}

static void io_cancel(void *arg, uint32_t token)
{
    (void)arg;
    for (int i = 0; i < IO_MAX; i++)
        if (io_v[i].live && io_v[i].token == token)
            io_v[i].cancelled = true;
}

/* One turn: completions, polls (ms at most), timers and deadlines. */
static void io_turn(struct st_rig *r, int ms)
{
    struct pollfd p[IO_MAX];
    int idx[IO_MAX], n = 0;
    for (int i = 0; i < IO_MAX; i++) {
        if (!io_v[i].live)
            continue;
        if (io_v[i].cancelled) {
            io_v[i].live = false;
            sink_worker_poll_done(r->sw, io_v[i].token, -ECANCELED);
            continue;
        }
        p[n].fd = io_v[i].fd;
        p[n].events = (short)(((io_v[i].what & SINK_FD_READ) ? POLLIN : 0) |
                              ((io_v[i].what & SINK_FD_WRITE) ? POLLOUT : 0));
        idx[n++] = i;
    }
    uint64_t dl = sink_worker_next_deadline(r->sw, sink_now_ms());
    if (dl < (uint64_t)ms)
        ms = (int)dl;
    if (poll(p, (nfds_t)n, ms) > 0)
        for (int k = 0; k < n; k++)
            if (p[k].revents) {
                io_v[idx[k]].live = false;
                sink_worker_poll_done(r->sw, io_v[idx[k]].token, p[k].revents);
            }
    sched_worker_run_budget(r->w, 64);
    sink_worker_expire(r->sw, sink_now_ms());
    sched_worker_run_budget(r->w, 64);
}

static struct sink_engine *svc_engine(const char *sink, const char *props, const char *deadline)
{
    st_setup();
    int rc = sink_builtin_register(&svc_module);
    cr_assert(rc == 0 || rc == -EEXIST);
    rc = sink_builtin_register(&svc_hook_module);
    cr_assert(rc == 0 || rc == -EEXIST);
    atomic_store(&svc_fired, 0);
    atomic_store(&svc_cancelled, 0);
    atomic_store(&svc_hooked, 0);
    atomic_store(&svc_norder, 0);
    char conf[512];
    snprintf(conf, sizeof(conf),
             "binding s { event = mail; sink = \"builtin:%s\"; deadline = \"%s\";"
             " on_deadline = tempfail; properties { %s } }\n",
             sink, deadline, props);
    return st_engine(conf);
}

static void svc_rig(struct st_rig *r, struct sink_engine *e)
{
    st_rig_init(r, e);
    memset(io_v, 0, sizeof(io_v));
    const struct sink_io io = {io_poll, io_cancel, NULL};
    cr_assert_eq(sink_worker_set_io(r->sw, &io, NULL, 0), 0);
}

/* Dispatches mail on r's call; turns the loop until done ran (or limit ms). */
static bool svc_run(struct st_rig *r, struct st_done *done, int limit_ms)
{
    struct st_server srv = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    if (sink_dispatch(r->call, SINK_EV_MAIL, &d, st_server_fn, &srv, st_done_fn, done, &res)) {
        done->res = res;
        atomic_fetch_add(&done->calls, 1);
        return true;
    }
    uint64_t end = sink_now_ms() + (uint64_t)limit_ms;
    while (atomic_load(&done->calls) == 0 && sink_now_ms() < end)
        io_turn(r, 5);
    return atomic_load(&done->calls) > 0;
}

Test(service, timers_fire_in_order_and_complete, .timeout = 20)
{
    struct sink_engine *e = svc_engine("svc", "mode = timer; ms = 3; count = 5;", "5s");
    struct st_rig r;
    svc_rig(&r, e);
    struct st_done done = {0};
    cr_assert(svc_run(&r, &done, 5000));
    cr_assert_eq(done.res.verdict, SINK_CONTINUE);
    cr_assert_eq(atomic_load(&svc_fired), 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(svc_order[i], i + 1, "timer %d fired %d-th", svc_order[i], i);
    cr_assert_eq(sink_worker_services(r.sw), 0);
    st_rig_fini(&r, e);
}

Test(service, deadline_cancels_every_service_and_frees_the_ctx, .timeout = 20)
{
    struct sink_engine *e = svc_engine("svc", "mode = hang; count = 3;", "30ms");
    struct st_rig r;
    svc_rig(&r, e);
    struct st_done done = {0};
    cr_assert(svc_run(&r, &done, 5000));
    cr_assert_eq(done.res.verdict, SINK_TEMPFAIL);
    cr_assert_eq(atomic_load(&svc_cancelled), 3, "each callback told");
    cr_assert_eq(sink_worker_services(r.sw), 0);
    struct sink_binding_stats bs;
    cr_assert(sink_engine_binding_stats(e, 0, &bs));
    cr_assert_eq(bs.svc_started, 3);
    cr_assert_eq(bs.svc_cancelled, 3);
    cr_assert_eq(bs.svc_in_flight, 0);
    st_rig_fini(&r, e);
}

Test(service, a_synchronous_verdict_ends_the_services, .timeout = 20)
{
    struct sink_engine *e = svc_engine("svc", "mode = sync;", "5s");
    struct st_rig r;
    svc_rig(&r, e);
    struct st_done done = {0};
    cr_assert(svc_run(&r, &done, 1000));
    cr_assert_eq(atomic_load(&svc_cancelled), 1);
    cr_assert_eq(sink_worker_services(r.sw), 0);
    io_turn(&r, 20);
    cr_assert_eq(atomic_load(&svc_fired), 0, "a cancelled timer never fires");
    st_rig_fini(&r, e);
}

Test(service, the_sink_cancels_one, .timeout = 20)
{
    struct sink_engine *e = svc_engine("svc", "mode = cancel;", "5s");
    struct st_rig r;
    svc_rig(&r, e);
    struct st_done done = {0};
    cr_assert(svc_run(&r, &done, 2000));
    cr_assert_eq(atomic_load(&svc_fired), 1);
    cr_assert_eq(svc_order[0], 2);
    cr_assert_eq(atomic_load(&svc_cancelled), 0, "a cancel the sink asked for is not a callback");
    st_rig_fini(&r, e);
}

Test(service, fd_watch_reports_readiness, .timeout = 20)
{
    cr_assert_eq(pipe(svc_pipe), 0);
    struct sink_engine *e = svc_engine("svc", "mode = fd;", "5s");
    struct st_rig r;
    svc_rig(&r, e);
    struct st_done done = {0};
    struct st_server srv = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, SINK_EV_MAIL, &d, st_server_fn, &srv, st_done_fn, &done,
                                &res));
    io_turn(&r, 10);
    cr_assert_eq(atomic_load(&done.calls), 0, "nothing to read yet");
    cr_assert_eq(write(svc_pipe[1], "x", 1), 1);
    for (int i = 0; i < 100 && atomic_load(&done.calls) == 0; i++)
        io_turn(&r, 10);
    cr_assert_eq(done.res.verdict, SINK_REJECT);
    cr_assert(atomic_load(&svc_fd_status) & SINK_FD_READ);
    st_rig_fini(&r, e);
    close(svc_pipe[0]);
    close(svc_pipe[1]);
}

Test(service, fd_watch_cancelled_by_the_session_end, .timeout = 20)
{
    cr_assert_eq(pipe(svc_pipe), 0);
    struct sink_engine *e = svc_engine("svc", "mode = fd;", "5s");
    struct st_rig r;
    svc_rig(&r, e);
    struct st_done done = {0};
    struct st_server srv = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, SINK_EV_MAIL, &d, st_server_fn, &srv, st_done_fn, &done,
                                &res));
    sink_call_destroy(r.call); /* the client went away */
    r.call = NULL;
    cr_assert_eq(atomic_load(&svc_cancelled), 1);
    io_turn(&r, 5); /* the cancelled poll's completion is dropped */
    cr_assert_eq(atomic_load(&done.calls), 0);
    cr_assert_eq(sink_worker_services(r.sw), 0);
    st_rig_fini(&r, e);
    close(svc_pipe[0]);
    close(svc_pipe[1]);
}

Test(service, services_only_from_the_owner, .timeout = 20)
{
    /* a ctx of another worker's thread: -EPERM (checked on a pending ctx) */
    struct sink_engine *e = svc_engine("svc", "mode = hang; count = 1;", "5s");
    struct st_rig r;
    svc_rig(&r, e);
    struct st_done done = {0};
    struct st_server srv = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, SINK_EV_MAIL, &d, st_server_fn, &srv, st_done_fn, &done,
                                &res));
    struct sink_ctx *ctx = r.call->pending;
    cr_assert_not_null(ctx);
    r.sw->owner = (pthread_t)0; /* as if this thread were another */
    cr_assert_eq(sink_timer_start(ctx, 1, svc_timer_cb, NULL, NULL), -EPERM);
    r.sw->owner = pthread_self();
    cr_assert_eq(sink_timer_start(ctx, 1, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(sink_dns_lookup(ctx, "", SINK_DNS_A, svc_dns_cb, NULL, NULL), -EINVAL);
    st_rig_fini(&r, e);
}

/* The leak the issue measured: 30,000 abandoned PENDING calls used to keep
 * about 1 KB each.  With services or the abandoned() hook the engine
 * frees each ctx when the call ends. */
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks;
}

static void abandon_many(const char *sink, int n)
{
    struct sink_engine *e = svc_engine(sink, "mode = hang; count = 1;", "5s");
    struct st_rig r;
    svc_rig(&r, e);
    struct st_server srv = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    struct st_done done = {0};
    size_t before = 0;
    for (int i = 0; i < n; i++) {
        if (i == 1000)
            before = heap_in_use(); /* after the first allocations settled */
        cr_assert_not(sink_dispatch(r.call, SINK_EV_MAIL, &d, st_server_fn, &srv, st_done_fn,
                                    &done, &res));
        sink_call_destroy(r.call); /* the session ends with the call pending */
        r.call = sink_call_create(r.sw);
    }
    size_t after = heap_in_use();
    cr_assert_lt(after, before + 64 * 1024, "%d abandoned calls grew the heap by %zd octets", n,
                 (ssize_t)(after - before));
    cr_assert_eq(atomic_load(&svc_cancelled), n);
    st_rig_fini(&r, e);
}

Test(service, abandoned_calls_cost_nothing_afterwards, .timeout = 60)
{
    abandon_many("svc", 30000);
}

Test(service, abandoned_hook_runs_and_the_ctx_goes, .timeout = 60)
{
    abandon_many("svchook", 30000);
    cr_assert_eq(atomic_load(&svc_hooked), 30000);
}

Test(service, removing_the_binding_ends_its_pending_calls, .timeout = 20)
{
    struct sink_engine *e = svc_engine("svc", "mode = hang; count = 2;", "10s");
    struct st_rig r;
    svc_rig(&r, e);
    struct st_done done = {0};
    struct st_server srv = {0};
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, SINK_EV_MAIL, &d, st_server_fn, &srv, st_done_fn, &done,
                                &res));
    io_turn(&r, 1);
    cr_assert_eq(atomic_load(&done.calls), 0);
    char err[256];
    cr_assert_eq(sink_engine_remove(e, "s", err, sizeof(err)), 0, "%s", err);
    uint64_t t0 = sink_now_ms();
    io_turn(&r, 1); /* the worker's next turn, not the 10 s deadline */
    cr_assert_eq(atomic_load(&done.calls), 1);
    cr_assert_lt(sink_now_ms() - t0, 1000);
    cr_assert_eq(done.res.verdict, SINK_TEMPFAIL); /* on_deadline */
    cr_assert_eq(atomic_load(&svc_cancelled), 2, "its services were told");
    cr_assert_eq(sink_worker_services(r.sw), 0);
    st_rig_fini(&r, e);
}
