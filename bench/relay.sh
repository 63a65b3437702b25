#!/usr/bin/env bash
# bench/relay.sh - relay throughput end to end: smtp-source(1) -> relay ->
# smtp-sink(1), the relay being a private Postfix instance and then sluiced,
# in the same invocation on this machine.  "End to end" is from the start of
# the injection until the final hop (smtp-sink) has counted every message
# (or smtp-source has exited, whichever is later); then each relay's queue
# must be empty.
#
# Usage: bench/relay.sh              (as root, Debian 12 with postfix installed)
#        QUICK=1 bench/relay.sh      a smaller run (MSGS=5000)
#
# Environment (defaults in brackets):
#   MSGS [20000, QUICK=1: 5000]  messages per measurement
#   SESSIONS [32]   parallel smtp-source sessions (-s)
#   SIZE [4096]     message payload bytes (smtp-source -l; headers extra)
#   MODE [noreuse]  noreuse = one connection per message (smtp-source's
#                   default); reuse = smtp-source -d (each session stays
#                   connected)
#   RUNS [1]        measurements per path; with more, the order of the
#                   paths alternates and medians are reported
#   TARGETS ["postfix sluiced"]  which relays to measure
#   DELIVER_TIMEOUT [300]  seconds from the start of the injection after
#                   which a path is given up (delivered X of N: FAIL)
#   STALL_TIMEOUT [60]  once smtp-source is done, give up earlier when the
#                   sink's count has not moved for this many seconds
#   DRAIN_TIMEOUT [30]  seconds to wait, after the sink counted all, for
#                   the relay's queue to become empty
#   BUILD [build]   sluiced build tree (relative to the repo root); `make
#                   build` is run once when $BUILD/bin/sluiced is missing,
#                   unless NO_BUILD=1
#   SLUICED_OPTS    extra words for the sluiced command line (-o k=v ...)
#   KEEP_TMP [0]    1 = keep the temp dir (maillog, sluiced log, sink files)
#
# Postfix: bench/lib/postfix.sh's private instance (postfix -c TMP/etc, its
# own queue, smtpd on a free loopback port) with relayhost =
# [127.0.0.1]:SINKPORT; otherwise Postfix's defaults (20 parallel
# deliveries per destination, connection cache on demand).  sluiced:
# -o relayhost=127.0.0.1:SINKPORT, fresh spool, 2 workers.  Both queues are
# under the same temp dir (same file system).  A fresh smtp-sink, relay
# instance and queue for every measurement.
#
# Exit status: 0 when every measurement could be made (also when the target
# is missed or a path did not deliver everything in time: this is a
# report), 1 when one could not be made (a server did not start,
# smtp-source failed), 2 on a setup error.  See docs/benchmarks.md.

set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB=$REPO/bench/lib
BENCH_NAME=relay
# shellcheck source=bench/lib/common.sh
. "$LIB/common.sh"
# shellcheck source=bench/lib/csink.sh
. "$LIB/csink.sh"
# shellcheck source=bench/lib/postfix.sh
. "$LIB/postfix.sh"
# shellcheck source=bench/lib/sluiced.sh
. "$LIB/sluiced.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then MSGS=${MSGS:-5000}; else MSGS=${MSGS:-20000}; fi
SESSIONS=${SESSIONS:-32}
SIZE=${SIZE:-4096}
MODE=${MODE:-noreuse}
RUNS=${RUNS:-1}
TARGETS=${TARGETS:-postfix sluiced}
DELIVER_TIMEOUT=${DELIVER_TIMEOUT:-300}
STALL_TIMEOUT=${STALL_TIMEOUT:-60}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-30}
BUILD=${BUILD:-build}
KEEP_TMP=${KEEP_TMP:-0}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
PYTHON=${PYTHON:-/usr/bin/python3}
SENDER=bench@client.bench.test
RCPT=rcpt@dest.example.test

T_VS_POSTFIX=4 # sluiced >= 4x Postfix end to end (docs/benchmarks.md)

for v in MSGS SESSIONS SIZE RUNS DELIVER_TIMEOUT STALL_TIMEOUT DRAIN_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || bench_die "$v must be a non-negative integer (got '${!v}')"
done
if [ "$RUNS" -lt 1 ] || [ "$RUNS" -gt 20 ]; then bench_die "RUNS must be 1..20"; fi
if [ "$MSGS" -lt 1 ] || [ "$SESSIONS" -lt 1 ]; then bench_die "MSGS and SESSIONS must be >= 1"; fi
[ "$DELIVER_TIMEOUT" -ge 1 ] || bench_die "DELIVER_TIMEOUT must be >= 1"
case $MODE in noreuse | reuse) ;; *) bench_die "MODE must be noreuse or reuse" ;; esac
for t in $TARGETS; do
    case $t in postfix | sluiced) ;; *) bench_die "unknown target '$t' in TARGETS" ;; esac
