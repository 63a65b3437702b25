/*
 * NAME
 *	lua_int - sinks written in Lua 5.4: what the files of the Lua tier share
 * SYNOPSIS
 *	#include "sinks/lua_int.h"
 *
 *	binding "x" { event = "mail"; sink = "lua:/etc/sluice/x.lua"; }
 * DESCRIPTION
 *	lua_sink.c: the binding's instance (the file's text, its events, the
 *	limits), one lua_State per thread that calls it (made lazily, touched
 *	only by that thread: no lock on the call path), the memory limit
 *	(allocator), the instruction budget (count hook) and the coroutine
 *	that runs handle(ctx).  lua_ctx.c: the ctx object.  lua_lib.c: the
 *	sluice table (sleep, dns, shared values, counters, log).  lua_http.c:
 *	sluice.http over libcurl's multi-socket interface.
 *
 *	A call is a struct lua_call: its coroutine (anchored in the state's
 *	registry), its ctx, and at most one waiting service (timer, DNS) or
 *	one HTTP transfer.  While the call is PENDING some service of it is
 *	always pending, so the end of the call (deadline, client gone) always
 *	reaches a cancellation callback, which closes the coroutine.
 * DIAGNOSTICS
 *	Script errors are logged with file:line and answered with the
 *	binding's on_error verdict; the daemon never stops for a script.
 */
#ifndef SLUICE_SINKS_LUA_INT_H
#define SLUICE_SINKS_LUA_INT_H

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "sinks/sink.h"

#define LUA_SINK_MAXTHREADS 256
#define LUA_SINK_BUDGET_DEFAULT 1000000      /* VM instructions per resume */
#define LUA_SINK_MEMORY_DEFAULT (64u << 20)  /* bytes per state */

struct lua_bind;
struct lua_http;

/* One state: one thread's copy of one binding's script. */
struct lua_st {
    lua_State *L;
    struct lua_bind *lb;
    size_t mem, mem_limit;
    int handle_ref;        /* registry: the module's handle function */
    struct lua_call *cur;  /* the call being resumed, or NULL */
};

struct lua_call {
    struct lua_st *st;
    lua_State *co;
    int co_ref;
    struct sink_ctx *ctx;
    struct lua_ctxud *ud;  /* the ctx object: its ctx is cleared at the end */
    int waiting;           /* 1: yielded by sluice.sleep/dns/http */
    sink_svc_id svc;       /* the timer or the lookup waited for */
    struct lua_http *http; /* a transfer waited for, or NULL */
    bool ended;
};

/* Builds nres values for c's coroutine with build(L) (its argument:
 * lua_touserdata(L, 1) == arg) under lua_pcall on the state's main thread,
 * then moves them onto the coroutine: a script at its memory limit gets
 * nres nils instead of a Lua panic (lua_lib.c). */
void lua_push_protected(struct lua_call *c, lua_CFunction build, void *arg, int nres);

/* The Lua side of a ctx: valid while ud->ctx is not NULL. */
struct lua_ctxud {
    struct sink_ctx *ctx;
};

/* lua_sink.c */
extern const struct sink_module sink_lua_module;
/* The instance for `lua:PATH`: reads and checks the file. */
int sink_lua_create(const char *path, const struct sink_props *p, void **inst, char *err,
                    size_t errlen);
uint64_t sink_lua_events(const void *inst);
/* The state running L's call (from a C function called by a script). */
struct lua_st *lua_sink_state(lua_State *L);
/* Resume the call's coroutine with the nargs values on co's stack, and
 * answer the call if it finished (sink_complete) or failed. */
void lua_sink_resume(struct lua_call *c, int nargs);
/* The call was cancelled: close the coroutine, free the call. */
void lua_sink_cancelled(struct lua_call *c);

/* lua_ctx.c */
void lua_ctx_open(lua_State *L);                        /* the metatable */
struct lua_ctxud *lua_ctx_push(lua_State *L, struct sink_ctx *ctx);

/* lua_lib.c: the sluice table as a global */
void lua_lib_open(lua_State *L);
/* The call that may yield from L now, or a Lua error naming fn. */
struct lua_call *lua_lib_call(lua_State *L, const char *fn);

/* lua_http.c */
int lua_http_request(lua_State *L); /* sluice.http{...} */
void lua_http_free(struct lua_http *h);

#endif
