#!/usr/bin/env bash
# `make run`: starts sluiced in the foreground on its default configuration
# (127.0.0.1:2525, spool ./var/spool), or on the file given as CONF=FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}/bin/sluiced
args=()
if [ $# -gt 0 ] && [ -n "$1" ]; then
    args=(-c "$1")
fi
mkdir -p var
cat <<'MSG'
sluiced is starting on 127.0.0.1:2525 (spool: ./var/spool).  In another shell:
  swaks --server 127.0.0.1:2525 --to you@example.test --from me@example.test
  build/bin/sluice-spool var/spool list
Stop it with Ctrl-C.
MSG
exec "$BIN" "${args[@]}"
