/*
 * NAME
 *	sb_sink - `sluice-bench sink`: one sink measured on the real engine
 * SYNOPSIS
 *	sluice-bench sink SINK [--event E] [--prop k=v]... [--workers N]
 *	             [--sessions N] [--size S] [--calls N] [--deadline D]
 *	             [--daemon [--seconds S] [--sluiced PATH]] [--json]
 * DESCRIPTION
 *	SINK is what a binding's `sink` key takes: builtin:NAME or the path of
 *	a shared object (and whatever kinds the engine's loader learns later:
 *	the text goes to it unchanged).  The binding
 *	    binding "bench" { event = E; sink = SINK; deadline = D;
 *	                      properties { k = v; ... } }
 *	is written to a configuration file and loaded with sink_engine_load,
 *	as sluiced loads it.  N workers (threads, each attached to a worker of
 *	a sched pool with its own sink_worker) each run S synthetic sessions:
 *	a session dispatches E with an event's data (client 192.0.2.1, a HELO,
 *	a sender, one recipient, a body of --size bytes behind body_at and
 *	body_hold, working header and recipient edits) again and again; while
 *	a call is pending the session waits and the worker runs the others,
 *	its completions (sched inbox) and its deadlines
 *	(sink_worker_next_deadline / sink_worker_expire: also the services'
 *	timers) and the services' fd watches and DNS (a poll(2) loop given
 *	to the worker with sink_worker_set_io), and parks on its wake fd when
 *	it has nothing else to do.
 *
 *	Each measurement runs twice: without the binding (the chain holds
 *	only the server's own link: what the engine costs without the sink)
 *	and with it, --calls dispatches in all after a warm-up of a tenth.
 *	Printed: calls/s (wall), CPU ns per call (the workers' thread CPU
 *	time), the sink's cost (with - without) and as a fraction of the
 *	engine without it, verdicts, latency percentiles of calls answered at
 *	once and of pending ones (dispatch to done), deadline misses (the
 *	engine's counters).
 *
 *	--daemon: the same binding in a real sluiced (sb_daemon.c).
 * DIAGNOSTICS
 *	Exit 1 with one line when the binding does not load (the engine's own
 *	message) or a call never ends; 2 on usage errors.
 */
#include "bench/sb/sb.h"
#include "core/base/clock.h"
#include "sched/sched.h"
#include "sinks/engine.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SK_MAX_PROPS 32
#define SK_MAX_WATCH 256

struct sk_opts {
    const char *sink, *event, *deadline, *sluiced;
    const char *prop_k[SK_MAX_PROPS], *prop_v[SK_MAX_PROPS];
    unsigned nprops, workers, sessions;
    uint64_t size, calls;
    double seconds;
    bool daemon, json;
};

/* A synthetic session: its call object, event data and body. */
struct sk_sess {
    struct sk_thr *t;
    struct sink_call *call;
    struct sink_event_data d;
    struct sink_bag *sbag, *mbag;
    const char *rcpt_list[8];
    char rcpt_store[8][64];
    bool pending;
    uint64_t t0;
    struct sink_msgref ref;
    unsigned refs;
};

struct sk_thr {
    const struct sk_opts *o;
    struct sched_pool *pool;
    struct sink_engine *e;
    enum sink_event ev;
    unsigned index;
    uint64_t calls, done;
    struct sk_sess *s;
    struct sink_worker *sw;
    /* results */
    uint64_t verdicts[SINK_PENDING + 1];
    uint64_t npending, server_calls;
    struct sb_hist lat_sync, lat_pending; /* ns */
    double cpu_s, wall_s;
    int failed;
    pthread_barrier_t *barrier;
    uint64_t *misses0;
    /* the sink services' fd watches (sink_io), polled by the loop */
    struct sk_watch {
        int fd;
        short events;
        bool cancelled;
        uint32_t token;
    } watch[SK_MAX_WATCH];
    unsigned nwatch;
};

static uint64_t sk_misses(const struct sink_engine *e)
{
    struct sink_binding_stats bs;
    for (size_t i = 0; i < sink_engine_binding_count(e); i++)
        if (sink_engine_binding_stats(e, i, &bs) && strcmp(bs.name, "bench") == 0)
            return bs.deadline_misses;
    return 0;
}

static char *sk_msg; /* the message every session offers (read-only) */
static size_t sk_msg_len;

