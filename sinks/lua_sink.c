/*
 * NAME
 *	lua_sink - the `lua:PATH` sink: a Lua 5.4 file as a binding's sink
 * SYNOPSIS
 *	#include "sinks/lua_int.h"
 *
 *	binding "spam" {
 *	    event = "mail"; sink = "lua:/etc/sluice/spam.lua";
 *	    properties { domain = "spam.example"; lua_budget = 1000000; }
 *	}
 * DESCRIPTION
 *	The file returns a table: `events` (a list of event names),
 *	`handle(ctx)`, and optionally `create(props)` and `destroy()`.
 *	sink_lua_create() reads the file once, runs it in a scratch state to
 *	check it (it compiles, returns such a table, and lists the binding's
 *	event), and keeps its text.  Each thread that calls the binding makes
 *	its own lua_State from that text the first time (runs the file, then
 *	create(props)), in a slot of the instance only that thread touches:
 *	N workers run Lua in parallel with no lock.  A state lives until the
 *	binding is freed (the engine's end: replaced bindings are retired,
 *	not freed, while calls may still use them); destroy() runs in each.
 *
 *	A call runs handle(ctx) in a new coroutine of the thread's state.
 *	Returning gives the verdict: a verdict name ("continue", "consumed",
 *	"reject", "tempfail", "drop", "discard", "quarantine") and optionally
 *	code, enhanced status and text for the reply.  Yielding through
 *	sluice.sleep/dns/http (lua_lib.c) answers SINK_PENDING; the service's
 *	callback resumes the coroutine on the same worker, and its end answers
 *	the call with sink_complete().  A cancelled service (deadline, client
 *	gone) closes the coroutine without running more of it.
 *
 *	Limits, per binding, from its properties (read by the host, passed
 *	to create() too): lua_budget (VM instructions per resume, default
 *	1,000,000; a count hook raises an error when it is spent) and
 *	lua_memory (bytes per state, default 64 MiB; the allocator refuses
 *	beyond it), on_error (tempfail, the default, continue or reject).
 *	os.exit is removed from every state.
 * DIAGNOSTICS
 *	create: "lua:x.lua: x.lua:3: unexpected symbol near 'end'", "returns
 *	no table", "no handle function", "events: \"mial\" is not an event".
 *	A call that errs, exceeds a limit, or returns something that is not a
 *	verdict is logged (binding, file:line, why) and gets on_error.
 */
#include "sinks/lua_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "core/base/log.h"

struct lua_bind {
    char *path;
    char *chunk; /* "@PATH": Lua's messages say PATH:LINE */
    char *code;
    size_t ncode;
    size_t nprops;
    char **pk, **pv;
    uint64_t events;
    enum sink_verdict on_error;
    int budget;
    size_t mem_limit;
    /* Slot i: the state of the thread with slot i; only it reads or
     * writes the slot (made lazily), so no order is needed.  Freed by
     * destroy, when no call can run any more. */
    struct lua_st *st[LUA_SINK_MAXTHREADS];
};

static const char *const lua_verdict_names[] = {"continue", "consumed", "reject",    "tempfail",
                                                "drop",     "discard",  "quarantine"};

static int lua_verdict_parse(const char *s, enum sink_verdict *v)
{
    for (int i = 0; i < 7; i++)
        if (strcmp(s, lua_verdict_names[i]) == 0) {
            *v = (enum sink_verdict)i;
            return 0;
        }
    return -1;
}

/* ---- threads' slots ---- */

static _Atomic int lua_next_slot; /* relaxed: a unique number is all it gives */
static _Thread_local int lua_slot = -1;

static int lua_thread_slot(void)
{
    if (lua_slot < 0)
        lua_slot = atomic_fetch_add_explicit(&lua_next_slot, 1, memory_order_relaxed);
    return lua_slot < LUA_SINK_MAXTHREADS ? lua_slot : -1;
}

/* ---- the allocator and the budget ---- */

static void *lua_sink_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lua_st *st = ud;
    size_t old = ptr != NULL ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        st->mem -= old;
        return NULL;
    }
    if (nsize > old && st->mem - old + nsize > st->mem_limit)
        return NULL; /* Lua raises "not enough memory" */
    void *p = realloc(ptr, nsize);
    if (p != NULL)
        st->mem = st->mem - old + nsize;
    return p;
}

