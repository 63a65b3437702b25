/*
 * NAME
 *	test_lua - the Lua binding glue (sinks/lua_*.c) through a real engine
 * DESCRIPTION
 *	Scripts written to temporary files, bound with `lua:PATH`, dispatched
 *	synchronously on a one-worker rig: verdicts and replies from return
 *	values, nonsense and errors to on_error, the instruction budget, a
 *	ctx kept past its call, create() errors naming file and line,
 *	shared counters across bindings, reading the envelope and body.
 *	The waiting services (sleep, dns, http) are tested against a real
 *	daemon in tests/integration/test_lua.py.
 */
#include "tests/sinks/sink_test.h"

static char lua_path[8][64];
static int lua_n;

static const char *lua_file(const char *text)
{
    char *p = lua_path[lua_n++];
    snprintf(p, 64, "/tmp/test-lua-XXXXXX");
    int fd = mkstemp(p);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return p;
}

static void lua_cleanup(void)
{
    for (int i = 0; i < lua_n; i++)
        unlink(lua_path[i]);
    lua_n = 0;
}

static struct sink_engine *lua_engine(const char *script, const char *event, const char *props)
{
    char conf[1024];
    st_setup();
    snprintf(conf, sizeof(conf),
             "binding l { event = %s; sink = \"lua:%s\"; properties { %s } }\n", event,
             lua_file(script), props ? props : "");
    return st_engine(conf);
}

static enum sink_verdict lua_mail(struct st_rig *r, struct sink_result *res)
{
    struct st_server srv = {0};
    struct st_done done = {0};
    struct sink_event_data d = st_data(NULL);
    cr_assert(sink_dispatch(r->call, SINK_EV_MAIL, &d, st_server_fn, &srv, st_done_fn, &done, res),
              "answered synchronously");
    return res->verdict;
}

static const char *VERDICTS =
    "local n = 0\n"
    "return { events = { 'mail' }, handle = function(ctx)\n"
    "  n = n + 1\n"
    "  if n == 1 then return 'reject', 550, '5.7.1', 'no ' .. ctx.sender end\n"
    "  if n == 2 then return 'tempfail' end\n"
    "  if n == 3 then return 7 end\n"
    "  if n == 4 then error('on purpose') end\n"
    "  if n == 5 then return 'continue', 99 end\n" /* not a reply code */
    "  if n == 6 then return 'pending' end\n"
    "  return 'continue'\n"
    "end }\n";

Test(lua, verdicts_replies_and_nonsense, .timeout = 30)
{
    struct sink_engine *e = lua_engine(VERDICTS, "mail", NULL);
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_result res;
    cr_assert_eq(lua_mail(&r, &res), SINK_REJECT);
    cr_assert_eq(res.code, 550);
    cr_assert_str_eq(res.enhanced, "5.7.1");
    cr_assert_str_eq(res.text, "no sender@example.org");
    cr_assert_eq(lua_mail(&r, &res), SINK_TEMPFAIL);
    for (int i = 3; i <= 6; i++) {
        cr_assert_eq(lua_mail(&r, &res), SINK_TEMPFAIL, "call %d: on_error", i);
        cr_assert_eq(res.code, 451, "call %d", i);
        cr_assert_str_eq(res.enhanced, "4.3.0");
    }
    cr_assert_eq(lua_mail(&r, &res), SINK_CONTINUE, "the state goes on after errors");
    st_rig_fini(&r, e);
    lua_cleanup();
}

Test(lua, on_error_and_budget, .timeout = 30)
{
    const char *loop = "local calls = 0\n"
                       "return { events = { 'mail' }, handle = function(ctx)\n"
                       "  calls = calls + 1\n"
                       "  if calls == 1 then while true do end end\n"
                       "  if calls == 3 then while true do pcall(function() while true do end end) end end\n"
                       "  return 'reject', 550, '5.7.1', 'call ' .. calls\n"
                       "end }\n";
    struct sink_engine *e = lua_engine(loop, "mail", "on_error = continue; lua_budget = 10000;");
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_result res;
    uint64_t t0 = sink_now_ms();
    cr_assert_eq(lua_mail(&r, &res), SINK_CONTINUE, "the loop is stopped: on_error continue");
    cr_assert_lt(sink_now_ms() - t0, 2000);
    cr_assert_eq(lua_mail(&r, &res), SINK_REJECT);
    cr_assert_str_eq(res.text, "call 2");
    t0 = sink_now_ms();
    cr_assert_eq(lua_mail(&r, &res), SINK_CONTINUE, "pcall does not save a runaway loop");
    cr_assert_lt(sink_now_ms() - t0, 2000);
    cr_assert_eq(lua_mail(&r, &res), SINK_REJECT);
    cr_assert_str_eq(res.text, "call 4");
    st_rig_fini(&r, e);
    lua_cleanup();
}

