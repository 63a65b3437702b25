"""A scripted next hop for the delivery tests: aiosmtpd (python3-aiosmtpd)
on a loopback address, in a thread with its own event loop.

Usage from a test::

    from nexthop import NextHop

    with NextHop("127.0.0.1", data=["451 4.3.0 try later"]) as hop:
        # hop.addr == "127.0.0.1:PORT" (a free port chosen by the kernel)
        ...
        assert hop.wait_messages(1, timeout=10)
        m = hop.messages[0]      # m.mail_from, m.rcpt_tos, m.data (bytes)

The script:

* ``data``: a list consumed one entry per DATA attempt (over every
  connection, in order of arrival; once used up every message is accepted):
    - ``None`` or ``"250"``: accept (the message is recorded);
    - ``"4xx text"`` / ``"5xx text"``: that final reply, nothing recorded;
    - ``"drop"``: after the 354 reply, read one line of the content, then
      close the connection (no final reply: the connection broke mid-DATA);
    - ``"lost"``: read the whole content, then close without a reply (the
      content arrived but the reply was lost);
* ``rcpt``: {address (any case): "550 5.1.1 no such user"}: the RCPT reply
  for that recipient (others get 250);
* ``mail``: a reply to every MAIL FROM instead of 250 (e.g. "421 ...");
* ``extensions``: EHLO keywords added to aiosmtpd's (SIZE is off,
  8BITMIME and SMTPUTF8 on); default PIPELINING and ENHANCEDSTATUSCODES;
  ``without``: keywords taken out of the EHLO reply (e.g. ["8BITMIME"]);
* ``delay``: seconds to wait before every final DATA reply (accept or not);
  ``set_delay()`` changes it while running;
* ``accept_early``: record an accepted message when its content has
  arrived, before ``delay`` (a next hop that has committed the message and
  is slow to say so: if the client dies meanwhile, the message is still
  delivered there); by default it is recorded after the delay, and
  aiosmtpd drops it when the client goes away first.

What it records (read it from the test's thread; a lock keeps it coherent):

* ``messages``: every accepted message, a :class:`Received` with
  ``mail_from`` ("" for the null sender), ``rcpt_tos``, ``data`` (bytes, as received, dot-unstuffed
  by aiosmtpd, CRLF line ends), ``peer``, ``conn`` (connection number),
  ``at`` (time.monotonic() when recorded),
  ``replied`` (True once the 250 was written to the socket; a message
  accepted while the client died during ``delay`` has replied False);
* ``attempts``: [(conn, outcome)] for every DATA attempt (outcome is the
  script entry applied: "250", "451 ...", "drop", "lost");
* ``connections``: how many connections were accepted; ``open_now`` and
  ``max_open``: how many are open, and the most open at once;
* ``rcpt_seen``: every RCPT address offered, in order.

``stop()`` closes the listener and every connection.  The listening port
is free for rebinding (SO_REUSEADDR) once stopped.
"""
import asyncio
import socket
import threading
import time

from aiosmtpd.smtp import SMTP


class Received:
    def __init__(self, mail_from, rcpt_tos, data, peer, conn):
        self.mail_from = "" if mail_from in ("<>", "", None) else mail_from
        self.rcpt_tos = list(rcpt_tos)
        self.data = data
        self.peer = peer
        self.conn = conn
        self.at = time.monotonic()  # when recorded (see accept_early)
        self.seq = 0
        self.replied = False

    def header(self, name):
        """The first value of header `name` in the data (None if absent)."""
        import email
        import email.policy
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        v = msg.get(name)
        return None if v is None else str(v)

    def __repr__(self):
        return "Received(from=%r to=%r %d bytes conn=%d)" % (
            self.mail_from, self.rcpt_tos, len(self.data), self.conn)


class _Handler:
    def __init__(self, hop):
        self.hop = hop

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # extensions before the last line ("250 HELP")
        extra = ["250-" + e for e in self.hop.extensions]
        out = responses[:-1] + extra + responses[-1:]
        return [r for r in out if r[4:].split(" ")[0].upper() not in self.hop.without]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.hop.mail_reply:
            return self.hop.mail_reply
        envelope.mail_from = address  # "<>" for the null sender (aiosmtpd needs it set)
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.hop.lock:
            self.hop.rcpt_seen.append(address)
        r = self.hop.rcpt.get(address.lower())
        if r:
            return r
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        hop = self.hop
        step = server._step  # chosen by smtp_DATA before the content
        accept = step in (None, "250")
        rec = None
        if accept and hop.accept_early:
            rec = self._record(server, session, envelope)
        if hop.delay:
            # aiosmtpd cancels this when the client goes away: a message
            # recorded late is then not recorded at all
            await asyncio.sleep(hop.delay)
        if accept:
            if rec is None:
                rec = self._record(server, session, envelope)
            server._pending = rec
            return "250 2.0.0 OK queued as n%d" % rec.seq
        return step

    def _record(self, server, session, envelope):
        hop = self.hop
        rec = Received(envelope.mail_from, envelope.rcpt_tos,
                       bytes(envelope.original_content or envelope.content or b""),
                       session.peer, server._conn_no)
        with hop.lock:
            hop.messages.append(rec)
            rec.seq = len(hop.messages)
        return rec


