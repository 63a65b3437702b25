#!/usr/bin/python3
"""A test milter (python3-milter, i.e. libmilter) that takes every action
the sluice milter bridge maps, chosen by the envelope sender's local part:

  reject-rcpt   REJECT at RCPT for recipients whose local part is "no"
  tempfail      TEMPFAIL at MAIL
  replycode     550 5.7.9 "custom words" (setreply + REJECT) at MAIL
  accept        ACCEPT at MAIL: the milter sees nothing more of the message
  discard       DISCARD at end of message
  quarantine    quarantine("held for review") + CONTINUE at end of message
  edit          at end of message: addheader X-Milter-Added, insheader
                X-Milter-Inserted at 0, chgheader Subject, chgheader
                X-Drop-Me "" (delete), progress()
  badaction     addrcpt (not negotiated): the bridge must not accept it
  slow          sleeps 3 s at end of message (deadline tests)
  anything else CONTINUE everywhere

Every callback appends one JSON line to LOGFILE (the event, its arguments,
the macros it saw), so the tests can check what the bridge sent.

usage: milter_all.py SOCKET LOGFILE   (SOCKET: inet:PORT@127.0.0.1 or unix:/path)
"""
import json
import sys
import time

import Milter

LOG = sys.argv[2]


def log(**kw):
    with open(LOG, "a") as f:
        f.write(json.dumps(kw) + "\n")


class TestMilter(Milter.Base):
    def __init__(self):
        self.kind = ""
        self.headers = []

    @Milter.symlist("{client_addr}", "j")
    def connect(self, hostname, family, hostaddr):
        log(ev="connect", host=hostname, addr=str(hostaddr[0]) if hostaddr else None,
            client_addr=self.getsymval("{client_addr}"), j=self.getsymval("j"))
        return Milter.CONTINUE

    def hello(self, name):
        log(ev="helo", name=name)
        return Milter.CONTINUE

    def envfrom(self, f, *params):
        self.kind = f.strip("<>").split("@")[0]
        self.headers = []
        log(ev="mail", sender=f, params=list(params),
            auth=self.getsymval("{auth_authen}"), mail_addr=self.getsymval("{mail_addr}"))
        if self.kind == "tempfail":
            return Milter.TEMPFAIL
        if self.kind == "replycode":
            self.setreply("550", "5.7.9", "custom words")
            return Milter.REJECT
        if self.kind == "accept":
            return Milter.ACCEPT
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        log(ev="rcpt", rcpt=to, params=list(params), rcpt_addr=self.getsymval("{rcpt_addr}"))
        if self.kind == "reject-rcpt" and to.strip("<>").startswith("no@"):
            return Milter.REJECT
        return Milter.CONTINUE

    def data(self):
        log(ev="data")
        return Milter.CONTINUE

    def header(self, name, value):
        self.headers.append([name, value])
        return Milter.CONTINUE

    def eoh(self):
        log(ev="eoh", headers=self.headers)
        return Milter.CONTINUE

    def body(self, chunk):
        log(ev="body", n=len(chunk))
        return Milter.CONTINUE

    def eom(self):
        log(ev="eom", kind=self.kind, i=self.getsymval("i"))
        if self.kind == "discard":
            return Milter.DISCARD
        if self.kind == "quarantine":
            self.quarantine("held for review")
            return Milter.CONTINUE
        if self.kind == "edit":
            self.progress()
            self.addheader("X-Milter-Added", "yes")
            self.addheader("X-Milter-Inserted", "at the top", 0)
            self.chgheader("Subject", 1, "changed by the milter")
            self.chgheader("X-Drop-Me", 1, "")
            return Milter.ACCEPT
        if self.kind == "badaction":
            try:
                self.addrcpt("<extra@example.test>")
            except Milter.DisabledAction:
                # libmilter refuses it itself when not negotiated: send it raw
                self._ctx.addrcpt("<extra@example.test>")
            return Milter.CONTINUE
        if self.kind == "slow":
            time.sleep(3)
        return Milter.CONTINUE

    def abort(self):
        log(ev="abort")
        return Milter.CONTINUE

    def close(self):
        log(ev="close")
        return Milter.CONTINUE


def main():
    Milter.factory = TestMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE)
    Milter.runmilter("testmilter", sys.argv[1], timeout=30)


if __name__ == "__main__":
    main()