Test(lua, memory_limit, .timeout = 30)
{
    const char *hog = "local calls = 0\n"
                      "return { events = { 'mail' }, handle = function(ctx)\n"
                      "  calls = calls + 1\n"
                      "  if calls == 1 then local t = {} for i = 1, 1e8 do t[i] = i end end\n"
                      "  return 'continue'\n"
                      "end }\n";
    struct sink_engine *e =
        lua_engine(hog, "mail", "lua_memory = 1000000; lua_budget = 2000000000;");
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_result res;
    cr_assert_eq(lua_mail(&r, &res), SINK_TEMPFAIL);
    cr_assert_eq(lua_mail(&r, &res), SINK_CONTINUE, "collected after the failed call");
    st_rig_fini(&r, e);
    lua_cleanup();
}

Test(lua, ctx_kept_past_its_call, .timeout = 30)
{
    const char *keep = "local old\n"
                       "return { events = { 'mail' }, handle = function(ctx)\n"
                       "  if old then local s = old.sender end\n"
                       "  old = ctx\n"
                       "  return 'continue'\n"
                       "end }\n";
    struct sink_engine *e = lua_engine(keep, "mail", NULL);
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_result res;
    cr_assert_eq(lua_mail(&r, &res), SINK_CONTINUE);
    cr_assert_eq(lua_mail(&r, &res), SINK_TEMPFAIL, "the old ctx raises, not crashes");
    st_rig_fini(&r, e);
    lua_cleanup();
}

Test(lua, envelope_fields_and_shared_counter, .timeout = 30)
{
    const char *f = "return { events = { 'mail' }, handle = function(ctx)\n"
                    "  assert(ctx.event == 'mail' and ctx.binding == 'l')\n"
                    "  assert(ctx.client ~= nil and ctx.sender == 'sender@example.org')\n"
                    "  assert(#ctx:rcpts() == 2)\n"
                    "  local ok, why = ctx:header_add('X-A', 'b')\n"
                    "  assert(ok == nil and why == 'not available at this event', why)\n"
                    "  assert(not pcall(function() return ctx.nosuchfield end))\n"
                    "  assert(os.exit == nil)\n"
                    "  local n = sluice.incr('unit-counter', 2)\n"
                    "  sluice.shared_set('unit-last', ctx.sender)\n"
                    "  return 'reject', 550, '5.7.1', string.format('%d %s', n, sluice.shared_get('unit-last'))\n"
                    "end }\n";
    struct sink_engine *e = lua_engine(f, "mail", NULL);
    struct st_rig r;
    st_rig_init(&r, e);
    struct sink_result res;
    cr_assert_eq(lua_mail(&r, &res), SINK_REJECT, "%s", res.text);
    cr_assert_str_eq(res.text, "2 sender@example.org");
    cr_assert_eq(lua_mail(&r, &res), SINK_REJECT);
    cr_assert_str_eq(res.text, "4 sender@example.org");
    st_rig_fini(&r, e);
    lua_cleanup();
}

Test(lua, create_errors_name_file_and_line, .timeout = 30)
{
    static const struct {
        const char *script, *event, *want;
    } cases[] = {
        {"return {\n events = ", "mail", ":2:"},
        {"return 5", "mail", "not a table"},
        {"return { events = { 'mail' } }", "mail", "no handle function"},
        {"return { events = { 'mial' }, handle = print }", "mail", "\"mial\" is not an event"},
        {"return { events = { 'rcpt' }, handle = print }", "mail", "does not handle event"},
        {"error('at load')", "mail", ":1: at load"},
    };
    st_setup();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char conf[512], err[512] = "";
        snprintf(conf, sizeof(conf), "binding l { event = %s; sink = \"lua:%s\"; }\n",
                 cases[i].event, lua_file(cases[i].script));
        struct sink_engine *e = st_engine_err(conf, err, sizeof(err));
        cr_assert_null(e, "case %zu loaded", i);
        cr_assert(strstr(err, cases[i].want) != NULL, "case %zu: %s", i, err);
    }
    char err[512] = "";
    cr_assert_null(st_engine_err("binding l { event = mail; sink = \"lua:/nonexistent.lua\"; }",
                                 err, sizeof(err)));
    cr_assert(strstr(err, "No such file") != NULL, "%s", err);
    cr_assert_null(st_engine_err("binding l { event = mail; sink = \"lua:/x.lua\"; "
                                 "properties { lua_budget = 5; } }",
                                 err, sizeof(err)));
    cr_assert(strstr(err, "lua_budget") != NULL, "%s", err);
    lua_cleanup();
}
