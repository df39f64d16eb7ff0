# scenario "selection": peer selections per second with 1 and 2 worker
# processes on one shared zone, the design before snapshots (zone mutex
# taken twice per request) against today's (lock-free snapshot reads).
#
# bench/selection/ is a bench-only nginx module (built by
# bench/selection/build.sh into build/selbench, never part of the product
# .so), loaded after the gateway module built with it from the same src/
# (its functions exported, which the product's .so hides), which it calls: a
# content handler runs N selections in a loop (see its comment).  nginx
# runs with worker_processes W pinned one per CPU (worker_cpu_affinity);
# bench/selection/drive.pl opens one keepalive connection to each worker
# and sends the long request to all at once.  Per process: n / (end -
# start); in total: W x n / (last end - first start), from CLOCK_MONOTONIC
# stamps taken in the workers.  One process and two run on the same
# nginx: with 1 process, one worker of the 2-worker nginx gets the request
# and the other stays idle, the one on CPU 0 and the one on CPU 1 in turn
# by round.  (Two nginx started with different configurations, even only
# in worker_processes, place the same structures at other offsets: a
# 1-worker nginx ran round robin 17% slower than a worker of the 2-worker
# one alone, in every round, which made the ratio a property of the
# layout.)  Designs and worker counts are interleaved; medians of rounds.  Nothing else runs on the two CPUs (no load client),
# but the machine is shared: run it when it is quiet.
#
# Designs ("modes"): mutex (before), lockfree (today, the upstream's
# round robin: one atomic ticket per selection, no lock), lockfree_nocounters
# (the same without the per-instance counters "active" and "requests": what
# the ticket alone costs), lockfree_random (today, weighted random: no
# shared write but the counters), lockfree_split (today, round robin, each
# worker on a service of its own: nothing shared but the name index), and
# lockfree_independent (round robin in two nginx instances of one worker
# each, on zones of their own, pinned to CPU 0 and CPU 1: nothing shared at
# all, the machine's own ceiling for two processes; 1 process: one of them
# alone, in turn), and
# lockfree_least_request, lockfree_p2c, lockfree_peak_ewma: those methods
# on the lock-free path (no lock; they read the instances' shared
# "active"), and lockfree_hash, lockfree_ketama, lockfree_maglev: hash
# $request_uri (plain, ketama and maglev; the key is the request's, the
# same for all its selections: the cost of the key, its CRC32 and the
# lookup).  The bench runs the stats observer only: peak_ewma's samples
# need a proxied attempt, so its CAS per sample is measured by the
# callgrind and throughput variants, not here.
#
# The counters ("active", the stats observer's) go to the worker's cells
# (ngx_http_gateway_cell_t): "active" is published once per event loop
# pass, the others stay in the cell; a lock-free mode runs with pass=1,
# publishing after every selection (a worker that handles one request per
# pass: the worst case), and, as MODE_passK, with pass=K (BENCH_SEL_PASS,
# 16: what a busy worker handles per pass, see docs/performance.md), where
# an attempt starts and ends in one pass, so "active" cancels out.
# lockfree_span is round robin at pass=K where each attempt ends K
# selections after it started, in the next pass, as proxied requests do:
# "active" then changes in every pass.  lockfree_split is the ceiling of
# one zone in the same run: nothing shared between the workers but the name
# index; lockfree_independent is the machine's.
#
# A timed run with 1 worker (of the 2-worker nginx, alone) measures the hold time: mutex: how long the
# zone mutex is held per acquisition (2 per request); lockfree: how long
# the balancer's select takes (round robin: one uncontended atomic add and
# a table read); the clock's own cost is subtracted.  Contended, what one
# hot service's shared lines cost per selection is 1 / the two workers'
# total rate (lockfree: ticket and counters; lockfree_nocounters: the
# ticket alone).
#
#   BENCH_SEL_MS (200) ms of selections per request (a window that every
#                    worker of a run shares)
#   BENCH_SEL_ROUNDS (3)  BENCH_SEL_STARTS (3, at most the rounds) starts
#                    of the nginx the rounds are shared out between
#   BENCH_SEL_N (3000000) selections of the hold time runs
#   BENCH_SEL_MODES ("mutex lockfree lockfree_nocounters lockfree_span
#                    lockfree_random
#                    lockfree_split lockfree_independent
#                    lockfree_least_request lockfree_p2c
#                    lockfree_peak_ewma lockfree_hash lockfree_ketama
#                    lockfree_maglev", each lock-free one with counters
#                    also as MODE_passK)
#   BENCH_SEL_PASS (16) selections per pass of the MODE_passK rows
#   BENCH_SEL_INSTANCES (3) instances of the service
#   BENCH_SEL_RATE (25000) req/s per worker for the 64-worker ceiling

