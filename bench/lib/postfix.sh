# shellcheck shell=bash
# bench/lib/postfix.sh - a private, throw-away Postfix instance for the
# ingest benchmark (sourced by bench/ingest.sh, needs lib/common.sh).
#
# The instance has its own config directory, queue, data directory and log
# file under a temp dir and is controlled with `postfix -c DIR`.  Run by
# root, postfix(1) accepts a non-default config directory without it being
# listed in the default main.cf (alternate_config_directories only gates
# unprivileged/set-gid programs such as postdrop), so /etc/postfix is
# neither read for settings nor edited, and the system instance is not
# started, stopped or reconfigured.  The private master.cf has exactly one
# listener, smtpd on 127.0.0.1:<free port> -- never port 25 -- plus the
# internal services the queue needs, all with chroot off.
#
# pf_setup DIR PORT SESSIONS [RELAYHOST]
#                               write DIR/etc/{main,master}.cf, make dirs;
#                               1 when user postfix could not use DIR.
#                               Without RELAYHOST every message is discarded
#                               once queued (ingest); with RELAYHOST
#                               ("127.0.0.1:PORT") the instance is a relay:
#                               every message goes out through Postfix's
#                               smtp client to that one next hop (relay.sh)
# pf_start                      postfix check + start, wait for the port
# pf_check                      restart the instance if it died
# pf_queue_count                messages still queued (incoming..deferred)
# pf_wait_drain SECONDS         wait until the queue is empty; prints ms
# pf_postqueue                  `postqueue -p` of the instance (stdout);
#                               0 when it says the queue is empty
# pf_stop                       stop the master and its children
#
# Globals set: PF_DIR PF_CONF PF_QUEUE PF_LOG PF_PORT PF_MASTER_PID

POSTFIX=${POSTFIX:-/usr/sbin/postfix}
PF_MASTER_PID=

pf_setup() {
    PF_DIR=$1
    PF_PORT=$2
    local sessions=$3 relayhost=${4:-} procs=100
    PF_CONF=$PF_DIR/etc
    PF_QUEUE=$PF_DIR/queue
    PF_LOG=$PF_DIR/maillog
    [ "$sessions" -lt 90 ] || procs=$((sessions + 10))
    mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF_DIR/data"
    # Postfix daemons run as mail_owner and must reach the queue and data
    # directories, so the path down to them must be searchable by others
    # (the caller makes the temp dir above PF_DIR searchable).
    chmod 755 "$PF_DIR"
    chown postfix "$PF_DIR/data"
    if command -v runuser >/dev/null &&
        ! runuser -u postfix -- test -x "$PF_DIR/data" 2>/dev/null; then
        bench_warn "user postfix cannot reach $PF_DIR (a parent directory is not searchable); set TMPDIR to a world-searchable place such as /tmp"
        return 1
    fi
    cat >"$PF_CONF/main.cf" <<EOF
# Private benchmark instance written by bench/lib/postfix.sh.  Everything
# not set here is Postfix's compiled-in default (not /etc/postfix/main.cf).
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $PF_DIR/data
maillog_file = $PF_LOG
maillog_file_prefixes = $PF_DIR
myhostname = postfix.bench.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
$(pf_transport_settings "$relayhost")
# No artificial pacing and no per-client limits.
in_flow_delay = 0
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
smtpd_client_auth_rate_limit = 0
default_process_limit = $procs
EOF
    cat >"$PF_CONF/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$PF_PORT inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    if [ -n "$relayhost" ]; then
        cat >>"$PF_CONF/master.cf" <<EOF
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
EOF
    fi
}

