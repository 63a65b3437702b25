/*
 * NAME
 *	sink_test - helpers shared by the tests of sinks/
 * SYNOPSIS
 *	#include "tests/sinks/sink_test.h"
 * DESCRIPTION
 *	st_engine(): an engine from configuration text (cfg_parse, then
 *	sink_engine_create_tree).  builtin:script, a test sink driven by its
 *	properties: tag (appended to st_log when called), verdict, code,
 *	enhanced, text (its reply), pending (returns SINK_PENDING and keeps
 *	the ctx in st_pend[]).  st_server(): the server's handler as a link,
 *	logging "server".  st_data(): a session's event data with a body
 *	served in small pieces, a msgref and an edit recorder.  st_rig: a
 *	one-worker scheduler pool attached to the test thread, with its
 *	sink_worker, to run completions.  st_qmgr: a queue manager's event
 *	data with a recipient list and the rcpt_edit / route_set callbacks.
 *
 *	Every test includes tests/sched/crit_tsan.h, so the whole directory
 *	also builds and runs under ThreadSanitizer.
 */
#ifndef SLUICE_TESTS_SINKS_SINK_TEST_H
#define SLUICE_TESTS_SINKS_SINK_TEST_H

#include "tests/sched/crit_tsan.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/cfg/cfg.h"
#include "sched/sched.h"
#include "sinks/engine.h"
#include "sinks/sink_int.h"

/* ---- engines from text ---- */

static inline struct sink_engine *st_engine_err(const char *text, char *err, size_t errlen)
{
    struct cfg_node *tree = cfg_parse(text, strlen(text), "test.conf", err, errlen);
    if (tree == NULL)
        return NULL;
    struct sink_engine *e = sink_engine_create_tree(tree, err, errlen);
    cfg_node_free(tree); /* the engine keeps nothing of the tree */
    return e;
}

static inline struct sink_engine *st_engine(const char *text)
{
    char err[512] = "";
    struct sink_engine *e = st_engine_err(text, err, sizeof(err));
    cr_assert_not_null(e, "engine: %s", err);
    return e;
}

static inline struct sink_binding *st_binding(struct sink_engine *e, const char *name)
{
    for (size_t i = 0; i < e->nb; i++)
        if (strcmp(e->b[i]->name, name) == 0)
            return e->b[i];
    cr_assert(0, "no binding %s", name);
    return NULL;
}

