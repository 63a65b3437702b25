/*
 * NAME
 *	milter - the milter bridge: a binding whose sink is a milter
 * SYNOPSIS
 *	binding "dkim" {
 *	    sink = "milter:inet:127.0.0.1:8891";   # or "milter:unix:/run/x.sock"
 *	    deadline = 5s; on_deadline = tempfail;
 *	    properties { on_error = "tempfail"; }   # or "continue", "reject"
 *	}
 * DESCRIPTION
 *	A binding with a milter: sink names no event: binding.c links it into
 *	the chains of connect, helo, mail, rcpt, data, eod and disconnect
 *	(sink_int.h: a bridge).  Each SMTP session gets its own connection
 *	to the milter, opened without blocking at the session's first event
 *	on the session's worker (sink_fd_watch), negotiated (milter_sess.c),
 *	and then driven step by step: every event writes its packets and
 *	waits for the milter's answer through fd watches, and the call
 *	completes with the verdict the answer maps to.  disconnect sends
 *	QUIT and closes.  A session's state is found by its session property
 *	bag (one per session, alive until after disconnect), in a small map
 *	under a mutex (instances serve every worker).
 *
 *	Failure policy, as Postfix's milter_default_action: a milter that
 *	cannot be reached, closes, breaks the protocol or misses a deadline
 *	is dropped for the rest of the session, and every later event of the
 *	session answers on_error (default tempfail; continue skips the
 *	milter; reject).  The event whose deadline passed answers the
 *	binding's on_deadline.
 *
 *	Edits at end of message: added, inserted and changed header fields
 *	go through sink_header_add/change/remove (milter_sess.c says which
 *	forms translate).  Offered actions: add and change headers,
 *	quarantine, setsymlist; recipient changes, sender change and body
 *	replacement are not offered (sluice has no edit for them yet at
 *	eod), so a milter that needs them fails negotiation, which is
 *	on_error.
 * DIAGNOSTICS
 *	create() refuses an address that is not inet:HOST:PORT (or
 *	inet6:, or HOST:PORT) or unix:/PATH, and a bad on_error.  At run
 *	time every failure is one warning naming the binding, the session's
 *	client and the reason.
 */
#include "sinks/milter_sess.h"
#include "sinks/sink_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/base/log.h"

#define MB_ACTIONS (MILTER_F_ADDHDRS | MILTER_F_CHGHDRS | MILTER_F_QUARANTINE | MILTER_F_SETSYMLIST)

struct mb {
    struct sockaddr_storage sa;
    socklen_t salen;
    enum sink_verdict on_error;
    char host[256]; /* the j macro */
    _Atomic uint32_t last_proto; /* the steps negotiated last (for --bindings) */
    _Atomic bool negotiated_once;
    /* sessions: key (the session bag) -> state; any worker, under mu */
    pthread_mutex_t mu;
    struct mb_ent {
        const void *key;
        struct ms *m;
    } *ent;
    size_t nent, capent;
};

/* One session's milter connection: its worker only. */
struct ms {
    struct mb *mb;
    const void *key;
    int fd;
    bool connecting, dead;
    struct milter_sess *s;
    struct sink_ctx *ctx; /* the call being served, NULL between calls */
    enum milter_step step;
    struct sink_msgref *ref; /* eod: the message */
    /* inside handle(): an answer found at once is returned, not completed */
    bool in_handle, sync_done;
    enum sink_verdict sync_v;
    char idbuf[24], tlsver[64];
};

/* ---- the session map ---- */

static struct ms *mb_find(struct mb *mb, const void *key, bool take)
{
    struct ms *m = NULL;
    pthread_mutex_lock(&mb->mu);
    for (size_t i = 0; i < mb->nent; i++) {
        if (mb->ent[i].key == key) {
            m = mb->ent[i].m;
            if (take)
                mb->ent[i] = mb->ent[--mb->nent];
            break;
        }
    }
    pthread_mutex_unlock(&mb->mu);
    return m;
}

static bool mb_put(struct mb *mb, struct ms *m)
{
    bool ok = true;
    pthread_mutex_lock(&mb->mu);
    if (mb->nent == mb->capent) {
        size_t nc = mb->capent ? mb->capent * 2 : 16;
        void *nv = realloc(mb->ent, nc * sizeof(*mb->ent));
        if (nv == NULL)
            ok = false;
        else {
            mb->ent = nv;
            mb->capent = nc;
        }
    }
    if (ok)
        mb->ent[mb->nent++] = (struct mb_ent){m->key, m};
    pthread_mutex_unlock(&mb->mu);
    return ok;
}

