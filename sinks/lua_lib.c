/*
 * NAME
 *	lua_lib - the `sluice` table of a Lua sink: waiting, DNS, shared values
 * SYNOPSIS
 *	#include "sinks/lua_int.h"
 *
 *	sluice.sleep(0.005)
 *	local rr, status, err = sluice.dns("2.0.0.127.zen.example", "A")
 *	local r = sluice.http{ url = "http://127.0.0.1:8080/check", body = "..." }
 *	sluice.shared_set("k", "v"); sluice.shared_get("k"); sluice.incr("n", 1)
 *	sluice.log("info", "text")
 * DESCRIPTION
 *	sleep, dns and http yield handle()'s coroutine; the call answers
 *	PENDING and the worker serves other sessions until the service's
 *	callback resumes it (on the same worker).  They may be called only
 *	from handle()'s own coroutine (not from create(), nor from a
 *	coroutine the script made).  A call whose deadline passes, or whose
 *	client leaves, while it waits is ended: the coroutine is closed and
 *	no more of it runs.
 *
 *	dns(name, type) (type "A" by default; AAAA, MX, TXT, PTR, TLSA)
 *	returns a list of records {type=, text=, ttl=, pref=}, a status
 *	("ok", "nxdomain", "nodata", "tempfail") and, unless ok, why.
 *
 *	Shared values are one map for the whole daemon, every binding and
 *	every worker: strings, numbers and booleans (nil removes), behind a
 *	mutex (a control path, not a data path).  incr(key, delta) adds
 *	atomically and returns the new number.
 */
#include "sinks/lua_int.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"

/* ---- waiting ---- */

struct lua_call *lua_lib_call(lua_State *L, const char *fn)
{
    struct lua_st *st = lua_sink_state(L);
    struct lua_call *c = st->cur;
    if (c == NULL || c->co != L)
        luaL_error(L, "sluice.%s: only inside handle() (not create(), nor a coroutine of the "
                      "script's own)", fn);
    return c;
}

static void lua_lib_timer(struct sink_ctx *ctx, void *arg, int status)
{
    struct lua_call *c = arg;
    (void)ctx;
    c->svc = 0;
    if (status == SINK_SVC_CANCELLED) {
        lua_sink_cancelled(c);
        return;
    }
    lua_sink_resume(c, 0);
}

static int lua_lib_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    luaL_argcheck(L, s >= 0 && s <= 3600, 1, "seconds, 0 to 3600");
    struct lua_call *c = lua_lib_call(L, "sleep");
    int rc = sink_timer_start(c->ctx, (uint64_t)llround(s * 1000), lua_lib_timer, c, &c->svc);
    if (rc < 0)
        return luaL_error(L, "sluice.sleep: the timer did not start (%d)", rc);
    c->waiting = 1;
    return lua_yield(L, 0);
}

/* ---- DNS ---- */

static const struct {
    const char *name;
    enum sink_dns_type type;
} lua_dns_types[] = {
    {"A", SINK_DNS_A},     {"AAAA", SINK_DNS_AAAA}, {"MX", SINK_DNS_MX},
    {"TXT", SINK_DNS_TXT}, {"PTR", SINK_DNS_PTR},   {"TLSA", SINK_DNS_TLSA},
};

static const char *lua_dns_type_name(unsigned t)
{
    for (size_t i = 0; i < sizeof(lua_dns_types) / sizeof(lua_dns_types[0]); i++)
        if (lua_dns_types[i].type == t)
            return lua_dns_types[i].name;
    return "?";
}

/* Set when the answer came inside sink_dns_lookup (a cached one). */
struct lua_dns_wait {
    struct lua_call *c;
    bool starting, answered;
};

static void lua_dns_push(lua_State *co, const struct sink_dns_answer *a)
{
    static const char *const st[] = {"ok", "nxdomain", "nodata", "tempfail", "cancelled"};
    lua_createtable(co, (int)a->n, 0);
    for (size_t i = 0; i < a->n; i++) {
        const struct sink_dns_rr *rr = &a->rr[i];
        lua_createtable(co, 0, 4);
        lua_pushstring(co, lua_dns_type_name(rr->type));
        lua_setfield(co, -2, "type");
        lua_pushstring(co, rr->text);
        lua_setfield(co, -2, "text");
        lua_pushinteger(co, rr->ttl);
        lua_setfield(co, -2, "ttl");
        lua_pushinteger(co, rr->pref);
        lua_setfield(co, -2, "pref");
        lua_rawseti(co, -2, (lua_Integer)i + 1);
    }
    lua_pushstring(co, st[a->status <= SINK_DNS_CANCELLED ? a->status : SINK_DNS_TEMPFAIL]);
    if (a->status == SINK_DNS_OK)
        lua_pushnil(co);
    else
        lua_pushstring(co, a->error ? a->error : st[a->status]);
}