static inline uint64_t st_stat(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* ---- the call log ---- */

__attribute__((unused)) static char st_log[1024];
__attribute__((unused)) static pthread_mutex_t st_log_mu = PTHREAD_MUTEX_INITIALIZER;

static inline void st_log_add(const char *tag)
{
    pthread_mutex_lock(&st_log_mu);
    size_t n = strlen(st_log);
    snprintf(st_log + n, sizeof(st_log) - n, "%s%s", n ? "," : "", tag);
    pthread_mutex_unlock(&st_log_mu);
}

/* ---- builtin:script ---- */

#define ST_MAXPEND 512
__attribute__((unused)) static struct sink_ctx *st_pend[ST_MAXPEND];
__attribute__((unused)) static _Atomic int st_npend;
__attribute__((unused)) static int st_set_rc; /* what the last sink_set_reply() returned */

struct st_script {
    char tag[32];
    enum sink_verdict verdict;
    int code;
    char enhanced[16];
    char text[128];
    bool pending;
};

static inline int st_verdict_parse(const char *s)
{
    static const char *const n[] = {"continue", "consumed", "reject",     "tempfail",
                                    "drop",     "discard",  "quarantine", "pending"};
    for (int i = 0; i < 8; i++)
        if (strcasecmp(s, n[i]) == 0)
            return i;
    return -1;
}

static inline int st_script_create(const struct sink_props *p, void **inst, char *err,
                                   size_t errlen)
{
    struct st_script *s = calloc(1, sizeof(*s));
    const char *v = sink_props_get(p, "verdict");
    snprintf(s->tag, sizeof(s->tag), "%s",
             sink_props_get(p, "tag") ? sink_props_get(p, "tag") : "?");
    s->verdict = v ? (enum sink_verdict)st_verdict_parse(v) : SINK_CONTINUE;
    if (v && st_verdict_parse(v) < 0) {
        snprintf(err, errlen, "bad verdict %s", v);
        free(s);
        return -EINVAL;
    }
    s->code = (int)sink_props_get_int(p, "code", 0);
    snprintf(s->enhanced, sizeof(s->enhanced), "%s",
             sink_props_get(p, "enhanced") ? sink_props_get(p, "enhanced") : "");
    snprintf(s->text, sizeof(s->text), "%s",
             sink_props_get(p, "text") ? sink_props_get(p, "text") : "");
    s->pending = sink_props_get_bool(p, "pending", 0);
    *inst = s;
    return 0;
}

static inline void st_script_destroy(void *inst)
{
    free(inst);
}

static inline enum sink_verdict st_script_handle(void *inst, struct sink_ctx *ctx)
{
    struct st_script *s = inst;
    st_log_add(s->tag);
    if (s->code != 0)
        st_set_rc = sink_set_reply(ctx, s->code, s->enhanced[0] ? s->enhanced : NULL, s->text);
    if (s->pending) {
        int i = atomic_fetch_add(&st_npend, 1);
        cr_assert_lt(i, ST_MAXPEND);
        st_pend[i] = ctx;
        return SINK_PENDING;
    }
    return s->verdict;
}

__attribute__((unused)) static const struct sink_module st_script_module = {
    SINK_MODULE_HEAD,
    .name = "script",
    .events = SINK_EVMASK(SINK_EV_COUNT) - 1,
    .create = st_script_create,
    .destroy = st_script_destroy,
    .handle = st_script_handle,
};

static inline void st_setup(void)
{
    int rc = sink_builtin_register(&st_script_module);
    cr_assert(rc == 0 || rc == -EEXIST);
    st_log[0] = '\0';
    atomic_store(&st_npend, 0);
}

/* ---- the server's handler ---- */

struct st_server {
    enum sink_verdict verdict;
    int code;
    const char *text;
    int calls;
};

static inline enum sink_verdict st_server_fn(void *arg, struct sink_result *res)
{
    struct st_server *s = arg;
    s->calls++;
    st_log_add("server");
    if (s->code != 0) {
        res->code = s->code;
        snprintf(res->enhanced, sizeof(res->enhanced), "%s", "5.7.1");
        snprintf(res->text, sizeof(res->text), "%s", s->text ? s->text : "server says no");
    }
    return s->verdict;
}

/* ---- completion ---- */

struct st_done {
    _Atomic int calls;
    struct sink_result res;
    pthread_t thread;
};

static inline void st_done_fn(void *arg, const struct sink_result *res)
{
    struct st_done *d = arg;
    d->res = *res;
    d->thread = pthread_self();
    atomic_fetch_add(&d->calls, 1);
}

/* ---- event data with a body ---- */

struct st_msgref {
    struct sink_msgref base;
    const char *text;
    size_t len;
    _Atomic int *released;
};

static inline uint64_t st_mr_size(const struct sink_msgref *m)
{
    return ((const struct st_msgref *)m)->len;
}

static inline ssize_t st_mr_read(struct sink_msgref *m, uint64_t off, void *buf, size_t len)
{
    struct st_msgref *r = (struct st_msgref *)m;
    if (off >= r->len)
        return 0;
    size_t n = r->len - off < len ? r->len - off : len;
    memcpy(buf, r->text + off, n);
    return (ssize_t)n;
}

static inline void st_mr_release(struct sink_msgref *m)
{
    struct st_msgref *r = (struct st_msgref *)m;
    atomic_fetch_add(r->released, 1);
    free(r);
}

__attribute__((unused)) static const struct sink_msgref_ops st_mr_ops = {st_mr_size, st_mr_read,
                                                                         st_mr_release};

struct st_edit {
    enum sink_edit_op op;
    char name[64];
    char value[1100];
};

struct st_session {
    const char *body;
    size_t piece; /* body_at hands out at most this much */
    struct st_edit edit[16];
    int nedit;
    _Atomic int released;
    int body_at_calls;
};

static inline int st_body_at(void *arg, uint64_t off, const char **p, size_t *len)
{
    struct st_session *s = arg;
    size_t total = strlen(s->body);
    s->body_at_calls++;
    if (off >= total) {
        *len = 0;
        return 0;
    }
    *p = s->body + off;
    *len = total - off < s->piece ? total - off : s->piece;
    return 0;
}

static inline struct sink_msgref *st_body_hold(void *arg)
{
    struct st_session *s = arg;
    struct st_msgref *r = calloc(1, sizeof(*r));
    r->base.ops = &st_mr_ops;
    r->text = s->body;
    r->len = strlen(s->body);
    r->released = &s->released;
    return &r->base;
}

static inline int st_edit_fn(void *arg, enum sink_edit_op op, const char *name, const char *value)
{
    struct st_session *s = arg;
    if (s->nedit == 16)
        return -ENOMEM;
    struct st_edit *e = &s->edit[s->nedit++];
    e->op = op;
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->value, sizeof(e->value), "%s", value ? value : "(null)");
    return 0;
}

__attribute__((unused)) static const char *const st_rcpts[] = {"alice@a.example", "bob@b.example"};

/* A session at eod: everything set, body served in pieces of `piece`. */
static inline struct sink_event_data st_data(struct st_session *s)
{
    struct sink_event_data d = {
        .client_addr = "192.0.2.1",
        .helo = "client.example",
        .verb = "MAIL",
        .args = "FROM:<sender@example.org>",
        .sender = "sender@example.org",
        .mail_params = "SIZE=100",
        .nrcpt = 2,
        .rcpts = st_rcpts,
        .rcpt = "carol@c.example",
        .msg_id = 42,
    };
    if (s != NULL) {
        d.body_size = strlen(s->body);
        d.body_at = st_body_at;
        d.body_hold = st_body_hold;
        d.edit = st_edit_fn;
        d.body_arg = s;
    }
    return d;
}

