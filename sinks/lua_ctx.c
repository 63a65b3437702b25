/*
 * NAME
 *	lua_ctx - the ctx object a Lua sink's handle(ctx) receives
 * SYNOPSIS
 *	#include "sinks/lua_int.h"
 *
 *	ctx.event, ctx.sender, ctx:header_add("X-Seen", "yes"), ...
 * DESCRIPTION
 *	A full userdata holding the sink_ctx pointer; the call clears it when
 *	it ends, after which every use raises "ctx used after its call
 *	ended".  Fields (nil where the C accessor answers NULL):
 *	event, binding, client, helo, tls, auth_user, verb, args, sender,
 *	mail_params, rcpt (the rcpt event's candidate), rcpt_index (1-based,
 *	route and the outbound events), nexthop, message_id, body_size,
 *	response_code, response_text, delivery_status, deadline_ms,
 *	time_left_ms.  Methods: rcpts() (a list), body() (an iterator over
 *	the body's slices, each a string, for use in a for loop),
 *	header_get(name[, nth]) (nth from 1), header_add(name, value),
 *	header_remove(name), header_change(name, value), rcpt_set(i, addr),
 *	rcpt_add(addr), rcpt_remove(i) (i from 1), route_set(nexthop),
 *	prop_get(scope, key), prop_set(scope, key[, value]) (scope
 *	"message", "session" or "server"; no value removes), reply(code,
 *	enhanced, text).  The edits answer true, or nil and the reason
 *	("not available at this event", "invalid argument").
 */
#include "sinks/lua_int.h"

#include <errno.h>
#include <string.h>

#define LUA_CTX_MT "sluice.ctx"

static struct sink_ctx *lua_ctx_get(lua_State *L)
{
    struct lua_ctxud *u = luaL_checkudata(L, 1, LUA_CTX_MT);
    if (u->ctx == NULL)
        luaL_error(L, "ctx used after its call ended");
    return u->ctx;
}

/* true, or nil and the reason. */
static int lua_ctx_rc(lua_State *L, int rc)
{
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, rc == -ENOTSUP  ? "not available at this event"
                      : rc == -EINVAL ? "invalid argument"
                      : rc == -ENOENT ? "no such entry"
                                      : "failed");
    return 2;
}

static int lua_ctx_rcpts(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    size_t n = sink_rcpt_count(ctx);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, sink_rcpt(ctx, i));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int lua_ctx_body_next(lua_State *L)
{
    struct lua_ctxud *u = lua_touserdata(L, lua_upvalueindex(1));
    struct sink_body_iter *it = lua_touserdata(L, lua_upvalueindex(2));
    if (u->ctx == NULL)
        return luaL_error(L, "ctx used after its call ended");
    const char *p;
    ssize_t n = sink_body_next(it, &p);
    if (n < 0)
        return luaL_error(L, "body: %s", strerror((int)-n));
    if (n == 0)
        return 0;
    lua_pushlstring(L, p, (size_t)n);
    return 1;
}

static int lua_ctx_body(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    lua_pushvalue(L, 1);
    struct sink_body_iter *it = lua_newuserdatauv(L, sizeof(*it), 0);
    int rc = sink_body_begin(ctx, it);
    if (rc < 0)
        return luaL_error(L, "body: %s", rc == -ENOTSUP ? "no message at this event"
                                                        : strerror(-rc));
    lua_pushcclosure(L, lua_ctx_body_next, 2);
    return 1;
}

static int lua_ctx_header_get(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    const char *name = luaL_checkstring(L, 2);
    lua_Integer nth = luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, nth >= 1, 3, "from 1");
    char buf[1024];
    ssize_t n = sink_header_get(ctx, name, (unsigned)(nth - 1), buf, sizeof(buf));
    if (n < 0) {
        lua_pushnil(L);
        return 1;
    }
    if ((size_t)n < sizeof(buf)) {
        lua_pushlstring(L, buf, (size_t)n);
        return 1;
    }
    luaL_Buffer b; /* longer than buf: once more at its size */
    char *big = luaL_buffinitsize(L, &b, (size_t)n + 1);
    sink_header_get(ctx, name, (unsigned)(nth - 1), big, (size_t)n + 1);
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

