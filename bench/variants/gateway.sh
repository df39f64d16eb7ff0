# variant "gateway": ngx_gateway, service "users" synced from Redis, round
# robin.  Other balancing algorithms become new variants with one line each:
# the directive(s) go into the upstream block between gateway_service and
# keepalive, e.g.
#
#   VARIANT_DESC[gateway_lc]="ngx_gateway, least connections"
#   variant_gateway_lc_start() { gateway_variant_start "$1" "$2" "gateway_balance least_conn;"; }
#
# and the name goes into BENCH_VARIANTS (bench/run -h).
VARIANT_DESC[gateway]="ngx_gateway (Redis registry), round robin, keepalive 32"

variant_gateway_start() { gateway_variant_start "$1" "$2" ""; }

VARIANT_DESC[gateway_metrics]="ngx_gateway, round robin, with a gateway_metrics location (its observer counts every attempt)"
variant_gateway_metrics_start() {
    gateway_variant_start "$1" "$2" "" "location = /metrics { gateway_metrics; }"
}

# gateway_variant_start DIR PORT EXTRA_UPSTREAM_DIRECTIVES [EXTRA_SERVER]
#   optional environment: GW_SERVICE (users), GW_ZONE (16m), GW_WORKERS (1),
#   GW_REDIS_PORT ($REDIS_PORT), GW_REGISTRY_EXTRA (more gateway_registry
#   parameters, e.g. "resync=1h"), GW_HTTP_EXTRA (http-level directives)
gateway_variant_start() {
    local dir=$1 port=$2 extra=$3 sextra=${4:-}
    local svc=${GW_SERVICE:-users} zone=${GW_ZONE:-16m} workers=${GW_WORKERS:-1}
    local rport=${GW_REDIS_PORT:-$REDIS_PORT} rextra=${GW_REGISTRY_EXTRA:-}
    {
        echo "load_module $GATEWAY_MODULE;"
        nginx_main_conf "$dir" "$workers"
        echo "http {"
        nginx_http_common "$dir"
        echo "    gateway_registry zone=gw:$zone redis=redis://127.0.0.1:$rport${rextra:+ $rextra};"
        [ -n "${GW_HTTP_EXTRA:-}" ] && echo "    $GW_HTTP_EXTRA"
        echo "    upstream gw {"
        echo "        gateway_service $svc;"
        [ -n "$extra" ] && echo "        $extra"
        echo "        keepalive 32;"
        echo "    }"
        echo "    server {"
        echo "        listen 127.0.0.1:$port backlog=4096;"
        echo "        location / {"
        nginx_proxy_location gw
        echo "        }"
        echo "        location /gateway/ { gateway_admin; }"
        [ -n "$sextra" ] && echo "        $sextra"
        echo "    }"
        echo "}"
    } > "$dir/nginx.conf"
    start_nginx gateway "$dir" "$PROXY_CPU" "$port"
    VARIANT_PID=$NGINX_PID
}