static int sk_body_at(void *arg, uint64_t off, const char **p, size_t *len)
{
    (void)arg;
    if (off >= sk_msg_len) {
        *len = 0;
        return 0;
    }
    *p = sk_msg + off;
    *len = sk_msg_len - off;
    return 0;
}

static uint64_t sk_ref_size(const struct sink_msgref *m)
{
    (void)m;
    return sk_msg_len;
}

static ssize_t sk_ref_read(struct sink_msgref *m, uint64_t off, void *buf, size_t len)
{
    (void)m;
    if (off >= sk_msg_len)
        return 0;
    size_t n = sk_msg_len - off < len ? sk_msg_len - off : len;
    memcpy(buf, sk_msg + off, n);
    return (ssize_t)n;
}

static void sk_ref_release(struct sink_msgref *m)
{
    struct sk_sess *s = (struct sk_sess *)((char *)m - offsetof(struct sk_sess, ref));
    __atomic_fetch_sub(&s->refs, 1, __ATOMIC_RELEASE); /* may be another thread */
}

static const struct sink_msgref_ops sk_ref_ops = {sk_ref_size, sk_ref_read, sk_ref_release};

static struct sink_msgref *sk_body_hold(void *arg)
{
    struct sk_sess *s = arg;
    __atomic_fetch_add(&s->refs, 1, __ATOMIC_RELAXED);
    return &s->ref;
}

static int sk_edit(void *arg, enum sink_edit_op op, const char *name, const char *value)
{
    (void)arg, (void)op, (void)name, (void)value;
    return 0; /* recorded and dropped: the message is not written here */
}

static int sk_rcpt_edit(void *arg, int op, size_t i, const char *addr)
{
    struct sk_sess *s = arg;
    size_t n = s->d.nrcpt;
    if (op == 0 && i < n) {
        snprintf(s->rcpt_store[i], sizeof(s->rcpt_store[i]), "%s", addr);
    } else if (op == 1 && n < 8) {
        snprintf(s->rcpt_store[n], sizeof(s->rcpt_store[n]), "%s", addr);
        s->rcpt_list[n] = s->rcpt_store[n];
        s->d.nrcpt = n + 1;
    } else if (op == 2 && i < n) {
        for (size_t k = i; k + 1 < n; k++)
            memcpy(s->rcpt_store[k], s->rcpt_store[k + 1], sizeof(s->rcpt_store[k]));
        s->d.nrcpt = n - 1;
    } else {
        return -ENOSPC;
    }
    return 0;
}

static int sk_route_set(void *arg, const char *nexthop)
{
    (void)arg, (void)nexthop;
    return 0;
}

static void sk_sess_data(struct sk_sess *s, enum sink_event ev)
{
    snprintf(s->rcpt_store[0], sizeof(s->rcpt_store[0]), "rcpt@dest.example.test");
    s->rcpt_list[0] = s->rcpt_store[0];
    s->d = (struct sink_event_data){
        .client_addr = "192.0.2.1",
        .helo = "client.bench.test",
        .verb = "MAIL",
        .args = "FROM:<bench@client.bench.test> SIZE=4096",
        .sender = "bench@client.bench.test",
        .mail_params = "SIZE=4096",
        .nrcpt = 1,
        .rcpts = s->rcpt_list,
        .rcpt = "rcpt@dest.example.test",
        .reply_code = 250,
        .reply_text = "250 2.0.0 Ok",
        .msg_id = 1,
        .body_size = sk_msg_len,
        .body_at = sk_body_at,
        .body_hold = sk_body_hold,
        .edit = sk_edit,
        .body_arg = s,
        .nexthop = "127.0.0.1:25",
        .status = "2.0.0",
        .rcpt_edit = sk_rcpt_edit,
        .route_set = sk_route_set,
        .transport_arg = s,
        .session_bag = s->sbag,
        .message_bag = s->mbag,
    };
    static const char *const verbs[SINK_EV_COUNT] = {
        [SINK_EV_HELO] = "EHLO", [SINK_EV_MAIL] = "MAIL",    [SINK_EV_RCPT] = "RCPT",
        [SINK_EV_DATA] = "DATA", [SINK_EV_COMMAND] = "MAIL", [SINK_EV_AUTH] = "AUTH",
    };
    s->d.verb = verbs[ev];
    if (ev == SINK_EV_RCPT)
        s->d.args = "TO:<rcpt@dest.example.test>";
    if (ev == SINK_EV_HELO)
        s->d.args = "client.bench.test";
    if (ev == SINK_EV_AUTH) {
        s->d.auth_user = "bench";
        s->d.auth_password = "secret";
        s->d.args = "PLAIN";
    }
}

