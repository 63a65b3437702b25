/*
 * NAME
 *	module - finding a binding's sink and creating its instance
 * SYNOPSIS
 *	#include "sinks/sink_int.h"
 *
 *	bool sink_binding_load(struct sink_binding *b, char *err, size_t errlen);
 *	void sink_module_close(struct sink_binding *b);
 * DESCRIPTION
 *	`lua:PATH` is a Lua file (lua_sink.c): its create reads and checks
 *	the file, whose `events` must list the binding's event.
 *	`builtin:NAME` looks NAME up in the builtin table, then among the
 *	modules given to sink_builtin_register() (tests register theirs
 *	there; not thread-safe: call it before creating engines).  Anything
 *	else is the path of a shared object, opened with dlopen(RTLD_NOW |
 *	RTLD_LOCAL), so a module with an unresolved symbol fails here and not
 *	at its first event, and modules cannot see each other's symbols.
 *
 *	A fresh copy per load: the loader caches objects by path (and by
 *	inode), so dlopen() of a path it has open returns the old code even
 *	after the file was rebuilt.  A path with a slash is therefore copied
 *	into an anonymous memory file (memfd_create) and loaded as
 *	/proc/self/fd/N: every load (start, live setprop, add, enable,
 *	reload) runs the file as it is now.  The descriptor stays open while
 *	the object is loaded, so its name is never reused for another; an
 *	object the loader keeps after dlclose() (RTLD_NODELETE, C++ unique
 *	symbols) keeps its descriptor for good.  Without memfd or /proc the
 *	path itself is loaded (a rebuilt file then needs a restart; logged).
 *	A bare name ("libx.so") goes through the loader's search as is.
 *	$ORIGIN in a module's RUNPATH means /proc/self/fd for a copy: give
 *	dependencies by absolute path.
 *
 *	The module's one export, SINK_ENTRY_SYMBOL, returns its descriptor.
 *	Versions (sink.h): abi_version is major << 16 | minor; a module of
 *	this major and a minor up to ours loads, anything else is refused
 *	with both versions named (a descriptor of ABI 1 had no size and
 *	shows as "1").  The descriptor is copied into the binding (mod_copy):
 *	size bytes of it, the rest zero, so a field a module's older sink.h
 *	did not have reads as NULL.  It must reach at least `handle`.  Then
 *	it needs a handle function and its events mask must contain the
 *	binding's event; then create() makes the binding's instance.
 *
 *	The module's sink_* calls resolve against the daemon's exported
 *	symbols: sluiced exports exactly the sink_* functions of sink.h
 *	(sinks/sink.dynlist), so a module's own function called like an
 *	internal one of sluiced stays its own.
 * DIAGNOSTICS
 *	false with one line in err, without the binding prefix (the engine
 *	adds it): "sink ./x.so: built for sink ABI 2.1, this sluiced has
 *	2.0 (rebuild the module against this sluiced's <sluice/sink.h>)".
 */
#include "sinks/sink_int.h"

#include "sinks/lua_int.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/log.h"

/* The descriptor's fields through `handle`: what every module must have. */
#define SINK_MODULE_MIN_SIZE (offsetof(struct sink_module, handle) + sizeof(void (*)(void)))

/* Every mask of events in the ABI and in the engine holds every event. */
_Static_assert(SINK_EV_COUNT <= 64, "struct sink_module.events is a uint64_t");
_Static_assert(SINK_EV_COUNT <= 8 * sizeof(((struct sink_engine *)0)->bound),
               "struct sink_engine.bound has a bit per event");
_Static_assert(SINK_ABI_MINOR <= 0xffff && SINK_ABI_MAJOR <= 0xffff, "16 bits each");

