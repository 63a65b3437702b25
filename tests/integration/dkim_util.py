"""DKIM test helpers: keys made with openssl(1), the DNS records that
publish them, and verification by two independent implementations:
dkimpy (python3-dkim; the DNS answers handed to it directly) and
OpenDKIM's opendkim-testmsg (which asks the system resolver: it runs in a
network and mount namespace of its own, where a dnsmasq on 127.0.0.1:53
serves the records and /etc/resolv.conf is bind-mounted to point there;
nothing leaves that namespace)."""
import base64
import os
import shutil
import subprocess

import pytest

try:
    import dkim  # python3-dkim (dkimpy)
except ImportError:  # pragma: no cover
    dkim = None

DNSMASQ = "/usr/sbin/dnsmasq"
TESTMSG = "/usr/sbin/opendkim-testmsg"


def need_dkimpy():
    if dkim is None:
        pytest.skip("python3-dkim is not installed (scripts/deps.sh)")


def openssl(*args, stdin=None):
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True,
                          check=True, timeout=60).stdout


def make_key(path, kind):
    """A private key in PEM at path; returns the DKIM TXT record text."""
    if kind == "rsa":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", str(path))
        der = openssl("pkey", "-in", str(path), "-pubout", "-outform", "DER")
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(path))
    der = openssl("pkey", "-in", str(path), "-pubout", "-outform", "DER")
    # RFC 8463 4.2: p= is the raw 32-octet public key, not the SPKI
    return "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode()


def dnsfunc(records):
    def lookup(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        return records.get(n.rstrip(".").lower(), "").encode() or None
    return lookup


def crlf(data):
    """Maildir files have LF line ends (the delivery turns CRLF into LF)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def sig_count(msg):
    hdr = msg.split(b"\r\n\r\n", 1)[0]
    return sum(1 for line in hdr.split(b"\r\n") if line.lower().startswith(b"dkim-signature:"))


def dkimpy_verify(msg, records):
    """[True/False per signature, in header order] by dkimpy."""
    need_dkimpy()
    out = []
    for i in range(sig_count(msg)):
        d = dkim.DKIM(msg)
        try:
            out.append(bool(d.verify(idx=i, dnsfunc=dnsfunc(records))))
        except dkim.DKIMException:
            out.append(False)
    return out


def only_sig(msg, keep):
    """msg with every DKIM-Signature field but the keep-th (0-based) taken out
    (opendkim-testmsg reports on one signature)."""
    hdr, body = msg.split(b"\r\n\r\n", 1)
    fields = []
    for line in hdr.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    out, n = [], 0
    for f in fields:
        if f.lower().startswith(b"dkim-signature:"):
            n += 1
            if n - 1 != keep:
                continue
        out.append(f)
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def opendkim_verify_each(msg, records, tmp_path):
    """[(returncode, output)] of opendkim-testmsg, one per signature."""
    return [opendkim_verify(only_sig(msg, i), records, tmp_path) for i in range(sig_count(msg))]


def txt_arg(name, text):
    """dnsmasq --txt-record: strings of at most 255 octets, comma-separated."""
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)]
    return "--txt-record=%s,%s" % (name, ",".join(chunks))


def opendkim_verify(msg, records, tmp_path):
    """(returncode, output) of opendkim-testmsg verifying msg, with the
    records served by a dnsmasq in a private namespace."""
    if not os.path.exists(TESTMSG):
        pytest.skip("opendkim-testmsg is not installed (opendkim-tools)")
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("opendkim-testmsg needs a private network namespace (unshare, root)")
    zones = sorted({n.split("._domainkey.", 1)[1] for n in records})
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    msgfile = tmp_path / "testmsg.eml"
    msgfile.write_bytes(msg)
    dns = [DNSMASQ, "--no-daemon", "--port=53", "--listen-address=127.0.0.1",
           "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
           "--pid-file=", "--user=root", "--cache-size=0"]
    dns += ["--local=/%s/" % z for z in zones]
    dns += [txt_arg(n, t) for n, t in records.items()]
    script = ("ip link set lo up && mount --bind %s /etc/resolv.conf || exit 97; "
              "%s >/dev/null 2>&1 & pid=$!; sleep 0.4; "
              "%s -t %s < %s; rc=$?; kill $pid; wait $pid; exit $rc") % (
                  resolv, " ".join("'%s'" % a for a in dns), TESTMSG, tmp_path, msgfile)
    r = subprocess.run(["unshare", "-mn", "bash", "-c", script], capture_output=True,
                       text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr
