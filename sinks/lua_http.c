/*
 * NAME
 *	lua_http - sluice.http{...}: one HTTP request without a thread
 * SYNOPSIS
 *	#include "sinks/lua_int.h"
 *
 *	local r, err = sluice.http{ url = "http://127.0.0.1:8080/check",
 *	    method = "POST", body = "{...}", headers = { ["Content-Type"] =
 *	    "application/json" }, timeout = 2 }
 *	-- r.status (200), r.body (up to 1 MiB); or nil and why
 * DESCRIPTION
 *	libcurl's multi-socket interface driven by the sink services, as in
 *	sinks/examples/http_policy.c: curl says which sockets to watch
 *	(sink_fd_watch, one shot, armed again while curl wants the socket)
 *	and when to call it back (sink_timer_start).  The transfer belongs to
 *	the call (c->http): the first cancelled service of it (deadline,
 *	client gone) frees it with the call; a finished transfer resumes the
 *	coroutine with its result.  The timeout (seconds) is at most what is
 *	left of the binding's deadline.
 */
#include "sinks/lua_int.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LH_MAXSOCK 4
#define LH_BODY_MAX (1u << 20)

struct lh_sock {
    curl_socket_t fd; /* CURL_SOCKET_BAD: free */
    unsigned want;
    sink_svc_id watch;
};

struct lua_http {
    struct lua_call *c;
    CURLM *multi;
    CURL *easy;
    struct curl_slist *headers;
    char *req; /* the request body, copied */
    char *body;
    size_t nbody, cap;
    bool truncated;
    struct lh_sock sock[LH_MAXSOCK];
    sink_svc_id timer;
    bool freeing;
};

void lua_http_free(struct lua_http *h)
{
    if (h == NULL)
        return;
    struct sink_ctx *ctx = h->c->ctx;
    h->freeing = true;
    if (h->timer)
        sink_svc_cancel(ctx, h->timer);
    if (h->multi != NULL && h->easy != NULL)
        curl_multi_remove_handle(h->multi, h->easy);
    for (int i = 0; i < LH_MAXSOCK; i++)
        if (h->sock[i].watch)
            sink_svc_cancel(ctx, h->sock[i].watch);
    if (h->easy != NULL)
        curl_easy_cleanup(h->easy);
    if (h->multi != NULL)
        curl_multi_cleanup(h->multi);
    curl_slist_free_all(h->headers);
    free(h->req);
    free(h->body);
    free(h);
}

struct lh_result {
    struct lua_http *h;
    CURLcode rc;
};

/* Under lua_pcall (lua_push_protected): the result, or nil and why. */
static int lh_build(lua_State *L)
{
    const struct lh_result *r = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (r->rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(r->h->easy, CURLINFO_RESPONSE_CODE, &status);
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, status);
        lua_setfield(L, -2, "status");
        lua_pushlstring(L, r->h->body ? r->h->body : "", r->h->nbody);
        lua_setfield(L, -2, "body");
        lua_pushboolean(L, r->h->truncated);
        lua_setfield(L, -2, "truncated");
        lua_pushnil(L);
    } else {
        lua_pushnil(L);
        lua_pushstring(L, curl_easy_strerror(r->rc));
    }
    return 2;
}

/* The transfer ended: its result on the coroutine, which goes on. */
static void lh_finish(struct lua_http *h, CURLcode rc)
{
    struct lua_call *c = h->c;
    struct lh_result r = {h, rc};
    lua_push_protected(c, lh_build, &r, 2);
    c->http = NULL;
    lua_http_free(h);
    lua_sink_resume(c, 2);
}

static void lh_check(struct lua_http *h)
{
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(h->multi, &left)) != NULL)
        if (m->msg == CURLMSG_DONE) {
            lh_finish(h, m->data.result);
            return;
        }
}

static void lh_arm(struct lua_http *h, struct lh_sock *s);

static void lh_on_fd(struct sink_ctx *ctx, void *arg, int fd, int status)
{
    struct lua_http *h = arg;
    (void)ctx;
    for (int i = 0; i < LH_MAXSOCK; i++)
        if (h->sock[i].fd == fd)
            h->sock[i].watch = 0;
    if (status == SINK_SVC_CANCELLED) { /* the call ended: the transfer with it */
        if (!h->freeing)
            lua_sink_cancelled(h->c); /* frees h through c->http */
        return;
    }
    int ev = ((status & SINK_FD_READ) ? CURL_CSELECT_IN : 0) |
             ((status & SINK_FD_WRITE) ? CURL_CSELECT_OUT : 0) |
             ((status & SINK_FD_ERROR) ? CURL_CSELECT_ERR : 0);
    int running;
    curl_multi_socket_action(h->multi, fd, ev, &running);
    for (int i = 0; i < LH_MAXSOCK; i++)
        if (h->sock[i].fd == fd && h->sock[i].watch == 0)
            lh_arm(h, &h->sock[i]);
    lh_check(h);
}

static void lh_arm(struct lua_http *h, struct lh_sock *s)
{
    if (s->want == 0 || s->watch != 0 || h->freeing)
        return;
    if (sink_fd_watch(h->c->ctx, s->fd, s->want, lh_on_fd, h, &s->watch) < 0)
        s->watch = 0; /* curl's own timeout ends the transfer */
}