static int lua_ctx_header_add(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    return lua_ctx_rc(L, sink_header_add(ctx, luaL_checkstring(L, 2), luaL_checkstring(L, 3)));
}

static int lua_ctx_header_remove(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    return lua_ctx_rc(L, sink_header_remove(ctx, luaL_checkstring(L, 2)));
}

static int lua_ctx_header_change(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    return lua_ctx_rc(L, sink_header_change(ctx, luaL_checkstring(L, 2), luaL_checkstring(L, 3)));
}

static size_t lua_ctx_index(lua_State *L, int arg)
{
    lua_Integer i = luaL_checkinteger(L, arg);
    luaL_argcheck(L, i >= 1, arg, "recipients count from 1");
    return (size_t)(i - 1);
}

static int lua_ctx_rcpt_set(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    size_t i = lua_ctx_index(L, 2);
    return lua_ctx_rc(L, sink_rcpt_set(ctx, i, luaL_checkstring(L, 3)));
}

static int lua_ctx_rcpt_add(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    return lua_ctx_rc(L, sink_rcpt_add(ctx, luaL_checkstring(L, 2)));
}

static int lua_ctx_rcpt_remove(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    return lua_ctx_rc(L, sink_rcpt_remove(ctx, lua_ctx_index(L, 2)));
}

static int lua_ctx_route_set(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    return lua_ctx_rc(L, sink_route_set(ctx, luaL_checkstring(L, 2)));
}

static enum sink_scope lua_ctx_scope(lua_State *L, int arg)
{
    static const char *const names[] = {"message", "session", "server", NULL};
    return (enum sink_scope)luaL_checkoption(L, arg, NULL, names);
}

static int lua_ctx_prop_get(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    const char *v = sink_prop_get(ctx, lua_ctx_scope(L, 2), luaL_checkstring(L, 3));
    lua_pushstring(L, v); /* NULL: nil */
    return 1;
}

static int lua_ctx_prop_set(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    enum sink_scope sc = lua_ctx_scope(L, 2);
    const char *k = luaL_checkstring(L, 3);
    const char *v = lua_isnoneornil(L, 4) ? NULL : luaL_checkstring(L, 4);
    return lua_ctx_rc(L, sink_prop_set(ctx, sc, k, v));
}

static int lua_ctx_reply(lua_State *L)
{
    struct sink_ctx *ctx = lua_ctx_get(L);
    lua_Integer code = luaL_checkinteger(L, 2);
    const char *enh = luaL_optstring(L, 3, NULL);
    const char *text = luaL_optstring(L, 4, "");
    luaL_argcheck(L, code >= 200 && code <= 599, 2, "a reply code 200..599");
    return lua_ctx_rc(L, sink_set_reply(ctx, (int)code, enh, text));
}

static const luaL_Reg lua_ctx_methods[] = {
    {"rcpts", lua_ctx_rcpts},
    {"body", lua_ctx_body},
    {"header_get", lua_ctx_header_get},
    {"header_add", lua_ctx_header_add},
    {"header_remove", lua_ctx_header_remove},
    {"header_change", lua_ctx_header_change},
    {"rcpt_set", lua_ctx_rcpt_set},
    {"rcpt_add", lua_ctx_rcpt_add},
    {"rcpt_remove", lua_ctx_rcpt_remove},
    {"route_set", lua_ctx_route_set},
    {"prop_get", lua_ctx_prop_get},
    {"prop_set", lua_ctx_prop_set},
    {"reply", lua_ctx_reply},
    {NULL, NULL},
};

static void lua_push_size(lua_State *L, size_t i)
{
    if (i == SIZE_MAX)
        lua_pushnil(L);
    else
        lua_pushinteger(L, (lua_Integer)i + 1);
}

