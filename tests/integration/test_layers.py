"""scripts/check-layers.py, the house rules `make test` checks: it passes a
tree that keeps them, and names the file, the line and the rule of each
violation planted in a small tree and in a copy of the real one."""
import os
import shutil
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "check-layers.py")


def check(root):
    r = subprocess.run(["/usr/bin/python3", SCRIPT, str(root)], capture_output=True,
                       text=True, timeout=60)
    return r.returncode, r.stdout


def put(root, rel, text):
    p = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text)


def small_tree(root):
    """The floors in miniature, every rule kept."""
    put(root, "core/CMakeLists.txt",
        "sluice_lib(sluice_base GLOBS ${C}/base/*.c)\n"
        "sluice_lib(sluice_cfg GLOBS ${C}/cfg/*.c DEPS sluice_base)\n"
        "sluice_lib(sluice_smtpd GLOBS ${C}/smtpd/*.c\n"
        "           DEPS sluice_sinks sluice_cfg sluice_base crypt)\n")
    put(root, "sinks/CMakeLists.txt",
        "sluice_lib(sluice_sinks GLOBS *.c DEPS sluice_cfg sluice_base ${CMAKE_DL_LIBS})\n")
    put(root, "core/base/log.h", "/* log */\n")
    put(root, "core/cfg/cfg.h", '#include "core/base/log.h"\n')
    put(root, "core/smtpd/smtp.c", '#include "core/cfg/cfg.h"\n#include "sinks/engine.h"\n')
    put(root, "sinks/engine.h", '#include "core/cfg/cfg.h"\n')
    put(root, "net/net.h",
        '/*\n * #include "core/smtpd/smtp.h"   (a comment: not checked)\n */\n'
        '#include "core/base/log.h"\n#include "sched/sched.h"\n')
    put(root, "sched/sched.h", '#include "core/base/log.h"\n')
    put(root, "bench/b.c", '#include "sinks/engine.h"\n#include "sched/sched.h"\n')
    put(root, "tests/x/test_a.c", '#include "core/smtpd/smtp_int.h"\n#include "net/net_int.h"\n')
    put(root, "tests/x/big.py", "x\n" * 2000)  # not a C source: any length


def test_a_tree_that_keeps_the_rules_passes(tmp_path):
    small_tree(tmp_path)
    rc, out = check(tmp_path)
    assert rc == 0, out
    assert "ok" in out


def test_each_violation_is_named_with_file_line_and_rule(tmp_path):
    small_tree(tmp_path)
    put(tmp_path, "net/conn.c", '#include "net/net.h"\n\n#include "core/cfg/cfg.h"\n'
        '#  include "sinks/engine.h"\n#include "storage/spool.h"\n')
    put(tmp_path, "storage/spool.c", '#include "core/smtpd/smtp.h"\n')
    put(tmp_path, "sinks/dispatch.c", '#include "net/net.h"\n')
    put(tmp_path, "bench/b.c", '#include "core/cfg/cfg.h"\n')
    put(tmp_path, "core/base/mbuf.c", '#include "storage/spool.h"\n')
    put(tmp_path, "core/stray.c", "int x;\n")
    put(tmp_path, "sched/deque.c", "int x;\n" * 1001)
    put(tmp_path, "sched/pool.c", "int x;\n" * 1000)  # exactly the limit: fine
    rc, out = check(tmp_path)
    assert rc == 1, out
    lines = out.splitlines()
    for want in ["net/conn.c:3: net-on-base-and-sched-only: net/ includes core/cfg/cfg.h",
                 "net/conn.c:4: net-on-base-and-sched-only: net/ includes sinks/engine.h",
                 "net/conn.c:5: net-on-base-and-sched-only: net/ includes storage/spool.h",
                 "storage/spool.c:1: storage-on-base-only: storage/ includes core/smtpd/smtp.h",
                 "sinks/dispatch.c:1: sinks-on-cfg-sched-base: sinks/ includes net/net.h",
                 "bench/b.c:1: bench-through-public-apis: bench/ includes core/cfg/cfg.h",
                 "core/base/mbuf.c:1: base-is-the-ground-floor: core/base/ includes storage/spool.h",
                 "core/stray.c:1: core-holds-rooms:",
                 "sched/deque.c:1001: file-length: 1001 lines"]:
        assert any(l.startswith(want) for l in lines), (want, out)
    assert len(lines) == 9, out  # nothing else: not pool.c, not net.h's comment


def test_a_library_cycle_is_named(tmp_path):
    small_tree(tmp_path)
    put(tmp_path, "core/CMakeLists.txt",
        "sluice_lib(sluice_base GLOBS ${C}/base/*.c)\n"
        "sluice_lib(sluice_cfg GLOBS ${C}/cfg/*.c DEPS sluice_base\n"
        "           sluice_sinks)  # sinks -> cfg -> sinks\n")
    rc, out = check(tmp_path)
    assert rc == 1, out
    assert "library-cycle: sluice_cfg -> sluice_sinks -> sluice_cfg" in out \
        or "library-cycle: sluice_sinks -> sluice_cfg -> sluice_sinks" in out, out


def test_planted_in_a_copy_of_the_tree(tmp_path):
    """The real tree, copied, with a forbidden include and an over-long file
    planted: both are reported, on top of whatever the tree reports today."""
    copy = tmp_path / "s"
    ignore = shutil.ignore_patterns("build*", ".git", "var", "__pycache__")
    shutil.copytree(ROOT, copy, ignore=ignore)
    _, before = check(copy)
    with open(copy / "storage" / "spool.c", "a") as f:
        f.write('\n#include "core/queue/qmgr.h"\n')
    n = sum(1 for _ in open(copy / "storage" / "spool.c"))
    put(copy, "sinks/long.c", "/* */\n" * 1200)
    rc, out = check(copy)
    assert rc == 1
    new = sorted(set(out.splitlines()) - set(before.splitlines()))
    assert new == sorted([
        "sinks/long.c:1001: file-length: 1200 lines, more than 1000: split it by concern "
        "(STYLE.md, rule 10)",
        "storage/spool.c:%d: storage-on-base-only: storage/ includes core/queue/qmgr.h "
        "(storage/ may include only core/base/, storage/)" % n]), out