/* In name order: sink_builtin_names() lists them as they are here. */
static const struct sink_module *const sink_builtins[] = {
    &sink_builtin_access, &sink_builtin_alias, &sink_builtin_command, &sink_builtin_delay,
    &sink_builtin_dkim_sign, &sink_builtin_header, &sink_builtin_noop, &sink_builtin_route,
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

/* path copied into an anonymous memory file, open on *fd; false (errno
 * set, nothing open) when that cannot be done here. */
static bool sink_module_copy(const char *path, int *fd)
{
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return false;
    struct stat st;
    const char *base = strrchr(path, '/');
    int out = -1;
    if (fstat(in, &st) < 0)
        ; /* errno says why */
    else if (!S_ISREG(st.st_mode))
        errno = EISDIR; /* a directory or a device: "Is a directory" is near enough */
    else
        out = memfd_create(base ? base + 1 : path, MFD_CLOEXEC);
    off_t off = 0;
    while (out >= 0 && off < st.st_size) {
        ssize_t n = sendfile(out, in, &off, (size_t)(st.st_size - off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(out);
            out = -1;
        }
    }
    int e = errno;
    close(in);
    errno = e;
    if (out < 0)
        return false;
    *fd = out;
    return true;
}

/* "/proc/self/fd/7: undefined symbol: x" -> "undefined symbol: x" */
static const char *sink_dl_why(const char *why, const char *proc)
{
    if (why == NULL)
        return "dlopen failed";
    size_t n = strlen(proc);
    return n > 0 && strncmp(why, proc, n) == 0 && strncmp(why + n, ": ", 2) == 0 ? why + n + 2
                                                                                 : why;
}

void sink_module_close(struct sink_binding *b)
{
    if (b->dl != NULL)
        dlclose(b->dl);
    b->dl = NULL;
    if (!b->dl_copy)
        return;
    b->dl_copy = false;
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", b->dl_fd);
    void *still = dlopen(proc, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (still != NULL) {
        /* kept by the loader: its name must not come back (see above) */
        dlclose(still);
        return;
    }
    close(b->dl_fd);
}

static const struct sink_module *sink_module_open(struct sink_binding *b, char *err, size_t errlen)
{
    char proc[64] = "";
    const char *name = b->sink;
    int fd = -1;
    if (strchr(b->sink, '/') != NULL) {
        if (sink_module_copy(b->sink, &fd)) {
            snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
            name = proc;
        } else if (errno == ENOENT || errno == EACCES || errno == EISDIR) {
            snprintf(err, errlen, "sink %s: cannot load: %s", b->sink, strerror(errno));
            return NULL;
        }
    }
    dlerror();
    b->dl = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (b->dl == NULL && fd >= 0) {
        /* Not a loadable object, or the copy would not map (no /proc, a
         * noexec policy on memfd): try the file itself, as the loader
         * caches it. */
        char why[256];
        snprintf(why, sizeof(why), "%s", sink_dl_why(dlerror(), proc));
        close(fd);
        fd = -1;
        dlerror();
        b->dl = dlopen(b->sink, RTLD_NOW | RTLD_LOCAL);
        if (b->dl == NULL) {
            snprintf(err, errlen, "sink %s: cannot load: %s", b->sink, why);
            return NULL;
        }
        log_msg(LOG_WARN,
                "sinks: %s: a private copy did not load (%s), the file itself did: a rebuilt "
                "file at this path needs a restart of sluiced",
                b->sink, why);
    }
    if (b->dl == NULL) {
        snprintf(err, errlen, "sink %s: cannot load: %s", b->sink, sink_dl_why(dlerror(), ""));
        return NULL;
    }
    if (fd >= 0) {
        b->dl_copy = true;
        b->dl_fd = fd;
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

/* "2.0"; ABI 1 (no major, no size) as "1". */
static void sink_abi_fmt(char *buf, size_t len, uint32_t v)
{
    if (v >> 16 == 0)
        snprintf(buf, len, "%u", (unsigned)v);
    else
        snprintf(buf, len, "%u.%u", (unsigned)(v >> 16), (unsigned)(v & 0xffff));
}

/* Checks m's version and size and copies it into b->mod_copy. */
static bool sink_module_adopt(struct sink_binding *b, const struct sink_module *m, char *err,
                              size_t errlen)
{
    uint32_t v = m->abi_version;
    if (v >> 16 != SINK_ABI_MAJOR || (v & 0xffff) > SINK_ABI_MINOR) {
        char theirs[32], ours[32];
        sink_abi_fmt(theirs, sizeof(theirs), v);
        sink_abi_fmt(ours, sizeof(ours), SINK_ABI_VERSION);
        snprintf(err, errlen,
                 "sink %s: built for sink ABI %s, this sluiced has %s (rebuild the module "
                 "against this sluiced's <sluice/sink.h>)",
                 b->sink, theirs, ours);
        return false;
    }
    if (m->size < SINK_MODULE_MIN_SIZE || m->size > sizeof(struct sink_module)) {
        snprintf(err, errlen,
                 "sink %s: a sink ABI %u.%u descriptor of %u bytes (%zu to %zu expected: "
                 "start it with SINK_MODULE_HEAD)",
                 b->sink, (unsigned)(v >> 16), (unsigned)(v & 0xffff), (unsigned)m->size,
                 (size_t)SINK_MODULE_MIN_SIZE, sizeof(struct sink_module));
        return false;
    }
    memset(&b->mod_copy, 0, sizeof(b->mod_copy));
    memcpy(&b->mod_copy, m, m->size);
    return true;
}

/* lua:PATH: the module is the Lua tier; the file says which events. */
static bool sink_lua_load(struct sink_binding *b, char *err, size_t errlen)
{
    char cerr[400] = "";
    if (b->offload) {
        snprintf(err, errlen, "sink %s: a Lua sink cannot be offloaded (its states are per "
                              "worker)", b->sink);
        return false;
    }
    int rc = sink_lua_create(b->sink + 4, b->props, &b->inst, cerr, sizeof(cerr));
    if (rc != 0) {
        snprintf(err, errlen, "sink %s: %s", b->sink, cerr[0] ? cerr : strerror(-rc));
        return false;
    }
    b->mod_copy = sink_lua_module;
    b->mod = &b->mod_copy;
    b->created = true;
    if ((sink_lua_events(b->inst) & b->events) != b->events) {
        char evs[256];
        sink_events_list(sink_lua_events(b->inst), evs, sizeof(evs));
        snprintf(err, errlen, "sink %s does not handle event \"%s\" (its events: %s)", b->sink,
                 sink_event_name(b->ev), evs);
        return false; /* destroy() runs: created is set */
    }
    return true;
}

bool sink_binding_load(struct sink_binding *b, char *err, size_t errlen)
{
    const struct sink_module *m;
    if (strncmp(b->sink, "lua:", 4) == 0)
        return sink_lua_load(b, err, errlen);
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
    if (!sink_module_adopt(b, m, err, errlen))
        return false;
    m = &b->mod_copy;
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
        struct sink_props *use = cp ? cp : b->props;
        use->owner = b; /* for sink_counter() */
        struct sink_crash_note note = sink_crash_enter(b, b->ev, "create()");
        int rc = m->create(use, &b->inst, cerr, sizeof(cerr));
        sink_crash_leave(note);
        use->owner = NULL;
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

/* The sink.h functions defined outside engine.c's list (sink_abi_keep), so
 * that a program linking the static archive (tests) has them all. */
typedef void sink_keep_fn(void);
/* clang-format off */
__attribute__((used)) sink_keep_fn *const sink_abi_keep2[] = {
    (sink_keep_fn *)sink_props_int,  (sink_keep_fn *)sink_props_bool,
    (sink_keep_fn *)sink_props_ms,   (sink_keep_fn *)sink_props_size,
    (sink_keep_fn *)sink_props_only, (sink_keep_fn *)sink_log,
    (sink_keep_fn *)sink_counter,    (sink_keep_fn *)sink_counter_add,
};
/* clang-format on */
