"""The sink ABI as a sink author outside the tree meets it: `make install`
(its cmake --install) into a staged DESTDIR, a module built with
`cc $(pkg-config --cflags sluice-sink) -shared -fPIC` and loaded by the
installed sluiced; what sluiced exports (nm -D); a module's own function
named like an internal one of sluiced; a C++ module; a crash in handle()
naming its binding; strict properties and setprop without a value through
sluicectl; a rebuilt module on reload; sink counters and calls in flight in
/metrics."""
import os
import re
import resource
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

import conftest
from conftest import BUILD, SLUICED, Raw, assert_reply

SRC = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
LIB = os.path.join(BUILD, "lib")
SLUICECTL = os.path.join(BUILD, "bin", "sluicectl")
CC = shutil.which("cc") or "/usr/bin/cc"
CXX = shutil.which("g++") or "/usr/bin/g++"


def build_module(tmp_path, name, source, compiler=None, flags=()):
    """source (text) compiled into tmp_path/name.so against the tree's
    <sluice/sink.h> (build/include), as a module author would."""
    ext = ".cc" if compiler == CXX else ".c"
    src = tmp_path / (name + ext)
    src.write_text(source)
    out = str(tmp_path / (name + ".so"))
    cmd = [compiler or CC, "-I" + os.path.join(BUILD, "include"), "-shared", "-fPIC",
           *flags, "-o", out, str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (cmd, r.stderr)
    return out


def mail_reply(port, sender):
    c = Raw(port)
    try:
        assert_reply(c.reply(), 220)
        assert_reply(c.cmd("EHLO client.example.test"), 250)
        return c.cmd("MAIL FROM:<%s>" % sender)
    finally:
        c.close()


# ---- make install, pkg-config, a module built out of the tree ----

def test_install_and_build_out_of_tree(daemon_factory, tmp_path, monkeypatch):
    stage = tmp_path / "stage"
    prefix = "/usr/local"
    env = dict(os.environ, DESTDIR=str(stage))
    r = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    root = str(stage) + prefix
    for f in ("sbin/sluiced", "bin/sluicectl", "include/sluice/sink.h",
              "share/pkgconfig/sluice-sink.pc", "share/doc/sluice/examples/tag_sender.c"):
        assert os.path.exists(os.path.join(root, f)), f
    with open(os.path.join(root, "include/sluice/sink.h")) as a, \
            open(os.path.join(SRC, "sinks/sink.h")) as b:
        assert a.read() == b.read()

    pc = dict(os.environ, PKG_CONFIG_PATH=os.path.join(root, "share/pkgconfig"))
    pc.pop("PKG_CONFIG_LIBDIR", None)
    cflags = subprocess.run(["pkg-config", "--cflags", "sluice-sink"], capture_output=True,
                            text=True, timeout=30, env=pc)
    assert cflags.returncode == 0, cflags.stderr
    ver = subprocess.run(["pkg-config", "--modversion", "sluice-sink"], capture_output=True,
                         text=True, timeout=30, env=pc).stdout.strip()
    assert re.fullmatch(r"\d+\.\d+", ver), ver
    so = str(tmp_path / "tag_sender.so")
    cmd = " ".join([CC, cflags.stdout.strip(), "-shared", "-fPIC", "-fvisibility=hidden",
                    "-Wall", "-Werror", "-o", so,
                    os.path.join(root, "share/doc/sluice/examples/tag_sender.c")])
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120,
                       cwd=str(tmp_path))
    assert r.returncode == 0, (cmd, r.stderr)
    # exactly one export: the entry point
    nm = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True,
                        timeout=30).stdout.split()
    assert "sluice_sink_module" in nm, nm

    conf = tmp_path / "sluice.conf"
    conf.write_text('binding "tag" { event = "mail"; sink = "%s";'
                    ' properties { pattern = "*@blocked.example"; text = "go away"; } }\n' % so)
    monkeypatch.setattr(conftest, "SLUICED", os.path.join(root, "sbin/sluiced"))
    d = daemon_factory(conf=str(conf))
    assert_reply(mail_reply(d.port, "x@blocked.example"), 550, "5.7.1")
    assert "go away" in mail_reply(d.port, "y@blocked.example")[1]
    assert_reply(mail_reply(d.port, "x@example.org"), 250)


