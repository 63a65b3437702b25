#!/usr/bin/env bash
# `make run`: starts sluiced in the foreground on its default configuration
# (127.0.0.1:2525, spool ./var/spool), or on the file given as CONF=FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}/bin/sluiced
mkdir -p var
if [ $# -gt 0 ] && [ -n "$1" ]; then
    args=(-c "$1")
else
    # the default configuration: plaintext with STARTTLS on 2525, implicit
    # TLS on 2465, with the self-signed pair the Makefile made in var/tls
    cat > var/run.conf <<'CONF'
tls { cert = "./var/tls/cert.pem"; key = "./var/tls/key.pem"; }
listen_smtps = ["127.0.0.1:2465"];
CONF
    args=(-c var/run.conf)
fi
cat <<'MSG'
sluiced is starting on 127.0.0.1:2525 (STARTTLS) and 127.0.0.1:2465 (implicit
TLS), spool ./var/spool; mail for localhost is delivered to ./var/mail/USER/new/.
In another shell:
  swaks --server 127.0.0.1:2525 --to me@localhost --from you@example.test
  ls var/mail/me/new/                          # the delivered message, one file
  swaks --server 127.0.0.1:2525 -tls --to me@localhost --from you@example.test
  openssl s_client -connect 127.0.0.1:2465 -quiet
  build/bin/sluice-spool var/spool list        # what is still queued
Mail for other domains is relayed by MX (see docs/routing.md for a relayhost).
Stop it with Ctrl-C.
MSG
exec "$BIN" "${args[@]}"
