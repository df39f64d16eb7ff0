#!/usr/bin/env bash
#
# ngx_gateway — end-to-end demo (`make run` calls this after building).
#
# Starts, all on 127.0.0.1 and inside one temporary directory:
#   * redis-server (no persistence)            — the service registry
#   * four demo service instances (nginx+njs)  — users-1 .. users-4 of service "users"
#   * the gateway (Debian nginx + build/ngx_http_gateway_module.so, conf.d/gateway.conf)
# then registers instances (admin API and raw Redis), sends traffic through the
# gateway and shows balancing, a new instance joining and an instance leaving.
#
# Environment:
#   RUN_ONCE=1          run the demonstration and exit (0 = every check passed)
#   GATEWAY_WORKERS=N   gateway worker processes (default 2)
#   KEEP_TMP=1          keep the temporary directory (configs, logs) on exit
#   NGINX, REDIS_SERVER, REDIS_CLI, GATEWAY_MODULE   override binaries / module path
#
# Everything started here is stopped by PID on exit, Ctrl-C or SIGTERM.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE=${GATEWAY_MODULE:-$REPO/build/ngx_http_gateway_module.so}
NGINX=${NGINX:-/usr/sbin/nginx}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
NJS_MODULE=/usr/lib/nginx/modules/ngx_http_js_module.so
RUN_ONCE=${RUN_ONCE:-0}
WORKERS=${GATEWAY_WORKERS:-2}
KEEP_TMP=${KEEP_TMP:-0}

SERVICE=users
TMP=""
FAILED=0
declare -a PROCS=()          # "name:pid", in start order

# ---------------------------------------------------------------- output ----

if [ -t 1 ]; then
    B=$'\033[1m'; G=$'\033[32m'; R=$'\033[31m'; Y=$'\033[33m'; N=$'\033[0m'
else
    B=""; G=""; R=""; Y=""; N=""
fi