void lua_push_protected(struct lua_call *c, lua_CFunction build, void *arg, int nres)
{
    lua_State *L = c->st->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, build);
    lua_pushlightuserdata(L, arg);
    if (lua_pcall(L, 1, nres, 0) == LUA_OK) {
        lua_xmove(L, c->co, nres); /* moves, allocates nothing */
    } else {
        lua_settop(L, top); /* the error (out of memory): dropped */
        for (int i = 0; i < nres; i++)
            lua_pushnil(c->co); /* the stack room was checked when it yielded */
    }
    lua_settop(L, top);
}

static int lua_dns_build(lua_State *L)
{
    const struct sink_dns_answer *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_dns_push(L, a);
    return 3;
}

static void lua_lib_dns_answer(struct sink_ctx *ctx, void *arg, const struct sink_dns_answer *a)
{
    struct lua_dns_wait *w = arg;
    struct lua_call *c = w->c;
    (void)ctx;
    c->svc = 0;
    if (a->status == SINK_DNS_CANCELLED) {
        free(w);
        lua_sink_cancelled(c);
        return;
    }
    lua_push_protected(c, lua_dns_build, (void *)a, 3);
    if (w->starting) { /* inside sluice.dns: it returns them */
        w->answered = true;
        return;
    }
    free(w);
    lua_sink_resume(c, 3);
}

static int lua_lib_dns(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *tn = luaL_optstring(L, 2, "A");
    size_t i = 0, nt = sizeof(lua_dns_types) / sizeof(lua_dns_types[0]);
    while (i < nt && strcasecmp(lua_dns_types[i].name, tn) != 0)
        i++;
    if (i == nt)
        return luaL_error(L, "sluice.dns: type \"%s\": A, AAAA, MX, TXT, PTR or TLSA", tn);
    struct lua_call *c = lua_lib_call(L, "dns");
    lua_checkstack(L, 8);
    struct lua_dns_wait *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return luaL_error(L, "sluice.dns: out of memory");
    w->c = c;
    w->starting = true;
    int rc = sink_dns_lookup(c->ctx, name, lua_dns_types[i].type, lua_lib_dns_answer, w, &c->svc);
    w->starting = false;
    if (w->answered) {
        free(w);
        return 3;
    }
    if (rc < 0) {
        free(w);
        return luaL_error(L, "sluice.dns: the lookup did not start (%d)", rc);
    }
    c->waiting = 1;
    return lua_yield(L, 0);
}

/* ---- shared values ---- */

struct lua_shared {
    struct lua_shared *next;
    int type; /* LUA_TSTRING, LUA_TNUMBER, LUA_TBOOLEAN */
    lua_Number num;
    char *str;
    size_t len;
    char key[];
};

#define LUA_SHARED_BUCKETS 256
static pthread_mutex_t lua_shared_mu = PTHREAD_MUTEX_INITIALIZER;
static struct lua_shared *lua_shared_map[LUA_SHARED_BUCKETS]; /* under lua_shared_mu */

static struct lua_shared **lua_shared_find(const char *k)
{
    unsigned h = 5381;
    for (const char *p = k; *p; p++)
        h = h * 33 + (unsigned char)*p;
    struct lua_shared **pp = &lua_shared_map[h % LUA_SHARED_BUCKETS];
    while (*pp != NULL && strcmp((*pp)->key, k) != 0)
        pp = &(*pp)->next;
    return pp;
}