static int lh_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy, (void)socketp;
    struct lua_http *h = userp;
    struct lh_sock *s = NULL, *free_slot = NULL;
    for (int i = 0; i < LH_MAXSOCK; i++) {
        if (h->sock[i].fd == fd)
            s = &h->sock[i];
        else if (h->sock[i].fd == CURL_SOCKET_BAD && free_slot == NULL)
            free_slot = &h->sock[i];
    }
    unsigned want = what == CURL_POLL_IN      ? SINK_FD_READ
                    : what == CURL_POLL_OUT   ? SINK_FD_WRITE
                    : what == CURL_POLL_INOUT ? SINK_FD_READ | SINK_FD_WRITE
                                              : 0;
    if (s == NULL) {
        if (want == 0 || (s = free_slot) == NULL)
            return 0;
        s->fd = fd;
        s->watch = 0;
    }
    if (s->watch != 0 && s->want != want) {
        sink_svc_cancel(h->c->ctx, s->watch);
        s->watch = 0;
    }
    s->want = want;
    if (want == 0) {
        if (s->watch != 0)
            sink_svc_cancel(h->c->ctx, s->watch);
        s->fd = CURL_SOCKET_BAD;
        s->watch = 0;
        return 0;
    }
    lh_arm(h, s);
    return 0;
}

static void lh_on_timer(struct sink_ctx *ctx, void *arg, int status)
{
    struct lua_http *h = arg;
    (void)ctx;
    h->timer = 0;
    if (status == SINK_SVC_CANCELLED) {
        if (!h->freeing)
            lua_sink_cancelled(h->c);
        return;
    }
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    lh_check(h);
}

static int lh_timer_cb(CURLM *multi, long ms, void *userp)
{
    (void)multi;
    struct lua_http *h = userp;
    if (h->timer) {
        sink_svc_cancel(h->c->ctx, h->timer);
        h->timer = 0;
    }
    if (ms >= 0 && !h->freeing)
        sink_timer_start(h->c->ctx, (uint64_t)ms, lh_on_timer, h, &h->timer);
    return 0;
}

static size_t lh_write_cb(char *p, size_t size, size_t n, void *userp)
{
    struct lua_http *h = userp;
    size_t len = size * n, room = LH_BODY_MAX - h->nbody, take = len < room ? len : room;
    if (take < len)
        h->truncated = true;
    if (h->nbody + take > h->cap) {
        size_t cap = h->cap ? h->cap : 4096;
        while (cap < h->nbody + take)
            cap *= 2;
        char *nb = realloc(h->body, cap);
        if (nb == NULL)
            return 0; /* curl fails the transfer */
        h->body = nb;
        h->cap = cap;
    }
    memcpy(h->body + h->nbody, p, take);
    h->nbody += take;
    return len;
}

static pthread_once_t lh_once = PTHREAD_ONCE_INIT;
static bool lh_ready;
static void lh_init(void)
{
    lh_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

/* The request's options from the table at 1; a message, or NULL. */
static const char *lh_setup(lua_State *L, struct lua_http *h, struct lua_call *c)
{
    lua_getfield(L, 1, "url");
    const char *url = lua_tostring(L, -1);
    if (url == NULL || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return "url: an http:// or https:// URL is required";
    curl_easy_setopt(h->easy, CURLOPT_URL, url); /* curl copies strings */
    lua_getfield(L, 1, "method");
    const char *method = lua_tostring(L, -1);
    lua_getfield(L, 1, "body");
    size_t blen = 0;
    const char *body = lua_tolstring(L, -1, &blen);
    if (body != NULL) {
        if ((h->req = malloc(blen + 1)) == NULL)
            return "out of memory";
        memcpy(h->req, body, blen + 1);
        curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, h->req);
        curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
    if (method != NULL)
        curl_easy_setopt(h->easy, CURLOPT_CUSTOMREQUEST, method);
    if (lua_getfield(L, 1, "headers") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
            const char *v = lua_tostring(L, -1);
            if (k == NULL || v == NULL || strpbrk(k, "\r\n:") || strpbrk(v, "\r\n"))
                return "headers: { [\"Name\"] = \"value\" } without CR, LF or ':' in names";
            lua_pushfstring(L, "%s: %s", k, v);
            struct curl_slist *nl = curl_slist_append(h->headers, lua_tostring(L, -1));
            if (nl == NULL)
                return "out of memory";
            h->headers = nl;
            lua_pop(L, 2);
        }
        curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->headers);
    }
    lua_getfield(L, 1, "timeout");
    lua_Number t = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 1e9;
    uint64_t left = sink_time_left_ms(c->ctx);
    long ms = t * 1000 < (lua_Number)left ? (long)(t * 1000) : (long)left;
    curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
    curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, lh_write_cb);
    curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->easy, CURLOPT_NOSIGNAL, 1L);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, lh_socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, lh_timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return NULL;
}

int lua_http_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct lua_call *c = lua_lib_call(L, "http");
    if (!lua_checkstack(L, 4)) /* the room its answer is moved into */
        return luaL_error(L, "sluice.http: out of stack");
    pthread_once(&lh_once, lh_init);
    if (!lh_ready)
        return luaL_error(L, "sluice.http: libcurl did not initialise");
    struct lua_http *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return luaL_error(L, "sluice.http: out of memory");
    h->c = c;
    for (int i = 0; i < LH_MAXSOCK; i++)
        h->sock[i].fd = CURL_SOCKET_BAD;
    h->multi = curl_multi_init();
    h->easy = curl_easy_init();
    const char *why = h->multi && h->easy ? lh_setup(L, h, c) : "out of memory";
    if (why == NULL) {
        c->http = h; /* before add_handle: its timer may start services */
        if (curl_multi_add_handle(h->multi, h->easy) == CURLM_OK) {
            c->waiting = 1;
            return lua_yield(L, 0);
        }
        c->http = NULL;
        why = "the transfer did not start";
    }
    lua_http_free(h);
    return luaL_error(L, "sluice.http: %s", why);
}
