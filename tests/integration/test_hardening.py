"""The daemon is built hardened (the top-level CMakeLists.txt): a
position-independent executable, full RELRO (the GOT read-only after
start-up: GNU_RELRO and BIND_NOW), the stack protector, and, in an
optimised build without sanitizers, _FORTIFY_SOURCE's checked calls.
readelf (binutils) reads the binary; without it the tests skip."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD, SLUICED

pytestmark = pytest.mark.skipif(shutil.which("readelf") is None, reason="no readelf (binutils)")


def readelf(*args):
    return subprocess.run(["readelf", "-W", *args, SLUICED], check=True, capture_output=True,
                          text=True).stdout


def cache(name):
    """A value of this build's CMakeCache.txt ("" when absent)."""
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        for line in f:
            m = re.match(r"%s:[A-Z]+=(.*)$" % re.escape(name), line)
            if m:
                return m.group(1).strip()
    return ""


def test_pie():
    assert re.search(r"Type:\s+DYN\b", readelf("-h")), "sluiced is not a PIE"


def test_full_relro():
    assert "GNU_RELRO" in readelf("-l"), "no RELRO segment"
    dyn = readelf("-d")
    assert re.search(r"\(FLAGS\)\s+BIND_NOW", dyn) or re.search(r"FLAGS_1\).*\bNOW\b", dyn), \
        "no BIND_NOW: RELRO is partial\n" + dyn


def test_stack_protector():
    assert "__stack_chk_fail" in readelf("--dyn-syms"), "built without the stack protector"


def test_fortify_source():
    if cache("CMAKE_BUILD_TYPE") == "Debug" or cache("SLUICE_SANITIZE") not in ("", "OFF"):
        pytest.skip("_FORTIFY_SOURCE is off in Debug and sanitizer builds")
    syms = readelf("--dyn-syms")
    assert re.search(r"__\w+_chk@", syms), "no _FORTIFY_SOURCE checked calls"