static void lua_budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_Debug d;
    struct lua_st *st = lua_sink_state(L);
    if (lua_getstack(L, 0, &d) && lua_getinfo(L, "Sl", &d) && d.currentline > 0)
        lua_pushfstring(L, "%s:%d: instruction budget of %d exceeded", d.short_src,
                        d.currentline, st->lb->budget);
    else
        lua_pushfstring(L, "instruction budget of %d exceeded", st->lb->budget);
    /* From now on every instruction raises again: a script that catches
     * the error with pcall cannot go on (lua_run sets the hook anew at
     * each resume). */
    lua_sethook(L, lua_budget_hook, LUA_MASKCOUNT, 1);
    lua_error(L);
}

struct lua_st *lua_sink_state(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

/* "file:line: msg" for an error without a place (memory): where co stopped. */
static void lua_where(lua_State *co, const char *msg, char *out, size_t cap)
{
    lua_Debug d;
    for (int lv = 0; lua_getstack(co, lv, &d); lv++) {
        if (lua_getinfo(co, "Sl", &d) && d.currentline > 0) {
            if (strncmp(msg, d.short_src, strlen(d.short_src)) == 0)
                break;
            snprintf(out, cap, "%s:%d: %s", d.short_src, d.currentline, msg);
            return;
        }
    }
    snprintf(out, cap, "%s", msg);
}

/* ---- a state ---- */

/* Runs the function on top of L with nargs under the budget; 0 or the
 * error message left on L's stack (-1). */
static int lua_pcall_budget(struct lua_st *st, int nargs, int nres)
{
    lua_sethook(st->L, lua_budget_hook, LUA_MASKCOUNT, st->lb->budget);
    int rc = lua_pcall(st->L, nargs, nres, 0);
    lua_sethook(st->L, NULL, 0, 0);
    return rc == LUA_OK ? 0 : -1;
}

static void lua_st_free(struct lua_st *st)
{
    if (st == NULL)
        return;
    if (st->L != NULL)
        lua_close(st->L);
    free(st);
}

/* A state with the file run and its module table on top. */
static struct lua_st *lua_st_new(struct lua_bind *lb, char *err, size_t errlen)
{
    struct lua_st *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    st->lb = lb;
    st->mem_limit = lb->mem_limit;
    st->handle_ref = LUA_NOREF;
    if ((st->L = lua_newstate(lua_sink_alloc, st)) == NULL) {
        snprintf(err, errlen, "no Lua state (memory limit %zu too small?)", lb->mem_limit);
        free(st);
        return NULL;
    }
    lua_State *L = st->L;
    luaL_openlibs(L);
    lua_getglobal(L, "os");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        lua_setfield(L, -2, "exit"); /* the daemon never stops for a script */
    }
    lua_pop(L, 1);
    lua_ctx_open(L);
    lua_lib_open(L);
    if (luaL_loadbufferx(L, lb->code, lb->ncode, lb->chunk, "t") != LUA_OK ||
        lua_pcall_budget(st, 0, 1) < 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        goto fail;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s returns %s, not a table {events, handle, ...}", lb->path,
                 luaL_typename(L, -1));
        goto fail;
    }
    if (lua_getfield(L, -1, "handle") != LUA_TFUNCTION) {
        snprintf(err, errlen, "%s: no handle function in the table it returns", lb->path);
        goto fail;
    }
    st->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return st;
fail:
    lua_st_free(st);
    return NULL;
}

/* module.events -> a mask; 0 with err when wrong.  Module on top. */
static uint64_t lua_st_events(struct lua_st *st, char *err, size_t errlen)
{
    lua_State *L = st->L;
    uint64_t mask = 0;
    if (lua_getfield(L, -1, "events") != LUA_TTABLE) {
        snprintf(err, errlen, "%s: events must be a list of event names", st->lb->path);
        lua_pop(L, 1);
        return 0;
    }
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, -1, i);
        const char *name = lua_tostring(L, -1);
        int ev = 0;
        while (name != NULL && ev < SINK_EV_COUNT && strcmp(sink_event_name(ev), name) != 0)
            ev++;
        if (name == NULL || ev == SINK_EV_COUNT) {
            snprintf(err, errlen, "%s: events: \"%s\" is not an event", st->lb->path,
                     name ? name : luaL_typename(L, -1));
            lua_pop(L, 2);
            return 0;
        }
        mask |= SINK_EVMASK(ev);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (mask == 0)
        snprintf(err, errlen, "%s: events is empty", st->lb->path);
    return mask;
}

