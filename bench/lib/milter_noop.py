#!/usr/bin/python3
"""bench/lib/milter_noop.py - a no-op milter (python3-milter, libmilter) for
bench/milter.sh: it takes only the end of message and answers CONTINUE;
every other step is switched off in negotiation (@nocallback), so an MTA
sends it connect..body only if it ignores the milter's wishes.

usage: milter_noop.py SOCKET     (inet:PORT@127.0.0.1 or unix:/path)
"""
import sys

import Milter


class Noop(Milter.Base):
    @Milter.nocallback
    def connect(self, hostname, family, hostaddr):
        return Milter.CONTINUE

    @Milter.nocallback
    def hello(self, hostname):
        return Milter.CONTINUE

    @Milter.nocallback
    def envfrom(self, f, *s):
        return Milter.CONTINUE

    @Milter.nocallback
    def envrcpt(self, to, *s):
        return Milter.CONTINUE

    @Milter.nocallback
    def data(self):
        return Milter.CONTINUE

    @Milter.nocallback
    def header(self, field, value):
        return Milter.CONTINUE

    @Milter.nocallback
    def eoh(self):
        return Milter.CONTINUE

    @Milter.nocallback
    def body(self, blk):
        return Milter.CONTINUE

    def eom(self):
        return Milter.CONTINUE


if __name__ == "__main__":
    Milter.factory = Noop
    Milter.set_flags(0)
    Milter.runmilter("noop", sys.argv[1], timeout=60)