def test_tutorial_sink_builds_and_runs(daemon_factory, tmp_path):
    """writing-sinks.md section 2 as written, with the build line of
    section 3 (the header from build/include instead of pkg-config)."""
    doc = open(os.path.join(SRC, "docs/writing-sinks.md")).read()
    sec = doc[doc.index("## 2. A synchronous sink"):doc.index("## 3. Building it")]
    code = re.search(r"```c\n(.*?)```", sec, re.S).group(1)
    so = build_module(tmp_path, "mysink", code,
                      flags=("-fvisibility=hidden", "-Wall", "-Wextra", "-Werror"))
    conf = tmp_path / "t.conf"
    conf.write_text('binding "no-example-net" { event = mail; sink = "%s"; priority = 1000;'
                    ' properties { domain = "example.net"; } }\n' % so)
    d = daemon_factory(conf=str(conf))
    code, text = mail_reply(d.port, "joe@example.net")
    assert code == 550 and "we take no mail from there" in text, text
    assert_reply(mail_reply(d.port, "bob@example.org"), 250)


# ---- what sluiced exports ----

def _sink_h_functions():
    text = open(os.path.join(SRC, "sinks/sink.h")).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"#define[^\n]*(\\\n[^\n]*)*", "", text)
    typedefs = set(re.findall(r"typedef[^;]*\b(sink_[a-z0-9_]+)\s*\(", text))
    names = set(re.findall(r"\b(sink_[a-z0-9_]+)\s*\(", text)) - typedefs
    names.discard("sink_verdict")  # enum sink_verdict (*handle)(...)
    return names


