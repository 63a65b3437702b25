#!/usr/bin/python3
"""check-layers: the house rules a newcomer relies on, checked in `make test`.

What it checks, and why (docs/architecture.md draws the floors):

  includes  Each folder may include only the floors below it, so that a
            concept lives in one place and the libraries link without
            cycles:
              core/base           the ground floor: nothing else of the tree
              core/cfg            core/base
              storage/, sched/    core/base (and their own folder)
              net/                core/base, sched/ (no SMTP, no sinks, no spool:
                                  a protocol plugs in through a table)
              sinks/              core/base, core/cfg, sched/
              bench/              core/base, and the public headers of
                                  sched/, sinks/, storage/, net/ (never the
                                  rest of core/: bench goes through an API)
              core/cmd/           included by nothing outside core/cmd/
            Only `#include "..."` lines of the tree are checked (comments are
            skipped); tests/ may include anything.
  length    No *.c or *.h under core net sched storage sinks bench tests is
            longer than 1,000 lines: a file is read in one sitting
            (STYLE.md, rule 10).
  rooms     core/ holds rooms (subfolders) and its CMakeLists.txt, no files:
            everything in core/ has a room named for it.
  cycles    No cycle between the sluice_* libraries of the CMakeLists.txt
            files (the DEPS of each sluice_lib(...) call).

Every violation is one line `FILE:LINE: RULE: what`, and the exit status is 1
if there was any.  Usage: check-layers.py [ROOT]  (default: the tree this
script is in).
"""
import os
import re
import sys

MAX_LINES = 1000
SOURCE_DIRS = ("core", "net", "sched", "storage", "sinks", "bench", "tests")

# (folder of the including file, folders it may include, the rule's name)
FLOORS = [
    ("core/base/", ("core/base/",), "base-is-the-ground-floor"),
    ("core/cfg/", ("core/base/", "core/cfg/"), "cfg-on-base-only"),
    ("storage/", ("core/base/", "storage/"), "storage-on-base-only"),
    ("sched/", ("core/base/", "sched/"), "sched-on-base-only"),
    ("net/", ("core/base/", "sched/", "net/"), "net-on-base-and-sched-only"),
    ("sinks/", ("core/base/", "core/cfg/", "sched/", "sinks/"), "sinks-on-cfg-sched-base"),
    ("bench/", ("core/base/", "sched/", "sinks/", "storage/", "net/", "bench/"),
     "bench-through-public-apis"),
]
TOP_FOLDERS = ("core/", "net/", "sched/", "storage/", "sinks/", "bench/", "tests/")

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def code_lines(text):
    """(line number, line) with /* */ and // comments blanked out."""
    in_comment = False
    for no, line in enumerate(text.split("\n"), 1):
        out, i = [], 0
        while i < len(line):
            if in_comment:
                j = line.find("*/", i)
                if j < 0:
                    i = len(line)
                else:
                    in_comment, i = False, j + 2
            elif line.startswith("/*", i):
                in_comment, i = True, i + 2
            elif line.startswith("//", i):
                break
            elif line[i] == '"':  # a string (an include's name): kept whole
                j = line.find('"', i + 1)
                j = len(line) if j < 0 else j + 1
                out.append(line[i:j])
                i = j
            else:
                out.append(line[i])
                i += 1
        yield no, "".join(out)


def resolve(rel, target):
    """The tree path an include names: from the root (include_directories is
    the top of the tree), else next to the including file."""
    if target.startswith(TOP_FOLDERS):
        return target
    return os.path.normpath(os.path.join(os.path.dirname(rel), target))


def check_includes(rel, text, problems):
    for area, allowed, rule in FLOORS:
        if rel.startswith(area):
            break
    else:
        area = allowed = rule = None
    for no, line in code_lines(text):
        m = INCLUDE.match(line)
        if not m:
            continue
        target = resolve(rel, m.group(1))
        if not target.startswith(TOP_FOLDERS):
            continue  # not a header of the tree
        if allowed is not None and not target.startswith(allowed):
            problems.append("%s:%d: %s: %s includes %s (%s may include only %s)" % (
                rel, no, rule, area, target, area, ", ".join(allowed)))
        if target.startswith("core/cmd/") and not rel.startswith(("core/cmd/", "tests/")):
            problems.append("%s:%d: cmd-is-the-top: %s includes %s (nothing includes the "
                            "programs' mains)" % (rel, no, rel, target))


def check_sources(root, problems):
    for top in SOURCE_DIRS:
        for d, subdirs, files in os.walk(os.path.join(root, top)):
            subdirs.sort()
            for f in sorted(files):
                if not f.endswith((".c", ".h")):
                    continue
                path = os.path.join(d, f)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
                n = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
                if n > MAX_LINES:
                    problems.append("%s:%d: file-length: %d lines, more than %d: split it by "
                                    "concern (STYLE.md, rule 10)" % (rel, MAX_LINES + 1, n,
                                                                      MAX_LINES))
                check_includes(rel, text, problems)


def check_core_top(root, problems):
    core = os.path.join(root, "core")
    if not os.path.isdir(core):
        return
    for f in sorted(os.listdir(core)):
        if f != "CMakeLists.txt" and not os.path.isdir(os.path.join(core, f)):
            problems.append("core/%s:1: core-holds-rooms: a file at the top of core/ (core/ "
                            "holds rooms, one folder each, and CMakeLists.txt; move it into "
                            "its room)" % f)


LIB = re.compile(r"^[ \t]*sluice_lib\(\s*(\w+)([^)]*)\)", re.M)


def check_cycles(root, problems):
    deps, where = {}, {}
    paths = []
    for d, subdirs, files in os.walk(root):
        subdirs[:] = sorted(s for s in subdirs if not s.startswith((".", "build")))
        if "CMakeLists.txt" in files:
            paths.append(os.path.join(d, "CMakeLists.txt"))
    for path in sorted(paths):
        rel = os.path.relpath(path, root)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        for m in LIB.finditer(text):
            body = re.sub(r"#[^\n]*", "", m.group(2)).split()
            if "DEPS" not in body:
                deps[m.group(1)] = []
            else:
                after = body[body.index("DEPS") + 1:]
                deps[m.group(1)] = [x for x in after if x.startswith("sluice_")]
            where[m.group(1)] = "%s:%d" % (rel, text.count("\n", 0, m.start()) + 1)
    # depth-first search; a back edge is a cycle, reported once per cycle
    state, stack, seen = {}, [], set()

    def visit(lib):
        state[lib] = 1
        stack.append(lib)
        for dep in deps.get(lib, []):
            if state.get(dep) == 1:
                cyc = stack[stack.index(dep):] + [dep]
                key = frozenset(cyc)
                if key not in seen:
                    seen.add(key)
                    problems.append("%s: library-cycle: %s" % (where[dep], " -> ".join(cyc)))
            elif dep in deps and dep not in state:
                visit(dep)
        stack.pop()
        state[lib] = 2

    for lib in sorted(deps):
        if lib not in state:
            visit(lib)


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "..")
    root = os.path.abspath(root)
    problems = []
    check_sources(root, problems)
    check_core_top(root, problems)
    check_cycles(root, problems)
    for p in problems:
        print(p)
    if problems:
        print("check-layers: %d violation%s (the rules: scripts/check-layers.py, "
              "docs/architecture.md)" % (len(problems), "" if len(problems) == 1 else "s"),
              file=sys.stderr)
        return 1
    print("check-layers: includes, file lengths, core/ rooms and library cycles: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
