#!/usr/bin/env bash
# bench/milter.sh - a milter in the path: sluiced's milter bridge next to
# Postfix's smtpd_milters, with the same no-op milter, in the same run.
#
# Usage: bench/milter.sh            (as root, Debian 12 with postfix and
#                                    python3-milter installed)
#        QUICK=1 bench/milter.sh    a smoke run (MSGS=1000, RUNS=1)
#
# The milter: bench/lib/milter_noop.py (python3-milter, i.e. libmilter
# with Python callbacks), which takes only the end of message and answers
# CONTINUE.  Cases, each measured with smtp-source (SESSIONS sessions,
# MSGS messages of SIZE octets, one connection per message by default, so
# every message also opens and negotiates one milter connection):
#   sluiced         no binding
#   sluiced+milter  binding "m" { sink = "milter:inet:127.0.0.1:PORT"; }
#   postfix         the private Postfix of bench/lib/postfix.sh (discard)
#   postfix+milter  the same with smtpd_milters = inet:127.0.0.1:PORT
# The four are measured back to back in each run, the order rotated from
# run to run; figures are medians over the runs.  The milter process is the
# same one for every case (restarted only if it died).
#
# Environment (defaults in brackets):
#   RUNS [3]  MSGS [5000]  SESSIONS [32]  SIZE [4096]  MODES ["noreuse"]
#   QUICK [0]  BUILD [build]  NO_BUILD [0]  KEEP_TMP [0]  DRAIN_TIMEOUT [180]
# Exit status: 0 when everything ran, 1 when a measurement failed, 2 on a
# setup error.  See docs/milter.md.

set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB=$REPO/bench/lib
BENCH_NAME=milter
# shellcheck source=bench/lib/common.sh
. "$LIB/common.sh"
# shellcheck source=bench/lib/postfix.sh
. "$LIB/postfix.sh"
# shellcheck source=bench/lib/sluiced.sh
. "$LIB/sluiced.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    MSGS=${MSGS:-1000}
    RUNS=${RUNS:-1}
fi
RUNS=${RUNS:-3}
MSGS=${MSGS:-5000}
SESSIONS=${SESSIONS:-32}
SIZE=${SIZE:-4096}
MODES=${MODES:-noreuse}
BUILD=${BUILD:-build}
KEEP_TMP=${KEEP_TMP:-0}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-180}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
PYTHON=${PYTHON:-/usr/bin/python3}
SENDER=bench@client.bench.test
RCPT=rcpt@dest.example.test
T_VS_POSTFIX=3 # the issue's target: sluiced+milter >= 3x postfix+milter