/* The server's own link (it accepts); NULL for the queue manager's events. */
static enum sink_verdict sk_server(void *arg, struct sink_result *res)
{
    (void)res;
    ((struct sk_thr *)arg)->server_calls++;
    return SINK_CONTINUE;
}

static bool sk_has_server(enum sink_event ev)
{
    return ev < SINK_EV_SUBMISSION || ev == SINK_EV_AUTH;
}

static void sk_count(struct sk_thr *t, const struct sink_result *res)
{
    unsigned v = res->verdict <= SINK_PENDING ? res->verdict : SINK_PENDING;
    t->verdicts[v]++;
    t->done++;
}

static void sk_done(void *arg, const struct sink_result *res)
{
    struct sk_sess *s = arg;
    s->pending = false;
    sb_hist_add(&s->t->lat_pending, clock_mono_ns() - s->t0);
    sk_count(s->t, res);
}

static double sk_thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* sink_io for the services: one-shot watches kept here, polled by sk_loop;
 * a cancelled one is handed back (-ECANCELED) at the loop's next turn. */
static int sk_io_poll(void *arg, int fd, unsigned what, uint32_t token)
{
    struct sk_thr *t = arg;
    if (t->nwatch == SK_MAX_WATCH)
        return -ENOMEM;
    t->watch[t->nwatch++] = (struct sk_watch){
        fd, (short)(((what & SINK_FD_READ) ? POLLIN : 0) | ((what & SINK_FD_WRITE) ? POLLOUT : 0)),
        false, token};
    return 0;
}

static void sk_io_cancel(void *arg, uint32_t token)
{
    struct sk_thr *t = arg;
    for (unsigned i = 0; i < t->nwatch; i++)
        if (t->watch[i].token == token)
            t->watch[i].cancelled = true;
}

/* Polls the watches (and, parking, the worker's wake fd) for up to ms;
 * hands every ready or cancelled watch back to the sink worker. */
static void sk_io_run(struct sk_thr *t, int wake_fd, int ms)
{
    struct pollfd p[SK_MAX_WATCH + 1];
    unsigned n = t->nwatch;
    for (unsigned i = 0; i < n; i++)
        p[i] = (struct pollfd){t->watch[i].cancelled ? -1 : t->watch[i].fd, t->watch[i].events, 0};
    p[n] = (struct pollfd){wake_fd, POLLIN, 0};
    if (n == 0 && wake_fd < 0)
        return;
    poll(p, n + (wake_fd >= 0), ms);
    uint32_t tok[SK_MAX_WATCH];
    int res[SK_MAX_WATCH];
    unsigned nd = 0, keep = 0;
    for (unsigned i = 0; i < n; i++) {
        short r = p[i].revents;
        if (t->watch[i].cancelled || r != 0) {
            tok[nd] = t->watch[i].token;
            res[nd++] = t->watch[i].cancelled
                            ? -ECANCELED
                            : (int)(((r & POLLIN) ? SINK_FD_READ : 0) |
                                    ((r & POLLOUT) ? SINK_FD_WRITE : 0) |
                                    ((r & (POLLERR | POLLHUP | POLLNVAL)) ? SINK_FD_ERROR : 0));
        } else {
            t->watch[keep++] = t->watch[i];
        }
    }
    t->nwatch = keep; /* the callbacks below may add watches again */
    for (unsigned i = 0; i < nd; i++)
        sink_worker_poll_done(t->sw, tok[i], res[i]);
}

/* Dispatches until t->calls have finished; 0, or -1 when pending calls
 * stop finishing (30 s without one). */
