/*
 * NAME
 *	http_policy - example async sink: ask an HTTP policy service about each recipient
 * SYNOPSIS
 *	cc $(pkg-config --cflags sluice-sink libcurl) -shared -fPIC -fvisibility=hidden \
 *	    http_policy.c -o http_policy.so $(pkg-config --libs libcurl)
 *
 *	binding "policy" {
 *	    event = "rcpt"; sink = "/usr/lib/sluice/http_policy.so";
 *	    deadline = 2s; on_deadline = tempfail;
 *	    properties { url = "http://127.0.0.1:8080/check"; }
 *	}
 * DESCRIPTION
 *	At rcpt, POSTs the envelope as JSON to `url`:
 *
 *	  {"client":"192.0.2.1","helo":"mx.example","sender":"a@example.org",
 *	   "rcpt":"b@example.net","rcpts":["c@example.net"]}
 *
 *	and takes the verdict from the JSON answer:
 *
 *	  {"verdict":"reject","code":550,"enhanced":"5.7.1","text":"no such user"}
 *
 *	verdict is any sink verdict name but pending (continue when absent);
 *	code, enhanced and text are the reply (optional).  An HTTP status
 *	other than 200, an answer that is not such an object, or a failed
 *	transfer is `on_error` (tempfail, the default, or continue or reject).
 *
 *	No thread: libcurl's multi-socket interface is driven by the sink
 *	services.  curl tells which sockets to watch (sink_fd_watch, one
 *	shot, armed again while curl wants the socket) and when to call it
 *	back (sink_timer_start); both run on the session's worker.  One multi
 *	handle per call; the transfer ends with the call (deadline, client
 *	gone): the first cancelled service's callback frees it.  Connections
 *	are kept alive across calls in a share per worker thread.
 *
 *	It includes only the sink header, libc and libcurl.
 */
#include <sluice/sink.h>

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HP_MAXSOCK 4
#define HP_BODY_MAX 4096

struct hp {
    char *url;
    enum sink_verdict on_error;
};

struct hp_sock {
    curl_socket_t fd; /* CURL_SOCKET_BAD: free */
    unsigned want;    /* SINK_FD_READ | SINK_FD_WRITE */
    sink_svc_id watch; /* 0: not armed */
};

/* One transfer: owned by the call's services (their arg). */
struct hp_call {
    struct hp *hp;
    struct sink_ctx *ctx;
    CURLM *multi;
    CURL *easy;
    struct curl_slist *headers;
    char *request;
    char body[HP_BODY_MAX + 1];
    size_t nbody;
    struct hp_sock sock[HP_MAXSOCK];
    sink_svc_id timer;
    int ended; /* freed or being freed */
};

/* ---- create ---- */

static int hp_verdict(const char *s, enum sink_verdict *v)
{
    static const char *const names[] = {"continue", "consumed", "reject",    "tempfail",
                                        "drop",     "discard",  "quarantine"};
    for (int i = 0; i < 7; i++)
        if (strcmp(s, names[i]) == 0) {
            *v = (enum sink_verdict)i;
            return 0;
        }
    return -1;
}

static int hp_create(const struct sink_props *p, void **inst, char *err, size_t errlen)
{
    const char *url = sink_props_get(p, "url");
    if (url == NULL || strncmp(url, "http", 4) != 0) {
        snprintf(err, errlen, "property \"url\": an http:// or https:// URL is required");
        return -EINVAL;
    }
    enum sink_verdict onerr = SINK_TEMPFAIL;
    const char *oe = sink_props_get(p, "on_error");
    if (oe != NULL && (hp_verdict(oe, &onerr) < 0 || onerr > SINK_REJECT || onerr == SINK_CONSUMED)) {
        snprintf(err, errlen, "property \"on_error\": \"%s\": tempfail, continue or reject", oe);
        return -EINVAL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "libcurl did not initialise");
        return -EIO;
    }
    struct hp *hp = calloc(1, sizeof(*hp));
    if (hp == NULL || (hp->url = strdup(url)) == NULL) {
        free(hp);
        return -ENOMEM;
    }
    hp->on_error = onerr;
    *inst = hp;
    return 0;
}

static void hp_destroy(void *inst)
{
    struct hp *hp = inst;
    free(hp->url);
    free(hp);
}

/* ---- JSON: what we send and the little we read ---- */

static void hp_json_str(char *out, size_t cap, size_t *n, const char *s)
{
    if (*n + 2 >= cap)
        return;
    out[(*n)++] = '"';
    for (; s != NULL && *s && *n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            *n += (size_t)snprintf(out + *n, cap - *n, "\\%c", c);
        else if (c < 0x20)
            *n += (size_t)snprintf(out + *n, cap - *n, "\\u%04x", c);
        else
            out[(*n)++] = (char)c;
    }
    out[(*n)++] = '"';
    out[*n] = '\0';
}

