# variant "haproxy": HAProxy 2.6, one thread, roundrobin, idle server
# connections reused (http-reuse always), no health checks (like nginx).
VARIANT_DESC[haproxy]="HAProxy 2.6, nbthread 1, roundrobin, http-reuse always"

variant_haproxy_start() {   # DIR PORT
    local dir=$1 port=$2 p i=0
    {
        cat <<CFG
global
    nbthread 1
    maxconn 8000
    pidfile $dir/haproxy.pid

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 120s
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response

frontend fe
    bind 127.0.0.1:$port
    default_backend be

backend be
    balance roundrobin
CFG
        for p in "${BACKEND_PORTS[@]}"; do
            i=$((i + 1))
            echo "    server b$i 127.0.0.1:$p"
        done
    } > "$dir/haproxy.cfg"
    "$HAPROXY" -c -q -f "$dir/haproxy.cfg" || die "haproxy: invalid config"
    env GLIBC_TUNABLES="$BENCH_GLIBC_TUNABLES" taskset -c "$PROXY_CPU" \
        "$HAPROXY" -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    VARIANT_PID=$!
    track "$VARIANT_PID" haproxy
    wait_port "$port" "$VARIANT_PID" || die "haproxy did not start"
}