step()  { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
info()  { printf '    %s\n' "$*"; }
ok()    { printf '    %sOK%s   %s\n' "$G" "$N" "$*"; }
bad()   { printf '    %sFAIL%s %s\n' "$R" "$N" "$*"; FAILED=1; }
warn()  { printf '    %sNOTE%s %s\n' "$Y" "$N" "$*"; }

show_log() {    # show_log FILE [LINES]
    if [ -s "$1" ]; then
        printf '    --- last lines of %s ---\n' "$1"
        tail -n "${2:-20}" "$1" | sed 's/^/    | /'
    fi
}

die() {
    printf '\n%sERROR:%s %s\n' "$R" "$N" "$*" >&2
    if [ -n "$TMP" ]; then
        show_log "$TMP/gateway/error.log" 30 >&2
    fi
    exit 1
}

# --------------------------------------------------------------- cleanup ----

alive() { kill -0 "$1" 2>/dev/null; }

stop_proc() {   # stop_proc NAME PID
    local name=$1 pid=$2 i
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        printf '    %s (pid %s) did not stop, sending SIGKILL\n' "$name" "$pid"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? i entry
    trap - EXIT INT TERM
    if [ "${#PROCS[@]}" -gt 0 ]; then
        printf '\n%s==> stopping%s' "$B" "$N"
        for (( i=${#PROCS[@]}-1; i>=0; i-- )); do
            entry=${PROCS[$i]}
            printf ' %s' "${entry%%:*}"
            stop_proc "${entry%%:*}" "${entry##*:}"
        done
        printf '\n'
    fi
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "$KEEP_TMP" = 1 ]; then
            printf '    kept %s\n' "$TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

track() { PROCS+=("$1:$2"); }

# ----------------------------------------------------------------- checks ---

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (${2:-})"; }

[ -f "$MODULE" ]     || die "$MODULE not found — run 'make' first"
[ -x "$NGINX" ]      || die "$NGINX not found (Debian package nginx)"
[ -f "$NJS_MODULE" ] || die "$NJS_MODULE not found (Debian package libnginx-mod-http-js)"
need "$REDIS_SERVER" "Debian package redis-server"
need "$REDIS_CLI"    "Debian package redis-tools"
need curl
need perl

MODULE=$(cd "$(dirname "$MODULE")" && pwd)/$(basename "$MODULE")

# -------------------------------------------------------------- temp dir ----

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ngx_gateway.XXXXXX")
# nginx workers drop privileges (user nobody when started as root): let them in.
chmod 0755 "$TMP"

# Free loopback ports: bind them all at once (port 0), print, release.
free_ports() {
    perl -MIO::Socket::INET -e '
        my @s;
        for (1 .. $ARGV[0]) {
            my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                                          Proto => "tcp", Listen => 1)
                or die "cannot bind a port: $!\n";
            push @s, $s;
            print $s->sockport, "\n";
        }' "$1"
}

mapfile -t PORTS < <(free_ports 6)
[ "${#PORTS[@]}" -eq 6 ] || die "could not pick free ports"
GW_PORT=${PORTS[0]}
REDIS_PORT=${PORTS[1]}
declare -A INST_PORT=(
    [users-1]=${PORTS[2]} [users-2]=${PORTS[3]}
    [users-3]=${PORTS[4]} [users-4]=${PORTS[5]}
)

GW="http://127.0.0.1:$GW_PORT"
ADMIN="$GW/gateway"

wait_http() {   # wait_http URL PID SECONDS — until URL answers anything
    local url=$1 pid=$2 tries=$(( $3 * 10 )) i
    for (( i=0; i<tries; i++ )); do
        alive "$pid" || return 1
        if curl -s -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

rcli() { "$REDIS_CLI" -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

printf '%sngx_gateway demo%s  (temp dir %s)\n' "$B" "$N" "$TMP"
info "module: $MODULE"

# ------------------------------------------------------------------ redis ---

step "starting redis-server on 127.0.0.1:$REDIS_PORT (no persistence)"
mkdir -p "$TMP/redis"
"$REDIS_SERVER" --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save '' --appendonly no --daemonize no \
    --dir "$TMP/redis" --logfile "$TMP/redis/redis.log" \
    >"$TMP/redis/stdout.log" 2>&1 &
REDIS_PID=$!
track redis "$REDIS_PID"
for i in $(seq 1 50); do
    alive "$REDIS_PID" || break
    [ "$(rcli ping 2>/dev/null || true)" = PONG ] && break
    sleep 0.1
done
[ "$(rcli ping 2>/dev/null || true)" = PONG ] || {
    show_log "$TMP/redis/redis.log"; die "redis-server did not start"; }
ok "redis pid $REDIS_PID"

# ---------------------------------------------------------- demo services ---

start_demo() {  # start_demo ID
    local id=$1 port=${INST_PORT[$1]} prefix=$TMP/demo/$1 pid
    mkdir -p "$prefix"
    sed -e "s|@SERVICE@|$SERVICE|g" -e "s|@INSTANCE@|$id|g" -e "s|@PORT@|$port|g" \
        -e "s|@PREFIX@|$prefix|g" -e "s|@DEMO_DIR@|$REPO/demo|g" \
        "$REPO/demo/service.conf.in" >"$prefix/nginx.conf"
    "$NGINX" -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
        >"$prefix/stderr.log" 2>&1 &
    pid=$!
    track "$id" "$pid"
    if ! wait_http "http://127.0.0.1:$port/" "$pid" 5; then
        show_log "$prefix/stderr.log"; show_log "$prefix/error.log"
        die "demo instance $id did not start"
    fi
    ok "$id  http://127.0.0.1:$port/  (pid $pid)"
}

step "starting demo service instances (nginx + njs)"
for id in users-1 users-2 users-3 users-4; do
    start_demo "$id"
done

# ---------------------------------------------------------------- gateway ---

step "starting the gateway on 127.0.0.1:$GW_PORT ($WORKERS workers)"
mkdir -p "$TMP/gateway"
sed -e "s|@GATEWAY_PORT@|$GW_PORT|g" -e "s|@REDIS_PORT@|$REDIS_PORT|g" \
    -e "s|@STATE_DIR@|$TMP/gateway|g" \
    "$REPO/conf.d/gateway.conf" >"$TMP/gateway/gateway.conf"
cat >"$TMP/gateway/nginx.conf" <<EOF
load_module $MODULE;

daemon off;
master_process on;
worker_processes $WORKERS;
pid $TMP/gateway/nginx.pid;
error_log $TMP/gateway/error.log notice;

events {
    worker_connections 1024;
}

http {
    log_format gateway '\$remote_addr "\$request" \$status '
                       'upstream=\$upstream_addr upstream_status=\$upstream_status '
                       'rt=\$request_time';
    access_log $TMP/gateway/access.log gateway;

    client_body_temp_path $TMP/gateway/client_body_temp;
    proxy_temp_path       $TMP/gateway/proxy_temp;
    fastcgi_temp_path     $TMP/gateway/fastcgi_temp;
    uwsgi_temp_path       $TMP/gateway/uwsgi_temp;
    scgi_temp_path        $TMP/gateway/scgi_temp;

    include $TMP/gateway/gateway.conf;
}
EOF
GW_NGINX=("$NGINX" -p "$TMP/gateway/" -c "$TMP/gateway/nginx.conf" -e "$TMP/gateway/error.log")
if ! "${GW_NGINX[@]}" -t >"$TMP/gateway/test.log" 2>&1; then
    sed 's/^/    | /' "$TMP/gateway/test.log"
    die "gateway configuration test failed"
fi
"${GW_NGINX[@]}" >"$TMP/gateway/stderr.log" 2>&1 &
GW_PID=$!
track gateway "$GW_PID"
if ! wait_http "$GW/" "$GW_PID" 10; then
    show_log "$TMP/gateway/stderr.log"
    die "gateway did not start"
fi
ok "gateway pid $GW_PID   config: $TMP/gateway/nginx.conf (+ gateway.conf)"
for page in dashboard metrics; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$GW/$page" \
           || true)
    if [ "$code" = 200 ]; then
        ok "$page: $GW/$page"
    else
        bad "$page: $GW/$page answered HTTP $code"
    fi
done

# ------------------------------------------------------------ registering ---

# http_req METHOD URL [BODY] — sets HTTP_CODE and HTTP_BODY
http_req() {
    local args=(-s --max-time 5 -o "$TMP/resp.body" -w '%{http_code}' -X "$1")
    if [ $# -ge 3 ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$3")
    fi
    HTTP_CODE=$(curl "${args[@]}" "$2" || true)
    HTTP_BODY=$(cat "$TMP/resp.body" 2>/dev/null || true)
    rm -f "$TMP/resp.body"
}

admin_register() {  # admin_register ID — PUT through the admin API
    local id=$1 body
    body="{\"address\":\"127.0.0.1:${INST_PORT[$id]}\",\"weight\":1,\"zone\":\"a\",\"state\":\"up\",\"ttl\":0,\"metadata\":{\"demo\":\"true\"}}"
    info "curl -X PUT $ADMIN/services/$SERVICE/instances/$id -d '$body'"
    http_req PUT "$ADMIN/services/$SERVICE/instances/$id" "$body"
    case $HTTP_CODE in
        200|201) ok "$HTTP_CODE $HTTP_BODY" ;;
        *)       die "registering $id through the admin API: HTTP $HTTP_CODE $HTTP_BODY" ;;
    esac
}

redis_register() {  # redis_register ID — the raw Redis recipe of docs/registry.md (ttl 10)
    local id=$1 out
    info "redis-cli MULTI / HSET gateway:svc:$SERVICE:inst:$id ... / EXPIRE 10 / SADD / INCR / PUBLISH / EXEC"
    out=$(rcli <<EOF2
MULTI
HSET gateway:svc:$SERVICE:inst:$id address 127.0.0.1:${INST_PORT[$id]} weight 1 zone a state up ttl 10
EXPIRE gateway:svc:$SERVICE:inst:$id 10
SADD gateway:svc:$SERVICE:ids $id
SADD gateway:services $SERVICE
INCR gateway:svc:$SERVICE:rev
PUBLISH gateway:events $SERVICE
EXEC
EOF2
    ) || die "redis-cli failed: $out"
    ok "$(printf '%s' "$out" | tr '\n' ' ')"
}

start_heartbeat() {  # start_heartbeat ID — EXPIRE every 3 s so the ttl-10 record stays
    local id=$1
    (
        sp=""
        trap '[ -n "$sp" ] && kill "$sp" 2>/dev/null; exit 0' TERM
        while :; do
            sleep 3 & sp=$!
            wait "$sp" || true
            rcli EXPIRE "gateway:svc:$SERVICE:inst:$id" 10 >/dev/null 2>&1 || true
        done
    ) &
    track "heartbeat-$id" "$!"
    ok "heartbeat for $id: redis-cli EXPIRE gateway:svc:$SERVICE:inst:$id 10 every 3 s (pid $!)"
}

registered_ids() {  # ids the gateway's admin API reports for $SERVICE
    curl -s --max-time 5 "$ADMIN/services/$SERVICE" 2>/dev/null \
        | grep -o '"id" *: *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/' | sort | tr '\n' ' ' || true
}

wait_registered() {  # wait_registered "ID..." SECONDS — until the admin API lists them all
    local want=$1 tries=$(( $2 * 5 )) i have id missing
    for (( i=0; i<tries; i++ )); do
        have=" $(registered_ids)"
        missing=""
        for id in $want; do
            case $have in *" $id "*) ;; *) missing="$missing $id" ;; esac
        done
        [ -z "$missing" ] && return 0
        sleep 0.2
    done
    warn "admin API still misses:$missing (lists:${have:- nothing})"
    return 1
}

step "registering instances of service \"$SERVICE\""
admin_register users-1
admin_register users-2
redis_register users-3
start_heartbeat users-3
if wait_registered "users-1 users-2 users-3" 12; then
    ok "gateway sees: $(registered_ids)"
else
    bad "the gateway did not pick up all registrations"
fi

# ---------------------------------------------------------------- traffic ---

declare -A COUNT=()
ROUND_OK=0

# send_round N PATH — N requests through the gateway, prints who answered
send_round() {
    local n=$1 path=$2 i code body inst up
    COUNT=()
    ROUND_OK=0
    for (( i=1; i<=n; i++ )); do
        code=$(curl -s --max-time 5 -D "$TMP/resp.hdr" -o "$TMP/resp.body" \
                    -w '%{http_code}' "$GW/svc/$SERVICE$path" || true)
        body=$(cat "$TMP/resp.body" 2>/dev/null || true)
        inst=$(printf '%s' "$body" | sed -n 's/.*"instance":"\([^"]*\)".*/\1/p')
        up=$(tr -d '\r' <"$TMP/resp.hdr" 2>/dev/null \
                | sed -n 's/^[Xx]-[Gg]ateway-[Uu]pstream: *//p' | head -n 1 || true)
        inst=${inst:--}
        printf '    #%-2d  %s  %-8s  upstream %s\n' "$i" "$code" "$inst" "${up:--}"
        if [ "$code" = 200 ] && [ "$inst" != - ]; then
            COUNT[$inst]=$(( ${COUNT[$inst]:-0} + 1 ))
            ROUND_OK=$(( ROUND_OK + 1 ))
        fi
    done
    rm -f "$TMP/resp.hdr" "$TMP/resp.body"
    local summary="" k
    for k in $(printf '%s\n' "${!COUNT[@]}" | sort); do
        summary="$summary $k=${COUNT[$k]}"
    done
    info "answered by:${summary:- nobody}   ($ROUND_OK/$n OK)"
}

# round_until "TITLE" PATH CHECK-FUNCTION ROUNDS — repeat a round of 12 until CHECK passes
round_until() {
    local title=$1 path=$2 check=$3 rounds=$4 r
    for (( r=1; r<=rounds; r++ )); do
        if [ "$r" -gt 1 ]; then
            warn "not yet — retrying in 1 s (registry propagation), round $r/$rounds"
            sleep 1
        fi
        send_round 12 "$path"
        if "$check"; then
            ok "$title"
            return 0
        fi
    done
    bad "$title"
    return 1
}

has()    { [ "${COUNT[$1]:-0}" -gt 0 ]; }
all_ok() { [ "$ROUND_OK" -eq 12 ]; }

check_initial() { all_ok && has users-1 && has users-2 && has users-3; }
check_joined()  { all_ok && has users-4; }
check_left()    { all_ok && ! has users-1 && has users-2 && has users-3 && has users-4; }

step "12 requests: GET $GW/svc/$SERVICE/hello"
round_until "balanced across users-1, users-2 (admin API) and users-3 (raw Redis)" \
    /hello check_initial 5 || true
if [ "${#COUNT[@]}" -lt 2 ]; then
    bad "no balancing: fewer than 2 instances answered"
fi

step "a new instance joins: registering users-4 (admin API)"
admin_register users-4
wait_registered "users-1 users-2 users-3 users-4" 12 || true
round_until "users-4 gets traffic" /hello check_joined 8 || true

step "an instance leaves: DELETE users-1 (admin API)"
info "curl -X DELETE $ADMIN/services/$SERVICE/instances/users-1"
http_req DELETE "$ADMIN/services/$SERVICE/instances/users-1"
if [ "$HTTP_CODE" = 200 ]; then
    ok "$HTTP_CODE $HTTP_BODY"
else
    bad "DELETE answered HTTP $HTTP_CODE $HTTP_BODY"
fi
round_until "users-1 gets no more traffic" /hello check_left 8 || true

step "unknown service: GET $GW/svc/nosuchservice/"
http_req GET "$GW/svc/nosuchservice/"
if [ "$HTTP_CODE" = 503 ]; then
    ok "503 as expected (no live instance)"
else
    warn "expected 503, got HTTP $HTTP_CODE"
fi

step "registry as the admin API shows it"
pretty() { if command -v python3 >/dev/null 2>&1; then python3 -m json.tool 2>/dev/null || cat; else cat; fi; }
info "GET $ADMIN/services"
curl -s --max-time 5 "$ADMIN/services" | pretty | sed 's/^/    | /'
info "GET $ADMIN/services/$SERVICE"
curl -s --max-time 5 "$ADMIN/services/$SERVICE" | pretty | sed 's/^/    | /'

# ---------------------------------------------------------------- result ----

if [ "$FAILED" != 0 ]; then
    printf '\n%sDEMO FAILED%s — see the FAIL lines above\n' "$R" "$N"
    show_log "$TMP/gateway/error.log" 30
    [ "$RUN_ONCE" = 1 ] && exit 1
else
    printf '\n%sDEMO OK%s\n' "$G" "$N"
fi

[ "$RUN_ONCE" = 1 ] && exit 0

cat <<EOF

${B}Try it yourself${N} (everything keeps running until Ctrl-C):

  Gateway        curl -i $GW/svc/$SERVICE/hello
                 for i in \$(seq 6); do curl -s $GW/svc/$SERVICE/; done
  Dashboard      $GW/dashboard     (open in a browser on this machine)
  Metrics        curl -s $GW/metrics
  Admin API      curl -s $ADMIN/services
                 curl -s $ADMIN/services/$SERVICE
  Fault injection (answered by the instance; 502/503 are retried on another instance)
                 curl -i '$GW/svc/$SERVICE/slow?delay=500'
                 curl -i '$GW/svc/$SERVICE/x?fail=503'        # every instance fails -> 503 after 3 tries
                 curl -i '$GW/svc/$SERVICE/x?fail_rate=0.5'   # mostly hidden by retries
                 curl -i '$GW/svc/$SERVICE/x?fail=500'        # 500 is not retried
  Weights / drain
                 curl -X PATCH -d '{"weight":5}'       $ADMIN/services/$SERVICE/instances/users-2
                 curl -X PATCH -d '{"state":"drain"}'  $ADMIN/services/$SERVICE/instances/users-3
  Re-register users-1 (its demo nginx still runs on port ${INST_PORT[users-1]})
                 curl -X PUT -d '{"address":"127.0.0.1:${INST_PORT[users-1]}"}' $ADMIN/services/$SERVICE/instances/users-1
  Redis          redis-cli -p $REDIS_PORT keys 'gateway:*'
  Demo instance  curl -s http://127.0.0.1:${INST_PORT[users-2]}/direct
  Logs           $TMP/gateway/error.log  $TMP/gateway/access.log

EOF
printf 'Press Ctrl-C to stop.\n'

# from here on Ctrl-C is how the demo ends: stop everything, exit 0
trap 'exit 0' INT

while :; do
    for entry in "${PROCS[@]}"; do
        case ${entry%%:*} in
            gateway|redis)
                alive "${entry##*:}" || die "${entry%%:*} (pid ${entry##*:}) exited unexpectedly"
                ;;
        esac
    done
    sleep 1 &
    wait $! || true
done