static char *hp_request(struct sink_ctx *ctx)
{
    size_t cap = 2048 + 260 * sink_rcpt_count(ctx), n = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    const char *keys[] = {"client", "helo", "sender", "rcpt"};
    const char *vals[] = {sink_client_addr(ctx), sink_helo(ctx), sink_sender(ctx),
                          sink_rcpt_current(ctx)};
    out[n++] = '{';
    for (int i = 0; i < 4; i++) {
        n += (size_t)snprintf(out + n, cap - n, "%s\"%s\":", i ? "," : "", keys[i]);
        hp_json_str(out, cap, &n, vals[i] ? vals[i] : "");
    }
    n += (size_t)snprintf(out + n, cap - n, ",\"rcpts\":[");
    for (size_t i = 0; i < sink_rcpt_count(ctx); i++) {
        if (i)
            out[n++] = ',';
        hp_json_str(out, cap, &n, sink_rcpt(ctx, i));
    }
    snprintf(out + n, cap - n, "]}");
    return out;
}

/* The string or number value of key in a flat JSON object, into out. */
static int hp_json_get(const char *json, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (p == NULL)
        return -1;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (*p++ != ':')
        return -1;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"' && n + 1 < cap; p++) {
            if (*p == '\\' && p[1])
                p++;
            out[n++] = *p;
        }
        if (*p != '"')
            return -1;
    } else {
        while ((*p >= '0' && *p <= '9') && n + 1 < cap)
            out[n++] = *p++;
        if (n == 0)
            return -1;
    }
    out[n] = '\0';
    return 0;
}

/* ---- the transfer ---- */

/* Connections (and resolved names) outlive a call: one share per worker
 * thread, so the next call on that worker reuses a kept-alive connection
 * instead of opening one (used by this thread only: no lock needed). */
static _Thread_local CURLSH *hp_share;

static CURLSH *hp_share_get(void)
{
    if (hp_share == NULL && (hp_share = curl_share_init()) != NULL) {
        curl_share_setopt(hp_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
        curl_share_setopt(hp_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    }
    return hp_share;
}

static void hp_free(struct hp_call *c)
{
    c->ended = 1;
    if (c->timer) {
        sink_svc_cancel(c->ctx, c->timer);
        c->timer = 0;
    }
    if (c->multi != NULL && c->easy != NULL)
        curl_multi_remove_handle(c->multi, c->easy); /* its sockets: CURL_POLL_REMOVE */
    for (int i = 0; i < HP_MAXSOCK; i++)
        if (c->sock[i].watch)
            sink_svc_cancel(c->ctx, c->sock[i].watch);
    if (c->easy != NULL)
        curl_easy_cleanup(c->easy);
    if (c->multi != NULL)
        curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->headers);
    free(c->request);
    free(c);
}

static void hp_finish(struct hp_call *c, CURLcode rc)
{
    struct sink_ctx *ctx = c->ctx;
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    enum sink_verdict v = c->hp->on_error;
    char verdict[32], code[8], enhanced[16], text[400];
    c->body[c->nbody] = '\0';
    if (rc == CURLE_OK && status == 200 && strchr(c->body, '{') != NULL) {
        v = SINK_CONTINUE;
        if (hp_json_get(c->body, "verdict", verdict, sizeof(verdict)) == 0 &&
            hp_verdict(verdict, &v) < 0)
            v = c->hp->on_error;
        if (hp_json_get(c->body, "code", code, sizeof(code)) == 0) {
            if (hp_json_get(c->body, "enhanced", enhanced, sizeof(enhanced)) < 0)
                enhanced[0] = '\0';
            if (hp_json_get(c->body, "text", text, sizeof(text)) < 0)
                snprintf(text, sizeof(text), "policy %s", verdict);
            sink_set_reply(ctx, atoi(code), enhanced[0] ? enhanced : NULL, text);
        }
    } else if (v != SINK_CONTINUE) {
        snprintf(text, sizeof(text), "policy service unavailable");
        sink_set_reply(ctx, v == SINK_REJECT ? 554 : 451, v == SINK_REJECT ? "5.7.1" : "4.7.1",
                       text);
    }
    hp_free(c);
    sink_complete(ctx, v);
}

/* After curl ran: a finished transfer ends the call. */
static void hp_check(struct hp_call *c)
{
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL)
        if (m->msg == CURLMSG_DONE) {
            hp_finish(c, m->data.result);
            return;
        }
}

static void hp_sock_arm(struct hp_call *c, struct hp_sock *s);

