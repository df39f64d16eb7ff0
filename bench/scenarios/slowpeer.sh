# scenario "slowpeer": latency when one of three instances is slow.  Three
# backends (two `return 200` nginx, one answering after DELAY with the
# echo module's echo_sleep), registered in Redis as service "users"; each
# gateway variant (round robin, peak_ewma, least_request, p2c) proxies to
# them from one worker pinned to PROXY_CPU.  Per round and variant: a 1 s
# warm-up, then wrk -t1 -cCONNS for DURATION s: mean and p99 latency,
# req/s, and the slow instance's share of the attempts (the admin API's
# per-instance "requests", before and after).  Variants are interleaved
# over the rounds (order rotated); medians of rounds.
#
#   BENCH_SLOW_VARIANTS ("gateway gateway_peak_ewma gateway_least_request
#                         gateway_p2c"; the first is the reference)
#   BENCH_SLOW_ROUNDS (3)  BENCH_SLOW_DURATION (5 s)  BENCH_SLOW_CONNS (16)
#   BENCH_SLOW_DELAY (0.05 s)

slow_backend_start() {     # DIR PORT DELAY_S CPU
    local dir=$1 port=$2 delay=$3 cpu=$4
    mkdir -p "$dir"
    {
        echo "load_module $NGX_MODULES_DIR/ngx_http_echo_module.so;"
        nginx_main_conf "$dir" 1 off
        echo "http {"
        nginx_http_common "$dir"
        echo "    server {"
        echo "        listen 127.0.0.1:$port backlog=4096;"
        echo "        location / { echo_sleep $delay; echo \"slow backend\"; }"
        echo "    }"
        echo "}"
    } > "$dir/nginx.conf"
    start_nginx slow-backend "$dir" "$cpu" "$port"
}

# slow_requests PORT ID: the admin API's "requests" of instance ID of users
slow_requests() {
    curl -s --max-time 5 "http://127.0.0.1:$1/gateway/services/users" \
        | perl -MJSON::PP -e '
            my $j = eval { decode_json(join "", <STDIN>) } || {};
            my ($i) = grep { $_->{id} eq $ARGV[0] } @{ $j->{instances} || [] };
            print $i ? $i->{requests} : 0, "\n"' "$2"
}

scenario_slowpeer() {
    local variants=(${BENCH_SLOW_VARIANTS:-gateway gateway_peak_ewma gateway_least_request gateway_p2c})
    local rounds=${BENCH_SLOW_ROUNDS:-3} dur=${BENCH_SLOW_DURATION:-5}
    local conns=${BENCH_SLOW_CONNS:-16} delay=${BENCH_SLOW_DELAY:-0.05}
    local dir=$BENCH_TMP/slowpeer raw=$RESULTS/slowpeer_rounds.csv sum=$RESULTS/slowpeer.csv
    local v r k i port sport out s0 s1 t0 t1
    declare -A vport=()
    mkdir -p "$dir"
    [ -f "$NGX_MODULES_DIR/ngx_http_echo_module.so" ] \
        || die "slowpeer: needs the echo module (libnginx-mod-http-echo)"

    start_redis "$dir/redis" "$LOAD_CPU"
    start_backends 2 "$LOAD_CPU"
    sport=$(free_port)
    slow_backend_start "$dir/slow" "$sport" "$delay" "$LOAD_CPU"
    register_instance users u1 "127.0.0.1:${BACKEND_PORTS[0]}"
    register_instance users u2 "127.0.0.1:${BACKEND_PORTS[1]}"
    register_instance users slow "127.0.0.1:$sport"

    for v in "${variants[@]}"; do
        declare -F "variant_${v}_start" >/dev/null || die "unknown variant $v"
        port=$(free_port)
        mkdir -p "$dir/$v"
        "variant_${v}_start" "$dir/$v" "$port"
        vport[$v]=$port
        wait_200 "http://127.0.0.1:$port/" 15 || die "variant $v does not answer 200 (see $dir/$v)"
    done

    echo "round,variant,rps,mean_us,p50_us,p99_us,slow_share,non2xx_or_errors" > "$raw"
    for ((r = 1; r <= rounds; r++)); do
        for ((k = 0; k < ${#variants[@]}; k++)); do
            v=${variants[$(( (k + r - 1) % ${#variants[@]} ))]}
            port=${vport[$v]}
            run_wrk "http://127.0.0.1:$port/" 1 "$conns" "$dir/warm.txt"
            s0=$(slow_requests "$port" slow); t0=0
            for i in u1 u2 slow; do t0=$((t0 + $(slow_requests "$port" "$i"))); done
            out=$dir/$v-r$r.txt
            run_wrk "http://127.0.0.1:$port/" "$dur" "$conns" "$out"
            [ -n "$(wrk_field "$out" rps)" ] || die "slowpeer: wrk gave no result for $v (see $out)"
            s1=$(slow_requests "$port" slow); t1=0
            for i in u1 u2 slow; do t1=$((t1 + $(slow_requests "$port" "$i"))); done
            awk -v r="$r" -v v="$v" -v s=$((s1 - s0)) -v t=$((t1 - t0)) \
                -v rps="$(wrk_field "$out" rps)" -v mean="$(wrk_field "$out" lat_mean_us)" \
                -v p50="$(wrk_field "$out" lat_p50)" -v p99="$(wrk_field "$out" lat_p99)" \
                -v e="$(( $(wrk_field "$out" err_status) + $(wrk_field "$out" err_connect) + $(wrk_field "$out" err_read) + $(wrk_field "$out" err_timeout) ))" \
                'BEGIN { printf "%d,%s,%.0f,%.0f,%d,%d,%.4f,%d\n", r, v, rps, mean, p50, p99, t ? s / t : 0, e }' >> "$raw"
            log "slowpeer: round $r/$rounds $v: $(tail -n 1 "$raw")"
        done
    done

    for v in "${variants[@]}"; do
        check_nginx_log "$dir/$v" "$v"
    done

    echo "variant,description,rps,mean_ms,p50_ms,p99_ms,slow_share,mean_ratio_to_${variants[0]},p99_ratio_to_${variants[0]},errors,rounds" > "$sum"
    for v in "${variants[@]}"; do
        awk -F, -v v="$v" -v ref="${variants[0]}" -v d="${VARIANT_DESC[$v]:-$v}" -v rounds="$rounds" '
            function med(a, n,   i, j, t) {
                for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            NR > 1 && $2 == v { n++; R[n] = $3; M[n] = $4; P5[n] = $5; P9[n] = $6; S[n] = $7; E += $8 }
            NR > 1 && $2 == ref { nr++; RM[nr] = $4; RP[nr] = $6 }
            END {
                m = med(M, n); p = med(P9, n); rm = med(RM, nr); rp = med(RP, nr)
                printf "%s,\"%s\",%.0f,%.2f,%.2f,%.2f,%.4f,%.3f,%.3f,%d,%d\n", v, d, med(R, n),
                       m / 1000, med(P5, n) / 1000, p / 1000, med(S, n), m / rm, p / rp, E, rounds
            }' "$raw" >> "$sum"
    done

    print_csv_table "$sum" "variant description rps mean_ms p50_ms p99_ms slow_share mean_ratio_to_${variants[0]} p99_ratio_to_${variants[0]} errors rounds"
}