sel_conf() {    # sel_conf DIR PORT WORKERS SO AFFINITY
    local dir=$1 port=$2 w=$3 so=$4 aff=$5
    {
        echo "load_module ${so%/*}/ngx_http_gateway_module.so;"
        echo "load_module $so;"
        nginx_main_conf "$dir" "$w"
        echo "worker_cpu_affinity $aff;"
        echo "http {"
        nginx_http_common "$dir"
        echo "    gateway_registry zone=gw:16m;"
        echo "    server {"
        echo "        listen 127.0.0.1:$port reuseport backlog=4096;"
        echo "        location /gateway/ { gateway_admin; }"
        echo "        location = /mutex { gateway_selbench mutex users; }"
        echo "        location = /lockfree { gateway_selbench lockfree users; }"
        echo "        location = /lockfree_random {"
        echo "            gateway_selbench_balance random;"
        echo "            gateway_selbench lockfree users;"
        echo "        }"
        echo "        location = /lockfree_other { gateway_selbench lockfree orders; }"
        for b in least_request p2c peak_ewma; do
            echo "        location = /lockfree_$b {"
            echo "            gateway_selbench_balance $b;"
            echo "            gateway_selbench lockfree users;"
            echo "        }"
        done
        # hash: the key is the request's (the same for all N selections of
        # one request): the cost of the key, its CRC32 and the lookup
        local h
        for h in "hash:" "ketama: consistent=ketama" "maglev: consistent=maglev"; do
            echo "        location = /lockfree_${h%%:*} {"
            echo "            gateway_selbench_balance hash \$request_uri${h#*:};"
            echo "            gateway_selbench lockfree users;"
            echo "        }"
        done
        echo "    }"
        echo "}"
    } > "$dir/nginx.conf"
}

sel_path() {    # the request path(s) of a mode, one per worker
    case "${1%_pass*}" in
        lockfree_split) echo "/lockfree,/lockfree_other" ;;
        lockfree_nocounters|lockfree_independent|lockfree_span) echo "/lockfree" ;;
        *) echo "/${1%_pass*}" ;;
    esac
}

sel_args() {    # the query arguments of a mode
    case "$1" in
        lockfree_nocounters) echo "counters=0" ;;
        lockfree_span) echo "pass=${BENCH_SEL_PASS:-16}&span=1" ;;
        *_pass*) echo "pass=${1##*_pass}" ;;
        *) echo "" ;;
    esac
}

