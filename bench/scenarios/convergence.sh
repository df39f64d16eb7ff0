# scenario "convergence": time from a registration written to Redis (the
# spec's MULTI recipe) until every worker routes to it, for one gateway with
# 2 workers and for two gateways (2 workers each) sharing the Redis.
#
# Each gateway listens with reuseport (new connections spread over its
# workers) and has
#     upstream gw { gateway_service $arg_s; }
#     location /probe/ { proxy_pass http://gw; add_header X-Worker $pid always; }
# lib/convergence.c registers a fresh service per iteration and probes with a
# new connection each time until every worker pid has answered 200.
#
#   BENCH_CONV_N (200) registrations per setup, BENCH_CONV_TIMEOUT_MS (6000)

conv_gateway_conf() {   # DIR PORT
    local dir=$1 port=$2
    echo "load_module $GATEWAY_MODULE;"
    nginx_main_conf "$dir" 2
    cat <<EOF
http {
$(nginx_http_common "$dir")
    gateway_registry zone=gw:16m redis=redis://127.0.0.1:$REDIS_PORT;
    upstream gw {
        gateway_service \$arg_s;
        keepalive 16;
    }
    server {
        listen 127.0.0.1:$port reuseport backlog=4096;
        location /probe/ {
$(nginx_proxy_location gw)
            add_header X-Worker \$pid always;
        }
        location /gateway/ { gateway_admin; }
    }
}
EOF
}

scenario_convergence() {
    local n=${BENCH_CONV_N:-200} tmo=${BENCH_CONV_TIMEOUT_MS:-6000}
    local dir=$BENCH_TMP/convergence client port1 port2 pid1 pid2
    mkdir -p "$dir/gw1" "$dir/gw2"

    client=$dir/convergence
    cc -O2 -Wall -o "$client" "$BENCH_DIR/lib/convergence.c" \
        || die "cannot compile lib/convergence.c"

    start_redis "$dir/redis"
    start_backends 1 ""
    local addr=127.0.0.1:${BACKEND_PORTS[0]}

    port1=$(free_port); port2=$(free_port)
    conv_gateway_conf "$dir/gw1" "$port1" > "$dir/gw1/nginx.conf"
    conv_gateway_conf "$dir/gw2" "$port2" > "$dir/gw2/nginx.conf"
    start_nginx gateway1 "$dir/gw1" "" "$port1"; pid1=$NGINX_PID
    start_nginx gateway2 "$dir/gw2" "" "$port2"; pid2=$NGINX_PID

    # warm up: both gateways must have their Redis link (a few registrations)
    "$client" -r "$REDIS_PORT" -g "$port1:2" -g "$port2:2" -n 3 -a "$addr" \
        -p warm -t 10000 -s 100 > "$dir/warm.csv" \
        || die "convergence client failed"
    if grep -q ',-1,' "$dir/warm.csv"; then
        cat "$dir/warm.csv" >&2
        problem "convergence: warm-up registrations did not converge within 10 s"
    fi

    local raw=$RESULTS/convergence_raw.csv setup
    echo "setup,i,service,first_us,all_us,probes" > "$raw"

    log "convergence: $n registrations, one gateway (2 workers)"
    "$client" -r "$REDIS_PORT" -g "$port1:2" -n "$n" -a "$addr" -p one \
        -t "$tmo" -s 20 > "$dir/one.csv" || die "convergence client failed"
    log "convergence: $n registrations, two gateways (2 workers each)"
    "$client" -r "$REDIS_PORT" -g "$port1:2" -g "$port2:2" -n "$n" -a "$addr" \
        -p two -t "$tmo" -s 20 > "$dir/two.csv" || die "convergence client failed"

    for setup in one two; do
        tail -n +2 "$dir/$setup.csv" | sed "s/^/${setup}_gateway,/" >> "$raw"
    done

    check_nginx_log "$dir/gw1" gateway1
    check_nginx_log "$dir/gw2" gateway2

    local sum=$RESULTS/convergence.csv
    echo "setup,workers,registrations,p50_ms,p95_ms,p99_ms,max_ms,first_worker_p50_ms,first_worker_p99_ms,timeouts,probes_p50" > "$sum"
    for setup in one two; do
        local f=$dir/$setup.csv all first to w
        all=$(awk -F, 'NR > 1 && $4 >= 0 { print $4 / 1000 }' "$f")
        first=$(awk -F, 'NR > 1 && $3 >= 0 { print $3 / 1000 }' "$f")
        to=$(awk -F, 'NR > 1 && $4 < 0' "$f" | wc -l)
        w=$([ $setup = one ] && echo 2 || echo 4)
        printf '%s_gateway,%s,%s,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%s,%s\n' "$setup" "$w" "$n" \
            "$(percentile 50 <<<"$all")" "$(percentile 95 <<<"$all")" "$(percentile 99 <<<"$all")" \
            "$(percentile 100 <<<"$all")" \
            "$(percentile 50 <<<"$first")" "$(percentile 99 <<<"$first")" \
            "$to" "$(awk -F, 'NR > 1 { print $5 }' "$f" | percentile 50)" >> "$sum"
        [ "$to" -gt 0 ] && problem "convergence ($setup gateway): $to of $n registrations not routed by every worker within ${tmo} ms"
        awk -F, 'NR > 1 && $4 >= 0 { print $4 / 1000 }' "$f" > "$dir/$setup.ms"
    done

    plot_histogram "$RESULTS/convergence.png" \
        "Registration to routing on every worker ($n registrations each)" \
        "time from the Redis write (ms; the last bin holds everything above)" \
        0.25 20 "$dir/one.ms:one gateway, 2 workers" "$dir/two.ms:two gateways, 4 workers"

    print_csv_table "$sum" "setup workers registrations p50_ms p95_ms p99_ms max_ms first_worker_p50_ms first_worker_p99_ms timeouts probes_p50"
}