static void hp_on_fd(struct sink_ctx *ctx, void *arg, int fd, int status)
{
    struct hp_call *c = arg;
    (void)ctx;
    if (status == SINK_SVC_CANCELLED) { /* the call ended: the transfer goes with it */
        for (int i = 0; i < HP_MAXSOCK; i++)
            if (c->sock[i].fd == fd)
                c->sock[i].watch = 0;
        if (!c->ended)
            hp_free(c);
        return;
    }
    struct hp_sock *s = NULL;
    for (int i = 0; i < HP_MAXSOCK; i++)
        if (c->sock[i].fd == fd)
            s = &c->sock[i];
    if (s != NULL)
        s->watch = 0;
    int ev = ((status & SINK_FD_READ) ? CURL_CSELECT_IN : 0) |
             ((status & SINK_FD_WRITE) ? CURL_CSELECT_OUT : 0) |
             ((status & SINK_FD_ERROR) ? CURL_CSELECT_ERR : 0);
    int running;
    curl_multi_socket_action(c->multi, fd, ev, &running);
    /* curl may have let the socket go (CURL_POLL_REMOVE): look again */
    for (int i = 0; i < HP_MAXSOCK; i++)
        if (c->sock[i].fd == fd && c->sock[i].watch == 0)
            hp_sock_arm(c, &c->sock[i]);
    hp_check(c);
}

static void hp_sock_arm(struct hp_call *c, struct hp_sock *s)
{
    if (s->want == 0 || s->watch != 0)
        return;
    if (sink_fd_watch(c->ctx, s->fd, s->want, hp_on_fd, c, &s->watch) < 0)
        s->watch = 0; /* curl's own timeout ends the transfer */
}

static int hp_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy, (void)socketp;
    struct hp_call *c = userp;
    struct hp_sock *s = NULL, *free_slot = NULL;
    for (int i = 0; i < HP_MAXSOCK; i++) {
        if (c->sock[i].fd == fd)
            s = &c->sock[i];
        else if (c->sock[i].fd == CURL_SOCKET_BAD && free_slot == NULL)
            free_slot = &c->sock[i];
    }
    unsigned want = what == CURL_POLL_IN    ? SINK_FD_READ
                    : what == CURL_POLL_OUT ? SINK_FD_WRITE
                    : what == CURL_POLL_INOUT ? SINK_FD_READ | SINK_FD_WRITE
                                              : 0;
    if (s == NULL) {
        if (want == 0 || (s = free_slot) == NULL)
            return 0;
        s->fd = fd;
        s->watch = 0;
    }
    if (s->watch != 0 && s->want != want) { /* armed for something else */
        sink_svc_cancel(c->ctx, s->watch);
        s->watch = 0;
    }
    s->want = want;
    if (want == 0) {
        if (s->watch != 0)
            sink_svc_cancel(c->ctx, s->watch);
        s->fd = CURL_SOCKET_BAD;
        s->watch = 0;
        return 0;
    }
    if (!c->ended)
        hp_sock_arm(c, s);
    return 0;
}

static void hp_on_timer(struct sink_ctx *ctx, void *arg, int status)
{
    struct hp_call *c = arg;
    (void)ctx;
    c->timer = 0;
    if (status == SINK_SVC_CANCELLED) {
        if (!c->ended)
            hp_free(c);
        return;
    }
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    hp_check(c);
}

static int hp_timer_cb(CURLM *multi, long ms, void *userp)
{
    (void)multi;
    struct hp_call *c = userp;
    if (c->timer) {
        sink_svc_cancel(c->ctx, c->timer);
        c->timer = 0;
    }
    if (ms >= 0 && !c->ended)
        sink_timer_start(c->ctx, (uint64_t)ms, hp_on_timer, c, &c->timer);
    return 0;
}

static size_t hp_write_cb(char *p, size_t size, size_t n, void *userp)
{
    struct hp_call *c = userp;
    size_t len = size * n, room = HP_BODY_MAX - c->nbody;
    memcpy(c->body + c->nbody, p, len < room ? len : room);
    c->nbody += len < room ? len : room;
    return len;
}

static enum sink_verdict hp_handle(void *inst, struct sink_ctx *ctx)
{
    struct hp *hp = inst;
    struct hp_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return hp->on_error;
    c->hp = hp;
    c->ctx = ctx;
    for (int i = 0; i < HP_MAXSOCK; i++)
        c->sock[i].fd = CURL_SOCKET_BAD;
    c->request = hp_request(ctx);
    c->multi = curl_multi_init();
    c->easy = curl_easy_init();
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (c->request == NULL || c->multi == NULL || c->easy == NULL || c->headers == NULL) {
        hp_free(c);
        return hp->on_error;
    }
    curl_easy_setopt(c->easy, CURLOPT_URL, hp->url);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->request);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, hp_write_cb);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    if (hp_share_get() != NULL)
        curl_easy_setopt(c->easy, CURLOPT_SHARE, hp_share);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)sink_time_left_ms(ctx) + 100);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, hp_socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, hp_timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK) { /* arms the timer */
        hp_free(c);
        return hp->on_error;
    }
    return SINK_PENDING;
}

static const struct sink_module hp_module = {
    SINK_MODULE_HEAD,
    .name = "http_policy",
    .events = SINK_EVMASK(SINK_EV_RCPT),
    .create = hp_create,
    .destroy = hp_destroy,
    .handle = hp_handle,
};
SINK_MODULE(hp_module)
