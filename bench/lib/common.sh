# ngx_gateway benchmark suite: shared helpers (sourced by bench/run).
#
# Everything started through these helpers is recorded by PID and stopped by
# PID (TERM, then KILL) when bench/run exits, is interrupted or fails.  All
# files live in one mktemp directory ($BENCH_TMP) that is removed at the end
# unless BENCH_KEEP_TMP=1.  Every listener is on 127.0.0.1.

# ------------------------------------------------------------- settings ----

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
REPO=${REPO:-$(cd "$BENCH_DIR/.." && pwd)}
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/results}

NGINX=${NGINX:-/usr/sbin/nginx}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
WRK=${WRK:-wrk}
GATEWAY_MODULE=${GATEWAY_MODULE:-$REPO/build/ngx_http_gateway_module.so}
NGX_MODULES_DIR=${NGX_MODULES_DIR:-/usr/lib/nginx/modules}

# identical allocator settings for every proxy variant (see the notes: glibc
# heap trimming alone can cost a proxy ~35%)
BENCH_GLIBC_TUNABLES=${BENCH_GLIBC_TUNABLES:-glibc.malloc.trim_threshold=4194304:glibc.malloc.mmap_threshold=4194304}

# CPU layout: the proxy under test alone on PROXY_CPU, load generator,
# backends and Redis on LOAD_CPU.
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}

BENCH_TMP=""
declare -a BENCH_PIDS=()      # "pid:name", in start order

# ---------------------------------------------------------------- output ----

log()  { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }
hr()   { printf '%s\n' "------------------------------------------------------------------------------"; }

# ------------------------------------------------------- processes/temp ----

bench_init() {
    BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ngx-gateway-bench.XXXXXX")
    chmod 755 "$BENCH_TMP"     # nginx workers run as "nobody" when started as root
    trap bench_cleanup EXIT
    trap 'log "interrupted"; exit 130' INT
    trap 'log "terminated"; exit 143' TERM
    mkdir -p "$RESULTS"
}

bench_cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    stop_all
    if [ -n "$BENCH_TMP" ] && [ -d "$BENCH_TMP" ]; then
        if [ "${BENCH_KEEP_TMP:-0}" = 1 ] || [ "$rc" != 0 ]; then
            log "temporary files kept in $BENCH_TMP"
        else
            rm -rf "$BENCH_TMP"
        fi
    fi
    exit "$rc"
}

track() {   # track PID NAME
    BENCH_PIDS+=("$1:$2")
}

alive() { kill -0 "$1" 2>/dev/null; }

stop_pid() {    # stop_pid PID [SIGNAL]: signal, wait up to 10 s, then KILL
    local pid=$1 sig=${2:-TERM} i
    alive "$pid" || { wait "$pid" 2>/dev/null || true; untrack "$pid"; return 0; }
    kill -"$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        log "pid $pid did not stop, sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    untrack "$pid"
}

untrack() {
    local keep=() e
    for e in "${BENCH_PIDS[@]}"; do
        [ "${e%%:*}" = "$1" ] || keep+=("$e")
    done
    BENCH_PIDS=("${keep[@]}")
}

stop_all() {    # reverse start order
    local i e
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        e=${BENCH_PIDS[$i]}
        stop_pid "${e%%:*}"
    done
    BENCH_PIDS=()
}

# a free TCP port on 127.0.0.1 (bound, read, released)
free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                                      Proto => "tcp", Listen => 1, ReuseAddr => 1)
            or die "free_port: $!\n";
        print $s->sockport, "\n";'
}

