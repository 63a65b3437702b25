# shellcheck shell=bash
# bench/lib/sink.sh - smtp-sink(1) as the ceiling: an SMTP server that
# answers every command at once and stores nothing (sourced by
# bench/ingest.sh, needs lib/common.sh).
#
# sink_start DIR PORT SESSIONS   sets SINK_PID
# sink_check DIR SESSIONS        restart it (new SINK_PORT) if it died
# sink_stop

SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
SINK_PID=

sink_start() {
    local dir=$1 port=$2 sessions=$3 maxconn args=()
    maxconn=$((sessions * 4 > 256 ? sessions * 4 : 256))
    # Run as root, smtp-sink insists on dropping privileges (-u).
    [ "$(id -u)" -ne 0 ] || args+=(-u nobody)
    "$SMTP_SINK" -4 "${args[@]}" -m "$maxconn" -h sink.bench.test \
        "127.0.0.1:$port" 1024 >"$dir/smtp-sink.log" 2>&1 </dev/null &
    SINK_PID=$!
    bench_track "$SINK_PID"
    if ! bench_wait_listen "$port" 10 "$SINK_PID"; then
        bench_warn "smtp-sink did not listen on 127.0.0.1:$port"
        tail -n 5 "$dir/smtp-sink.log" >&2
        return 1
    fi
}

# sink_check DIR SESSIONS: when smtp-sink is no longer running (something
# outside this script ended it), say so and start a new one (new SINK_PORT).
sink_check() {
    [ -n "$SINK_PID" ] && kill -0 "$SINK_PID" 2>/dev/null && return 0
    local rc=0
    [ -n "$SINK_PID" ] && { wait "$SINK_PID" 2>/dev/null || rc=$?; }
    bench_warn "smtp-sink (pid $SINK_PID) is gone: $(bench_status_text "$rc"), not by this script; restarting it"
    tail -n 3 "$1/smtp-sink.log" >&2 2>/dev/null
    bench_untrack "$SINK_PID"
    SINK_PORT=$(bench_free_port)
    sink_start "$1" "$SINK_PORT" "$2"
}

sink_stop() {
    [ -n "$SINK_PID" ] || return 0
    bench_stop_pid "$SINK_PID" 5
    wait "$SINK_PID" 2>/dev/null || true
    bench_untrack "$SINK_PID"
    SINK_PID=
}