# sel_measure WORKERS MODE N ROUND: one request to each of WORKERS (1 or
# 2) processes of the 2-worker nginx (of the two 1-worker nginx for
# lockfree_independent): with 1, to the first or the second by ROUND;
# prints "per_process_rate total_rate cpu_rate late_ms": cpu_rate is the
# sum over the workers of selections per second of their own CPU time,
# what the workers would do on cores of their own (a busy machine takes
# wall time from them, not CPU time; waiting for a cache line is CPU
# time); late_ms how far past the window's start a worker started at most
sel_measure() {
    local w=$1 mode=$2 n=$3 round=$4 args ports=$SEL_PORT only='' out
    args=$(sel_args "$mode")
    case "$mode" in
        lockfree_independent*) ports=$SEL_INDEP_PORTS ;;
    esac
    [ "$w" = 2 ] || only=$(( round % 2 ))
    out=$(perl "$BENCH_DIR/selection/drive.pl" "$ports" 2 "$(sel_path "$mode")" "$n" "$args" "$only") \
        || die "selection: drive.pl failed for $mode with $w workers"
    [ "$(grep -c 'start_ns=' <<<"$out")" = "$w" ] \
        || die "selection: $mode with $w workers: $(grep -c 'start_ns=' <<<"$out") answers"

    awk '
        {
            for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            n = v["n"]; s = v["start_ns"]; e = v["end_ns"]
            if (v["failed"] != 0) bad = 1
            np++; sum += n / ((e - s) / 1e9); tot += n
            cpu += n / (v["cpu_ns"] / 1e9)
            if (np == 1 || s < first) first = s
            if (np == 1 || e > last) last = e
            if (v["late_ns"] > late) late = v["late_ns"]
        }
        END {
            if (bad) { print "FAILED"; exit }
            printf "%.0f %.0f %.0f %.3f\n", sum / np, tot / ((last - first) / 1e9), cpu, late / 1e6
        }' <<<"$out"
}

