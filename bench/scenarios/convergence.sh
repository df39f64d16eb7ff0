# scenario "convergence": time from a change's write in Redis until the
# gateways applied it, for one gateway with 2 workers, one with 4 workers
# and two gateways (2 workers each) sharing the Redis.
#
# lib/convergence.c -m lag changes one instance's weight through the admin
# API of the first gateway (the admin API's script: its notice on P feed
# carries the change and Redis' time of the write) and reads, from every
# gateway, the lag it stamped when it applied the change ("lag_ms" of
# GET /gateway/services/NAME).  Applied means published in the zone: every
# worker routes with it from then on.
#
# As a cross-check, for the 4-worker gateway, the routing probe as before:
# a fresh service registered with the recipe (a change by hand: fetched),
# probed with a new connection each time (reuseport spreads them over the
# workers; add_header X-Worker $pid) until every worker pid answered 200.
#
#   BENCH_CONV_N (200) changes per setup, BENCH_CONV_TIMEOUT_MS (6000)

conv_gateway_conf() {   # DIR PORT WORKERS
    local dir=$1 port=$2 workers=${3:-2}
    echo "load_module $GATEWAY_MODULE;"
    nginx_main_conf "$dir" "$workers"
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
    local dir=$BENCH_TMP/convergence client port1 port2 port4 pid1 pid2 pid4
    mkdir -p "$dir/gw1" "$dir/gw2" "$dir/gw4"

    client=$dir/convergence
    cc -O2 -Wall -o "$client" "$BENCH_DIR/lib/convergence.c" \
        || die "cannot compile lib/convergence.c"

    start_redis "$dir/redis"
    start_backends 1 ""
    local addr=127.0.0.1:${BACKEND_PORTS[0]}

    port1=$(free_port); port2=$(free_port); port4=$(free_port)
    conv_gateway_conf "$dir/gw1" "$port1" 2 > "$dir/gw1/nginx.conf"
    conv_gateway_conf "$dir/gw2" "$port2" 2 > "$dir/gw2/nginx.conf"
    conv_gateway_conf "$dir/gw4" "$port4" 4 > "$dir/gw4/nginx.conf"
    start_nginx gateway1 "$dir/gw1" "" "$port1"; pid1=$NGINX_PID
    start_nginx gateway2 "$dir/gw2" "" "$port2"; pid2=$NGINX_PID
    start_nginx gateway4 "$dir/gw4" "" "$port4"; pid4=$NGINX_PID

    # warm up: every gateway must have its Redis link (a few registrations)
    "$client" -r "$REDIS_PORT" -g "$port1:2" -g "$port2:2" -g "$port4:4" -n 3 \
        -a "$addr" -p warm -t 10000 -s 100 > "$dir/warm.csv" \
        || die "convergence client failed"
    if grep -q ',-1,' "$dir/warm.csv"; then
        cat "$dir/warm.csv" >&2
        problem "convergence: warm-up registrations did not converge within 10 s"
    fi

    local raw=$RESULTS/convergence_raw.csv setup
    echo "setup,i,revision,all_us,p50_us,unknown,timeouts" > "$raw"

    log "convergence: $n changes, one gateway (2 workers)"
    "$client" -r "$REDIS_PORT" -g "$port1:2" -n "$n" -a "$addr" -p one -m lag -w 5 \
        -t "$tmo" -s 20 > "$dir/one.csv" || die "convergence client failed"
    log "convergence: $n changes, one gateway (4 workers)"
    "$client" -r "$REDIS_PORT" -g "$port4:4" -n "$n" -a "$addr" -p four -m lag -w 5 \
        -t "$tmo" -s 20 > "$dir/four.csv" || die "convergence client failed"
    log "convergence: $n changes, two gateways (2 workers each)"
    "$client" -r "$REDIS_PORT" -g "$port1:2" -g "$port2:2" -n "$n" -a "$addr" \
        -p two -m lag -w 5 -t "$tmo" -s 20 > "$dir/two.csv" || die "convergence client failed"
    log "convergence: $n registrations by hand, one gateway (4 workers), routing probes"
    "$client" -r "$REDIS_PORT" -g "$port4:4" -n "$n" -a "$addr" -p probe4 \
        -t "$tmo" -s 20 > "$dir/probe.csv" || die "convergence client failed"

    for setup in one four two; do
        tail -n +2 "$dir/$setup.csv" | sed "s/^/${setup}_gateway,/" >> "$raw"
    done

    check_nginx_log "$dir/gw1" gateway1
    check_nginx_log "$dir/gw2" gateway2
    check_nginx_log "$dir/gw4" gateway4

    local sum=$RESULTS/convergence.csv
    echo "setup,workers,changes,p50_ms,p95_ms,p99_ms,max_ms,unknown,timeouts" > "$sum"
    for setup in one four two; do
        local f=$dir/$setup.csv all to unk w
        all=$(awk -F, 'NR > 1 && $3 >= 0 { print $3 / 1000 }' "$f")
        to=$(awk -F, 'NR > 1 { s += $6 } END { print s + 0 }' "$f")
        unk=$(awk -F, 'NR > 1 { s += $5 } END { print s + 0 }' "$f")
        case $setup in one) w=2 ;; four) w=4 ;; two) w=4 ;; esac
        printf '%s_gateway,%s,%s,%.3f,%.3f,%.3f,%.3f,%s,%s\n' "$setup" "$w" "$n" \
            "$(percentile 50 <<<"$all")" "$(percentile 95 <<<"$all")" "$(percentile 99 <<<"$all")" \
            "$(percentile 100 <<<"$all")" "$unk" "$to" >> "$sum"
        [ "$to" -gt 0 ] && problem "convergence ($setup gateway): $to gateway answers not at the change's revision within ${tmo} ms"
        awk -F, 'NR > 1 && $3 >= 0 { print $3 / 1000 }' "$f" > "$dir/$setup.ms"
    done

    # the cross-check: routing on every worker, probed (an upper bound)
    local pall pfirst pto
    pall=$(awk -F, 'NR > 1 && $4 >= 0 { print $4 / 1000 }' "$dir/probe.csv")
    pfirst=$(awk -F, 'NR > 1 && $3 >= 0 { print $3 / 1000 }' "$dir/probe.csv")
    pto=$(awk -F, 'NR > 1 && $4 < 0' "$dir/probe.csv" | wc -l)
    printf 'probe_four_workers,4,%s,%.3f,%.3f,%.3f,%.3f,,%s\n' "$n" \
        "$(percentile 50 <<<"$pall")" "$(percentile 95 <<<"$pall")" "$(percentile 99 <<<"$pall")" \
        "$(percentile 100 <<<"$pall")" "$pto" >> "$sum"
    [ "$pto" -gt 0 ] && problem "convergence (probes): $pto of $n registrations not routed by every worker within ${tmo} ms"

    plot_histogram "$RESULTS/convergence.png" \
        "Change written to Redis to applied by the gateway ($n changes each)" \
        "propagation lag as the gateways stamp it (ms; the last bin holds everything above)" \
        0.05 4 "$dir/one.ms:one gateway, 2 workers" "$dir/four.ms:one gateway, 4 workers" \
        "$dir/two.ms:two gateways (the later one)"

    print_csv_table "$sum" "setup workers changes p50_ms p95_ms p99_ms max_ms unknown timeouts"
}