# pf_transport_settings [RELAYHOST]: the main.cf lines that decide where a
# queued message goes.
pf_transport_settings() {
    if [ -z "$1" ]; then
        cat <<EOF
# Ingest only: accept, make the queue file durable (Postfix fsyncs every
# queue file before its 250), then throw the message away.
mydestination =
relay_domains =
default_transport = discard
relay_transport = discard
local_transport = discard
virtual_transport = discard
alias_maps =
alias_database =
EOF
        return
    fi
    cat <<EOF
# Relay: no domain is local, so every recipient takes default_transport
# (smtp, the default) to relayhost; clients in mynetworks may relay
# (smtpd_relay_restrictions' default permit_mynetworks).  Concurrency,
# connection caching (smtp_connection_cache_on_demand) and the queue
# manager are Postfix's defaults.
mydestination =
relay_domains =
relayhost = [${1%:*}]:${1##*:}
local_transport = error:5.1.1 local delivery is disabled in this instance
alias_maps =
alias_database =
EOF
}

pf_show_log() {
    local f
    for f in "$PF_DIR/check.log" "$PF_DIR/start.log" "$PF_LOG"; do
        [ -s "$f" ] || continue
        bench_log "--- $f (last lines)"
        tail -n 15 "$f" >&2
    done
}

pf_start() {
    if ! timeout 60 "$POSTFIX" -c "$PF_CONF" check >"$PF_DIR/check.log" 2>&1; then
        pf_show_log
        bench_warn "postfix -c $PF_CONF check failed"
        return 1
    fi
    if ! timeout 60 "$POSTFIX" -c "$PF_CONF" start >"$PF_DIR/start.log" 2>&1; then
        pf_show_log
        bench_warn "postfix -c $PF_CONF start failed"
        return 1
    fi
    local i
    for ((i = 0; i < 200; i++)); do
        if [ -s "$PF_QUEUE/pid/master.pid" ]; then
            PF_MASTER_PID=$(tr -dc '0-9' <"$PF_QUEUE/pid/master.pid")
            [ -n "$PF_MASTER_PID" ] && break
        fi
        sleep 0.05
    done
    if [ -z "$PF_MASTER_PID" ] || ! bench_wait_listen "$PF_PORT" 20 "$PF_MASTER_PID"; then
        pf_show_log
        bench_warn "private postfix did not listen on 127.0.0.1:$PF_PORT"
        return 1
    fi
}

# pf_check: when the master is gone (ended from outside), say so and start
# the instance again.
pf_check() {
    [ -n "$PF_MASTER_PID" ] && kill -0 "$PF_MASTER_PID" 2>/dev/null && return 0
    bench_warn "the private Postfix master (pid ${PF_MASTER_PID:-?}) is gone, not stopped by this script; restarting it"
    PF_MASTER_PID=
    pf_start
}

# Files in the queues a message passes through before it is gone.
pf_queue_count() {
    local d dirs=()
    for d in incoming active deferred hold maildrop; do
        [ -d "$PF_QUEUE/$d" ] && dirs+=("$PF_QUEUE/$d")
    done
    [ ${#dirs[@]} -gt 0 ] || { echo 0; return; }
    find "${dirs[@]}" -type f 2>/dev/null | wc -l
}

# pf_wait_drain SECONDS: prints the milliseconds it took; 1 when the queue
# was still not empty at the deadline.
pf_wait_drain() {
    local secs=$1 t0 i n
    t0=$(bench_now_ns)
    for ((i = 0; i < secs * 10; i++)); do
        n=$(pf_queue_count)
        if [ "$n" -eq 0 ]; then
            echo $((($(bench_now_ns) - t0) / 1000000))
            return 0
        fi
        sleep 0.1
    done
    echo $((($(bench_now_ns) - t0) / 1000000))
    return 1
}

# pf_postqueue: Postfix's own view of the queue (postqueue -p through the
# showq service); 0 when it reports "Mail queue is empty".
pf_postqueue() {
    local out
    out=$(timeout 30 postqueue -c "$PF_CONF" -p 2>&1)
    printf '%s\n' "$out"
    [[ $out == *"Mail queue is empty"* ]]
}

# Direct children of the master, by pid (smtpd, cleanup, qmgr, ...).
pf_children() {
    [ -n "$PF_MASTER_PID" ] || return 0
    ps -o pid= --ppid "$PF_MASTER_PID" 2>/dev/null | tr -d ' '
}

pf_stop() {
    [ -n "${PF_CONF:-}" ] || return 0
    local kids p
    kids=$(pf_children)
    timeout 30 "$POSTFIX" -c "$PF_CONF" stop >>"$PF_DIR/start.log" 2>&1 || true
    if [ -n "$PF_MASTER_PID" ]; then
        bench_wait_exit "$PF_MASTER_PID" 15 || bench_stop_pid "$PF_MASTER_PID" 5
    fi
    # The master signals its children on the way out; make sure none of
    # the ones it had outlive it (they hold the temp dir open).
    # A pid is only killed while its environment still names our config
    # directory (so a recycled pid is left alone).
    for p in $kids; do
        bench_wait_exit "$p" 5 && continue
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null |
            grep -qxF "MAIL_CONFIG=$PF_CONF"; then
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    PF_MASTER_PID=
}
