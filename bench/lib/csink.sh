# shellcheck shell=bash disable=SC2034  # CS_* globals are read by the caller
# bench/lib/csink.sh - smtp-sink(1) as a counting final hop (sourced by
# bench/relay.sh, needs lib/common.sh and $PYTHON).
#
# smtp-sink -c prints its running counters ("sess=S quit=Q mesg=M\r") on
# standard output whenever it receives the final "." of a message; they go
# through a FIFO to bench/lib/sink_count.py, which keeps a small status file
# with the count and the wall-clock time (ns) at which it first reached the
# number wanted.  smtp-sink's own -M (exit after N messages) is no use here:
# it exits on the N-th "." before sending that message's 250, so the
# sender would see the last delivery fail.
#
# csink_start DIR PORT SESSIONS WANT   sets CS_PID (smtp-sink), CS_CPID
#                                      (counter), CS_STATUS; 1 on failure
# csink_read                           sets CS_MESG, CS_DONE_NS, CS_FIRST_NS,
#                                      CS_LAST_NS (when the count last grew)
#                                      from the status file (NA when none)
# csink_stop                           stop both, read the final counters
#
# Both processes are tracked (bench_track) so the EXIT trap ends them.

SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
CS_PID=
CS_CPID=
CS_STATUS=

csink_start() {
    local dir=$1 port=$2 sessions=$3 want=$4 maxconn args=() i
    maxconn=$((sessions * 4 > 256 ? sessions * 4 : 256))
    mkdir -p "$dir"
    CS_STATUS=$dir/sink.status
    rm -f "$CS_STATUS" "$dir/sink.fifo"
    mkfifo "$dir/sink.fifo" || return 1
    # The reader first: opening a FIFO for writing waits for a reader.
    "$PYTHON" "$LIB/sink_count.py" --want "$want" --status "$CS_STATUS" \
        <"$dir/sink.fifo" >"$dir/sink_count.log" 2>&1 &
    CS_CPID=$!
    bench_track "$CS_CPID"
    # Run as root, smtp-sink insists on dropping privileges (-u); its
    # standard output is opened before that.
    [ "$(id -u)" -ne 0 ] || args+=(-u nobody)
    "$SMTP_SINK" -4 -c "${args[@]}" -m "$maxconn" -h sink.bench.test \
        "127.0.0.1:$port" 1024 >"$dir/sink.fifo" 2>"$dir/smtp-sink.log" </dev/null &
    CS_PID=$!
    bench_track "$CS_PID"
    if ! bench_wait_listen "$port" 10 "$CS_PID"; then
        bench_warn "smtp-sink did not listen on 127.0.0.1:$port"
        tail -n 5 "$dir/smtp-sink.log" "$dir/sink_count.log" >&2
        csink_stop
        return 1
    fi
    for ((i = 0; i < 200; i++)); do
        [ -s "$CS_STATUS" ] && return 0
        kill -0 "$CS_CPID" 2>/dev/null || break
        sleep 0.05
    done
    bench_warn "the smtp-sink counter (bench/lib/sink_count.py) did not start"
    tail -n 5 "$dir/sink_count.log" >&2
    csink_stop
    return 1
}

# The status file is read once per csink_read (it is replaced as a whole,
# so all the fields come from the same moment).
csink_read() {
    local line kv
    CS_MESG=NA CS_DONE_NS=NA CS_FIRST_NS=NA CS_LAST_NS=NA
    line=$(cat "$CS_STATUS" 2>/dev/null) || return 0
    for kv in $line; do
        case $kv in
            mesg=*) CS_MESG=${kv#*=} ;;
            done_ns=*) CS_DONE_NS=${kv#*=} ;;
            first_ns=*) CS_FIRST_NS=${kv#*=} ;;
            last_ns=*) CS_LAST_NS=${kv#*=} ;;
        esac
    done
}

csink_stop() {
    local p
    for p in "$CS_PID" "$CS_CPID"; do
        [ -n "$p" ] || continue
        bench_stop_pid "$p" 5
        wait "$p" 2>/dev/null || true
        bench_untrack "$p"
    done
    CS_PID='' CS_CPID=''
    [ -n "$CS_STATUS" ] && csink_read
    return 0
}