static int sk_loop(struct sk_thr *t, struct sched_worker *w, uint64_t calls)
{
    uint64_t started = 0, target = t->done + calls;
    uint64_t last_done = t->done, last_t = clock_mono_ms();
    sink_server_fn *server = sk_has_server(t->ev) ? sk_server : NULL;
    while (t->done < target) {
        bool any = false;
        for (unsigned i = 0; i < t->o->sessions && started < calls; i++) {
            struct sk_sess *s = &t->s[i];
            if (s->pending)
                continue;
            struct sink_result res;
            sink_bag_clear(s->mbag);
            s->d.nrcpt = 1;
            s->t0 = clock_mono_ns();
            started++;
            any = true;
            if (sink_dispatch(s->call, t->ev, &s->d, server, t, sk_done, s, &res)) {
                sb_hist_add(&t->lat_sync, clock_mono_ns() - s->t0);
                sk_count(t, &res);
            } else {
                s->pending = true;
                t->npending++;
            }
        }
        if (t->done >= target)
            break;
        unsigned ran = sched_worker_run_budget(w, 64);
        uint64_t now = clock_mono_ms();
        sink_worker_expire(t->sw, now);
        if (t->done != last_done) {
            last_done = t->done;
            last_t = now;
        } else if (now - last_t > 30000) {
            fprintf(stderr, "sluice-bench sink: no pending call finished for 30 s\n");
            return -1;
        }
        if (ran == 0 && !any && sched_worker_park_begin(w)) {
            uint64_t dl = sink_worker_next_deadline(t->sw, now);
            sk_io_run(t, sched_worker_wake_fd(w), dl < 100 ? (int)dl : 100);
            sched_worker_park_end(w);
        } else if (t->nwatch > 0) {
            sk_io_run(t, -1, 0);
        }
    }
    return 0;
}

static void *sk_thr_main(void *arg)
{
    struct sk_thr *t = arg;
    struct sched_worker *w = sched_pool_worker(t->pool, t->index);
    sched_worker_attach(w);
    t->sw = sink_worker_create(t->e, t->pool, t->index);
    t->s = calloc(t->o->sessions, sizeof(*t->s));
    if (t->sw == NULL || t->s == NULL)
        t->failed = 1;
    /* the services' event loop (sink.h): fd watches and DNS need it;
     * timers run from next_deadline/expire */
    struct sink_io io = {sk_io_poll, sk_io_cancel, t};
    if (!t->failed && sink_worker_set_io(t->sw, &io, NULL, 0) < 0)
        t->failed = 1;
    for (unsigned i = 0; !t->failed && i < t->o->sessions; i++) {
        struct sk_sess *s = &t->s[i];
        s->t = t;
        s->ref.ops = &sk_ref_ops;
        s->sbag = sink_bag_create();
        s->mbag = sink_bag_create();
        s->call = sink_call_create(t->sw);
        if (s->sbag == NULL || s->mbag == NULL || s->call == NULL) {
            t->failed = 1;
            break;
        }
        sk_sess_data(s, t->ev);
    }
    if (!t->failed && sk_loop(t, w, t->calls / 10 + 1) < 0) /* warm-up */
        t->failed = 1;
    /* every worker warmed up; the engine's counters are read here, so the
     * deadline misses reported are the measured phase's */
    pthread_barrier_wait(t->barrier);
    if (t->index == 0)
        *t->misses0 = sk_misses(t->e);
    pthread_barrier_wait(t->barrier);
    memset(t->verdicts, 0, sizeof(t->verdicts));
    t->npending = 0;
    sb_hist_init(&t->lat_sync);
    sb_hist_init(&t->lat_pending);
    double c0 = sk_thread_cpu(), w0 = sb_now();
    if (!t->failed && sk_loop(t, w, t->calls) < 0)
        t->failed = 1;
    t->cpu_s = sk_thread_cpu() - c0;
    t->wall_s = sb_now() - w0;
    if (t->s != NULL) {
        for (unsigned i = 0; i < t->o->sessions; i++) {
            struct sk_sess *s = &t->s[i];
            if (s->call != NULL)
                sink_call_destroy(s->call);
            if (s->sbag != NULL)
                sink_bag_destroy(s->sbag);
            if (s->mbag != NULL)
                sink_bag_destroy(s->mbag);
        }
    }
    if (t->sw != NULL)
        sink_worker_destroy(t->sw);
    sched_worker_detach(w);
    return NULL;
}

/* The binding's text (with: the sink on ev; without: a noop on another
 * event, so the engine is built the same way but the chain of ev holds
 * only the server's link). */
