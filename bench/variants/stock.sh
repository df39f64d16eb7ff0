# variant "stock": stock nginx upstream (static servers, round robin) +
# keepalive, the baseline every ratio is computed against.
VARIANT_DESC[stock]="stock nginx 1.22 static upstream, round robin, keepalive 32"

variant_stock_start() {     # DIR PORT
    local dir=$1 port=$2 p
    {
        nginx_main_conf "$dir" 1
        echo "http {"
        nginx_http_common "$dir"
        echo "    upstream stock {"
        for p in "${BACKEND_PORTS[@]}"; do
            echo "        server 127.0.0.1:$p max_fails=1 fail_timeout=10s;"
        done
        echo "        keepalive 32;"
        echo "    }"
        echo "    server {"
        echo "        listen 127.0.0.1:$port backlog=4096;"
        echo "        location / {"
        nginx_proxy_location stock
        echo "        }"
        # the gateway variants' admin location: the same location tree,
        # so that finding the location costs the same in every variant
        echo "        location /gateway/ { return 404; }"
        echo "    }"
        echo "}"
    } > "$dir/nginx.conf"
    start_nginx stock "$dir" "$PROXY_CPU" "$port"
    VARIANT_PID=$NGINX_PID
}
