/*
 * NAME
 *	test_abi - the sink ABI a module is built against: versions and the
 *	descriptor's size, strict property getters, a rebuilt module at the
 *	same path, counters, calls in flight, sink_log, the crash note
 * DESCRIPTION
 *	Modules given to sink_builtin_register() go through the same checks
 *	as shared objects (sink_binding_load).  gen1.so and gen2.so are one
 *	source built twice (tests/sinks/modules/generation.c).
 */
#include "tests/sinks/sink_test.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "core/base/log.h"

static enum sink_verdict abi_handle(void *inst, struct sink_ctx *ctx)
{
    sink_set_reply(ctx, 550, NULL, "from abi_handle");
    return SINK_REJECT;
}

static void abi_abandoned(void *inst, struct sink_ctx *ctx) {}

/* A 2.0 module as if built against a sink.h whose descriptor ended before
 * `abandoned`: what it left there must read as NULL. */
static const struct sink_module abi_short = {
    .abi_version = SINK_ABI_VERSION,
    .size = offsetof(struct sink_module, abandoned),
    .name = "short",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .handle = abi_handle,
    .abandoned = abi_abandoned, /* past its size: never read */
};
static const struct sink_module abi_next_minor = {
    .abi_version = SINK_ABI_VERSION + 1,
    .size = sizeof(struct sink_module),
    .name = "nextminor",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .handle = abi_handle,
};
static const struct sink_module abi_next_major = {
    .abi_version = (uint32_t)(SINK_ABI_MAJOR + 1) << 16,
    .size = sizeof(struct sink_module),
    .name = "nextmajor",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .handle = abi_handle,
};
static const struct sink_module abi_one = {
    .abi_version = 1, /* ABI 1: no size field (padding, zero here) */
    .name = "one",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .handle = abi_handle,
};
static const struct sink_module abi_nosize = {
    .abi_version = SINK_ABI_VERSION,
    .name = "nosize",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .handle = abi_handle,
};
static const struct sink_module abi_huge = {
    .abi_version = SINK_ABI_VERSION,
    .size = sizeof(struct sink_module) + 8,
    .name = "huge",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .handle = abi_handle,
};

static void abi_register(void)
{
    const struct sink_module *const all[] = {&abi_short, &abi_next_minor, &abi_next_major,
                                             &abi_one,   &abi_nosize,     &abi_huge};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        int rc = sink_builtin_register(all[i]);
        cr_assert(rc == 0 || rc == -EEXIST);
    }
    st_setup();
}

static void abi_refused(const char *sink, const char *want)
{
    char conf[256], err[512] = "";
    snprintf(conf, sizeof(conf), "binding x { event = mail; sink = \"%s\"; }", sink);
    struct sink_engine *e = st_engine_err(conf, err, sizeof(err));
    cr_assert_null(e, "%s loaded", sink);
    cr_assert(strstr(err, want) != NULL, "\"%s\" lacks \"%s\"", err, want);
}

