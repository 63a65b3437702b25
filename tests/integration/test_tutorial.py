"""docs/writing-sinks.md used as a sink author uses it: the asynchronous
example (section 5) pasted as it stands, built out of the tree with the
tutorial's own build line, bound with section 6's binding block, and its
claims checked with 32 sessions at once."""
import os
import re
import socket
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import BUILD  # noqa: E402

DOC = os.path.join(ROOT, "docs", "writing-sinks.md")


def blocks(title):
    """The fenced blocks after title, as (language, text)."""
    text = open(DOC).read()
    lines = text[text.index(title):].split("\n")
    out, cur, lang = [], None, None
    for ln in lines:
        if ln.startswith("```"):
            if cur is None:
                cur, lang = [], ln[3:].strip()
            else:
                out.append((lang, "\n".join(cur) + "\n"))
                cur = None
        elif cur is not None:
            cur.append(ln)
    return out


def section_code(title, lang="c"):
    return next(b for lg, b in blocks(title) if lg == lang)


def section_block(title, first_word):
    for lg, b in blocks(title):
        if lg == "" and b.lstrip().startswith(first_word):
            return b
    raise AssertionError("no %s block after %s" % (first_word, title))


def build_lookup(tmp_path):
    src = tmp_path / "lookup.c"
    src.write_text(section_code("## 5. An asynchronous sink"))
    line = section_block("## 5. An asynchronous sink", "cc ").strip()
    line = line.replace("/path/to/sluice", ROOT)
    # the header as `make install` would give it (tests/integration/test_sink_abi.py
    # checks the pkg-config way itself)
    line = line.replace("$(pkg-config --cflags sluice-sink)",
                        "-I" + os.path.join(BUILD, "include"))
    out = subprocess.run(line, shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, (line, out.stderr)
    return str(tmp_path / "lookup.so")


def binding(tmp_path, so, latency_ms):
    block = section_block("## 6. Deadlines", "binding")
    block = block.replace("/usr/local/lib/sluice/lookup.so", so)
    block = block.replace("latency_ms = 20", "latency_ms = %d" % latency_ms)
    p = tmp_path / ("tutorial-%d.conf" % latency_ms)
    p.write_text(block)
    return str(p)


def mail_from(port, sender, out, i):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO t.example\r\n")
    while f.readline()[:4] != b"250 ":
        pass
    t0 = time.monotonic()
    s.sendall(b"MAIL FROM:<%s>\r\n" % sender.encode())
    out[i] = (f.readline().decode().strip(), time.monotonic() - t0)
    s.sendall(b"QUIT\r\n")
    s.close()


def many(port, sender, n=32):
    out = [None] * n
    ts = [threading.Thread(target=mail_from, args=(port, sender, out, i)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return out


def test_tutorial_async_sink_answers_in_time_at_32_sessions(daemon_factory, tmp_path):
    so = build_lookup(tmp_path)
    d = daemon_factory(conf=binding(tmp_path, so, 20))
    for reply, took in many(d.port, "ann@spam.example"):
        assert reply == "550 5.7.1 sender domain is blocked", reply
        assert took < 0.2, took
    for reply, took in many(d.port, "bob@example.org"):
        assert reply.startswith("250 2.1.0"), reply


def test_tutorial_deadline_when_the_lookup_is_slow(daemon_factory, tmp_path):
    so = build_lookup(tmp_path)
    d = daemon_factory(conf=binding(tmp_path, so, 500))
    for reply, took in many(d.port, "bob@example.org", 8):
        assert reply == "451 4.7.1 Service temporarily unavailable (sink deadline)", reply
        assert 0.18 <= took < 0.45, took
    d.wait_log(r'binding "reputation" missed its deadline at mail \(1 so far\); tempfailing')
