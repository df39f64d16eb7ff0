# scenario "throughput": req/s and latency of every proxy variant over the
# same three backends.  Variants are interleaved over ROUNDS rounds (order
# rotated each round), each measurement preceded by a warmup; medians and
# per-round ratios to stock nginx are reported.
#
#   BENCH_VARIANTS   variants, first one is the reference (default
#                    "stock lua haproxy gateway")
#   BENCH_ROUNDS (10) BENCH_DURATION (4 s) BENCH_WARMUP (1 s) BENCH_CONNS (50)
#
# Many short rounds rather than a few long ones: on a shared machine the
# interference comes in bursts, and more paired samples keep the medians of
# the per-round ratios stable.

scenario_throughput() {
    local variants=(${BENCH_VARIANTS:-stock lua haproxy gateway})
    local rounds=${BENCH_ROUNDS:-10} dur=${BENCH_DURATION:-4}
    local warm=${BENCH_WARMUP:-1} conns=${BENCH_CONNS:-50}
    local dir=$BENCH_TMP/throughput v i port
    declare -A vport=() vpid=()
    mkdir -p "$dir"

    log "throughput: backends, Redis and load on CPU $LOAD_CPU, proxies on CPU $PROXY_CPU"
    start_redis "$dir/redis" "$LOAD_CPU"
    start_backends 3 "$LOAD_CPU"
    for i in 1 2 3; do
        register_instance users "u$i" "127.0.0.1:${BACKEND_PORTS[$((i - 1))]}"
    done

    for v in "${variants[@]}"; do
        declare -F "variant_${v}_start" >/dev/null || die "unknown variant $v"
        port=$(free_port)
        mkdir -p "$dir/$v"
        "variant_${v}_start" "$dir/$v" "$port"
        vport[$v]=$port
        vpid[$v]=$VARIANT_PID
        wait_200 "http://127.0.0.1:$port/" 15 || die "variant $v does not answer 200 (see $dir/$v)"
        log "  $v listening on $port (pid $VARIANT_PID)"
    done

    local raw=$RESULTS/throughput_rounds.csv ref=${variants[0]} sum=$RESULTS/throughput.csv
    bench_rounds "$raw" "$dir" "$rounds" "$dur" "$warm" "$conns" "${variants[@]}"

    for v in "${variants[@]}"; do
        check_nginx_log "$dir/$v" "$v"
    done

    bench_summary "$raw" "$sum" "${variants[@]}"

    # latency distribution of each variant's median-throughput round
    local plotdata=$RESULTS/throughput_latency.csv
    echo "variant,percentile,latency_us" > "$plotdata"
    for v in "${variants[@]}"; do
        local med best
        med=$(median $(awk -F, -v v="$v" '$2 == v { print $3 }' "$raw"))
        best=$(awk -F, -v v="$v" -v m="$med" 'NR > 1 && $2 == v {
                d = $3 - m; if (d < 0) d = -d; if (!n++ || d < bd) { bd = d; br = $1 } }
                END { print br }' "$raw")
        awk -F, -v v="$v" -v r="$best" '$1 == r && $2 == v { print v "," $3 "," $4 }' \
            "$dir/latdist.csv" >> "$plotdata"
    done
    plot_latency "$plotdata" "$RESULTS/throughput_latency.png" \
        "Latency distribution (median-throughput round, wrk -t1 -c$conns)"

    print_csv_table "$sum" "variant median_rps p50_us p99_us ratio_to_$ref max_rps best_ratio_to_$ref cpu_us_per_req cpu_ratio_to_$ref proxy_core_busy_pct load_core_busy_pct non2xx socket_errors"
}