/* __index(ctx, key): a method from the upvalue table, else a field. */
static int lua_ctx_field(lua_State *L)
{
    lua_settop(L, 2);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) /* the method */
        return 1;
    lua_pop(L, 1);
    struct sink_ctx *ctx = lua_ctx_get(L);
    const char *k = luaL_checkstring(L, 2);
    switch (k[0]) {
    case 'a':
        if (strcmp(k, "auth_user") == 0)
            return lua_pushstring(L, sink_auth_user(ctx)), 1;
        if (strcmp(k, "args") == 0)
            return lua_pushstring(L, sink_command_args(ctx)), 1;
        break;
    case 'b':
        if (strcmp(k, "binding") == 0)
            return lua_pushstring(L, sink_binding_name(ctx)), 1;
        if (strcmp(k, "body_size") == 0)
            return lua_pushinteger(L, (lua_Integer)sink_body_size(ctx)), 1;
        break;
    case 'c':
        if (strcmp(k, "client") == 0)
            return lua_pushstring(L, sink_client_addr(ctx)), 1;
        break;
    case 'd':
        if (strcmp(k, "delivery_status") == 0)
            return lua_pushstring(L, sink_delivery_status(ctx)), 1;
        if (strcmp(k, "deadline_ms") == 0)
            return lua_pushinteger(L, (lua_Integer)sink_deadline_ms(ctx)), 1;
        break;
    case 'e':
        if (strcmp(k, "event") == 0)
            return lua_pushstring(L, sink_event_name(sink_event(ctx))), 1;
        break;
    case 'h':
        if (strcmp(k, "helo") == 0)
            return lua_pushstring(L, sink_helo(ctx)), 1;
        break;
    case 'm':
        if (strcmp(k, "mail_params") == 0)
            return lua_pushstring(L, sink_mail_params(ctx)), 1;
        if (strcmp(k, "message_id") == 0)
            return lua_pushinteger(L, (lua_Integer)sink_message_id(ctx)), 1;
        break;
    case 'n':
        if (strcmp(k, "nexthop") == 0)
            return lua_pushstring(L, sink_nexthop(ctx)), 1;
        break;
    case 'r':
        if (strcmp(k, "rcpt") == 0) {
            const char *r = sink_rcpt_current(ctx);
            size_t i = sink_rcpt_index(ctx);
            if (r == NULL && i != SIZE_MAX)
                r = sink_rcpt(ctx, i);
            return lua_pushstring(L, r), 1;
        }
        if (strcmp(k, "rcpt_index") == 0)
            return lua_push_size(L, sink_rcpt_index(ctx)), 1;
        if (strcmp(k, "response_code") == 0)
            return lua_pushinteger(L, sink_response_code(ctx)), 1;
        if (strcmp(k, "response_text") == 0)
            return lua_pushstring(L, sink_response_text(ctx)), 1;
        break;
    case 's':
        if (strcmp(k, "sender") == 0)
            return lua_pushstring(L, sink_sender(ctx)), 1;
        break;
    case 't':
        if (strcmp(k, "tls") == 0)
            return lua_pushstring(L, sink_tls(ctx)), 1;
        if (strcmp(k, "time_left_ms") == 0)
            return lua_pushinteger(L, (lua_Integer)sink_time_left_ms(ctx)), 1;
        break;
    case 'v':
        if (strcmp(k, "verb") == 0)
            return lua_pushstring(L, sink_command_verb(ctx)), 1;
        break;
    }
    return luaL_error(L, "ctx has no field \"%s\"", k);
}

void lua_ctx_open(lua_State *L)
{
    luaL_newmetatable(L, LUA_CTX_MT);
    luaL_newlib(L, lua_ctx_methods);
    lua_pushcclosure(L, lua_ctx_field, 1);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "sluice.ctx");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
}

struct lua_ctxud *lua_ctx_push(lua_State *L, struct sink_ctx *ctx)
{
    struct lua_ctxud *u = lua_newuserdatauv(L, sizeof(*u), 0);
    u->ctx = ctx;
    luaL_setmetatable(L, LUA_CTX_MT);
    return u;
}