# wait until something accepts on 127.0.0.1:PORT (or PID dies)
wait_port() {   # wait_port PORT PID [TIMEOUT_S]
    local port=$1 pid=$2 t=${3:-20} i
    for ((i = 0; i < t * 20; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        alive "$pid" || return 1
        sleep 0.05
    done
    return 1
}

now_ms() { date +%s%3N; }

# ------------------------------------------------------------------ redis ----

REDIS_PORT=""
REDIS_PID=""

start_redis() {     # start_redis DIR [CPU]
    local dir=$1 cpu=${2:-}
    mkdir -p "$dir"
    REDIS_PORT=$(free_port)
    local pin=()
    [ -n "$cpu" ] && pin=(taskset -c "$cpu")
    "${pin[@]}" "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 \
        --save "" --appendonly no --dir "$dir" --daemonize no \
        --logfile "$dir/redis.log" --protected-mode no \
        --notify-keyspace-events Ex &
    REDIS_PID=$!
    track "$REDIS_PID" redis
    wait_port "$REDIS_PORT" "$REDIS_PID" || die "redis did not start (see $dir/redis.log)"
}

rcli() { "$REDIS_CLI" -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# redis_pipe LOG: Redis commands on stdin, one a line, arguments separated
# by single spaces (so none may contain a space), sent with redis-cli --pipe;
# its output goes to LOG, and any error reply fails the run
redis_pipe() {
    perl -ne 'chomp; my @a = split / /; next unless @a;
              print "*" . @a . "\r\n", map { "\$" . length($_) . "\r\n$_\r\n" } @a' \
        | rcli --pipe > "$1" 2>&1 \
        || { cat "$1" >&2; die "redis-cli --pipe failed"; }
}

# register_instance SERVICE ID ADDRESS [TTL]: the spec's MULTI recipe.
# TTL 0 (default) = no EXPIRE, the instance never expires.
register_instance() {
    local svc=$1 id=$2 addr=$3 ttl=${4:-0} key="gateway:svc:$1:inst:$2"
    {
        echo MULTI
        echo "HSET $key address $addr weight 1 zone a state up ttl $ttl"
        [ "$ttl" != 0 ] && echo "EXPIRE $key $ttl"
        echo "SADD gateway:svc:$svc:ids $id"
        echo "SADD gateway:services $svc"
        echo "INCR gateway:svc:$svc:rev"
        echo "EVAL \"redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[1]), ARGV[1])\" 2 gateway:rev gateway:changes $svc"
        echo "PUBLISH gateway:events $svc"
        echo EXEC
    } | rcli >/dev/null
}

# ------------------------------------------------------------------ nginx ----

# the common top of every nginx config: own dir for everything, no access log
nginx_main_conf() {     # nginx_main_conf DIR WORKERS [MASTER(on|off)]
    local dir=$1 workers=$2 master=${3:-on}
    cat <<EOF
daemon off;
master_process $master;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log ${NGINX_LOG_LEVEL:-warn};
events { worker_connections 8192; multi_accept off; }
EOF
}

# BENCH_ACCESS_LOG=1 (failover scenario): a per-request log with the end
# time, status, every upstream attempt and the request time, instead of no
# access log
nginx_http_common() {   # nginx_http_common DIR
    local dir=$1
    if [ "${BENCH_ACCESS_LOG:-0}" = 1 ]; then
        cat <<EOF
    log_format bench '\$msec \$status "\$upstream_addr" "\$upstream_status" \$request_time';
    access_log $dir/access.log bench buffer=256k flush=1s;
EOF
    else
        echo "    access_log off;"
    fi
    cat <<EOF
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
EOF
    # BENCH_HTTP_EXTRA: more http-level directives for every nginx variant
    # (a diagnostic, e.g. "request_pool_size 8k;")
    [ -z "${BENCH_HTTP_EXTRA:-}" ] || echo "    $BENCH_HTTP_EXTRA"
}

# the proxy_pass location body shared by every nginx proxy variant
nginx_proxy_location() {    # nginx_proxy_location UPSTREAM
    cat <<EOF
            proxy_pass http://$1;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            proxy_connect_timeout 1s;
EOF
}

# start_nginx NAME DIR CPU PORT [nginx args...]: conf is DIR/nginx.conf;
# sets NGINX_PID.  Runs with BENCH_GLIBC_TUNABLES, pinned to CPU ("" = any).
start_nginx() {
    local name=$1 dir=$2 cpu=$3 port=$4
    shift 4
    local pin=()
    [ -n "$cpu" ] && pin=(taskset -c "$cpu")
    "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        2>"$dir/nginx-t.log" \
        || { cat "$dir/nginx-t.log" >&2; die "$name: nginx -t failed"; }
    env GLIBC_TUNABLES="$BENCH_GLIBC_TUNABLES" "${pin[@]}" \
        "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" "$@" &
    NGINX_PID=$!
    track "$NGINX_PID" "$name"
    wait_port "$port" "$NGINX_PID" \
        || { tail -n 20 "$dir/error.log" >&2; die "$name did not start"; }
}

# worker pids of an nginx master (children)
nginx_workers() { pgrep -P "$1" | tr '\n' ' '; }

# --------------------------------------------------------------- backends ----

declare -a BACKEND_PORTS=() BACKEND_PIDS=()

# start_backends N CPU [PORTS_EACH]: N single-process nginx backends
# (`return 200`), so that one can be killed by PID; each listens on
# PORTS_EACH ports (default 1).  BACKEND_PORTS lists every port (backend 1's
# first), BACKEND_PIDS one pid per backend.
start_backends() {
    local n=$1 cpu=$2 each=${3:-1} i j dir port ports
    BACKEND_PORTS=(); BACKEND_PIDS=()
    for ((i = 1; i <= n; i++)); do
        dir=$BENCH_TMP/backend$i-$RANDOM
        mkdir -p "$dir"
        ports=()
        for ((j = 0; j < each; j++)); do ports+=("$(free_port)"); done
        {
            nginx_main_conf "$dir" 1 off
            echo "http {"
            nginx_http_common "$dir"
            echo "    server {"
            # reuseport: the failover scenario's black hole joins a port
            for port in "${ports[@]}"; do
                echo "        listen 127.0.0.1:$port backlog=4096 reuseport;"
            done
            echo "        location / { return 200 \"backend $i\\n\"; }"
            echo "    }"
            echo "}"
        } > "$dir/nginx.conf"
        start_nginx "backend$i" "$dir" "$cpu" "${ports[0]}"
        BACKEND_PORTS+=("${ports[@]}")
        BACKEND_PIDS+=("$NGINX_PID")
    done
}

stop_backends() {
    local p
    for p in "${BACKEND_PIDS[@]}"; do stop_pid "$p"; done
    BACKEND_PORTS=(); BACKEND_PIDS=()
}

# -------------------------------------------------------------------- wrk ----

# run_wrk URL DURATION_S CONNECTIONS OUT [extra wrk args]: pinned to
# LOAD_CPU, one thread; OUT gets wrk's text plus the BENCH lines of
# lib/latency.lua (requests, errors, latency percentiles in us).
run_wrk() {
    local url=$1 dur=$2 conns=$3 out=$4
    shift 4
    taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$conns" -d"${dur}s" --timeout 5s \
        -s "$BENCH_DIR/lib/latency.lua" "$@" "$url" > "$out" 2>&1 || true
}

# wrk_field OUT KEY: value of a "BENCH KEY value" line
wrk_field() { awk -v k="$2" '$1 == "BENCH" && $2 == k { print $3; exit }' "$1"; }

# ------------------------------------------------------------------- misc ----

# proc_tree PID: PID and its children (an nginx master and its workers)
proc_tree() { echo "$1" $(pgrep -P "$1" || true); }

# proc_ticks PID...: summed utime + stime (clock ticks) of the processes
proc_ticks() {
    local p s=0 t
    for p in "$@"; do
        t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
        s=$((s + t))
    done
    echo "$s"
}

# core_ticks: "busy idle busy idle" of PROXY_CPU and LOAD_CPU (/proc/stat)
core_ticks() {
    awk -v a="cpu$PROXY_CPU" -v b="cpu$LOAD_CPU" '
        $1 == a { pa = ($2 + $3 + $4 + $7 + $8 + $9) " " ($5 + $6) }
        $1 == b { pb = ($2 + $3 + $4 + $7 + $8 + $9) " " ($5 + $6) }
        END { print pa, pb }' /proc/stat
}

# core_busy BEFORE AFTER (core_ticks outputs): "proxy_busy_pct load_busy_pct"
core_busy() {
    awk -v x="$1" -v y="$2" 'BEGIN {
        split(x, a, " "); split(y, b, " ")
        pb = b[1] - a[1]; pi = b[2] - a[2]; lb = b[3] - a[3]; li = b[4] - a[4]
        printf "%.0f %.0f\n", 100 * pb / (pb + pi + 1e-9), 100 * lb / (lb + li + 1e-9) }'
}

median() {  # median of the arguments (numbers)
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# percentile P (0..100, nearest rank) of numbers on stdin
percentile() {
    sort -g | awk -v p="$1" '{ a[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        i = int(p / 100 * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR
        print a[i] }'
}

machine_summary() {
    local model
    model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    printf '%s, nproc %s, %s MiB RAM, %s' "${model:-unknown}" "$(nproc)" \
        "$(awk '/MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo)" \
        "$(uname -sr)"
}

# problem TEXT: a module/benchmark problem worth reporting; goes to stderr
# and to bench/results/<scenario>.problems (shown in docs/performance.md)
CUR_SCENARIO=${CUR_SCENARIO:-misc}
problem() {
    log "PROBLEM: $*"
    printf '%s\n' "$*" >> "$RESULTS/$CUR_SCENARIO.problems"
}

# wait_200 URL TIMEOUT_S: until the URL answers 200
wait_200() {
    local url=$1 t=$2 i code
    for ((i = 0; i < t * 10; i++)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

# wait_registry PORT SERVICES INSTANCES T0_EPOCH TIMEOUT_S: prints
# "seconds polls" once GET /gateway/services lists SERVICES services holding
# INSTANCES instances in total, or "timeout polls services_seen instances_seen".
# With "backoff" the next poll waits twice as long as the last one took (at
# least 20 ms): a dump of 100,000 services takes the worker about 0.1 s
# under the zone lock, and polling it back to back would measure the polls
wait_registry() {   # wait_registry PORT SERVICES INSTANCES T0 TIMEOUT [backoff]
    perl -MHTTP::Tiny -MTime::HiRes=time,sleep -e '
        my ($port, $ns, $ni, $t0, $tmo, $backoff) = @ARGV;
        my $http = HTTP::Tiny->new(timeout => $backoff ? 30 : 10,
                                   keep_alive => 1);
        my ($polls, $seen, $insts) = (0, 0, 0);
        while (time - $t0 < $tmo) {
            my $t1 = time;
            my $r = $http->get("http://127.0.0.1:$port/gateway/services");
            my $took = time - $t1;
            $polls++;
            if ($r->{success}) {
                $seen = () = $r->{content} =~ /"name":/g;
                $insts = 0;
                $insts += $1 while $r->{content} =~ /"instances":(\d+)/g;
                if ($seen == $ns && $insts == $ni) {
                    printf "%.3f %d\n", time - $t0, $polls;
                    exit 0;
                }
            }
            sleep($backoff && $took * 2 > 0.02 ? $took * 2 : 0.02);
        }
        print "timeout $polls $seen $insts\n";
    ' "$@"
}

# cpu_ms PID: utime + stime of a process in ms
cpu_ms() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) * 1000 / hz }' "/proc/$1/stat"
}

# check_nginx_log DIR NAME: report alert/crit/emerg lines and worker crashes
check_nginx_log() {
    local f=$1/error.log
    [ -f "$f" ] || return 0
    if grep -Eq '\[(alert|crit|emerg)\]|exited on signal' "$f"; then
        grep -E '\[(alert|crit|emerg)\]|exited on signal' "$f" | head -5 >&2
        problem "$2: $(grep -Ec '\[(alert|crit|emerg)\]|exited on signal' "$f") alert/crit/emerg/crash lines in error.log, first: $(grep -E '\[(alert|crit|emerg)\]|exited on signal' "$f" | head -1)"
    fi
}

# print_csv_table CSV "col1 col2 ...": aligned table of the chosen columns
print_csv_table() {
    perl -MText::ParseWords=parse_line -e '
        my ($file, @want) = @ARGV;
        open my $fh, "<", $file or die "$file: $!\n";
        my @rows = map { chomp; [parse_line(",", 0, $_)] } <$fh>;
        my %idx; @idx{@{$rows[0]}} = 0 .. $#{$rows[0]};
        my @c = grep { exists $idx{$_} } @want;
        my @w = map { length } @c;
        for my $r (@rows[1 .. $#rows]) {
            for my $i (0 .. $#c) {
                my $l = length($r->[$idx{$c[$i]}] // "");
                $w[$i] = $l if $l > $w[$i];
            }
        }
        my $fmt = join("  ", map { "%-${_}s" } @w) . "\n";
        printf $fmt, @c;
        printf $fmt, map { "-" x $_ } @w;
        for my $r (@rows[1 .. $#rows]) { printf $fmt, map { $r->[$idx{$_}] // "" } @c }
    ' "$1" $2
}