static void sk_binding(FILE *f, const struct sk_opts *o, bool with)
{
    if (!with) {
        fprintf(f, "binding \"idle\" { event = \"%s\"; sink = \"builtin:noop\"; }\n",
                strcmp(o->event, "disconnect") ? "disconnect" : "connect");
        return;
    }
    fprintf(f, "binding \"bench\" {\n    event = ");
    sb_json_str(f, o->event);
    fprintf(f, ";\n    sink = ");
    sb_json_str(f, o->sink);
    fprintf(f, ";\n");
    if (o->deadline != NULL) {
        fprintf(f, "    deadline = ");
        sb_json_str(f, o->deadline);
        fprintf(f, ";\n");
    }
    if (o->nprops > 0) {
        fprintf(f, "    properties {\n");
        for (unsigned i = 0; i < o->nprops; i++) {
            fprintf(f, "        %s = ", o->prop_k[i]);
            sb_json_str(f, o->prop_v[i]);
            fprintf(f, ";\n");
        }
        fprintf(f, "    }\n");
    }
    fprintf(f, "}\n");
}

struct sk_result {
    double wall_s, cpu_ns_per_call, calls_per_s;
    uint64_t calls, verdicts[SINK_PENDING + 1], npending, misses;
    struct sb_hist lat_sync, lat_pending;
};

static int sk_measure(const struct sk_opts *o, bool with, struct sk_result *r, char *err,
                      size_t errlen)
{
    char path[] = "/tmp/sluice-bench-sink.XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        snprintf(err, errlen, "temporary configuration: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    sk_binding(f, o, with);
    fclose(f);
    struct sink_engine *e = sink_engine_load(path, err, errlen);
    unlink(path);
    if (e == NULL)
        return -1;
    int ev = -1;
    for (int k = 0; k < SINK_EV_COUNT; k++)
        if (strcmp(sink_event_name((enum sink_event)k), o->event) == 0)
            ev = k;
    struct sched_pool *pool = sched_pool_create(o->workers, NULL);
    struct sk_thr *t = calloc(o->workers, sizeof(*t));
    pthread_t *tid = calloc(o->workers, sizeof(*tid));
    if (pool == NULL || t == NULL || tid == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memset(r, 0, sizeof(*r));
    sb_hist_init(&r->lat_sync);
    sb_hist_init(&r->lat_pending);
    unsigned started = 0;
    pthread_barrier_t barrier;
    uint64_t misses0 = 0;
    pthread_barrier_init(&barrier, NULL, o->workers);
    for (unsigned i = 0; i < o->workers; i++) {
        t[i] = (struct sk_thr){.o = o,
                               .pool = pool,
                               .e = e,
                               .ev = (enum sink_event)ev,
                               .index = i,
                               .calls = o->calls / o->workers,
                               .barrier = &barrier,
                               .misses0 = &misses0};
        sb_hist_init(&t[i].lat_sync);
        sb_hist_init(&t[i].lat_pending);
        if (pthread_create(&tid[i], NULL, sk_thr_main, &t[i]) != 0) {
            fprintf(stderr, "sluice-bench sink: cannot start worker thread %u\n", i);
            exit(1); /* the others wait at the barrier for it */
        }
        started++;
    }
    int failed = started < o->workers;
    double cpu = 0, wall = 0;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(tid[i], NULL);
        failed |= t[i].failed;
        cpu += t[i].cpu_s;
        wall = t[i].wall_s > wall ? t[i].wall_s : wall;
        r->calls += t[i].done;
        r->npending += t[i].npending;
        for (unsigned v = 0; v <= SINK_PENDING; v++)
            r->verdicts[v] += t[i].verdicts[v];
        sb_hist_merge(&r->lat_sync, &t[i].lat_sync);
        sb_hist_merge(&r->lat_pending, &t[i].lat_pending);
    }
    r->wall_s = wall; /* the slowest worker's measured phase */
    uint64_t measured = (o->calls / o->workers) * o->workers;
    r->calls = measured;
    r->calls_per_s = (double)measured / (wall > 0 ? wall : 1e-9);
    r->cpu_ns_per_call = cpu * 1e9 / (double)measured;
    r->misses = sk_misses(e) - misses0;
    pthread_barrier_destroy(&barrier);
    sink_engine_destroy(e);
    sched_pool_destroy(pool);
    free(t);
    free(tid);
    if (failed)
        snprintf(err, errlen, "a worker failed (see above)");
    return failed ? -1 : 0;
}