static void ms_close(struct ms *m)
{
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    if (m->ref != NULL)
        sink_msgref_release(m->ref);
    m->ref = NULL;
}

static void ms_free(struct ms *m)
{
    if (m == NULL)
        return;
    ms_close(m);
    milter_sess_free(m->s);
    free(m);
}

/* ---- the MTA's side of the session machine ---- */

static const char *ms_macro(void *arg, const char *name)
{
    struct ms *m = arg;
    struct sink_ctx *ctx = m->ctx;
    if (ctx == NULL)
        return NULL;
    if (strcmp(name, "j") == 0)
        return m->mb->host;
    if (strcmp(name, "daemon_name") == 0)
        return "sluiced";
    if (strcmp(name, "v") == 0)
        return "sluice";
    if (strcmp(name, "client_addr") == 0)
        return sink_client_addr(ctx);
    if (strcmp(name, "i") == 0) {
        uint64_t id = sink_message_id(ctx);
        if (id == 0)
            return NULL;
        snprintf(m->idbuf, sizeof(m->idbuf), "%016llx", (unsigned long long)id);
        return m->idbuf;
    }
    if (strcmp(name, "auth_authen") == 0)
        return sink_auth_user(ctx);
    if (strcmp(name, "tls_version") == 0 || strcmp(name, "cipher") == 0) {
        const char *t = sink_tls(ctx); /* "TLSv1.3 CIPHER ..." */
        if (t == NULL)
            return NULL;
        if (strcmp(name, "cipher") == 0)
            t = strchr(t, ' ') ? strchr(t, ' ') + 1 : t;
        size_t n = strcspn(t, " ");
        if (n >= sizeof(m->tlsver))
            n = sizeof(m->tlsver) - 1;
        memcpy(m->tlsver, t, n);
        m->tlsver[n] = '\0';
        return m->tlsver;
    }
    if (strcmp(name, "mail_addr") == 0)
        return sink_sender(ctx);
    if (strcmp(name, "rcpt_addr") == 0)
        return sink_rcpt_current(ctx);
    if (strcmp(name, "mail_mailer") == 0 || strcmp(name, "rcpt_mailer") == 0)
        return "smtp";
    return NULL;
}

static ssize_t ms_read(void *arg, uint64_t off, void *buf, size_t len)
{
    struct ms *m = arg;
    if (m->ref == NULL)
        return -EIO;
    return sink_msgref_read(m->ref, off, buf, len);
}

/* A milter's value as one line: sluice's header edits are unfolded
 * (sink_header_add refuses CR/LF), so a line break before white space
 * goes and any other becomes a space; with SMFIP_HDR_LEADSPC the value
 * carries its own space after the colon, which the edit writes itself. */
static char *ms_unfold(const struct ms *m, const char *v)
{
    if ((m->s->proto & MILTER_P_HDR_LEADSPC) && *v == ' ')
        v++;
    char *o = malloc(strlen(v) + 1), *w = o;
    if (o == NULL)
        return NULL;
    for (; *v != '\0'; v++) {
        if (*v == '\r' || *v == '\n') {
            size_t n = (v[0] == '\r' && v[1] == '\n') ? 2 : 1;
            if (v[n] != ' ' && v[n] != '\t')
                *w++ = ' ';
            v += n - 1;
            continue;
        }
        *w++ = *v;
    }
    *w = '\0';
    return o;
}

static int ms_edit(void *arg, enum milter_edit_op op, const char *name, const char *value)
{
    struct ms *m = arg;
    int rc = -ENOTSUP;
    char *flat = NULL;
    if (op == MILTER_E_ADD || op == MILTER_E_CHANGE) {
        if ((flat = ms_unfold(m, value)) == NULL)
            return -ENOMEM;
        value = flat;
    }
    switch (op) {
    case MILTER_E_ADD:
        rc = sink_header_add(m->ctx, name, value);
        break;
    case MILTER_E_CHANGE:
        rc = sink_header_change(m->ctx, name, value);
        break;
    case MILTER_E_REMOVE:
        rc = sink_header_remove(m->ctx, name);
        break;
    case MILTER_E_UNSUPPORTED:
        log_msg(LOG_WARN, "milter %s: %s: %s: not applied", sink_binding_name(m->ctx),
                sink_client_addr(m->ctx), value);
        return -ENOTSUP;
    }
    if (rc < 0)
        log_msg(LOG_WARN, "milter %s: %s: header %s: %s", sink_binding_name(m->ctx),
                sink_client_addr(m->ctx), name, strerror(-rc));
    free(flat);
    return rc;
}

