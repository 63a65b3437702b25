#!/usr/bin/env bash
# bench/tls.sh - what TLS costs sluiced's ingest: plaintext, reused TLS
# sessions (STARTTLS once per connection), and a new implicit-TLS
# connection per message, against the same sluiced in the same run.
#
#   bench/tls.sh [MESSAGES] [SESSIONS] [RUNS]     (defaults 20000 32 3)
#
# smtp-source cannot speak TLS, so the load is bench/tls_load.c (build/bin/
# tls-load: OpenSSL, one thread per session, MAIL+RCPT+DATA pipelined, 4 KiB
# messages).  tls-new sends MESSAGES/10 messages (a full handshake each).
# Each run does the three modes in turn; the medians of RUNS runs are
# printed with the cost of reused TLS: 1 - tls/plain (target <= 35%).
# Environment: BUILD (default build), SL_WORKERS (default 2).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=tls
# shellcheck source=lib/common.sh
source "$REPO/bench/lib/common.sh"
# shellcheck source=lib/sluiced.sh
source "$REPO/bench/lib/sluiced.sh"

MESSAGES=${1:-20000}
SESSIONS=${2:-32}
RUNS=${3:-3}
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
case $BUILD in /*) ;; *) BUILD=$REPO/$BUILD ;; esac
LOAD=$BUILD/bin/tls-load
[ -x "$LOAD" ] || bench_die "$LOAD is missing (cmake --build $BUILD)"
sl_resolve_binary || exit 2

BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-tls.XXXXXX") || bench_die "mktemp failed"
cleanup() {
    trap - EXIT INT TERM
    bench_kill_tracked
    rm -rf "$BENCH_TMP"
}
trap cleanup EXIT INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench.example.test -keyout "$BENCH_TMP/key.pem" -out "$BENCH_TMP/cert.pem" \
    >/dev/null 2>&1 || bench_die "openssl could not make a certificate"
PORT=$(bench_free_port)
SPORT=$(bench_free_port)
cat >"$BENCH_TMP/tls.conf" <<CONF
tls { cert = "$BENCH_TMP/cert.pem"; key = "$BENCH_TMP/key.pem"; }
listen_smtps = ["127.0.0.1:$SPORT"];
relay_domains = ["example.test"];
CONF
sl_start "$BENCH_TMP" "$PORT" -c "$BENCH_TMP/tls.conf" || bench_die "sluiced did not start"

NEW=$((MESSAGES / 10))
plain=() tls=() tlsnew=()
rate() { "$LOAD" "$@" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^rate=/) print substr($i, 6) }'; }
for ((r = 1; r <= RUNS; r++)); do
    p=$(rate plain 127.0.0.1 "$PORT" "$MESSAGES" "$SESSIONS") || bench_die "plain run failed"
    t=$(rate tls 127.0.0.1 "$PORT" "$MESSAGES" "$SESSIONS") || bench_die "tls run failed"
    n=$(rate tls-new 127.0.0.1 "$SPORT" "$NEW" "$SESSIONS") || bench_die "tls-new run failed"
    bench_log "run $r: plain $p msgs/s, tls reused $t msgs/s, tls handshake per message $n msgs/s"
    plain+=("$p") tls+=("$t") tlsnew+=("$n")
done
sl_stop || true

mp=$(bench_median "${plain[@]}")
mt=$(bench_median "${tls[@]}")
mn=$(bench_median "${tlsnew[@]}")
cost=$(bench_calc "(1 - $mt / $mp) * 100")
printf 'TLS ingest, %d x 4 KiB messages over %d sessions, median of %d runs (sluiced %s workers)\n' \
    "$MESSAGES" "$SESSIONS" "$RUNS" "$SL_WORKERS"
printf '  plaintext                     %s msgs/s\n' "$mp"
printf '  TLS, reused connections       %s msgs/s\n' "$mt"
printf '  TLS, handshake per message    %s msgs/s  (%d messages)\n' "$mn" "$NEW"
printf '  cost of reused TLS            %s%%  (1 - tls/plain; target <= 35%%)\n' "$(bench_fmt '%.1f' "$cost")"
