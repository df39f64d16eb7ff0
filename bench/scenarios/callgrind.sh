# scenario "callgrind": instructions (Ir) per proxied request, stock nginx
# round robin vs the gateway, each nginx a single process (master_process
# off, daemon off) under valgrind --tool=callgrind.
#
# After start-up and W warm-up requests (from one curl keepalive
# connection, so the upstream keepalive pools are warm) the counters are
# zeroed with callgrind_control -z, N requests are sent on one connection,
# and callgrind_control -d dumps the counts: Ir/request = dump total / N.
# Start-up, warm-up and shutdown are outside the dump; the gateway's 100 ms
# lease tick during the measured phase is inside it (a few hundred Ir per
# tick, well below 1 Ir/request).  Instruction counts do not depend on
# machine load, so this is the stable figure; the per-function table shows
# where the difference comes from.
#
#   BENCH_CG_REQUESTS (2000)  BENCH_CG_WARMUP (200)  BENCH_CG_RUNS (3)
#   BENCH_CG_VARIANTS
#   ("stock gateway lua"; any throughput variant built on nginx works, the
#   first is the reference)
#   BENCH_CG_VALGRIND_OPTS (more valgrind options, e.g. "--dump-instr=yes"
#   for counts by instruction; the figures do not change)

# cg_make_conf VARIANT DIR PORT: a variant's nginx.conf turned into a
# single-process one (the variants write master_process on)
cg_make_conf() {
    local v=$1 dir=$2 port=$3
    # let the variant write its config, but do not start it: a stub start_nginx
    (
        start_nginx() { :; }
        track() { :; }
        "variant_${v}_start" "$dir" "$port"
    ) >/dev/null
    sed -i 's/^master_process on;/master_process off;/' "$dir/nginx.conf"
}

# cg_run VARIANT DIR PORT OUT WARMUP MEASURE: one valgrind run: start,
# settle, readiness, WARMUP requests, zero the counters (callgrind_control
# -z), MEASURE requests, dump (callgrind_control -d -> OUT.1), stop.
# Sets CG_WALL to the wall time of the measured phase in seconds.
cg_run() {
    local v=$1 dir=$2 port=$3 out=$4 warm=$5 meas=$6 pid t0 t1 i
    rm -f "$out" "$out".*
    # a fixed, minimal environment: nginx copies environ at start-up, so the
    # caller's environment would otherwise shift the heap and the malloc
    # paths (and with them the count) from one invocation to the next
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin GLIBC_TUNABLES="$BENCH_GLIBC_TUNABLES" \
        valgrind --tool=callgrind \
        --callgrind-out-file="$out" --dump-instr=no --collect-jumps=no \
        ${BENCH_CG_VALGRIND_OPTS:-} \
        "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        > "$out.log" 2>&1 &
    pid=$!
    track "$pid" "callgrind-$v"
    wait_port "$port" "$pid" 120 || { tail "$out.log" "$dir/error.log" >&2; die "$v under valgrind did not start"; }
    sleep "${BENCH_CG_SETTLE:-3}"
    if declare -F "cg_ready_$v" >/dev/null; then
        "cg_ready_$v"
    else
        # the gateway must have synced "users" from Redis
        for i in $(seq 1 120); do
            [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready")" = 200 ] && break
            sleep 0.5
        done
    fi
    curl -s -o /dev/null "http://127.0.0.1:$port/w[1-$warm]" \
        || die "$v: warm-up requests failed"
    callgrind_control -z "$pid" > "$out.ctl" 2>&1 || die "$v: callgrind_control -z failed: $(cat "$out.ctl")"
    t0=$(date +%s.%N)
    curl -s -w '%{http_code}\n' -o /dev/null "http://127.0.0.1:$port/m[1-$meas]" \
        > "$out.codes" || die "$v: measured requests failed"
    t1=$(date +%s.%N)
    callgrind_control -d "$pid" >> "$out.ctl" 2>&1 || die "$v: callgrind_control -d failed: $(cat "$out.ctl")"
    local bad
    bad=$(grep -vc '^200$' "$out.codes" || true)
    [ "$bad" = 0 ] || problem "callgrind $v: $bad of $meas measured requests were not 200"
    stop_pid "$pid" QUIT
    [ -s "$out.1" ] || die "$v: no callgrind dump $out.1"
    CG_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }')
}

cg_total() {    # total Ir of a callgrind output file
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}

# cg_funcs FILE: "function self_Ir" lines of a callgrind output (all
# functions, static ones of the stripped nginx appear as addresses; the
# frames still on the stack at a dump - main and its callers - are left out)
cg_funcs() {
    callgrind_annotate --threshold=100 --auto=no "$1" 2>/dev/null | awk '
        /PROGRAM TOTALS/ { total = $1 }
        /^-+$/ { sec++; next }
        sec >= 4 && $1 ~ /^[0-9,]+$/ && $1 != total {
            ir = $1; gsub(",", "", ir)
            f = $0; sub(/^ *[0-9,]+ +\([^)]*\) +/, "", f); sub(/ \[.*\]$/, "", f)
            sub(/^.*:/, "", f)
            s[f] += ir
        }
        END { for (f in s) print f, s[f] }'
}