def _defined(path):
    r = subprocess.run(["nm", "-D" if path.endswith(("sluiced", ".so")) else "-g",
                        "--defined-only", path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {l.split()[-1] for l in r.stdout.splitlines() if len(l.split()) >= 3}


def test_sluiced_exports_only_the_sink_api():
    exported = {s for s in _defined(SLUICED) if "@" not in s}  # glibc copy relocations aside
    dynlist = set(re.findall(r"^\s*(sink_[a-z0-9_]+);",
                             open(os.path.join(SRC, "sinks/sink.dynlist")).read(), re.M))
    declared = _sink_h_functions()
    assert declared == dynlist, ("sink.h and sinks/sink.dynlist differ",
                                 declared ^ dynlist)
    assert exported <= dynlist, ("exported beyond sink.h", exported - dynlist)
    # every sink.h function the sink library defines is exported
    archive = os.path.join(BUILD, "sinks", "libsluice_sinks.a")
    in_lib = _defined(archive) & declared
    assert len(in_lib) >= 50, in_lib
    assert in_lib <= exported, ("defined but not exported", in_lib - exported)


# ---- a module's own function named like one of sluiced's ----

CLASH = r"""
#include <sluice/sink.h>
#include <stdint.h>
#include <stdio.h>
/* global, default visibility, no -fvisibility=hidden: the way a new sink
 * author writes it; sluiced has internal functions of these names */
uint64_t smtp_now_ms(void) { return 12345; }
uint64_t sink_now_ms(void) { return 777; }
static enum sink_verdict h(void *inst, struct sink_ctx *ctx)
{
    char t[64];
    snprintf(t, sizeof(t), "mine %llu %llu", (unsigned long long)smtp_now_ms(),
             (unsigned long long)sink_now_ms());
    sink_set_reply(ctx, 550, "5.7.1", t);
    return SINK_REJECT;
}
static const struct sink_module m = {
    SINK_MODULE_HEAD, .name = "clash", .events = SINK_EVMASK(SINK_EV_MAIL), .handle = h,
};
SINK_MODULE(m)
"""


def test_module_function_named_like_sluiced_internal_runs_its_own(daemon_factory, tmp_path):
    internal = _defined(os.path.join(BUILD, "core", "libsluice_smtpd.a")) | \
        _defined(os.path.join(BUILD, "sinks", "libsluice_sinks.a"))
    assert {"smtp_now_ms", "sink_now_ms"} <= internal  # the clash is real
    so = build_module(tmp_path, "clash", CLASH)
    conf = tmp_path / "c.conf"
    conf.write_text('binding "clash" { event = "mail"; sink = "%s"; }\n' % so)
    d = daemon_factory(conf=str(conf))
    code, text = mail_reply(d.port, "a@example.org")
    assert code == 550 and "mine 12345 777" in text, text


# ---- C++ ----

CXX_SINK = r"""
#include <sluice/sink.h>
#include <string>
namespace {
enum sink_verdict handle(void *, struct sink_ctx *ctx)
{
    std::string s = sink_sender(ctx) ? sink_sender(ctx) : "";
    if (s.find("@cxx.example") == std::string::npos)
        return SINK_CONTINUE;
    std::string text = "C++ says no to " + s;
    sink_set_reply(ctx, 550, "5.7.1", text.c_str());
    return SINK_REJECT;
}
const struct sink_module mod = {
    SINK_MODULE_HEAD,
    .name = "cxx",
    .events = SINK_EVMASK(SINK_EV_MAIL),
    .handle = handle,
};
}
SINK_MODULE(mod)
"""


def test_cxx_module(daemon_factory, tmp_path):
    so = build_module(tmp_path, "cxx", CXX_SINK, compiler=CXX,
                      flags=("-std=c++20", "-fvisibility=hidden", "-Wall", "-Werror"))
    syms = _defined(so)
    assert "sluice_sink_module" in syms, syms  # not a mangled name
    conf = tmp_path / "x.conf"
    conf.write_text('binding "cxx" { event = "mail"; sink = "%s"; }\n' % so)
    d = daemon_factory(conf=str(conf))
    code, text = mail_reply(d.port, "joe@cxx.example")
    assert code == 550 and "C++ says no to joe@cxx.example" in text, text
    assert_reply(mail_reply(d.port, "joe@example.org"), 250)


# ---- a crash in handle() ----

CRASH = r"""
#include <sluice/sink.h>
#include <signal.h>
static void later(struct sink_ctx *ctx, void *arg, int status)
{
    if (status == 0)
        *(volatile int *)0 = 2;          /* SIGSEGV in a service callback */
    sink_complete(ctx, SINK_CONTINUE);
}
static enum sink_verdict h(void *inst, struct sink_ctx *ctx)
{
    const char *s = sink_sender(ctx);
    if (s && s[0] == 't')
        return sink_timer_start(ctx, 1, later, NULL, NULL) == 0 ? SINK_PENDING : SINK_TEMPFAIL;
    if (s && s[0] == 's')
        *(volatile int *)0 = 1;          /* SIGSEGV */
    if (s && s[0] == 'a')
        raise(SIGABRT);
    return SINK_CONTINUE;
}
static const struct sink_module m = {
    SINK_MODULE_HEAD, .name = "crash", .events = SINK_EVMASK(SINK_EV_MAIL), .handle = h,
};
SINK_MODULE(m)
"""


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("offload,sender,sig,where", [
    (False, "segv@example.org", "SIGSEGV", "handle()"),
    (True, "segv@example.org", "SIGSEGV", "handle()"),
    (False, "abort@example.org", "SIGABRT", "handle()"),
    (False, "timer@example.org", "SIGSEGV", "a timer callback"),
])
def test_crash_in_handle_names_binding_and_event(tmp_path, offload, sender, sig, where):
    so = build_module(tmp_path, "crash", CRASH)
    logf = tmp_path / "sluiced.log"
    conf = tmp_path / "c.conf"
    conf.write_text('log_file = "%s";\nbinding "boom" { event = "mail"; sink = "%s";'
                    ' offload = %s; }\n' % (logf, so, "true" if offload else "false"))
    port = _free_port()
    args = [SLUICED, "-c", str(conf), "-o", "listen=127.0.0.1:%d" % port,
            "-o", "spool_dir=%s" % (tmp_path / "spool"), "-o", "relayhost=hold",
            "-o", 'control_socket=""', "-o", 'admin_listen=""', "-o", "workers=2"]
    old = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, old[1]))  # no core file from this crash
    try:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, errors="replace")
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, old)
    try:
        deadline = time.monotonic() + 10
        while "listening on" not in (logf.read_text() if logf.exists() else ""):
            assert p.poll() is None and time.monotonic() < deadline, "sluiced did not start"
            time.sleep(0.05)
        c = Raw(port)
        assert_reply(c.reply(), 220)
        assert_reply(c.cmd("EHLO client.example.test"), 250)
        c.send("MAIL FROM:<%s>\r\n" % sender)
        assert c.closed(10)
        c.close()
        p.wait(15)
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    want = ('sluiced: fatal signal %s in sink code: in binding "boom" (sink %s), %s '
            'at event mail' % (sig, so, where))
    assert p.returncode == -getattr(signal, sig), (p.returncode, err)
    assert want in err, err
    assert want in logf.read_text(), logf.read_text()