/* ---- driving one call ---- */

static void ms_run(struct ms *m);

static void ms_finish(struct ms *m, enum sink_verdict v)
{
    struct sink_ctx *ctx = m->ctx;
    m->ctx = NULL;
    if (m->ref != NULL) {
        sink_msgref_release(m->ref);
        m->ref = NULL;
    }
    if (m->in_handle) {
        m->sync_done = true;
        m->sync_v = v;
    } else {
        sink_complete(ctx, v);
    }
}

static void ms_fail(struct ms *m, const char *why)
{
    log_msg(LOG_WARN, "milter %s: %s: %s at %s: on_error %s", sink_binding_name(m->ctx),
            sink_client_addr(m->ctx), why, milter_step_name(m->step),
            sink_verdict_name(m->mb->on_error));
    m->dead = true;
    ms_close(m);
    ms_finish(m, m->mb->on_error);
}

static void ms_ready(struct sink_ctx *ctx, void *arg, int fd, int status)
{
    struct ms *m = arg;
    (void)fd;
    (void)ctx;
    if (status == SINK_SVC_CANCELLED) {
        /* the call ended without us (deadline, client gone): the milter's
         * answer may still come, so the connection is no good any more */
        m->ctx = NULL;
        m->dead = true;
        ms_close(m);
        return;
    }
    ms_run(m);
}

static void ms_wait(struct ms *m, unsigned what)
{
    int rc = sink_fd_watch(m->ctx, m->fd, what, ms_ready, m, NULL);
    if (rc < 0)
        ms_fail(m, strerror(-rc));
}

/* The step's input, from the event. */
static void ms_start_step(struct ms *m)
{
    struct sink_ctx *ctx = m->ctx;
    struct milter_step_in in = {0};
    char host[80];
    const char *ca = sink_client_addr(ctx);
    switch (m->step) {
    case MILTER_S_CONNECT:
        snprintf(host, sizeof(host), "[%s]", ca ? ca : "");
        in.host = host; /* copied into the packet by the first pump */
        in.family = ca == NULL ? 'U' : strchr(ca, ':') ? '6' : '4';
        in.addr = ca;
        break;
    case MILTER_S_HELO:
        in.helo = sink_helo(ctx);
        break;
    case MILTER_S_MAIL:
        in.addr = sink_sender(ctx);
        in.params = sink_mail_params(ctx);
        break;
    case MILTER_S_RCPT:
        in.addr = sink_rcpt_current(ctx);
        break;
    case MILTER_S_EOM:
        if ((m->ref = sink_message_hold(ctx)) == NULL) {
            ms_fail(m, "the message cannot be read");
            return;
        }
        break;
    default:
        break;
    }
    milter_sess_start(m->s, m->step, &in);
    if (m->step == MILTER_S_CONNECT) /* the host name lives on this stack */
        (void)milter_sess_pump(m->s);
}

static void ms_run(struct ms *m)
{
    struct milter_sess *s = m->s;
    if (m->connecting) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(m->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err != 0) {
            ms_fail(m, strerror(err));
            return;
        }
        m->connecting = false;
    }
    for (int turns = 0; turns < 1 << 20; turns++) {
        int st = milter_sess_pump(s);
        if (st == MILTER_FAIL) {
            ms_fail(m, s->why);
            return;
        }
        while (milter_buf_left(&s->out) > 0) {
            ssize_t n = send(m->fd, s->out.p + s->out.off, milter_buf_left(&s->out),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                ms_wait(m, SINK_FD_WRITE);
                return;
            }
            if (n < 0) {
                ms_fail(m, strerror(errno));
                return;
            }
            s->out.off += (size_t)n;
        }
        milter_buf_compact(&s->out);
        if (st == MILTER_DONE) {
            if (s->step == MILTER_S_OPTNEG) { /* negotiated: now the event's own step */
                atomic_store_explicit(&m->mb->last_proto, s->proto, memory_order_relaxed);
                atomic_store_explicit(&m->mb->negotiated_once, true, memory_order_relaxed);
                ms_start_step(m);
                if (m->ctx == NULL)
                    return;
                continue;
            }
            struct milter_result *r = &s->res;
            if (r->code != 0)
                sink_set_reply(m->ctx, r->code, r->enhanced[0] ? r->enhanced : NULL, r->text);
            if (s->why[0] != '\0' && r->verdict == SINK_TEMPFAIL && s->conn_done) {
                m->dead = true; /* shutdown / conn_fail: no more of this session */
                ms_close(m);
            }
            ms_finish(m, r->verdict);
            return;
        }
        /* a reply is awaited: what was read already first */
        st = milter_sess_input(s);
        if (st == MILTER_FAIL) {
            ms_fail(m, s->why);
            return;
        }
        if (st == MILTER_WAIT && s->waiting) {
            unsigned char buf[16384];
            ssize_t n = recv(m->fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                ms_wait(m, SINK_FD_READ);
                return;
            }
            if (n <= 0) {
                ms_fail(m, n == 0 ? "the milter closed the connection" : strerror(errno));
                return;
            }
            if (milter_buf_append(&s->in, buf, (size_t)n) < 0) {
                ms_fail(m, "out of memory");
                return;
            }
        }
    }
    ms_fail(m, "the milter keeps talking"); /* bounded: never reached in practice */
}