/* create(props) in st; module on top, left there. */
static int lua_st_create(struct lua_st *st, char *err, size_t errlen)
{
    lua_State *L = st->L;
    if (lua_getfield(L, -1, "create") != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return 0;
    }
    lua_createtable(L, 0, (int)st->lb->nprops);
    for (size_t i = 0; i < st->lb->nprops; i++) {
        lua_pushstring(L, st->lb->pv[i]);
        lua_setfield(L, -2, st->lb->pk[i]);
    }
    if (lua_pcall_budget(st, 1, 0) < 0) {
        snprintf(err, errlen, "create: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

static void lua_st_destroy(struct lua_st *st)
{
    lua_State *L = st->L;
    lua_settop(L, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, "sluice.module");
    if (lua_istable(L, -1) && lua_getfield(L, -1, "destroy") == LUA_TFUNCTION &&
        lua_pcall_budget(st, 0, 0) < 0)
        log_msg(LOG_WARN, "sinks: lua %s: destroy: %s", st->lb->path, lua_tostring(L, -1));
    lua_settop(L, 0);
}

/* This thread's state, made on first use; NULL logged. */
static struct lua_st *lua_st_get(struct lua_bind *lb, struct sink_ctx *ctx)
{
    int slot = lua_thread_slot();
    if (slot < 0) {
        log_msg(LOG_ERROR, "sinks: binding \"%s\" (lua %s): more than %d threads call Lua sinks",
                sink_binding_name(ctx), lb->path, LUA_SINK_MAXTHREADS);
        return NULL;
    }
    if (lb->st[slot] != NULL)
        return lb->st[slot];
    char err[512];
    struct lua_st *st = lua_st_new(lb, err, sizeof(err));
    if (st != NULL) {
        lua_pushvalue(st->L, -1);
        lua_setfield(st->L, LUA_REGISTRYINDEX, "sluice.module");
        if (lua_st_create(st, err, sizeof(err)) < 0) {
            lua_st_free(st);
            st = NULL;
        } else {
            lua_settop(st->L, 0);
        }
    }
    if (st == NULL) {
        log_msg(LOG_ERROR, "sinks: binding \"%s\" (lua %s): %s", sink_binding_name(ctx),
                lb->path, err);
        return NULL;
    }
    lb->st[slot] = st;
    return st;
}

/* ---- the instance ---- */

static void lua_bind_free(struct lua_bind *lb)
{
    for (int i = 0; i < LUA_SINK_MAXTHREADS; i++)
        if (lb->st[i] != NULL) {
            lua_st_destroy(lb->st[i]);
            lua_st_free(lb->st[i]);
        }
    for (size_t i = 0; i < lb->nprops; i++) {
        free(lb->pk[i]);
        free(lb->pv[i]);
    }
    free(lb->pk);
    free(lb->pv);
    free(lb->code);
    free(lb->chunk);
    free(lb->path);
    free(lb);
}

static int lua_read_file(struct lua_bind *lb, char *err, size_t errlen)
{
    FILE *f = fopen(lb->path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", lb->path, strerror(errno));
        return -errno;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf != NULL && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (buf == NULL || bad) {
        free(buf);
        snprintf(err, errlen, "%s: %s", lb->path, bad ? "read error" : "too large or no memory");
        return -EIO;
    }
    lb->code = buf;
    lb->ncode = n;
    return 0;
}

static int lua_props_take(struct lua_bind *lb, const struct sink_props *p, char *err,
                          size_t errlen)
{
    size_t n = p ? sink_props_count(p) : 0;
    lb->pk = calloc(n + 1, sizeof(char *));
    lb->pv = calloc(n + 1, sizeof(char *));
    if (lb->pk == NULL || lb->pv == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if ((lb->pk[i] = strdup(sink_props_key(p, i))) == NULL ||
            (lb->pv[i] = strdup(sink_props_value(p, i))) == NULL)
            return -ENOMEM;
        lb->nprops = i + 1;
    }
    lb->on_error = SINK_TEMPFAIL;
    const char *oe = p ? sink_props_get(p, "on_error") : NULL;
    if (oe != NULL && (lua_verdict_parse(oe, &lb->on_error) < 0 ||
                       (lb->on_error != SINK_TEMPFAIL && lb->on_error != SINK_CONTINUE &&
                        lb->on_error != SINK_REJECT))) {
        snprintf(err, errlen, "property on_error: \"%s\": tempfail, continue or reject", oe);
        return -EINVAL;
    }
    long long budget = p ? sink_props_get_int(p, "lua_budget", LUA_SINK_BUDGET_DEFAULT)
                         : LUA_SINK_BUDGET_DEFAULT;
    long long mem = p ? sink_props_get_int(p, "lua_memory", LUA_SINK_MEMORY_DEFAULT)
                      : LUA_SINK_MEMORY_DEFAULT;
    if (budget < 1000 || budget > 2000000000) {
        snprintf(err, errlen, "property lua_budget: 1000 to 2000000000 instructions");
        return -EINVAL;
    }
    if (mem < (256 << 10) || mem > (1LL << 34)) {
        snprintf(err, errlen, "property lua_memory: 262144 to 17179869184 bytes");
        return -EINVAL;
    }
    lb->budget = (int)budget;
    lb->mem_limit = (size_t)mem;
    return 0;
}

int sink_lua_create(const char *path, const struct sink_props *p, void **inst, char *err,
                    size_t errlen)
{
    struct lua_bind *lb = calloc(1, sizeof(*lb));
    if (lb == NULL)
        return -ENOMEM;
    int rc = -ENOMEM;
    size_t n = strlen(path);
    if ((lb->path = strdup(path)) == NULL || (lb->chunk = malloc(n + 2)) == NULL)
        goto fail;
    lb->chunk[0] = '@';
    memcpy(lb->chunk + 1, path, n + 1);
    if ((rc = lua_props_take(lb, p, err, errlen)) < 0 || (rc = lua_read_file(lb, err, errlen)) < 0)
        goto fail;
    /* A scratch state checks the file now: a bad file fails the binding
     * (at start, add, setprop, reload) and the old one stays. */
    struct lua_st *st = lua_st_new(lb, err, errlen);
    if (st == NULL) {
        rc = -EINVAL;
        goto fail;
    }
    lb->events = lua_st_events(st, err, errlen);
    lua_st_free(st);
    if (lb->events == 0) {
        rc = -EINVAL;
        goto fail;
    }
    *inst = lb;
    return 0;
fail:
    if (rc == -ENOMEM && err[0] == '\0')
        snprintf(err, errlen, "out of memory");
    lua_bind_free(lb);
    return rc;
}

uint64_t sink_lua_events(const void *inst)
{
    return ((const struct lua_bind *)inst)->events;
}

static void lua_destroy(void *inst)
{
    lua_bind_free(inst);
}

/* ---- a call ---- */

static void lua_call_free(struct lua_call *c)
{
    lua_State *L = c->st->L;
    c->ended = true;
    if (c->http != NULL) {
        lua_http_free(c->http);
        c->http = NULL;
    }
    if (c->ud != NULL)
        c->ud->ctx = NULL; /* the script may have kept ctx: it is dead now */
    lua_resetthread(c->co);
    luaL_unref(L, LUA_REGISTRYINDEX, c->co_ref);
    free(c);
}

static enum sink_verdict lua_fail(struct lua_bind *lb, struct sink_ctx *ctx, const char *why)
{
    log_msg(LOG_WARN, "sinks: binding \"%s\" (lua %s): %s; verdict %s (on_error)",
            sink_binding_name(ctx), lb->path, why, lua_verdict_names[lb->on_error]);
    if (lb->on_error == SINK_TEMPFAIL)
        sink_set_reply(ctx, 451, "4.3.0", "Temporary failure in a policy script");
    else if (lb->on_error == SINK_REJECT)
        sink_set_reply(ctx, 554, "5.7.0", "Refused by a policy script");
    return lb->on_error;
}

/* The verdict of a finished handle(): results on co's stack. */
static enum sink_verdict lua_results(struct lua_call *c, int nres)
{
    lua_State *co = c->co;
    struct lua_bind *lb = c->st->lb;
    int base = lua_gettop(co) - nres + 1;
    const char *name = nres >= 1 && lua_type(co, base) == LUA_TSTRING ? lua_tostring(co, base)
                                                                      : NULL;
    enum sink_verdict v;
    char why[256];
    if (name == NULL || lua_verdict_parse(name, &v) < 0) {
        snprintf(why, sizeof(why), "handle returned %s%s%s, not a verdict name",
                 nres >= 1 ? luaL_typename(co, base) : "nothing", name ? " " : "",
                 name ? name : "");
        return lua_fail(lb, c->ctx, why);
    }
    if (nres >= 2 && !lua_isnil(co, base + 1)) {
        int isnum;
        lua_Integer code = lua_tointegerx(co, base + 1, &isnum);
        const char *enh = nres >= 3 ? lua_tostring(co, base + 2) : NULL;
        const char *text = nres >= 4 ? lua_tostring(co, base + 3) : NULL;
        if (!isnum || code < 200 || code > 599 ||
            sink_set_reply(c->ctx, (int)code, enh, text ? text : "") < 0) {
            snprintf(why, sizeof(why), "handle returned %s with a bad reply (%s %s %s)", name,
                     lua_tostring(co, base + 1) ? lua_tostring(co, base + 1) : "?",
                     enh ? enh : "", text ? text : "");
            return lua_fail(lb, c->ctx, why);
        }
    }
    return v;
}

/* After a resume: SINK_PENDING (waiting), or the call's verdict, the call
 * freed. */
static enum sink_verdict lua_step(struct lua_call *c, int status, int nres)
{
    struct lua_bind *lb = c->st->lb;
    enum sink_verdict v;
    if (status == LUA_YIELD && c->waiting) {
        lua_pop(c->co, nres);
        return SINK_PENDING;
    }
    if (status == LUA_YIELD) {
        v = lua_fail(lb, c->ctx, "handle yielded (coroutine.yield) outside sluice.sleep/dns/http");
    } else if (status == LUA_OK) {
        v = lua_results(c, nres);
    } else {
        char why[600];
        const char *msg = lua_tostring(c->co, -1);
        if (status == LUA_ERRMEM)
            msg = "memory limit exceeded";
        lua_where(c->co, msg ? msg : "error object is not a string", why, sizeof(why));
        if (status == LUA_ERRMEM) {
            size_t l = strlen(why);
            snprintf(why + l, sizeof(why) - l, " (lua_memory %zu)", lb->mem_limit);
        }
        v = lua_fail(lb, c->ctx, why);
    }
    struct lua_st *st = c->st;
    lua_call_free(c);
    if (status != LUA_OK)
        lua_gc(st->L, LUA_GCCOLLECT); /* what a failed call held goes now */
    return v;
}

static enum sink_verdict lua_run(struct lua_call *c, int nargs)
{
    struct lua_st *st = c->st;
    int nres = 0;
    st->cur = c;
    c->waiting = 0;
    lua_sethook(c->co, lua_budget_hook, LUA_MASKCOUNT, st->lb->budget);
    int status = lua_resume(c->co, st->L, nargs, &nres);
    st->cur = NULL;
    return lua_step(c, status, nres);
}

void lua_sink_resume(struct lua_call *c, int nargs)
{
    struct sink_ctx *ctx = c->ctx;
    enum sink_verdict v = lua_run(c, nargs);
    if (v != SINK_PENDING)
        sink_complete(ctx, v);
}

void lua_sink_cancelled(struct lua_call *c)
{
    if (!c->ended)
        lua_call_free(c);
}

static int lua_call_setup(lua_State *L)
{
    struct lua_call *c = lua_touserdata(L, 1);
    c->co = lua_newthread(L);
    lua_rawgeti(c->co, LUA_REGISTRYINDEX, c->st->handle_ref);
    c->ud = lua_ctx_push(c->co, c->ctx);
    c->co_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* the thread, last: nothing raises after */
    return 0;
}

static enum sink_verdict lua_handle(void *inst, struct sink_ctx *ctx)
{
    struct lua_bind *lb = inst;
    struct lua_st *st = lua_st_get(lb, ctx);
    if (st == NULL)
        return lua_fail(lb, ctx, "no Lua state on this thread");
    struct lua_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return lua_fail(lb, ctx, "out of memory");
    c->st = st;
    c->ctx = ctx;
    /* The coroutine and the ctx object are made in protected mode: a
     * state at its memory limit answers an error, not a panic. */
    lua_State *L = st->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, lua_call_setup);
    lua_pushlightuserdata(L, c);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        lua_settop(L, 0);
        free(c);
        lua_gc(L, LUA_GCCOLLECT);
        return lua_fail(lb, ctx, "memory limit reached before handle() could start");
    }
    return lua_run(c, 1);
}

const struct sink_module sink_lua_module = {
    SINK_MODULE_HEAD,
    .name = "lua",
    .events = ~UINT64_C(0) >> (64 - SINK_EV_COUNT),
    .destroy = lua_destroy,
    .handle = lua_handle,
};