scenario_selection() {
    local dir=$BENCH_TMP/selection so
    local n=${BENCH_SEL_N:-3000000} rounds=${BENCH_SEL_ROUNDS:-3}
    local win=${BENCH_SEL_MS:-200}ms
    local base=(${BENCH_SEL_MODES:-mutex lockfree lockfree_nocounters lockfree_span lockfree_random lockfree_split lockfree_independent lockfree_least_request lockfree_p2c lockfree_peak_ewma lockfree_hash lockfree_ketama lockfree_maglev})
    local k_pass=${BENCH_SEL_PASS:-16} modes=() b
    for b in "${base[@]}"; do
        modes+=("$b")
        case "$b" in
            mutex|lockfree_nocounters|lockfree_span) ;;
            lockfree*) modes+=("${b}_pass$k_pass") ;;
        esac
    done
    local ninst=${BENCH_SEL_INSTANCES:-3} rate=${BENCH_SEL_RATE:-25000}
    local raw=$RESULTS/selection_rounds.csv sum=$RESULTS/selection.csv
    local w r m res
    mkdir -p "$dir"

    so=$("$BENCH_DIR/selection/build.sh" "$REPO/build/selbench") \
        || die "selection: the bench module did not build"

    echo "round,start,workers,mode,window,per_process_sel_per_s,total_sel_per_s,cpu_sel_per_s,late_ms" > "$raw"

    # interleaved: each round runs every (workers, mode) pair once, in an
    # order rotated by the round; the rounds are shared out between
    # BENCH_SEL_STARTS starts of the nginx (a start's memory layout
    # favours some modes, see above)
    local pairs=() k st=0 want starts=${BENCH_SEL_STARTS:-3}
    [ "$starts" -le "$rounds" ] || starts=$rounds
    for w in 1 2; do for m in "${modes[@]}"; do pairs+=("$w:$m"); done; done
    for ((r = 1; r <= rounds; r++)); do
        want=$(( (r - 1) * starts / rounds + 1 ))
        if [ "$want" != "$st" ]; then
            [ "$st" = 0 ] || sel_stop
            st=$want
            sel_start "$dir/start$st" "$so" "$ninst" "${modes[@]}"
        fi
        for ((k = 0; k < ${#pairs[@]}; k++)); do
            local p=${pairs[$(( (k + r - 1) % ${#pairs[@]} ))]}
            w=${p%%:*}; m=${p#*:}
            res=$(sel_measure "$w" "$m" "$win" "$r")
            [ "$res" != FAILED ] || die "selection: $m failed selections"
            set -- $res
            log "selection: round $r/$rounds (start $st)  $w worker(s)  $m: $1 sel/s per process, $2 in total, $3 per CPU time, started <= $4 ms late"
            echo "$r,$st,$w,$m,$win,$1,$2,$3,$4" >> "$raw"
        done
    done

    # hold times, 1 worker: one selection in 16 timed
    local hold_mutex hold_rr clock_ns
    res=$(perl "$BENCH_DIR/selection/drive.pl" "$SEL_PORT" 2 /mutex "$n" timed=1 0)
    read -r hold_mutex clock_ns < <(sel_hold <<<"$res")
    res=$(perl "$BENCH_DIR/selection/drive.pl" "$SEL_PORT" 2 /lockfree "$n" timed=1 0)
    read -r hold_rr clock_ns < <(sel_hold <<<"$res")

    # the counters the lock-free path kept are the real ones: every
    # selection counted once, nothing left active
    sel_check_counters "$SEL_PORT"

    sel_stop

    echo "mode,per_process_1w,total_1w,per_process_2w,total_2w,scaling_2w_over_1w,cpu_scaling_2w_over_1w,rounds" > "$sum"
    for m in "${modes[@]}"; do
        awk -F, -v m="$m" -v rounds="$rounds" '
            function med(a, n,   i, j, t) {
                for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
                return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            NR > 1 && $4 == m { k = $3; np[k]++; pp[k, np[k]] = $6; tt[k, np[k]] = $7; cc[k, np[k]] = $8 }
            END {
                for (k = 1; k <= 2; k++) {
                    delete a; for (i = 1; i <= np[k]; i++) a[i] = pp[k, i]; P[k] = med(a, np[k])
                    delete a; for (i = 1; i <= np[k]; i++) a[i] = tt[k, i]; T[k] = med(a, np[k])
                    delete a; for (i = 1; i <= np[k]; i++) a[i] = cc[k, i]; C[k] = med(a, np[k])
                }
                printf "%s,%.0f,%.0f,%.0f,%.0f,%.2f,%.2f,%d\n", m, P[1], T[1], P[2], T[2], T[2] / T[1], C[2] / C[1], rounds
            }' "$raw" >> "$sum"
    done

    # the on-paper ceiling for 64 workers at $rate req/s each: a global
    # lock is busy 64 x rate x acquisitions x hold of every second
    {
        echo "metric,value,unit,note"
        echo "clock_cost_ns,$clock_ns,ns,\"one CLOCK_MONOTONIC read, subtracted from every timed interval\""
        echo "mutex_hold_ns_per_acquisition,$hold_mutex,ns,\"zone mutex held per acquisition, 2 per request (1 worker, 1 selection in 16 timed)\""
        echo "rr_select_ns,$hold_rr,ns,\"the round robin select call, no lock (1 worker)\""
        local t2 t2n
        t2=$(awk -F, '$1 == "lockfree" { print $5 }' "$sum")
        t2n=$(awk -F, '$1 == "lockfree_nocounters" { print $5 }' "$sum")
        awk -v h="$hold_mutex" -v rr="$hold_rr" -v rate="$rate" -v t2="${t2:-0}" -v t2n="${t2n:-0}" 'BEGIN {
            printf "mutex_ceiling_req_per_s,%.0f,req/s,\"1 / (2 x hold): all workers together, whatever their number\"\n", 1e9 / (2 * h)
            printf "mutex_busy_64_workers,%.3f,fraction,\"64 x %d req/s x 2 x hold: share of each second the zone mutex is held\"\n", 64 * rate * 2 * h / 1e9, rate
            if (t2 > 0) {
                printf "rr_contended_ns_per_selection,%.1f,ns,\"1 / total rate of 2 workers on one service: its ticket and counter lines moving between the cores\"\n", 1e9 / t2
                printf "rr_ceiling_req_per_s_per_service,%.0f,req/s,\"one hot service, all workers together (the lines serialize its selections); other services do not share them\"\n", t2
                printf "rr_busy_64_workers_one_service,%.3f,fraction,\"64 x %d req/s / that ceiling, every request to one service\"\n", 64 * rate / t2, rate
            }
            if (t2n > 0) {
                printf "rr_ticket_only_ceiling_req_per_s_per_service,%.0f,req/s,\"the same without the counters: the ticket line alone\"\n", t2n
            }
            printf "lockfree_global_lock_acquisitions,0,per request,\"no lock shared by all services on the request path\"\n"
        }'
    } > "$RESULTS/selection_ceiling.csv"

    print_csv_table "$sum" "mode per_process_1w total_1w per_process_2w total_2w scaling_2w_over_1w cpu_scaling_2w_over_1w rounds"
    echo
    print_csv_table "$RESULTS/selection_ceiling.csv" "metric value unit note"
}

# sel_start DIR SO INSTANCES MODE...: the 2-worker nginx (SEL_PORT) and
# the two 1-worker nginx of lockfree_independent, on CPU 0 and on CPU 1
# (SEL_INDEP_PORTS), each with the services; then every worker answers,
# and each mode selects (n=1000)
sel_start() {
    local dir=$1 so=$2 ninst=$3 name w aff port i r m res
    shift 3
    SEL_PIDS=() SEL_INDEP_PORTS=
    for name in w2:2:"01 10" indep0:1:01 indep1:1:10; do
        w=${name#*:}; aff=${w#*:}; w=${w%%:*}; name=${name%%:*}
        port=$(free_port)
        mkdir -p "$dir/$name"
        sel_conf "$dir/$name" "$port" "$w" "$so" "$aff"
        start_nginx "selbench-$name" "$dir/$name" "" "$port"
        SEL_PIDS+=("$NGINX_PID")
        for i in $(seq 1 "$ninst"); do
            sel_register "$port" users "u$i" "127.0.0.1:$((20000 + i))"
            sel_register "$port" orders "o$i" "127.0.0.1:$((21000 + i))"
        done
        case "$name" in
            w2) SEL_PORT=$port ;;
            *) SEL_INDEP_PORTS=${SEL_INDEP_PORTS:+$SEL_INDEP_PORTS,}$port ;;
        esac
    done
    for w in 1 2; do
        for m in "$@"; do
            for r in 1 2; do
                res=$(sel_measure "$w" "$m" 1000 "$r")
                [ "$res" != FAILED ] || die "selection: $m selected nothing"
            done
        done
    done
}

sel_stop() {
    local pid
    for pid in "${SEL_PIDS[@]}"; do stop_pid "$pid" QUIT; done
    SEL_PIDS=()
}

sel_register() {    # sel_register PORT SERVICE ID ADDRESS
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
        "http://127.0.0.1:$1/gateway/services/$2/instances/$3" -d "{\"address\":\"$4\"}")
    [ "$code" = 201 ] || [ "$code" = 200 ] || die "selection: registering $2/$3 answered $code"
}

# mean timed interval less one clock read, from drive.pl's line: "HOLD CLOCK"
sel_hold() {
    awk '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        h = v["timed_ns"] / v["timed"] - v["clock_ns"]
        printf "%.1f %d\n", h < 0 ? 0 : h, v["clock_ns"]
    }'
}

sel_check_counters() {   # the admin API's view after the runs
    local port=$1 body
    body=$(curl -s "http://127.0.0.1:$port/gateway/services/users")
    perl -e '
        my $b = shift; my @a = $b =~ /"active":(\d+)/g; my @r = $b =~ /"requests":(\d+)/g;
        die "selection: no instances in the admin API\n" unless @a;
        die "selection: active is not 0 after the runs: @a\n" if grep { $_ != 0 } @a;
        die "selection: no requests counted: @r\n" if grep { $_ == 0 } @r;
    ' "$body" || die "selection: counters check failed"
}