# ---- sluicectl: strict properties, setprop without a value ----

def ctl(sock, *args):
    return subprocess.run([SLUICECTL, "-s", sock, *args], capture_output=True, text=True,
                          timeout=60)


def test_setprop_strict_and_delete(daemon_factory, tmp_path):
    sock = str(tmp_path / "ctl.sock")
    conf = tmp_path / "s.conf"
    conf.write_text('control_socket = "%s";\n'
                    'binding "x" { event = "mail"; sink = "%s/gen1.so"; }\n'
                    'binding "acc" { event = "mail"; sink = "builtin:access"; priority = 10;'
                    ' rule = "MAIL FROM=*@deny.example"; properties { text = "denied"; } }\n'
                    % (sock, LIB))
    d = daemon_factory(conf=str(conf))
    before = conf.read_text()
    r = ctl(sock, "bindings", "setprop", "x", "tries", "abc")
    assert r.returncode != 0
    assert 'property "tries": "abc" is not an integer' in r.stderr, r.stderr
    r = ctl(sock, "bindings", "setprop", "acc", "tries", "3")
    assert r.returncode != 0
    assert 'unknown property "tries"' in r.stderr, r.stderr
    assert conf.read_text() == before, "a refused change is not saved"
    assert "generation 1" in mail_reply(d.port, "a@example.org")[1]

    r = ctl(sock, "bindings", "setprop", "x", "tries", "5")
    assert r.returncode == 0, r.stderr
    assert re.search(r"tries\s*=\s*\"?5", conf.read_text()), conf.read_text()
    r = ctl(sock, "bindings", "setprop", "x", "tries")  # no value: delete
    assert r.returncode == 0, r.stderr
    assert "tries" not in conf.read_text(), conf.read_text()
    r = ctl(sock, "bindings", "setprop", "x", "tries")
    assert r.returncode != 0 and 'no property "tries"' in r.stderr, r.stderr
    r = ctl(sock, "bindings", "setprop", "acc", "text")
    assert r.returncode == 0, r.stderr
    code, text = mail_reply(d.port, "z@deny.example")
    assert code == 550 and "Access denied" in text, text  # the builtin's default again


# ---- a rebuilt module on reload; counters and in-flight in /metrics ----

def _fetch_metrics(d):
    assert d.wait_log(r"metrics at http://\S+/metrics"), d.log()
    addr = re.search(r"metrics at http://(\S+)/metrics", d.log()).group(1)
    with urllib.request.urlopen("http://%s/metrics" % addr, timeout=10) as r:
        return r.read().decode()


def _copy(src, dst):
    shutil.copyfile(src, dst + ".new")
    os.replace(dst + ".new", dst)  # a new file at the path, as a linker writes it


def test_rebuilt_module_reload_and_metrics(daemon_factory, tmp_path):
    so = str(tmp_path / "gen.so")
    _copy(os.path.join(LIB, "gen1.so"), so)
    conf = tmp_path / "g.conf"
    conf.write_text('binding "g" { event = "mail"; sink = "%s"; }\n' % so)
    d = daemon_factory(conf=str(conf), admin_listen="127.0.0.1:0")
    assert "generation 1" in mail_reply(d.port, "a@example.org")[1]
    assert "generation 1" in mail_reply(d.port, "b@example.org")[1]
    body = _fetch_metrics(d)
    assert re.search(r'^sluice_sink_counter_total\{binding="g",name="calls"\} 2$', body, re.M), \
        body
    assert "# sink counter g/calls: mail events seen" in body
    assert re.search(r'^sluice_binding_calls_in_flight\{binding="g",event="mail"\} 0$', body,
                     re.M), body
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                           text=True, timeout=60)
        assert "error" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr

    _copy(os.path.join(LIB, "gen2.so"), so)
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "generation 2" in mail_reply(d.port, "c@example.org")[1]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("still the old code after reload:\n" + d.log())