/* ---- a queue manager's side of the transport events ---- */

#define ST_QMAX 64
/* The recipient list it owns, kept in d.rcpts/d.nrcpt as the engine.h
 * contract asks (updated inside the callbacks), and the route chosen. */
struct st_qmgr {
    char *list[ST_QMAX];
    const char *ptrs[ST_QMAX];
    size_t n;
    char route[512];
    int nroute, nedit;
    int fail; /* a negative errno every callback returns, or 0 */
    struct sink_event_data d;
};

static inline void st_qmgr_sync(struct st_qmgr *q)
{
    for (size_t i = 0; i < q->n; i++)
        q->ptrs[i] = q->list[i];
    q->d.rcpts = q->ptrs;
    q->d.nrcpt = q->n;
}

static inline int st_qmgr_edit(void *arg, int op, size_t i, const char *addr)
{
    struct st_qmgr *q = arg;
    q->nedit++;
    if (q->fail)
        return q->fail;
    if (op == 1) {
        if (q->n == ST_QMAX)
            return -ENOMEM;
        q->list[q->n++] = strdup(addr);
    } else {
        cr_assert_lt(i, q->n, "the engine checks the index");
        free(q->list[i]);
        if (op == 0) {
            q->list[i] = strdup(addr);
        } else {
            cr_assert_eq(op, 2);
            cr_assert_null(addr);
            memmove(&q->list[i], &q->list[i + 1], (q->n - i - 1) * sizeof(q->list[0]));
            q->n--;
        }
    }
    st_qmgr_sync(q);
    return 0;
}

static inline int st_qmgr_route(void *arg, const char *hop)
{
    struct st_qmgr *q = arg;
    if (q->fail)
        return q->fail;
    snprintf(q->route, sizeof(q->route), "%s", hop);
    q->nroute++;
    return 0;
}

/* A message from sender with recipients rcpts[0..n) at event ev. */
static inline void st_qmgr_init(struct st_qmgr *q, const char *const *rcpts, size_t n)
{
    memset(q, 0, sizeof(*q));
    for (size_t i = 0; i < n; i++)
        q->list[i] = strdup(rcpts[i]);
    q->n = n;
    q->d.sender = "sender@example.org";
    q->d.msg_id = 7;
    q->d.rcpt_edit = st_qmgr_edit;
    q->d.route_set = st_qmgr_route;
    q->d.transport_arg = q;
    st_qmgr_sync(q);
}

static inline void st_qmgr_fini(struct st_qmgr *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->list[i]);
    q->n = 0;
}

/* "a,b,c": the current list, for comparisons. */
static inline const char *st_qmgr_list(struct st_qmgr *q)
{
    static char buf[4096];
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < q->n && n < sizeof(buf); i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? "," : "", q->list[i]);
    return buf;
}

/* ---- a worker: one-worker pool attached to the test thread ---- */

struct st_rig {
    struct sched_pool *pool;
    struct sched_worker *w;
    struct sink_worker *sw;
    struct sink_call *call;
};

static inline void st_rig_init(struct st_rig *r, struct sink_engine *e)
{
    r->pool = sched_pool_create(1, NULL);
    cr_assert_not_null(r->pool);
    r->w = sched_pool_worker(r->pool, 0);
    sched_worker_attach(r->w);
    r->sw = sink_worker_create(e, r->pool, 0);
    r->call = sink_call_create(r->sw);
    cr_assert_not_null(r->call);
}

/* The daemon's shutdown order: calls, sink workers, the engine (a sink's
 * own threads may be inside sink_complete() -> sched_post() until its
 * destroy() returns), and only then the pool. */
static inline void st_rig_fini(struct st_rig *r, struct sink_engine *e)
{
    sink_call_destroy(r->call);
    sink_worker_destroy(r->sw);
    sink_engine_destroy(e);
    sched_worker_detach(r->w);
    sched_pool_destroy(r->pool);
}

/* Runs the worker's tasks and expires deadlines until cond holds or
 * timeout_ms passes; whether it held. */
#define st_run_until(r, cond, timeout_ms)                                                          \
    ({                                                                                             \
        uint64_t until_ = sink_now_ms() + (timeout_ms);                                            \
        bool ok_;                                                                                  \
        while (!(ok_ = (cond)) && sink_now_ms() < until_) {                                        \
            sched_worker_run_budget((r)->w, 64);                                                   \
            sink_worker_expire((r)->sw, sink_now_ms());                                            \
            usleep(200);                                                                           \
        }                                                                                          \
        ok_;                                                                                       \
    })

/* The path of build/lib/NAME.so from the test's own directory (build/tests). */
static inline void st_lib_path(const char *name, char *buf, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    cr_assert_gt(n, 0);
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    *slash = '\0';
    int w = snprintf(buf, len, "%s/../lib/%s.so", exe, name);
    cr_assert(w > 0 && (size_t)w < len, "library path too long");
}

#endif