class _SMTP(SMTP):
    """aiosmtpd's SMTP with the per-attempt script applied at DATA."""

    def __init__(self, hop, *args, **kw):
        super().__init__(*args, **kw)
        self.hop = hop
        self._step = None
        self._pending = None
        with hop.lock:
            hop.connections += 1
            self._conn_no = hop.connections

    def connection_made(self, transport):
        super().connection_made(transport)
        hop = self.hop
        with hop.lock:
            hop._transports.add(transport)
            hop.open_now += 1
            hop.max_open = max(hop.max_open, hop.open_now)

    def connection_lost(self, exc):
        hop = self.hop
        with hop.lock:
            if self.transport in hop._transports:
                hop._transports.discard(self.transport)
                hop.open_now -= 1
        super().connection_lost(exc)

    async def push(self, status):
        await super().push(status)
        rec = self._pending
        if rec is not None and status.startswith("250"):
            self._pending = None
            # the reply reached the kernel only if the transport is alive
            if self.transport is not None and not self.transport.is_closing():
                try:
                    await self._writer.drain()
                    rec.replied = self.transport is not None and not self.transport.is_closing()
                except Exception:
                    rec.replied = False

    async def smtp_DATA(self, arg):
        hop = self.hop
        if not self.envelope.rcpt_tos or arg or not self.session.host_name:
            return await super().smtp_DATA(arg)
        with hop.lock:
            step = hop.data.pop(0) if hop.data else None
            hop.attempts.append((self._conn_no, step or "250"))
        self._step = step
        if step == "drop":
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            try:
                await asyncio.wait_for(self._reader.readuntil(b"\r\n"), 5)
            except Exception:
                pass
            await self._hang_up()
            return
        if step == "lost":
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            try:
                while True:
                    line = await asyncio.wait_for(self._reader.readuntil(b"\r\n"), 10)
                    if line == b".\r\n":
                        break
            except Exception:
                pass
            await self._hang_up()
            return
        return await super().smtp_DATA(arg)

    async def _hang_up(self):
        # close, then let connection_lost run (it clears self.transport) so
        # aiosmtpd's command loop does not read the rest of the content
        self.transport.close()
        for _ in range(10):
            if self.transport is None:
                break
            await asyncio.sleep(0)


class NextHop:
    def __init__(self, host="127.0.0.1", port=0, data=None, rcpt=None, mail=None,
                 delay=0.0, accept_early=False, hostname="nexthop.test",
                 extensions=("PIPELINING", "ENHANCEDSTATUSCODES"), without=()):
        self.host = host
        self.port = port
        self.data = list(data or [])
        self.rcpt = {k.lower(): v for k, v in (rcpt or {}).items()}
        self.mail_reply = mail
        self.delay = delay
        self.accept_early = accept_early
        self.hostname = hostname
        self.extensions = list(extensions)
        self.without = {w.upper() for w in without}
        self.lock = threading.Lock()
        self.messages = []
        self.attempts = []
        self.rcpt_seen = []
        self.connections = 0
        self.open_now = 0
        self.max_open = 0
        self._transports = set()
        self._loop = None
        self._server = None
        self._thread = None

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def set_delay(self, seconds):
        self.delay = seconds

    def start(self, timeout=10):
        ready = threading.Event()
        err = []

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self.port))
                sock.listen(128)
                self.port = sock.getsockname()[1]
                handler = _Handler(self)
                self._server = loop.run_until_complete(loop.create_server(
                    lambda: _SMTP(self, handler, hostname=self.hostname,
                                  data_size_limit=0, enable_SMTPUTF8=True,
                                  decode_data=False),
                    sock=sock))
            except Exception as e:  # reported to start()
                err.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("next hop did not start")
        if err:
            raise err[0]
        return self

    def stop(self):
        if self._loop is None or self._thread is None:
            return

        async def close():
            self._server.close()
            with self.lock:
                ts = list(self._transports)
            for t in ts:
                t.abort()
            await asyncio.sleep(0)
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        try:
            fut = asyncio.run_coroutine_threadsafe(close(), self._loop)
            fut.result(5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._thread = None

    def __enter__(self):
        return self.start() if self._thread is None else self

    def __exit__(self, *exc):
        self.stop()

    # -- reading what arrived ---------------------------------------------
    def count(self):
        with self.lock:
            return len(self.messages)

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_messages(self, n, timeout=10):
        """True once at least n messages were accepted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() >= n:
                return True
            time.sleep(0.02)
        return self.count() >= n

    def wait_attempts(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.attempts) >= n:
                    return True
            time.sleep(0.02)
        with self.lock:
            return len(self.attempts) >= n


def closed_port(host="127.0.0.1"):
    """A port with nothing listening on host (bound then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


if __name__ == "__main__":
    # A manual next hop: python3 nexthop.py HOST PORT [data steps...]
    import sys
    h = NextHop(sys.argv[1], int(sys.argv[2]), data=sys.argv[3:] or None).start()
    print("listening on", h.addr, flush=True)
    try:
        while True:
            time.sleep(1)
            for m in h.snapshot():
                pass
            print("messages=%d attempts=%d connections=%d" % (h.count(), len(h.attempts),
                                                               h.connections), flush=True)
    except KeyboardInterrupt:
        h.stop()