for v in RUNS MSGS SESSIONS SIZE DRAIN_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || bench_die "$v must be a non-negative integer (got '${!v}')"
done
if [ "$RUNS" -lt 1 ] || [ "$RUNS" -gt 50 ]; then bench_die "RUNS must be 1..50"; fi
case $BUILD in /*) ;; *) BUILD=$REPO/$BUILD ;; esac
for tool in "$SMTP_SOURCE" "$PYTHON" timeout ss awk postconf; do
    command -v "$tool" >/dev/null || bench_die "$tool not found (apt-get install postfix python3-milter)"
done
"$PYTHON" -c 'import Milter' 2>/dev/null || bench_die "python3-milter is not installed"
[ "$(id -u)" = 0 ] || bench_die "the private Postfix instance needs root"
SOURCE_TIMEOUT=$((120 + MSGS / 20))
FAILURES=0
fail() {
    FAILURES=$((FAILURES + 1))
    bench_warn "$*"
}

BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX") || bench_die "mktemp failed"
chmod 755 "$BENCH_TMP" # user postfix must reach the private instance's dirs
MILTER_PID=

# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    [ -n "$SL_PID" ] && sl_stop >/dev/null 2>&1
    pf_stop
    bench_kill_tracked
    if [ "$KEEP_TMP" = 1 ]; then
        bench_log "temp dir kept: $BENCH_TMP"
    elif [ -n "$BENCH_TMP" ] && [ -d "$BENCH_TMP" ]; then
        rm -rf -- "$BENCH_TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the milter -----------------------------------------------------------

MILTER_PORT=$(bench_free_port)
milter_check() {
    [ -n "$MILTER_PID" ] && kill -0 "$MILTER_PID" 2>/dev/null && return 0
    [ -n "$MILTER_PID" ] && bench_warn "the milter (pid $MILTER_PID) died; restarting it"
    "$PYTHON" "$LIB/milter_noop.py" "inet:$MILTER_PORT@127.0.0.1" \
        >"$BENCH_TMP/milter.out" 2>"$BENCH_TMP/milter.err" </dev/null &
    MILTER_PID=$!
    bench_track "$MILTER_PID"
    bench_wait_listen "$MILTER_PORT" 20 "$MILTER_PID"
}

# ---- Postfix, with and without the milter ---------------------------------

PF_MILTER=off
pf_milter() { # on|off: smtpd_milters, then a reload (new smtpd processes)
    [ "$PF_MILTER" = "$1" ] && return 0
    if [ "$1" = on ]; then
        postconf -c "$PF_CONF" -e "smtpd_milters = inet:127.0.0.1:$MILTER_PORT" \
            "milter_default_action = tempfail" "milter_protocol = 6"
    else
        postconf -c "$PF_CONF" -e "smtpd_milters ="
    fi
    timeout 60 "$POSTFIX" -c "$PF_CONF" reload >"$PF_DIR/reload.log" 2>&1 || return 1
    sleep 2 # the old smtpd processes finish and the master starts new ones
    PF_MILTER=$1
}

# ---- one measurement ------------------------------------------------------

declare -A RATES=()
declare -A M=()
record() { RATES["$1 $2"]="${RATES["$1 $2"]:-} $3"; }

measure() {
    local case=$1 mode=$2 run=$3 port dir rate extra="" ms
    timeout 60 sync 2>/dev/null || true
    milter_check || { fail "the milter could not be started"; record "$case" "$mode" NA; return; }
    case $case in
        sluiced | sluiced+milter)
            port=$(bench_free_port)
            dir=$BENCH_TMP/sl-$run-$mode-${case/+/-}
            mkdir -p "$dir"
            local extra_conf=()
            if [ "$case" = sluiced+milter ]; then
                printf 'binding "m" { sink = "milter:inet:127.0.0.1:%s"; deadline = 10s; }\n' \
                    "$MILTER_PORT" >"$dir/milter.conf"
                extra_conf=(-c "$dir/milter.conf")
            fi
            if ! sl_start "$dir" "$port" "${extra_conf[@]}"; then
                fail "sluiced did not start ($case, run $run)"
                record "$case" "$mode" NA
                return
            fi
            ;;
        postfix | postfix+milter)
            pf_check || { fail "postfix could not be restarted"; record "$case" "$mode" NA; return; }
            if ! pf_milter "$([ "$case" = postfix+milter ] && echo on || echo off)"; then
                fail "postfix reload failed"
                record "$case" "$mode" NA
                return
            fi
            port=$PF_PORT
            ;;
    esac
    if run_source "$port" "$mode" "$MSGS" "$SESSIONS"; then
        rate=$(bench_calc "$MSGS / $RS_SECS")
    else
        rate=NA
        fail "$case $mode run $run: smtp-source failed"
    fi
    case $case in
        sluiced*)
            if sl_stop; then
                [ "$SL_STAT_COMMITS" = "$MSGS" ] ||
                    { fail "$case: sluiced committed $SL_STAT_COMMITS of $MSGS"; rate=NA; }
            else
                fail "sluiced did not stop cleanly ($case, run $run)"
            fi
            extra="  commits=$SL_STAT_COMMITS"
            rm -rf -- "$dir/spool"
            ;;
        postfix*)
            if ms=$(pf_wait_drain "$DRAIN_TIMEOUT"); then
                extra="  queue drained $(bench_fmt %.1f "$(bench_calc "$ms / 1000")") s later"
            else
                extra="  queue NOT drained"
            fi
            local rejected
            rejected=$(grep -c "milter-reject\|milter.*tempfail\|451 4.7.1" "$PF_LOG" 2>/dev/null)
            [ "${rejected:-0}" -gt 0 ] && extra="$extra  milter failures in the log: $rejected"
            ;;
    esac
    record "$case" "$mode" "$rate"
    printf 'run %d/%d  %-8s  %-15s %6d msgs  %7s s  %8s msg/s%s\n' "$run" "$RUNS" "$mode" \
        "$case" "$MSGS" "$(bench_fmt %.2f "$RS_SECS")" "$(bench_fmt %.0f "$rate")" "$extra"
}

# ---- run ------------------------------------------------------------------

sl_resolve_binary || bench_die "no sluiced binary"
pf_setup "$BENCH_TMP/postfix" "$(bench_free_port)" "$SESSIONS" || bench_die "postfix setup failed"
pf_start || bench_die "the private Postfix did not start"
milter_check || bench_die "the milter did not start"

echo "bench/milter.sh  $(date -u +%Y-%m-%dT%H:%MZ)  sluice $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)" \
    "postfix $(postconf -dh mail_version 2>/dev/null)  python3-milter" \
    "$("$PYTHON" -c 'import Milter; print(Milter.__version__)' 2>/dev/null)"
echo "$(nproc) CPUs; MSGS=$MSGS SESSIONS=$SESSIONS SIZE=$SIZE RUNS=$RUNS MODES=$MODES; sluiced workers=$SL_WORKERS"

# warm-up: Postfix spawns its smtpd processes, python its threads
pf_milter on && run_source "$PF_PORT" noreuse $((SESSIONS * 4)) "$SESSIONS" >/dev/null 2>&1
pf_wait_drain "$DRAIN_TIMEOUT" >/dev/null

CASES=(sluiced sluiced+milter postfix postfix+milter)
for ((run = 1; run <= RUNS; run++)); do
    for mode in $MODES; do
        for ((k = 0; k < ${#CASES[@]}; k++)); do
            measure "${CASES[$(((k + run - 1) % ${#CASES[@]}))]}" "$mode" "$run"
        done
    done
done

echo
echo "medians (msg/s):"
for mode in $MODES; do
    for c in "${CASES[@]}"; do
        # shellcheck disable=SC2086
        M["$c"]=$(bench_median ${RATES["$c $mode"]})
        printf '  %-8s %-15s %8s msg/s   (runs:%s)\n' "$mode" "$c" \
            "$(bench_fmt %.0f "${M[$c]}")" "${RATES["$c $mode"]}"
    done
    ratio=NA
    if [ "${M[postfix+milter]}" != NA ] && [ "${M[sluiced+milter]}" != NA ]; then
        ratio=$(bench_calc "${M[sluiced+milter]} / ${M[postfix+milter]}")
    fi
    cost_sl=NA cost_pf=NA
    [ "${M[sluiced]}" != NA ] && [ "${M[sluiced+milter]}" != NA ] &&
        cost_sl=$(bench_calc "100 * (1 - ${M[sluiced+milter]} / ${M[sluiced]})")
    [ "${M[postfix]}" != NA ] && [ "${M[postfix+milter]}" != NA ] &&
        cost_pf=$(bench_calc "100 * (1 - ${M[postfix+milter]} / ${M[postfix]})")
    echo "  $mode: sluiced+milter / postfix+milter = $(bench_fmt %.2f "$ratio")x" \
        "(target >= ${T_VS_POSTFIX}x: $(bench_verdict "$ratio" ">=" "$T_VS_POSTFIX"));" \
        "the milter costs sluiced $(bench_fmt %.0f "$cost_sl")%, Postfix $(bench_fmt %.0f "$cost_pf")%"
done
[ "$FAILURES" = 0 ] || exit 1
