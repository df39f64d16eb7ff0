# scenario "gateways": N gateways (one worker each) share one Redis holding
# SERVICES x INSTANCES (1,000 x 10 = 10,000 instances, written as today's
# data: the gateways adopt it).  For each N in BENCH_GW_COUNTS:
#   - Redis CPU (INFO cpu: user + sys) with the gateways idle, less Redis's
#     own idle CPU measured before they started, per gateway
#   - Redis CPU while RATE changes per second are written, one instance's
#     weight of one service each: BENCH_GW_WRITER=admin (default,
#     lib/changes_admin.pl: PATCH through the admin API of up to 8 of the
#     gateways, whose script publishes the change itself on P feed: each
#     gateway applies it without a fetch) or recipe (lib/changes.pl: the
#     recipe, pipelined to Redis; a change by hand, so each gateway fetches
#     the whole service); what the scripts and PUBLISH cost Redis
#     meanwhile, from INFO commandstats
#   - convergence meanwhile: lib/convergence.c -m lag changes one instance
#     of service "conv" through the admin API of the first gateway, and
#     reads from each of the N gateways the lag it stamped when it applied
#     the change; conv_* is the largest of the N (convergence to all),
#     lag_* the distribution over every gateway and change; cpu_busy_pct
#     and steal_pct: the machine's CPUs meanwhile (/proc/stat), busy and
#     taken by the hypervisor (a tail that comes with steal is the VM's)
#
#   BENCH_GW_COUNTS ("1 10 50 100") BENCH_GW_SERVICES (1000)
#   BENCH_GW_INSTANCES (10) BENCH_GW_IDLE (15 s) BENCH_GW_RATE (100)
#   BENCH_GW_CHANGE_S (15 s) BENCH_GW_CONV_N (100) BENCH_GW_WRITER (admin)

# cmdstat FILE COMMAND FIELD: calls or usec of one command in INFO commandstats
cmdstat() {
    awk -F'[:,=]' -v c="cmdstat_$2" -v f="$3" \
        '$1 == c { for (i = 2; i < NF; i += 2) if ($i == f) v = $(i + 1) }
         END { print v + 0 }' "$1"
}

# cpu_ticks: the machine's CPU ticks, "total idle+iowait steal" (/proc/stat)
cpu_ticks() {
    awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i;
                       print t, $5 + $6, $9; exit }' /proc/stat
}

# redis_cpu_ms: Redis's own CPU (user + sys) in ms, from INFO cpu
redis_cpu_ms() {
    rcli INFO cpu | awk -F: '/^used_cpu_(user|sys):/ { s += $2 }
                             END { printf "%.3f", s * 1000 }'
}

gw_many_conf() {    # DIR PORT
    local dir=$1 port=$2
    echo "load_module $GATEWAY_MODULE;"
    nginx_main_conf "$dir" 1
    cat <<EOF
http {
$(nginx_http_common "$dir")
    gateway_registry zone=gw:16m redis=redis://127.0.0.1:$REDIS_PORT;
    upstream gw {
        gateway_service \$arg_s;
    }
    server {
        listen 127.0.0.1:$port backlog=1024;
        location /probe/ {
$(nginx_proxy_location gw)
            add_header X-Worker \$pid always;
        }
        location /gateway/ { gateway_admin; }
    }
}
EOF
}