# bench_rounds RAW DIR ROUNDS DURATION WARMUP CONNS VARIANT...: interleaved
# wrk rounds (order rotated each round) over the running variants (ports and
# pids in the caller's vport/vpid); one CSV line per measurement in RAW, the
# latency distributions in DIR/latdist.csv.  Per measurement also the proxy's
# CPU time per request (its processes' utime+stime) and how busy the proxy
# and the load core were.
bench_rounds() {
    local raw=$1 dir=$2 rounds=$3 dur=$4 warm=$5 conns=$6
    shift 6
    local variants=("$@") r i v port out
    echo "round,variant,rps,p50_us,p90_us,p99_us,p99_9_us,max_us,requests,non2xx,socket_errors,proxy_cpu_us_per_req,proxy_core_busy_pct,load_core_busy_pct" > "$raw"
    : > "$dir/latdist.csv"

    for ((r = 1; r <= rounds; r++)); do
        local order=() n=${#variants[@]}
        for ((i = 0; i < n; i++)); do order+=("${variants[$(((i + r - 1) % n))]}"); done
        for v in "${order[@]}"; do
            port=${vport[$v]}
            out=$dir/wrk-$v-$r.txt
            run_wrk "http://127.0.0.1:$port/" "$warm" "$conns" "$dir/warm-$v-$r.txt"
            local pids c0 c1 t0 t1
            pids=$(proc_tree "${vpid[$v]}")
            c0=$(core_ticks); t0=$(proc_ticks $pids)
            run_wrk "http://127.0.0.1:$port/" "$dur" "$conns" "$out"
            c1=$(core_ticks); t1=$(proc_ticks $pids)
            local rps p50 p99 serr
            rps=$(wrk_field "$out" rps)
            [ -n "$rps" ] || { cat "$out" >&2; die "wrk failed for $v"; }
            p50=$(wrk_field "$out" lat_p50); p99=$(wrk_field "$out" lat_p99)
            serr=$(( $(wrk_field "$out" err_connect) + $(wrk_field "$out" err_read) \
                   + $(wrk_field "$out" err_write) + $(wrk_field "$out" err_timeout) ))
            local cpu_req busy
            cpu_req=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v n="$(wrk_field "$out" requests)" \
                'BEGIN { printf "%.2f", (b - a) / hz * 1e6 / n }')
            busy=$(core_busy "$c0" "$c1")
            echo "$r,$v,$rps,$p50,$(wrk_field "$out" lat_p90),$p99,$(wrk_field "$out" lat_p99.9),$(wrk_field "$out" lat_max_us),$(wrk_field "$out" requests),$(wrk_field "$out" err_status),$serr,$cpu_req,${busy% *},${busy#* }" >> "$raw"
            awk -v v="$v" -v r="$r" '$1 == "BENCH" && $2 ~ /^lat_p/ {
                    p = substr($2, 6); print r "," v "," p "," $3 }' "$out" \
                >> "$dir/latdist.csv"
            log "  round $r/$rounds $(printf '%-12s' "$v") $(printf '%7.0f' "$rps") req/s  p50 ${p50}us  p99 ${p99}us  cpu ${cpu_req}us/req  busy: proxy core ${busy% *}% load core ${busy#* }%  non-2xx $(wrk_field "$out" err_status)  socket errors $serr"
        done
    done
}

_bs_col() { awk -F, -v v="$v" -v c="$1" '$2 == v { print $c }' "$raw"; }

# bench_summary RAW SUM VARIANT...: medians over the rounds; ratios are
# medians of per-round ratios to the first variant (same round)
bench_summary() {
    local raw=$1 sum=$2
    shift 2
    local variants=("$@") v ref=$1
    echo "variant,description,median_rps,p50_us,p99_us,ratio_to_$ref,min_rps,max_rps,non2xx,socket_errors,rounds,cpu_us_per_req,cpu_ratio_to_$ref,proxy_core_busy_pct,load_core_busy_pct,best_ratio_to_$ref" > "$sum"
    local refmax
    refmax=$(awk -F, -v v="$ref" '$2 == v { print $3 }' "$raw" | sort -g | tail -1)
    for v in "${variants[@]}"; do
        local rpss ratios cratios nerr serr
        rpss=$(_bs_col 3)
        ratios=$(awk -F, -v v="$v" -v ref="$ref" 'NR > 1 { x[$1 "," $2] = $3; rr[$1] = 1 }
            END { for (r in rr) if (x[r "," ref] > 0) print x[r "," v] / x[r "," ref] }' "$raw")
        cratios=$(awk -F, -v v="$v" -v ref="$ref" 'NR > 1 { x[$1 "," $2] = $12; rr[$1] = 1 }
            END { for (r in rr) if (x[r "," ref] > 0) print x[r "," v] / x[r "," ref] }' "$raw")
        nerr=$(awk -F, -v v="$v" '$2 == v { s += $10 } END { print s + 0 }' "$raw")
        serr=$(awk -F, -v v="$v" '$2 == v { s += $11 } END { print s + 0 }' "$raw")
        printf '%s,"%s",%.0f,%.0f,%.0f,%.3f,%.0f,%.0f,%s,%s,%s,%.2f,%.3f,%.0f,%.0f,%.3f\n' "$v" "${VARIANT_DESC[$v]:-$v}" \
            "$(median $rpss)" "$(median $(_bs_col 4))" "$(median $(_bs_col 6))" "$(median $ratios)" \
            "$(printf '%s\n' $rpss | sort -g | head -1)" "$(printf '%s\n' $rpss | sort -g | tail -1)" \
            "$nerr" "$serr" "$(_bs_col 3 | wc -l)" "$(median $(_bs_col 12))" "$(median $cratios)" \
            "$(median $(_bs_col 13))" "$(median $(_bs_col 14))" \
            "$(awk -v a="$(printf '%s\n' $rpss | sort -g | tail -1)" -v b="$refmax" 'BEGIN { print a / b }')" >> "$sum"
    done
}