static int lua_lib_shared_get(lua_State *L)
{
    const char *k = luaL_checkstring(L, 1);
    char *copy = NULL;
    size_t len = 0;
    int type = LUA_TNIL;
    lua_Number num = 0;
    pthread_mutex_lock(&lua_shared_mu);
    struct lua_shared *s = *lua_shared_find(k);
    if (s != NULL) {
        type = s->type;
        num = s->num;
        if (type == LUA_TSTRING && (copy = malloc(s->len + 1)) != NULL) {
            memcpy(copy, s->str, s->len + 1);
            len = s->len;
        }
    }
    pthread_mutex_unlock(&lua_shared_mu);
    if (type == LUA_TSTRING && copy == NULL)
        return luaL_error(L, "sluice.shared_get: out of memory");
    if (type == LUA_TSTRING) {
        lua_pushlstring(L, copy, len); /* at a memory error this copy leaks (small, rare) */
        free(copy);
    } else if (type == LUA_TNUMBER) {
        lua_pushnumber(L, num);
    } else if (type == LUA_TBOOLEAN) {
        lua_pushboolean(L, num != 0);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int lua_lib_shared_set(lua_State *L)
{
    const char *k = luaL_checkstring(L, 1);
    int type = lua_type(L, 2);
    luaL_argcheck(L, type == LUA_TNIL || type == LUA_TNONE || type == LUA_TSTRING ||
                         type == LUA_TNUMBER || type == LUA_TBOOLEAN,
                  2, "a string, number, boolean or nil");
    struct lua_shared *n = NULL;
    if (type == LUA_TSTRING || type == LUA_TNUMBER || type == LUA_TBOOLEAN) {
        size_t kl = strlen(k), len = 0;
        const char *v = type == LUA_TSTRING ? lua_tolstring(L, 2, &len) : NULL;
        if ((n = calloc(1, sizeof(*n) + kl + 1)) == NULL ||
            (v != NULL && (n->str = malloc(len + 1)) == NULL)) {
            free(n);
            return luaL_error(L, "sluice.shared_set: out of memory");
        }
        memcpy(n->key, k, kl + 1);
        n->type = type;
        if (v != NULL) {
            memcpy(n->str, v, len + 1);
            n->len = len;
        }
        n->num = type == LUA_TNUMBER ? lua_tonumber(L, 2) : lua_toboolean(L, 2);
    }
    pthread_mutex_lock(&lua_shared_mu);
    struct lua_shared **pp = lua_shared_find(k), *old = *pp;
    if (n != NULL) {
        n->next = old ? old->next : NULL;
        *pp = n;
    } else if (old != NULL) {
        *pp = old->next;
    }
    pthread_mutex_unlock(&lua_shared_mu);
    if (old != NULL) {
        free(old->str);
        free(old);
    }
    return 0;
}

static int lua_lib_incr(lua_State *L)
{
    const char *k = luaL_checkstring(L, 1);
    lua_Number d = luaL_optnumber(L, 2, 1);
    size_t kl = strlen(k);
    struct lua_shared *n = calloc(1, sizeof(*n) + kl + 1); /* in case it is new */
    if (n == NULL)
        return luaL_error(L, "sluice.incr: out of memory");
    lua_Number v;
    bool bad = false;
    pthread_mutex_lock(&lua_shared_mu);
    struct lua_shared **pp = lua_shared_find(k);
    if (*pp == NULL) {
        memcpy(n->key, k, kl + 1);
        n->type = LUA_TNUMBER;
        n->num = d;
        *pp = n;
        n = NULL;
        v = d;
    } else if ((*pp)->type != LUA_TNUMBER) {
        bad = true;
        v = 0;
    } else {
        v = ((*pp)->num += d);
    }
    pthread_mutex_unlock(&lua_shared_mu);
    free(n);
    if (bad)
        return luaL_error(L, "sluice.incr: \"%s\" holds something other than a number", k);
    lua_pushnumber(L, v);
    return 1;
}

/* ---- log ---- */

static int lua_lib_log(lua_State *L)
{
    static const char *const lv[] = {"debug", "info", "warn", "error", NULL};
    int level = luaL_checkoption(L, 1, NULL, lv);
    const char *msg = luaL_checkstring(L, 2);
    lua_Debug d;
    struct lua_st *st = lua_sink_state(L);
    if (lua_getstack(L, 1, &d) && lua_getinfo(L, "Sl", &d) && d.currentline > 0)
        log_msg((enum log_level)level, "sinks: lua %s:%d: %s", d.short_src, d.currentline, msg);
    else
        log_msg((enum log_level)level, "sinks: lua %s: %s", st->lb ? "script" : "?", msg);
    return 0;
}

static const luaL_Reg lua_lib_funcs[] = {
    {"sleep", lua_lib_sleep},
    {"dns", lua_lib_dns},
    {"http", lua_http_request},
    {"shared_get", lua_lib_shared_get},
    {"shared_set", lua_lib_shared_set},
    {"incr", lua_lib_incr},
    {"log", lua_lib_log},
    {NULL, NULL},
};

void lua_lib_open(lua_State *L)
{
    luaL_newlib(L, lua_lib_funcs);
    lua_setglobal(L, "sluice");
}