Test(abi, versions_and_sizes)
{
    abi_register();
    cr_assert_eq(SINK_ABI_VERSION, (uint32_t)SINK_ABI_MAJOR << 16 | SINK_ABI_MINOR);
    abi_refused("builtin:nextminor", "built for sink ABI 2.1, this sluiced has 2.0");
    abi_refused("builtin:nextmajor", "built for sink ABI 3.0, this sluiced has 2.0");
    abi_refused("builtin:one", "built for sink ABI 1, this sluiced has 2.0");
    abi_refused("builtin:nosize", "a sink ABI 2.0 descriptor of 0 bytes");
    abi_refused("builtin:nosize", "start it with SINK_MODULE_HEAD");
    abi_refused("builtin:huge", "descriptor of");

    /* an older (shorter) descriptor of this major loads; the rest is NULL */
    struct sink_engine *e = st_engine("binding s { event = mail; sink = \"builtin:short\"; }");
    struct sink_binding *b = st_binding(e, "s");
    cr_assert_null(b->mod->abandoned, "a field past the module's size reads as NULL");
    cr_assert_eq(b->mod->handle, abi_handle);
    cr_assert_eq(b->mod->size, offsetof(struct sink_module, abandoned));
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    cr_assert(sink_dispatch(r.call, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_REJECT);
    cr_assert_str_eq(res.text, "from abi_handle");
    st_rig_fini(&r, e);
}

/* ---- strict getters ---- */

static struct sink_props *abi_props(const char *const *kv)
{
    struct sink_props *p = sink_props_new();
    for (size_t i = 0; kv[i] != NULL; i += 2)
        cr_assert_eq(sink_props_add(p, kv[i], kv[i + 1]), 0);
    return p;
}

Test(abi, strict_getters)
{
    struct sink_props *p = abi_props((const char *const[]){
        "n",    "42",   "neg",   "-3",   "abc",   "abc",   "sp",
        " 5",   "e",    "",      "x",    "5x",    "big",   "99999999999999999999",
        "yes",  "YES",  "off",   "0",    "maybe", "maybe", "t5s",
        "5s",   "t200", "200ms", "t15",  "1.5s",  "plain", "2000",
        "tmin", "2min", "tsp",   "5 s",  "tneg",  "-1s",   "s10m",
        "10M",  "s64",  "64kb",  "s512", "512",   "s15k",  "1.5k",
        "sq",   "10Q",  NULL});
    char err[256];
    long long v;
    int b;
    uint64_t u;
    cr_assert_eq(sink_props_int(p, "n", 7, &v, err, sizeof(err)), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(sink_props_int(p, "neg", 7, &v, err, sizeof(err)), 0);
    cr_assert_eq(v, -3);
    cr_assert_eq(sink_props_int(p, "absent", 7, &v, err, sizeof(err)), 0);
    cr_assert_eq(v, 7, "absent: the default");
    cr_assert_eq(sink_props_int(p, "abc", 7, &v, err, sizeof(err)), -EINVAL);
    cr_assert_str_eq(err, "property \"abc\": \"abc\" is not an integer");
    cr_assert_eq(v, 7, "malformed: *out is the default too");
    cr_assert_eq(sink_props_int(p, "sp", 7, &v, err, sizeof(err)), -EINVAL);
    cr_assert_eq(sink_props_int(p, "e", 7, &v, err, sizeof(err)), -EINVAL);
    cr_assert_eq(sink_props_int(p, "x", 7, &v, NULL, 0), -EINVAL, "err may be NULL");
    cr_assert_eq(sink_props_int(p, "big", 7, &v, err, sizeof(err)), -ERANGE);
    cr_assert(strstr(err, "\"big\"") != NULL, "%s", err);

    cr_assert_eq(sink_props_bool(p, "yes", 0, &b, err, sizeof(err)), 0);
    cr_assert_eq(b, 1);
    cr_assert_eq(sink_props_bool(p, "off", 1, &b, err, sizeof(err)), 0);
    cr_assert_eq(b, 0);
    cr_assert_eq(sink_props_bool(p, "absent", 1, &b, err, sizeof(err)), 0);
    cr_assert_eq(b, 1);
    cr_assert_eq(sink_props_bool(p, "maybe", 0, &b, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "property \"maybe\": \"maybe\" is not a boolean") == err, "%s", err);

    const struct {
        const char *key;
        uint64_t ms;
    } durs[] = {{"t5s", 5000}, {"t200", 200}, {"t15", 1500}, {"plain", 2000}, {"tmin", 120000}};
    for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
        cr_assert_eq(sink_props_ms(p, durs[i].key, 1, &u, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(u, durs[i].ms, "%s: %llu", durs[i].key, (unsigned long long)u);
    }
    cr_assert_eq(sink_props_ms(p, "tsp", 1, &u, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "property \"tsp\": \"5 s\" is not a duration") == err, "%s", err);
    cr_assert_eq(sink_props_ms(p, "tneg", 1, &u, err, sizeof(err)), -EINVAL);
    cr_assert_eq(sink_props_ms(p, "abc", 1, &u, err, sizeof(err)), -EINVAL);
    cr_assert_eq(u, 1);

    cr_assert_eq(sink_props_size(p, "s10m", 0, &u, err, sizeof(err)), 0);
    cr_assert_eq(u, 10u << 20);
    cr_assert_eq(sink_props_size(p, "s64", 0, &u, err, sizeof(err)), 0);
    cr_assert_eq(u, 65536);
    cr_assert_eq(sink_props_size(p, "s512", 0, &u, err, sizeof(err)), 0);
    cr_assert_eq(u, 512);
    cr_assert_eq(sink_props_size(p, "s15k", 0, &u, err, sizeof(err)), 0);
    cr_assert_eq(u, 1536);
    cr_assert_eq(sink_props_size(p, "sq", 0, &u, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "property \"sq\": \"10Q\" is not a size") == err, "%s", err);

    struct sink_props *q = abi_props((const char *const[]){"a", "1", "tries", "2", NULL});
    cr_assert_eq(sink_props_only(q, (const char *const[]){"a", "tries", NULL}, err, sizeof(err)),
                 0);
    cr_assert_eq(sink_props_only(q, (const char *const[]){"a", "b", NULL}, err, sizeof(err)),
                 -EINVAL);
    cr_assert_str_eq(err, "unknown property \"tries\" (known: a, b)");
    sink_props_free(q);
    sink_props_free(p);
}

Test(abi, builtins_refuse_malformed_properties)
{
    st_setup();
    char err[512] = "";
    cr_assert_null(st_engine_err("binding d { event = mail; sink = \"builtin:delay\";"
                                 " properties { ms = \"abc\"; } }",
                                 err, sizeof(err)));
    cr_assert(strstr(err, "binding \"d\" (line 1): sink builtin:delay (module \"delay\"): create "
                          "failed: property \"ms\": \"abc\" is not a duration") != NULL,
              "%s", err);
    cr_assert_null(st_engine_err("binding a { event = mail; sink = \"builtin:access\";"
                                 " properties { tries = 3; } }",
                                 err, sizeof(err)));
    cr_assert(strstr(err, "unknown property \"tries\" (known: action, code, enhanced, text)") !=
                  NULL,
              "%s", err);
    cr_assert_null(st_engine_err("binding a { event = mail; sink = \"builtin:access\";"
                                 " properties { code = \"55o\"; } }",
                                 err, sizeof(err)));
    cr_assert(strstr(err, "property \"code\": \"55o\" is not an integer") != NULL, "%s", err);

    /* durations with units, and live: a refused value changes nothing */
    struct sink_engine *e = st_engine("binding d { event = mail; sink = \"builtin:delay\";"
                                      " properties { ms = \"20ms\"; } }");
    void *inst = st_binding(e, "d")->inst;
    cr_assert_eq(sink_engine_setprop(e, "d", "ms", "abc", err, sizeof(err)), -ENOEXEC);
    cr_assert(strstr(err, "property \"ms\": \"abc\" is not a duration") != NULL, "%s", err);
    cr_assert_eq(st_binding(e, "d")->inst, inst, "unchanged");
    cr_assert_str_eq(sink_props_get(st_binding(e, "d")->props, "ms"), "20ms");
    cr_assert_eq(sink_engine_setprop(e, "d", "ms", "1s", err, sizeof(err)), 0, "%s", err);
    sink_engine_destroy(e);
}

/* ---- a rebuilt module at the same path ---- */

static void abi_copy(const char *from, const char *to)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.new", to);
    int in = open(from, O_RDONLY), out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    cr_assert(in >= 0 && out >= 0, "%s: %s", from, strerror(errno));
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        cr_assert_eq(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
    cr_assert_eq(rename(tmp, to), 0, "as a linker replaces its output"); /* a new inode */
}

static const char *abi_mail(struct st_rig *r)
{
    static struct sink_result res;
    struct sink_event_data d = st_data(NULL);
    cr_assert(sink_dispatch(r->call, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_eq(res.verdict, SINK_REJECT);
    return res.text;
}

struct abi_seen {
    char names[8][64];
    uint64_t values[8];
    unsigned n;
};

static void abi_counter(void *arg, const char *binding, const char *name, const char *help,
                        uint64_t value)
{
    struct abi_seen *s = arg;
    cr_assert_lt(s->n, 8);
    snprintf(s->names[s->n], sizeof(s->names[0]), "%s/%s/%s", binding, name, help ? help : "");
    s->values[s->n++] = value;
}

Test(abi, rebuilt_module_runs_its_new_code, .timeout = 30)
{
    st_setup();
    char gen1[PATH_MAX], gen2[PATH_MAX], path[PATH_MAX], conf[PATH_MAX + 128], err[512];
    st_lib_path("gen1", gen1, sizeof(gen1));
    st_lib_path("gen2", gen2, sizeof(gen2));
    snprintf(path, sizeof(path), "/tmp/sluice-test-abi-%d.so", (int)getpid());
    abi_copy(gen1, path);
    snprintf(conf, sizeof(conf), "binding g { event = mail; sink = \"%s\"; }", path);
    struct sink_engine *e = st_engine(conf);
    struct st_rig r;
    st_rig_init(&r, e);
    cr_assert_str_eq(abi_mail(&r), "generation 1");

    abi_copy(gen2, path); /* rebuilt */
    cr_assert_str_eq(abi_mail(&r), "generation 1", "the loaded code runs until the next load");
    cr_assert_eq(sink_engine_setprop(e, "g", "tries", "5", err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(abi_mail(&r), "generation 2", "setprop loads the file as it is now");

    abi_copy(gen1, path);
    cr_assert_eq(sink_engine_remove(e, "g", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sink_engine_add(e, conf, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(abi_mail(&r), "generation 1", "remove + add loads it again");

    abi_copy(gen2, path);
    cr_assert_eq(sink_engine_set_enabled(e, "g", false, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sink_engine_setprop(e, "g", "tries", "6", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sink_engine_set_enabled(e, "g", true, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(abi_mail(&r), "generation 2", "enable loads a disabled binding's file");

    /* the strict getter refuses, naming the key; the binding stays */
    cr_assert_eq(sink_engine_setprop(e, "g", "tries", "abc", err, sizeof(err)), -ENOEXEC);
    cr_assert(strstr(err, "create failed: property \"tries\": \"abc\" is not an integer") != NULL,
              "%s", err);
    cr_assert_str_eq(abi_mail(&r), "generation 2");

    /* its counter: this instance's calls */
    struct abi_seen seen = {0};
    sink_engine_counters(e, abi_counter, &seen);
    cr_assert_eq(seen.n, 1);
    cr_assert_str_eq(seen.names[0], "g/calls/mail events seen");
    cr_assert_eq(seen.values[0], 2);
    st_rig_fini(&r, e);
    unlink(path);
}

/* ---- the crash note, calls in flight, sink_log ---- */

static char abi_note[512];
static size_t abi_note_len;
static int64_t abi_inflight_seen;

static enum sink_verdict abi_observe_handle(void *inst, struct sink_ctx *ctx)
{
    abi_note_len = sink_crash_describe(abi_note, sizeof(abi_note));
    struct sink_binding_stats bs;
    cr_assert(sink_engine_binding_stats(ctx->e, 0, &bs));
    abi_inflight_seen = bs.in_flight;
    sink_log(ctx, SINK_LOG_WARN, "hello %d", 42);
    sink_log(NULL, SINK_LOG_INFO, "no ctx");
    sink_log(ctx, SINK_LOG_DEBUG, "not shown at level info");
    return SINK_CONTINUE;
}

static const struct sink_module abi_observe = {
    SINK_MODULE_HEAD,
    .name = "observe",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .handle = abi_observe_handle,
};

static char *abi_slurp(const char *path)
{
    static char buf[8192];
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

Test(abi, crash_note_inflight_and_log)
{
    int rc = sink_builtin_register(&abi_observe);
    cr_assert(rc == 0 || rc == -EEXIST);
    st_setup();
    char logp[64], err[256];
    snprintf(logp, sizeof(logp), "/tmp/sluice-test-abi-%d.log", (int)getpid());
    cr_assert_eq(log_configure(LOG_FMT_TEXT, LOG_OUT_FILE, logp, err, sizeof(err)), 0, "%s", err);
    log_set_level(LOG_INFO);

    char buf[64];
    cr_assert_eq(sink_crash_describe(buf, sizeof(buf)), 0, "no sink code running");
    cr_assert_str_eq(buf, "");
    struct sink_engine *e =
        st_engine("binding \"ob\\ns\" { event = mail; sink = \"builtin:observe\"; }");
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_event_data d = st_data(NULL);
    struct sink_result res;
    cr_assert(sink_dispatch(r.call, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    cr_assert_str_eq(abi_note,
                     "in binding \"ob?s\" (sink builtin:observe), handle() at event mail");
    cr_assert_eq(abi_note_len, strlen(abi_note));
    cr_assert_eq(sink_crash_describe(buf, sizeof(buf)), 0, "cleared after handle()");
    cr_assert_eq(abi_inflight_seen, 1, "in flight inside handle()");
    struct sink_binding_stats bs;
    cr_assert(sink_engine_binding_stats(e, 0, &bs));
    cr_assert_eq(bs.in_flight, 0);

    const char *text = abi_slurp(logp);
    cr_assert(strstr(text, "warn: sink \"ob\\ns\": hello 42\n") != NULL, "%s", text);
    cr_assert(strstr(text, "info: sink: no ctx\n") != NULL, "%s", text);
    cr_assert_null(strstr(text, "not shown"), "%s", text);
    cr_assert_eq(log_configure(LOG_FMT_JSON, LOG_OUT_FILE, logp, err, sizeof(err)), 0, "%s", err);
    cr_assert(sink_dispatch(r.call, SINK_EV_MAIL, &d, NULL, NULL, NULL, NULL, &res));
    text = abi_slurp(logp);
    cr_assert(strstr(text, "\"msg\":\"sink \\\"ob\\ns\\\": hello 42\",\"binding\":\"ob\\ns\"") !=
                  NULL,
              "%s", text);
    log_configure(LOG_FMT_TEXT, LOG_OUT_STDERR, NULL, err, sizeof(err));
    unlink(logp);
    st_rig_fini(&r, e);
}

Test(abi, inflight_counts_pending_calls, .timeout = 30)
{
    st_setup();
    struct sink_engine *e =
        st_engine("binding p { event = mail; sink = \"builtin:script\"; deadline = 10s;"
                  " properties { pending = true; } }");
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_event_data d = st_data(NULL);
    struct st_done done = {0};
    struct sink_result res;
    cr_assert_not(sink_dispatch(r.call, SINK_EV_MAIL, &d, NULL, NULL, st_done_fn, &done, &res));
    struct sink_binding_stats bs;
    cr_assert(sink_engine_binding_stats(e, 0, &bs));
    cr_assert_eq(bs.in_flight, 1, "pending");
    sink_complete(st_pend[0], SINK_CONTINUE);
    cr_assert(st_run_until(&r, atomic_load(&done.calls) == 1, 5000));
    cr_assert(sink_engine_binding_stats(e, 0, &bs));
    cr_assert_eq(bs.in_flight, 0, "answered");
    st_rig_fini(&r, e);
}