static void sk_usage(FILE *f)
{
    fputs("usage: sluice-bench sink SINK [--event E] [--prop k=v]... [--workers N]\n"
          "                  [--sessions N] [--size S] [--calls N] [--deadline D]\n"
          "                  [--daemon [--seconds S] [--sluiced PATH]] [--json]\n"
          "  SINK        builtin:NAME or a path to a sink module (.so)\n"
          "  --event E   the event to bind (mail, rcpt, eod, ...) [mail]\n"
          "  --prop k=v  a property of the binding (repeat)\n"
          "  --workers N worker threads [1]; --sessions N per worker [32]\n"
          "  --size S    message bytes behind the eod/submission body [4096]\n"
          "  --calls N   dispatches measured [200000]\n"
          "  --deadline D  the binding's deadline (\"5s\", \"200ms\")\n"
          "  --daemon    also measure the binding in a real sluiced under load\n"
          "  --seconds S load per daemon run [5]; --sluiced PATH [next to this program]\n",
          f);
}

static const char *const sk_q_name[] = {"p50", "p90", "p99", "p999"};
static const double sk_q[] = {0.5, 0.9, 0.99, 0.999};

static void sk_hist_text(const char *what, const struct sb_hist *h)
{
    if (h->count == 0) {
        printf("  %-24s none\n", what);
        return;
    }
    printf("  %-24s", what);
    for (unsigned i = 0; i < 4; i++)
        printf(" %s %9.2f", sk_q_name[i], (double)sb_hist_quantile(h, sk_q[i]) / 1000);
    printf("  us  (%llu)\n", (unsigned long long)h->count);
}

static void sk_hist_json(const char *name, const struct sb_hist *h)
{
    printf("\"%s\":{\"count\":%llu", name, (unsigned long long)h->count);
    for (unsigned i = 0; i < 4; i++)
        printf(",\"%s_ns\":%llu", sk_q_name[i], (unsigned long long)sb_hist_quantile(h, sk_q[i]));
    printf("}");
}

static void sk_report(const struct sk_opts *o, const struct sk_result *w,
                      const struct sk_result *wo)
{
    double cost = w->cpu_ns_per_call - wo->cpu_ns_per_call;
    double frac = wo->cpu_ns_per_call > 0 ? cost / wo->cpu_ns_per_call : 0;
    if (o->json) {
        printf("{\"sink\":");
        sb_json_str(stdout, o->sink);
        printf(",\"event\":");
        sb_json_str(stdout, o->event);
        printf(",\"workers\":%u,\"sessions\":%u,\"size\":%llu,\"calls\":%llu,"
               "\"without\":{\"calls_per_s\":%.1f,\"cpu_ns_per_call\":%.1f},"
               "\"with\":{\"calls_per_s\":%.1f,\"cpu_ns_per_call\":%.1f,\"pending\":%llu,"
               "\"deadline_misses\":%llu,\"verdicts\":{",
               o->workers, o->sessions, (unsigned long long)o->size, (unsigned long long)w->calls,
               wo->calls_per_s, wo->cpu_ns_per_call, w->calls_per_s, w->cpu_ns_per_call,
               (unsigned long long)w->npending, (unsigned long long)w->misses);
        bool first = true;
        for (unsigned v = 0; v < SINK_PENDING; v++)
            if (w->verdicts[v]) {
                printf("%s\"%s\":%llu", first ? "" : ",", sink_verdict_name(v),
                       (unsigned long long)w->verdicts[v]);
                first = false;
            }
        printf("},");
        sk_hist_json("latency_sync", &w->lat_sync);
        printf(",");
        sk_hist_json("latency_pending", &w->lat_pending);
        printf("},\"cost_ns_per_call\":%.1f,\"cost_fraction\":%.4f}\n", cost, frac);
        return;
    }
    printf("sluice-bench sink %s on %s: %u worker%s x %u sessions, %llu calls, %llu-byte "
           "messages\n",
           o->sink, o->event, o->workers, o->workers == 1 ? "" : "s", o->sessions,
           (unsigned long long)w->calls, (unsigned long long)o->size);
    printf("  %-24s %12s %14s\n", "", "calls/s", "CPU ns/call");
    printf("  %-24s %12.0f %14.1f\n", "engine without the sink", wo->calls_per_s,
           wo->cpu_ns_per_call);
    printf("  %-24s %12.0f %14.1f\n", "engine with the sink", w->calls_per_s, w->cpu_ns_per_call);
    printf("  %-24s %+.1f ns per call = %.2fx the engine without it\n", "the sink's cost", cost,
           frac);
    printf("  %-24s", "verdicts");
    for (unsigned v = 0; v < SINK_PENDING; v++)
        if (w->verdicts[v])
            printf(" %s %llu", sink_verdict_name(v), (unsigned long long)w->verdicts[v]);
    printf("\n  %-24s %llu (deadline misses %llu)\n", "went pending",
           (unsigned long long)w->npending, (unsigned long long)w->misses);
    sk_hist_text("latency, at once", &w->lat_sync);
    sk_hist_text("latency, pending", &w->lat_pending);
}

