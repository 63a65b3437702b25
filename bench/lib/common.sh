# shellcheck shell=bash
# bench/lib/common.sh - helpers shared by the bench scripts (sourced, not run).
#
# Logging, time, free ports, waiting for a listener, medians, /proc memory
# readings and process bookkeeping.  Every wait here is bounded in time and
# in iterations; every process a script starts is recorded by pid with
# bench_track so the EXIT trap can end exactly those and nothing else.

BENCH_TRACKED_PIDS=()
# The name warnings and errors start with (the sourcing script may set it).
BENCH_NAME=${BENCH_NAME:-ingest}

bench_log() { printf '%s\n' "$*" >&2; }
bench_warn() { printf '%s: warning: %s\n' "$BENCH_NAME" "$*" >&2; }
bench_die() {
    printf '%s: error: %s\n' "$BENCH_NAME" "$*" >&2
    exit 2
}

# Nanoseconds since the epoch.
bench_now_ns() { date +%s%N; }

# bench_track PID: remember a pid so bench_kill_tracked ends it on exit.
bench_track() { BENCH_TRACKED_PIDS+=("$1"); }

bench_untrack() {
    local p keep=()
    for p in "${BENCH_TRACKED_PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    BENCH_TRACKED_PIDS=("${keep[@]}")
}

# bench_wait_exit PID SECONDS: wait (polling, bounded) until PID is gone.
# 0 when it exited in time.
bench_wait_exit() {
    local pid=$1 secs=$2 i
    for ((i = 0; i < secs * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    ! kill -0 "$pid" 2>/dev/null
}

# bench_stop_pid PID [SECONDS]: SIGTERM, wait, then SIGKILL.  Only for pids
# this script started.
bench_stop_pid() {
    local pid=$1 secs=${2:-10}
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! bench_wait_exit "$pid" "$secs"; then
        bench_warn "pid $pid ignored SIGTERM for ${secs}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        bench_wait_exit "$pid" 5 || true
    fi
}

bench_kill_tracked() {
    local p
    for p in "${BENCH_TRACKED_PIDS[@]}"; do
        bench_stop_pid "$p" 5
    done
    BENCH_TRACKED_PIDS=()
}

# bench_run OUT ERR CMD...: run CMD with stdout to OUT and stderr to ERR, as
# a tracked background job waited for here, so a SIGTERM/SIGINT to the
# script is handled at once (a trap waits for a foreground command to end)
# and the clean-up ends CMD too.  Returns CMD's status.
bench_run() {
    local out=$1 err=$2 pid rc=0
    shift 2
    "$@" >"$out" 2>"$err" </dev/null &
    pid=$!
    bench_track "$pid"
    wait "$pid" || rc=$?
    bench_untrack "$pid"
    return "$rc"
}

# bench_status_text STATUS: "status 1" or "killed by signal 15 (TERM)".
bench_status_text() {
    if [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -gt 128 ]; then
        echo "killed by signal $(($1 - 128)) ($(kill -l "$(($1 - 128))" 2>/dev/null))"
    else
        echo "status $1"
    fi
}

# A TCP port on 127.0.0.1 that nothing is bound to right now.  The kernel
# picks it (bind to port 0); the tiny window before our server binds it is
# accepted.
bench_free_port() {
    "$PYTHON" - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# bench_is_listening PORT: something listens on 127.0.0.1:PORT (TCP).
bench_is_listening() {
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

# bench_wait_listen PORT SECONDS [PID]: wait until PORT is listening; stop
# early with failure when PID (the server) has died.
bench_wait_listen() {
    local port=$1 secs=$2 pid=${3:-} i
    for ((i = 0; i < secs * 20; i++)); do
        bench_is_listening "$port" && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
    done
    return 1
}

# Median of the numeric arguments ("NA" entries are ignored); prints NA
# when there is none.
bench_median() {
    printf '%s\n' "$@" | awk '
        $1 != "NA" && $1 != "" { v[n++] = $1 + 0 }
        END {
            if (n == 0) { print "NA"; exit }
            for (i = 1; i < n; i++) {          # insertion sort: n is tiny
                x = v[i]
                for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]
                v[j + 1] = x
            }
            if (n % 2) m = v[(n - 1) / 2]
            else m = (v[n / 2 - 1] + v[n / 2]) / 2
            printf "%.6g\n", m
        }'
}

# bench_calc EXPR: evaluate a floating-point awk expression; NA in, NA out.
bench_calc() {
    case "$1" in *NA*) echo NA; return ;; esac
    awk "BEGIN { printf \"%.6g\n\", $1 }" 2>/dev/null || echo NA
}

# bench_fmt FORMAT VALUE: printf VALUE with FORMAT unless it is NA.
bench_fmt() {
    if [ "$2" = NA ] || [ -z "$2" ]; then
        printf 'NA'
    else
        # shellcheck disable=SC2059  # the format is the caller's, on purpose
        printf "$1" "$2"
    fi
}

# bench_proc_kib PID FIELD: a "FIELD:  N kB" value from /proc/PID/status.
bench_proc_kib() {
    awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print "NA" }' \
        "/proc/$1/status" 2>/dev/null || echo NA
}

# bench_kib_to_mib EXPR: KiB (an awk expression) to MiB.
bench_kib_to_mib() { bench_calc "($1) / 1024"; }

# bench_verdict VALUE OP TARGET: PASS, MISS or NA.  OP is ">=" or "<=".
bench_verdict() {
    local v=$1 op=$2 t=$3
    if [ "$v" = NA ] || [ -z "$v" ]; then
        echo "NA"
        return
    fi
    if awk -v v="$v" -v t="$t" -v op="$op" \
        'BEGIN { exit !((op == ">=") ? (v >= t) : (v <= t)) }'; then
        echo PASS
    else
        echo MISS
    fi
}

# run_source PORT MODE MSGS SESSIONS: smtp-source (MODE reuse adds -d, one
# connection per session); sets RS_SECS (wall time).  Uses SIZE, SENDER,
# RCPT, SOURCE_TIMEOUT and SMTP_SOURCE from the calling script.
run_source() {
    local port=$1 mode=$2 msgs=$3 sessions=$4 t0 t1 rc=0
    local args=(-4 -s "$sessions" -m "$msgs" -l "$SIZE" -M client.bench.test
        -f "$SENDER" -t "$RCPT")
    [ "$mode" = reuse ] && args+=(-d)
    t0=$(bench_now_ns)
    bench_run "$BENCH_TMP/smtp-source.log" "$BENCH_TMP/smtp-source.err" \
        timeout "$SOURCE_TIMEOUT" "$SMTP_SOURCE" "${args[@]}" "127.0.0.1:$port" || rc=$?
    t1=$(bench_now_ns)
    RS_SECS=$(bench_calc "($t1 - $t0) / 1e9")
    if [ "$rc" != 0 ]; then
        bench_warn "smtp-source to 127.0.0.1:$port ($mode) exited with status $rc:"
        tail -n 5 "$BENCH_TMP/smtp-source.err" "$BENCH_TMP/smtp-source.log" >&2
    fi
    return "$rc"
}