# Ir of the gateway module's own functions (self cost)
cg_module_ir() {
    awk '$1 ~ /^(ngx_http_gateway|ngx_gateway_)/ { s += $2 } END { printf "%d\n", s }' "$1"
}

# cg_func_diff N REF V DIR: per-request self Ir by function, V vs REF, the
# functions that differ by more than 5 Ir/request, biggest first
cg_func_diff() {
    local n=$1 ref=$2 v=$3 d=$4
    echo "function,${ref}_ir_per_request,${v}_ir_per_request,difference"
    awk -v n="$n" '
        FNR == 1 { fi++ }
        { c[fi, $1] = $2; k[$1] = 1 }
        END {
            for (f in k) {
                s = c[1, f] / n; g = c[2, f] / n
                if (g - s > 5 || s - g > 5) printf "%s,%.0f,%.0f,%+.0f\n", f, s, g, g - s
            }
        }' "$d/$ref/cg.funcs" "$d/$v/cg.funcs" \
        | awk -F, '{ a = $4 < 0 ? -$4 : $4; print a "," $0 }' \
        | sort -t, -k1 -g -r | cut -d, -f2- | head -40
}

scenario_callgrind() {
    local variants=(${BENCH_CG_VARIANTS:-stock gateway lua})
    local n=${BENCH_CG_REQUESTS:-2000} w=${BENCH_CG_WARMUP:-200}
    local dir=$BENCH_TMP/callgrind v port
    mkdir -p "$dir"

    start_redis "$dir/redis"
    start_backends 3 ""
    local i
    for i in 1 2 3; do
        register_instance users "u$i" "127.0.0.1:${BACKEND_PORTS[$((i - 1))]}"
    done

    # RUNS runs per variant (each a fresh nginx): the count depends a little
    # on the heap's history (glibc malloc paths), so the median is reported
    # with the range; the per-function table comes from the median run.
    local runs=${BENCH_CG_RUNS:-3} r sum=$RESULTS/callgrind.csv ref="" ref_ir="" per
    echo "variant,requests,runs,ir_per_request,min_ir_per_request,max_ir_per_request,ratio_to_${variants[0]},module_ir_per_request,wall_s_measured" > "$sum"

    for v in "${variants[@]}"; do
        local pers=() med medrun
        for ((r = 1; r <= runs; r++)); do
            port=$(free_port)
            mkdir -p "$dir/$v/r$r"
            cg_make_conf "$v" "$dir/$v/r$r" "$port"
            log "callgrind: $v run $r/$runs, $w warm-up + $n measured requests"
            cg_run "$v" "$dir/$v/r$r" "$port" "$dir/$v/r$r/cg" "$w" "$n"
            pers+=("$(( $(cg_total "$dir/$v/r$r/cg.1") / n ))")
            check_nginx_log "$dir/$v/r$r" "$v (callgrind run $r)"
        done
        med=$(printf '%s\n' "${pers[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
        for ((r = 1; r <= runs; r++)); do
            [ "${pers[$((r - 1))]}" = "$med" ] && { medrun=$r; break; }
        done
        cg_funcs "$dir/$v/r$medrun/cg.1" > "$dir/$v/cg.funcs"
        [ -z "$ref" ] && { ref=$v; ref_ir=$med; }
        printf '%s,%s,%s,%s,%s,%s,%.3f,%s,%s\n' "$v" "$n" "$runs" "$med" \
            "$(printf '%s\n' "${pers[@]}" | sort -n | head -1)" \
            "$(printf '%s\n' "${pers[@]}" | sort -n | tail -1)" \
            "$(awk -v x="$med" -v y="$ref_ir" 'BEGIN { print x / y }')" \
            "$(( $(cg_module_ir "$dir/$v/cg.funcs") / n ))" "$CG_WALL" >> "$sum"
    done

    for v in "${variants[@]:1}"; do
        cg_func_diff "$n" "$ref" "$v" "$dir" > "$RESULTS/callgrind_functions_$v.csv"
    done

    print_csv_table "$sum" "variant requests runs ir_per_request min_ir_per_request max_ir_per_request ratio_to_${variants[0]} module_ir_per_request"
    for v in "${variants[@]:1}"; do
        echo
        echo "Ir/request by function, $v vs $ref (self cost, |difference| > 5; top 15):"
        head -16 "$RESULTS/callgrind_functions_$v.csv" > "$dir/top.csv"
        print_csv_table "$dir/top.csv" "function ${ref}_ir_per_request ${v}_ir_per_request difference"
    done
}
