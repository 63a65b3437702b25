"""Flow control: a client that keeps sending while its session waits."""
import socket
import time

from conftest import spool_list


def test_big_pipelined_bdat_behind_a_waiting_data_sink(daemon_factory, tmp_path):
    # The session waits 700 ms for the data sink while the client pushes a
    # 3 MiB chunk: the worker stops reading that connection above its bound
    # (the bytes wait in the socket) instead of answering 421 for a backlog.
    conf = tmp_path / "flow.conf"
    conf.write_text('binding "slow-data" { event = "data"; sink = "builtin:delay"; '
                    'deadline = "5s"; properties { ms = 700; } }\n')
    d = daemon_factory(conf=str(conf))
    s = socket.create_connection(("127.0.0.1", d.port), timeout=15)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    s.sendall(b"EHLO client.example.test\r\n")
    while f.readline()[3:4] != b" ":
        pass
    s.sendall(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n")
    assert f.readline().startswith(b"250")
    assert f.readline().startswith(b"250")
    body = (b"y" * 76 + b"\r\n") * 40000  # 3.1 MB
    t0 = time.monotonic()
    s.sendall(b"BDAT %d LAST\r\n" % len(body) + body)
    reply = f.readline()
    assert reply.startswith(b"250 2.0.0"), reply
    assert time.monotonic() - t0 >= 0.6  # it did wait for the sink
    s.sendall(b"QUIT\r\n")
    assert f.readline().startswith(b"221")
    s.close()
    msgs = spool_list(d.spool)
    assert len(msgs) == 1 and msgs[0]["size"] >= len(body)