scenario_gateways() {
    local counts=${BENCH_GW_COUNTS:-1 10 50 100}
    local ns=${BENCH_GW_SERVICES:-1000} ni=${BENCH_GW_INSTANCES:-10}
    local idle=${BENCH_GW_IDLE:-15} rate=${BENCH_GW_RATE:-100}
    local csecs=${BENCH_GW_CHANGE_S:-15} nconv=${BENCH_GW_CONV_N:-100}
    local dir=$BENCH_TMP/gateways client n i
    mkdir -p "$dir" "$BENCH_TMP/scale"    # scale_populate's log

    client=$dir/convergence
    cc -O2 -Wall -o "$client" "$BENCH_DIR/lib/convergence.c" \
        || die "cannot compile lib/convergence.c"

    start_backends 1 "" 4
    local addr=127.0.0.1:${BACKEND_PORTS[0]}

    local sum=$RESULTS/gateways.csv
    [ "${BENCH_GW_WRITER:-admin}" = recipe ] && sum=$RESULTS/gateways_recipe.csv
    echo "gateways,instances,sync_all_s,redis_base_ms_per_s,idle_ms_per_s,idle_per_gateway_ms_per_s,changes_per_s,changes_ms_per_s,changes_per_gateway_ms_per_s,changes_core_pct,evalsha_per_change,evalsha_ms_per_s,eval_ms_per_s,publish_ms_per_s,conv_p50_ms,conv_p99_ms,conv_max_ms,lag_p50_ms,lag_p99_ms,conv_unknown,conv_timeouts,conv_samples,cpu_busy_pct,steal_pct" > "$sum"

    for n in $counts; do
        local d=$dir/n$n
        mkdir -p "$d"
        start_redis "$d/redis"
        local redis_pid=$REDIS_PID
        scale_populate "$ns" "$ni" "${BACKEND_PORTS[@]}"

        local c0 c1 base
        sleep 1
        c0=$(redis_cpu_ms); sleep 5; c1=$(redis_cpu_ms)
        base=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", (b - a) / 5 }')

        log "gateways: starting $n gateways on one Redis ($ns x $ni instances)"
        local ports=() pids=() t0 res sync_all=0 port
        t0=$(date +%s.%N)
        for ((i = 1; i <= n; i++)); do
            mkdir -p "$d/gw$i"
            port=$(free_port)
            gw_many_conf "$d/gw$i" "$port" > "$d/gw$i/nginx.conf"
            start_nginx "gw$i" "$d/gw$i" "" "$port"
            ports+=("$port"); pids+=("$NGINX_PID")
        done
        for port in "${ports[@]}"; do
            res=$(wait_registry "$port" "$ns" $((ns * ni)) "$t0" 300)
            if [ "${res%% *}" = timeout ]; then
                problem "gateways: N=$n, gateway on port $port not synced within 300 s ($res)"
                sync_all=timeout
                break
            fi
            sync_all=${res%% *}
        done
        log "gateways: all $n synced after ${sync_all}s (from the first start)"
        sleep 3

        rcli CONFIG RESETSTAT > /dev/null
        c0=$(redis_cpu_ms); sleep "$idle"; c1=$(redis_cpu_ms)
        rcli INFO commandstats > "$d/commandstats-idle.txt"
        local idle_ms per_idle
        idle_ms=$(awk -v a="$c0" -v b="$c1" -v s="$idle" 'BEGIN { printf "%.3f", (b - a) / s }')
        per_idle=$(awk -v t="$idle_ms" -v b="$base" -v n="$n" 'BEGIN { printf "%.4f", (t - b) / n }')
        log "gateways: N=$n idle: Redis $idle_ms ms/s (own $base), $per_idle ms/s per gateway"

        local gargs=() wpid cpid out sent ok el t0s t1s
        for port in "${ports[@]}"; do gargs+=(-g "$port:1"); done
        rcli CONFIG RESETSTAT > /dev/null
        c0=$(redis_cpu_ms)
        t0s=$(cpu_ticks)
        if [ "${BENCH_GW_WRITER:-admin}" = recipe ]; then
            perl "$BENCH_DIR/lib/changes.pl" "$REDIS_PORT" "$rate" "$csecs" "$ns" \
                > "$d/changes.out" 2>&1 &
        else
            perl "$BENCH_DIR/lib/changes_admin.pl" "$rate" "$csecs" "$ns" \
                "${ports[@]:0:8}" > "$d/changes.out" 2>&1 &
        fi
        wpid=$!
        "$client" -r "$REDIS_PORT" "${gargs[@]}" -n "$nconv" -a "$addr" \
            -p conv -m lag -o "$d/lag.csv" -t 6000 -w 50 -s $((csecs * 1000 / nconv / 4)) \
            > "$d/conv.csv" 2> "$d/conv.err" &
        cpid=$!
        wait "$wpid" || problem "gateways: N=$n, changes failed: $(cat "$d/changes.out")"
        c1=$(redis_cpu_ms)
        rcli INFO commandstats > "$d/commandstats-changes.txt"
        wait "$cpid" || problem "gateways: N=$n, convergence client failed: $(cat "$d/conv.err")"
        t1s=$(cpu_ticks)
        read -r sent ok el < "$d/changes.out" || true
        local ch_ms per_ch core cps all to unk p50 p99 mx lag50 lag99 cs
        local es_calls es_ms ev_ms pub_ms samples busy steal
        ch_ms=$(awk -v a="$c0" -v b="$c1" -v s="${el:-$csecs}" 'BEGIN { printf "%.3f", (b - a) / s }')
        per_ch=$(awk -v t="$ch_ms" -v b="$base" -v n="$n" 'BEGIN { printf "%.4f", (t - b) / n }')
        core=$(awk -v t="$ch_ms" 'BEGIN { printf "%.1f", t / 10 }')
        cps=$(awk -v s="${sent:-0}" -v e="${el:-1}" 'BEGIN { printf "%.0f", s / e }')
        all=$(awk -F, 'NR > 1 && $3 >= 0 { print $3 / 1000 }' "$d/conv.csv")
        to=$(awk -F, 'NR > 1 { s += $6 } END { print s + 0 }' "$d/conv.csv")
        unk=$(awk -F, 'NR > 1 { s += $5 } END { print s + 0 }' "$d/conv.csv")
        p50=$(percentile 50 <<<"$all"); p99=$(percentile 99 <<<"$all"); mx=$(percentile 100 <<<"$all")
        lag50=$(awk -F, 'NR > 1 { print $3 / 1000 }' "$d/lag.csv" | percentile 50)
        lag99=$(awk -F, 'NR > 1 { print $3 / 1000 }' "$d/lag.csv" | percentile 99)
        samples=$(awk -F, 'NR > 1 && $3 >= 0' "$d/conv.csv" | wc -l)
        read -r busy steal <<<"$(awk -v a="$t0s" -v b="$t1s" 'BEGIN {
            split(a, x, " "); split(b, y, " "); t = y[1] - x[1]
            if (t <= 0) { print "nan nan"; exit }
            printf "%.1f %.1f", 100 * (t - (y[2] - x[2])) / t, 100 * (y[3] - x[3]) / t }')"
        cs=$d/commandstats-changes.txt
        es_calls=$(awk -v c="$(cmdstat "$cs" evalsha calls)" -v s="${sent:-0}" 'BEGIN { printf "%.2f", s ? c / s : 0 }')
        es_ms=$(awk -v u="$(cmdstat "$cs" evalsha usec)" -v e="${el:-1}" 'BEGIN { printf "%.3f", u / 1000 / e }')
        ev_ms=$(awk -v u="$(cmdstat "$cs" eval usec)" -v e="${el:-1}" 'BEGIN { printf "%.3f", u / 1000 / e }')
        pub_ms=$(awk -v u="$(cmdstat "$cs" publish usec)" -v e="${el:-1}" 'BEGIN { printf "%.3f", u / 1000 / e }')
        [ "$to" -gt 0 ] && problem "gateways: N=$n, $to gateway answers not at the change's revision within 6 s"
        log "gateways: N=$n, $cps changes/s: Redis $ch_ms ms/s ($core% of a core), $per_ch ms/s per gateway; EVALSHA $es_calls per change; convergence to all p50 $p50 ms p99 $p99 ms ($samples changes; CPUs $busy% busy, $steal% stolen)"

        printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$n" $((ns * ni)) "$sync_all" \
            "$base" "$idle_ms" "$per_idle" "$cps" "$ch_ms" "$per_ch" "$core" \
            "$es_calls" "$es_ms" "$ev_ms" "$pub_ms" \
            "$p50" "$p99" "$mx" "$lag50" "$lag99" "$unk" "$to" \
            "$samples" "$busy" "$steal" >> "$sum"

        for i in "${pids[@]}"; do kill -QUIT "$i" 2>/dev/null || true; done
        for ((i = 1; i <= n; i++)); do
            stop_pid "${pids[$((i - 1))]}" QUIT
            check_nginx_log "$d/gw$i" "gateway $i of $n"
        done
        stop_pid "$redis_pid"
    done

    print_csv_table "$sum" "gateways instances sync_all_s redis_base_ms_per_s idle_ms_per_s idle_per_gateway_ms_per_s changes_per_s changes_ms_per_s changes_per_gateway_ms_per_s changes_core_pct evalsha_per_change evalsha_ms_per_s eval_ms_per_s publish_ms_per_s conv_p50_ms conv_p99_ms conv_max_ms lag_p50_ms lag_p99_ms conv_unknown conv_timeouts conv_samples cpu_busy_pct steal_pct"
}