done
case $BUILD in /*) ;; *) BUILD=$REPO/$BUILD ;; esac
[ -x "$PYTHON" ] || PYTHON=$(command -v python3) || bench_die "python3 not found"
for tool in "$SMTP_SOURCE" "$SMTP_SINK" timeout ss awk mkfifo; do
    command -v "$tool" >/dev/null || bench_die "$tool not found (apt-get install postfix iproute2 coreutils)"
done

SOURCE_TIMEOUT=$((120 + MSGS / 20))
FAILURES=0
fail() {
    FAILURES=$((FAILURES + 1))
    bench_warn "$*"
}
want() { [[ " $TARGETS " == *" $1 "* ]]; }

# ---- temp dir, clean-up ---------------------------------------------------

BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-relay.XXXXXX") || bench_die "mktemp failed"
# Postfix's daemons (user postfix) must search the path down to their queue.
chmod 755 "$BENCH_TMP"

# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    [ -n "$SL_PID" ] && sl_stop >/dev/null 2>&1
    csink_stop
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

# ---- helpers ----------------------------------------------------------------

SPOOL_TOOL=$BUILD/bin/sluice-spool

# spool_live SPOOLDIR: live messages in a sluiced spool (sluice-spool list),
# NA when the tool fails.
spool_live() {
    local out
    out=$(timeout 120 "$SPOOL_TOOL" "$1" list --json 2>"$BENCH_TMP/spool-list.err") || {
        echo NA
        return
    }
    printf '%s' "$out" | "$PYTHON" -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo NA
}

# wait_delivered T0 RELAY_PID: poll the sink's counter until it reached
# MSGS, DELIVER_TIMEOUT seconds after T0 passed, the count stood still for
# STALL_TIMEOUT seconds, or the relay or the sink died.  Sets WD_WHY
# ("", timeout, stalled, relay died, sink died).
wait_delivered() {
    local t0=$1 rpid=$2 now last_n=-1 last_t i
    WD_WHY=
    last_t=$(bench_now_ns)
    for ((i = 0; i < (DELIVER_TIMEOUT + 5) * 20; i++)); do
        csink_read
        [ "$CS_DONE_NS" != NA ] && [ "$CS_DONE_NS" != 0 ] && return 0
        now=$(bench_now_ns)
        if [ "$CS_MESG" != "$last_n" ]; then
            last_n=$CS_MESG
            last_t=$now
        fi
        if [ $((now - t0)) -ge $((DELIVER_TIMEOUT * 1000000000)) ]; then
            WD_WHY=timeout
            return 1
        fi
        if [ $((now - last_t)) -ge $((STALL_TIMEOUT * 1000000000)) ]; then
            WD_WHY="stalled: no message for ${STALL_TIMEOUT} s"
            return 1
        fi
        if ! kill -0 "$CS_PID" 2>/dev/null; then
            WD_WHY="sink died"
            return 1
        fi
        if [ -n "$rpid" ] && ! kill -0 "$rpid" 2>/dev/null; then
            WD_WHY="relay died"
            return 1
        fi
        sleep 0.05
    done
    WD_WHY=timeout
    return 1
}

declare -A R_SECS=() R_RATE=() R_DELIV=() R_QUEUE=() R_INGEST=() R_NOTE=()

# measure TARGET RUN: one end-to-end measurement; prints one line.
# shellcheck disable=SC2034  # R_RATE and R_INGEST are read through med's nameref
measure() {
    local target=$1 run=$2 dir=$BENCH_TMP/$1-$2 sink_port port rpid t0 t1 tend
    local secs=NA rate=NA ingest=NA delivered qstate left src_ok=1 i
    sink_port=$(bench_free_port)
    if ! csink_start "$dir/sink" "$sink_port" "$SESSIONS" "$MSGS"; then
        fail "$target run $run: smtp-sink could not be started"
        R_SECS[$target $run]=NA R_RATE[$target $run]=NA
        return
    fi
    case $target in
        postfix)
            if ! pf_setup "$dir/postfix" "$(bench_free_port)" "$SESSIONS" "127.0.0.1:$sink_port" ||
                ! pf_start; then
                fail "postfix run $run: the private Postfix relay could not be started"
                pf_stop
                csink_stop
                R_SECS[$target $run]=NA R_RATE[$target $run]=NA
                return
            fi
            port=$PF_PORT rpid=$PF_MASTER_PID
            ;;
        sluiced)
            port=$(bench_free_port)
            if ! sl_start "$dir/sluiced" "$port" -o "relayhost=127.0.0.1:$sink_port"; then
                fail "sluiced run $run: sluiced did not start"
                csink_stop
                R_SECS[$target $run]=NA R_RATE[$target $run]=NA
                return
            fi
            rpid=$SL_PID
            ;;
    esac
    timeout 60 sync 2>/dev/null || true # earlier writeback is not this run's

    t0=$(bench_now_ns)
    if ! run_source "$port" "$MODE" "$MSGS" "$SESSIONS"; then
        src_ok=0
        fail "$target run $run: smtp-source failed"
    fi
    t1=$(bench_now_ns)
    ingest=$RS_SECS
    if wait_delivered "$t0" "$rpid"; then
        tend=$CS_DONE_NS
        [ "$t1" -gt "$tend" ] && tend=$t1
        if [ "$src_ok" = 1 ]; then
            secs=$(bench_calc "($tend - $t0) / 1e9")
            rate=$(bench_calc "$MSGS / $secs")
        fi
        delivered="$CS_MESG/$MSGS"
    else
        delivered="$CS_MESG/$MSGS FAIL"
        R_NOTE[$target $run]="$target: delivered $CS_MESG of $MSGS within $(bench_fmt %.0f "$(bench_calc "($(bench_now_ns) - $t0) / 1e9")") s: FAIL ($WD_WHY)"
        bench_warn "${R_NOTE[$target $run]}"
    fi

    # Is the relay's queue empty?  Only after everything arrived is it
    # worth waiting for (the last deliveries' bookkeeping).
    case $target in
        postfix)
            if [ "$secs" != NA ]; then
                pf_wait_drain "$DRAIN_TIMEOUT" >/dev/null || true
            fi
            if pf_postqueue >"$dir/postqueue.out"; then
                qstate=yes
            else
                left=$(pf_queue_count)
                qstate="no ($left queued; postqueue -p: $(tail -n 1 "$dir/postqueue.out"))"
            fi
            pf_stop
            PF_CONF='' # stopped: nothing for the EXIT trap to do
            ;;
        sluiced)
            left=NA
            if [ "$secs" != NA ]; then
                for ((i = 0; i < DRAIN_TIMEOUT * 2; i++)); do
                    left=$(spool_live "$dir/sluiced/spool")
                    [ "$left" = 0 ] && break
                    sleep 0.5
                done
            fi
            sl_stop || fail "sluiced run $run: did not stop cleanly"
            # The authoritative count: the spool at rest.
            left=$(spool_live "$dir/sluiced/spool")
            case $left in
                0) qstate=yes ;;
                NA) qstate="unknown (sluice-spool list failed: $(head -n 1 "$BENCH_TMP/spool-list.err"))" ;;
                *) qstate="no ($left live messages in the spool)" ;;
            esac
            ;;
    esac
    # Stop the sink last: its final count shows duplicates (> MSGS).
    csink_stop
    if [ "$CS_MESG" != NA ] && [ "$CS_MESG" -gt "$MSGS" ]; then
        qstate="$qstate; sink got $CS_MESG (duplicates)"
    fi
    R_SECS[$target $run]=$secs
    R_RATE[$target $run]=$rate
    R_INGEST[$target $run]=$ingest
    R_DELIV[$target $run]=$delivered
    R_QUEUE[$target $run]=$qstate
    printf 'run %d/%d  %-8s  delivered %-16s  ingest %7s s  end to end %7s s  %7s msg/s  queue empty: %s\n' \
        "$run" "$RUNS" "$target" "$delivered" "$(bench_fmt %.2f "$ingest")" \
        "$(bench_fmt %.2f "$secs")" "$(bench_fmt %.0f "$rate")" "$qstate"
    [ "$KEEP_TMP" = 1 ] || rm -rf -- "$dir/sluiced/spool" "$dir/postfix/queue"
}

# ---- header ---------------------------------------------------------------

postfix_version=$(postconf -dh mail_version 2>/dev/null || echo unknown)
git_rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$REPO" diff --quiet HEAD 2>/dev/null || git_rev="$git_rev+dirty"
echo "sluice relay benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "host: $(uname -sr), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)," \
    "temp dir on $(df -PT "$BENCH_TMP" | awk 'NR == 2 { print $2 }')"
echo "sluice $git_rev, postfix $postfix_version"
echo "config: msgs=$MSGS sessions=$SESSIONS size=$SIZE mode=$MODE runs=$RUNS targets='$TARGETS'"
echo "        deliver timeout ${DELIVER_TIMEOUT} s (stall ${STALL_TIMEOUT} s), queue drain ${DRAIN_TIMEOUT} s"
echo "path:   smtp-source -> relay (127.0.0.1) -> smtp-sink -c (127.0.0.1, counts every message)"

if want postfix && [ "$(id -u)" -ne 0 ]; then
    fail "the private Postfix instance needs root; skipping postfix"
    TARGETS=${TARGETS//postfix/}
fi
if want sluiced; then
    if sl_resolve_binary; then
        echo "sluiced: $SLUICED_BIN (built $(date -u -r "$SLUICED_BIN" '+%Y-%m-%d %H:%M UTC')), workers=$SL_WORKERS${SLUICED_OPTS:+, extra: $SLUICED_OPTS}"
        [ -x "$SPOOL_TOOL" ] || bench_warn "$SPOOL_TOOL is missing: sluiced's queue cannot be checked"
    else
        fail "sluiced is not available"
        TARGETS=${TARGETS//sluiced/}
    fi
fi
echo

# ---- runs -------------------------------------------------------------------

read -ra order <<<"$TARGETS"
for ((run = 1; run <= RUNS; run++)); do
    n=${#order[@]}
    for ((i = 0; i < n; i++)); do
        measure "${order[(i + run - 1) % n]}" "$run"
    done
done

# ---- summary --------------------------------------------------------------

# med TARGET ARRAY: the median of ARRAY[TARGET run] over the runs.
med() {
    local -n arr=$2
    local r vals=()
    for ((r = 1; r <= RUNS; r++)); do vals+=("${arr[$1 $r]:-NA}"); done
    bench_median "${vals[@]}"
}
ratios=()
for ((r = 1; r <= RUNS; r++)); do
    ratios+=("$(bench_calc "${R_SECS[postfix $r]:-NA} / ${R_SECS[sluiced $r]:-NA}")")
done
RATIO=$(bench_median "${ratios[@]}")

echo
if [ "$RUNS" = 1 ]; then what="one run"; else what="median of $RUNS runs"; fi
echo "relay end to end ($MSGS msgs x $SIZE bytes, $SESSIONS sessions, $MODE, $what)"
printf '  %-9s %-16s %-10s %-14s %-9s %s\n' path delivered "ingest s" "end to end s" "msg/s" "queue empty"
for t in postfix sluiced; do
    if ! want "$t"; then
        deliv="not run" queue=NA
    elif [ "$RUNS" = 1 ]; then
        deliv=${R_DELIV[$t 1]:-NA} queue=${R_QUEUE[$t 1]:-NA}
    else
        nd=0 nq=0
        for ((r = 1; r <= RUNS; r++)); do
            [ "${R_DELIV[$t $r]:-}" = "$MSGS/$MSGS" ] && nd=$((nd + 1))
            [ "${R_QUEUE[$t $r]:-}" = yes ] && nq=$((nq + 1))
        done
        deliv="all in $nd/$RUNS runs" queue="yes in $nq/$RUNS runs"
    fi
    printf '  %-9s %-16s %-10s %-14s %-9s %s\n' "$t" "$deliv" \
        "$(bench_fmt %.2f "$(med "$t" R_INGEST)")" "$(bench_fmt %.2f "$(med "$t" R_SECS)")" \
        "$(bench_fmt %.0f "$(med "$t" R_RATE)")" "$queue"
done

# The target: the ratio, every message delivered, both queues empty.
VERDICT=PASS
[ "$(bench_verdict "$RATIO" '>=' "$T_VS_POSTFIX")" = PASS ] || VERDICT=FAIL
for t in postfix sluiced; do
    for ((r = 1; r <= RUNS; r++)); do
        [ "${R_QUEUE[$t $r]:-NA}" = yes ] || VERDICT=FAIL
    done
done
printf '  %-9s %s  %s (target >= %sx end to end, every message delivered, both queues empty)\n' \
    "sluiced/postfix" "$(bench_fmt %.2fx "$RATIO")" "$VERDICT" "$T_VS_POSTFIX"
for t in postfix sluiced; do
    for ((r = 1; r <= RUNS; r++)); do
        [ -n "${R_NOTE[$t $r]:-}" ] && echo "  run $r: ${R_NOTE[$t $r]}"
    done
done

if [ "$FAILURES" -gt 0 ]; then
    echo "  $FAILURES step(s) failed (see warnings above); NA = not measured"
    exit 1
fi
exit 0
