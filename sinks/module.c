/*
 * NAME
 *	module - finding a binding's sink and creating its instance
 * SYNOPSIS
 *	#include "sinks/sink_int.h"
 *
 *	bool sink_binding_load(struct sink_binding *b, char *err, size_t errlen);
 * DESCRIPTION
 *	`builtin:NAME` looks NAME up in the builtin table, then among the
 *	modules given to sink_builtin_register() (tests register theirs
 *	there; not thread-safe: call it before creating engines).  Anything else is
 *	the path of a shared object: dlopen(RTLD_NOW | RTLD_LOCAL), so a
 *	module with an unresolved symbol fails here and not at its first
 *	event, and modules cannot see each other's symbols.  Its one export,
 *	SINK_ENTRY_SYMBOL, returns the module description, which is refused
 *	unless abi_version is SINK_ABI_VERSION, it has a handle function, and
 *	its events mask contains the binding's event.  Then create() makes
 *	the binding's instance with its properties.
 *
 *	The module's sink_* calls resolve against the daemon's exported
 *	symbols (sluiced is linked with ENABLE_EXPORTS and the whole
 *	sluice_sinks archive).
 * DIAGNOSTICS
 *	false with one line in err, without the binding prefix (the engine
 *	adds it): "sink ./x.so: built for sink ABI 2, this sluiced has 1".
 */
#include "sinks/sink_int.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* In name order: sink_builtin_names() lists them as they are here. */
static const struct sink_module *const sink_builtins[] = {
    &sink_builtin_access, &sink_builtin_alias, &sink_builtin_command, &sink_builtin_delay,
    &sink_builtin_header, &sink_builtin_noop,  &sink_builtin_route,
};
#define SINK_NBUILTIN (sizeof(sink_builtins) / sizeof(sink_builtins[0]))

/* Registered by tests (and embedders) before any engine is created. */
#define SINK_EXTRA_MAX 16
static const struct sink_module *sink_extra[SINK_EXTRA_MAX];
static unsigned sink_nextra;

int sink_builtin_register(const struct sink_module *m)
{
    if (m == NULL || m->name == NULL)
        return -EINVAL;
    if (sink_builtin_find(m->name) != NULL)
        return -EEXIST;
    if (sink_nextra == SINK_EXTRA_MAX)
        return -ENOSPC;
    sink_extra[sink_nextra++] = m;
    return 0;
}

const struct sink_module *sink_builtin_find(const char *name)
{
    for (size_t i = 0; i < SINK_NBUILTIN; i++)
        if (strcmp(sink_builtins[i]->name, name) == 0)
            return sink_builtins[i];
    for (unsigned i = 0; i < sink_nextra; i++)
        if (strcmp(sink_extra[i]->name, name) == 0)
            return sink_extra[i];
    return NULL;
}

/* Built once from the table, so it cannot fall behind it. */
static char sink_names[256];
static pthread_once_t sink_names_once = PTHREAD_ONCE_INIT;

static void sink_names_build(void)
{
    size_t n = 0;
    for (size_t i = 0; i < SINK_NBUILTIN && n < sizeof(sink_names); i++) {
        int w = snprintf(sink_names + n, sizeof(sink_names) - n, "%s%s", i ? ", " : "",
                         sink_builtins[i]->name);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

const char *sink_builtin_names(void)
{
    pthread_once(&sink_names_once, sink_names_build);
    return sink_names;
}

/* "mail, eod" for a message about what a module handles. */
static void sink_events_list(uint64_t mask, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int ev = 0; ev < SINK_EV_COUNT && n < len; ev++) {
        if (!(mask & SINK_EVMASK(ev)))
            continue;
        int w = snprintf(buf + n, len - n, "%s%s", n ? ", " : "", sink_event_name(ev));
        if (w < 0)
            break;
        n += (size_t)w;
    }
    if (buf[0] == '\0')
        snprintf(buf, len, "none");
}

static const struct sink_module *sink_module_open(struct sink_binding *b, char *err, size_t errlen)
{
    dlerror();
    b->dl = dlopen(b->sink, RTLD_NOW | RTLD_LOCAL);
    if (b->dl == NULL) {
        const char *why = dlerror();
        snprintf(err, errlen, "sink %s: cannot load: %s", b->sink, why ? why : "dlopen failed");
        return NULL;
    }
    void *sym = dlsym(b->dl, SINK_ENTRY_SYMBOL);
    if (sym == NULL) {
        snprintf(err, errlen, "sink %s: no %s symbol: not a sluice sink module", b->sink,
                 SINK_ENTRY_SYMBOL);
        return NULL;
    }
    sink_entry_fn *entry;
    memcpy(&entry, &sym, sizeof(entry)); /* POSIX: a dlsym'd function pointer */
    const struct sink_module *m = entry();
    if (m == NULL)
        snprintf(err, errlen, "sink %s: %s() returned NULL", b->sink, SINK_ENTRY_SYMBOL);
    return m;
}

bool sink_binding_load(struct sink_binding *b, char *err, size_t errlen)
{
    const struct sink_module *m;
    if (b->bridge) {
        m = &sink_builtin_milter;
    } else if (strncmp(b->sink, "builtin:", 8) == 0) {
        m = sink_builtin_find(b->sink + 8);
        if (m == NULL) {
            snprintf(err, errlen, "sink %s: no such builtin sink (builtins: %s)", b->sink,
                     sink_builtin_names());
            return false;
        }
    } else if ((m = sink_module_open(b, err, errlen)) == NULL) {
        return false;
    }
    if (m->abi_version != SINK_ABI_VERSION) {
        snprintf(err, errlen, "sink %s: built for sink ABI %u, this sluiced has %u", b->sink,
                 (unsigned)m->abi_version, (unsigned)SINK_ABI_VERSION);
        return false;
    }
    const char *mname = m->name ? m->name : "?";
    if (m->handle == NULL) {
        snprintf(err, errlen, "sink %s (module \"%s\"): no handle function", b->sink, mname);
        return false;
    }
    if ((m->events & b->events) != b->events) {
        char evs[256];
        sink_events_list(m->events, evs, sizeof(evs));
        snprintf(err, errlen,
                 "sink %s (module \"%s\") does not handle event \"%s\" (it handles: %s)", b->sink,
                 mname, sink_event_name(b->ev), evs);
        return false;
    }
    b->mod = m;
    if (m->create != NULL) {
        char cerr[256] = "";
        /* a bridge's create() finds the milter's address as the property
         * "address" of a copy (the binding's own properties stay as written) */
        struct sink_props *cp = b->bridge ? sink_props_new() : NULL;
        for (size_t i = 0; cp != NULL && i < b->props->n; i++)
            if (sink_props_add(cp, b->props->key[i], b->props->val[i]) < 0)
                break;
        if (b->bridge && (cp == NULL || sink_props_add(cp, "address", b->sink + 7) < 0)) {
            sink_props_free(cp);
            snprintf(err, errlen, "sink %s: out of memory", b->sink);
            return false;
        }
        int rc = m->create(cp ? cp : b->props, &b->inst, cerr, sizeof(cerr));
        sink_props_free(cp);
        if (rc != 0) {
            snprintf(err, errlen, "sink %s (module \"%s\"): create failed: %s", b->sink, mname,
                     cerr[0] ? cerr : strerror(rc < 0 ? -rc : rc));
            return false;
        }
    }
    b->created = true;
    return true;
}