int sb_sink_main(int argc, char **argv)
{
    struct sk_opts o = {
        .event = "mail", .workers = 1, .sessions = 32, .size = 4096, .calls = 200000, .seconds = 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        double num = 0;
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            sk_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--daemon")) {
            o.daemon = true;
            continue;
        } else if (!strcmp(a, "--json")) {
            o.json = true;
            continue;
        } else if (a[0] != '-') {
            if (o.sink != NULL) {
                sk_usage(stderr);
                return 2;
            }
            o.sink = a;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "sluice-bench sink: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--event")) {
            o.event = v;
        } else if (!strcmp(a, "--deadline")) {
            o.deadline = v;
        } else if (!strcmp(a, "--sluiced")) {
            o.sluiced = v;
        } else if (!strcmp(a, "--prop")) {
            const char *eq = strchr(v, '=');
            ok = eq != NULL && eq != v && o.nprops < SK_MAX_PROPS;
            for (const char *p = v; ok && p < eq; p++)
                ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
            if (ok) {
                o.prop_k[o.nprops] = strndup(v, (size_t)(eq - v));
                o.prop_v[o.nprops++] = eq + 1;
            }
        } else if (!strcmp(a, "--size")) {
            o.size = sb_parse_bytes(v, &ok);
            ok = ok && o.size <= (1u << 30);
        } else {
            num = strtod(v, &end);
            ok = end != v && *end == 0 && num >= (strcmp(a, "--seconds") ? 1 : 0.1) && num <= 1e12;
            if (!strcmp(a, "--workers"))
                ok = ok && num <= 256, o.workers = (unsigned)num;
            else if (!strcmp(a, "--sessions"))
                ok = ok && num <= 100000, o.sessions = (unsigned)num;
            else if (!strcmp(a, "--calls"))
                o.calls = (uint64_t)num;
            else if (!strcmp(a, "--seconds"))
                o.seconds = num;
            else {
                fprintf(stderr, "sluice-bench sink: unknown option %s\n", a);
                return 2;
            }
        }
        if (!ok) {
            fprintf(stderr, "sluice-bench sink: bad value for %s: '%s'\n", a, v);
            return 2;
        }
    }
    if (o.sink == NULL) {
        sk_usage(stderr);
        return 2;
    }
    bool known = false;
    for (int k = 0; k < SINK_EV_COUNT; k++)
        known |= strcmp(sink_event_name((enum sink_event)k), o.event) == 0;
    if (!known) {
        fprintf(stderr, "sluice-bench sink: no event '%s' (mail, rcpt, eod, ...)\n", o.event);
        return 2;
    }
    if (o.calls < o.workers)
        o.calls = o.workers;
    /* the message behind body_at/body_hold: a header, then body lines */
    sk_msg_len = (size_t)o.size;
    sk_msg = malloc(sk_msg_len + 1);
    if (sk_msg == NULL)
        return 1;
    static const char head[] = "From: <bench@client.bench.test>\r\nTo: <rcpt@dest.example.test>"
                               "\r\nSubject: sluice-bench\r\n\r\n";
    for (size_t i = 0; i < sk_msg_len; i++)
        sk_msg[i] = i % 78 == 76 ? '\r' : i % 78 == 77 ? '\n' : (char)('a' + i % 26);
    memcpy(sk_msg, head, sk_msg_len < sizeof(head) - 1 ? sk_msg_len : sizeof(head) - 1);
    char err[600] = "";
    struct sk_result *w = calloc(2, sizeof(*w));
    if (w == NULL)
        return 1;
    if (sk_measure(&o, false, &w[1], err, sizeof(err)) < 0 ||
        sk_measure(&o, true, &w[0], err, sizeof(err)) < 0) {
        fprintf(stderr, "sluice-bench sink: %s\n", err);
        return 1;
    }
    sk_report(&o, &w[0], &w[1]);
    free(w);
    free(sk_msg);
    if (!o.daemon)
        return 0;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return 1;
    sk_binding(f, &o, true);
    fclose(f);
    int rc = sb_daemon_run(text, o.sluiced, o.seconds, o.sessions, o.size, o.json);
    free(text);
    return rc;
}