/* A non-blocking connection to the milter. */
static int ms_connect(struct ms *m)
{
    int fd = socket(m->mb->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (m->mb->sa.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (connect(fd, (const struct sockaddr *)&m->mb->sa, m->mb->salen) < 0 &&
        errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    m->fd = fd;
    m->connecting = true;
    return 0;
}

static enum milter_step mb_step(enum sink_event ev)
{
    switch (ev) {
    case SINK_EV_CONNECT: return MILTER_S_CONNECT;
    case SINK_EV_HELO: return MILTER_S_HELO;
    case SINK_EV_MAIL: return MILTER_S_MAIL;
    case SINK_EV_RCPT: return MILTER_S_RCPT;
    case SINK_EV_DATA: return MILTER_S_DATA;
    case SINK_EV_EOD: return MILTER_S_EOM;
    default: return MILTER_S_QUIT;
    }
}

static void mb_quit(struct ms *m)
{
    if (m->fd >= 0 && !m->dead && !m->connecting && m->s->negotiated) {
        milter_sess_start(m->s, MILTER_S_QUIT, NULL);
        (void)milter_sess_pump(m->s);
        /* best effort: the milter also takes a closed connection as quit */
        (void)send(m->fd, m->s->out.p + m->s->out.off, milter_buf_left(&m->s->out),
                   MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    ms_free(m);
}

static enum sink_verdict mb_handle(void *inst, struct sink_ctx *ctx)
{
    struct mb *mb = inst;
    enum sink_event ev = sink_event(ctx);
    const void *key = ctx->d != NULL ? (const void *)ctx->d->session_bag : NULL;
    if (key == NULL)
        return mb->on_error;
    if (ev == SINK_EV_DISCONNECT) {
        mb_quit(mb_find(mb, key, true));
        return SINK_CONTINUE;
    }
    struct ms *m = mb_find(mb, key, false);
    if (m != NULL && ev == SINK_EV_CONNECT) { /* a session before this one left it */
        mb_quit(mb_find(mb, key, true));
        m = NULL;
    }
    if (m == NULL) {
        struct milter_sess_cfg cfg = {
            .actions = MB_ACTIONS,
            .proto = MILTER_PROTO_OFFER,
            .skip_first_header = true,
            .macro = ms_macro,
            .read = ms_read,
            .edit = ms_edit,
        };
        if ((m = calloc(1, sizeof(*m))) == NULL)
            return mb->on_error;
        m->fd = -1;
        m->mb = mb;
        m->key = key;
        cfg.arg = m;
        if ((m->s = milter_sess_new(&cfg)) == NULL || !mb_put(mb, m)) {
            ms_free(m);
            return mb->on_error;
        }
        int rc = ms_connect(m);
        if (rc < 0) {
            log_msg(LOG_WARN, "milter %s: %s: connect: %s: on_error %s", sink_binding_name(ctx),
                    sink_client_addr(ctx), strerror(-rc), sink_verdict_name(mb->on_error));
            m->dead = true;
        }
    }
    if (m->dead || m->ctx != NULL)
        return mb->on_error;
    m->ctx = ctx;
    m->step = mb_step(ev);
    m->in_handle = true;
    m->sync_done = false;
    if (!m->s->negotiated) {
        milter_sess_start(m->s, MILTER_S_OPTNEG, NULL);
        if (m->connecting)
            ms_wait(m, SINK_FD_WRITE);
        else
            ms_run(m);
    } else {
        ms_start_step(m);
        if (m->ctx != NULL)
            ms_run(m);
    }
    m->in_handle = false;
    return m->sync_done ? m->sync_v : SINK_PENDING;
}

/* ---- create ---- */

static int mb_addr(struct mb *mb, const char *a, char *err, size_t errlen)
{
    memset(&mb->sa, 0, sizeof(mb->sa));
    if (strncmp(a, "unix:", 5) == 0 || a[0] == '/') {
        const char *path = a[0] == '/' ? a : a + 5;
        struct sockaddr_un *un = (struct sockaddr_un *)&mb->sa;
        if (strlen(path) >= sizeof(un->sun_path) || path[0] == '\0') {
            snprintf(err, errlen, "milter address \"%s\": bad socket path", a);
            return -EINVAL;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        mb->salen = sizeof(*un);
        return 0;
    }
    if (strncmp(a, "inet:", 5) == 0)
        a += 5;
    else if (strncmp(a, "inet6:", 6) == 0)
        a += 6;
    char host[256];
    const char *colon = strrchr(a, ':');
    if (colon == NULL || colon == a || (size_t)(colon - a) >= sizeof(host) || colon[1] == '\0') {
        snprintf(err, errlen, "milter address \"%s\": want inet:HOST:PORT or unix:/PATH", a);
        return -EINVAL;
    }
    memcpy(host, a, (size_t)(colon - a));
    host[colon - a] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "milter address \"%s\": %s", a, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(&mb->sa, res->ai_addr, res->ai_addrlen);
    mb->salen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int mb_create(const struct sink_props *props, void **instance, char *err, size_t errlen)
{
    const char *a = sink_props_get(props, "address");
    const char *oe = sink_props_get(props, "on_error");
    if (a == NULL) {
        snprintf(err, errlen, "no milter address");
        return -EINVAL;
    }
    struct mb *mb = calloc(1, sizeof(*mb));
    if (mb == NULL)
        return -ENOMEM;
    mb->on_error = SINK_TEMPFAIL;
    if (oe != NULL && strcasecmp(oe, "continue") == 0)
        mb->on_error = SINK_CONTINUE;
    else if (oe != NULL && strcasecmp(oe, "reject") == 0)
        mb->on_error = SINK_REJECT;
    else if (oe != NULL && strcasecmp(oe, "tempfail") != 0) {
        snprintf(err, errlen, "on_error must be \"tempfail\", \"continue\" or \"reject\"");
        free(mb);
        return -EINVAL;
    }
    int rc = mb_addr(mb, a, err, errlen);
    if (rc < 0) {
        free(mb);
        return rc;
    }
    const char *j = sink_props_get(props, "myhostname");
    if (j != NULL)
        snprintf(mb->host, sizeof(mb->host), "%s", j);
    else if (gethostname(mb->host, sizeof(mb->host) - 1) < 0)
        snprintf(mb->host, sizeof(mb->host), "localhost");
    pthread_mutex_init(&mb->mu, NULL);
    *instance = mb;
    return 0;
}

static void mb_destroy(void *inst)
{
    struct mb *mb = inst;
    for (size_t i = 0; i < mb->nent; i++) /* sessions that never said goodbye */
        ms_free(mb->ent[i].m);
    free(mb->ent);
    pthread_mutex_destroy(&mb->mu);
    free(mb);
}

void sink_milter_describe(const void *inst, char *buf, size_t len)
{
    const struct mb *mb = inst;
    if (!atomic_load_explicit(&mb->negotiated_once, memory_order_relaxed)) {
        snprintf(buf, len, "not negotiated yet (all it may take: connect helo mail rcpt data "
                           "header eoh body eom)");
        return;
    }
    struct milter_sess s = {0};
    s.proto = atomic_load_explicit(&mb->last_proto, memory_order_relaxed);
    milter_sess_steps(&s, buf, len);
}

const struct sink_module sink_builtin_milter = {
    SINK_MODULE_HEAD,
    .name = "milter",
    .events = SINK_EVMASK(SINK_EV_CONNECT) | SINK_EVMASK(SINK_EV_HELO) |
              SINK_EVMASK(SINK_EV_MAIL) | SINK_EVMASK(SINK_EV_RCPT) | SINK_EVMASK(SINK_EV_DATA) |
              SINK_EVMASK(SINK_EV_EOD) | SINK_EVMASK(SINK_EV_DISCONNECT),
    .create = mb_create,
    .destroy = mb_destroy,
    .handle = mb_handle,
};
