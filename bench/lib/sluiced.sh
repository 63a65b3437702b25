# shellcheck shell=bash disable=SC2034  # SL_* globals are read by the caller
# bench/lib/sluiced.sh - start and stop sluiced for the benchmark (sourced by
# bench/ingest.sh, needs lib/common.sh).
#
# sluiced's contract used here: it logs "listening on 127.0.0.1:PORT" on
# stderr once it accepts connections; on SIGTERM it finishes in-flight
# commits, prints one line
#     sluiced stats: sessions=N messages=N commits=N syncs=N
# on stderr (commits = messages made durable, syncs = fdatasync batches)
# and exits 0.
#
# sl_resolve_binary          set SLUICED_BIN; `make build` once if missing
# sl_start DIR PORT [ARG..]  fresh spool DIR/spool; sets SL_PID, SL_LOG
# sl_stop                    SIGTERM; sets SL_RC and SL_STAT_* from the log
#
# Mail stays in the spool (relayhost=hold: the queue manager keeps it
# without an attempt), so ingest is measured alone and nothing leaves the
# machine; bench/relay.sh passes its own -o relayhost after it.
#
# SLUICED_OPTS (env) is appended, word-split, to every command line, e.g.
# SLUICED_OPTS="-o log_level=warning".

SL_PID=
SL_LOG=
SL_WORKERS=${SL_WORKERS:-2}

sl_resolve_binary() {
    SLUICED_BIN=$BUILD/bin/sluiced
    [ -x "$SLUICED_BIN" ] && return 0
    if [ "${NO_BUILD:-0}" != 1 ]; then
        bench_log "sluiced: $SLUICED_BIN is missing; running 'make build BUILD=$BUILD' (log: $BENCH_TMP/build.log)"
        timeout 1800 make -C "$REPO" build BUILD="$BUILD" >"$BENCH_TMP/build.log" 2>&1 ||
            bench_warn "make build failed (tail of $BENCH_TMP/build.log follows)"
        [ -x "$SLUICED_BIN" ] && return 0
        tail -n 20 "$BENCH_TMP/build.log" >&2 || true
    fi
    bench_warn "sluiced binary not found at $SLUICED_BIN (set BUILD=DIR to point at a build tree); the sluiced part cannot run"
    return 1
}

sl_start() {
    local dir=$1 port=$2 i
    shift 2
    mkdir -p "$dir/spool"
    SL_LOG=$dir/sluiced.log
    # shellcheck disable=SC2086  # SLUICED_OPTS is a list of words on purpose
    "$SLUICED_BIN" -o "listen=127.0.0.1:$port" -o "spool_dir=$dir/spool" \
        -o "workers=$SL_WORKERS" -o hostname=bench.example.test -o relayhost=hold "$@" \
        ${SLUICED_OPTS:-} >"$dir/sluiced.out" 2>"$SL_LOG" </dev/null &
    SL_PID=$!
    bench_track "$SL_PID"
    for ((i = 0; i < 600; i++)); do
        if grep -qF "listening on 127.0.0.1:$port" "$SL_LOG" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$SL_PID" 2>/dev/null; then
            local rc=0
            wait "$SL_PID" 2>/dev/null || rc=$?
            bench_warn "sluiced exited during start-up (status $rc); tail of $SL_LOG:"
            tail -n 15 "$SL_LOG" >&2
            bench_untrack "$SL_PID"
            SL_PID=
            return 1
        fi
        sleep 0.05
    done
    if bench_is_listening "$port"; then
        bench_warn "sluiced listens on $port but never logged 'listening on 127.0.0.1:$port'; going on"
        return 0
    fi
    bench_warn "sluiced did not start listening on 127.0.0.1:$port within 30s; tail of $SL_LOG:"
    tail -n 15 "$SL_LOG" >&2
    sl_stop
    return 1
}

sl_stop() {
    SL_RC=NA
    SL_STAT_SESSIONS=NA SL_STAT_MESSAGES=NA SL_STAT_COMMITS=NA SL_STAT_SYNCS=NA
    [ -n "$SL_PID" ] || return 1
    local early=0
    if kill -0 "$SL_PID" 2>/dev/null; then
        kill -TERM "$SL_PID" 2>/dev/null || true
    else
        early=1
    fi
    if ! bench_wait_exit "$SL_PID" 60; then
        bench_warn "sluiced (pid $SL_PID) still running 60s after SIGTERM; killing it"
        kill -KILL "$SL_PID" 2>/dev/null || true
        bench_wait_exit "$SL_PID" 5 || true
    fi
    SL_RC=0
    wait "$SL_PID" 2>/dev/null || SL_RC=$?
    bench_untrack "$SL_PID"
    local pid=$SL_PID
    SL_PID=
    local line kv
    line=$(grep -o 'sluiced stats:.*' "$SL_LOG" 2>/dev/null | tail -n 1)
    for kv in ${line#sluiced stats:}; do
        case $kv in
            sessions=*) SL_STAT_SESSIONS=${kv#*=} ;;
            messages=*) SL_STAT_MESSAGES=${kv#*=} ;;
            commits=*) SL_STAT_COMMITS=${kv#*=} ;;
            syncs=*) SL_STAT_SYNCS=${kv#*=} ;;
        esac
    done
    if [ "$early" = 1 ]; then
        bench_warn "sluiced (pid $pid) had exited before the script stopped it ($(bench_status_text "$SL_RC")): it crashed, or something outside this script signalled it; tail of $SL_LOG:"
        tail -n 5 "$SL_LOG" >&2
        return 1
    fi
    if [ "$SL_RC" != 0 ]; then
        bench_warn "sluiced exited with $(bench_status_text "$SL_RC"); tail of $SL_LOG:"
        tail -n 10 "$SL_LOG" >&2
        return 1
    fi
    if [ -z "$line" ]; then
        bench_warn "sluiced printed no 'sluiced stats:' line on exit"
        return 1
    fi
    return 0
}
